"""Formats read through the reader registry (extxyz/ASE, deepmd/npy and /raw, dpdata's
Quantum ESPRESSO, CP2K and ABACUS, maml JSON), each checked for units and stress sign
against an independent reading; and the data-set-wide Voigt order of mlearn files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scalebridge.errors import DataError
from scalebridge.potentials.dataset import IngestSettings
from scalebridge.potentials.frames import EV_A3_IN_GPA, EV_A3_IN_KBAR, Frame
from scalebridge.potentials.readers import (
    READERS,
    ReadOptions,
    detect_format,
    read_mlearn_json,
    read_source,
    register,
)

DATA = Path(__file__).resolve().parents[1] / "data"
XYZ = DATA / "fitsnap_Ta_xyz"
DPDATA = DATA / "dpdata"
FITSNAP_BAR = ReadOptions(ase_stress_unit="bar", ase_stress_sign="compression")
MO_ORDER = ("xx", "yy", "zz", "xy", "xz", "yz")


def _same(a: Frame, b: Frame, atol: float = 1e-8) -> None:
    assert a.symbols == b.symbols
    assert a.energy == pytest.approx(b.energy, abs=atol)
    assert np.allclose(a.cell, b.cell, atol=atol)
    assert np.allclose(a.positions, b.positions, atol=atol)
    assert np.allclose(a.forces, b.forces, atol=atol)
    assert np.allclose(a.virial, b.virial, atol=atol)


# --------------------------------------------------------------------------- extxyz
@pytest.mark.parametrize("group", ["Volume_BCC", "Elastic_BCC"])
def test_extxyz_gives_the_fitsnap_json_frames(fitsnap_ta_dir, group):
    """FitSNAP's extxyz and JSON versions of the Ta data are the same frames (energies,
    forces, and stresses in bar, compression positive, in both)."""
    assert detect_format(XYZ / f"{group}.xyz") == "extxyz"
    xyz = read_source(XYZ / f"{group}.xyz", options=FITSNAP_BAR)
    js = read_source(fitsnap_ta_dir / group)
    assert {f.group for f in xyz} == {f.group for f in js} == {group}
    for j in js:
        match = [x for x in xyz if x.cell.shape == j.cell.shape
                 and np.allclose(x.cell, j.cell) and np.allclose(x.positions, j.positions)]
        assert len(match) == 1, j.where
        _same(match[0], j, atol=1e-9)
    if group == "Volume_BCC":
        assert len(xyz) == len(js) == 21


def test_extxyz_stress_in_the_wrong_unit_is_refused():
    """Read as ASE's eV/Å³, FitSNAP's bar values would be 10^6 eV/Å³: one line naming
    the settings instead of a training set with absurd virials."""
    with pytest.raises(DataError, match=r"frame 0: stress up to .* not physical; set "
                                        r"ase_stress_unit"):
        read_source(XYZ / "Volume_BCC.xyz")


def test_ase_frame_forces_of_the_wrong_shape_are_one_line():
    """An ASE frame's forces are an (n, 3) eV/Å array; any other shape names the frame."""
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator
    from scalebridge.potentials.interop import atoms_to_frame

    atoms = Atoms(["Mo", "Mo"], positions=[[0, 0, 0], [1.6, 1.6, 1.6]], cell=3.2 * np.eye(3),
                  pbc=True)
    atoms.calc = SinglePointCalculator(atoms, energy=-21.0, forces=[[0, 0, 1], [0, 0, -1]])
    fr = atoms_to_frame(atoms, Path("m.xyz"), 3, ReadOptions())
    assert fr.forces.dtype == float and fr.forces.tolist() == [[0, 0, 1], [0, 0, -1]]
    atoms.calc.results["forces"] = np.zeros((1, 3))
    with pytest.raises(DataError) as e:
        atoms_to_frame(atoms, Path("m.xyz"), 3, ReadOptions())
    assert str(e.value) == "m.xyz frame 3: forces have shape (1, 3), expected (2, 3)"
    atoms.calc = SinglePointCalculator(atoms, energy=-21.0)
    assert atoms_to_frame(atoms, Path("m.xyz"), 3, ReadOptions()).forces is None


