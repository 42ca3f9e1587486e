"""Readers: units, sign and Voigt conventions, checked against physics and other readers."""

from __future__ import annotations

import json

import dpdata
import numpy as np
import pytest
from scalebridge.errors import DataError
from scalebridge.potentials.frames import EV_A3_IN_GPA
from scalebridge.potentials.readers import (
    detect_voigt_order,
    read_mlearn_json,
    read_outcar,
    read_source,
    read_vasprun,
)


def test_mlearn_counts_and_voigt_order(mo_train_json):
    frames = read_mlearn_json(mo_train_json)
    assert len(frames) == 194
    assert sum(f.natoms for f in frames) == 10087
    assert {f.group for f in frames} == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}
    assert frames[0].meta["voigt_order"] == "xx yy zz xy xz yz"


def test_mlearn_stress_sign_and_shear_slot(mo_train_json):
    """A cell sheared by +6% in the xy plane (mode 4) is under positive (tensile-sign)
    xy shear stress: virial_stress slot 3 = -62.68 kbar (compression positive) ->
    Cauchy σ_xy = +6.268 GPa."""
    raw = json.loads(mo_train_json.read_text())
    i = next(k for k, it in enumerate(raw) if "mode 4, strain 0.0600" in it["description"])
    fr = read_mlearn_json(mo_train_json)[i]
    s = fr.stress_gpa()
    assert fr.cell[1, 0] > 0.5  # b has an x component: xy shear
    assert s[0, 1] == pytest.approx(6.268316, abs=1e-5)
    assert s[0, 1] == s[1, 0]
    assert s[1, 1] == pytest.approx(-1.179124, abs=1e-5)


def test_voigt_order_detected_for_other_element_order(tmp_path, mo_train_json):
    """Swapping the last two slots (the order of mlearn's other elements) is detected
    and yields the same tensors."""
    raw = json.loads(mo_train_json.read_text())
    for it in raw:
        s = it["outputs"]["virial_stress"]
        it["outputs"]["virial_stress"] = [*s[:4], s[5], s[4]]
    swapped = tmp_path / "swapped.json"
    swapped.write_text(json.dumps(raw))
    assert detect_voigt_order(raw, "x") == ("xx", "yy", "zz", "xy", "yz", "xz")
    a = read_mlearn_json(mo_train_json)
    b = read_mlearn_json(swapped)
    assert all(np.allclose(x.virial, y.virial) for x, y in zip(a, b, strict=True))


def test_mlearn_without_sheared_cells_needs_an_order(mo_test_json):
    with pytest.raises(DataError, match=r"test\.json.*voigt_order"):
        read_mlearn_json(mo_test_json)
    frames = read_mlearn_json(mo_test_json, voigt_order="xx yy zz xy xz yz")
    assert len(frames) == 23
    fb = read_mlearn_json(mo_test_json, fallback_order=("xx", "yy", "zz", "xy", "xz", "yz"))
    assert np.allclose(frames[5].virial, fb[5].virial)


def test_fitsnap_pressure_is_minus_dE_dV(fitsnap_ta_dir):
    """FitSNAP stresses (bar) are compression positive: P = -dE/dV along the BCC
    volume scan, by finite differences between neighbouring volumes."""
    frames = sorted(read_source(fitsnap_ta_dir / "Volume_BCC"), key=lambda f: f.volume)
    assert all(f.group == "Volume_BCC" for f in frames)
    v = np.array([f.volume for f in frames])
    e = np.array([f.energy for f in frames])
    p = np.array([np.trace(f.virial) / 3 / f.volume for f in frames])  # eV/Å³
    mid = slice(8, 14)  # near equilibrium, where the scan is fine enough
    dedv = np.gradient(e, v)[mid]
    assert np.allclose(p[mid], -dedv, atol=0.1 * np.abs(p[mid]).max() + 2e-3)
    assert p[0] > 0 > p[-1]  # compressed cells push out, stretched ones pull in


def test_fitsnap_whole_folder(fitsnap_ta_dir):
    """tests/data carries 54 of FitSNAP's 363 Ta configurations, from all 12 groups."""
    frames = read_source(fitsnap_ta_dir)
    assert len(frames) == 54
    assert sum(f.natoms for f in frames) == 1152
    assert {f.symbols[0] for f in frames} == {"Ta"}
    assert len({f.group for f in frames}) == 12


def test_vasprun_and_outcar_agree(vasp_dir):
    xml = read_vasprun(vasp_dir / "vasprun.h2o.md.xml")
    out = read_outcar(vasp_dir / "OUTCAR.h2o.md")
    assert len(xml) == len(out) == 3
    for a, b in zip(xml, out, strict=True):
        assert a.symbols == b.symbols == ["O", "O", "H", "H", "H", "H"]
        assert a.energy == pytest.approx(b.energy, abs=1e-6)
        assert np.allclose(a.forces, b.forces, atol=1e-5)
        assert np.allclose(a.virial, b.virial, atol=1e-5)
        assert np.allclose(a.positions, b.positions, atol=1e-5)


