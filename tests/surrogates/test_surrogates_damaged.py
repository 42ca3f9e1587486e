"""A damaged surrogate: non-finite parameters fail check_constitutive (``finite``), and a
damaged surrogate.json or model.pt is a one-line error naming the file (restricted
loading only: never the advice to load with ``weights_only=False``)."""

from __future__ import annotations

import fractions
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scalebridge.artifacts import produce
from scalebridge.errors import ArtifactError
from scalebridge.surrogates import J2Plasticity, LinearHardening, VoceHardening
from scalebridge.surrogates.checks import ConstitutiveCheckError, check_constitutive
from scalebridge.surrogates.neural import MonotoneHardeningNet
from scalebridge.surrogates.train import load_surrogate

E, NU = 70e3, 0.3


def make_surrogate(path, hidden=4):
    """A small hand-made NeuralJ2 Surrogate artifact (untrained, σ_y(0) = 250 MPa)."""
    net = MonotoneHardeningNet(0, hidden, 1)
    with torch.no_grad():
        g0 = float(net(torch.zeros(1, dtype=torch.float64),
                       torch.zeros((1, 0), dtype=torch.float64))[0])
    rec = {"class": "NeuralJ2", "config": {"hidden": hidden, "layers": 1, "n_cond": 0},
           "scalers": {"ep_scale": 0.01, "sigma_scale": 250.0 / g0, "features": [],
                       "feature_mean": [], "feature_std": [], "feature_min": [],
                       "feature_max": []},
           "elastic": {"bulk_mpa": E / (3 * (1 - 2 * NU)), "shear_mpa": E / (2 * (1 + NU))},
           "temperature_k": 300.0,
           "training_range": {"eps_p_eq": [0.0, 0.05], "temperature_k": [300.0, 300.0],
                              "plastic_rate_s": [1e-6, 1.0], "strain_norm": [0.0, 0.02]}}

    def build(work):
        torch.save(net.state_dict(), work / "model.pt")
        (work / "surrogate.json").write_text(json.dumps(rec))
        return {}

    return produce("Surrogate", path, {"hidden": hidden}, {}, build)


def _cli(*args):
    from scalebridge.workflows.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_error(res, *needles):
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output and "weights_only" not in res.output
    lines = [ln for ln in res.output.splitlines() if all(n in ln for n in needles)]
    assert len(lines) == 1, res.output
    return lines[0]


@pytest.mark.parametrize("hardening", [LinearHardening(float("nan"), 0.0),
                                       VoceHardening(250.0, float("inf"))])
def test_check_fails_on_non_finite_parameters(hardening):
    model = J2Plasticity(E, NU, hardening)
    rep = check_constitutive(model, raise_on_failure=False)
    assert not rep.passed and rep.failed == ["finite"]
    assert "non-finite parameters: hardening.sigma" in rep.outcomes["finite"].note
    with pytest.raises(ConstitutiveCheckError, match=r"failed finite \(non-finite param"):
        check_constitutive(model)


def test_check_fails_on_non_finite_weights_and_outputs():
    model = J2Plasticity(E, NU, VoceHardening())

    class NaNWeights:
        def __init__(self):
            self.net = torch.nn.Linear(2, 2).double()
            with torch.no_grad():
                self.net.weight[0, 0] = float("nan")
            self.inner = model
            self.name, self.state_names = "nan-weights", model.state_names

        def initial_state(self, n):
            return model.initial_state(n)

        def update(self, *a, **k):
            return model.update(*a, **k)

    rep = check_constitutive(NaNWeights(), raise_on_failure=False)
    assert rep.failed == ["finite"] and "net.weight" in rep.outcomes["finite"].note

    class NaNOutputs:
        name, state_names = "nan-outputs", model.state_names

        def initial_state(self, n):
            return model.initial_state(n)

        def update(self, strain, dstrain, state, dt=1.0):
            res = model.update(strain, dstrain, state, dt)
            big = np.linalg.norm(strain + dstrain, axis=1) > 4e-3
            res.stress[big] = np.nan
            return res

    rep = check_constitutive(NaNOutputs(), raise_on_failure=False)
    assert not rep.outcomes["finite"].passed
    assert "non-finite stress" in rep.outcomes["finite"].note
    # the analytic laws pass it
    assert check_constitutive(model).outcomes["finite"].passed


def test_nan_sigma_scale_is_a_one_line_error(tmp_path):
    art = make_surrogate(tmp_path / "s")
    assert load_surrogate(art.path).neural.sigma_scale > 0
    path = art.path / "surrogate.json"
    rec = json.loads(path.read_text())
    rec["scalers"]["sigma_scale"] = float("nan")
    path.write_text(json.dumps(rec))                       # writes NaN, as json allows
    with pytest.raises(ArtifactError) as e:
        load_surrogate(art.path)
    assert str(e.value) == (f"{path}: scalers.sigma_scale is nan, not a finite number: "
                            "a damaged surrogate")
    line = _one_line_error(_cli("surrogates", "check", art.path), "sigma_scale")
    assert str(path) in line
    _one_line_error(_cli("fem", "run", "--surrogate", art.path, "--out", tmp_path / "fem"),
                    "sigma_scale is nan")


@pytest.mark.parametrize("damage", ["random", "empty", "foreign", "nan", "mismatch"])
def test_damaged_model_pt_is_a_one_line_error(tmp_path, damage):
    art = make_surrogate(tmp_path / "s")
    pt = art.path / "model.pt"
    if damage == "random":
        pt.write_bytes(os.urandom(4096))
    elif damage == "empty":
        pt.write_bytes(b"")
    elif damage == "foreign":      # a pickle of an arbitrary object: refused, not run
        torch.save({"w": fractions.Fraction(1, 2)}, pt)
    elif damage == "nan":
        state = torch.load(pt, weights_only=True)
        state["head_b"][0] = float("nan")
        torch.save(state, pt)
    else:
        torch.save(MonotoneHardeningNet(0, 8, 1).state_dict(), pt)
    with pytest.raises(ArtifactError) as e:
        load_surrogate(art.path)
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg and msg.startswith(str(pt))
    if damage in ("random", "empty", "foreign"):
        assert "is not a readable surrogate model file (damaged or not a model): " in msg
    elif damage == "nan":
        assert "tensor 'head_b' has non-finite values" in msg
    else:
        assert "do not match the network" in msg
    if damage == "random":
        _one_line_error(_cli("surrogates", "check", art.path), "not a readable")
        _one_line_error(_cli("fem", "run", "--surrogate", art.path, "--out",
                             tmp_path / "fem"), "not a readable surrogate model file")
