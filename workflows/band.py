"""The FEM load band: the upstream uncertainties carried to the final load.

Each upstream source of uncertainty is first expressed as a relative standard
uncertainty of the **flow stress** the surrogate learns, the quantity every one of them
moves first (one source varied at a time, the others held):

``potential``
    The ensemble's spread in the properties: each member's a0, C11, C12, C44 and VRH
    shear modulus μ (ASE with the DeePMD model, conventional cell:
    :mod:`scalebridge.potentials.properties`); u = sd(μ·b)/mean over the members. The
    DD's flow stress scales with μ b (Taylor; its source, obstacle and junction strengths
    are in μ b units): μ × f is the DD at B / f with every stress × f, so the
    sensitivity is 1 − ∂lnσ/∂lnB from the DD's drag probe (:func:`mu_sensitivity`;
    Taylor's 1 where the flow stress ignores B or no probe ran).
``mobility``
    The mobility law's uncertainty: u_B = the fitted edge drag's standard error / B (the
    glide replicas run on alternating members of the potential ensemble,
    ``MobilityMaker.ensemble_replicas``, so it carries the ensemble's spread in the
    mobility beside the thermal noise and the fitted window's shift). Its
    effect on the flow stress is ∂lnσ/∂lnB, measured where the DD ran its drag probe
    (``DDSettings.drag_probe``: the reference condition's realisations rerun with B
    scaled, paired by seed), carried as its RMS over the probe's error,
    sqrt(Ŝ² + err(Ŝ)²) (a slope the probe cannot resolve still moves a rerun); else
    the DD study's rate sensitivity ∂lnσ/∂lnε̇ at the
    reference temperature where it has two or more strain rates (B and ε̇ enter the DD as
    their product only when its nucleation time scales with B too, ``nucleation =
    "bow_out_clock"``: with a typed t_nuc the
    rate sensitivity also holds the sources' clock, and overstates B's effect: Mo
    example, 0.11 ± 0.06 measured against 0.48), else the Orowan estimate of the drag
    share of the flow stress, τ_drag/τ with τ_drag = B γ̇/(ρ b²). Where the DD ran its
    range probe (``DDSettings.range_probe``: its evaluations beyond the law's stress
    range at the limiting speed c_t instead of clamped) the flow stress's change Δ ± s.e.
    bounds what the law could do beyond its data: sqrt(Δ²/3 + s.e.²) (rectangular over
    the change, the probe's own error on top) adds in quadrature; where
    ``range_probe = "auto"`` did not rerun it because no evaluation beyond the range
    reached any run's dynamics (``exact_zero``), the term is 0 and the method says why.
    When the DD moves its dislocations with the fitted drag law and its threshold τ₀
    (``law = "drag"``), τ₀'s standard error adds in quadrature as err(τ₀)/σ: a
    lattice-friction threshold adds to the flow stress MPa for MPa (sensitivity 1). A
    neural law learns the threshold from the same rows; its bootstrap members, not this
    term, carry that.
``dd``
    The realisation scatter as it reaches the FEM, **measured in load units** where the
    surrogate kept a fit with each microstructure of the DD study held out (its main
    fit and cross-validation folds, ``surrogate/folds``, one fit per microstructure):
    the FEM is solved with each fit, and the DD term is sqrt(n − 1) times the sd of
    their loads (two fits share n − 2 of their n − 1 microstructures:
    :func:`scalebridge.surrogates.train.training_noise`). In the Mo example the final
    load sits on the reload after the avalanche, whose timing another DD moves more than
    its flow stress does: the fits' flow stresses differ by 4.6 % (x dL/df: 0.24 MPa)
    while their loads give 0.64 MPa, and five reruns of the chain 0.58. In flow-stress
    units its ``rel_u`` is that measured spread of the fits' flow stresses. With n = 3
    the sd has two degrees of freedom: over five runs of the example the term ranged
    0.56–1.16 MPa. Without a fit per microstructure (``cross_validate`` < n − 1), or
    when a fit's FEM solve fails (said in a note): the standard error of the mean flow
    stress over the realisations, sd/mean/√n, the relative sd pooled over every
    condition, and the surrogate's term less it (its held-out error holds the training
    realisations' noise, to first order that).
``surrogate``
    The surrogate's own error in the flow stress: on its held-out DD paths, the RMS
    relative difference of the model's flow stress from the data's, less (in quadrature)
    the realisation scatter a held-out path carries anyway and, with the folds, the
    training realisations' noise the ``dd`` term carries (``flow_model_rel_u`` of the
    Surrogate, :func:`scalebridge.surrogates.train.pooled_flow_error`), pooled over
    every cross-validation fold's held-out paths when it ran them; sensitivity 1.
    Without it, two reruns on DD data that differ within their scatter gave FEM loads
    outside each other's band (the fitted law's shape moves more than the flow stress).

The relative uncertainty of the flow stress is u = sqrt(Σ (S_i u_i)²). Two extra FEM
solves with the surrogate's yield stress scaled by 1 ∓ u
(:func:`scalebridge.surrogates.ensemble.scale_hardening`) measure the final load's
sensitivity dL/df (their secant); each source carried through the flow stress moves the
load by S_i u_i |dL/df|, the ``dd`` term measured in load units by its own solves, and
the load's standard uncertainty ``load_uncertainty_mpa`` is their root sum of squares.
The band is ``fem_load_band_mpa`` = L ∓ k·(that), along the whole curve point by point
(``load_band.csv``); the maximum load has its own (``max_load_band_mpa``). k
(``coverage_factor``, default ``"auto"``) is Student's t at 95 % for the terms'
Welch–Satterthwaite effective degrees of freedom ν_eff = u⁴/Σ(c_i⁴/ν_i) (GUM, JCGM
100:2008, G.4), each term's ν_i being what it was measured from: the ensemble's members
− 1, the mobility term's 2/((1 + 2/ν_S)(1 + 2/ν_B) − 1) (the drag probe's slope
measured to ±err counts ν_S = 2/relvar(S² + err²), B's fit its own), the fits' loads
− 1 (the DD term from 4 fits has 3, and its sd wanders by about ±40 % between reruns),
the surrogate's held-out paths (its u² is their mean square less known terms). A band
whose u comes from a handful of fits must be wider than 2u to cover the load 95 % of the
time (the Mo example's ν_eff and k: README). The band covers the chain's expected load;
another run of the chain draws its own load with the same u, so the two differ by √2 u:
``rerun_interval_mpa`` = L ∓ √2·k·u is where a rerun's final load falls (95 % with
``"auto"``). The two solves'
own loads are kept (``scaled_solve_loads_mpa``; the verdict checks they bracket L, i.e.
the load rises with the flow stress), but they are not the band: in the Mo example the
final load falls in the reload after the avalanche, where a stronger material raises it
by 0.2-0.5 MPa and a weaker one lowers it by 1.1-1.2, while five runs of the whole
DD → surrogate → FEM with DD seeds 0, 3, 6, 9 and 12 gave 29.24, 30.35, 30.58, 29.97 and
30.64 MPa (sd 0.58; the runs' own u·|dL/df| 0.29-0.84, RMS 0.64). The solves' loads,
[28.00, 29.41] on the first run, covered neither of the next two; over the five runs the
linear band with k = 2 covers 16 of the 20 ordered pairs (two runs differ by √2 times
their u, so a right u covers ~84 %), k = 1 8, the solves' loads 9
(``benchmarks/band_reruns.py``; those numbers predate the DD term's own solves: the
flow-stress route counted the training realisations' noise twice, in the ``dd`` term
and in the surrogate's held-out error, and gave the surrogate 63 % of the variance).
Each source's share of the band's variance is (its load term)² / Σ (load terms)² (the
linearised one-at-a-time attribution).

Files: ``band.json`` (everything below), ``load_band.csv``/``.png`` (the load-displacement
curve with its pointwise band, ± k·u at each displacement with the final load's k, and the
fits' curves; the figure marks the final and maximum loads' own bands, each with its k, as
error bars: the maximum's compares the curves' maxima wherever they fall, the pointwise
band the curves at one displacement, so the two differ there; ``max_load_band_mpa`` beside
``pointwise_band_at_max_load_mpa``), ``potential_members.csv`` (each ensemble member's
properties) and the solves' FieldResults in ``members/low``, ``members/high`` and
``members/m<microstructure>``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, write_json_atomic
from scalebridge.plotting import axis_label, pyplot, save_figure
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.workflows")

KIND = "LoadBand"
#: The sources, in chain order (the keys of ``band_shares``).
SOURCES = ("potential", "mobility", "dd", "surrogate")
#: The band's two-sided coverage probability with ``coverage_factor = "auto"``.
COVERAGE_LEVEL = 0.95


def effective_dof(terms: Mapping[str, tuple[float, float | None]]) -> float | None:
    """Welch–Satterthwaite ν_eff = (Σ c_i²)² / Σ (c_i⁴/ν_i) of the standard-uncertainty
    terms ``name -> (c_i, ν_i)`` (c_i in one unit; ν_i None: many degrees of freedom, a
    term whose sd is known); None when no term with a finite ν_i contributes."""
    tot = sum(c * c for c, _ in terms.values())
    den = sum(c ** 4 / nu for c, nu in terms.values() if nu is not None and c > 0)
    if tot <= 0 or den <= 0:
        return None
    return float(tot * tot / den)


def t_coverage(nu: float | None, level: float = COVERAGE_LEVEL) -> float:
    """The two-sided ``level`` quantile of Student's t with ``nu`` degrees of freedom
    (the normal one for None; ν below 1 counts as 1): the coverage factor of an
    uncertainty with ν_eff."""
    from scipy import stats

    q = 0.5 + level / 2
    return float(stats.norm.ppf(q) if nu is None else stats.t.ppf(q, max(nu, 1.0)))


def shares_text(shares: Mapping[str, Any], sep: str = ", ") -> str:
    """``potential 9.3%, mobility 0.40%, ...``: each share of the band's variance to two
    significant figures, all alike (``2.0%`` beside ``0.99%``, not ``2%``; a share under
    1 % still shows it is carried, not ``0%``); none at all is ``0%``."""
    def pct(x: float) -> str:
        if x == 0:
            return "0%"
        return f"{100 * x:.0f}%" if 100 * x >= 9.95 else f"{100 * x:#.2g}%"

    return sep.join(f"{k} {pct(float(v))}" for k, v in shares.items())


class BandSettings(StrictModel):
    """The FEM load band (``[continuum.band]``): upstream uncertainty carried to the load."""

    enabled: bool = Field(True, description="compute the band (two extra FEM solves, and "
                          "one per fit of the surrogate without a microstructure)")
    coverage_factor: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="band = final load -/+ k times its standard uncertainty (the "
        "flow stress's relative u times the load's sensitivity dL/df from two solves at "
        "1 -/+ u, and the DD term from solves with the surrogate's fits without each "
        "microstructure, in quadrature). 'auto': Student's t at 95 % (two-sided) for the "
        "Welch-Satterthwaite effective degrees of freedom of those terms (GUM G.4): a "
        "term measured from a few fits widens the band (the Mo example: its DD term "
        "from 4 fits, 3 degrees of freedom; k about 2.4). A number: that k")
    potential_members: bool = Field(
        True, description="compute each potential ensemble member's elastic constants "
        "(seconds; the potential's share is 0 without it)")


# ---------------------------------------------------------------------- the sources
def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def potential_members(potential: Artifact, properties: Artifact | None
                      ) -> list[dict[str, Any]]:
    """a0, C11, C12, C44, μ (VRH) and b of each model of a DeePMD ``Potential`` (ASE on
    the conventional cell of the crystal the Properties artifact used)."""
    from scalebridge.md.properties import burgers_length, isotropic_moduli
    from scalebridge.potentials.model import DeepMDCalculator
    from scalebridge.potentials.properties import elastic_constants, lattice_constant

    pj = _json(potential.path / "potential.json")
    props = _json(properties.path / "properties.json") if properties is not None else {}
    type_map = list(pj.get("type_map") or [])
    element = props.get("element") or (type_map[0] if type_map else None)
    lattice = props.get("lattice") or "bcc"
    a_guess = float(props.get("a0_a") or 3.17)
    out = []
    for i, m in enumerate(pj.get("models") or []):
        path = potential.path / m

        def factory(path: Path = path) -> Any:
            return DeepMDCalculator(path, type_map)

        a0 = lattice_constant(factory, element, lattice, a_guess)
        c = elastic_constants(factory, element, a0, lattice)
        iso = isotropic_moduli(c["c11_gpa"], c["c12_gpa"], c["c44_gpa"])
        out.append({"model": i, "a0_a": a0, "c11_gpa": c["c11_gpa"],
                    "c12_gpa": c["c12_gpa"], "c44_gpa": c["c44_gpa"],
                    "shear_modulus_gpa": iso["shear_modulus_gpa"],
                    "burgers_a": burgers_length(a0, lattice)})
    return out


def _rel_sd(values: list[float]) -> float | None:
    v = np.asarray(values, dtype=float)
    if len(v) < 2 or not np.all(np.isfinite(v)) or abs(v.mean()) == 0:
        return None
    return float(np.std(v, ddof=1) / abs(v.mean()))


def unitless_keys(rel_sd: dict[str, float] | None) -> dict[str, float]:
    """Relative sds (sd/mean, no unit) keyed by property name without its unit suffix
    (``c11_gpa`` -> ``c11``, ``a0_a`` -> ``a0``): the report shows them as numbers of no
    unit, not GPa or Å."""
    return {k.rsplit("_", 1)[0]: v for k, v in (rel_sd or {}).items()}


def mu_sensitivity(dd_summary: Mapping[str, Any] | None) -> tuple[float, str]:
    """∂lnσ/∂ln(μb) of the DD's flow stress, as the RMS the band carries, and why.
    Every strength, the internal field and the loading are in μ b units and a clock of
    bow-out times (``nucleation = "bow_out_clock"``) runs as 1/μ, so for a linear drag law
    μ × f is the DD at B / f with every stress × f: ∂lnσ/∂lnμ = 1 − ∂lnσ/∂lnB under the
    DD's own source rule (≈ 1, Taylor, where the flow stress ignores B). The drag probe
    gives a forward secant (B → 2B) where μ × f moves B down, and its error is carried as
    the mobility term carries it, sqrt((1 − Ŝ)² + err²). Without a probe, or with typed
    strengths (overrides, which do not scale with μ): Taylor's 1, said."""
    ds = dd_summary or {}
    probe = ds.get("drag_sensitivity") or {}
    if ds.get("overrides"):
        return 1.0, ("flow stress taken proportional to mu b (Taylor), though the DD's "
                     f"typed strengths ({', '.join(ds['overrides'])}) do not scale with it")
    if probe.get("dlnsigma_dlnb") is None:
        return 1.0, "flow stress proportional to mu b (Taylor)"
    s_b, err = float(probe["dlnsigma_dlnb"]), probe.get("dlnsigma_dlnb_err")
    s = math.hypot(1.0 - s_b, float(err)) if err is not None else abs(1.0 - s_b)
    return s, ("mu x f is the DD at B/f with every stress x f (mu b units; a linear drag "
               f"law): 1 - dln(sigma)/dln(B) = 1 - {s_b:.3g}"
               + (f" +- {float(err):.2g}, carried as {s:.2g}" if err is not None else ""))


