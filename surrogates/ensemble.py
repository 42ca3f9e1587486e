"""A distribution over the hardening: what the scatter of the data says about the flow
stress, and surrogate members whose flow stress is scaled.

The data a surrogate learns from (a DD study: several realisations per loading
condition) scatter about their mean. :func:`flow_stress_distribution` summarises that
scatter as the relative standard deviation of the flow stress (each path's median von
Mises stress over its last fifth, pooled over the loading conditions), and
:func:`realisation_scatter_rmse` as the RMS distance of a path's stress from its
condition's mean path: the error a model that reproduces the mean exactly has on a fresh
realisation, the floor for a surrogate's held-out error. Two references from the DD
itself stand beside a surrogate's held-out score: the mean of the training realisations
of the held-out path's condition (:func:`training_mean_prediction`, ≈ sqrt(1 + 1/n)) and
one other realisation (:func:`another_realisation_pairs`, ≈ sqrt(2)).

:func:`scale_hardening` makes a member of the distribution from a fitted model: the same
model with its yield stress scaled by a factor (elasticity unchanged). For J2 models
(analytic or neural) the hardening law's σ_y and slope are scaled, exactly. Any other
:class:`~scalebridge.surrogates.protocol.ConstitutiveModel` is wrapped as
σ_f(ε) = f·σ(ε/f): the same elastic moduli, yield stress ×f, plastic strains ×f (exact
for perfect plasticity, the hardening curve stretched along ε̄_p otherwise).

Why scale instead of refitting to mean ± std curves: every upstream source (potential,
mobility law, DD realisations) moves the flow stress first; a scale carries that to the
FEM without the noise of another training run, so the FEM band measures the sources and
not the optimiser.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from scalebridge.surrogates import mandel
from scalebridge.surrogates.j2 import J2Plasticity
from scalebridge.surrogates.protocol import ConstitutiveResult

#: Fraction of a path (its last points) whose median stress is its flow stress.
FLOW_TAIL = 0.2


def _condition_keys(paths: Any) -> dict[str, np.ndarray]:
    """(P,) each path's ``log_rate`` and ``temperature`` key, rounded to compare equal."""
    return {"log_rate": np.round(np.log10(np.maximum(paths.strain_rate_s, 1e-300)), 6),
            "temperature": np.round(paths.temperature_k, 6)}


def conditions(paths: Any) -> list[np.ndarray]:
    """Indices of the paths of each loading condition (same rate and temperature)."""
    k = _condition_keys(paths)
    keys = np.stack([k["log_rate"], k["temperature"]], axis=1)
    out = []
    for k in np.unique(keys, axis=0):
        out.append(np.nonzero(np.all(keys == k, axis=1))[0])
    return out


def path_flow_stress(paths: Any, tail: float = FLOW_TAIL) -> np.ndarray:
    """(P,) each path's flow stress: median von Mises stress over its last ``tail``."""
    vm = mandel.von_mises(paths.stress)
    k = max(round(tail * vm.shape[1]), 1)
    return np.median(vm[:, -k:], axis=1)


#: Significance level of :func:`condition_effect`: a loading condition is a surrogate input
#: only if the data's flow stress depends on it with p below this.
CONDITION_P = 0.05


