"""Neural J2 hardening non-decreasing in the plastic rate by construction (issue 19).

Fitted to serrated DD data, a free rate-dependent law learned a yield stress falling with
the plastic rate (the slow steps are the elastic reloading before an avalanche, at high
stress), which serrates constant-rate paths. ``MonotoneHardeningNet(rate_col=r)`` keeps
∂σ_y/∂log ε̇_p ≥ 0 for every weight (non-negative weights on the rate path, as on the
ε̄_p path), temperature unconstrained. The laws are trained here on the analytic
thermally activated law of test_surrogates_rate_paths (the Mo DD stage's numbers:
G = 126.7 GPa, K = 266.6 GPa, 87 MPa at 1e4 /s and 200 K, 20 MPa per decade of rate,
shear at γ̇ = 3e4 /s in 1.68 ns steps).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from scalebridge.artifacts import produce
from scalebridge.errors import ArtifactError
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.neural import DTYPE, MonotoneHardeningNet, NeuralHardening, NeuralJ2
from scalebridge.surrogates.protocol import integrate_path
from scalebridge.surrogates.train import export_surrogate, load_surrogate, rate_softening

torch.set_num_threads(1)

SHEAR, BULK = 126716.0, 266620.0          # MPa, the Mo DD run's elastic moduli
SIGMA_A = 87.0                            # MPa, σ_y at ε̄_p = 0, 1e4 /s, 200 K
HARDENING = 12e3                          # MPa per unit ε̄_p
RATE_SENS = 20.0                          # MPa per decade of plastic rate
THERMAL = 0.1                             # MPa per K (softening with temperature)
EP_MAX = 3e-3
DT = 1.68e-9                              # s per step of the DD paths
GAMMA = np.linspace(0.0, 5e-3, 101)       # engineering shear: γ̇ = 3e4 /s
RANGE = {"eps_p_eq": [0.0, EP_MAX], "temperature_k": [100.0, 300.0],
         "plastic_rate_s": [1e3, 1e6]}


def law(ep, log_rate, temperature_k, sign: float) -> np.ndarray:
    """σ_y (MPa) of the analytic law; ``sign`` -1: softening with rate."""
    return (SIGMA_A + HARDENING * ep + sign * RATE_SENS * (log_rate - 4.0)
            - THERMAL * (temperature_k - 200.0))


def fit_model(sign: float) -> tuple[NeuralJ2, float]:
    """A NeuralJ2 with a rate-monotone network trained (L-BFGS) on 1500 samples of
    :func:`law`, and its largest fit error (MPa) on them."""
    rng = np.random.default_rng(0)
    n = 1500
    ep, lr, tk = rng.uniform(0, EP_MAX, n), rng.uniform(3, 6, n), rng.uniform(100, 300, n)
    sy = law(ep, lr, tk, sign)
    feats = np.stack([lr, tk], axis=1)
    mean, std = feats.mean(axis=0), feats.std(axis=0)
    u = (feats - mean) / std
    scale = float(sy.max())
    torch.manual_seed(0)
    net = MonotoneHardeningNet(2, hidden=8, layers=1, rate_col=0)
    x, ut = torch.as_tensor(ep / EP_MAX, dtype=DTYPE), torch.as_tensor(u, dtype=DTYPE)
    y = torch.as_tensor(sy / scale, dtype=DTYPE)
    opt = torch.optim.LBFGS(net.parameters(), max_iter=400, history_size=50,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-16)

    def closure():
        opt.zero_grad()
        loss = torch.mean((net(x, ut) - y) ** 2)
        loss.backward()
        return loss

    opt.step(closure)
    net.eval()
    hard = NeuralHardening(net, EP_MAX, scale, ["log_rate", "temperature"], mean.tolist(),
                           std.tolist(), 200.0, u.min(axis=0).tolist(),
                           u.max(axis=0).tolist())
    with torch.no_grad():
        err = float(np.abs(scale * net(x, ut).numpy() - sy).max())
    return NeuralJ2(BULK, SHEAR, hard, RANGE), err


def shear_path(model: NeuralJ2, dt: float = DT) -> tuple[np.ndarray, np.ndarray]:
    """τ (MPa), ε̄_p along the constant-rate shear path at 200 K."""
    model.temperature_k = 200.0
    s, st, _ = integrate_path(model, mandel.shear_strain(GAMMA)[None], dt)
    return s[0, :, 5] / np.sqrt(2.0), st[0, :, 6]


def test_a_law_fitted_to_rate_softening_data_cannot_soften():
    """The data soften by 60 MPa over the trained rates; the fitted law stays flat in
    rate instead (the best a non-decreasing law does), so the constant-rate path that
    serrates with a free network (test_surrogates_rate_paths) is smooth and monotone."""
    model, err = fit_model(-1.0)
    assert err > 0.5 * RATE_SENS          # it cannot follow the softening data
    soft = rate_softening(model.neural)
    assert 0.0 <= soft < 1e-9 * SIGMA_A, soft
    tau, ep = shear_path(model)
    assert ep[-1] > 0.5 * EP_MAX
    dtau = np.diff(tau)
    assert dtau.min() > -1e-9 * tau.max(), dtau.min()
    late = dtau[20:]
    assert int(np.sum(late[1:] * late[:-1] < 0)) == 0
    # the fitted σ_y at 200 K is about the data's mean over the rates at every rate
    lr = np.linspace(3.0, 6.0, 7)
    rates = 10.0 ** lr
    sy = model.neural.sigma_y(torch.zeros(7, dtype=DTYPE),
                              torch.as_tensor(rates * DT, dtype=DTYPE),
                              torch.full((7,), DT, dtype=DTYPE)).detach().numpy()
    assert np.all(np.diff(sy) >= -1e-9) and np.ptp(sy) < 0.1 * RATE_SENS, sy
    assert sy.mean() == pytest.approx(law(0.0, lr, 200.0, -1.0).mean(), abs=5.0)


def test_a_law_fitted_to_rate_hardening_data_recovers_it():
    """Rate-hardening data: the monotone network fits the law within 1 MPa and the
    constant-rate path settles at the law's σ_y at the imposed plastic rate."""
    model, err = fit_model(+1.0)
    assert err < 1.0, err
    tau, ep = shear_path(model)
    assert np.diff(tau).min() > -1e-9 * tau.max()
    rate_eq = (GAMMA[-1] - GAMMA[-2]) / np.sqrt(3.0) / DT
    assert (ep[-1] - ep[-2]) / DT == pytest.approx(rate_eq, rel=0.05)
    assert np.sqrt(3.0) * tau[-1] == pytest.approx(
        law(ep[-1], np.log10(rate_eq), 200.0, +1.0), rel=1e-2)
    s, _, _ = integrate_path(model, mandel.shear_strain(GAMMA)[None], 10 * DT)
    slow = np.sqrt(3.0) * s[0, -1, 5] / np.sqrt(2.0)
    assert np.sqrt(3.0) * tau[-1] - slow == pytest.approx(RATE_SENS, rel=0.15)
    assert rate_softening(model.neural) == 0.0