def potential_source(members: list[dict[str, Any]], note: str | None = None,
                     dd_summary: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The potential's relative uncertainty of μ b times the flow stress's sensitivity
    to it (:func:`mu_sensitivity`, from ``dd_summary``); ``note`` says why there are no
    members."""
    sens, why = mu_sensitivity(dd_summary)
    if len(members) < 2:
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": sens, "method": "none",
                "note": note or "one model: no ensemble spread to carry"}
    mub = [m["shear_modulus_gpa"] * m["burgers_a"] for m in members]
    spread = {k: _rel_sd([m[k] for m in members])
              for k in ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa", "shear_modulus_gpa")}
    u = _rel_sd(mub) or 0.0
    return {"rel_u": sens * u, "input_rel_u": u, "sensitivity": sens,
            "dof": len(members) - 1, "method": f"ensemble members' mu*b; {why}",
            "members": len(members), "member_rel_sd": spread}


def _rate_sensitivity(dd_summary: dict[str, Any], temperature: float | None
                      ) -> float | None:
    """∂lnσ/∂lnε̇ from the DD study at ``temperature`` (least squares), or None."""
    conds = ((dd_summary.get("study") or {}).get("conditions") or [])
    pts = [(c["strain_rate_s"], c["flow_stress_mpa"]) for c in conds
           if c.get("strain_rate_s") and c.get("flow_stress_mpa")
           and (temperature is None or abs(c.get("temperature_k", 0) - temperature) < 1e-6)]
    pts = [(r, s) for r, s in pts if r > 0 and s > 0]
    if len({r for r, _ in pts}) < 2:
        return None
    x = np.log([r for r, _ in pts])
    y = np.log([s for _, s in pts])
    return float(np.polyfit(x, y, 1)[0])


def _drag_source(mobility: Artifact | None, dd: Artifact | None) -> dict[str, Any]:
    """The mobility law's relative uncertainty (edge drag) and its effect on the flow
    stress (module docstring)."""
    if mobility is None or dd is None:
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": None, "method": "none",
                "note": "no mobility law or DD run"}
    ms = mobility.summary
    b0, err = ms.get("drag_edge_b0_pa_s"), ms.get("drag_edge_b0_err_pa_s")
    if not b0 or err is None or not math.isfinite(float(err)):
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": None, "method": "none",
                "note": "the mobility law has no edge-drag uncertainty"}
    u_b = abs(float(err) / float(b0))
    ds = dd.summary
    run = _json(dd.path / "run.json")
    probe = ds.get("drag_sensitivity") or {}
    m = _rate_sensitivity(ds, run.get("temperature_k"))
    if probe.get("dlnsigma_dlnb") is not None:
        err = probe.get("dlnsigma_dlnb_err")
        # the probe measures the slope with an error: B's uncertainty moves the flow
        # stress by S·δ with S itself uncertain, E[(S δ)²] = (Ŝ² + err²) u_B², so the RMS
        # sensitivity carries it (a slope the probe cannot tell from 0, even a negative
        # one, still moves a rerun by err·u_B; clipping it to 0 carried nothing)
        s_hat = float(probe["dlnsigma_dlnb"])
        s = math.hypot(s_hat, float(err)) if err is not None else max(s_hat, 0.0)
        method = (f"DD drag probe: dln(sigma)/dln(B) = {s_hat:.3g}"
                  + (f" +- {float(err):.2g}" if err is not None else "")
                  + f" ({probe.get('realisations')} paired realisations at B and "
                  f"{float(probe.get('factor', 0)):g} B)"
                  + (f", carried as sqrt(S^2 + err^2) = {s:.2g}" if err is not None else ""))
        if m is not None:
            clocked = (ds.get("nucleation") or {}).get("rule") == "bow_out_clock"
            method += (f"; the study's rate sensitivity {m:.3g}"
                       + (", the same response where B and the rate enter as their product "
                          "(its nucleation clock is bow-out times; a least-squares slope "
                          "over its rates, not the probe's B -> 2B secant)" if clocked
                          else " also holds the typed nucleation time's effect"))
    elif m is not None:
        s, method = max(m, 0.0), "DD study rate sensitivity dln(sigma)/dln(rate)"
    else:
        rate = ((run.get("loading") or {}).get("strain_rate_s"))
        rho, b_a = ds.get("density_end_m2"), run.get("burgers_a")
        tau = ds.get("flow_stress_mpa")
        if not (rate and rho and b_a and tau):
            return {"rel_u": 0.0, "input_rel_u": u_b, "sensitivity": None, "method": "none",
                    "note": "no strain rate, density or flow stress to estimate the drag "
                            "share of the flow stress"}
        b = float(b_a) * 1e-10
        tau_drag = float(b0) * float(rate) / (float(rho) * b * b)
        s = min(max(tau_drag / (float(tau) * 1e6), 0.0), 1.0)
        method = (f"Orowan drag share tau_drag/tau = B rate/(rho b^2)/tau = "
                  f"{tau_drag * 1e-6:.3g}/{float(tau):.3g} MPa")
    out = {"rel_u": s * u_b, "input_rel_u": u_b, "sensitivity": s, "method": method}
    s_err = (probe.get("dlnsigma_dlnb_err") if probe.get("dlnsigma_dlnb") is not None
             else None)
    # the term's variance is s²·u_B² with both factors estimated: s² = Ŝ² + err² from the
    # probe's slope Ŝ ~ N(S, err) (the standard error of its paired realisations; the
    # pairs less one are err's own dof, not S's), u_B² from B's error on the drag fit's
    # Welch-Satterthwaite dof (its statistical and window parts, md.glide_fit). A factor
    # of relative variance r counts ν = 2/r (GUM G.3), Var(Ŝ² + err²) = 4Ŝ²err² + 2err⁴
    # about Ŝ² + 2err², and independent factors' relative variances combine as
    # Π(1 + r_i) − 1. With the Mo example's Ŝ 0.57 ± 0.05 and ν_B 3.3: 3.05, as 2·10⁶
    # simulated reruns give
    nus = {}
    if s_err is not None and float(s_err) > 0 and s > 0:
        s_hat, e2 = float(probe["dlnsigma_dlnb"]), float(s_err) ** 2
        r_s = (4.0 * s_hat ** 2 * e2 + 2.0 * e2 ** 2) / (s_hat ** 2 + 2.0 * e2) ** 2
        nus["the probe's slope's (2/relvar(S^2 + err^2))"] = 2.0 / r_s
    nu_b = ms.get("drag_edge_b0_dof")
    if nu_b is not None and s > 0:
        # B0's Welch-Satterthwaite dof (md.glide_fit.window_systematic): a float
        nus["the drag fit's (its points less its parameters, or its points' error dof "
            "where none is left, with the fitted window's term)"] = max(float(nu_b), 1.0)
    if nus:
        out["dof"] = 2.0 / (math.prod(1.0 + 2.0 / v for v in nus.values()) - 1.0)
        if len(nus) > 1:
            out["method"] += ("; degrees of freedom 2/(" + "".join(
                f"(1 + 2/{v:.3g})" for v in nus.values()) + f" - 1) = {out['dof']:.2g}: "
                + " and ".join(f"{k} {v:.3g}" for k, v in nus.items()))
    t0_err, flow = ms.get("drag_edge_tau0_err_mpa"), ds.get("flow_stress_mpa")
    if (ms.get("law") == "LinearDragMobility" and t0_err is not None
            and math.isfinite(float(t0_err)) and flow):
        u_t0 = abs(float(t0_err) / float(flow))
        out.update(rel_u=math.hypot(s * u_b, u_t0), threshold_rel_u=u_t0,
                   method=f"{out['method']}; threshold tau0 {ms.get('drag_edge_tau0_mpa'):.3g} "
                          f"+- {float(t0_err):.3g} MPa over the flow stress "
                          f"{float(flow):.3g} MPa, in quadrature")
    elif (ms.get("law") == "LinearDragMobility" and t0_err is None
          and ms.get("drag_edge_tau0_mpa") is not None):
        # a τ₀ the drag fit fixed at 0 has no error: nothing to add, say why (its note
        # starts "fixed at 0, not fitted" where no threshold could be fitted at all)
        not_fitted = str(ms.get("drag_edge_tau0_note") or "").startswith("fixed at 0, not")
        why = "(not fitted)" if not_fitted else "by the fit's model selection"
        out["method"] = f"{out['method']}; threshold tau0 fixed at 0 {why}: not in the band"
    return out


def mobility_source(mobility: Artifact | None, dd: Artifact | None) -> dict[str, Any]:
    """The mobility law's relative uncertainty and its effect on the flow stress: B's
    (:func:`_drag_source`) and, where the DD ran its range probe, the law's beyond its
    data (module docstring)."""
    out = _drag_source(mobility, dd)
    rng = ((dd.summary.get("range_sensitivity") if dd is not None else None) or {})
    d, d_err = rng.get("rel_change"), rng.get("rel_change_err")
    if d is None or d_err is None:
        return out
    if rng.get("exact_zero") is True and rng.get("run") is False:
        # range_probe = "auto" did not rerun: no evaluation beyond the range reached any
        # run's dynamics, so no law there moves the flow stress (a term of 0, stated)
        text = ("beyond the law's stress range: 0, exactly ("
                + ("no evaluation was beyond the law's stress range"
                   if rng.get("beyond_evaluations") == 0 else
                   "every evaluation there was cut to the per-step glide limit or held "
                   "and never set the time step")
                + ", in every run of the study: any velocity there at least the law's "
                "gives the same trajectories; the range probe not rerun)")
        method = out.get("method", "none")
        out.update(range_rel_u=0.0, range_exact_zero=True,
                   method=text if method == "none" else f"{method}; {text}")
        return out
    # the law beyond its data lies between what the run did there and c_t: the truth
    # anywhere between, rectangular over the probe's change (sd |d|/sqrt(3)), and the
    # probe's own paired error on top (a change it cannot resolve still counts)
    u_rng = math.sqrt(float(d) ** 2 / 3.0 + float(d_err) ** 2)
    text = (f"beyond the law's stress range the range probe's c_t moves the flow stress by "
            f"{100 * float(d):+.1f} +- {100 * float(d_err):.1f} %: sqrt(d^2/3 + se^2) = "
            f"{100 * u_rng:.2g} %, in quadrature")
    method = out.get("method", "none")
    out.update(rel_u=math.hypot(float(out.get("rel_u") or 0.0), u_rng), range_rel_u=u_rng,
               method=text if method == "none" else f"{method}; {text}")
    return out


def dd_source(dd: Artifact | None, surrogate: Artifact | None = None) -> dict[str, Any]:
    """The DD realisation scatter as it reaches the surrogate's flow stress.

    Measured where the surrogate holds a leave-one-microstructure-out fit for every
    microstructure (``training_noise_rel_u`` of its summary,
    :func:`~scalebridge.surrogates.train.training_noise`): :func:`write_band` then also
    solves the FEM with each fit and carries the DD term in load units. Else the
    standard error of the mean flow stress over the realisations, below.

    Over a study (several loading conditions, the same number of realisations each) the
    relative scatter is pooled over every condition
    (:func:`~scalebridge.surrogates.ensemble.flow_stress_distribution`): the reference
    condition's three realisations alone give an sd with two degrees of freedom, which
    moved the band's DD term from 4.7 to 7.7 % between two runs of the Mo example that
    differ only in their seeds."""
    if dd is None:
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": 1.0, "method": "none",
                "note": "no DD run"}
    ds = dd.summary
    n = len(ds.get("final_dislocations") or [])
    flow, sd = ds.get("flow_stress_mpa"), ds.get("flow_stress_std_mpa")
    if n < 2 or not flow or sd is None:
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": 1.0, "method": "none",
                "note": "one realisation: no scatter measured"}
    rel = abs(float(sd) / float(flow))
    study = _study_scatter(dd)
    noise = (surrogate.summary if surrogate is not None else {}).get("training_noise_rel_u")
    if noise is not None:   # measured only over a fit per microstructure (train.py)
        return {"rel_u": float(noise), "by_fits": True,
                "input_rel_u": float(study["rel_std"]) if study and study["rel_std"] else rel,
                "sensitivity": 1.0,
                "method": "the surrogate's fits with each microstructure held out: "
                          "sqrt(n - 1) x the relative sd of their flow stresses (how the "
                          "realisations' scatter moves a fit)",
                "realisations": n, "reference_condition_rel_sd": rel}
    if study is not None and study["conditions"] > 1 and study["rel_std"] is not None:
        per = study["paths"] / study["conditions"]
        return {"rel_u": float(study["rel_sem"]), "input_rel_u": float(study["rel_std"]),
                "sensitivity": 1.0,
                "dof": max(int(study["paths"]) - int(study["conditions"]), 1),
                "method": f"sd/mean of the flow stress pooled over the study's "
                          f"{study['conditions']} conditions ({per:.3g} realisations "
                          f"each), / sqrt({per:.3g})",
                "realisations": n, "conditions": study["conditions"],
                "reference_condition_rel_sd": rel}
    return {"rel_u": rel / math.sqrt(n), "input_rel_u": rel, "sensitivity": 1.0,
            "dof": n - 1,
            "method": f"sd/mean/sqrt(n) of the flow stress over n = {n} realisations",
            "realisations": n}


def _study_scatter(dd: Artifact) -> dict[str, Any] | None:
    """:func:`~scalebridge.surrogates.ensemble.flow_stress_distribution` of a DD run's
    realisations, or None when they cannot be read as strain paths (a stress-controlled
    run)."""
    from scalebridge.errors import ScalebridgeError
    from scalebridge.surrogates.data import read_ddrun
    from scalebridge.surrogates.ensemble import flow_stress_distribution

    try:
        return flow_stress_distribution(read_ddrun(dd.path))
    except ScalebridgeError as e:
        log.info("band: the DD's realisations as strain paths: %s", e)
        return None


def _first_order_surrogate(sources: dict[str, dict[str, Any]]) -> None:
    """Without the fits' measured training noise, remove the DD term (the training
    realisations' noise to first order) from a DD-fitted surrogate's term, which holds it
    as well."""
    s, d = sources["surrogate"], float(sources["dd"].get("rel_u") or 0.0)
    if s.get("rel_u") and d > 0:
        s["rel_u"] = math.sqrt(max(float(s["rel_u"]) ** 2 - d * d, 0.0))
        s["method"] += f"; less the dd term ({d:.2g}), the training realisations' noise"


def _fits_failed(sources: dict[str, dict[str, Any]], dd: Artifact | None,
                 sur: Artifact, why: str) -> None:
    """The DD term by the standard error of the mean when the surrogate's fits cannot
    be used; the surrogate's own term then holds the training noise, removed to first
    order. The note makes the band's verdict amber."""
    log.warning("band: the surrogate's fits without each microstructure: %s; the DD term "
                "through the flow stress instead", why)
    from scalebridge.surrogates.train import beyond_scatter

    # the surrogate's record removed the fits' measured noise: put it back first
    sm = sur.summary
    e, sig = sm.get("heldout_flow_rel_error"), sm.get("flow_stress_rel_std")
    if e is not None and sig is not None:
        sources["surrogate"]["rel_u"] = beyond_scatter(float(e), float(sig))
    sources["dd"] = {**dd_source(dd), "note": f"the surrogate's fits unusable ({why})"}
    _first_order_surrogate(sources)


def surrogate_source(surrogate: Artifact | None) -> dict[str, Any]:
    """The surrogate's held-out flow-stress error beyond the realisation scatter (module
    docstring); 0 without a note for a surrogate not fitted to DD realisations."""
    sm = surrogate.summary if surrogate is not None else {}
    u = sm.get("flow_model_rel_u")
    if u is None:
        if sm.get("realisation_scatter_rmse_mpa") is not None:   # DD-fitted, older record
            return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": 1.0,
                    "method": "none", "note": "the Surrogate predates its held-out "
                    "flow-stress error (refit to carry it)"}
        return {"rel_u": 0.0, "input_rel_u": None, "sensitivity": 1.0, "method": "none"}
    paths = int(sm.get("n_val") or 0) * max(len(sm.get("heldout_fold_ratios") or []), 1)
    return {"rel_u": float(u), "input_rel_u": sm.get("heldout_flow_rel_error"),
            "sensitivity": 1.0, "heldout_paths": paths or None,
            "method": "held-out DD paths: RMS relative error of the surrogate's flow stress, "
                      "less the realisation scatter"
                      + (" and the training realisations' noise (the dd term)"
                         if sm.get("training_noise_rel_u") is not None else "")
                      + " in quadrature"}