def condition_effect(paths: Any, condition: str, tail: float = FLOW_TAIL
                     ) -> dict[str, Any] | None:
    """Does the loading ``condition`` ("log_rate" or "temperature") move the paths' flow
    stress beyond the realisation scatter?

    A nested F-test on the log flow stress of each path (:func:`path_flow_stress`; the log
    because the scatter is relative): the conditions' means (rate and temperature)
    against the means grouped by the other condition alone. Where the paths name their
    microstructure (``paths.microstructure``, the DD's seeds) and conditions share them,
    both models also carry one offset per microstructure (a randomised block design): a
    DD run repeats its seeds in every condition, so two paths of one seed at 100 K and
    300 K are a pair, and the seed-to-seed scatter is not evidence against a temperature
    effect. Returns ``f``, ``p``, ``dof`` ([d1, d2]), ``blocked`` (microstructures as
    blocks) and ``matters`` (p < :data:`CONDITION_P`); None when the test cannot be
    made (no repeated condition, so no scatter to compare with, or the condition takes
    one value). Why: the DD's flow stress may not depend on a condition it varies
    (temperature enters it only through the mobility law); a network given that input
    anyway fits the realisations' scatter as a temperature effect."""
    from scipy.stats import f as f_dist

    flow = np.log(np.maximum(path_flow_stress(paths, tail), 1e-300))
    full = conditions(paths)
    key = _condition_keys(paths)["temperature" if condition == "log_rate" else "log_rate"]
    reduced = [np.flatnonzero(key == k) for k in np.unique(key)]

    def design(groups: list[np.ndarray], blocks: np.ndarray | None) -> np.ndarray:
        x = np.zeros((len(flow), len(groups)))
        for j, g in enumerate(groups):
            x[g, j] = 1.0
        if blocks is not None:   # one offset per microstructure but the first
            x = np.hstack([x, (blocks[:, None] == np.unique(blocks)[None, 1:]).astype(float)])
        return x

    def rss_rank(x: np.ndarray) -> tuple[float, int]:
        coef, *_ = np.linalg.lstsq(x, flow, rcond=None)
        return float(((flow - x @ coef) ** 2).sum()), int(np.linalg.matrix_rank(x))

    def nested(blocks: np.ndarray | None) -> tuple[float, float, int, int] | None:
        (r_full, k_full), (r_red, k_red) = (rss_rank(design(full, blocks)),
                                            rss_rank(design(reduced, blocks)))
        d1, d2 = k_full - k_red, len(flow) - k_full
        return (r_full, r_red, d1, d2) if d1 > 0 and d2 > 0 else None

    # paired where the microstructures allow it (each its own: no dof left), else plain
    micro = getattr(paths, "microstructure", None)
    fit = nested(np.asarray(micro)) if micro is not None else None
    blocked = fit is not None
    fit = fit or nested(None)
    if fit is None:
        return None
    r_full, r_red, d1, d2 = fit
    r_full = max(r_full, 1e-300)
    fval = ((r_red - r_full) / d1) / (r_full / d2)
    p = float(f_dist.sf(fval, d1, d2))
    return {"f": float(fval), "p": p, "dof": [d1, d2], "blocked": blocked,
            "matters": p < CONDITION_P}


def flow_stress_distribution(paths: Any, tail: float = FLOW_TAIL) -> dict[str, Any]:
    """The scatter of the paths' flow stress about their condition's mean.

    Returns ``mean_mpa`` (over all paths), ``rel_std`` (pooled over conditions with at
    least two paths: sqrt(Σ (n_c - 1) (s_c/m_c)² / Σ (n_c - 1))), ``rel_sem`` (rel_std /
    sqrt(paths per condition): the uncertainty of the mean a fit learns), ``paths``,
    ``conditions``; ``rel_std`` and ``rel_sem`` are None with no repeated condition."""
    flow = path_flow_stress(paths, tail)
    num, dof, per = 0.0, 0, []
    for idx in conditions(paths):
        if len(idx) < 2:
            continue
        f = flow[idx]
        m = float(np.mean(f))
        if m <= 0:
            continue
        num += (len(idx) - 1) * (float(np.std(f, ddof=1)) / m) ** 2
        dof += len(idx) - 1
        per.append(len(idx))
    rel = math.sqrt(num / dof) if dof else None
    return {"mean_mpa": float(np.mean(flow)), "rel_std": rel,
            "rel_sem": rel / math.sqrt(float(np.mean(per))) if rel is not None else None,
            "paths": len(flow), "conditions": len(conditions(paths)),
            "tail": tail}


def realisation_scatter_rmse(paths: Any) -> float | None:
    """RMS over paths and points of ‖σ_path − σ_mean of its condition‖ (MPa), with the
    n/(n−1) correction: a fresh realisation's distance from the population mean. None
    when no condition has two paths."""
    sq, cnt = 0.0, 0
    for idx in conditions(paths):
        n = len(idx)
        if n < 2:
            continue
        s = paths.stress[idx]
        d = np.linalg.norm(s - s.mean(axis=0), axis=-1)
        sq += float((d ** 2).sum()) * n / (n - 1)
        cnt += d.size
    return math.sqrt(sq / cnt) if cnt else None


def _same_history(paths: Any, idx: Any, ref: int) -> bool:
    """Whether the paths ``idx`` follow path ``ref``'s strain history (so one mean path
    or one prediction stands for all of them)."""
    return bool(np.allclose(paths.strain[idx], paths.strain[ref], rtol=1e-6, atol=1e-12))


