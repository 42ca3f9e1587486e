"""Properties protocol: the published SNAP model against the DFT values of its own data,
and the Properties artifact per docs/CONTRACTS.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scalebridge.md.lammps import SNAPPotential
from scalebridge.md.properties import (
    PropertiesMaker,
    birch_murnaghan,
    dft_properties,
    isotropic_moduli,
)

#: The published mlearn SNAP / qSNAP Mo models, shipped in tests/data (BSD-3-Clause).
PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"
CONTRACT_KEYS = ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa", "bulk_modulus_gpa",
                 "shear_modulus_gpa", "poisson_ratio", "burgers_a", "vacancy_formation_ev",
                 "nve_drift_ev_per_atom_ps", "dft")


def test_isotropic_moduli_of_an_isotropic_crystal():
    # C44 = (C11 - C12)/2 is isotropic: Voigt = Reuss = μ, ν from λ, μ
    lam, mu = 100.0, 80.0
    m = isotropic_moduli(lam + 2 * mu, lam, mu)
    assert m["shear_modulus_gpa"] == pytest.approx(mu)
    assert m["bulk_modulus_gpa"] == pytest.approx(lam + 2 * mu / 3)
    assert m["poisson_ratio"] == pytest.approx(lam / (2 * (lam + mu)))


def test_birch_murnaghan_recovers_its_parameters():
    v0, b0 = 16.0, 260.0 / 160.21766208
    v = np.linspace(15.2, 16.8, 9)
    eta = (v0 / v) ** (2 / 3)
    e = -10.9 + 9 * v0 * b0 / 16 * ((eta - 1) ** 3 * 4.3 + (eta - 1) ** 2 * (6 - 4 * eta))
    fit = birch_murnaghan(v, e)
    assert fit["v0_a3"] == pytest.approx(v0, rel=1e-6)
    assert fit["b0_gpa"] == pytest.approx(260.0, rel=1e-4)


def test_dft_reference_mo():
    d = dft_properties("Mo")
    assert d["a0_a"] == 3.1676 and d["bulk_modulus_gpa"] == pytest.approx(269.0)
    assert d["burgers_a"] == pytest.approx(3.1676 * 3 ** 0.5 / 2)
    assert dft_properties("Xx") == {}


@pytest.mark.slow
def test_snap_mo_properties_match_dft(tmp_path):
    pot = SNAPPotential.from_dir(PEERS / "snap")
    maker = PropertiesMaker(supercell=3, npt_steps=200, nve_steps=300, temperature_k=300)
    art = maker.make(pot, tmp_path / "props")
    p = json.loads((art.path / "properties.json").read_text())
    for k in CONTRACT_KEYS:
        assert k in p, k
    dft = p["dft"]
    assert p["a0_a"] == pytest.approx(dft["a0_a"], rel=0.01)
    for k in ("c11_gpa", "c12_gpa", "c44_gpa", "bulk_modulus_gpa", "shear_modulus_gpa"):
        assert p[k] == pytest.approx(dft[k], rel=0.15), k
    # the EOS and the elastic constants are two routes to the same bulk modulus
    assert p["bulk_modulus_eos_gpa"] == pytest.approx(p["bulk_modulus_gpa"], rel=0.05)
    assert 2.0 < p["vacancy_formation_ev"] < 3.5          # DFT (PBE) Mo: about 2.7 eV
    assert abs(p["nve_drift_ev_per_atom_ps"]) < 1e-4
    assert p["a0_npt_a"] > p["a0_a"]                        # thermal expansion at 300 K
    assert p["burgers_a"] == pytest.approx(p["a0_a"] * 3 ** 0.5 / 2)
    for f in ("eos.csv", "eos.png", "nve.csv", "nve.png"):
        assert (art.path / f).is_file()
    again = maker.make(pot, tmp_path / "props")              # fingerprinted: skipped
    assert again.manifest["started"] == art.manifest["started"]
