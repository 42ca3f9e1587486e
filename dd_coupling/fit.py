"""Fit mobility laws to MD velocity data: DefectStats -> MobilityLaw artifact.

``FitMobilitySettings().make(defect_stats, out, properties=...)`` reads ``velocity.csv``,
fits

* the phonon-drag law per character by weighted nonlinear least squares,
  ``v = v_lin / sqrt(1 + (v_lin/c)²)``, ``v_lin = b τ / (B0 + B1·T)`` (B1 only with more
  than one temperature, c only when the data approach saturation), with the parameter
  covariance from the Jacobian (inflated by the reduced χ² when that exceeds 1), giving B
  at every temperature with its standard error;
* the kink-pair law for screws (attempt velocity, enthalpy H0, Peierls stress) when screw
  rows exist at two or more temperatures;
* the neural ensemble law (:class:`~scalebridge.dd_coupling.neural.NeuralMobility`) on
  bootstrap resamples, one member per resample,

and writes the chosen law (``law = "neural"`` or ``"drag"``) as ``mobility.json`` (+
``mobility.pt``), ``fit.json`` (drag parameters and uncertainties, neural metrics) and
``velocity_fit.png`` with ``velocity_fit.csv`` beside it.
"""

from __future__ import annotations

import csv
import logging
import math
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
from scalebridge.settings import StrictModel
from scipy.optimize import least_squares

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
        if properties is not None:
            b_m = read_properties(properties).b_m
            inputs["properties"] = properties if isinstance(properties, Artifact) else (
                Path(read_properties(properties).source))
        elif self.burgers_a is not None:
            b_m = self.burgers_a * 1e-10
        else:
            raise SettingsError("fit-mobility needs the Burgers vector: give a Properties "
                                "artifact (--properties) or set burgers_a")

        def build(work: Path) -> dict[str, Any]:
            return fit_and_write(self, table, b_m, work)

        return produce("MobilityLaw", out, self, inputs, build, force=force)


# ---------------------------------------------------------------------- drag fit
def _sigma(t: VelocityTable, rel: float) -> np.ndarray:
    v = np.abs(t.velocity_m_s)
    floor = 1e-3 * max(float(v.max()), 1e-30)
    return np.sqrt(t.velocity_err_m_s ** 2 + (rel * v) ** 2 + floor ** 2)


