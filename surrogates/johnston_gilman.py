"""Johnston–Gilman J2: source-limited viscoplasticity whose parameters a DD study sets.

Discrete dislocation dynamics at 10⁴–10⁵ /s shows three things a rate-independent J2 law
cannot: an elastic rise past the flow stress until the first Frank–Read sources fire
(they need the stress above their strength for a nucleation time t_nuc, so the peak is
σ_src + 3G ε̄̇ t_nuc: linear in rate), an avalanche that drops the stress far below the
later flow stress, and a viscous flow stress set by how many dislocations are mobile.
This model keeps those mechanisms and nothing else:

- **Sources** (``source_stress_mpa``, ``nucleation_time_s``): a point is elastic until
  its trial von Mises stress has stayed above σ_src for t_nuc (a clock in the state,
  reset while below); afterwards it is ``nucleated`` for good. t_nuc is the DD's own
  clock (read from the DD run: typed, or bow-out times at the MD's drag), σ_src is
  fitted.
- **Flow** (:class:`MobileDensityHardening`): Orowan ε̄̇_p = ρ_m b v/√3 with the linear
  drag law v = b τ*/B gives σ = σ_b(ε̄_p) + η(ε̄_p) ε̄̇_p, η = 3B/(ρ_m b²): the static
  (athermal) part σ_b is a Voce law, and the mobile density enters through η, one value
  per knot of ε̄_p (log-linear in between, constant beyond the last knot). Given the drag
  B of the MD mobility law, η(ε̄_p) *is* the mobile density ρ_m(ε̄_p) = 3B/(η b²), the
  Johnston–Gilman multiplication curve (:meth:`MobileDensityHardening.mobile_density`).

The return map, the consistent tangent and the checks are :class:`J2Plasticity`'s (η's
slope is in dσ_y/dΔγ); the source clock only decides which points may flow.
:func:`fit_johnston_gilman` fits σ_src, the Voce parameters and log η to the stress along
whole paths replayed through this model (scipy least squares), σ_src by a scan.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scalebridge.surrogates import mandel
from scalebridge.surrogates.data import StrainPaths, plastic_history, replay, replay_rmse
from scalebridge.surrogates.j2 import PLASTIC_STATE_NAMES, J2Plasticity, out_of_training_range
from scalebridge.surrogates.protocol import ConstitutiveResult, step_inputs

log = logging.getLogger("scalebridge.surrogates")

#: Rows of the least-squares smoothness penalty on log η (second differences), relative
#: to the stress residuals in units of the reference stress: keeps knots the data do not
#: see near their neighbours instead of wandering.
SMOOTHNESS = 0.05


@dataclass
class MobileDensityHardening:
    """σ_y = σ_b(ε̄_p) + η(ε̄_p)·Δε̄_p/dt, MPa (a :class:`~.j2.Hardening`).

    Attributes:
        sigma0, sigma_inf: Voce static yield stress at ε̄_p = 0 and saturated, MPa.
        eps_h: Voce saturation strain (> 0).
        knots: (K,) increasing ε̄_p of the viscosity knots, knots[0] = 0.
        log_eta: (K,) ln(η / (MPa·s)) at the knots.
    """

    sigma0: float
    sigma_inf: float
    eps_h: float
    knots: np.ndarray
    log_eta: np.ndarray
    state_names: tuple[str, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        self.knots = np.asarray(self.knots, dtype=np.float64)
        self.log_eta = np.asarray(self.log_eta, dtype=np.float64)
        if self.knots.ndim != 1 or self.knots.shape != self.log_eta.shape \
                or self.knots.size < 2 or np.any(np.diff(self.knots) <= 0):
            raise ValueError("knots and log_eta: equal-length 1-D arrays, knots increasing, "
                             "at least two")
        if not self.eps_h > 0:
            raise ValueError(f"eps_h must be > 0, got {self.eps_h}")

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def static(self, ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(σ_b, dσ_b/dε̄_p) at ε̄_p ``ep`` (n,), MPa."""
        x = np.exp(-np.asarray(ep) / self.eps_h)
        d = self.sigma_inf - self.sigma0
        return self.sigma0 + d * (1.0 - x), d / self.eps_h * x

    def viscosity(self, ep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(η, dη/dε̄_p) at ε̄_p ``ep`` (n,): MPa·s, MPa·s."""
        ep = np.asarray(ep, dtype=np.float64)
        k = self.knots
        lg = np.interp(ep, k, self.log_eta)
        i = np.clip(np.searchsorted(k, ep, side="right") - 1, 0, k.size - 2)
        slope = (self.log_eta[i + 1] - self.log_eta[i]) / (k[i + 1] - k[i])
        slope = np.where((ep >= k[0]) & (ep < k[-1]), slope, 0.0)
        eta = np.exp(lg)
        return eta, eta * slope

    def yield_stress(self, ep, dep, q, dt):
        e = ep + dep
        sb, dsb = self.static(e)
        eta, deta = self.viscosity(e)
        rate = dep / dt
        return sb + eta * rate, dsb + eta / dt + deta * rate, q.copy()

    def yield_stress_floor(self) -> float:
        """σ_y ≥ min(σ0, σ∞) at every ε̄_p and rate."""
        return float(min(self.sigma0, self.sigma_inf))

    def mobile_density(self, ep: np.ndarray, drag_pa_s: float, burgers_m: float
                       ) -> np.ndarray:
        """ρ_m = 3B/(η b²) (m⁻²) at ε̄_p ``ep`` for drag ``drag_pa_s`` and |b| (m)."""
        eta_pa_s = self.viscosity(ep)[0] * 1e6
        return 3.0 * drag_pa_s / (eta_pa_s * burgers_m ** 2)

    def to_config(self) -> dict[str, Any]:
        return {"sigma0_mpa": self.sigma0, "sigma_inf_mpa": self.sigma_inf,
                "eps_h": self.eps_h, "knots": self.knots.tolist(),
                "log_eta_mpa_s": self.log_eta.tolist()}

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> MobileDensityHardening:
        return cls(float(c["sigma0_mpa"]), float(c["sigma_inf_mpa"]), float(c["eps_h"]),
                   np.asarray(c["knots"], float), np.asarray(c["log_eta_mpa_s"], float))

    def __repr__(self) -> str:
        return (f"MobileDensityHardening(σ_b {self.sigma0:.3g} → {self.sigma_inf:.3g} MPa, "
                f"η {math.exp(self.log_eta.min()):.3g}–{math.exp(self.log_eta.max()):.3g} "
                "MPa·s)")


class JohnstonGilmanJ2(J2Plasticity):
    """J2 with :class:`MobileDensityHardening` behind a source-nucleation clock.

    State per point (9): Mandel plastic strain (6), ε̄_p, ``nucleation_clock_s`` (time the
    trial stress has been above σ_src, s), ``nucleated`` (0/1).

    Args:
        bulk, shear: K, G (MPa).
        hardening: the flow law.
        source_stress_mpa: σ_src, von Mises.
        nucleation_time_s: t_nuc (0: a point flows as soon as it exceeds σ_src).
        training_range: ``{"eps_p_eq": [lo, hi], "rate_s": [lo, hi]}`` for out_of_range.
    """

    def __init__(self, bulk: float, shear: float, hardening: MobileDensityHardening,
                 source_stress_mpa: float, nucleation_time_s: float,
                 training_range: dict[str, list[float]] | None = None,
                 name: str = "johnston_gilman_j2") -> None:
        e = 9.0 * bulk * shear / (3.0 * bulk + shear)
        nu = (3.0 * bulk - 2.0 * shear) / (2.0 * (3.0 * bulk + shear))
        super().__init__(e, nu, hardening, name=name)
        self.source_stress_mpa = float(source_stress_mpa)
        self.nucleation_time_s = float(nucleation_time_s)
        self.training_range = training_range or {}
        self.state_names = (*PLASTIC_STATE_NAMES, "nucleation_clock_s", "nucleated")

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 9))

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        strain, dstrain, state, dt_arr = step_inputs(strain, dstrain, state, dt)
        sig_tr = (strain + dstrain - state[:, :6]) @ self.stiffness.T
        # a scaled copy (ensemble.scale_hardening) scales the source strength with σ_y
        thr = self.source_stress_mpa * getattr(self.hardening, "factor", 1.0)
        clock = np.where(mandel.von_mises(sig_tr) > thr, state[:, 7] + dt_arr, 0.0)
        nuc = (state[:, 8] > 0.5) | (clock >= self.nucleation_time_s)
        stress, tangent, j2 = self._update_where(nuc, strain, dstrain, state[:, :7], dt_arr,
                                                 sig_tr)
        new = state.copy()
        new[:, :7], new[:, 7], new[:, 8] = j2, clock, nuc
        oor = out_of_training_range(self.training_range, state[:, 6], new[:, 6], dt_arr)
        return ConstitutiveResult(stress=stress, tangent=tangent, state=new,
                                  out_of_range=oor)

    def to_config(self) -> dict[str, Any]:
        """Everything :meth:`from_config` needs (the record's ``config``)."""
        return {"bulk_mpa": self.bulk, "shear_mpa": self.shear,
                "source_stress_mpa": self.source_stress_mpa,
                "nucleation_time_s": self.nucleation_time_s,
                "hardening": self.hardening.to_config(),
                "training_range": self.training_range}

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> JohnstonGilmanJ2:
        return cls(float(c["bulk_mpa"]), float(c["shear_mpa"]),
                   MobileDensityHardening.from_config(c["hardening"]),
                   float(c["source_stress_mpa"]), float(c["nucleation_time_s"]),
                   c.get("training_range"))

    def __repr__(self) -> str:
        return (f"JohnstonGilmanJ2(σ_src {self.source_stress_mpa:.3g} MPa, t_nuc "
                f"{self.nucleation_time_s:.3g} s, {self.hardening!r})")


# ------------------------------------------------------------------------------ fitting
def fit_johnston_gilman(train: StrainPaths, val: StrainPaths, *, knots: int = 12,
                        nucleation_time_s: float = 0.0, source_guess_mpa: float | None = None,
                        max_evaluations: int = 60, seed: int = 0,
                        ) -> tuple[JohnstonGilmanJ2, dict[str, Any], list[dict[str, Any]]]:
    """Fit σ_src, σ_b (Voce) and log η(ε̄_p) to the stress along ``train``'s paths.

    σ_src is scanned (least squares is blind to it: the clock is a step function), the
    rest is scipy ``least_squares`` on the replayed stress plus a smoothness penalty on
    log η; the candidate with the lowest validation error is kept.

    Args:
        train, val: paths (validation chooses σ_src and reports the error).
        knots: viscosity knots, spaced quadratically in ε̄_p over the trained range.
        nucleation_time_s: t_nuc (the DD's own setting; 0: no delay).
        source_guess_mpa: centre of the σ_src scan (von Mises; the DD's mean source
            strength √3 τ_src), else the training paths' median flow stress.
        max_evaluations: least-squares evaluations per σ_src candidate.

    Returns:
        ``(model, record, history)``: the model, its ``config``/``fit`` record, and one
        history row per candidate (``iteration``, ``train_rmse_mpa``, ``val_rmse_mpa``).
    """
    from scipy.optimize import least_squares

    bulk, shear = float(train.meta["bulk_mpa"]), float(train.meta["shear_mpa"])
    ep_max = max(float(plastic_history(train).max()), 1e-6)
    kn = ep_max * np.linspace(0.0, 1.0, knots) ** 2
    vm = mandel.von_mises(train.stress)
    sig_ref = float(np.median(vm[:, -max(vm.shape[1] // 5, 1):])) or 1.0
    rate_max = float(np.max(train.strain_rate_s))
    rng = {"eps_p_eq": [0.0, ep_max],
           "rate_s": [float(np.min(train.strain_rate_s)), rate_max]}

    def build(z: np.ndarray, src: float) -> JohnstonGilmanJ2:
        h = MobileDensityHardening(z[0], z[1], math.exp(z[2]), kn, z[3:])
        return JohnstonGilmanJ2(bulk, shear, h, src, nucleation_time_s, rng)

    def resid(z: np.ndarray, src: float) -> np.ndarray:
        r = (replay(build(z, src), train)[0] - train.stress).ravel() / sig_ref
        pen = SMOOTHNESS * np.sqrt(r.size / max(knots - 2, 1)) * np.diff(z[3:], 2)
        return np.concatenate([r, pen])

    # flow stress ≈ σ_b + η ε̇: start from a rate-free half and a viscous half
    eta0 = 0.5 * sig_ref / max(rate_max / math.sqrt(3.0), 1e-30)
    z0 = np.concatenate([[0.3 * sig_ref, 0.6 * sig_ref, math.log(0.2 * ep_max)],
                         np.full(knots, math.log(eta0))])
    lb = np.concatenate([[0.0, 0.0, math.log(1e-3 * ep_max)], np.full(knots, -60.0)])
    ub = np.concatenate([[20.0 * sig_ref, 20.0 * sig_ref, math.log(10.0 * ep_max)],
                         np.full(knots, 60.0)])
    centre = source_guess_mpa if source_guess_mpa and source_guess_mpa > 0 else sig_ref
    cands = [centre * f for f in (0.4, 0.55, 0.7, 0.85, 1.0, 1.2)] \
        if nucleation_time_s > 0 else [0.0]
    history: list[dict[str, Any]] = []
    best: tuple[float, np.ndarray, float, float] | None = None
    for k, src in enumerate(cands):
        sol = least_squares(resid, z0, args=(src,), bounds=(lb, ub),
                            max_nfev=max_evaluations, diff_step=1e-4)
        m = build(sol.x, src)
        tr, va = replay_rmse(m, train), replay_rmse(m, val) if len(val) else float("nan")
        history.append({"iteration": k + 1, "source_stress_mpa": src,
                        "train_rmse_mpa": tr, "val_rmse_mpa": va, "phase": "fit",
                        "train_loss": (tr / sig_ref) ** 2, "val_loss": (va / sig_ref) ** 2,
                        "evaluations": int(sol.nfev)})
        log.info("johnston_gilman: σ_src %.3g MPa: train RMS %.3g, validation %.3g MPa",
                 src, tr, va)
        score = va if math.isfinite(va) else tr
        if best is None or score < best[0]:
            best = (score, sol.x, src, tr)
    assert best is not None
    _, z, src, _ = best
    model = build(z, src)
    # the rates it was trained on are its own plastic rates along the training paths
    # (an avalanche runs far above the applied rate), not the applied ones
    _, states = replay(model, train)
    rates = np.diff(states[:, :, 6], axis=1) / train.dt[:, None]
    model.training_range["rate_s"] = [0.0, float(max(rates.max(), rate_max))]
    record = {"class": "JohnstonGilmanJ2", "config": model.to_config(),
              "fit": {"source_candidates_mpa": cands, "knots": knots,
                      "nucleation_time_s": nucleation_time_s, "sigma_ref_mpa": sig_ref,
                      "smoothness": SMOOTHNESS, "seed": seed}}
    return model, record, history


def jg_record(model: JohnstonGilmanJ2, meta: dict[str, Any]) -> dict[str, Any]:
    """What the fit means physically: the source parameters, σ_b, η at the knots and,
    where the data's source gives the drag B and |b| (a DD run: its mobility law), the
    mobile density ρ_m = 3B/(η b²) there."""
    h = model.hardening
    eta = np.exp(h.log_eta)
    out: dict[str, Any] = {
        "source_stress_mpa": model.source_stress_mpa,
        "nucleation_time_s": model.nucleation_time_s,
        "nucleation_time_from": "the DD run's nucleation clock" if meta.get("nucleation_time_s")
        else "none (no delay)",
        "static_yield_mpa": [h.sigma0, h.sigma_inf], "eps_h": h.eps_h,
        "knots_eps_p": h.knots.tolist(), "eta_mpa_s": eta.tolist()}
    rho = mobile_density(model, h.knots, meta)
    if rho is not None:
        out.update({"drag_pa_s": meta["drag_pa_s"], "drag_source": meta.get("drag_source"),
                    "burgers_a": meta["burgers_a"], "mobile_density_m2": rho.tolist()})
    return out


def mobile_density(model: JohnstonGilmanJ2, ep: np.ndarray, meta: dict[str, Any]
                   ) -> np.ndarray | None:
    """ρ_m (m⁻²) at ε̄_p ``ep`` from the data's drag and |b| (``meta``), else None."""
    if not (meta.get("drag_pa_s") and meta.get("burgers_a")):
        return None
    return model.hardening.mobile_density(np.asarray(ep, dtype=np.float64),
                                          float(meta["drag_pa_s"]),
                                          float(meta["burgers_a"]) * 1e-10)


def write_jg_table(path: Any, model: JohnstonGilmanJ2, meta: dict[str, Any]) -> None:
    """CSV over 1.2× the trained ε̄_p: eps_p_eq, sigma_b_mpa, eta_mpa_s and, where the
    drag is known, mobile_density_m2."""
    from scalebridge.artifacts import write_csv_atomic

    hi = 1.2 * float(model.training_range.get("eps_p_eq", [0.0, 1e-3])[1])
    ep = np.linspace(0.0, hi, 101)
    cols = [ep, model.hardening.static(ep)[0], model.hardening.viscosity(ep)[0]]
    head = ["eps_p_eq", "sigma_b_mpa", "eta_mpa_s"]
    rho = mobile_density(model, ep, meta)
    if rho is not None:
        cols.append(rho)
        head.append("mobile_density_m2")
    write_csv_atomic(path, head, ([f"{v:.8g}" for v in row] for row in zip(*cols, strict=True)))


__all__ = ["JohnstonGilmanJ2", "MobileDensityHardening", "fit_johnston_gilman", "jg_record",
           "mobile_density", "write_jg_table"]
