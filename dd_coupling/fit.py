"""Fit mobility laws to MD velocity data: DefectStats -> MobilityLaw artifact.

``FitMobilitySettings().make(defect_stats, out, properties=...)`` reads ``velocity.csv``
(rows md flagged as unmeasurable are skipped) and takes the glide laws from
:mod:`scalebridge.md.glide_fit`, the one implementation md and dd share:

* the edge glide law per temperature, ``v = v_s x/sqrt(1+x²)``, ``x = b(τ−τ₀)/(B v_s)``,
  with B, τ₀ and their 95% intervals, and whether B has a trend with T. When the
  DefectStats holds md's ``glide_fit.json`` those fits are used as they are (same rows,
  same function, so the same B); otherwise (a velocity table from elsewhere) they are
  fitted here with :func:`scalebridge.md.glide_fit.fit_glide_laws`. The DD's
  :class:`LinearDragMobility` gets B(T) = B0 + B1·T (B1 = 0 unless the trend is
  supported), the threshold τ₀(T) = τ₀,0 + τ₀,1·T (:func:`scalebridge.md.glide_fit.
  dd_threshold`; constant unless its trend is supported) and the saturation speed, the
  edge's for edges and, where screws were measured, the screws' B ratio and τ₀ for
  screws. The summary gives τ₀ with its 95% interval in MPa and, with a Properties
  artifact, in units of μ (``drag_<character>_tau0_over_mu``); a τ₀ the model choice
  fixed at 0 has no error or interval there, and ``drag_<character>_tau0_note`` says
  so, with the τ₀ the best threshold model fitted;
* the kink-pair law for screws (ΔH₀, τ_P, v₀, p and q fixed) when screw rows exist at two
  or more temperatures;
* the neural ensemble law (:class:`~scalebridge.dd_coupling.neural.NeuralMobility`) on
  bootstrap resamples, one member per resample, each character's τ scaled by its own
  largest |τ| (a screw point at a higher stress leaves the edges' inputs as they were),

and writes the chosen law (``law = "neural"`` or ``"drag"``) as ``mobility.json`` (+
``mobility.pt``), ``fit.json`` (drag parameters and uncertainties, neural metrics) and
``velocity_fit.png`` with ``velocity_fit.csv`` beside it. The summary's ``tau_max_mpa`` is
the largest |τ| of every row, ``tau_max_mpa_by_character`` each character's own (the DD
glides one character: its data end at that character's top).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.dd_coupling.inputs import VelocityTable, read_properties, read_velocity_table
from scalebridge.dd_coupling.mobility import (
    CHARACTERS,
    LinearDragMobility,
    MobilityLaw,
    ValidRange,
    check_mobility,
    save_mobility,
)
from scalebridge.dd_coupling.neural import NeuralMobility
from scalebridge.errors import DataError, SettingsError
from scalebridge.md import glide_fit
from scalebridge.plotting import save_figure
from scalebridge.settings import StrictModel

log = logging.getLogger("scalebridge.dd_coupling")


class FitMobilitySettings(StrictModel):
    """Fitting a mobility law to MD velocity-stress data."""

    law: Literal["neural", "drag"] = Field("neural", description="the law written as the "
                                           "MobilityLaw (the drag fit is always reported)")
    burgers_a: float | None = Field(
        None, gt=0, description="Burgers vector (Å) when no Properties artifact is given")
    members: int = Field(4, ge=1, description="neural ensemble members (bootstrap resamples)")
    hidden: int = Field(16, ge=2, description="hidden units per layer")
    terms: int = Field(4, ge=1, description="tanh and sinh terms per member")
    epochs: int = Field(1000, ge=1, description="full-batch Adam epochs per member")
    learning_rate: float = Field(0.02, gt=0, description="Adam learning rate")
    relative_error_floor: float = Field(
        0.02, ge=0, description="relative error added in quadrature to velocity_err_m_s")
    seed: int = Field(0, description="random seed")
    out_of_range: Literal["error", "warn", "clamp"] = Field(
        "error", description="what the neural law does outside its training range")

    def make(self, defect_stats: Artifact | str | Path, out: str | Path,
             properties: Artifact | str | Path | None = None, force: bool = False
             ) -> Artifact:
        """Fit the laws to ``defect_stats`` and write the MobilityLaw artifact at ``out``.
        The Burgers vector comes from ``properties`` (or ``burgers_a``)."""
        ds_input: Artifact | Path = defect_stats if isinstance(defect_stats, Artifact) else (
            read_artifact(defect_stats, kind="DefectStats") if Path(defect_stats).is_dir()
            else Path(defect_stats))
        table = read_velocity_table(ds_input)
        inputs: dict[str, Any] = {"defect_stats": ds_input}
        mu_pa: float | None = None
        if properties is not None:
            material = read_properties(properties)
            b_m, mu_pa = material.b_m, material.mu_pa
            inputs["properties"] = properties if isinstance(properties, Artifact) else (
                Path(material.source))
        elif self.burgers_a is not None:
            b_m = self.burgers_a * 1e-10
        else:
            raise SettingsError("fit-mobility needs the Burgers vector: give a Properties "
                                "artifact (--properties) or set burgers_a")

        md_fits = md_glide_fits(ds_input) if isinstance(ds_input, Artifact) else None

        def build(work: Path) -> dict[str, Any]:
            return fit_and_write(self, table, b_m, work, md_fits, mu_pa=mu_pa)

        return produce("MobilityLaw", out, self, inputs, build, force=force)


# ---------------------------------------------------------------------- glide laws
def _sigma(t: VelocityTable, rel: float) -> np.ndarray:
    return glide_fit.sigma(t.velocity_m_s, t.velocity_err_m_s, rel)


def fit_drag(t: VelocityTable, b_m: float, rel: float = glide_fit.REL_ERROR,
             shear_wave_m_s: float | None = None) -> dict[str, Any]:
    """:func:`scalebridge.md.glide_fit.fit_drag` on one character's rows of ``t``
    (``b0_pa_s``, ``b1_pa_s_k``, ``saturation_m_s``, ``drag_by_temperature`` with B, τ₀
    and their intervals, ``trend``)."""
    try:
        return glide_fit.fit_drag(t.tau_pa, t.temperature_k, t.velocity_m_s,
                                  t.velocity_err_m_s, b_m, shear_wave_m_s=shear_wave_m_s,
                                  rel=rel)
    except ValueError as e:
        raise DataError(f"{t.source}: {e}") from None


def fit_kink_pair(t: VelocityTable, b_m: float, drag_pa_s: float | None = None,
                  p: float = glide_fit.KINK_P, q: float = glide_fit.KINK_Q,
                  rel: float = glide_fit.REL_ERROR, tau_p_pa: float | None = None
                  ) -> dict[str, Any]:
    """:func:`scalebridge.md.glide_fit.fit_kink_pair` on screw rows of ``t`` (in series
    with ``drag_pa_s``)."""
    try:
        return glide_fit.fit_kink_pair(t.tau_pa, t.temperature_k, t.velocity_m_s,
                                       t.velocity_err_m_s, p=p, q=q, tau_p_pa=tau_p_pa,
                                       drag_pa_s=drag_pa_s, b_m=b_m, rel=rel)
    except ValueError as e:
        raise DataError(f"{t.source}: {e}") from None


def dd_threshold(fit: dict[str, Any]) -> dict[str, Any]:
    """The DD law's threshold (``dd_tau0_*`` keys, MPa) of one character's drag fit:
    the fit's own, or :func:`scalebridge.md.glide_fit.dd_threshold` of its rows for a
    ``glide_fit.json`` written before md reported it; one not measured (τ₀ fixed at 0 by
    the model choice, :func:`~scalebridge.md.glide_fit.tau0_measured`) is rebuilt from
    the rows too, so a fit written before it was marked as such (its [0, 0] interval)
    reads as a new one."""
    if "dd_tau0_mpa" in fit and glide_fit.tau0_measured(fit, "dd_"):
        return {k: v for k, v in fit.items() if k.startswith("dd_tau0_")}
    return glide_fit.dd_threshold(fit["by_temperature"],
                                  fit.get("quantile") or glide_fit.t95(0),
                                  fit.get("tau0_cov_mpa2"), fit.get("model"),
                                  skipped=fit.get("model_skipped"))


def md_glide_fits(defect_stats: Artifact | Path) -> dict[str, Any] | None:
    """md's fitted laws (``glide_fit.json``) of a DefectStats artifact, None when it has
    none (a velocity table from elsewhere). A τ₀ fixed at 0 in a fit written before
    that was marked as not measured reads as new fits write it
    (:func:`_fixed_tau0_not_measured`)."""
    path = (defect_stats.path if isinstance(defect_stats, Artifact) else
            Path(defect_stats)) / "glide_fit.json"
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if not doc.get("drag"):
        return None
    for fit in doc["drag"].values():
        _fixed_tau0_not_measured(fit)
    return doc


def _fixed_tau0_not_measured(fit: dict[str, Any]) -> dict[str, Any]:
    """One character's drag fit (updated in place, returned) with each row whose τ₀ was
    fixed at 0 as :func:`~scalebridge.md.glide_fit.fit_drag` writes it now: error None,
    interval [None, None] and a ``tau0_note`` (a fit written before gave 0 and [0, 0]),
    and the DD threshold's keys rebuilt (:func:`dd_threshold`)."""
    for key in ("by_temperature", "drag_by_temperature"):
        for r in fit.get(key) or []:
            if glide_fit.tau0_measured(r):
                continue
            r.update(tau0_err_mpa=None, tau0_ci95_mpa=[None, None])
            if not r.get("tau0_note"):
                r["tau0_note"] = glide_fit.tau0_fixed_note(
                    fit.get("model"), r["temperature_k"], stresses=r.get("n_points"),
                    skipped=fit.get("model_skipped"))
    if "dd_tau0_mpa" in fit:
        fit.update(dd_threshold(fit))
    return fit


