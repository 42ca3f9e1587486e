"""Which device DeePMD trains on (``Resources.device``): the CPU with every GPU hidden,
or the GPU, with the same model either way; a GPU asked for and absent is a one-line
error before anything runs."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
from scalebridge.errors import SettingsError
from scalebridge.potentials import TrainSettings
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


def _last_lcurve(path) -> list[float]:
    rows = [ln.split() for ln in path.read_text().splitlines() if not ln.startswith("#")]
    return [float(x) for x in rows[-1]]


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


@pytest.mark.skipif(not HAS_CUDA, reason="no CUDA device")
def test_training_on_cuda_matches_the_cpu(tmp_path, tiny_dataset):
    """Same seed, float64: the GPU's learning curve is the CPU's (to summation order)."""
    arts = {d: TrainSettings.model_validate(SMALL).make(tiny_dataset, tmp_path / d,
                                                        Resources(device=d))
            for d in ("cpu", "cuda")}
    assert arts["cuda"].summary["train_device"].startswith("cuda (")
    assert arts["cpu"].summary["train_device"] == "cpu"
    assert _computing_device(arts["cuda"].path / "train.log") == "CUDA"   # DeePMD's own
    cpu, gpu = (_last_lcurve(arts[d].path / "train" / "model_0" / "lcurve.out")
                for d in ("cpu", "cuda"))
    assert cpu[0] == gpu[0] == SMALL["steps"]
    assert gpu[1:-1] == pytest.approx(cpu[1:-1], rel=1e-3)   # losses; the lr column last
