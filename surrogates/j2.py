"""Small-strain J2 (von Mises) plasticity with isotropic hardening: the analytic reference.

Radial return (Simo & Hughes, *Computational Inelasticity*, §3.3) batched over points::

    σ_trial = C : (ε_{n+1} - ε^p_n),   q_trial = √(3/2)|dev σ_trial|
    f = q_trial - σ_y(ε̄^p_n)  ≤ 0  → elastic
    else solve  q_trial - 3G Δγ - σ_y(ε̄^p_n + Δγ) = 0  (safeguarded Newton)
    ε^p_{n+1} = ε^p_n + √(3/2) Δγ n̂,  n̂ = dev σ_trial / |dev σ_trial|

and the consistent (algorithmic) tangent, with H = dσ_y/dΔγ at the solution::

    C_alg = 3K P_vol + 2G θ P_dev - 6G² (1/(3G + H) - Δγ/q_trial) n̂⊗n̂,
    θ = 1 - 3G Δγ / q_trial.

The hardening law is a :class:`Hardening` (one method, several implementations): linear,
Voce, and dislocation density σ_y = σ0 + α μ b √ρ with Kocks-Mecking evolution
dρ/dε̄^p = k1 √ρ - k2 ρ, integrated exactly over a step (√ρ relaxes exponentially).
The learned hardening of :mod:`scalebridge.surrogates.neural` plugs into the same return map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from scalebridge.surrogates import mandel
from scalebridge.surrogates.protocol import ConstitutiveResult, step_inputs

#: Names of the J2 state columns before the hardening's own variables. The first six are
#: the Mandel components of the plastic strain tensor, then the equivalent plastic strain.
PLASTIC_STATE_NAMES = ("eps_p_xx", "eps_p_yy", "eps_p_zz", "eps_p_yz", "eps_p_xz",
                       "eps_p_xy", "eps_p_eq")


@runtime_checkable
class Hardening(Protocol):
    """An isotropic hardening law σ_y(ε̄^p, hardening variables, rate).

    Attributes:
        state_names: names of the law's own internal variables (k of them, may be none).
    """

    state_names: tuple[str, ...]

    def initial_state(self, n: int) -> np.ndarray:
        """(n, k) virgin hardening variables."""
        ...

    def yield_stress(self, ep: np.ndarray, dep: np.ndarray, q: np.ndarray,
                     dt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Yield stress after a plastic increment.

        A law may also have ``yield_stress_floor() -> float``: a σ_y (MPa) that no
        ε̄^p ≥ 0 goes below under the current conditions (for a law non-decreasing in
        ε̄^p, its virgin value); :class:`J2Plasticity` then evaluates the law only at
        points whose trial stress exceeds it (laws without variables of their own).

        Args:
            ep: (n,) equivalent plastic strain at the start of the step.
            dep: (n,) its increment over the step, ≥ 0.
            q: (n, k) hardening variables at the start of the step.
            dt: (n,) step duration, s (rate-dependent laws use dep/dt).

        Returns:
            ``(σ_y, dσ_y/d(dep), q_new)``: (n,) MPa, (n,) MPa, (n, k).
        """
        ...


@dataclass
class LinearHardening:
    """σ_y = σ0 + H ε̄^p (H = 0: perfect plasticity). MPa."""

    sigma0: float = 250.0
    modulus: float = 1000.0
    state_names: tuple[str, ...] = field(default=(), init=False)

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def yield_stress(self, ep, dep, q, dt):
        e = ep + dep
        return self.sigma0 + self.modulus * e, np.full_like(e, self.modulus), q.copy()


@dataclass
class VoceHardening:
    """σ_y = σ0 + (σ∞ - σ0)(1 - exp(-δ ε̄^p)) + H ε̄^p. Stresses in MPa, δ dimensionless."""

    sigma0: float = 250.0
    sigma_inf: float = 400.0
    rate: float = 20.0
    modulus: float = 0.0
    state_names: tuple[str, ...] = field(default=(), init=False)

    def initial_state(self, n: int) -> np.ndarray:
        return np.zeros((n, 0))

    def yield_stress(self, ep, dep, q, dt):
        e = ep + dep
        x = np.exp(-self.rate * e)
        sat = self.sigma_inf - self.sigma0
        return (self.sigma0 + sat * (1.0 - x) + self.modulus * e,
                sat * self.rate * x + self.modulus, q.copy())


