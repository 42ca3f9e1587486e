"""Shared fixtures: real, tiny DFT data sets and DeePMD potentials (built once per session).

``tiny_potential`` trains two small se_e2_a models on a subset of the mlearn Mo
training set (real ``dp --pt train`` and ``freeze``; no evaluation, no compression) and
returns the ``Potential`` artifact. Other stages' tests use it as their potential.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED = Path(os.environ.get("SCALEBRIDGE_SHARED", Path(__file__).resolve().parents[2]
                             / "shared"))
DATA = SHARED / "data"
MO_TRAIN = DATA / "mlearn" / "Mo" / "training.json"
MO_TEST = DATA / "mlearn" / "Mo" / "test.json"
VASP = DATA / "vasp"
FITSNAP_TA = DATA / "fitsnap_Ta" / "JSON"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (set SCALEBRIDGE_SHARED)")
    return path


@pytest.fixture(scope="session")
def mo_train_json() -> Path:
    """The mlearn Mo training.json (194 frames)."""
    return _require(MO_TRAIN)


@pytest.fixture(scope="session")
def mo_test_json() -> Path:
    """The mlearn Mo test.json (23 frames)."""
    return _require(MO_TEST)


@pytest.fixture(scope="session")
def vasp_dir() -> Path:
    """Raw VASP outputs (dpdata test files), including awkward ones."""
    return _require(VASP)


@pytest.fixture(scope="session")
def fitsnap_ta_dir() -> Path:
    """FitSNAP Ta JSON folders (one per group)."""
    return _require(FITSNAP_TA)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, mo_train_json):
    """A DFTDataset artifact: at most 6 frames per group of the Mo training set."""
    from scalebridge.potentials import IngestSettings

    out = tmp_path_factory.getbasetemp() / "tiny_mo_dataset"
    return IngestSettings(type_map=["Mo"], max_frames_per_group=6, validation_fraction=0.2,
                          test_fraction=0.2, seed=0).make([mo_train_json], out)


TINY_TRAIN = {
    "descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4, "rcut_a": 5.0,
                   "rcut_smth_a": 0.5},
    "fitting_neuron": [32, 32], "steps": 100, "ensemble": 2, "disp_freq": 50,
    "start_lr": 2e-3, "stop_lr": 1e-4, "compress": False, "evaluate": False,
    "precision": "float64",  # tight finite-difference tests; float32: tiny_potential_f32
}


@pytest.fixture(scope="session")
def tiny_potential_f32(tmp_path_factory, tiny_dataset):
    """A float32, compressed, group-weighted model (20 steps) with its output layer refit:
    the benchmark's precision."""
    from scalebridge.potentials import TrainSettings

    out = tmp_path_factory.getbasetemp() / "tiny_mo_potential_f32"
    cfg = dict(TINY_TRAIN, steps=20, ensemble=1, compress=True, precision="float32",
               group_weights={"Vacancy": 0.4}, refit_output_layer=True)
    return TrainSettings.model_validate(cfg).make(tiny_dataset, out)


@pytest.fixture(scope="session")
def tiny_potential(tmp_path_factory, tiny_dataset):
    """A real Potential artifact: 2 tiny se_e2_a Mo models (100 steps each)."""
    from scalebridge.potentials import TrainSettings

    out = tmp_path_factory.getbasetemp() / "tiny_mo_potential"
    return TrainSettings.model_validate(TINY_TRAIN).make(tiny_dataset, out)
