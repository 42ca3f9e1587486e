"""Fitting, loading, exporting and the out-of-range warning, on real (small) trainings."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scalebridge.artifacts import produce
from scalebridge.errors import DataError
from scalebridge.surrogates import DislocationDensityHardening, J2Plasticity, mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.data import J2DataSettings, read_ddrun
from scalebridge.surrogates.protocol import integrate_path
from scalebridge.surrogates.train import (
    SurrogateSettings,
    export_surrogate,
    load_surrogate,
    path_errors,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("surrogates")


@pytest.fixture(scope="module")
def j2_data(work):
    return J2DataSettings(n_paths=16, steps=12).make(work / "data")


@pytest.fixture(scope="module")
def neural_j2(work, j2_data):
    # the flow-stress fit alone (no path fine-tuning) must reach the 1 % target
    return SurrogateSettings(max_iterations=300, rollout_iterations=0).make(j2_data,
                                                                          work / "nj2")


def test_neural_j2_reproduces_unseen_cyclic_paths(neural_j2):
    rec = json.loads((neural_j2.path / "surrogate.json").read_text())
    assert rec["checks"]["passed"], rec["checks"]
    assert rec["metrics"]["validation"]["max_error_over_yield"] < 0.01
    model = load_surrogate(neural_j2.path)
    unseen = J2DataSettings(n_paths=6, steps=12, seed=11).generate()
    m, _ = path_errors(model, unseen, unseen.meta["yield_stress_mpa"])
    assert m["max_error_over_yield"] < 0.01, m
    for f in ("fit_paths.png", "fit_paths.csv", "hardening.png", "hardening.csv",
              "history.png", "history.csv", "model.pt"):
        assert (neural_j2.path / f).stat().st_size > 0


def test_hardening_is_monotone_even_far_outside(neural_j2):
    model = load_surrogate(neural_j2.path)
    ep = np.linspace(0.0, 10 * model.training_range["eps_p_eq"][1], 400)
    sy, h, _ = model.hardening.yield_stress(ep, np.zeros_like(ep), np.zeros((400, 0)),
                                            np.ones_like(ep))
    assert np.all(np.diff(sy) >= 0) and np.all(h >= 0)


def test_trained_hardening_table_equals_the_network(neural_j2):
    """The σ_y(ε̄_p) table the return map uses (no rate feature here) against the trained
    network itself, from 0 to 10x the trained plastic strain."""
    model = load_surrogate(neural_j2.path)
    hard = model.neural
    assert hard.table_spacing and "log_rate" not in hard.features
    ep = np.linspace(0.0, 10 * model.training_range["eps_p_eq"][1], 30001)
    args = (np.zeros_like(ep), np.zeros((ep.size, 0)), np.ones_like(ep))
    sy, h, _ = hard.yield_stress(ep, *args)
    hard.table_spacing = None
    sy_n, h_n, _ = hard.yield_stress(ep, *args)
    assert np.abs(sy - sy_n).max() < 1e-12 * sy_n.max()
    assert np.abs(h - h_n).max() < 1e-7 * np.abs(h_n).max()


def test_out_of_range_is_flagged_and_logged(neural_j2, caplog):
    model = load_surrogate(neural_j2.path)
    gmax = 10 * np.sqrt(3.0) * model.training_range["eps_p_eq"][1]
    path = mandel.shear_strain(np.linspace(0, gmax, 30))[None]
    with caplog.at_level(logging.WARNING, logger="scalebridge.surrogates"):
        _, _, oor = integrate_path(model, path)
    assert not oor[0, 1] and oor[0, -1]
    assert "outside the training range" in caplog.text


def test_export_torchscript_matches(neural_j2, work):
    files = export_surrogate(neural_j2.path, work / "export")
    with pytest.warns(DeprecationWarning):
        ts = torch.jit.load(str(work / "export" / "model.ts"))
    model = load_surrogate(work / "export")  # the exported folder loads too
    x = torch.linspace(0, 1.2, 7, dtype=torch.float64)
    u = torch.zeros((7, 0), dtype=torch.float64)
    assert torch.allclose(ts(x, u), model.neural.net(x, u))
    table = np.loadtxt(work / "export" / "hardening_table.csv", delimiter=",", skiprows=1)
    assert table[0, 1] == pytest.approx(250.0, rel=0.01) and len(files) == 4


def test_internal_variable_model_fits_and_passes_every_check(work, j2_data):
    """The data-driven model (learned yield surface and hardening) claims isotropy and a
    symmetric tangent, and passes every check, trained (here) and untrained (below)."""
    art = SurrogateSettings(model="internal_variable", max_iterations=100,
                            check_every=20).make(j2_data, work / "iv")
    rec = json.loads((art.path / "surrogate.json").read_text())
    assert rec["class"] == "InternalVariableModel"
    assert rec["checks"]["passed"], rec["checks"]
    hist = np.loadtxt(art.path / "history.csv", delimiter=",", skiprows=1, usecols=(0, 1, 2))
    assert hist[-1, 1] < 0.2 * hist[0, 1]  # training loss fell
    assert rec["metrics"]["validation"]["max_error_over_yield"] < 0.01, rec["metrics"]
    assert rec["yield_shape"]["von_mises"] > 0.9  # learned, not assumed
    assert sum(rec["yield_shape"].values()) == pytest.approx(1.0)
    model = load_surrogate(art.path)
    assert model.isotropic and model.symmetric_tangent
    rep = check_constitutive(model, amplitude=4e-3)
    assert rep.outcomes["symmetry"].error < 1e-10 and rep.outcomes["dissipation"].error > 0
    unseen = J2DataSettings(n_paths=4, steps=12, seed=11).generate()
    m, _ = path_errors(model, unseen, unseen.meta["yield_stress_mpa"])
    assert m["max_error_over_yield"] < 0.01, m
    export_surrogate(art.path, work / "iv_export")
    with pytest.warns(DeprecationWarning):
        ts = torch.jit.load(str(work / "iv_export" / "model.ts"))
    sig = torch.tensor([[300.0, 0, 0, 0, 0, 0], [10.0, -5, 3, 40, 0, 90]], dtype=torch.float64)
    lam = torch.tensor([0.0, 0.003], dtype=torch.float64)
    phi, r = ts(sig, lam)
    assert torch.allclose(phi, model.net(sig, lam)[0]) and torch.allclose(r, model.net(sig, lam)[1])
    assert phi[0] == pytest.approx(300.0)  # normalised to uniaxial tension


def test_recurrent_is_the_old_name_and_old_artifacts_say_why(work, j2_data, tmp_path):
    s = SurrogateSettings(model="recurrent", max_iterations=10, check_every=10,
                          rollout_iterations=2, run_checks=False)  # both fit stages
    art = s.make(j2_data, tmp_path / "rec")
    rec = json.loads((art.path / "surrogate.json").read_text())
    assert rec["class"] == "InternalVariableModel"
    hist = np.loadtxt(art.path / "history.csv", delimiter=",", skiprows=1, dtype=str)
    assert "rollout" in set(hist[:, 3])
    rec["class"] = "RecurrentModel"
    (art.path / "surrogate.json").write_text(json.dumps(rec))
    with pytest.raises(DataError, match="refit with model = 'internal_variable'"):
        load_surrogate(art.path)


def _synthetic_ddrun(path, n=3, bad=None):
    """A DDRun-format artifact from J2 with Kocks-Mecking hardening in simple shear."""
    mu, nu = 48e3, 0.34
    law = DislocationDensityHardening(sigma0=20.0, mu=mu, burgers=2.56e-10)
    model = J2Plasticity(2 * mu * (1 + nu), nu, law)

    def build(work):
        for i in range(n):
            gamma = np.linspace(0, 4e-3 * (1 + 0.1 * i), 60)
            s, st, _ = integrate_path(model, mandel.shear_strain(gamma)[None])
            tau = s[0, :, 5] / np.sqrt(2)
            gp = 2 * st[0, :, 5] / np.sqrt(2)
            d = work / "realisations" / str(i)
            d.mkdir(parents=True)
            rows = ["time_s,strain,stress_mpa,plastic_strain,density_m2,n_dislocations"]
            rows += [f"{g / 1e4},{g},{t},{p},{r},1" for g, t, p, r
                     in zip(gamma, tau, gp, st[0, :, 7], strict=True)]
            if bad == "nan" and i == 1:
                parts = rows[5].split(",")
                parts[2] = "nan"
                rows[5] = ",".join(parts)  # line 6 of the file
            if bad == "column":
                rows[0] = rows[0].replace("plastic_strain", "gamma_p")
            (d / "stress_strain.csv").write_text("\n".join(rows) + "\n")
        (work / "run.json").write_text(json.dumps({
            "loading": {"mode": "strain", "component": "shear_xy", "resolved": "shear",
                        "strain_rate_s": 1e4},
            "temperature_k": 300.0, "shear_modulus_gpa": mu / 1e3, "poisson_ratio": nu,
            "burgers_a": 2.56}))
        return {}

    return produce("DDRun", path, {"bad": bad}, {}, build), law


@pytest.mark.slow
def test_ddrun_reader_maps_shear_to_von_mises_and_fits(work):
    art, _ = _synthetic_ddrun(work / "ddrun")
    paths = read_ddrun(art.path)
    assert len(paths) == 3 and paths.meta["shear_mpa"] == pytest.approx(48e3)
    assert paths.microstructure is None          # its run.json names no seeds
    tau = paths.stress[..., 5] / np.sqrt(2)
    assert np.allclose(mandel.von_mises(paths.stress), np.sqrt(3) * np.abs(tau))
    sur = SurrogateSettings(max_iterations=200, val_fraction=0.34).make(art, work / "dd_sur")
    rec = json.loads((sur.path / "surrogate.json").read_text())
    assert rec["metrics"]["validation"]["rel_error"] < 0.01, rec["metrics"]
    assert rec["checks"]["passed"]


@pytest.mark.parametrize(("bad", "match"), [
    ("column", "missing column.*plastic_strain"),
    ("nan", r"realisations/1/stress_strain.csv: row 6, column 'stress_mpa'")])
def test_ddrun_reader_rejects_bad_tables(work, bad, match):
    art, _ = _synthetic_ddrun(work / f"ddrun_{bad}", bad=bad)
    with pytest.raises(DataError, match=match):
        read_ddrun(art.path)


@pytest.mark.slow
def test_cli_dataset_fit_check_export(tmp_path):
    from scalebridge.workflows.cli import cli

    r = CliRunner()
    dtoml = tmp_path / "data.toml"
    dtoml.write_text("n_paths = 8\nsteps = 10\n")
    res = r.invoke(cli, ["surrogates", "dataset", "--out", str(tmp_path / "d"), "--seed", "3",
                         "--settings", str(dtoml)])
    assert res.exit_code == 0, res.output
    toml = tmp_path / "fit.toml"
    toml.write_text("max_iterations = 60\nrun_checks = false\n")
    res = r.invoke(cli, ["surrogates", "fit", str(tmp_path / "d"), "--out",
                         str(tmp_path / "s"), "--settings", str(toml)])
    assert res.exit_code == 0, res.output
    res = r.invoke(cli, ["surrogates", "check", str(tmp_path / "s")])
    assert res.exit_code == 0 and "tangent" in res.output, res.output
    res = r.invoke(cli, ["surrogates", "export", str(tmp_path / "s"), "--out",
                         str(tmp_path / "e")])
    assert res.exit_code == 0 and (tmp_path / "e" / "model.ts").exists()
    toml.write_text("max_iteration = 100\n")
    res = r.invoke(cli, ["surrogates", "fit", str(tmp_path / "d"), "--out",
                         str(tmp_path / "s2"), "--settings", str(toml)])
    assert res.exit_code == 1 and "did you mean 'max_iterations'" in res.output


def test_cli_fit_force_never_removes_a_users_folder(tmp_path):
    """``surrogates fit --force --out DIR`` with the user's files in DIR is refused with
    one line before any fitting, and DIR is left as it was (--force once removed it)."""
    from scalebridge.workflows.cli import cli

    data = J2DataSettings(n_paths=2, steps=4).make(tmp_path / "d")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    res = CliRunner().invoke(cli, ["surrogates", "fit", str(data.path), "--out", str(mine),
                                   "--force"])
    assert res.exit_code == 1, res.output
    assert res.output == (f"error: {mine} exists and is not a scalebridge artifact; "
                          "choose another --out or remove it\n")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "mine"]


@pytest.mark.slow
def test_rate_dependent_hardening_keeps_a_consistent_tangent(tmp_path):
    """With paths at two strain rates the plastic rate becomes an input of σ_y; the
    tangent (with the dσ_y/dε̇_p / dt term) must still be the derivative of the stress."""
    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.train import fit_surrogate

    a = J2DataSettings(n_paths=6, steps=8, dt_s=1.0).generate()
    b = J2DataSettings(n_paths=6, steps=8, dt_s=100.0, seed=5).generate()
    both = StrainPaths(*(np.concatenate([getattr(a, k), getattr(b, k)]) for k in (
        "strain", "stress", "dt", "temperature_k", "strain_rate_s")), None, a.meta,
        a.names + b.names)
    summary = fit_surrogate(both, SurrogateSettings(max_iterations=100,
                                                    rollout_iterations=0), tmp_path)
    rec = json.loads((tmp_path / "surrogate.json").read_text())
    assert rec["scalers"]["features"] == ["log_rate"]
    assert summary["checks_passed"], rec["checks"]
    assert rec["checks"]["checks"]["tangent"]["error"] < 1e-6
    assert rec["metrics"]["validation"]["max_error_over_yield"] < 0.02


def test_bad_inputs_give_one_line_errors(tmp_path, j2_data):
    from scalebridge.errors import ArtifactError, ScalebridgeError

    with pytest.raises(ArtifactError, match="no artifact"):
        load_surrogate(tmp_path / "missing")
    with pytest.raises(ArtifactError, match="is a ConstitutiveDataset artifact"):
        load_surrogate(j2_data.path)
    elastic = J2DataSettings(n_paths=4, steps=4, amplitude=1e-4).make(tmp_path / "elastic")
    with pytest.raises(ScalebridgeError, match="never yield") as e:
        SurrogateSettings().make(elastic, tmp_path / "s")
    assert "\n" not in str(e.value)


def test_lowest_yield_stress_and_rejected_rollout_checkpoints():
    """``lowest_yield_stress`` is the minimum of σ_y over the trained rates and
    temperatures (against a fine brute-force grid), negative once the law is shifted
    down; the early-stopping loop keeps only accepted checkpoints (what keeps the rollout
    fit from a σ_y < 0 law) and restores the starting weights when none is accepted."""
    from scalebridge.surrogates.neural import DTYPE, MonotoneHardeningNet, NeuralHardening
    from scalebridge.surrogates.train import _early_stopping_loop, lowest_yield_stress

    torch.manual_seed(3)
    net = MonotoneHardeningNet(2, hidden=8, layers=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.5 * torch.randn_like(p))
    hard = NeuralHardening(net, 0.01, 100.0, ["log_rate", "temperature"], [4.0, 200.0],
                           [0.5, 100.0], 200.0, [-2.0, -1.0], [2.0, 1.0])
    lr, tk = np.meshgrid(np.linspace(3.0, 5.0, 101), np.linspace(100.0, 300.0, 101))
    brute = hard.sigma_y(torch.zeros(lr.size, dtype=DTYPE),
                         torch.as_tensor(10.0 ** lr.ravel(), dtype=DTYPE),
                         torch.ones(lr.size, dtype=DTYPE),
                         torch.as_tensor(tk.ravel(), dtype=DTYPE)).detach().numpy()
    low = lowest_yield_stress(hard)
    assert brute.min() <= low <= brute.min() + 0.01 * np.ptp(brute)
    with torch.no_grad():
        net.head_b.sub_((low + 5.0) / 100.0)
    assert lowest_yield_stress(hard) == pytest.approx(-5.0)

    lin = torch.nn.Linear(1, 1, bias=False, dtype=DTYPE)
    with torch.no_grad():
        lin.weight.zero_()
    s = SurrogateSettings(max_iterations=100, check_every=10, patience=3)

    def run(limit: float) -> list[dict]:
        with torch.no_grad():
            lin.weight.zero_()
        return _early_stopping_loop(list(lin.parameters()), lin,
                                    lambda: lin.weight.data.add_(1.0),  # val loss improves
                                    lambda: torch.tensor(0.0), lambda: -lin.weight.sum(), s,
                                    accept=lambda: lin.weight.detach().item() < limit)

    hist = run(2.5)
    assert [h["accepted"] for h in hist] == [True, True, False, False, False]
    assert lin.weight.detach().item() == 2.0                  # the best accepted checkpoint
    run(0.5)
    assert lin.weight.detach().item() == 0.0                  # none accepted: the starting weights


def test_path_errors_put_the_largest_error_in_the_von_mises_measure():
    """An elastic model replayed along simple shear, the 'data' 1 MPa of shear stress off:
    the error's Mandel norm is √2 MPa, its von Mises measure √3 MPa, so over σ_ref = √3
    MPa (a von Mises stress) the largest error is 1 and the RMS error √2 MPa."""
    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.j2 import LinearHardening

    model = J2Plasticity(200e3, 0.3, LinearHardening(1e9, 0.0))   # never yields here
    gamma = np.linspace(0.0, 1e-3, 11)
    strain = mandel.shear_strain(gamma)[None]
    shear = 200e3 / (2 * 1.3)
    tau = shear * gamma + 1.0 * (gamma > 0)
    paths = StrainPaths(strain, mandel.shear_strain(2.0 * tau)[None], np.array([1e-9]),
                        np.array([300.0]), np.array([1e5]), None,
                        {"bulk_mpa": 200e3 / (3 * 0.4), "shear_mpa": shear})
    m, _ = path_errors(model, paths, float(np.sqrt(3.0)))
    assert m["max_error_over_yield"] == pytest.approx(1.0, rel=1e-6)
    assert m["rmse_mpa"] == pytest.approx(np.sqrt(2.0) * np.sqrt(10 / 11), rel=1e-6)
