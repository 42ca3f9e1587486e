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
from scalebridge.errors import ArtifactError, DataError, OutOfRangeError, SettingsError

from .conftest import (
    B_A,
    law_from_before,
    make_defect_stats,
    make_properties,
    sample_velocity_table,
)

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
            # odd and dissipative (1.5 + cos >= 0.5), falling where x sin x > 1.5 + cos x
            # (x = tau / 30 MPa: from ~47 MPa): only the monotone check can catch it
            v = 1e-6 * t * (1.5 + np.cos(t / 3e7))
        elif self.kind == "shape":
            v = 1e-6 * t[:, None]
        else:
            v = -1e-6 * t
        return torch.as_tensor(v) if isinstance(tau_pa, torch.Tensor) else v


@pytest.mark.parametrize("kind, match", [
    ("even", "not odd"), ("nonmonotone", "not monotone"), ("shape", ""),
    ("negative", "negative dissipation")])
def test_check_mobility_rejects_bad_laws(kind, match):
    """Each bad law fails the check written for its defect (not an earlier one)."""
    with pytest.raises(MobilityCheckError, match=match):
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


def test_velocity_fit_title_states_what_is_drawn(tmp_path):
    """velocity_fit.png's title names only the curves it draws: no neural law, no neural
    curve or ±2σ band promised; with one, the band's largest 2σ and the largest gap
    between the two laws are stated (both can be thinner than a line at this scale)."""
    import csv

    from scalebridge.dd_coupling.fit import _plot_fit, fit_neural
    from scalebridge.dd_coupling.inputs import read_velocity_table

    rows = sample_velocity_table(np.random.default_rng(2), B0, B1, temps=(300.0,))
    t = read_velocity_table(make_defect_stats(tmp_path / "defects", rows))
    drag = LinearDragMobility(burgers_m=B, b0_pa_s=B0, b1_pa_s_k=B1, saturation_m_s=3000.0)
    title = _plot_fit(t, drag, None, tmp_path)
    assert "drag law (dashed)" in title and "neural" not in title and "σ" not in title
    neural = fit_neural(t, FitMobilitySettings(members=2, epochs=30))
    title = _plot_fit(t, drag, neural, tmp_path)
    with open(tmp_path / "velocity_fit.csv") as f:
        grid = list(csv.DictReader(f))
    two_sd = max(2 * float(r["neural_std_m_s"]) for r in grid)
    gap = max(abs(float(r["neural_velocity_m_s"]) - float(r["drag_velocity_m_s"]))
              for r in grid)
    assert "neural mean (solid), ±2σ band" in title
    assert f"2σ ≤ {two_sd:.3g} m/s" in title and f"|neural − drag| ≤ {gap:.3g} m/s" in title
    assert (tmp_path / "velocity_fit.png").stat().st_size > 0


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


def test_neural_fit_is_the_same_whatever_ran_before_it():
    """The members' initial weights come from the seed, not from the state torch's
    global generator was left in by earlier work in the process (a chain run trains and
    evaluates other networks first): two fits with the generator in different states
    give bit-identical laws."""
    from scalebridge.dd_coupling.fit import fit_neural
    from scalebridge.dd_coupling.inputs import VelocityTable

    rows = sample_velocity_table(np.random.default_rng(1), 2e-5, 0.0, temps=(300.0,))
    t = VelocityTable(np.zeros(len(rows), int), np.full(len(rows), 300.0),
                      np.array([r["tau_mpa"] for r in rows]) * 1e6,
                      np.array([r["velocity_m_s"] for r in rows]),
                      np.array([r["velocity_err_m_s"] for r in rows]), "rows")
    s = FitMobilitySettings(members=2, epochs=20)
    laws = []
    for burn in (0, 7):
        torch.manual_seed(1234)
        torch.rand(burn)                    # earlier work moved the global generator
        laws.append(fit_neural(t, s))
    for a, b in zip(laws[0].members, laws[1].members, strict=True):
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)


# ----------------------------------------------------------------------------- threshold τ₀
def test_drag_law_threshold_stress():
    """v = sign(τ) b max(|τ| − τ₀(T), 0)/B: zero below τ₀, linear in the excess above it,
    odd, τ₀(T) = τ₀,0 + τ₀,1·T clamped at 0, screws with their own τ₀."""
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, tau0_pa=50e6, tau0_pa_k=-0.1e6,
                             screw_tau0_pa=200e6)
    check_mobility(law)
    tau = np.array([-40e6, 0.0, 40e6, 45e6, 150e6, -150e6])
    v = law.velocity(tau, 0.0, 0)                       # τ₀ = 50 MPa at 0 K
    assert np.all(v[:4] == 0.0)
    assert v[4] == pytest.approx(B * 100e6 / 5e-5, rel=1e-12)
    assert v[5] == -v[4]
    v300 = law.velocity(np.array([40e6]), 300.0, 0)[0]  # τ₀ = 50 − 30 = 20 MPa at 300 K
    assert v300 == pytest.approx(B * 20e6 / 5e-5, rel=1e-12)
    v1000 = law.velocity(np.array([0.0, 1e6]), 1000.0, 0)  # 50 − 100 < 0: clamped at 0
    assert v1000[0] == 0.0 and v1000[1] == pytest.approx(B * 1e6 / 5e-5, rel=1e-12)
    assert law.velocity(np.array([150e6]), 0.0, 1)[0] == 0.0       # screw τ₀ = 200 MPa
    assert law.velocity(np.array([250e6]), 0.0, 1)[0] == pytest.approx(B * 50e6 / 5e-5)
    sat = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, tau0_pa=50e6, saturation_m_s=3000.0)
    check_mobility(sat)
    vs = sat.velocity(np.array([40e6, 1e10]), 300.0, 0)
    assert vs[0] == 0.0 and 0.9 * 3000.0 < vs[1] < 3000.0
    with pytest.raises(ValueError, match="tau0_pa"):
        LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, tau0_pa=math.nan)