def test_extxyz_in_ase_convention_round_trips(tmp_path, mo_train_json):
    """Frames written by ASE (stress eV/Å³, tension positive; or GAP's virial) read back
    as the same frames: the ASE sign convention maps to the virial as Frame defines it."""
    from ase.io import write

    frames = [f for f in read_mlearn_json(mo_train_json) if f.group == "Elastic"][:6]
    atoms = [f.to_atoms() for f in frames]
    for a in atoms:
        a.info["config_type"] = "Elastic"
    write(tmp_path / "mo.extxyz", atoms, format="extxyz")
    back = read_source(tmp_path / "mo.extxyz")
    for a, b in zip(frames, back, strict=True):
        _same(a, b, atol=1e-6)
        assert b.group == "Elastic"
    gap = []  # GAP-style: no stress, a virial (eV) in the comment line
    for f, a in zip(frames, atoms, strict=True):
        a = a.copy()
        a.info["virial"] = f.virial
        a.info["energy"], a.arrays["forces"] = f.energy, f.forces
        gap.append(a)
    write(tmp_path / "gap.xyz", gap, format="extxyz")
    for a, b in zip(frames, read_source(tmp_path / "gap.xyz"), strict=True):
        _same(a, b, atol=1e-6)


# --------------------------------------------------------------------------- deepmd
def test_deepmd_npy_and_raw_read_back_the_frames(tmp_path, mo_train_json):
    """Our deepmd/npy writer's systems read back (through dpdata) as the frames written,
    and dpdata's own deepmd/raw conversion of them too; without type_map.raw the type
    map setting names the types."""
    import dpdata
    from scalebridge.potentials.npy import write_systems

    frames = [f for f in read_mlearn_json(mo_train_json) if f.group == "Elastic"][:5]
    index = write_systems(frames, tmp_path / "npy", ["Mo"])
    (name,) = index
    system = tmp_path / "npy" / name
    assert detect_format(system) == "deepmd/npy"
    got = read_source(system)
    assert [f.group for f in got] == [name] * 5
    for a, b in zip(frames, got, strict=True):
        _same(a, b, atol=1e-10)
    raw = tmp_path / "raw"
    dpdata.LabeledSystem(str(system), fmt="deepmd/npy").to("deepmd/raw", str(raw))
    assert detect_format(raw) == "deepmd/raw"
    for a, b in zip(frames, read_source(raw), strict=True):
        _same(a, b, atol=1e-8)
    assert len(read_source(tmp_path / "npy")) == 5  # a folder of systems, one by one
    (system / "type_map.raw").unlink()
    with pytest.raises(DataError, match="atom type 'Type_0' is no element"):
        read_source(system)
    named = read_source(system, options=ReadOptions(type_map=["Mo"]))
    assert named[0].symbols == frames[0].symbols


# --------------------------------------------------------------------------- dpdata
def test_quantum_espresso_agrees_with_ase():
    """pw.x output through dpdata (auto-detected) vs ASE's own espresso-out reader:
    energy, forces and stress (ASE's tension-positive σ = -virial / V)."""
    import ase.io

    out = DPDATA / "qe" / "Al.out"
    assert detect_format(out) == "dpdata:qe/pw/scf"
    (fr,) = read_source(out)
    ref = ase.io.read(out, format="espresso-out")
    assert fr.symbols == ref.get_chemical_symbols() == ["Al"] * 4
    assert fr.energy == pytest.approx(ref.get_potential_energy(), rel=2e-6)  # Ry constants
    assert np.allclose(fr.forces, ref.get_forces(), atol=1e-6)
    assert np.allclose(fr.cell, ref.cell[:], atol=1e-5)
    sigma = ref.get_stress(voigt=False)
    assert np.allclose(fr.virial, -sigma * fr.volume, rtol=1e-4, atol=1e-6)
    assert fr.stress_gpa()[0, 0] == pytest.approx(3.745, abs=1e-3)  # QE: P = -37.45 kbar


