"""Mobility laws: the protocol checker, analytic laws, neural law guarantees, save/load,
and the fit from DefectStats (recovering B within its stated uncertainty)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scalebridge.dd_coupling import (
    FitMobilitySettings,
    KinkPairMobility,
    LinearDragMobility,
    NeuralMobility,
    ValidRange,
    check_mobility,
    load_mobility,
    save_mobility,
)
from scalebridge.dd_coupling.mobility import KB_EV, MobilityCheckError
from scalebridge.errors import DataError, OutOfRangeError, SettingsError

from .conftest import B_A, make_defect_stats, make_properties, sample_velocity_table

B = B_A * 1e-10


def test_drag_law_values_and_check():
    law = LinearDragMobility(burgers_m=B, b0_pa_s=2e-5, b1_pa_s_k=1e-7, saturation_m_s=3000.0)
    check_mobility(law)
    tau = np.array([1e6, 1e10])
    v = law.velocity(tau, 300.0, 0)
    drag = 2e-5 + 1e-7 * 300
    assert v[0] == pytest.approx(B * 1e6 / drag, rel=1e-4)       # linear at low stress
    assert v[1] < 3000.0 and v[1] > 0.9 * 3000.0                 # saturates toward c
    assert isinstance(law.velocity(torch.tensor(tau), 300.0, 0), torch.Tensor)


def test_kink_pair_law_is_thermally_activated():
    law = KinkPairMobility(burgers_m=B, enthalpy_ev=0.8, peierls_pa=900e6, attempt_m_s=1e3,
                           drag_pa_s=5e-5)
    check_mobility(law)
    tau = np.full(3, 300e6)
    v = law.velocity(tau, np.array([200.0, 400.0, 600.0]), 1)
    assert np.all(np.diff(v) > 0)
    # Arrhenius slope: ln v vs 1/T gives -ΔH(τ)/k with ΔH = H0 (1 - (τ/τP)^p)^q
    dh = 0.8 * (1 - (300 / 900) ** 0.5) ** 1.5
    lo = law.velocity(np.array([50e6]), np.array([100.0]), 1)[0]
    assert lo < law.velocity(np.array([50e6]), np.array([100.0]), 0)[0]  # screws slower
    slope = np.log(v[1] / v[0]) / (1 / 200 - 1 / 400)
    assert slope * KB_EV == pytest.approx(dh, rel=0.05)


@dataclass
class _BadLaw:
    """A law that violates the protocol in one chosen way."""

    kind: str
    name: str = "bad"
    valid_range: ValidRange = field(default_factory=ValidRange)

    def velocity(self, tau_pa, temperature_k, character):
        t = np.asarray(tau_pa, dtype=float)
        if self.kind == "even":
            v = 1e-6 * np.abs(t)
        elif self.kind == "nonmonotone":
            v = 1e-6 * t * np.cos(t / 1e8)
        elif self.kind == "shape":
            v = 1e-6 * t[:, None]
        else:
            v = -1e-6 * t
        return torch.as_tensor(v) if isinstance(tau_pa, torch.Tensor) else v


@pytest.mark.parametrize("kind", ["even", "nonmonotone", "shape", "negative"])
def test_check_mobility_rejects_bad_laws(kind):
    with pytest.raises(MobilityCheckError):
        check_mobility(_BadLaw(kind))


def _neural(members=3, seed=0) -> NeuralMobility:
    torch.manual_seed(seed)
    vr = ValidRange(tau_mpa=(0, 300.0), temperature_k=(100.0, 600.0), characters=("edge",))
    return NeuralMobility(300e6, 1000.0, 350.0, 250.0, vr, n_members=members)


def test_neural_law_is_odd_monotone_dissipative_for_any_weights():
    """Guarantees by construction: random (untrained) weights pass check_mobility."""
    for seed in range(3):
        law = _neural(seed=seed)
        for p in law.members.parameters():
            torch.nn.init.normal_(p, std=2.0)
        check_mobility(law)


def test_neural_law_out_of_range_policies(caplog):
    law = _neural()
    with pytest.raises(OutOfRangeError, match="outside the training range"):
        law.velocity(np.array([400e6]), 300.0, 0)
    with pytest.raises(OutOfRangeError):
        law.velocity(np.array([100e6]), 900.0, 0)
    with pytest.raises(OutOfRangeError):
        law.velocity(np.array([100e6]), 300.0, 1)          # screws not trained
    law.out_of_range = "warn"
    law.velocity(np.array([400e6]), 300.0, 0)
    assert "outside the training range" in caplog.text
    law.out_of_range = "clamp"
    v_edge = law.velocity(np.array([300e6, 5e9]), 300.0, 0)
    assert v_edge[1] == pytest.approx(v_edge[0])            # clamped, still monotone


def test_save_load_roundtrip(tmp_path):
    law = _neural()
    save_mobility(law, tmp_path)
    back = load_mobility(tmp_path)
    tau = np.linspace(-250e6, 250e6, 7)
    assert np.allclose(back.velocity(tau, 300.0, 0), law.velocity(tau, 300.0, 0))
    kp = KinkPairMobility(burgers_m=B, enthalpy_ev=0.8, peierls_pa=9e8, attempt_m_s=1e3,
                          drag_pa_s=5e-5)
    save_mobility(kp, tmp_path / "kp" if (tmp_path / "kp").mkdir() is None else tmp_path)
    assert load_mobility(tmp_path / "kp").velocity(tau, 300.0, 1)[-1] == pytest.approx(
        kp.velocity(tau, 300.0, 1)[-1])


# ----------------------------------------------------------------------------- fitting
B0, B1 = 1.0e-5, 5.0e-8          # B(T) = B0 + B1·T, Pa·s


def test_fit_recovers_drag_coefficient_within_uncertainty(tmp_path):
    rng = np.random.default_rng(0)
    rows = sample_velocity_table(rng, B0, B1)
    ds = make_defect_stats(tmp_path / "defects", rows)
    props = make_properties(tmp_path / "props")
    art = FitMobilitySettings(members=2, epochs=800).make(ds, tmp_path / "mob",
                                                          properties=props)
    fit = json.loads((art.path / "fit.json").read_text())["drag"]["edge"]
    for row in fit["drag_by_temperature"]:
        true = B0 + B1 * row["temperature_k"]
        err = row["drag_err_pa_s"]
        assert 0 < err < 0.05 * true
        assert abs(row["drag_pa_s"] - true) < 3 * err, row
    assert fit["saturation_m_s"] == pytest.approx(3000.0, rel=0.15)
    # the neural law reproduces the data and carries an ensemble uncertainty
    law = load_mobility(art.path)
    assert isinstance(law, NeuralMobility)
    check_mobility(law)
    t = np.array([r["temperature_k"] for r in rows])
    tau = np.array([r["tau_mpa"] for r in rows]) * 1e6
    v = np.array([r["velocity_m_s"] for r in rows])
    pred, std = law.velocity_with_uncertainty(tau, t, np.zeros(len(t), int))
    assert 1 - np.sum((pred - v) ** 2) / np.sum((v - v.mean()) ** 2) > 0.99
    assert np.all(std >= 0) and np.mean(std) > 0
    assert art.summary["neural_r2"] > 0.99
    assert (art.path / "velocity_fit.png").is_file() and (art.path / "velocity_fit.csv").is_file()
    # outside the MD stress range the fitted law refuses
    with pytest.raises(OutOfRangeError):
        law.velocity(np.array([2 * 300e6]), 300.0, 0)
    # second call with the same inputs is skipped (same fingerprint, same files)
    again = FitMobilitySettings(members=2, epochs=800).make(ds, tmp_path / "mob",
                                                            properties=props)
    assert again.fingerprint == art.fingerprint


def test_fit_cli_and_bad_inputs(tmp_path):
    from scalebridge.workflows.cli import cli

    rng = np.random.default_rng(1)
    rows = sample_velocity_table(rng, 2e-5, 0.0, temps=(300.0,), c=1e9)
    ds = make_defect_stats(tmp_path / "defects", rows)
    props = make_properties(tmp_path / "props")
    res = CliRunner().invoke(cli, ["dd", "fit-mobility", str(ds.path), "--properties",
                                   str(props.path), "--law", "drag", "--out",
                                   str(tmp_path / "mob")])
    assert res.exit_code == 0, res.output
    assert "edge drag B0" in res.output
    law = load_mobility(tmp_path / "mob")
    assert isinstance(law, LinearDragMobility)
    assert law.b0_pa_s == pytest.approx(2e-5, rel=0.05)
    assert law.saturation_m_s is None                  # no saturation in the data
    # a bad row: one line naming the file and the line
    bad = [dict(r) for r in rows]
    bad[3]["tau_mpa"] = "abc"
    ds_bad = make_defect_stats(tmp_path / "bad", bad)
    with pytest.raises(DataError, match=r"velocity.csv: line 5: column tau_mpa"):
        FitMobilitySettings(law="drag").make(ds_bad, tmp_path / "m2", properties=props)
    res = CliRunner().invoke(cli, ["dd", "fit-mobility", str(ds_bad.path), "--properties",
                                   str(props.path), "--out", str(tmp_path / "m3")])
    assert res.exit_code == 1 and res.output.startswith("error: ") and "line 5" in res.output
    ds_nocol = make_defect_stats(tmp_path / "nocol", rows, header=["character", "tau_mpa"])
    with pytest.raises(DataError, match="missing column"):
        FitMobilitySettings().make(ds_nocol, tmp_path / "m4", properties=props)
    with pytest.raises(SettingsError, match="Burgers"):
        FitMobilitySettings().make(ds, tmp_path / "m5")
    bad_props = make_properties(tmp_path / "badprops", nu=0.7)
    with pytest.raises(DataError, match="poisson_ratio"):
        FitMobilitySettings().make(ds, tmp_path / "m6", properties=bad_props)
    assert math.isfinite(law.b0_pa_s)


def test_fit_recovers_kink_pair_activation_enthalpy(tmp_path):
    """Screw velocities sampled from the kink-pair law at three temperatures (5% noise):
    the fitted H0 and Peierls stress agree with the truth within 3 standard errors."""
    true = KinkPairMobility(burgers_m=B, enthalpy_ev=0.6, peierls_pa=600e6, attempt_m_s=2e3,
                            drag_pa_s=1e-5)
    rng = np.random.default_rng(2)
    rows = sample_velocity_table(rng, 1e-5, 0.0, temps=(300.0,), c=1e9)  # edge rows
    for temp in (150.0, 250.0, 400.0):
        for tau in np.linspace(80, 560, 9):
            v = float(true.velocity(np.array([tau * 1e6]), temp, 1)[0])
            err = 0.05 * v
            rows.append({"character": "screw", "temperature_k": temp, "tau_mpa": tau,
                         "velocity_m_s": v + rng.normal(0, err), "velocity_err_m_s": err,
                         "n_atoms": 20000, "duration_ps": 100.0})
    ds = make_defect_stats(tmp_path / "defects", rows)
    art = FitMobilitySettings(law="drag").make(ds, tmp_path / "mob",
                                               properties=make_properties(tmp_path / "p"))
    kp = json.loads((art.path / "fit.json").read_text())["kink_pair"]
    assert kp["drag_pa_s"] == pytest.approx(1e-5, rel=0.05)      # from the edge rows
    assert 0 < kp["enthalpy_err_ev"] < 0.1
    assert abs(kp["enthalpy_ev"] - 0.6) < 3 * kp["enthalpy_err_ev"]
    assert abs(kp["peierls_mpa"] - 600) < 3 * kp["peierls_err_mpa"]
    assert art.summary["kink_pair_enthalpy_ev"] == pytest.approx(kp["enthalpy_ev"])


def test_fit_with_three_rows_like_the_example_chain(tmp_path):
    """Three saturated edge points (the Mo example's MD grid): the drag fit still
    resolves B and c, and the neural law goes through the points."""
    from scalebridge.dd_coupling.fit import fit_drag, fit_neural
    from scalebridge.dd_coupling.inputs import VelocityTable

    rows = sample_velocity_table(np.random.default_rng(0), 2e-5, 0.0, temps=(300.0,),
                                 tau_mpa=np.array([250.0, 500.0, 1000.0]))
    t = VelocityTable(np.zeros(3, int), np.full(3, 300.0),
                      np.array([r["tau_mpa"] for r in rows]) * 1e6,
                      np.array([r["velocity_m_s"] for r in rows]),
                      np.array([r["velocity_err_m_s"] for r in rows]), "three rows")
    d = fit_drag(t, B)
    assert abs(d["b0_pa_s"] - 2e-5) < 3 * d["b0_err_pa_s"] and d["b0_err_pa_s"] < 4e-6
    assert d["saturation_m_s"] == pytest.approx(3000.0, rel=0.1)
    law = fit_neural(t, FitMobilitySettings(members=2, epochs=600))
    pred = law.velocity(t.tau_pa, t.temperature_k, t.character)
    assert np.allclose(pred, t.velocity_m_s, rtol=0.03)
