"""Property calculators checked with an analytic potential (ASE's EMT, FCC Cu): two
independent routes to each number must agree."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.units import GPa
from scalebridge.potentials.frames import Frame
from scalebridge.potentials.properties import (
    _crystal,
    dft_elastic,
    elastic_constants,
    lattice_constant,
    vacancy_formation,
)


@pytest.fixture(scope="module")
def cu():
    a0 = lattice_constant(EMT, "Cu", "fcc", a_guess=3.6)
    return a0, elastic_constants(EMT, "Cu", a0, "fcc")


def test_lattice_constant_and_bulk_modulus_match_eos(cu):
    a0, c = cu
    vols, energies = [], []
    for x in np.linspace(0.98, 1.02, 9):
        atoms = _crystal("Cu", "fcc", a0 * x)
        atoms.calc = EMT()
        vols.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    v0, _, b = EquationOfState(vols, energies).fit()
    assert a0 == pytest.approx(v0 ** (1 / 3), abs=2e-4)
    assert c["bulk_modulus_gpa"] == pytest.approx(b / GPa, rel=0.02)
    assert c["c11_gpa"] > c["c12_gpa"] > 0 and c["c44_gpa"] > 0


def test_strained_cell_fit_matches_finite_differences(cu):
    """The DFT-side route (stresses of strained cells -> cubic fit) reproduces the
    direct finite-difference constants when fed the same calculator's stresses."""
    a0, c = cu
    ref = _crystal("Cu", "fcc", a0, reps=2)
    frames = []
    for mode in range(6):
        for s in (-0.01, -0.005, 0.005, 0.01):
            eps = np.zeros((3, 3))
            if mode < 3:
                eps[mode, mode] = s
            else:
                i, j = [(1, 2), (0, 2), (0, 1)][mode - 3]
                eps[i, j] = eps[j, i] = s / 2
            atoms = ref.copy()
            f = np.eye(3) + eps
            atoms.set_cell(ref.cell.array @ f.T, scale_atoms=True)
            atoms.calc = EMT()
            sigma = atoms.get_stress(voigt=False)  # eV/Å³, tension positive
            frames.append(Frame(symbols=atoms.get_chemical_symbols(),
                                positions=atoms.positions, cell=atoms.cell.array,
                                energy=atoms.get_potential_energy(),
                                forces=atoms.get_forces(),
                                virial=-sigma * atoms.get_volume(), group="Elastic"))
    fit = dft_elastic(frames, lattice="fcc")
    assert fit["a0_a"] == pytest.approx(a0, abs=1e-4)
    for k in ("c11_gpa", "c12_gpa", "c44_gpa"):
        assert fit[k] == pytest.approx(c[k], rel=0.02), k


def test_vacancy_relaxation_lowers_the_formation_energy(cu):
    a0, _ = cu
    relaxed = vacancy_formation(EMT, "Cu", a0, "fcc", reps=3)
    unrelaxed = vacancy_formation(EMT, "Cu", a0, "fcc", reps=3, max_steps=0)
    assert 0.5 < relaxed < unrelaxed < 2.0
