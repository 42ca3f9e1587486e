"""Neural mobility law: an ensemble of small networks, monotone and odd in τ by construction.

Each member maps (T, character) through a small MLP to non-negative coefficients and
returns, in scaled units ``τ̂ = τ / τ_scale``, ``v̂ = v / v_scale``::

    v̂(τ̂) = a0·τ̂ + Σ_k a_k tanh(w_k τ̂) + Σ_k c_k sinh(u_k τ̂)

with ``a0, a_k, c_k, w_k ≥ 0`` (softplus) and ``0 ≤ u_k ≤ u_max`` (sigmoid). Every term is
odd and non-decreasing in τ̂, so v is exactly odd (v(-τ) = -v(τ)), monotone, and
dissipative (τ·v ≥ 0) for any weights; tanh terms give the concave drag/saturation shape,
sinh terms the convex thermally activated one. The ensemble mean is the prediction and
the ensemble spread its uncertainty. Outside the training range the law raises
:class:`~scalebridge.errors.OutOfRangeError` (policy "error"), warns ("warn"), or clamps τ
and T to the range ("clamp": v stays monotone and bounded; used inside DD where core
stresses are singular). τ is judged and clamped against each point's own character's
range (``ValidRange.tau_mpa_by_character``) where the range has one; the input scale
``tau_scale_pa`` stays the one of all the data.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from scalebridge.dd_coupling.cache import BoundedCache
from scalebridge.dd_coupling.mobility import (
    ArrayLike,
    OutOfRangePolicy,
    ValidRange,
    _out,
    as_tensors,
    describe_violation,
    range_violations,
)
from scalebridge.errors import OutOfRangeError
from scalebridge.modelfiles import load_into, load_state_dict_file
from torch import nn

log = logging.getLogger("scalebridge.dd_coupling")

#: NeuralMobility keeps its members' coefficients for at most this many recent inputs
#: (point counts), holding at most this many numbers in all (oldest dropped first)
COEFFICIENT_CACHE_ENTRIES = 64
COEFFICIENT_CACHE_ELEMENTS = 1 << 22


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """``a`` and ``b`` hold the same bits (unlike ==: -0.0 is not 0.0, NaN is NaN)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    as_int = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}[a.element_size()]
    return torch.equal(a.view(as_int), b.view(as_int))


