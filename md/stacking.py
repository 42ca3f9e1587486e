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
import re
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
        raise DataError(f"gsf_points = {points}: an FCC curve needs a multiple of 3 so "
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
              dft: dict[str, dict[str, Any]] | None = None,
              comparison: dict[str, dict[str, dict[str, Any]]] | None = None
              ) -> dict[str, Any]:
    """``gsf_<plane>.csv`` and ``gsf_<plane>.png`` (beside it) per curve; ``dft``: plane
    key → DFT curve (``shift_a``, ``gamma_mj_m2``, optional ``label``) drawn on the same
    axes; ``comparison``: :func:`compare_gsf_with_dft`'s record, written to
    ``gsf_<plane>_dft.csv`` (set, shift, DFT γ, the model's γ on the same cells), drawn
    (the relaxed cells where there are some) and summarised. Returns the
    ``stacking_faults`` record (per plane :meth:`GSFCurve.summary`)."""
    out: dict[str, Any] = {}
    dft = dict(dft or {})
    for key, c in curves.items():
        csv_path = work / f"gsf_{key}.csv"
        with open(csv_path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["shift_a", f"shift_{c.unit_label}", "gamma_mj_m2"])
            for s, g in zip(c.shift_a, c.gamma_mj_m2, strict=True):
                w.writerow([f"{s:.6f}", f"{s / c.unit_a:.6f}", f"{g:.4f}"])
        rec = c.summary() | {"csv": csv_path.name, "n_atoms": c.n_atoms}
        cmp = (comparison or {}).get(key)
        if cmp:
            dft_csv = work / f"gsf_{key}_dft.csv"
            with open(dft_csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["set", "group", "shift_a", f"shift_{c.unit_label}",
                            "dft_gamma_mj_m2", "model_gamma_mj_m2"])
                for name, r in cmp.items():
                    for s, gd, gm in zip(r["shift_a"], r["dft_gamma_mj_m2"],
                                         r["model_gamma_mj_m2"], strict=True):
                        w.writerow([name, r["group"], f"{s:.6f}", f"{s / c.unit_a:.6f}",
                                    f"{gd:.4f}", f"{gm:.4f}"])
            rec["dft"] = {name: {k: v for k, v in r.items() if not isinstance(v, np.ndarray)}
                          for name, r in cmp.items()} | {"csv": dft_csv.name}
            name = "relaxed" if "relaxed" in cmp else next(iter(cmp))
            dft.setdefault(key, {"shift_a": cmp[name]["shift_a"],
                                 "gamma_mj_m2": cmp[name]["dft_gamma_mj_m2"],
                                 "label": f"DFT ({cmp[name]['group']}, {name})"})
        plot_gsf(c, work / f"gsf_{key}.png", dft.get(key))
        out[key] = rec
    return out


def compare_gsf_with_dft(potential: LammpsPotential, curves: dict[str, GSFCurve],
                         cells: dict[str, dict[str, dict[str, Any]]], workdir: str | Path,
                         resources: Resources | None = None
                         ) -> dict[str, dict[str, dict[str, Any]]]:
    """The potential against a data set's GSF cells (:func:`dft_gsf_sets`) for the planes
    it computed: per plane and set, the DFT γ(s), the potential's γ on the very same
    cells (one LAMMPS run), their maxima, the mean absolute difference (mJ/m²) and the
    z-relaxed protocol's γ_us beside them."""
    groups = {(key, name): (c["atoms"], c["where"]) for key, sets in cells.items()
              if key in curves for name, c in sets.items()}
    if not groups:
        return {}
    refs = {k: dft_gsf_curve(cells[k[0]][k[1]]["atoms"], cells[k[0]][k[1]]["energies"],
                             cells[k[0]][k[1]]["where"])["ref"] for k in groups}
    model = model_gsf_on_frames(potential, groups, workdir, resources, refs)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (key, name), (atoms, where) in groups.items():
        c = cells[key][name]
        d = dft_gsf_curve(atoms, c["energies"], where, refs[(key, name)])
        gm = model[(key, name)]["gamma_mj_m2"]
        out.setdefault(key, {})[name] = {
            "group": c["group"], "points": len(atoms), "shift_a": d["shift_a"],
            "dft_gamma_mj_m2": d["gamma_mj_m2"], "model_gamma_mj_m2": gm,
            "dft_gamma_us_mj_m2": float(d["gamma_mj_m2"].max()),
            "model_on_cells_gamma_us_mj_m2": float(gm.max()),
            "protocol_gamma_us_mj_m2": float(curves[key].gamma_mj_m2.max()),
            "mae_mj_m2": float(np.abs(gm - d["gamma_mj_m2"]).mean())}
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
def _plane_axes(cell: np.ndarray) -> tuple[int, list[int]]:
    """(normal axis: the longest cell vector, i.e. the vacuum; the two in-plane axes)."""
    k = int(np.argmax(np.linalg.norm(cell, axis=1)))
    return k, [i for i in range(3) if i != k]