def surrogate_dof(src: Mapping[str, Any]) -> float | None:
    """ν of the surrogate's term: u² = e² − (what a rerun would change), e² a mean square
    over ``heldout_paths`` held-out paths, so by Welch–Satterthwaite with the subtracted
    terms taken as known, u⁴/(e⁴/paths); of its final ``rel_u`` (less the dd term on the
    first-order route); None without held-out paths."""
    u, e, paths = (float(src.get(k) or 0.0) for k in ("rel_u", "input_rel_u",
                                                       "heldout_paths"))
    return u ** 4 / (e ** 4 / paths) if u > 0 and e > 0 and paths > 0 else None


def combine(sources: dict[str, dict[str, Any]]) -> tuple[float, dict[str, float]]:
    """(combined relative uncertainty u, each source's share of u²)."""
    var = {k: float(v.get("rel_u") or 0.0) ** 2 for k, v in sources.items()}
    tot = sum(var.values())
    u = math.sqrt(tot)
    shares = {k: (v / tot if tot > 0 else 0.0) for k, v in var.items()}
    return u, shares


# ---------------------------------------------------------------------- the FEM
def _curve(fem_dir: Path) -> np.ndarray:
    """(steps, 3) load factor, displacement, load from ``load_displacement.csv``."""
    # imported here: the continuum package loads dolfinx, which only the FEM stages need
    from scalebridge.continuum.limit_load import load_displacement_curve

    return load_displacement_curve(fem_dir)