def test_drag_law_threshold_config_roundtrip(tmp_path):
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, b1_pa_s_k=1e-8, tau0_pa=60e6,
                             tau0_pa_k=-0.05e6, screw_tau0_pa=300e6, screw_tau0_pa_k=-0.2e6,
                             saturation_m_s=3000.0)
    save_mobility(law, tmp_path)
    back = load_mobility(tmp_path)
    assert back.config() == law.config()
    tau = np.linspace(-500e6, 500e6, 41)
    for c in (0, 1):
        assert np.array_equal(back.velocity(tau, 300.0, c), law.velocity(tau, 300.0, c))
    # a mobility.json written before the threshold existed loads as pure drag (τ₀ = 0)
    doc = json.loads((tmp_path / "mobility.json").read_text())
    for k in ("tau0_pa", "tau0_pa_k", "screw_tau0_pa", "screw_tau0_pa_k"):
        del doc["config"][k]
    (tmp_path / "mobility.json").write_text(json.dumps(doc))
    old = load_mobility(tmp_path)
    assert old.tau0_pa == 0.0 and old.screw_tau0_pa is None
    drag = 5e-5 + 1e-8 * 300
    v = np.asarray(old.velocity(np.array([10e6]), 300.0, 0))
    assert v[0] == pytest.approx(B * 10e6 / drag / math.sqrt(1 + (B * 10e6 / drag / 3e3) ** 2))


def _threshold_rows(rng, tau0_mpa, drag, temps=(100.0, 300.0),
                    taus=(-450, -300, -150, 150, 250, 350, 450), noise=0.03):
    """velocity.csv rows of v = sign(τ) b (|τ| − τ₀)/B with relative noise (edge)."""
    rows = []
    for t in temps:
        for tau in taus:
            v = math.copysign(B * (abs(tau) - tau0_mpa) * 1e6 / drag, tau)
            err = noise * abs(v) + 1.0
            rows.append({"character": "edge", "temperature_k": t, "tau_mpa": tau,
                         "velocity_m_s": v + rng.normal(0, err), "velocity_err_m_s": err,
                         "n_atoms": 20000, "duration_ps": 100.0})
    return rows


def test_fit_passes_threshold_to_the_drag_law(tmp_path):
    """A table v = b(τ − τ₀)/B with noise, through the dd_coupling fit path: the DD's
    LinearDragMobility gets τ₀ and B, both within their 95% intervals of the truth, and
    the same B and τ₀ as md's fit_drag reports for the same rows."""
    from scalebridge.dd_coupling.inputs import read_velocity_table
    from scalebridge.md import glide_fit

    from .conftest import MU_GPA

    tau0, drag = 60.0, 5e-5
    rows = _threshold_rows(np.random.default_rng(0), tau0, drag)
    ds = make_defect_stats(tmp_path / "defects", rows)
    art = FitMobilitySettings(law="drag").make(ds, tmp_path / "mob",
                                               properties=make_properties(tmp_path / "p"))
    law = load_mobility(art.path)
    assert isinstance(law, LinearDragMobility)
    s = art.summary
    lo, hi = s["drag_edge_tau0_ci95_mpa"]
    assert lo < tau0 < hi and hi - lo < 20.0
    assert law.tau0_pa == pytest.approx(s["drag_edge_tau0_mpa"] * 1e6, rel=1e-12)
    assert law.tau0_pa_k == 0.0                         # no τ₀ trend in the data
    assert s["drag_edge_tau0_over_mu"] == pytest.approx(law.tau0_pa / (MU_GPA * 1e9))
    fit = json.loads((art.path / "fit.json").read_text())
    assert fit["tau0_in_law"] is True and fit["fitted_by"] == "dd_coupling"
    # measured, not fixed: the chosen model fits τ₀, no note, a finite error
    assert next(m for m in fit["drag"]["edge"]["model"] if m["chosen"])["tau0"] == "free"
    assert "drag_edge_tau0_note" not in s and 0 < s["drag_edge_tau0_err_mpa"] < 10.0
    for r in fit["drag"]["edge"]["by_temperature"]:
        assert r["drag_ci95_pa_s"][0] < drag < r["drag_ci95_pa_s"][1], r
        assert r["tau0_ci95_mpa"][0] < tau0 < r["tau0_ci95_mpa"][1], r
    assert abs(law.b0_pa_s - drag) < 3 * s["drag_edge_b0_err_pa_s"]
    # the dof B's error rests on (the band's mobility term reads it) is the fit's own
    assert s["drag_edge_b0_dof"] == fit["drag"]["edge"]["dof"] >= 1
    # below τ₀ the DD's dislocations stand still; above, v = b(τ − τ₀)/B
    v = law.velocity(np.array([0.9 * law.tau0_pa, 300e6]), 300.0, 0)
    assert v[0] == 0.0
    assert v[1] == pytest.approx(B * (300e6 - law.tau0_pa) / law.b0_pa_s, rel=1e-12)
    # one implementation: md's fit_drag on the same table gives the same B and τ₀
    t = read_velocity_table(ds)
    md = glide_fit.fit_drag(t.tau_pa, t.temperature_k, t.velocity_m_s, t.velocity_err_m_s,
                            B)
    assert law.b0_pa_s == pytest.approx(md["b0_pa_s"], rel=1e-12)
    assert law.tau0_pa == pytest.approx(md["dd_tau0_mpa"] * 1e6, rel=1e-12)
    assert s["drag_edge_tau0_ci95_mpa"] == pytest.approx(md["dd_tau0_ci95_mpa"], rel=1e-12)
    # the law fits the data with its threshold: χ²/ν near 1, far below pure drag's
    pure = LinearDragMobility(burgers_m=B, b0_pa_s=law.b0_pa_s)
    sig = glide_fit.sigma(t.velocity_m_s, t.velocity_err_m_s)
    chi = [float(np.mean(((np.asarray(lw.velocity(t.tau_pa, t.temperature_k, 0))
                           - t.velocity_m_s) / sig) ** 2)) for lw in (law, pure)]
    assert chi[0] < 2.0 < 10 * chi[0] < chi[1]


