"""Learned constitutive models (PyTorch, float64) behind the same protocol as J2.

1. :class:`NeuralJ2`: physics-structured. The J2 radial return of
   :class:`~scalebridge.surrogates.j2.J2Plasticity` with a neural hardening law
   σ_y = g_θ(ε̄_p, ε̇_p, T) (:class:`MonotoneHardeningNet`, non-decreasing in ε̄_p by
   construction). Elasticity, yield surface, flow rule, objectivity, symmetry of the
   tangent and non-negative dissipation come from the structure; only the hardening curve
   is learned. The consistent tangent is the analytic J2 one with H = dg/dΔε̄_p from
   autograd (including the rate term through ε̇_p = Δε̄_p/dt).
2. :class:`RecurrentModel`: fully data-driven internal-variable network. A latent state h
   (m numbers per point) evolves as h_{n+1} = h_n + f_θ(ε_{n+1}, Δε, h_n) and
   σ_{n+1} = s_θ(ε_{n+1}, h_{n+1}); the tangent is dσ/dΔε by autograd. Known failure
   modes (measured in the benchmark, see the docstring of the class): it is not objective
   (works on Mandel components), its tangent is not symmetric, unloading is not exactly
   elastic, dissipation is not guaranteed non-negative, errors accumulate along long
   paths, and it depends on the step size it was trained with.

Both report ``out_of_range`` per point (and log a warning) when asked far outside the
range they were trained on.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scalebridge.surrogates.j2 import J2Plasticity
from scalebridge.surrogates.protocol import ConstitutiveResult
from torch import nn
from torch.nn.functional import softplus

log = logging.getLogger("scalebridge.surrogates")

DTYPE = torch.float64
#: Plastic strain rate below which the rate feature is clamped, 1/s.
RATE_FLOOR = 1e-12


class MonotoneHardeningNet(nn.Module):
    """g(x, u) non-decreasing in x: tanh layers with non-negative weights on the x path.

    ``g = head(u) + softplus(c)·x + Σ_j softplus(w_j) z_j``, where
    ``z¹ = tanh(softplus(A¹) x + B¹ u + b¹)`` and, for ``layers`` = 2,
    ``z² = tanh(softplus(A²) z¹ + B² u + b²)``. Since tanh is increasing and every weight
    on the x path is non-negative, ∂g/∂x ≥ 0 for every θ and every condition u.

    Args:
        n_cond: number of condition features u (scaled log-rate, temperature); may be 0.
        hidden: width of the hidden layers.
        layers: 1 or 2 hidden layers.
    """

    def __init__(self, n_cond: int = 0, hidden: int = 16, layers: int = 2):
        super().__init__()
        g = torch.Generator().manual_seed(0)

        def p(*shape: int, scale: float = 1.0, shift: float = 0.0) -> nn.Parameter:
            return nn.Parameter(shift + scale * torch.randn(*shape, generator=g, dtype=DTYPE))

        self.n_cond, self.hidden, self.layers = n_cond, hidden, layers
        self.a1 = p(hidden, scale=1.5, shift=1.0)
        self.b1 = p(hidden, scale=1.0, shift=-0.5)
        self.u1 = p(hidden, n_cond, scale=0.3)
        if layers == 2:
            self.a2 = p(hidden, hidden, scale=0.5, shift=-1.5)
            self.b2 = p(hidden, scale=0.5)
            self.u2 = p(hidden, n_cond, scale=0.3)
        self.w = p(hidden, scale=0.5, shift=-2.0)
        self.c = p(1, shift=-3.0)
        self.head_u = p(n_cond, scale=0.1)
        self.head_b = p(1, shift=0.5)

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x: (n,) scaled ε̄_p; u: (n, n_cond) scaled conditions -> (n,) scaled σ_y."""
        z = torch.tanh(softplus(self.a1) * x[:, None] + u @ self.u1.T + self.b1)
        if self.layers == 2:
            z = torch.tanh(z @ softplus(self.a2).T + u @ self.u2.T + self.b2)
        return (z @ softplus(self.w) + softplus(self.c) * x + u @ self.head_u + self.head_b)


