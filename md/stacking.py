"""Generalised stacking-fault (GSF) curves and the intrinsic stacking-fault energy.

Protocol (the standard one, e.g. Vítek, Phil. Mag. 18, 773 (1968); Zimmerman, Gao &
Abraham, MSMSE 8, 103 (2000)): a slab periodic in the fault plane (x, y) with vacuum
along its normal z is cut between its two middle atomic planes; the upper half is
shifted rigidly by s along the slip direction x, and at each shift the atoms relax only
along z (``fix setforce 0 0 NULL``; the in-plane positions, and so the shift, stay
fixed; the box is fixed at the relaxed lattice constant). Then
``γ(s) = (E(s) − E(0)) / A`` with A the cell's fault area. The free surfaces are the same
at every shift and cancel. One LAMMPS run steps through all shifts.

Curves (:data:`GSF_PLANES`):

- FCC ``111_112``: {111}<112> over one period 3·b_p (b_p = a0/√6, the Shockley
  partial): the unstable stacking fault γ_us near b_p/2, the intrinsic stacking fault
  γ_SF at s = b_p (a local minimum), the A-on-A stacking at 2·b_p, and γ = 0 again at
  3·b_p.
- BCC ``110_111`` and ``112_111``: {110}<111> and {112}<111> over one Burgers vector
  b = a0√3/2: γ_us (the maximum); {110} is symmetric about b/2, {112} is not (twinning
  and anti-twinning senses).

:func:`dft_gsf_curve` turns DFT GSF cells (a group of rigidly shifted slabs such as
FitSNAP's ``GSF_110``/``GSF_112``) into the same γ(s), and :func:`model_gsf_on_frames`
evaluates a potential on the very same cells, so model and DFT compare point by point.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from scalebridge.errors import DataError
from scalebridge.md.lammps import RELAX_FTOL, LammpsPotential, run_lammps, single_points
from scalebridge.plotting import save_figure
from scalebridge.settings import Resources

log = logging.getLogger("scalebridge.md.stacking")

#: 1 eV/Å² in mJ/m².
EV_A2_TO_MJ_M2 = 16021.766208

#: lattice → plane key → (slip direction x, normal z, period along x in units of a0,
#: the Burgers vector the curve is plotted against in units of a0, its label).
GSF_PLANES: dict[str, dict[str, tuple[tuple[int, int, int], tuple[int, int, int], float,
                                      float, str]]] = {
    "fcc": {"111_112": ((1, 1, -2), (1, 1, 1), math.sqrt(6) / 2, 1 / math.sqrt(6), "b_p")},
    "bcc": {"110_111": ((1, -1, 1), (1, 1, 0), math.sqrt(3) / 2, math.sqrt(3) / 2, "b"),
            "112_111": ((1, 1, -1), (1, 1, 2), math.sqrt(3) / 2, math.sqrt(3) / 2, "b")},
}


def plane_label(key: str) -> str:
    """``111_112`` → ``{111}<112>``."""
    p, d = key.split("_")
    return f"{{{p}}}<{d}>"


@dataclass
class GSFSlab:
    """A slab for a GSF curve.

    Attributes:
        atoms: the slab (orthogonal LAMMPS-form cell, vacuum along z).
        upper: (n,) bool, the atoms above the fault plane.
        area_a2: fault area Lx·Ly, Å².
        period_a: length of one period of the curve along x, Å.
        unit_a: the Burgers vector the shifts are expressed in (b_p or b), Å.
    """

    atoms: Atoms
    upper: np.ndarray
    area_a2: float
    period_a: float
    unit_a: float


def gsf_slab(a0: float, lattice: str, plane: str, element: str,
             half_thickness_a: float = 12.0, vacuum_a: float = 10.0) -> GSFSlab:
    """The slab of one GSF curve: x the slip direction, z the plane normal, at least
    ``half_thickness_a`` of crystal on each side of the fault plane.

    Raises:
        DataError: a lattice or plane without a GSF definition.
    """
    from scalebridge.md.dislocations import _ASE_LATTICE_LOCK

    try:
        x, z, period, unit, _ = GSF_PLANES[lattice][plane]
    except KeyError:
        raise DataError(f"stacking fault {plane!r} on {lattice!r}: defined are "
                        f"{ {k: list(v) for k, v in GSF_PLANES.items()} }") from None
    y = tuple(int(v) for v in np.cross(z, x))
    g = math.gcd(*(abs(v) for v in y))
    y = tuple(v // g for v in y)
    from ase.lattice.cubic import BodyCenteredCubic, FaceCenteredCubic

    factory = BodyCenteredCubic if lattice == "bcc" else FaceCenteredCubic
    with _ASE_LATTICE_LOCK:
        unit_cell = factory(directions=[list(x), list(y), list(z)], size=(1, 1, 1),
                            symbol=element, latticeconstant=a0, pbc=True)
    nz = max(2, math.ceil(2 * half_thickness_a / unit_cell.cell.lengths()[2]))
    nz += nz % 2
    with _ASE_LATTICE_LOCK:
        atoms = factory(directions=[list(x), list(y), list(z)], size=(1, 1, nz),
                        symbol=element, latticeconstant=a0, pbc=True)
    pos = atoms.get_positions()
    planes = np.unique(np.round(pos[:, 2], 4))
    mid = 0.5 * (planes[len(planes) // 2 - 1] + planes[len(planes) // 2])
    upper = pos[:, 2] > mid
    cell = np.diag(atoms.cell.lengths())
    pos[:, 2] += vacuum_a - planes[0]
    cell[2, 2] = planes[-1] - planes[0] + 2 * vacuum_a
    slab = Atoms(atoms.get_chemical_symbols(), positions=pos, cell=cell,
                 pbc=(True, True, False))
    return GSFSlab(slab, upper, float(cell[0, 0] * cell[1, 1]), period * a0, unit * a0)


def gsf_script(upper_ids: Sequence[int], step_a: float, n_steps: int, tag: str = "",
               relax_steps: int = 1000) -> str:
    """LAMMPS body for one slab: relax along z at s = 0, then shift the upper half by
    ``step_a`` along x ``n_steps`` times, relaxing along z only after each shift (CG to
    the md stage's force tolerance :data:`~scalebridge.md.lammps.RELAX_FTOL`, which a
    float32 model reaches); prints ``SB e_<tag>_<k>`` (eV)."""
    ids = " ".join(str(i) for i in upper_ids)
    mini = f"minimize 1e-10 {RELAX_FTOL} {relax_steps} {10 * relax_steps}"
    lines = ["thermo 1000", "thermo_style custom step pe fmax",
             f"group sb_up id {ids}", "fix sb_z all setforce 0.0 0.0 NULL",
             "min_style cg", mini, f'print "SB e_{tag}_0 $(pe:%.10f)"']
    for k in range(1, n_steps + 1):
        lines += [f"displace_atoms sb_up move {step_a:.10f} 0.0 0.0 units box", mini,
                  f'print "SB e_{tag}_{k} $(pe:%.10f)"']
    return "\n".join(lines)


@dataclass
class GSFCurve:
    """γ(s) of one plane.

    Attributes:
        lattice, plane: e.g. ``fcc``, ``111_112``.
        shift_a: (n,) shifts along the slip direction, Å (0 … one period).
        gamma_mj_m2: (n,) fault energy per area, mJ/m².
        unit_a: b_p (FCC) or b (BCC), Å; unit_label: its name.
        period_a: period of the curve, Å.
        n_atoms: atoms in the slab.
    """

    lattice: str
    plane: str
    shift_a: np.ndarray
    gamma_mj_m2: np.ndarray
    unit_a: float
    unit_label: str
    period_a: float
    n_atoms: int

    def summary(self) -> dict[str, Any]:
        """The curve's numbers (mJ/m²): FCC ``gamma_sf`` (at s = b_p), ``gamma_us`` (max
        on 0 … b_p) and ``gamma_max``; BCC ``gamma_us`` and where it is (in b);
        ``periodicity_mj_m2`` = γ(period) − γ(0)."""
        s, g = self.shift_a / self.unit_a, self.gamma_mj_m2
        out: dict[str, Any] = {"plane": plane_label(self.plane), "points": len(s),
                               "periodicity_mj_m2": float(g[-1] - g[0])}
        if self.lattice == "fcc":
            i_sf = int(np.argmin(np.abs(s - 1.0)))
            first = s <= 1.0 + 1e-9
            i_us = int(np.argmax(np.where(first, g, -np.inf)))
            out.update(gamma_sf_mj_m2=float(g[i_sf]), gamma_us_mj_m2=float(g[i_us]),
                       us_shift_bp=float(s[i_us]), gamma_max_mj_m2=float(g.max()),
                       sf_is_local_minimum=bool(0 < i_sf < len(g) - 1 and
                                                g[i_sf] < g[i_sf - 1] and
                                                g[i_sf] < g[i_sf + 1]))
        else:
            i = int(np.argmax(g))
            out.update(gamma_us_mj_m2=float(g[i]), us_shift_b=float(s[i]))
        return out


def gsf_curve(potential: LammpsPotential, a0: float, lattice: str, plane: str,
              element: str, workdir: str | Path, *, points: int = 12,
              half_thickness_a: float = 12.0, resources: Resources | None = None
              ) -> GSFCurve:
    """One GSF curve (module docstring) with ``points`` + 1 shifts over a period
    (:func:`stacking_faults` for one plane)."""
    return stacking_faults(potential, a0, lattice, element, workdir, points=points,
                           planes=[plane], half_thickness_a=half_thickness_a,
                           resources=resources)[plane]


def stacking_faults(potential: LammpsPotential, a0: float, lattice: str, element: str,
                    workdir: str | Path, *, points: int = 12,
                    planes: Sequence[str] | None = None, half_thickness_a: float = 12.0,
                    resources: Resources | None = None) -> dict[str, GSFCurve]:
    """GSF curves (module docstring), all in one LAMMPS process (``clear`` between the
    slabs), ``points`` + 1 shifts per period.

    Args:
        potential: the potential; a0: its relaxed lattice constant, Å.
        lattice: ``bcc`` or ``fcc``; element: the species.
        points: intervals over the period (FCC: a multiple of 3, so that s = b_p is a
            point).
        planes: keys of :data:`GSF_PLANES` (default: every plane of the lattice).
        half_thickness_a: crystal on each side of the fault, Å.

    Returns:
        plane key → :class:`GSFCurve`.
    """
    from scalebridge.md.lammps import check_species, write_data

    if lattice == "fcc" and points % 3:
        raise DataError(f"gsf points = {points}: an FCC curve needs a multiple of 3 so "
                        "that the intrinsic fault s = b_p is sampled")
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    planes = list(planes or GSF_PLANES.get(lattice, {}))
    slabs, body = {}, []
    for i, key in enumerate(planes):
        slab = gsf_slab(a0, lattice, key, element, half_thickness_a)
        slabs[key] = slab
        check_species(slab.atoms, potential, where=f"GSF slab {plane_label(key)}")
        write_data(slab.atoms, workdir / f"gsf_{key}.data", potential.type_map)
        body += ["clear", "units metal", "atom_style atomic", "atom_modify map array",
                 "boundary p p s", f"read_data gsf_{key}.data",
                 *potential.pair_commands(workdir),
                 gsf_script((np.flatnonzero(slab.upper) + 1).tolist(),
                            slab.period_a / points, points, tag=str(i))]
    res = run_lammps(workdir, "\n".join(body), potential, None, resources=resources,
                     name=f"gsf {', '.join(plane_label(p) for p in planes)}")
    out = {}
    for i, key in enumerate(planes):
        slab = slabs[key]
        e = np.array([res.value(f"e_{i}_{k}") for k in range(points + 1)])
        gamma = (e - e[0]) / slab.area_a2 * EV_A2_TO_MJ_M2
        out[key] = GSFCurve(lattice, key, np.arange(points + 1) * slab.period_a / points,
                            gamma, slab.unit_a, GSF_PLANES[lattice][key][4], slab.period_a,
                            len(slab.atoms))
    return out


def write_gsf(curves: dict[str, GSFCurve], work: Path,
              dft: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """``gsf_<plane>.csv`` and ``gsf_<plane>.png`` (beside it) per curve; ``dft``: plane
    key → DFT curve (``shift_a``, ``gamma_mj_m2``, optional ``label``) drawn on the same
    axes. Returns the
    ``stacking_faults`` record (per plane :meth:`GSFCurve.summary`)."""
    out: dict[str, Any] = {}
    for key, c in curves.items():
        csv_path = work / f"gsf_{key}.csv"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["shift_a", f"shift_{c.unit_label}", "gamma_mj_m2"])
            for s, g in zip(c.shift_a, c.gamma_mj_m2, strict=True):
                w.writerow([f"{s:.6f}", f"{s / c.unit_a:.6f}", f"{g:.4f}"])
        plot_gsf(c, work / f"gsf_{key}.png", (dft or {}).get(key))
        out[key] = c.summary() | {"csv": csv_path.name, "n_atoms": c.n_atoms}
    return out


def plot_gsf(c: GSFCurve, path: Path, dft: dict[str, Any] | None = None) -> None:
    """γ against s in units of b_p (FCC) or b (BCC); DFT points when given."""
    from scalebridge.md.tables import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.4), dpi=120)
    ax.plot(c.shift_a / c.unit_a, c.gamma_mj_m2, "o-", ms=3, label="model (z-relaxed)")
    if dft is not None:
        ax.plot(np.asarray(dft["shift_a"]) / c.unit_a, dft["gamma_mj_m2"], "s", ms=4,
                mfc="none", label=str(dft.get("label", "DFT")))
    sm = c.summary()
    if c.lattice == "fcc":
        ax.axvline(1.0, color="0.7", lw=0.6)
        title = (f"GSF {plane_label(c.plane)}: γ_SF = {sm['gamma_sf_mj_m2']:.1f}, "
                 f"γ_us = {sm['gamma_us_mj_m2']:.0f} mJ/m²")
    else:
        title = f"GSF {plane_label(c.plane)}: γ_us = {sm['gamma_us_mj_m2']:.0f} mJ/m²"
    ax.axhline(0, color="0.7", lw=0.5)
    ax.set_xlabel(f"shift ({c.unit_label})")
    ax.set_ylabel("γ (mJ/m²)")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- DFT cells
def _gsf_shifts(frames: Sequence[Atoms], where: Sequence[str]) -> tuple[np.ndarray, float]:
    """In-plane shift (Å) of each cell's shifted block against the unshifted cell, and
    the fault area (Å²). The cells must share their cell, atom count and order; the
    vacuum (normal) axis is the longest cell vector, the shifted atoms those whose
    in-plane position moved (fractional displacements taken in [0, 1))."""
    ref = frames[0]
    cell = np.asarray(ref.cell[:], float)
    k = int(np.argmax(np.linalg.norm(cell, axis=1)))
    plane = [i for i in range(3) if i != k]
    area = float(np.linalg.norm(np.cross(cell[plane[0]], cell[plane[1]])))
    shifts = []
    for at, w in zip(frames, where, strict=True):
        if len(at) != len(ref) or not np.allclose(at.cell[:], cell, atol=1e-4):
            raise DataError(f"{w}: a GSF cell must have the cell and atoms of {where[0]}")
        frac = np.linalg.solve(cell.T, (at.positions - ref.positions).T).T
        fin = np.mod(frac[:, plane] + 1e-6, 1.0) - 1e-6
        moved = np.linalg.norm(fin @ cell[plane], axis=1) > 1e-3
        if not moved.any():
            shifts.append(0.0)
            continue
        f = np.median(fin[moved], axis=0)
        if np.abs(fin[moved] - f).max() > 1e-3:
            raise DataError(f"{w}: the shifted atoms do not move as one block")
        shifts.append(float(np.linalg.norm(f @ cell[plane])))
    return np.array(shifts), area


def dft_gsf_curve(frames: Sequence[Atoms], energies: Sequence[float],
                  where: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """γ(s) of a set of DFT GSF cells (one plane; the unshifted cell among them).

    Args:
        frames: the cells (same cell and atom order; one block shifted in-plane).
        energies: (n,) their total energies, eV.
        where: a name per frame for messages.

    Returns:
        ``shift_a`` (n,) sorted, ``gamma_mj_m2`` (n,), ``area_a2``.
    """
    where = list(where or [f"frame {i}" for i in range(len(frames))])
    if len(frames) < 2:
        raise DataError(f"GSF cells {where}: need the unshifted cell and at least one more")
    s, area = _gsf_shifts(frames, where)
    zero = np.flatnonzero(s < 1e-6)
    if zero.size == 0:
        raise DataError(f"GSF cells {where}: none is unshifted (s = 0)")
    e = np.asarray(energies, float)
    e0 = e[zero].mean()
    i = np.argsort(s, kind="stable")
    return {"shift_a": s[i], "gamma_mj_m2": (e[i] - e0) / area * EV_A2_TO_MJ_M2,
            "area_a2": np.array(area)}


def model_gsf_on_frames(potential: LammpsPotential,
                        groups: dict[Any, tuple[Sequence[Atoms], Sequence[str]]],
                        workdir: str | Path, resources: Resources | None = None
                        ) -> dict[Any, dict[str, np.ndarray]]:
    """The potential's γ(s) on the same cells as :func:`dft_gsf_curve` (single points at
    the DFT positions, no relaxation), for several groups of cells in one LAMMPS run.

    Args:
        groups: key → (cells of one GSF group, a name per cell).

    Returns:
        key → the :func:`dft_gsf_curve` record of the model's energies.
    """
    frames = [a for cells, _ in groups.values() for a in cells]
    res = single_points(potential, frames, workdir, resources=resources)
    out, i = {}, 0
    for key, (cells, where) in groups.items():
        out[key] = dft_gsf_curve(cells, [e for e, _ in res[i:i + len(cells)]], where)
        i += len(cells)
    return out