def test_pure_drag_fixes_tau0_at_zero_as_a_choice_not_a_measurement(tmp_path):
    """A table v = bτ/B with noise (no threshold), through the dd_coupling fit path: the
    model selection fixes τ₀ = 0, and the summary says it is a choice: no τ₀ error or
    [0, 0] interval, a note with the scores with and without a threshold and the τ₀
    [95%] the best threshold model fitted at each temperature, each with its outcome
    (finite, covering the true 0). The DD law keeps τ₀ = 0 exactly: its velocities are
    pure drag's. A fit of before (τ₀ fixed with a [0, 0] interval, no candidate's τ₀
    recorded) reads as not measured too, its note the scores alone; the CLI prints the
    note."""
    from scalebridge.dd_coupling.fit import dd_threshold
    from scalebridge.workflows.cli import cli
    from scalebridge.workflows.report import summary_rows

    drag = 5e-5
    # two temperatures of seven stresses: χ² + k ln 14 prefers τ₀ = 0 for these rows
    rows = _threshold_rows(np.random.default_rng(0), 0.0, drag)
    ds = make_defect_stats(tmp_path / "defects", rows)
    props = make_properties(tmp_path / "p")
    art = FitMobilitySettings(law="drag").make(ds, tmp_path / "mob", properties=props)
    s, law = art.summary, load_mobility(art.path)
    fit = json.loads((art.path / "fit.json").read_text())
    edge = fit["drag"]["edge"]
    chosen = next(m for m in edge["model"] if m["chosen"])
    best = min((m for m in edge["model"] if m["tau0"] == "free"), key=lambda m: m["score"])
    assert chosen["tau0"] == "zero" and chosen["score"] < best["score"]
    est = best["tau0_by_temperature"]
    assert [e["temperature_k"] for e in est] == [100.0, 300.0]
    for e in est:
        lo, hi = e["tau0_ci95_mpa"]
        assert e["tau0_err_mpa"] > 0 and lo < 0.0 < hi and hi - lo < 100.0, e
    for r in edge["by_temperature"]:
        assert r["tau0_fixed"] and r["tau0_err_mpa"] is None and r["tau0_ci95_mpa"] == [
            None, None]
    th = fit["dd_threshold"]["edge"]
    assert th["dd_tau0_err_mpa"] is None and th["dd_tau0_ci95_mpa"] is None
    # the summary: τ₀ = 0 (the law's), no error or interval, the note
    assert s["drag_edge_tau0_mpa"] == 0.0 and s["drag_edge_tau0_over_mu"] == 0.0
    for k in ("err_mpa", "ci95_mpa", "ci95_over_mu"):
        assert f"drag_edge_tau0_{k}" not in s
    note = s["drag_edge_tau0_note"]
    scores = (f"fixed at 0 by model selection (chi2 + k ln n: {chosen['score']:.3g} "
              "without a threshold (linear) against "
              f"{best['score']:.3g} with one (linear))")
    said = []
    for e in est:                                # each temperature's own outcome
        lo, hi = e["tau0_ci95_mpa"]
        said.append(f"{e['tau0_mpa']:.4g} [{lo:.4g}, {hi:.4g}] MPa at "
                    f"{e['temperature_k']:g} K (its 95 % interval covers 0)")
    assert note == (f"{scores}; the best threshold model (linear) gives tau0 = "
                    + ", ".join(said))
    shown = dict(summary_rows(s))
    assert shown["drag_edge_tau0_note"] == note and not any(
        isinstance(x, list) and len(x) == 2 and x[0] == x[1] for x in shown.values())
    # the DD law: τ₀ = 0 exactly, v = bτ/B(T) with no offset
    assert isinstance(law, LinearDragMobility) and law.saturation_m_s is None
    assert law.tau0_pa == 0.0 and law.tau0_pa_k == 0.0
    tau = np.array([1e6, 50e6, 300e6])
    for temp in (100.0, 300.0):
        v = np.asarray(law.velocity(tau, temp, 0))
        assert np.array_equal(v, B * tau / (law.b0_pa_s + law.b1_pa_s_k * temp))
    # a fit of before (fixed τ₀ with a [0, 0] interval; its model entries without the
    # τ₀ each candidate fitted) reads as not measured too: the scores, no estimate
    old = {k: v for k, v in edge.items() if k != "model_skipped"}
    old.update(dd_tau0_err_mpa=0.0, dd_tau0_ci95_mpa=[0.0, 0.0], dd_tau0_err_mpa_k=0.0,
               dd_tau0_note="no threshold: the chosen model has tau0 = 0",
               model=[{k: v for k, v in m.items() if k not in ("tau0_by_temperature",
                                                               "n_params")}
                      for m in edge["model"]],
               by_temperature=[{**{k: v for k, v in r.items() if k != "tau0_note"},
                                "tau0_err_mpa": 0.0, "tau0_ci95_mpa": [0.0, 0.0]}
                               for r in edge["by_temperature"]])
    assert not any("tau0_by_temperature" in m for m in old["model"])
    again = dd_threshold(old)
    assert again["dd_tau0_mpa"] == 0.0 and again["dd_tau0_ci95_mpa"] is None
    assert again["dd_tau0_err_mpa"] is None and again["dd_tau0_note"] == scores
    assert "tau0 =" not in again["dd_tau0_note"]
    res = CliRunner().invoke(cli, ["dd", "fit-mobility", str(ds.path), "--properties",
                                   str(props.path), "--law", "drag", "--out",
                                   str(tmp_path / "mob2")])
    assert res.exit_code == 0, res.output
    assert f"edge threshold tau0 {note}" in res.output and "= 0 MPa, " not in res.output


# runs/mo_bench74's rows (defects/velocity.csv, 300 K: tau MPa, v and its error m/s) and
# its c_t and b (glide_fit.json)
MO74 = (("edge", 250.0, 1174.6478, 85.489669), ("edge", 500.0, 1687.1505, 96.190249),
        ("edge", 1500.0, 2369.2849, 81.043884), ("screw", 2800.0, 410.33316, 146.93879))
MO74_CT, MO74_B_A = 3844.8394781730426, 2.7438542675723503