def tau_max_by_character_pa(t: VelocityTable) -> dict[str, float]:
    """Each measured character's largest |τ| in Pa, in :data:`CHARACTERS` order."""
    return {CHARACTERS[c]: float(np.max(np.abs(t.tau_pa[t.character == c])))
            for c in sorted(set(t.character.tolist()))}


def tau_by_character(t: VelocityTable) -> dict[str, tuple[float, float]]:
    """Each measured character's (0, max |τ|) in MPa, in :data:`CHARACTERS` order: the
    law's range per character (the MD may drive edges and screws to different
    stresses)."""
    return {c: (0.0, v * 1e-6) for c, v in tau_max_by_character_pa(t).items()}


# ---------------------------------------------------------------------- neural fit
def fit_neural(t: VelocityTable, s: FitMobilitySettings) -> NeuralMobility:
    """Train the ensemble on ``t``: each member on a bootstrap resample (member 0 on all
    rows; with fewer than 10 rows every member sees all rows and the spread comes from
    the random initialisation alone), loss = mean squared error normalised by the per-row
    uncertainty. Each row's τ is scaled by its own character's largest |τ|
    (``tau_scale_by_character_pa``, the stresses of :func:`tau_by_character`), so the
    edges' inputs, and with them the edge law, do not depend on how far the screws were
    driven; the velocity scale is the largest |v| of all rows."""
    tau_scale = float(np.max(np.abs(t.tau_pa)))
    v_scale = float(np.max(np.abs(t.velocity_m_s)))
    if tau_scale == 0 or v_scale == 0:
        raise DataError(f"{t.source}: stresses or velocities are all zero")
    tlo, thi = float(t.temperature_k.min()), float(t.temperature_k.max())
    by_char = tau_by_character(t)
    vr = ValidRange(tau_mpa=(0.0, tau_scale * 1e-6), temperature_k=(tlo, thi),
                    characters=tuple(by_char), tau_mpa_by_character=by_char,
                    tau_lowest_mpa_by_character=ValidRange.lowest_by_character(
                        t.character, t.tau_pa))
    # each character's own largest |τ|; a character driven only at τ = 0 keeps the
    # scale of all the data
    scales = {c: v for c, v in tau_max_by_character_pa(t).items() if v > 0}
    # seeded before the members are built: their initial weights come from torch's
    # global generator, whose state otherwise depends on what ran earlier in the process
    # (in a chain run: the potential and MD stages), and a rerun gave another law
    torch.manual_seed(s.seed)
    law = NeuralMobility(tau_scale, v_scale, 0.5 * (tlo + thi), max(0.5 * (thi - tlo), 1.0),
                         vr, n_members=s.members, hidden=s.hidden, n_terms=s.terms,
                         out_of_range=s.out_of_range, tau_scale_by_character_pa=scales)
    rng = np.random.default_rng(s.seed)
    char = torch.as_tensor(t.character)
    # each row in its own character's units, the division the law makes when it is used
    tau_hat = torch.as_tensor(t.tau_pa) / law.tau_scales(char)
    t_hat = torch.as_tensor((t.temperature_k - law.t_mid_k) / law.t_half_k)
    v_hat = torch.as_tensor(t.velocity_m_s / v_scale)
    w = torch.as_tensor(v_scale / _sigma(t, s.relative_error_floor))
    # symmetric augmentation is unnecessary (odd by construction)
    for k, member in enumerate(law.members):
        idx = np.arange(len(t)) if k == 0 or len(t) < 10 else rng.integers(0, len(t), len(t))
        ii = torch.as_tensor(idx)
        opt = torch.optim.Adam(member.parameters(), lr=s.learning_rate)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.epochs)
        for _ in range(s.epochs):
            opt.zero_grad()
            pred = member(tau_hat[ii], t_hat[ii], char[ii])
            loss = torch.mean(((pred - v_hat[ii]) * w[ii]) ** 2)
            loss.backward()
            opt.step()
            sched.step()
    return law