@dataclass
class DislocationDensityHardening:
    """Taylor hardening σ_y = σ0 + α μ b √ρ with Kocks-Mecking dρ/dε̄^p = k1 √ρ - k2 ρ.

    With x = √ρ the evolution is dx/dε̄^p = (k1 - k2 x)/2, so over a step
    x_{n+1} = x_s + (x_n - x_s) exp(-k2 Δε̄^p / 2), x_s = k1/k2 (exact, no ODE error).

    Attributes:
        sigma0: lattice friction, MPa. alpha: Taylor coefficient. mu: shear modulus, MPa.
        burgers: |b|, m. rho0: initial density, m⁻². k1: storage, m⁻¹. k2: recovery (-).
    """

    sigma0: float = 50.0
    alpha: float = 0.3
    mu: float = 80e3
    burgers: float = 2.5e-10
    rho0: float = 1e12
    k1: float = 2e8
    k2: float = 10.0
    state_names: tuple[str, ...] = field(default=("rho_m2",), init=False)

    def initial_state(self, n: int) -> np.ndarray:
        return np.full((n, 1), self.rho0)

    def yield_stress(self, ep, dep, q, dt):
        xs = self.k1 / self.k2
        x0 = np.sqrt(np.maximum(q[:, 0], 0.0))
        x = xs + (x0 - xs) * np.exp(-0.5 * self.k2 * dep)
        amb = self.alpha * self.mu * self.burgers
        return self.sigma0 + amb * x, amb * 0.5 * self.k2 * (xs - x), (x * x)[:, None]