def condition_bias(paths: Any, stress_model: np.ndarray, scatter_mpa: float
                   ) -> list[dict[str, Any]]:
    """Where a model misses the DD's mean, condition by condition.

    For each condition whose paths share their strain history and number two or more:
    the mean path and its realisation spread, and ``bias_ratio``, the RMS over the points
    of ‖σ_model − σ_mean‖ over the study's scatter. A model at the DD's true mean scores
    about ``mean_noise_ratio`` = sqrt(1/n) (the mean of n realisations is itself off by
    that much); well above it the model is biased there, and its held-out error there is
    about sqrt(bias² + 1) times the scatter whatever the held-out realisation.

    Args:
        paths: the study (``StrainPaths``: stress (P, T+1, 6) MPa, strain, conditions).
        stress_model: (P, T+1, 6) the model's stress along every path, MPa.
        scatter_mpa: :func:`realisation_scatter_rmse` of the study, MPa (> 0).

    Returns:
        one dict per condition, slowest rate first: ``strain_rate_s``, ``temperature_k``,
        ``paths``, ``bias_ratio``, ``mean_noise_ratio``, and the arrays ``strain``,
        ``mean``, ``model`` ((T+1, 6) MPa or strain) and ``spread`` ((T+1, 6) MPa, the
        realisations' sample standard deviation per component).
    """
    if not scatter_mpa > 0:
        raise ValueError("condition_bias needs a scatter > 0")
    model = np.asarray(stress_model, dtype=np.float64)
    out = []
    for idx in conditions(paths):
        n = len(idx)
        if n < 2 or not _same_history(paths, idx, idx[0]):
            continue
        s = paths.stress[idx]
        mean = s.mean(axis=0)
        m = model[idx].mean(axis=0)   # the same history: one answer, averaged for rounding
        err = np.linalg.norm(m - mean, axis=-1)
        out.append({"strain_rate_s": float(paths.strain_rate_s[idx[0]]),
                    "temperature_k": float(paths.temperature_k[idx[0]]), "paths": n,
                    "bias_ratio": math.sqrt(float(np.mean(err ** 2))) / scatter_mpa,
                    "mean_noise_ratio": math.sqrt(1.0 / n),
                    "strain": paths.strain[idx[0]], "mean": mean, "model": m,
                    "spread": s.std(axis=0, ddof=1)})
    return sorted(out, key=lambda c: (c["strain_rate_s"], c["temperature_k"]))


def heldout_ratio_interval(data: np.ndarray, model: np.ndarray, scatter_mpa: float,
                           level: float = 0.95, n_boot: int = 4000, seed: int = 0
                           ) -> dict[str, Any]:
    """The held-out RMS error over the realisation scatter, with the interval a fresh
    choice of held-out realisations would move it in.

    The held-out set is a handful of DD paths (one or a few realisations per condition), and
    the paths differ: one 1.5·10⁵ /s path with a second avalanche can carry half of the
    error. So the ratio is resampled over whole paths (bootstrap, ``n_boot`` draws of P
    paths with replacement, fixed ``seed``); the scatter, pooled over every path of the
    study, is held fixed. With very few paths the percentile interval is too narrow
    (two paths give at most their two values): it is the least a rerun would move.

    Args:
        data, model: (P, T, 6) Mandel stresses of the held-out paths, MPa.
        scatter_mpa: :func:`realisation_scatter_rmse` of the study, MPa (> 0).

    Returns:
        ``ratio`` (RMS over all points / scatter), ``low``/``high`` (percentile bootstrap
        interval at ``level``; equal to ``ratio`` with one path), ``level``, ``paths``,
        ``per_path`` ((P,) each path's own RMS / scatter).
    """
    err = np.linalg.norm(np.asarray(model) - np.asarray(data), axis=-1) ** 2   # (P, T)
    ms = err.mean(axis=1)                          # each path: mean square, same T each
    p = ms.shape[0]
    if p == 0 or not scatter_mpa > 0:
        raise ValueError("heldout_ratio_interval needs held-out paths and a scatter > 0")
    ratio = math.sqrt(float(ms.mean())) / scatter_mpa
    if p == 1:
        lo = hi = ratio
    else:
        rng = np.random.default_rng(seed)
        boot = np.sqrt(ms[rng.integers(0, p, (n_boot, p))].mean(axis=1)) / scatter_mpa
        lo, hi = (float(q) for q in np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]))
    return {"ratio": ratio, "low": lo, "high": hi, "level": level, "paths": p,
            "per_path": [math.sqrt(float(m)) / scatter_mpa for m in ms]}


def _training_paths_of(paths: Any, train_idx: np.ndarray, val_idx: np.ndarray
                       ) -> list[tuple[int, list[int]]] | None:
    """Each held-out path with the training paths of its condition; None when one has
    none, or they do not share its strain history (then they are no reference for it)."""
    train_set = {int(i) for i in train_idx}
    groups = conditions(paths)
    out = []
    for v in np.asarray(val_idx, dtype=int):
        group = next(g for g in groups if v in g)
        tr = [int(i) for i in group if int(i) in train_set]
        if not tr or not _same_history(paths, tr, int(v)):
            return None
        out.append((int(v), tr))
    return out


