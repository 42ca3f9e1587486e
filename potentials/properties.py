"""Physical properties of a model through ASE, and the DFT values of the same data.

Model side (:func:`model_properties`), for a cubic crystal (BCC or FCC):

* ``a0_a``: the lattice constant minimising the energy of the conventional cell.
* ``c11_gpa``, ``c12_gpa``, ``c44_gpa``: from stresses at ±``strain`` (default 0.5%)
  normal and shear strains of the relaxed cell (no internal relaxation is needed in the
  conventional BCC/FCC cell: every atom is an inversion centre).
* ``bulk_modulus_gpa`` = (C11 + 2 C12)/3.
* ``vacancy_formation_ev``: E(N-1, relaxed positions) - (N-1)/N E(N) in a 3x3x3 cell.

DFT side: :func:`dft_elastic` is the stress fit of an Elastic group's strained cells
(strains measured against the most common (reference) cell, stresses fitted to a cubic C
plus an isotropic residual stress for |ε| <= ``max_strain``). The DFT values a model is
compared with (:func:`data_dft_reference`, ``compare_properties``' ``dft``) are the data
set's own reference, :func:`scalebridge.potentials.crystal.element_crystal`: a0 as the
dataset stage records it, C_ij from
:func:`scalebridge.potentials.crystal.elastic_reference` (that stress fit checked against
the energies of the same cells, the energy value where they disagree), the values the
properties verdict compares with. The same stress fit of the *model's* stresses on the
cells behind those C_ij is reported as ``model_on_dft_cells``: like for like.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scalebridge.errors import DataError
from scalebridge.potentials.frames import EV_A3_IN_GPA, Frame

log = logging.getLogger("scalebridge.potentials")

ATOMS_PER_CELL = {"bcc": 2, "fcc": 4}


def _crystal(symbol: str, lattice: str, a: float, reps: int = 1):
    from ase.build import bulk

    return bulk(symbol, lattice, a=a, cubic=True).repeat(reps)


def lattice_constant(calc_factory: Callable[[], Any], symbol: str, lattice: str = "bcc",
                     a_guess: float = 3.17) -> float:
    """Energy-minimising cubic lattice constant, Å (bounded scalar minimisation)."""
    from scipy.optimize import minimize_scalar

    atoms = _crystal(symbol, lattice, a_guess)
    atoms.calc = calc_factory()
    cell0 = atoms.cell.array.copy() / a_guess

    def energy(a: float) -> float:
        atoms.set_cell(cell0 * a, scale_atoms=True)
        return atoms.get_potential_energy()

    r = minimize_scalar(energy, bounds=(0.85 * a_guess, 1.15 * a_guess), method="bounded",
                        options={"xatol": 1e-5})
    return float(r.x)


def elastic_constants(calc_factory: Callable[[], Any], symbol: str, a0: float,
                      lattice: str = "bcc", strain: float = 0.005) -> dict[str, float]:
    """Cubic C11, C12, C44 (GPa) by central differences of the stress at ``a0``."""
    atoms = _crystal(symbol, lattice, a0)
    atoms.calc = calc_factory()
    cell0 = atoms.cell.array.copy()
    pos0 = atoms.positions.copy()

    def stress(eps: np.ndarray) -> np.ndarray:
        f = np.eye(3) + eps
        atoms.set_cell(cell0 @ f.T, scale_atoms=False)
        atoms.positions = pos0 @ f.T
        return atoms.get_stress(voigt=False) * EV_A3_IN_GPA  # tension positive

    d = np.zeros((3, 3))
    d[0, 0] = strain
    ds = (stress(d) - stress(-d)) / (2 * strain)
    c11, c12 = ds[0, 0], 0.5 * (ds[1, 1] + ds[2, 2])
    g = np.zeros((3, 3))
    g[1, 2] = g[2, 1] = strain / 2  # engineering shear strain γ_yz = strain
    ds = (stress(g) - stress(-g)) / strain / 2
    c44 = ds[1, 2]
    return {"c11_gpa": float(c11), "c12_gpa": float(c12), "c44_gpa": float(c44),
            "bulk_modulus_gpa": float((c11 + 2 * c12) / 3)}


def vacancy_formation(calc_factory: Callable[[], Any], symbol: str, a0: float,
                      lattice: str = "bcc", reps: int = 3, fmax: float = 0.01,
                      max_steps: int = 200) -> float:
    """Vacancy formation energy, eV, at constant volume with relaxed positions."""
    from ase.optimize import FIRE

    bulk = _crystal(symbol, lattice, a0, reps)
    bulk.calc = calc_factory()
    e_bulk = bulk.get_potential_energy()
    n = len(bulk)
    vac = bulk.copy()
    del vac[0]
    vac.calc = calc_factory()
    opt = FIRE(vac, logfile=None)
    opt.run(fmax=fmax, steps=max_steps)
    return float(vac.get_potential_energy() - (n - 1) / n * e_bulk)


def model_properties(model: Path, type_map: Sequence[str], symbol: str | None = None,
                     lattice: str = "bcc", a_guess: float = 3.17) -> dict[str, float]:
    """a0, C11/C12/C44, B and vacancy formation energy of ``model`` (see module doc)."""
    from scalebridge.potentials.model import DeepMDCalculator

    symbol = symbol or type_map[0]

    def factory():
        return DeepMDCalculator(model, list(type_map))

    a0 = lattice_constant(factory, symbol, lattice, a_guess)
    out = {"a0_a": a0}
    out.update(elastic_constants(factory, symbol, a0, lattice))
    out["vacancy_formation_ev"] = vacancy_formation(factory, symbol, a0, lattice)
    if lattice == "bcc":
        out["burgers_a"] = a0 * np.sqrt(3) / 2
    return out


# --------------------------------------------------------------------------- DFT side
def reference_cell(frames: Sequence[Frame]) -> np.ndarray:
    """The unstrained cell of an Elastic group: diagonal, with the most common diagonal
    entry (each strain mode leaves two axes at the reference length)."""
    vals = Counter(round(float(x), 4) for fr in frames for x in np.diag(fr.cell))
    if not vals:
        raise DataError("no Elastic frames to derive DFT elastic constants from")
    a = vals.most_common(1)[0][0]
    return np.eye(3) * a


def fit_cubic(strains: np.ndarray, stresses: np.ndarray) -> dict[str, float]:
    """Least-squares cubic C11, C12, C44 (and residual pressure) from strains (n, 3, 3)
    and Cauchy stresses (n, 3, 3) in GPa, tension positive."""
    rows, rhs = [], []
    for e, s in zip(strains, stresses, strict=True):
        tr = np.trace(e)
        for i in range(3):
            rows.append([e[i, i], tr - e[i, i], 0.0, 1.0])
            rhs.append(s[i, i])
        for i, j in ((1, 2), (0, 2), (0, 1)):
            rows.append([0.0, 0.0, 2 * e[i, j], 0.0])
            rhs.append(s[i, j])
    x, *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    return {"c11_gpa": float(x[0]), "c12_gpa": float(x[1]), "c44_gpa": float(x[2]),
            "bulk_modulus_gpa": float((x[0] + 2 * x[1]) / 3),
            "residual_stress_gpa": float(x[3])}


def elastic_frames(frames: Sequence[Frame], group: str = "Elastic",
                   max_strain: float = 0.021) -> tuple[list[Frame], np.ndarray, np.ndarray]:
    """(frames used, strains (n,3,3), reference cell) of the small-strain Elastic cells
    with the most common atom count."""
    el = [f for f in frames if f.group == group and f.virial is not None]
    if not el:
        return [], np.zeros((0, 3, 3)), np.eye(3)
    n = Counter(f.natoms for f in el).most_common(1)[0][0]
    el = [f for f in el if f.natoms == n]
    ref = reference_cell(el)
    used, strains = [], []
    for f in el:
        g = np.linalg.solve(ref, f.cell)  # cell = ref @ F^T
        eps = 0.5 * (g + g.T) - np.eye(3)
        if np.abs(eps).max() <= max_strain:
            used.append(f)
            strains.append(eps)
    return used, np.array(strains).reshape(-1, 3, 3), ref


def dft_elastic(frames: Sequence[Frame], lattice: str = "bcc", group: str = "Elastic",
                max_strain: float = 0.021) -> dict[str, Any]:
    """DFT a0 and cubic elastic constants from the Elastic group of ``frames``."""
    used, strains, ref = elastic_frames(frames, group, max_strain)
    if len(used) < 4:  # few small-strain cells (a subset): accept up to 3x larger strains
        max_strain *= 3
        used, strains, ref = elastic_frames(frames, group, max_strain)
    if len(used) < 3:
        return {}
    out: dict[str, Any] = fit_cubic(strains, np.array([f.stress_gpa() for f in used]))
    natoms = used[0].natoms
    out["a0_a"] = float((np.linalg.det(ref) / natoms * ATOMS_PER_CELL[lattice]) ** (1 / 3))
    out["frames"] = len(used)
    out["max_strain"] = max_strain
    return out


def model_on_cells(model: Path, type_map: Sequence[str], frames: Sequence[Frame],
                   lattice: str = "bcc", max_strain: float = 0.021,
                   group: str = "Elastic") -> dict[str, Any]:
    """The :func:`dft_elastic` fit applied to the model's stresses on the same cells of
    ``group``."""
    from scalebridge.potentials.model import DeepMDCalculator

    used, strains, _ = elastic_frames(frames, group, max_strain)
    if len(used) < 4:
        used, strains, _ = elastic_frames(frames, group, 3 * max_strain)
    if len(used) < 3:
        return {}
    calc = DeepMDCalculator(model, list(type_map))
    stresses = []
    for f in used:
        atoms = f.to_atoms()
        atoms.calc = calc
        stresses.append(atoms.get_stress(voigt=False) * EV_A3_IN_GPA)
    return fit_cubic(strains, np.array(stresses))


def data_dft_reference(frames: Sequence[Frame], element: str
                       ) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """The DFT values ``element``'s cells in ``frames`` give, as the data set records them.

    Returns:
        (dft, elastic, structure): ``dft`` is the ``dft_reference`` of
        :func:`scalebridge.potentials.crystal.element_crystal` (``a0_a`` Å, ``c11_gpa``,
        ``c12_gpa``, ``c44_gpa`` GPa, ``source``, ``cij_stress_energy``, ...) with, where
        it has C_ij, ``bulk_modulus_gpa`` = (C11 + 2 C12)/3 of them and, from the stress
        fit behind them, ``residual_stress_gpa`` (GPa), ``frames``, ``max_strain`` and
        ``elastic_group``; {} where the data give no reference. ``elastic``: the
        :func:`scalebridge.potentials.crystal.elastic_reference` record ({} where none);
        ``structure``: the data's lattice of ``element`` (None where none is recognised).
    """
    from scalebridge.potentials.crystal import element_crystal

    rec = element_crystal(frames, element, with_fits=True)
    dft = dict(rec["dft_reference"])
    elastic = rec.get("elastic") or {}
    if elastic:
        fit = elastic["stress_fit"]
        dft["bulk_modulus_gpa"] = float(f"{elastic['bulk_modulus_gpa']:.6g}")
        dft.update(residual_stress_gpa=fit["residual_stress_gpa"], frames=fit["frames"],
                   max_strain=fit["max_strain"], elastic_group=elastic["group"])
    return dft, elastic, rec["structure"]


def compare_properties(model: Path, type_map: Sequence[str], ds,
                       lattice: str | None = None) -> dict[str, Any]:
    """``{"model", "dft", "model_on_dft_cells", "relative_error"}`` for a one-element
    data set: ``dft`` the data's own DFT reference (:func:`data_dft_reference`, the values
    the dataset stage records; {} where the data give none), ``lattice`` None: the data's
    (bcc where it is neither bcc nor fcc)."""
    if len(type_map) != 1:
        log.info("properties are computed for one-element models only: skipped")
        return {}
    frames = [f for split in ("train", "validation", "test") for f in ds.frames(split)]
    dft, elastic, structure = data_dft_reference(frames, type_map[0])
    lattice = lattice or (structure if structure in ATOMS_PER_CELL else "bcc")
    a_guess = dft.get("a0_a") or 3.17
    model_p = model_properties(model, type_map, type_map[0], lattice, a_guess)
    on_cells = {}
    if elastic:  # the model's stresses on the cells the DFT stress fit used
        group = elastic["group"]
        cells = [f for f in frames if f.group == group and set(f.symbols) == {type_map[0]}
                 and np.isfinite(f.energy)]            # elastic_reference's selection
        on_cells = model_on_cells(model, type_map, cells, lattice, group=group,
                                  max_strain=elastic["stress_fit"]["max_strain"])
    out: dict[str, Any] = {"model": model_p, "dft": dft, "model_on_dft_cells": on_cells,
                           "relative_error": {}}
    for k in ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa", "bulk_modulus_gpa"):
        if dft.get(k):
            out["relative_error"][k] = (model_p[k] - dft[k]) / dft[k]
    return out