def test_an_old_md_fit_of_a_fixed_tau0_reads_as_not_measured(tmp_path):
    """A glide_fit.json written before a τ₀ fixed at 0 was marked as not measured (rows
    with error 0 and a [0, 0] interval, no notes, candidates without their τ₀, the DD
    threshold [0, 0]; the Mo example's rows): the MobilityLaw's fit.json and summary
    read it as new fits write it: error None, interval [None, None], each row a note
    (the scores for the edges, one stress for the screw), the DD threshold unmeasured."""
    from scalebridge.artifacts import produce
    from scalebridge.dd_coupling.fit import md_glide_fits
    from scalebridge.md import glide_fit

    ch = np.array([r[0] for r in MO74])
    tau, v, e = (np.array([r[i] for r in MO74]) for i in (1, 2, 3))
    new = glide_fit.fit_glide_laws(ch, tau * 1e6, np.full(4, 300.0), v, e,
                                   MO74_B_A * 1e-10, shear_wave_m_s=MO74_CT)
    edge = new["drag"]["edge"]
    chosen = next(m for m in edge["model"] if m["chosen"])
    best = min((m for m in edge["model"] if m["tau0"] == "free"), key=lambda m: m["score"])
    scores = (f"fixed at 0 by model selection (chi2 + k ln n: {chosen['score']:.3g} without "
              f"a threshold (v_s fitted) against {best['score']:.3g} with one (v_s = c_t))")
    assert scores.endswith("3.16 without a threshold (v_s fitted) against 5.29 with one "
                           "(v_s = c_t))")
    one = ("fixed at 0, not fitted: one stress at 300 K (a threshold needs two or more "
           "distinct stresses at one temperature)")
    assert new["drag"]["screw"]["by_temperature"][0]["tau0_note"] == one

    def aged(f):                                 # as written before the mark
        rows = [{**{k: x for k, x in r.items() if k != "tau0_note"}, "tau0_err_mpa": 0.0,
                 "tau0_ci95_mpa": [0.0, 0.0]} for r in f["by_temperature"]]
        return {**{k: x for k, x in f.items() if k != "model_skipped"},
                "by_temperature": rows, "drag_by_temperature": rows,
                "model": [{k: x for k, x in m.items() if k not in ("tau0_by_temperature",
                                                                   "n_params")}
                          for m in f["model"]],
                "dd_tau0_err_mpa": 0.0, "dd_tau0_ci95_mpa": [0.0, 0.0],
                "dd_tau0_err_mpa_k": 0.0,
                "dd_tau0_note": "no threshold: the chosen model has tau0 = 0"}

    doc = {**new, "drag": {c: aged(f) for c, f in new["drag"].items()},
           "shear_wave_m_s": MO74_CT, "burgers_a": MO74_B_A}
    header = ["character", "temperature_k", "tau_mpa", "velocity_m_s", "velocity_err_m_s",
              "n_atoms", "duration_ps"]

    def build(work):
        (work / "velocity.csv").write_text("\n".join(
            [",".join(header)] + [f"{c},300,{t},{vv},{ee},465,2.5" for c, t, vv, ee in MO74])
            + "\n")
        (work / "glide_fit.json").write_text(json.dumps(doc))
        return {"rows": len(MO74)}

    ds = produce("DefectStats", tmp_path / "defects", {"old_glide_fit": 1}, {}, build)
    read = md_glide_fits(ds)
    for c, note in (("edge", scores), ("screw", one)):
        f = read["drag"][c]
        for key in ("by_temperature", "drag_by_temperature"):
            (r,) = f[key]
            assert r["tau0_fixed"] and r["tau0_err_mpa"] is None
            assert r["tau0_ci95_mpa"] == [None, None] and r["tau0_note"] == note
        assert f["dd_tau0_err_mpa"] is None and f["dd_tau0_ci95_mpa"] is None
        assert f["dd_tau0_note"] == note
    art = FitMobilitySettings(law="drag").make(ds, tmp_path / "mob",
                                               properties=make_properties(tmp_path / "p"))
    fit = json.loads((art.path / "fit.json").read_text())
    assert fit["fitted_by"] == "md"
    for c, note in (("edge", scores), ("screw", one)):
        (r,) = fit["drag"][c]["by_temperature"]
        assert r["tau0_err_mpa"] is None and r["tau0_ci95_mpa"] == [None, None]
        assert r["tau0_note"] == note and fit["dd_threshold"][c]["dd_tau0_note"] == note
        assert fit["drag"][c]["dd_tau0_err_mpa"] is None
        assert art.summary[f"drag_{c}_tau0_note"] == note
        assert f"drag_{c}_tau0_err_mpa" not in art.summary
        assert f"drag_{c}_tau0_ci95_mpa" not in art.summary


