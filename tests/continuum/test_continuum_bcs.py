"""Boundary conditions by tag name, each against an analytic answer (elastic range).

- prescribed displacement with load stepping: a bar in tension, reaction = E·A·u/L at
  every load factor (3D on rollers; 2D plane strain: E/(1-ν²) per thickness);
- traction: the same bar under an end traction σ stretches by σL/E;
- pressure: a thick-walled tube (plane strain) widens its bore by Lamé's
  u(a) = (1+ν) p a (1-2ν + b²/a²) / (E (b²/a² - 1));
- fixed components: the rollers and symmetry planes of all three;
- a plate with a hole in tension: Kirsch's stress concentration → 3 as the mesh is refined.
"""

from __future__ import annotations

import csv

import pytest
from mpi4py import MPI
from scalebridge.continuum import (
    ElastoplasticSolver,
    FemSettings,
    J2Material,
    MeshProblem,
    SolverSettings,
)
from scalebridge.errors import SettingsError

from .conftest import LinearElastic
from .gmsh_shapes import bar, quarter_annulus, quarter_plate_with_hole

E, NU = 70e3, 0.3
L, W = 10.0, 2.0
ROLLERS_3D = [{"boundary": "left", "kind": "fixed", "components": ["x"]},
              {"boundary": "y0", "kind": "fixed", "components": ["y"]},
              {"boundary": "z0", "kind": "fixed", "components": ["z"]}]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    return {"bar3": bar(d / "bar3.msh", dim=3), "bar2": bar(d / "bar2.msh", dim=2),
            "tube": quarter_annulus(d / "tube.msh", size=0.08)}


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_bar_in_tension_reaction_is_EAu_over_L_at_every_load_factor(shapes, tmp_path):
    u = 0.02                                          # mm: elastic (σ = 140 MPa < 250)
    fem = FemSettings(problem=MeshProblem(mesh=shapes["bar3"], bc=[
        *ROLLERS_3D, {"boundary": "right", "kind": "displacement", "x": u}]),
        solver=SolverSettings(steps=4, degree=1), write_fields=False)
    art = fem.make(J2Material(youngs_modulus=E, poisson_ratio=NU), tmp_path / "bar")
    expected = E * W * W * u / L
    rows = _rows(art.file("reactions.csv"))
    assert len(rows) == 5 and art.file("reactions.png").stat().st_size > 0
    for r in rows:                                    # linear in the load factor
        lam = float(r["load_factor"])
        assert float(r["reaction_right_x_n"]) == pytest.approx(lam * expected, rel=1e-9,
                                                               abs=1e-9)
        assert float(r["reaction_left_x_n"]) == pytest.approx(-lam * expected, rel=1e-9,
                                                              abs=1e-9)
        assert abs(float(r["reaction_y0_y_n"])) < 1e-8 * expected   # free lateral contraction
    assert art.summary["final_reactions_n"]["right"][0] == pytest.approx(expected, rel=1e-9)
    # the load measure: the reaction over the end's area, i.e. the stress E u / L
    assert art.summary["max_load_mpa"] == pytest.approx(E * u / L, rel=1e-9)
    assert art.summary["load_name"] == "right_mean_traction_mpa"
    curve = _rows(art.file("load_displacement.csv"))
    assert float(curve[-1]["right_displacement_mm"]) == pytest.approx(u)


def test_plane_strain_bar_reaction_per_thickness(shapes):
    u, t = 0.02, 5.0
    problem = MeshProblem(mesh=shapes["bar2"], thickness=t, bc=[
        {"boundary": "left", "kind": "fixed", "components": ["x"]},
        {"boundary": "y0", "kind": "fixed", "components": ["y", "z"]},   # z: ignored in 2D
        {"boundary": "right", "kind": "displacement", "x": u}]).build(MPI.COMM_SELF)
    res = ElastoplasticSolver(problem, LinearElastic(E, NU),
                              SolverSettings(steps=1, degree=1)).run()
    # ε_zz = 0, σ_yy = 0: σ_xx = E/(1-ν²) ε_xx over the end of W x t
    expected = E / (1 - NU ** 2) * W * t * u / L
    assert res.steps[-1].reactions["right"][0] == pytest.approx(expected, rel=1e-9)


