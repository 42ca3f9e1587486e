"""The constitutive-model protocol between surrogates and continuum.

A :class:`ConstitutiveModel` maps, batched over ``n`` quadrature points, the strain at the
start of a step, its increment and the internal state to the stress at the end of the
step, the consistent tangent and the new state. Tensors are in Mandel notation
(:mod:`scalebridge.surrogates.mandel`), float64, stresses and tangents in MPa. The finite
element side never knows how a model computes its answer (analytic return mapping, neural
hardening, learned yield surface); :func:`scalebridge.surrogates.checks.check_constitutive`
checks any implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class ConstitutiveResult:
    """What one step of a constitutive model returns at ``n`` points.

    Attributes:
        stress: (n, 6) Mandel stress at the end of the step, MPa.
        tangent: (n, 6, 6) consistent tangent dσ/dε at the end of the step, MPa
            (``None`` from a model inside :func:`stress_only`).
        state: (n, m) internal variables at the end of the step.
        out_of_range: (n,) bool, True where the point lies outside the training range
            (``None`` for models without one).
        uncertainty: (n,) MPa, where the model has an uncertainty estimate.
    """

    stress: np.ndarray
    tangent: np.ndarray | None
    state: np.ndarray
    out_of_range: np.ndarray | None = None
    uncertainty: np.ndarray | None = None


@runtime_checkable
class ConstitutiveModel(Protocol):
    """A small-strain material model batched over points (ASE-Calculator style).

    Attributes:
        name: a short human-readable name.
        state_names: names of the ``m`` internal variables per point.
    """

    name: str
    state_names: tuple[str, ...]

    def initial_state(self, n: int) -> np.ndarray:
        """The virgin state of ``n`` points, (n, m) float64."""
        ...

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float = 1.0) -> ConstitutiveResult:
        """One step from total strain ``strain`` (n, 6) by ``dstrain`` (n, 6) over ``dt`` s,
        from ``state`` (n, m). Must not mutate its inputs."""
        ...


def step_inputs(strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
                dt: float | np.ndarray = 1.0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An ``update``'s inputs as float64 arrays and ``dt`` as an own (n,) array: every
    model starts its step here (``update`` must not mutate its inputs, and a scalar dt
    and a per-point one are both allowed)."""
    strain = np.asarray(strain, dtype=np.float64)
    dstrain = np.asarray(dstrain, dtype=np.float64)
    state = np.asarray(state, dtype=np.float64)
    dt_arr = np.broadcast_to(np.asarray(dt, dtype=np.float64), (strain.shape[0],)).copy()
    return strain, dstrain, state, dt_arr


@contextmanager
def stress_only(model: Any) -> Iterator[Any]:
    """Within it, a model that can skip its consistent tangent does (``tangent`` None).

    A model opts in with a boolean attribute ``stress_only`` (the J2 family: the tangent
    and, for :class:`~.source_families.SourceFamiliesJ2`, its firing term are about a
    third of a step at the few points of a fit, whose thousands of replays never use
    it); others are left as they are. Stresses and states are the same either way.
    """
    if not isinstance(getattr(model, "stress_only", None), bool):
        yield model
        return
    before = model.stress_only
    model.stress_only = True
    try:
        yield model
    finally:
        model.stress_only = before


def integrate_path(model: ConstitutiveModel, strain_path: np.ndarray,
                   dt: float | np.ndarray = 1.0, state: np.ndarray | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Drive ``model`` along strain paths.

    Args:
        model: any :class:`ConstitutiveModel`.
        strain_path: (n, T+1, 6) Mandel strains; the first entry is the start.
        dt: step duration, s (scalar, or (n,) per path).
        state: (n, m) starting state; the model's initial state if ``None``.

    Returns:
        ``(stress, states, out_of_range)``: (n, T+1, 6) MPa with stress[:, 0] the stress
        of the first step's start (zero for a virgin state at zero strain, else the
        first result), (n, T+1, m) states, (n, T+1) bool (False where not reported).
    """
    strain_path = np.asarray(strain_path, dtype=np.float64)
    n, t1, _ = strain_path.shape
    if state is None:
        state = model.initial_state(n)
    dt_arr = np.broadcast_to(np.asarray(dt, dtype=np.float64), (n,))
    # a model with a compiled replay (stress and state only, as below) runs it
    fast = getattr(model, "integrate_stress_only", None)
    out = fast(strain_path, dt_arr, np.asarray(state, dtype=np.float64)) if fast else None
    if out is not None:
        return out
    stress = np.zeros((n, t1, 6))
    states = np.zeros((n, t1, state.shape[1]))
    oor = np.zeros((n, t1), dtype=bool)
    states[:, 0] = state
    step = float(dt_arr[0]) if np.all(dt_arr == dt_arr[0]) else dt_arr
    with stress_only(model):   # the tangents are not returned: not computed
        for k in range(t1 - 1):
            res = model.update(strain_path[:, k], strain_path[:, k + 1] - strain_path[:, k],
                               state, dt=step)  # type: ignore[arg-type]
            stress[:, k + 1] = res.stress
            state = res.state
            states[:, k + 1] = state
            if res.out_of_range is not None:
                oor[:, k + 1] = res.out_of_range
    return stress, states, oor