def _printed_tensor(text: str, header: str, rows_after: int) -> np.ndarray:
    lines = text.splitlines()
    i = max(k for k, ln in enumerate(lines) if header in ln)
    vals = []
    for ln in lines[i + 1:]:
        nums = re.findall(r"[-+]?\d+\.\d+(?:[eE][-+]?\d+)?", ln)
        if len(nums) >= 3:
            vals.append([float(x) for x in nums[-3:]])
        if len(vals) == rows_after:
            break
    return np.array(vals)


def test_cp2k_output_agrees_with_its_printed_stress_and_dpdata_reference():
    """CP2K kinds Fe1/Fe2 become Fe; the virial is the printed stress tensor (GPa,
    compression positive) times V; energies, forces and virial equal dpdata's stored
    conversion of the same file."""
    out = DPDATA / "cp2k" / "cp2k_output"
    assert detect_format(out) == "dpdata:cp2k/output"
    notes: list[str] = []
    (fr,) = read_source(out, notes=notes)
    assert sorted(set(fr.symbols)) == ["Fe", "O"] and fr.natoms == 30
    assert any("Fe1" in n for n in notes)
    printed = _printed_tensor(out.read_text(), "STRESS TENSOR [GPa]", 3)
    assert np.allclose(fr.virial / fr.volume * EV_A3_IN_GPA, printed, atol=1e-6)
    (ref,) = read_source(DPDATA / "cp2k" / "deepmd")
    _same(fr, ref, atol=1e-6)


def test_abacus_folder_agrees_with_its_printed_stress_and_dpdata_reference():
    folder = DPDATA / "abacus"
    assert detect_format(folder) == "dpdata:abacus/scf"
    (fr,) = read_source(folder)
    assert fr.symbols == ["C", "H", "H", "H", "H"]
    printed = _printed_tensor((folder / "OUT.ch4" / "running_scf.log").read_text(),
                              "TOTAL-STRESS (KBAR)", 3)
    assert np.allclose(fr.virial / fr.volume * EV_A3_IN_KBAR, printed, rtol=1e-4)
    assert np.allclose(fr.virial, np.loadtxt(folder / "ch4_virial").reshape(3, 3),
                       rtol=1e-4)


def test_qe_output_without_its_input_is_one_line(tmp_path):
    out = tmp_path / "run.out"
    out.write_bytes((DPDATA / "qe" / "Al.out").read_bytes())
    with pytest.raises(DataError, match=r"run\.out: the pw\.x input run\.in is not beside"):
        read_source(out)


# --------------------------------------------------------------------------- maml
def test_maml_json_stress_order_sign_and_group():
    """maml's ``outputs.stress`` (kbar, compression positive) in the order of mlearn's
    non-Mo elements (the sheared cells say so), and dE/dLx = (V/Lx) σ_xx (tension
    positive) along the uniaxial strains: units and sign."""
    path = DATA / "maml_MoNbW" / "Mo_Elastic.json"
    frames = read_source(path)
    assert len(frames) == 121 and {f.group for f in frames} == {"Mo_Elastic"}
    assert frames[0].meta["voigt_order"] == "xx yy zz xy yz xz"
    raw = json.loads(path.read_text())
    mode1 = sorted((f for f, it in zip(frames, raw, strict=True)
                    if it["notes"]["Strain_new"].startswith("1-")),
                   key=lambda f: f.cell[0, 0])
    lx = np.array([f.cell[0, 0] for f in mode1])
    e = np.array([f.energy for f in mode1])
    sxx = np.array([f.stress_gpa()[0, 0] / EV_A3_IN_GPA * f.volume / f.cell[0, 0]
                    for f in mode1])
    mid = slice(7, 14)  # |strain| <= 3 %
    assert np.allclose(np.gradient(e, lx)[mid], sxx[mid], rtol=0.05, atol=0.02)
    assert sxx[0] < 0 < sxx[-1]  # compressed: pushes out (negative tension)