# ---------------------------------------------------------------------- artifact
def fit_and_write(s: FitMobilitySettings, t: VelocityTable, b_m: float, work: Path,
                  md_fits: dict[str, Any] | None = None, mu_pa: float | None = None
                  ) -> dict[str, Any]:
    """Fit both laws (the glide laws: ``md_fits`` when md fitted them, else here), check
    the chosen one, write the MobilityLaw files into ``work``. ``mu_pa``: shear modulus
    (Pa) for τ₀ in units of μ, None if unknown."""
    laws = md_fits or glide_fit.fit_glide_laws(
        t.character, t.tau_pa, t.temperature_k, t.velocity_m_s, t.velocity_err_m_s, b_m,
        rel=s.relative_error_floor)
    drag_fits = laws["drag"]
    if not drag_fits:
        raise DataError(f"{t.source}: no glide law could be fitted: "
                        + "; ".join(f"{k}: {v}" for k, v in laws.get("skipped", {}).items()))
    edge = drag_fits.get("edge") or next(iter(drag_fits.values()))
    kink_pair = laws.get("kink_pair")
    if kink_pair is None and "kink_pair" in laws.get("skipped", {}):
        log.warning("kink-pair fit skipped: %s", laws["skipped"]["kink_pair"])
    thresholds = {c: dd_threshold(f) for c, f in drag_fits.items()}
    edge_t0 = thresholds.get("edge") or next(iter(thresholds.values()))
    screw_ratio, screw_t0 = 1.0, None
    if "edge" in drag_fits and "screw" in drag_fits:
        screw_ratio = drag_fits["screw"]["b0_pa_s"] / drag_fits["edge"]["b0_pa_s"]
        screw_t0 = thresholds["screw"]
    by_char = tau_by_character(t)
    tau_max = float(np.max(np.abs(t.tau_pa))) * 1e-6
    vr = ValidRange(tau_mpa=(0.0, tau_max),
                    temperature_k=(float(t.temperature_k.min()), float(t.temperature_k.max())),
                    characters=tuple(by_char), tau_mpa_by_character=by_char,
                    tau_lowest_mpa_by_character=ValidRange.lowest_by_character(
                        t.character, t.tau_pa))
    drag_law = LinearDragMobility(burgers_m=b_m, b0_pa_s=edge["b0_pa_s"],
                                  b1_pa_s_k=edge["b1_pa_s_k"], screw_ratio=screw_ratio,
                                  saturation_m_s=edge["saturation_m_s"],
                                  tau0_pa=edge_t0["dd_tau0_mpa"] * 1e6,
                                  tau0_pa_k=edge_t0["dd_tau0_mpa_k"] * 1e6,
                                  screw_tau0_pa=(None if screw_t0 is None
                                                 else screw_t0["dd_tau0_mpa"] * 1e6),
                                  screw_tau0_pa_k=(0.0 if screw_t0 is None
                                                   else screw_t0["dd_tau0_mpa_k"] * 1e6),
                                  valid_range=vr)
    metrics: dict[str, Any] = {}
    law: MobilityLaw = drag_law
    neural: NeuralMobility | None = None
    if s.law == "neural":
        neural = fit_neural(t, s)
        law = neural
    check_mobility(law)
    # fit quality of both laws on the data
    sig = _sigma(t, s.relative_error_floor)
    for name, lw in (("drag", drag_law), ("neural", neural)):
        if lw is None:
            continue
        pred = np.asarray(lw.velocity(t.tau_pa, t.temperature_k, t.character))
        metrics[name] = {
            "rmse_m_s": float(np.sqrt(np.mean((pred - t.velocity_m_s) ** 2))),
            "chi2_red": float(np.mean(((pred - t.velocity_m_s) / sig) ** 2)),
            "r2": float(1 - np.sum((pred - t.velocity_m_s) ** 2)
                        / max(np.sum((t.velocity_m_s - t.velocity_m_s.mean()) ** 2), 1e-300))}
    if neural is not None:
        _, std = neural.velocity_with_uncertainty(t.tau_pa, t.temperature_k, t.character)
        metrics["neural"]["mean_ensemble_std_m_s"] = float(np.mean(std))
    save_mobility(law, work, extra={"burgers_m": b_m})
    write_json_atomic(work / "fit.json", {"drag": drag_fits, "kink_pair": kink_pair,
                                          "fitted_by": "md" if md_fits else "dd_coupling",
                                          "tau0_in_law": True, "dd_threshold": thresholds,
                                          "metrics": metrics,
                                          "chosen": law.name, "n_rows": len(t)})
    _plot_fit(t, drag_law, neural, work)
    # tau_max_mpa: every row's top (old readers); each character's own beside it: the DD
    # glides one character, whose data end at its own top (Mo: edges 1.5 GPa, screws 2.8)
    summary: dict[str, Any] = {"law": law.name, "n_rows": len(t), "tau_max_mpa": tau_max,
                               "tau_max_mpa_by_character": {c: float(hi) for c, (_, hi)
                                                            in by_char.items()},
                               "glide_acceleration_ratio": t.steadiness()}
    for cname, f in drag_fits.items():
        summary[f"drag_{cname}_b0_pa_s"] = f["b0_pa_s"]
        summary[f"drag_{cname}_b0_err_pa_s"] = f["b0_err_pa_s"]
        # B0's dof: the fit's error dof, Welch-Satterthwaite with the fitted window's
        # term where md measured it (glide_fit.window_systematic); older fits: the dof
        dof = f.get("b0_dof", f.get("dof"))
        if dof is not None:
            summary[f"drag_{cname}_b0_dof"] = dof
        summary.update(threshold_summary(cname, thresholds[cname], mu_pa))
    for name, m in metrics.items():
        summary[f"{name}_r2"] = m["r2"]
    if kink_pair is not None:
        summary["kink_pair_enthalpy_ev"] = kink_pair["enthalpy_ev"]
        summary["kink_pair_enthalpy_err_ev"] = kink_pair["enthalpy_err_ev"]
    return summary


