"""2D discrete dislocation dynamics (Van der Giessen & Needleman style), vectorized in torch.

Straight edge dislocations (line along z) glide on slip planes of several slip systems in a
doubly periodic ``lx × ly`` cell under plane strain. Each slip plane is a closed line
(the cell is commensurate with the slip directions, see :func:`plane_period`), so a
dislocation is (plane, s): its plane index and its coordinate ``s ∈ [0, L_plane)`` along it.

One :func:`step`:

1. resolved shear stress on every dislocation: internal field of all others with periodic
   images + applied stress × the Schmid factor of its system. The field is the doubly
   periodic one, evaluated by :func:`~scalebridge.dd_coupling.field.ewald_field` (particle
   mesh + cell lists, O(N log N)) or, for few dislocations, by the direct sum
   :func:`~scalebridge.dd_coupling.elastic.periodic_field` (O(N²), ``image_rows`` rows of
   images): ``DDParams.field``;
2. glide velocity from the mobility law (Peach-Koehler glide force ``f = sign·b·τ``:
   velocity along +s is ``V(sign·τ)``);
3. adaptive time step ``dt = min(dt_max, max_glide / max|v|)``;
4. sources: a source whose resolved stress exceeds its strength for ``t_nuc`` (typed, or
   bow-out times at the law's velocity, the mean source's for all or each source's own
   in ``DDGeometry.src_time``: ``DDSettings.nucleation_clock``; or, with
   ``DDParams.nucleation = "bow_out"``, long enough to glide half its Frank-Read length at
   the law's velocity; ``"overstress"``, at the law's velocity for the stress in excess of
   its strength) emits a dipole of spacing ``L_nuc = μb / (2π(1-ν)τ_nuc)``
   (expanding under the stress);
5. glide with point obstacles that stop a dislocation until ``|τ| > τ_obs``;
6. annihilation of opposite-sign neighbours on a plane that end the step closer than the
   capture distance or crossed each other during it (so the glide per step may exceed it);
   dislocations on different systems closer than the junction distance lock (v = 0)
   until the stress without their partner exceeds the junction strength (the nearest
   neighbour comes from the field's cell lists: O(N));
7. loading: strain control ``τ_app = M (ε̇ t - ε_p)`` or stress control ``τ_app = σ̇ t``.

All per-dislocation work is tensor operations (no Python loop over dislocations). The
state lives on ``DDParams.device`` (``"auto"``: CUDA when torch sees a GPU, else the CPU,
with torch's CPU threads: ``torch.set_num_threads``); the mobility law is evaluated on the
CPU (laws take NumPy or CPU tensors).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch
from scalebridge.dd_coupling.elastic import pair_s2, periodic_field, resolved_shear
from scalebridge.dd_coupling.field import ewald_field, make_plan
from scalebridge.dd_coupling.mobility import MobilityLaw
from scalebridge.errors import SettingsError

Loading = Literal["strain", "stress"]
Component = Literal["shear_xy", "tension_x"]
FieldMethod = Literal["auto", "ewald", "direct"]

#: ``field="auto"``: the direct sum below this many field points × dislocations (it is
#: exact to its image rows and as fast there), the particle mesh above
DIRECT_MAX_PAIRS = 200 * 200


def plane_period(angle_rad: float, lx: float, ly: float, max_int: int = 12
                 ) -> tuple[float, float]:
    """(loop length L, spacing D of distinct planes) for slip direction ``angle`` in the
    cell: the direction must satisfy ``tanθ = n·ly / (m·lx)`` with small integers.

    Raises:
        SettingsError: the angle is not commensurate with the cell.
    """
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    if abs(s) < 1e-12:
        return lx, ly
    if abs(c) < 1e-12:
        return ly, lx
    ratio = abs(s * lx / (c * ly))              # n/m
    frac = Fraction(ratio).limit_denominator(max_int)
    if frac.numerator == 0 or abs(float(frac) - ratio) > 1e-9 * ratio:
        raise SettingsError(
            f"slip angle {math.degrees(angle_rad):.6g} deg is not commensurate with the "
            f"cell {lx:.4g} x {ly:.4g} m (tan(angle)*lx/ly = {ratio:.6g} is not a ratio of "
            f"small integers); leave cell_ly_um unset to get a commensurate cell")
    n, m = frac.numerator, frac.denominator
    length = math.hypot(m * lx, n * ly)
    return length, lx * abs(s) / n


@dataclass
class DDGeometry:
    """Everything that does not change during a run (SI units).

    Attributes:
        lx, ly: cell size, m.
        angles: (n_sys,) slip directions, rad.
        schmid: (n_sys,) Schmid factor of each system for the loading component.
        plane_system: (n_planes,) long, system of each plane.
        plane_origin: (n_planes, 2) m, a point of each plane.
        plane_length: (n_planes,) m, loop length of each plane.
        src_plane, src_s: (n_src,) sources: plane and coordinate along it.
        src_tau: (n_src,) Pa, nucleation strength; src_length: (n_src,) m, dipole spacing.
        src_time: (n_src,) s, each source's own nucleation time (the "time" rule), or
            None: ``DDParams.nucleation_time_s`` for every source.
        obs_plane, obs_s, obs_tau: (n_obs,) obstacles: plane, coordinate, strength (Pa);
            sorted by key ``plane + s/L``.
    """

    lx: float
    ly: float
    angles: torch.Tensor
    schmid: torch.Tensor
    plane_system: torch.Tensor
    plane_origin: torch.Tensor
    plane_length: torch.Tensor
    src_plane: torch.Tensor
    src_s: torch.Tensor
    src_tau: torch.Tensor
    src_length: torch.Tensor
    obs_plane: torch.Tensor
    obs_s: torch.Tensor
    obs_tau: torch.Tensor
    src_time: torch.Tensor | None = None

    @property
    def area(self) -> float:
        return self.lx * self.ly


@dataclass
class DDParams:
    """Material, mobility and numerical parameters of a run (SI units)."""

    mu_pa: float
    nu: float
    b_m: float
    mobility: MobilityLaw
    temperature_k: float = 300.0
    nucleation_time_s: float = 10e-9
    nucleation: Literal["time", "bow_out", "overstress"] = "time"
    """when a source above its strength emits: "time", after ``nucleation_time_s`` (or
    its own ``DDGeometry.src_time``, where the geometry carries one);
    "bow_out", once its segment has bowed out to the critical half-circle, i.e. glided
    half its Frank-Read length ``source_beta·μ·b/τ_src`` at the mobility law's velocity
    under the source's resolved stress (so the drag the MD measured sets the time);
    "overstress", the same distance at the law's velocity under the stress in excess of
    the source's strength, |τ| − τ_src: the line tension holds τ_src of the stress at the
    critical half-circle, so the time diverges as τ → τ_src (for a linear drag
    ``L B / (2 b (|τ| − τ_src))``; an upper bound, the bowing segment's line tension
    being below τ_src before the half-circle)"""
    source_beta: float = 1.0
    """β of the Frank-Read strength τ_src = β μ b / L ("bow_out": the length L)"""
    capture_m: float = 1.5e-9
    dt_max_s: float = 0.5e-9
    max_glide_m: float = 0.75e-9
    dt_quantile: float = 1.0
    """dt = max_glide / (this quantile of |v|); 1: the fastest dislocation sets dt (exact),
    < 1: faster ones are limited to max_glide per step (a displacement limiter)"""
    image_rows: int = 1
    junction_m: float = 1.5e-9
    """dislocations on different systems closer than this form a junction (0: off)"""
    junction_strength_pa: float = 300e6
    """stress (without the partner) that breaks a junction"""
    loading: Loading = "strain"
    component: Component = "shear_xy"
    rate: float = 1e4
    """strain rate (1/s) for strain control, stress rate (Pa/s) for stress control"""
    stress_offset_pa: float = 0.0
    """stress control: applied stress = offset + rate·t"""
    field: FieldMethod = "auto"
    """internal field: "ewald" (particle mesh + cell lists, O(N log N), the doubly periodic
    field to ~1e-6 of the largest stress), "direct" (all pairs with ``image_rows`` rows
    of images, O(N²)), "auto" (direct below DIRECT_MAX_PAIRS pairs)"""
    field_dtype: Literal["float32", "float64"] = "float32"
    """arithmetic of the particle-mesh field (pair offsets are always float64; float32
    changes the resolved shear by < 1e-7 of the largest, tests/dd_coupling)"""
    device: str = "auto"
    """torch device of the state: "auto" (cuda if available, else cpu), "cpu", "cuda", ..."""

    @property
    def modulus_pa(self) -> float:
        """Elastic modulus conjugate to the loading component: μ (shear) or the plane
        strain uniaxial-stress modulus 2μ/(1-ν) (tension)."""
        return self.mu_pa if self.component == "shear_xy" else 2 * self.mu_pa / (1 - self.nu)


@dataclass
class DDState:
    """Dislocations and load at one instant (n dislocations, n_src sources).

    Attributes:
        plane: (n,) long, slip-plane index.
        s: (n,) m, coordinate along the plane, in [0, L_plane).
        sign: (n,) ±1.0, Burgers vector = sign·b·(cosθ, sinθ) of its system.
        travel: (n,) m, signed glide distance since creation (unwrapped).
        src_timer: (n_src,) time each source has spent above its strength, s (with
            ``nucleation="bow_out"`` or ``"overstress"``: the distance its segment has
            bowed out, m).
        time: s; strain: applied strain (conjugate to the loading component);
        plastic_strain: plastic strain, same measure; stress_pa: applied stress;
        removed_moment: Σ sign·m·travel (m) of annihilated dislocations (bookkeeping for
            plastic strain = Σ b Δs / area);
        inserted_strain: the part of ``plastic_strain`` the sources' dipoles brought
            when they were inserted (b m sign(τ_src) L_nuc / area each: net, a firing
            against the applied stress counts negative), not glided: the rest is glide
            at the mobility law's velocities;
        n_nucleated, n_annihilated, n_steps: counters;
        n_pinned: dislocations stopped at obstacles in the last step;
        n_limited: moves cut to max_glide so far (only with dt_quantile < 1).
        n_beyond: glide evaluations so far whose driving stress lies beyond the
            mobility law's stress range (|τ| above ``valid_range.tau_hi_mpa``; the
            stress bound only, not the temperature); 0 for a law without a finite top.
        n_beyond_law_set: those whose velocity value reached the dynamics (see
            :func:`beyond_law_set`; also every one whose velocity is 0 or against the
            stress the law was asked at): the rest were held at an obstacle or cut to
            max_glide in a step whose time step they could not set, so any velocity at
            least the clamp's there gives the same trajectory.
        n_dt_sensitive: steps in which raising the beyond-range speeds could have
            changed the time step (every free beyond-range evaluation of such a step
            counts in ``n_beyond_law_set``).
        n_beyond_source_set: the sources' bow-out evaluations (``nucleation="bow_out"``
            or ``"overstress"``) beyond the law's stress range that grew a timer (not
            glide evaluations: outside the count of evaluations).
    """

    plane: torch.Tensor
    s: torch.Tensor
    sign: torch.Tensor
    travel: torch.Tensor
    src_timer: torch.Tensor
    time: float = 0.0
    strain: float = 0.0
    plastic_strain: float = 0.0
    stress_pa: float = 0.0
    removed_moment: float = 0.0
    inserted_strain: float = 0.0
    n_nucleated: int = 0
    n_annihilated: int = 0
    n_steps: int = 0
    n_pinned: int = 0
    n_limited: int = 0
    n_beyond: int = 0
    n_beyond_law_set: int = 0
    n_dt_sensitive: int = 0
    n_beyond_source_set: int = 0
    last_dt: float = 0.0
    max_speed: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.plane.shape[0])

    def to(self, device: str | torch.device) -> DDState:
        """The same state with its tensors on ``device`` (e.g. "cpu" for output)."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})