# --------------------------------------------------------------------------- registry
def test_format_keys_are_checked_and_a_new_reader_needs_one_line(tmp_path):
    with pytest.raises(ValueError, match="unknown format 'bogus'; choose auto or one of "
                                         r"fitsnap, mlearn, .*dpdata:<format>"):
        IngestSettings(format="bogus")
    assert IngestSettings(format="dpdata:qe/pw/scf").format == "dpdata:qe/pw/scf"

    class OneFrame:
        name, kind = "onefile", "a test file"

        def sniff(self, path: Path) -> bool:
            return path.suffix == ".one"

        def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
            return [Frame(["Mo"], np.zeros((1, 3)), np.eye(3) * 3, -1.0, np.zeros((1, 3)),
                          None, group=opts.group or "one", source=str(path))]

    register(OneFrame())
    try:
        (tmp_path / "x.one").write_text("x")
        (fr,) = read_source(tmp_path / "x.one")
        assert fr.group == "one"
        assert IngestSettings(format="onefile").format == "onefile"
    finally:
        del READERS["onefile"]


# --------------------------------------------------------------------------- Voigt order
def _mlearn_subsets(tmp_path: Path, mo_train_json: Path) -> tuple[Path, Path]:
    """(a file with no Elastic cells, one with only Elastic cells) of the mlearn Mo
    training set: like mlearn's Li files, whose test file has no sheared cell."""
    items = json.loads(mo_train_json.read_text())
    no_shear = tmp_path / "surface_vacancy.json"
    no_shear.write_text(json.dumps([it for it in items
                                    if it["group"] in ("Surface", "Vacancy")][:8]))
    elastic = tmp_path / "elastic.json"
    elastic.write_text(json.dumps([it for it in items if it["group"] == "Elastic"]))
    return no_shear, elastic


def test_file_without_sheared_cells_takes_the_order_of_the_others(tmp_path, mo_train_json):
    no_shear, elastic = _mlearn_subsets(tmp_path, mo_train_json)
    with pytest.raises(DataError, match="voigt_order"):
        IngestSettings(type_map=["Mo"]).load([no_shear])
    notes: list[str] = []
    frames = IngestSettings(type_map=["Mo"]).load([no_shear, elastic], notes=notes)
    assert any("surface_vacancy.json: stress order xx yy zz xy xz yz taken from "
               "elastic.json" in n for n in notes)
    explicit = read_mlearn_json(no_shear, voigt_order="xx yy zz xy xz yz")
    for a, b in zip(explicit, frames, strict=False):
        assert np.allclose(a.virial, b.virial)
    art = IngestSettings(type_map=["Mo"]).make([elastic], tmp_path / "ds",
                                               test_sources=[no_shear])
    assert any("taken from elastic.json" in n for n in art.summary["notes"])


def test_file_whose_sheared_cells_disagree_takes_the_others(tmp_path, mo_train_json):
    """Two yz-sheared cells voting for different slots (as in mlearn's Si test file):
    the order of the data set's other file is used; alone, the file stops."""
    items = json.loads(mo_train_json.read_text())
    yz = [it for it in items if "mode 5, strain" in it.get("description", "")][:2]
    s = yz[1]["outputs"]["virial_stress"]
    yz[1]["outputs"]["virial_stress"] = [*s[:4], s[5], s[4]]
    split = tmp_path / "split_votes.json"
    split.write_text(json.dumps(yz))
    _, elastic = _mlearn_subsets(tmp_path, mo_train_json)
    with pytest.raises(DataError, match=r"split_votes\.json: sheared cells disagree .* "
                                        r"set potentials\.ingest\.voigt_order"):
        IngestSettings(type_map=["Mo"]).load([split])
    notes: list[str] = []
    IngestSettings(type_map=["Mo"]).load([elastic, split], notes=notes)
    assert any("its sheared cells disagree" in n for n in notes)


def test_files_of_different_orders_are_fine_until_one_needs_a_fallback(tmp_path,
                                                                      mo_train_json):
    no_shear, elastic = _mlearn_subsets(tmp_path, mo_train_json)
    items = json.loads(elastic.read_text())
    for it in items:
        s = it["outputs"]["virial_stress"]
        it["outputs"]["virial_stress"] = [*s[:4], s[5], s[4]]
    other = tmp_path / "other_order.json"
    other.write_text(json.dumps(items))
    a = IngestSettings(type_map=["Mo"], duplicates="drop").load([elastic])
    b = IngestSettings(type_map=["Mo"]).load([other])
    assert all(np.allclose(x.virial, y.virial) for x, y in zip(a, b, strict=True))
    with pytest.raises(DataError, match=r"surface_vacancy\.json: its stresses need a Voigt "
                                        r"order and the other data files disagree"):
        IngestSettings(type_map=["Mo"]).voigt_orders([elastic, other, no_shear])