class MonotoneOddNet(nn.Module):
    """One ensemble member: (τ̂ (n,), T̂ (n,), character (n,)) -> v̂ (n,)."""

    def __init__(self, hidden: int = 16, n_terms: int = 4, u_max: float = 8.0) -> None:
        super().__init__()
        self.n_terms = n_terms
        self.u_max = u_max
        self.net = nn.Sequential(
            nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 1 + 4 * n_terms))
        # start near a small linear law: tiny sinh amplitudes and rates, modest tanh terms
        last = self.net[-1]
        with torch.no_grad():
            last.weight.mul_(0.1)
            last.bias.zero_()
            last.bias[1 + 2 * n_terms:1 + 3 * n_terms] = -6.0     # c_k ≈ 2.5e-3
            last.bias[1 + 3 * n_terms:] = -2.0                    # u_k ≈ 0.95

    def forward(self, tau_hat: torch.Tensor, t_hat: torch.Tensor, char: torch.Tensor
                ) -> torch.Tensor:
        return self.combine(tau_hat, self.coefficients(t_hat, char))

    def coefficients(self, t_hat: torch.Tensor, char: torch.Tensor
                     ) -> tuple[torch.Tensor, ...]:
        """(a0 (n,), a, w, c, u (n, n_terms)) of each point's (T̂, character)."""
        x = torch.stack([t_hat, (char == 0).to(t_hat.dtype), (char == 1).to(t_hat.dtype)], -1)
        o = self.net(x)
        k = self.n_terms
        sp = nn.functional.softplus
        a0 = sp(o[:, 0])
        a, w = sp(o[:, 1:1 + k]), sp(o[:, 1 + k:1 + 2 * k])
        c, u = sp(o[:, 1 + 2 * k:1 + 3 * k]), self.u_max * torch.sigmoid(o[:, 1 + 3 * k:])
        return a0, a, w, c, u

    @staticmethod
    def combine(tau_hat: torch.Tensor, coefficients: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """v̂ (n,) at ``tau_hat`` (n,) from :meth:`coefficients`."""
        a0, a, w, c, u = coefficients
        th = tau_hat[:, None]
        return a0 * tau_hat + (a * torch.tanh(w * th)).sum(-1) + (c * torch.sinh(u * th)).sum(-1)


class NeuralMobility:
    """Ensemble neural mobility law (implements :class:`MobilityLaw`).

    Args:
        tau_scale_pa: τ scale, the largest |τ| in the training data, Pa.
        v_scale_m_s: velocity scale, m/s.
        t_mid_k, t_half_k: temperature centring and half-width, K.
        valid_range: the training range.
        n_members, hidden, n_terms, u_max: architecture.
        out_of_range: "error", "warn" or "clamp".
    """

    name = "NeuralMobility"

    def __init__(self, tau_scale_pa: float, v_scale_m_s: float, t_mid_k: float,
                 t_half_k: float, valid_range: ValidRange, n_members: int = 4,
                 hidden: int = 16, n_terms: int = 4, u_max: float = 8.0,
                 out_of_range: OutOfRangePolicy = "error") -> None:
        self.tau_scale_pa = float(tau_scale_pa)
        self.v_scale_m_s = float(v_scale_m_s)
        self.t_mid_k = float(t_mid_k)
        self.t_half_k = float(t_half_k)
        self.valid_range = valid_range
        self.hidden, self.n_terms, self.u_max = hidden, n_terms, u_max
        self.out_of_range: OutOfRangePolicy = out_of_range
        self.members = nn.ModuleList(
            MonotoneOddNet(hidden, n_terms, u_max) for _ in range(n_members)).double()
        self.n_out_of_range = 0  # running count of clamped/warned points
        # the members' coefficients of recent (T̂, character) inputs (see _coefficients)
        self._coefficient_cache = BoundedCache(COEFFICIENT_CACHE_ENTRIES,
                                               COEFFICIENT_CACHE_ELEMENTS)

    # ---------------------------------------------------------------- evaluation
    def _prepare(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        tau, temp, char, is_np = as_tensors(tau_pa, temperature_k, character)
        tau_hi = self.valid_range.tau_hi_mpa(char)
        bad = range_violations(self, tau, temp, char, tau_hi)
        if bool(bad.any()):
            self.n_out_of_range += int(bad.sum())
            if self.out_of_range == "error":
                raise OutOfRangeError(describe_violation(self, tau, temp, char, bad))
            if self.out_of_range == "warn":
                log.warning("%s", describe_violation(self, tau, temp, char, bad))
        lo, hi = self.valid_range.temperature_k
        temp = temp.clamp(lo, hi)
        tau_hat = tau / self.tau_scale_pa
        if self.valid_range.tau_mpa_by_character:
            # each point at most at its own character's top stress (an edge beyond the
            # edge data is not extrapolated along the edge curve up to the screws' top)
            top = (tau_hi.to(tau.device) * 1e6 / self.tau_scale_pa).clamp(max=1.0)
            tau_hat = torch.maximum(torch.minimum(tau_hat, top), -top)
        else:
            tau_hat = tau_hat.clamp(-1.0, 1.0)
        t_hat = (temp - self.t_mid_k) / self.t_half_k
        return tau_hat, t_hat, char, is_np

    def members_velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                         character: ArrayLike | int) -> torch.Tensor:
        """Each member's velocity, (n_members, n) m/s (torch)."""
        tau_hat, t_hat, char, _ = self._prepare(tau_pa, temperature_k, character)
        with torch.no_grad():
            coefficients = self._coefficients(t_hat, char)
            return torch.stack([m.combine(tau_hat, cf) for m, cf in zip(
                self.members, coefficients, strict=True)]) * self.v_scale_m_s

    def _coefficients(self, t_hat: torch.Tensor, char: torch.Tensor
                      ) -> list[tuple[torch.Tensor, ...]]:
        """Each member's :meth:`MonotoneOddNet.coefficients` (no gradients), kept for
        the last few inputs: a DD run asks for the same (T̂, character) of its n
        dislocations at every step, and the MLPs need not run again for them (the same
        computation on the same input: the same numbers). Recomputed when the weights
        change (a parameter replaced or modified in place)."""
        params = tuple(self.members.parameters())
        key = (t_hat.shape[0], t_hat.dtype, t_hat.device)
        hit = self._coefficient_cache.get(key)
        if hit is not None:
            p_old, versions, t_old, c_old, coefficients = hit
            if (len(p_old) == len(params)
                    and all(p is q for p, q in zip(p_old, params, strict=True))
                    and versions == tuple(p._version for p in params)
                    and _same_bits(t_old, t_hat) and _same_bits(c_old, char)):
                return coefficients
        coefficients = [m.coefficients(t_hat, char) for m in self.members]
        size = t_hat.shape[0] * (2 + sum(c.shape[-1] if c.ndim > 1 else 1
                                         for cf in coefficients for c in cf))
        self._coefficient_cache.put(key, (params, tuple(p._version for p in params),
                                          t_hat.clone(), char.clone(), coefficients), size)
        return coefficients

    def __getstate__(self) -> dict[str, Any]:
        # the coefficient cache is rebuilt where the law is used (not pickled along)
        return {k: v for k, v in self.__dict__.items() if k != "_coefficient_cache"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._coefficient_cache = BoundedCache(COEFFICIENT_CACHE_ENTRIES,
                                               COEFFICIENT_CACHE_ELEMENTS)

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        """Ensemble-mean velocity (n,) m/s; same array kind as ``tau_pa``."""
        is_np = not isinstance(tau_pa, torch.Tensor)
        return _out(self.members_velocity(tau_pa, temperature_k, character).mean(0), is_np)

    def velocity_with_uncertainty(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                                  character: ArrayLike | int) -> tuple[ArrayLike, ArrayLike]:
        """(mean, ensemble standard deviation), each (n,) m/s."""
        is_np = not isinstance(tau_pa, torch.Tensor)
        v = self.members_velocity(tau_pa, temperature_k, character)
        std = v.std(0) if v.shape[0] > 1 else torch.zeros_like(v[0])
        return _out(v.mean(0), is_np), _out(std, is_np)

    # ---------------------------------------------------------------- persistence
    def config(self) -> dict[str, Any]:
        return {"tau_scale_pa": self.tau_scale_pa, "v_scale_m_s": self.v_scale_m_s,
                "t_mid_k": self.t_mid_k, "t_half_k": self.t_half_k,
                "n_members": len(self.members), "hidden": self.hidden,
                "n_terms": self.n_terms, "u_max": self.u_max,
                "out_of_range": self.out_of_range}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], valid_range: ValidRange) -> NeuralMobility:
        return cls(valid_range=valid_range, **cfg)

    def save_weights(self, path: Any) -> None:
        torch.save(self.members.state_dict(), path)

    def load_weights(self, path: Any) -> None:
        # restricted loading, finite tensors, one-line errors naming the file
        state = load_state_dict_file(path, what="neural mobility weights")
        load_into(self.members, state, path, what="neural mobility")


__all__ = ["MonotoneOddNet", "NeuralMobility"]