def test_the_md_fits_b0_dof_reaches_the_summary(tmp_path):
    """md's drag fit with the fitted window's term (glide_fit.window_systematic) gives B0
    the Welch-Satterthwaite dof of its statistical and window parts; the MobilityLaw
    summary's ``drag_edge_b0_dof`` (the band's mobility term reads it) is that dof, and
    the fit's residual dof where a glide_fit.json from before it has none."""
    from scalebridge.artifacts import produce
    from scalebridge.md import glide_fit

    ch = np.array([r[0] for r in MO74])
    tau, v, e = (np.array([r[i] for r in MO74]) for i in (1, 2, 3))
    new = glide_fit.fit_glide_laws(ch, tau * 1e6, np.full(4, 300.0), v, e,
                                   MO74_B_A * 1e-10, shear_wave_m_s=MO74_CT,
                                   ratio=np.array([0.7, 0.9, 1.0, 1.0]))
    edge = new["drag"]["edge"]
    assert edge["b0_window_err_pa_s"] > 0
    assert edge["b0_dof"] == pytest.approx(glide_fit.satterthwaite_dof(
        edge["b0_stat_err_pa_s"], edge["dof"], edge["b0_window_err_pa_s"],
        glide_fit.window_dof(edge["b0_window_err_pa_s"], edge["b0_window_noise_pa_s"],
                             edge["b0_window_noise_dof"])))
    # three edge points: the residual dof is 1; the window term (measured to within its
    # noise) raises the WS dof above it, set to 2.5 to see which one the summary reads
    assert edge["dof"] == 1 and edge["b0_dof"] > 1.5
    edge["b0_dof"] = 2.5
    old = {**new, "drag": {c: {k: x for k, x in f.items()
                               if k not in ("b0_dof", "b0_quantile", "b0_ci95_pa_s")}
                           for c, f in new["drag"].items()}}
    header = ["character", "temperature_k", "tau_mpa", "velocity_m_s", "velocity_err_m_s",
              "n_atoms", "duration_ps"]
    for name, doc, want in (("new", new, edge["b0_dof"]), ("old", old, edge["dof"])):
        def build(work, doc=doc):
            (work / "velocity.csv").write_text("\n".join(
                [",".join(header)] + [f"{c},300,{t},{vv},{ee},465,2.5"
                                      for c, t, vv, ee in MO74]) + "\n")
            (work / "glide_fit.json").write_text(json.dumps(
                {**doc, "shear_wave_m_s": MO74_CT, "burgers_a": MO74_B_A}))
            return {"rows": len(MO74)}

        ds = produce("DefectStats", tmp_path / f"defects_{name}", {name: 1}, {}, build)
        art = FitMobilitySettings(law="drag").make(
            ds, tmp_path / f"mob_{name}", properties=make_properties(tmp_path / f"p_{name}"))
        assert art.summary["drag_edge_b0_dof"] == pytest.approx(want)
        assert art.summary["drag_edge_b0_err_pa_s"] == pytest.approx(edge["b0_err_pa_s"])


def test_threshold_trend_and_old_md_fits():
    """τ₀ falling with T by more than its intervals: the DD law gets τ₀,1 < 0 through the
    per-temperature values; a glide_fit.json from before md reported the DD threshold gets
    the same numbers from its rows; a fit without τ₀ gives 0."""
    from scalebridge.dd_coupling.fit import dd_threshold
    from scalebridge.md import glide_fit

    rng = np.random.default_rng(4)
    rows = _threshold_rows(rng, 90.0, 5e-5, temps=(100.0,)) + _threshold_rows(
        rng, 30.0, 5e-5, temps=(400.0,))
    a = {k: np.array([r[k] for r in rows]) for k in ("tau_mpa", "temperature_k",
                                                     "velocity_m_s", "velocity_err_m_s")}
    f = glide_fit.fit_drag(a["tau_mpa"] * 1e6, a["temperature_k"], a["velocity_m_s"],
                           a["velocity_err_m_s"], B)
    assert f["dd_tau0_trend"]["supported"] and f["dd_tau0_trend"]["direction"] == "falling"
    assert f["dd_tau0_mpa_k"] == pytest.approx(-0.2, rel=0.15)     # (30 − 90)/300 MPa/K
    law = LinearDragMobility(burgers_m=B, b0_pa_s=f["b0_pa_s"],
                             tau0_pa=f["dd_tau0_mpa"] * 1e6, tau0_pa_k=f["dd_tau0_mpa_k"] * 1e6)
    for temp, true in ((100.0, 90.0), (400.0, 30.0)):
        got = float(law.threshold(torch.tensor([temp], dtype=torch.float64),
                                    torch.tensor([0]))[0]) * 1e-6
        assert got == pytest.approx(true, abs=8.0)
    old = {k: v for k, v in f.items() if not k.startswith("dd_tau0_")}
    assert dd_threshold(old)["dd_tau0_mpa"] == pytest.approx(f["dd_tau0_mpa"], rel=1e-12)
    none = glide_fit.dd_threshold([{**r, "tau0_mpa": 0.0, "tau0_fixed": True}
                                   for r in f["by_temperature"]])
    assert none["dd_tau0_mpa"] == 0.0 and none["dd_tau0_note"].startswith("fixed at 0")
    assert none["dd_tau0_err_mpa"] is None and none["dd_tau0_ci95_mpa"] is None


def test_dd_run_records_the_threshold_in_mpa_and_mu():
    from scalebridge.dd_coupling.inputs import Material
    from scalebridge.dd_coupling.simulate import DDSettings, mobility_record

    mat = Material(mu_pa=125e9, nu=0.3, b_m=B, lattice="bcc")
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, tau0_pa=20e6, tau0_pa_k=-0.02e6,
                             screw_tau0_pa=30e6)
    rec = mobility_record(DDSettings(glide_character="edge"), mat, law, [100.0, 300.0])
    assert rec["threshold_mpa"] == pytest.approx({"100K": 18.0, "300K": 14.0})
    assert rec["threshold_over_mu"]["300K"] == pytest.approx(14e6 / 125e9)
    rec = mobility_record(DDSettings(), mat, law, [300.0])           # BCC: screws glide
    assert rec["character"] == "screw" and rec["threshold_mpa"] == {"300K": 30.0}
    # τ₀ above the mean source strength (~50 MPa): no velocity to compare, and why
    stuck = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, tau0_pa=100e6)
    rec = mobility_record(DDSettings(glide_character="edge"), mat, stuck, [300.0])
    assert math.isinf(rec["velocity_change"]) and "below the threshold" in rec[
        "velocity_change_note"]


def test_the_law_carries_the_steadiness_of_the_glide_it_was_fitted_to(tmp_path):
    """velocity.csv's acceleration_ratio (first-half / second-half velocity) reaches the
    MobilityLaw's summary as its median over the points that have one; a table without
    the column gives None (not known, not steady)."""
    from scalebridge.dd_coupling.inputs import read_velocity_table

    rows = sample_velocity_table(np.random.default_rng(1), B0, B1, temps=(300.0,))
    ratios = ["0.7", "0.9", "", "0.8"] + ["0.75"] * (len(rows) - 4)
    for r, x in zip(rows, ratios, strict=True):
        r["acceleration_ratio"] = x
    head = ["character", "temperature_k", "tau_mpa", "velocity_m_s", "velocity_err_m_s",
            "acceleration_ratio"]
    ds = make_defect_stats(tmp_path / "defects", rows, head)
    t = read_velocity_table(ds)
    assert np.isnan(t.acceleration_ratio[2]) and t.select(t.tau_pa > 0).acceleration_ratio \
        is not None
    assert t.steadiness() == pytest.approx(0.75)
    art = FitMobilitySettings(law="drag").make(ds, tmp_path / "mob",
                                               properties=make_properties(tmp_path / "p"))
    assert art.summary["glide_acceleration_ratio"] == pytest.approx(0.75)
    plain = read_velocity_table(make_defect_stats(tmp_path / "plain", rows))
    assert plain.acceleration_ratio is None and plain.steadiness() is None


