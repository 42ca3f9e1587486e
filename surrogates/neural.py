"""Physics-structured learned constitutive model (PyTorch, float64): neural J2.

:class:`NeuralJ2`: the J2 radial return of :class:`~scalebridge.surrogates.j2.J2Plasticity`
with a neural hardening law σ_y = g_θ(ε̄_p, ε̇_p, T) (:class:`MonotoneHardeningNet`,
non-decreasing in ε̄_p and, as fitted now, in log ε̇_p by construction). Elasticity,
yield surface, flow rule, objectivity, symmetry of the tangent and non-negative
dissipation come from the structure; only the hardening curve is learned. The
consistent tangent is the analytic J2 one with H = dg/dΔε̄_p (including the rate term
through ε̇_p = Δε̄_p/dt), evaluated without autograd inside the FEM
(:meth:`NeuralHardening.yield_stress`: a cubic table of σ_y(ε̄_p) where the rate is at
its floor or absent, a bicubic table of σ_y(ε̄_p, log ε̇_p) over the trained rate range
where the rate is live, both built from the network's values and closed-form
derivatives, the network itself past them; training differentiates
:meth:`NeuralHardening.sigma_y` with autograd).
The data-driven comparison, with a learned yield surface too, is
:class:`~scalebridge.surrogates.internal_variable.InternalVariableModel`.

It reports ``out_of_range`` per point (and logs a warning) when asked far outside the
range it was trained on.
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
    """g(x, u) non-decreasing in x (and in the condition ``rate_col`` when given): tanh
    layers with non-negative weights on the x path (and on that condition's path).

    ``g = head(u) + softplus(c)·x + Σ_j softplus(w_j) z_j``, where
    ``z¹ = tanh(softplus(A¹) x + B¹ u + b¹)`` and, for ``layers`` = 2,
    ``z² = tanh(softplus(A²) z¹ + B² u + b²)``. Since tanh is increasing and every weight
    on the x path is non-negative, ∂g/∂x ≥ 0 for every θ and every condition u. With
    ``rate_col`` = r the column r of B¹, B² and the head's weight on u_r are softplus of
    their parameters too, so ∂g/∂u_r ≥ 0 as well: a yield stress non-decreasing in the
    scaled log plastic rate (thermally activated flow has a non-negative strain-rate
    sensitivity; a law softening with rate serrates on constant-rate paths). The other
    conditions (temperature) stay unconstrained.

    Args:
        n_cond: number of condition features u (scaled log-rate, temperature); may be 0.
        hidden: width of the hidden layers.
        layers: 1 or 2 hidden layers.
        rate_col: index in u of the condition g must not decrease in (the scaled
            log-rate), or None (older saved laws: every condition unconstrained). Its
            weights are the parameters ``r1``, ``r2``, ``head_r``; ``u1``, ``u2``,
            ``head_u`` then hold the other n_cond - 1 columns.
        overstress: also hold the two parameters ``eta``, ``xc`` of the nucleation
            overstress (:meth:`NeuralHardening.overstress`); not part of g.
    """

    def __init__(self, n_cond: int = 0, hidden: int = 16, layers: int = 2,
                 rate_col: int | None = None, overstress: bool = False):
        super().__init__()
        if rate_col is not None and not 0 <= rate_col < n_cond:
            raise ValueError(f"rate_col {rate_col} is not one of the {n_cond} conditions")
        g = torch.Generator().manual_seed(0)

        def p(*shape: int, scale: float = 1.0, shift: float = 0.0) -> nn.Parameter:
            return nn.Parameter(shift + scale * torch.randn(*shape, generator=g, dtype=DTYPE))

        self.n_cond, self.hidden, self.layers = n_cond, hidden, layers
        self.rate_col = rate_col
        free = n_cond - (rate_col is not None)
        self.a1 = p(hidden, scale=1.5, shift=1.0)
        self.b1 = p(hidden, scale=1.0, shift=-0.5)
        self.u1 = p(hidden, free, scale=0.3)
        if layers == 2:
            self.a2 = p(hidden, hidden, scale=0.5, shift=-1.5)
            self.b2 = p(hidden, scale=0.5)
            self.u2 = p(hidden, free, scale=0.3)
        self.w = p(hidden, scale=0.5, shift=-2.0)
        self.c = p(1, shift=-3.0)
        self.head_u = p(free, scale=0.1)
        self.head_b = p(1, shift=0.5)
        if rate_col is not None:   # softplus ~0.2 and ~0.05: the scale of u1's and head_u's
            self.r1 = p(hidden, scale=0.5, shift=-1.5)
            if layers == 2:
                self.r2 = p(hidden, scale=0.5, shift=-1.5)
            self.head_r = p(1, shift=-3.0)
        self.overstress = overstress
        if overstress:   # softplus: η ≈ 2.5e-3 (≈ 0.25 % of σ_y at the reference rate),
            # ε_c ≈ 0.2 of the trained ε̄_p: small, so a fit that finds no upper yield
            # point leaves the law as it was
            self.eta = nn.Parameter(torch.tensor([-6.0], dtype=DTYPE))
            self.xc = nn.Parameter(torch.tensor([-1.5], dtype=DTYPE))

    def overstress_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(η, x_c), (1,) each, both > 0 (softplus): the scaled overstress amplitude per
        unit reference rate and its decay length in scaled ε̄_p."""
        return softplus(self.eta), softplus(self.xc)

    def overstress_term(self, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """η·exp(-x/x_c)·r (differentiable), (n,): the scaled overstress at scaled ε̄_p
        ``x`` and plastic rate over the reference rate ``r``, (n,) each."""
        eta, xc = self.overstress_parameters()
        return eta * torch.exp(-x / xc) * r

    def effective(self) -> dict[str, torch.Tensor]:
        """The weights the network applies (differentiable): ``a1``, ``b1``, ``u1``
        (hidden, n_cond), [``a2``, ``b2``, ``u2`` (hidden, n_cond)], ``w``, ``c`` (1,),
        ``head_u`` (n_cond,), ``head_b`` (1,), softplus applied where constrained."""
        w: dict[str, torch.Tensor] = {"a1": softplus(self.a1), "b1": self.b1,
                                      "w": softplus(self.w), "c": softplus(self.c),
                                      "head_b": self.head_b}
        r = self.rate_col
        layer_keys = (("u1", "r1"), ("u2", "r2")) if self.layers == 2 else (("u1", "r1"),)
        if self.layers == 2:
            w["a2"], w["b2"] = softplus(self.a2), self.b2
        for k, kr in layer_keys:
            m = getattr(self, k)
            if r is not None:
                m = torch.cat([m[:, :r], softplus(getattr(self, kr))[:, None], m[:, r:]], dim=1)
            w[k] = m
        h = self.head_u
        if r is not None:
            h = torch.cat([h[:r], softplus(self.head_r), h[r:]])
        w["head_u"] = h
        return w

    def forward(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """x: (n,) scaled ε̄_p; u: (n, n_cond) scaled conditions -> (n,) scaled σ_y."""
        e = self.effective()
        z = torch.tanh(e["a1"] * x[:, None] + u @ e["u1"].T + e["b1"])
        if self.layers == 2:
            z = torch.tanh(z @ e["a2"].T + u @ e["u2"].T + e["b2"])
        return z @ e["w"] + e["c"] * x + u @ e["head_u"] + e["head_b"]


class NeuralHardening:
    """A :class:`~scalebridge.surrogates.j2.Hardening` evaluating a MonotoneHardeningNet.

    σ_y = sigma_scale · g((ε̄_p + Δε̄_p)/ep_scale, u), u = scaled [log10 ε̇_p, T] (those in
    ``features``), ε̇_p = max(Δε̄_p/dt, RATE_FLOOR), each u clamped to its trained range
    [feature_min, feature_max] (scaled units).

    With ``net.overstress`` the law adds the nucleation overstress (:meth:`overstress`)
    σ_n = sigma_scale·η·exp(-x/x_c)·ε̇_p/overstress_rate_s, x = (ε̄_p + Δε̄_p)/ep_scale:
    a viscous stress that fades as plastic strain builds up. It is the upper yield
    point of source-limited plasticity (a crystal with few mobile dislocations: the DD's
    sources fire only after their nucleation time above strength, so the stress rises
    by ~μ·ε̇·t_nuc first, then drops as the emitted dislocations carry the rate; the
    Johnston-Gilman picture, with ε̇_p = ρ_m b v and ρ_m growing with ε̄_p). σ_n ≥ 0,
    zero at Δε̄_p = 0 (the yield check and the static yield stress are the network's),
    and increasing in ε̇_p (no rate softening).

    Args:
        net: the network. ep_scale: strain scale. sigma_scale: stress scale, MPa.
        features: subset of ("log_rate", "temperature"), in this order.
        feature_mean, feature_std: their scalers. temperature_k: temperature used, K.
        overstress_rate_s: the reference plastic rate of the overstress, 1/s (required
            with ``net.overstress``).
    """

    state_names: tuple[str, ...] = ()
    #: Node spacing of the σ_y(ε̄_p) table in scaled ε̄_p (laws without a rate feature);
    #: None or 0: the network itself at every point.
    table_spacing: float | None = 2.0 ** -11
    #: Largest table (nodes); points beyond its reach are evaluated by the network.
    table_max_nodes: int = 2 ** 17
    #: Starting node spacing (scaled ε̄_p, scaled log-rate) of the bicubic table of
    #: g(ε̄_p, log ε̇_p) that serves points with a live rate (:meth:`rate_table`); None:
    #: the network at those points.
    rate_table_spacing: tuple[float, float] | None = (2.0 ** -7, 2.0 ** -5)
    #: Accuracy the rate table must show against the network at its check points, or its
    #: spacing is halved: (value, slopes), relative to the largest value, respectively
    #: each slope's largest (at least 1e-3 of the largest value), over the nodes.
    rate_table_tol: tuple[float, float] = (1e-9, 1e-5)
    #: Largest rate table (cells, 128 bytes each); past it the network serves the points.
    rate_table_max_cells: int = 2 ** 18

    def __init__(self, net: MonotoneHardeningNet, ep_scale: float, sigma_scale: float,
                 features: list[str], feature_mean: list[float], feature_std: list[float],
                 temperature_k: float = 300.0, feature_min: list[float] | None = None,
                 feature_max: list[float] | None = None,
                 overstress_rate_s: float | None = None):
        self.net = net.double().eval()
        if getattr(net, "overstress", False) and not (overstress_rate_s or 0) > 0:
            raise ValueError("a network with the nucleation overstress needs its reference "
                             "rate overstress_rate_s > 0")
        self.overstress_rate_s = overstress_rate_s
        self.ep_scale, self.sigma_scale = float(ep_scale), float(sigma_scale)
        self.features = list(features)
        rc = getattr(net, "rate_col", None)
        # the rate constraint and the closed-form rate derivatives act on column rate_col
        if rc is not None and (rc >= len(self.features) or self.features[rc] != "log_rate"):
            raise ValueError(f"the network is monotone in condition {rc}, but the features "
                             f"are {self.features}: that column must be 'log_rate'")
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
        x = ep_total / self.ep_scale
        sy = self.sigma_scale * self.net(x, u)
        if getattr(self.net, "overstress", False):
            sy = sy + self.sigma_scale * self.net.overstress_term(
                x, dep / dt / self.overstress_rate_s)
        return sy

    def overstress(self, x: np.ndarray, dep: np.ndarray, dt: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The nucleation overstress σ_n and dσ_n/dΔε̄_p (MPa), (n,) each, at scaled
        ε̄_p ``x`` = (ε̄_p + Δε̄_p)/ep_scale, increment ``dep`` and step ``dt`` (s); zeros
        for a law without it."""
        if not getattr(self.net, "overstress", False):
            return np.zeros_like(x), np.zeros_like(x)
        with torch.no_grad():
            eta, xc = (float(t) for t in self.net.overstress_parameters())
        a = self.sigma_scale * eta * np.exp(-x / xc) / (dt * self.overstress_rate_s)
        return a * dep, a * (1.0 - dep / (xc * self.ep_scale))

    def yield_stress(self, ep, dep, q, dt):
        """σ_y and dσ_y/dΔε̄_p (MPa), (n,) each, without autograd: from a cubic Hermite
        table of σ_y(ε̄_p) at the conditions of Δε̄_p = 0 (:meth:`table`; error against
        the network checked by the tests: ~1e-16 of σ_y, ~1e-9 of the slope) wherever
        the conditions are those; else (a rate above its floor) from the bicubic Hermite
        table of σ_y(ε̄_p, log ε̇_p) (:meth:`rate_table`; its error against the network is
        checked when it is built: ≤ 1e-9 of σ_y, ≤ 1e-5 of each slope), and past both
        tables the network and its derivative in closed form (forward mode,
        :meth:`network`)."""
        ep, dep = np.asarray(ep, dtype=np.float64), np.asarray(dep, dtype=np.float64)
        dt = np.broadcast_to(np.asarray(dt, dtype=np.float64), dep.shape)
        x = (ep + dep) / self.ep_scale
        if not (self.table_spacing and x.size):
            sy, h = self._exact(x, dep, dt)
        else:
            sy, h = self._tabulated(x, dep, dt)
        if getattr(self.net, "overstress", False):
            sn, hn = self.overstress(x, dep, dt)
            sy, h = sy + sn, h + hn
        return sy, h, q.copy()

    def _tabulated(self, x: np.ndarray, dep: np.ndarray, dt: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The network's (σ_y, dσ_y/dΔε̄_p), MPa, from the tables where they reach (see
        :meth:`yield_stress`), the network elsewhere."""
        # the table holds σ_y(ε̄_p) at the conditions of Δε̄_p = 0 (rate at its floor);
        # it serves every point whose conditions are those, with no rate term in the
        # slope: all points without a rate feature, else those whose rate is clamped
        # (the yield check at Δε̄_p = 0, for one)
        if "log_rate" not in self.features:
            sy, h, use = self._from_table(x)
            u = du = None
        else:
            u, du = self._conditions_np(dep, dt)
            tab = self.table(0.0)
            use = np.all(u == tab["u0"], axis=1) & np.all(du == 0.0, axis=1)
            sy, h = np.empty_like(x), np.empty_like(x)
            if use.any():
                sy[use], h[use], inside = self._from_table(x[use])
                use[use] = inside
            if self.rate_table_spacing and not use.all():   # live rates: the 2D table
                rest = np.flatnonzero(~use)
                r = self.features.index("log_rate")
                tab2 = self.rate_table(float(np.max(np.where(np.isfinite(x[rest]),
                                                             x[rest], 0.0))))
                if tab2["coef"] is not None:
                    g, gx, gu, inside = self._from_rate_table(x[rest], u[rest, r])
                    k = rest[inside]
                    sy[k] = self.sigma_scale * g[inside]
                    h[k] = self.sigma_scale * (gx[inside] / self.ep_scale
                                               + gu[inside] * du[k, r])
                    use[k] = True
        if not use.all():                         # the network for the others
            out = ~use
            if u is None:
                u, du = self._conditions_np(dep[out], dt[out])
            else:
                u, du = u[out], du[out]
            g, dg = self.network(x[out], u, du, 1.0 / self.ep_scale)
            sy[out], h[out] = self.sigma_scale * g, self.sigma_scale * dg
        return sy, h

    def _exact(self, x: np.ndarray, dep: np.ndarray, dt: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """(σ_y, dσ_y/dΔε̄_p), MPa, from the network at scaled ε̄_p ``x`` (n,)."""
        u, du = self._conditions_np(dep, dt)
        g, dg = self.network(x, u, du, 1.0 / self.ep_scale)
        return self.sigma_scale * g, self.sigma_scale * dg

    def network(self, x: np.ndarray, u: np.ndarray, du: np.ndarray, dx: float
                ) -> tuple[np.ndarray, np.ndarray]:
        """The network g(x, u) (scaled σ_y) and its derivative along a direction, in one
        pass without autograd (forward mode, in-place torch ops on the NumPy buffers):
        x (n,), u (n, n_cond); ``dx`` (scalar) and ``du`` (n, n_cond) are dx/dt and
        du/dt. Returns g, dg/dt, (n,) each."""
        w = self._weights()["torch"]
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
            ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))
            dut = torch.from_numpy(np.ascontiguousarray(du, dtype=np.float64))
            pre = torch.addmm(w["b1"], ut, w["u1"].T).addcmul_(xt[:, None], w["a1"])
            dpre = torch.addmm(w["a1"] * dx, dut, w["u1"].T)
            z = pre.tanh_()
            dz = torch.mul(z, z).neg_().add_(1.0).mul_(dpre)
            if self.net.layers == 2:
                pre = torch.addmm(w["b2"], z, w["a2"].T).addmm_(ut, w["u2"].T)
                dpre = torch.mm(dz, w["a2"].T).addmm_(dut, w["u2"].T)
                z = pre.tanh_()
                dz = torch.mul(z, z).neg_().add_(1.0).mul_(dpre)
            g = (torch.mv(z, w["w"]).add_(xt, alpha=w["c"]).add_(torch.mv(ut, w["head_u"]))
                 .add_(w["head_b"]))
            dg = torch.mv(dz, w["w"]).add_(w["c"] * dx).add_(torch.mv(dut, w["head_u"]))
        return g.numpy(), dg.numpy()

    def yield_stress_floor(self) -> float:
        """σ_y at ε̄_p = 0 and Δε̄_p = 0 (MPa): no point has less, the network being
        non-decreasing in ε̄_p for every condition (the rate feature is at its floor).
        The table's first node when there is one (the network's value there)."""
        if self.table_spacing:
            return self.sigma_scale * float(self.table(0.0)["coef"][0, 0])
        sy, _ = self._exact(np.zeros(1), np.zeros(1), np.ones(1))
        return float(sy[0])

    def table(self, x_max: float) -> dict[str, Any]:
        """The cubic Hermite table of g(x, u0), u0 the conditions at Δε̄_p = 0 (the set
        temperature, the rate at its floor), on [0, ≥ x_max] with spacing
        :attr:`table_spacing` (scaled ε̄_p), built from the network's values and slopes
        at the nodes; rebuilt when the weights or the temperature change, or a point lies
        beyond it (doubling, up to :attr:`table_max_nodes` nodes). Keys: ``h``,
        ``x_max``, ``u0``, ``coef`` (nodes-1, 4): g = c0 + s(c1 + s(c2 + s c3)) at
        s = x/h - i in interval i."""
        key = (self._weights_key(), self.temperature_k)
        tab = getattr(self, "_table", None)
        if tab is not None and tab["key"] == key and (
                x_max <= tab["x_max"] or len(tab["coef"]) + 1 >= self.table_max_nodes):
            return tab
        h = float(self.table_spacing)
        reach = max(x_max, tab["x_max"] if tab is not None and tab["key"] == key else 1.0)
        nodes = min(int(2 ** np.ceil(np.log2(reach / h + 1))), self.table_max_nodes)
        xn = h * np.arange(nodes)
        u, du = self._conditions_np(np.zeros(nodes), np.ones(nodes))
        y, d = self.network(xn, u, du, 1.0)
        d = d * h
        y0, y1, d0, d1 = y[:-1], y[1:], d[:-1], d[1:]
        coef = np.stack([y0, d0, 3 * (y1 - y0) - 2 * d0 - d1, 2 * (y0 - y1) + d0 + d1], axis=1)
        self._table = {"key": key, "h": h, "x_max": float(xn[-1]), "coef": coef, "u0": u[0]}
        return self._table

    def _from_table(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(σ_y, dσ_y/dΔε̄_p, inside the table), (n,) each."""
        finite = np.isfinite(x)
        tab = self.table(float(np.max(np.where(finite, x, 0.0))))
        t = np.where(finite, x, 0.0) / tab["h"]
        i = np.clip(t, 0, len(tab["coef"]) - 1).astype(np.int64)
        s = t - i
        c = tab["coef"][i]
        g = c[:, 0] + s * (c[:, 1] + s * (c[:, 2] + s * c[:, 3]))
        dg = (c[:, 1] + s * (2.0 * c[:, 2] + 3.0 * s * c[:, 3])) / tab["h"]
        inside = (x >= 0.0) & (x <= tab["x_max"])
        return self.sigma_scale * g, (self.sigma_scale / self.ep_scale) * dg, inside

    def network_rate_d2(self, x: np.ndarray, u: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The network g(x, u) and its derivatives ∂g/∂x, ∂g/∂u_r and ∂²g/∂x∂u_r (u_r the
        scaled log-rate column), in closed form (forward mode over forward mode, NumPy):
        x (n,), u (n, n_cond) -> four (n,) arrays. The nodes of :meth:`rate_table`."""
        w = self._weights()["torch"]
        r = self.features.index("log_rate")
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64))
            ut = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float64))
            px, pr = w["a1"], w["u1"][:, r]
            z = torch.addmm(w["b1"], ut, w["u1"].T).addcmul_(xt[:, None], px).tanh_()
            s = torch.mul(z, z).neg_().add_(1.0)
            zx, zr = s * px, s * pr
            zxr = (z * s).mul_(-2.0 * px * pr)
            if self.net.layers == 2:
                a2t = w["a2"].T
                p2x, p2r, p2xr = zx @ a2t, torch.addmm(w["u2"][:, r], zr, a2t), zxr @ a2t
                z = torch.addmm(w["b2"], z, a2t).addmm_(ut, w["u2"].T).tanh_()
                s = torch.mul(z, z).neg_().add_(1.0)
                zxr = p2xr.mul_(s).sub_((z * s).mul_(p2x).mul_(p2r).mul_(2.0))
                zx, zr = p2x.mul_(s), p2r.mul_(s)
            ww = w["w"]
            g = (torch.mv(z, ww).add_(xt, alpha=w["c"]).add_(torch.mv(ut, w["head_u"]))
                 .add_(w["head_b"]))
            gx = torch.mv(zx, ww).add_(w["c"])
            gr = torch.mv(zr, ww).add_(w["head_u"][r])
            gxr = torch.mv(zxr, ww)
        return g.numpy(), gx.numpy(), gr.numpy(), gxr.numpy()

    def rate_table(self, x_max: float) -> dict[str, Any]:
        """The bicubic Hermite table of g(x, u_r) over x ∈ [0, ≥ x_max] (scaled ε̄_p) and
        the trained range of the scaled log-rate u_r (the conditions are clamped to it),
        other conditions at the set temperature: from the network's g, ∂g/∂x, ∂g/∂u_r and
        ∂²g/∂x∂u_r at the nodes (:meth:`network_rate_d2`), so σ_y and both slopes are
        continuous. Built with :attr:`rate_table_spacing`, then checked against the
        network at midpoints along x on u node lines (the x interpolation's error alone),
        along u on x node lines and at random points (8192 each, or one per cell); the
        spacing of the direction that misses is halved (both, if only the random points
        miss) until the errors are within :attr:`rate_table_tol`. The reach is a power of
        two (at least 1/8), doubled when a point lies beyond it (the nodes already
        computed are kept); a table that would need more than
        :attr:`rate_table_max_cells` is not built (``full``: the one before stays, the
        network serves past it; ``coef`` None if there is none). Rebuilt when the
        weights, the temperature or the feature ranges change. Keys:
        ``hx``, ``hu``, ``u_lo``, ``u_hi``, ``nx``, ``nu`` (nodes), ``x_max``, ``node``
        (nx, nu, 4): g, h_x g_x, h_u g_u, h_x h_u g_xu, ``coef``
        (cells, 16): g = Σ_kl c_kl s^k t^l at the cell's local s, t ∈ [0, 1], row-major
        cells (i along x, j along u), ``error`` (value, slope) measured, ``full``."""
        key = (self._weights_key(), self.temperature_k, self.rate_table_spacing,
               self.rate_table_tol, self.rate_table_max_cells,
               tuple(self.feature_min.tolist()), tuple(self.feature_max.tolist()))
        old = getattr(self, "_rate_table", None)
        old = old if old is not None and old["key"] == key else None
        if old is not None and (x_max <= old["x_max"] or old["full"]):
            return old
        r = self.features.index("log_rate")
        lo, hi = float(self.feature_min[r]), float(self.feature_max[r])
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):   # unbounded: network
            self._rate_table = {"key": key, "coef": None, "x_max": -1.0, "full": True,
                                "error": None}
            return self._rate_table
        reach = 2.0 ** np.ceil(np.log2(max(x_max, 0.125)))
        if old is not None and old["coef"] is not None:   # grow from the spacing it has
            reach = max(reach, 2.0 * old["x_max"])
            hx, hu = old["hx"], old["hu_start"]
        else:
            hx, hu = self.rate_table_spacing  # type: ignore[misc]
        rng = np.random.default_rng(0)
        while True:
            nx = int(np.ceil(reach / hx)) + 1
            nu = max(int(np.ceil((hi - lo) / hu)), 1) + 1
            if (nx - 1) * (nu - 1) > self.rate_table_max_cells:
                log.debug("rate table: %d x %d nodes needed, over the limit; the network "
                          "serves live rates past x = %s", nx, nu,
                          old["x_max"] if old is not None else 0.0)
                full = old if old is not None else {"key": key, "coef": None,
                                                    "x_max": -1.0, "error": None}
                full["full"] = True
                self._rate_table = full
                return full
            hu_eff = (hi - lo) / (nu - 1)
            xn, un = hx * np.arange(nx), lo + hu_eff * np.arange(nu)
            # the nodes of a smaller table at the same spacing are these nodes' first rows
            keep = (old["nx"] if old is not None and old["coef"] is not None
                    and old["hx"] == hx and old["nu"] == nu else 0)
            d = self._rate_nodes(np.repeat(xn[keep:], nu), np.tile(un, nx - keep))
            node = np.empty((nx, nu, 4))
            node[keep:] = np.stack([d[0], d[1] * hx, d[2] * hu_eff, d[3] * hx * hu_eff],
                                   axis=1).reshape(nx - keep, nu, 4)
            if keep:
                node[:keep] = old["node"]
            g, gx, gu = (node[..., k] for k in range(3))
            gx, gu = gx / hx, gu / hu_eff
            tab = {"key": key, "hx": hx, "hu": hu_eff, "hu_start": hu, "u_lo": lo,
                   "u_hi": hi, "nx": nx, "nu": nu, "x_max": float(xn[-1]), "full": False,
                   "node": node, "coef": _bicubic_coefficients(node)}
            # check against the network: midpoints along x on the u node lines (the x
            # interpolation's error alone), along u on the x node lines, random points
            m = min(8192, (nx - 1) * (nu - 1))
            i, j = rng.integers(0, nx - 1, m), rng.integers(0, nu - 1, m)
            sets = ((hx * (i + 0.5), lo + hu_eff * j), (hx * i, lo + hu_eff * (j + 0.5)),
                    (rng.random(m) * xn[-1], lo + rng.random(m) * (hi - lo)))
            vscale = max(float(np.abs(g).max()), 1e-300)
            dscale = [max(float(np.abs(d).max()), 1e-3 * vscale) for d in (gx, gu)]
            errs = []
            for xc, uc in sets:
                ref = self._rate_nodes(xc, uc)[:3]
                got = self._from_rate_table(xc, uc, tab)[:3]
                errs.append((float(np.abs(got[0] - ref[0]).max()) / vscale, max(
                    float(np.abs(a - b).max()) / d
                    for a, b, d in zip(got[1:], ref[1:], dscale, strict=True))))
            tab["error"] = tuple(max(e[k] for e in errs) for k in range(2))
            bad = [e[0] > self.rate_table_tol[0] or e[1] > self.rate_table_tol[1]
                   for e in errs]
            if not any(bad):
                self._rate_table = tab
                return tab
            fine_x, fine_u = (bad[0], bad[1]) if bad[0] or bad[1] else (True, True)
            hx, hu = hx / (2 if fine_x else 1), hu / (2 if fine_u else 1)

    def _rate_nodes(self, x: np.ndarray, ur: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`network_rate_d2` at scaled ε̄_p ``x`` and scaled log-rate ``ur`` (n,),
        the other conditions those at Δε̄_p = 0 (the set temperature), in chunks."""
        u0, _ = self._conditions_np(np.zeros(1), np.ones(1))
        r = self.features.index("log_rate")
        out = [np.empty_like(x) for _ in range(4)]
        for a in range(0, x.size, 65536):
            b = min(a + 65536, x.size)
            u = np.repeat(u0, b - a, axis=0)
            u[:, r] = ur[a:b]
            for o, v in zip(out, self.network_rate_d2(x[a:b], u), strict=True):
                o[a:b] = v
        return out[0], out[1], out[2], out[3]

    def _from_rate_table(self, x: np.ndarray, ur: np.ndarray,
                         tab: dict[str, Any] | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(g, ∂g/∂x, ∂g/∂u_r, inside the table), (n,) each, from ``tab`` (default: the
        current :meth:`rate_table`) at scaled ε̄_p ``x`` and scaled log-rate ``ur``."""
        tab = tab if tab is not None else self._rate_table
        inside = ((x >= 0.0) & (x <= tab["x_max"]) & (ur >= tab["u_lo"])
                  & (ur <= tab["u_hi"]))
        tx = np.where(inside, x, 0.0) / tab["hx"]
        tu = (np.where(inside, ur, tab["u_lo"]) - tab["u_lo"]) / tab["hu"]
        i = np.clip(tx.astype(np.int64), 0, tab["nx"] - 2)
        j = np.clip(tu.astype(np.int64), 0, tab["nu"] - 2)
        s, t = tx - i, tu - j
        c = np.take(tab["coef"], i * (tab["nu"] - 1) + j, axis=0).T.copy()   # (16, n)
        a = [c[4 * k] + t * (c[4 * k + 1] + t * (c[4 * k + 2] + t * c[4 * k + 3]))
             for k in range(4)]                                 # Σ_l c_kl t^l
        b = [c[4 * k + 1] + t * (2.0 * c[4 * k + 2] + 3.0 * t * c[4 * k + 3])
             for k in range(4)]                                 # Σ_l l c_kl t^(l-1)
        g = a[0] + s * (a[1] + s * (a[2] + s * a[3]))
        gs = a[1] + s * (2.0 * a[2] + 3.0 * s * a[3])
        gt = b[0] + s * (b[1] + s * (b[2] + s * b[3]))
        return g, gs / tab["hx"], gt / tab["hu"], inside

    def _weights_key(self) -> tuple[tuple[int, int], ...]:
        """Identity and in-place version of every parameter (changes when trained)."""
        return tuple((id(t), t._version) for t in self.net.parameters())

    def _weights(self) -> dict[str, Any]:
        """The network's effective weights (softplus applied) as NumPy arrays, and torch
        views of them under ``"torch"``; recomputed when a parameter changed in place
        (training, load_state_dict)."""
        key = self._weights_key()
        if getattr(self, "_wkey", None) != key:
            with torch.no_grad():
                w = {k: t.detach().numpy().copy() for k, t in self.net.effective().items()}
            w["c"], w["head_b"] = float(w["c"][0]), float(w["head_b"][0])
            w["torch"] = {k: v if isinstance(v, float) else torch.from_numpy(v)
                          for k, v in w.items()}
            self._wcache, self._wkey = w, key
        return self._wcache

    def _conditions_np(self, dep: np.ndarray, dt: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`conditions` in NumPy at the attribute temperature, and d u/d Δε̄_p:
        (n, n_cond) each (the rate column's derivative is 0 where the rate or the feature
        is clamped, as autograd's)."""
        n, k = dep.shape[0], len(self.features)
        u, du = np.empty((n, k)), np.zeros((n, k))
        mean, std = self.feature_mean.numpy(), self.feature_std.numpy()
        lo, hi = self.feature_min.numpy(), self.feature_max.numpy()
        for j, f in enumerate(self.features):
            if f == "log_rate":
                rate = dep / dt
                live = rate >= RATE_FLOOR
                raw = (np.log10(np.maximum(rate, RATE_FLOOR)) - mean[j]) / std[j]
                with np.errstate(divide="ignore"):
                    d = np.where(live, 1.0 / (np.log(10.0) * std[j] * np.where(live, dep, 1.0)),
                                 0.0)
            else:
                raw = np.full(n, (self.temperature_k - mean[j]) / std[j])
                d = np.zeros(n)
            u[:, j] = np.clip(raw, lo[j], hi[j])
            du[:, j] = np.where((raw >= lo[j]) & (raw <= hi[j]), d, 0.0)
        return u, du


#: Power-basis coefficients of a cubic on [0, 1] from [value(0), value(1), slope(0),
#: slope(1)]: c = _HERMITE @ [v0, v1, d0, d1].
_HERMITE = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [-3.0, 3.0, -2.0, -1.0],
                     [2.0, -2.0, 1.0, 1.0]])


def _bicubic_coefficients(node: np.ndarray) -> np.ndarray:
    """Per-cell power coefficients (cells, 16) of the bicubic Hermite interpolant from
    node data (nx, nu, 4) = [g, h_x g_x, h_u g_u, h_x h_u g_xu]: c_kl (row-major k, l) with
    g = Σ c_kl s^k t^l in local cell coordinates s, t ∈ [0, 1]."""
    nx, nu = node.shape[:2]
    f = np.empty((nx - 1, nu - 1, 4, 4))
    for a, si in enumerate((slice(None, -1), slice(1, None))):       # s: value rows
        for b, sj in enumerate((slice(None, -1), slice(1, None))):   # t: value columns
            v = node[si, sj]
            f[:, :, a, b] = v[..., 0]           # g
            f[:, :, 2 + a, b] = v[..., 1]       # h_x g_x
            f[:, :, a, 2 + b] = v[..., 2]       # h_u g_u
            f[:, :, 2 + a, 2 + b] = v[..., 3]   # h_x h_u g_xu
    return (_HERMITE @ f @ _HERMITE.T).reshape(-1, 16)


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

    def out_of_range(self, state: np.ndarray, dep: np.ndarray, dt: np.ndarray,
                     ep_old: np.ndarray | None = None) -> np.ndarray:
        """(n,) bool: points far outside the training range. ``ep_old`` (n,): ε̄_p at the
        start of the step; where it is 0 the point yields within this step, and its
        step-mean plastic rate Δε̄_p/dt is diluted by the elastic part of the step (at an
        elastic-plastic front it can be any fraction of the rate after yield), so only a
        rate above the trained range is flagged there."""
        r = self.training_range
        bad = state[:, 6] > (1.0 + self.margin) * r["eps_p_eq"][1]
        t0, t1 = r["temperature_k"]
        pad = self.margin * (t1 - t0) + 10.0
        if not (t0 - pad <= self.neural.temperature_k <= t1 + pad):
            bad = np.ones_like(bad)
        if "log_rate" in self.neural.features:
            rate = dep / dt
            lo, hi = r["plastic_rate_s"]
            slow = rate < lo / 10.0
            if ep_old is not None:
                slow &= ep_old > 0
            bad |= (rate > 0) & (slow | (rate > hi * 10.0))
        return bad

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        res = super().update(strain, dstrain, state, dt)
        dt_arr = np.broadcast_to(np.asarray(dt, dtype=np.float64), (strain.shape[0],))
        mask = self.out_of_range(res.state, res.state[:, 6] - state[:, 6], dt_arr,
                                 state[:, 6])
        if mask.any():
            _warn_out_of_range(self, mask, f"eps_p_eq up to {res.state[:, 6].max():.3g}, "
                               f"trained to {self.training_range['eps_p_eq'][1]:.3g}; "
                               f"T = {self.temperature_k:g} K")
        res.out_of_range = mask
        return res
