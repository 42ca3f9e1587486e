"""Dislocation mobility laws: glide velocity v(τ, T, character).

One small protocol (ASE-Calculator style), three implementations:

* :class:`LinearDragMobility`: phonon drag above a threshold (lattice friction) stress,
  ``v_lin = sign(τ) b max(|τ| − τ₀(T), 0) / B(T)`` with ``B(T) = B0 + B1·T`` and
  ``τ₀(T) = max(τ₀,0 + τ₀,1·T, 0)``, saturating smoothly toward a limiting speed ``c``
  (the shear-wave speed): ``v = v_lin / sqrt(1 + (v_lin / c)²)``.
* :class:`KinkPairMobility`: thermally activated kink-pair glide of BCC screws,
  ``v_kp = v0 [exp(-ΔH(|τ|)/kT) - exp(-H0/kT)]``, ``ΔH = H0 (1 - (|τ|/τP)^p)^q``, in series
  with drag (``1/v = 1/v_kp + 1/v_drag``); edges glide by drag only.
* :class:`NeuralMobility` (in :mod:`scalebridge.dd_coupling.neural`): an ensemble fitted to
  MD data, monotone and odd in τ by construction.

Every law takes arrays of shape (n,) (NumPy or torch; it answers in the same kind):
``tau_pa`` the resolved shear stress (Pa, the sign gives the direction of glide),
``temperature_k`` (K) and ``character`` (0 = edge, 1 = screw), and returns the glide
velocity in m/s with the sign of τ. :func:`check_mobility` checks any implementation.
:class:`GlideCharacterMobility` evaluates one character's law for every dislocation (the
2D DD's choice of the character that controls glide).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from scalebridge.errors import ArtifactError, OutOfRangeError, ScalebridgeError

#: Boltzmann constant, eV/K.
KB_EV = 8.617333262e-5
CHARACTERS = ("edge", "screw")
#: A glide stress counts as below the MD's data (:func:`count_below_data`, the DD's
#: ``sources_below_fraction``) only under this fraction of the lowest measured |τ|: a
#: stress at the lowest data point itself (a source or applied stress equal to the MD's
#: lowest, up to rounding in its last bits: MPa -> Pa) is on the data, not below it.
BELOW_DATA_FACTOR = 1 - 1e-9
ArrayLike = np.ndarray | torch.Tensor
OutOfRangePolicy = Literal["error", "warn", "clamp"]


class MobilityCheckError(ScalebridgeError):
    """A mobility law violates the protocol (shape, oddness, monotonicity, dissipation)."""


@dataclass(frozen=True)
class ValidRange:
    """Where a law is trusted.

    Attributes:
        tau_mpa: (lo, hi) of |τ| in MPa covered by the data (analytic laws: (0, inf)),
            over all characters (the envelope).
        temperature_k: (lo, hi) in K.
        characters: the characters covered, names from :data:`CHARACTERS`.
        tau_mpa_by_character: each character's own (lo, hi) of |τ| in MPa (the MD may
            drive edges and screws to different stresses); given as a mapping, kept as
            ``((name, (lo, hi)), ...)``. A character without an entry (and every
            character of a range written before these existed) has ``tau_mpa``.
        tau_lowest_mpa_by_character: each character's lowest |τ| > 0 in MPa that the
            law's data measured (information, not a bound: the range still reaches down
            to ``lo``, 0 for a fitted law, and nothing is refused or clamped below it;
            below it the velocity is the law's own form between v(0) = 0 and the lowest
            data point, not data); given as a mapping, kept as ``((name, τ), ...)``.
            Empty for an analytic law (no data) and for a range written before it was
            recorded: not known. Not compared (``==``): two ranges that trust the same
            stresses are equal whatever their data's lowest stress.
    """

    tau_mpa: tuple[float, float] = (0.0, math.inf)
    temperature_k: tuple[float, float] = (0.0, math.inf)
    characters: tuple[str, ...] = CHARACTERS
    tau_mpa_by_character: (Mapping[str, tuple[float, float]]
                           | tuple[tuple[str, tuple[float, float]], ...]) = ()
    tau_lowest_mpa_by_character: (Mapping[str, float] | tuple[tuple[str, float], ...]) = (
        field(default=(), compare=False))

    def __post_init__(self) -> None:
        items = dict(self.tau_mpa_by_character)
        lowest = dict(self.tau_lowest_mpa_by_character)
        for what, names in (("tau_mpa_by_character", items),
                            ("tau_lowest_mpa_by_character", lowest)):
            unknown = sorted(set(names) - set(CHARACTERS))
            if unknown:
                raise ValueError(f"{what}: unknown characters {unknown} "
                                 f"(known: {list(CHARACTERS)})")
        object.__setattr__(self, "tau_mpa_by_character", tuple(
            (c, (float(items[c][0]), float(items[c][1]))) for c in CHARACTERS if c in items))
        bad = {c: v for c, v in lowest.items() if not (float(v) > 0 and math.isfinite(v))}
        if bad:
            raise ValueError(f"tau_lowest_mpa_by_character: stresses must be finite and "
                             f"> 0, got {bad}")
        object.__setattr__(self, "tau_lowest_mpa_by_character", tuple(
            (c, float(lowest[c])) for c in CHARACTERS if c in lowest))
        # per-device tables of the lowest stresses (Pa) for :meth:`tau_lowest_pa`
        object.__setattr__(self, "_lowest_tables", {})

    @staticmethod
    def lowest_by_character(character: np.ndarray, tau_pa: np.ndarray) -> dict[str, float]:
        """Each character's lowest |τ| > 0 in MPa among data rows of ``character`` (n,)
        (0 edge, 1 screw) and ``tau_pa`` (n,) Pa, in :data:`CHARACTERS` order (the
        ``tau_lowest_mpa_by_character`` of a law fitted to them; a character measured
        only at τ = 0 has none)."""
        char, a = np.asarray(character), np.abs(np.asarray(tau_pa, dtype=np.float64))
        out = {}
        for i, name in enumerate(CHARACTERS):
            moved = a[(char == i) & (a > 0)]
            if moved.size:
                out[name] = float(moved.min()) * 1e-6
        return out

    def lowest_tau_mpa(self, character: str | int) -> float | None:
        """The lowest |τ| > 0 in MPa the data measured for ``character`` (a name or 0
        edge / 1 screw); None where not known (an analytic law, a range written before
        it was recorded, a character without data)."""
        name = character
        if not isinstance(character, str):
            i = int(character)
            name = CHARACTERS[i] if 0 <= i < len(CHARACTERS) else str(i)
        return dict(self.tau_lowest_mpa_by_character).get(name)  # type: ignore[arg-type]

    def tau_lowest_pa(self, char: torch.Tensor) -> torch.Tensor | None:
        """(n,) float64: the lowest measured |τ| in Pa of each point's character
        ``char`` (n,), NaN where not known (every comparison with it false); None when
        no character's is known. One gather from a table kept per device."""
        if not self.tau_lowest_mpa_by_character:
            return None
        tables = self.__dict__.setdefault("_lowest_tables", {})
        table = tables.get(char.device)
        if table is None:
            # row 0: characters < 0, last row: characters >= n (not known)
            rows = [math.nan] + [math.nan if (lo := self.lowest_tau_mpa(i)) is None
                                 else lo * 1e6 for i in range(len(CHARACTERS))] + [math.nan]
            table = tables[char.device] = torch.tensor(rows, dtype=torch.float64,
                                                       device=char.device)
        return table.index_select(0, char.clamp(-1, len(CHARACTERS)) + 1)

    def tau_range(self, character: str | int) -> tuple[float, float]:
        """(lo, hi) of |τ| in MPa for ``character`` (a name or 0 edge / 1 screw): its own
        range, else the envelope ``tau_mpa``."""
        name = character
        if not isinstance(character, str):
            i = int(character)
            name = CHARACTERS[i] if 0 <= i < len(CHARACTERS) else str(i)
        return dict(self.tau_mpa_by_character).get(name, self.tau_mpa)  # type: ignore[arg-type]

    def tau_hi_mpa(self, char: torch.Tensor) -> torch.Tensor:
        """(n,) float64: the top of |τ| in MPa of each point's character ``char`` (n,)."""
        his = [self.tau_range(c)[1] for c in range(len(CHARACTERS))]
        known = (char >= 0) & (char < len(his))
        table = torch.tensor(his, dtype=torch.float64, device=char.device)
        return torch.where(known, table[char.clamp(0, len(his) - 1)],
                           torch.tensor(self.tau_mpa[1], dtype=torch.float64,
                                        device=char.device))

    def to_json(self) -> dict[str, Any]:
        """JSON-safe (infinities as ``null``)."""
        def f(x: float) -> float | None:
            return None if math.isinf(x) else float(x)
        d: dict[str, Any] = {"tau_mpa": [f(v) for v in self.tau_mpa],
                             "temperature_k": [f(v) for v in self.temperature_k],
                             "characters": list(self.characters)}
        if self.tau_mpa_by_character:
            d["tau_mpa_by_character"] = {c: [f(v) for v in r]
                                         for c, r in self.tau_mpa_by_character}
        if self.tau_lowest_mpa_by_character:
            d["tau_lowest_mpa_by_character"] = dict(self.tau_lowest_mpa_by_character)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ValidRange:
        def g(v: float | None, default: float) -> float:
            return default if v is None else float(v)
        t = d.get("tau_mpa", [0, None])
        k = d.get("temperature_k", [0, None])
        by = {c: (g(r[0], 0.0), g(r[1], math.inf))
              for c, r in (d.get("tau_mpa_by_character") or {}).items()}
        # a range written before the lowest measured stress was recorded: not known
        lowest = {c: float(v) for c, v in (d.get("tau_lowest_mpa_by_character") or {}).items()}
        return cls(tau_mpa=(g(t[0], 0.0), g(t[1], math.inf)),
                   temperature_k=(g(k[0], 0.0), g(k[1], math.inf)),
                   characters=tuple(d.get("characters", CHARACTERS)),
                   tau_mpa_by_character=by, tau_lowest_mpa_by_character=lowest)