# ------------------------------------------------------------------ per-character τ range
def _edge_1500_screw_2500_rows() -> list[dict]:
    """Edges measured up to 1500 MPa, screws (slower: 3x the drag) up to 2500 MPa, 300 K."""
    rng = np.random.default_rng(3)
    edges = sample_velocity_table(rng, 2e-5, 0.0, temps=(300.0,),
                                  tau_mpa=np.linspace(-1500, 1500, 13))
    screws = sample_velocity_table(rng, 6e-5, 0.0, temps=(300.0,),
                                   tau_mpa=np.linspace(-2500, 2500, 13))
    return edges + [{**r, "character": "screw"} for r in screws]


def test_each_character_is_trusted_to_its_own_md_stress(tmp_path):
    """A law fitted on edges to 1500 MPa and screws to 2500 MPa: an edge at 2000 MPa is
    outside its range (refused, or clamped at the edge top and counted), a screw at 2000
    MPa inside; the ranges survive mobility.json; the DD's edge glide law has the edge
    range for every character; a mobility.json written before the per-character ranges
    loads with the one envelope range, as before."""
    from scalebridge.dd_coupling.mobility import (
        DragScaledMobility,
        GlideCharacterMobility,
        range_violations,
    )

    ds = make_defect_stats(tmp_path / "defects", _edge_1500_screw_2500_rows())
    props = make_properties(tmp_path / "props")
    art = FitMobilitySettings(members=2, epochs=200).make(ds, tmp_path / "mob",
                                                          properties=props)
    law = load_mobility(art.path)
    assert isinstance(law, NeuralMobility)
    r = law.valid_range
    assert r.tau_mpa[1] == pytest.approx(2500.0) and law.tau_scale_pa == pytest.approx(2.5e9)
    assert r.tau_range("edge")[1] == pytest.approx(1500.0)
    assert r.tau_range(1)[1] == pytest.approx(2500.0)
    assert law.tau_scale_by_character_pa == pytest.approx({"edge": 1.5e9, "screw": 2.5e9})
    tau = torch.tensor([2000e6, -2000e6, 2000e6, 1400e6], dtype=torch.float64)
    char = torch.tensor([0, 0, 1, 0])
    temp = torch.full((4,), 300.0, dtype=torch.float64)
    assert range_violations(law, tau, temp, char).tolist() == [True, True, False, False]
    with pytest.raises(OutOfRangeError, match=r"1500 MPa \(edge\)"):
        law.velocity(np.array([2000e6]), 300.0, 0)
    v_screw = law.velocity(np.array([2000e6, 2500e6]), 300.0, 1)       # in range: no error
    assert 0 < v_screw[0] < v_screw[1]
    check_mobility(law)                       # draws each character inside its own range
    law.out_of_range = "clamp"
    n0 = law.n_out_of_range
    v = law.velocity(np.array([1500e6, 2000e6, -2000e6]), 300.0, 0)
    assert law.n_out_of_range - n0 == 2                          # both edges beyond 1500
    assert v[1] == pytest.approx(v[0], rel=1e-12) and v[2] == pytest.approx(-v[0], rel=1e-12)
    # the DD gliding with the edge law: the edge range whatever the character asked for
    glide = GlideCharacterMobility(law, 0)
    for c in ("edge", "screw"):
        assert glide.valid_range.tau_range(c)[1] == pytest.approx(1500.0)
    assert range_violations(glide, tau, temp, char).tolist() == [True, True, True, False]
    assert DragScaledMobility(glide, 2.0).valid_range == glide.valid_range
    assert GlideCharacterMobility(law, 1).valid_range.tau_range("edge")[1] == \
        pytest.approx(2500.0)
    check_mobility(glide)
    # the drag law of the same data carries the same ranges
    drag = load_mobility(FitMobilitySettings(law="drag").make(
        ds, tmp_path / "drag", properties=props).path)
    assert drag.valid_range.tau_mpa_by_character == r.tau_mpa_by_character
    # a mobility.json from before: one range (the envelope) for every character, as before
    doc = json.loads((art.path / "mobility.json").read_text())
    assert set(doc["valid_range"]["tau_mpa_by_character"]) == {"edge", "screw"}
    del doc["valid_range"]["tau_mpa_by_character"]
    old = load_mobility(law_from_before(art.path, doc, tmp_path / "old"),
                        out_of_range="clamp")
    assert old.valid_range == ValidRange(r.tau_mpa, r.temperature_k, r.characters)
    assert old.valid_range.tau_range("edge") == r.tau_mpa
    assert not range_violations(old, tau, temp, char).any()
    vo = old.velocity(np.array([1500e6, 2000e6, 3000e6]), 300.0, 0)
    assert old.n_out_of_range == 1 and vo[0] < vo[1] < vo[2]     # clamped at 2500 only
    assert ValidRange.from_json(ValidRange().to_json()) == ValidRange()
    assert "tau_mpa_by_character" not in ValidRange().to_json()


# ------------------------------------------------------------ per-character τ scale
def _velocity_table(rows):
    from scalebridge.dd_coupling.inputs import VelocityTable

    return VelocityTable(np.array([0 if r["character"] == "edge" else 1 for r in rows]),
                         np.array([r["temperature_k"] for r in rows]),
                         np.array([r["tau_mpa"] for r in rows]) * 1e6,
                         np.array([r["velocity_m_s"] for r in rows]),
                         np.array([r["velocity_err_m_s"] for r in rows]), "rows")