def random_hardening(seed: int = 5) -> NeuralHardening:
    """A rate-monotone NeuralHardening with sharpened random weights (log-rate, T)."""
    torch.manual_seed(seed)
    net = MonotoneHardeningNet(2, hidden=16, layers=2, rate_col=0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    hard = NeuralHardening(net, ep_scale=0.02, sigma_scale=300.0,
                           features=["log_rate", "temperature"], feature_mean=[-3.0, 400.0],
                           feature_std=[1.5, 100.0], temperature_k=350.0,
                           feature_min=[-1.0, -1.0], feature_max=[1.0, 1.0])
    with torch.no_grad():                 # a virgin yield stress of 200 MPa
        net.head_b.add_((200.0 - hard.yield_stress_floor()) / hard.sigma_scale)
    return hard


def test_rate_monotone_network_derivatives_match_finite_differences():
    """∂g/∂u_r ≥ 0 for any weights, far outside the trained range too, while ∂g/∂T takes
    both signs; the closed forms (network_rate_d2, yield_stress through the σ_y(ε̄_p)
    table, the bicubic rate table and the network) match central differences."""
    hard = random_hardening()
    rng = np.random.default_rng(0)
    n = 4000
    x = rng.uniform(0.0, 3.0, n)
    u = rng.uniform(-4.0, 4.0, (n, 2))
    _, gx, gu, gxu = hard.network_rate_d2(x, u)
    assert gu.min() >= 0.0 and gx.min() >= 0.0
    with torch.enable_grad():
        ut = torch.as_tensor(u, dtype=DTYPE).requires_grad_(True)
        (du,) = torch.autograd.grad(hard.net(torch.as_tensor(x, dtype=DTYPE), ut).sum(), ut)
    assert du[:, 1].min() < 0.0 < du[:, 1].max()      # temperature: unconstrained
    assert np.abs(du[:, 0].numpy() - gu).max() <= 1e-12 * np.abs(gu).max()
    h = 1e-5

    def at(dx: float, dr: float) -> tuple[np.ndarray, ...]:
        v = u.copy()
        v[:, 0] += dr
        return hard.network_rate_d2(x + dx, v)

    fd = [(at(h, 0)[0] - at(-h, 0)[0]) / (2 * h), (at(0, h)[0] - at(0, -h)[0]) / (2 * h),
          (at(0, h)[1] - at(0, -h)[1]) / (2 * h)]
    for mine, ref in zip((gx, gu, gxu), fd, strict=True):
        assert np.abs(mine - ref).max() <= 1e-7 * max(np.abs(ref).max(), 1.0)
    # dσ_y/dΔε̄_p of yield_stress (the rate term through ε̇_p = Δε̄_p/dt), live and
    # unclamped rates: 10^(-3 ± 1.5)/s, within a table reach of 1 (ε̄_p < 0.02)
    ep = 0.016 * rng.random(n)
    dt = 10.0 ** rng.uniform(-3, -1, n)
    dep = dt * 10.0 ** rng.uniform(-4.4, -1.6, n)
    exact = random_hardening()
    exact.rate_table_spacing = None
    for model in (hard, exact):
        q = np.zeros((n, 0))
        _, dsy, _ = model.yield_stress(ep, dep, q, dt)
        e = 1e-6 * dep
        fd = (model.yield_stress(ep, dep + e, q, dt)[0]
              - model.yield_stress(ep, dep - e, q, dt)[0]) / (2 * e)
        assert dsy.min() > 0.0
        assert np.abs(dsy - fd).max() <= 1e-5 * np.abs(dsy).max()
    assert hard._rate_table["coef"] is not None
    # ε̄_p at the rate floor (the σ_y(ε̄_p) table)
    zero = np.zeros(n)
    _, dsy0, _ = hard.yield_stress(ep, zero, np.zeros((n, 0)), dt)
    fd0 = (hard.yield_stress(ep + 1e-7, zero, np.zeros((n, 0)), dt)[0]
           - hard.yield_stress(ep - 1e-7, zero, np.zeros((n, 0)), dt)[0]) / 2e-7
    assert np.abs(dsy0 - fd0).max() <= 1e-5 * np.abs(dsy0).max()


def test_rate_monotone_neural_j2_passes_the_constitutive_checks():
    """The consistent tangent (with the rate term) and the other checks, at a step
    duration that puts the plastic rates inside the trained range."""
    hard = random_hardening()
    model = NeuralJ2(160e3, 80e3, hard, {"eps_p_eq": [0.0, 0.02],
                                         "temperature_k": [300.0, 400.0],
                                         "plastic_rate_s": [1e-4, 1e-2]})
    rep = check_constitutive(model, dt=1.0)
    assert rep.passed
    assert rep.outcomes["tangent"].error < 1e-5


def _artifact(path, net: MonotoneHardeningNet, rate_col: int | str | None):
    """A NeuralJ2 Surrogate artifact of ``net``; ``rate_col`` "absent": a record written
    before the rate-monotone structure (no such key)."""
    cfg = {"hidden": net.hidden, "layers": net.layers, "n_cond": 2}
    if rate_col != "absent":
        cfg["rate_col"] = rate_col
    rec = {"class": "NeuralJ2", "config": cfg,
           "scalers": {"ep_scale": 0.02, "sigma_scale": 300.0,
                       "features": ["log_rate", "temperature"],
                       "feature_mean": [-3.0, 400.0], "feature_std": [1.5, 100.0],
                       "feature_min": [-1.0, -1.0], "feature_max": [1.0, 1.0]},
           "elastic": {"bulk_mpa": 133e3, "shear_mpa": 80e3}, "temperature_k": 350.0,
           "training_range": {"eps_p_eq": [0.0, 0.02], "temperature_k": [300.0, 400.0],
                              "plastic_rate_s": [1e-4, 1e-2], "strain_norm": [0.0, 0.02]}}

    def build(work):
        torch.save(net.state_dict(), work / "model.pt")
        (work / "surrogate.json").write_text(json.dumps(rec))
        return {}

    return produce("Surrogate", path, {"rate_col": str(rate_col)}, {}, build).path


def test_saved_rate_monotone_and_older_laws_load_as_fitted(tmp_path):
    """A rate-monotone law reloads with the same σ_y; an older record (no ``rate_col``)
    loads its free network as before; mixing the two is a one-line ArtifactError."""
    new = random_hardening().net
    torch.manual_seed(1)
    old = MonotoneHardeningNet(2, hidden=16, layers=2)
    x = torch.linspace(0.0, 1.5, 64, dtype=DTYPE)
    u = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, (64, 2)), dtype=DTYPE)
    for net, rc, name in ((new, 0, "new"), (old, "absent", "old")):
        loaded = load_surrogate(_artifact(tmp_path / name, net, rc))
        assert loaded.neural.net.rate_col == (0 if rc == 0 else None)
        with torch.no_grad():
            assert torch.equal(loaded.neural.net(x, u), net(x, u))
    # the TorchScript export traces the rate-monotone network as it evaluates
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ts = torch.jit.load(str(export_surrogate(tmp_path / "new", tmp_path / "ts")[-1]))
    with torch.no_grad():
        assert torch.allclose(ts(x, u), new(x, u), rtol=1e-14, atol=0.0)
    for net, rc, name in ((new, "absent", "mix1"), (old, 0, "mix2")):
        with pytest.raises(ArtifactError, match="do not match") as e:
            load_surrogate(_artifact(tmp_path / name, net, rc))
        assert "\n" not in str(e.value)


def test_rate_constraint_must_sit_on_the_log_rate_feature():
    """A network monotone in a condition that is not the log-rate (here the temperature)
    would constrain the wrong input and give wrong closed-form rate derivatives: refused
    when the hardening law is built, accepted when the column is the log-rate."""
    net = MonotoneHardeningNet(2, hidden=4, layers=1, rate_col=1)
    with pytest.raises(ValueError, match="must be 'log_rate'"):
        NeuralHardening(net, 0.01, 100.0, ["log_rate", "temperature"], [0.0, 0.0],
                        [1.0, 1.0])
    ok = NeuralHardening(net, 0.01, 100.0, ["temperature", "log_rate"], [0.0, 0.0],
                         [1.0, 1.0])
    assert ok.features[1] == "log_rate"
