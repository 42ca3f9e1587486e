"""Which device DeePMD trains on (``Resources.device``): the CPU with every GPU hidden,
or the GPU; either model learns and runs on the CPU; a GPU asked for and absent is a
one-line error before anything runs."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from scalebridge.errors import SettingsError
from scalebridge.potentials import EvaluateSettings, TrainSettings, load_dataset
from scalebridge.runtime import program_env, torch_device
from scalebridge.settings import Resources

HAS_CUDA = torch.cuda.is_available()
SMALL = {"descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4, "rcut_a": 5.0,
                        "rcut_smth_a": 0.5},
         "fitting_neuron": [32, 32], "steps": 60, "ensemble": 1, "disp_freq": 20,
         "start_lr": 2e-3, "stop_lr": 1e-4, "compress": False, "evaluate": False,
         "precision": "float64", "seed": 3}


def test_torch_device_resolves_each_setting():
    assert torch_device("cpu") == "cpu"
    assert torch_device("auto") == ("cuda" if HAS_CUDA else "cpu")
    if HAS_CUDA:
        assert torch_device("cuda") == "cuda"
    else:
        with pytest.raises(SettingsError, match="sees no CUDA device"):
            torch_device("cuda")
    with pytest.raises(SettingsError, match="expected auto, cpu or cuda"):
        torch_device("gpu")


def test_programs_see_no_gpu_unless_asked(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert program_env()["CUDA_VISIBLE_DEVICES"] == ""
    assert "CUDA_VISIBLE_DEVICES" not in program_env(gpu=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")       # the user's own choice stands
    assert program_env()["CUDA_VISIBLE_DEVICES"] == "1"
    assert program_env(gpu=True)["CUDA_VISIBLE_DEVICES"] == "1"


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA device is present: cuda is a valid choice")
def test_cuda_without_a_gpu_fails_before_training(tmp_path, tiny_dataset):
    with pytest.raises(SettingsError, match="sees no CUDA device") as e:
        TrainSettings.model_validate(SMALL).make(tiny_dataset, tmp_path / "pot",
                                                 Resources(device="cuda"))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "pot").exists()                 # nothing half-written


def _computing_device(train_log) -> str:
    """The device DeePMD's own start-up summary names ("CPU", "CUDA")."""
    m = re.search(r"computing device\W+(\w+)", train_log.read_text(), re.IGNORECASE)
    assert m, f"no 'Computing Device' line in {train_log}"
    return m.group(1).upper()


def test_cpu_training_records_its_device_and_shows_progress(tmp_path, tiny_dataset,
                                                           monkeypatch, caplog):
    monkeypatch.setenv("SCALEBRIDGE_NO_PROGRESS", "1")     # log lines, also on a terminal
    monkeypatch.setattr("scalebridge.log.PLAIN_EVERY_S", 0.0)
    with caplog.at_level(logging.INFO, logger="scalebridge.progress"):
        art = TrainSettings.model_validate(SMALL).make(tiny_dataset, tmp_path / "pot",
                                                       Resources(device="cpu"))
    # the bar follows DeePMD's "Batch  N:" lines to the last step
    shown = [r.getMessage() for r in caplog.records if r.name == "scalebridge.progress"]
    assert any("training models: 100% (60/60)" in m for m in shown), shown
    assert art.summary["train_device"] == "cpu"
    assert json.loads((art.path / "potential.json").read_text())["train_device"] == "cpu"
    assert _computing_device(art.path / "train.log") == "CPU"


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device"))])
def test_a_model_trained_on_each_device_learns_and_runs_on_the_cpu(device, tmp_path,
                                                                   tiny_dataset):
    """The two devices draw different initial weights from the same seed (torch's CPU and
    CUDA generators differ), so their learning curves are not compared step by step; each
    model must have learned the forces, scored by ``dp test`` on the CPU (the GPU's model
    is the one LAMMPS will run on CPU cores)."""
    art = TrainSettings.model_validate({**SMALL, "steps": 400, "disp_freq": 100}).make(
        tiny_dataset, tmp_path / "pot", Resources(device=device))
    assert art.summary["train_device"].startswith("cpu" if device == "cpu" else "cuda (")
    assert _computing_device(art.path / "train.log") == device.upper()   # DeePMD's own
    ev = EvaluateSettings(split="test", properties=False).make(art, tiny_dataset,
                                                               tmp_path / "ev")
    ov = json.loads((ev.path / "metrics.json").read_text())["test"]["overall"]
    forces = np.concatenate([f.forces for f in load_dataset(tiny_dataset).frames("test")])
    zero_model = float(np.sqrt(np.mean(forces ** 2)))     # what predicting F = 0 scores
    # untrained ~1.0; 60 steps 0.90, 400 steps 0.41 on the CPU
    assert ov["force_rmse_ev_a"] < 0.7 * zero_model, (ov["force_rmse_ev_a"], zero_model)