# ------------------------------------------------------------------------- geometry
def schmid_factor(angles: torch.Tensor, component: Component) -> torch.Tensor:
    """Resolved shear per unit applied stress, (n_sys,): cos2θ for σxy, -sin2θ/2 for σxx."""
    if component == "shear_xy":
        return torch.cos(2 * angles)
    return -0.5 * torch.sin(2 * angles)


def make_planes(angles: torch.Tensor, lx: float, ly: float, spacing: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Evenly spaced distinct slip planes of every system.

    Returns:
        plane_system (n_planes,), plane_origin (n_planes, 2) m, plane_length (n_planes,) m.
    """
    systems, origins, lengths = [], [], []
    for i, th in enumerate(angles.tolist()):
        length, d_span = plane_period(th, lx, ly)
        k = max(1, round(d_span / spacing))
        normal = np.array([-math.sin(th), math.cos(th)])
        for j in range(k):
            d = (j + 0.5) * d_span / k
            systems.append(i)
            origins.append(d * normal)
            lengths.append(length)
    return (torch.tensor(systems, dtype=torch.long),
            torch.tensor(np.array(origins), dtype=torch.float64),
            torch.tensor(lengths, dtype=torch.float64))


def positions(geom: DDGeometry, plane: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Wrapped positions (n, 2) m of points ``s`` along planes ``plane``."""
    th = geom.angles[geom.plane_system[plane]]
    p = geom.plane_origin[plane] + s[:, None] * torch.stack([torch.cos(th), torch.sin(th)], 1)
    box = torch.tensor([geom.lx, geom.ly], dtype=p.dtype, device=p.device)
    return torch.remainder(p, box)


def burgers(geom: DDGeometry, plane: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Complex Burgers vectors (n,) in units of b: sign·e^{iθ}."""
    th = geom.angles[geom.plane_system[plane]]
    return sign * torch.exp(1j * th)


def _keys(geom: DDGeometry, plane: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return plane.to(torch.float64) + s / geom.plane_length[plane]


def sort_obstacles(geom: DDGeometry) -> DDGeometry:
    """Return ``geom`` with obstacles sorted by (plane, s) (needed by :func:`step`)."""
    order = torch.argsort(_keys(geom, geom.obs_plane, geom.obs_s))
    return replace(geom, obs_plane=geom.obs_plane[order], obs_s=geom.obs_s[order],
                   obs_tau=geom.obs_tau[order])


# ------------------------------------------------------------------------- device
def resolve_device(name: str | torch.device) -> torch.device:
    """The torch device for a ``DDParams.device`` setting: "auto" by the rule DeePMD's
    training uses (:func:`scalebridge.runtime.torch_device`: cuda where torch sees a
    GPU), any other torch device name ("cpu", "cuda:1") as given."""
    if name == "auto":
        from scalebridge.runtime import torch_device

        name = torch_device("auto")
    return torch.empty(0, device=name).device        # normalised ("cuda" -> "cuda:0")


def geometry_on(geom: DDGeometry, device: torch.device) -> DDGeometry:
    """``geom`` with its tensors on ``device`` (the copy is kept on ``geom``)."""
    if geom.angles.device == device:
        return geom
    cache = geom.__dict__.setdefault("_device_copies", {})
    if str(device) not in cache:
        cache[str(device)] = replace(geom, **{
            f.name: getattr(geom, f.name).to(device) for f in fields(geom)
            if isinstance(getattr(geom, f.name), torch.Tensor)})
    return cache[str(device)]


def _derived(geom: DDGeometry, name: str, inputs: tuple[torch.Tensor, ...],
             make: Callable[[], Any]) -> Any:
    """``make()``, a function of ``geom``'s tensors ``inputs`` that does not change during
    a run, computed once and kept on ``geom`` (recomputed if one of ``inputs`` was
    replaced or modified in place)."""
    cache = geom.__dict__.setdefault("_derived", {})
    hit = cache.get(name)
    if hit is not None and len(hit[0]) == len(inputs) and all(
            t is u and t._version == v for t, (u, v) in zip(inputs, hit[0], strict=True)):
        return hit[1]
    value = make()
    cache[name] = (tuple((t, t._version) for t in inputs), value)
    return value


def _sources(geom: DDGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions (n_src, 2) m, system (n_src,)) of the sources (fixed: kept on ``geom``)."""
    return _derived(geom, "sources", (geom.angles, geom.plane_system, geom.plane_origin,
                                      geom.src_plane, geom.src_s),
                    lambda: (positions(geom, geom.src_plane, geom.src_s),
                             geom.plane_system[geom.src_plane]))


def _obstacle_keys(geom: DDGeometry) -> torch.Tensor:
    """Sort keys ``plane + s/L`` (n_obs,) of the obstacles (fixed: kept on ``geom``)."""
    return _derived(geom, "obstacle_keys", (geom.obs_plane, geom.obs_s, geom.plane_length),
                    lambda: _keys(geom, geom.obs_plane, geom.obs_s))


# ------------------------------------------------------------------------- init
def init(geom: DDGeometry, plane: torch.Tensor | None = None, s: torch.Tensor | None = None,
         sign: torch.Tensor | None = None, params: DDParams | None = None) -> DDState:
    """Initial state with dislocations on planes ``plane`` (n,) at ``s`` (n,) m with signs
    ``sign`` (n,) (none if omitted); with ``params`` the applied stress at t = 0 is set
    and the state is put on ``params.device`` (else it stays where ``plane`` is)."""
    if plane is None:
        plane = torch.zeros(0, dtype=torch.long)
        s = torch.zeros(0, dtype=torch.float64)
        sign = torch.zeros(0, dtype=torch.float64)
    assert s is not None and sign is not None
    dev = resolve_device(params.device) if params is not None else plane.device
    geom = geometry_on(geom, dev)
    plane = plane.to(dev)
    s = torch.remainder(s.to(dev, torch.float64), geom.plane_length[plane])
    state = DDState(plane=plane.to(torch.long), s=s, sign=sign.to(dev, torch.float64),
                    travel=torch.zeros_like(s),
                    src_timer=torch.zeros(geom.src_plane.shape[0], dtype=torch.float64,
                                          device=dev))
    if params is not None:
        state.stress_pa = applied_stress(params, state)
        if params.loading == "stress":
            state.strain = state.stress_pa / params.modulus_pa
    return state


# ------------------------------------------------------------------------- physics
def internal_field(geom: DDGeometry, params: DDParams, points: torch.Tensor,
                   pos: torch.Tensor, b: torch.Tensor, nearest: bool = False
                   ) -> tuple[torch.Tensor, ...]:
    """S2 = σyy-σxx+2iσxy (p,) at ``points`` (p, 2) from dislocations at ``pos`` (n, 2)
    with Burgers vectors ``b`` (n,) m, by ``params.field``; with ``nearest`` also the
    offset to and index of each point's nearest dislocation (see
    :func:`~scalebridge.dd_coupling.field.ewald_field`: found within the short-range
    cutoff, which is kept above the junction distance)."""
    method = params.field
    if method == "auto":
        method = "direct" if points.shape[0] * pos.shape[0] <= DIRECT_MAX_PAIRS else "ewald"
    if method == "direct":
        out = periodic_field(points, pos, b, params.mu_pa, params.nu, geom.lx, geom.ly,
                             params.image_rows, nearest=nearest)
    else:
        plan = make_plan(pos.shape[0], geom.lx, geom.ly, min_cutoff=params.junction_m)
        out = ewald_field(points, pos, b, params.mu_pa, params.nu, geom.lx, geom.ly, plan,
                          nearest=nearest, with_s1=False,
                          dtype=getattr(torch, params.field_dtype))
    return out[1:]


def internal_resolved_shear(geom: DDGeometry, params: DDParams, state: DDState,
                            points: torch.Tensor, point_system: torch.Tensor
                            ) -> torch.Tensor:
    """Resolved shear stress (p,) Pa of the dislocations' internal field at ``points``
    (p, 2) on planes of systems ``point_system`` (p,)."""
    if state.n == 0:
        return torch.zeros(points.shape[0], dtype=torch.float64, device=points.device)
    geom = geometry_on(geom, state.s.device)
    pos = positions(geom, state.plane, state.s)
    b = params.b_m * burgers(geom, state.plane, state.sign)
    s2 = internal_field(geom, params, points.to(pos.device), pos, b)[0]
    return resolved_shear(s2, geom.angles[point_system.to(pos.device)])


def applied_stress(params: DDParams, state: DDState) -> float:
    """Applied stress (Pa) for the state's time and plastic strain."""
    if params.loading == "strain":
        return params.modulus_pa * (params.rate * state.time - state.plastic_strain)
    return params.stress_offset_pa + params.rate * state.time


def driving_stress(geom: DDGeometry, params: DDParams, state: DDState,
                   extra_points: torch.Tensor | None = None,
                   extra_system: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Total resolved shear τ (n,) Pa of every dislocation, the stress that drives it
    (n,) Pa (τ, or for a junction member τ without its partner, 0 while it is locked),
    the locked mask (n,) bool, and τ (p,) Pa at ``extra_points`` (p, 2) on systems
    ``extra_system`` (sources), all from one field evaluation."""
    dev = state.s.device
    geom = geometry_on(geom, dev)
    system = geom.plane_system[state.plane]
    pos = positions(geom, state.plane, state.s)
    if extra_points is None or extra_system is None:
        extra_points = torch.zeros(0, 2, dtype=torch.float64, device=dev)
        extra_system = torch.zeros(0, dtype=torch.long, device=dev)
    points = torch.cat([pos, extra_points])
    psys = torch.cat([system, extra_system])
    if state.n:
        b = params.b_m * burgers(geom, state.plane, state.sign)
        s2, near_dz, near_idx = internal_field(geom, params, points, pos, b, nearest=True)
        tau_all = resolved_shear(s2, geom.angles[psys])
    else:
        tau_all = torch.zeros(points.shape[0], dtype=torch.float64, device=dev)
    tau_all = tau_all + state.stress_pa * geom.schmid[psys]
    tau, tau_extra = tau_all[:state.n], tau_all[state.n:]
    tau_drive = tau
    stuck = torch.zeros(state.n, dtype=torch.bool, device=dev)
    if state.n > 1 and params.junction_m > 0:
        # junctions: a dislocation within junction_m of one on another system is locked
        # unless the stress without that partner exceeds the junction strength
        dz, j = near_dz[:state.n], near_idx[:state.n]
        locked = (dz.abs() < params.junction_m) & (system[j] != system)
        if bool(locked.any()):
            li = torch.nonzero(locked).flatten()
            s2p = pair_s2(dz[li], b[j[li]], params.mu_pa, params.nu)
            tau_ex = tau[li] - resolved_shear(s2p, geom.angles[system[li]])
            free = tau_ex.abs() > params.junction_strength_pa
            tau_drive = tau.clone()
            tau_drive[li] = torch.where(free, tau_ex, torch.zeros_like(tau_ex))
            stuck[li] = ~free
    return tau, tau_drive, stuck, tau_extra


def glide_velocity(geom: DDGeometry, params: DDParams, state: DDState,
                   extra_points: torch.Tensor | None = None,
                   extra_system: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Velocity along +s (n,) m/s and total resolved shear τ (n,) Pa of every
    dislocation (locked junction members get v = 0), and τ (p,) Pa at ``extra_points``
    (p, 2) on systems ``extra_system`` (sources), all from one field evaluation."""
    v, tau, _, tau_extra = _glide(geom, params, state, extra_points, extra_system)
    return v, tau, tau_extra


def _glide(geom: DDGeometry, params: DDParams, state: DDState,
           extra_points: torch.Tensor | None = None,
           extra_system: torch.Tensor | None = None
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`glide_velocity` with the driving stress (n,) Pa the law was asked at (the
    stress without a junction partner, 0 while locked) third."""
    tau, tau_drive, _, tau_extra = driving_stress(geom, params, state, extra_points,
                                                  extra_system)
    # the law on the CPU (laws take NumPy or CPU tensors); the velocity back on the device
    v = params.mobility.velocity((state.sign * tau_drive).cpu(), params.temperature_k,
                                 torch.zeros(state.n, dtype=torch.long))
    return (torch.as_tensor(v, dtype=torch.float64).to(state.s.device), tau, tau_drive,
            tau_extra)


def law_top_stress_mpa(law: MobilityLaw) -> float | None:
    """The top of the stress range (MPa) the engine asks ``law`` in (character 0, the
    index :func:`glide_velocity` passes; a :class:`GlideCharacterMobility` answers with
    its own character's), ``valid_range.tau_hi_mpa``; None for a law without a valid
    range or without a finite top (an analytic law: nothing lies beyond it)."""
    vr = getattr(law, "valid_range", None)
    if vr is None:
        return None
    hi = float(vr.tau_hi_mpa(torch.zeros(1, dtype=torch.long))[0])
    return hi if math.isfinite(hi) else None


def _top_stress_mpa(params: DDParams) -> float | None:
    """:func:`law_top_stress_mpa` of ``params.mobility``, kept on ``params`` (not a
    field) for the run's steps; recomputed when the law or its range object changes."""
    law = params.mobility
    vr = getattr(law, "valid_range", None)
    kept = params.__dict__.get("_top_stress")
    if kept is None or kept[0] is not law or kept[1] is not vr:
        kept = (law, vr, law_top_stress_mpa(law))
        params.__dict__["_top_stress"] = kept
    return kept[2]


def beyond_range(tau_pa: torch.Tensor, hi_mpa: float) -> torch.Tensor:
    """(n,) bool: stresses ``tau_pa`` (n,) beyond the top ``hi_mpa`` of a law's range,
    by the test :func:`~scalebridge.dd_coupling.mobility.range_violations` makes (in
    MPa) or the one :class:`~scalebridge.dd_coupling.mobility.LimitSpeedMobility` makes
    (in Pa): the two round differently at the bound, and a point either counts is
    counted."""
    a = tau_pa.abs()
    return (a * 1e-6 > hi_mpa * (1 + 1e-9)) | (a > hi_mpa * 1e6 * (1 + 1e-9))


def beyond_law_set(beyond: torch.Tensor, held: torch.Tensor, speed: torch.Tensor,
                   v: torch.Tensor, dt: float, params: DDParams
                   ) -> tuple[torch.Tensor, bool]:
    """Which beyond-range glide evaluations of one step set the dynamics by their
    velocity value, and whether the step's time step depends on them.

    Args:
        beyond: (n,) bool, driving stress beyond the law's range (:func:`beyond_range`).
        held: (n,) bool, held at an obstacle (:func:`_held`).
        speed: (n,) m/s, |v| with held dislocations at 0 (what sets ``dt``).
        v: (n,) m/s, the law's velocities; dt: the step's time step, s.

    Returns:
        ((n,) bool mask, sensitive). In a step, v enters (a) ``_held`` by its sign only
        (a velocity beyond the range, the clamp's or any faster, has the sign of τ;
        a zero one is not held and counts below), (b) the time step through the
        ``dt_quantile`` quantile of ``speed`` (the maximum at 1), (c) the glide
        ``v·dt`` cut to ±max_glide, (d) ``state.max_speed`` (a record nothing reads).
        Raising the speeds of the set S (beyond, not held) can change the k-th order
        statistic of ``speed`` iff fewer than k + 1 speeds outside S are at most it;
        the quantile interpolates its two neighbours k = ⌊q(n−1)⌋, ⌈q(n−1)⌉ (the
        maximum: S not empty), and ``dt = min(dt_max, max_glide/vref)`` moves with
        vref for a raise large enough. Where it cannot, an evaluation's value reaches
        the dynamics iff it is not held and not cut (|v|·dt < max_glide: a cut one
        stays cut at any faster speed, at exactly ±max_glide). Where it can, every
        free (not held) beyond-range evaluation of the step counts: a held one moves
        at 0 whatever its speed. (a) assumes the law's sign: :func:`step` also counts
        the evaluations whose velocity is 0 or against τ."""
    free = beyond & ~held
    n = speed.shape[0]
    sensitive = False
    if n and bool(free.any()):
        if n > 1 and params.dt_quantile < 1.0:
            pos = params.dt_quantile * (n - 1)      # torch.quantile's rank, "linear"
            ks = {math.floor(pos), math.ceil(pos)}
        else:
            ks = {n - 1}                            # the maximum
        order = torch.sort(speed).values
        fixed = ~free
        for k in ks:
            if int(((speed <= order[k]) & fixed).sum()) < k + 1:
                sensitive = True
                break
    if sensitive:
        return free, True
    return free & ((v * dt).abs() < params.max_glide_m), False


#: the evaluation counters a mobility law or its wrapper keeps (an instance's own ints)
COUNTERS = ("n_out_of_range", "n_replaced", "n_below_data")


@contextmanager
def _uncounted(law: Any) -> Iterator[None]:
    """Evaluations of ``law`` inside this block that are not the run's own: every
    evaluation counter along its wrapped chain (``.law``) is restored on leaving."""
    saved = []
    link = law
    while link is not None:
        own = getattr(link, "__dict__", {})
        saved += [(link, k, own[k]) for k in COUNTERS if isinstance(own.get(k), int)]
        link = getattr(link, "law", None)
    try:
        yield
    finally:
        for obj, name, count in saved:
            setattr(obj, name, count)


def bow_out_times(law: MobilityLaw, tau_pa: np.ndarray, mu_pa: float, b_m: float,
                  beta: float = 1.0, temperature_k: float = 300.0) -> np.ndarray:
    """Time (s) Frank-Read sources of strengths ``tau_pa`` ((n,) Pa) take to bow out to
    their critical half-circle under that stress: half the length ``beta·mu·b/tau``
    glided at the law's velocity ``v(tau)`` (an edge, character 0, or the law's own glide
    character), ``L B / (2 b tau)`` for a linear drag; ``inf`` where the law does not
    move it. (n,); the law's evaluation counters are left as they were."""
    tau = np.atleast_1d(np.asarray(tau_pa, dtype=np.float64))
    with _uncounted(law):
        v = np.abs(np.asarray(torch.as_tensor(law.velocity(
            torch.as_tensor(tau), temperature_k,
            torch.zeros(tau.size, dtype=torch.long))), dtype=np.float64))
    with np.errstate(divide="ignore"):
        return np.where(v > 0, 0.5 * beta * mu_pa * b_m / tau / v, math.inf)


def bow_out_time(law: MobilityLaw, tau_pa: float, mu_pa: float, b_m: float,
                 beta: float = 1.0, temperature_k: float = 300.0) -> float:
    """:func:`bow_out_times` of one source strength ``tau_pa`` (Pa), s."""
    return float(bow_out_times(law, np.array([tau_pa]), mu_pa, b_m, beta, temperature_k)[0])


def drag_compliance(geom: DDGeometry, params: DDParams, state: DDState
                    ) -> tuple[float, int]:
    """How the plastic strain rate answers the applied stress with the microstructure
    held: ``S = ∂γ̇_p/∂τ_app = (b/area) Σ m_i² ∂v/∂τ(τ_i)`` in 1/(Pa·s), summed over
    the dislocations neither held at an obstacle nor locked in a junction (m_i the Schmid
    factor of i's system; ∂v/∂τ by central differences of the mobility law at i's driving
    stress, one-sided at the top of the law's range and 0 beyond it, where the DD clamps).
    With every velocity divided by f (the drag B × f) the same microstructure keeps its
    plastic rate γ̇ only with ``Δτ_app = (f - 1) γ̇ / S``: ``γ̇ / S`` is the drag stress
    Orowan's law gives at this free density (for a linear drag law
    ``B γ̇ / (b² Σ m_i² / area)``). Where the nucleation runs on a clock B does not set,
    that bounds what B adds to the flow stress from above (the density adapts instead);
    where B times the nucleation (a clock of bow-out times, bow-out, overstress) it does
    not. Returns (S, the number of free dislocations). The law's evaluation counters
    are left as they were."""
    if state.n == 0:
        return 0.0, 0
    dev = state.s.device
    geom = geometry_on(geom, dev)
    tau, tau_drive, stuck, _ = driving_stress(geom, params, state)
    st = (state.sign * tau_drive).cpu()
    zeros = torch.zeros(state.n, dtype=torch.long)
    law = params.mobility
    vr = getattr(law, "valid_range", None)
    hi = (vr.tau_hi_mpa(zeros) * 1e6 if vr is not None
          else torch.full_like(st, math.inf))
    inside = st.abs() <= hi * (1 + 1e-9)
    delta = 1e-3 * st.abs() + 1e4                      # Pa: relative, with a floor
    up = torch.where(inside, torch.minimum(st + delta, hi), st)
    down = torch.where(inside, torch.maximum(st - delta, -hi), st)
    with _uncounted(law):
        v = torch.as_tensor(law.velocity(st, params.temperature_k, zeros),
                            dtype=torch.float64)
        v_up = torch.as_tensor(law.velocity(up, params.temperature_k, zeros),
                               dtype=torch.float64)
        v_down = torch.as_tensor(law.velocity(down, params.temperature_k, zeros),
                                 dtype=torch.float64)
    span = up - down
    slope = torch.where(span > 0, (v_up - v_down) / torch.where(span > 0, span, 1.0),
                        torch.zeros_like(st)).to(dev)
    free = ~_held(geom, params, state, v.to(dev), tau) & ~stuck
    m = geom.schmid[geom.plane_system[state.plane]]
    s = params.b_m / geom.area * float((m * m * slope)[free].sum())
    return s, int(free.sum())


def _obstacles_ahead(geom: DDGeometry, state: DDState, kd: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, ...]:
    """For each dislocation of ``state`` (n_obs > 0, n > 0): (has: its plane holds
    obstacles, distance to the next one along +s, along -s, their strengths), from its
    sort key ``kd`` (:func:`_keys`; computed if not given)."""
    n_obs = geom.obs_plane.shape[0]
    keys = _obstacle_keys(geom)
    if kd is None:
        kd = _keys(geom, state.plane, state.s)
    length = geom.plane_length[state.plane]
    plane_f = state.plane.to(torch.float64)
    first = torch.searchsorted(keys, plane_f, side="left").clamp(max=n_obs - 1)
    last = (torch.searchsorted(keys, plane_f + 1.0, side="left") - 1).clamp(min=0)
    has = geom.obs_plane[first] == state.plane
    # forward: first obstacle with key >= kd on the plane, else wrap to the plane's first
    ia = torch.searchsorted(keys, kd, side="left")
    ok = (ia < n_obs) & (geom.obs_plane[ia.clamp(max=n_obs - 1)] == state.plane)
    ia = torch.where(ok, ia.clamp(max=n_obs - 1), first)
    dist_a = torch.where(ok, geom.obs_s[ia] - state.s, geom.obs_s[ia] + length - state.s)
    # backward: last obstacle with key <= kd on the plane, else wrap to the plane's last
    ib = torch.searchsorted(keys, kd, side="right") - 1
    okb = (ib >= 0) & (geom.obs_plane[ib.clamp(min=0)] == state.plane)
    ib = torch.where(okb, ib.clamp(min=0), last)
    dist_b = torch.where(okb, state.s - geom.obs_s[ib], state.s + length - geom.obs_s[ib])
    return has, dist_a, dist_b, geom.obs_tau[ia], geom.obs_tau[ib]


def _obstacle_limit(geom: DDGeometry, state: DDState, ds: torch.Tensor, tau: torch.Tensor,
                    ahead: tuple[torch.Tensor, ...] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Glide ``ds`` (n,) limited by obstacles ahead that are stronger than |τ|
    (``ahead``: :func:`_obstacles_ahead` of ``state``, computed if not given).
    Returns (allowed ds, pinned mask)."""
    n_obs = geom.obs_plane.shape[0]
    pinned = torch.zeros_like(ds, dtype=torch.bool)
    if n_obs == 0 or state.n == 0:
        return ds, pinned
    if ahead is None:
        ahead = _obstacles_ahead(geom, state)
    has, dist_a, dist_b, tau_a, tau_b = ahead
    fwd = ds > 0
    dist = torch.where(fwd, dist_a, dist_b)
    strength = torch.where(fwd, tau_a, tau_b)
    pinned = has & (ds.abs() >= dist) & (tau.abs() < strength) & (ds != 0)
    ds = torch.where(pinned, torch.sign(ds) * dist, ds)
    return ds, pinned


def _held(geom: DDGeometry, params: DDParams, state: DDState, v: torch.Tensor,
          tau: torch.Tensor, ahead: tuple[torch.Tensor, ...] | None = None) -> torch.Tensor:
    """(n,) bool: dislocations held at an obstacle, i.e. at one in the direction of their
    velocity ``v`` (n,) that is stronger than their stress ``tau`` (n,) (an infinitesimal
    step there would be stopped)."""
    return _obstacle_limit(geom, state, torch.sign(v) * 1e-9 * params.max_glide_m, tau,
                           ahead)[1]


def _annihilation_mask(geom: DDGeometry, state: DDState, capture: float,
                       ds: torch.Tensor | None = None, keys: torch.Tensor | None = None
                       ) -> torch.Tensor:
    """(n,) bool: dislocations that annihilate with an opposite-sign neighbour on the same
    plane: neighbours at the positions of ``state``, whose gap after the glide ``ds`` (n,)
    (none: zero) is below ``capture`` or negative (they crossed during the step). Pairs are
    chosen greedily by smallest gap, disjoint. ``keys``: the state's :func:`_keys`
    (computed if not given)."""
    n = state.n
    dev = state.s.device
    remove = torch.zeros(n, dtype=torch.bool, device=dev)
    if n < 2:
        return remove
    if keys is None:
        keys = _keys(geom, state.plane, state.s)
    order = torch.argsort(keys)
    pl, s, sg = state.plane[order], state.s[order], state.sign[order]
    length = geom.plane_length[pl]
    idx = torch.arange(n, device=dev)
    first = torch.searchsorted(keys[order], pl.to(torch.float64), side="left")
    is_last = torch.ones(n, dtype=torch.bool, device=dev)
    is_last[:-1] = pl[1:] != pl[:-1]
    nxt = torch.where(is_last, first, idx + 1)
    gap = torch.remainder(s[nxt] - s, length)
    if ds is not None:
        d = ds[order]
        gap = gap + d[nxt] - d
    cand = (nxt != idx) & (sg[nxt] != sg) & (gap < capture)
    if not bool(cand.any()):
        return remove
    inf = torch.full_like(gap, math.inf)
    g = torch.where(cand, gap, inf)
    prv = torch.empty_like(idx)
    prv[nxt] = idx
    chosen = cand & ~(g[prv] <= g) & ~(g[nxt] < g)
    # two-dislocation planes: pairs k->nxt and nxt->k are the same pair
    chosen_sorted = torch.zeros(n, dtype=torch.bool, device=dev)
    chosen_sorted[idx[chosen]] = True
    chosen_sorted[nxt[chosen]] = True
    remove[order] = chosen_sorted
    return remove


def step(geom: DDGeometry, params: DDParams, state: DDState) -> DDState:
    """Advance ``state`` by one adaptive time step; returns a new state (inputs untouched).
    Runs on the state's device (the geometry is copied there once)."""
    geom = geometry_on(geom, state.s.device)
    system = geom.plane_system[state.plane]
    has_src = geom.src_plane.shape[0] > 0
    if has_src:
        src_pos, src_sys = _sources(geom)
        v, tau, tau_drive, tau_src = _glide(geom, params, state, src_pos, src_sys)
    else:
        v, tau, tau_drive, _ = _glide(geom, params, state)
    # what lies ahead of each dislocation (reused below unless sources emit)
    kd = ahead = None
    if state.n and geom.obs_plane.shape[0]:
        kd = _keys(geom, state.plane, state.s)
        ahead = _obstacles_ahead(geom, state, kd)
    # dislocations held at an obstacle do not move: they do not set the time step
    held = _held(geom, params, state, v, tau, ahead)
    speed = torch.where(held, 0.0, v.abs())
    vmax = float(speed.max()) if state.n else 0.0
    vref = vmax
    if state.n > 1 and params.dt_quantile < 1.0:
        vref = float(torch.quantile(speed, params.dt_quantile))
    dt = params.dt_max_s if vref == 0 else min(params.dt_max_s, params.max_glide_m / vref)
    # the evaluations beyond the law's stress range, and those whose value reached the
    # dynamics (what a faster law there, the range probe's, could change)
    hi_mpa = _top_stress_mpa(params)
    n_beyond = n_law_set = n_source_set = 0
    sensitive = False
    if hi_mpa is not None and state.n:
        beyond = beyond_range(tau_drive, hi_mpa)
        n_beyond = int(beyond.sum())
        if n_beyond:
            law_set, sensitive = beyond_law_set(beyond, held, speed, v, dt, params)
            # beyond_law_set takes v to have the sign of the stress the law was asked
            # at; a law that fails that (allow_failed_checks) could turn held ones free
            # when faster: those count too
            wrong = beyond & (v * torch.sign(state.sign * tau_drive) <= 0)
            n_law_set = int((law_set | wrong).sum())

    # sources: timers above strength, nucleation
    plane, s, sign, travel = state.plane, state.s, state.sign, state.travel
    timer = state.src_timer
    n_new = 0
    new_moment = 0.0
    if has_src:
        above = tau_src.abs() > geom.src_tau
        if params.nucleation in ("bow_out", "overstress"):
            # the timer holds the bow-out distance glided so far, m
            grow = torch.zeros_like(timer)
            if bool(above.any()):
                drive = tau_src[above].abs()
                if params.nucleation == "overstress":
                    drive = drive - geom.src_tau[above]
                if hi_mpa is not None:       # a bow-out the law times beyond its range
                    n_source_set = int(beyond_range(drive, hi_mpa).sum())
                # the sources' bow-out, not dislocations gliding: outside the run's
                # evaluation counts (their denominator counts dislocations)
                with _uncounted(params.mobility):
                    va = params.mobility.velocity(drive.cpu(), params.temperature_k,
                                                  torch.zeros(int(above.sum()),
                                                              dtype=torch.long))
                grow[above] = torch.as_tensor(va, dtype=torch.float64).to(timer.device).abs() * dt
            timer = torch.where(above, timer + grow, torch.zeros_like(timer))
            fire = timer >= 0.5 * params.source_beta * params.mu_pa * params.b_m / geom.src_tau
        else:
            timer = torch.where(above, timer + dt, torch.zeros_like(timer))
            fire = timer >= (params.nucleation_time_s if geom.src_time is None
                             else geom.src_time)
        if bool(fire.any()):
            timer = torch.where(fire, torch.zeros_like(timer), timer)
            fp, fs = geom.src_plane[fire], geom.src_s[fire]
            half = 0.5 * geom.src_length[fire]
            sg = torch.sign(tau_src[fire])
            plane = torch.cat([plane, fp, fp])
            s = torch.cat([s, torch.remainder(fs + half, geom.plane_length[fp]),
                           torch.remainder(fs - half, geom.plane_length[fp])])
            sign = torch.cat([sign, sg, -sg])
            travel = torch.cat([travel, half, -half])
            m = geom.schmid[geom.plane_system[fp]]
            new_moment = float((m * sg * 2 * half).sum())
            n_new = int(fire.sum())
            system = geom.plane_system[plane]
            tau = torch.cat([tau, tau_src[fire], tau_src[fire]])
            v = torch.cat([v, torch.zeros(2 * n_new, dtype=v.dtype, device=v.device)])  # next step
            kd = ahead = None

    # glide (each dislocation at most max_glide per step) with obstacles
    ds = v * dt
    limited = ds.abs() > params.max_glide_m
    ds = ds.clamp(-params.max_glide_m, params.max_glide_m)
    moved = replace(state, plane=plane, s=s, sign=sign, travel=travel)
    ds, pinned = _obstacle_limit(geom, moved, ds, tau, ahead)
    n_limited = int((limited & ~pinned).sum())
    s = torch.remainder(s + ds, geom.plane_length[plane])
    travel = travel + ds
    m_sys = geom.schmid[system]
    d_plastic = params.b_m / geom.area * (float((sign * ds * m_sys).sum()) + new_moment)

    # annihilation
    gone = _annihilation_mask(geom, moved, params.capture_m, ds, kd)
    removed_moment = state.removed_moment
    n_gone = int(gone.sum())
    if n_gone:
        removed_moment += float((sign[gone] * m_sys[gone] * travel[gone]).sum())
        keep = ~gone
        plane, s, sign, travel = plane[keep], s[keep], sign[keep], travel[keep]

    new = DDState(plane=plane, s=s, sign=sign, travel=travel, src_timer=timer,
                  time=state.time + dt, plastic_strain=state.plastic_strain + d_plastic,
                  removed_moment=removed_moment,
                  inserted_strain=state.inserted_strain + params.b_m / geom.area * new_moment,
                  n_nucleated=state.n_nucleated + n_new,
                  n_annihilated=state.n_annihilated + n_gone, n_steps=state.n_steps + 1,
                  n_pinned=int(pinned.sum()), last_dt=dt, max_speed=vmax,
                  n_limited=state.n_limited + n_limited, n_beyond=state.n_beyond + n_beyond,
                  n_beyond_law_set=state.n_beyond_law_set + n_law_set,
                  n_dt_sensitive=state.n_dt_sensitive + int(sensitive),
                  n_beyond_source_set=state.n_beyond_source_set + n_source_set,
                  extra=state.extra)
    new.strain = params.rate * new.time if params.loading == "strain" else (
        new.plastic_strain + applied_stress(params, new) / params.modulus_pa)
    new.stress_pa = applied_stress(params, new)
    return new


def slip_moment(geom: DDGeometry, params: DDParams, state: DDState) -> float:
    """``b/area · Σ sign·m·travel`` over living and annihilated dislocations: the plastic
    strain computed from the dislocations' own displacements (equals
    ``state.plastic_strain``)."""
    geom = geometry_on(geom, state.s.device)
    m = geom.schmid[geom.plane_system[state.plane]]
    return params.b_m / geom.area * (float((state.sign * m * state.travel).sum())
                                     + state.removed_moment)


__all__ = ["COUNTERS", "DIRECT_MAX_PAIRS", "DDGeometry", "DDParams", "DDState", "applied_stress",
           "beyond_law_set", "beyond_range", "burgers", "drag_compliance", "driving_stress",
           "geometry_on", "glide_velocity", "init", "internal_field",
           "internal_resolved_shear", "law_top_stress_mpa", "make_planes", "plane_period",
           "positions", "resolve_device", "schmid_factor", "slip_moment", "sort_obstacles",
           "step"]
