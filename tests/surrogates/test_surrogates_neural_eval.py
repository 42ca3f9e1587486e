"""NeuralHardening's evaluation without autograd (issue 20, material cost): the closed-form
forward mode equals the network with autograd, the σ_y(ε̄_p) table equals the network, and
NeuralJ2 gives the same steps with the table, with the network, and with the yield floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.neural import DTYPE, MonotoneHardeningNet, NeuralHardening, NeuralJ2

torch.set_num_threads(1)


def autograd_yield_stress(hard: NeuralHardening, ep, dep, dt):
    """The reference: σ_y from the torch network, dσ_y/dΔε̄_p by autograd."""
    with torch.enable_grad():
        d = torch.tensor(dep, dtype=DTYPE, requires_grad=True)
        sy = hard.sigma_y(torch.as_tensor(ep, dtype=DTYPE) + d, d,
                          torch.as_tensor(dt, dtype=DTYPE))
        (h,) = torch.autograd.grad(sy.sum(), d)
    return sy.detach().numpy(), h.numpy()


def make_hardening(features: list[str], seed: int = 0) -> NeuralHardening:
    torch.manual_seed(seed)
    net = MonotoneHardeningNet(len(features), hidden=16, layers=2)
    with torch.no_grad():                     # sharper than the initial weights
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    k = len(features)
    mean = {"log_rate": -3.0, "temperature": 400.0}
    std = {"log_rate": 1.5, "temperature": 100.0}
    return NeuralHardening(net, ep_scale=0.02, sigma_scale=300.0, features=features,
                           feature_mean=[mean[f] for f in features],
                           feature_std=[std[f] for f in features], temperature_k=350.0,
                           feature_min=[-1.0] * k, feature_max=[1.0] * k)


def _points(n: int = 4000, seed: int = 1):
    rng = np.random.default_rng(seed)
    ep = 0.04 * rng.random(n)
    dep = np.where(rng.random(n) < 0.2, 0.0, 10.0 ** rng.uniform(-9, -2, n))
    dt = 10.0 ** rng.uniform(-2, 3, n)        # rates from below the floor to clamped
    return ep, dep, dt


@pytest.mark.parametrize("features", [[], ["temperature"], ["log_rate"],
                                      ["log_rate", "temperature"]])
def test_closed_form_equals_autograd(features):
    hard = make_hardening(features)
    hard.table_spacing = None                  # the network at every point
    ep, dep, dt = _points()
    sy, h, _ = hard.yield_stress(ep, dep, np.zeros((ep.size, 0)), dt)
    sy_ref, h_ref = autograd_yield_stress(hard, ep, dep, dt)
    assert np.abs(sy - sy_ref).max() <= 1e-12 * np.abs(sy_ref).max()
    assert np.abs(h - h_ref).max() <= 1e-10 * np.abs(h_ref).max()
    if "log_rate" in features:                 # the rate term is there, and clamped
        u = hard.conditions(torch.as_tensor(dep), torch.as_tensor(dt)).numpy()[:, 0]
        assert (u <= -1.0).any() and (u >= 1.0).any() and (np.abs(u) < 1.0).any()


@pytest.mark.parametrize("features", [[], ["temperature"], ["log_rate", "temperature"]])
def test_table_equals_the_network(features):
    """The tabulated σ_y(ε̄_p) against the network, within its reach and past it."""
    hard = make_hardening(features, seed=3)
    exact = make_hardening(features, seed=3)
    exact.table_spacing = None
    rng = np.random.default_rng(2)
    ep = np.concatenate([0.1 * rng.random(20000), hard.ep_scale * hard.table_spacing
                         * np.arange(200), [0.0, 5.0]])   # nodes, far past the reach
    zero = np.zeros_like(ep)
    q = np.zeros((ep.size, 0))
    sy, h, _ = hard.yield_stress(ep, zero, q, np.ones_like(ep))
    sy_n, h_n, _ = exact.yield_stress(ep, zero, q, np.ones_like(ep))
    err_sy = np.abs(sy - sy_n).max() / np.abs(sy_n).max()
    err_h = np.abs(h - h_n).max() / np.abs(h_n).max()
    assert err_sy < 1e-12 and err_h < 1e-7, (err_sy, err_h)
    assert hard._table["x_max"] >= 0.1 / hard.ep_scale           # grew to the points
    if "log_rate" in features:      # points above the rate floor: the network, exactly
        hard.rate_table_spacing = None
        ep2, dep2, dt2 = _points(seed=7)
        sy2, h2, _ = hard.yield_stress(ep2, dep2, np.zeros((ep2.size, 0)), dt2)
        sy_ref, h_ref = autograd_yield_stress(hard, ep2, dep2, dt2)
        assert np.abs(sy2 - sy_ref).max() < 1e-12 * np.abs(sy_ref).max()
        assert np.abs(h2 - h_ref).max() < 1e-7 * np.abs(h_ref).max()
    # a change of weights or temperature rebuilds the table
    for model in (hard, exact):
        with torch.no_grad():
            model.net.b1.add_(0.3)
        model.temperature_k = 420.0
    sy, _, _ = hard.yield_stress(ep, zero, q, np.ones_like(ep))
    sy_n, _, _ = exact.yield_stress(ep, zero, q, np.ones_like(ep))
    assert np.abs(sy - sy_n).max() < 1e-12 * np.abs(sy_n).max()


@pytest.mark.parametrize("features", [["log_rate"], ["log_rate", "temperature"]])
def test_rate_table_equals_the_network(features):
    """The bicubic table of σ_y(ε̄_p, log ε̇_p) against the network with autograd where the
    rate is live (and clamped at the trained range's ends): values within 1e-9 of σ_y,
    slopes within 1e-6 (measured 6e-10 and 4e-8); it grows to the points asked; the
    mixed derivative its nodes hold is the network's."""
    hard = make_hardening(features, seed=3)
    ep, dep, dt = _points(seed=7)
    keep = ep + dep < 0.019                       # within a reach of 1 (x = ε̄_p / 0.02)
    ep, dep, dt = ep[keep], dep[keep], dt[keep]
    served = []
    orig = hard._from_rate_table

    def counted(x, ur, tab=None):
        out = orig(x, ur, tab)
        if tab is None:                           # a yield_stress call, not the build's
            served.append(int(out[3].sum()))
        return out

    hard._from_rate_table = counted
    sy, h, _ = hard.yield_stress(ep, dep, np.zeros((ep.size, 0)), dt)
    tab = hard._rate_table
    u, du = hard._conditions_np(dep, dt)       # every point off the 1D table's conditions
    live = ~(np.all(u == hard.table(0.0)["u0"], axis=1) & np.all(du == 0.0, axis=1))
    assert served == [live.sum()] and live.sum() > 300 and not tab["full"]
    assert tab["x_max"] >= (ep + dep).max() / hard.ep_scale
    assert tab["error"][0] <= 1e-9 and tab["error"][1] <= 1e-5     # rate_table_tol
    sy_ref, h_ref = autograd_yield_stress(hard, ep, dep, dt)
    assert np.abs(sy - sy_ref).max() <= 1e-9 * np.abs(sy_ref).max()
    assert np.abs(h - h_ref).max() <= 1e-6 * np.abs(h_ref).max()
    # the nodes' derivatives (forward over forward mode) against autograd
    x = torch.linspace(0.0, 1.0, 50, dtype=DTYPE)
    u = hard.conditions(torch.full((50,), 1e-3), torch.ones(50)).detach()
    u[:, 0] = torch.linspace(-1.0, 1.0, 50, dtype=DTYPE)
    g, gx, gu, gxu = hard.network_rate_d2(x.numpy(), u.numpy())
    with torch.enable_grad():
        xr, ur = x.clone().requires_grad_(True), u.clone().requires_grad_(True)
        ga = hard.net(xr, ur)
        dx, du = torch.autograd.grad(ga.sum(), (xr, ur), create_graph=True)
        (dxu,) = torch.autograd.grad(dx.sum(), ur)
    for mine, ref in ((g, ga), (gx, dx), (gu, du[:, 0]), (gxu, dxu[:, 0])):
        ref = ref.detach().numpy()
        assert np.abs(mine - ref).max() <= 1e-12 * max(np.abs(ref).max(), 1.0)
    # a change of weights rebuilds it; an unbounded rate range leaves the network
    with torch.no_grad():
        hard.net.b1.add_(0.3)
    sy, _, _ = hard.yield_stress(ep, dep, np.zeros((ep.size, 0)), dt)
    sy_ref, _ = autograd_yield_stress(hard, ep, dep, dt)
    assert np.abs(sy - sy_ref).max() <= 1e-9 * np.abs(sy_ref).max()
    hard.feature_max[0] = np.inf
    sy, _, _ = hard.yield_stress(ep, dep, np.zeros((ep.size, 0)), dt)
    assert hard._rate_table["coef"] is None
    sy_ref, _ = autograd_yield_stress(hard, ep, dep, dt)
    assert np.abs(sy - sy_ref).max() <= 1e-12 * np.abs(sy_ref).max()


def test_rate_table_stops_at_its_cell_limit():
    """Past rate_table_max_cells the table keeps the reach it has and the network serves
    the points beyond it (still the network's values)."""
    hard = make_hardening(["log_rate"], seed=3)
    hard.rate_table_max_cells = 2 ** 15
    ep, dep, dt = _points(seed=7)
    small = ep + dep < 0.002                  # a first call within a reach of 1/8
    hard.yield_stress(ep[small], dep[small], np.zeros((small.sum(), 0)), dt[small])
    assert not hard._rate_table["full"] and hard._rate_table["x_max"] == 0.125
    sy, h, _ = hard.yield_stress(ep, dep, np.zeros((ep.size, 0)), dt)
    tab = hard._rate_table
    assert tab["full"] and tab["coef"] is not None
    assert tab["x_max"] < (ep + dep).max() / hard.ep_scale
    sy_ref, h_ref = autograd_yield_stress(hard, ep, dep, dt)
    assert np.abs(sy - sy_ref).max() <= 1e-9 * np.abs(sy_ref).max()
    assert np.abs(h - h_ref).max() <= 1e-6 * np.abs(h_ref).max()



def _j2_at_200_mpa(inputs: list[str], **hardening_attrs) -> NeuralJ2:
    """A NeuralJ2 (E 160 GPa, G 80 GPa) whose seeded hardening network has a virgin yield
    stress of 200 MPa; ``hardening_attrs`` are set on the hardening after that shift."""
    hard = make_hardening(inputs, seed=5)
    with torch.no_grad():
        hard.net.head_b.add_((200.0 - hard.yield_stress_floor()) / hard.sigma_scale)
    for name, value in hardening_attrs.items():
        setattr(hard, name, value)
    return NeuralJ2(160e3, 80e3, hard, {"eps_p_eq": [0.0, 0.02],
                                        "temperature_k": [300.0, 400.0],
                                        "plastic_rate_s": [1e-4, 1e-2]})

def test_neural_j2_steps_agree_with_table_network_and_floor():
    """The same return-map steps whichever way σ_y is evaluated, and the checks pass."""
    # no floor: J2Plasticity then checks every point
    models = [_j2_at_200_mpa([], table_spacing=2.0 ** -11), _j2_at_200_mpa([], table_spacing=None),
              _j2_at_200_mpa([], table_spacing=None, yield_stress_floor=None)]
    rng = np.random.default_rng(4)
    n = 500
    strain = 6e-4 * rng.standard_normal((n, 6))
    dstrain = 2e-4 * rng.standard_normal((n, 6))
    state = models[0].initial_state(n)
    state[:, 6] = 0.02 * rng.random(n)
    state[:, :6] = 2e-4 * rng.standard_normal((n, 6))
    res = [m.update(strain, dstrain, state) for m in models]
    yielded = res[1].state[:, 6] > state[:, 6]
    q_tr = np.sqrt(1.5) * np.linalg.norm(mandel.deviator(
        (strain + dstrain - state[:, :6]) @ models[0].stiffness.T), axis=1)
    below = q_tr <= models[0].hardening.yield_stress_floor()
    assert 0.1 < yielded.mean() < 0.9 and 0.1 < below.mean(), (yielded.mean(), below.mean())
    ref = res[2]
    for r in res[:2]:
        assert np.abs(r.stress - ref.stress).max() < 1e-9 * np.abs(ref.stress).max()
        assert np.abs(r.tangent - ref.tangent).max() < 1e-7 * np.abs(ref.tangent).max()
        assert np.abs(r.state - ref.state).max() < 1e-12
    assert check_constitutive(models[0]).passed


def test_rate_dependent_neural_j2_steps_agree_with_and_without_rate_table():
    """A rate-dependent NeuralJ2: the same return-map steps with the bicubic table as with
    the network (stress within 1e-9, tangent within 1e-6, state within 1e-12), rates
    live at most yielded points; the consistent tangent matches finite differences."""
    models = [_j2_at_200_mpa(["log_rate"], rate_table_spacing=sp)
              for sp in ((2.0 ** -7, 2.0 ** -5), None)]
    rng = np.random.default_rng(4)
    n = 500
    strain = 6e-4 * rng.standard_normal((n, 6))
    dstrain = 1e-3 * rng.standard_normal((n, 6))
    state = models[0].initial_state(n)
    state[:, 6] = 0.02 * rng.random(n)
    state[:, :6] = 2e-4 * rng.standard_normal((n, 6))
    dt = 10.0 ** rng.uniform(-2, 1, n)
    res = [m.update(strain, dstrain, state, dt) for m in models]
    rate = (res[1].state[:, 6] - state[:, 6]) / dt
    u = (np.log10(np.maximum(rate, 1e-300)) + 3.0) / 1.5
    yielded = rate > 0
    assert 0.15 < yielded.mean() < 0.9 and (np.abs(u[yielded]) < 1.0).mean() > 0.5
    assert models[0].hardening._rate_table["coef"] is not None
    table, ref = res
    assert np.abs(table.stress - ref.stress).max() < 1e-9 * np.abs(ref.stress).max()
    assert np.abs(table.tangent - ref.tangent).max() < 1e-6 * np.abs(ref.tangent).max()
    assert np.abs(table.state - ref.state).max() < 1e-12
    # consistent tangent of the table model: central differences of its stress
    m, k = models[0], np.flatnonzero(yielded)[:40]
    h = 1e-9
    for j in range(6):
        e = np.zeros(6)
        e[j] = h
        sp = m.update(strain[k], dstrain[k] + e, state[k], dt[k]).stress
        sm = m.update(strain[k], dstrain[k] - e, state[k], dt[k]).stress
        fd = (sp - sm) / (2 * h)
        assert np.abs(fd - table.tangent[k][:, :, j]).max() < 1e-4 * np.abs(
            table.tangent[k]).max(), j