def _gsf_shifts(frames: Sequence[Atoms], where: Sequence[str], ref: int = 0
                ) -> tuple[np.ndarray, float]:
    """In-plane shift (Å) of each cell's shifted block against cell ``ref`` (unshifted),
    and the fault area (Å²). The cells must share their cell, atom count and order; the
    vacuum (normal) axis is the longest cell vector, the shifted atoms those whose
    in-plane position moved (fractional displacements taken in [0, 1))."""
    base = frames[ref]
    cell = np.asarray(base.cell[:], float)
    _, plane = _plane_axes(cell)
    area = float(np.linalg.norm(np.cross(cell[plane[0]], cell[plane[1]])))
    shifts = []
    for at, w in zip(frames, where, strict=True):
        if len(at) != len(base) or not np.allclose(at.cell[:], cell, atol=1e-4):
            raise DataError(f"{w}: a GSF cell must have the cell and atoms of {where[ref]}")
        frac = np.linalg.solve(cell.T, (at.positions - base.positions).T).T
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


def _unshifted(frames: Sequence[Atoms], e: np.ndarray, where: Sequence[str]) -> int:
    """Index of the unshifted cell: of the lowest-energy cells (within 0.1 meV/atom: the
    unshifted one ties with one shifted by a whole lattice vector), the one the other
    cells' shifts are smallest from."""
    near = np.flatnonzero(e - e.min() < 1e-4 * max(len(frames[0]), 1))
    return int(min(near, key=lambda r: _gsf_shifts(frames, where, int(r))[0].max()))


def dft_gsf_curve(frames: Sequence[Atoms], energies: Sequence[float],
                  where: Sequence[str] | None = None, ref: int | None = None
                  ) -> dict[str, Any]:
    """γ(s) of a set of DFT GSF cells (one plane; the unshifted cell among them).

    Args:
        frames: the cells (same cell and atom order; one block shifted in-plane).
        energies: (n,) their total energies, eV.
        where: a name per frame for messages.
        ref: index of the unshifted cell; None: of the lowest-energy cells (the
            unshifted one and the one shifted by a whole lattice vector tie), the one
            the other shifts are smallest from.

    Returns:
        ``shift_a`` (n,) sorted, ``gamma_mj_m2`` (n,), ``area_a2``, ``ref`` (the
        reference index: pass it to put other energies of the same cells on the same
        shifts).
    """
    where = list(where or [f"frame {i}" for i in range(len(frames))])
    if len(frames) < 2:
        raise DataError(f"GSF cells {where}: need the unshifted cell and at least one more")
    e = np.asarray(energies, float)
    if ref is None:
        ref = _unshifted(frames, e, where)
    s, area = _gsf_shifts(frames, where, ref)
    zero = np.flatnonzero(s < 1e-6)
    e0 = e[zero].mean()
    i = np.argsort(s, kind="stable")
    return {"shift_a": s[i], "gamma_mj_m2": (e[i] - e0) / area * EV_A2_TO_MJ_M2,
            "area_a2": np.array(area), "ref": ref}


#: A data-set group holding GSF cells: its name contains ``gsf`` and a plane, e.g.
#: ``GSF_110`` (FitSNAP), ``gsf-112``.
GSF_GROUP = re.compile(r"gsf[_\-\s]*\{?(\d{3})", re.IGNORECASE)