class NeuralHardening:
    """A :class:`~scalebridge.surrogates.j2.Hardening` evaluating a MonotoneHardeningNet.

    σ_y = sigma_scale · g((ε̄_p + Δε̄_p)/ep_scale, u), u = scaled [log10 ε̇_p, T] (those in
    ``features``), ε̇_p = max(Δε̄_p/dt, RATE_FLOOR), each u clamped to its trained range
    [feature_min, feature_max] (scaled units).

    Args:
        net: the network. ep_scale: strain scale. sigma_scale: stress scale, MPa.
        features: subset of ("log_rate", "temperature"), in this order.
        feature_mean, feature_std: their scalers. temperature_k: temperature used, K.
    """

    state_names: tuple[str, ...] = ()

    def __init__(self, net: MonotoneHardeningNet, ep_scale: float, sigma_scale: float,
                 features: list[str], feature_mean: list[float], feature_std: list[float],
                 temperature_k: float = 300.0, feature_min: list[float] | None = None,
                 feature_max: list[float] | None = None):
        self.net = net.double().eval()
        self.ep_scale, self.sigma_scale = float(ep_scale), float(sigma_scale)
        self.features = list(features)
        self.feature_mean = torch.tensor(feature_mean, dtype=DTYPE)
        self.feature_std = torch.tensor(feature_std, dtype=DTYPE)
        self.temperature_k = float(temperature_k)
        k = len(self.features)
        self.feature_min = torch.tensor(feature_min if feature_min is not None
                                        else [-np.inf] * k, dtype=DTYPE)
        self.feature_max = torch.tensor(feature_max if feature_max is not None
                                        else [np.inf] * k, dtype=DTYPE)

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def conditions(self, dep: torch.Tensor, dt: torch.Tensor,
                   temperature_k: torch.Tensor | None = None) -> torch.Tensor:
        """(n, n_cond) scaled condition features."""
        cols = []
        for f in self.features:
            if f == "log_rate":
                cols.append(torch.log10(torch.clamp(dep / dt, min=RATE_FLOOR)))
            else:
                t = (temperature_k if temperature_k is not None
                     else torch.full_like(dep, self.temperature_k))
                cols.append(t)
        if not cols:
            return torch.zeros((dep.shape[0], 0), dtype=DTYPE)
        u = (torch.stack(cols, dim=1) - self.feature_mean) / self.feature_std
        # clamped to the trained range: no extrapolation in rate or temperature (the
        # static yield stress is the one at the slowest trained rate)
        return torch.clamp(u, min=self.feature_min, max=self.feature_max)

    def sigma_y(self, ep_total: torch.Tensor, dep: torch.Tensor, dt: torch.Tensor,
                temperature_k: torch.Tensor | None = None) -> torch.Tensor:
        """Differentiable σ_y (MPa), (n,)."""
        u = self.conditions(dep, dt, temperature_k)
        return self.sigma_scale * self.net(ep_total / self.ep_scale, u)

    def yield_stress(self, ep, dep, q, dt):
        with torch.enable_grad():
            d = torch.tensor(dep, dtype=DTYPE, requires_grad=True)
            sy = self.sigma_y(torch.as_tensor(ep, dtype=DTYPE) + d, d,
                              torch.as_tensor(dt, dtype=DTYPE))
            (h,) = torch.autograd.grad(sy.sum(), d)
        return sy.detach().numpy(), h.numpy(), q.copy()


def _warn_out_of_range(model: Any, mask: np.ndarray, what: str) -> None:
    """Log a warning the first time (and whenever more points than before) are flagged."""
    k = int(mask.sum())
    if k > getattr(model, "_warned", 0):
        model._warned = k
        log.warning("%s: %d of %d points outside the training range (%s)",
                    model.name, k, mask.size, what)


class NeuralJ2(J2Plasticity):
    """J2 radial return with a neural hardening law; see the module docstring.

    Args:
        bulk, shear: elastic moduli K, G, MPa (from the data's source: MD or DD settings).
        hardening: the :class:`NeuralHardening`.
        training_range: ``eps_p_eq`` [min, max], ``temperature_k`` [min, max],
            ``plastic_rate_s`` [min, max] as seen in training.
        margin: a point is out of range beyond (1 + margin)·max ε̄_p, outside the
            temperature range widened by margin·span + 10 K, or (rate-dependent models) a
            plastic rate beyond a factor 10 of the trained rates.
    """

    def __init__(self, bulk: float, shear: float, hardening: NeuralHardening,
                 training_range: dict[str, list[float]], name: str = "neural_j2",
                 margin: float = 0.5):
        e = 9.0 * bulk * shear / (3.0 * bulk + shear)
        nu = (3.0 * bulk - 2.0 * shear) / (2.0 * (3.0 * bulk + shear))
        super().__init__(e, nu, hardening, name=name)
        self.neural: NeuralHardening = hardening
        self.training_range = training_range
        self.margin = margin
        self._warned = 0

    @property
    def temperature_k(self) -> float:
        return self.neural.temperature_k

    @temperature_k.setter
    def temperature_k(self, value: float) -> None:
        self.neural.temperature_k = float(value)

    def out_of_range(self, state: np.ndarray, dep: np.ndarray, dt: np.ndarray) -> np.ndarray:
        """(n,) bool: points far outside the training range."""
        r = self.training_range
        bad = state[:, 6] > (1.0 + self.margin) * r["eps_p_eq"][1]
        t0, t1 = r["temperature_k"]
        pad = self.margin * (t1 - t0) + 10.0
        if not (t0 - pad <= self.neural.temperature_k <= t1 + pad):
            bad = np.ones_like(bad)
        if "log_rate" in self.neural.features:
            rate = dep / dt
            lo, hi = r["plastic_rate_s"]
            bad |= (rate > 0) & ((rate < lo / 10.0) | (rate > hi * 10.0))
        return bad

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        res = super().update(strain, dstrain, state, dt)
        dt_arr = np.broadcast_to(np.asarray(dt, dtype=np.float64), (strain.shape[0],))
        mask = self.out_of_range(res.state, res.state[:, 6] - state[:, 6], dt_arr)
        if mask.any():
            _warn_out_of_range(self, mask, f"eps_p_eq up to {res.state[:, 6].max():.3g}, "
                               f"trained to {self.training_range['eps_p_eq'][1]:.3g}; "
                               f"T = {self.temperature_k:g} K")
        res.out_of_range = mask
        return res


