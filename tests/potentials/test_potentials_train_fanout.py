"""Ensemble members as fan-out tasks: trained in a process pool (one task per member),
the models are the ones the serial run (one dp process for all members) makes.

The serial run is the session's ``tiny_potential`` (2 members, trained once for the
suite), so this test adds only the parallel training."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from scalebridge.potentials import TrainSettings
from scalebridge.workflows.engine import LocalMapper

from ..conftest import TINY_TRAIN


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lcurve(path):
    return np.loadtxt(path, ndmin=2)


@pytest.mark.slow
def test_members_trained_in_parallel_equal_the_serial_ensemble(tmp_path, tiny_dataset,
                                                               tiny_potential):
    serial = tiny_potential  # TINY_TRAIN, trained with no mapper
    pool = LocalMapper(workers=2)
    try:
        fanned = TrainSettings.model_validate(TINY_TRAIN).make(tiny_dataset,
                                                               tmp_path / "pool", mapper=pool)
    finally:
        pool.close()
    # same settings and data (the mapper is machine settings: not in the fingerprint)
    for key in ("settings", "inputs"):
        assert fanned.manifest[key] == serial.manifest[key], key
    pj_s = json.loads((serial.path / "potential.json").read_text())
    pj_f = json.loads((fanned.path / "potential.json").read_text())
    assert pj_f["models"] == pj_s["models"] == ["models/model_0.pth", "models/model_1.pth"]
    assert len(pj_f["train_seconds"]) == 2
    assert pj_f["energy_bias_shift_ev"] == pj_s["energy_bias_shift_ev"]
    for i in range(2):  # the learning curves, step by step, and the frozen models
        lc = f"train/model_{i}/lcurve.out"
        np.testing.assert_array_equal(_lcurve(fanned.path / lc), _lcurve(serial.path / lc))
        m = f"models/model_{i}.pth"
        assert _sha(fanned.path / m) == _sha(serial.path / m), m
    assert _sha(serial.path / "models/model_0.pth") != _sha(serial.path / "models/model_1.pth")
    # one train.log with both members, in member order, as the serial run writes it
    log = (fanned.path / "train.log").read_text()
    assert log.index("model_0") < log.index("model_1")
    assert not list((fanned.path / "train").glob("model_*/train.log"))
