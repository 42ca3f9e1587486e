"""The shared tiny_potential fixture: a real artifact honouring docs/CONTRACTS.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scalebridge.potentials import load_potential


def test_tiny_potential_contract(tiny_potential):
    assert tiny_potential.kind == "Potential"
    pj = json.loads((tiny_potential.path / "potential.json").read_text())
    assert pj["type_map"] == ["Mo"]
    assert pj["models"] == ["models/model_0.pth", "models/model_1.pth"]
    assert pj["descriptor"] == "se_e2_a" and pj["rcut_a"] == 5.0
    info = load_potential(tiny_potential.path)
    assert all(m.is_file() for m in info.models)
    assert (tiny_potential.path / "lcurve.png").is_file()
    assert (tiny_potential.path / "lcurve.csv").is_file()


@pytest.mark.parametrize("fixture, h, atol, rtol, fmin", [
    ("tiny_potential", 1e-3, 1e-4, 1e-3, 1e-3),
    # float32 networks: a larger step and a looser bound, to float32's resolution
    ("tiny_potential_f32", 1e-2, 2e-3, 1e-2, 1e-2)])
def test_forces_are_minus_energy_gradient(request, fixture, h, atol, rtol, fmin):
    """Forces of a trained model equal -dE/dx by central finite differences."""
    from ase.build import bulk

    info = load_potential(request.getfixturevalue(fixture))
    atoms = bulk("Mo", "bcc", a=3.17, cubic=True).repeat(2)
    atoms.rattle(0.08, seed=3)
    atoms.calc = info.calculator()
    f = atoms.get_forces()
    assert np.abs(f).max() > fmin  # a rattled crystal has forces: the test can fail
    for i, k in [(0, 0), (5, 1), (11, 2)]:
        p = atoms.positions.copy()
        p[i, k] += h
        atoms.positions = p
        ep = atoms.get_potential_energy()
        p[i, k] -= 2 * h
        atoms.positions = p
        em = atoms.get_potential_energy()
        p[i, k] += h
        atoms.positions = p
        assert abs(-(ep - em) / (2 * h) - f[i, k]) < atol + rtol * abs(f[i, k])


def test_stress_is_strain_derivative(tiny_potential):
    """ASE stress = (1/V) dE/dε, by finite differences of a homogeneous strain."""
    from ase.build import bulk

    info = load_potential(tiny_potential)
    atoms = bulk("Mo", "bcc", a=3.10, cubic=True).repeat(2)
    atoms.rattle(0.03, seed=1)
    atoms.calc = info.calculator()
    s = atoms.get_stress(voigt=False)
    cell0, pos0, v = atoms.cell.array.copy(), atoms.positions.copy(), atoms.get_volume()
    h = 1e-5
    for i, j in [(0, 0), (1, 2)]:
        es = []
        for sign in (1, -1):
            eps = np.eye(3)
            eps[i, j] += sign * h / (2 if i != j else 1)
            eps[j, i] += sign * h / 2 if i != j else 0
            atoms.set_cell(cell0 @ eps, scale_atoms=False)
            atoms.positions = pos0 @ eps
            es.append(atoms.get_potential_energy())
        atoms.set_cell(cell0, scale_atoms=False)
        atoms.positions = pos0
        fd = (es[0] - es[1]) / (2 * h) / v
        assert abs(fd - s[i, j]) < 1e-5 + 1e-3 * abs(s[i, j]), (i, j, fd, s[i, j])


def test_ensemble_disagrees_off_data(tiny_potential):
    """Model deviation is larger far from the training data than near it."""
    from ase.build import bulk

    info = load_potential(tiny_potential)
    near = bulk("Mo", "bcc", a=3.17, cubic=True).repeat(2)
    near.rattle(0.02, seed=2)
    far = near.copy()
    far.set_cell(far.cell * 0.8, scale_atoms=True)
    far.rattle(0.2, seed=2)
    assert info.model_deviation(far) > info.model_deviation(near)