def test_end_traction_stretches_the_bar_by_sigma_L_over_E(shapes):
    sigma = 100.0
    problem = MeshProblem(mesh=shapes["bar3"], bc=[
        *ROLLERS_3D, {"boundary": "right", "kind": "traction", "x": sigma}]).build(
            MPI.COMM_SELF)
    res = ElastoplasticSolver(problem, LinearElastic(E, NU),
                              SolverSettings(steps=2, degree=1)).run()
    last = res.steps[-1]
    assert last.load == pytest.approx(sigma)                   # the applied traction
    assert last.displacement == pytest.approx(sigma * L / E, rel=1e-9)
    assert last.reactions["left"][0] == pytest.approx(-sigma * W * W, rel=1e-9)


def test_pressure_in_a_thick_tube_matches_lame(shapes):
    p, a, b = 50.0, 1.0, 2.0
    problem = MeshProblem(mesh=shapes["tube"], bc=[
        {"boundary": "left", "kind": "fixed", "components": ["x"]},
        {"boundary": "bottom", "kind": "fixed", "components": ["y"]},
        {"boundary": "bore", "kind": "pressure", "value": p}]).build(MPI.COMM_SELF)
    res = ElastoplasticSolver(problem, LinearElastic(E, NU), SolverSettings(steps=1)).run()
    k = b * b / (a * a)
    u_a = (1 + NU) * p * a * (1 - 2 * NU + k) / (E * (k - 1))
    assert res.steps[-1].displacement == pytest.approx(u_a, rel=2e-3)
    assert res.steps[-1].load == pytest.approx(p)
    # the symmetry planes carry the hoop force: ∫σ_θθ dr over the wall = p a
    assert res.steps[-1].reactions["left"][0] == pytest.approx(-p * a, rel=2e-3)


def test_plate_with_hole_approaches_kirsch_concentration(tmp_path):
    """σ_xx at the hole's top over the remote stress; a plate 20a wide (Howland: 3.03)."""
    sigma, kt = 100.0, []
    for h in (0.2, 0.1, 0.05):
        mesh = quarter_plate_with_hole(tmp_path / f"plate_{h}.msh", size_hole=h)
        problem = MeshProblem(mesh=mesh, bc=[
            {"boundary": "left", "kind": "fixed", "components": ["x"]},
            {"boundary": "bottom", "kind": "fixed", "components": ["y"]},
            {"boundary": "right", "kind": "traction", "x": sigma}]).build(MPI.COMM_SELF)
        solver = ElastoplasticSolver(problem, LinearElastic(E, NU), SolverSettings(steps=1))
        solver.run()
        kt.append(solver.material.stress_n[:, 0].max() / sigma)
    assert 2.7 < kt[0] < kt[1] < kt[2] < 3.1          # from below at quadrature points
    errors = [abs(3.03 - k) for k in kt]
    assert errors[2] < errors[1] < errors[0] and errors[2] < 0.03


def test_bc_mistakes_are_one_line(shapes):
    def build(bcs, mesh="bar2"):
        return MeshProblem(mesh=shapes[mesh], bc=bcs).build(MPI.COMM_SELF)

    with pytest.raises(SettingsError, match=r"z = 0\.1 on a 2D"):
        build([{"boundary": "left", "kind": "fixed"},
               {"boundary": "right", "kind": "displacement", "x": 0.1, "z": 0.1}])
    with pytest.raises(SettingsError, match="prescribed twice"):
        build([{"boundary": "left", "kind": "fixed"},
               {"boundary": "left", "kind": "displacement", "x": 0.1}])
    with pytest.raises(SettingsError, match="nothing holds the body"):
        build([{"boundary": "right", "kind": "traction", "x": 1.0}])
    with pytest.raises(SettingsError, match="nothing loads the body"):
        build([{"boundary": "left", "kind": "fixed"}])
    with pytest.raises(SettingsError, match="prescribes no component"):
        build([{"boundary": "left", "kind": "fixed"},
               {"boundary": "right", "kind": "displacement"}])
