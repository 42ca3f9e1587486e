"""Every data validation: a one-line DataError naming the file and the frame."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from scalebridge.errors import DataError
from scalebridge.potentials import IngestSettings

ORDER = "xx yy zz xy xz yz"


@pytest.fixture(scope="module")
def mo_items(mo_train_json) -> list[dict]:
    """Six small Mo frames (surfaces and the 2-atom cell) as raw mlearn entries."""
    raw = json.loads(mo_train_json.read_text())
    items = [it for it in raw if it["num_atoms"] <= 26][:6]
    assert len(items) == 6
    return items


def _write(tmp_path: Path, items: list[dict], name: str = "mo.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(items))
    return p


def _ingest(tmp_path: Path, sources, **kw):
    return IngestSettings(voigt_order=ORDER, **kw).make(sources, tmp_path / "ds")


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_clean_data_ingests(tmp_path, mo_items):
    art = _ingest(tmp_path, [_write(tmp_path, mo_items)], type_map=["Mo"])
    assert sum(art.summary["n_frames"].values()) == len(mo_items)


def test_species_not_in_type_map(tmp_path, mo_items):
    with pytest.raises(DataError) as e:
        _ingest(tmp_path, [_write(tmp_path, mo_items)], type_map=["W"])
    assert "mo.json frame 0" in _one_line(e) and "'Mo' is not in type_map" in str(e.value)


def test_type_map_species_missing_from_data(tmp_path, mo_items):
    with pytest.raises(DataError, match=r"type_map species \['W'\] occur in no frame"):
        _ingest(tmp_path, [_write(tmp_path, mo_items)], type_map=["Mo", "W"])


def test_unknown_element(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    for site in items[2]["structure"]["sites"]:
        site["species"][0]["element"] = "Xx"
        site["label"] = "Xx"
    with pytest.raises(DataError, match=r"mo\.json frame 2"):
        _ingest(tmp_path, [_write(tmp_path, items)])


def test_frame_without_forces(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    del items[3]["outputs"]["forces"]
    with pytest.raises(DataError) as e:
        _ingest(tmp_path, [_write(tmp_path, items)])
    assert _one_line(e).endswith("mo.json frame 3: frame has no forces")


def test_nan_and_inf(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    items[1]["outputs"]["forces"][0][2] = float("nan")
    with pytest.raises(DataError, match=r"mo\.json frame 1: forces has NaN/inf .*\(0, 2\)"):
        _ingest(tmp_path, [_write(tmp_path, items)])
    items = copy.deepcopy(mo_items)
    items[4]["outputs"]["energy"] = float("inf")
    with pytest.raises(DataError, match=r"inf\.json frame 4: energy is inf"):
        _ingest(tmp_path, [_write(tmp_path, items, "inf.json")])


def test_atoms_too_close(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    sites = items[0]["structure"]["sites"]
    xyz = np.array(sites[0]["xyz"]) + 0.3
    sites[1]["xyz"] = xyz.tolist()
    lat = np.array(items[0]["structure"]["lattice"]["matrix"])
    sites[1]["abc"] = np.linalg.solve(lat.T, xyz).tolist()
    with pytest.raises(DataError, match=r"mo\.json frame 0: two atoms are 0\.520 Å apart"):
        _ingest(tmp_path, [_write(tmp_path, items)], min_distance_a=1.0)


def test_duplicate_frames(tmp_path, mo_items):
    items = [*mo_items, copy.deepcopy(mo_items[2])]
    src = _write(tmp_path, items)
    with pytest.raises(DataError, match=rf"mo\.json frame {len(mo_items)}: duplicate of "
                                        r".*mo\.json frame 2"):
        _ingest(tmp_path, [src], duplicates="error")
    art = _ingest(tmp_path, [src])  # default: keep the first copy, record the pair
    assert sum(art.summary["n_frames"].values()) == len(mo_items)
    assert art.summary["duplicates_dropped"] == 1


def test_same_frame_in_train_and_test(tmp_path, vasp_dir):
    with pytest.raises(DataError, match="duplicate of"):
        IngestSettings().make([vasp_dir / "vasprun.h2o.md.xml"], tmp_path / "ds",
                              test_sources=[vasp_dir / "vasprun.h2o.md.duplicate.xml"])


def test_mixed_virials(tmp_path, vasp_dir):
    sources = [vasp_dir / "Ti-aimd-nwrite0_vasprun.xml",
               vasp_dir / "vasprun.h2o.md.novirial.xml"]
    with pytest.raises(DataError) as e:
        IngestSettings().make(sources, tmp_path / "ds")
    assert "vasprun.h2o.md.novirial.xml frame 0: has no virial" in _one_line(e)
    art = IngestSettings(mixed_virials="drop").make(sources, tmp_path / "ds")
    info = json.loads((art.path / "dataset.json").read_text())
    assert info["has_virial"] is False
    assert not list(art.path.rglob("virial.npy"))


def test_unconverged_electronic_steps(tmp_path, vasp_dir):
    src = vasp_dir / "OUTCAR.ch4.unconverged"
    with pytest.raises(DataError) as e:
        IngestSettings().make([src], tmp_path / "ds")
    assert "OUTCAR.ch4.unconverged frame 0: electronic steps did not converge" in _one_line(e)
    art = IngestSettings(unconverged="drop", test_fraction=0, validation_fraction=0).make(
        [src], tmp_path / "ds")
    assert art.summary["n_frames"]["train"] == 1


def test_failed_ingest_leaves_no_artifact(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    del items[0]["outputs"]["forces"]
    with pytest.raises(DataError):
        _ingest(tmp_path, [_write(tmp_path, items)])
    assert not (tmp_path / "ds").exists()
    assert (tmp_path / "ds.failed.json").exists()


def test_a_bad_frame_is_reported_before_the_stress_order(tmp_path, mo_items):
    """These frames have no sheared cell, so nothing tells their stress order; a frame
    with no energy, a NaN energy or a missing force row reports that first, and only
    sound frames ask for voigt_order."""
    from scalebridge.potentials.readers import VoigtOrderError

    ingest = IngestSettings(type_map=["Mo"])
    with pytest.raises(VoigtOrderError, match=r"set potentials\.ingest\.voigt_order"):
        ingest.make([_write(tmp_path, mo_items)], tmp_path / "sound")
    no_energy, nan_energy, short = (copy.deepcopy(mo_items) for _ in range(3))
    del no_energy[0]["outputs"]["energy"]
    nan_energy[1]["outputs"]["energy"] = float("nan")
    short[2]["outputs"]["forces"] = short[2]["outputs"]["forces"][:-1]
    n = len(short[2]["outputs"]["forces"]) + 1
    for items, expected in ((no_energy, "frame 0: energy is nan"),
                            (nan_energy, "frame 1: energy is nan"),
                            (short, f"frame 2: forces have shape ({n - 1}, 3), "
                                    f"expected ({n}, 3)")):
        with pytest.raises(DataError) as e:
            ingest.make([_write(tmp_path, items)], tmp_path / "ds")
        assert not isinstance(e.value, VoigtOrderError)
        assert f"mo.json {expected}" in _one_line(e)
        with pytest.raises(DataError) as e:  # load() alone: the same order of checks
            ingest.load([_write(tmp_path, items)])
        assert f"mo.json {expected}" in _one_line(e)


def test_singular_cell(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    items[0]["structure"]["lattice"]["matrix"][2] = [0.0, 0.0, 0.0]
    with pytest.raises(DataError, match=r"mo\.json frame 0"):
        _ingest(tmp_path, [_write(tmp_path, items)])


def test_forces_shape_mismatch(tmp_path, mo_items):
    items = copy.deepcopy(mo_items)
    items[5]["outputs"]["forces"] = np.zeros((1, 3)).tolist()
    with pytest.raises(DataError, match=r"mo\.json frame 5: forces have shape \(1, 3\)"):
        _ingest(tmp_path, [_write(tmp_path, items)])