# --------------------------------------------------------------------------- crystal
def test_dataset_records_crystal_and_dft_reference(tmp_path, mo_train_json, mo_test_json):
    """The Mo example's data give its DFT reference: a0 3.1697 Å where the pressure of its
    strained Elastic cells vanishes (the lowest-energy cell, 54 rattled atoms at 3.1676 Å,
    is under +0.33 GPa; the perfect 2-atom cell at 3.1698 Å under -0.085 GPa), C11/C12/C44
    479/164/108 GPa from the ±2 % Elastic cells of training + test."""
    art = IngestSettings(type_map=["Mo"]).make([mo_train_json], tmp_path / "ds",
                                               test_sources=[mo_test_json])
    c = art.summary["crystal"]
    assert (c["species"], c["element"], c["structure"]) == (["Mo"], "Mo", "bcc")
    assert c["a0_guess_a"] == pytest.approx(3.1676, abs=1e-4)
    ref = c["dft_reference"]
    assert ref["a0_a"] == pytest.approx(3.1697, abs=1e-4)
    assert [round(ref[k]) for k in ("c11_gpa", "c12_gpa", "c44_gpa")] == [479, 164, 108]
    assert "Elastic" in ref["source"]["c44_gpa"] and ref["source"]["a0_a"].startswith(
        "zero pressure of a linear P(V) fit of 20 homogeneously strained bcc cells at 4 "
        "volumes")


def test_fitsnap_ta_volume_scan_gives_a0_and_bulk_modulus(fitsnap_ta_dir):
    from scalebridge.potentials.crystal import describe_data

    c = describe_data(read_source(fitsnap_ta_dir), ["Ta"])
    assert c["structure"] == "bcc"
    ref = c["dft_reference"]
    assert ref["a0_a"] == pytest.approx(3.32, abs=0.02)          # PBE Ta: 3.32 Å
    assert 170 < ref["bulk_modulus_eos_gpa"] < 210                # PBE Ta: ~195 GPa
    # the six Volume_BCC cells; the three ~1 %-strained BCC_deformed cells are not E(V)
    assert ref["source"]["a0_a"] == "Birch-Murnaghan fit of 6 isotropically scaled bcc cells"
    assert ref["c11_gpa"] > ref["c12_gpa"] > 0 and "Elastic_BCC" in ref["source"]["c11_gpa"]


def _bcc(a: float, strain: tuple[float, float, float] = (0, 0, 0), energy: float = 0.0,
         rattle: float = 0.0, rotate: bool = False, index: int = 0) -> Frame:
    """A 2 x 2 x 2 conventional bcc W supercell (16 atoms) with lattice constant ``a`` Å,
    normal strains ``strain``, atoms displaced by ``rattle`` Å, optionally rotated."""
    frac = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    frac = np.concatenate([frac, frac + 0.5]) / 2
    cell = 2 * a * np.diag(1 + np.asarray(strain, float))
    if rotate:
        q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
        cell = cell @ q.T
    pos = frac @ cell + rattle * np.random.default_rng(index).normal(size=frac.shape)
    return Frame(["W"] * 16, pos, cell, energy, np.zeros((16, 3)), None, group="synthetic",
                 source="synthetic", index=index)


def test_isotropic_lattice_constant_accepts_only_scaled_crystals():
    """An E(V) cell is the crystal scaled isotropically (any orientation); a uniaxial
    0.3 % strain, like an Elastic cell's, or a thermal rattle (0.05 Å) is not."""
    from scalebridge.potentials.crystal import isotropic_lattice_constant as iso

    assert iso(_bcc(3.19), "bcc") == pytest.approx(3.19)
    assert iso(_bcc(3.05, rotate=True), "bcc") == pytest.approx(3.05)
    assert iso(_bcc(3.19, strain=(1e-4, 1e-4, 1e-4)), "bcc") == pytest.approx(3.19 * 1.0001)
    assert iso(_bcc(3.19, strain=(0.003, 0, 0)), "bcc") is None
    assert iso(_bcc(3.19, strain=(0.01, -0.01, 0), rotate=True), "bcc") is None
    assert iso(_bcc(3.19, rattle=0.05), "bcc") is None
    assert iso(_bcc(3.19), "fcc") is None