@runtime_checkable
class MobilityLaw(Protocol):
    """Glide velocity of a dislocation segment.

    Attributes:
        name: short name (the class written to ``mobility.json``).
        valid_range: the range of data the law is valid for.
    """

    name: str
    valid_range: ValidRange

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        """Glide velocity (n,) m/s for resolved shear stress ``tau_pa`` (n,) Pa at
        ``temperature_k`` (n,) or scalar K, ``character`` (n,) or scalar (0 edge, 1 screw).
        Returns the same array kind (NumPy or torch) as ``tau_pa``; odd in τ."""
        ...


# --------------------------------------------------------------------------- helpers
def as_tensors(tau_pa: ArrayLike, temperature_k: ArrayLike | float,
               character: ArrayLike | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                    bool]:
    """Broadcast inputs to float64/long torch tensors of shape (n,); flag NumPy input."""
    is_numpy = not isinstance(tau_pa, torch.Tensor)
    tau = torch.as_tensor(np.asarray(tau_pa) if is_numpy else tau_pa, dtype=torch.float64)
    if tau.ndim != 1:
        raise ValueError(f"tau_pa must have shape (n,), got {tuple(tau.shape)}")
    temp = torch.as_tensor(temperature_k, dtype=torch.float64).expand_as(tau)
    char = torch.as_tensor(character).to(torch.long).expand_as(tau)
    return tau, temp, char, is_numpy


