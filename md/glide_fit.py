"""Glide velocities with honest uncertainty, and the glide laws fitted to them.

The one home of every fit between MD glide data and a mobility law: ``md.mobility``
writes its ``glide_fit.json`` with these functions and ``dd_coupling.fit`` calls the same
ones (md → dd_coupling), so the same rows give the same B everywhere. Arrays are SI
(τ in Pa, v in m/s, T in K), shape (n,).

**One trajectory** (:func:`block_velocity`). The velocity is the least-squares slope of
the loaded, steady part of the core position z(t): every fitted frame counts, so the
reported velocity is the one whose first and second halves the steady-glide check
compares. Its error comes from blocks: the frames are split into ``n_blocks``
contiguous blocks, each block's slope is one velocity sample, and the error is the
standard error of their mean, std(slopes)/√n_blocks, with n_blocks − 1 degrees of
freedom. The core position is autocorrelated (thermal wandering, Peierls hops), so the
textbook error of the whole-window slope (:func:`naive_velocity`) understates it; the
block mean's error is larger than the whole-window slope's own (a block skips the hops
between blocks and weighs its few frames' position noise over a short span), so it errs
on the wide side, and it is kept for that: one run's within-window error cannot see how
much runs differ from their start (the Mo example's edge replicas differ by 57-240 m/s
where the whole-window slope's delete-a-block error is 10-40 m/s and the block error
100-190 m/s). The mean of the block slopes is not the velocity: with 3-frame blocks it
ignores the motion between blocks and its scatter over runs is several times the slope's.

**Replicas of one point** (:func:`combine_replicas`): n independent runs (other velocity
seed and relaxed start) with velocities v_i and block errors e_i. The per-run variance is
``s² = max(var(v_i), mean(e_i²))`` (the replica scatter, unless the trajectories say the
runs are noisier than their scatter shows); the point velocity is mean(v_i) with standard
error s/√n, a 95% confidence interval ±t·s/√n and a 95% prediction interval for one fresh
replica ±t·s·√(1 + 1/n), t the Student quantile with n − 1 degrees of freedom (replica
scatter) or Σ(n_blocks − 1) (block errors).

**Edge glide law** (:func:`fit_drag`), per character, all temperatures at once::

    v = v_s·x / sqrt(1 + x²),   x = b(τ − τ₀(T)) / (B(T)·v_s)

linear, v = b(τ − τ₀)/B, at low stress and saturating toward v_s. Negative stresses are
folded (|τ|, sign(τ)·v). Weighted least squares, weights 1/σ², σ² = e² + (rel·v)² +
(10⁻³·max|v|)². Each temperature has its own B and τ₀ (τ₀ only with two or more
distinct stresses there); v_s is shared. The model is chosen by the smallest
χ² + k·ln n (k parameters, n points; every candidate needs n ≥ k, n > k when v_s is
fitted) among τ₀ free or zero and v_s none (pure linear), the shear-wave speed c_t
(when known) or fitted. A τ₀ of 0 chosen this way is a modelling choice, not a
measurement: it gets no error or interval, and its note gives the scores with and
without a threshold (each with its v_s), the threshold candidates that could not be
fitted and the τ₀ the best threshold candidate fitted, whether its 95% interval covers 0
and whether the data resolve it (:func:`tau0_fixed_note`; :func:`tau0_measured` tells a
measured τ₀ from a fixed one). An exactly determined fit (n = k) takes its errors from the
point errors alone, and its intervals' quantile from their dof (:func:`point_error_dof`:
replicas or blocks, Welch–Satterthwaite; ``error_dof``). Parameter covariance (JᵀWJ)⁻¹
scaled by max(1, χ²/ν); 95% intervals ±q·SE with q = t_ν, Student's quantile of the
residual dof ν = n − k, in both regimes: where the scatter exceeds the point errors
(χ²/ν > 1) the error is the residuals' and has ν dof; where it does not, it rests on the
point errors, which are themselves estimates from two or three replicas (or a few
blocks), not known σ, and the residuals are the only check of them the fit has, so the
normal 1.96 would claim more than the data show (the kink-pair fit likewise). ν (or, with
no residual, the point errors' dof) is also the dof the FEM-load band gives B's error
(``b0_dof``, below). B's interval is
b/k mapped from the interval of the mobility k = b/B (so it is asymmetric, and open
above when k's interval reaches 0). A trend of B with T is *supported* when the 95%
intervals of B at two temperatures do not overlap. The DD's linear drag law gets
B(T) = B0 + B1·T and τ₀(T) = τ₀,0 + τ₀,1·T (:func:`dd_threshold`), each a weighted line
through the per-temperature values when their trend is supported, else constant (the
inverse-variance mean).

**The fitted window** (:func:`window_systematic`). A line that still accelerates inside
the fitted window (first-half velocity r < 1 times the second's) has velocities, and a B,
that depend on where the window sits, by more than their statistical error. B refitted
to each point's second-half velocity 2v/(1 + r), with the model the fit chose (a
threshold τ₀ appearing in the late data would move B0 by more than the window does),
measures that shift on the data already there. Under steady glide the difference is not
0 but noise, already inside the statistical error, so its whole size would count that
noise twice: the window term is the difference less its steady-glide noise in
quadrature, max(0, diff² − noise²), the noise propagated from each point's half-ratio
noise: the replicas' scatter of their ratios where there are two or more (the halves'
difference cancels a run's velocity offset that persists over the window, which the
velocity's error holds), else the row error (the derivation is in
:func:`window_systematic`). ``b0_window_raw_pa_s``, ``b0_window_noise_pa_s`` and the
net ``b0_window_err_pa_s`` are kept, and the net term is added to B0's statistical error
(``b0_stat_err_pa_s``) in quadrature. The window's effect is a fixed offset w (the same
loading transient in every rerun; what varies between runs is in the replicas' ratio
scatter, so in n), measured as d ~ N(w, n²); d² − n² estimates w² with variance
4w²n² + 2n⁴, plus 2n⁴/ν_n for n² itself estimated on ν_n dof (Welch–Satterthwaite over
the rows' ratio scatters, each on its replicas less one; a row whose ratio noise comes
from its row error, or has no dof, counts 1), so the window's dof
2(w²)²/var is w⁴/(2w²n² + n⁴(1 + 1/ν_n)) (:func:`window_dof`, GUM G.4.2's ½(Δu/u)⁻²
for a term whose size is measured; the older one-sample view, (w/d)⁴, would count the
replicas' variation a second time). Where no row's noise could be propagated the window
keeps 1 dof and ``b0_window_note`` says so. The total error's dof ``b0_dof`` is
Welch–Satterthwaite's with the fit's error dof (ν, or the points' where no residual is
left) for the statistical part and that for the window: ν when
the window term is 0, at least 1 otherwise (the band's floor: below it t95 runs away);
B0's interval ``b0_ci95_pa_s`` is ±t95(b0_dof)·error, and the band takes the same dof.
What this dof does not hold: whether the late half's B is the steady one (a line still
accelerating in its second half has a larger offset than d), and that a known-sign
offset is carried as a symmetric ± term; the model's, said in the report.

**Screw kink-pair law** (:func:`fit_kink_pair`)::

    v = v₀ exp(−ΔH(τ)/k_BT),   ΔH(τ) = ΔH₀ (1 − (τ/τ_P)^p)^q

(optionally in series with drag, 1/v = 1/v_kp + B/(bτ)), p and q fixed (default 0.5 and
1.5: a handful of MD stresses cannot constrain them), fitted by weighted least squares on
ln v; τ_P fitted when the rows span three or more stresses at two or more temperatures,
else fixed to the given (0 K, quasi-static) Peierls stress.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import least_squares

#: Boltzmann constant, eV/K.
KB_EV = 8.617333262e-5
#: Relative velocity error added in quadrature to every row's error in the fits.
REL_ERROR = 0.02
#: Fixed kink-pair exponents (Kocks, Argon & Ashby; the DD's KinkPairMobility defaults).
KINK_P, KINK_Q = 0.5, 1.5


def t95(dof: float) -> float:
    """Two-sided 95% quantile: Student's t with ``dof`` degrees of freedom (normal for
    dof ≤ 0 or infinite)."""
    if not dof or dof <= 0 or math.isinf(dof):
        return 1.959963984540054
    return float(stats.t.ppf(0.975, dof))


# ------------------------------------------------------------------ one trajectory
@dataclass(frozen=True)
class BlockVelocity:
    """Velocity of one core trajectory by block averaging (m/s).

    Attributes:
        velocity_m_s: least-squares slope over all frames; err_m_s: the standard error
        of the mean of the block slopes (an upper bound on the slope's own, see the
        module docstring); dof: n_blocks − 1; n_blocks; naive_err_m_s: the textbook
        standard error of the slope over all frames (for comparison; too small for
        correlated noise).
    """

    velocity_m_s: float
    err_m_s: float
    dof: int
    n_blocks: int
    naive_err_m_s: float


def naive_velocity(t_ps: np.ndarray, z_a: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of z(t) and its textbook standard error (independent errors
    assumed), m/s (1 Å/ps = 100 m/s). NaN frames are skipped."""
    ok = np.isfinite(z_a)
    t, z = np.asarray(t_ps, float)[ok], np.asarray(z_a, float)[ok]
    if t.size < 3:
        return float("nan"), float("nan")
    tc = t - t.mean()
    slope = float((tc * (z - z.mean())).sum() / (tc ** 2).sum())
    resid = z - z.mean() - slope * tc
    se = math.sqrt(resid @ resid / (t.size - 2) / (tc ** 2).sum())
    return slope * 100, se * 100