def threshold_summary(character: str, th: dict[str, Any], mu_pa: float | None
                      ) -> dict[str, Any]:
    """Summary keys of one character's DD threshold: ``drag_<c>_tau0_mpa`` (τ₀,0) with
    its standard error and 95% interval, ``..._mpa_k`` (τ₀,1), ``..._over_mu`` and
    ``..._ci95_over_mu`` (τ₀,0/μ, when ``mu_pa`` is known), ``..._note``. A τ₀ fixed at 0
    by the model choice (its error None) was not measured: the error and interval keys
    are left out and the note says so, with the τ₀ the threshold candidates fitted."""
    k = f"drag_{character}_tau0"
    measured = glide_fit.tau0_measured(th, "dd_")
    out: dict[str, Any] = {f"{k}_mpa": th["dd_tau0_mpa"]}
    if measured:
        out.update({f"{k}_err_mpa": th["dd_tau0_err_mpa"],
                    f"{k}_ci95_mpa": th["dd_tau0_ci95_mpa"]})
    out[f"{k}_mpa_k"] = th["dd_tau0_mpa_k"]
    if mu_pa:
        out[f"{k}_over_mu"] = th["dd_tau0_mpa"] * 1e6 / mu_pa
        if measured:
            out[f"{k}_ci95_over_mu"] = [None if x is None else x * 1e6 / mu_pa
                                        for x in th["dd_tau0_ci95_mpa"]]
    if th.get("dd_tau0_note"):
        out[f"{k}_note"] = th["dd_tau0_note"]
    return out