def band_csv_columns(disp_name: str) -> list[str]:
    """The columns of ``load_band.csv``: the curve (load factor, displacement, load) and
    its pointwise band, L(δ) ∓ k·u(δ) at each point with the final load's k (the last
    column): not the final or maximum load's bands of ``band.json``."""
    return ["load_factor", disp_name, "load_mpa", "pointwise_band_low_mpa",
            "pointwise_band_high_mpa", "pointwise_coverage_factor"]


def plot_band(path: Path, main: np.ndarray, lo: np.ndarray, hi: np.ndarray,
              fold_curves: list[np.ndarray], *, k: float, level: float | None,
              final_band: list[float], max_band: list[float], max_k: float,
              shares: Mapping[str, float], load_name: str, disp_name: str) -> list[str]:
    """``load_band.png``: the FEM's load-displacement curve (``main``: load factor,
    displacement, load), its pointwise band (shaded: ``lo``/``hi``, ± ``k`` u at each
    displacement, the curves compared at the same displacement), the fits' curves, and
    the two bands the summary states as error bars at their points, each with its own
    k: the final load's (``final_band``, ``k``) and the maximum load's (``max_band``,
    ``max_k``: the maxima of the scaled and fitted curves, wherever they fall, so it can
    be narrower than the pointwise band at that point). Where the maximum is the last
    point the two bars stand side by side. Returns the legend's labels."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    x, y = main[:, 1], main[:, 2]
    i_max = int(np.argmax(y))
    span = float(np.ptp(x)) or 1.0
    dx = 0.012 * span if i_max == len(y) - 1 else 0.0   # one point: bars side by side
    fig, ax = plt.subplots(figsize=(5, 4.6))
    cover = f", {100 * level:g} %" if level else ""
    ax.fill_between(x, lo, hi, color="C0", alpha=0.2, lw=0,
                    label=f"pointwise band of the curve: ± k·u at each displacement, "
                    f"k = {k:.3g} (the final load's{cover})")
    for i, c in enumerate(fold_curves):
        ax.plot(c[:, 1], c[:, 2], color="0.45", lw=0.8, ls="--",
                label="surrogates fitted to other DD realisations" if i == 0 else None)
    ax.plot(x, y, "C0o-", ms=3, label="FEM (surrogate)")
    for at, band, kk, what, why, colour, mark, shift in (
            (len(y) - 1, final_band, k, "final load", "", "C3", "s", dx),
            (i_max, max_band, max_k, "maximum load", "; the curves' maxima", "C2", "D", -dx)):
        xv, yv = x[at] + shift, y[at]
        ax.errorbar([xv], [yv], yerr=[[yv - band[0]], [band[1] - yv]], fmt=mark,
                    color=colour, ms=4, capsize=4, lw=1.4, zorder=5,
                    label=f"{what} {yv:.4g} MPa, its band [{band[0]:.4g}, {band[1]:.4g}] MPa "
                    f"(k = {kk:.3g}{why})")
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))   # mm values are long labels
    ax.set_xlabel(axis_label(disp_name))
    ax.set_ylabel(axis_label(load_name))
    # two lines: the four shares on one ran past the figure's edge
    ax.set_title("variance of the final load:\n" + shares_text(shares, " / "), fontsize=8)
    # below the axes, one entry a line (the curve crosses every corner of the axes)
    legend = fig.legend(fontsize=6.5, loc="lower center", ncol=1, frameon=False)
    fig.tight_layout(rect=(0, 0.25, 1, 1))
    labels = [t.get_text() for t in legend.get_texts()]
    save_figure(fig, path, dpi=120)
    return labels


def write_band(work: Path, settings: BandSettings, fem_settings: Any,
               inputs: dict[str, Artifact], resources: Resources | None = None
               ) -> dict[str, Any]:
    """Compute the band into ``work``; returns the summary (module docstring)."""
    from scalebridge.surrogates.ensemble import scale_hardening
    from scalebridge.surrogates.train import fold_models, leave_one_out_spread, load_surrogate

    fem, sur = inputs["fem"], inputs["surrogate"]
    pot, props = inputs.get("potential"), inputs.get("properties")
    members: list[dict[str, Any]] = []
    note = None
    if pot is None:
        note = "no potential ensemble in this chain"
    elif not settings.potential_members:
        note = "potential_members = false"
    else:
        try:
            members = potential_members(pot, props)
        except Exception as e:  # a model ASE cannot run: the share is 0, said so
            log.warning("band: potential members' properties failed: %s", e)
            note = f"the members' properties failed ({type(e).__name__}: {e})"
    dd = inputs.get("dd")
    sources = {"potential": potential_source(members, note,
                                             dd.summary if dd is not None else None),
               "mobility": mobility_source(inputs.get("mobility"), inputs.get("dd")),
               "dd": dd_source(inputs.get("dd"), sur),
               "surrogate": surrogate_source(sur)}
    folds: list[tuple[int, Any]] = []
    if sources["dd"].get("by_fits"):
        try:
            folds = fold_models(sur.path)
        except Exception as e:  # a damaged fit: the flow-stress route, said so
            _fits_failed(sources, inputs.get("dd"), sur, f"reading the fits: {e}")
        n_ms = sur.summary.get("microstructures")
        if folds and n_ms is not None and len(folds) + 1 != int(n_ms):
            _fits_failed(sources, inputs.get("dd"), sur, f"{len(folds)} fits for "
                         f"{n_ms} microstructures (one per microstructure needed)")
            folds = []
    else:
        _first_order_surrogate(sources)
    u, _ = combine(sources)
    # the solves measure the load's sensitivity to the flow stress at ±u; the band is
    # ±k·u times that slope (linear propagation), not the loads the solves gave: near the
    # end of the Mo cylinder's reload, a stronger material barely raises the final load
    # while another DD does, by as much as a weaker one lowers it (module docstring)
    f_lo, f_hi = max(1.0 - u, 0.05), 1.0 + u
    u_solves = u    # a fit that fails its FEM solve below changes u, not these solves
    main = _curve(fem.path)
    final = float(fem.summary.get("final_load_mpa", main[-1, 2]))
    curves = {"low": main, "high": main}
    finals = {"low": final, "high": final}
    fs = fem_settings.model_copy(update={"write_fields": False})
    if u > 0:
        model = load_surrogate(sur.path)
        for name, f in (("low", f_lo), ("high", f_hi)):
            art = fs.make(scale_hardening(model, f), work / "members" / name, resources)
            curves[name] = _curve(art.path)
            finals[name] = float(art.summary["final_load_mpa"])
    slope = (finals["high"] - finals["low"]) / (f_hi - f_lo) if u > 0 else 0.0
    # the DD term in load units: the FEM solved with the surrogate's fits to the other
    # microstructures (the final load of the Mo cylinder sits on the reload after the
    # avalanche, whose timing another DD moves more than its flow stress: these solves
    # gave sd 0.45 MPa x sqrt(2) = 0.64 where the flow-stress route gives 0.24, and
    # five reruns of the chain 0.58)
    fold_curves, fold_finals = {}, []
    try:
        for lab, fmodel in folds:
            art = fs.make(fmodel, work / "members" / f"m{lab}", resources)
            fold_curves[lab] = _curve(art.path)
            fold_finals.append(float(art.summary["final_load_mpa"]))
    except Exception as e:  # a fit the FEM cannot solve: the flow-stress route, said so
        _fits_failed(sources, inputs.get("dd"), sur, f"a fit's FEM solve: {e}")
        fold_curves, fold_finals = {}, []
        u, _ = combine(sources)   # the solves at 1 -/+ u have run: only the terms change
    contrib = {s: abs(slope) * float(sources[s].get("rel_u") or 0.0) for s in sources}
    u_flow = u   # the sources carried through the flow stress (all, without folds)
    if fold_curves:
        loads = [final, *fold_finals]
        d_load = float(leave_one_out_spread(loads))
        contrib["dd"] = d_load
        u_flow = math.sqrt(max(u * u - float(sources["dd"]["rel_u"]) ** 2, 0.0))
        sources["dd"].update(
            load_u_mpa=d_load, fold_loads_mpa=loads, dof=len(loads) - 1,
            method=sources["dd"]["method"] + f"; in load units: sqrt({len(loads) - 1}) x "
            f"the sd of the final loads of the FEM solved with each fit, "
            f"{', '.join(f'{x:.4g}' for x in loads)} MPa")
    load_u = math.sqrt(sum(c * c for c in contrib.values()))
    sources["surrogate"]["dof"] = surrogate_dof(sources["surrogate"])
    nu = effective_dof({s: (contrib[s], sources[s].get("dof")) for s in sources})
    auto = settings.coverage_factor == "auto"
    k = t_coverage(nu) if auto else float(settings.coverage_factor)
    shares = {s: (contrib[s] ** 2 / load_u ** 2 if load_u > 0 else 0.0) for s in sources}
    if members:
        with open(work / "potential_members.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(list(members[0]))
            w.writerows([[f"{v:.6g}" if isinstance(v, float) else v for v in m.values()]
                         for m in members])
    lam = main[:, 0]
    flow_half = 0.0 if u_solves == 0 else (u_flow / (f_hi - f_lo)) * np.abs(
        np.interp(lam, curves["high"][:, 0], curves["high"][:, 2])
        - np.interp(lam, curves["low"][:, 0], curves["low"][:, 2]))
    dd_half = np.zeros_like(lam)
    if fold_curves:
        at = np.array([main[:, 2], *(np.interp(lam, c[:, 0], c[:, 2])
                                     for c in fold_curves.values())])
        dd_half = leave_one_out_spread(at)
    half = k * np.hypot(flow_half, dd_half)
    lo, hi = main[:, 2] - half, main[:, 2] + half
    load_name = fem.summary.get("load_name", "load (MPa)")
    disp_name = fem.summary.get("displacement_name", "displacement")
    with open(work / "load_band.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(band_csv_columns(disp_name))
        w.writerows([[f"{a:.8g}" for a in r] for r in zip(
            lam, main[:, 1], main[:, 2], lo, hi, np.full_like(lam, k), strict=True)])

    band = [final - k * load_u, final + k * load_u]
    # another run of the chain draws its load with the same u: the two differ by √2 u
    rerun = [final - math.sqrt(2) * k * load_u, final + math.sqrt(2) * k * load_u]
    # the maximum load (an upper yield where the material has one) with its own
    # sensitivity and its own DD term: the final load of a curve that yields and
    # reloads is where the ramp stopped, the maximum is the component's strength
    peaks = {n: float(c[:, 2].max()) for n, c in curves.items()}
    i_peak = int(np.argmax(main[:, 2]))
    peak = float(main[i_peak, 2])
    peak_slope = (peaks["high"] - peaks["low"]) / (f_hi - f_lo) if u_solves > 0 else 0.0
    fold_peaks = [peak, *(float(c[:, 2].max()) for c in fold_curves.values())]
    peak_dd = float(leave_one_out_spread(fold_peaks)) if fold_curves else 0.0
    peak_u = math.hypot(u_flow * peak_slope, peak_dd)
    # its own ν_eff: the flow-stress sources scaled by the maximum's slope, the fits' term
    peak_terms = {s: (abs(peak_slope) * float(sources[s].get("rel_u") or 0.0),
                      sources[s].get("dof")) for s in sources}
    if fold_curves:
        peak_terms["dd"] = (peak_dd, sources["dd"]["dof"])
    peak_nu = effective_dof(peak_terms)
    peak_k = t_coverage(peak_nu) if auto else k
    summary = {
        "fem_load_band_mpa": band, "final_load_mpa": final,
        "load_uncertainty_mpa": load_u,
        "max_load_mpa": peak,
        "max_load_band_mpa": [peak - peak_k * peak_u, peak + peak_k * peak_u],
        "max_load_uncertainty_mpa": peak_u,
        "max_load_coverage_factor": peak_k, "max_load_effective_dof": peak_nu,
        # the curve's pointwise band where the load is largest: the same displacement on
        # every curve (k of the final load), not the maxima's own band above
        "pointwise_band_at_max_load_mpa": [float(lo[i_peak]), float(hi[i_peak])],
        "rerun_interval_mpa": rerun,
        "dmax_load_dscale_mpa": peak_slope,
        "scaled_solve_max_loads_mpa": [peaks["low"], peaks["high"]],
        "band_shares": shares, "band_contributions_mpa": contrib,
        "rel_uncertainty": u, "flow_rel_uncertainty": u_flow,
        "coverage_factor": k, "effective_dof": nu,
        "coverage_level": COVERAGE_LEVEL if auto else None,
        "scale_factors": [f_lo, f_hi],
        "scaled_at_rel_u": u_solves,
        "scaled_solve_loads_mpa": [finals["low"], finals["high"]],
        "dload_dscale_mpa": slope,
        "fold_loads_mpa": sources["dd"].get("fold_loads_mpa"),
        "fold_max_loads_mpa": fold_peaks if fold_curves else None,
        "sources": {s: {kk: vv for kk, vv in v.items() if kk != "member_rel_sd"}
                    for s, v in sources.items()},
        "potential_rel_sd": unitless_keys(sources["potential"].get("member_rel_sd")),
        "fem_solves": (2 if u_solves > 0 else 0) + len(fold_curves),
    }
    plot_band(work / "load_band.png", main, lo, hi, list(fold_curves.values()),
              k=k, level=COVERAGE_LEVEL if auto else None, final_band=band,
              max_band=summary["max_load_band_mpa"], max_k=peak_k,
              shares={s: shares[s] for s in SOURCES}, load_name=load_name,
              disp_name=disp_name)
    write_json_atomic(work / "band.json", {**summary, "potential_members": members,
                                           "sources": sources})
    log.info("band: final load %.4g MPa in [%.4g, %.4g] (k = %.3g, nu_eff %s; u = %.3g; "
             "shares %s)", final, band[0], band[1], k,
             "-" if nu is None else f"{nu:.3g}", u,
             ", ".join(f"{s} {shares[s]:.2f}" for s in SOURCES))
    return summary


def make_band(settings: BandSettings, fem_settings: Any, inputs: dict[str, Artifact],
              out: Path, resources: Resources | None = None, force: bool = False
              ) -> Artifact:
    """The ``LoadBand`` artifact at ``out`` (skipped when current)."""
    fp = {"band": settings.model_dump(mode="json"),
          "fem": fem_settings.fingerprint_settings()
          if hasattr(fem_settings, "fingerprint_settings") else fem_settings.model_dump()}

    def build(work: Path) -> dict[str, Any]:
        return write_band(work, settings, fem_settings, inputs, resources)

    return produce(KIND, out, fp, dict(inputs), build, force=force)


__all__ = ["COVERAGE_LEVEL", "KIND", "SOURCES", "BandSettings", "band_csv_columns",
           "combine", "dd_source", "effective_dof", "make_band", "mobility_source",
           "plot_band", "potential_members",
           "potential_source", "surrogate_dof", "surrogate_source", "t_coverage",
           "unitless_keys", "write_band"]
