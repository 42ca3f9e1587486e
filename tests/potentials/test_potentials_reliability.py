"""Damaged, duplicated and implausible DFT data (issue 16, items 2, 5 and the data side of
6): each case is a one-line error naming the file and frame, or the right result with a
recorded note. Damaged files are made in ``tmp_path`` from the real ones."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from scalebridge.artifacts import produce, write_json_atomic
from scalebridge.errors import DataError, ScalebridgeError
from scalebridge.potentials import EvaluateSettings, IngestSettings
from scalebridge.potentials.frames import Frame
from scalebridge.potentials.readers import read_source
from scalebridge.potentials.validation import (
    check_duplicates,
    check_energy_outliers,
    check_forces,
)

ORDER = "xx yy zz xy xz yz"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


@pytest.fixture(scope="module")
def mo_items(mo_train_json) -> list[dict]:
    """Twelve small Mo frames of the mlearn training set, as raw entries."""
    items = [it for it in json.loads(mo_train_json.read_text()) if it["num_atoms"] <= 26]
    return items[:12]


def _write(tmp_path: Path, items: list[dict], name: str = "mo.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(items))
    return p


def _cut(src: Path, dst: Path, nbytes: int) -> Path:
    dst.write_bytes(src.read_bytes()[:nbytes])
    return dst


# ------------------------------------------------------------------ duplicates
def test_one_trajectory_from_outcar_and_vasprun_is_kept_once(tmp_path, vasp_dir, caplog):
    """Frame 0 of the two files differs by 4.5e-6 Å: one copy, reported in the log, the
    summary and dataset.json."""
    srcs = [vasp_dir / "Ti-aimd-nwrite0_OUTCAR", vasp_dir / "Ti-aimd-nwrite0_vasprun.xml"]
    with caplog.at_level(logging.WARNING, logger="scalebridge"):
        art = IngestSettings().make(srcs, tmp_path / "ds")
    assert sum(art.summary["n_frames"].values()) == 10  # 2 + 10 read, first + last shared
    assert art.summary["duplicates_dropped"] == 2
    info = json.loads((art.path / "dataset.json").read_text())
    assert info["duplicates"][0] == {
        "kept": f"{srcs[0]} frame 0", "dropped": f"{srcs[1]} frame 0"}
    assert info["duplicates"][1]["dropped"] == f"{srcs[1]} frame 9"
    line = next(r.getMessage() for r in caplog.records if "duplicate" in r.getMessage())
    assert line.startswith("2 duplicate frame(s) dropped: ") and "\n" not in line
    with pytest.raises(DataError) as e:
        IngestSettings(duplicates="error").make(srcs, tmp_path / "ds2")
    assert f"{srcs[1]} frame 0: duplicate of {srcs[0]} frame 0" in _one_line(e)


def test_near_duplicates_tolerances_and_minimum_image(tmp_path, mo_items):
    (fr,) = read_source(_write(tmp_path, mo_items[:1]), voigt_order=ORDER)
    def variant(shift=0.0, de=0.0, wrap=False):
        g = copy.deepcopy(fr)
        g.positions = g.positions + shift
        if wrap:  # the same atom one lattice vector away
            g.positions[0] += g.cell[0]
        g.energy += de * g.natoms
        return g
    same = [fr, variant(5e-4), variant(wrap=True), variant(de=5e-5)]
    assert len(check_duplicates(same, "drop")) == 1
    different = [fr, variant(2e-3), variant(de=2e-4)]
    assert len(check_duplicates(different, "drop")) == 3
    assert len(check_duplicates(different, "drop", position_tol_a=5e-3,
                                energy_tol_ev_per_atom=1e-3)) == 1


# ------------------------------------------------------------------ OUTCAR with fewer steps
def test_outcar_holding_fewer_steps_than_it_ran_says_so(vasp_dir, caplog):
    notes: list[str] = []
    with caplog.at_level(logging.WARNING, logger="scalebridge"):
        frames = read_source(vasp_dir / "Ti-aimd-nwrite0_OUTCAR", notes=notes)
    assert len(frames) == 2
    assert notes == [f"{vasp_dir / 'Ti-aimd-nwrite0_OUTCAR'}: holds forces for 2 of its 10 "
                     "ionic steps (NWRITE = 0); only those 2 are read (the vasprun.xml of "
                     "the run has all)"]
    assert notes[0] in caplog.text
    notes.clear()
    read_source(vasp_dir / "OUTCAR.h2o.md", notes=notes)  # NWRITE = 2: every step
    assert notes == []


# ------------------------------------------------------------------ truncated files
def test_truncated_vasprun_is_refused_or_kept_with_a_note(tmp_path, vasp_dir):
    cut = _cut(vasp_dir / "vasprun.h2o.md.xml", tmp_path / "vasprun.cut.xml", 40_000)
    with pytest.raises(DataError) as e:
        IngestSettings().make([cut], tmp_path / "ds")
    assert _one_line(e) == (f"{cut}: ends before </modeling> (truncated, or the run was "
                            "killed); 2 complete ionic step(s); set allow_truncated = true "
                            "to keep them")
    art = IngestSettings(allow_truncated=True, validation_fraction=0, test_fraction=0
                         ).make([cut], tmp_path / "ds")
    assert art.summary["n_frames"]["train"] == 2
    assert any("2 complete ionic step(s) kept (allow_truncated = true)" in n
               for n in art.summary["notes"])


def test_truncated_outcar_mid_step(tmp_path, vasp_dir):
    src = vasp_dir / "OUTCAR.h2o.md"
    cut = _cut(src, tmp_path / "OUTCAR.cut", int(src.stat().st_size * 0.9))
    with pytest.raises(DataError) as e:
        read_source(cut)
    assert _one_line(e).startswith(f"{cut}: ends before VASP's closing timing section")
    assert len(read_source(cut, allow_truncated=True)) == 2
    head = _cut(src, tmp_path / "OUTCAR.head", 20_000)
    with pytest.raises(DataError, match="ends before its first complete ionic step"):
        read_source(head, allow_truncated=True)


# ------------------------------------------------------------------ implausible frames
def test_energy_times_1000_is_rejected_naming_file_and_frame(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    items[3]["outputs"]["energy"] *= 1000
    src = _write(tmp_path, items)
    with pytest.raises(DataError) as e:
        IngestSettings(voigt_order=ORDER).make([src], tmp_path / "ds")
    msg = _one_line(e)
    assert msg.startswith(f"{src} frame 3: energy -10323.3 eV/atom is ")
    assert "robust SDs from the median of " in msg and "energy_outlier_z = 200;" in msg
    art = IngestSettings(voigt_order=ORDER, implausible="drop").make([src], tmp_path / "ds")
    assert sum(art.summary["n_frames"].values()) == len(items) - 1


def test_real_data_passes_the_energy_check(tmp_path, mo_items):
    art = IngestSettings(voigt_order=ORDER).make([_write(tmp_path, mo_items)],
                                                 tmp_path / "ds")
    assert sum(art.summary["n_frames"].values()) == len(mo_items)


def test_force_beyond_physical_bound(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    items[5]["outputs"]["forces"][1] = [80.0, 0.0, 0.0]
    src = _write(tmp_path, items)
    with pytest.raises(DataError) as e:
        IngestSettings(voigt_order=ORDER).make([src], tmp_path / "ds")
    assert _one_line(e).startswith(f"{src} frame 5: force on atom 1 is 80 eV/Å, above "
                                   "max_force_ev_a = 50")
    art = IngestSettings(voigt_order=ORDER, max_force_ev_a=100).make([src], tmp_path / "ds")
    assert sum(art.summary["n_frames"].values()) == len(items)


def _frames(energies_ev_per_atom: list[float], forces_ev_a: list[float]) -> list[Frame]:
    """Two-atom Mo cells, frame i with energy per atom and |force| on atom 1 given."""
    cell = 3.2 * np.eye(3)
    return [Frame(["Mo", "Mo"], np.array([[0.0, 0, 0], [1.6, 1.6, 1.6]]), cell, 2 * e,
                  np.array([[0.0, 0, 0], [f, 0, 0]]), None, source="m.json", index=i)
            for i, (e, f) in enumerate(zip(energies_ev_per_atom, forces_ev_a, strict=True))]


def test_implausible_policy_raises_with_the_setting_or_drops_with_a_line(caplog):
    """Both implausible checks (force bound, energy outlier): ``error`` raises at the
    first bad frame naming the setting that lets it pass; ``drop`` keeps the others in
    order and logs one ``...: dropped`` line per frame."""
    frames = _frames([-10.0, -10.01, -5.0, -9.99, -10.02, -10.0], [1, 80, 1, 1, 90, 1])
    with pytest.raises(DataError) as e:
        check_forces(frames, 50.0)
    assert _one_line(e) == (
        "m.json frame 1: force on atom 1 is 80 eV/Å, above max_force_ev_a = 50; raise "
        "max_force_ev_a (null: no bound) or set implausible = 'drop' to skip such frames")
    with pytest.raises(DataError, match=r"^m\.json frame 2: energy -5 eV/atom is [0-9.]+ "
                       r"robust SDs from the median of the data set \(6 frames\), above "
                       r"energy_outlier_z = 20; raise energy_outlier_z \(null: no check\) "
                       r"or set implausible = 'drop' to skip such frames$"):
        check_energy_outliers(frames, 20.0)
    with caplog.at_level(logging.WARNING):
        kept = check_forces(frames, 50.0, policy="drop")
        assert [f.index for f in kept] == [0, 2, 3, 5]
        assert [f.index for f in check_energy_outliers(kept, 20.0, "drop")] == [0, 3, 5]
    lines = [r.getMessage() for r in caplog.records]
    assert [ln.split(":")[0] for ln in lines] == ["m.json frame 1", "m.json frame 4",
                                                  "m.json frame 2"]
    assert all(ln.endswith(": dropped") for ln in lines)
    assert check_forces(frames, None) == frames == check_energy_outliers(frames, None)


# ------------------------------------------------------------------ item 6, data side
def test_empty_or_foreign_vasprun_is_one_line(tmp_path):
    empty = tmp_path / "vasprun.xml"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as e:
        read_source(empty)
    assert _one_line(e) == f"{empty}: file is empty (0 bytes); expected a vasprun.xml"
    other = tmp_path / "vasprun.other.xml"
    other.write_text("<?xml version='1.0'?>\n<root/>\n")
    with pytest.raises(DataError) as e:
        read_source(other)
    assert _one_line(e) == f"{other}: not a vasprun.xml (no <modeling> element at its start)"


def test_type_map_mismatch_found_before_dp_test(tmp_path, mo_items):
    ds = IngestSettings(voigt_order=ORDER, test_fraction=0.3).make(
        [_write(tmp_path, mo_items)], tmp_path / "ds")

    def fake_potential(work: Path) -> dict:
        write_json_atomic(work / "potential.json", {"type_map": ["W"], "models": []})
        return {}

    pot = produce("Potential", tmp_path / "pot", {"fake": True}, {}, fake_potential)
    with pytest.raises(DataError) as e:
        EvaluateSettings(properties=False).make(pot, ds, tmp_path / "eval")
    assert _one_line(e) == (f"{ds.path}: species ['Mo'] of the dataset's type_map ['Mo'] "
                            f"are not in the model's type_map ['W'] ({pot.path})")
    assert not (tmp_path / "eval").exists()


def test_missing_data_file_names_path_and_key(tmp_path):
    from scalebridge.workflows.pipeline import run

    toml = tmp_path / "run.toml"
    toml.write_text('[run]\nname = "x"\ndata = ["data/nope.json"]\n')
    with pytest.raises(ScalebridgeError) as e:
        run(toml, tmp_path / "run", until="dataset")
    assert _one_line(e) == (f"[run] data[0]: DFT file does not exist: "
                            f"{tmp_path / 'data' / 'nope.json'}")