def dft_gsf_sets(frames: Sequence[Any], lattice: str) -> dict[str, dict[str, dict[str, Any]]]:
    """The GSF cells of a data set, by plane key of ``lattice`` (:data:`GSF_PLANES`).

    Args:
        frames: :class:`~scalebridge.potentials.frames.Frame` objects (every split);
            groups named like :data:`GSF_GROUP` are used, the plane's digits matched to
            the lattice's plane keys (``GSF_110`` → ``110_111`` in BCC).

    Returns:
        plane key → set name → ``atoms``, ``energies``, ``where``, ``group``; the sets are
        ``as_shifted`` (the cells sharing the unshifted cell's normal coordinates: rigid
        shifts) and ``relaxed`` (the others, with the lowest-energy unshifted cell), each
        kept with at least 3 cells.
    """
    by_group: dict[str, list[Any]] = {}
    for f in frames:
        m = GSF_GROUP.search(f.group or "")
        if m and np.isfinite(f.energy):
            by_group.setdefault(f.group, []).append(f)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for group, frs in sorted(by_group.items()):
        digits = GSF_GROUP.search(group).group(1)  # type: ignore[union-attr]
        key = next((k for k in GSF_PLANES.get(lattice, {}) if k.split("_")[0] == digits),
                   None)
        if key is None:
            continue
        sig = (frs[0].natoms, np.round(frs[0].cell, 3).tobytes())
        frs = [f for f in frs if (f.natoms, np.round(f.cell, 3).tobytes()) == sig]
        atoms = [Atoms(f.symbols, positions=f.positions, cell=f.cell, pbc=True) for f in frs]
        where = [f.where for f in frs]
        e = np.array([f.energy for f in frs])
        try:
            s, _ = _gsf_shifts(atoms, where, _unshifted(atoms, e, where))
        except DataError as err:
            log.warning("GSF group %s not used: %s", group, err)
            continue
        k, _ = _plane_axes(np.asarray(frs[0].cell))
        normal = [np.asarray(a.positions)[:, k] for a in atoms]
        zero = np.flatnonzero(s < 1e-6)
        fams = [[j for j in range(len(atoms)) if np.allclose(normal[j], normal[r], atol=1e-4)]
                for r in zero]
        shifted = max(fams, key=len)
        rest = [j for j in range(len(atoms)) if j not in shifted]
        if not any(s[j] < 1e-6 for j in rest):
            rest.append(int(zero[np.argmin(e[zero])]))
        sets = {}
        for name, idx in (("as_shifted", shifted), ("relaxed", rest)):
            if len(idx) >= 3 and len(set(np.round(s[idx], 3))) == len(idx):
                sets[name] = {"atoms": [atoms[j] for j in idx],
                              "energies": [float(e[j]) for j in idx],
                              "where": [where[j] for j in idx], "group": group}
        if sets:
            out.setdefault(key, {}).update(sets)
    return out


def dataset_gsf_cells(dataset: Any, lattice: str | None
                      ) -> dict[str, dict[str, dict[str, Any]]] | None:
    """:func:`dft_gsf_sets` of a ``DFTDataset`` (artifact or path): its systems whose
    group is named like :data:`GSF_GROUP`, every split; None when it has none."""
    if lattice is None:
        return None
    from scalebridge.potentials.dataset import load_dataset
    from scalebridge.potentials.npy import read_system

    info = load_dataset(dataset)
    frames = []
    for split, sp in info.info.get("splits", {}).items():
        for name, meta in sp.get("systems", {}).items():
            if GSF_GROUP.search(str(meta.get("group", ""))):
                frs = read_system(info.path / "systems" / split / name, group=meta["group"])
                for fr, (src, idx) in zip(frs, meta["sources"], strict=True):
                    fr.source, fr.index = src, idx
                frames.extend(frs)
    return dft_gsf_sets(frames, lattice) or None


def gsf_cells_digest(cells: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Content hash of :func:`dft_gsf_sets` output (positions, cells, energies), for
    fingerprints."""
    import hashlib

    h = hashlib.sha256()
    for key in sorted(cells):
        for name in sorted(cells[key]):
            c = cells[key][name]
            h.update(f"{key}/{name}/{c['group']}".encode())
            for a, e in zip(c["atoms"], c["energies"], strict=True):
                h.update(np.round(a.positions, 6).tobytes())
                h.update(np.round(a.cell[:], 6).tobytes())
                h.update(f"{e:.8f}".encode())
    return h.hexdigest()


def model_gsf_on_frames(potential: LammpsPotential,
                        groups: dict[Any, tuple[Sequence[Atoms], Sequence[str]]],
                        workdir: str | Path, resources: Resources | None = None,
                        refs: dict[Any, int] | None = None
                        ) -> dict[Any, dict[str, Any]]:
    """The potential's γ(s) on the same cells as :func:`dft_gsf_curve` (single points at
    the DFT positions, no relaxation), for several groups of cells in one LAMMPS run.

    Args:
        groups: key → (cells of one GSF group, a name per cell).
        refs: key → index of the unshifted cell (the DFT curve's ``ref``), so that both
            curves put each cell at the same shift; None: found from the model energies.

    Returns:
        key → the :func:`dft_gsf_curve` record of the model's energies.
    """
    frames = [a for cells, _ in groups.values() for a in cells]
    res = single_points(potential, frames, workdir, resources=resources)
    out, i = {}, 0
    for key, (cells, where) in groups.items():
        out[key] = dft_gsf_curve(cells, [e for e, _ in res[i:i + len(cells)]], where,
                                 (refs or {}).get(key))
        i += len(cells)
    return out
