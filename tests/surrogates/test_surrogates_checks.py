"""check_constitutive: passes the analytic J2 laws, and each check catches a wrong model."""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.surrogates import (
    DislocationDensityHardening,
    J2Plasticity,
    LinearHardening,
    VoceHardening,
    mandel,
)
from scalebridge.surrogates.checks import ConstitutiveCheckError, check_constitutive
from scalebridge.surrogates.protocol import ConstitutiveResult, integrate_path


@pytest.mark.parametrize("hardening", [LinearHardening(modulus=0.0), VoceHardening(),
                                       DislocationDensityHardening()])
def test_j2_passes_every_check(hardening):
    rep = check_constitutive(J2Plasticity(hardening=hardening))
    assert rep.passed, rep.summary()
    assert rep.outcomes["tangent"].error < 1e-8
    assert rep.outcomes["dissipation"].error > 0


class _Wrapped:
    """A J2 model with a deliberate defect added in ``tweak`` (tests only)."""

    def __init__(self):
        self.inner = J2Plasticity(hardening=VoceHardening())
        self.name = type(self).__name__
        self.state_names = self.inner.state_names

    def initial_state(self, n):
        return self.inner.initial_state(n)

    def update(self, strain, dstrain, state, dt=1.0):
        return self.tweak(strain, dstrain, state, dt,
                          self.inner.update(strain, dstrain, state, dt))

    def tweak(self, strain, dstrain, state, dt, res):
        return res


class ElasticTangent(_Wrapped):
    def tweak(self, strain, dstrain, state, dt, res):
        res.tangent = np.broadcast_to(self.inner.stiffness, res.tangent.shape).copy()
        return res


class Anisotropic(_Wrapped):
    """Adds a symmetric but anisotropic elastic term (consistent tangent)."""

    A = np.diag([5e4, 0, 0, 0, 0, 0])

    def tweak(self, strain, dstrain, state, dt, res):
        res.stress = res.stress + (strain + dstrain) @ self.A.T
        res.tangent = res.tangent + self.A
        return res


class Unsymmetric(_Wrapped):
    B = np.zeros((6, 6))
    B[0, 5] = 3e4

    def tweak(self, strain, dstrain, state, dt, res):
        res.stress = res.stress + (strain + dstrain) @ self.B.T
        res.tangent = res.tangent + self.B
        return res


class BatchCoupled(_Wrapped):
    def tweak(self, strain, dstrain, state, dt, res):
        res.stress = res.stress + 1e-3 * res.stress.mean(axis=0)
        return res


class Mutating(_Wrapped):
    def tweak(self, strain, dstrain, state, dt, res):
        state[:] = res.state
        return res


class Float32(_Wrapped):
    def tweak(self, strain, dstrain, state, dt, res):
        res.stress = res.stress.astype(np.float32)
        return res


class NonlinearElastic(_Wrapped):
    """Path-independent σ = C ε (1 + c|ε|²): unloading is not at the virgin stiffness."""

    c = 2e4

    def initial_state(self, n):
        return np.zeros((n, len(self.state_names)))

    def update(self, strain, dstrain, state, dt=1.0):
        e = strain + dstrain
        C = self.inner.stiffness
        f = 1 + self.c * np.einsum("ni,ni->n", e, e)
        s = (e @ C.T) * f[:, None]
        tan = C[None] * f[:, None, None] + 2 * self.c * np.einsum("ni,nj->nij", e @ C.T, e)
        return ConstitutiveResult(s, tan, state.copy())


class EnergyPump(_Wrapped):
    """σ = C ε - η Δε/dt: a negative viscosity that does work on the loading device."""

    eta = 2e4

    def initial_state(self, n):
        return np.zeros((n, len(self.state_names)))

    def update(self, strain, dstrain, state, dt=1.0):
        C = self.inner.stiffness
        s = (strain + dstrain) @ C.T - self.eta * np.linalg.norm(dstrain, axis=1)[:, None] \
            * (strain + dstrain) / 1e-3
        e = strain + dstrain
        nd = np.linalg.norm(dstrain, axis=1)
        g = np.where(nd[:, None] > 0, dstrain / np.maximum(nd, 1e-300)[:, None], 0.0)
        tan = C[None] - self.eta / 1e-3 * (nd[:, None, None] * np.eye(6)
                                           + np.einsum("ni,nj->nij", e, g))
        return ConstitutiveResult(s, tan, state.copy())


