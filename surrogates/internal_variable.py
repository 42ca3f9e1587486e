"""Data-driven internal-variable model: a learned convex yield surface and learned hardening.

The fully data-driven comparison to :class:`~scalebridge.surrogates.neural.NeuralJ2`. It
assumes no yield criterion: the shape of the yield surface, the hardening curve and the
rates of its latent variables are all fitted to the stress along whole strain paths. The
structure (not the numbers) is that of an associative internal-variable model, which is
what makes it pass every check of :func:`~scalebridge.surrogates.checks.check_constitutive`::

    σ = C : (ε - ε_p)                       isotropic elastic C from the data's moduli
    f(σ, λ) = φ_θ(σ) - r_θ(h(λ)) ≤ 0        learned yield function
    Δε_p = Δλ ∂φ_θ/∂σ,  Δλ ≥ 0,  f = 0       associative flow, Newton return map
    h_i(λ) = 1 - exp(-b_i λ)                 latent variables, dh/dλ = b ⊙ (1 - h) ≥ 0

- φ_θ(σ) = Σ_k α_k g_k(s) (α = softmax(w) ≥ 0, Σ α = 1) is an input-convex combination
  of a dictionary of convex, isotropic, positively homogeneous gauges of the stress
  deviator s, each normalised to g_k = σ in uniaxial tension: von Mises, Hosford
  (Σ_{i<j}|s_i - s_j|^a)^{1/a} for a = 6, 8, 12, 20 (towards Tresca, shear/tension
  yield ratio → 0.5) and Schatten norms (Σ|s_i|^p)^{1/p} for p = 6, 8, 12, 20 (towards the
  circumscribed hexagon, ratio → 2/3). Each is a polynomial in the invariants J2, J3
  (Newton's identities), so φ, its gradient and its Hessian are closed-form, smooth and
  need no eigen-decomposition. Hence φ is convex (a closed, convex elastic domain),
  objective and isotropic, pressure-insensitive, and σ:∂φ/∂σ = φ (Euler).
- r_θ(λ) = r_scale [softplus(c0) + softplus(c1) λ/λ_s + Σ_i softplus(q_i) h_i
  + Σ_j softplus(v_j)(tanh(Σ_i softplus(A_ji) h_i + a_j) - tanh(a_j))]: positive and
  non-decreasing in every h_i, and every h_i is non-decreasing in λ, so the hardening
  modulus H = dr/dΔλ ≥ 0 for every θ. The latent ODE is integrated exactly over a step.
- λ is stored as ``eps_p_eq``: with φ homogeneous of degree one and normalised to
  uniaxial tension, σ:Δε_p = r Δλ, so λ is the work-equivalent plastic strain (the von
  Mises ε̄_p when φ is von Mises).

Consequences: unloading inside the surface is exactly elastic, ∮σ:dε ≥ 0 (convexity and
Δλ ≥ 0), and the consistent tangent
``C_alg = Ξ - (Ξn)⊗(Ξn)/(n:Ξ:n + H)``, ``Ξ = (C⁻¹ + Δλ ∂²φ/∂σ²)⁻¹`` is symmetric.
Training replays the training paths through the return map (Newton without gradients,
then one Newton correction carrying the graph: the implicit-function-theorem derivative).
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import torch
from scalebridge.surrogates import mandel
from scalebridge.surrogates.j2 import PLASTIC_STATE_NAMES
from scalebridge.surrogates.protocol import ConstitutiveResult, step_inputs
from torch import nn
from torch.nn.functional import softplus

log = logging.getLogger("scalebridge.surrogates")

DTYPE = torch.float64
#: |J3| / J2^{3/2} in uniaxial tension, the largest it can be.
ETA_MAX = 2.0 * math.sqrt(3.0) / 9.0


def _product_tensor() -> np.ndarray:
    """(6, 6, 6) T with mandel(AB + BA) = T[:, j, k] a_j b_k for Mandel a, b."""
    t = np.zeros((6, 6, 6))
    eye = np.eye(6)
    for j, k in itertools.product(range(6), range(6)):
        a, b = mandel.to_tensor(eye[j]), mandel.to_tensor(eye[k])
        t[:, j, k] = mandel.from_tensor(a @ b + b @ a)
    return t


def _pmul(a: dict, b: dict) -> dict:
    out: dict[tuple[int, int], float] = {}
    for (i1, j1), c1 in a.items():
        for (i2, j2), c2 in b.items():
            key = (i1 + i2, j1 + j2)
            out[key] = out.get(key, 0.0) + c1 * c2
    return out


def _padd(a: dict, b: dict, scale: float = 1.0) -> dict:
    out = dict(a)
    for k, c in b.items():
        out[k] = out.get(k, 0.0) + scale * c
    return out


def _power_sums(m: int) -> list[dict]:
    """tr(s^k), k = 0..m, of a traceless 3x3 s as polynomials {(i, j): c} in J2^i J3^j
    (Newton's identities: p_k = J2 p_{k-2} + J3 p_{k-3})."""
    p: list[dict] = [{(0, 0): 3.0}, {}, {(1, 0): 2.0}]
    for k in range(3, m + 1):
        p.append(_padd(_pmul({(1, 0): 1.0}, p[k - 2]), _pmul({(0, 1): 1.0}, p[k - 3])))
    return p


def _eta_coefficients(poly: dict, m: int) -> np.ndarray:
    """A weight-m polynomial P(J2, J3) as Q(η) = P / J2^{m/2}, η = J3 / J2^{3/2}:
    ascending coefficients of η."""
    q = np.zeros(max(j for _, j in poly) + 1 if poly else 1)
    for (i, j), c in poly.items():
        assert 2 * i + 3 * j == m
        q[j] += c
    return q


def gauge_dictionary() -> list[tuple[str, int, np.ndarray]]:
    """(name, degree m, ascending coefficients of Q(η)) of the convex gauges
    g = √(3 J2) (Q(η)/Q(η_max))^{1/m}."""
    p = _power_sums(20)
    out = [("von_mises", 2, _eta_coefficients(p[2], 2))]
    for a in (6, 8, 12, 20):  # Hosford: ½ Σ_ij (s_i - s_j)^a = ½ Σ_k C(a,k)(-1)^k p_{a-k} p_k
        h: dict = {}
        for k in range(a + 1):
            h = _padd(h, _pmul(p[a - k], p[k]), 0.5 * math.comb(a, k) * (-1) ** k)
        out.append((f"hosford{a}", a, _eta_coefficients(h, a)))
    for q in (6, 8, 12, 20):  # Schatten q-norm of the deviator: tr(s^q)
        out.append((f"schatten{q}", q, _eta_coefficients(p[q], q)))
    return out


class YieldHardeningNet(nn.Module):
    """The learned functions: the yield gauge φ_θ(σ) and the hardening r_θ(λ).

    Args:
        latent: number of latent hardening variables h (their rates b_i are learned).
        hidden: width of the monotone tanh layer of r_θ.
        r_scale: stress scale, MPa. lam_scale: plastic-strain scale.
        r0: initial guess of the initial yield stress, MPa.
    """

    def __init__(self, latent: int = 8, hidden: int = 16, r_scale: float = 1.0,
                 lam_scale: float = 1.0, r0: float = 0.5):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        gauges = gauge_dictionary()
        self.gauge_names = [nm for nm, _, _ in gauges]
        self.latent, self.hidden = latent, hidden
        self.r_scale, self.lam_scale = float(r_scale), float(lam_scale)
        deg = max(len(c) for _, _, c in gauges)
        coef = np.zeros((len(gauges), deg))
        for k, (_, _, c) in enumerate(gauges):
            coef[k, :len(c)] = c
        self.register_buffer("coef", torch.tensor(coef, dtype=DTYPE))
        self.register_buffer("degree", torch.tensor([m for _, m, _ in gauges], dtype=DTYPE))
        qmax = np.array([np.polyval(c[::-1], ETA_MAX) for _, _, c in gauges])
        self.register_buffer("qmax", torch.tensor(qmax, dtype=DTYPE))
        self.register_buffer("t6", torch.tensor(_product_tensor(), dtype=DTYPE))
        self.register_buffer("pdev", torch.tensor(mandel.P_DEV, dtype=DTYPE))
        self.register_buffer("i2", torch.tensor(mandel.I2, dtype=DTYPE))

        def p(*shape: int, scale: float = 0.0, shift: float = 0.0) -> nn.Parameter:
            return nn.Parameter(shift + scale * torch.randn(*shape, generator=g, dtype=DTYPE))

        def isp(x: float) -> float:  # inverse softplus
            return float(np.log(np.expm1(x)))

        self.w = p(len(gauges))  # yield-shape logits: uniform mixture to start
        rates = np.logspace(0.0, 2.5, latent)  # b_i λ_s from 1 to ~300
        self.beta = nn.Parameter(torch.tensor([isp(b) for b in rates], dtype=DTYPE))
        self.c0 = nn.Parameter(torch.tensor([isp(max(r0 / self.r_scale, 1e-3))], dtype=DTYPE))
        self.c1 = p(1, shift=-4.0)
        self.q = p(latent, scale=0.2, shift=isp(0.3 / latent))
        self.a_h = p(hidden, latent, scale=0.5, shift=-1.0)
        self.a_b = p(hidden, scale=1.0)
        self.v = p(hidden, scale=0.3, shift=-4.0)

    # -- yield gauge ---------------------------------------------------------------------
    def shape_weights(self) -> torch.Tensor:
        """(K,) α ≥ 0 with Σ α = 1 over the gauge dictionary."""
        return torch.softmax(self.w, dim=0)

    def _g(self, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """G(η) = Σ α_k (Q_k(η)/Q_k(η_max))^{1/m_k} and its first two derivatives, (n,)."""
        k = self.coef.shape[1]
        pw = eta[:, None] ** torch.arange(k, dtype=DTYPE)  # (n, k)
        jj = torch.arange(k, dtype=DTYPE)
        q = pw @ self.coef.T  # (n, K)
        dq = (pw[:, :-1] * jj[1:]) @ self.coef[:, 1:].T
        d2q = (pw[:, :-2] * (jj[2:] * (jj[2:] - 1))) @ self.coef[:, 2:].T
        m = self.degree
        gk = (q / self.qmax) ** (1.0 / m)
        u = dq / (m * q)
        dg = gk * u
        d2g = gk * (u * u + d2q / (m * q) - dq * dq / (m * q * q))
        a = self.shape_weights()
        return gk @ a, dg @ a, d2g @ a

    def gauge(self, sig: torch.Tensor, hessian: bool = True
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """φ (n,) MPa, ∂φ/∂σ (n, 6), ∂²φ/∂σ² (n, 6, 6) 1/MPa of Mandel stresses (n, 6)."""
        i2 = self.i2
        s = sig - sig[:, :3].sum(dim=1, keepdim=True) / 3.0 * i2
        l6 = torch.einsum("ijk,nj->nik", self.t6, s)  # X -> sX + Xs
        sq = 0.5 * torch.einsum("nik,nk->ni", l6, s)  # s·s
        t = sq - sq[:, :3].sum(dim=1, keepdim=True) / 3.0 * i2  # ∂J3/∂σ = dev(s²)
        j2 = torch.clamp(0.5 * (s * s).sum(dim=1), min=1e-30)
        j3 = (s * sq).sum(dim=1) / 3.0
        eta = torch.clamp(j3 * j2 ** -1.5, -ETA_MAX, ETA_MAX)
        g0, g1, g2 = self._g(eta)
        a = torch.sqrt(3.0 * j2)
        a_u = a / (2.0 * j2)
        e_u, e_v = -1.5 * eta / j2, j2 ** -1.5
        phi = a * g0
        f_u = a_u * g0 + a * g1 * e_u
        f_v = a * g1 * e_v
        n = f_u[:, None] * s + f_v[:, None] * t
        if not hessian:
            return phi, n, None
        a_uu = -a / (4.0 * j2 * j2)
        e_uu, e_uv = 3.75 * eta / (j2 * j2), -1.5 * j2 ** -2.5
        f_uu = a_uu * g0 + 2.0 * a_u * g1 * e_u + a * (g2 * e_u * e_u + g1 * e_uu)
        f_uv = a_u * g1 * e_v + a * (g2 * e_u * e_v + g1 * e_uv)
        f_vv = a * g2 * e_v * e_v
        st = torch.einsum("ni,nj->nij", s, t)
        hess = (f_uu[:, None, None] * torch.einsum("ni,nj->nij", s, s)
                + f_uv[:, None, None] * (st + st.transpose(1, 2))
                + f_vv[:, None, None] * torch.einsum("ni,nj->nij", t, t)
                + f_u[:, None, None] * self.pdev
                + f_v[:, None, None] * (self.pdev @ l6 @ self.pdev))
        return phi, n, hess

    # -- hardening -----------------------------------------------------------------------
    def rates(self) -> torch.Tensor:
        """(m,) b_i of the latent variables, per unit λ."""
        return softplus(self.beta) / self.lam_scale

    def hardening(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """r (n,) MPa and H = dr/dλ (n,) MPa at accumulated λ (n,)."""
        b = self.rates()
        e = torch.exp(-lam[:, None] * b)
        h = 1.0 - e  # exact solution of dh/dλ = b (1 - h), h(0) = 0
        ah = softplus(self.a_h)
        z = torch.tanh(h @ ah.T + self.a_b)
        v = softplus(self.v)
        qv = softplus(self.q)
        c1 = softplus(self.c1) / self.lam_scale
        r = (softplus(self.c0) + c1 * lam + h @ qv
             + (z - torch.tanh(self.a_b)) @ v)
        dr_dh = qv + ((1.0 - z * z) * v) @ ah  # (n, m)
        hmod = c1 + (dr_dh * (b * e)).sum(dim=1)
        return self.r_scale * r, self.r_scale * hmod

    def forward(self, sig: torch.Tensor, lam: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(φ(σ), r(λ)), both (n,) MPa: the yield function is φ - r."""
        return self.gauge(sig, hessian=False)[0], self.hardening(lam)[0]


class InternalVariableModel:
    """Data-driven internal-variable constitutive model; see the module docstring.

    State per point (m = 7): Mandel plastic strain (6), then λ as ``eps_p_eq``.

    Args:
        net: the learned :class:`YieldHardeningNet`.
        bulk, shear: elastic moduli K, G, MPa (from the data's source).
        training_range: ``eps_p_eq`` [0, max λ] and ``strain_norm`` [0, max |ε|] seen in
            training.
        margin: a point is out of range beyond (1 + margin) times either maximum.
        tol: return-map convergence, relative to r.
    """

    isotropic = True
    symmetric_tangent = True

    def __init__(self, net: YieldHardeningNet, bulk: float, shear: float,
                 training_range: dict[str, list[float]], name: str = "internal_variable",
                 margin: float = 0.5, tol: float = 1e-12):
        self.net = net.double().eval()
        for prm in self.net.parameters():
            prm.requires_grad_(False)
        self.bulk, self.shear = float(bulk), float(shear)
        c = mandel.isotropic_stiffness(self.bulk, self.shear)
        self.stiffness = c
        self.c_t = torch.tensor(c, dtype=DTYPE)
        self.s_t = torch.tensor(np.linalg.inv(c), dtype=DTYPE)
        self.training_range = training_range
        self.name = name
        self.margin = margin
        self.tol = tol
        self.state_names = PLASTIC_STATE_NAMES
        self._warned = 0

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 7))

    def _residual(self, sig: torch.Tensor, dl: torch.Tensor, sig_tr: torch.Tensor,
                  lam: torch.Tensor, hessian: bool) -> tuple[torch.Tensor, ...]:
        """R_σ = C⁻¹(σ - σ_tr) + Δλ ∂φ/∂σ (k, 6), R_f = φ - r (k,) MPa, then ∂φ/∂σ,
        ∂²φ/∂σ² (or None), r and H at (σ (k, 6), Δλ (k,)) from λ_n (k,)."""
        phi, nv, hs = self.net.gauge(sig, hessian)
        r, hm = self.net.hardening(lam + dl)
        r1 = (sig - sig_tr) @ self.s_t.T + dl[:, None] * nv
        return r1, phi - r, nv, hs, r, hm

    def _jacobian(self, dl: torch.Tensor, nv: torch.Tensor, hs: torch.Tensor,
                  hm: torch.Tensor) -> torch.Tensor:
        """(k, 7, 7) ∂(R_σ, R_f)/∂(σ, Δλ), symmetric."""
        k = dl.shape[0]
        jac = torch.zeros((k, 7, 7), dtype=DTYPE)
        jac[:, :6, :6] = self.s_t + dl[:, None, None] * hs
        jac[:, :6, 6] = nv
        jac[:, 6, :6] = nv
        jac[:, 6, 6] = -hm
        return jac

    def solve(self, sig_tr: torch.Tensor, lam: torch.Tensor, max_iter: int = 60
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                         torch.Tensor]:
        """Closest-point return map at plastic points (no gradients): Newton with a
        backtracking line search on |2G R_σ|² + R_f², Δλ ≥ 0, per point.

        Returns (σ, Δλ, ∂φ/∂σ, ∂²φ/∂σ², H, Jacobian (k, 7, 7)) at the solution."""
        g2 = 2.0 * self.shear
        phi0, n0, _ = self.net.gauge(sig_tr, hessian=False)
        r0, h0 = self.net.hardening(lam)
        cn = n0 @ self.c_t.T
        dl = torch.clamp((phi0 - r0) / ((n0 * cn).sum(dim=1) + h0), min=0.0)
        sig = sig_tr - dl[:, None] * cn
        for _ in range(max_iter):
            r1, rf, nv, hs, r, hm = self._residual(sig, dl, sig_tr, lam, True)
            err = torch.maximum((g2 * r1).abs().amax(dim=1), rf.abs()) / r
            todo = err > self.tol
            if not bool(todo.any()):
                break
            merit = ((g2 * r1) ** 2).sum(dim=1) + rf ** 2
            jac = self._jacobian(dl, nv, hs, hm)
            dx = torch.linalg.solve(jac, -torch.cat([r1, rf[:, None]], dim=1))
            step = torch.where(todo, torch.ones_like(dl), torch.zeros_like(dl))
            for _ls in range(12):
                s_new = sig + step[:, None] * dx[:, :6]
                d_new = torch.clamp(dl + step * dx[:, 6], min=0.0)
                a1, af, *_ = self._residual(s_new, d_new, sig_tr, lam, False)
                m_new = ((g2 * a1) ** 2).sum(dim=1) + af ** 2
                bad = todo & (m_new > (1.0 - 1e-4 * step) * merit) & (step > 1e-3)
                if not bool(bad.any()):
                    break
                step = torch.where(bad, 0.5 * step, step)
            sig, dl = s_new, d_new
        else:
            r1, rf, nv, hs, r, hm = self._residual(sig, dl, sig_tr, lam, True)
            err = torch.maximum((g2 * r1).abs().amax(dim=1), rf.abs()) / r
            if bool((err > 1e3 * self.tol).any()):
                log.warning("%s: return map did not converge at %d points (max error %.3g)",
                            self.name, int((err > 1e3 * self.tol).sum()), float(err.max()))
        return sig, dl, nv, hs, hm, self._jacobian(dl, nv, hs, hm)

    def _plastic(self, sig_tr: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        phi, _, _ = self.net.gauge(sig_tr, hessian=False)
        r, _ = self.net.hardening(lam)
        return phi - r > self.tol * r

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        """One return-map step; shapes as in the protocol (rate-independent: dt unused)."""
        strain, dstrain, state, _ = step_inputs(strain, dstrain, state, dt)
        n = strain.shape[0]
        eps = strain + dstrain
        sig_tr_np = (eps - state[:, :6]) @ self.stiffness.T
        stress = sig_tr_np.copy()
        tangent = np.broadcast_to(self.stiffness, (n, 6, 6)).copy()
        new_state = state.copy()
        with torch.no_grad():
            sig_tr = torch.tensor(sig_tr_np, dtype=DTYPE)
            lam = torch.tensor(state[:, 6], dtype=DTYPE)
            plastic = self._plastic(sig_tr, lam).numpy()
            if plastic.any():
                p = torch.as_tensor(plastic)
                sig, dl, nv, hs, hm, _ = self.solve(sig_tr[p], lam[p])
                xi = torch.linalg.inv(self.s_t + dl[:, None, None] * hs)
                xn = torch.einsum("nij,nj->ni", xi, nv)
                ct = xi - torch.einsum("ni,nj->nij", xn, xn) / (
                    (nv * xn).sum(dim=1) + hm)[:, None, None]
                stress[plastic] = sig.numpy()
                tangent[plastic] = ct.numpy()
                new_state[plastic, :6] = eps[plastic] - sig.numpy() @ self.s_t.numpy().T
                new_state[plastic, 6] = state[plastic, 6] + dl.numpy()
        r = self.training_range
        mask = ((new_state[:, 6] > (1.0 + self.margin) * r["eps_p_eq"][1])
                | (np.linalg.norm(eps, axis=1) > (1.0 + self.margin) * r["strain_norm"][1]))
        if mask.any():
            from scalebridge.surrogates.neural import _warn_out_of_range

            _warn_out_of_range(self, mask, f"eps_p_eq up to {new_state[:, 6].max():.3g}, "
                               f"trained to {r['eps_p_eq'][1]:.3g}")
        return ConstitutiveResult(stress=stress, tangent=tangent, state=new_state,
                                  out_of_range=mask)

    def rollout(self, strain: torch.Tensor) -> torch.Tensor:
        """Differentiable replay of strain paths (P, T+1, 6) from the virgin state ->
        stress (P, T+1, 6) MPa, with gradients to the network's parameters.

        Each step is solved without gradients (:meth:`solve`); one Newton correction
        x* - J⁻¹ R(x*) with R carrying the graph then has the exact first derivative of
        the converged solution (implicit function theorem)."""
        p = strain.shape[0]
        eps_p = torch.zeros((p, 6), dtype=DTYPE)
        lam = torch.zeros(p, dtype=DTYPE)
        out = [torch.zeros((p, 6), dtype=DTYPE)]
        for k in range(strain.shape[1] - 1):
            sig_tr = (strain[:, k + 1] - eps_p) @ self.c_t.T
            with torch.no_grad():
                plastic = self._plastic(sig_tr, lam)
            if not bool(plastic.any()):
                out.append(sig_tr)
                continue
            idx = torch.nonzero(plastic)[:, 0]
            with torch.no_grad():
                sig_s, dl_s, _, _, _, jac = self.solve(sig_tr[idx].detach(), lam[idx].detach())
            r1, rf, *_ = self._residual(sig_s, dl_s, sig_tr[idx], lam[idx], False)
            dx = torch.linalg.solve(jac, torch.cat([r1, rf[:, None]], dim=1))
            sig_p = sig_s - dx[:, :6]
            dl = dl_s - dx[:, 6]
            sig = sig_tr.index_put((idx,), sig_p)
            eps_p = strain[:, k + 1] - sig @ self.s_t.T
            lam = lam + torch.zeros(p, dtype=DTYPE).index_put((idx,), dl)
            out.append(sig)
        return torch.stack(out, dim=1)

    def __repr__(self) -> str:
        a = self.net.shape_weights().detach().numpy()
        top = sorted(zip(self.net.gauge_names, a, strict=True), key=lambda x: -x[1])[:3]
        return (f"InternalVariableModel(K={self.bulk:g} MPa, G={self.shear:g} MPa, yield "
                + ", ".join(f"{nm} {w:.2f}" for nm, w in top) + ")")
