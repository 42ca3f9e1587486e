"""Conversion round trip: DFT files -> deepmd/npy systems -> frames, unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scalebridge.potentials import IngestSettings, load_dataset
from scalebridge.potentials.npy import read_system, write_systems
from scalebridge.potentials.readers import read_source


def _same(a, b, perm=None):
    p = np.arange(a.natoms) if perm is None else perm
    assert [a.symbols[i] for i in p] == b.symbols
    assert a.energy == b.energy
    assert np.array_equal(a.cell, b.cell)
    assert np.array_equal(a.positions[p], b.positions)
    assert np.array_equal(a.forces[p], b.forces)
    if a.virial is None:
        assert b.virial is None
    else:
        assert np.array_equal(a.virial, b.virial)


def test_npy_round_trip_sorts_species(tmp_path, vasp_dir):
    frames = read_source(vasp_dir / "vasprun.h2o.md.xml")  # atoms ordered O O H H H H
    index = write_systems(frames, tmp_path, ["H", "O"])
    (name,) = index
    assert name == "all_H4O2" and index[name]["frames"] == 3
    assert np.loadtxt(tmp_path / name / "type.raw", dtype=int).tolist() == [0, 0, 0, 0, 1, 1]
    back = read_system(tmp_path / name)
    perm = np.array([2, 3, 4, 5, 0, 1])
    for a, b in zip(frames, back, strict=True):
        _same(a, b, perm)
    shapes = {f.name: np.load(f).shape for f in (tmp_path / name / "set.000").iterdir()}
    assert shapes == {"box.npy": (3, 9), "coord.npy": (3, 18), "energy.npy": (3,),
                      "force.npy": (3, 18), "virial.npy": (3, 9)}


def test_dataset_round_trip_keeps_every_frame(tmp_path, mo_train_json, mo_test_json):
    """Every frame of training.json and test.json comes back from the DFTDataset, with
    its group, source and index, bit for bit."""
    art = IngestSettings(type_map=["Mo"], validation_fraction=0.1).make(
        [mo_train_json], tmp_path / "ds", test_sources=[mo_test_json])
    ds = load_dataset(art)
    assert art.summary["n_frames"] == {"train": 174, "validation": 20, "test": 23}
    src = {(f.source, f.index): f for p in (mo_train_json, mo_test_json)
           for f in read_source(p, fallback_order=("xx", "yy", "zz", "xy", "xz", "yz"))}
    seen = set()
    for split in ("train", "validation", "test"):
        for fr in ds.frames(split):
            key = (fr.source, fr.index)
            assert key not in seen
            seen.add(key)
            orig = src[key]
            assert orig.group == fr.group
            _same(orig, fr)
            if split == "test":
                assert fr.source == str(mo_test_json)
    assert seen == set(src)
    info = json.loads((art.path / "dataset.json").read_text())
    assert info["voigt_order"] == "xx yy zz xy xz yz" and info["has_virial"] is True
    assert info["splits"]["validation"]["groups"]["AIMD-NVT"] == 11


def test_split_is_stratified_and_seeded(tmp_path, mo_train_json):
    s = IngestSettings(type_map=["Mo"], validation_fraction=0.1, test_fraction=0.2, seed=3)
    frames = s.load([mo_train_json])
    a = s.split(frames, explicit_test=False)
    b = s.split(frames, explicit_test=False)
    assert [(f.index) for f in a["test"]] == [(f.index) for f in b["test"]]
    for g, n in {"AIMD-NVT": 108, "Elastic": 56, "Vacancy": 21, "Surface": 9}.items():
        got = sum(f.group == g for f in a["test"])
        assert got == round(0.2 * n), g
    c = IngestSettings(type_map=["Mo"], test_fraction=0.2, seed=4).split(frames, False)
    assert [f.index for f in c["test"]] != [f.index for f in a["test"]]


def test_fitsnap_ingest_groups(tmp_path, fitsnap_ta_dir):
    art = IngestSettings(type_map=["Ta"], test_fraction=0.2, validation_fraction=0.0).make(
        [fitsnap_ta_dir / "GSF_110", fitsnap_ta_dir / "Elastic_BCC"], tmp_path / "ta")
    info = json.loads((art.path / "dataset.json").read_text())
    assert set(info["splits"]["test"]["groups"]) == {"GSF_110", "Elastic_BCC"}
    assert info["has_virial"] is True
    total = sum(info["splits"][s]["frames"] for s in ("train", "validation", "test"))
    assert total == len(read_source(fitsnap_ta_dir / "GSF_110")) + len(
        read_source(fitsnap_ta_dir / "Elastic_BCC"))


def test_ingest_is_skipped_when_done(tmp_path, vasp_dir):
    s = IngestSettings(test_fraction=0, validation_fraction=0)
    a = s.make([vasp_dir / "Ti-aimd-nwrite0_vasprun.xml"], tmp_path / "ds")
    b = s.make([vasp_dir / "Ti-aimd-nwrite0_vasprun.xml"], tmp_path / "ds")
    assert a.manifest["started"] == b.manifest["started"]
    c = IngestSettings(test_fraction=0.2, validation_fraction=0).make(
        [vasp_dir / "Ti-aimd-nwrite0_vasprun.xml"], tmp_path / "ds")
    assert c.fingerprint != a.fingerprint
    assert c.summary["n_frames"]["test"] == 2


@pytest.mark.parametrize("bad", [{"validation_fraction": 1.5}, {"unknown_key": 1},
                                 {"duplicates": "ignore"}])
def test_settings_are_strict(bad):
    from scalebridge.errors import SettingsError
    from scalebridge.settings import validate

    with pytest.raises(SettingsError):
        validate(IngestSettings, bad)