@pytest.mark.parametrize(("model", "check"), [
    (ElasticTangent(), "tangent"),
    (Anisotropic(), "objectivity"),
    (Unsymmetric(), "symmetry"),
    (BatchCoupled(), "batched"),
    (Mutating(), "inputs_untouched"),
    (Float32(), "interface"),
    (NonlinearElastic(), "elastic_unloading"),
    (EnergyPump(), "dissipation"),
])
def test_each_check_catches_its_defect(model, check):
    rep = check_constitutive(model, raise_on_failure=False)
    assert check in rep.failed, rep.summary()
    with pytest.raises(ConstitutiveCheckError, match=check):
        check_constitutive(model)


def test_anisotropic_model_passes_when_it_does_not_claim_isotropy():
    rep = check_constitutive(Anisotropic(), isotropic=False, raise_on_failure=False)
    assert rep.passed, rep.summary()
    assert mandel.rotation_matrix6(np.eye(3)) == pytest.approx(np.eye(6))


class Stateless:
    """Linear elasticity with no internal variables (m = 0), as a user might write it."""

    name = "stateless"
    state_names: tuple[str, ...] = ()

    def __init__(self):
        self.c = mandel.isotropic_stiffness(58e3, 27e3)

    def initial_state(self, n):
        return np.zeros((n, 0))

    def update(self, strain, dstrain, state, dt=1.0):
        n = strain.shape[0]
        return ConstitutiveResult(stress=(strain + dstrain) @ self.c.T,
                                  tangent=np.broadcast_to(self.c, (n, 6, 6)).copy(),
                                  state=np.zeros((n, 0)))


def test_stateless_model_is_checked():
    """A model without internal variables passes (it used to crash on max() of an empty
    state), and a defect in it is still caught."""
    rep = check_constitutive(Stateless())
    assert rep.passed, rep.summary()
    assert rep.outcomes["batched"].error < 1e-12

    class StatelessBatchCoupled(Stateless):
        def update(self, strain, dstrain, state, dt=1.0):
            res = super().update(strain, dstrain, state, dt)
            res.stress = res.stress + 1e-3 * res.stress.mean(axis=0)
            return res

    assert "batched" in check_constitutive(StatelessBatchCoupled(),
                                           raise_on_failure=False).failed


class OverstressHardening:
    """σ_y = σ0 + H (ε̄_p + Δε̄_p) + k ln(1 + ε̇_p / r0), ε̇_p = Δε̄_p / dt: a static yield
    stress σ0 + H ε̄_p plus a non-negative overstress (MPa; tests only)."""

    state_names: tuple[str, ...] = ()

    def __init__(self, sigma0: float, modulus: float = 1000.0, k: float = 100.0,
                 r0: float = 1e-5):
        self.sigma0, self.modulus, self.k, self.r0 = sigma0, modulus, k, r0

    def initial_state(self, n):
        return np.zeros((n, 0))

    def yield_stress(self, ep, dep, q, dt):
        sy = self.sigma0 + self.modulus * (ep + dep) + self.k * np.log1p(dep / (dt * self.r0))
        return sy, self.modulus + self.k / (dt * self.r0 + dep), q.copy()


def test_elastic_unloading_for_rate_dependent_laws():
    """A sound overstress law (static yield 250 MPa; at the probing rate, ~1e-3/s, its
    overstress is ~460 MPa, so unloading by 20 % straight from the flow stress keeps
    flowing) passes every check: the hold relaxes it onto its static yield surface. The
    same law with a negative static yield stress (the W DD surrogate's defect: σ_y = -146
    MPa at its slowest rate) flows on unloading and fails."""
    sound = J2Plasticity(hardening=OverstressHardening(250.0))
    path = np.linspace(0, 1, 9)[None, :, None] * (5e-3 * mandel.deviator(
        np.array([[1.0, -0.5, -0.5, 0.0, 0.0, 0.3]])))[:, None, :]
    stress, states, _ = integrate_path(sound, path, 1.0)
    back = -0.2 * mandel.von_mises(stress[:, -1])[:, None] * mandel.deviator(
        stress[:, -1]) / np.linalg.norm(mandel.deviator(stress[:, -1])) / (
        2 * sound.shear * np.sqrt(1.5))
    unloaded = sound.update(path[:, -1], back, states[:, -1], dt=1.0)
    assert unloaded.state[0, 6] > states[0, -1, 6]      # it flows without the hold
    rep = check_constitutive(sound)
    assert rep.passed, rep.summary()

    fluid = J2Plasticity(hardening=OverstressHardening(-146.0))
    rep = check_constitutive(fluid, raise_on_failure=False)
    assert "elastic_unloading" in rep.failed, rep.summary()
