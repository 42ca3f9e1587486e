"""Verdicts: what each stage's numbers say against references from outside the stage.

Every stage artifact gets a row of checks; each check is ``green`` (meets the
reference), ``amber`` (usable, with a caveat a reader must know), ``red`` (not to be
used as physics: a placeholder, a number beyond its red line, a failed check or a stage
that did not finish) or ``n/a`` (does not apply, and the reason why). A stage's
verdict is its worst check, the run's verdict the worst stage (``n/a`` never counts);
a stage of the chain without an artifact is ``not run`` and makes the run ``partial``.
The report opens with them (each check's short reason in the table, its detail, the
rest of the account, below it); ``verdicts.json`` beside it holds the same rows.

The references: the DFT data itself (held-out test errors, the data set's own C_ij and
a0 fits), analytic limits (the cylinder's limit load), the checks every model must pass
(``check_constitutive``, ``check_mobility``), the models' training ranges
(out-of-range fractions), what a statistic needs (dislocation counts, replicas,
realisations) and literature ranges (Taylor α). Every threshold lives in
:data:`THRESHOLDS`, with the reason for its value.

Example::

    from scalebridge.workflows.verdicts import run_verdicts
    v = run_verdicts({"potential": art, ...})
    v["overall"], v["stages"][0]["checks"]
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scalebridge.artifacts import finite_or_none as _num
from scalebridge.workflows.band import shares_text

GREEN, AMBER, RED, NA = "green", "amber", "red", "n/a"
#: A stage of the chain with no artifact in the run directory (the run stopped before
#: it, ``--until``, or it failed), and the run's overall verdict when any is: never
#: green, whatever the stages that ran say.
NOT_RUN, PARTIAL = "not run", "partial"
#: Severity order (``n/a`` ranks below green: it never makes a verdict worse).
RANK = {NA: -1, GREEN: 0, AMBER: 1, RED: 2}
#: Markers for the report.
MARK = {GREEN: "🟢", AMBER: "🟠", RED: "🔴", NA: "⚪", NOT_RUN: "⬜", PARTIAL: "◐"}
#: What each status means, shown under the report's verdict table.
LEGEND = {GREEN: "meets the outside reference", AMBER: "usable, with the caveat given",
          RED: "not to be used as physics: a placeholder, beyond the red line, a failed "
          "check or a stage that did not finish", NA: "does not apply (reason given)"}
#: Shown under the table where a stage did not run.
NOT_RUN_LEGEND = ("no artifact of this stage in the run directory: the run stopped "
                  "before it (--until) or it failed")
COLOUR = {GREEN: "#1a7f37", AMBER: "#b35900", RED: "#c62828", NA: "#777777",
          NOT_RUN: "#777777", PARTIAL: "#b35900"}


@dataclass(frozen=True)
class Threshold:
    """``green`` up to ``green``, ``amber`` up to ``amber``, else ``red`` (reversed where
    ``higher_is_better``); ``unit`` for the reasons, ``why`` for the reader."""

    green: float
    amber: float
    unit: str
    why: str
    higher_is_better: bool = False

    def grade(self, value: float) -> str:
        if self.higher_is_better:
            return GREEN if value >= self.green else AMBER if value >= self.amber else RED
        return GREEN if value <= self.green else AMBER if value <= self.amber else RED

    def bound(self, status: str, fmt: str = "g") -> str:
        """The limit the value was compared with, as text (``<= 10`` / ``> 30``; ``fmt``
        formats the limit, e.g. ``".0%"``: ``< 50%``)."""
        if self.higher_is_better:
            op, lim = {GREEN: (">=", self.green), AMBER: ("<", self.green),
                       RED: ("<", self.amber)}[status]
        else:
            op, lim = {GREEN: ("<=", self.green), AMBER: (">", self.green),
                       RED: (">", self.amber)}[status]
        return f"{op} {lim:{fmt}}"


#: Every threshold, with why it has its value.
THRESHOLDS: dict[str, Threshold] = {
    "energy_mae": Threshold(
        10.0, 30.0, "meV/atom", "test energy MAE on held-out DFT frames; the mlearn "
        "benchmark's potentials reach 3-11 meV/atom on the Mo test set (Zuo et al. 2020), "
        "10 is the issue's target, above 30 the energy landscape is qualitatively off"),
    "force_mae": Threshold(
        0.25, 0.5, "eV/Å", "test force MAE; mlearn Mo SNAP 0.18, qSNAP 0.18, GAP 0.16 "
        "eV/Å; twice that still gives stable MD, beyond 0.5 dynamics are not trustworthy"),
    "ensemble": Threshold(
        2, 1, "models", "at least two models give a model deviation and a property "
        "spread; one model carries no uncertainty", higher_is_better=True),
    "a0": Threshold(
        0.01, 0.03, "relative", "lattice constant vs the data's own DFT a0 (its E(V) or "
        "zero-pressure fit); good potentials are within 1%, 3% distorts every length "
        "downstream (b, cells)"),
    "cij": Threshold(
        0.10, 0.25, "relative", "C11, C12, C44 vs the cubic fit of the data's Elastic "
        "cells; 10% is the issue's target (mlearn potentials: 1-10%), beyond 25% the "
        "shear modulus that scales the DD is not the material's"),
    "nve_drift": Threshold(
        1e-4, 1e-3, "eV/atom/ps", "NVE energy drift; a conservative force field "
        "with a 1 fs step drifts < 1e-4 eV/atom/ps, 1e-3 heats the crystal by ~10 K/ns"),
    "measured_points": Threshold(
        1.0, 0.5, "fraction", "glide points whose replicas gave a velocity (others: "
        "dislocation lost, left the plane, too hot, unresolved)", higher_is_better=True),
    "replica_ci": Threshold(
        0.25, 0.5, "relative", "median 95% CI half-width of a point's velocity over its "
        "replicas, relative to the velocity: replicas agree within 25%"),
    # A steadily gliding core gives first-half / second-half velocity ~1 within noise;
    # each half's velocity carries ~10-20% error, so 0.85 is ~1 sigma below steady. An
    # edge loaded suddenly accelerates with a ~1 ps time constant (its inertia; mlearn Mo
    # SNAP, 300 K, 250 MPa): 200 + 1000 steps at 2 fs give ~0.75 and ~75% of the steady
    # velocity; below 0.6 the fit is mostly the transient.
    "steady_glide": Threshold(
        0.85, 0.6, "x", "median over the measured points of the first-half over the "
        "second-half velocity of the fitted frames: ~1 at steady glide (0.85 is ~1 sigma "
        "of a half's 10-20% error); below, the dislocation still accelerates after the "
        "load and the velocities (and the drag from them) are below steady state; graded "
        "on both sides (r above 1/0.85: the line slows down, held by something besides "
        "the drag)",
        higher_is_better=True),
    "mobility_r2": Threshold(
        0.95, 0.8, "R²", "the chosen law's R² on the MD velocities it was fitted to (for "
        "a law with as many coefficients per curve as points, e.g. the neural one on a "
        "few stresses, a check that its training converged, not of the physics)",
        higher_is_better=True),
    "glide_law_p": Threshold(
        0.05, 0.001, "p", "probability of a chi-square at least as large as that of the "
        "MD velocities about the fitted glide laws (drag for edges, kink pair for screws), "
        "from the velocities' own errors: below 5% the MD does not follow the law within "
        "its errors (a point off the trend, or errors too small); below 0.1% the law is "
        "the wrong shape for the data", higher_is_better=True),
    "drag_rel_err": Threshold(
        0.2, 0.5, "relative", "standard error of the edge drag B over B; the issue asks "
        "laws to recover B within their stated uncertainty, 50% leaves the order only"),
    "mobility_rows": Threshold(
        3, 2, "points", "MD velocities the law is fitted to: a line through two points "
        "has no residual to judge it by", higher_is_better=True),
    "dislocations": Threshold(
        20, 5, "dislocations", "fewest dislocations left at the end of a DD realisation: "
        "a flow stress from a handful is one configuration, not a statistic",
        higher_is_better=True),
    "out_of_range": Threshold(
        0.001, 0.05, "fraction", "evaluations outside a learned model's training range "
        "(clamped or extrapolated): none is the reference, 5% means part of the answer "
        "is extrapolation"),
    "glide_share": Threshold(
        0.5, 0.1, "fraction", "share of the DD's plastic strain that dislocations glide at "
        "the mobility law's velocities (or that the law times: a clock of bow-out times, "
        "bow-out or overstress nucleation), the rest inserted with the sources' dipoles "
        "on a typed nucleation clock: below half, the flow stress is the nucleation "
        "rule's more than the MD's; below 10 %, the DD barely uses its mobility input. "
        "Necessary for the MD's drag to set the flow stress, not sufficient: the drag "
        "probe measures that directly",
        higher_is_better=True),
    "taylor_alpha": Threshold(
        1.0, 3.0, "", "Taylor α = τ/(μ b √ρ); measured 0.1-1 in metals (0.2-0.5 "
        "typical); outside, the DD's strengths or densities are off. Graded on both "
        "sides: green 0.1-1, amber 0.05-0.1 or 1-3, red beyond"),
    "realisations": Threshold(
        2, 1, "realisations", "two or more realisations measure the scatter the "
        "surrogate and the band need", higher_is_better=True),
    "band_dof": Threshold(
        4, 2, "degrees of freedom", "the load band's effective degrees of freedom "
        "(Welch-Satterthwaite over its terms): below 4 its k exceeds 2.8 (Student's t at "
        "95 %) and the band's width is itself uncertain by more than a third; below 2 "
        "(k > 4.3) it rests on one or two fits: more DD microstructures narrow it",
        higher_is_better=True),
    "heldout_vs_scatter": Threshold(
        1.25, 2.0, "x scatter", "surrogate held-out RMS error over the DD realisation "
        "scatter (RMS distance of a realisation from its condition's mean): a model at "
        "the mean has ratio ~1, so 1.25 allows for few held-out paths"),
    "time_step": Threshold(
        0.02, 0.2, "relative", "RMS change of the surrogate's stress along its training "
        "paths when its time step is halved, over its yield stress: a law integrated in "
        "time converges (~0); a discrete-time fit (source clocks firing at step ends) "
        "answers differently at another step, and the FEM must step at the fitted dt"),
    "fem_time_step": Threshold(
        1.05, 2.0, "x", "the FEM's time step over the nearest end of the range the "
        "surrogate was fitted at (a time-step-dependent surrogate; 1 = inside)"),
    "quasi_static": Threshold(
        10.0, 1.0, "transits", "the FEM's loading time over the time a longitudinal "
        "elastic wave takes to cross the body (its largest extent over c_l = "
        "√((K + 4G/3)/ρ), the Properties' moduli and density): the solver seeks "
        "equilibrium without inertia, which holds when the load takes many transits; "
        "below one the body's inertia, not its material, carries the load at that rate. "
        "It compares times only: a ramp that starts abruptly also launches a wave of "
        "ρ c_l v, which a yielded material's load can be small against, and a body's "
        "lowest mode (a free ring's breathing) can be slower than one transit of its "
        "largest extent",
        higher_is_better=True),
    "fem_elastic": Threshold(
        0.01, 0.05, "relative", "the first, elastic load step against the analytic "
        "elastic solution with the material's own moduli (the cylinder: Lamé); the "
        "example's quadratic mesh is within 0.1 %, 1 % is a mesh too coarse, beyond 5 % "
        "the boundary conditions, the load measure or the material's elastic tangent "
        "are wrong"),
    "limit_load": Threshold(
        0.02, 0.05, "relative", "FEM limit load vs the analytic (2/√3) σ0 ln(Re/Ri) for "
        "perfectly plastic J2 on the cylinder; the coarse example mesh is within 1%"),
}


@dataclass
class Check:
    """One check of one stage: ``reason`` is one short sentence (the value, the limit it
    was graded against and the decisive fact; the report's verdict table shows it),
    ``detail`` the rest of the account, where there is more (the report lists it below
    the table)."""

    name: str
    status: str
    reason: str
    value: Any = None
    detail: str = ""


@dataclass
class StageVerdict:
    """One stage's checks and its verdict (worst check)."""

    stage: str
    kind: str
    checks: list[Check] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return worst(c.status for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "kind": self.kind, "verdict": self.verdict,
                "checks": [asdict(c) for c in self.checks]}


def worst(statuses: Any) -> str:
    """The worst of ``statuses`` (``n/a`` when all are n/a or there are none)."""
    out = NA
    for s in statuses:
        if RANK[s] > RANK[out]:
            out = s
    return out


def _sentence(clauses: list[str]) -> str:
    """``clauses`` joined by semicolons as one sentence (a check's detail); "" if none.
    A symbol that opens it keeps its case (σ_ref is not Σ_ref)."""
    text = "; ".join(c for c in clauses if c)
    if not text:
        return ""
    return (text[0].upper() if text[0].isascii() else text[0]) + text[1:] + "."


def _sentences(parts: list[str]) -> str:
    """Each of ``parts`` a sentence of its own (a check's detail); "" if none."""
    return " ".join(_sentence([p]) for p in parts if p)


def graded(name: str, key: str, value: Any, what: str, fmt: str = ".3g",
           na: str = "not measured") -> Check:
    """A check of ``value`` against :data:`THRESHOLDS` ``[key]``: reason ``{what}
    {value} {unit} ({bound})``, the unit once (after the value, left out where ``what``
    already names it); ``n/a: {na}`` when the value is missing."""
    v = _num(value)
    if v is None:
        return Check(name, NA, na)
    t = THRESHOLDS[key]
    st = t.grade(v)
    unit = (f" {t.unit}" if t.unit and t.unit not in ("relative", "fraction")
            and t.unit not in what else "")
    if "%" in fmt:
        return Check(name, st, f"{what} {v:{fmt}} ({t.bound(st, fmt)})", v)
    return Check(name, st, f"{what} {v:{fmt}}{unit} ({t.bound(st)})", v)


def span(lo: float, hi: float, unit: str, fmt: str = ".3g") -> str:
    """``lo to hi unit``, or the one value where both ends are equal (as printed): a
    hyphen beside a negative exponent (``7e-10-7e-10``) reads as arithmetic."""
    a, b = f"{lo:{fmt}}", f"{hi:{fmt}}"
    return f"{a} {unit}" if a == b else f"{a} to {b} {unit}"


def model_gate(name: str, record: Mapping[str, Any], na: str, passed: str, failed: str,
               overridden: str) -> Check:
    """The row of the checks a stage ran on its model before using it, from the stage's
    ``record`` (``{"passed": bool, "overridden": bool, ...}``, empty when none was
    kept): ``n/a`` ``{na}``; green ``{passed}``; red ``{failed}``, followed by
    ``{overridden}`` when the model was used anyway."""
    if not record:
        return Check(name, NA, na)
    if record.get("passed"):
        return Check(name, GREEN, passed)
    return Check(name, RED, failed + (overridden if record.get("overridden") else ""))


def _json(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _inconsistent(ref: Mapping[str, Any]) -> dict[str, str]:
    """``{key: "DFT stress ... and energy ... disagree ..."}`` for the C_ij whose stress and
    energy fits of the same cells disagree (``dft_reference`` ``cij_stress_energy``,
    :func:`scalebridge.potentials.crystal.compare_cij`)."""
    out = {}
    for k, c in (ref.get("cij_stress_energy") or {}).items():
        if isinstance(c, Mapping) and c.get("agree") is False:
            out[k] = (f"DFT stress {c['stress_gpa']:.4g} GPa and energy "
                      f"{c['energy_gpa']:.4g} GPa of the same cells disagree (energy used)")
    return out


# ---------------------------------------------------------------------- per kind
def dataset_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    n = (summary.get("n_frames") or {})
    test = n.get("test")
    out = [Check("test_split", GREEN if test else AMBER,
                 f"{test} held-out test frames" if test else
                 "no held-out test frames: the potential cannot be scored on DFT", test)]
    ref = ((summary.get("crystal") or {}).get("dft_reference") or {})
    have = [k for k in ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa") if ref.get(k)]
    split = _inconsistent(ref)
    if len(have) == 4 and split:
        out.append(Check("dft_reference", AMBER, "a0 and C_ij from the data, but " + "; ".join(
            f"{k.removesuffix('_gpa').upper()}: {v}" for k, v in split.items())))
    elif len(have) == 4:
        src = (ref.get("source") or {}).get("c11_gpa", "the data's Elastic cells")
        out.append(Check("dft_reference", GREEN, f"a0 and C_ij from the data ({src})"))
    elif "crystal" not in summary:
        out.append(Check("dft_reference", NA, "the data set records no crystal"))
    else:
        out.append(Check("dft_reference", AMBER, "the data give only "
                         f"{', '.join(have) or 'no values'}: properties are compared with "
                         "the labelled fallback table"))
    return out


def potential_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    na = "not scored on held-out DFT frames (evaluate = false or no test split)"
    out = [graded("energy_mae", "energy_mae", summary.get("energy_mae_mev_per_atom"),
                  "test energy MAE", ".3g", na=na),
           graded("force_mae", "force_mae", summary.get("force_mae_ev_a"),
                  "test force MAE", ".3g", na=na)]
    n = _num(summary.get("models"))
    out.append(Check("ensemble", THRESHOLDS["ensemble"].grade(n) if n else NA,
                     f"{n:.0f} model(s)" + ("" if (n or 0) >= 2 else
                                            ": no model deviation, no property spread")
                     if n else "model count unknown", n))
    return out


def properties_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    props = _json(path / "properties.json") or dict(summary)
    dft = props.get("dft") or {}
    label = "the data's DFT" if dft.get("source") else "the labelled DFT table"
    out = []
    split = _inconsistent(dft)
    for key, name, th in (("a0_a", "a0", "a0"), ("c11_gpa", "c11", "cij"),
                          ("c12_gpa", "c12", "cij"), ("c44_gpa", "c44", "cij")):
        unit = " Å" if key == "a0_a" else " GPa"
        m, d = _num(props.get(key)), _num(dft.get(key))
        if m is None or not d:
            out.append(Check(name, NA, f"no DFT {key} to compare with"))
            continue
        rel = (m - d) / d
        t = THRESHOLDS[th]
        st = t.grade(abs(rel))
        pct = f"{100 * rel:+.1f}" if abs(rel) >= 5e-4 else f"{100 * rel:+.2f}"
        why = (f"{m:.4g}{unit} vs {label} {d:.4g}{unit}: {pct}% (green within "
               f"{100 * t.green:g}%, red beyond {100 * t.amber:g}%)")
        if key in split:  # a reference that contradicts itself cannot pass a potential
            st = AMBER if st == GREEN else st
            why += f"; {split[key]}"
        out.append(Check(name, st, why, rel))
    drift = _num(props.get("nve_drift_ev_per_atom_ps"))
    nve = graded("nve_drift", "nve_drift", abs(drift) if drift is not None else None,
                 "NVE drift", ".2g", na="no NVE run")
    if drift is not None:   # graded on |drift|; the reason keeps the drift's sign
        t = THRESHOLDS["nve_drift"]
        nve.reason = f"NVE drift {drift:.2g} {t.unit} (|drift| {t.bound(nve.status)})"
    out.append(nve)
    out.append(deviation_check(props.get("max_devi_f_ev_a"),
                               props.get("devi_threshold_ev_a"), bool(props.get("flagged"))))
    return out


def deviation_check(max_devi: Any, threshold: Any, flagged: bool | None = None,
                    where: str = "", na: str = "one model: no model deviation") -> Check:
    """``model_deviation``: the potential ensemble's largest force deviation (eV/Å) ``where``
    it ran, against the threshold above which its frames go out as DFT candidates; amber
    above it (``flagged``, or the value beyond the threshold), n/a with ``na``."""
    lim, dev = _num(threshold), _num(max_devi)
    bound = f" {lim:.3g} eV/Å" if lim is not None else ""
    if flagged is None:
        flagged = dev is not None and lim is not None and dev > lim
    if flagged:
        return Check("model_deviation", AMBER, f"model deviation{where} "
                     + (f"{dev:.3g} eV/Å " if dev is not None else "")
                     + f"above the threshold{bound}: frames exported as DFT candidates",
                     dev)
    if dev is not None:
        return Check("model_deviation", GREEN, f"model deviation{where} {dev:.3g} eV/Å "
                     f"below the threshold{bound}", dev)
    return Check("model_deviation", NA, na)


def glide_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    pts = _rows(path / "velocity.csv")
    n, good = summary.get("points") or len(pts), summary.get("points_measured")
    if good is None:
        good = sum(1 for p in pts if p.get("status", "ok") == "ok")
    bad = [f"{p['character']} {float(p['temperature_k']):g} K "
           f"{float(p['tau_mpa']):g} MPa: {p.get('status')}" for p in pts
           if p.get("status", "ok") != "ok"]
    frac = good / n if n else None
    if frac is None:
        out = [Check("measured_points", NA, "no glide points")]
    else:
        out = [Check("measured_points", THRESHOLDS["measured_points"].grade(frac),
                     f"{good} of {n} glide points measured" + (
                         f" ({'; '.join(bad[:3])}{' ...' if len(bad) > 3 else ''})"
                         if bad else ""), frac)]
    out += replica_checks(pts, _num(summary.get("replicas_min")))
    out.append(steady_glide_check(pts))
    out.append(members_check(summary))
    # the loaded core is where a learned potential leaves its data first
    out.append(deviation_check(summary.get("max_devi_f_ev_a"),
                               summary.get("devi_threshold_ev_a"),
                               where=" in the glide runs", na=(
                                   "one model, or an artifact from before the glide "
                                   "runs recorded it: no model deviation at the cores")))
    out.append(characters_check(summary, pts))
    return out


def replica_checks(pts: list[dict[str, str]], reps: float | None) -> list[Check]:
    """``replica_agreement``: the median 95% CI of a point's velocity over its replicas,
    relative to the velocity, per character (``replica_agreement_<character>`` each when
    both were measured: a few noisy screw points must not hide behind many edge ones,
    nor spoil them)."""
    rel: dict[str, list[float]] = {}
    least: dict[str, int] = {}
    for p in pts:
        v, ci = _num(p.get("velocity_m_s")), _num(p.get("velocity_ci95_m_s"))
        n = int(float(p.get("replicas_ok") or p.get("replicas") or 1))
        if p.get("status", "ok") == "ok" and v and ci is not None and n >= 2:
            c = p.get("character") or "edge"
            rel.setdefault(c, []).append(abs(ci / v))
            least[c] = min(least.get(c, n), n)
    if not rel:     # no point with two replicas measured
        return [Check("replica_agreement", AMBER if pts else NA,
                      "one replica per point: agreement not measured (set replicas >= 2)"
                      if pts else "no glide points", reps)]
    t = THRESHOLDS["replica_ci"]
    # named by character wherever both were measured, so that the cross-stage rule
    # (_unused_character) can tell whose it is
    both = len({p.get("character") for p in pts if p.get("status", "ok") == "ok"}) > 1
    out = []
    for c, r in sorted(rel.items()):
        med = float(statistics.median(r))     # an even count: the middle two's mean
        who = f"{c}: " if both else ""
        out.append(Check("replica_agreement" + (f"_{c}" if both else ""),
                         t.grade(med), f"{who}{least[c]}+ replicas per point, median 95% CI "
                         f"±{100 * med:.0f}% of the velocity over {len(r)} point"
                         f"{'s' if len(r) > 1 else ''} (green within {100 * t.green:g}%)",
                         med))
    return out


def characters_check(summary: Mapping[str, Any], pts: list[dict[str, str]]) -> Check:
    """``characters``: whether both dislocation characters were measured. One alone is
    amber whatever its numbers: the mobility law, and every stage after it, then describe
    that character's glide only, and in BCC the one left out may be the one that sets the
    flow stress (the screw, below its Peierls stress)."""
    got = sorted({p["character"] for p in pts
                  if p.get("status", "ok") == "ok" and p.get("character")})
    if not got:
        return Check("characters", NA, "no glide point measured")
    if set(got) >= {"edge", "screw"}:
        taus = {c: sorted({float(p["tau_mpa"]) for p in pts if p.get("character") == c
                           and p.get("status", "ok") == "ok" and p.get("tau_mpa")})
                for c in ("edge", "screw")}
        one = ("; one screw stress: its drag there, no kink-pair law"
               if len(taus["screw"]) == 1 else "")
        return Check("characters", GREEN, "edge and screw glide measured (" + "; ".join(
            f"{c} at {len(t)} stress{'es' if len(t) > 1 else ''}"
            + (f", {'/'.join(f'{x:g}' for x in t)} MPa" if t else "")
            for c, t in taus.items()) + one + ")")
    only = got[0]
    if str(summary.get("lattice", "")).lower() == "bcc":
        why = ("the DD and everything after it describe edge glide alone; in BCC the "
               "screw's Peierls barrier sets the flow stress at low temperature" if only ==
               "edge" else "the fast, drag-controlled edges are not measured")
    else:
        why = f"the law covers {only} glide alone"
    other = "screw" if only == "edge" else "edge"
    return Check("characters", AMBER, f"{only} glide only: the {other}'s mobility was not "
                 "measured; set [md.mobility] characters = [\"edge\", \"screw\"]",
                 detail=_sentence([why]))


def members_check(summary: Mapping[str, Any]) -> Check:
    """``ensemble_members``: whether the glide replicas ran on two or more members of
    the potential ensemble, so the replica scatter (and the drag error, and the band's
    mobility term) carries the potential's spread in the mobility."""
    used, n = _num(summary.get("members_driving")), _num(summary.get("ensemble_members"))
    if used is None or n is None:
        return Check("ensemble_members", NA, "not recorded (glide runs from before the "
                     "replicas alternated the ensemble's members)")
    if n < 2:
        return Check("ensemble_members", NA, "a single-model potential: no ensemble spread "
                     "to carry into the mobility", used)
    if used >= 2:
        return Check("ensemble_members", GREEN, f"the replicas ran on {used:.0f} of the "
                     f"{n:.0f} ensemble members: their scatter carries the potential's "
                     "spread in the mobility", used)
    return Check("ensemble_members", AMBER, f"every run on one of {n:.0f} ensemble members "
                 "(one replica per point, or ensemble_replicas = false): the potential's "
                 "spread in the mobility is not carried", used)


def steady_glide_check(pts: list[dict[str, str]]) -> Check:
    """``steady_glide``: the median ``acceleration_ratio`` (first-half / second-half
    velocity of a run's fitted frames, median over a point's replicas) over the measured
    points of ``velocity.csv`` rows; ``n/a`` for a table without the column (an artifact
    from before it) or without a value."""
    if not pts or "acceleration_ratio" not in pts[0]:
        return Check("steady_glide", NA, "velocity.csv has no acceleration_ratio (an "
                     "artifact from before it)" if pts else "no glide points")
    ratios = sorted(r for p in pts if p.get("status", "ok") == "ok"
                    and (r := _num(p.get("acceleration_ratio"))) is not None)
    if not ratios:
        return Check("steady_glide", NA, "no measured point with both half velocities")
    n = len(ratios)
    med = (ratios[n // 2] + ratios[(n - 1) // 2]) / 2
    what = f"first-half velocity {med:.2f} x the second (median of {n} point" + (
        "s)" if n > 1 else ")")
    return steadiness_check(med, "steady glide: {what}", "glide still accelerating: "
                            "{what}; the fitted velocities, and the drag from them, are "
                            "below steady state: lengthen equil_steps/run_steps (green "
                            "{bound})", what)


#: The reason of a ``steady_glide`` ratio above 1 beyond its green bound.
DECELERATING = ("glide slowing down: {what}; something besides the drag holds the line "
                "back in the second half (an obstacle, its periodic image, the end of the "
                "glide region): the velocities are not free glide, see the dumps (green "
                "{bound})")


def steadiness_check(ratio: float, steady: str, accelerating: str, what: str,
                     decelerating: str = DECELERATING) -> Check:
    """``steady_glide`` graded on a median first-half / second-half velocity ``ratio``
    with the ``steady_glide`` thresholds on both sides of 1 (r and 1/r: a line that slows
    down is no steadier than one that speeds up); the reason is ``steady`` (green),
    ``accelerating`` (r < 1) or ``decelerating`` (r > 1) with ``{what}`` and the green
    ``{bound}`` filled in."""
    t = THRESHOLDS["steady_glide"]
    slow = ratio > 1.0
    st = t.grade(1.0 / ratio if slow else ratio) if ratio > 0 else RED
    text = steady if st == GREEN else decelerating if slow else accelerating
    bound = f"<= {1.0 / t.green:.3g}" if slow else t.bound(GREEN)
    return Check("steady_glide", st, text.format(what=what, bound=bound), ratio)


def deformation_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    rho = _num(summary.get("max_density_m2"))
    if rho is None:
        return [Check("dislocations", NA, "no DXA density recorded")]
    if rho > 0:
        return [Check("dislocations", GREEN, f"DXA found dislocations: max density "
                      f"{rho:.3g} m^-2", rho)]
    return [Check("dislocations", AMBER, "DXA found no dislocation: nothing nucleated at "
                  "this cell size, strain and rate (the deformation tells nothing about "
                  "dislocations)", rho)]


def glide_share_check(summary: Mapping[str, Any]) -> Check:
    """How much of the DD's plastic strain its mobility input sets: the glided share
    (``1 -`` the sources' net inserted share at the reference condition, within [0, 1]),
    or, where the law times the insertions (a clock of bow-out times, bow-out, overstress
    nucleation), green on that ground; the drag probe's response, the direct measure, beside it."""
    rec = summary.get("plastic_strain_inserted")
    if not isinstance(rec, Mapping):
        return Check("glide_share", NA, "the sources' inserted plastic strain was not "
                     "recorded (a DD run from before it was)")
    ins = _num(rec.get("share"))
    if ins is None:
        return Check("glide_share", NA, "no plastic strain at the reference condition to "
                     "share out")
    probe = _drag_response(summary)
    tail = f"; B x {probe[0]:g} moves the flow stress by {probe[1]}" if probe else ""
    timed_by = str(rec.get("timed_by", ""))
    clock = summary.get("nucleation")
    rule = clock.get("rule") if isinstance(clock, Mapping) else None
    # every rule but the typed clock lets the law time the insertions (runs from before
    # the rule was recorded say so only in the prose)
    law_timed = rule != "time" if rule else "mobility law" in timed_by
    law_note = ""
    if law_timed:
        # the law times the insertions: green where the probe sees the flow stress
        # answer B (a clock of bow-out times carries a typed count: only the probe
        # shows that the law's part matters), else graded on the glided share
        how = timed_by.partition("(")[2].rstrip(")") or "bow-out"
        dp = summary.get("drag_sensitivity") or {}
        s_b, err = _num(dp.get("dlnsigma_dlnb")), _num(dp.get("dlnsigma_dlnb_err"))
        # no probe (s_b None: _drag_response gave none) or one it resolves: green
        if s_b is None or err is None or abs(s_b) > 2 * err:
            return Check("glide_share", GREEN, f"the mobility law times every source "
                         f"insertion ({how}; net {ins:.0%} of the plastic strain) and moves "
                         "the rest" + (tail or "; no drag probe ran to measure the flow "
                                       "stress's response"))
        law_note = (f"; the law times the insertions ({how}), but the drag probe does not "
                    "resolve a response")
    share = min(max(1.0 - ins, 0.0), 1.0)
    t = THRESHOLDS["glide_share"]
    st = t.grade(share)
    reason = (f"glide at the mobility law's velocities carries {share:.0%} of the plastic "
              f"strain ({t.bound(st, '.0%')}), the sources' inserted dipoles {ins:.0%} "
              f"(net){law_note}{tail}")
    lo, hi = _num(rec.get("share_min")), _num(rec.get("share_max"))
    every = (f" Over every realisation the inserted share is {span(lo, hi, '', '.0%')}."
             .replace(" .", ".") if lo is not None and hi is not None else "")
    when = (f"on {timed_by}; the drag probe does not resolve the flow stress's response "
            "to B, so the glided share is graded" if law_note else
            f"after {timed_by or 'its nucleation time'}, whatever the mobility law: that "
            "part of the plastic strain is timed by the clock, not by the law")
    detail = (f"Each source firing inserts a dipole L_nuc = mu b/(2 pi (1 - nu) tau_src) wide "
              f"{when}.{every} "
              "A glided share is necessary for the MD's drag to set the flow stress, not "
              "sufficient: the drag probe's dln sigma/dln B is the direct measure. With "
              "nucleation = \"bow_out_clock\", \"bow_out\" or \"overstress\" the law "
              "times the insertions "
              "(benchmarks/dd_drag_response.py and dd_nucleation.py measure them).")
    return Check("glide_share", st, reason, share, detail)


def _neural_coefficients(path: Path) -> int | None:
    """Coefficients per (character, temperature) curve of the saved NeuralMobility in
    ``path`` (``mobility.json``: 1 + 4 n_terms), None if it is not one."""
    try:
        return 1 + 4 * int(_json(path / "mobility.json")["config"]["n_terms"])
    except (KeyError, TypeError, ValueError):
        return None


def _points_per_curve(fit: Mapping[str, Any]) -> dict[str, list[int]] | None:
    """MD points of each (character, temperature) curve of a MobilityLaw's ``fit.json``
    ``fit`` (its drag fits' ``by_temperature`` counts), per character, None if it has
    none."""
    try:
        counts = {c: [int(r["n_points"]) for r in f["by_temperature"]]
                  for c, f in fit["drag"].items()}
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    counts = {c: n for c, n in counts.items() if n}
    return counts or None


def _points_text(counts: Mapping[str, list[int]]) -> str:
    """``edge 3, screw 1``: each character's MD points per curve (``2-4`` where its
    temperatures' curves differ)."""
    return ", ".join(f"{c} {min(n)}" if min(n) == max(n) else f"{c} {min(n)}-{max(n)}"
                     for c, n in counts.items())


def glide_law_consistency(fit: Mapping[str, Any]) -> Check:
    """``glide_law``: the MD velocities against the physical glide laws fitted to them
    (a MobilityLaw's ``fit.json`` ``fit``: per character the drag fit's and, for screws,
    the kink-pair fit's reduced χ² and degrees of freedom), as the probability of a χ² at
    least that large. Unlike a fitted law's R², this fails when the data do not follow
    the physics within their own errors; with no degree of freedom left (as many
    parameters as points) it does not apply."""
    from scipy.stats import chi2

    if not fit:
        return Check("glide_law", NA, "no fit.json with the glide laws' fits")
    fits = [(f"{c} drag", f) for c, f in (fit.get("drag") or {}).items()]
    if fit.get("kink_pair"):
        fits.append(("screw kink pair", fit["kink_pair"]))
    total, dof, parts, chosen_among = 0.0, 0, [], 0
    for what, f in fits:
        r, nu = _num(f.get("chi2_red")), _num(f.get("dof"))
        if r is None or not nu or nu <= 0:
            continue
        total, dof = total + r * nu, dof + int(nu)
        parts.append(f"{what} χ²_red {r:.2f} on {int(nu)} dof")
        chosen_among = max(chosen_among, len(f.get("model") or []))
    if dof == 0:
        return Check("glide_law", NA, "the glide laws have as many parameters as MD "
                     "points: no degree of freedom left to test them")
    if dof < 3:
        # a form picked by its score among several has used part of what is left
        parts.append(f"{dof} degree{'s' if dof > 1 else ''} of freedom" + (
            f", the form chosen by its score among {chosen_among} candidates"
            if chosen_among > 1 else "") + ": a weak test; more stresses per "
            "(character, temperature) make it a strong one")
    p = float(chi2.sf(total, dof))
    t = THRESHOLDS["glide_law_p"]
    st = t.grade(p)
    verdict = ("the MD velocities follow the physical glide law within their errors"
               if st == GREEN else "the MD velocities stray from the glide law beyond "
               "their errors")
    return Check("glide_law", st, f"{verdict}: p = {p:.2g} on {dof} dof ({t.bound(st)})",
                 p, detail=_sentence(parts))


def mobility_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    law = str(summary.get("law", ""))
    r2 = summary.get("neural_r2") if "Neural" in law else summary.get("drag_r2")
    fit = _json(path / "fit.json")
    coef, per = _neural_coefficients(path), _points_per_curve(fit)
    what = f"{law or 'law'} R² on the MD velocities"
    if "Neural" in law and coef and per and max(max(n) for n in per.values()) <= coef:
        # it interpolates its points: R² ~ 1 says the training converged, nothing more
        what = f"training converged: {law} ({coef} coefficients per curve; MD points " \
               f"per curve: {_points_text(per)}) R²"
    out = [graded("fit_r2", "mobility_r2", r2, what, ".3f", na="no fit quality recorded"),
           glide_law_consistency(fit)]
    b0, err = _num(summary.get("drag_edge_b0_pa_s")), _num(summary.get("drag_edge_b0_err_pa_s"))
    out.append(graded("drag_uncertainty", "drag_rel_err",
                      abs(err / b0) if b0 and err is not None else None,
                      f"edge drag B = {b0:.3g} Pa s, relative error" if b0 else "",
                      ".0%", na="no edge drag fitted"))
    out.append(graded("data_points", "mobility_rows", summary.get("n_rows"),
                      "MD velocity points:", ".0f"))
    out.append(fitted_glide_check(summary))
    return out


def fitted_glide_check(summary: Mapping[str, Any]) -> Check:
    """``steady_glide`` of a MobilityLaw: whether the MD velocities it was fitted to come
    from steady glide (median first-half / second-half velocity, ``steady_glide``
    thresholds). An accelerating line's velocities are low, so its B is high by more
    than the fit's error says: the law inherits the MD's caveat."""
    r = _num(summary.get("glide_acceleration_ratio"))
    if r is None:
        return Check("steady_glide", NA, "the velocity table has no acceleration ratio (a "
                     "table from elsewhere, or from before md measured it)")
    return steadiness_check(r, "fitted to steady glide: {what}", "fitted to glide still "
                            "accelerating ({what}): its velocities are below steady state "
                            "and the drag above it, by more than the fit's error; lengthen "
                            "the md runs (green {bound})",
                            f"first-half velocity {r:.2f} x the second (median)")


def _drag_response(summary: Mapping[str, Any]) -> tuple[float, str] | None:
    """The DD's drag probe (``drag_sensitivity``) as (its factor on B, ``dln sigma/dln B
    = x ± err``), None without one."""
    probe = summary.get("drag_sensitivity")
    if not isinstance(probe, Mapping) or _num(probe.get("dlnsigma_dlnb")) is None:
        return None
    err = _num(probe.get("dlnsigma_dlnb_err"))
    return (float(probe.get("factor", 2)), f"dln sigma/dln B = {probe['dlnsigma_dlnb']:.2f}"
            + (f" ± {err:.2f}" if err is not None else ""))


def _dd_out_of_range_context(summary: Mapping[str, Any]) -> list[str]:
    """What the DD did with its out-of-range mobility evaluations (its ``out_of_range``
    policy) and, from its drag probe, how much its flow stress follows the law's
    velocities at all: the evidence for whether the extrapolated share matters, as
    clauses of the check's detail."""
    out = []
    if summary.get("out_of_range_policy") == "clamp":
        out.append("clamped at the law's top stress, i.e. at the velocity the MD measured "
                   "there")
    probe = _drag_response(summary)
    if probe is not None:
        clock = (summary.get("nucleation") or {}).get("rule") == "bow_out_clock"
        out.append(f"the drag probe (every velocity / {probe[0]:g}) moves the flow stress "
                   f"by {probe[1]}" + (" (the sources' clock of bow-out times with it, "
                                       "which out-of-range evaluations do not move)"
                                       if clock else ""))
    return out


def _share(x: float) -> str:
    """A fraction as a percentage: whole percents from 10 %, two digits below."""
    return f"{100 * x:.0f} %" if x >= 0.1 else f"{100 * x:.2g} %"


def below_data_check(summary: Mapping[str, Any]) -> Check | None:
    """The DD's mobility evaluations below the lowest stress the law's data measured
    (``below_data_fraction``, the worst realisation's, ``_mean``, and the record
    ``below_data``), stated and not graded (``n/a``): below its data the law is its own
    form down to v(0) = 0 (the neural law's zero threshold, a drag law's line to its
    τ₀), an assumption, not an error: nothing there is refused or clamped, and no
    measurement says how wrong it is. The reason has the share and what the law does
    there, the detail the account (and the sources whose bow-out reads the law there).
    None for a run from before it was counted and for an analytic law (no data:
    ``applicable`` false); where the share is not known (a law fitted before its lowest
    stress was recorded) the row says so."""
    rec = summary.get("below_data")
    if not isinstance(rec, Mapping) or rec.get("applicable") is False:
        return None
    worst = _num(summary.get("below_data_fraction"))
    mean = _num(summary.get("below_data_fraction_mean"))
    lo = _num(rec.get("lowest_measured_mpa"))
    if worst is None or lo is None:
        return Check("below_data", NA, "not graded; glide evaluations below the lowest MD "
                     f"stress: {rec.get('note') or 'not known'}")
    char = str(rec.get("character") or "edge")
    how = str(rec.get("law_below") or "the law's own form down to v(0) = 0")
    reason = (f"not graded (an assumption, not an error): {_share(worst)} of glide "
              "evaluations in the worst realisation"
              + (f" ({_share(mean)} on average)" if mean is not None else "")
              + f" below the lowest MD stress, {lo:g} MPa ({char}): {how}")
    clauses = [f"below the lowest stress the MD measured for the {char} law ({lo:g} MPa) "
               f"the velocity is not data but {how}; {_share(worst)} of the DD's glide "
               "evaluations lie there in the worst realisation"
               + (f" ({_share(mean)} over the study's realisations on average)"
                  if mean is not None else "")
               + ", neither refused nor clamped: an assumption of the law's form, stated "
               "and not graded (no measurement there says how far off it is)"]
    src = _num(rec.get("sources_below_fraction"))
    clock = summary.get("nucleation")
    rule = clock.get("rule") if isinstance(clock, Mapping) else None
    tau_src = _num((summary.get("strengths_mpa") or {}).get("source"))
    if rule == "bow_out_clock" and clock.get("clock_of") == "mean_source":
        if tau_src is not None and tau_src < lo:
            clauses.append(f"the nucleation clock reads the law at the mean source "
                           f"strength, {tau_src:.3g} MPa, below that stress too")
    elif src is not None and rule in ("bow_out_clock", "bow_out"):
        clauses.append(f"{_share(src)} of the sources are weaker than {lo:g} MPa, and their "
                       "bow-out (the nucleation clock) reads the law there too")
    return Check("below_data", NA, reason, worst, _sentence(clauses))


#: How far the range probe's bound is scaled up, linearly in the exposure (fraction of
#: evaluations beyond the law's range), to the study's worst realisation: up to 3x its
#: own. An assumption: beyond it one probe does not settle the worst realisation.
PROBE_EXTRAPOLATION = 3.0


def _grade_by_range_probe(check: Check, summary: Mapping[str, Any],
                          context: list[str]) -> None:
    """Grade the DD's out-of-range evaluations by what they change, where its range
    probe measured it (``range_sensitivity``): the law as it is beyond its data (a neural
    law clamps to the velocity at its top stress, the lower bound: velocity grows with
    |τ|) and the limiting speed c_t bracket any law there, so when the probe's flow
    stress differs from the run's by less than two reruns of the n realisations differ
    (sd·√(2/n), relative), even at the probe's 95 % bound (|Δ| + 2 s.e.), no choice
    beyond the data moves the answer more than a rerun does: green, where the fraction
    is amber (beyond the red line one probe does not settle it). The probe ran at the
    reference condition while the graded fraction is the study's worst realisation, so
    its bound is scaled by the exposures' ratio worst / probed (fractions of evaluations
    beyond the range; where above 1), an assumption that the change grows linearly with
    the exposure, trusted up to :data:`PROBE_EXTRAPOLATION`: a probe that saw less than
    that share of the worst exposure does not settle it.
    Otherwise the fraction's grade stands. The reason gives the decisive numbers, the
    detail (``context`` first: the clamp, the drag probe) the probe's whole account.

    Where ``range_probe = "auto"`` found no evaluation beyond the range whose velocity
    reached the dynamics in any run of the study (``exact_zero``, not rerun), nothing
    the law could be there changes the answer, in every run: amber turns green, no
    scatter or exposure needed (red stands: that many evaluations moved by the glide
    limit, a numerical setting, rather than the law)."""
    detail = list(context)

    def done(short: str = "") -> None:
        check.reason += short
        check.detail = _sentence(detail)

    probe = summary.get("range_sensitivity")
    if not isinstance(probe, Mapping):
        return done()
    if probe.get("exact_zero") is True and probe.get("run") is False:
        return _grade_exact_zero(check, probe, detail, done)
    d, err = _num(probe.get("rel_change")), _num(probe.get("rel_change_err"))
    flow, sd = _num(summary.get("flow_stress_mpa")), _num(summary.get("flow_stress_std_mpa"))
    if d is None or err is None or not flow or sd is None:
        return done("; the range probe has no paired error (one realisation): not graded "
                    "by it")
    n = _num(probe.get("realisations")) or 1.0
    # two reruns of the n realisations differ in their mean by sd sqrt(2/n): computed
    # from the realisations' scatter, not observed reruns
    scatter = sd / flow * math.sqrt(2.0 / n)
    # the reasons say "(computed)", the details how
    computed = f"(computed: √2 × the standard error of the mean of {n:.0f} realisations)"
    c = (probe.get("limit_m_s") or {}).get((summary.get("mobility") or {}).get("character")
                                           or "edge")
    bound = abs(d) + 2 * err
    tested = _num(probe.get("out_of_range_fraction"))
    mean = _num(summary.get("out_of_range_fraction_mean"))
    worst = _num(summary.get("out_of_range_fraction"))   # the graded fraction
    rate, temp = _num(probe.get("strain_rate_s")), _num(probe.get("temperature_k"))
    where = ("the reference condition, "
             + (f"{rate:.3g} /s, " if rate is not None else "")
             + (f"{temp:g} K" if temp is not None else ""))
    moved = f"{100 * d:+.1f} ± {100 * err:.1f} %"
    probed = (
        "with every evaluation beyond the range at the limiting speed c_t"
        + (f" = {float(c):.0f} m/s" if _num(c) is not None else "")
        + f" instead (the range probe: {probe.get('realisations')} paired realisations "
        f"at {where.rstrip(', ')}"
        + (f", {100 * tested:.2g} % of their evaluations beyond the range"
           if tested is not None else "")
        + (f" against {100 * mean:.2g} % over the study" if mean is not None else "")
        + f") the flow stress moves by {moved}")
    if tested is None:
        detail.append(probed + " (the probe's exposure is not recorded)")
        return done(f"; the range probe moves the flow stress by {moved}, its exposure not "
                    "recorded: not graded by it")
    if tested == 0:
        detail.append(probed + " (the probe's realisations had no evaluation beyond the "
                      "range)")
        return done("; the range probe's realisations had no evaluation beyond the range: "
                    "it tests nothing")
    q = _num(probe.get("dt_quantile"))
    if d == 0 and err == 0:
        probed += (" (the same flow stress in every pair, to the bit: as the DD steps, no "
                   "evaluation beyond the range set a move"
                   + (f"; with dt_quantile {q:g} the fastest dislocations move max_glide "
                      "per step, a displacement limiter, whatever the law says"
                      if q is not None and q < 1 else "") + ")")
    # the probe ran at the reference condition; the graded fraction is the worst
    # realisation's: the bound scales with the exposure where that is larger
    scale = max(1.0, worst / tested) if worst is not None else 1.0
    scaled = bound * scale
    probed += f": at most {100 * bound:.1f} % (95 %)"
    if scale > 1.0:
        probed += (f"; scaled to the worst realisation's exposure {100 * worst:.3g} % / "
                   f"{100 * tested:.2g} %: at most {100 * scaled:.1f} %")
    exposed = scale <= PROBE_EXTRAPOLATION     # the same ratio the bound is scaled by
    if scaled <= scatter and check.status == AMBER and exposed:
        # green by the probe: the fraction's own (amber) grade is named as such, so the
        # reason does not read as a contradiction of its mark
        check.status = GREEN
        check.reason = re.sub(r"\((> [^)]*)\)", r"(amber on its own: \1)", check.reason,
                              count=1)
        detail.append(probed + f", within the {100 * scatter:.1f} % by which two reruns "
                      f"of the realisations would differ {computed}, so what the law does "
                      "beyond its data does not move the answer more than a rerun")
        change = (f": no change to the flow stress ({moved})" if d == 0 and err == 0
                  else f" moves the flow stress by {moved}")
        return done(f"; the range probe{change}, within the {100 * scatter:.1f} % two "
                    "reruns would differ by (computed)")
    detail.append(probed + f"; two reruns of the realisations would differ by "
                  f"{100 * scatter:.1f} % {computed}"
                  + (f"; the probe saw less than 1/{PROBE_EXTRAPOLATION:g} of the worst "
                     "realisation's exposure" if not exposed else ""))
    if check.status != AMBER:
        return done(f"; the range probe moves the flow stress by {moved}, but beyond the "
                    "red line one probe does not settle it")
    if not exposed:
        return done(f"; the range probe ({moved}) saw less than 1/{PROBE_EXTRAPOLATION:g} "
                    f"of the worst realisation's exposure: {100 * tested:.2g} % against "
                    f"{100 * worst:.3g} %")
    if bound > scatter:
        return done(f"; the range probe moves the flow stress by {moved}, up to "
                    f"{100 * bound:.1f} % at 95 %, beyond the {100 * scatter:.1f} % two "
                    "reruns would differ by (computed)")
    return done(f"; the range probe's bound, {100 * bound:.1f} % at 95 %, scaled to the "
                f"worst realisation's exposure is {100 * scaled:.1f} %, beyond the "
                f"{100 * scatter:.1f} % two reruns would differ by (computed)")


def _grade_exact_zero(check: Check, probe: Mapping[str, Any], detail: list[str],
                      done: Callable[[str], None]) -> None:
    """:func:`_grade_by_range_probe` where the probe was not rerun because its change is
    exactly zero by construction (``exact_zero``)."""
    runs = _num(probe.get("runs_checked"))
    q = _num(probe.get("dt_quantile"))
    where = f"in every step of all {runs:.0f} runs of the study" if runs else (
        "in every step of every run of the study")
    none = _num(probe.get("beyond_evaluations")) == 0
    why = (f"{where} " + ("no evaluation was beyond the law's stress range" if none else
                          "each evaluation beyond the law's stress range was cut to the "
                          "per-step glide limit or held at an obstacle and never set the "
                          "time step"
                          + (f" (the {q:g} quantile of the speeds)" if q is not None
                             else ""))
           + ", so any velocity there at least the law's (its clamp, c_t or faster) "
           "gives the same trajectories")
    detail.append(why + ": the range probe's change is exactly zero by construction and "
                  "it was not rerun (range_probe = 'auto')"
                  + ("" if none else "; those dislocations moved by the glide limit, a "
                     "numerical setting, not by the law"))
    # the exact zero is the stress bound's: evaluations outside the law's temperatures or
    # characters (in the graded fraction too) are an extrapolation it does not cover
    other = _num(probe.get("other_out_of_range_evaluations"))
    if probe.get("covers_out_of_range") is not True:
        return done("; the range probe's exact zero covers the stress bound only, and "
                    + (f"{other:.0f} evaluations lie outside the law's temperatures or "
                       "characters" if other else "this DD run does not record whether "
                       "any evaluation lies outside the law's temperatures or characters")
                    + ": the fraction's grade stands")
    if check.status == AMBER:
        check.status = GREEN
        check.reason = re.sub(r"\((> [^)]*)\)", r"(amber on its own: \1)", check.reason,
                              count=1)
        return done("; nothing the law could be beyond its range changes the answer: "
                    + why)
    return done("; beyond the red line the fraction stands, though " + why)


def dd_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    mc = summary.get("mobility_check") or {}
    out = [model_gate("check_mobility", mc, "not recorded (a DD run from before the gate)",
                      "the mobility law passes check_mobility",
                      f"the mobility law FAILED {mc.get('failed')}",
                      " and was used anyway (allow_failed_checks)")]
    fd = summary.get("final_dislocations") or []
    fewest = min(fd) if fd else None
    study = summary.get("study") if isinstance(summary.get("study"), Mapping) else {}
    if _num(study.get("min_final_dislocations")) is not None:   # every condition's
        fewest = min(x for x in (fewest, _num(study["min_final_dislocations"]))
                     if x is not None)
    out.append(graded("dislocations", "dislocations", fewest,
                      "fewest dislocations at the end of a realisation:", ".0f",
                      na="no dislocation count"))
    oor = graded("out_of_range", "out_of_range", summary.get("out_of_range_fraction"),
                 "mobility evaluations outside the law's range, in the worst "
                 "realisation:", ".2%")
    if oor.status not in (GREEN, NA):   # what was done with them, and whether it matters
        _grade_by_range_probe(oor, summary, _dd_out_of_range_context(summary))
    out.append(oor)
    # below the data: the other side of the law's range, stated beside it, not graded
    below = below_data_check(summary)
    if below is not None:
        out.append(below)
    out.append(glide_share_check(summary))
    if summary.get("truncated"):
        out.append(Check("completed", RED, "a realisation stopped at max_steps before the "
                         "final strain"))
    else:
        out.append(Check("completed", GREEN, "every realisation reached the end"))
    a = _num(summary.get("taylor_alpha"))
    if a is None:
        out.append(Check("taylor_alpha", NA, "no density to compute it"))
    else:
        st = GREEN if 0.1 <= a <= 1.0 else AMBER if 0.05 <= a <= 3.0 else RED
        out.append(Check("taylor_alpha", st, f"Taylor α = {a:.3g} at the reference "
                         "condition (apparent: its flow stress includes the drag at that "
                         "rate; metals: 0.1-1; green 0.1-1, red outside 0.05-3)", a))
    real = graded("realisations", "realisations", len(fd) if fd else None, "", ".0f",
                  na="no realisations recorded")
    per, conds = _num(study.get("realisations")), study.get("conditions")
    if real.status != NA:
        n = f"{len(fd)} realisations"
        if per is not None and isinstance(conds, list) and len(conds) > 1:
            n = (f"{per:.0f} realisations per condition, {per * len(conds):.0f} in all "
                 f"over {len(conds)} conditions")
        real.reason = f"{n} ({THRESHOLDS['realisations'].bound(real.status)})"
    out.append(real)
    return out


def _heldout_interval_text(iv: Sequence[float], h: Mapping[str, Any], unseen: str = ""
                           ) -> str:
    """The held-out split's interval of its ratio (``heldout_ratio_interval``: a percentile
    bootstrap over whole paths, ``h`` its record): a bootstrap over a few paths reaches no
    further than their own ratios, so where its ends are the lowest and highest path's it
    is said as the range over the N paths, else as the bootstrap interval it is; ``unseen``
    follows the paths (`` (microstructures no training path was run on)``)."""
    lo, hi = float(iv[0]), float(iv[1])
    per = [float(x) for x in h.get("per_path") or [] if _num(x) is not None]
    n = len(per) or _num(h.get("paths"))
    level = _num(h.get("level")) or 0.95
    if per and len(per) == 1:
        return f", one held-out path{unseen}: no interval"
    if per and math.isclose(lo, min(per), rel_tol=1e-9) and math.isclose(
            hi, max(per), rel_tol=1e-9):
        return (f", range over the {len(per)} held-out paths{unseen} {lo:.2f}-{hi:.2f}: "
                f"too few paths for a {100 * level:g} % interval (a bootstrap over them "
                "gives this range)")
    over = f"over {n:.0f} paths" if n else "over the held-out paths"
    return f", bootstrap {100 * level:g} % interval {lo:.2f}-{hi:.2f} {over}{unseen}"


def _heldout_microstructure(rec: Mapping[str, Any]) -> str:
    """`` (DD seed 3: realisations 3/9/15)``: the main split's held-out microstructure, by
    its DD seed (``paths.microstructure``), and the realisations run on it, from the
    surrogate's record (``data.heldout_microstructures``, ``data.validation``); empty where
    it has none."""
    data = rec.get("data") or {}
    ms = [int(m) for m in data.get("heldout_microstructures") or []
          if _num(m) is not None]
    if not ms:
        return ""
    real = [m.group(1) for v in data.get("validation") or []
            if (m := re.search(r"realisations/(\d+)/", str(v)))]
    return (f" (DD seed{'s' if len(ms) > 1 else ''} {'/'.join(map(str, ms))}"
            + (f": realisations {'/'.join(real)}" if real else "") + ")")


def _heldout_text(summary: Mapping[str, Any], rec: Mapping[str, Any], rmse: float | None,
                  scatter: float, pooled: float | None, folds: Any) -> tuple[str, str]:
    """(reason, detail) of ``heldout_vs_scatter``: the reason the graded ratio (pooled over
    every microstructure held out in turn where the fit was cross-validated, else the
    held-out split's) against the green line; the detail the held-out split's interval and
    yardsticks, the folds' yardsticks and the condition the model misses most."""
    green = f"(green <= {THRESHOLDS['heldout_vs_scatter'].green:g}x)"
    split = (f"held-out RMS error {rmse:.3g} MPa = {rmse / scatter:.2f} x the DD "
             f"realisation scatter {scatter:.3g} MPa" if rmse is not None else "")
    iv = summary.get("heldout_vs_scatter_interval")
    unseen = (" (microstructures no training path was run on)"
              if summary.get("heldout_split") == "microstructure" else "")
    if isinstance(iv, list) and len(iv) == 2:
        within = _heldout_interval_text(
            iv, (rec.get("metrics") or {}).get("heldout_vs_scatter") or {}, unseen)
    else:
        within = unseen
    ref = _num(summary.get("heldout_training_mean_ratio"))
    if ref is not None:   # what the DD's own training realisations score there
        within += f"; the mean of the training realisations scores {ref:.2f}x"
    other = _num(summary.get("heldout_another_realisation_ratio"))
    if other is not None:   # one DD realisation predicting another of its condition
        within += f", another DD realisation {other:.2f}x"
    detail = []
    if pooled is not None:
        each = (f", each microstructure held out in turn: "
                f"{'/'.join(f'{r:.2f}' for r in folds)}x" if isinstance(folds, list) else "")
        reason = (f"pooled held-out error {pooled:.2f}x the DD realisation scatter "
                  f"{scatter:.3g} MPa{each} {green}")
        if split:
            detail.append(f"the main fit alone, on its held-out microstructure"
                          f"{_heldout_microstructure(rec)}: {split}{within}")
        refs = [(_num(summary.get(f"heldout_folds_{k}")), name) for k, name in (
            ("another_realisation_ratio", "another DD realisation"),
            ("training_mean_ratio", "the training mean"))]
        if any(v is not None for v, _ in refs):
            # pooled over every held-out point, these two are sqrt(2) and sqrt(1 + 1/n)
            # of the scatter's own definition, not measurements
            detail.append("over the folds: " + ", ".join(
                f"{name} {v:.2f}x" for v, name in refs if v is not None)
                + " (both by construction)")
    elif split:
        reason = f"{split} {green}"
        if within:
            detail.append(within.lstrip(", ;"))
    else:
        reason = "no held-out error"
    bias = [b for b in ((rec.get("metrics") or {}).get("condition_bias") or [])
            if _num(b.get("bias_ratio")) is not None]
    if bias:   # where the error is the model's, not the held-out realisation's
        w = max(bias, key=lambda b: b["bias_ratio"])
        detail.append(f"largest miss of the DD's mean path: {w['strain_rate_s']:.2g} /s, "
                      f"{w['temperature_k']:g} K, {w['bias_ratio']:.2f}x the scatter (the "
                      f"mean of {w['paths']} itself ~{w['mean_noise_ratio']:.2f}x; "
                      "condition_means.png)")
    return reason, _sentences(detail)


def surrogate_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    cp = summary.get("checks_passed")
    rec = _json(path / "surrogate.json")
    if cp is None:
        out = [Check("check_constitutive", NA, "not run (run_checks = false); the FEM "
                     "runs it before use")]
    elif cp:
        out = [Check("check_constitutive", GREEN, "passes check_constitutive")]
    else:
        failed = [k for k, v in ((rec.get("checks") or {}).get("checks") or {}).items()
                  if not v.get("passed")]
        out = [Check("check_constitutive", RED, "FAILS check_constitutive ("
                     f"{', '.join(failed) or 'see surrogate.json'})")]
    val = summary.get("validation") or {}
    rmse, scatter = _num(val.get("rmse_mpa")), _num(summary.get("realisation_scatter_rmse_mpa"))
    folds = summary.get("heldout_fold_ratios")
    pooled = _num(summary.get("heldout_folds_ratio"))
    if scatter:
        # graded on every microstructure held out in turn where the fit was cross-validated
        c = graded("heldout_vs_scatter", "heldout_vs_scatter", pooled if pooled is not None
                   else rmse / scatter if rmse is not None else None, "", ".2f")
        c.reason, c.detail = _heldout_text(summary, rec, rmse, scatter, pooled, folds)
        out.append(c)
    else:
        out.append(Check("heldout_vs_scatter", NA, "not fitted to repeated DD realisations "
                         "(no scatter to compare the held-out error with)"))
    out.append(graded("out_of_range", "out_of_range", val.get("out_of_range_fraction"),
                      "held-out points outside the training range:", ".2%"))
    ts = graded("time_step", "time_step", summary.get("time_step_rel_change"),
                "halving the time step moves the stress along the training paths, over "
                "σ_ref, by", ".1%", na="not measured (fitted before the time-step check)")
    dts = summary.get("trained_dt_s")
    change = _num(summary.get("time_step_rms_change_mpa"))
    if ts.status != NA:
        more = ["σ_ref is the data's median von Mises flow stress"]
        if change is not None:
            more.append(f"the change is {change:.3g} MPa RMS" + (
                f", {change / scatter:.2f} x the DD scatter" if scatter else ""))
            if isinstance(dts, list) and len(dts) == 2:
                ts.reason += (f"; fitted at steps {span(dts[0], dts[1], 's')}, the FEM "
                              "must step inside them")
        ts.detail = _sentence(more)
    out.append(ts)
    return out


def fem_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    mc = summary.get("material_checks") or {}
    out = [model_gate("material_checks", mc, "the material is not a learned model",
                      "the material passes check_constitutive",
                      f"the material FAILED check_constitutive ({mc.get('failed_detail')})",
                      " and was used anyway")]
    err = summary.get("limit_load_rel_error")
    if err is None:
        out.append(Check("limit_load", NA, summary.get("limit_load_note")
                         or "no analytic limit load for this problem"))
    else:
        out.append(graded("limit_load", "limit_load", abs(float(err)), "limit load vs "
                          "analytic (2/√3) σ0 ln(Re/Ri):", ".2%"))
    out.append(fem_elastic_check(summary))
    out.append(fem_time_step_check(summary))
    out.append(mesh_convergence_check(summary))
    stop = summary.get("stopped_at_load_factor")
    out.append(Check("completed", GREEN if stop is None else RED,
                     "every load step converged" if stop is None else
                     f"stopped at load factor {stop}", stop))
    worst = _num(summary.get("max_out_of_range_fraction"))
    total = _num(summary.get("out_of_range_fraction"))
    if total is None:  # artifacts written before the run total was recorded
        out.append(graded("out_of_range", "out_of_range", worst, "quadrature points "
                          "outside the surrogate's training range (worst step):", ".2%"))
    else:
        chk = graded("out_of_range", "out_of_range", total, "quadrature-point updates "
                     "outside the surrogate's training range over the run:", ".2%")
        if worst is not None:
            chk.reason += f"; worst step {worst:.2%}"
        out.append(chk)
    return out


def fem_elastic_check(summary: Mapping[str, Any]) -> Check:
    """``elastic``: the FEM's first elastic step against the analytic elastic solution
    (``elastic_check`` of the run summary); n/a with its note, or for a problem without
    an elastic reference."""
    chk = summary.get("elastic_check")
    if not isinstance(chk, Mapping):
        return Check("elastic", NA, "no analytic elastic solution for this problem")
    err = _num(chk.get("rel_error"))
    if err is None:
        return Check("elastic", NA, str(chk.get("note") or "not measured"))
    c = graded("elastic", "fem_elastic", err, f"first load step (elastic) vs "
               f"{chk.get('analytic') or 'the analytic solution'}:", ".3%")
    c.detail = _sentence([
        f"step {chk.get('step')}: {_num(chk.get('load_mpa')) or 0:.6g} MPa against "
        f"{_num(chk.get('analytic_mpa')) or 0:.6g} MPa for E = "
        f"{(_num(chk.get('youngs_modulus_mpa')) or 0) / 1e3:.4g} GPa, ν = "
        f"{_num(chk.get('poisson_ratio')) or 0:.4g} (the material's own)"])
    return c


def fem_time_step_check(summary: Mapping[str, Any]) -> Check:
    """The FEM's time steps against the steps its (time-step-dependent) surrogate was
    fitted at: green inside, else graded by how far outside (ratio to the nearest end)."""
    fitted, used = summary.get("material_trained_dt_s"), summary.get("time_step_s")
    if not (isinstance(fitted, list) and len(fitted) == 2):
        return Check("time_step", NA, "the material's answer does not depend on its time "
                     "step (or it records no fitted steps)")
    if not (isinstance(used, list) and len(used) == 2):
        return Check("time_step", NA, "the FEM recorded no time steps")
    lo, hi = float(fitted[0]), float(fitted[1])
    ratio = max(float(used[1]) / hi, lo / float(used[0]), 1.0)
    status = THRESHOLDS["fem_time_step"].grade(ratio)
    one = f"{used[0]:.3g}" == f"{used[1]:.3g}"
    return Check("time_step", status,
                 f"FEM time step{'' if one else 's'} {span(used[0], used[1], 's')}, the "
                 f"surrogate was fitted at {span(lo, hi, 's')}" + ("" if status == GREEN else
                                            f" ({ratio:.2f}x outside: its answer there is "
                                            "not the one validated)"), ratio)



#: The mesh-convergence grade of the final load's relative change when every element
#: size is halved (the same thresholds as the FEM's elastic check against Lamé: 1 % a
#: mesh fine enough for the load it reports, beyond 5 % the load is the mesh's).
MESH_CONVERGENCE = (0.01, 0.05)


def mesh_convergence_check(summary: Mapping[str, Any]) -> Check:
    """``mesh_convergence``: the FEM's final load on the run's mesh against the mesh with
    every element size halved (``mesh_convergence`` of a FieldResults summary, see
    :func:`scalebridge.continuum.fem.mesh_convergence`): green below 1 %, amber below
    5 %, red above; n/a with the reason where it was not run or a refined solve
    stopped early (loads at different displacements). Its detail has the max load's
    change, the element counts, the observed order (three levels) and the cost."""
    rec = summary.get("mesh_convergence")
    if not isinstance(rec, Mapping) or not rec:
        return Check("mesh_convergence", NA, "not run (mesh_convergence = 0, or a run from before "
                     "the check)")
    stopped = [(k, lam) for k, lam in enumerate(rec.get("stopped_at_load_factor") or [])
               if lam is not None]
    if stopped:
        k, lam = stopped[0]
        return Check("mesh_convergence", NA, f"mesh {k} (0: the run's) stopped at load "
                     f"factor {lam:.3g}: its final load is at another displacement")
    rel = rec.get("rel_change_final")
    if not isinstance(rel, int | float) or isinstance(rel, bool):
        return Check("mesh_convergence", NA, str(rec.get("note") or "not measured"))
    rel = abs(float(rel))
    green, amber = MESH_CONVERGENCE
    status = GREEN if rel < green else AMBER if rel < amber else RED
    bound = {GREEN: f"< {green:.0%}", AMBER: f">= {green:.0%}",
             RED: f">= {amber:.0%}"}[status]
    f, m, n = rec["final_load_mpa"], rec["max_load_mpa"], rec["elements"]
    reason = (f"final load {f[0]:.4g} MPa on the run's mesh, {f[1]:.4g} with every "
              f"element size halved: {rel:.2%} ({bound})")
    more = [f"max load {m[0]:.4g} -> {m[1]:.4g} MPa"
            + (f" ({rec['rel_change_max']:.2%})"
               if isinstance(rec.get("rel_change_max"), float) else ""),
            f"elements {' -> '.join(str(x) for x in n)}"]
    if len(f) >= 3:
        more.append(f"twice refined: final load {f[2]:.4g} MPa"
                    + (f" ({rec['rel_change_final_next']:.2%} from once refined)"
                       if isinstance(rec.get("rel_change_final_next"), float) else ""))
        p, ext = rec.get("order_final"), _num(rec.get("extrapolated_final_mpa"))
        more.append((f"observed order {p:.2f}" + (f", extrapolated final load {ext:.4g} MPa"
                                                  if ext is not None else ""))
                    if isinstance(p, float) else
                    "no observed order: the changes are not monotone")
    if rec.get("note"):
        more.append(str(rec["note"]))
    if rec.get("wall_s") is not None:
        more.append(f"the refined solves took {float(rec['wall_s']):.3g} s")
    detail = "; ".join(more) + "."
    return Check("mesh_convergence", status, reason, rel, detail[0].upper() + detail[1:])


def band_checks(summary: Mapping[str, Any], path: Path) -> list[Check]:
    srcs = summary.get("sources") or {}
    band = summary.get("fem_load_band_mpa")
    missing = [f"{k}: {v.get('note')}" for k, v in srcs.items() if v.get("note")]
    if not srcs:
        return [Check("sources", NA, "no band computed")]
    shares = summary.get("band_shares") or {}
    txt = shares_text(shares)
    lo_hi = (f"final load in [{band[0]:.4g}, {band[1]:.4g}] MPa; " if band else "")
    if missing:   # the names in the reason, why each is not carried in the detail
        out = [Check("sources", AMBER, lo_hi + "not carried: " + ", ".join(
            k for k, v in srcs.items() if v.get("note")) + f" ({txt})", txt,
            detail=_sentences(missing))]
    else:
        out = [Check("sources", GREEN, lo_hi + f"each of the {len(srcs)} sampled sources "
                     f"carried ({txt}); what is held fixed is listed with the band", txt)]
    # the band is linear in u about the load; whether the load rises with the flow
    # stress is what the two scaled solves tell (older records: the band was theirs)
    solves = summary.get("scaled_solve_loads_mpa") or band
    return [*out, _band_dof(summary),
            _band_brackets(solves, _num(summary.get("final_load_mpa")))]


def _band_dof(summary: Mapping[str, Any]) -> Check:
    """How well the band's own width is known: its Welch–Satterthwaite ν_eff (n/a for a
    band from before it, or with a coverage factor set by hand)."""
    if not summary.get("coverage_level"):
        return Check("degrees_of_freedom", NA, "the coverage factor was set, not derived"
                     if "effective_dof" in summary else "a band from before ν_eff")
    nu, k = _num(summary.get("effective_dof")), _num(summary.get("coverage_factor"))
    if nu is None:
        return Check("degrees_of_freedom", GREEN, "every term's sd is known (many degrees "
                     f"of freedom): k = {k:.3g}", None)
    c = graded("degrees_of_freedom", "band_dof", nu,
               "effective degrees of freedom", fmt=".2g")
    return Check(c.name, c.status, f"{c.reason}: k = {k:.3g} (Student's t at "
                 f"{100 * float(summary['coverage_level']):g} %)", nu)


def _band_brackets(band: Any, final: float | None) -> Check:
    """Red when the band's two solves (flow stress scaled down and up, ``band`` =
    their loads in that order) do not bracket the unscaled solve: the load is then not
    monotone in the material's strength (a jump in the load history, a rate feedback in
    the surrogate), and a band linear in the flow stress's uncertainty means little."""
    if not band or final is None:
        return Check("brackets_nominal", NA, "no band or no nominal load")
    lo, hi = (_num(b) for b in band)
    if lo is None or hi is None:
        return Check("brackets_nominal", NA, "the band's solves gave no load")
    # round-off: the three solves share every setting but the scale
    tol = 1e-6 * max(abs(final), 1.0)
    if lo - tol <= final <= hi + tol:
        return Check("brackets_nominal", GREEN, f"the scaled solves bracket the nominal "
                     f"load: {lo:.4g} <= {final:.4g} <= {hi:.4g} MPa", final)
    return Check("brackets_nominal", RED, f"the nominal load {final:.4g} MPa lies outside "
                 f"[{lo:.4g}, {hi:.4g}], the loads of its own solves with the flow stress "
                 "scaled down and up: the band is no uncertainty interval", final,
                 detail="The FEM load is not monotone in the flow stress: see the "
                 "load-displacement curves of band/members.")


def checks_for(kind: str, summary: Mapping[str, Any], path: Path) -> list[Check]:
    """The checks of one artifact (by kind; DefectStats by its content)."""
    path = Path(path)
    if kind == "DefectStats":
        return deformation_checks(summary, path) if "frames" in summary and \
            "points" not in summary else glide_checks(summary, path)
    fn = RULES.get(kind)
    if fn is None:
        return [Check("checks", NA, f"no verdict rules for {kind}")]
    return fn(summary, path)


RULES = {"DFTDataset": dataset_checks, "Potential": potential_checks,
         "Properties": properties_checks, "MobilityLaw": mobility_checks,
         "DDRun": dd_checks, "Surrogate": surrogate_checks, "FieldResults": fem_checks,
         "LoadBand": band_checks}


def _unused_character(rows: list[dict[str, Any]], arts: Mapping[str, Any]) -> None:
    """Where the DD glides one character (its summary's ``mobility.character``), a red
    per-character glide check of the other becomes amber, saying so: nothing downstream
    uses that law, so it cannot spoil the answer, but it is no physics either. Rows
    (:meth:`StageVerdict.to_dict`) are changed in place."""
    used = {((a.summary.get("mobility") or {}).get("character")) for a in arts.values()
            if a.kind == "DDRun" and isinstance(a.summary, Mapping)} - {None}
    if len(used) != 1:
        return
    (c,) = used
    for row in rows:
        if row.get("kind") != "DefectStats":
            continue
        for chk in row["checks"]:
            other = chk["name"].rsplit("_", 1)[-1]
            if chk["status"] == RED and other in ("edge", "screw") and other != c:
                chk["status"] = AMBER
                chk["reason"] += (f"; red on its own, amber because the DD glides {c}s: "
                                  f"nothing downstream uses the {other} law")
        row["verdict"] = worst(x["status"] for x in row["checks"])


def quasi_static_check(fem: Mapping[str, Any], props: Mapping[str, Any] | None,
                       dd: Mapping[str, Any] | None = None) -> Check:
    """Whether the FEM's quasi-static solve holds at its loading rate: the loading time
    (``fem["duration_s"]``) in transits of a longitudinal wave across the body
    (``fem["body_size_mm"]`` at c_l from the Properties' ``bulk_modulus_gpa``,
    ``shear_modulus_gpa`` and ``density_kg_m3``). n/a where the loading has no physical
    time (``fem["loading_time"]`` None: 1 s per step). Where it fails, the detail names
    the largest body that would be quasi-static at this strain rate and, with a DD run
    (``dd``), how many DD cells its wall (a cylinder's; else the body) would be: the
    continuum needs many."""
    t, size = _num(fem.get("duration_s")), _num(fem.get("body_size_mm"))
    p = props or {}
    k, g, rho = (_num(p.get(x)) for x in ("bulk_modulus_gpa", "shear_modulus_gpa",
                                           "density_kg_m3"))
    if t is None or size is None or not size > 0:
        return Check("quasi_static", NA, "the FEM recorded no loading time or body size")
    if "loading_time" in fem and fem["loading_time"] is None:
        return Check("quasi_static", NA, "the loading has no physical time (1 s per step): "
                     "give [continuum.loading] duration_s to judge inertia")
    if k is None or g is None or not (rho and rho > 0) or not k + 4.0 * g / 3.0 > 0:
        return Check("quasi_static", NA, "no Properties with the moduli and density to "
                     "give the wave speed")
    c_l = math.sqrt((k + 4.0 * g / 3.0) * 1e9 / rho)           # m/s
    t_wave = size * 1e-3 / c_l                                  # s
    chk = graded("quasi_static", "quasi_static", t / t_wave,
                 f"the load takes {t:.3g} s against {t_wave:.3g} s for a longitudinal "
                 f"wave (c_l = {c_l:.0f} m/s) to cross the body ({size:.3g} mm):", ".3g")
    if chk.status == GREEN:
        return chk
    if fem.get("loading_time") == "displacement_rate":
        # the time scales with the body: a smaller one is not more quasi-static
        chk.detail = _sentence(["inertia, which the solve neglects, is not negligible: "
                                "the loading time follows a displacement rate, so it "
                                "shrinks with the body; give duration_s (a strain rate) "
                                "and a body small enough for it"])
        return chk
    green_mm = c_l * t / THRESHOLDS["quasi_static"].green * 1e3
    more = [f"inertia, which the solve neglects, is not negligible at this rate: a body of "
            f"at most {green_mm:.3g} mm would be quasi-static over {t:.3g} s (the load is "
            "the same for a smaller body: the solve has no length scale)"]
    cells_um = (dd or {}).get("assumptions", {}).get("cell_um")
    cell = _num(max(cells_um)) if isinstance(cells_um, list) and cells_um else None
    if cell:
        ref = fem.get("reference") or {}
        ri, ro = _num(ref.get("r_inner_mm")), _num(ref.get("r_outer_mm"))
        wall = (ro - ri) / ro if ri is not None and ro and ro > ri else 1.0
        what = "wall" if wall < 1.0 else "size"
        cells = green_mm * wall * 1e3 / cell
        more.append(f"its {what} would be {cells:.2g} DD cells across ({cell:.3g} "
                    "µm each, a material point's microstructure)" + (
                        ": at this rate no body is both quasi-static and ten DD cells "
                        "thick, and only a solve with inertia would settle it"
                        if cells < 10 else ""))
    chk.detail = _sentence(more)
    return chk


def _quasi_static(rows: list[dict[str, Any]], arts: Mapping[str, Any]) -> None:
    """The FEM rows' :func:`quasi_static_check` (cross-stage: the wave speed is the
    Properties'). Rows are changed in place."""
    def first(kind: str) -> Mapping[str, Any] | None:
        return next((a.summary for a in arts.values() if a.kind == kind
                     and isinstance(a.summary, Mapping)), None)

    props, dd = first("Properties"), first("DDRun")
    for row in rows:
        art = arts.get(row["stage"])
        if row.get("kind") != "FieldResults" or art is None:
            continue
        row["checks"].append(asdict(quasi_static_check(art.summary or {}, props, dd)))
        row["verdict"] = worst(x["status"] for x in row["checks"])


def run_verdicts(arts: Mapping[str, Any],
                 planned: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
    """Verdicts of every artifact (``name -> Artifact``, in chain order): ``overall``,
    ``by_stage`` (name -> verdict), ``stages`` (rows with their checks), ``thresholds``.

    ``planned``: the chain's (name, kind) in order. A planned stage without an artifact
    gets a ``not run`` row (no checks), and the run is partial: ``overall`` is
    ``partial`` (never green: most of the answer is missing), ``stages_run`` /
    ``stages_planned`` count them and ``worst_of_run`` is the worst of the stages that
    ran."""
    rows: list[dict[str, Any]] = []
    order = list(planned) if planned is not None else [(n, a.kind) for n, a in arts.items()]
    order += [(n, a.kind) for n, a in arts.items() if n not in {p for p, _ in order}]
    for name, kind in order:
        art = arts.get(name)
        if art is None:
            rows.append({"stage": name, "kind": kind, "verdict": NOT_RUN, "checks": []})
            continue
        rows.append(StageVerdict(name, art.kind,
                                 checks_for(art.kind, art.summary, art.path)).to_dict())
    _unused_character(rows, arts)
    _quasi_static(rows, arts)
    made = [r["verdict"] for r in rows if r["verdict"] != NOT_RUN]
    overall = worst(made)
    out = {"overall": overall, "by_stage": {r["stage"]: r["verdict"] for r in rows},
           "stages": rows}
    if len(made) < len(rows):
        out.update(overall=PARTIAL, worst_of_run=overall, stages_run=len(made),
                   stages_planned=len(rows))
    out.update(thresholds={k: asdict(t) for k, t in THRESHOLDS.items()},
               legend=dict(LEGEND))
    return out


__all__ = ["AMBER", "GREEN", "LEGEND", "NA", "NOT_RUN", "NOT_RUN_LEGEND", "PARTIAL", "RED",
           "THRESHOLDS", "Check", "StageVerdict", "Threshold", "checks_for", "graded",
           "mesh_convergence_check", "model_gate", "quasi_static_check", "run_verdicts",
           "span", "worst"]