def _plot_fit(t: VelocityTable, drag: LinearDragMobility, neural: NeuralMobility | None,
              work: Path) -> str:
    """``velocity_fit.png`` (+ ``.csv``): the MD points, the drag law (dashed) and, with a
    neural law, its mean (solid) and ±2σ band; returns the plot's title, which states
    only what is drawn and, with a neural law, the largest 2σ and the largest
    neural-drag gap (either can be too thin to see against the velocity range)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = []
    band_max = gap_max = 0.0
    for k, (c, tk) in enumerate(sorted({(int(c), float(tk)) for c, tk in
                                        zip(t.character, t.temperature_k, strict=True)})):
        tau_max = float(np.max(np.abs(t.tau_pa[t.character == c])))  # this character's
        grid = np.linspace(-tau_max, tau_max, 101)
        sel = (t.character == c) & (t.temperature_k == tk)
        lab = f"{CHARACTERS[c]} {tk:g} K"
        ax.errorbar(t.tau_pa[sel] * 1e-6, t.velocity_m_s[sel], yerr=t.velocity_err_m_s[sel],
                    fmt="o", ms=3, color=f"C{k}", label=f"MD {lab}")
        vd = np.asarray(drag.velocity(grid, np.full_like(grid, tk), np.full(grid.shape, c)))
        # black above the neural mean: where the two agree the dashes still show
        ax.plot(grid * 1e-6, vd, "--", color=f"C{k}" if neural is None else "k", lw=1,
                zorder=3)
        vn = sd = np.full_like(grid, np.nan)
        if neural is not None:
            vn, sd = neural.velocity_with_uncertainty(grid, np.full_like(grid, tk),
                                                      np.full(grid.shape, c))
            ax.plot(grid * 1e-6, vn, "-", color=f"C{k}", lw=1.5)
            ax.fill_between(grid * 1e-6, vn - 2 * sd, vn + 2 * sd, color=f"C{k}", alpha=0.2)
            band_max = max(band_max, float(np.max(2 * sd)))
            gap_max = max(gap_max, float(np.max(np.abs(vn - vd))))
        rows.extend((CHARACTERS[c], tk, g * 1e-6, a, b_, e)
                    for g, a, b_, e in zip(grid, vd, vn, sd, strict=True))
    ax.set_xlabel("resolved shear stress τ (MPa)")
    ax.set_ylabel("velocity (m/s)")
    title = "mobility fit: drag law (dashed)"
    if neural is not None:
        title = (f"mobility fit: drag law (black dashed), neural mean (solid), ±2σ band\n"
                 f"2σ ≤ {band_max:.3g} m/s, |neural − drag| ≤ {gap_max:.3g} m/s")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, work / "velocity_fit.png", dpi=120)
    plt.close(fig)
    with open(work / "velocity_fit.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["character", "temperature_k", "tau_mpa", "drag_velocity_m_s",
                    "neural_velocity_m_s", "neural_std_m_s"])
        w.writerows(rows)
    return title


__all__ = ["FitMobilitySettings", "dd_threshold", "fit_and_write", "fit_drag",
           "fit_kink_pair", "fit_neural", "md_glide_fits", "tau_by_character",
           "threshold_summary"]
