"""A user's mesh: gmsh .msh written with gmsh's Python API, and XDMF with tags, 2D and 3D,
read serially and under ``mpiexec -n 2``; boundaries found by their physical names."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mpi4py import MPI
from scalebridge.continuum import FemSettings, J2Material, MeshProblem, SolverSettings
from scalebridge.continuum.mesh_input import labels_file, read_mesh, write_xdmf
from scalebridge.continuum.problems import boundary_size
from scalebridge.errors import DataError, SettingsError
from scalebridge.settings import Resources

from .gmsh_shapes import bar


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    d = tmp_path_factory.mktemp("meshes")
    return {"bar3": bar(d / "bar3.msh", dim=3), "bar2": bar(d / "bar2.msh", dim=2, size=0.5)}


def test_gmsh_3d_mesh_has_its_physical_names(meshes):
    tm = read_mesh(meshes["bar3"], MPI.COMM_SELF)
    assert tm.dim == 3 and tm.mesh.geometry.dim == 3
    assert set(tm.labels) == {"left", "right", "y0", "z0"}
    assert tm.cell_labels == {"steel": 1}
    assert tm.cell_tags is not None and tm.facet_tags is not None
    for name, tag in tm.labels.items():          # by name and by number: the same facets
        assert np.array_equal(tm.facets[name], tm.facets[str(tag)])
    assert boundary_size(tm, "left") == pytest.approx(4.0)      # 2 x 2 mm
    assert boundary_size(tm, "y0") == pytest.approx(20.0)       # 10 x 2 mm


def test_gmsh_2d_mesh_is_plane(meshes):
    tm = read_mesh(meshes["bar2"], MPI.COMM_SELF, scale=2.0)     # drawn in half-mm
    assert tm.dim == 2 and tm.mesh.geometry.dim == 2
    assert boundary_size(tm, "right") == pytest.approx(4.0)
    assert boundary_size(tm, "y0") == pytest.approx(20.0)


def test_xdmf_round_trip_keeps_tags_and_names(meshes, tmp_path):
    tm = read_mesh(meshes["bar3"], MPI.COMM_SELF)
    files = write_xdmf(tm, tmp_path / "bar.xdmf")
    assert all(f.is_file() for f in files)
    assert json.loads(labels_file(files[0]).read_text()) == {
        "facets": tm.labels, "cells": {"steel": 1}}
    back = read_mesh(files[0], MPI.COMM_SELF)
    assert back.labels == tm.labels and back.cell_labels == tm.cell_labels
    assert back.mesh.topology.index_map(3).size_global == \
        tm.mesh.topology.index_map(3).size_global
    for name in tm.labels:
        assert boundary_size(back, name) == pytest.approx(boundary_size(tm, name))
    # without the sidecar the tags are reachable by number, or named in the settings
    labels_file(files[0]).unlink()
    bare = read_mesh(files[0], MPI.COMM_SELF, labels={"clamp": tm.labels["left"]})
    assert boundary_size(bare, "clamp") == pytest.approx(4.0)
    assert boundary_size(bare, str(tm.labels["right"])) == pytest.approx(4.0)


def test_mesh_errors_are_one_line(meshes, tmp_path):
    with pytest.raises(SettingsError, match="mesh file not found"):
        read_mesh(tmp_path / "none.msh", MPI.COMM_SELF)
    (tmp_path / "m.stl").write_text("solid\n")
    with pytest.raises(SettingsError, match="unknown format"):
        read_mesh(tmp_path / "m.stl", MPI.COMM_SELF)
    (tmp_path / "junk.msh").write_text("not a mesh\n")
    with pytest.raises(DataError) as e:
        read_mesh(tmp_path / "junk.msh", MPI.COMM_SELF)
    assert "\n" not in str(e.value)
    files = write_xdmf(read_mesh(meshes["bar3"], MPI.COMM_SELF), tmp_path / "b.xdmf")
    with pytest.raises(DataError, match="no facet tags grid named 'boundaries'"):
        read_mesh(files[0], MPI.COMM_SELF, facet_tags_name="boundaries")
    with pytest.raises(DataError, match="label 'clamp' = 99 names no facet tag"):
        read_mesh(files[0], MPI.COMM_SELF, labels={"clamp": 99})
    problem = MeshProblem(mesh=meshes["bar3"], bc=[
        {"boundary": "left", "kind": "fixed"},
        {"boundary": "rigth", "kind": "displacement", "x": 0.01}])
    with pytest.raises(SettingsError, match="did you mean 'right'"):
        problem.build(MPI.COMM_SELF)


@pytest.mark.mpi
def test_mesh_problem_on_two_ranks_reproduces_one_rank(meshes, tmp_path):
    """The .msh is read on rank 0 and distributed; its XDMF is read in parallel."""
    xdmf = write_xdmf(read_mesh(meshes["bar3"], MPI.COMM_SELF), tmp_path / "bar.xdmf")[0]
    bcs = [{"boundary": "left", "kind": "fixed"},
           {"boundary": "right", "kind": "displacement", "x": 0.05}]
    solver = SolverSettings(steps=3, degree=1)
    mat = J2Material(hardening_modulus=5e3)
    one = FemSettings(problem=MeshProblem(mesh=meshes["bar3"], bc=bcs), solver=solver,
                      write_fields=False).make(mat, tmp_path / "one")
    for name, mesh in (("msh", meshes["bar3"]), ("xdmf", xdmf)):
        two = FemSettings(problem=MeshProblem(mesh=mesh, bc=bcs), solver=solver,
                          write_fields=False).make(mat, tmp_path / name, Resources(mpi_ranks=2))
        assert two.summary["ranks"] == 2 and two.summary["n_dofs"] == one.summary["n_dofs"]
        r1, r2 = one.summary["final_reactions_n"], two.summary["final_reactions_n"]
        assert set(r1) == set(r2) == {"left", "right"}
        for k in r1:
            assert np.allclose(r2[k], r1[k], rtol=1e-8, atol=1e-6)
        assert two.summary["max_load_mpa"] == pytest.approx(one.summary["max_load_mpa"],
                                                             rel=1e-8)
    assert one.summary["max_equivalent_plastic_strain"] > 0      # it yielded


def test_chain_toml_mesh_path_is_relative_to_the_toml(meshes, tmp_path, monkeypatch):
    """``[continuum.problem] mesh`` in a run file resolves against the file's folder (as
    ``[run] data`` does), whatever the working directory; the fem node declares that file
    and solves on it (a bar in tension: reaction E A u / L)."""
    import shutil
    import textwrap

    from scalebridge.workflows.settings import load_run_settings
    from scalebridge.workflows.stage_continuum import nodes

    from .conftest import LinearElastic

    case = tmp_path / "case"
    (case / "meshes").mkdir(parents=True)
    shutil.copy(meshes["bar3"], case / "meshes" / "bar.msh")
    (case / "run.toml").write_text(textwrap.dedent('''
        [continuum.problem]
        kind = "mesh"
        mesh = "meshes/bar.msh"
        [[continuum.problem.bc]]
        boundary = "left"
        kind = "fixed"
        [[continuum.problem.bc]]
        boundary = "right"
        kind = "displacement"
        x = 0.01
        [continuum.solver]
        steps = 1
        degree = 1
        [continuum]
        write_fields = false
    '''))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_run_settings("../case/run.toml")
    assert cfg.continuum.problem.mesh == case / "meshes" / "bar.msh"
    fem_node = next(n for n in nodes(cfg) if n.name == "fem")
    assert fem_node.files(cfg)["mesh"] == case / "meshes" / "bar.msh"
    art = cfg.continuum.fem().make(LinearElastic(70e3, 0.0), tmp_path / "fem")
    assert art.summary["final_reactions_n"]["right"][0] == pytest.approx(280.0, rel=1e-7)
