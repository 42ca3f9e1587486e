"""Shared fixtures: real, tiny DFT data sets and DeePMD potentials (built once per session),
and the suite's skip policy.

Every data file a test reads ships with the repository: ``tests/data/`` (VASP files, the
mlearn SNAP/qSNAP Mo models, a FitSNAP Ta subset; each folder's README gives its citation
and licence) and ``examples/mo/data/`` (the mlearn Mo set the README's example runs on).
Nothing is read from outside the clone.

``tiny_potential`` trains two small se_e2_a models on a subset of the mlearn Mo
training set (real ``dp --pt train`` and ``freeze``; no evaluation, no compression) and
returns the ``Potential`` artifact. Other stages' tests use it as their potential.

Skip policy: a test may skip only for a reason a user can act on, i.e. no GPU. Under
``CI=true`` any other skip (missing data, a missing tool) is turned into a failure that
quotes the skip reason (``pytest_runtest_makereport`` and ``pytest_make_collect_report``
below), so CI cannot pass with part of the suite silently not run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/core/test_core_skip_policy.py runs inner sessions

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
MO_DATA = TESTS.parent / "examples" / "mo" / "data"
MO_TRAIN = MO_DATA / "training.json"
MO_TEST = MO_DATA / "test.json"
VASP = DATA / "vasp"
FITSNAP_TA = DATA / "fitsnap_Ta" / "JSON"
MO_PEERS = DATA / "mlearn_Mo_peer_models"

#: Words that make a skip acceptable under CI=true: the machine has no GPU.
ALLOWED_SKIP_WORDS = ("gpu", "cuda")


def ci_mode() -> bool:
    """True where ``CI`` is set to true/1/yes (GitHub Actions, GitLab and .ci/run set it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _fail_skip_in_ci(rep) -> None:
    """Under CI=true, turn a skip report whose reason names no GPU into a failure."""
    if not rep.skipped or hasattr(rep, "wasxfail") or not ci_mode():
        return
    reason = _skip_reason(rep.longrepr)
    if any(w in reason.lower() for w in ALLOWED_SKIP_WORDS):
        return
    rep.outcome = "failed"
    rep.longrepr = (f"CI=true: a skip fails the run unless it is for a missing GPU; "
                    f"this one was: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


def _require(path: Path) -> Path:
    """The path of a data file that ships with the repository: missing is a failure."""
    if not path.exists():
        pytest.fail(f"test data missing: {path} (it ships with the repository: "
                    f"a broken checkout?)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def mo_train_json() -> Path:
    """The mlearn Mo training.json (194 frames), from examples/mo/data."""
    return _require(MO_TRAIN)


@pytest.fixture(scope="session")
def mo_test_json() -> Path:
    """The mlearn Mo test.json (23 frames), from examples/mo/data."""
    return _require(MO_TEST)


@pytest.fixture(scope="session")
def vasp_dir() -> Path:
    """Raw VASP outputs (dpdata test files), including awkward ones."""
    return _require(VASP)


@pytest.fixture(scope="session")
def fitsnap_ta_dir() -> Path:
    """FitSNAP Ta JSON folders (one per group; 54 of the 363 configurations)."""
    return _require(FITSNAP_TA)


@pytest.fixture(scope="session")
def mo_peer_models() -> Path:
    """The published mlearn SNAP (``snap/``) and quadratic SNAP (``qsnap/``) Mo models."""
    return _require(MO_PEERS)


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