def out_of_training_range(training_range: dict[str, list[float]], ep_old: np.ndarray,
                          ep_new: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """(n,) points beyond a fitted law's training range: ε̄_p above 1.5x the trained
    maximum (``eps_p_eq``) or the step's plastic rate above 2x it (``rate_s``, 1/s)."""
    oor = np.zeros(np.shape(ep_new), dtype=bool)
    if "eps_p_eq" in training_range:
        oor |= ep_new > 1.5 * training_range["eps_p_eq"][1]
    if "rate_s" in training_range:
        d = ep_new - ep_old          # a step of no time has no rate (elastic there)
        rate = np.divide(d, dt, out=np.zeros(np.shape(d)), where=np.asarray(dt) > 0)
        oor |= rate > 2.0 * training_range["rate_s"][1]
    return oor


class J2Plasticity:
    """Isotropic elasticity + von Mises yield + isotropic hardening, radial return.

    State per point (m = 7 + k): Mandel plastic strain (6), equivalent plastic strain,
    then the hardening law's variables (e.g. ``rho_m2``).

    Args:
        youngs_modulus: E, MPa.
        poisson_ratio: ν.
        hardening: a :class:`Hardening` (default: linear, σ0 = 250 MPa, H = 1 GPa).
        name: label for reports.
        tol: return-map convergence, relative to σ_y.
    """

    isotropic = True
    symmetric_tangent = True
    #: True inside :func:`~scalebridge.surrogates.protocol.stress_only`: no tangent.
    stress_only = False

    def __init__(self, youngs_modulus: float = 200e3, poisson_ratio: float = 0.3,
                 hardening: Hardening | None = None, name: str = "j2", tol: float = 1e-12):
        self.youngs_modulus = float(youngs_modulus)
        self.poisson_ratio = float(poisson_ratio)
        self.shear = self.youngs_modulus / (2.0 * (1.0 + self.poisson_ratio))
        self.bulk = self.youngs_modulus / (3.0 * (1.0 - 2.0 * self.poisson_ratio))
        self.stiffness = mandel.isotropic_stiffness(self.bulk, self.shear)
        self.hardening: Hardening = hardening if hardening is not None else LinearHardening()
        self.name = name
        self.tol = tol
        self.state_names = PLASTIC_STATE_NAMES + tuple(self.hardening.state_names)

    @classmethod
    def from_moduli(cls, bulk: float, shear: float, **kw) -> J2Plasticity:
        """Build from bulk and shear moduli K, G (MPa) instead of E, ν."""
        e = 9.0 * bulk * shear / (3.0 * bulk + shear)
        nu = (3.0 * bulk - 2.0 * shear) / (2.0 * (3.0 * bulk + shear))
        return cls(e, nu, **kw)

    def initial_state(self, n: int) -> np.ndarray:
        return np.concatenate([np.zeros((n, 7)), self.hardening.initial_state(n)], axis=1)

    def initial_yield_stress(self) -> float:
        """σ_y of the virgin material, MPa."""
        sy, _, _ = self.hardening.yield_stress(np.zeros(1), np.zeros(1),
                                               self.hardening.initial_state(1), np.ones(1))
        return float(sy[0])

    def _solve(self, q_tr: np.ndarray, ep: np.ndarray, hq: np.ndarray, dt: np.ndarray,
               sy0: np.ndarray | None = None, h0: np.ndarray | None = None,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Safeguarded Newton for q_tr - 3GΔγ - σ_y(Δγ) = 0 at plastic points.

        ``sy0``, ``h0``: σ_y and dσ_y/dΔγ at Δγ = 0 if the caller has them (its yield
        check), else evaluated here. Each
        iteration evaluates the hardening law only at the points not yet converged (a
        converged point keeps its Δγ, so its values stay those of its last evaluation).

        Returns (Δγ, σ_y, H, q_new), each for the given points."""
        g3 = 3.0 * self.shear
        lo = np.zeros_like(q_tr)
        hi = q_tr / g3  # σ_y ≥ 0 ⇒ root ≤ q_tr/3G
        if sy0 is None or h0 is None:
            sy0, h0, _ = self.hardening.yield_stress(ep, lo, hq, dt)
        dg = np.clip((q_tr - sy0) / np.maximum(g3 + h0, 1e-3 * g3), lo, hi)
        sy, h = np.empty_like(q_tr), np.empty_like(q_tr)
        qn = np.empty_like(hq)
        act = np.arange(q_tr.size)                   # points still iterating
        for _ in range(100):
            a = act
            sy_a, h_a, qn_a = self.hardening.yield_stress(ep[a], dg[a], hq[a], dt[a])
            sy[a], h[a], qn[a] = sy_a, h_a, qn_a
            r = q_tr[a] - g3 * dg[a] - sy_a
            done = np.abs(r) <= self.tol * np.maximum(sy_a, 1.0)
            if np.all(done):
                return dg, sy, h, qn
            lo[a] = np.where(r > 0, dg[a], lo[a])
            hi[a] = np.where(r < 0, dg[a], hi[a])
            step = dg[a] + r / np.maximum(g3 + h_a, 1e-12)
            bad = (step <= lo[a]) | (step >= hi[a])
            dg[a] = np.where(done, dg[a], np.where(bad, 0.5 * (lo[a] + hi[a]), step))
            act = a[~done]
        sy, h, qn = self.hardening.yield_stress(ep, dg, hq, dt)
        return dg, sy, h, qn

    def update(self, strain: np.ndarray, dstrain: np.ndarray, state: np.ndarray,
               dt: float | np.ndarray = 1.0) -> ConstitutiveResult:
        """One radial-return step; see the module docstring. Shapes as in the protocol."""
        strain, dstrain, state, dt_arr = step_inputs(strain, dstrain, state, dt)
        n = strain.shape[0]
        eps_p = state[:, :6]
        ep = state[:, 6]
        hq = state[:, 7:]
        sig_tr = (strain + dstrain - eps_p) @ self.stiffness.T
        s_tr = mandel.deviator(sig_tr)
        s_norm = np.sqrt(np.add.reduce(s_tr * s_tr, axis=1))  # = linalg.norm, less overhead
        q_tr = np.sqrt(1.5) * s_norm
        new_state = state.copy()
        # Yield check at Δγ = 0. A law with a floor (σ_y ≥ floor at every ε̄^p, e.g. one
        # monotone in ε̄^p) and no variables of its own is evaluated only where
        # q_trial > floor: below it no point can yield.
        floor = getattr(self.hardening, "yield_stress_floor", None)
        cand = (q_tr > floor()) if (floor is not None and not hq.shape[1]) else slice(None)
        sy_n, h_n, q_n = self.hardening.yield_stress(ep[cand], np.zeros_like(ep[cand]),
                                                     hq[cand], dt_arr[cand])
        if hq.shape[1]:
            new_state[:, 7:] = q_n
        plastic = np.zeros(n, dtype=bool)
        plastic[cand] = ((q_tr[cand] - sy_n > self.tol * np.maximum(sy_n, 1.0))
                         & (s_norm[cand] > 0))

        stress = sig_tr.copy()
        tangent = None if self.stress_only else np.broadcast_to(self.stiffness,
                                                                (n, 6, 6)).copy()
        if np.any(plastic):
            p = plastic
            in_cand = plastic[cand]
            dg, _sy, h, qn = self._solve(q_tr[p], ep[p], hq[p], dt_arr[p],
                                         sy_n[in_cand], h_n[in_cand])
            nhat = s_tr[p] / s_norm[p, None]
            g = self.shear
            stress[p] = sig_tr[p] - (2.0 * g * np.sqrt(1.5) * dg)[:, None] * nhat
            new_state[p, :6] = eps_p[p] + (np.sqrt(1.5) * dg)[:, None] * nhat
            new_state[p, 6] = ep[p] + dg
            new_state[p, 7:] = qn
            if tangent is None:
                return ConstitutiveResult(stress=stress, tangent=None, state=new_state)
            theta = 1.0 - 3.0 * g * dg / q_tr[p]
            thetab = 1.0 / (3.0 * g + h) - dg / q_tr[p]
            tangent[p] = (3.0 * self.bulk * mandel.P_VOL
                          + (2.0 * g * theta)[:, None, None] * mandel.P_DEV
                          - (6.0 * g * g * thetab)[:, None, None]
                          * np.einsum("ni,nj->nij", nhat, nhat))
        return ConstitutiveResult(stress=stress, tangent=tangent, state=new_state)

    def _update_where(self, mask: np.ndarray, strain: np.ndarray, dstrain: np.ndarray,
                      state: np.ndarray, dt: np.ndarray, sig_trial: np.ndarray,
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`J2Plasticity.update` at the points ``mask`` only, elastic elsewhere.

        For a subclass whose law only flows at some points (a nucleated source, a
        fluidity above its floor): the others keep the trial stress, the elastic
        stiffness and their state.

        Args:
            mask: (n,) bool, the points to return-map.
            strain, dstrain, dt: (n, 6), (n, 6), (n,) as from ``step_inputs``.
            state: (n, 7 + k) J2 state (plastic strain, ε̄_p, the hardening's k variables).
            sig_trial: (n, 6) elastic trial stress C:(ε + Δε - ε^p); overwritten at
                ``mask`` and returned as the stress.

        Returns:
            ``(stress, tangent, state)`` for all n points: (n, 6), (n, 6, 6) (None when
            :attr:`stress_only`), (n, 7 + k).
        """
        n = strain.shape[0]
        stress = sig_trial
        tangent = None if self.stress_only else np.broadcast_to(self.stiffness,
                                                                (n, 6, 6)).copy()
        new = state.copy()
        if np.any(mask):
            r = J2Plasticity.update(self, strain[mask], dstrain[mask], state[mask], dt[mask])
            stress[mask], new[mask] = r.stress, r.state
            if tangent is not None:
                tangent[mask] = r.tangent
        return stress, tangent, new

    def __repr__(self) -> str:
        return (f"J2Plasticity(E={self.youngs_modulus:g} MPa, ν={self.poisson_ratio:g}, "
                f"{self.hardening!r})")
