"""Neural mobility law: an ensemble of small networks, monotone and odd in τ by construction.

Each member maps (T, character) through a small MLP to non-negative coefficients and
returns, in scaled units ``τ̂ = τ / τ_scale``, ``v̂ = v / v_scale``::

    v̂(τ̂) = a0·τ̂ + Σ_k a_k tanh(w_k τ̂) + Σ_k c_k sinh(u_k τ̂)

with ``a0, a_k, c_k, w_k ≥ 0`` (softplus) and ``0 ≤ u_k ≤ u_max`` (sigmoid). Every term is
odd and non-decreasing in τ̂, so v is exactly odd (v(-τ) = -v(τ)), monotone, and
dissipative (τ·v ≥ 0) for any weights; tanh terms give the concave drag/saturation shape,
sinh terms the convex thermally activated one. The ensemble mean is the prediction and
the ensemble spread its uncertainty. Below the lowest |τ| its data measured (per
character, ``ValidRange.tau_lowest_mpa_by_character``) v is that form between v(0) = 0
and the data, an interpolation no data tests: such evaluations are counted
(``n_below_data``), neither refused nor clamped. Outside the training range the law raises
:class:`~scalebridge.errors.OutOfRangeError` (policy "error"), warns ("warn"), or clamps τ
and T to the range ("clamp": v stays monotone and bounded; used inside DD where core
stresses are singular). τ is judged and clamped against each point's own character's
range (``ValidRange.tau_mpa_by_character``) where the range has one.

τ is scaled per character: each point by its own character's scale
(``tau_scale_by_character_pa``, the largest |τ| of that character in the training data),
a character without one by ``tau_scale_pa`` (the largest |τ| of all the data). The MD may
drive edges and screws to very different stresses (the Mo example: edges to 1500 MPa, one
screw point at 2800 MPa). With one scale for all, adding the screw point squeezed the
edges' inputs into τ̂ ≤ 0.54 and changed the edge law the DD uses (the same fit settings:
the edge velocity moved 7.5 % at the DD's mean source strength, 52 MPa, 1.6 % at 300
MPa and 3.8 % at 900 MPa; per character 1.8, 0.4 and 1.2 %). With a scale per
character each character's data spans τ̂ up to 1 whatever stresses the others reach, and
the clamp holds each point at its own character's top (τ̂ = 1 in its own units). The
characters still share each member's network, so another character's rows still move a
character's law a little through the training (not through its inputs). A law saved
without ``tau_scale_by_character_pa`` (before it existed) scales every point by
``tau_scale_pa``, as it did. The velocity scale ``v_scale_m_s`` stays one for all (the
largest |v| of all the data): the training loss is normalised by each row's own
uncertainty whatever v_scale is, and where the screws are the slow character (BCC, the
example) it is the edges' top speed whatever screw rows are added.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
from scalebridge.dd_coupling.cache import BoundedCache
from scalebridge.dd_coupling.mobility import (
    CHARACTERS,
    ArrayLike,
    OutOfRangePolicy,
    ValidRange,
    _out,
    as_tensors,
    count_below_data,
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
        tau_scale_pa: τ scale, the largest |τ| in the training data, Pa; the scale of
            every character without its own in ``tau_scale_by_character_pa``.
        v_scale_m_s: velocity scale, m/s.
        t_mid_k, t_half_k: temperature centring and half-width, K.
        valid_range: the training range.
        n_members, hidden, n_terms, u_max: architecture.
        out_of_range: "error", "warn" or "clamp".
        tau_scale_by_character_pa: each character's own τ scale (the largest |τ| of its
            training data), Pa, keyed by names from :data:`CHARACTERS`; None (a law saved
            before these existed): ``tau_scale_pa`` for all.
    """

    name = "NeuralMobility"

    def __init__(self, tau_scale_pa: float, v_scale_m_s: float, t_mid_k: float,
                 t_half_k: float, valid_range: ValidRange, n_members: int = 4,
                 hidden: int = 16, n_terms: int = 4, u_max: float = 8.0,
                 out_of_range: OutOfRangePolicy = "error",
                 tau_scale_by_character_pa: Mapping[str, float] | None = None) -> None:
        self.tau_scale_pa = float(tau_scale_pa)
        self.tau_scale_by_character_pa = _character_scales(tau_scale_by_character_pa)
        self.v_scale_m_s = float(v_scale_m_s)
        self.t_mid_k = float(t_mid_k)
        self.t_half_k = float(t_half_k)
        self.valid_range = valid_range
        self.hidden, self.n_terms, self.u_max = hidden, n_terms, u_max
        self.out_of_range: OutOfRangePolicy = out_of_range
        self.members = nn.ModuleList(
            MonotoneOddNet(hidden, n_terms, u_max) for _ in range(n_members)).double()
        self.n_out_of_range = 0  # running count of clamped/warned points
        # running count of points below the lowest |τ| their character's data measured
        # (ValidRange.tau_lowest_mpa_by_character; none counted where it is not known):
        # there v is the odd, zero-threshold form between v(0) = 0 and the data
        self.n_below_data = 0
        # the members' coefficients of recent (T̂, character) inputs (see _coefficients)
        self._coefficient_cache = BoundedCache(COEFFICIENT_CACHE_ENTRIES,
                                               COEFFICIENT_CACHE_ELEMENTS)
        self._scale_table: tuple[Any, ...] | None = None  # see _scale_and_top

    # ---------------------------------------------------------------- evaluation
    def tau_scales(self, char: torch.Tensor) -> torch.Tensor | float:
        """Each point's τ scale (n,) Pa, that of its character ``char`` (n,) (0 edge,
        1 screw; a character without its own scale, or an unknown index, has
        ``tau_scale_pa``); the float ``tau_scale_pa`` itself when no character has its
        own scale."""
        if not self.tau_scale_by_character_pa:
            return self.tau_scale_pa
        return self._scale_and_top(char)[0]

    def _scale_and_top(self, char: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each point's τ scale (n,) Pa and its top |τ̂| (n,): its character's top
        stress in the valid range (``ValidRange.tau_hi_mpa``), at most ``tau_scale_pa``,
        in that character's units (1 where the scale is that top). One gather from a
        per-character table, kept for the device, scales and range it was made for (the
        DD asks for the same characters every step)."""
        by = self.tau_scale_by_character_pa or {}
        items = tuple(by.items())
        c = self._scale_table
        if (c is None or c[0] != char.device or c[1] != self.tau_scale_pa or c[2] != items
                or c[3] is not self.valid_range):
            s_all, r = self.tau_scale_pa, self.valid_range
            envelope = min(r.tau_mpa[1] * 1e6, s_all) / s_all
            rows = [(s_all, envelope)]                     # row 0: characters < 0
            for i, name in enumerate(CHARACTERS):
                s_c = by.get(name, s_all)
                rows.append((s_c, min(r.tau_range(i)[1] * 1e6, s_all) / s_c))
            rows.append((s_all, envelope))                 # last row: characters >= n
            scales, tops = torch.tensor(rows, dtype=torch.float64, device=char.device).T
            c = self._scale_table = (char.device, self.tau_scale_pa, items, r,
                                     scales.contiguous(), tops.contiguous())
        # index_select on two 1-d tables: a third of the time of one (n, 2) gather
        idx = char.clamp(-1, len(CHARACTERS)) + 1
        return c[4].index_select(0, idx), c[5].index_select(0, idx)

    def _prepare(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        tau, temp, char, is_np = as_tensors(tau_pa, temperature_k, character)
        tau_hi = self.valid_range.tau_hi_mpa(char)
        self.n_below_data += count_below_data(self.valid_range, tau, char)
        bad = range_violations(self, tau, temp, char, tau_hi)
        if bool(bad.any()):
            self.n_out_of_range += int(bad.sum())
            if self.out_of_range == "error":
                raise OutOfRangeError(describe_violation(self, tau, temp, char, bad))
            if self.out_of_range == "warn":
                log.warning("%s", describe_violation(self, tau, temp, char, bad))
        lo, hi = self.valid_range.temperature_k
        temp = temp.clamp(lo, hi)
        if self.tau_scale_by_character_pa:
            # each point in its own character's units, and at most at its own character's
            # top stress (an edge beyond the edge data is not extrapolated along the edge
            # curve up to the screws' top): τ̂ = 1 where the scale is that top; never
            # beyond the largest |τ| of all the data (tau_scale_pa), as below
            scale, top = self._scale_and_top(char.to(tau.device))
            tau_hat = torch.maximum(torch.minimum(tau / scale, top), -top)
        elif self.valid_range.tau_mpa_by_character:
            # one scale for all (a law saved before per-character scales): as it was
            tau_hat = tau / self.tau_scale_pa
            top = (tau_hi.to(tau.device) * 1e6 / self.tau_scale_pa).clamp(max=1.0)
            tau_hat = torch.maximum(torch.minimum(tau_hat, top), -top)
        else:
            tau_hat = (tau / self.tau_scale_pa).clamp(-1.0, 1.0)
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
        # the coefficient cache and the scale table are rebuilt where the law is used
        # (not pickled along)
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_coefficient_cache", "_scale_table")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("tau_scale_by_character_pa", None)   # pickled before they existed
        state.setdefault("n_below_data", 0)
        self.__dict__.update(state)
        self._scale_table = None
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
        """The constructor's arguments but ``valid_range`` (JSON-safe);
        ``tau_scale_by_character_pa`` only where the law has per-character scales (a
        config without it loads with the one scale ``tau_scale_pa``)."""
        cfg: dict[str, Any] = {
            "tau_scale_pa": self.tau_scale_pa, "v_scale_m_s": self.v_scale_m_s,
            "t_mid_k": self.t_mid_k, "t_half_k": self.t_half_k,
            "n_members": len(self.members), "hidden": self.hidden,
            "n_terms": self.n_terms, "u_max": self.u_max,
            "out_of_range": self.out_of_range}
        if self.tau_scale_by_character_pa:
            cfg["tau_scale_by_character_pa"] = dict(self.tau_scale_by_character_pa)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any], valid_range: ValidRange) -> NeuralMobility:
        return cls(valid_range=valid_range, **cfg)

    def save_weights(self, path: Any) -> None:
        torch.save(self.members.state_dict(), path)

    def load_weights(self, path: Any) -> None:
        # restricted loading, finite tensors, one-line errors naming the file
        state = load_state_dict_file(path, what="neural mobility weights")
        load_into(self.members, state, path, what="neural mobility")


def _character_scales(scales: Mapping[str, float] | None) -> dict[str, float] | None:
    """``scales`` checked (names from :data:`CHARACTERS`, finite and > 0) as a dict in
    :data:`CHARACTERS` order; None for None or an empty mapping."""
    if not scales:
        return None
    unknown = sorted(set(scales) - set(CHARACTERS))
    if unknown:
        raise ValueError(f"tau_scale_by_character_pa: unknown characters {unknown} "
                         f"(known: {list(CHARACTERS)})")
    out = {c: float(scales[c]) for c in CHARACTERS if c in scales}
    bad = {c: v for c, v in out.items() if not (v > 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"tau_scale_by_character_pa: scales must be finite and > 0, "
                         f"got {bad}")
    return out


__all__ = ["MonotoneOddNet", "NeuralMobility"]