def block_velocity(t_ps: np.ndarray, z_a: np.ndarray, n_blocks: int = 5,
                   min_frames: int = 3) -> BlockVelocity:
    """Velocity of the core trajectory z(t) (Å, ps; NaN frames skipped) with a block error.

    The velocity is the least-squares slope over all frames; the frames are split into
    ``n_blocks`` contiguous blocks (fewer if a block would hold under ``min_frames``
    frames, at least 2) and the error is the standard error of the block slopes' mean
    (see the module docstring).
    """
    ok = np.isfinite(z_a)
    t, z = np.asarray(t_ps, float)[ok], np.asarray(z_a, float)[ok]
    v_all, se_all = naive_velocity(t, z)
    nb = min(n_blocks, t.size // min_frames)
    if nb < 2:
        return BlockVelocity(v_all, float("nan"), 0, max(nb, 0), se_all)
    slopes = [naive_velocity(tb, zb)[0]
              for tb, zb in zip(np.array_split(t, nb), np.array_split(z, nb), strict=True)]
    s = np.asarray(slopes)
    return BlockVelocity(v_all, float(s.std(ddof=1) / math.sqrt(nb)), nb - 1, nb, se_all)


# ------------------------------------------------------------------ replicas
def combine_replicas(v: Sequence[float], err: Sequence[float],
                     dof: Sequence[int] | None = None) -> dict[str, float]:
    """Velocity of one (character, τ, T) point from independent replicas.

    Args:
        v: (n,) replica velocities, m/s; err: (n,) their block errors, m/s;
        dof: (n,) degrees of freedom of each block error (default 4 each).

    Returns:
        ``velocity_m_s`` (mean), ``velocity_err_m_s`` (standard error), ``ci95_m_s``
        (half-width of the 95% confidence interval of the mean), ``pi95_m_s`` (half-width
        of the 95% prediction interval of one fresh replica), ``replica_sd_m_s`` (s),
        ``dof``, ``replicas`` (n), ``error_source`` (``replicas`` or ``blocks``).
    """
    v = np.asarray(v, float)
    e = np.asarray(err, float)
    d = np.full(v.shape, 4) if dof is None else np.asarray(dof, int)
    n = v.size
    if n == 0:
        raise ValueError("combine_replicas needs at least one replica")
    e = np.where(np.isfinite(e), e, 0.0)
    s_blk2 = float(np.mean(e ** 2))
    s_rep2 = float(v.var(ddof=1)) if n > 1 else 0.0
    if n > 1 and s_rep2 >= s_blk2:
        s2, nu, src = s_rep2, n - 1, "replicas"
    else:
        s2, nu, src = s_blk2, int(d.sum()), "blocks"
    s = math.sqrt(s2)
    q = t95(nu)
    return {"velocity_m_s": float(v.mean()), "velocity_err_m_s": s / math.sqrt(n),
            "ci95_m_s": q * s / math.sqrt(n), "pi95_m_s": q * s * math.sqrt(1 + 1 / n),
            "replica_sd_m_s": s, "dof": nu, "replicas": n, "error_source": src}


# ------------------------------------------------------------------ weighted fits
def sigma(v: np.ndarray, err: np.ndarray, rel: float = REL_ERROR) -> np.ndarray:
    """Per-row error used as weight: e² + (rel·v)² + (10⁻³ max|v|)², square-rooted."""
    v = np.asarray(v, float)
    floor = 1e-3 * max(float(np.max(np.abs(v))) if v.size else 0.0, 1e-30)
    return np.sqrt(np.asarray(err, float) ** 2 + (rel * v) ** 2 + floor ** 2)


def _covariance(res: Any, n: int) -> tuple[np.ndarray, float, int, float]:
    """(covariance scaled by max(1, χ²/ν), χ²/ν, ν, 95% quantile) of a least_squares
    result whose residuals are (model − data)/σ."""
    k = res.x.size
    nu = n - k
    chi2 = 2.0 * float(res.cost)
    chi2_red = chi2 / nu if nu > 0 else float("nan")
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac)
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.nan)
    if nu > 0 and chi2_red > 1.0:
        cov = cov * chi2_red
    # t_ν in both regimes (module docstring): the point errors are estimates too
    return cov, chi2_red, nu, t95(nu)


def point_error_dof(res: Any, share: np.ndarray, dof: np.ndarray) -> float:
    """Degrees of freedom of an exactly determined fit's parameters (no residual left):
    each parameter is a linear combination of the points, p = A y with A = (JᵀJ)⁻¹Jᵀ in
    whitened units (every point of unit variance), so its variance is Σ_i A_ji², of which
    point i's estimated part, a fraction ``share[i]`` of its variance, rests on ``dof[i]``
    and the rest (the added relative error and floor, stated assumptions) on infinitely
    many. Welch–Satterthwaite per parameter; the smallest over the parameters (one
    quantile for the fit's intervals). ``share``, ``dof``: (n,); a NaN dof counts 1.
    ``inf`` where no point's error is estimated; NaN where JᵀJ is singular."""
    try:
        a = np.linalg.solve(res.jac.T @ res.jac, res.jac.T)            # (k, n)
    except np.linalg.LinAlgError:
        return math.nan
    d = np.where(np.isfinite(dof) & (np.asarray(dof, float) > 0), dof, 1.0)
    var = np.sum(a * a, axis=1)
    den = np.sum((a * a * share) ** 2 / d, axis=1)
    with np.errstate(divide="ignore"):
        nus = np.where(den > 0, var * var / np.where(den > 0, den, 1.0), math.inf)
    return float(np.min(nus))


