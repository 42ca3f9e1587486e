"""Checks that gate: the FEM refuses a Surrogate that fails check_constitutive unless the
user overrides (recorded in the FieldResults summary and the report), and the analytic
limit load is reported only where it applies (perfectly plastic J2 on the cylinder)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scalebridge.artifacts import produce, read_artifact
from scalebridge.continuum import CylinderProblem, FemSettings, J2Material, SolverSettings
from scalebridge.continuum.fem import limit_load
from scalebridge.surrogates import J2Plasticity, LinearHardening, VoceHardening
from scalebridge.surrogates.checks import ConstitutiveCheckError
from scalebridge.surrogates.neural import MonotoneHardeningNet
from scalebridge.workflows.report import (
    override_warnings,
    render_html,
    render_markdown,
    summary_rows,
)

from .conftest import LinearElastic

SMALL = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=3),
                    solver=SolverSettings(steps=4, degree=1), write_fields=False)
REF = {"q_lim_over_sigma0": 2 / np.sqrt(3) * np.log(1.3)}
E, NU = 70e3, 0.3


def make_surrogate(path, checks="fit", tweak=None):
    """A hand-made NeuralJ2 Surrogate artifact (untrained net scaled to σ_y(0) = 250 MPa).

    ``checks``: "fit" stores a passing check report (as a fit does), "none" stores none
    (run_checks = false), or a dict replacing entries of the stored report."""
    net = MonotoneHardeningNet(0, 4, 1)
    with torch.no_grad():
        g0 = float(net(torch.zeros(1, dtype=torch.float64),
                       torch.zeros((1, 0), dtype=torch.float64))[0])
    bulk, shear = E / (3 * (1 - 2 * NU)), E / (2 * (1 + NU))
    rec = {"class": "NeuralJ2", "config": {"hidden": 4, "layers": 1, "n_cond": 0},
           "scalers": {"ep_scale": 0.01, "sigma_scale": 250.0 / g0, "features": [],
                       "feature_mean": [], "feature_std": [], "feature_min": [],
                       "feature_max": []},
           "elastic": {"bulk_mpa": bulk, "shear_mpa": shear}, "temperature_k": 300.0,
           "training_range": {"eps_p_eq": [0.0, 0.05], "temperature_k": [300.0, 300.0],
                              "plastic_rate_s": [1e-6, 1.0], "strain_norm": [0.0, 0.02]}}

    def build(work):
        torch.save(net.state_dict(), work / "model.pt")
        (work / "surrogate.json").write_text(json.dumps(rec))
        if checks != "none":
            rep = {"model": "neural_j2", "passed": True, "checks": {
                k: {"passed": True, "error": 0.0, "tolerance": 1.0, "note": ""}
                for k in CHECKS}}
            if isinstance(checks, dict):
                for k, v in checks.items():
                    rep["checks"][k].update(v)
                rep["passed"] = all(c["passed"] for c in rep["checks"].values())
            rec["checks"] = rep
            (work / "surrogate.json").write_text(json.dumps(rec))
        if tweak:
            tweak(work)
        return {}

    return produce("Surrogate", path, {"checks": str(checks)}, {}, build)


CHECKS = ("interface", "inputs_untouched", "batched", "tangent", "symmetry", "objectivity",
          "elastic_unloading", "dissipation", "finite")
TANGENT_FAILED = {"tangent": {"passed": False, "error": 0.3, "tolerance": 1e-4}}


@pytest.fixture(scope="module")
def failing(tmp_path_factory):
    return make_surrogate(tmp_path_factory.mktemp("gate") / "bad", checks=TANGENT_FAILED)


def test_failing_surrogate_is_refused_with_the_check_named(failing, tmp_path):
    with pytest.raises(ConstitutiveCheckError) as e:
        SMALL.make(failing, tmp_path / "fem")
    msg = str(e.value)
    assert "\n" not in msg
    assert "failed check_constitutive: tangent (error 0.3 > tol 0.0001)" in msg
    assert "allow_failed_checks = true" in msg
    assert not (tmp_path / "fem" / "manifest.json").exists()


def test_override_proceeds_and_is_recorded(failing, tmp_path):
    art = SMALL.model_copy(update={"allow_failed_checks": True}).make(failing, tmp_path / "f")
    mc = art.summary["material_checks"]
    assert mc["overridden"] is True and mc["passed"] is False
    assert mc["failed"] == ["tangent"] and "tangent" in mc["failed_detail"]
    assert mc["source"].startswith("surrogate.json")
    warn = override_warnings(art.summary)
    assert len(warn) == 1 and "FAILED check_constitutive (tangent" in warn[0]
    # a learned hardening never is perfect plasticity: no limit-load "validation"
    assert art.summary["limit_load_rel_error"] is None
    assert "hardens" in art.summary["limit_load_note"]
    rows = dict(summary_rows(art.summary))
    assert rows["limit_load_rel_error"].startswith("n/a: no analytic limit load")
    assert "limit_load_note" not in rows
    section = {"name": "fem", "kind": "FieldResults", "path": art.path, "seconds": 1.0,
               "summary": summary_rows(art.summary), "warnings": warn, "properties": [],
               "plots": [], "ovito": [], "paraview": []}
    md = render_markdown(tmp_path, [section], "gate")
    assert "> **Warning:** the surrogate FAILED check_constitutive (tangent" in md
    assert "| limit_load_rel_error | n/a: no analytic limit load: the material hardens" in md
    assert "Warning:</b> the surrogate FAILED" in render_html(tmp_path, [section], "gate")


def test_unchecked_surrogate_is_checked_by_the_fem(tmp_path):
    sur = make_surrogate(tmp_path / "unchecked", checks="none")
    art = SMALL.make(sur, tmp_path / "fem")
    mc = art.summary["material_checks"]
    assert mc == {"passed": True, "failed": [], "failed_detail": "",
                  "source": "check_constitutive run by the FEM", "overridden": False}
    assert override_warnings(art.summary) == []


def test_cli_refuses_then_overrides(failing, tmp_path):
    from scalebridge.workflows.cli import cli

    runner = CliRunner()
    cfg = tmp_path / "fem.toml"
    cfg.write_text('write_fields = false\n[problem]\nkind = "cylinder"\nn_radial = 2\n'
                   'n_angular = 3\n[solver]\nsteps = 3\ndegree = 1\n')
    args = ["fem", "run", "--config", str(cfg), "--surrogate", str(failing.path), "--out",
            str(tmp_path / "c")]
    res = runner.invoke(cli, args)
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    err = [ln for ln in res.output.splitlines() if "check_constitutive" in ln]
    assert len(err) == 1 and "failed check_constitutive: tangent (error 0.3" in err[0]
    res = runner.invoke(cli, [*args, "--allow-failed-checks"])
    assert res.exit_code == 0, res.output
    assert "WARNING: the surrogate failed check_constitutive" in res.output
    assert "no analytic limit load" in res.output
    assert read_artifact(tmp_path / "c").summary["material_checks"]["overridden"]


def test_limit_load_only_for_perfect_plasticity(tmp_path):
    perfect = SMALL.make(J2Material(hardening_modulus=0.0), tmp_path / "perfect")
    s = perfect.summary
    assert s["q_lim_mpa"] == pytest.approx(250.0 * REF["q_lim_over_sigma0"])
    assert isinstance(s["limit_load_rel_error"], float) and s["limit_load_rel_error"] < 0.05
    assert "material_checks" not in s                    # analytic: nothing to gate
    hard = SMALL.make(J2Material(hardening_modulus=1000.0), tmp_path / "hard")
    s = hard.summary
    assert s["limit_load_rel_error"] is None and "q_lim_mpa" not in s
    assert s["limit_load_note"].startswith("no analytic limit load: the material hardens")


def test_limit_load_rules():
    perfect = J2Plasticity(E, NU, LinearHardening(250.0, 0.0))
    out = limit_load(REF, perfect, 120.0, 0.01)
    assert out["q_lim_mpa"] == pytest.approx(250.0 * REF["q_lim_over_sigma0"])
    assert out["limit_load_rel_error"] == pytest.approx(abs(120.0 - out["q_lim_mpa"])
                                                        / out["q_lim_mpa"])
    # Voce with σ∞ = σ0 and no linear term is perfect plasticity too
    assert limit_load(REF, J2Plasticity(E, NU, VoceHardening(250.0, 250.0, 20.0, 0.0)),
                      120.0, 0.01)["limit_load_rel_error"] is not None
    voce = limit_load(REF, J2Plasticity(E, NU, VoceHardening()), 120.0, 0.01)
    assert voce["limit_load_rel_error"] is None and "hardens" in voce["limit_load_note"]
    other = limit_load(REF, LinearElastic(), 120.0, 0.0)
    assert other["limit_load_rel_error"] is None
    assert "not J2 (von Mises) plasticity" in other["limit_load_note"]
    assert limit_load({}, perfect, 120.0, 0.01) == {}     # no analytic limit for the problem
    # a viscous flow above a static Voce strength, with no fluidity until sources fire
    # (source_families): the note gives the static yield stress, not 1/fluidity
    from scalebridge.surrogates.source_families import StaticVoce

    sf = limit_load(REF, J2Plasticity(E, NU, StaticVoce(1.0, 60.0, 1e-3)), 120.0, 2e-3)
    assert sf["limit_load_rel_error"] is None
    assert "static yield stress 1 -> 52.02 MPa" in sf["limit_load_note"]
    # ... and it is rate dependence that rules the limit out, even where the static
    # strength does not harden (the example's fit at its floor: σ_0 = σ_∞)
    flat = limit_load(REF, J2Plasticity(E, NU, StaticVoce(0.11, 0.11, 108.0)), 120.0, 2e-3)
    assert flat["limit_load_note"].startswith("no analytic limit load: the material is rate "
                                              "dependent")
    assert "hardens" not in flat["limit_load_note"]
    assert "rate dependent" in sf["limit_load_note"]


def test_list_of_dicts_is_its_own_table(tmp_path):
    """A summary value that is a list of mappings renders as a table after the quantity
    table (one row per item, the union of keys, nested ones as a.b), not as a repr."""
    summ = {"flow_stress_mpa": 40.5, "study": {"conditions": [
        {"strain_rate_s": 4e4, "temperature_k": 100.0, "fit": {"exponent": 3.05}},
        {"strain_rate_s": 8e4, "temperature_k": 300.0, "events": 12}]}}
    section = {"name": "dd", "kind": "DDRun", "path": tmp_path, "seconds": None,
               "summary": summary_rows(summ), "properties": [],
               "plots": [], "ovito": [], "paraview": []}
    md = render_markdown(tmp_path, [section], "tables")
    lines = md.splitlines()
    head = "| strain_rate_s | temperature_k | fit.exponent | events |"
    i = lines.index(head)
    assert lines[i - 2] == "**study.conditions**" and lines[i + 1] == "|---|---|---|---|"
    assert lines[i + 2:] == ["| 4e+04 | 100 | 3.05 |  |", "| 8e+04 | 300 |  | 12 |"]
    assert lines.index("| flow_stress_mpa | 40.5 |") < i and "{'strain_rate_s'" not in md
    assert "| study.conditions |" not in md
    page = render_html(tmp_path, [section], "tables")
    assert ("<p><b>study.conditions</b></p><table><tr><th>strain_rate_s</th>"
            "<th>temperature_k</th><th>fit.exponent</th><th>events</th></tr>") in page
    assert "<tr><td>8e+04</td><td>300</td><td></td><td>12</td></tr>" in page
    assert "{&#x27;strain_rate_s" not in page and "<td>study.conditions</td>" not in page
