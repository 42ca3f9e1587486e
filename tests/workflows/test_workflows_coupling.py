"""Sensitivity tests that prove the coupling: a stage whose output does not follow its
input fails here.

- surrogates: scale the DD hardening curves it learns from by 1.1, its flow stress
  scales by 1.1 (and an unscaled refit does not move);
- continuum: scale the surrogate's yield stress by 1.1 (``scale_hardening``, the band's
  members), the FEM's final load scales by 1.1 for perfect plasticity, and equals the
  load of a J2 material with 1.1 σ0.

(μ upstream -> DD flow stress and drag -> high-rate flow stress are tested with the DD.)
"""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.continuum import CylinderProblem, FemSettings
from scalebridge.continuum.solver import SolverSettings
from scalebridge.surrogates.ensemble import scale_hardening
from scalebridge.surrogates.j2 import J2Plasticity, LinearHardening
from scalebridge.surrogates.train import SurrogateSettings, load_surrogate

from .synthetic_chain import synthetic_ddrun

FIT = SurrogateSettings(max_iterations=60, val_fraction=0.34, rollout_iterations=0,
                        run_checks=False)
#: 2x2 cells, linear elements; inner displacement 0.02 mm drives the wall fully plastic
FEM = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=3),
                  solver=SolverSettings(steps=4, degree=1), write_fields=False)


def _yield_curve(model, ep):
    sy = model.hardening.yield_stress(ep, np.zeros_like(ep), np.zeros((len(ep), 0)),
                                      np.ones_like(ep))[0]
    return np.asarray(sy)


def test_surrogate_flow_stress_follows_the_dd_hardening(tmp_path):
    base = FIT.make(synthetic_ddrun(tmp_path / "dd1"), tmp_path / "s1")
    up = FIT.make(synthetic_ddrun(tmp_path / "dd11", scale=1.1), tmp_path / "s11")
    m1, m11 = load_surrogate(base.path), load_surrogate(up.path)
    ep = np.linspace(0.0, 0.8 * m1.training_range["eps_p_eq"][1], 7)
    ratio = _yield_curve(m11, ep) / _yield_curve(m1, ep)
    assert ratio == pytest.approx(np.full_like(ep, 1.1), rel=0.01), ratio
    assert up.summary["initial_yield_mpa"] / base.summary["initial_yield_mpa"] == \
        pytest.approx(1.1, rel=0.01)
    # the same data again: the same surrogate (it is the data, not noise, that moved it)
    again = FIT.make(synthetic_ddrun(tmp_path / "dd1b"), tmp_path / "s1b")
    assert _yield_curve(load_surrogate(again.path), ep) == pytest.approx(
        _yield_curve(m1, ep), rel=1e-6)


def test_fem_load_follows_the_yield_stress(tmp_path):
    e, nu = 200e3, 0.3
    perfect = J2Plasticity(e, nu, LinearHardening(250.0, 0.0))
    f0 = FEM.make(perfect, tmp_path / "f0").summary
    f1 = FEM.make(scale_hardening(perfect, 1.1), tmp_path / "f1").summary
    ref = FEM.make(J2Plasticity(e, nu, LinearHardening(275.0, 0.0)), tmp_path / "ref").summary
    assert f0["max_equivalent_plastic_strain"] > 10 * 250.0 / e   # well past yield
    assert f1["final_load_mpa"] / f0["final_load_mpa"] == pytest.approx(1.1, rel=5e-3)
    assert f1["final_load_mpa"] == pytest.approx(ref["final_load_mpa"], rel=1e-8)
    # and the analytic limit load is met by both (the FEM's outside reference)
    assert f1["limit_load_rel_error"] < 0.05 and f0["limit_load_rel_error"] < 0.05


def test_scaled_stress_wrapper_for_any_model():
    from scalebridge.surrogates.ensemble import ScaledStressModel
    from scalebridge.surrogates.protocol import integrate_path

    class NotJ2:  # a ConstitutiveModel that is not J2: the generic σ_f(ε) = f σ(ε/f)
        name, state_names = "wrapped", J2Plasticity().state_names

        def __init__(self):
            self.inner = J2Plasticity(200e3, 0.3, LinearHardening(250.0, 0.0))

        def initial_state(self, n):
            return self.inner.initial_state(n)

        def update(self, strain, dstrain, state, dt=1.0):
            return self.inner.update(strain, dstrain, state, dt)

    m = scale_hardening(NotJ2(), 1.1)
    assert isinstance(m, ScaledStressModel)
    from scalebridge.surrogates import mandel

    path = mandel.shear_strain(np.linspace(0, 0.01, 40))[None]
    s, _, _ = integrate_path(m, path)
    ref, _, _ = integrate_path(J2Plasticity(200e3, 0.3, LinearHardening(275.0, 0.0)), path)
    assert mandel.von_mises(s[0, -1]) == pytest.approx(mandel.von_mises(ref[0, -1]), rel=1e-9)
    with pytest.raises(ValueError):
        scale_hardening(NotJ2(), 0.0)
