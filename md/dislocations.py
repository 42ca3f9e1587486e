"""Building, relaxing, locating and driving dislocations: 1/2<111>{110} in BCC crystals,
1/2<110>{111} in FCC crystals (which dissociate into two 1/6<112> Shockley partials).

Geometry (a glide slab, LAMMPS-form cell, periodic along x and z, free surfaces in y):

- BCC screw: line x = [111] ∥ b, glide plane normal y = [-110], glide direction z = [-1-12];
- BCC edge:  line x = [11-2], normal y = [-110], glide direction z = [111] ∥ b;
- FCC screw: line x = [1-10] ∥ b, normal y = [111], glide direction z = [-1-12];
- FCC edge:  line x = [11-2], normal y = [111], glide direction z = [1-10] ∥ b.

The dislocation is built as a perfect (Volterra) dislocation on the glide plane between
the two middle atomic planes; in FCC the relaxation splits it into two Shockley partials
bounding a ribbon of intrinsic stacking fault, whose width :func:`locate_dislocations`
reports (compare :func:`elastic_partial_separation`). Its
displacement field is the one of a periodic row of Volterra dislocations (period L along
z), ``u_b(s, t) = sign(t)·[b/4 − (b/2π)·atan(tan(πs/L)/tanh(π|t|/L))]`` with s, t the
glide and normal distances from the core: the slip across the glide plane is b for s < 0
and 0 for s > 0, and each half-crystal changes its displacement by ∓b/2 over one period.
That change is matched by the box: for the screw a tilt ``xz = −b/2`` (b is a lattice
vector along the line, so the lower half, off by b, is in registry); for the edge the
upper half holds one more b of material than the lower half and the box length is
(M − ½)·b. There is no long-range stress left from the construction, so a straight
dislocation relaxes in place. (matscipy.dislocation builds the same dislocations in
cylinders with fixed boundaries; it has no periodic glide slab, which a velocity
measurement needs.)

Glide: the top and bottom boundary layers are rigid blocks, built with the far-field
(uniform ramp) displacement so that they carry no imprint of where the core was built,
and loaded by opposite forces along b: τ = F/A (A the glide-plane area). (The other
boundary, ``traction``, puts the forces on deformable surface layers; free surfaces then
pull a screw out of a thin slab by its image force.) By default all components of the
mobile atoms' thermal velocities are thermostatted (stochastic velocity rescaling,
``temp/csvr``, a global thermostat: it removes the heat the glide makes without a local
friction on the core, unlike a Langevin thermostat, which would add a drag of ~1e-4 Pa·s
at 0.5 ps damping), with the flow profile along the normal removed (``temp/profile``) so
the shear of the slab itself is not thermostatted; ``thermostat = "normal"`` keeps the
earlier y-only thermostat. The per-component kinetic temperature of the loaded run is
reported and a run whose glide-direction temperature is off the target is flagged. The
total momentum is removed. The load is switched on at the start of the thermalisation
(``load_at``, :func:`glide_script`): a suddenly loaded dislocation takes picoseconds to
reach its steady velocity, and the thermalisation steps then count toward that
transient instead of being spent at τ = 0. With τ > 0 (top pushed along +b) the
dislocation moves along +z for both characters (Peach–Koehler). The core position
along z is located in each dumped frame of the measured run with OVITO's DXA (the mean
of the 1/2<111> line points in BCC, the midpoint of the two partials in FCC, unwrapped
across the periodic boundary); the velocity is the least-squares slope over its frames
from ``fit_from`` on, with a block error (:func:`scalebridge.md.glide_fit.block_velocity`),
and :func:`classify_glide` says whether the run measured one (the line lost, gone, off
its plane, or too hot).
:func:`peierls_stress` loads the same slab quasi-statically at 0 K.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms
from ase.lattice.cubic import BodyCenteredCubic, FaceCenteredCubic
from scalebridge.errors import DataError
from scalebridge.md.glide_fit import BlockVelocity, block_velocity, naive_velocity
from scalebridge.md.lammps import (
    RELAX_FTOL,
    DeviationSettings,
    LammpsPotential,
    devi_dump_commands,
    run_lammps,
)
from scalebridge.md.properties import burgers_length
from scalebridge.settings import Resources

log = logging.getLogger("scalebridge.md.dislocations")

Character = Literal["edge", "screw"]

#: Crystal axes (x, y, z) of the BCC glide slab per character.
AXES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "screw": ((1, 1, 1), (-1, 1, 0), (-1, -1, 2)),
    "edge": ((1, 1, -2), (-1, 1, 0), (1, 1, 1)),
}
#: Crystal axes (x, y, z) of the FCC glide slab per character.
FCC_AXES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "screw": ((1, -1, 0), (1, 1, 1), (-1, -1, 2)),
    "edge": ((1, 1, -2), (1, 1, 1), (1, -1, 0)),
}
#: DXA Burgers-vector families that make up the dislocation being followed.
CORE_FAMILIES: dict[str, tuple[str, ...]] = {"bcc": ("1/2<111>",),
                                             "fcc": ("1/6<112>", "1/2<110>")}
LATTICES = ("bcc", "fcc")


def slab_axes(lattice: str, character: str) -> tuple[tuple[int, int, int], ...]:
    """Crystal directions (x line, y glide-plane normal, z glide direction) of a slab."""
    if lattice not in LATTICES:
        raise DataError(f"lattice {lattice!r}: the dislocation protocols cover bcc and fcc")
    if character not in AXES:
        raise DataError(f"dislocation character {character!r}: expected 'edge' or 'screw'")
    return (AXES if lattice == "bcc" else FCC_AXES)[character]


def glide_plane_spacing(a0: float, lattice: str) -> float:
    """Spacing (Å) of the glide planes: {110} a0/√2 (BCC), {111} a0/√3 (FCC)."""
    return a0 / math.sqrt(2) if lattice == "bcc" else a0 / math.sqrt(3)

#: 1 eV/Å³ in MPa.
EV_A3_TO_MPA = 160217.66208


def periodic_row_displacement(s: np.ndarray, t: np.ndarray, b: float,
                              period: float, far: np.ndarray | None = None) -> np.ndarray:
    """Displacement along b (Å) of a periodic row of Volterra dislocations.

    Args:
        s: (n,) glide-direction distance from the core, Å (any value; the field is
            continued so that each period adds ``−sign(t)·b/2``).
        t: (n,) normal distance from the glide plane, Å (non-zero).
        b: Burgers vector length, Å.
        period: row period L along s, Å.
        far: (n,) bool, where to use the far-field limit |t| → ∞ (a uniform ramp
            ``sign(t)·(b/4 − b·s/2L)``, which carries no imprint of the core position).

    Returns:
        (n,) displacement along b, Å: slip b across t = 0 for s < 0, 0 for s > 0.
    """
    k = np.floor((s + period / 2) / period)
    sw = s - k * period
    sg = np.where(t >= 0, 1.0, -1.0)
    th = np.tanh(np.pi * np.abs(t) / period)
    if far is not None:
        th = np.where(far, 1.0, th)
    with np.errstate(divide="ignore"):
        f = b / 4 - b / (2 * np.pi) * np.arctan(np.tan(np.pi * sw / period) / th)
    return sg * f - sg * k * b / 2


@dataclass(frozen=True)
class SlabGeometry:
    """Where things are in a glide slab (Å, cell frame).

    Attributes:
        character: ``edge`` or ``screw``.
        burgers_a: |b|.
        glide_y: y of the glide plane.
        core_z: initial core position along z.
        line_a: length along the line (x); glide_a: period along z; plane area Lx·Lz.
        layer_a: thickness of the held/loaded layers at the bottom/top.
        y_lo, y_hi: lowest and highest atomic y.
    """

    character: str
    burgers_a: float
    glide_y: float
    core_z: float
    line_a: float
    glide_a: float
    layer_a: float
    y_lo: float
    y_hi: float

    @property
    def area_a2(self) -> float:
        return self.line_a * self.glide_a


#: ASE's lattice factories are module-level singletons that keep the crystal being built
#: on ``self``: two threads building at once corrupt each other (IndexError/AssertionError
#: inside ase.lattice). Glide jobs run on threads (workflows, benchmarks), so serialise.
_ASE_LATTICE_LOCK = threading.Lock()


def _crystal_block(a0: float, character: str, nx: int, ny: int, nz: int,
                   element: str, lattice: str = "bcc") -> Atoms:
    ax = [list(v) for v in slab_axes(lattice, character)]
    factory = BodyCenteredCubic if lattice == "bcc" else FaceCenteredCubic
    with _ASE_LATTICE_LOCK:
        return factory(directions=ax, size=(nx, ny, nz), symbol=element,
                       latticeconstant=a0, pbc=True)


def _bcc_block(a0: float, character: str, nx: int, ny: int, nz: int,
               element: str) -> Atoms:
    return _crystal_block(a0, character, nx, ny, nz, element, "bcc")


def repeat_lengths(a0: float, character: str, lattice: str = "bcc") -> np.ndarray:
    """Lengths (Å) of one repeat of the oriented cell along x, y, z."""
    if lattice == "fcc":
        r1, r3, r6 = math.sqrt(0.5), math.sqrt(3), math.sqrt(6) / 2
        return a0 * (np.array([r1, r3, r6]) if character == "screw" else np.array([r6, r3, r1]))
    r3, r2, r6 = math.sqrt(3) / 2, math.sqrt(2), math.sqrt(6)
    return a0 * (np.array([r3, r2, r6]) if character == "screw" else np.array([r6, r2, r3]))


def repeats_for(a0: float, character: str, lengths_a: tuple[float, float, float],
                lattice: str = "bcc") -> tuple[int, int, int]:
    """Repeats giving at least the requested (line, normal, glide) lengths, Å."""
    per = repeat_lengths(a0, character, lattice)
    n = [max(1, math.ceil(L / p - 1e-6)) for L, p in zip(lengths_a, per, strict=True)]
    n[1] = max(n[1], 3)
    if character == "edge":
        n[2] = max(n[2], 4)
    return (n[0], n[1], n[2])


def build_glide_slab(a0: float, character: Character, element: str = "Mo",
                     n_line: int = 1, n_normal: int = 4, n_glide: int = 4,
                     vacuum_a: float = 8.0, layer_a: float | None = None,
                     rigid_layers: bool = False, lattice: str = "bcc"
                     ) -> tuple[Atoms, SlabGeometry]:
    """A straight perfect dislocation in a glide slab (see the module docstring).

    Args:
        a0: lattice constant, Å.
        character: ``screw`` or ``edge``.
        element: chemical symbol.
        n_line, n_normal, n_glide: repeats of the oriented cubic cell along x (line),
            y (normal) and z (glide). Repeat lengths: BCC [111] a√3/2, [-110] a√2,
            [-1-12] a√6, [11-2] a√6; FCC [1-10] a/√2, [111] a√3, <112> a√6/2
            (:func:`repeats_for` converts lengths).
        vacuum_a: vacuum above and below the slab (the y boundaries are free).
        layer_a: thickness of the held/loaded boundary layers (default two planes).
        rigid_layers: give the boundary layers the far-field (uniform ramp) displacement,
            so that rigid layers do not pin the core where it was built.
        lattice: ``bcc`` (1/2<111>{110}) or ``fcc`` (1/2<110>{111}).

    Returns:
        (atoms with ``info`` about the dislocation, geometry).
    """
    slab_axes(lattice, character)
    b = burgers_length(a0, lattice)
    blk = _crystal_block(a0, character, n_line, n_normal, n_glide, element, lattice)
    cell = np.diag(blk.cell.lengths())
    pos = blk.get_positions()
    # snap tiny negatives and find the middle gap between (-110) planes
    planes = np.unique(np.round(pos[:, 1], 4))
    mid = len(planes) // 2
    glide_y = 0.5 * (planes[mid - 1] + planes[mid])
    t = pos[:, 1] - glide_y
    lx, lz = cell[0, 0], cell[2, 2]
    lay = float(layer_a if layer_a is not None else 1.5 * glide_plane_spacing(a0, lattice))
    far = ((pos[:, 1] <= planes[0] + lay) | (pos[:, 1] >= planes[-1] - lay)
           if rigid_layers else None)
    if character == "screw":
        # core between columns: a quarter of the [-1-12] column spacing off a column
        zs = np.unique(np.round(pos[:, 2], 4))
        core_z = zs[len(zs) // 2] + (zs[1] - zs[0]) * 0.5
        u = periodic_row_displacement(pos[:, 2] - core_z, t, b, lz, far)
        pos[:, 0] = np.mod(pos[:, 0] + u, lx)
        new_cell = np.array([[lx, 0, 0], [0, cell[1, 1], 0], [-b / 2, 0, lz]])
        keep = np.ones(len(pos), bool)
        glide_len = lz
    else:
        nb = round(lz / b)            # M: b-units of the upper half
        upper = t > 0
        keep = upper | (pos[:, 2] < (nb - 1) * b - 1e-6)   # lower half: M-1 units
        zs = np.unique(np.round(pos[:, 2], 4))
        core_z = 0.5 * nb * b + 0.5 * (zs[1] - zs[0])
        u = np.where(upper,
                     periodic_row_displacement(pos[:, 2] - core_z, t, b, nb * b, far),
                     periodic_row_displacement(pos[:, 2] - core_z, t, b, (nb - 1) * b, far))
        glide_len = (nb - 0.5) * b
        pos[:, 2] = np.mod(pos[:, 2] + u, glide_len)
        new_cell = np.array([[lx, 0, 0], [0, cell[1, 1], 0], [0, 0, glide_len]])
    pos = pos[keep]
    y_lo, y_hi = pos[:, 1].min(), pos[:, 1].max()
    pos[:, 1] += vacuum_a - y_lo
    new_cell[1, 1] = (y_hi - y_lo) + 2 * vacuum_a
    glide_y += vacuum_a - y_lo
    atoms = Atoms(element * len(pos), positions=pos, cell=new_cell, pbc=(True, False, True))
    geo = SlabGeometry(character=character, burgers_a=b, glide_y=float(glide_y),
                       core_z=float(core_z), line_a=float(lx), glide_a=float(glide_len),
                       layer_a=lay,
                       y_lo=float(vacuum_a), y_hi=float(vacuum_a + y_hi - y_lo))
    atoms.info.update(character=character, burgers_a=b, glide_y=geo.glide_y,
                      core_z=geo.core_z, lattice=lattice)
    return atoms, geo


# --------------------------------------------------------------------------- locating
@dataclass
class DislocationLines:
    """DXA result of one frame.

    Attributes:
        n_segments: number of dislocation segments found.
        burgers: (n,) strings like ``1/2<111>`` per segment (crystal frame, family).
        lengths_a: (n,) segment lengths, Å.
        core_y, core_z: mean y and z of the core lines (the lattice's
            :data:`CORE_FAMILIES`; z as a circular mean over the periodic glide length;
            in FCC the midpoint of the partials), Å; NaN when none was found.
        partial_z: z of each core line (the segments sharing one Burgers vector,
            length-weighted circular mean), Å.
        partial_burgers: (3,) crystal-frame Burgers vector (units of a0) of each of them.
        width_a: in FCC, the stacking-fault width: the periodic distance along z between
            the two Shockley partials when exactly two 1/6<112> lines were found; NaN
            otherwise.
    """

    n_segments: int
    burgers: list[str]
    lengths_a: np.ndarray
    core_y: float
    core_z: float
    partial_z: list[float] = field(default_factory=list)
    partial_burgers: list[tuple[float, float, float]] = field(default_factory=list)
    width_a: float = math.nan

    @property
    def n_shockley(self) -> int:
        """Separate 1/6<112> lines found."""
        return sum(burgers_family(np.array(b)) == "1/6<112>" for b in self.partial_burgers)


def burgers_family(v: np.ndarray, tol: float = 0.05) -> str:
    """Family name of a crystal-frame Burgers vector in units of a0: ``1/2<111>``,
    ``1/6<112>`` (Shockley), ``1/2<110>``, ``1/3<111>`` (Frank), ``1/6<110>``
    (stair-rod), ``<100>``, ``<110>`` or ``other``."""
    a = np.sort(np.abs(np.asarray(v, float)))[::-1]
    for name, ref in (("1/2<111>", [0.5, 0.5, 0.5]), ("1/6<112>", [1 / 3, 1 / 6, 1 / 6]),
                      ("1/2<110>", [0.5, 0.5, 0]), ("1/3<111>", [1 / 3, 1 / 3, 1 / 3]),
                      ("1/6<110>", [1 / 6, 1 / 6, 0]), ("<100>", [1, 0, 0]),
                      ("<110>", [1, 1, 0])):
        if np.allclose(a, ref, atol=tol):
            return name
    return "other"


def _dxa_pipeline(path: Path, lattice: str = "bcc", min_length_a: float = 12.0):
    """OVITO pipeline: the dump, replicated along periodic short cell vectors until each
    is at least ``min_length_a`` long (DXA needs room), then DXA."""
    from ovito.io import import_file
    from ovito.modifiers import DislocationAnalysisModifier, ReplicateModifier

    pipe = import_file(str(path), multiple_frames=True)
    data = pipe.source.compute(0)
    reps = [1, 1, 1]
    for k in range(3):
        length = float(np.linalg.norm(data.cell[:, k]))
        if data.cell.pbc[k] and length < min_length_a:
            reps[k] = math.ceil(min_length_a / length)
    if reps != [1, 1, 1]:
        pipe.modifiers.append(ReplicateModifier(num_x=reps[0], num_y=reps[1],
                                                num_z=reps[2], adjust_box=True))
    lat = {"bcc": DislocationAnalysisModifier.Lattice.BCC,
           "fcc": DislocationAnalysisModifier.Lattice.FCC}[lattice]
    pipe.modifiers.append(DislocationAnalysisModifier(input_crystal_structure=lat))
    return pipe


def _circular_mean(z: np.ndarray, w: np.ndarray, period: float) -> float:
    ang = 2 * np.pi * np.asarray(z) / period
    return float((math.atan2((w * np.sin(ang)).sum(), (w * np.cos(ang)).sum())
                  / (2 * np.pi) * period) % period)


def _periodic_gap(a: float, b: float, period: float) -> float:
    d = abs(a - b) % period
    return min(d, period - d)


def locate_dislocations(dump: str | Path, glide_len_a: float | None = None,
                        lattice: str = "bcc") -> list[DislocationLines]:
    """Run OVITO's DXA on every frame of a LAMMPS dump.

    Args:
        dump: LAMMPS text dump (``id type x y z``; boundaries taken from it).
        glide_len_a: period along z for the circular mean (default: the cell's z length).
        lattice: ``bcc`` or ``fcc`` (which core families are followed:
            :data:`CORE_FAMILIES`).

    Returns:
        One :class:`DislocationLines` per frame.
    """
    pipe = _dxa_pipeline(Path(dump), lattice)
    rep_z = next((m.num_z for m in pipe.modifiers if hasattr(m, "num_z")), 1)
    core = CORE_FAMILIES[lattice]
    out = []
    for frame in range(pipe.source.num_frames):
        data = pipe.compute(frame)
        lz = glide_len_a or float(data.cell[2, 2]) / rep_z
        fams, lens, segs_core = [], [], []
        segs = data.dislocations.segments if data.dislocations is not None else []
        for seg in segs:
            fam = burgers_family(seg.true_burgers_vector)
            fams.append(fam)
            lens.append(seg.length)
            if fam in core:
                p = np.asarray(seg.points)
                segs_core.append((_circular_mean(p[:, 2], np.ones(len(p)), lz),
                                  float(p[:, 1].mean()), float(seg.length),
                                  tuple(float(x) for x in seg.true_burgers_vector)))
        # one core line per Burgers vector (sign-normalised: DXA may orient the segments
        # of one line either way); in FCC the two partials have different vectors
        groups: dict[tuple[float, ...], list[tuple]] = {}
        for sg in segs_core:
            v = np.array(sg[3])
            nz = np.flatnonzero(np.abs(v) > 1e-3)
            v = v * (np.sign(v[nz[0]]) if nz.size else 1.0)
            groups.setdefault(tuple(np.round(v * 12).tolist()), []).append(
                (*sg[:3], tuple(v.tolist())))
        pz, pb, pw, py = [], [], [], []
        for key in sorted(groups, key=lambda k: _circular_mean(
                np.array([s[0] for s in groups[k]]), np.ones(len(groups[k])), lz)):
            ln = groups[key]
            w = np.array([s[2] for s in ln])
            pz.append(_circular_mean(np.array([s[0] for s in ln]), w, lz))
            pb.append(ln[0][3])
            pw.append(float(w.sum()))
            py.append(float(np.average([s[1] for s in ln], weights=w)))
        if pz:
            cz = _circular_mean(np.array(pz), np.array(pw), lz)
            cy = float(np.average(py, weights=pw))
        else:
            cz = cy = float("nan")
        width = math.nan
        shock = [z for z, b in zip(pz, pb, strict=True) if burgers_family(np.array(b))
                 == "1/6<112>"]
        if lattice == "fcc" and len(pz) == 2 and len(shock) == 2:
            width = _periodic_gap(shock[0], shock[1], lz)
        out.append(DislocationLines(len(fams), fams, np.array(lens), cy, float(cz),
                                    pz, pb, width))
    return out


def unwrap(z: np.ndarray, period: float) -> np.ndarray:
    """Unwrap a periodic coordinate series (jumps > period/2 are boundary crossings);
    NaNs are kept and skipped."""
    z = np.asarray(z, float).copy()
    ok = ~np.isnan(z)
    zz = z[ok]
    if zz.size:
        d = np.diff(zz)
        zz[1:] = zz[0] + np.cumsum(d - period * np.round(d / period))
    z[ok] = zz
    return z


def fit_velocity(t_ps: np.ndarray, z_a: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of z(t) and its textbook standard error, in m/s (1 Å/ps = 100
    m/s). The error ignores the autocorrelation of the core position: use
    :func:`scalebridge.md.glide_fit.block_velocity` for a velocity with an honest error."""
    return naive_velocity(t_ps, z_a)


# --------------------------------------------------------------------------- the core
def screw_core_metrics(relaxed: Atoms, reference: Atoms, core_y: float, core_z: float,
                       b: float, radius_a: float = 7.0) -> dict[str, float]:
    """Differential-displacement measures of a relaxed screw core.

    Columns are the [111] atomic rows (atoms sharing y, z in ``reference``); u is the
    mean relative displacement along the line (mod b) of each column. For every pair of
    neighbouring columns the differential displacement d_ij (mod b, in (−b/2, b/2]) is
    taken.

    Returns:
        ``triangle_dd``: |d| of the three column pairs of the central triangle, in units
        of b (a compact core spreads evenly: each ≈ 1/3, summing to 1);
        ``polarization``: asymmetry of the spreading between the two sets of three <112>
        arms around the core, (S_even − S_odd)/(S_even + S_odd) over the pairs between
        3 and ``radius_a`` Å from the core (0: non-degenerate, ±1: fully degenerate);
        ``compact``: 1.0 if the core is compact (triangle dd each within 0.2–0.45 b).
    """
    ref = reference.get_positions()
    cur = relaxed.get_positions()
    lx = relaxed.cell[0, 0]
    key = np.round(ref[:, 1:], 2)
    cols, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    du = cur[:, 0] - ref[:, 0]
    du = du - lx * np.round(du / lx)
    ang = 2 * np.pi * du / b
    u = np.array([math.atan2(np.sin(ang[inv == i]).mean(), np.cos(ang[inv == i]).mean())
                  for i in range(len(cols))]) * b / (2 * np.pi)
    yc, zc = cols[:, 0] - core_y, cols[:, 1] - core_z
    r = np.hypot(yc, zc)
    near = np.where(r < radius_a + 3)[0]
    pxy = np.column_stack([yc[near], zc[near]])
    dist = np.linalg.norm(pxy[:, None] - pxy[None], axis=2)
    nn = dist[dist > 0.1].min()
    pairs = [(i, j) for i in range(len(near)) for j in range(i + 1, len(near))
             if abs(dist[i, j] - nn) < 0.2]

    def dd(i: int, j: int) -> float:
        d = u[near[i]] - u[near[j]]
        return abs(d - b * np.round(d / b))

    tri = np.argsort(r[near])[:3]
    tri_dd = sorted(dd(i, j) / b for i, j in [(tri[0], tri[1]), (tri[1], tri[2]),
                                               (tri[0], tri[2])])
    s = np.zeros(2)
    for i, j in pairs:
        m = 0.5 * (pxy[i] + pxy[j])
        rm = np.hypot(*m)
        if 3.0 < rm < radius_a:
            phi = math.degrees(math.atan2(m[0], m[1])) % 360   # from +z towards +y
            arm = int(((phi + 30) % 360) // 60)
            s[arm % 2] += dd(i, j)
    pol = float((s[0] - s[1]) / s.sum()) if s.sum() > 0 else float("nan")
    compact = float(all(0.2 <= x <= 0.45 for x in tri_dd))
    return {"triangle_dd_b": tri_dd, "polarization": pol, "compact": compact}


# --------------------------------------------------------------------------- LAMMPS runs
def relax_script(geo: SlabGeometry, dump: str = "relaxed.dump", steps: int = 5000) -> str:
    """Relax the slab (free surfaces, fixed box) and dump the result."""
    return "\n".join([
        "thermo 100", "thermo_style custom step pe fmax fnorm",
        "min_style fire", f"minimize 0 {RELAX_FTOL} {steps} {10 * steps}",
        'print "SB pe $(pe:%.10f)"',
        f"write_dump all custom {dump} id type element x y z modify element "
        "${sb_elements} sort id",
    ])


def glide_script(geo: SlabGeometry, tau_mpa: float, temperature_k: float, *,
                 n_top: int, n_bot: int, equil_steps: int, run_steps: int, dump_every: int,
                 seed: int, damp_ps: float, timestep_ps: float,
                 relax_steps: int = 2000, boundary: str = "rigid", perturb_a: float = 0.0,
                 thermostat: str = "all", y_bins: int = 8,
                 load_at: str = "thermalisation",
                 devi_dump: Sequence[str] | None = None) -> str:
    """Relax, thermalise for ``equil_steps``, then measure ``run_steps`` under τ:
    opposite forces along b on the top and bottom boundary layers (rigid blocks, or
    deformable layers with ``traction``).

    ``load_at``: ``thermalisation`` (default) switches the load on at the start of the
    thermalisation, so the dislocation spends ``equil_steps`` getting up to speed before
    the measured (dumped) run; ``run`` thermalises at τ = 0 and switches the load on
    with the measured run (the earlier protocol). Why: a suddenly loaded dislocation is
    not at its steady velocity for picoseconds (mlearn Mo SNAP, edge, 300 K, 250 MPa,
    example cell: the core sits 0.3-1 ps, by seed, then accelerates with a time constant
    of ~1 ps: 1-ps windows 130, 740, 1010, 1200, 1250 m/s after the load; its own
    effective mass over its drag, physics, not the protocol: a pre-shear of the slab to
    the loaded elastic strain changed nothing), so a velocity fitted from the start of
    the load is low.

    ``perturb_a`` > 0 displaces every mobile atom by a uniform random amount in
    ±perturb_a (Å, per component, seed ``seed + 2``) before the relaxation: each replica
    starts from its own relaxed configuration. ``thermostat``: ``all`` (stochastic
    velocity rescaling, ``temp/csvr``, of all components of the mobile atoms' thermal
    velocities, the flow profile along y removed by ``temp/profile`` so the shear of the
    slab is not thermostatted) or ``normal`` (y velocities only, ``temp/partial 0 1 0``).
    Either way the per-component kinetic temperature of the mobile atoms (profile
    removed) is averaged over the loaded run and printed as ``SB temp_x/_y/_z``.

    ``devi_dump``: the header's model-deviation dump (:func:`~.lammps.devi_dump_commands`),
    which LAMMPS makes the timestep reset before the measured run undump; restarted after
    it, so its frames are the measured run's, as the deviation rows that remain.
    """
    force = tau_mpa / EV_A3_TO_MPA * geo.area_a2                    # eV/Å in total
    ax = 0 if geo.character == "screw" else 2
    ft, fb = np.zeros(3), np.zeros(3)
    ft[ax], fb[ax] = force / n_top, -force / n_bot
    lo = geo.y_lo + geo.layer_a
    hi = geo.y_hi - geo.layer_a
    T = max(temperature_k, 1e-3)
    rigid = boundary == "rigid"
    hold = (["fix sb_rt sb_top aveforce 0.0 0.0 0.0", "fix sb_rb sb_bot aveforce 0.0 0.0 0.0"]
            if rigid else [])
    load = ([f"fix sb_rt sb_top aveforce {ft[0]:.10g} 0.0 {ft[2]:.10g}",
             f"fix sb_rb sb_bot aveforce {fb[0]:.10g} 0.0 {fb[2]:.10g}"] if rigid else
            [f"fix sb_ftop sb_top addforce {ft[0]:.10g} 0.0 {ft[2]:.10g}",
             f"fix sb_fbot sb_bot addforce {fb[0]:.10g} 0.0 {fb[2]:.10g}"])
    unhold = ["unfix sb_rt", "unfix sb_rb"] if rigid else []
    early = load_at == "thermalisation"
    mobile = (["group sb_free subtract all sb_top sb_bot"] if rigid else
              ["group sb_free union all"])
    perturb = ([f"displace_atoms sb_free random {perturb_a:.6g} {perturb_a:.6g} "
                f"{perturb_a:.6g} {seed + 2} units box"] if perturb_a > 0 else [])
    thermal = [f"compute sb_tp sb_free temp/profile 1 1 1 y {y_bins}"]
    if thermostat == "all":
        thermal += [f"fix sb_csvr sb_free temp/csvr {T} {T} {damp_ps} {seed + 1}",
                    "fix_modify sb_csvr temp sb_tp"]
    else:
        thermal += ["compute sb_ty all temp/partial 0 1 0",
                    f"fix sb_csvr all temp/csvr {T} {T} {damp_ps} {seed + 1}",
                    "fix_modify sb_csvr temp sb_ty"]
    return "\n".join([
        "thermo 100", "thermo_style custom step temp pe etotal",
        f"region sb_bot block INF INF INF {lo:.6f} INF INF units box",
        f"region sb_top block INF INF {hi:.6f} INF INF INF units box",
        "group sb_bot region sb_bot", "group sb_top region sb_top", *mobile,
        'print "SB n_top $(count(sb_top))"', 'print "SB n_bot $(count(sb_bot))"',
        *hold, *perturb,
        "min_style fire", f"minimize 0 {RELAX_FTOL} {relax_steps} {10 * relax_steps}",
        f"velocity all create {2 * T} {seed} mom yes rot no dist gaussian",
        *(["velocity sb_top set 0 0 0", "velocity sb_bot set 0 0 0"] if rigid else []),
        "fix sb_nve all nve", *thermal,
        "fix sb_mom all momentum 50 linear 1 1 1",
        *(unhold + load if early else []),
        f"run {equil_steps}",
        *([] if early else unhold + load),
        *(["undump sb_devi"] if devi_dump else []),
        "reset_timestep 0",
        *(devi_dump or []),
        f"fix sb_tave sb_free ave/time 1 {run_steps} {run_steps} c_sb_tp c_sb_tp[1] "
        "c_sb_tp[2] c_sb_tp[3]",
        f"dump sb_d all custom {dump_every} glide.dump id type element x y z",
        "dump_modify sb_d sort id element ${sb_elements}",
        f"run {run_steps}",
        f'print "SB force_ev_a {force:.10g}"',
        # per-component temperature: T_c = 3 T KE_cc / (KE_xx + KE_yy + KE_zz)
        'variable sb_ke equal "f_sb_tave[2] + f_sb_tave[3] + f_sb_tave[4]"',
        *[f'print "SB temp_{c} $(3 * f_sb_tave[1] * f_sb_tave[{i + 2}] / v_sb_ke:%.6f)"'
          for i, c in enumerate("xyz")],
    ])


def potential_elements(pot: LammpsPotential) -> str:
    return " ".join(pot.type_map)


#: Statuses of a glide run or point that is not measured (``ok`` otherwise).
GLIDE_STATUSES = ("ok", "vanished", "dxa_lost", "left_glide_plane", "temperature",
                  "too_few_frames")


@dataclass
class GlideResult:
    """One glide run.

    Attributes:
        time_ps, core_z_a, core_y_a: (F,) frame times, unwrapped core z and core y (Å).
        velocity_m_s, velocity_err_m_s: velocity along +z over the fitted frames and its
            block error.
        block: the :class:`~scalebridge.md.glide_fit.BlockVelocity` (dof, naive error).
        temperature_xyz_k: (3,) mean kinetic temperature of the mobile atoms per
            component (x line, y normal, z glide) over the loaded run, K.
        status, reason: ``ok`` and ``""``, or why the run does not measure a velocity
            (:data:`GLIDE_STATUSES`).
        sf_width_a: FCC: mean stacking-fault width over the fitted frames, Å (NaN in BCC
            or where DXA never found two partials).
        half_velocities_m_s: velocities of the first and second halves of the fitted
            frames, m/s (:func:`half_velocities`: equal up to noise at steady glide).
        line_a: length of the built slab along the line, Å (the requested length
            rounded up to whole repeats, :func:`repeats_for`).
        max_devi_f_ev_a: the potential ensemble's largest force deviation over the
            run's deviation frames, eV/Å (NaN: one model, or no ``devi``).
    """

    time_ps: np.ndarray
    core_z_a: np.ndarray
    core_y_a: np.ndarray
    velocity_m_s: float
    velocity_err_m_s: float
    n_atoms: int
    duration_ps: float
    workdir: Path
    block: BlockVelocity | None = None
    temperature_xyz_k: tuple[float, float, float] = (math.nan, math.nan, math.nan)
    status: str = "ok"
    reason: str = ""
    sf_width_a: float = math.nan
    half_velocities_m_s: tuple[float, float] = (math.nan, math.nan)
    line_a: float = math.nan
    max_devi_f_ev_a: float = math.nan


def run_glide(potential: LammpsPotential, a0: float, character: Character,
              tau_mpa: float, temperature_k: float, workdir: str | Path, *,
              element: str = "Mo", cell_a: tuple[float, float, float] = (3.0, 18.0, 30.0),
              equil_steps: int = 200, run_steps: int = 1000, dump_every: int = 50,
              timestep_ps: float = 0.002, damp_ps: float = 0.1, seed: int = 4928,
              fit_from: float = 0.2, boundary: Literal["rigid", "traction"] = "rigid",
              perturb_a: float = 0.0, thermostat: Literal["all", "normal"] = "all",
              blocks: int = 5, max_temperature_deviation: float = 0.2,
              lattice: str = "bcc",
              load_at: Literal["thermalisation", "run"] = "thermalisation",
              devi: DeviationSettings | None = None,
              resources: Resources | None = None) -> GlideResult:
    """One (τ, T, character) glide job: build, relax, drive, locate, fit, classify.

    Args:
        potential: the potential.
        a0: lattice constant, Å.
        character: ``edge`` or ``screw``.
        tau_mpa: resolved shear stress, MPa (sign: top layer pushed along ±b).
        temperature_k: thermostat temperature, K.
        workdir: run directory.
        cell_a: minimum (line, normal, glide) lengths of the slab, Å.
        equil_steps, run_steps, dump_every: MD steps at τ = 0, loaded, dump interval.
        timestep_ps: MD timestep, ps.
        damp_ps: thermostat time constant, ps.
        seed: velocity seed (thermostat ``seed + 1``, start perturbation ``seed + 2``).
        fit_from: fraction of the loaded run skipped before the velocity fit.
        boundary: ``rigid``: top and bottom layers are rigid blocks (built with the
            far-field displacement, so they do not pin the core) loaded by opposite
            forces; ``traction``: deformable layers with the forces on their atoms (free
            surfaces: image forces pull a screw out of a thin slab).
        perturb_a: random displacement of the mobile atoms before relaxing, Å.
        thermostat: ``all`` or ``normal`` components (see :func:`glide_script`).
        blocks: blocks of the block-averaged velocity.
        max_temperature_deviation: a run whose glide-direction (z) temperature is off
            the target by more than this fraction is flagged ``temperature``.
        lattice: ``bcc`` or ``fcc`` (slab, Burgers vector, DXA families).
        load_at: ``thermalisation`` (load on from the start of the ``equil_steps``) or
            ``run`` (τ = 0 until the measured run), see :func:`glide_script`.
        devi: model deviation of an ensemble potential along the run (the core under
            load is where a learned potential extrapolates first); None: not recorded.

    Returns:
        :class:`GlideResult` (velocity along +z, m/s; ``status`` says whether it counts;
        in FCC the mean stacking-fault width over the fitted frames).
    """
    workdir = Path(workdir)
    atoms, geo = build_glide_slab(a0, character, element,
                                  *repeats_for(a0, character, cell_a, lattice),
                                  rigid_layers=boundary == "rigid", lattice=lattice)
    y = atoms.positions[:, 1]
    n_top = int((y >= geo.y_hi - geo.layer_a).sum())
    n_bot = int((y <= geo.y_lo + geo.layer_a).sum())
    y_bins = max(2, round((geo.y_hi - geo.y_lo + 2 * geo.y_lo)
                          / glide_plane_spacing(a0, lattice)))
    body = f"variable sb_elements string \"{potential_elements(potential)}\"\n" + glide_script(
        geo, tau_mpa, temperature_k, n_top=n_top, n_bot=n_bot, equil_steps=equil_steps,
        run_steps=run_steps, dump_every=dump_every, seed=seed, damp_ps=damp_ps,
        timestep_ps=timestep_ps, boundary=boundary, perturb_a=perturb_a,
        thermostat=thermostat, y_bins=y_bins, load_at=load_at,
        devi_dump=(devi_dump_commands(devi.out_freq, potential.type_map)
                   if devi is not None and getattr(potential, "is_ensemble", False)
                   else None))
    res = run_lammps(workdir, body, potential, atoms, resources=resources, devi=devi,
                     timestep_ps=timestep_ps, name=f"glide {character} {tau_mpa:g} MPa "
                     f"{temperature_k:g} K", total_steps=equil_steps + run_steps)
    devi_f = (float(np.max(res.deviation.max_devi_f)) if res.deviation is not None
              and len(res.deviation.max_devi_f) else math.nan)
    if (res.value("n_top"), res.value("n_bot")) != (n_top, n_bot):
        raise DataError(f"{workdir}: loaded layers hold {res.value('n_top'):g}/"
                        f"{res.value('n_bot'):g} atoms in LAMMPS, {n_top}/{n_bot} expected")
    temps = tuple(float(res.values.get(f"temp_{c}", math.nan)) for c in "xyz")
    lines = locate_dislocations(workdir / "glide.dump", geo.glide_a, lattice)
    t, z, yc = core_trajectory(lines, geo.glide_a, dump_every, timestep_ps)
    width = np.array([ln.width_a for ln in lines])
    write_core_trajectory(workdir, t, z, yc, width if lattice == "fcc" else None)
    start = int(fit_from * len(t))
    blk = block_velocity(t[start:], z[start:], blocks)
    status, reason = classify_glide(t, z, yc, start, geo.glide_y, a0, blk,
                                    temperature_k, temps[2], max_temperature_deviation,
                                    lattice=lattice, character=character)
    w = width[start:]
    mean_w = float(np.nanmean(w)) if np.isfinite(w).any() else math.nan
    halves = half_velocities(t[start:], z[start:])
    if status == "ok" and halves[1] - halves[0] > 0.5 * abs(halves[1]):
        log.warning("%s: still accelerating in the fitted frames (halves %.0f, %.0f m/s): "
                    "the velocity is below its steady value; raise equil_steps or "
                    "run_steps", workdir, *halves)
    return GlideResult(t, z, yc, blk.velocity_m_s, blk.err_m_s, len(atoms),
                       float(run_steps * timestep_ps), workdir, blk,
                       (temps[0], temps[1], temps[2]), status, reason, mean_w, halves,
                       geo.line_a, devi_f)


def half_velocities(t_ps: np.ndarray, z_a: np.ndarray) -> tuple[float, float]:
    """Least-squares velocities (m/s) of the first and second halves of a core trajectory
    (Å vs ps; NaN frames skipped): a dislocation at its steady velocity gives two equal
    values up to noise, one still accelerating a larger second one."""
    ok = np.isfinite(z_a)
    t, z = np.asarray(t_ps, float)[ok], np.asarray(z_a, float)[ok]
    if t.size < 6:
        return (math.nan, math.nan)
    h = t.size // 2
    return (naive_velocity(t[:h], z[:h])[0], naive_velocity(t[h:], z[h:])[0])


def core_trajectory(lines: list[DislocationLines], glide_a: float, dump_every: int,
                    timestep_ps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t ps, unwrapped core z Å, core y Å), each (F,), from the DXA result per frame."""
    t = np.arange(len(lines)) * dump_every * timestep_ps
    z = unwrap(np.array([ln.core_z for ln in lines]), glide_a)
    y = np.array([ln.core_y for ln in lines])
    return t, z, y


def write_core_trajectory(workdir: Path, t: np.ndarray, z: np.ndarray, y: np.ndarray,
                          width: np.ndarray | None = None) -> None:
    """``core_position.csv``: time (ps), core z and y (Å), and in FCC the stacking-fault
    width (Å, NaN where DXA did not find exactly two Shockley partials)."""
    cols, head = [t, z, y], "time_ps,core_z_a,core_y_a"
    if width is not None:
        cols.append(width)
        head += ",sf_width_a"
    np.savetxt(workdir / "core_position.csv", np.column_stack(cols), delimiter=",",
               header=head, comments="", fmt="%.6f")


def classify_glide(t: np.ndarray, z: np.ndarray, y: np.ndarray, start: int, glide_y: float,
                   a0: float, blk: BlockVelocity, target_k: float = 0.0,
                   glide_temperature_k: float = math.nan, max_deviation: float = 0.2,
                   max_missing: float = 0.2, lattice: str = "bcc",
                   character: str = "edge") -> tuple[str, str]:
    """Whether a glide run measures a velocity: ``("ok", "")`` or (status, reason).

    In order: ``vanished`` (no core line, 1/2<111> in BCC, Shockley partials or
    1/2<110> in FCC, from some frame to the end: it left the slab or annihilated),
    ``dxa_lost`` (no line in more than ``max_missing`` of the fitted frames),
    ``left_glide_plane`` (the core more than 0.75 of a glide-plane spacing, {110} a0/√2
    or {111} a0/√3, off its glide plane in more than ``max_missing`` of the fitted
    frames: cross-slip or climb; a BCC screw only when its net path over the fitted
    frames leaves the plane by more than one valley hop (1.5 spacings) and by more than
    it advances, i.e.
    along a plane nearer another {110} (60° away) than its own: a screw core hops between
    neighbouring Peierls valleys and glides on average along the maximum resolved shear
    direction, {112} at 30° included), ``too_few_frames`` (no block velocity),
    ``temperature`` (the glide-direction kinetic temperature off the target by more than
    ``max_deviation``).
    """
    found = np.isfinite(z)
    n = len(z)
    what = "/".join(CORE_FAMILIES[lattice])
    if n == 0 or not found.any():
        return "vanished", f"DXA found no {what} dislocation in any frame"
    last = int(np.flatnonzero(found)[-1])
    if last < n - 2:
        return "vanished", (f"the dislocation was last seen at t = {t[last]:.2f} ps of "
                            f"{t[-1]:.2f} ps (it left the slab or annihilated)")
    win = slice(start, n)
    miss = float(1 - found[win].mean()) if n > start else 1.0
    if miss > max_missing:
        return "dxa_lost", (f"DXA found no {what} line in {miss:.0%} of the fitted "
                            "frames")
    off = np.abs(y[win] - glide_y)
    plane = glide_plane_spacing(a0, lattice)
    far = off[np.isfinite(off)] > 0.75 * plane
    if character == "screw" and lattice == "bcc":
        zw, yw = z[win][found[win]], y[win][found[win]]
        k = max(1, min(3, zw.size // 3))
        dz = float(np.median(zw[-k:]) - np.median(zw[:k])) if zw.size else 0.0
        dy = float(np.median(yw[-k:]) - np.median(yw[:k])) if yw.size else 0.0
        if abs(dy) > 1.5 * plane and abs(dy) > abs(dz):
            return "left_glide_plane", (
                f"the screw's path left its {{110}} plane by {dy:+.1f} Å while advancing "
                f"{dz:+.1f} Å ({math.degrees(math.atan2(abs(dy), abs(dz))):.0f}° from "
                "its plane: cross-slip onto another {110})")
        far = far[:0]           # valley hops along the plane are glide
    if far.size and far.mean() > max_missing:
        return "left_glide_plane", (f"the core was up to {np.nanmax(off):.1f} Å off its "
                                    f"glide plane ({'{110}' if lattice == 'bcc' else '{111}'}"
                                    f" spacing {plane:.2f} Å) in "
                                    f"{far.mean():.0%} of the fitted frames (cross-slip or "
                                    "climb)")
    if not np.isfinite(blk.velocity_m_s) or not np.isfinite(blk.err_m_s):
        return "too_few_frames", (f"{int(found[win].sum())} located frames after the "
                                  "transient: too few for a block-averaged velocity")
    if target_k > 0 and np.isfinite(glide_temperature_k) and \
            abs(glide_temperature_k / target_k - 1) > max_deviation:
        return "temperature", (f"glide-direction kinetic temperature {glide_temperature_k:.0f}"
                               f" K vs {target_k:g} K target (more than "
                               f"{max_deviation:.0%} off)")
    return "ok", ""


def glide_velocity(workdir: Path, glide_a: float, dump_every: int, timestep_ps: float,
                   fit_from: float, blocks: int = 5
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Locate the core in ``workdir/glide.dump`` (one frame per ``dump_every`` steps),
    unwrap it across the periodic glide length ``glide_a`` (Å), fit the velocity
    (with a block error) after the first ``fit_from`` of the frames and write
    ``core_position.csv``.

    Returns:
        (t ps (F,), core z Å (F,), core y Å (F,), velocity m/s, its block error m/s).
    """
    lines = locate_dislocations(workdir / "glide.dump", glide_a)
    t, z, y = core_trajectory(lines, glide_a, dump_every, timestep_ps)
    start = int(fit_from * len(t))
    blk = block_velocity(t[start:], z[start:], blocks)
    write_core_trajectory(workdir, t, z, y)
    return t, z, y, blk.velocity_m_s, blk.err_m_s


# --------------------------------------------------------------------------- Peierls, 0 K
def peierls_script(geo: SlabGeometry, n_top: int, n_bot: int, taus_mpa: Sequence[float],
                   level_steps: int, jump_a: float, relax_steps: int = 5000) -> str:
    """Quasi-static loading at 0 K: relax between rigid blocks, then for each stress
    level set the block forces (τ = F/A along b), minimise (FIRE), print the relative
    block displacement ``SB slip_<i>`` and dump ``peierls_<i>.dump``; stop after the
    first level whose block displacement jumps by more than ``jump_a`` (the dislocation
    glided)."""
    ax = "x" if geo.character == "screw" else "z"
    lo = geo.y_lo + geo.layer_a
    hi = geo.y_hi - geo.layer_a
    lines = [
        "thermo 500", "thermo_style custom step pe fmax fnorm",
        f"region sb_bot block INF INF INF {lo:.6f} INF INF units box",
        f"region sb_top block INF INF {hi:.6f} INF INF INF units box",
        "group sb_bot region sb_bot", "group sb_top region sb_top",
        'print "SB n_top $(count(sb_top))"', 'print "SB n_bot $(count(sb_bot))"',
        f'variable sb_d equal "xcm(sb_top,{ax}) - xcm(sb_bot,{ax})"',
        "fix sb_rt sb_top aveforce 0.0 0.0 0.0", "fix sb_rb sb_bot aveforce 0.0 0.0 0.0",
        "min_style fire", f"minimize 0 {RELAX_FTOL} {relax_steps} {10 * relax_steps}",
        'print "SB slip_0 $(v_sb_d:%.8f)"',
        "write_dump all custom peierls_000.dump id type element x y z modify element "
        "${sb_elements} sort id",
        "variable sb_prev equal $(v_sb_d)",
    ]
    for i, tau in enumerate(taus_mpa, start=1):
        f = tau / EV_A3_TO_MPA * geo.area_a2
        ft, fb = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
        k = 0 if ax == "x" else 2
        ft[k], fb[k] = f / n_top, -f / n_bot
        lines += [
            "unfix sb_rt", "unfix sb_rb",
            f"fix sb_rt sb_top aveforce {ft[0]:.10g} 0.0 {ft[2]:.10g}",
            f"fix sb_rb sb_bot aveforce {fb[0]:.10g} 0.0 {fb[2]:.10g}",
            f"minimize 0 {RELAX_FTOL} {level_steps} {10 * level_steps}",
            f'print "SB slip_{i} $(v_sb_d:%.8f)"',
            f"write_dump all custom peierls_{i:03d}.dump id type element x y z modify "
            "element ${sb_elements} sort id",
            f'if "$(v_sb_d - v_sb_prev) > {jump_a:.6f}" then "jump SELF sb_done"',
            "variable sb_prev equal $(v_sb_d)",
        ]
    lines += ["label sb_done", 'print "SB levels_done 1"']
    return "\n".join(lines)


@dataclass
class PeierlsResult:
    """0 K Peierls stress from quasi-static loading (MPa).

    Attributes:
        peierls_mpa: midpoint of the last static and the first gliding level;
        peierls_err_mpa: half the step; status ``ok`` or ``not_reached`` (no glide up to
        the highest level) or ``moved_at_first_level``; reason; taus_mpa, slip_a, core_z_a:
        (L,) the levels, relative block displacement and DXA core z (NaN when not found).
    """

    peierls_mpa: float
    peierls_err_mpa: float
    status: str
    reason: str
    taus_mpa: np.ndarray
    slip_a: np.ndarray
    core_z_a: np.ndarray
    workdir: Path


def peierls_stress(potential: LammpsPotential, a0: float, workdir: str | Path, *,
                   character: Character = "screw", element: str = "Mo",
                   cell_a: tuple[float, float, float] = (55.0, 19.0, 33.0),
                   step_mpa: float = 50.0, max_mpa: float = 4000.0,
                   level_steps: int = 2000,
                   resources: Resources | None = None) -> PeierlsResult:
    """The 0 K Peierls stress of a straight dislocation in the glide slab.

    Protocol: the slab of :func:`run_glide` (rigid blocks) is relaxed, then loaded in
    increments of ``step_mpa`` (τ = F/A on the blocks, along b), minimising at each
    level. The dislocation has glided at the first level where either the core (DXA)
    moved by more than half a Peierls valley (a0√6/3 for {110} glide) from the previous
    level or the block displacement jumped by more than b·(valley/2)/L (L the glide
    length: the slip of the core moving half a valley). The Peierls stress is the
    midpoint of that level and the one before (± half a step).
    """
    workdir = Path(workdir)
    atoms, geo = build_glide_slab(a0, character, element,
                                  *repeats_for(a0, character, cell_a), rigid_layers=True)
    y = atoms.positions[:, 1]
    n_top = int((y >= geo.y_hi - geo.layer_a).sum())
    n_bot = int((y <= geo.y_lo + geo.layer_a).sum())
    valley = a0 * math.sqrt(6) / 3
    jump = geo.burgers_a * 0.5 * valley / geo.glide_a
    taus = np.arange(1, math.floor(max_mpa / step_mpa + 1e-9) + 1) * step_mpa
    body = (f"variable sb_elements string \"{potential_elements(potential)}\"\n"
            + peierls_script(geo, n_top, n_bot, taus, level_steps, jump))
    res = run_lammps(workdir, body, potential, atoms, resources=resources,
                     name=f"peierls {character} 0 K")
    slips = []
    i = 0
    while f"slip_{i}" in res.values:
        slips.append(res.values[f"slip_{i}"])
        i += 1
    slip = np.array(slips)
    zs = []
    for k in range(len(slip)):
        ln = locate_dislocations(workdir / f"peierls_{k:03d}.dump", geo.glide_a)[0]
        zs.append(ln.core_z)
    z = np.array(zs, float)
    dz = np.abs(np.diff(z))
    dz = np.minimum(dz, geo.glide_a - dz)                       # periodic
    moved = (np.diff(slip) > jump) | ~(dz <= 0.5 * valley)      # a lost core counts
    levels = np.concatenate([[0.0], taus[:len(slip) - 1]])
    if not moved.any():
        return PeierlsResult(math.nan, math.nan, "not_reached",
                             f"no glide up to {levels[-1]:g} MPa", levels, slip, z, workdir)
    first = int(np.flatnonzero(moved)[0]) + 1                    # level index that moved
    if first == 1:
        return PeierlsResult(0.5 * levels[1], 0.5 * levels[1], "moved_at_first_level",
                             f"glided at the first level ({levels[1]:g} MPa): lower "
                             "step_mpa", levels, slip, z, workdir)
    return PeierlsResult(0.5 * (levels[first - 1] + levels[first]), 0.5 * step_mpa, "ok", "",
                         levels, slip, z, workdir)


# --------------------------------------------------------------------------- FCC partials
def elastic_partial_separation(mu_gpa: float, nu: float, a0: float, gamma_mj_m2: float,
                               beta_deg: float) -> float:
    """Equilibrium separation (Å) of the two Shockley partials of a 1/2<110> dislocation
    in an isotropic crystal (Hirth & Lothe, *Theory of Dislocations*, 2nd ed., Wiley 1982,
    Sec. 10-1: the partials' elastic repulsion balanced by the stacking-fault energy)::

        d = μ b_p² / (8π γ) · (2 − ν)/(1 − ν) · (1 − 2ν cos 2β / (2 − ν))

    with b_p = a0/√6 the partial's Burgers vector and β the angle between the line and
    the total Burgers vector (0 screw, 90° edge).

    Args:
        mu_gpa: isotropic shear modulus, GPa; nu: Poisson's ratio.
        a0: lattice constant, Å; gamma_mj_m2: intrinsic stacking-fault energy, mJ/m².
        beta_deg: character angle, degrees.
    """
    bp = a0 / math.sqrt(6) * 1e-10
    c2b = math.cos(2 * math.radians(beta_deg))
    d = (mu_gpa * 1e9 * bp ** 2 / (8 * math.pi * gamma_mj_m2 * 1e-3)
         * (2 - nu) / (1 - nu) * (1 - 2 * nu * c2b / (2 - nu)))
    return d * 1e10


def periodic_row_separation(d_inf_a: float, period_a: float) -> float:
    """The partial separation (Å) in a cell periodic along the glide direction with
    period L: each partial also feels the other's images at d ± nL, so the 1/d repulsion
    becomes (π/L)·cot(πd/L) and ``d = (L/π)·arctan(π d∞ / L)`` (→ d∞ for L ≫ d∞)."""
    return period_a / math.pi * math.atan(math.pi * d_inf_a / period_a)


@dataclass
class Dissociation:
    """A relaxed FCC dislocation at 0 K (DXA on ``relaxed.dump``).

    Attributes:
        character: ``edge`` or ``screw``; status ``ok`` or why not (``not_dissociated``).
        width_a: distance along z between the two Shockley partials, Å.
        partial_burgers: crystal-frame Burgers vectors (units of a0) of the core lines.
        families: DXA family of every segment; glide_a: period along z, Å.
    """

    character: str
    width_a: float
    partial_burgers: list[tuple[float, float, float]]
    families: list[str]
    glide_a: float
    status: str
    reason: str
    workdir: Path


def dissociation_script(geo: SlabGeometry, relax_steps: int = 5000) -> str:
    """Relax the glide slab at 0 K as the glide run does (boundary layers held as rigid
    blocks, free to translate) and dump it to ``relaxed.dump``."""
    lo = geo.y_lo + geo.layer_a
    hi = geo.y_hi - geo.layer_a
    return "\n".join([
        "thermo 200", "thermo_style custom step pe fmax fnorm",
        f"region sb_bot block INF INF INF {lo:.6f} INF INF units box",
        f"region sb_top block INF INF {hi:.6f} INF INF INF units box",
        "group sb_bot region sb_bot", "group sb_top region sb_top",
        "fix sb_rt sb_top aveforce 0.0 0.0 0.0", "fix sb_rb sb_bot aveforce 0.0 0.0 0.0",
        "min_style fire", f"minimize 0 {RELAX_FTOL} {relax_steps} {10 * relax_steps}",
        'print "SB pe $(pe:%.10f)"',
        "write_dump all custom relaxed.dump id type element x y z modify element "
        "${sb_elements} sort id",
    ])


def relaxed_dissociation(potential: LammpsPotential, a0: float, character: Character,
                         workdir: str | Path, *, element: str = "Cu",
                         cell_a: tuple[float, float, float] = (12.0, 60.0, 100.0),
                         relax_steps: int = 5000,
                         resources: Resources | None = None) -> Dissociation:
    """Build the FCC glide slab of :func:`run_glide`, relax it at 0 K and measure how the
    perfect dislocation split: the Shockley partials DXA finds and their separation."""
    workdir = Path(workdir)
    atoms, geo = build_glide_slab(a0, character, element,
                                  *repeats_for(a0, character, cell_a, "fcc"),
                                  rigid_layers=True, lattice="fcc")
    body = (f"variable sb_elements string \"{potential_elements(potential)}\"\n"
            + dissociation_script(geo, relax_steps))
    run_lammps(workdir, body, potential, atoms, resources=resources,
               name=f"relax {character} (fcc)")
    ln = locate_dislocations(workdir / "relaxed.dump", geo.glide_a, "fcc")[0]
    status, reason = "ok", ""
    if not math.isfinite(ln.width_a):
        status = "not_dissociated"
        reason = (f"DXA found core lines {sorted(set(ln.burgers))} rather than two "
                  "1/6<112> Shockley partials")
    return Dissociation(character, ln.width_a, ln.partial_burgers, ln.burgers,
                        geo.glide_a, status, reason, workdir)