def test_adding_a_screw_point_at_a_higher_stress_leaves_the_edge_law():
    """Edges measured to 1500 MPa (the Mo example's grid); one slow screw point at 6000
    MPa added: the edges' inputs keep their scale (τ̂ up to 1), so the fitted edge law
    (same seed and settings; fewer than 10 rows: every member sees all rows) stays within
    1.5 % at edge stresses from the DD's (50 MPa, below the lowest edge point) to the top
    (measured 0.8 % at 50 MPa, 0.13 % from 250 MPa up: what is left comes through the
    network the characters share). With one scale for all, the edges were squeezed
    into τ̂ ≤ 0.25 and the edge law moved by up to 45 % (300 MPa: -40 %) in the same
    fit. Where the screw was measured does not reach the edge law at all: 2800 or 6000
    MPa, the same edge velocities to the bit."""
    from scalebridge.dd_coupling.fit import fit_neural

    edges = sample_velocity_table(np.random.default_rng(0), 2e-5, 0.0, temps=(300.0,),
                                  tau_mpa=np.array([250.0, 500.0, 1500.0]))

    def screw(tau_mpa):
        return {**edges[-1], "character": "screw", "tau_mpa": tau_mpa,
                "velocity_m_s": 400.0, "velocity_err_m_s": 150.0}

    s = FitMobilitySettings(members=2, epochs=300)
    grid = np.array([50.0, 100.0, 250.0, 300.0, 500.0, 700.0, 1000.0, 1500.0]) * 1e6
    edge_only = fit_neural(_velocity_table(edges), s)
    with_screw = fit_neural(_velocity_table([*edges, screw(6000.0)]), s)
    v0 = edge_only.velocity(grid, 300.0, np.zeros(len(grid), int))
    v1 = with_screw.velocity(grid, 300.0, np.zeros(len(grid), int))
    assert np.all(v0 > 0)
    assert np.max(np.abs(v1 / v0 - 1)) < 1.5e-2, v1 / v0 - 1
    at_2800 = fit_neural(_velocity_table([*edges, screw(2800.0)]), s)
    assert at_2800.velocity(grid, 300.0, 0).tolist() == v1.tolist()
    # the scales: each character's largest |τ|; the one of all the data stays the envelope
    assert with_screw.tau_scale_by_character_pa == {"edge": 1.5e9, "screw": 6.0e9}
    assert with_screw.tau_scale_pa == 6.0e9
    assert edge_only.tau_scale_by_character_pa == {"edge": 1.5e9}
    assert with_screw.tau_scales(torch.tensor([0, 1])).tolist() == [1.5e9, 6.0e9]


def _edge_screw_law(scales=None, seed=0, out_of_range="clamp"):
    """A law trained on edges to 1500 MPa and screws to 2800 MPa (the Mo example's
    ranges), random weights (any weights keep it odd and monotone)."""
    torch.manual_seed(seed)
    vr = ValidRange(tau_mpa=(0.0, 2800.0), temperature_k=(300.0, 300.0),
                    tau_mpa_by_character={"edge": (0.0, 1500.0), "screw": (0.0, 2800.0)})
    law = NeuralMobility(2.8e9, 2400.0, 300.0, 1.0, vr, n_members=2, out_of_range=out_of_range,
                         tau_scale_by_character_pa=scales)
    for p in law.members.parameters():
        torch.nn.init.normal_(p, std=1.0)
    return law


def _one_scale_velocity(law, tau_pa, character):
    """The velocity of ``law`` as the single-scale law computed it (τ / tau_scale_pa,
    each point at most at its own character's top, at most 1), by hand."""
    tau = torch.as_tensor(tau_pa, dtype=torch.float64)
    char = torch.full(tau.shape, character, dtype=torch.long)
    top = (law.valid_range.tau_hi_mpa(char) * 1e6 / law.tau_scale_pa).clamp(max=1.0)
    tau_hat = torch.maximum(torch.minimum(tau / law.tau_scale_pa, top), -top)
    t_hat = torch.zeros_like(tau)
    with torch.no_grad():
        return (torch.stack([m(tau_hat, t_hat, char) for m in law.members]).mean(0)
                * law.v_scale_m_s).numpy()