def _out(v: torch.Tensor, is_numpy: bool) -> ArrayLike:
    return v.detach().cpu().numpy() if is_numpy else v


def saturate(v_lin: torch.Tensor, c_m_s: float | None) -> torch.Tensor:
    """Smooth saturation toward ``c``: ``v / sqrt(1 + (v/c)²)`` (odd, monotone)."""
    if c_m_s is None or math.isinf(c_m_s):
        return v_lin
    return v_lin / torch.sqrt(1.0 + (v_lin / c_m_s) ** 2)


def count_below_data(valid_range: ValidRange, tau: torch.Tensor, char: torch.Tensor) -> int:
    """How many of the points ``tau`` (n,) Pa of characters ``char`` (n,) lie below the
    lowest |τ| their character's data measured (``valid_range.tau_lowest_mpa_by_character``),
    above 0 (at τ = 0 every law gives v = 0 by oddness, no interpolation): where the law's
    velocity is its form between v(0) = 0 and the lowest data point. 0 where the lowest
    stress is not known (:meth:`ValidRange.tau_lowest_pa`). One vectorised comparison
    (the DD calls it at every step): on the CPU in NumPy (300 points: 55 µs a call,
    against 100 µs with torch's per-call cost, measured on a 2-core machine; a neural
    law's call there costs ~1 ms, a DD step of the Mo example ~13 ms), elsewhere in
    torch."""
    if not valid_range.tau_lowest_mpa_by_character:
        return 0
    if tau.device.type == "cpu" and char.device.type == "cpu":
        tables = valid_range.__dict__.setdefault("_lowest_tables", {})
        table = tables.get("numpy")
        if table is None:
            table = tables["numpy"] = valid_range.tau_lowest_pa(
                torch.arange(-1, len(CHARACTERS) + 1)).numpy() * BELOW_DATA_FACTOR
        lo = table[np.clip(char.detach().numpy(), -1, len(CHARACTERS)) + 1]
        a = np.abs(tau.detach().numpy())
        return int(np.count_nonzero((a < lo) & (a > 0)))
    lowest = valid_range.tau_lowest_pa(char)
    if lowest is None:
        return 0
    a = tau.abs()
    return int(((a < lowest.to(a.device) * BELOW_DATA_FACTOR) & (a > 0)).sum())