def fit_drag(t: VelocityTable, b_m: float, rel: float = 0.02) -> dict[str, Any]:
    """Weighted least-squares fit of the saturating drag law to one character's rows.

    Returns:
        ``b0_pa_s``, ``b1_pa_s_k``, ``saturation_m_s`` (None if not resolved) with
        ``*_err`` standard errors, ``drag_by_temperature`` (list of {temperature_k,
        drag_pa_s, drag_err_pa_s}), ``chi2_red``, ``n``.
    """
    tau, temp, v = t.tau_pa, t.temperature_k, t.velocity_m_s
    sig = _sigma(t, rel)
    temps = np.unique(temp)
    multi_t = len(temps) > 1
    if np.all(tau == 0):
        raise DataError(f"{t.source}: all tau_mpa are zero; cannot fit a drag coefficient")
    mobility0 = float(np.sum(v * tau) / np.sum(tau * tau))   # v = M τ, least squares
    if mobility0 <= 0:
        raise DataError(f"{t.source}: velocities do not increase with stress "
                        f"(v·tau < 0 on average); not a glide law")
    b_guess = b_m / mobility0
    vmax = float(np.max(np.abs(v)))

    def unpack(p: np.ndarray, fit_c: bool) -> tuple[float, float, float | None]:
        b0 = math.exp(p[0])
        b1 = p[1] * b_guess / 300.0 if multi_t else 0.0
        c = math.exp(p[-1]) if fit_c else None
        return b0, b1, c

    def model(p: np.ndarray, fit_c: bool) -> np.ndarray:
        b0, b1, c = unpack(p, fit_c)
        drag = np.maximum(b0 + b1 * temp, 1e-30 * b_guess)
        vl = b_m * tau / drag
        return vl if c is None else vl / np.sqrt(1.0 + (vl / c) ** 2)

    def fit(fit_c: bool) -> Any:
        p0 = [math.log(b_guess)] + ([0.0] if multi_t else []) + (
            [math.log(3.0 * vmax)] if fit_c else [])
        return least_squares(lambda p: (model(p, fit_c) - v) / sig, p0, method="lm"
                             if len(v) > len(p0) else "trf")

    res = fit(False)
    fit_c = False
    if len(v) > 2 + multi_t:                     # more rows than parameters
        res_c = fit(True)
        c = math.exp(res_c.x[-1])
        # keep saturation only when it improves chi² clearly and is resolved by the data
        if res_c.cost < 0.8 * res.cost and c < 20 * vmax:
            res, fit_c = res_c, True
    n, k = len(v), len(res.x)
    chi2_red = 2 * res.cost / max(n - k, 1)
    jac = res.jac
    try:
        cov = np.linalg.inv(jac.T @ jac) * max(chi2_red, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    b0, b1, c = unpack(res.x, fit_c)
    # derivatives of (b0, b1, c) w.r.t. the parameters (log b0, scaled b1, log c)
    dpar = np.zeros((3, k))
    dpar[0, 0] = b0
    if multi_t:
        dpar[1, 1] = b_guess / 300.0
    if fit_c:
        dpar[2, -1] = c
    cov_phys = dpar @ cov @ dpar.T
    by_t = []
    for tk in temps:
        g = np.array([1.0, tk, 0.0])
        by_t.append({"temperature_k": float(tk), "drag_pa_s": b0 + b1 * tk,
                     "drag_err_pa_s": float(math.sqrt(max(g @ cov_phys @ g, 0.0)))})
    return {"b0_pa_s": b0, "b0_err_pa_s": float(math.sqrt(cov_phys[0, 0])),
            "b1_pa_s_k": b1, "b1_err_pa_s_k": float(math.sqrt(cov_phys[1, 1])),
            "saturation_m_s": c,
            "saturation_err_m_s": float(math.sqrt(cov_phys[2, 2])) if fit_c else None,
            "drag_by_temperature": by_t, "chi2_red": chi2_red, "n": n}


# ---------------------------------------------------------------------- kink-pair fit
def fit_kink_pair(t: VelocityTable, b_m: float, drag_pa_s: float | None = None,
                  p: float = 0.5, q: float = 1.5, rel: float = 0.02) -> dict[str, Any]:
    """Fit the kink-pair law (screws) to rows at two or more temperatures.

    Fits ``v0`` (attempt velocity), ``H0`` (kink-pair enthalpy, eV) and ``τP`` (Peierls
    stress) with ``p, q`` fixed, in series with drag ``drag_pa_s`` (None: no drag limit),
    by weighted least squares on ln|v|. Returns the parameters with standard errors
    (covariance from the Jacobian, inflated by the reduced χ² when > 1) and ``chi2_red``.
    """
    from scalebridge.dd_coupling.mobility import KinkPairMobility

    sel = (t.tau_pa != 0) & (t.velocity_m_s * t.tau_pa > 0)
    if len(np.unique(t.temperature_k[sel])) < 2 or sel.sum() < 4:
        raise DataError(f"{t.source}: the kink-pair fit needs rows at two or more "
                        "temperatures with v·tau > 0")
    tau, temp, v = np.abs(t.tau_pa[sel]), t.temperature_k[sel], np.abs(t.velocity_m_s[sel])
    sig = _sigma(t.select(sel), rel) / v
    tmax = float(tau.max())

    def law(x: np.ndarray) -> KinkPairMobility:
        return KinkPairMobility(burgers_m=b_m, enthalpy_ev=x[1], peierls_pa=math.exp(x[2]),
                                attempt_m_s=math.exp(x[0]),
                                drag_pa_s=drag_pa_s if drag_pa_s else 1e-30, p=p, q=q)

    def resid(x: np.ndarray) -> np.ndarray:
        vp = np.asarray(law(x).velocity(tau, temp, np.ones(len(tau), int)))
        return (np.log(np.maximum(vp, 1e-300)) - np.log(v)) / sig

    best = None
    for h0 in (0.3, 0.8, 1.5):
        x0 = np.array([math.log(10 * float(v.max())), h0, math.log(1.5 * tmax)])
        res = least_squares(resid, x0, bounds=([-20, 0.01, math.log(0.2 * tmax)],
                                               [40, 5.0, math.log(100 * tmax)]))
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    n, k = len(v), 3
    chi2_red = 2 * best.cost / max(n - k, 1)
    try:
        cov = np.linalg.inv(best.jac.T @ best.jac) * max(chi2_red, 1.0)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    v0, h0, tp = math.exp(best.x[0]), float(best.x[1]), math.exp(best.x[2])
    return {"attempt_m_s": v0, "attempt_err_m_s": v0 * math.sqrt(max(cov[0, 0], 0)),
            "enthalpy_ev": h0, "enthalpy_err_ev": math.sqrt(max(cov[1, 1], 0)),
            "peierls_mpa": tp * 1e-6, "peierls_err_mpa": tp * 1e-6 * math.sqrt(max(cov[2, 2], 0)),
            "p": p, "q": q, "drag_pa_s": drag_pa_s, "chi2_red": chi2_red, "n": n}


# ---------------------------------------------------------------------- neural fit
def fit_neural(t: VelocityTable, s: FitMobilitySettings) -> NeuralMobility:
    """Train the ensemble on ``t``: each member on a bootstrap resample (member 0 on all
    rows; with fewer than 10 rows every member sees all rows and the spread comes from
    the random initialisation alone), loss = mean squared error normalised by the per-row
    uncertainty."""
    tau_scale = float(np.max(np.abs(t.tau_pa)))
    v_scale = float(np.max(np.abs(t.velocity_m_s)))
    if tau_scale == 0 or v_scale == 0:
        raise DataError(f"{t.source}: stresses or velocities are all zero")
    tlo, thi = float(t.temperature_k.min()), float(t.temperature_k.max())
    chars = tuple(CHARACTERS[c] for c in sorted(set(t.character.tolist())))
    vr = ValidRange(tau_mpa=(0.0, tau_scale * 1e-6), temperature_k=(tlo, thi),
                    characters=chars)
    law = NeuralMobility(tau_scale, v_scale, 0.5 * (tlo + thi), max(0.5 * (thi - tlo), 1.0),
                         vr, n_members=s.members, hidden=s.hidden, n_terms=s.terms,
                         out_of_range=s.out_of_range)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    tau_hat = torch.as_tensor(t.tau_pa / tau_scale)
    t_hat = torch.as_tensor((t.temperature_k - law.t_mid_k) / law.t_half_k)
    char = torch.as_tensor(t.character)
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
def fit_and_write(s: FitMobilitySettings, t: VelocityTable, b_m: float, work: Path
                  ) -> dict[str, Any]:
    """Fit both laws, check the chosen one, write the MobilityLaw files into ``work``."""
    drag_fits = {}
    for c in sorted(set(t.character.tolist())):
        drag_fits[CHARACTERS[c]] = fit_drag(t.select(t.character == c), b_m,
                                            s.relative_error_floor)
    edge = drag_fits.get("edge") or next(iter(drag_fits.values()))
    screws = t.select(t.character == 1)
    kink_pair = None
    if len(screws) >= 4 and len(np.unique(screws.temperature_k)) >= 2:
        edge_drag = drag_fits["edge"]["b0_pa_s"] if "edge" in drag_fits else None
        try:
            kink_pair = fit_kink_pair(screws, b_m, edge_drag, rel=s.relative_error_floor)
        except DataError as e:
            log.warning("kink-pair fit skipped: %s", e)
    screw_ratio = 1.0
    if "edge" in drag_fits and "screw" in drag_fits:
        screw_ratio = drag_fits["screw"]["b0_pa_s"] / drag_fits["edge"]["b0_pa_s"]
    chars = tuple(CHARACTERS[c] for c in sorted(set(t.character.tolist())))
    tau_max = float(np.max(np.abs(t.tau_pa))) * 1e-6
    vr = ValidRange(tau_mpa=(0.0, tau_max),
                    temperature_k=(float(t.temperature_k.min()), float(t.temperature_k.max())),
                    characters=chars)
    drag_law = LinearDragMobility(burgers_m=b_m, b0_pa_s=edge["b0_pa_s"],
                                  b1_pa_s_k=edge["b1_pa_s_k"], screw_ratio=screw_ratio,
                                  saturation_m_s=edge["saturation_m_s"], valid_range=vr)
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
                                          "metrics": metrics,
                                          "chosen": law.name, "n_rows": len(t)})
    _plot_fit(t, drag_law, neural, work)
    summary: dict[str, Any] = {"law": law.name, "n_rows": len(t), "tau_max_mpa": tau_max}
    for cname, f in drag_fits.items():
        summary[f"drag_{cname}_b0_pa_s"] = f["b0_pa_s"]
        summary[f"drag_{cname}_b0_err_pa_s"] = f["b0_err_pa_s"]
    for name, m in metrics.items():
        summary[f"{name}_r2"] = m["r2"]
    if kink_pair is not None:
        summary["kink_pair_enthalpy_ev"] = kink_pair["enthalpy_ev"]
        summary["kink_pair_enthalpy_err_ev"] = kink_pair["enthalpy_err_ev"]
    return summary