# ------------------------------------------------------------------ edge drag
@dataclass(frozen=True)
class _DragModel:
    temps: np.ndarray          # (m,) distinct temperatures
    free_tau0: np.ndarray      # (m,) bool: τ₀ fitted at this temperature
    saturation: str            # "none" | "shear_wave_speed" | "fitted"
    c_fixed: float | None

    def n_params(self) -> int:
        return len(self.temps) + int(self.free_tau0.sum()) + (self.saturation == "fitted")

    def unpack(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        """(mobility k (m/s per MPa) per T, τ₀ (MPa) per T, v_s or None)."""
        m = len(self.temps)
        k = p[:m]
        tau0 = np.zeros(m)
        nf = int(self.free_tau0.sum())
        tau0[self.free_tau0] = p[m:m + nf]
        c = (math.exp(p[-1]) if self.saturation == "fitted" else
             self.c_fixed if self.saturation == "shear_wave_speed" else None)
        return k, tau0, c

    def predict(self, p: np.ndarray, tau_mpa: np.ndarray, ti: np.ndarray) -> np.ndarray:
        k, tau0, c = self.unpack(p)
        vl = k[ti] * (tau_mpa - tau0[ti])
        return vl if c is None else vl / np.sqrt(1.0 + (vl / c) ** 2)


def fit_drag(tau_pa: np.ndarray, temperature_k: np.ndarray, v_m_s: np.ndarray,
             err_m_s: np.ndarray, b_m: float, *, shear_wave_m_s: float | None = None,
             rel: float = REL_ERROR, max_tau_pa: float | None = None,
             only: tuple[str, str] | None = None,
             err_dof: np.ndarray | None = None) -> dict[str, Any]:
    """Fit the saturating glide law v = v_s·x/√(1+x²), x = b(τ−τ₀)/(B v_s) to one
    character's rows (module docstring: model choice, weights, intervals).

    Args:
        tau_pa, temperature_k, v_m_s, err_m_s: (n,) rows (flagged rows already removed).
        b_m: Burgers vector, m.
        shear_wave_m_s: the shear-wave speed c_t (a candidate v_s), None if unknown.
        rel: relative error added to each row's error.
        max_tau_pa: rows with |τ| above this are left out.
        only: (τ₀ "zero" or "free", saturation "none", "shear_wave_speed" or "fitted"):
            fit this candidate alone (as a ``model`` entry of an earlier fit names it).
        err_dof: (n,) degrees of freedom of each row's error (replicas or blocks,
            :func:`combine_replicas`): an exactly determined fit (as many parameters as
            rows, no residual) takes its intervals' quantile from them
            (:func:`point_error_dof`, ``error_dof``) instead of the normal 1.96.

    Returns:
        ``by_temperature`` rows (temperature_k, n_points, drag_pa_s, drag_err_pa_s,
        drag_ci95_pa_s [lo, hi], tau0_mpa, tau0_err_mpa, tau0_ci95_mpa [lo, hi],
        tau0_fixed; where τ₀ was fixed at 0 it is not measured: tau0_err_mpa None,
        tau0_ci95_mpa [None, None] and tau0_note says why and what the threshold
        candidates gave), ``saturation_m_s`` (+ ``saturation_source``,
        ``saturation_err_m_s``), ``chi2_red``, ``dof``, ``error_dof`` (the dof of the
        parameters' errors: ``dof`` where residuals are left, else
        :func:`point_error_dof` from ``err_dof``), ``quantile``, ``n``, ``model``
        (the candidates: tau0, saturation, score, n_params, chosen and, with τ₀ free,
        ``tau0_by_temperature``: the τ₀ that candidate fitted, with error, interval and
        the largest |τ| fitted there, ``tau_max_mpa``), ``model_skipped`` (the
        candidates that could not be fitted: tau0, saturation, n_params, why),
        ``trend`` (:func:`drag_trend`), and the DD law's ``b0_pa_s``, ``b1_pa_s_k`` with
        standard errors (B(T) = B0 + B1·T when the trend is supported, else B1 = 0 and
        B0 the inverse-variance mean), B0's degrees of freedom ``b0_dof`` (the fit's
        ``error_dof``; :func:`window_systematic` changes it), ``b0_quantile`` (t95 of it) and
        95% interval ``b0_ci95_pa_s`` [lo, hi], its threshold ``dd_tau0_*``
        (:func:`dd_threshold`) with ``tau0_cov_mpa2`` (covariance of the fitted τ₀,
        MPa²), ``drag_by_temperature`` (= ``by_temperature``).

    Raises:
        ValueError: no row with τ ≠ 0, or velocities that do not rise with stress.
    """
    tau = np.asarray(tau_pa, float) * 1e-6                      # MPa from here on
    temp = np.asarray(temperature_k, float)
    v = np.asarray(v_m_s, float)
    e = np.asarray(err_m_s, float)
    keep = (tau != 0) & np.isfinite(v)
    if max_tau_pa is not None:
        keep &= np.abs(tau) <= max_tau_pa * 1e-6
    tau, temp, v, e = tau[keep], temp[keep], v[keep], e[keep]
    e_dof = None if err_dof is None else np.asarray(err_dof, float)[keep]
    if tau.size == 0:
        raise ValueError("no rows with a non-zero stress to fit a drag law to")
    sgn = np.sign(tau)
    x, y = np.abs(tau), sgn * v                                # folded: v odd in τ
    sig = sigma(y, e, rel)
    temps, ti = np.unique(temp, return_inverse=True)
    if float(np.sum(x * y / sig ** 2)) <= 0:
        raise ValueError("velocities do not increase with stress (v·τ < 0 on average): "
                         "not a glide law")
    can_tau0 = np.array([len(np.unique(x[ti == j])) >= 2 for j in range(len(temps))])
    vmax = float(np.max(np.abs(y)))

    def start(model: _DragModel) -> np.ndarray:
        k0, t0 = [], []
        for j in range(len(temps)):
            s = ti == j
            w = 1 / sig[s] ** 2
            if model.free_tau0[j]:
                A = np.column_stack([x[s], np.ones(s.sum())]) * np.sqrt(w)[:, None]
                (kk, a), *_ = np.linalg.lstsq(A, y[s] * np.sqrt(w), rcond=None)
                kk = kk if kk > 0 else float(np.sum(w * x[s] * y[s]) / np.sum(w * x[s] ** 2))
                t0.append(-a / kk if kk > 0 else 0.0)
            else:
                kk = float(np.sum(w * x[s] * y[s]) / np.sum(w * x[s] ** 2))
            k0.append(max(kk, 1e-9))
        p = k0 + t0
        if model.saturation == "fitted":
            p.append(math.log(3.0 * vmax))
        return np.array(p, float)

    def solve(model: _DragModel) -> Any:
        p0 = start(model)
        lo, hi = np.full(p0.size, -np.inf), np.full(p0.size, np.inf)
        if model.saturation == "fitted":           # v_s between max|v| and 1000 max|v|
            lo[-1], hi[-1] = math.log(vmax), math.log(1e3 * vmax)
        return least_squares(lambda p: (model.predict(p, x, ti) - y) / sig, p0,
                             bounds=(lo, hi), x_scale="jac", method="trf")

    sats = ["none"] + (["shear_wave_speed"] if shear_wave_m_s else []) + ["fitted"]
    n = x.size
    tried = []
    skipped: list[dict[str, Any]] = []     # candidates that could not be fitted, and why
    frees = [can_tau0] + ([np.zeros(len(temps), bool)] if can_tau0.any() else [])
    for free in frees:
        for sat in sats:
            kind = ("free" if free.any() else "zero", sat)
            if only is not None and only != kind:
                continue
            model = _DragModel(temps, free, sat, shear_wave_m_s)
            k = model.n_params()
            why = None
            if k > n:
                why = f"k = {k} > n = {n}"
            elif k == n and sat == "fitted":
                why = f"k = n = {n}: a fitted v_s needs n > k"
            if why is None:
                res = solve(model)
                _, _, c = model.unpack(res.x)
                if sat == "fitted" and (c is None or c > 20 * vmax):
                    why = "its fitted v_s is above 20 max|v|: not resolved by the data"
            if why is not None:
                skipped.append({"tau0": kind[0], "saturation": sat, "n_params": k,
                                "why": why})
                continue
            score = 2.0 * float(res.cost) + k * math.log(n)
            tried.append((score, model, res))
    if not tried and only is not None:
        raise ValueError(f"the model {only} cannot be fitted to these rows")
    if not tried:                          # too few rows: mobility through the origin
        model = _DragModel(temps, np.zeros(len(temps), bool), "none", None)
        tried.append((0.0, model, solve(model)))
    tried.sort(key=lambda r: r[0])
    _, model, res = tried[0]
    # the estimated share of each row's variance (the rest: the stated relative error
    # and floor), for a fit with no residual left to check the point errors by
    share = np.where(np.isfinite(e), e, 0.0) ** 2 / sig ** 2

    def error_quantile(r: Any) -> tuple[float, float]:
        # (the parameters' error dof, its 95 % quantile): the residuals' where any are
        # left, else the points' own (point_error_dof)
        _, _, nu_r, q_r = _covariance(r, n)
        if nu_r <= 0 and e_dof is not None:
            nu_p = point_error_dof(r, share, e_dof)
            if math.isfinite(nu_p) and nu_p > 0:
                return nu_p, t95(nu_p)
        return float(nu_r), q_r

    cov, chi2_red, nu, _ = _covariance(res, n)
    err_nu, q = error_quantile(res)
    k_t, tau0_t, c = model.unpack(res.x)
    m = len(temps)
    tau0_index = {j: m + i for i, j in enumerate(np.flatnonzero(model.free_tau0))}
    b_mpa = b_m * 1e6                                           # k is m/s per MPa
    stresses = [len(np.unique(x[ti == j])) for j in range(len(temps))]
    tau_max = [float(np.max(x[ti == j])) for j in range(len(temps))]
    models: list[dict[str, Any]] = []
    for sc, mm, rr in tried:
        entry: dict[str, Any] = {"tau0": "free" if mm.free_tau0.any() else "zero",
                                 "saturation": mm.saturation, "score": sc,
                                 "n_params": mm.n_params(), "chosen": mm is model}
        if mm.free_tau0.any():              # what this candidate says of a threshold
            entry["tau0_by_temperature"] = _tau0_estimates(mm, rr, n, tau_max,
                                                           error_quantile(rr)[1])
        models.append(entry)
    rows = []
    for j, tk in enumerate(temps):
        kk, se_k = float(k_t[j]), float(math.sqrt(max(cov[j, j], 0.0)))
        lo_k, hi_k = kk - q * se_k, kk + q * se_k
        B = b_mpa / kk
        row = {"temperature_k": float(tk), "n_points": int((ti == j).sum()),
               "drag_pa_s": B, "drag_err_pa_s": B * se_k / kk,
               "drag_ci95_pa_s": [b_mpa / hi_k, b_mpa / lo_k if lo_k > 0 else None],
               "tau0_fixed": not bool(model.free_tau0[j])}
        if model.free_tau0[j]:
            i = tau0_index[j]
            se_t = float(math.sqrt(max(cov[i, i], 0.0)))
            t0 = float(tau0_t[j])
            row.update(tau0_mpa=t0, tau0_err_mpa=se_t,
                       tau0_ci95_mpa=[t0 - q * se_t, t0 + q * se_t])
        else:                               # the law's 0, not measured: no error, no interval
            row.update(tau0_mpa=0.0, tau0_err_mpa=None, tau0_ci95_mpa=[None, None],
                       tau0_note=tau0_fixed_note(models, float(tk), stresses=stresses[j],
                                                 skipped=skipped, only=only))
        rows.append(row)
    c_err = None
    if model.saturation == "fitted" and c is not None:
        c_err = float(c * math.sqrt(max(cov[-1, -1], 0.0)))
    out: dict[str, Any] = {
        "by_temperature": rows, "drag_by_temperature": rows,
        "saturation_m_s": c, "saturation_err_m_s": c_err,
        "saturation_source": model.saturation, "chi2_red": chi2_red, "dof": nu,
        "error_dof": err_nu, "quantile": q, "n": int(n), "n_params": model.n_params(),
        "model": models, "model_skipped": skipped,
        "law": "v = v_s x/sqrt(1+x^2), x = b(|tau|-tau0)/(B v_s); linear v = b(tau-tau0)/B "
               "when v_s is none",
    }
    out["trend"] = drag_trend(rows)
    out.update(_dd_drag(rows, out["trend"]["supported"]))
    _b0_interval(out, float(out["b0_err_pa_s"]), err_nu)
    free_i = [tau0_index[j] for j in np.flatnonzero(model.free_tau0)]
    out["tau0_cov_mpa2"] = cov[np.ix_(free_i, free_i)].tolist()
    out.update(dd_threshold(rows, q, out["tau0_cov_mpa2"], models, skipped=skipped,
                            only=only))
    return out


def _tau0_estimates(model: _DragModel, res: Any, n: int, tau_max_mpa: Sequence[float],
                    q: float) -> list[dict[str, Any]]:
    """The τ₀ (MPa) a candidate with free τ₀ fitted at each of its temperatures, with
    standard error and 95% interval (its own covariance; ``q`` its quantile, as the
    chosen model's is found) and the largest |τ| fitted there (``tau_max_mpa``, by
    temperature index)."""
    cov = _covariance(res, n)[0]
    _, tau0, _ = model.unpack(res.x)
    m = len(model.temps)
    out = []
    for i, j in enumerate(np.flatnonzero(model.free_tau0)):
        se = float(math.sqrt(max(cov[m + i, m + i], 0.0)))
        t0 = float(tau0[j])
        out.append({"temperature_k": float(model.temps[j]), "tau0_mpa": t0,
                    "tau0_err_mpa": se, "tau0_ci95_mpa": [t0 - q * se, t0 + q * se],
                    "tau_max_mpa": float(tau_max_mpa[j])})
    return out


_SATURATION_WORDS = {"none": "linear", "shear_wave_speed": "v_s = c_t",
                     "fitted": "v_s fitted"}


def tau0_fixed_note(models: Sequence[dict[str, Any]] | None,
                    temperature_k: float | None = None, *, stresses: int | None = None,
                    skipped: Sequence[dict[str, Any]] | None = None,
                    only: Sequence[str] | None = None) -> str:
    """Why a τ₀ of 0 was not measured, and what the data say of a threshold.

    Not fitted at all: no threshold candidate was tried (``only`` restricted the fit to
    τ₀ = 0), or one distinct stress at the temperature (a threshold needs two). Fixed by
    the model selection: the χ² + k ln n of the chosen model and of the best threshold
    candidate, each with its saturation; the threshold candidate with the chosen
    saturation when it could not be fitted, and why (``skipped``); the best candidate's
    τ₀ [95% interval] at each temperature, with whether its interval covers 0 and "not
    resolved by the data" where the interval is wider than the largest |τ| fitted there.

    Args:
        models: the :func:`fit_drag` ``model`` list (the candidates fitted); None when
            unknown.
        temperature_k: the row's temperature (its τ₀ alone); None: every temperature
            of the fit (the DD law's τ₀).
        stresses: the number of distinct |τ| fitted at ``temperature_k`` (at any
            temperature when it is None); an upper bound (a row's ``n_points``) will do,
            None when unknown.
        skipped: the fit's ``model_skipped`` (the candidates that could not be fitted,
            with why); None when unknown (a fit written before it was recorded).
        only: the candidate (τ₀, saturation) :func:`fit_drag` was restricted to, None
            when every candidate was tried.

    Returns:
        The note, one line.
    """
    if only is not None and only[0] != "free":
        return ("fixed at 0: no threshold candidate was tried (the fit was restricted to "
                f"tau0 = 0, {_saturation_words(only[1])})")
    models = list(models or [])
    free = sorted((mm for mm in models if mm.get("tau0") == "free"),
                  key=lambda mm: mm["score"])
    chosen = next((mm for mm in models if mm.get("chosen")), None)
    if (stresses is not None and stresses < 2) or (chosen is not None and (
            not free or chosen.get("tau0") == "free")):
        # a fit with a threshold candidate fits τ₀ wherever there are two stresses
        where = f"at {temperature_k:g} K" if temperature_k is not None else "at each temperature"
        return (f"fixed at 0, not fitted: one stress {where} (a threshold needs two or "
                "more distinct stresses at one temperature)")
    if chosen is None:
        return "fixed at 0, not fitted (the fit records no model candidates)"
    best = free[0]
    text = (f"fixed at 0 by model selection (chi2 + k ln n: {chosen['score']:.3g} without a "
            f"threshold ({_saturation_words(chosen['saturation'])}) against "
            f"{best['score']:.3g} with one ({_saturation_words(best['saturation'])}))")
    if best["saturation"] != chosen["saturation"]:
        same = next((sk for sk in skipped or [] if sk.get("tau0") == "free"
                     and sk.get("saturation") == chosen["saturation"]), None)
        if same is not None:
            text += (f"; the threshold model with {_saturation_words(same['saturation'])} "
                     f"could not be fitted ({same['why']})")
    est = [r for r in best.get("tau0_by_temperature") or []
           if temperature_k is None or r["temperature_k"] == temperature_k]
    if est:
        parts = []
        for r in est:
            lo, hi = r["tau0_ci95_mpa"]
            said = ("its 95 % interval covers 0" if lo <= 0.0 <= hi else
                    "its 95 % interval lies below 0: a negative tau0 is no threshold"
                    if hi < 0.0 else "its 95 % interval excludes 0")
            t_max = r.get("tau_max_mpa")
            if t_max is not None and hi - lo > t_max:
                said += (f"; not resolved by the data: the interval, {hi - lo:.4g} MPa "
                         f"wide, exceeds the largest |tau| fitted, {t_max:.4g} MPa")
            at = f" at {r['temperature_k']:g} K" if len(est) > 1 else ""
            parts.append(f"{r['tau0_mpa']:.4g} [{lo:.4g}, {hi:.4g}] MPa{at} ({said})")
        text += (f"; the best threshold model ({_saturation_words(best['saturation'])}) "
                 "gives tau0 = " + ", ".join(parts))
    return text


def _saturation_words(saturation: str) -> str:
    return _SATURATION_WORDS.get(saturation, saturation)


def tau0_measured(d: Mapping[str, Any], prefix: str = "") -> bool:
    """Whether a τ₀ was fitted to the data, not fixed at 0 by the drag fit's model choice
    (which gives it no error and no interval).

    Args:
        d: a :func:`fit_drag` ``by_temperature`` row (its ``tau0_fixed``), a
            :func:`dd_threshold` result or a fit with its keys (``prefix`` "dd_"), or a
            MobilityLaw summary (``prefix`` "drag_<character>_"): there τ₀ is measured
            when its error is known and not 0 (fits written before the fixed τ₀ was
            marked gave it an error of 0 and a [0, 0] interval).
        prefix: what precedes ``tau0_err_mpa`` in ``d``'s keys.
    """
    if f"{prefix}tau0_fixed" in d:
        return not d[f"{prefix}tau0_fixed"]
    err = d.get(f"{prefix}tau0_err_mpa")
    return err is not None and err != 0


def drag_trend(rows: Sequence[dict[str, Any]], *, value: str = "drag_pa_s",
               ci: str = "drag_ci95_pa_s", what: str = "B") -> dict[str, Any]:
    """Is a trend of B (or of the quantity ``value`` with 95% interval ``ci``, named
    ``what``) with T supported? Yes when the 95% intervals at two temperatures do not
    overlap (the direction from the lowest to the highest T)."""
    pairs = []
    for a, b in combinations(sorted(rows, key=lambda r: r["temperature_k"]), 2):
        (alo, ahi), (blo, bhi) = (tuple(math.inf if x is None else x
                                        for x in r[ci]) for r in (a, b))
        if ahi < blo or bhi < alo:
            pairs.append((a["temperature_k"], b["temperature_k"],
                          "rising" if b[value] > a[value] else "falling"))
    supported = bool(pairs)
    dirs = {p[2] for p in pairs}
    return {"supported": supported,
            "direction": (dirs.pop() if len(dirs) == 1 else "mixed") if supported else None,
            "separated_pairs_k": [[p[0], p[1]] for p in pairs],
            "rule": f"supported when the 95% intervals of {what} at two temperatures do not "
                    "overlap", "temperatures_k": [r["temperature_k"] for r in rows]}


def _weighted_line(T: np.ndarray, y: np.ndarray, se: np.ndarray, line: bool,
                   cov: np.ndarray | None = None) -> tuple[float, float, float, float]:
    """(a, SE a, b, SE b) of y = a + b·T by generalised least squares (``line``, two or
    more points), else b = 0 and a the weighted mean. T, y, se: (m,); ``cov``: (m, m)
    covariance of y (None: diagonal se²; its diagonal is raised to se² where smaller)."""
    C = np.diag(se ** 2)
    if cov is not None and np.all(np.isfinite(cov)):
        C = np.array(cov, float)
        C[np.diag_indices_from(C)] = np.maximum(np.diag(C), se ** 2)
    try:
        W = np.linalg.inv(C)
    except np.linalg.LinAlgError:
        W = np.diag(1.0 / se ** 2)
    A = (np.column_stack([np.ones_like(T), T]) if line and len(T) >= 2
         else np.ones((len(T), 1)))
    P = np.linalg.inv(A.T @ W @ A)
    p = P @ (A.T @ W @ y)
    if A.shape[1] == 2:
        return float(p[0]), float(math.sqrt(P[0, 0])), float(p[1]), float(math.sqrt(P[1, 1]))
    return float(p[0]), float(math.sqrt(P[0, 0])), 0.0, 0.0


def _dd_drag(rows: Sequence[dict[str, Any]], trend: bool) -> dict[str, float]:
    """B(T) = B0 + B1·T for the DD's linear drag law: a weighted line through the
    per-temperature B when a trend is supported, else B1 = 0 and B0 their
    inverse-variance mean."""
    T = np.array([r["temperature_k"] for r in rows])
    B = np.array([r["drag_pa_s"] for r in rows])
    se = np.array([r["drag_err_pa_s"] for r in rows])
    b0, e0, b1, e1 = _weighted_line(T, B, np.maximum(se, 1e-3 * np.abs(B)), trend)
    return {"b0_pa_s": b0, "b0_err_pa_s": e0, "b1_pa_s_k": b1, "b1_err_pa_s_k": e1}


def dd_threshold(rows: Sequence[dict[str, Any]], quantile: float = 1.959963984540054,
                 cov_mpa2: Sequence[Sequence[float]] | None = None,
                 models: Sequence[dict[str, Any]] | None = None, *,
                 skipped: Sequence[dict[str, Any]] | None = None,
                 only: Sequence[str] | None = None) -> dict[str, Any]:
    """The threshold τ₀(T) = τ₀,0 + τ₀,1·T of the DD's linear drag law, from the
    :func:`fit_drag` rows whose τ₀ was fitted (``tau0_fixed`` false).

    A generalised least-squares line through their τ₀ when the trend is supported
    (:func:`drag_trend` on τ₀), else τ₀,1 = 0 and τ₀,0 their weighted mean. When no row
    fitted one the law's τ₀ is 0 by the model choice, not a measurement: its errors and
    interval are None and ``dd_tau0_note`` says why, with what the threshold candidates
    of ``models`` (the fit's ``model`` list) gave (:func:`tau0_fixed_note`). The τ₀ of
    different temperatures share the fit's v_s, so they are correlated: with their
    covariance (``cov_mpa2``) the error of the mean is honest, without it (rows alone)
    they are taken as independent.
    The law clamps τ₀(T) at 0 (a negative fitted τ₀ is no threshold; ``dd_tau0_note``
    says so).

    Args:
        rows: ``by_temperature`` rows of :func:`fit_drag`.
        quantile: the fit's 95% quantile (its ``quantile``) for the interval of τ₀,0.
        cov_mpa2: (m, m) covariance of the m fitted τ₀ (MPa²), in row order (the fit's
            ``tau0_cov_mpa2``).
        models: the fit's ``model`` list, for the note when no row fitted τ₀.
        skipped, only: the fit's ``model_skipped`` and :func:`fit_drag`'s ``only``, for
            that note (:func:`tau0_fixed_note`).

    Returns:
        ``dd_tau0_mpa`` (τ₀,0, MPa), ``dd_tau0_err_mpa``, ``dd_tau0_ci95_mpa`` [lo, hi],
        ``dd_tau0_mpa_k`` (τ₀,1, MPa/K), ``dd_tau0_err_mpa_k``, ``dd_tau0_trend``,
        ``dd_tau0_note`` (None or why the value is not what the rows show); the errors
        and the interval are None when τ₀ was fixed at 0.
    """
    free = [r for r in rows if tau0_measured(r)]
    trend = drag_trend(free, value="tau0_mpa", ci="tau0_ci95_mpa", what="tau0")
    if not free:
        pts = [r.get("n_points") for r in rows]
        note = tau0_fixed_note(
            models, rows[0]["temperature_k"] if len(rows) == 1 else None,
            stresses=max(pts) if pts and None not in pts else None, skipped=skipped,
            only=only)
        return {"dd_tau0_mpa": 0.0, "dd_tau0_err_mpa": None, "dd_tau0_ci95_mpa": None,
                "dd_tau0_mpa_k": 0.0, "dd_tau0_err_mpa_k": None, "dd_tau0_trend": trend,
                "dd_tau0_note": note}
    T = np.array([r["temperature_k"] for r in free])
    t0 = np.array([r["tau0_mpa"] for r in free])
    se = np.array([r["tau0_err_mpa"] for r in free])
    floor = np.maximum(1e-3 * np.abs(t0), 1e-6)
    cov = (None if cov_mpa2 is None or len(cov_mpa2) != len(free)
           else np.array(cov_mpa2, dtype=float))            # null (NaN) entries: diagonal
    a, ea, b, eb = _weighted_line(T, t0, np.maximum(se, floor), trend["supported"], cov)
    note = None
    lo_t, hi_t = float(T.min()), float(T.max())
    if min(a + b * lo_t, a + b * hi_t) < 0:
        note = (f"the fitted tau0 is negative at some measured T ({a + b * lo_t:.3g} MPa at "
                f"{lo_t:g} K, {a + b * hi_t:.3g} MPa at {hi_t:g} K): the DD law uses 0 there")
    return {"dd_tau0_mpa": a, "dd_tau0_err_mpa": ea,
            "dd_tau0_ci95_mpa": [a - quantile * ea, a + quantile * ea],
            "dd_tau0_mpa_k": b, "dd_tau0_err_mpa_k": eb, "dd_tau0_trend": trend,
            "dd_tau0_note": note}


# ------------------------------------------------------------------ screw kink pairs
def kink_pair_velocity(tau_pa: np.ndarray, temperature_k: np.ndarray, attempt_m_s: float,
                       dh0_ev: float, tau_p_pa: float, p: float = KINK_P, q: float = KINK_Q,
                       drag_pa_s: float | None = None, b_m: float | None = None
                       ) -> np.ndarray:
    """v = v₀ exp(−ΔH₀(1 − (|τ|/τ_P)^p)^q / k_BT), in series with drag b|τ|/B when
    ``drag_pa_s`` (and ``b_m``) are given; m/s, sign of τ."""
    a = np.abs(np.asarray(tau_pa, float))
    xr = np.clip(a / tau_p_pa, 0.0, 1.0)
    dh = dh0_ev * (1.0 - xr ** p) ** q
    v = attempt_m_s * np.exp(-dh / (KB_EV * np.asarray(temperature_k, float)))
    if drag_pa_s and b_m:
        v = 1.0 / (1.0 / np.maximum(v, 1e-300) + drag_pa_s / (b_m * np.maximum(a, 1e-30)))
    return np.sign(tau_pa) * v


def fit_kink_pair(tau_pa: np.ndarray, temperature_k: np.ndarray, v_m_s: np.ndarray,
                  err_m_s: np.ndarray, *, p: float = KINK_P, q: float = KINK_Q,
                  tau_p_pa: float | None = None, drag_pa_s: float | None = None,
                  b_m: float | None = None, rel: float = REL_ERROR) -> dict[str, Any]:
    """Fit the kink-pair law (module docstring) to screw rows with v·τ > 0.

    Args:
        tau_pa, temperature_k, v_m_s, err_m_s: (n,) rows (flagged rows already removed).
        p, q: fixed exponents.
        tau_p_pa: the (0 K) Peierls stress; used as τ_P when the rows cannot fit it.
        drag_pa_s, b_m: drag in series (None: none).

    Returns:
        ``attempt_m_s``, ``enthalpy_ev`` (ΔH₀), ``peierls_mpa`` (τ_P) with ``*_err`` and
        ``*_ci95`` ([lo, hi]), ``peierls_fixed``, ``p``, ``q``, ``chi2_red``, ``dof``,
        ``n``, ``temperatures_k``, ``drag_pa_s``.

    Raises:
        ValueError: fewer than two temperatures or four rows, or τ_P neither fittable
        nor given.
    """
    tau = np.asarray(tau_pa, float)
    temp = np.asarray(temperature_k, float)
    v = np.asarray(v_m_s, float)
    e = np.asarray(err_m_s, float)
    sel = (tau != 0) & np.isfinite(v) & (v * tau > 0)
    temps = np.unique(temp[sel])
    if len(temps) < 2 or sel.sum() < 4:
        raise ValueError("the kink-pair fit needs rows with v·τ > 0 at two or more "
                         f"temperatures (has {int(sel.sum())} rows at {len(temps)})")
    a, T, vv = np.abs(tau[sel]), temp[sel], np.abs(v[sel])
    sl = sigma(vv, e[sel], rel) / vv                                   # error of ln v
    free_tp = len(np.unique(a)) >= 3 and sel.sum() > 3
    if not free_tp and tau_p_pa is None:
        raise ValueError("the kink-pair fit needs three or more stresses to fit τ_P, or "
                         "the 0 K Peierls stress")
    amax = float(a.max())

    def unpack(x: np.ndarray) -> tuple[float, float, float]:
        return math.exp(x[0]), float(x[1]), math.exp(x[2]) if free_tp else float(tau_p_pa)

    def resid(x: np.ndarray) -> np.ndarray:
        v0, h0, tp = unpack(x)
        pred = kink_pair_velocity(a, T, v0, h0, tp, p, q, drag_pa_s, b_m)
        return (np.log(np.maximum(pred, 1e-300)) - np.log(vv)) / sl

    lo = [-30.0, 1e-3] + ([math.log(1.0001 * amax)] if free_tp else [])
    hi = [40.0, 10.0] + ([math.log(100 * amax)] if free_tp else [])
    best = None
    for h0 in (0.2, 0.6, 1.5):
        for tp0 in ((1.3, 3.0) if free_tp else (None,)):
            x0 = [math.log(10 * float(vv.max())), h0] + (
                [math.log(tp0 * amax)] if tp0 else [])
            r = least_squares(resid, np.array(x0), bounds=(lo, hi), method="trf")
            if best is None or r.cost < best.cost:
                best = r
    assert best is not None
    cov, chi2_red, nu, qq = _covariance(best, int(sel.sum()))
    v0, h0, tp = unpack(best.x)
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    out: dict[str, Any] = {
        "attempt_m_s": v0, "attempt_err_m_s": v0 * float(se[0]),
        "attempt_ci95_m_s": [v0 * math.exp(-qq * se[0]), v0 * math.exp(qq * se[0])],
        "enthalpy_ev": h0, "enthalpy_err_ev": float(se[1]),
        "enthalpy_ci95_ev": [h0 - qq * float(se[1]), h0 + qq * float(se[1])],
        "peierls_mpa": tp * 1e-6, "peierls_fixed": not free_tp,
        "p": p, "q": q, "drag_pa_s": drag_pa_s, "chi2_red": chi2_red, "dof": nu,
        "quantile": qq, "n": int(sel.sum()), "temperatures_k": [float(t) for t in temps],
        "law": "v = v0 exp(-dH0 (1-(tau/tau_P)^p)^q / kT)" + (
            ", in series with drag" if drag_pa_s else ""),
    }
    if free_tp:
        out["peierls_err_mpa"] = tp * 1e-6 * float(se[2])
        out["peierls_ci95_mpa"] = [tp * 1e-6 * math.exp(-qq * se[2]),
                                   tp * 1e-6 * math.exp(qq * se[2])]
    else:
        out["peierls_err_mpa"] = 0.0
        out["peierls_ci95_mpa"] = [tp * 1e-6, tp * 1e-6]
    return out



# ------------------------------------------------------------------ both laws
def _b0_interval(fit: dict[str, Any], err: float, dof: float) -> None:
    """Set B0's ``b0_err_pa_s``, ``b0_dof``, ``b0_quantile`` (t95 of the dof) and
    ``b0_ci95_pa_s`` = B0 ± quantile·err in ``fit``."""
    b0, q = float(fit["b0_pa_s"]), t95(dof)
    fit.update({"b0_err_pa_s": err, "b0_dof": dof, "b0_quantile": q,
                "b0_ci95_pa_s": [b0 - q * err, b0 + q * err]})


@lru_cache(maxsize=32)
def median_variance_factor(n: int) -> float:
    """var(median of n normal draws) / var(their mean): 1 for n ≤ 2 (the median is the
    mean), 1.35 for 3, → π/2 for large n. From 200,000 fixed-seed draws (±0.5 %)."""
    if n <= 2:
        return 1.0
    x = np.random.default_rng(12345).standard_normal((200_000, n))
    return float(np.median(x, axis=1).var() * n)


def half_ratio_err(ratios: Sequence[float]) -> float | None:
    """Standard error of the median of one point's replica half ratios (first-half /
    second-half velocity of each replica): the replicas' scatter of the ratio, s/√n,
    times √:func:`median_variance_factor` (the point's ratio is their median). The
    replicas glide under the same conditions, so their scatter is the ratio's noise even
    while the line accelerates. None with fewer than two finite ratios."""
    r = np.asarray([x for x in ratios if x is not None and np.isfinite(x)], float)
    if r.size < 2:
        return None
    return float(math.sqrt(median_variance_factor(r.size) * r.var(ddof=1) / r.size))


def satterthwaite_dof(stat: float, stat_dof: float, window: float,
                      nu_window: float = 1.0) -> float:
    """Welch–Satterthwaite degrees of freedom of sqrt(stat² + window²):
    (s² + w²)² / (s⁴/ν_s + w⁴/ν_w), at least 1 (the FEM band's floor, workflows.band:
    below one degree of freedom t95 runs away); ``stat_dof`` itself when w = 0, so the
    fit's own quantile stands; ∞ when the denominator vanishes (each part zero or known
    exactly).
    Inside the sum a ``stat_dof`` ≤ 0 (an exactly determined fit) counts as 1, as the
    band counts it: the point errors are themselves estimates from 2-3 replicas, not
    known variances. ``nu_window``: the window's dof (:func:`window_dof`; 1 for one
    sample of it)."""
    s2, w2 = stat * stat, window * window
    if w2 == 0.0:
        return float(stat_dof)
    nu_s = float(stat_dof) if stat_dof > 0 else 1.0
    den = w2 * w2 / nu_window + s2 * s2 / nu_s
    if den == 0.0:
        return math.inf
    return max(1.0, float((s2 + w2) ** 2 / den))      # NaN (a singular fit's stat) -> 1


def window_dof(net: float, noise: float, noise_dof: float = math.inf) -> float:
    """Welch–Satterthwaite dof of the window term's estimated square: 2(w²)²/var(d² − n²)
    = w⁴/(2w²n² + n⁴(1 + 1/ν_n)) for a fixed offset w measured as d ~ N(w, n²) with n²
    estimated on ν_n = ``noise_dof`` dof (``net`` = w estimated as sqrt(max(0, d² − n²)),
    ``noise`` = n, both Pa·s); ∞ when n = 0 (the offset measured exactly), 0 when w = 0
    (no term). Module docstring."""
    w2, n2 = net * net, noise * noise
    if n2 == 0.0:
        return math.inf if w2 > 0.0 else 0.0
    return float(w2 * w2 / (2.0 * w2 * n2 + n2 * n2 * (1.0 + 1.0 / noise_dof)))


def window_systematic(fit: dict[str, Any], tau_pa: np.ndarray, temperature_k: np.ndarray,
                      v_m_s: np.ndarray, err_m_s: np.ndarray, ratio: np.ndarray,
                      b_m: float, ratio_err: np.ndarray | None = None,
                      ratio_dof: np.ndarray | None = None, **fit_kw: Any) -> dict[str, Any]:
    """Fold the fitted window's unsteadiness into ``fit`` (one character's
    :func:`fit_drag` result on these rows, updated in place; module docstring).

    The raw window term is |B0_late − B0|, B0_late fitted (with the model the fit chose)
    to the second-half velocities v_late = 2v/(1 + r). Under steady glide that
    difference is not 0 but noise, and counting it whole would count noise twice (it is
    in the statistical error already); so its expected square under steady glide is
    subtracted: window² = max(0, (B0_late − B0)² − var_noise). Derivation of var_noise:
    to first order B0_late − B0 = Σ_j g_j δ_j with δ_j = v_late,j − v_j = v_j(1 − r_j)/
    (1 + r_j) and g_j = ∂B0/∂v_j (central differences of the refit, one row at a time);
    the rows are independent, so var_noise = Σ_j g_j² var(δ_j), with var(δ_j) =
    (2v_j/(1 + r_j)²)² var(r_j). The noise of r_j: ``ratio_err`` (the replicas' scatter
    of the ratio, :func:`half_ratio_err`) where known, else propagated from the row's
    error e: the halves' slopes v1 = r·v2 and v2 = 2v/(1 + r) are independent, each over
    half the span; for a core that wanders as a random walk (independent increments:
    thermal wandering, Peierls hops) a half-span slope has twice the whole-span
    variance, so var(r) = 2e²(1 + r²)/v2² (for uncorrelated position noise it would be
    8×: the random walk's 2× subtracts less, the cautious side). δ is uncorrelated with v
    in both noise models (a contrast of the halves against the whole-window slope), so
    only var(δ) enters.

    The total error sqrt(stat² + window²) gets the Welch–Satterthwaite dof
    (:func:`satterthwaite_dof`) with the fit's ``error_dof`` for the statistical part and
    :func:`window_dof` for the window (a fixed offset known to within its noise); B0's
    interval is B0 ± t95(that dof)·error.

    ``ratio``: (n,) first-half / second-half velocity of each row (NaN: unknown, the row
    kept as it is); ``ratio_err``: (n,) its standard error under steady glide (NaN or
    None: from the row error as above); ``ratio_dof``: (n,) that error's dof (the
    replicas less one; NaN or None: 1). Sets ``b0_late_pa_s``, ``b0_window_raw_pa_s``
    (|late − B0|), ``b0_window_noise_pa_s`` (sqrt var_noise), ``b0_window_err_pa_s``
    (the net window term), ``b0_window_dof`` (its dof), ``b0_window_noise_dof`` (the
    noise's), ``b0_stat_err_pa_s`` (the error before), ``b0_err_pa_s`` =
    sqrt(stat² + window²), ``b0_dof``, ``b0_quantile``, ``b0_ci95_pa_s``; returns
    ``fit``. Without a known ratio, or when the late fit fails, the window terms are 0
    and ``b0_window_note`` says why; it also says when no row's noise could be
    propagated (a zero, NaN or failed noise: the whole difference is kept, on 1 dof) and
    when only some rows' refits gave it ("propagated from k of n rows")."""
    r = np.asarray(ratio, float)
    known = np.isfinite(r) & (r > 0)
    fit["b0_stat_err_pa_s"] = stat = float(fit["b0_err_pa_s"])
    late, note, raw, noise = None, None, 0.0, 0.0
    var, shares = 0.0, []          # n² and each row's (share, dof)
    if not known.any():
        note = "no first/second-half velocities: the window's effect is not measured"
    else:
        v = np.asarray(v_m_s, float)
        e = np.asarray(err_m_s, float)
        rk = np.where(known, r, 1.0)
        v_late = np.where(known, 2.0 * v / (1.0 + rk), v)
        chosen = next((m for m in fit.get("model", []) if m.get("chosen")), None)
        # the same model as the fit's: a switch of model (a threshold appearing) moves B0
        # by more than the window does (Mo example: -42 % with a threshold, -19 % without)
        only = (chosen["tau0"], chosen["saturation"]) if chosen else None
        try:
            late = fit_drag(tau_pa, temperature_k, v_late, err_m_s, b_m, only=only,
                            **fit_kw)["b0_pa_s"]
        except ValueError as err:
            note = f"late-window refit failed: {err}"
        if late is not None:
            raw = abs(float(late) - float(fit["b0_pa_s"]))
            r_err = (np.full(r.shape, np.nan) if ratio_err is None
                   else np.asarray(ratio_err, float))
            v2 = np.abs(v_late)
            sr_rows = np.sqrt(2.0 * e ** 2 * (1.0 + rk ** 2)) / np.maximum(v2, 1e-30)
            sr = np.where(np.isfinite(r_err) & (r_err >= 0), r_err, sr_rows)
            sd = np.where(known & np.isfinite(sr), 2.0 * np.abs(v) / (1.0 + rk) ** 2 * sr,
                          0.0)
            # each row's dof for its share of n²: its replicas less one where the ratio's
            # noise is their scatter, else 1 (the row error's own dof is not passed here)
            nu_r = (np.full(r.shape, np.nan) if ratio_dof is None
                    else np.asarray(ratio_dof, float))
            nu_r = np.where(np.isfinite(r_err) & (r_err >= 0) & np.isfinite(nu_r)
                            & (nu_r > 0), nu_r, 1.0)
            rows, failed = np.flatnonzero(sd > 0), 0
            for j in rows:
                vp, vm = v.copy(), v.copy()
                vp[j] += sd[j]
                vm[j] -= sd[j]
                try:
                    bp, bm = (fit_drag(tau_pa, temperature_k, vv, err_m_s, b_m,
                                       only=only, **fit_kw)["b0_pa_s"] for vv in (vp, vm))
                except ValueError:
                    failed += 1
                    continue
                c = ((bp - bm) / 2.0) ** 2             # (g_j σ_δ,j)²
                var += c
                shares.append((c, float(nu_r[j])))
            if not (math.isfinite(var) and var > 0.0):
                var, shares = 0.0, []
                if raw > 0:
                    note = ("the window's steady-glide noise could not be propagated (no "
                            "row with a non-zero ratio noise and a refit): its whole "
                            "difference is kept, on 1 dof")
            elif failed:
                note = (f"the window's noise propagated from {len(rows) - failed} of "
                        f"{len(rows)} rows (the others' refits failed)")
            noise = math.sqrt(var)
    win = math.sqrt(max(0.0, raw * raw - noise * noise))
    fit.update({"b0_late_pa_s": late, "b0_window_raw_pa_s": raw,
                "b0_window_noise_pa_s": noise, "b0_window_err_pa_s": win})
    # the noise's own dof, Welch–Satterthwaite over the rows' shares of n²
    nu_n = var * var / sum(c * c / nu for c, nu in shares) if var > 0 else math.inf
    nu_w = window_dof(win, noise, nu_n) if var > 0 or win == 0 else 1.0
    fit.update(b0_window_dof=nu_w, b0_window_noise_dof=nu_n)
    _b0_interval(fit, math.hypot(stat, win),
                 satterthwaite_dof(stat, float(fit.get("error_dof", fit.get("dof")) or 0),
                                   win, nu_w))
    if note:
        fit["b0_window_note"] = note
    return fit


def fit_glide_laws(character: Sequence[str] | np.ndarray, tau_pa: np.ndarray,
                   temperature_k: np.ndarray, v_m_s: np.ndarray, err_m_s: np.ndarray,
                   b_m: float, *, shear_wave_m_s: float | None = None,
                   screw_shear_wave_m_s: float | None = None,
                   peierls_pa: float | None = None, rel: float = REL_ERROR,
                   max_tau_pa: float | None = None, p: float = KINK_P,
                   q: float = KINK_Q, ratio: np.ndarray | None = None,
                   ratio_err: np.ndarray | None = None,
                   ratio_dof: np.ndarray | None = None,
                   err_dof: np.ndarray | None = None) -> dict[str, Any]:
    """Every law of the module fitted to measured rows (flagged rows already removed):
    :func:`fit_drag` per character (for screws an effective linear law) and, with screw
    rows, :func:`fit_kink_pair` in series with the edge drag (B0) when edges were fitted.
    ``character``: (n,) ``edge``/``screw`` names or 0/1. ``screw_shear_wave_m_s``: the
    screw law's candidate saturation speed (None: ``shear_wave_m_s``). ``ratio``: (n,)
    first-half / second-half velocity of each row (NaN unknown): with it each drag fit
    carries the fitted window's error (:func:`window_systematic`); ``ratio_err``: (n,)
    its standard error from the replicas (:func:`half_ratio_err`; None or NaN: from the
    row errors); ``ratio_dof``: (n,) that error's dof (None or NaN: 1). ``err_dof``: (n,)
    each row's velocity-error dof (:func:`combine_replicas`' ``dof``), for an exactly
    determined drag fit's intervals (:func:`fit_drag`).

    Returns:
        ``{"drag": {character: fit}, "kink_pair": fit or None, "skipped": {what: why}}``.
    """
    ch = np.array(["edge" if c in (0, "edge") else "screw" for c in
                   np.asarray(character).tolist()])
    tau, temp = np.asarray(tau_pa, float), np.asarray(temperature_k, float)
    v, e = np.asarray(v_m_s, float), np.asarray(err_m_s, float)
    out: dict[str, Any] = {"drag": {}, "kink_pair": None, "skipped": {}}
    for c in ("edge", "screw"):
        s = ch == c
        if not s.any():
            continue
        try:
            c_t = (screw_shear_wave_m_s or shear_wave_m_s) if c == "screw" else shear_wave_m_s
            out["drag"][c] = fit_drag(tau[s], temp[s], v[s], e[s], b_m,
                                      shear_wave_m_s=c_t, rel=rel,
                                      max_tau_pa=max_tau_pa,
                                      err_dof=(None if err_dof is None else
                                               np.asarray(err_dof, float)[s]))
            if ratio is not None:
                window_systematic(out["drag"][c], tau[s], temp[s], v[s], e[s],
                                  np.asarray(ratio, float)[s], b_m,
                                  ratio_err=(None if ratio_err is None else
                                             np.asarray(ratio_err, float)[s]),
                                  ratio_dof=(None if ratio_dof is None else
                                             np.asarray(ratio_dof, float)[s]),
                                  shear_wave_m_s=c_t, rel=rel, max_tau_pa=max_tau_pa)
        except ValueError as err:
            out["skipped"][f"drag_{c}"] = str(err)
    s = ch == "screw"
    if s.any():
        drag = out["drag"].get("edge", {}).get("b0_pa_s")
        try:
            out["kink_pair"] = fit_kink_pair(tau[s], temp[s], v[s], e[s], p=p, q=q,
                                             tau_p_pa=peierls_pa, drag_pa_s=drag, b_m=b_m,
                                             rel=rel)
        except ValueError as err:
            out["skipped"]["kink_pair"] = str(err)
    return out


__all__ = ["KB_EV", "KINK_P", "KINK_Q", "REL_ERROR", "BlockVelocity", "block_velocity",
           "combine_replicas", "dd_threshold", "drag_trend", "fit_drag", "fit_glide_laws",
           "fit_kink_pair", "half_ratio_err", "kink_pair_velocity", "median_variance_factor",
           "naive_velocity", "point_error_dof", "satterthwaite_dof", "sigma", "t95",
           "tau0_fixed_note", "tau0_measured", "window_dof", "window_systematic"]
