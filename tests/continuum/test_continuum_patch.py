"""Patch test: a homogeneous strain imposed on a distorted mesh is reproduced exactly."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from scalebridge.continuum import ElastoplasticSolver, PatchProblem, SolverSettings
from scalebridge.continuum.quadrature import SQ2

from .conftest import Counting, LinearElastic


@pytest.mark.parametrize("dim,degree", [(2, 1), (2, 2), (3, 1)])
def test_patch_reproduces_homogeneous_strain(dim, degree):
    ps = PatchProblem(dim=dim, n=3, strain=(1e-3, -4e-4, 3e-4, 2e-4, -5e-4, 6e-4))
    problem = ps.build(MPI.COMM_SELF)
    # the mesh really is distorted: edges off the grid
    x = problem.mesh.mesh.geometry.x
    assert np.abs(x[:, :dim] * 3 - np.round(x[:, :dim] * 3)).max() > 0.05
    model = LinearElastic()
    solver = ElastoplasticSolver(problem, model, SolverSettings(degree=degree, steps=2))
    result = solver.run()
    E = ps.tensor()[:dim, :dim]
    # displacement at every dof equals E x
    V = solver.V
    exact = V.tabulate_dof_coordinates()[:, :dim] @ E.T
    u = solver.u.x.array.reshape(-1, dim)
    assert np.abs(u - exact).max() < 1e-14 * 1e3 * np.abs(exact).max()
    # strain and stress at every quadrature point are the imposed ones
    mat = solver.material
    e_mandel = np.array(ps.strain)
    if dim == 2:
        e_mandel[[2, 3, 4]] = 0.0
    assert np.abs(mat.strain_n - e_mandel).max() < 1e-12 * np.abs(e_mandel).max()
    sigma = model.C @ e_mandel
    assert np.abs(mat.stress_n - sigma).max() < 1e-11 * np.abs(sigma).max()
    # the reaction measure equals the mean σ_xx (unit cell)
    assert result.steps[-1].load == pytest.approx(sigma[0], rel=1e-12)
    # linear model: one Newton iteration per step
    assert [s.iterations for s in result.steps[1:]] == [1, 1]
    assert sigma[5] / SQ2 != 0  # shear really was imposed


def test_one_batched_model_call_per_newton_iteration():
    problem = PatchProblem(dim=2, n=2).build(MPI.COMM_SELF)
    model = Counting(LinearElastic())
    solver = ElastoplasticSolver(problem, model, SolverSettings(steps=3))
    result = solver.run()
    # every call covers all quadrature points at once
    assert set(model.calls) == {solver.material.n_points}
    # one call for the unloaded state, then (iterations + 1) per step: each iteration's
    # update plus the final residual check
    assert len(model.calls) == 1 + sum(s.iterations + 1 for s in result.steps[1:])
    assert solver.material.calls == len(model.calls)
