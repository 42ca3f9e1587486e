"""The in-memory DFT frame every reader produces and every writer consumes.

Units and conventions (DeePMD's, so that conversion is a copy):

* positions, cell: Å; cell rows are the lattice vectors a, b, c.
* energy: eV per cell; forces: eV/Å.
* virial: eV, the 3x3 tensor ``W = -V σ`` where σ is the Cauchy stress with tension
  positive, i.e. compression positive, as DeePMD's ``virial.npy`` stores it.
  ASE's stress is ``σ = -W / V``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: 1 eV/Å³ in kbar (VASP's stress unit) and bar (FitSNAP's).
EV_A3_IN_KBAR = 1602.1766208
EV_A3_IN_BAR = EV_A3_IN_KBAR * 1e3
EV_A3_IN_GPA = EV_A3_IN_KBAR / 10.0


@dataclass
class Frame:
    """One DFT configuration with its labels.

    Attributes:
        symbols: chemical symbol per atom, length n.
        positions: (n, 3) Cartesian coordinates, Å.
        cell: (3, 3) lattice vectors as rows, Å.
        energy: total energy of the cell, eV (NaN when missing).
        forces: (n, 3) eV/Å, or None when the source has none.
        virial: (3, 3) eV, compression positive (``-V σ``), or None.
        group: configuration family ("Elastic", "AIMD-NVT", ...; "" when unknown).
        source: the file it came from.
        index: frame number inside ``source`` (0-based).
        converged: False when the electronic loop hit NELM; None when unknown.
    """

    symbols: list[str]
    positions: np.ndarray
    cell: np.ndarray
    energy: float
    forces: np.ndarray | None
    virial: np.ndarray | None
    group: str = ""
    source: str = ""
    index: int = 0
    converged: bool | None = None
    meta: dict = field(default_factory=dict)

    @property
    def natoms(self) -> int:
        return len(self.symbols)

    @property
    def volume(self) -> float:
        """Cell volume, Å³."""
        return float(abs(np.linalg.det(self.cell)))

    @property
    def where(self) -> str:
        """``file frame i`` for error messages."""
        return f"{self.source} frame {self.index}"

    def stress_gpa(self) -> np.ndarray | None:
        """(3, 3) Cauchy stress, GPa, tension positive (ASE's sign), or None."""
        if self.virial is None:
            return None
        return -self.virial / self.volume * EV_A3_IN_GPA

    def to_atoms(self):
        """An ``ase.Atoms`` (periodic) with a single-point calculator holding the labels."""
        from ase import Atoms
        from ase.calculators.singlepoint import SinglePointCalculator

        atoms = Atoms(self.symbols, positions=self.positions, cell=self.cell, pbc=True)
        res: dict = {"energy": self.energy}
        if self.forces is not None:
            res["forces"] = self.forces
        if self.virial is not None:
            from ase.stress import full_3x3_to_voigt_6_stress

            res["stress"] = full_3x3_to_voigt_6_stress(-self.virial / self.volume)
        atoms.calc = SinglePointCalculator(atoms, **res)
        atoms.info["group"] = self.group
        return atoms


def kbar_voigt_to_virial(stress6: np.ndarray, order: tuple[str, ...], volume: float
                         ) -> np.ndarray:
    """VASP-sign stress (kbar, compression positive) in the given Voigt ``order`` ->
    DeePMD virial (3, 3) eV."""
    idx = {"x": 0, "y": 1, "z": 2}
    s = np.zeros((3, 3))
    for value, comp in zip(stress6, order, strict=True):
        i, j = idx[comp[0]], idx[comp[1]]
        s[i, j] = s[j, i] = value
    return s / EV_A3_IN_KBAR * volume