def test_ti_outcar_with_nwrite0_has_two_force_blocks(vasp_dir):
    xml = read_vasprun(vasp_dir / "Ti-aimd-nwrite0_vasprun.xml")
    out = read_outcar(vasp_dir / "Ti-aimd-nwrite0_OUTCAR")
    assert len(xml) == 10 and len(out) == 2  # NWRITE=0 prints forces first and last
    for a, b in ((xml[0], out[0]), (xml[-1], out[-1])):
        assert a.energy == pytest.approx(b.energy, abs=1e-6)
        assert np.allclose(a.forces, b.forces, atol=1e-5)
    assert np.allclose(np.sum(xml[0].forces, axis=0), 0, atol=0.05)


def test_vdw_vasprun_energy_is_the_free_energy(vasp_dir):
    """VASP 5.4 writes e_0_energy = 0.0006 eV in this file's ionic block; the reader
    takes the free energy (TOTEN), as dpdata does."""
    (fr,) = read_vasprun(vasp_dir / "vasprun.Ge.vdw.xml")
    assert fr.energy == pytest.approx(-33.36815582, abs=1e-8)
    assert fr.symbols == ["Ge"] * 8


def test_duplicated_species_block_reads_like_the_plain_file(vasp_dir):
    a = read_vasprun(vasp_dir / "vasprun.h2o.md.xml")
    b = read_vasprun(vasp_dir / "vasprun.h2o.md.duplicate.xml")
    assert [f.symbols for f in a] == [f.symbols for f in b]
    assert all(np.allclose(x.forces, y.forces) for x, y in zip(a, b, strict=True))


def test_novirial_file_has_no_virials(vasp_dir):
    frames = read_vasprun(vasp_dir / "vasprun.h2o.md.novirial.xml")
    assert len(frames) == 3 and all(f.virial is None for f in frames)


def test_unconverged_outcar_frames_are_flagged(vasp_dir):
    frames = read_outcar(vasp_dir / "OUTCAR.ch4.unconverged")
    assert [f.converged for f in frames] == [False, False, True]
    assert frames[0].meta["nelm"] == 15


@pytest.mark.parametrize("name,fmt", [("vasprun.h2o.md.xml", "vasp/xml"),
                                      ("OUTCAR.h2o.md", "vasp/outcar"),
                                      ("Ti-aimd-nwrite0_vasprun.xml", "vasp/xml"),
                                      ("Ti-aimd-nwrite0_OUTCAR", "vasp/outcar"),
                                      ("vasprun.Ge.vdw.xml", "vasp/xml")])
def test_agrees_with_dpdata(vasp_dir, name, fmt):
    ref = dpdata.LabeledSystem(str(vasp_dir / name), fmt=fmt)
    mine = read_source(vasp_dir / name)
    assert len(ref) == len(mine)
    names = ref["atom_names"]
    for i, fr in enumerate(mine):
        assert [names[t] for t in ref["atom_types"]] == fr.symbols
        assert ref["energies"][i] == pytest.approx(fr.energy, abs=1e-6)
        assert np.allclose(ref["forces"][i], fr.forces, atol=1e-6)
        assert np.allclose(ref["coords"][i], fr.positions, atol=1e-6)
        assert np.allclose(ref["cells"][i], fr.cell, atol=1e-6)
        assert np.allclose(ref["virials"][i], fr.virial, atol=1e-6)


def test_stress_units(mo_train_json):
    """GPa from eV/Å³: 1 eV/Å³ = 160.2177 GPa."""
    assert EV_A3_IN_GPA == pytest.approx(160.21766, rel=1e-6)


def test_unknown_format_and_missing_file(tmp_path):
    bad = tmp_path / "data.txt"
    bad.write_text("hello")
    with pytest.raises(DataError, match="unknown DFT file format"):
        read_source(bad)
    with pytest.raises(DataError, match="not found"):
        read_source(tmp_path / "nope.json")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DataError, match=r"broken\.json: invalid JSON"):
        read_source(broken)


def test_truncated_json_names_the_place_in_full(tmp_path, mo_train_json):
    """An mlearn file is one line: json's whole reason, with column and character, and
    that the file ends there, in one line."""
    cut = tmp_path / "t.json"
    cut.write_bytes(mo_train_json.read_bytes()[:300])
    with pytest.raises(DataError) as e:
        read_source(cut)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{cut}: invalid JSON: Unterminated string starting at: line 1 "
                          "column "), msg
    assert " of 300); the file ends there: cut off?" in msg, msg
    col = int(msg.split("column ")[1].split()[0])
    assert f"(character {col - 1} of 300)" in msg  # one line: column - 1 = offset
    comma = tmp_path / "comma.json"
    comma.write_text('[{"a": 1},\n {"b": 2}, x]')
    with pytest.raises(DataError) as e:
        read_source(comma, "mlearn")
    assert str(e.value) == (f"{comma}: invalid JSON: Expecting value: line 2 column 12 "
                            "(character 22 of 24)")
