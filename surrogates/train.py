"""Fitting, exporting and loading constitutive surrogates (the ``Surrogate`` artifact).

``SurrogateSettings(...).make(data, path)`` reads strain paths from a
``ConstitutiveDataset`` (analytic J2) or a ``DDRun`` artifact, splits them by path into
training and validation sets, fits the model with early stopping on the validation loss,
replays the validation paths through the fitted model (the metrics), runs
:func:`~scalebridge.surrogates.checks.check_constitutive`, and writes::

    surrogate.json     class, config, scalers, elastic moduli, training range, metrics,
                       split, check report
    model.pt           state dict of the network
    fit_paths.png/csv  validation stress-strain loops, data vs model
    condition_means.png/csv  (a DD study) each condition's mean path and spread vs model
    hardening.png/csv  (neural_j2) flow-stress samples and the learned σ_y(ε̄_p)
    history.png/csv    training and validation loss

Fitted to a DDRun, the metrics also hold the data's hardening distribution (the
realisations' flow-stress scatter) and the realisation scatter in the units of the
held-out error (:mod:`scalebridge.surrogates.ensemble`): a held-out error at that level is
as good as the data allow.

``load_surrogate(path)`` rebuilds the model as a ``ConstitutiveModel``.

Fitting the physics-structured model: with the elastic moduli of the data's source
(MD or the DD settings), the plastic strain is ε_p = ε - C⁻¹σ (or the DD plastic strain
column), ε̄_p accumulates √(2/3)|dev Δε_p|, and at every step with plastic flow the von
Mises stress is the current yield stress. The monotone network is fitted to these
(ε̄_p, ε̇_p, T) → σ_eq samples by L-BFGS in float64.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import multiprocessing
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationInfo, field_validator
from scalebridge.artifacts import (
    Artifact,
    produce,
    read_artifact,
    write_json_atomic,
    write_text_atomic,
)
from scalebridge.errors import ArtifactError, DataError
from scalebridge.modelfiles import load_into, load_state_dict_file, nonfinite_keys
from scalebridge.runtime import exit_with_parent
from scalebridge.settings import Resources, StrictModel
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.data import (
    StrainPaths,
    integrate_at_path_dt,
    load_paths,
    plastic_history,
)
from scalebridge.surrogates.ensemble import condition_effect, path_flow_stress
from scalebridge.surrogates.internal_variable import InternalVariableModel, YieldHardeningNet
from scalebridge.surrogates.johnston_gilman import (
    JohnstonGilmanJ2,
    fit_johnston_gilman,
    jg_record,
    mobile_density,
    write_jg_table,
)
from scalebridge.surrogates.neural import (
    DTYPE,
    RATE_FLOOR,
    MonotoneHardeningNet,
    NeuralHardening,
    NeuralJ2,
)
from scalebridge.surrogates.plots import (
    fit_paths_title,
    plot_condition_means,
    plot_hardening,
    plot_history,
    plot_mobile_density,
    plot_paths,
)
from scalebridge.surrogates.protocol import ConstitutiveModel, integrate_path
from scalebridge.surrogates.source_families import (
    SourceFamiliesJ2,
    fit_source_families,
    sf_record,
    write_mobile_history,
)

log = logging.getLogger("scalebridge.surrogates")


class SurrogateSettings(StrictModel):
    """How to fit a constitutive surrogate (defaults run in seconds on a laptop)."""

    model: Literal["neural_j2", "johnston_gilman", "source_families", "internal_variable",
                   "recurrent"] = Field(
        "neural_j2", description="neural_j2: J2 return map with a neural hardening law; "
        "johnston_gilman: J2 viscoplasticity of source-limited dislocation flow (a "
        "nucleation delay, then σ = σ_b(ε̄_p) + η(ε̄_p)·ε̄̇_p with η = 3B/(ρ_m b²): "
        "surrogates.johnston_gilman), for DD data; source_families: J2 viscoplasticity "
        "fed by K source families with the DD's strengths and t_nuc, each firing every "
        "t_nuc above its strength, the emitted dislocations pinned in time "
        "(surrogates.source_families), for DD data; internal_variable: data-driven model, "
        "learned convex yield surface and latent hardening (recurrent: its former name)")
    hidden: int = Field(16, ge=2, description="width of the hidden layers")
    layers: int = Field(2, ge=1, le=2, description="hidden layers of the hardening network")
    latent: int = Field(8, ge=1, description="latent hardening variables (internal_variable)")
    max_iterations: int = Field(600, ge=1, description="L-BFGS iterations")
    check_every: int = Field(20, ge=1, description="iterations between validation checks")
    patience: int = Field(
        5, ge=1, description="validation checks without improvement before stopping")
    learning_rate: float = Field(
        5e-3, gt=0, description="unused (was the Adam rate of the removed black-box "
        "recurrent network; kept so that old settings files still load)")
    val_fraction: float = Field(0.25, gt=0, lt=1, description="fraction of paths held out "
                                "(a DD study: of each condition's realisations, at least one)")
    seed: int = Field(0, description="seed of the split and of the initial weights")
    use_rate: Literal["auto", "yes", "no"] = Field(
        "auto", description="plastic strain rate as a hardening input (auto: if the "
        "training paths have different strain rates and, for a DD study, their flow stress "
        "depends on the rate beyond the realisation scatter: ensemble.condition_effect)")
    use_temperature: Literal["auto", "yes", "no"] = Field(
        "auto", description="temperature as a hardening input (auto: if it varies and, for "
        "a DD study, the flow stress depends on it beyond the realisation scatter)")
    flow_rate_fraction: float = Field(
        0.3, ge=0, lt=1, description="neural_j2: a step's stress is a flow-stress sample "
        "only if its plastic rate is at least this fraction of its path's applied "
        "equivalent strain rate (slower steps are elastic reloading between avalanches; "
        "0: every step with plastic flow)")
    rate_window: int = Field(1, ge=1, description="neural_j2: the flow samples' plastic "
                             "rate averaged over this many steps")
    overstress: Literal["auto", "yes", "no"] = Field(
        "auto", description="neural_j2: learn a nucleation overstress, a viscous stress "
        "η·exp(-ε̄_p/ε_c)·ε̇_p that fades with plastic strain (the upper yield point of "
        "source-limited plasticity, as in DD data at 10^4-10^5 /s); auto: with the rate "
        "feature")
    plastic_tol: float = Field(
        1e-6, gt=0, description="plastic increment counted as flow, relative to max ε̄_p")
    rollout_iterations: int = Field(
        60, ge=0, description="L-BFGS iterations fitting the stress along the training "
        "paths replayed through the return map, after the first fit (0: never; neural_j2 "
        "skips it when the validation paths are already matched to ~3e-4)")
    knots: int = Field(12, ge=2, description="johnston_gilman: knots of the viscosity "
                       "(mobile density) over the trained plastic strain")
    evaluations: int = Field(30, ge=1, description="johnston_gilman: least-squares "
                             "evaluations per source-strength candidate")
    families: int = Field(16, ge=1, description="source_families: source families (the "
                          "quantiles of the DD's source-strength distribution)")
    restarts: int = Field(2, ge=0, description="source_families: seeded restarts of the "
                          "Powell fit after its two starts (source_families."
                          "fit_source_families)")
    clock_width: float = Field(
        0.0, ge=0, description="source_families: the width of the stress a source sees "
        "about the applied one (the internal field of the dislocations around it), in "
        "units of the DD's source-strength spread √3·s_τ (von Mises), a stated "
        "assumption: a family's clock runs at the rate Φ((σ_eq − S_k)/w) instead of "
        "switching at its strength S_k, so the families dephase as the DD's sources do. "
        "0: step clocks")
    internal_field_grows: bool = Field(
        False, description="source_families: the internal field grows from none with the "
        "plastic strain as √(ε̄_p/(ε̄_p + ε_pin)) (it is the emitted dislocations'; a "
        "virgin crystal has none): the clock width from 0 and the families' strengths "
        "from the DD sources' own at the fitted spread (the fitted scale applies once it "
        "is grown), so the "
        "first sources fire at their own strengths, as in the DD")
    dephase: bool = Field(
        False, description="source_families: after its first firing a family emits at "
        "its renewal rate, emission × (its clock's rate)/t_nuc, instead of in bursts "
        "every t_nuc: a family stands for many DD sources of different lengths and "
        "clocks, which fire out of phase once the first avalanche has passed (the first "
        "firing, the upper yield, stays a burst)")
    dephase_wait: bool = Field(
        False, description="source_families, with dephase: a family that has fired waits "
        "one more nucleation time of clock time before its renewal emission starts (the "
        "first firing restarts all its sources together, so none can emit again sooner; "
        "by then their different clocks have spread), instead of emitting at its renewal "
        "rate from the first firing on")
    relaxed_clocks: bool = Field(
        False, description="source_families: within a step the source clocks read a "
        "stress linear from the step's start to the stress a first pass of the step "
        "returns (a predictor), instead of to the elastic trial stress, which the "
        "relaxation within the step never reaches (an error of first order in the time "
        "step: the clocks run too fast while the material flows)")
    spread_loading: bool = Field(
        False, description="source_families: the flow's effective fluidity takes the "
        "strain increment as loaded over the step (the exponential integrator of the "
        "overstress, s_e = s_0 e^(-x) + (s_tr - s_0)(1 - e^(-x))/x, x = 3G∫m dt), "
        "instead of all at its start and then relaxed, which underestimates the steady "
        "overstress by about x/2 (an error of first order in the time step)")
    run_checks: bool = Field(True, description="run check_constitutive on the fit")
    cross_validate: int = Field(
        2, ge=0, description="a DD study held out by microstructure: fit again with up to "
        "this many other microstructures held out in turn and score each the same way, so "
        "the held-out ratio comes with its spread over microstructures (one more fit "
        "each; 0: none)")

    @field_validator("dephase_wait")
    @classmethod
    def _wait_needs_dephase(cls, v: bool, info: ValidationInfo) -> bool:
        # refused when the run file loads, not after the DD stage has run (``dephase`` is
        # declared above, so it is validated first)
        if v and not info.data.get("dephase", False):
            raise ValueError("needs dephase = true (the wait is the pause before a "
                             "dephased family's renewal emission)")
        return v

    def make(self, data: Artifact | str | Path, path: str | Path,
             resources: Resources | None = None, force: bool = False) -> Artifact:
        """Fit on the strain paths of ``data`` and write the ``Surrogate`` artifact
        (``force``: refit even when a current one exists)."""
        res = resources or Resources()
        data_art = data if isinstance(data, Artifact) else read_artifact(data)

        def build(work: Path) -> dict[str, Any]:
            torch.set_num_threads(res.threads)
            paths = load_paths(data_art.path)
            return fit_surrogate(paths, self, work)

        return produce("Surrogate", path, self, {"data": data_art}, build, force=force)


def split_paths(n: int, val_fraction: float, seed: int,
                groups: list[np.ndarray] | None = None,
                linked: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a random split by path; at least one path in each.

    ``groups``: the paths of each loading condition of a study (index arrays). Then the
    split holds out realisations within every condition with at least two paths
    (``max(1, round(val_fraction · n_c))`` of its n_c, at most n_c − 1), so the held-out
    error samples every condition: a plain random quarter of a DD study's 18 paths can
    miss its fastest rate, where a surrogate errs most (the example's Johnston–Gilman:
    1.81x the scatter on such a split, 2.13x with one realisation of each condition).

    ``linked``: (n,) a label per path, the microstructure (DD seed) it was run on. When
    conditions share microstructures (a study runs the same seeds in each), whole
    microstructures are held out (``max(1, round(val_fraction · n_labels))``, at most
    all but one), so no held-out path has a twin of its microstructure in training: the
    100 K and 300 K paths of one seed at one rate are nearly the same curve."""
    if n < 2:
        raise DataError(f"need at least 2 strain paths to split, got {n}")
    rng = np.random.default_rng(seed)
    if linked is not None and groups and _shared_across(groups, np.asarray(linked)):
        labels = np.unique(linked)
        k = min(max(1, round(val_fraction * labels.size)), labels.size - 1)
        iva = np.flatnonzero(np.isin(linked, rng.permutation(labels)[:k]))
        return np.setdiff1d(np.arange(n), iva), iva
    if groups and any(len(g) >= 2 for g in groups):
        val = [rng.permutation(np.asarray(g))[:min(max(1, round(val_fraction * len(g))),
                                                   len(g) - 1)]
               for g in groups if len(g) >= 2]
        iva = np.sort(np.concatenate(val)).astype(int)
        return np.setdiff1d(np.arange(n), iva), iva
    perm = rng.permutation(n)
    k = min(max(1, round(val_fraction * n)), n - 1)
    return np.sort(perm[k:]), np.sort(perm[:k])