def test_volume_scan_ignores_uniaxially_strained_cells():
    """E(V) cells of B = 300 GPa mixed with uniaxially strained cells whose energy rises
    with C11 = 520 GPa (E = V0 C11 ε²/2) at their own volumes: the fit gives 300 GPa (it
    gave about C11 when strained cells counted as volume points); strained cells alone
    give no bulk modulus."""
    from scalebridge.potentials.crystal import volume_scan

    a0, b, c11 = 3.19, 300.0 / EV_A3_IN_GPA, 520.0 / EV_A3_IN_GPA    # eV/Å³
    v0 = a0**3 / 2                                                    # Å³/atom
    scaled = [_bcc(a0 * (1 + s), energy=16 * (b * v0 / 2 * (3 * s) ** 2), index=i)
              for i, s in enumerate((-0.02, -0.01, 0.0, 0.01, 0.02))]
    strained = [_bcc(a0, strain=(e, 0, 0), energy=16 * (c11 * v0 / 2 * e**2), index=10 + i)
                for i, e in enumerate((-0.015, -0.005, 0.005, 0.015))]
    eos, n = volume_scan(scaled + strained, "W", "bcc", scaled[2])
    assert n == 5 and eos["b0_gpa"] == pytest.approx(300.0, rel=0.03)
    assert volume_scan(strained + scaled[2:3], "W", "bcc", scaled[2]) == (None, 1)


def test_maml_elastic_cells_give_no_eos_bulk_modulus():
    """The maml Mo_Elastic set holds the relaxed cell and uniaxially strained ones (±1, ±2 %
    along one axis): no E(V) fit (it used to report B = C11), a0 where the strained cells'
    pressure vanishes (within 0.02 % of the relaxed cell, 3.169 Å at +0.08 GPa), and the
    cubic fit's C_ij give B = (C11 + 2 C12)/3 near PBE Mo's 260 GPa."""
    from scalebridge.potentials.crystal import describe_data

    ref = describe_data(read_source(DATA / "maml_MoNbW" / "Mo_Elastic.json"), ["Mo"])[
        "dft_reference"]
    assert "bulk_modulus_eos_gpa" not in ref
    assert ref["source"]["bulk_modulus_eos_gpa"].startswith("not fitted: 1 isotropically")
    assert ref["a0_a"] == pytest.approx(3.169 * (1 + 0.08 / 265 / 3), rel=2e-4)
    assert ref["source"]["a0_a"] == (
        "zero pressure of a linear P(V) fit of 37 homogeneously strained bcc cells at 5 "
        "volumes (deviatoric strain <= 0.021, |dV/V| <= 0.025; 'Mo_Elastic'; B = 265 GPa)")
    assert 240 < (ref["c11_gpa"] + 2 * ref["c12_gpa"]) / 3 < 290


def _elastic_cells(a0: float, cij: tuple[float, float, float], k3: float,
                   strains: list[np.ndarray], group: str = "Elastic_model") -> list[Frame]:
    """2-atom bcc Nb cells a0 (Å) strained by each small strain ε (3, 3), labelled by a
    cubic elastic model: σ = C:ε + ½ k3 (tr ε)² I (GPa, tension positive; k3 < 0 softens
    tension as real metals do) and E = V0 (½ ε:C:ε + k3 (tr ε)³/6), consistent with σ."""
    c11, c12, c44 = cij
    out = []
    for i, eps in enumerate(strains):
        tr = np.trace(eps)
        sig = c12 * tr * np.eye(3) + 2 * c44 * eps
        sig[np.diag_indices(3)] = c11 * np.diag(eps) + c12 * (tr - np.diag(eps))
        w = 0.5 * np.sum(sig * eps) + k3 * tr**3 / 6                         # GPa
        sig += 0.5 * k3 * tr**2 * np.eye(3)
        cell = a0 * (np.eye(3) + eps)                                          # rows
        pos = np.array([[0, 0, 0], [0.5, 0.5, 0.5]]) @ cell
        vol = abs(np.linalg.det(cell))
        out.append(Frame(["Nb"] * 2, pos, cell, 2 * (-10.1 + a0**3 / 2 * w / EV_A3_IN_GPA),
                         np.zeros((2, 3)), -vol * sig / EV_A3_IN_GPA, group=group,
                         source="model", index=i))
    return out


