"""Rate-dependent neural J2 on constant-rate shear paths (issue 19, surrogate stage).

The laws are MonotoneHardeningNets trained here on an analytic thermally activated law
with the numbers of the Mo example's DD stage (runs/mo_bench14: G = 126.7 GPa,
K = 266.6 GPa, initial yield 87 MPa at 200 K, shear at γ̇ = 3e4 /s in 1.68 ns steps,
plastic rates 1e3-1e6 /s, 100-300 K). With a sound law (σ_y rising with the plastic
rate) the implicit return map gives a smooth monotone stress that converges to σ_y at
the imposed rate; with the same law softening with rate (what the DD fit learned from
serrated data) the same path serrates: elastic reloading and plastic bursts in turn,
which is the law's instability (measured by ``rate_softening``), not the integration's.
The held-out replay runs every path at its own temperature (it used the model's one
temperature, 200 K, for the 100 K and 300 K DD paths).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scalebridge.surrogates import mandel
from scalebridge.surrogates.data import StrainPaths
from scalebridge.surrogates.neural import DTYPE, MonotoneHardeningNet, NeuralHardening, NeuralJ2
from scalebridge.surrogates.protocol import integrate_path
from scalebridge.surrogates.train import (
    integrate_paths,
    path_errors,
    rate_softening,
    rollout_stress,
)

torch.set_num_threads(1)

SHEAR, BULK = 126716.0, 266620.0          # MPa, the Mo DD run's elastic moduli
SIGMA_A = 87.0                            # MPa, σ_y at ε̄_p = 0, 1e4 /s, 200 K
HARDENING = 12e3                          # MPa per unit ε̄_p
RATE_SENS = 20.0                          # MPa per decade of plastic rate
THERMAL = 0.1                             # MPa per K (softening with temperature)
EP_MAX = 3e-3
DT = 1.68e-9                              # s per step of the DD paths
GAMMA = np.linspace(0.0, 5e-3, 101)       # engineering shear: γ̇ = 3e4 /s


def law(ep, log_rate, temperature_k, sign: float) -> np.ndarray:
    """σ_y (MPa) of the analytic law; ``sign`` -1: softening with rate."""
    return (SIGMA_A + HARDENING * ep + sign * RATE_SENS * (log_rate - 4.0)
            - THERMAL * (temperature_k - 200.0))


def fit_model(sign: float) -> NeuralJ2:
    """A NeuralJ2 whose network is trained (L-BFGS) on 1500 samples of :func:`law`."""
    rng = np.random.default_rng(0)
    n = 1500
    ep, lr, tk = rng.uniform(0, EP_MAX, n), rng.uniform(3, 6, n), rng.uniform(100, 300, n)
    sy = law(ep, lr, tk, sign)
    feats = np.stack([lr, tk], axis=1)
    mean, std = feats.mean(axis=0), feats.std(axis=0)
    u = (feats - mean) / std
    scale = float(sy.max())
    torch.manual_seed(0)
    net = MonotoneHardeningNet(2, hidden=8, layers=1)
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
        fit = scale * net(x, ut).numpy()
    assert np.abs(fit - sy).max() < 1.0, "the network does not represent the law"
    return NeuralJ2(BULK, SHEAR, hard, {"eps_p_eq": [0.0, EP_MAX],
                                        "temperature_k": [100.0, 300.0],
                                        "plastic_rate_s": [1e3, 1e6]})


@pytest.fixture(scope="module")
def sound():
    return fit_model(+1.0)


@pytest.fixture(scope="module")
def softening():
    return fit_model(-1.0)


def shear_path(model: NeuralJ2, temperature_k: float = 200.0):
    """τ (MPa), ε̄_p along the constant-rate shear path at ``temperature_k``."""
    model.temperature_k = temperature_k
    s, st, _ = integrate_path(model, mandel.shear_strain(GAMMA)[None], DT)
    return s[0, :, 5] / np.sqrt(2.0), st[0, :, 6]


def test_constant_rate_shear_is_smooth_and_reaches_sigma_y_at_the_imposed_rate(sound):
    tau, ep = shear_path(sound)
    dtau = np.diff(tau)
    # monotone: no step of the stress goes down (no sawtooth), on a path that yields
    assert ep[-1] > 0.5 * EP_MAX
    assert dtau.min() > -1e-9 * tau.max(), dtau.min()
    # smooth: after the yield transient (a geometric relaxation of the plastic rate,
    # without overshoot) the increment is the steady hardening slope, step after step
    late = dtau[-50:]
    assert np.ptp(late) < 0.05 * late.mean(), late
    # σ_eq converges to the law's σ_y at the imposed plastic rate: ε̇_eq = γ̇/√3 less
    # the elastic share σ̇/3G, within 0.3 % (the rate's share: 20 MPa per decade)
    rate_eq = (GAMMA[-1] - GAMMA[-2]) / np.sqrt(3.0) / DT
    rate_p = (ep[-1] - ep[-2]) / DT
    assert rate_p == pytest.approx(rate_eq, rel=0.05)
    sy_imposed = sound.neural.sigma_y(torch.tensor([ep[-1]], dtype=DTYPE),
                                      torch.tensor([rate_eq * DT], dtype=DTYPE),
                                      torch.tensor([DT], dtype=DTYPE)).item()
    assert np.sqrt(3.0) * tau[-1] == pytest.approx(sy_imposed, rel=3e-3)
    assert np.sqrt(3.0) * tau[-1] == pytest.approx(
        law(ep[-1], np.log10(rate_eq), 200.0, +1.0), rel=1e-2)
    # a ten times slower path flows lower by about the rate sensitivity
    model = sound
    s, _, _ = integrate_path(model, mandel.shear_strain(GAMMA)[None], 10 * DT)
    slow = np.sqrt(3.0) * s[0, -1, 5] / np.sqrt(2.0)
    assert np.sqrt(3.0) * tau[-1] - slow == pytest.approx(RATE_SENS, rel=0.15)
    assert rate_softening(model.neural) < 0.01 * SIGMA_A


def test_a_law_softening_with_rate_serrates_and_is_flagged(softening, sound):
    """The same path through the law softening with rate: the static yield (the rate at
    its clamp, 1e3 /s) is above the flow stress at the imposed rate, so the steps
    alternate elastic reloading and plastic bursts, as in the Mo run's fit_paths.png."""
    tau, _ = shear_path(softening)
    dtau = np.diff(tau)[20:]                 # past the first yield
    alternations = int(np.sum(dtau[1:] * dtau[:-1] < 0))
    assert alternations > 20, alternations
    assert rate_softening(softening.neural) == pytest.approx(3 * RATE_SENS, rel=0.1)


