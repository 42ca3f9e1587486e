"""FieldResults artifact: files, caching, bad input, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from scalebridge.artifacts import read_artifact
from scalebridge.continuum import (
    CompressionProblem,
    FemSettings,
    J2Material,
    PatchProblem,
    PlateProblem,
    SolverSettings,
)
from scalebridge.errors import ArtifactError, DataError, SettingsError
from scalebridge.settings import validate
from scalebridge.surrogates import ConstitutiveResult

from .conftest import LinearElastic


def test_field_results_files_and_skip(tmp_path):
    settings = FemSettings(problem=PlateProblem(n_radial=3, n_angular=4),
                           solver=SolverSettings(steps=4))
    art = settings.make(J2Material(hardening_modulus=1000.0), tmp_path / "plate")
    assert art.kind == "FieldResults"
    for name in ("load_displacement.csv", "newton.csv", "load_displacement.png", "newton.png"):
        assert art.file(name).stat().st_size > 0
    for bp in ("displacement.bp", "cells.bp"):
        assert (art.path / "fields" / bp / "md.idx").is_file()
    with open(art.file("load_displacement.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "load_factor", "edge_displacement_mm", "mean_stress_mpa",
                             "iterations", "max_equivalent_plastic_strain",
                             "max_uncertainty_mpa", "out_of_range_fraction", "time_s"]
    assert len(rows) == art.summary["steps"] + 1 >= 5
    assert float(rows[-1]["load_factor"]) == 1.0
    with open(art.file("newton.csv")) as f:
        newton = list(csv.DictReader(f))
    assert sum(1 for r in newton if int(r["iteration"]) >= 1) == art.summary[
        "newton_iterations_all"] >= art.summary["newton_iterations"]
    assert art.summary["max_equivalent_plastic_strain"] > 0
    # same settings and model: skipped, same fingerprint
    again = settings.make(J2Material(hardening_modulus=1000.0), tmp_path / "plate")
    assert again.manifest["started"] == art.manifest["started"]
    # a different model is a different artifact
    other = FemSettings(problem=PlateProblem(n_radial=3, n_angular=4),
                        solver=SolverSettings(steps=4), write_fields=False)
    assert other.make(J2Material(hardening_modulus=2000.0), tmp_path / "p2").fingerprint \
        != art.fingerprint


def test_newton_plot_shows_steps_converged_in_one_iteration():
    """newton.png: a step that converged in one Newton iteration is a line of one point,
    drawn as a marker (a bare line of one point is invisible) and counted in the title;
    a history without iterations says so on the plot rather than leaving it blank."""
    import matplotlib.pyplot as plt
    from scalebridge.continuum.output import newton_figure

    # (step, attempt, load factor, iteration, residual, relative residual); iteration 0
    # is the residual before the first solve, not plotted
    rows = [(s, 0, 0.1 * s, it, 1e-12, 2e-13) for s in (1, 2, 3) for it in (0, 1)]
    rows += [(4, 0, 0.4, 0, 1.0, 1e-1), (4, 0, 0.4, 1, 1e-3, 1e-4), (4, 0, 0.4, 2, 1e-9, 1e-10)]
    fig = newton_figure(rows)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert sorted(len(ln.get_xdata()) for ln in lines) == [1, 1, 1, 2]
    assert all(ln.get_marker() not in (None, "", " ", "None") and ln.get_markersize() > 0
               for ln in lines if len(ln.get_xdata()) == 1)
    assert "3 of 4 steps converged in 1 iteration" in ax.get_title()
    lo, hi = ax.get_xlim()
    assert lo < 1 < 2 < hi
    plt.close(fig)
    fig = newton_figure([])
    assert [t.get_text() for t in fig.axes[0].texts] == ["no Newton iterations recorded"]
    plt.close(fig)


def test_frictionless_compression_is_uniaxial_and_yields_at_sigma0(tmp_path):
    # 3D, homogeneous: elastic slope E, then a plateau at σ0 (perfect plasticity)
    settings = FemSettings(problem=CompressionProblem(cells=(2, 2, 2), sticking=False,
                                                      platen_displacement=0.06),
                           solver=SolverSettings(degree=1, steps=6), write_fields=False)
    art = settings.make(J2Material(hardening_modulus=0.0), tmp_path / "comp")
    with open(art.file("load_displacement.csv")) as f:
        rows = list(csv.DictReader(f))
    strain = np.array([float(r["shortening_mm"]) for r in rows]) / 7.5
    stress = np.array([float(r["compressive_stress_mpa"]) for r in rows])
    assert stress[1] == pytest.approx(70e3 * strain[1], rel=1e-10)
    assert stress[-1] == pytest.approx(250.0, rel=1e-10)


def test_sticking_compression_is_stiffer_than_frictionless(tmp_path):
    kw = dict(cells=(2, 2, 3), platen_displacement=0.005)
    out = {}
    for sticking in (True, False):
        s = FemSettings(problem=CompressionProblem(sticking=sticking, **kw),
                        solver=SolverSettings(steps=1), write_fields=False)
        out[sticking] = s.make(LinearElastic(), tmp_path / str(sticking)).summary
    assert out[True]["max_load_mpa"] > out[False]["max_load_mpa"] * 1.01


def test_bad_settings_and_models_give_one_line_errors(tmp_path):
    with pytest.raises(SettingsError, match="did you mean 'n_radial'"):
        validate(FemSettings, {"problem": {"kind": "cylinder", "n_radal": 3}})
    with pytest.raises(SettingsError, match="kind"):
        validate(FemSettings, {"problem": {"kind": "sphere"}})
    with pytest.raises(ArtifactError, match="not a complete artifact"):
        FemSettings().make(tmp_path, tmp_path / "x")
    with pytest.raises(SettingsError, match="expected J2Material"):
        FemSettings().make(42, tmp_path / "x")

    class WrongShape(LinearElastic):
        name = "wrong"

        def update(self, strain, dstrain, state, dt=1.0):
            r = super().update(strain, dstrain, state, dt)
            return ConstitutiveResult(stress=r.stress[:, :4], tangent=r.tangent,
                                      state=r.state)

    with pytest.raises(DataError, match=r"'wrong'.*stress of shape"):
        FemSettings(problem=PatchProblem(), write_fields=False).make(WrongShape(),
                                                                     tmp_path / "w")
    assert (tmp_path / "w.failed.json").is_file()


def test_cli_run_and_schema(tmp_path):
    from scalebridge.workflows.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["fem", "schema"])
    assert res.exit_code == 0 and "problem.inner_displacement" in res.output
    # every line is `key = default` or `key = <required: type>`, never pydantic's sentinel
    assert "Undefined" not in res.output
    assert "problem.mesh = <required: path>  # mesh file" in res.output
    assert "problem.bc.value = <required: float>" in res.output
    cfg = tmp_path / "fem.toml"
    cfg.write_text('write_fields = false\n[problem]\nkind = "cylinder"\nn_radial = 3\n'
                   'n_angular = 6\n[solver]\nsteps = 6\n[material]\nsigma0 = 300.0\n')
    res = runner.invoke(cli, ["fem", "run", "--config", str(cfg), "--out",
                              str(tmp_path / "cyl")])
    assert res.exit_code == 0, res.output
    assert "limit pressure" in res.output
    art = read_artifact(tmp_path / "cyl", kind="FieldResults")
    assert art.summary["q_lim_mpa"] == pytest.approx(300 * 2 / np.sqrt(3) * np.log(1.3))
    cfg.write_text('[problem]\nkind = "cylinder"\nn_radal = 3\n')
    res = runner.invoke(cli, ["fem", "run", "--config", str(cfg), "--out",
                              str(tmp_path / "bad")])
    assert res.exit_code == 1
    assert res.output.count("\n") == 1 and "n_radal" in res.output


def test_uncertainty_field_written_where_the_model_has_one(tmp_path):
    class WithUncertainty(LinearElastic):
        name = "elastic-with-uncertainty"

        def update(self, strain, dstrain, state, dt=1.0):
            r = super().update(strain, dstrain, state, dt)
            # 1 % of the stress norm, as an ensemble spread would be
            r.uncertainty = 0.01 * np.linalg.norm(r.stress, axis=1)
            r.out_of_range = np.abs(strain + dstrain).max(axis=1) > 5e-4
            return r

    settings = FemSettings(problem=PatchProblem(n=2), solver=SolverSettings(steps=2))
    art = settings.make(WithUncertainty(), tmp_path / "u")
    assert art.summary["max_uncertainty_mpa"] > 0
    assert 0 < art.summary["max_out_of_range_fraction"] <= 1
    assert 0 < art.summary["out_of_range_fraction"] <= art.summary["max_out_of_range_fraction"]
    # the run total is over the load steps' updates, not the unloaded record (step 0)
    with open(art.path / "load_displacement.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["step"] == "0" and float(rows[0]["out_of_range_fraction"]) == 0
    per_step = [float(r["out_of_range_fraction"]) for r in rows[1:]]
    assert len(per_step) == art.summary["steps"] == 2
    assert art.summary["out_of_range_fraction"] == pytest.approx(np.mean(per_step), rel=1e-5)
    meta = (art.path / "fields" / "cells.bp" / "md.0").read_bytes()
    assert b"uncertainty" in meta and b"equivalent_plastic_strain" in meta
    plain = settings.make(LinearElastic(), tmp_path / "plain")
    assert b"uncertainty" not in (plain.path / "fields" / "cells.bp" / "md.0").read_bytes()
