"""The analytic J2 reference against closed-form answers."""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.surrogates import (
    DislocationDensityHardening,
    J2Plasticity,
    LinearHardening,
    VoceHardening,
    integrate_path,
    mandel,
)
from scipy.integrate import solve_ivp


def _fd_tangent(model, strain, dstrain, state, h=1e-7):
    n = strain.shape[0]
    fd = np.zeros((n, 6, 6))
    for j in range(6):
        e = np.zeros(6)
        e[j] = h
        fd[:, :, j] = (model.update(strain, dstrain + e, state).stress
                       - model.update(strain, dstrain - e, state).stress) / (2 * h)
    return fd


@pytest.mark.parametrize("hardening", [LinearHardening(), LinearHardening(modulus=0.0),
                                       VoceHardening(), DislocationDensityHardening()])
def test_tangent_is_derivative_of_stress(hardening):
    model = J2Plasticity(hardening=hardening)
    rng = np.random.default_rng(1)
    n = 8
    path = np.cumsum(rng.normal(size=(n, 4, 6)) * 1.5e-3, axis=1)
    _, states, _ = integrate_path(model, path)
    strain, dstrain = path[:, -2], path[:, -1] - path[:, -2]
    res = model.update(strain, dstrain, states[:, -2])
    assert np.any(res.state[:, 6] > states[:, -2, 6])  # some points yield in this step
    fd = _fd_tangent(model, strain, dstrain, states[:, -2])
    assert np.allclose(res.tangent, fd, rtol=0, atol=1e-5 * np.abs(res.tangent).max())


def test_proportional_shear_matches_closed_form():
    """Monotonic shear, linear hardening: q = 3G(ε_eq - ε̄p) = σ0 + H ε̄p, any step size."""
    model = J2Plasticity(200e3, 0.3, LinearHardening(250.0, 2000.0))
    g = model.shear
    gamma = np.linspace(0, 0.02, 41)
    path = mandel.shear_strain(gamma)[None]
    stress, states, _ = integrate_path(model, path)
    eps_eq = gamma / np.sqrt(3.0)
    ep = np.maximum((3 * g * eps_eq - 250.0) / (3 * g + 2000.0), 0.0)
    q = 3 * g * (eps_eq - ep)
    assert np.allclose(mandel.von_mises(stress[0]), q, rtol=1e-10, atol=1e-8)
    assert np.allclose(states[0, :, 6], ep, atol=1e-12)
    one_step, _, _ = integrate_path(model, path[:, [0, -1]])
    assert np.allclose(one_step[0, -1], stress[0, -1], rtol=1e-10)  # radial return is exact
    tau = stress[0, :, 5] / np.sqrt(2.0)
    assert np.allclose(mandel.von_mises(stress[0]), np.sqrt(3.0) * np.abs(tau))


def test_kocks_mecking_density_matches_ode():
    law = DislocationDensityHardening()
    model = J2Plasticity(hardening=law)
    path = mandel.shear_strain(np.linspace(0, 0.05, 51))[None]
    stress, states, _ = integrate_path(model, path)
    ep, rho = states[0, :, 6], states[0, :, 7]
    sol = solve_ivp(lambda e, r: law.k1 * np.sqrt(r) - law.k2 * r, (0, ep[-1]), [law.rho0],
                    t_eval=ep, rtol=1e-10, atol=1.0)
    assert np.allclose(rho, sol.y[0], rtol=1e-6)
    sy = law.sigma0 + law.alpha * law.mu * law.burgers * np.sqrt(rho)
    plastic = np.diff(ep, prepend=0) > 0
    assert np.allclose(mandel.von_mises(stress[0])[plastic], sy[plastic], rtol=1e-9)


def test_elastic_below_yield_and_inputs_untouched():
    model = J2Plasticity(hardening=VoceHardening())
    strain = np.zeros((3, 6))
    dstrain = mandel.shear_strain(np.array([1e-4, 5e-4, 1e-3]))
    state = model.initial_state(3)
    copies = (strain.copy(), dstrain.copy(), state.copy())
    res = model.update(strain, dstrain, state)
    assert np.allclose(res.stress, dstrain @ model.stiffness.T)
    assert np.allclose(res.tangent, model.stiffness)
    for a, b in zip(copies, (strain, dstrain, state), strict=True):
        assert np.array_equal(a, b)
    assert res.stress.dtype == np.float64 and res.tangent.shape == (3, 6, 6)