def test_a0_is_the_zero_pressure_point_when_the_lowest_cell_is_strained():
    """Elastic data without an E(V) scan and without the relaxed cell (like the
    Nb_Elastic_every10 subset): its lowest-energy cell is the +1 % uniaxially strained one
    (tension is softer), whose volume gives a0 0.33 % too large. The zero-pressure point of
    the strained cells' P(V) recovers the model's a0 within 0.1 %, the AIMD-like rattled
    cell under a thermal pressure does not count; four cells, too few to fit, each move to
    zero pressure through the data's own B; without stresses the source says why not."""
    from scalebridge.potentials.crystal import describe_data

    a0, cij, k3 = 3.30, (247.0, 135.0, 28.0), -800.0   # Nb-like C_ij (GPa), B' ~ 4
    strains = []
    for i in range(3):
        for e in (-0.02, -0.01, 0.01, 0.02):        # uniaxial, along each cube axis
            strains.append(np.diag(np.eye(3)[i] * e))
        j, k = (i + 1) % 3, (i + 2) % 3             # shears, ε_jk = ±0.02
        for e in (-0.02, 0.02):
            strains.append(np.zeros((3, 3)))
            strains[-1][j, k] = strains[-1][k, j] = e
    cells = _elastic_cells(a0, cij, k3, strains)
    hot = _elastic_cells(a0, cij, k3, [np.eye(3) * 0.003], group="AIMD_model")[0]
    hot.positions[1] += [0.15, -0.1, 0.05]              # a thermal snapshot ...
    hot.virial -= hot.volume * np.eye(3) * 3.0 / EV_A3_IN_GPA   # ... with 3 GPa more
    hot.energy += 2 * 0.04                                      # and kT-sized energy
    frames = [*cells, hot]
    low = min(frames, key=lambda f: f.energy)
    assert np.diag(low.cell)[0] == pytest.approx(a0 * 1.01)   # the premise: a strained cell

    c = describe_data(frames, ["Nb"])
    ref = c["dft_reference"]
    assert c["a0_guess_a"] == pytest.approx(a0 * 1.01 ** (1 / 3), abs=1e-5)  # 0.33 % off
    assert ref["a0_a"] == pytest.approx(a0, rel=1e-3)
    assert ref["source"]["a0_a"] == (
        "zero pressure of a linear P(V) fit of 15 homogeneously strained bcc cells at 4 "
        "volumes (deviatoric strain <= 0.021, |dV/V| <= 0.025; 'Elastic_model'; B = 167 GPa)")
    assert ref["c44_gpa"] == pytest.approx(cij[2], rel=1e-3)  # the C fit is unchanged

    # four cells are too few for P(V): each moved by P/B with the cubic fit's B
    few = describe_data([cells[k] for k in (2, 7, 15, 5)], ["Nb"])["dft_reference"]
    assert few["a0_a"] == pytest.approx(a0, rel=1e-3)
    assert few["source"]["a0_a"] == (
        "zero pressure of 4 homogeneously strained bcc cells at 4 volumes (deviatoric strain "
        "<= 0.021, |dV/V| <= 0.025; 'Elastic_model'), each at V (1 + P/B), B = 168 GPa of "
        "the cubic C_ij fit (no P(V) fit: 5 at 3 volumes needed)")
    # without stresses only the lowest-energy cell is left, and the source says why
    for f in cells:
        f.virial = None
    bare = describe_data(cells, ["Nb"])["dft_reference"]
    assert bare["a0_a"] == pytest.approx(a0 * 1.01 ** (1 / 3), abs=1e-5)
    assert bare["source"]["a0_a"] == (
        "lowest-energy bcc cell (model frame 2); no zero-pressure fit: 0 homogeneously "
        "strained bcc cells with stresses at 0 volumes (5 at 3 volumes needed)")