def _plot_fit(t: VelocityTable, drag: LinearDragMobility, neural: NeuralMobility | None,
              work: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    rows = []
    tau_max = float(np.max(np.abs(t.tau_pa)))
    grid = np.linspace(-tau_max, tau_max, 101)
    for k, (c, tk) in enumerate(sorted({(int(c), float(tk)) for c, tk in
                                        zip(t.character, t.temperature_k, strict=True)})):
        sel = (t.character == c) & (t.temperature_k == tk)
        lab = f"{CHARACTERS[c]} {tk:g} K"
        ax.errorbar(t.tau_pa[sel] * 1e-6, t.velocity_m_s[sel], yerr=t.velocity_err_m_s[sel],
                    fmt="o", ms=3, color=f"C{k}", label=f"MD {lab}")
        vd = np.asarray(drag.velocity(grid, np.full_like(grid, tk), np.full(grid.shape, c)))
        ax.plot(grid * 1e-6, vd, "--", color=f"C{k}", lw=1)
        vn = sd = np.full_like(grid, np.nan)
        if neural is not None:
            vn, sd = neural.velocity_with_uncertainty(grid, np.full_like(grid, tk),
                                                      np.full(grid.shape, c))
            ax.plot(grid * 1e-6, vn, "-", color=f"C{k}", lw=1.5)
            ax.fill_between(grid * 1e-6, vn - 2 * sd, vn + 2 * sd, color=f"C{k}", alpha=0.2)
        rows.extend((CHARACTERS[c], tk, g * 1e-6, a, b_, e)
                    for g, a, b_, e in zip(grid, vd, vn, sd, strict=True))
    ax.set_xlabel("resolved shear stress τ (MPa)")
    ax.set_ylabel("velocity (m/s)")
    ax.set_title("mobility fit: drag (dashed), neural ±2σ (solid)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(work / "velocity_fit.png", dpi=120)
    plt.close(fig)
    with open(work / "velocity_fit.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["character", "temperature_k", "tau_mpa", "drag_velocity_m_s",
                    "neural_velocity_m_s", "neural_std_m_s"])
        w.writerows(rows)


__all__ = ["FitMobilitySettings", "fit_and_write", "fit_drag", "fit_kink_pair", "fit_neural"]
