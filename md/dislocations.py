"""Building, relaxing, locating and driving 1/2<111> dislocations in BCC crystals.

Geometry (a glide slab, LAMMPS-form cell, periodic along x and z, free surfaces in y):

- screw: line x = [111] ∥ b, glide plane normal y = [-110], glide direction z = [-1-12];
- edge:  line x = [11-2], normal y = [-110], glide direction z = [111] ∥ b.

The dislocation sits on the (-110) plane between the two middle atomic planes. Its
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
pull a screw out of a thin slab by its image force.) The velocity components normal to
the glide plane (y) are thermostatted (stochastic velocity rescaling, ``temp/csvr`` on a
``temp/partial 0 1 0`` temperature), so the thermostat adds no friction to the glide
itself (a Langevin thermostat on all components would add a drag estimated at ~1e-4 Pa·s at
0.5 ps damping, as much as the drag being measured); the total momentum is removed.
With τ > 0 (top pushed along +b) the dislocation moves along +z for both
characters (Peach–Koehler). The core position along z is located in each dumped frame
with OVITO's DXA (the mean of the 1/2<111> line points, unwrapped across the periodic
boundary), and the velocity is the slope of a straight-line fit over the loaded part.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from ase import Atoms
from ase.lattice.cubic import BodyCenteredCubic
from scalebridge.errors import DataError
from scalebridge.md.lammps import RELAX_FTOL, LammpsPotential, run_lammps
from scalebridge.md.properties import burgers_length
from scalebridge.settings import Resources

log = logging.getLogger("scalebridge.md.dislocations")

Character = Literal["edge", "screw"]

#: Crystal axes (x, y, z) of the glide slab per character.
AXES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "screw": ((1, 1, 1), (-1, 1, 0), (-1, -1, 2)),
    "edge": ((1, 1, -2), (-1, 1, 0), (1, 1, 1)),
}

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


def _bcc_block(a0: float, character: str, nx: int, ny: int, nz: int,
               element: str) -> Atoms:
    ax = AXES[character]
    with _ASE_LATTICE_LOCK:
        return BodyCenteredCubic(directions=[list(v) for v in ax], size=(nx, ny, nz),
                                 symbol=element, latticeconstant=a0, pbc=True)


def repeat_lengths(a0: float, character: str) -> np.ndarray:
    """Lengths (Å) of one repeat of the oriented cell along x, y, z."""
    r3, r2, r6 = math.sqrt(3) / 2, math.sqrt(2), math.sqrt(6)
    return a0 * (np.array([r3, r2, r6]) if character == "screw" else np.array([r6, r2, r3]))


def repeats_for(a0: float, character: str, lengths_a: tuple[float, float, float]
                ) -> tuple[int, int, int]:
    """Repeats giving at least the requested (line, normal, glide) lengths, Å."""
    per = repeat_lengths(a0, character)
    n = [max(1, math.ceil(L / p - 1e-6)) for L, p in zip(lengths_a, per, strict=True)]
    n[1] = max(n[1], 3)
    if character == "edge":
        n[2] = max(n[2], 4)
    return (n[0], n[1], n[2])


def build_glide_slab(a0: float, character: Character, element: str = "Mo",
                     n_line: int = 1, n_normal: int = 4, n_glide: int = 4,
                     vacuum_a: float = 8.0, layer_a: float | None = None,
                     rigid_layers: bool = False) -> tuple[Atoms, SlabGeometry]:
    """A straight 1/2<111> dislocation in a glide slab (see the module docstring).

    Args:
        a0: lattice constant, Å.
        character: ``screw`` or ``edge``.
        element: chemical symbol.
        n_line, n_normal, n_glide: repeats of the oriented cubic cell along x (line),
            y (normal) and z (glide). Repeat lengths: [111] a√3/2, [-110] a√2,
            [-1-12] a√6, [11-2] a√6 (:func:`repeats_for` converts lengths).
        vacuum_a: vacuum above and below the slab (the y boundaries are free).
        layer_a: thickness of the held/loaded boundary layers (default two planes).
        rigid_layers: give the boundary layers the far-field (uniform ramp) displacement,
            so that rigid layers do not pin the core where it was built.

    Returns:
        (atoms with ``info`` about the dislocation, geometry).
    """
    if character not in AXES:
        raise DataError(f"dislocation character {character!r}: expected 'edge' or 'screw'")
    b = burgers_length(a0, "bcc")
    blk = _bcc_block(a0, character, n_line, n_normal, n_glide, element)
    cell = np.diag(blk.cell.lengths())
    pos = blk.get_positions()
    # snap tiny negatives and find the middle gap between (-110) planes
    planes = np.unique(np.round(pos[:, 1], 4))
    mid = len(planes) // 2
    glide_y = 0.5 * (planes[mid - 1] + planes[mid])
    t = pos[:, 1] - glide_y
    lx, lz = cell[0, 0], cell[2, 2]
    lay = float(layer_a if layer_a is not None else a0 * math.sqrt(2) * 0.75)
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
                      core_z=geo.core_z)
    return atoms, geo


# --------------------------------------------------------------------------- locating
@dataclass
class DislocationLines:
    """DXA result of one frame.

    Attributes:
        n_segments: number of dislocation segments found.
        burgers: (n,) strings like ``1/2<111>`` per segment (crystal frame, family).
        lengths_a: (n,) segment lengths, Å.
        core_y, core_z: mean y and z of the 1/2<111> line points (z as a circular mean
            over the periodic glide length), Å; NaN when none was found.
    """

    n_segments: int
    burgers: list[str]
    lengths_a: np.ndarray
    core_y: float
    core_z: float


def burgers_family(v: np.ndarray, tol: float = 0.05) -> str:
    """Family name of a crystal-frame Burgers vector in units of a0:
    ``1/2<111>``, ``<100>``, ``<110>`` or ``other``."""
    a = np.sort(np.abs(np.asarray(v, float)))[::-1]
    if np.allclose(a, [0.5, 0.5, 0.5], atol=tol):
        return "1/2<111>"
    if np.allclose(a, [1, 0, 0], atol=tol):
        return "<100>"
    if np.allclose(a, [1, 1, 0], atol=tol):
        return "<110>"
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


def locate_dislocations(dump: str | Path, glide_len_a: float | None = None,
                        lattice: str = "bcc") -> list[DislocationLines]:
    """Run OVITO's DXA on every frame of a LAMMPS dump.

    Args:
        dump: LAMMPS text dump (``id type x y z``; boundaries taken from it).
        glide_len_a: period along z for the circular mean (default: the cell's z length).
        lattice: ``bcc`` or ``fcc``.

    Returns:
        One :class:`DislocationLines` per frame.
    """
    pipe = _dxa_pipeline(Path(dump), lattice)
    rep_z = next((m.num_z for m in pipe.modifiers if hasattr(m, "num_z")), 1)
    out = []
    for frame in range(pipe.source.num_frames):
        data = pipe.compute(frame)
        lz = glide_len_a or float(data.cell[2, 2]) / rep_z
        fams, lens, pts = [], [], []
        segs = data.dislocations.segments if data.dislocations is not None else []
        for seg in segs:
            fam = burgers_family(seg.true_burgers_vector)
            fams.append(fam)
            lens.append(seg.length)
            if fam == "1/2<111>":
                pts.append(np.asarray(seg.points))
        if pts:
            p = np.vstack(pts)
            ang = 2 * np.pi * p[:, 2] / lz
            cz = (math.atan2(np.sin(ang).mean(), np.cos(ang).mean()) / (2 * np.pi) * lz) % lz
            cy = float(p[:, 1].mean())
        else:
            cz = cy = float("nan")
        out.append(DislocationLines(len(fams), fams, np.array(lens), cy, float(cz)))
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
    """Least-squares slope of z(t) and its standard error, in m/s (1 Å/ps = 100 m/s)."""
    ok = ~np.isnan(z_a)
    t, z = np.asarray(t_ps)[ok], np.asarray(z_a)[ok]
    if t.size < 3:
        return float("nan"), float("nan")
    A = np.vstack([t, np.ones_like(t)]).T
    coef, _res, *_ = np.linalg.lstsq(A, z, rcond=None)
    resid = z - A @ coef
    s2 = resid @ resid / max(t.size - 2, 1)
    se = math.sqrt(s2 / ((t - t.mean()) ** 2).sum())
    return float(coef[0] * 100), float(se * 100)


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
                 relax_steps: int = 2000, boundary: str = "rigid") -> str:
    """Relax, thermalise at τ = 0, then drive at τ: opposite forces along b on the atoms
    of the top and bottom surface layers (a shear traction τ = n_top·f/A on free
    surfaces; the layers stay deformable so they do not pin the dislocation's field),
    thermostat on the y velocities only, total momentum removed; dumps every
    ``dump_every`` steps while loaded."""
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
    return "\n".join([
        "thermo 100", "thermo_style custom step temp pe etotal",
        f"region sb_bot block INF INF INF {lo:.6f} INF INF units box",
        f"region sb_top block INF INF {hi:.6f} INF INF INF units box",
        "group sb_bot region sb_bot", "group sb_top region sb_top",
        'print "SB n_top $(count(sb_top))"', 'print "SB n_bot $(count(sb_bot))"',
        *hold,
        "min_style fire", f"minimize 0 {RELAX_FTOL} {relax_steps} {10 * relax_steps}",
        f"velocity all create {2 * T} {seed} mom yes rot no dist gaussian",
        *(["velocity sb_top set 0 0 0", "velocity sb_bot set 0 0 0"] if rigid else []),
        "compute sb_ty all temp/partial 0 1 0",
        "fix sb_nve all nve",
        f"fix sb_csvr all temp/csvr {T} {T} {damp_ps} {seed + 1}",
        "fix_modify sb_csvr temp sb_ty",
        "fix sb_mom all momentum 50 linear 1 1 1",
        f"run {equil_steps}",
        *(["unfix sb_rt", "unfix sb_rb"] if rigid else []),
        *load,
        "reset_timestep 0",
        f"dump sb_d all custom {dump_every} glide.dump id type element x y z",
        "dump_modify sb_d sort id element ${sb_elements}",
        f"run {run_steps}",
        f'print "SB force_ev_a {force:.10g}"',
    ])


def potential_elements(pot: LammpsPotential) -> str:
    return " ".join(pot.type_map)


@dataclass
class GlideResult:
    """One glide run: times (ps), unwrapped core z (Å), core y (Å), the fit."""

    time_ps: np.ndarray
    core_z_a: np.ndarray
    core_y_a: np.ndarray
    velocity_m_s: float
    velocity_err_m_s: float
    n_atoms: int
    duration_ps: float
    workdir: Path


def run_glide(potential: LammpsPotential, a0: float, character: Character,
              tau_mpa: float, temperature_k: float, workdir: str | Path, *,
              element: str = "Mo", cell_a: tuple[float, float, float] = (3.0, 18.0, 30.0),
              equil_steps: int = 200, run_steps: int = 1000, dump_every: int = 50,
              timestep_ps: float = 0.002, damp_ps: float = 0.1, seed: int = 4928,
              fit_from: float = 0.2, boundary: Literal["rigid", "traction"] = "rigid",
              resources: Resources | None = None) -> GlideResult:
    """One (τ, T, character) glide job: build, relax, drive, locate, fit.

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
        damp_ps: thermostat time constant (y velocities), ps.
        fit_from: fraction of the loaded run skipped before the velocity fit.
        boundary: ``rigid``: top and bottom layers are rigid blocks (built with the
            far-field displacement, so they do not pin the core) loaded by opposite
            forces; ``traction``: deformable layers with the forces on their atoms (free
            surfaces: image forces pull a screw out of a thin slab).

    Returns:
        :class:`GlideResult` (velocity along +z, m/s).
    """
    workdir = Path(workdir)
    atoms, geo = build_glide_slab(a0, character, element,
                                  *repeats_for(a0, character, cell_a),
                                  rigid_layers=boundary == "rigid")
    y = atoms.positions[:, 1]
    n_top = int((y >= geo.y_hi - geo.layer_a).sum())
    n_bot = int((y <= geo.y_lo + geo.layer_a).sum())
    body = f"variable sb_elements string \"{potential_elements(potential)}\"\n" + glide_script(
        geo, tau_mpa, temperature_k, n_top=n_top, n_bot=n_bot, equil_steps=equil_steps,
        run_steps=run_steps, dump_every=dump_every, seed=seed, damp_ps=damp_ps,
        timestep_ps=timestep_ps, boundary=boundary)
    res = run_lammps(workdir, body, potential, atoms, resources=resources,
                     timestep_ps=timestep_ps, name=f"glide {character} {tau_mpa:g} MPa "
                     f"{temperature_k:g} K", total_steps=equil_steps + run_steps)
    if (res.value("n_top"), res.value("n_bot")) != (n_top, n_bot):
        raise DataError(f"{workdir}: loaded layers hold {res.value('n_top'):g}/"
                        f"{res.value('n_bot'):g} atoms in LAMMPS, {n_top}/{n_bot} expected")
    t, z, y, v, err = glide_velocity(workdir, geo.glide_a, dump_every, timestep_ps, fit_from)
    return GlideResult(t, z, y, v, err, len(atoms), float(run_steps * timestep_ps), workdir)


def glide_velocity(workdir: Path, glide_a: float, dump_every: int, timestep_ps: float,
                   fit_from: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Locate the core in ``workdir/glide.dump`` (one frame per ``dump_every`` steps),
    unwrap it across the periodic glide length ``glide_a`` (Å), fit the velocity after
    the first ``fit_from`` of the frames and write ``core_position.csv``.

    Returns:
        (t ps (F,), core z Å (F,), core y Å (F,), velocity m/s, its standard error m/s).
    """
    lines = locate_dislocations(workdir / "glide.dump", glide_a)
    t = np.arange(len(lines)) * dump_every * timestep_ps
    z = unwrap(np.array([ln.core_z for ln in lines]), glide_a)
    y = np.array([ln.core_y for ln in lines])
    start = int(fit_from * len(t))
    v, err = fit_velocity(t[start:], z[start:])
    np.savetxt(workdir / "core_position.csv", np.column_stack([t, z, y]), delimiter=",",
               header="time_ps,core_z_a,core_y_a", comments="", fmt="%.6f")
    return t, z, y, v, err