# --------------------------------------------------------------------------- analytic laws
@dataclass
class LinearDragMobility:
    """Phonon drag above a threshold stress, the MD's edge glide law in its linear range:
    ``v = sign(τ) b max(|τ| − τ₀(T), 0) / B(T)``, saturating toward ``saturation_m_s``
    (``None``: no saturation).

    ``B(T) = b0_pa_s + b1_pa_s_k·T`` (screws: times ``screw_ratio``);
    ``τ₀(T) = max(tau0_pa + tau0_pa_k·T, 0)`` (Pa; screws: ``screw_tau0_pa +
    screw_tau0_pa_k·T`` when ``screw_tau0_pa`` is set, else the edge's). The clamp at 0
    keeps the law odd, zero at τ = 0 and non-decreasing in |τ| for any fitted line.
    Configs written before the threshold existed load with τ₀ = 0 (pure drag).
    ``n_below_data`` counts the evaluations below the lowest stress its data measured
    (:func:`count_below_data`; none where its range does not record it).
    """

    burgers_m: float
    b0_pa_s: float
    b1_pa_s_k: float = 0.0
    screw_ratio: float = 1.0
    saturation_m_s: float | None = None
    tau0_pa: float = 0.0
    tau0_pa_k: float = 0.0
    screw_tau0_pa: float | None = None
    screw_tau0_pa_k: float = 0.0
    valid_range: ValidRange = field(default_factory=ValidRange)
    name: str = "LinearDragMobility"

    def __post_init__(self) -> None:
        for k in ("tau0_pa", "tau0_pa_k", "screw_tau0_pa", "screw_tau0_pa_k"):
            x = getattr(self, k)
            if x is not None and not math.isfinite(x):
                raise ValueError(f"LinearDragMobility: {k} = {x} is not finite")
        self.n_below_data = 0   # running count (not a field: not in the config)

    def drag(self, temperature_k: torch.Tensor, character: torch.Tensor) -> torch.Tensor:
        """Drag coefficient B (n,) Pa·s."""
        b = self.b0_pa_s + self.b1_pa_s_k * temperature_k
        return torch.where(character == 1, b * self.screw_ratio, b)

    def threshold(self, temperature_k: torch.Tensor, character: torch.Tensor
                  ) -> torch.Tensor:
        """Threshold (friction) stress τ₀ (n,) Pa, ≥ 0."""
        t0 = self.tau0_pa + self.tau0_pa_k * temperature_k
        if self.screw_tau0_pa is not None:
            t0 = torch.where(character == 1,
                             self.screw_tau0_pa + self.screw_tau0_pa_k * temperature_k, t0)
        return t0.clamp_min(0.0)

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        tau, temp, char, is_np = as_tensors(tau_pa, temperature_k, character)
        self.n_below_data += count_below_data(self.valid_range, tau, char)
        excess = (tau.abs() - self.threshold(temp, char)).clamp_min(0.0)
        v_lin = torch.sign(tau) * self.burgers_m * excess / self.drag(temp, char)
        return _out(saturate(v_lin, self.saturation_m_s), is_np)

    def config(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("valid_range"), d.pop("name")
        return d


@dataclass
class KinkPairMobility:
    """Kink-pair glide for screws in series with drag; edges by drag alone.

    ``v_kp = v0 [exp(-H0 (1 - (|τ|/τP)^p)^q / kT) - exp(-H0/kT)] sign(τ)`` (zero at τ = 0,
    odd, monotone), ``1/v = 1/v_kp + 1/v_drag`` for screws.
    """

    burgers_m: float
    enthalpy_ev: float
    peierls_pa: float
    attempt_m_s: float
    drag_pa_s: float
    p: float = 0.5
    q: float = 1.5
    saturation_m_s: float | None = None
    valid_range: ValidRange = field(default_factory=ValidRange)
    name: str = "KinkPairMobility"

    def __post_init__(self) -> None:
        # evaluations below the lowest stress of the data its range records (none for
        # the analytic default range): a running count, not a field
        self.n_below_data = 0

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        tau, temp, char, is_np = as_tensors(tau_pa, temperature_k, character)
        self.n_below_data += count_below_data(self.valid_range, tau, char)
        a = tau.abs()
        kt = KB_EV * temp.clamp_min(1e-3)
        x = (a / self.peierls_pa).clamp(max=1.0)
        dh = self.enthalpy_ev * (1.0 - x ** self.p).clamp_min(0.0) ** self.q
        v_kp = self.attempt_m_s * (torch.exp(-dh / kt) - torch.exp(-self.enthalpy_ev / kt))
        v_drag = saturate(self.burgers_m * a / self.drag_pa_s, self.saturation_m_s)
        tiny = torch.finfo(torch.float64).tiny
        v_screw = v_kp * v_drag / (v_kp + v_drag).clamp_min(tiny)
        v = torch.where(char == 1, v_screw, v_drag)
        return _out(torch.sign(tau) * v, is_np)

    def config(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("valid_range"), d.pop("name")
        return d


# --------------------------------------------------------------------------- wrapped laws
class _WrappedLaw:
    """Mixin of a mobility law that wraps another one, ``law``."""

    law: Any

    @property
    def n_out_of_range(self) -> int:
        """The wrapped law's running count of clamped points (0 for analytic laws)."""
        return int(getattr(self.law, "n_out_of_range", 0))

    @property
    def n_below_data(self) -> int:
        """The wrapped law's running count of evaluations below the lowest stress its
        data measured (:func:`count_below_data`; it sees every τ this law is asked)."""
        return int(getattr(self.law, "n_below_data", 0))


# --------------------------------------------------------------------------- glide character
@dataclass
class GlideCharacterMobility(_WrappedLaw):
    """The law of one character for every dislocation: the 2D DD has one kind of
    dislocation, and the character whose mobility controls glide (BCC: the slow screws)
    is a choice, made here once instead of inside the engine.

    ``velocity(τ, T, any character)`` = ``law.velocity(τ, T, character)``, so its valid
    range is the chosen character's |τ| range for every character name.
    """

    law: Any
    character: int
    name: str = ""
    valid_range: ValidRange = field(default_factory=ValidRange)

    def __post_init__(self) -> None:
        if self.character not in (0, 1):
            raise ValueError(f"character must be 0 (edge) or 1 (screw), got {self.character}")
        self.name = self.name or f"{self.law.name}[{CHARACTERS[self.character]}]"
        r = self.law.valid_range
        tau = r.tau_range(self.character)
        lowest = r.lowest_tau_mpa(self.character)
        self.valid_range = ValidRange(tau, r.temperature_k, CHARACTERS,
                                      {c: tau for c in CHARACTERS},
                                      {} if lowest is None else
                                      {c: lowest for c in CHARACTERS})

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        n = tau_pa.shape[0]
        char = (torch.full((n,), self.character, dtype=torch.long, device=tau_pa.device)
                if isinstance(tau_pa, torch.Tensor) else np.full(n, self.character))
        return self.law.velocity(tau_pa, temperature_k, char)


@dataclass
class DragScaledMobility(_WrappedLaw):
    """``law`` with every velocity divided by ``factor``: its drag B (and a saturation
    speed with it) scaled by ``factor``, everything else (range, characters) as it is.
    The DD's drag probe (``DDSettings.drag_probe``) runs with it to measure how the flow
    stress responds to the MD's B."""

    law: Any
    factor: float
    name: str = ""
    valid_range: ValidRange = field(default_factory=ValidRange)

    def __post_init__(self) -> None:
        if not self.factor > 0:
            raise ValueError(f"factor must be > 0, got {self.factor}")
        self.name = self.name or f"{self.law.name} x B{self.factor:g}"
        self.valid_range = self.law.valid_range

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        return self.law.velocity(tau_pa, temperature_k, character) / self.factor


@dataclass
class LimitSpeedMobility(_WrappedLaw):
    """``law`` with every evaluation beyond its stress range (|τ| above its character's
    top stress) at the limiting speed of that character instead: the fastest a
    dislocation glides (the transverse sound speed c_t), the upper bound of what the
    law could do beyond its data, where a neural law clamps to the velocity at its top
    stress (the lower bound: the velocity grows with |τ|). Within the range it is
    ``law``. The DD's range probe (``DDSettings.range_probe``) runs with it to bracket
    what its clamped evaluations could change.

    Attributes:
        limit_m_s: (2,) limiting speed of an edge and a screw, m/s (a limit below the
            law's own velocity there leaves that velocity: still an upper bound).
    """

    law: Any
    limit_m_s: tuple[float, float]
    name: str = ""
    valid_range: ValidRange = field(default_factory=ValidRange)

    def __post_init__(self) -> None:
        if len(self.limit_m_s) != len(CHARACTERS) or not all(
                math.isfinite(c) and c > 0 for c in self.limit_m_s):
            raise ValueError(f"limit_m_s must be {len(CHARACTERS)} finite speeds > 0, got "
                             f"{self.limit_m_s}")
        self.name = self.name or f"{self.law.name} (c_t beyond its range)"
        self.valid_range = self.law.valid_range
        self.n_replaced = 0

    @property
    def n_out_of_range(self) -> int:
        """The evaluations this law set to the limiting speed (beyond the range), whatever
        the wrapped law counts (an analytic law counts none)."""
        return self.n_replaced

    def velocity(self, tau_pa: ArrayLike, temperature_k: ArrayLike | float,
                 character: ArrayLike | int) -> ArrayLike:
        v_in = self.law.velocity(tau_pa, temperature_k, character)
        tau, _, char, is_np = as_tensors(tau_pa, temperature_k, character)
        v = torch.as_tensor(np.asarray(v_in) if is_np else v_in, dtype=torch.float64)
        hi = self.law.valid_range.tau_hi_mpa(char).to(tau.device) * 1e6
        beyond = tau.abs() > hi * (1 + 1e-9)
        self.n_replaced += int(beyond.sum())
        if bool(beyond.any()):
            lim = torch.as_tensor(self.limit_m_s, dtype=torch.float64,
                                  device=tau.device)[char.clamp(0, len(CHARACTERS) - 1)]
            v = torch.where(beyond, torch.sign(tau) * torch.maximum(lim, v.abs()), v)
        return _out(v, is_np)


def temperature_sensitivity(law: MobilityLaw, character: int, tau_pa: float,
                            temperatures_k: tuple[float, float]) -> float:
    """Relative change of the glide velocity at ``tau_pa`` between two temperatures,
    ``v(T2)/v(T1) - 1`` (0 for a law that does not feel T there, e.g. a neural law
    clamped to the one temperature it was trained at)."""
    v = np.asarray(law.velocity(np.array([tau_pa, tau_pa]), np.array(temperatures_k),
                                np.array([character, character])), dtype=float)
    return float(v[1] / v[0] - 1.0) if v[0] != 0 else math.inf


# --------------------------------------------------------------------------- range checks
def range_violations(law: MobilityLaw, tau: torch.Tensor, temp: torch.Tensor,
                     char: torch.Tensor, tau_hi_mpa: torch.Tensor | None = None
                     ) -> torch.Tensor:
    """(n,) bool: points outside ``law.valid_range`` (|τ| against the range of each
    point's own character; ``tau_hi_mpa``: ``law.valid_range.tau_hi_mpa(char)`` when the
    caller has it)."""
    r = law.valid_range
    a = tau.abs() * 1e-6
    hi = (r.tau_hi_mpa(char) if tau_hi_mpa is None else tau_hi_mpa).to(a.device)
    bad = (a > hi * (1 + 1e-9)) | (temp < r.temperature_k[0] * (1 - 1e-9)) | (
        temp > r.temperature_k[1] * (1 + 1e-9))
    allowed = torch.tensor([CHARACTERS.index(c) for c in r.characters], dtype=torch.long)
    bad |= ~torch.isin(char, allowed)
    return bad


def describe_violation(law: MobilityLaw, tau: torch.Tensor, temp: torch.Tensor,
                       char: torch.Tensor, bad: torch.Tensor) -> str:
    """One line naming the first out-of-range point and the trained range."""
    i = int(torch.nonzero(bad)[0])
    r = law.valid_range
    c = int(char[i])
    cname = CHARACTERS[c] if 0 <= c < len(CHARACTERS) else str(c)
    own = f" ({cname})" if dict(r.tau_mpa_by_character).get(cname) else ""
    return (f"{law.name}: point {i} (tau={float(tau[i]) * 1e-6:.4g} MPa, "
            f"T={float(temp[i]):.4g} K, {cname}) is outside the training range "
            f"|tau| <= {r.tau_range(cname)[1]:.4g} MPa{own}, T in [{r.temperature_k[0]:.4g}, "
            f"{r.temperature_k[1]:.4g}] K, characters {list(r.characters)} "
            f"({int(bad.sum())} of {bad.numel()} points)")


# --------------------------------------------------------------------------- checker
def check_mobility(law: MobilityLaw, n: int = 64, seed: int = 0) -> dict[str, float]:
    """Check that ``law`` honours the :class:`MobilityLaw` protocol.

    Checks: attributes; (n,) in -> (n,) out for NumPy and torch with the same values;
    batched == one-by-one; inputs untouched; finite; odd in τ; non-decreasing in τ;
    dissipation τ·v ≥ 0; v(0) = 0. Points are drawn inside ``law.valid_range`` (|τ|
    inside each character's own range).

    Returns:
        Headline numbers (largest oddness and monotonicity defects, in m/s).

    Raises:
        MobilityCheckError: naming the first failed property.
    """
    def fail(msg: str) -> None:
        raise MobilityCheckError(f"check_mobility({getattr(law, 'name', law)!r}): {msg}")

    if not isinstance(law, MobilityLaw):
        fail("has no name/valid_range/velocity")
    r = law.valid_range
    if not isinstance(r, ValidRange) or not r.characters:
        fail("valid_range is not a ValidRange with at least one character")
    rng = np.random.default_rng(seed)
    tmax = np.array([hi if math.isfinite(hi) else 500.0
                     for hi in (r.tau_range(c)[1] for c in range(len(CHARACTERS)))])
    tlo = r.temperature_k[0] if r.temperature_k[0] > 0 else 10.0
    thi = r.temperature_k[1] if math.isfinite(r.temperature_k[1]) else 1000.0
    chars = np.array([CHARACTERS.index(c) for c in r.characters])
    unit = rng.uniform(-1.0, 1.0, n)
    temp = rng.uniform(tlo, thi, n)
    char = rng.choice(chars, n)
    tau = unit * tmax[char] * 1e6
    copies = (tau.copy(), temp.copy(), char.copy())

    v = law.velocity(tau, temp, char)
    if not isinstance(v, np.ndarray) or v.shape != (n,):
        fail(f"NumPy input (n,) must give a NumPy (n,) array, got {type(v).__name__} "
             f"{getattr(v, 'shape', None)}")
    if not all(np.array_equal(a, b) for a, b in zip(copies, (tau, temp, char), strict=True)):
        fail("mutated its inputs")
    if not np.all(np.isfinite(v)):
        fail("returned non-finite velocities inside its valid range")
    vt = law.velocity(torch.as_tensor(tau), torch.as_tensor(temp), torch.as_tensor(char))
    if not isinstance(vt, torch.Tensor) or tuple(vt.shape) != (n,):
        fail("torch input (n,) must give a torch (n,) tensor")
    scale = max(float(np.abs(v).max()), 1e-30)
    if not np.allclose(vt.detach().numpy(), v, rtol=1e-6, atol=1e-9 * scale):
        fail("torch and NumPy inputs give different velocities")
    one = np.array([law.velocity(tau[i:i + 1], temp[i:i + 1], char[i:i + 1])[0]
                    for i in range(min(n, 8))])
    if not np.allclose(one, v[:len(one)], rtol=1e-6, atol=1e-9 * scale):
        fail("batched and one-by-one calls differ")
    odd = float(np.abs(law.velocity(-tau, temp, char) + v).max())
    if odd > 1e-6 * scale + 1e-12:
        fail(f"not odd in tau: max |v(-tau) + v(tau)| = {odd:.3g} m/s")
    if np.any(tau * v < -1e-12 * scale * np.abs(tau)):
        fail("negative dissipation tau*v < 0")
    zero = law.velocity(np.zeros(len(chars)), np.full(len(chars), tlo), chars)
    if np.abs(zero).max() > 1e-9 * scale:
        fail("v(0) != 0")
    # monotone: a grid in tau per (T, character)
    worst = 0.0
    for t in (tlo, 0.5 * (tlo + thi), thi):
        for c in chars:
            grid = np.linspace(-tmax[c], tmax[c], 201) * 1e6
            vg = law.velocity(grid, np.full_like(grid, t), np.full(grid.shape, c))
            worst = max(worst, float(np.max(-np.diff(vg), initial=0.0)))
    if worst > 1e-9 * scale:
        fail(f"not monotone in tau: drops by {worst:.3g} m/s between grid points")
    return {"oddness_m_s": odd, "monotone_drop_m_s": worst, "max_speed_m_s": scale}


# --------------------------------------------------------------------------- save / load
MOBILITY_JSON = "mobility.json"
MOBILITY_PT = "mobility.pt"


def save_mobility(law: MobilityLaw, directory: Path, extra: dict[str, Any] | None = None
                  ) -> Path:
    """Write ``mobility.json`` (class, config, valid range) and, for neural laws,
    ``mobility.pt`` into ``directory``."""
    from scalebridge.artifacts import write_json_atomic
    from scalebridge.dd_coupling.neural import NeuralMobility

    directory = Path(directory)
    doc: dict[str, Any] = {"class": law.name, "valid_range": law.valid_range.to_json()}
    if isinstance(law, NeuralMobility):
        doc["config"] = law.config()
        law.save_weights(directory / MOBILITY_PT)
        doc["weights"] = MOBILITY_PT
    else:
        doc["config"] = law.config()  # type: ignore[attr-defined]
    doc.update(extra or {})
    write_json_atomic(directory / MOBILITY_JSON, doc)
    return directory / MOBILITY_JSON


def load_mobility(path: str | Path, out_of_range: OutOfRangePolicy | None = None
                  ) -> MobilityLaw:
    """Read a law from a MobilityLaw artifact directory or its ``mobility.json``.

    Args:
        path: the artifact directory or the JSON file.
        out_of_range: override the neural law's policy ("error", "warn", "clamp").

    Raises:
        ArtifactError: missing file, unknown class or bad config (one line).
    """
    from scalebridge.dd_coupling.neural import NeuralMobility

    path = Path(path)
    jpath = path / MOBILITY_JSON if path.is_dir() else path
    if not jpath.is_file():
        raise ArtifactError(f"no {MOBILITY_JSON} at {path}")
    try:
        doc = json.loads(jpath.read_text())
        cls_name = doc["class"]
        cfg = dict(doc["config"])
        vr = ValidRange.from_json(doc.get("valid_range", {}))
    except (ValueError, KeyError, TypeError) as e:   # JSONDecodeError is a ValueError
        raise ArtifactError(f"{jpath}: not a mobility law ({type(e).__name__}: {e})") from None
    try:
        if cls_name == "LinearDragMobility":
            return LinearDragMobility(**cfg, valid_range=vr)
        if cls_name == "KinkPairMobility":
            return KinkPairMobility(**cfg, valid_range=vr)
        if cls_name == "NeuralMobility":
            law = NeuralMobility.from_config(cfg, vr)
            law.load_weights(jpath.parent / doc.get("weights", MOBILITY_PT))
            if out_of_range is not None:
                law.out_of_range = out_of_range
            return law
    except (TypeError, ValueError) as e:   # a missing/extra key; a value the law refuses
        raise ArtifactError(f"{jpath}: bad config for {cls_name}: {e}") from None
    raise ArtifactError(f"{jpath}: unknown mobility class {cls_name!r}")


__all__ = [
    "CHARACTERS", "KB_EV", "DragScaledMobility", "GlideCharacterMobility", "KinkPairMobility",
    "LimitSpeedMobility", "LinearDragMobility", "MobilityCheckError", "MobilityLaw",
    "OutOfRangeError", "ValidRange",
    "as_tensors", "check_mobility", "count_below_data", "describe_violation", "load_mobility",
    "range_violations",
    "saturate", "save_mobility", "temperature_sensitivity",
]