class InternalVariableNet(nn.Module):
    """h' = h + f(ε', Δε, h), σ' = s(ε', h'); inputs scaled, (n, ·) tensors.

    Args:
        latent: m, the number of internal variables.
        hidden: width of the two-hidden-layer MLPs f and s.
    """

    def __init__(self, latent: int = 8, hidden: int = 32):
        super().__init__()
        torch.manual_seed(0)
        self.latent = latent
        self.f = nn.Sequential(nn.Linear(12 + latent, hidden), nn.Tanh(),
                               nn.Linear(hidden, hidden), nn.Tanh(),
                               nn.Linear(hidden, latent)).double()
        self.s = nn.Sequential(nn.Linear(6 + latent, hidden), nn.Tanh(),
                               nn.Linear(hidden, hidden), nn.Tanh(),
                               nn.Linear(hidden, 6)).double()

    def forward(self, e: torch.Tensor, de: torch.Tensor, h: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        h_new = h + self.f(torch.cat([e, de, h], dim=-1))
        return self.s(torch.cat([e, h_new], dim=-1)), h_new

    def rollout(self, e: torch.Tensor, de_scale: float) -> torch.Tensor:
        """Scaled stress along scaled strain paths e (P, T+1, 6) -> (P, T+1, 6)."""
        h = torch.zeros((e.shape[0], self.latent), dtype=DTYPE)
        out = [torch.zeros_like(e[:, 0])]
        for k in range(e.shape[1] - 1):
            s, h = self(e[:, k + 1], (e[:, k + 1] - e[:, k]) / de_scale, h)
            out.append(s)
        return torch.stack(out, dim=1)


class RecurrentModel:
    """Fully data-driven path-dependent model (internal-variable network).

    Failure modes, by design of a black box: no objectivity (Mandel components in, so a
    rotated path is a new path unless the training data cover it), no symmetry of the
    tangent, no exact elastic unloading or yield surface, no guarantee that ∮σ:dε ≥ 0,
    drift of the latent state over paths longer than those trained on, and a response that
    depends on the step size (Δε enters scaled by the training step). It must not be used
    outside ``training_range`` (strain norm and step size), where ``out_of_range`` is set.

    Args:
        net: the network. eps_scale: strain scale. de_scale: strain-step scale.
        sigma_scale: stress scale, MPa. training_range: ``strain_norm`` [0, max],
        ``step_norm`` [0, max].
    """

    isotropic = False
    symmetric_tangent = False

    def __init__(self, net: InternalVariableNet, eps_scale: float, de_scale: float,
                 sigma_scale: float, training_range: dict[str, list[float]],
                 name: str = "recurrent", margin: float = 0.25):
        self.net = net.double().eval()
        self.eps_scale, self.de_scale = float(eps_scale), float(de_scale)
        self.sigma_scale = float(sigma_scale)
        self.training_range = training_range
        self.name = name
        self.margin = margin
        self.state_names = tuple(f"h{i}" for i in range(net.latent))
        self._warned = 0

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, self.net.latent))

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        e_new = torch.as_tensor(np.asarray(strain) + np.asarray(dstrain), dtype=DTYPE)
        de = torch.tensor(np.asarray(dstrain, dtype=np.float64), dtype=DTYPE)
        h = torch.as_tensor(np.asarray(state, dtype=np.float64), dtype=DTYPE)
        k_e = 1.0 / self.eps_scale

        def sig(de_i: torch.Tensor, e0_i: torch.Tensor, h_i: torch.Tensor):
            s, h_n = self.net((e0_i + de_i)[None] * k_e, de_i[None] / self.de_scale,
                              h_i[None])
            return s[0] * self.sigma_scale, h_n[0]

        e0 = e_new - de
        with torch.no_grad():
            jac, (s, h_new) = torch.func.vmap(_jac_and_value(sig))(de, e0, h)
        s_np = s.detach().numpy().copy()
        r = self.training_range
        mask = ((np.linalg.norm(e_new.numpy(), axis=1)
                 > (1 + self.margin) * r["strain_norm"][1])
                | (np.linalg.norm(de.numpy(), axis=1) > (1 + self.margin) * r["step_norm"][1]))
        if mask.any():
            _warn_out_of_range(self, mask, "strain or strain step beyond training")
        return ConstitutiveResult(stress=s_np, tangent=jac.detach().numpy().copy(),
                                  state=h_new.detach().numpy().copy(), out_of_range=mask)


def _jac_and_value(f):
    """Per-point (jacobian of f's first output w.r.t. its first argument, f's outputs)."""
    def g(de_i, e0_i, h_i):
        def first(d):
            s, h_n = f(d, e0_i, h_i)
            return s, (s, h_n)
        return torch.func.jacrev(first, has_aux=True)(de_i)
    return g