def test_tau_scale_per_character_config_roundtrip_and_old_config(tmp_path):
    """config() carries the per-character scales and from_config (and mobility.json)
    gives the same law back; a config without them (written before they existed) loads
    with the one scale tau_scale_pa and gives the velocities the single-scale law gave;
    bad scales are refused; a law pickled before the key existed unpickles as one-scale."""
    import pickle

    law = _edge_screw_law({"edge": 1.5e9, "screw": 2.8e9})
    tau = np.array([-2800e6, -1500e6, -300e6, 0.0, 250e6, 900e6, 1500e6, 2000e6, 2800e6])
    cfg = law.config()
    assert cfg["tau_scale_by_character_pa"] == {"edge": 1.5e9, "screw": 2.8e9}
    back = NeuralMobility.from_config(json.loads(json.dumps(cfg)), law.valid_range)
    back.members.load_state_dict(law.members.state_dict())
    assert back.tau_scale_by_character_pa == law.tau_scale_by_character_pa
    for c in (0, 1):
        assert back.velocity(tau, 300.0, c).tolist() == law.velocity(tau, 300.0, c).tolist()
    save_mobility(law, tmp_path)
    loaded = load_mobility(tmp_path)
    assert loaded.tau_scale_by_character_pa == {"edge": 1.5e9, "screw": 2.8e9}
    for c in (0, 1):
        assert loaded.velocity(tau, 300.0, c).tolist() == law.velocity(tau, 300.0, c).tolist()
    unpickled = pickle.loads(pickle.dumps(law))
    assert unpickled.velocity(tau, 300.0, 0).tolist() == law.velocity(tau, 300.0, 0).tolist()
    # an old config: no key, one scale for every character, exactly as before
    doc = json.loads((tmp_path / "mobility.json").read_text())
    del doc["config"]["tau_scale_by_character_pa"]
    (tmp_path / "mobility.json").write_text(json.dumps(doc))
    old = load_mobility(tmp_path)
    assert old.tau_scale_by_character_pa is None
    assert "tau_scale_by_character_pa" not in old.config()
    for c in (0, 1):
        assert np.allclose(old.velocity(tau, 300.0, c), _one_scale_velocity(old, tau, c),
                           rtol=1e-13, atol=0.0)
    # ... which is another edge law than the per-character one (the key matters); the
    # screws, whose scale is the envelope, are the same
    assert not np.allclose(old.velocity(tau, 300.0, 0), law.velocity(tau, 300.0, 0))
    assert old.velocity(tau, 300.0, 1).tolist() == law.velocity(tau, 300.0, 1).tolist()
    state = old.__getstate__()
    del state["tau_scale_by_character_pa"]                # pickled before the key existed
    revived = NeuralMobility.__new__(NeuralMobility)
    revived.__setstate__(state)
    assert revived.velocity(tau, 300.0, 0).tolist() == old.velocity(tau, 300.0, 0).tolist()
    # a damaged mobility.json: one line naming the file, not a ValueError from the law
    doc["config"]["tau_scale_by_character_pa"] = {"edge": -1.0}
    (tmp_path / "mobility.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"mobility\.json: bad config for NeuralMobility"):
        load_mobility(tmp_path)
    doc["config"]["tau_scale_by_character_pa"] = {"edge": 1.5e9}
    doc["valid_range"]["tau_mpa"] = ["x", 1500.0]       # a damaged range: one line too
    (tmp_path / "mobility.json").write_text(json.dumps(doc))
    with pytest.raises(ArtifactError, match=r"mobility\.json: not a mobility law"):
        load_mobility(tmp_path)
    with pytest.raises(ValueError, match="unknown characters"):
        _edge_screw_law({"mixed": 1e9})
    with pytest.raises(ValueError, match="finite and > 0"):
        _edge_screw_law({"edge": 0.0})


def test_each_point_is_clamped_at_its_own_characters_top_in_its_own_units():
    """Per-character scales, policy "clamp": an edge beyond the edge data's top (1500 MPa)
    is held at the edge top (τ̂ = 1 in edge units), not extrapolated along the edge curve
    toward the screws' 2800 MPa, and is counted; an edge inside its range is not clamped
    (a top in the wrong units would clamp it); a screw is held at its own top, 2800 MPa;
    a character without its own scale has tau_scale_pa."""
    law = _edge_screw_law({"edge": 1.5e9, "screw": 2.8e9})
    n0 = law.n_out_of_range
    v = law.velocity(np.array([1000e6, 1400e6, 1500e6, 2000e6, -2000e6, 2800e6]), 300.0, 0)
    assert law.n_out_of_range - n0 == 3
    assert v[0] < v[1] < v[2]                            # no clamp inside the edge range
    # equal up to rounding: a point's place in the batch may change its last bit (SIMD
    # remainder lanes; seen on an AMD EPYC)
    assert v[[3, 5]] == pytest.approx([v[2], v[2]], rel=1e-14) and v[4] == pytest.approx(
        -v[2], rel=1e-14)
    tau_hat, t_hat, char, _ = law._prepare(np.array([1500e6, 2000e6, -2800e6]), 300.0, 0)
    assert tau_hat.tolist() == pytest.approx([1.0, 1.0, -1.0], abs=1e-15)
    # the law beyond the edge top would have given more: the clamp is what held it
    with torch.no_grad():
        extrapolated = float(torch.stack([m(torch.tensor([2000 / 1500], dtype=torch.float64),
                                            t_hat[:1], char[:1]) for m in law.members]
                                         ).mean() * law.v_scale_m_s)
    assert extrapolated > v[2] * (1 + 1e-3)
    vs = law.velocity(np.array([1500e6, 2000e6, 2800e6, 3500e6]), 300.0, 1)
    assert vs[0] < vs[1] < vs[2]                          # screws: held at 2800 MPa only
    assert vs[3] == pytest.approx(vs[2], rel=1e-14)
    check_mobility(law)
    # only the edges have their own scale: screws (and unknown indices) use tau_scale_pa
    edge_only = _edge_screw_law({"edge": 1.5e9})
    assert edge_only.tau_scales(torch.tensor([0, 1, 7, -1])).tolist() == [
        1.5e9, 2.8e9, 2.8e9, 2.8e9]
    assert edge_only.velocity(np.array([2800e6]), 300.0, 1)[0] == pytest.approx(
        _one_scale_velocity(edge_only, np.array([2800e6]), 1)[0], rel=1e-13)


def test_limit_speed_law_is_the_law_inside_its_range_and_c_t_beyond():
    """The range probe's law: the wrapped law's velocity up to its character's top stress
    (to the bit), the limiting speed (with τ's sign) beyond it where the law clamps, the
    law's own velocity where the limit is below it (still the upper bound); NumPy in,
    NumPy out, torch in, torch out."""
    from scalebridge.dd_coupling.mobility import LimitSpeedMobility

    torch.manual_seed(0)
    vr = ValidRange(tau_mpa=(0, 200.0), temperature_k=(300.0, 300.0), characters=("edge",))
    law = NeuralMobility(200e6, 500.0, 300.0, 1.0, vr, n_members=2, out_of_range="clamp")
    lim = LimitSpeedMobility(law, (3000.0, 1000.0))
    assert lim.valid_range == law.valid_range
    tau = np.array([50e6, -200e6, 250e6, -400e6])
    v0, v = law.velocity(tau, 300.0, 0), lim.velocity(tau, 300.0, 0)
    assert isinstance(v, np.ndarray) and 0 < v0[0] < abs(v0[1]) < 3000.0
    assert v[:2].tolist() == v0[:2].tolist()
    assert v[2:].tolist() == [3000.0, -3000.0]
    vt = lim.velocity(torch.tensor(tau), torch.full((4,), 300.0), torch.zeros(4, dtype=torch.long))
    assert isinstance(vt, torch.Tensor) and vt.tolist() == v.tolist()
    low = LimitSpeedMobility(law, (1e-3, 1e-3)).velocity(tau, 300.0, 0)
    assert low.tolist() == v0.tolist()                  # the clamp's velocity: no lower
    with pytest.raises(ValueError, match="limit_m_s"):
        LimitSpeedMobility(law, (0.0, 1.0))