def test_held_out_replay_runs_each_path_at_its_temperature(sound):
    """path_errors of the model against its own stress at each path's temperature is 0;
    with one temperature for all paths (the old replay) it is the thermal term."""
    strain = np.repeat(mandel.shear_strain(GAMMA)[None], 2, axis=0)
    own = np.stack([integrate_path(_at(sound, t), strain[:1], DT)[0][0] for t in (100.0, 300.0)])
    sound.temperature_k = 200.0
    paths = StrainPaths(strain, own, np.full(2, DT), np.array([100.0, 300.0]),
                        np.full(2, 3e4), None, {"bulk_mpa": BULK, "shear_mpa": SHEAR},
                        ["100K", "300K"])
    m, _ = path_errors(sound, paths, SIGMA_A)
    assert m["rmse_mpa"] < 1e-9 and sound.temperature_k == 200.0
    one_t, _, _ = integrate_path(sound, strain, DT)
    assert np.sqrt(np.mean(np.sum((one_t - own) ** 2, axis=-1))) > 0.5 * THERMAL * 100.0
    # the differentiable replay of the rollout fit: the same stress, path by path
    roll = rollout_stress(sound, torch.as_tensor(strain, dtype=DTYPE), paths.dt,
                          paths.temperature_k).detach().numpy()
    assert np.abs(roll - own).max() < 1e-6 and sound.temperature_k == 200.0
    assert np.abs(integrate_paths(sound, paths)[0] - own).max() < 1e-9


def _at(model: NeuralJ2, temperature_k: float) -> NeuralJ2:
    model.temperature_k = temperature_k
    return model


def test_path_panels_are_named_by_their_realisation():
    """A DD path's panel says which realisation it is, not a cut-off file path."""
    from scalebridge.surrogates.plots import path_label

    assert path_label("/runs/mo/dd/realisations/12/stress_strain.csv") == "realisation 12"
    assert path_label("path_3") == "path_3"
    long = "a/very/long/name/of/a/path/that/is/not/a/realisation.csv"
    assert path_label(long).startswith("…") and len(path_label(long)) == 28