def _shared_across(groups: list[np.ndarray], linked: np.ndarray) -> bool:
    """Whether some label of ``linked`` occurs in two of the ``groups``, and there are
    at least two labels (one to hold out, one to train on)."""
    seen: dict[int, int] = {}
    for gi, g in enumerate(groups):
        for lab in set(linked[np.asarray(g, dtype=int)].tolist()):
            if seen.setdefault(lab, gi) != gi:
                return np.unique(linked).size >= 2
    return False


def applied_rate(paths: StrainPaths) -> np.ndarray:
    """(P,) each path's applied equivalent strain rate, 1/s: the median over its steps of
    the equivalent total strain increment, over its dt (γ̇/√3 for a shear path)."""
    inc = np.median(mandel.equivalent_strain(np.diff(paths.strain, axis=1)), axis=1)
    return inc / paths.dt


def hardening_samples(paths: StrainPaths, plastic_tol: float, rate_fraction: float = 0.0,
                      rate_window: int = 1) -> dict[str, np.ndarray]:
    """Flow-stress samples: at each step with plastic flow, (ε̄_p, ε̇_p, T) → σ_eq.

    A step flows when its Δε̄_p exceeds ``plastic_tol`` of the largest ε̄_p and its plastic
    rate is at least ``rate_fraction`` of its path's applied equivalent strain rate (the
    median over the path's steps of the equivalent total strain increment / dt).

    Returns arrays ``ep``, ``rate`` (1/s), ``temperature_k``, ``sigma_mpa``, ``path``."""
    ep = plastic_history(paths)
    dep = np.diff(ep, axis=1)
    # relative to the largest ε̄_p, with an absolute floor far above round-off of ε - C⁻¹σ
    flow = dep > max(plastic_tol * float(ep.max()), 1e-10)
    if rate_fraction > 0:
        # on serrated data (DD) the steps that creep at a small fraction of the applied
        # rate are elastic reloading between avalanches: their stress is not a flow stress
        flow &= dep >= rate_fraction * (applied_rate(paths) * paths.dt)[:, None]
    pi = np.nonzero(flow)[0]
    vm = mandel.von_mises(paths.stress[:, 1:])
    rate = dep
    if rate_window > 1:   # centred moving average of the plastic increments
        k = np.ones(rate_window) / rate_window
        pad = np.pad(dep, ((0, 0), (rate_window // 2, rate_window - 1 - rate_window // 2)),
                     mode="edge")
        rate = np.stack([np.convolve(row, k, mode="valid") for row in pad])
    return {"ep": ep[:, 1:][flow], "rate": rate[flow] / paths.dt[pi],
            "temperature_k": paths.temperature_k[pi], "sigma_mpa": vm[flow], "path": pi}


def _choose(flag: str, values: np.ndarray, tol: float) -> bool:
    if flag != "auto":
        return flag == "yes"
    return bool(np.ptp(values) > tol)


def temperature_groups(model: Any, temperature_k: np.ndarray | None, n: int
                       ) -> list[tuple[float | None, np.ndarray]]:
    """(temperature K, path indices) groups over which ``model`` is run with its
    ``temperature_k`` set to the paths' own: one per distinct path temperature for a
    model with a temperature attribute (NeuralJ2: the temperature feature is one value
    per model, as in the FEM), else one group of all ``n`` paths (None: the model's
    temperature left as it is)."""
    if temperature_k is None or not hasattr(model, "temperature_k"):
        return [(None, np.arange(n))]
    t = np.asarray(temperature_k, dtype=np.float64)
    return [(float(v), np.flatnonzero(t == v)) for v in np.unique(t)]


def integrate_paths(model: ConstitutiveModel, paths: StrainPaths
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~scalebridge.surrogates.protocol.integrate_path` of every path at its own
    step ``dt`` (s) and its own temperature (:func:`temperature_groups`; the model's
    temperature is restored): (stress (P, T+1, 6) MPa, states, out_of_range)."""
    stress = np.zeros_like(paths.strain)
    states: np.ndarray | None = None
    oor = np.zeros(paths.strain.shape[:2], dtype=bool)
    t0 = getattr(model, "temperature_k", None)
    try:
        for t, idx in temperature_groups(model, paths.temperature_k, len(paths)):
            if t is not None:
                model.temperature_k = t  # type: ignore[attr-defined]
            s, st, o = integrate_at_path_dt(model, paths.strain[idx], paths.dt[idx])
            if states is None:
                states = np.zeros(paths.strain.shape[:2] + st.shape[2:])
            stress[idx], states[idx], oor[idx] = s, st, o
    finally:
        if t0 is not None:
            model.temperature_k = t0  # type: ignore[attr-defined]
    assert states is not None
    return stress, states, oor


#: von Mises stress per Mandel norm of a deviatoric stress, sqrt(3/2): an error or change
#: ‖Δσ‖ compared with a von Mises reference (σ_ref) is put in that measure first (in the
#: DD's simple shear ‖σ‖ = √2 τ, σ_vM = √3 τ).
VM_PER_NORM = float(np.sqrt(1.5))


def path_errors(model: ConstitutiveModel, paths: StrainPaths, sigma_ref: float,
                ) -> tuple[dict[str, float], np.ndarray]:
    """Replay ``paths`` through ``model`` (each at its own dt and temperature,
    :func:`integrate_paths`): the largest error over ``sigma_ref`` (a von Mises stress,
    so the error in the same measure, :data:`VM_PER_NORM` ‖Δσ‖), relative and RMS errors
    (Mandel norms, as the realisation scatter)."""
    stress, _, oor = integrate_paths(model, paths)
    err = np.linalg.norm(stress - paths.stress, axis=-1)
    ref = np.linalg.norm(paths.stress, axis=-1)
    per_path = np.sqrt((err ** 2).sum(axis=1) / np.maximum((ref ** 2).sum(axis=1), 1e-300))
    return {"max_error_over_yield": float(VM_PER_NORM * err.max() / sigma_ref),
            "rel_error": float(np.sqrt((err ** 2).sum() / (ref ** 2).sum())),
            "rel_error_max_path": float(per_path.max()),
            "rmse_mpa": float(np.sqrt((err ** 2).mean())),
            "out_of_range_fraction": float(oor.mean())}, stress


#: ``time_step_sensitivity`` above this fraction of σ_ref: the model's answer depends on
#: its time step (a path-dependent, rate-dependent law), so the steps it was fitted at are
#: recorded (``training_range["dt_s"]``) for the FEM to compare its own with.
STEP_DEPENDENT = 1e-3


def refined_paths(paths: StrainPaths, refine: int) -> StrainPaths:
    """The same strain histories with ``refine`` times as many steps (strain linear
    between the original points, dt/refine); stresses zero (a model's input only)."""
    t_old = np.arange(paths.strain.shape[1])
    t_new = np.linspace(0.0, t_old[-1], t_old[-1] * refine + 1)
    strain = np.stack([np.stack([np.interp(t_new, t_old, paths.strain[i, :, j])
                                 for j in range(6)], axis=-1) for i in range(len(paths))])
    return StrainPaths(strain, np.zeros_like(strain), paths.dt / refine,
                       paths.temperature_k, paths.strain_rate_s, meta=dict(paths.meta))


def time_step_sensitivity(model: ConstitutiveModel, paths: StrainPaths, refine: int = 2
                          ) -> dict[str, Any]:
    """How much the model's answer along ``paths`` moves when its time step is cut by
    ``refine`` (the same strain histories; compared at the original points).

    A discrete-time fit (a source clock that fires at step ends, a fluidity held over a
    step) can match its training paths at their dt and answer differently at another:
    the FEM must then step at the dt it was fitted at. Returns ``rms_change_mpa`` and
    ``max_change_mpa`` (‖Δσ‖ over all points), ``refine`` and ``dt_s`` ([min, max] of the
    paths' steps, s)."""
    base = integrate_paths(model, paths)[0]
    fine = integrate_paths(model, refined_paths(paths, refine))[0][:, ::refine]
    d = np.linalg.norm(fine - base, axis=-1)
    return {"rms_change_mpa": float(np.sqrt(np.mean(d ** 2))),
            "max_change_mpa": float(d.max()), "refine": refine,
            "dt_s": [float(np.min(paths.dt)), float(np.max(paths.dt))]}


def _lbfgs_chunk(params: list[torch.nn.Parameter], loss_fn, max_iter: int, **options: Any):
    """A callable running ``max_iter`` L-BFGS iterations (strong Wolfe line search) on
    ``loss_fn()``: the ``step_chunk`` of :func:`_early_stopping_loop`. ``options`` go to
    :class:`torch.optim.LBFGS` (history_size, tolerances)."""
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe", **options)

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    return lambda: opt.step(closure)


def _early_stopping_loop(params: list[torch.nn.Parameter], module: torch.nn.Module,
                         step_chunk, train_loss, val_loss, settings: SurrogateSettings,
                         accept: Callable[[], bool] | None = None,
                         ) -> list[dict[str, Any]]:
    """Run ``step_chunk()`` (``check_every`` iterations) until the validation loss stops
    improving for ``patience`` checks or ``max_iterations``; restore the best weights.

    ``accept``: when given, only checkpoints for which it returns True can be the best
    (the others count as no improvement; each history entry records ``accepted``); with
    none accepted the starting weights are restored."""
    history: list[dict[str, Any]] = []
    best, best_state, bad = np.inf, copy.deepcopy(module.state_dict()), 0
    it = 0
    while it < settings.max_iterations:
        step_chunk()
        it += settings.check_every
        with torch.no_grad():
            tr, va = float(train_loss()), float(val_loss())
        history.append({"iteration": it, "train_loss": tr, "val_loss": va})
        if not np.isfinite(va):
            break
        if accept is not None:
            history[-1]["accepted"] = ok = bool(accept())
            if not ok:
                bad += 1
                if bad >= settings.patience:
                    break
                continue
        if va < best * (1 - 1e-4):
            best, best_state, bad = va, copy.deepcopy(module.state_dict()), 0
        else:
            bad += 1
            if bad >= settings.patience:
                break
    module.load_state_dict(best_state)
    return history


def fit_neural_j2(train: StrainPaths, val: StrainPaths, s: SurrogateSettings,
                  ) -> tuple[NeuralJ2, dict[str, Any], list[dict[str, float]], dict]:
    """Fit the monotone hardening network; returns (model, record, history, samples)."""
    tr = hardening_samples(train, s.plastic_tol, s.flow_rate_fraction, s.rate_window)
    va = hardening_samples(val, s.plastic_tol, s.flow_rate_fraction, s.rate_window)
    if len(tr["ep"]) < 5:
        raise DataError(f"only {len(tr['ep'])} plastic steps in the training paths: "
                        "the data never yield (raise the strain amplitude)")
    allp = {k: np.concatenate([tr[k], va[k]]) for k in tr}
    features, tests = [], {}
    for name, flag, values, tol in (
            ("log_rate", s.use_rate, np.log10(np.maximum(train.strain_rate_s, RATE_FLOOR)),
             0.01),
            ("temperature", s.use_temperature, train.temperature_k, 1.0)):
        if not _choose(flag, values, tol):
            continue
        # only where a condition's paths are realisations of one loading (a DD study);
        # different strain paths at one condition differ by more than scatter
        if (flag == "auto" and train.meta.get("source") == "ddrun"
                and (t := condition_effect(train, name)) is not None):
            tests[name] = t
            if not t["matters"]:
                log.info("neural_j2: %s is not an input: the training paths' flow stress "
                         "does not depend on it beyond the realisation scatter (F = %.2g, "
                         "p = %.2g)", name, t["f"], t["p"])
                continue
        features.append(name)

    def feats(d: dict[str, np.ndarray]) -> np.ndarray:
        cols = [np.log10(np.maximum(d["rate"], RATE_FLOOR)) if f == "log_rate"
                else d["temperature_k"] for f in features]
        return np.stack(cols, axis=1) if cols else np.zeros((len(d["ep"]), 0))

    f_tr = feats(tr)
    mean = f_tr.mean(axis=0) if features else np.zeros(0)
    std = np.maximum(f_tr.std(axis=0), 1e-3) if features else np.zeros(0)
    ep_scale = float(tr["ep"].max())
    sigma_scale = float(tr["sigma_mpa"].max())
    torch.manual_seed(s.seed)
    # non-decreasing in the log plastic rate by construction (non-negative rate
    # sensitivity): on serrated DD data the slow steps are the elastic reloading
    # before an avalanche, at high stress, and a free law learns to soften with rate
    rate_col = features.index("log_rate") if "log_rate" in features else None
    overstress = (rate_col is not None and s.overstress != "no") or s.overstress == "yes"
    # the overstress's reference rate: the geometric mean of the sampled plastic rates
    rate_ref = float(10.0 ** np.mean(np.log10(np.maximum(tr["rate"], RATE_FLOOR))))
    net = MonotoneHardeningNet(len(features), s.hidden, s.layers, rate_col, overstress)
    u_tr = (f_tr - mean) / std if features else f_tr
    umin = u_tr.min(axis=0).tolist() if features else []
    umax = u_tr.max(axis=0).tolist() if features else []
    if rate_col is not None:
        # no extrapolation below the slowest loading: σ_y at a plastic rate under the
        # slowest path's applied equivalent strain rate is σ_y at that rate (the data say
        # nothing slower; the steps that creep below it are reloading or relaxation, and
        # a law fitted down there set the FEM's static yield to a fraction of the DD's
        # slowest flow stress)
        slowest = float(np.min(applied_rate(train)))
        umin[rate_col] = max(umin[rate_col], (np.log10(max(slowest, RATE_FLOOR))
                                              - mean[rate_col]) / std[rate_col])
    hard = NeuralHardening(net, ep_scale, sigma_scale, features, mean.tolist(), std.tolist(),
                           float(np.mean(train.temperature_k)), umin, umax,
                           rate_ref if overstress else None)

    def tensors(d, f):   # the conditions clamped to the trained range, as when evaluated
        return (torch.as_tensor(d["ep"] / ep_scale, dtype=DTYPE),
                torch.as_tensor(np.clip((f - mean) / std, umin, umax) if features else f,
                                dtype=DTYPE),
                torch.as_tensor(d["sigma_mpa"] / sigma_scale, dtype=DTYPE),
                torch.as_tensor(d["rate"] / rate_ref, dtype=DTYPE))

    xt, ut, yt, rt = tensors(tr, f_tr)
    xv, uv, yv, rv = tensors(va, feats(va)) if len(va["ep"]) else (xt, ut, yt, rt)
    net.train()

    def g(x, u, r):   # scaled σ_y of the samples: the network plus the overstress
        return net(x, u) + net.overstress_term(x, r) if overstress else net(x, u)

    def loss_t():
        return torch.mean((g(xt, ut, rt) - yt) ** 2)

    step = _lbfgs_chunk(list(net.parameters()), loss_t, s.check_every, history_size=50,
                        tolerance_grad=1e-12, tolerance_change=1e-15)
    history = _early_stopping_loop(list(net.parameters()), net, step,
                                   loss_t, lambda: torch.mean((g(xv, uv, rv) - yv) ** 2), s)
    net.eval()
    rng_rate = tr["rate"] if len(tr["rate"]) else np.array([RATE_FLOOR])
    training_range = {
        "eps_p_eq": [0.0, float(tr["ep"].max())],
        "temperature_k": [float(train.temperature_k.min()), float(train.temperature_k.max())],
        "plastic_rate_s": [float(np.percentile(rng_rate, 5)), float(rng_rate.max())],
        "strain_norm": [0.0, float(np.linalg.norm(train.strain, axis=-1).max())],
    }
    model = NeuralJ2(train.meta["bulk_mpa"], train.meta["shear_mpa"], hard, training_range)
    record = {
        "class": "NeuralJ2",
        "config": {"hidden": s.hidden, "layers": s.layers, "n_cond": len(features),
                   "rate_col": rate_col, "overstress": overstress,
                   "condition_tests": tests},
        "scalers": {"ep_scale": ep_scale, "sigma_scale": sigma_scale, "features": features,
                    "feature_mean": mean.tolist(), "feature_std": std.tolist(),
                    "feature_min": umin, "feature_max": umax,
                    "overstress_rate_s": rate_ref if overstress else None},
        "elastic": {"bulk_mpa": train.meta["bulk_mpa"], "shear_mpa": train.meta["shear_mpa"]},
        "temperature_k": float(np.mean(train.temperature_k)),
        "training_range": training_range,
    }
    return model, record, history, {"train": tr, "val": va, "all": allp}


def rollout_stress(model: NeuralJ2, strain: torch.Tensor, dt: np.ndarray,
                   temperature_k: np.ndarray | None = None) -> torch.Tensor:
    """Differentiable replay of strain paths (P, T+1, 6) through the J2 return map of
    ``model`` -> stress (P, T+1, 6) MPa, with gradients to the hardening weights; ``dt``
    (s) scalar or (P,), ``temperature_k`` (P,) the paths' temperatures (K; None: the
    model's), each group of paths run at its own (:func:`temperature_groups`).

    Each step's Δε̄_p is solved without gradients (the model's own safeguarded Newton);
    one Newton correction Δε̄_p + r(Δε̄_p)/(3G + H) with r carrying the graph then gives
    the exact derivative of the converged Δε̄_p (implicit function theorem)."""
    p = strain.shape[0]
    groups = temperature_groups(model, temperature_k, p)
    if len(groups) == 1:
        if groups[0][0] is None:
            return _rollout_stress(model, strain, dt)
        t0 = model.temperature_k
        try:
            model.temperature_k = groups[0][0]
            return _rollout_stress(model, strain, dt)
        finally:
            model.temperature_k = t0
    dt_p = np.broadcast_to(np.asarray(dt, dtype=np.float64), (p,))
    parts, order = [], []
    t0 = model.temperature_k
    try:
        for t, idx in groups:
            model.temperature_k = t
            parts.append(_rollout_stress(model, strain[torch.as_tensor(idx)], dt_p[idx]))
            order.append(idx)
    finally:
        model.temperature_k = t0
    inv = torch.as_tensor(np.argsort(np.concatenate(order)))
    return torch.cat(parts)[inv]


def _rollout_stress(model: NeuralJ2, strain: torch.Tensor, dt: np.ndarray | float
                    ) -> torch.Tensor:
    """:func:`rollout_stress` at the model's temperature."""
    g, k = model.shear, model.bulk
    c = torch.as_tensor(mandel.isotropic_stiffness(k, g), dtype=DTYPE)
    i2 = torch.as_tensor(mandel.I2, dtype=DTYPE)
    p = strain.shape[0]
    dt_t = torch.as_tensor(np.broadcast_to(dt, (p,)).copy(), dtype=DTYPE)
    eps_p = torch.zeros((p, 6), dtype=DTYPE)
    ep = torch.zeros(p, dtype=DTYPE)
    out = [torch.zeros((p, 6), dtype=DTYPE)]
    hard = model.neural
    for step in range(strain.shape[1] - 1):
        sig_tr = (strain[:, step + 1] - eps_p) @ c.T
        s_tr = sig_tr - sig_tr[:, :3].sum(dim=1, keepdim=True) / 3.0 * i2
        sn = torch.linalg.norm(s_tr, dim=1)
        q = np.sqrt(1.5) * sn
        with torch.no_grad():
            sy0 = hard.sigma_y(ep, torch.zeros_like(ep), dt_t)
        plastic = ((q - sy0) > 1e-12 * sy0.abs().clamp(min=1.0)) & (sn > 0)
        if not bool(plastic.any()):
            out.append(sig_tr)
            continue
        idx = torch.nonzero(plastic)[:, 0]
        ii = idx.numpy()
        qn, epn = q.detach().numpy()[ii], ep.detach().numpy()[ii]
        dg0, _, h0, _ = model._solve(qn, epn, np.zeros((len(ii), 0)), dt_t.numpy()[ii])
        dg_s = torch.as_tensor(dg0, dtype=DTYPE)
        sy = hard.sigma_y(ep[idx] + dg_s, dg_s, dt_t[idx])
        dg = dg_s + (q[idx] - 3.0 * g * dg_s - sy) / (3.0 * g + torch.as_tensor(h0))
        full = torch.zeros(p, dtype=DTYPE).index_put((idx,), dg)
        nhat = s_tr / torch.where(sn > 0, sn, torch.ones_like(sn))[:, None]
        sig = sig_tr - (2.0 * g * np.sqrt(1.5) * full)[:, None] * nhat
        eps_p = eps_p + (np.sqrt(1.5) * full)[:, None] * nhat
        ep = ep + full
        out.append(sig)
    return torch.stack(out, dim=1)


def _flow_rel_error(data: np.ndarray, model: np.ndarray) -> float:
    """RMS relative difference of the model's flow stresses from the data's, (P,) MPa."""
    return float(np.sqrt(np.mean(((model - data) / data) ** 2)))


def beyond_scatter(rel_error: float, realisation_rel_std: float,
                    training_noise_rel_u: float = 0.0) -> float:
    """The part of a relative flow-stress error a rerun of the DD would not change:
    sqrt(max(rel_error² − realisation_rel_std² − training_noise_rel_u², 0)) (the held-out
    path's own scatter, and the scatter of the realisations the model was fitted to as it
    reached the model: :func:`training_noise`)."""
    return math.sqrt(max(rel_error ** 2 - realisation_rel_std ** 2
                         - training_noise_rel_u ** 2, 0.0))


def training_noise(flows: np.ndarray, microstructures: int) -> float | None:
    """The relative sd of a fit's flow stress from which DD realisations it was fitted to,
    measured: ``flows`` (M, P) MPa, the flow stresses on P paths of the M fits that each
    held out one of the study's ``microstructures`` (the main fit and its
    cross-validation folds). Two such fits share all but one microstructure, so their
    spread is 1/sqrt(n − 1) of that of fits to independent sets of n − 1: the result is
    sqrt(n − 1) times the RMS over the paths of the fits' relative sd (ddof 1). None
    unless every microstructure was held out once (M = n ≥ 2).

    Why measured and not σ/sqrt(n − 1): a model of few parameters fitted over every
    loading condition at once averages the realisations' noise across conditions (the Mo
    example's fits differ by 4.6 % where σ/sqrt(2) is 8.0 %)."""
    f = np.asarray(flows, dtype=float)
    if f.ndim != 2 or len(f) < 2 or len(f) != microstructures or not np.all(f > 0):
        return None
    return float(math.sqrt(np.mean((leave_one_out_spread(f) / f.mean(axis=0)) ** 2)))


def leave_one_out_spread(values: np.ndarray) -> np.ndarray:
    """The sd one fit to n − 1 of n microstructures has, from the n fits that each left
    one out (``values`` (n, ...), the fits along the first axis): sqrt(n − 1) times their
    sd (ddof 1), since two of them share n − 2 microstructures (:func:`training_noise`)."""
    v = np.asarray(values, dtype=float)
    return math.sqrt(len(v) - 1) * v.std(axis=0, ddof=1)


def _model_flow(paths: StrainPaths, stress: np.ndarray) -> np.ndarray:
    """(P,) the flow stress (MPa, :func:`path_flow_stress`) of a model's ``stress``
    (P, T+1, 6) along ``paths``."""
    return path_flow_stress(StrainPaths(paths.strain, stress, paths.dt, paths.temperature_k,
                                        paths.strain_rate_s))


def heldout_flow_error(val: StrainPaths, stress_model: np.ndarray,
                       realisation_rel_std: float | None) -> dict[str, Any]:
    """How well the surrogate predicts the flow stress the FEM uses, on held-out paths:
    each path's flow stress (median von Mises stress over its last fifth,
    :func:`~scalebridge.surrogates.ensemble.path_flow_stress`) from the model
    (``stress_model``, (P, T+1, 6) MPa) against the data's. ``rel_error``: RMS of the
    relative differences; ``model_rel_u``: the part a rerun of the DD would not change,
    sqrt(max(rel_error² − realisation_rel_std², 0)) (a held-out realisation deviates
    from its condition's mean by the realisation scatter, which the band carries as the
    ``dd`` source; with cross-validation folds :func:`pooled_flow_error` removes the
    training realisations' noise as well); ``paths``: per path [data, model] MPa."""
    data = path_flow_stress(val)
    model = _model_flow(val, stress_model)
    rel = _flow_rel_error(data, model)
    floor = float(realisation_rel_std or 0.0)
    return {"rel_error": rel, "realisation_rel_std": floor,
            "model_rel_u": beyond_scatter(rel, floor),
            "paths": [[float(a), float(b)] for a, b in zip(data, model, strict=True)]}


def pooled_flow_error(rel_error: float, realisation_rel_std: float | None,
                      main: dict[str, Any], training_noise_rel_u: float | None = None
                      ) -> dict[str, Any]:
    """:func:`heldout_flow_error`'s record with ``rel_error`` and ``model_rel_u`` from
    the flow-stress error pooled over the cross-validation folds (``pooled_over =
    "folds"``), less the training realisations' noise ``training_noise_rel_u``
    (:func:`training_noise`; None: not measured, nothing removed) as well; the main
    split's own values stay as ``main_split_rel_error`` and ``main_split_model_rel_u``."""
    return {**main, "rel_error": float(rel_error),
            "model_rel_u": beyond_scatter(rel_error, float(realisation_rel_std or 0.0),
                                           training_noise_rel_u or 0.0),
            "training_noise_rel_u": training_noise_rel_u,
            "pooled_over": "folds", "main_split_rel_error": main["rel_error"],
            "main_split_model_rel_u": main["model_rel_u"]}


def overstress_record(hard: NeuralHardening) -> dict[str, float]:
    """The learned nucleation overstress σ_n = η·exp(-ε̄_p/ε_c)·ε̇_p in physical units:
    ``eta_mpa_s`` (MPa·s), ``eps_c`` (equivalent plastic strain), and ``at_rate_mpa``,
    its value at ε̄_p = 0 and the reference rate ``rate_s`` (1/s)."""
    with torch.no_grad():
        eta, xc = (float(t) for t in hard.net.overstress_parameters())
    r = float(hard.overstress_rate_s)
    return {"eta_mpa_s": hard.sigma_scale * eta / r, "eps_c": xc * hard.ep_scale,
            "rate_s": r, "at_rate_mpa": hard.sigma_scale * eta}


def lowest_yield_stress(hard: NeuralHardening, points: int = 17) -> float:
    """The smallest σ_y (MPa) the law gives anywhere it can be evaluated: at ε̄_p = 0 (the
    network is non-decreasing in ε̄_p) on a grid of ``points`` values per condition
    feature (log plastic rate, temperature) over its clamped, trained range."""
    lo = np.nan_to_num(hard.feature_min.numpy(), neginf=-3.0)
    hi = np.nan_to_num(hard.feature_max.numpy(), posinf=3.0)
    axes = [np.linspace(a, b, points) for a, b in zip(lo, hi, strict=True)]
    u = (np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
         if axes else np.zeros((1, 0)))
    with torch.no_grad():
        g = hard.net(torch.zeros(len(u), dtype=DTYPE), torch.as_tensor(u, dtype=DTYPE))
    return float(hard.sigma_scale * g.min())


def rate_softening(hard: NeuralHardening, points: int = 33) -> float:
    """How far σ_y falls as the plastic rate rises (MPa; 0 for a law non-decreasing in
    rate): the largest max_{ε̇' ≤ ε̇} σ_y(ε̄_p, ε̇', T) - σ_y(ε̄_p, ε̇, T) on a grid of
    ``points`` log-rates over the trained (clamped) range, 9 ε̄_p in [0, ep_scale] and 9
    temperatures over theirs (±3 scaled units where unbounded).

    A law that softens with rate (a fit to serrated data, where the slow steps are the
    elastic reloading before an avalanche) serrates on a constant-rate path through the
    implicit return map: its static yield (Δε̄_p = 0, the rate at its clamp) is above
    its flow stress at the imposed rate, so each plastic step drops the stress below the
    yield check of the next and the steps alternate elastic reloading and plastic
    bursts; that is the law's instability (negative rate sensitivity), not the
    integration's."""
    if "log_rate" not in hard.features:
        return 0.0
    r = hard.features.index("log_rate")
    lo = np.nan_to_num(hard.feature_min.numpy(), neginf=-3.0)
    hi = np.nan_to_num(hard.feature_max.numpy(), posinf=3.0)
    axes = [np.linspace(lo[j], hi[j], points if j == r else 9) for j in range(len(lo))]
    x = np.linspace(0.0, 1.0, 9)
    grid = np.meshgrid(x, *axes, indexing="ij")     # (9, n_u0, n_u1, ...)
    with torch.no_grad():
        g = hard.net(torch.as_tensor(grid[0].ravel(), dtype=DTYPE),
                     torch.as_tensor(np.stack([a.ravel() for a in grid[1:]], axis=1),
                                     dtype=DTYPE)).numpy().reshape(grid[0].shape)
    sy = hard.sigma_scale * np.moveaxis(g, r + 1, -1)      # rate along the last axis
    return float(np.max(np.maximum.accumulate(sy, axis=-1) - sy))


@contextlib.contextmanager
def _network_only(hard: NeuralHardening) -> Iterator[None]:
    """Evaluate ``hard`` with its network at every point, no σ_y tables, inside the block.

    While the weights are being fitted they change at every loss evaluation, and each
    change would rebuild the tables (the bicubic rate table: thousands of network
    evaluations) for the few hundred points one replay step solves; the tables agree
    with the network to ~1e-9 of σ_y, so the fit is the same either way."""
    saved = hard.table_spacing, hard.rate_table_spacing
    hard.table_spacing = hard.rate_table_spacing = None
    try:
        yield
    finally:
        hard.table_spacing, hard.rate_table_spacing = saved


def finetune_rollout(model: NeuralJ2, train: StrainPaths, val: StrainPaths,
                     s: SurrogateSettings) -> list[dict[str, Any]]:
    """Fit the hardening weights to the stress along whole paths (L-BFGS, early stopping
    on the validation paths): for serrated or noisy data (DD) the flow-stress samples of
    single steps are biased, the path stress is what the surrogate must reproduce.

    Only weights whose yield stress stays positive over the trained rates and
    temperatures (:func:`lowest_yield_stress`) are kept: a path fit to serrated DD data
    can otherwise turn a rate-dependent law into a viscous one, σ_y < 0 at slow rates,
    that flows at any stress and on unloading (the W chain's DD data: -146 MPa at the
    slowest trained rate, from +14 MPa after the flow-stress fit); with no such
    weights better than the flow-stress fit, that fit is kept."""
    net = model.neural.net
    scale = float(np.abs(train.stress).max())
    et = torch.as_tensor(train.strain, dtype=DTYPE)
    yt = torch.as_tensor(train.stress / scale, dtype=DTYPE)
    ev = torch.as_tensor(val.strain, dtype=DTYPE)
    yv = torch.as_tensor(val.stress / scale, dtype=DTYPE)

    def loss_on(e, y, d: StrainPaths):
        return torch.mean((rollout_stress(model, e, d.dt, d.temperature_k) / scale - y) ** 2)

    net.train()
    step = _lbfgs_chunk(list(net.parameters()), lambda: loss_on(et, yt, train),
                        min(s.check_every, 10), history_size=20)

    with torch.no_grad():
        v0 = float(loss_on(ev, yv, val))
    if v0 < 1e-7:  # the flow-stress fit already reproduces the paths (e.g. J2 data)
        log.info("rollout fit skipped: validation path loss %.3g already", v0)
        net.eval()
        return []
    w0 = copy.deepcopy(net.state_dict())
    sub = s.model_copy(update={"max_iterations": s.rollout_iterations,
                               "check_every": min(s.check_every, 10), "patience": 3})
    with _network_only(model.neural):
        hist = _early_stopping_loop(list(net.parameters()), net, step,
                                    lambda: loss_on(et, yt, train),
                                    lambda: loss_on(ev, yv, val), sub,
                                    accept=lambda: lowest_yield_stress(model.neural) > 0.0)
    kept = [h["val_loss"] for h in hist if h["accepted"]]
    if not kept or min(kept) >= v0:
        net.load_state_dict(w0)  # the path fit did not help on validation: keep the first
    net.eval()
    rejected = len(hist) - len(kept)
    log.info("rollout fit: validation path loss %.3g -> %.3g%s", v0, min([v0, *kept]),
             f" ({rejected} of {len(hist)} checkpoints rejected: σ_y <= 0 at some trained "
             "rate and temperature)" if rejected else "")
    return hist


def _flow_steps(paths: StrainPaths, compliance: np.ndarray, plastic_tol: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stress at the end of each step (P, T, 6), plastic strain increment
    Δε_p = Δ(ε - C⁻¹σ) (P, T, 6), the steps with plastic flow (P, T) bool, and their
    weights |Δε_p| / mean (P, T)."""
    eps_p = paths.strain - paths.stress @ compliance.T
    dep = np.diff(eps_p, axis=1)
    mag = np.linalg.norm(mandel.deviator(dep), axis=-1)
    flow = mag > max(plastic_tol * float(mag.sum(axis=1).max()), 1e-10)
    w = mag / max(float(mag[flow].mean()) if flow.any() else 1.0, 1e-300)
    return (torch.as_tensor(paths.stress[:, 1:], dtype=DTYPE),
            torch.as_tensor(dep, dtype=DTYPE), torch.as_tensor(flow),
            torch.as_tensor(w, dtype=DTYPE))


def _flow_loss(net: YieldHardeningNet, sig: torch.Tensor, dep: torch.Tensor,
               flow: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Consistency of the data's plastic steps with the learned model, without a return
    map: φ_θ(σ) = r_θ(λ) with Δλ = σ:Δε_p / φ_θ(σ) (work conjugacy), and Δε_p ∥ ∂φ_θ/∂σ
    (associativity), both over the steps with plastic flow."""
    p, t, _ = sig.shape
    phi, n, _ = net.gauge(sig.reshape(-1, 6), hessian=False)
    phi, n = phi.reshape(p, t), n.reshape(p, t, 6)
    dl = torch.where(flow, torch.clamp((sig * dep).sum(-1) / phi, min=0.0),
                     torch.zeros_like(phi))
    lam = torch.cumsum(dl, dim=1)
    r, _ = net.hardening(lam.reshape(-1))
    e_yield = ((phi - r.reshape(p, t)) / net.r_scale) ** 2
    nd = n / torch.linalg.norm(n, dim=-1, keepdim=True)
    dd = dep / torch.clamp(torch.linalg.norm(dep, dim=-1, keepdim=True), min=1e-300)
    e_dir = ((nd - dd) ** 2).sum(-1)
    return torch.mean(e_yield[flow]) + torch.mean((w * e_dir)[flow])


def fit_internal_variable(train: StrainPaths, val: StrainPaths, s: SurrogateSettings,
                          ) -> tuple[InternalVariableModel, dict[str, Any],
                                     list[dict[str, float]]]:
    """Fit the data-driven internal-variable model in two stages, L-BFGS with early
    stopping on the validation paths each.

    Only the elastic moduli come from the data's source. 1. ``max_iterations``: the
    plastic steps of the data (Δε_p = Δ(ε - C⁻¹σ)) must lie on the learned surface,
    φ_θ(σ) = r_θ(λ), and flow along its normal (:func:`_flow_loss`). 2.
    ``rollout_iterations``: the stress along whole training paths replayed through the
    return map (kept only if it lowers the validation path loss)."""
    ep = plastic_history(train)
    lam_scale = float(ep[:, -1].max())
    samples = hardening_samples(train, s.plastic_tol)
    if len(samples["ep"]) < 5 or lam_scale <= 0:
        raise DataError(f"only {len(samples['ep'])} plastic steps in the training paths: "
                        "the data never yield (raise the strain amplitude)")
    r_scale = float(mandel.von_mises(train.stress).max())
    r0 = float(np.percentile(samples["sigma_mpa"], 5))
    torch.manual_seed(s.seed)
    net = YieldHardeningNet(s.latent, s.hidden, r_scale, lam_scale, r0)
    bulk, shear = float(train.meta["bulk_mpa"]), float(train.meta["shear_mpa"])
    model = InternalVariableModel(net, bulk, shear, {})
    params = list(net.parameters())
    for prm in params:
        prm.requires_grad_(True)

    def lbfgs(loss_t, max_iter: int):
        return _lbfgs_chunk(params, loss_t, max_iter, history_size=30,
                            tolerance_grad=1e-12, tolerance_change=1e-15)

    fl_t = _flow_steps(train, model.s_t.numpy(), s.plastic_tol)
    fl_v = _flow_steps(val, model.s_t.numpy(), s.plastic_tol)
    if not bool(fl_v[2].any()):
        fl_v = fl_t
    net.train()
    history = _early_stopping_loop(
        params, net, lbfgs(lambda: _flow_loss(net, *fl_t), s.check_every),
        lambda: _flow_loss(net, *fl_t), lambda: _flow_loss(net, *fl_v), s)
    for h in history:
        h["phase"] = "fit"

    if s.rollout_iterations > 0:
        scale = float(np.abs(train.stress).max())
        et = torch.as_tensor(train.strain, dtype=DTYPE)
        yt = torch.as_tensor(train.stress / scale, dtype=DTYPE)
        ev = torch.as_tensor(val.strain, dtype=DTYPE)
        yv = torch.as_tensor(val.stress / scale, dtype=DTYPE)

        def path_loss(e: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.mean((model.rollout(e) / scale - y) ** 2)

        with torch.no_grad():
            v0 = float(path_loss(ev, yv))
        w0 = copy.deepcopy(net.state_dict())
        sub = s.model_copy(update={"max_iterations": s.rollout_iterations,
                                   "check_every": min(s.check_every, 10), "patience": 3})
        hist = [] if v0 < 1e-8 else _early_stopping_loop(  # already matched: skip
            params, net, lbfgs(lambda: path_loss(et, yt), sub.check_every),
            lambda: path_loss(et, yt), lambda: path_loss(ev, yv), sub)
        if hist and min(h["val_loss"] for h in hist) >= v0:
            net.load_state_dict(w0)
        log.info("internal_variable path fit: validation path loss %.3g -> %.3g", v0,
                 min([v0] + [h["val_loss"] for h in hist]))
        last = history[-1]["iteration"] if history else 0
        history += [{**h, "iteration": last + h["iteration"], "phase": "rollout"}
                    for h in hist]
    net.eval()
    for prm in params:
        prm.requires_grad_(False)
    model.training_range = {"eps_p_eq": [0.0, np.inf], "strain_norm": [0.0, np.inf]}
    _, states, _ = integrate_path(model, train.strain)
    lam_max = float(states[:, :, 6].max())
    training_range = {"eps_p_eq": [0.0, max(lam_max, lam_scale)],
                      "strain_norm": [0.0, float(np.linalg.norm(train.strain, axis=-1).max())]}
    model.training_range = training_range
    weights = net.shape_weights().numpy()
    record = {"class": "InternalVariableModel",
              "config": {"latent": s.latent, "hidden": s.hidden},
              "scalers": {"r_scale": r_scale, "lam_scale": lam_scale},
              "elastic": {"bulk_mpa": bulk, "shear_mpa": shear},
              "yield_shape": {nm: float(w) for nm, w in zip(net.gauge_names, weights,
                                                            strict=True)},
              "training_range": training_range}
    return model, record, history


def _fit_model(train: StrainPaths, val: StrainPaths, s: SurrogateSettings,
               meta: dict[str, Any]) -> tuple[Any, dict[str, Any], list[dict[str, Any]],
                                               dict[str, Any] | None]:
    """Fit ``s.model`` to ``train`` (``val`` is reported, not used to choose): ``(model,
    record, history, samples)``; ``meta``: the data's (the DD's source settings)."""
    samples = None
    if s.model == "neural_j2":
        model, record, history, samples = fit_neural_j2(train, val, s)
        if s.rollout_iterations > 0:
            last = history[-1]["iteration"] if history else 0
            for h in finetune_rollout(model, train, val, s):
                history.append({**h, "iteration": last + h["iteration"], "phase": "rollout"})
        if record["config"].get("overstress"):
            record["overstress"] = overstress_record(model.neural)
            log.info("nucleation overstress: η = %.3g MPa·s, ε_c = %.3g (%.3g MPa at "
                     "%.3g /s)", record["overstress"]["eta_mpa_s"],
                     record["overstress"]["eps_c"], record["overstress"]["at_rate_mpa"],
                     record["overstress"]["rate_s"])
    elif s.model == "johnston_gilman":
        # t_nuc is the DD's own setting; σ_src is scanned around its mean source strength
        model, record, history = fit_johnston_gilman(
            train, val, knots=s.knots, max_evaluations=s.evaluations, seed=s.seed,
            nucleation_time_s=float(meta.get("nucleation_time_s") or 0.0),
            source_guess_mpa=(math.sqrt(3.0) * float(meta["source_strength_mpa"])
                              if meta.get("source_strength_mpa") else None))
        record.update({"elastic": {"bulk_mpa": model.bulk, "shear_mpa": model.shear},
                       "training_range": model.training_range, "temperature_k": None,
                       "scalers": {}, "johnston_gilman": jg_record(model, meta)})
        log.info("johnston_gilman: σ_src %.3g MPa, t_nuc %.3g s, σ_b %.3g -> %.3g MPa",
                 model.source_stress_mpa, model.nucleation_time_s,
                 model.hardening.sigma0, model.hardening.sigma_inf)
    elif s.model == "source_families":
        if not (meta.get("nucleation_time_s") and meta.get("source_strength_mpa")):
            raise DataError(f"{meta.get('ddrun') or 'the training data'}: model = "
                            "'source_families' needs a DD run whose sources fire on "
                            "clocks (nucleation 'time' or 'bow_out_clock') and its source "
                            "strengths (its run.json and settings give neither)")
        model, record, history = fit_source_families(
            train, val, families=s.families, restarts=s.restarts, seed=s.seed,
            clock_width=s.clock_width, field_grows=s.internal_field_grows,
            dephase=s.dephase, dephase_wait=s.dephase_wait,
            relaxed_clocks=s.relaxed_clocks, spread_loading=s.spread_loading,
            nucleation_time_s=float(meta["nucleation_time_s"]),
            nucleation_clocks=meta.get("nucleation_clocks"),
            source_mean_mpa=float(meta["source_strength_mpa"]),
            source_std_mpa=float(meta.get("source_strength_std_mpa") or 0.0))
        record.update({"elastic": {"bulk_mpa": model.bulk, "shear_mpa": model.shear},
                       "training_range": model.training_range, "temperature_k": None,
                       "scalers": {}, "source_families": sf_record(model, train, meta)})
        log.info("source_families: %d families %.3g-%.3g MPa, t_nuc %.3g s, t_pin %.3g s",
                 model.strengths_mpa.size, model.strengths_mpa[0], model.strengths_mpa[-1],
                 model.nucleation_time_s, model.pinning_time_s)
    else:
        model, record, history = fit_internal_variable(train, val, s)
    return model, record, history, samples


def heldout_scores(paths: StrainPaths, itr: np.ndarray, iva: np.ndarray,
                   stress_model: np.ndarray, scatter: float) -> dict[str, Any]:
    """The held-out paths ``iva`` of ``paths`` scored against the model's stress
    (P_val, T+1, 6) MPa: :func:`~.ensemble.heldout_ratio_interval` (how far another choice
    of held-out paths would move the ratio), beside the same score for the DD's own mean
    of the training realisations (``training_mean_ratio``, ``training_mean_per_path``:
    where a deterministic surrogate of these paths lands at best, ≈ sqrt(1 + 1/n)) and
    for one DD realisation predicting another of its condition
    (``another_realisation_ratio``, ``another_realisation_interval``: ≈ sqrt(2), as close
    to a held-out path as the DD's next run)."""
    from scalebridge.surrogates.ensemble import (
        another_realisation_pairs,
        heldout_ratio_interval,
        training_mean_prediction,
    )

    val = paths.stress[iva]
    h = heldout_ratio_interval(val, stress_model, scatter)
    ref = training_mean_prediction(paths, itr, iva)
    if ref is not None:
        r = heldout_ratio_interval(val, ref, scatter)
        h["training_mean_ratio"] = r["ratio"]
        h["training_mean_per_path"] = r["per_path"]
    pairs = another_realisation_pairs(paths, itr, iva)
    if pairs is not None:
        r = heldout_ratio_interval(*pairs, scatter)
        h["another_realisation_ratio"] = r["ratio"]
        h["another_realisation_interval"] = [r["low"], r["high"]]
    return h


def _fold_entry(h: dict[str, Any], microstructures: list[int],
                flow_paths: list[list[float]] | None = None) -> dict[str, Any]:
    """One row of :func:`microstructure_folds` from a :func:`heldout_scores` result and
    the held-out paths' flow stresses ([data, model] MPa per path,
    :func:`heldout_flow_error`)."""
    return {"microstructures": microstructures, "paths": int(h["paths"]),
            "ratio": h["ratio"],
            "another_realisation_ratio": h.get("another_realisation_ratio"),
            "training_mean_ratio": h.get("training_mean_ratio"),
            "flow_paths": flow_paths}


def _fold_row(args: tuple[StrainPaths, SurrogateSettings, int, float, float]
              ) -> dict[str, Any]:
    """One fold of :func:`microstructure_folds`: microstructure ``lab`` held out, the
    model fitted on the rest and scored (a module function: it runs in a worker)."""
    paths, s, lab, sigma_ref, scatter = args
    torch.set_num_threads(1)
    iva = np.flatnonzero(np.asarray(paths.microstructure) == lab)
    itr = np.setdiff1d(np.arange(len(paths)), iva)
    log.info("%s: cross-validation, microstructure %d held out", s.model, lab)
    val = paths.subset(iva)
    model, record = _fit_model(paths.subset(itr), val, s, paths.meta)[:2]
    stress = path_errors(model, val, sigma_ref)[1]
    row = _fold_entry(heldout_scores(paths, itr, iva, stress, scatter), [lab],
                      heldout_flow_error(val, stress, None)["paths"])
    # the fit itself, for the band's FEM solves, and its flow stress on every path
    record["data"] = {"heldout_microstructures": [lab]}
    return {**row, FOLD_FIT: {"microstructure": lab, "record": record,
                              "state": _model_state(model, s),
                              "flow_all": _model_flow(
                                  paths, integrate_paths(model, paths)[0]).tolist()}}


#: Key of a fold row holding the fit (record, weights, flow stresses), popped by
#: :func:`microstructure_folds` before the rows are recorded.
FOLD_FIT = "_fit"

#: Folder of a Surrogate artifact holding its cross-validation fits, one
#: ``m<microstructure>`` folder each (surrogate.json, and model.pt for a network).
FOLDS_DIR = "folds"


def _set_trained_dt(record: dict[str, Any], dt_s: list[float] | None) -> None:
    """Record the time steps (s) a step-dependent model was fitted at in its record's
    training ranges (nothing when ``dt_s`` is None)."""
    if dt_s is None:
        return
    for rng in (record.get("training_range"), (record.get("config") or {}).get(
            "training_range")):
        if isinstance(rng, dict):
            rng["dt_s"] = list(dt_s)


def _model_state(model: Any, s: SurrogateSettings) -> dict[str, Any] | None:
    """The weights a fitted model is rebuilt from (None: closed form, all in its record)."""
    if s.model == "neural_j2":
        return model.neural.net.state_dict()
    if s.model in ("johnston_gilman", "source_families"):
        return None
    return model.net.state_dict()


def write_fold_fits(out: Path, fits: list[dict[str, Any]]) -> list[Path]:
    """Each cross-validation fit into ``out/folds/m<microstructure>`` (what
    :func:`load_surrogate` reads); returns the folders."""
    dirs = []
    for f in fits:
        d = out / FOLDS_DIR / f"m{f['microstructure']}"
        d.mkdir(parents=True, exist_ok=True)
        if f["state"] is not None:
            torch.save(f["state"], d / "model.pt")
        write_json_atomic(d / "surrogate.json", f["record"])
        dirs.append(d)
    return dirs


def fold_models(path: str | Path) -> list[tuple[int, ConstitutiveModel]]:
    """The cross-validation fits a Surrogate artifact holds (:data:`FOLDS_DIR`), as
    (held-out microstructure, model), lowest label first; [] when it has none."""
    root = Path(path) / FOLDS_DIR
    out = []
    for d in sorted(root.glob("m*"), key=lambda p: int(p.name[1:]) if p.name[1:].isdigit()
                    else -1):
        if d.name[1:].isdigit() and (d / "surrogate.json").is_file():
            out.append((int(d.name[1:]), load_surrogate(d)))
    return out


def fold_labels(paths: StrainPaths, s: SurrogateSettings, held: list[int]) -> list[int]:
    """The microstructures :func:`microstructure_folds` holds out besides ``held`` (the
    main split's): up to ``s.cross_validate`` of the others, lowest label first."""
    ms = np.asarray(paths.microstructure)
    return sorted({int(x) for x in ms} - set(held))[:s.cross_validate]


@contextlib.contextmanager
def started_folds(paths: StrainPaths, s: SurrogateSettings, held: list[int],
                  sigma_ref: float, scatter: float) -> Iterator[list[Any]]:
    """The cross-validation fits of :func:`microstructure_folds`, started in worker
    processes (one per fold, at most one per core this process may use) and yielded as
    futures, so that the main fit runs beside them: on 2 cores the main fit and two folds
    take ~1.5 fit times instead of 2. Leaving the block cancels what has not finished
    (a failed main fit does not wait for the folds)."""
    labels = fold_labels(paths, s, held)
    if not labels:
        yield []
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    ctx = multiprocessing.get_context("spawn")
    # a kill -9 of the chain must not leave the folds fitting for nobody
    pool = ProcessPoolExecutor(max_workers=min(len(labels), cores), mp_context=ctx,
                               initializer=exit_with_parent, initargs=(os.getpid(),))
    try:
        yield [pool.submit(_fold_row, (paths, s, lab, sigma_ref, scatter)) for lab in labels]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def microstructure_folds(paths: StrainPaths, s: SurrogateSettings, main: dict[str, Any],
                         held: list[int], sigma_ref: float, scatter: float,
                         started: list[Any] | None = None,
                         main_flow: list[list[float]] | None = None) -> dict[str, Any]:
    """The held-out score over the microstructures of a DD study, each held out in turn
    (the main split's and up to ``s.cross_validate`` others).

    One split holds out one microstructure, and the score moves with which (mo_bench28's
    DD: 1.34, 1.63, 1.67x the scatter for its three seeds), more than the bootstrap over
    that split's paths covers (they share the microstructure). So the model is fitted
    again with each other microstructure held out, and scored with the same references.

    Args:
        paths: the study; ``paths.microstructure`` labels its paths.
        main: the main split's :func:`heldout_scores`.
        held: the main split's held-out microstructures.
        sigma_ref, scatter: MPa, as in :func:`fit_surrogate`.
        started: the folds' futures from :func:`started_folds` (else they are fitted
            here, one after another).
        main_flow: the main split's held-out flow stresses, [data, model] MPa per path.

    Returns:
        ``folds`` (one row per fold, the main split first: ``microstructures``, ``ratio``,
        ``paths``, ``another_realisation_ratio``, ``training_mean_ratio``,
        ``flow_paths``) and, pooled over the folds (RMS over their held-out points),
        ``ratio``, ``another_realisation_ratio``, ``training_mean_ratio``, and
        ``flow_rel_error``, the RMS relative error of the flow stress over every fold's
        held-out paths (None unless every fold has them); ``fits``: each fold's fit
        (``microstructure``, ``record``, ``state``, ``flow_all``: its flow stress on
        every path, MPa), for :func:`write_fold_fits`, not for a JSON record.
    """
    rows = [_fold_entry(main, held, main_flow)]
    if started is None:
        rows += [_fold_row((paths, s, lab, sigma_ref, scatter))
                 for lab in fold_labels(paths, s, held)]
    else:
        rows += [f.result() for f in started]
    fits = [r.pop(FOLD_FIT) for r in rows if FOLD_FIT in r]

    def pooled(key: str) -> float | None:
        # RMS over every held-out point of every fold
        v, n = [r[key] for r in rows], [r["paths"] for r in rows]
        if any(x is None for x in v):
            return None
        return float(np.sqrt(np.average(np.square(v), weights=n)))

    flow = (np.array([p for r in rows for p in r["flow_paths"]])
            if all(r.get("flow_paths") for r in rows) else None)
    return {"folds": rows, "ratio": pooled("ratio"),
            "another_realisation_ratio": pooled("another_realisation_ratio"),
            "training_mean_ratio": pooled("training_mean_ratio"),
            "flow_rel_error": None if flow is None else _flow_rel_error(flow[:, 0], flow[:, 1]),
            "fits": fits}


def fit_surrogate(paths: StrainPaths, s: SurrogateSettings, out: Path) -> dict[str, Any]:
    """Fit, evaluate and write the Surrogate files into ``out``; returns the summary."""
    t0 = time.perf_counter()
    groups = None
    if paths.meta.get("source") == "ddrun":   # held-out realisations of every condition
        from scalebridge.surrogates.ensemble import conditions

        groups = conditions(paths)
    itr, iva = split_paths(len(paths), s.val_fraction, s.seed, groups, paths.microstructure)
    # what the held-out paths are: whole microstructures no training path was run on,
    # realisations of every condition, or a random share
    ms = paths.microstructure
    unseen = sorted({int(x) for x in ms[iva]} - {int(x) for x in ms[itr]}) if (
        ms is not None) else []
    split = ("microstructure" if unseen and len(unseen) == len({int(x) for x in ms[iva]})
             else "condition" if groups else "random")
    sigma_ref = float(paths.meta.get("yield_stress_mpa") or mandel.von_mises(paths.stress).max())
    scatter = None
    if paths.meta.get("source") == "ddrun":  # the realisation scatter: the error floor
        from scalebridge.surrogates.ensemble import realisation_scatter_rmse

        scatter = realisation_scatter_rmse(paths)
    folds_wanted = bool(scatter) and split == "microstructure" and s.cross_validate > 0
    with (started_folds(paths, s, unseen, sigma_ref, scatter) if folds_wanted
          else contextlib.nullcontext(None)) as folds:
        return _fit_and_write(paths, s, out, t0, itr, iva, unseen, split, sigma_ref,
                              scatter, folds)


def _fit_and_write(paths: StrainPaths, s: SurrogateSettings, out: Path, t0: float,
                   itr: np.ndarray, iva: np.ndarray, unseen: list[int], split: str,
                   sigma_ref: float, scatter: float | None,
                   folds: list[Any] | None) -> dict[str, Any]:
    """:func:`fit_surrogate` from the split on: the main fit (beside the cross-validation
    folds, when ``folds`` holds their futures), its scores, the files."""
    train, val = paths.subset(itr), paths.subset(iva)
    model, record, history, samples = _fit_model(train, val, s, paths.meta)
    state = _model_state(model, s)
    if state is not None:
        torch.save(state, out / "model.pt")
    fit_s = time.perf_counter() - t0
    metrics_val, stress_val = path_errors(model, val, sigma_ref)
    by_condition: list[dict[str, Any]] = []   # DD studies: the model against each mean
    metrics_train, _ = path_errors(model, train.subset(np.arange(min(len(train), 16))),
                                   sigma_ref)
    metrics = {"validation": metrics_val, "train": metrics_train, "fit_seconds": fit_s,
               "iterations": history[-1]["iteration"] if history else 0,
               "yield_stress_ref_mpa": sigma_ref}
    # is it a discrete-time fit? then the FEM must step at the dt it was fitted at
    ts = time_step_sensitivity(model, train.subset(np.arange(min(len(train), 16))))
    ts["rel_change"] = VM_PER_NORM * ts["rms_change_mpa"] / sigma_ref
    metrics["time_step"] = ts
    if ts["rel_change"] > STEP_DEPENDENT and isinstance(getattr(model, "training_range", None),
                                                        dict):
        model.training_range["dt_s"] = [float(np.min(paths.dt)), float(np.max(paths.dt))]
        _set_trained_dt(record, model.training_range["dt_s"])
    if s.model == "neural_j2":
        metrics["lowest_yield_mpa"] = low = lowest_yield_stress(model.neural)
        if low <= 0.0:
            log.warning("%s: σ_y = %.3g MPa <= 0 at some trained rate and temperature: "
                        "it flows at any stress", model.name, low)
        metrics["rate_softening_mpa"] = soft = rate_softening(model.neural)
        if soft > 0.01 * sigma_ref:
            log.warning("%s: σ_y falls by up to %.3g MPa as the plastic rate rises within "
                        "the trained range (strain-rate softening): constant-rate paths "
                        "serrate, elastic reloading and plastic bursts in turn",
                        model.name, soft)
    if samples is not None and len(samples["val"]["ep"]):
        sy = model.neural.yield_stress(samples["val"]["ep"], np.zeros_like(samples["val"]["ep"]),
                                       np.zeros((len(samples["val"]["ep"]), 0)),
                                       np.ones_like(samples["val"]["ep"]))[0]
        metrics["hardening_val_rmse_mpa"] = float(
            np.sqrt(np.mean((sy - samples["val"]["sigma_mpa"]) ** 2)))
    if paths.meta.get("source") == "ddrun":  # the realisation scatter: the error floor
        from scalebridge.surrogates.ensemble import condition_bias, flow_stress_distribution

        metrics["hardening_distribution"] = flow_stress_distribution(paths)
        metrics["realisation_scatter_rmse_mpa"] = scatter
        if scatter:   # how far another choice of held-out paths would move the ratio
            metrics["heldout_vs_scatter"] = h = heldout_scores(paths, itr, iva, stress_val,
                                                               scatter)
            # where the model misses the DD's mean (every path, trained on or held out)
            stress_all = integrate_paths(model, paths)[0]
            by_condition = condition_bias(paths, stress_all, scatter)
            metrics["condition_bias"] = [
                {k: c[k] for k in ("strain_rate_s", "temperature_k", "paths", "bias_ratio",
                                   "mean_noise_ratio")} for c in by_condition]
        rel_std = metrics["hardening_distribution"]["rel_std"]
        metrics["heldout_flow"] = heldout_flow_error(val, stress_val, rel_std)
        if scatter and folds is not None:
            metrics["heldout_folds"] = hf = microstructure_folds(
                paths, s, h, unseen, sigma_ref, scatter, folds,
                metrics["heldout_flow"]["paths"])
            fits = hf.pop("fits")
            rng = getattr(model, "training_range", None)
            for f in fits:    # the FEM checks its steps against the fitted ones
                _set_trained_dt(f["record"], rng.get("dt_s") if isinstance(rng, dict) else None)
            write_fold_fits(out, fits)
            # how far the realisations a fit saw move its flow stress (the band's DD
            # term reaches the FEM through it), measured over the fits
            noise = training_noise(
                np.array([_model_flow(paths, stress_all), *[f["flow_all"] for f in fits]]),
                len({int(x) for x in paths.microstructure}))
            hf["training_noise_rel_u"] = noise
            if hf["flow_rel_error"] is not None:
                # the band's surrogate term from every fold's held-out paths (18 in the
                # Mo example, not the main split's 6): one split's estimate moved it
                # from 0 to 12 % between two DD runs of the same settings
                metrics["heldout_flow"] = pooled_flow_error(
                    hf["flow_rel_error"], rel_std, metrics["heldout_flow"], noise)
    report = None
    if s.run_checks:
        amp = 0.8 * float(np.linalg.norm(train.strain, axis=-1).max())
        report = check_constitutive(model, amplitude=amp, raise_on_failure=False).to_dict()
        if not report["passed"]:
            log.warning("%s fails check_constitutive: %s", model.name,
                        [k for k, v in report["checks"].items() if not v["passed"]])
    record.update({"metrics": metrics, "checks": report,
                   "data": {"source": paths.meta.get("source"), "meta": paths.meta,
                            "train": [paths.names[i] for i in itr] if paths.names else [],
                            "validation": [paths.names[i] for i in iva] if paths.names else [],
                            "split": split, "heldout_microstructures": unseen},
                   "settings": s.model_dump(mode="json")})
    write_json_atomic(out / "surrogate.json", record)
    plot_paths(out / "fit_paths.png", val.strain, val.stress, stress_val,
               val.names or [str(i) for i in iva],
               fit_paths_title(model.name, metrics_val,
                               metrics.get("realisation_scatter_rmse_mpa"),
                               (metrics.get("heldout_folds") or {}).get("ratio")),
               [f"{r:.2g} /s, {t:g} K" for r, t in zip(val.strain_rate_s, val.temperature_k,
                                                     strict=True)])
    plot_history(out / "history.png", history)
    plot_condition_means(out / "condition_means.png", by_condition,
                         f"{model.name} against the DD's mean path of each condition "
                         "(bias: RMS distance over the realisation scatter)")
    if isinstance(model, JohnstonGilmanJ2):   # hardening.png beside hardening.csv
        write_jg_table(out / "hardening.csv", model, paths.meta)
        grid = np.linspace(0, 1.2 * model.training_range["eps_p_eq"][1], 200)
        plot_mobile_density(out / "hardening.png", grid, model.hardening.static(grid)[0],
                            model.hardening.viscosity(grid)[0],
                            mobile_density(model, grid, paths.meta))
    if isinstance(model, SourceFamiliesJ2):   # what the sources did along the paths
        write_mobile_history(out, model, train, paths.meta)
    if samples is not None:
        a = samples["all"]
        grid = np.linspace(0, 1.2 * record["training_range"]["eps_p_eq"][1], 200)
        sy_grid = model.neural.yield_stress(grid, np.zeros_like(grid), np.zeros((200, 0)),
                                            np.ones_like(grid))[0]
        plot_hardening(out / "hardening.png", a["ep"], a["sigma_mpa"], grid, sy_grid)
    log.info("%s: validation max |Δσ|/σ_y = %.3g, relative error %.3g (%.1f s)", model.name,
             metrics_val["max_error_over_yield"], metrics_val["rel_error"], fit_s)
    summary = {"class": record["class"], "validation": metrics_val,
               "checks_passed": None if report is None else report["passed"],
               "n_train": len(itr), "n_val": len(iva), "heldout_split": split}
    summary["time_step_rel_change"] = metrics["time_step"]["rel_change"]
    summary["time_step_rms_change_mpa"] = metrics["time_step"]["rms_change_mpa"]
    summary["trained_dt_s"] = model.training_range.get("dt_s") if isinstance(
        getattr(model, "training_range", None), dict) else None
    if "hardening_distribution" in metrics:
        summary["realisation_scatter_rmse_mpa"] = metrics["realisation_scatter_rmse_mpa"]
        if "heldout_vs_scatter" in metrics:
            h = metrics["heldout_vs_scatter"]
            summary["heldout_vs_scatter_interval"] = [h["low"], h["high"]]
            if "training_mean_ratio" in h:
                summary["heldout_training_mean_ratio"] = h["training_mean_ratio"]
            if "another_realisation_ratio" in h:
                summary["heldout_another_realisation_ratio"] = h["another_realisation_ratio"]
        folds = metrics.get("heldout_folds")
        if folds:
            summary["heldout_fold_ratios"] = [f["ratio"] for f in folds["folds"]]
            for k in ("ratio", "another_realisation_ratio", "training_mean_ratio"):
                summary[f"heldout_folds_{k}"] = folds[k]
        summary["flow_stress_rel_std"] = metrics["hardening_distribution"]["rel_std"]
        summary["heldout_flow_rel_error"] = metrics["heldout_flow"]["rel_error"]
        summary["flow_model_rel_u"] = metrics["heldout_flow"]["model_rel_u"]
        summary["training_noise_rel_u"] = metrics["heldout_flow"].get("training_noise_rel_u")
        if paths.microstructure is not None:
            summary["microstructures"] = len({int(x) for x in paths.microstructure})
        if folds:
            summary["fold_models"] = sorted(
                f"{FOLDS_DIR}/m{m}" for r in folds["folds"][1:] for m in r["microstructures"])
    if hasattr(model, "initial_yield_stress"):
        summary["initial_yield_mpa"] = float(model.initial_yield_stress())
    if isinstance(model, SourceFamiliesJ2):
        summary["families"] = families_line(model, record.get("fit") or {})
    return summary


def families_line(model: SourceFamiliesJ2, fit: dict[str, Any]) -> str:
    """The fitted source families beside the DD sources they stand for, one line: the
    families' von Mises strengths (the internal field full grown), the DD's resolved
    source strengths √3·(τ̄ ± s_τ) and the fitted scale and spread that map one onto the
    other (the spread is free: a fit can stretch the families beyond the DD's own)."""
    s = model.strengths_mpa
    p = fit.get("parameters") or {}
    mean, std = fit.get("source_mean_mpa"), fit.get("source_std_mpa")
    text = f"{s.size} families {s[0]:.3g}-{s[-1]:.3g} MPa (von Mises, field grown)"
    if mean is not None and std is not None:
        text += (f" for the DD's sources √3 × ({mean:.3g} ± {std:.3g}) = "
                 f"{math.sqrt(3) * mean:.3g} ± {math.sqrt(3) * std:.3g} MPa")
    if "scale" in p and "spread" in p:
        text += f"; fitted scale {p['scale']:.2f}, spread {p['spread']:.2f} x the DD's"
    return text


def load_surrogate(path: str | Path) -> ConstitutiveModel:
    """Rebuild the model of a ``Surrogate`` artifact (or a folder holding surrogate.json
    and model.pt, as written by ``export``)."""
    path = Path(path)
    if (path / "manifest.json").exists() or not (path / "surrogate.json").exists():
        read_artifact(path, kind="Surrogate")  # one-line error: missing, incomplete, kind
    jpath, wpath = path / "surrogate.json", path / "model.pt"
    try:
        rec = json.loads(jpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{jpath}: cannot read surrogate.json ({e})") from None
    if not isinstance(rec, dict):
        raise ArtifactError(f"{jpath}: not a surrogate record (a JSON {type(rec).__name__})")
    if rec.get("class") == "RecurrentModel":
        raise DataError(f"{path}: a black-box RecurrentModel, removed from scalebridge (it "
                        "failed check_constitutive); refit with model = 'internal_variable'")
    # every number the model is built from must be finite (NaN/inf: a damaged file)
    bad = nonfinite_keys({k: rec.get(k) for k in _MODEL_KEYS})
    if bad:
        raise ArtifactError(f"{jpath}: {bad[0][0]} is {bad[0][1]}, not a finite number: "
                            "a damaged surrogate"
                            + (f" ({len(bad) - 1} more non-finite values)"
                               if len(bad) > 1 else ""))
    closed = {"JohnstonGilmanJ2": JohnstonGilmanJ2, "SourceFamiliesJ2": SourceFamiliesJ2}
    if rec.get("class") in closed:   # all in the record, no weights
        try:
            return closed[rec["class"]].from_config(rec["config"])
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ArtifactError(f"{jpath}: incomplete or malformed surrogate record "
                                f"({type(e).__name__}: {e})") from None
    state = load_state_dict_file(wpath, what="surrogate model")
    try:
        cfg, sc = rec["config"], rec["scalers"]
        if rec["class"] == "NeuralJ2":
            # "rate_col" absent (saved before the law was made monotone in rate): the
            # unconstrained network, as it was fitted
            net = MonotoneHardeningNet(cfg["n_cond"], cfg["hidden"], cfg["layers"],
                                       cfg.get("rate_col"), bool(cfg.get("overstress")))
            load_into(net, state, wpath, "surrogate model")
            hard = NeuralHardening(net, sc["ep_scale"], sc["sigma_scale"], sc["features"],
                                   sc["feature_mean"], sc["feature_std"], rec["temperature_k"],
                                   sc.get("feature_min"), sc.get("feature_max"),
                                   sc.get("overstress_rate_s"))
            return NeuralJ2(rec["elastic"]["bulk_mpa"], rec["elastic"]["shear_mpa"], hard,
                            rec["training_range"])
        if rec["class"] == "InternalVariableModel":
            net = YieldHardeningNet(cfg["latent"], cfg["hidden"], sc["r_scale"],
                                    sc["lam_scale"])
            load_into(net, state, wpath, "surrogate model")
            return InternalVariableModel(net, rec["elastic"]["bulk_mpa"],
                                         rec["elastic"]["shear_mpa"], rec["training_range"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise ArtifactError(f"{jpath}: incomplete or malformed surrogate record "
                            f"({type(e).__name__}: {e})") from None
    raise ArtifactError(f"{jpath}: unknown class {rec.get('class')!r}")


#: surrogate.json sections the model is built from (checked finite on loading).
_MODEL_KEYS = ("config", "scalers", "elastic", "temperature_k", "training_range")


def export_surrogate(path: str | Path, out: str | Path) -> list[Path]:
    """Write TorchScript (``model.ts``), ``surrogate.json``, ``model.pt`` and, for neural
    J2, ``hardening_table.csv`` (ε̄_p, σ_y in MPa over 1.2x the training range) to ``out``.

    The TorchScript module takes the scaled inputs documented in surrogate.json
    (``scalers``): neural J2 ``g(x, u)`` with x = ε̄_p/ep_scale, σ_y = sigma_scale·g
    (plus, where surrogate.json has an ``overstress`` record, the nucleation overstress
    η·exp(-ε̄_p/ε_c)·ε̇_p it gives in MPa·s and strain, not part of the module);
    internal variable ``(σ, λ) -> (φ(σ), r(λ))`` in MPa (Mandel σ (n, 6), λ (n,)): the
    yield function is φ - r."""
    path, out = Path(path), Path(out)
    model = load_surrogate(path)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    if isinstance(model, SourceFamiliesJ2):   # closed form: the record is the model
        shutil.copyfile(path / "surrogate.json", out / "surrogate.json")
        return [out / "surrogate.json"]
    if isinstance(model, JohnstonGilmanJ2):   # closed form: the record and its table
        shutil.copyfile(path / "surrogate.json", out / "surrogate.json")
        rec = json.loads((path / "surrogate.json").read_text())
        table = out / "hardening_table.csv"
        write_jg_table(table, model, (rec.get("data") or {}).get("meta") or {})
        return [out / "surrogate.json", table]
    for name in ("surrogate.json", "model.pt"):
        shutil.copyfile(path / name, out / name)
        files.append(out / name)
    if isinstance(model, NeuralJ2):
        net = model.neural.net
        ex = (torch.linspace(0, 1, 4, dtype=DTYPE), torch.zeros((4, net.n_cond), dtype=DTYPE))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ts = torch.jit.trace(net, ex)
        hi = 1.2 * model.training_range["eps_p_eq"][1]
        grid = np.linspace(0.0, hi, 101)
        sy = model.neural.yield_stress(grid, np.zeros_like(grid), np.zeros((101, 0)),
                                       np.ones_like(grid))[0]
        table = out / "hardening_table.csv"
        write_text_atomic(table, "eps_p_eq,sigma_y_mpa\n" + "".join(
            f"{a:.8g},{b:.8g}\n" for a, b in zip(grid, sy, strict=True)))
        files.append(table)
    else:
        net = model.net  # type: ignore[attr-defined]
        ex = (torch.tensor([[300.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 200.0]], dtype=DTYPE),
              torch.tensor([0.0, 0.01], dtype=DTYPE))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ts = torch.jit.trace(net, ex)
    tmp_ts = out / ".model.ts.tmp"
    ts.save(str(tmp_ts))
    tmp_ts.replace(out / "model.ts")
    files.append(out / "model.ts")
    return files