def training_mean_prediction(paths: Any, train_idx: np.ndarray, val_idx: np.ndarray
                             ) -> np.ndarray | None:
    """(P_val, T+1, 6) for each held-out path, the mean stress of its condition's training
    paths (MPa): the DD's own answer from the realisations the surrogate saw.

    Scored like a surrogate (:func:`heldout_ratio_interval`) it is the reference a
    deterministic model of these training paths can hope to reach: about
    sqrt(1 + 1/n_train) times the scatter in expectation, more or less by chance on a few
    paths. None when a held-out path's condition has no training path or the paths of a
    condition do not share their strain history."""
    pairs = _training_paths_of(paths, train_idx, val_idx)
    if not pairs:
        return None
    return np.stack([paths.stress[tr].mean(axis=0) for _, tr in pairs])


def another_realisation_pairs(paths: Any, train_idx: np.ndarray, val_idx: np.ndarray
                              ) -> tuple[np.ndarray, np.ndarray] | None:
    """Every (held-out path, training path of its condition) pair: ``(data, prediction)``,
    both (pairs, T+1, 6) MPa, each held-out path predicted by one training realisation.

    Scored like a surrogate (:func:`heldout_ratio_interval`) it says how far one DD
    realisation is from another of the same condition: about sqrt(2) times the scatter in
    expectation. A surrogate that scores no worse predicts a held-out realisation as well
    as another DD realisation does. None as for :func:`training_mean_prediction`."""
    pairs = _training_paths_of(paths, train_idx, val_idx)
    if not pairs:
        return None
    both = [(v, t) for v, tr in pairs for t in tr]
    return (np.stack([paths.stress[v] for v, _ in both]),
            np.stack([paths.stress[t] for _, t in both]))


class ScaledHardening:
    """A J2 hardening law with σ_y and its slope multiplied by ``factor``."""

    def __init__(self, base: Any, factor: float) -> None:
        self.base, self.factor = base, float(factor)
        self.state_names = tuple(base.state_names)

    def initial_state(self, n: int) -> np.ndarray:
        return self.base.initial_state(n)

    def yield_stress(self, ep, dep, q, dt):
        sy, h, qn = self.base.yield_stress(ep, dep, q, dt)
        return self.factor * np.asarray(sy), self.factor * np.asarray(h), qn

    def __repr__(self) -> str:
        return f"{self.factor:g} x {self.base!r}"


class ScaledStressModel:
    """Any ConstitutiveModel with its stress response scaled: σ_f(ε) = f·σ(ε/f)."""

    def __init__(self, base: Any, factor: float) -> None:
        self.base, self.factor = base, float(factor)
        self.name = f"{getattr(base, 'name', type(base).__name__)} x{self.factor:.4g}"
        self.state_names = tuple(base.state_names)
        self.training_range = getattr(base, "training_range", None)

    def initial_state(self, n: int) -> np.ndarray:
        return self.base.initial_state(n)

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        f = self.factor
        r = self.base.update(np.asarray(strain) / f, np.asarray(dstrain) / f, state, dt)
        return ConstitutiveResult(stress=f * r.stress, tangent=r.tangent, state=r.state,
                                  out_of_range=r.out_of_range, uncertainty=(
                                      None if r.uncertainty is None else f * r.uncertainty))


def scale_hardening(model: Any, factor: float) -> Any:
    """A copy of ``model`` whose yield stress is ``factor`` times its own (see the module
    docstring); ``model`` is left unchanged."""
    if not (factor > 0 and math.isfinite(factor)):
        raise ValueError(f"scale factor must be finite and > 0, got {factor}")
    if isinstance(model, J2Plasticity):
        m = copy.copy(model)
        m.hardening = ScaledHardening(model.hardening, factor)
        m.name = f"{model.name} x{factor:.4g}"
        return m
    return ScaledStressModel(model, factor)


def initial_yield(model: Any) -> float | None:
    """σ_y at zero plastic strain of a J2 model (MPa), else None."""
    if isinstance(model, J2Plasticity):
        return model.initial_yield_stress()
    return None


__all__ = ["FLOW_TAIL", "ScaledHardening", "ScaledStressModel", "another_realisation_pairs",
           "condition_bias", "conditions",
           "flow_stress_distribution", "heldout_ratio_interval", "initial_yield",
           "path_flow_stress", "realisation_scatter_rmse", "scale_hardening",
           "training_mean_prediction"]
