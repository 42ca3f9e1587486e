"""Mesh-convergence check of the FEM (``[continuum] mesh_convergence``): the same problem
and material on meshes with every element size halved; the loads approach the analytic
ones (Lamé elastic, the perfectly plastic limit pressure), the change between levels
shrinks, and ``mesh_convergence_check`` grades the run's change."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from mpi4py import MPI
from scalebridge.continuum import CylinderProblem, ElastoplasticSolver, FemSettings, MeshProblem
from scalebridge.continuum.fem import mesh_convergence, run_fem
from scalebridge.continuum.solver import SolverSettings
from scalebridge.errors import SettingsError
from scalebridge.settings import validate
from scalebridge.workflows.stage_continuum import ContinuumSection, _band_settings
from scalebridge.workflows.verdicts import mesh_convergence_check

from .conftest import perfect_j2

SIGMA0 = 250.0


@pytest.fixture(scope="module")
def study():
    """A coarse cylinder (2 x 4 cells: 32 triangles) to full plastic flow, with two
    refinements (128 and 512 triangles)."""
    settings = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=4),
                           solver=SolverSettings(steps=10), write_fields=False,
                           mesh_convergence=2)
    model = perfect_j2(SIGMA0)
    problem = settings.problem.build(MPI.COMM_SELF)
    result = ElastoplasticSolver(problem, model, settings.solver).run()
    return mesh_convergence(settings, model, MPI.COMM_SELF, (problem, result))


def test_refinement_halves_every_element(study):
    # crossed diagonals: 4 triangles per cell; each level doubles both cell counts
    assert study["h_ratio"] == 2 and study["levels"] == 3
    assert study["elements"] == [32, 128, 512]
    assert study["n_dofs"][0] < study["n_dofs"][1] < study["n_dofs"][2]


def test_refined_loads_approach_lame_and_the_limit_pressure(study):
    """The elastic step's error against Lamé and the max load's against (2/√3) σ0
    ln(Re/Ri) fall with every refinement (the coarse mesh's polygonal bore is the
    error's main part)."""
    ela, lim = study["elastic_rel_error"], study["limit_load_rel_error"]
    assert all(e is not None for e in ela + lim)
    assert ela[0] > ela[1] > ela[2] and ela[2] < 2e-3
    assert lim[0] > lim[1] > lim[2] and lim[2] < 5e-3


def test_changes_shrink_with_refinement(study):
    for what in ("final", "max"):
        first, nxt = study[f"rel_change_{what}"], study[f"rel_change_{what}_next"]
        assert first > 0 and 0 < nxt < first
    # a monotone sequence: an observed order, and an extrapolation nearer the limit
    # pressure than the finest mesh
    p = study["order_max"]
    assert p is not None and p > 0.5
    q_lim = CylinderProblem().build(MPI.COMM_SELF).reference["q_lim_over_sigma0"] * SIGMA0
    assert abs(study["extrapolated_max_mpa"] - q_lim) < abs(study["max_load_mpa"][2] - q_lim)


def test_check_grades_the_study(study):
    chk = mesh_convergence_check({"mesh_convergence": study})
    rel = study["rel_change_final"]
    assert chk.name == "mesh_convergence" and chk.value == pytest.approx(rel)
    assert chk.status == ("green" if rel < 0.01 else "amber" if rel < 0.05 else "red")
    assert "element size halved" in chk.reason and "observed order" in chk.detail


def _rec(coarse: float, fine: float) -> dict:
    return {"mesh_convergence": {
        "h_ratio": 2, "elements": [288, 1152], "final_load_mpa": [coarse, fine],
        "max_load_mpa": [60.0, 59.0], "rel_change_final": abs(fine - coarse) / fine,
        "rel_change_max": 1 / 59.0, "wall_s": 3.0}}


@pytest.mark.parametrize(("coarse", "fine", "status"), [
    (30.0, 30.2, "green"), (30.0, 30.9, "amber"), (30.0, 33.0, "red"),
    (30.0, 30.0, "green")])
def test_check_grades_a_summary(coarse, fine, status):
    chk = mesh_convergence_check(_rec(coarse, fine))
    assert chk.status == status
    assert f"{coarse:.4g} MPa" in chk.reason and "288 -> 1152" in chk.detail


def test_check_not_run_is_na_with_a_reason():
    chk = mesh_convergence_check({"final_load_mpa": 30.0})
    assert chk.status == "n/a" and "not run" in chk.reason
    chk = mesh_convergence_check({"mesh_convergence": {
        "h_ratio": 2, "note": "not run: the mesh problem's mesh is not refined"}})
    assert chk.status == "n/a" and "mesh is not refined" in chk.reason


def test_a_refined_solve_that_stopped_early_is_not_graded():
    """A level that stopped short of the full load ends at another displacement: its
    final load is not comparable, whatever the change says."""
    rec = _rec(30.0, 30.1)
    rec["mesh_convergence"]["stopped_at_load_factor"] = [None, 0.62]
    chk = mesh_convergence_check(rec)
    assert chk.status == "n/a" and "mesh 1 (0: the run's) stopped at load factor 0.62" in (
        chk.reason)
    rec["mesh_convergence"]["stopped_at_load_factor"] = [None, None]
    assert mesh_convergence_check(rec).status == "green"


def test_a_mesh_file_is_not_refined():
    settings = FemSettings(problem=MeshProblem(mesh="part.msh", bc=[
        {"boundary": "clamp", "kind": "fixed"}]), mesh_convergence=1)
    rec = mesh_convergence(settings, perfect_j2(), MPI.COMM_SELF, (None, None))
    assert "not run" in rec["note"] and "rel_change_final" not in rec


def test_setting_defaults_fingerprint_and_bad_input():
    assert FemSettings().mesh_convergence == 0          # a FEM run of its own: off
    sec = ContinuumSection()
    assert sec.mesh_convergence == 1 and sec.fem().mesh_convergence == 1   # the chain: on
    assert sec.fem().fingerprint_settings()["mesh_convergence"] == 1
    assert FemSettings().fingerprint_settings()["mesh_convergence"] == 0
    band = _band_settings(SimpleNamespace(continuum=sec))["fem"]
    assert band.mesh_convergence == 0          # the band's solves skip it
    with pytest.raises(SettingsError, match="mesh_convergence"):
        validate(ContinuumSection, {"mesh_convergence": 3})


def test_run_fem_puts_the_study_into_the_summary(tmp_path):
    def run(levels: int, out):
        settings = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=4),
                               solver=SolverSettings(steps=4), write_fields=False,
                               mesh_convergence=levels)
        out.mkdir()
        return run_fem(settings, perfect_j2(SIGMA0), out, MPI.COMM_SELF)

    off, on = run(0, tmp_path / "off"), run(1, tmp_path / "on")
    assert "mesh_convergence" not in off
    mc = on["mesh_convergence"]
    assert mc["final_load_mpa"][0] == on["final_load_mpa"] == off["final_load_mpa"]
    assert mc["max_load_mpa"][0] == on["max_load_mpa"]
    assert mc["elements"] == [32, 128] and mc["wall_s"] > 0
    assert mc["final_load_mpa"][1] != mc["final_load_mpa"][0]
    # the refined solve writes nothing: the same files as the run without it
    names = lambda d: sorted(p.name for p in d.iterdir())  # noqa: E731
    assert names(tmp_path / "on") == names(tmp_path / "off")


@pytest.mark.mpi
def test_two_ranks_give_the_serial_study(tmp_path):
    """Under ``mpiexec -n 2`` the refined solves run in the worker, collectively: the
    same element counts (global, not one rank's) and loads as one rank."""
    from scalebridge.continuum import J2Material
    from scalebridge.settings import Resources

    settings = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=4),
                           solver=SolverSettings(steps=4), write_fields=False,
                           mesh_convergence=1)
    one = settings.make(J2Material(), tmp_path / "one", Resources(mpi_ranks=1))
    two = settings.make(J2Material(), tmp_path / "two", Resources(mpi_ranks=2))
    a, b = one.summary["mesh_convergence"], two.summary["mesh_convergence"]
    assert two.summary["ranks"] == 2
    assert a["elements"] == b["elements"] == [32, 128]
    assert b["final_load_mpa"] == pytest.approx(a["final_load_mpa"], rel=1e-8)
    assert b["rel_change_final"] == pytest.approx(a["rel_change_final"], rel=1e-6)
