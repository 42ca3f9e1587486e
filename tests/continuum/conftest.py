"""Shared helpers for the continuum tests: a linear-elastic model and wrappers."""

from __future__ import annotations

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
import numpy as np
import pytest
from scalebridge.surrogates import ConstitutiveResult, J2Plasticity, LinearHardening


class LinearElastic:
    """Isotropic linear elasticity in Mandel notation (MPa); no state."""

    name = "linear-elastic"
    state_names: tuple[str, ...] = ()

    def __init__(self, E: float = 70e3, nu: float = 0.3) -> None:
        lam = E * nu / ((1 + nu) * (1 - 2 * nu))
        mu = E / (2 * (1 + nu))
        self.C = 2 * mu * np.eye(6)
        self.C[:3, :3] += lam

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def update(self, strain, dstrain, state, dt=1.0):
        n = strain.shape[0]
        return ConstitutiveResult(stress=(strain + dstrain) @ self.C.T,
                                  tangent=np.broadcast_to(self.C, (n, 6, 6)).copy(),
                                  state=state.copy())


class Counting:
    """Wraps a model; counts calls and the points of each call."""

    def __init__(self, model) -> None:
        self.model = model
        self.name = model.name
        self.state_names = model.state_names
        self.calls: list[int] = []

    def initial_state(self, n):
        return self.model.initial_state(n)

    def update(self, strain, dstrain, state, dt=1.0):
        self.calls.append(strain.shape[0])
        return self.model.update(strain, dstrain, state, dt)


@pytest.fixture
def elastic() -> LinearElastic:
    return LinearElastic()


def perfect_j2(sigma0: float = 250.0) -> J2Plasticity:
    """E = 70 GPa, ν = 0.3, no hardening (the dolfinx plasticity demos' cylinder)."""
    return J2Plasticity(70e3, 0.3, LinearHardening(sigma0, 0.0))
