"""The data-driven internal-variable model: its learned yield gauge and, for any weights,
every check of check_constitutive (the guarantees come from the structure)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.internal_variable import InternalVariableModel, YieldHardeningNet

torch.set_num_threads(1)


def _net(seed: int, only: str | None = None) -> YieldHardeningNet:
    net = YieldHardeningNet(latent=4, hidden=8, r_scale=400.0, lam_scale=0.01, r0=250.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in net.parameters():
            prm.add_(0.5 * torch.randn(prm.shape, generator=g, dtype=torch.float64))
        if only is not None:
            net.w.fill_(-60.0)
            net.w[net.gauge_names.index(only)] = 60.0
    for prm in net.parameters():
        prm.requires_grad_(False)
    return net


def _reference(name: str, sig: np.ndarray) -> np.ndarray:
    """The gauge from the eigenvalues of the deviator, normalised to uniaxial tension."""
    def raw(e):
        if name == "von_mises":
            return np.sqrt(1.5 * (e ** 2).sum(axis=1))
        if name.startswith("hosford"):
            a = int(name[7:])
            return (0.5 * sum(np.abs(e[:, i] - e[:, j]) ** a for i in range(3)
                              for j in range(3))) ** (1 / a)
        p = int(name[8:])
        return (np.abs(e) ** p).sum(axis=1) ** (1 / p)

    ev = np.linalg.eigvalsh(mandel.to_tensor(mandel.deviator(sig)))
    return raw(ev) / raw(np.array([[2 / 3, -1 / 3, -1 / 3]]))


@pytest.mark.parametrize("name", ["von_mises", "hosford6", "hosford20", "schatten8",
                                  "schatten20"])
def test_each_gauge_is_the_convex_norm_it_names(name):
    net = _net(0, only=name)
    rng = np.random.default_rng(1)
    sig = rng.normal(size=(8, 6)) * 200.0
    phi, n, hess = net.gauge(torch.tensor(sig), hessian=True)
    phi, n, hess = phi.numpy(), n.numpy(), hess.numpy()
    assert np.allclose(phi, _reference(name, sig), rtol=1e-12)
    assert np.allclose((n * sig).sum(axis=1), phi, rtol=1e-12)  # homogeneous of degree 1
    assert np.linalg.eigvalsh(hess).min() > -1e-12 * np.abs(hess).max()  # convex
    h = 1e-4
    for c in range(6):  # gradient and Hessian against central differences
        d = np.zeros(6)
        d[c] = h
        p_, m_ = (net.gauge(torch.tensor(sig + s * d))[:2] for s in (1, -1))
        assert np.allclose((p_[0] - m_[0]).numpy() / (2 * h), n[:, c], atol=1e-8)
        assert np.allclose((p_[1] - m_[1]).numpy() / (2 * h), hess[:, :, c],
                           atol=1e-7 * np.abs(hess).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_untrained_model_passes_every_check(seed):
    """Random weights: a random convex yield surface and hardening still pass every
    check (no check skipped: isotropic and symmetric_tangent are claimed)."""
    model = InternalVariableModel(_net(seed), 166e3, 77e3,
                                  {"eps_p_eq": [0.0, 0.05], "strain_norm": [0.0, 0.01]})
    rep = check_constitutive(model)
    assert rep.passed, rep.summary()
    assert rep.outcomes["symmetry"].note == "" and rep.outcomes["objectivity"].note == ""
    assert rep.outcomes["symmetry"].error < 1e-10
    r, hmod = model.net.hardening(torch.linspace(0, 1.0, 50, dtype=torch.float64))
    assert torch.all(r > 0) and torch.all(hmod >= 0) and torch.all(torch.diff(r) >= 0)
