"""Taylor tests of the assembled residual and Jacobian through the quadrature callback.

‖F(u + hδ) − F(u) − h J(u) δ‖ must fall as h² when J is the consistent tangent of F:
this checks the strain at the quadrature points, the Mandel bookkeeping and the layout
of the tangent block in its quadrature function (a transposed block, invisible for the
symmetric J2 tangent, shows up with the non-symmetric model below as slope 1).
"""

from __future__ import annotations

import numpy as np
from dolfinx.fem import petsc as fpetsc
from mpi4py import MPI
from petsc4py import PETSc
from scalebridge.continuum import CylinderProblem, ElastoplasticSolver, PlateProblem, SolverSettings
from scalebridge.surrogates import ConstitutiveResult

from .conftest import LinearElastic, perfect_j2


class NonSymmetricElastic(LinearElastic):
    """σ = C ε + β (a·ε)² b: hyperelastic-free, path-independent, tangent C + 2β(a·ε) b⊗a."""

    name = "nonsymmetric"

    def __init__(self) -> None:
        super().__init__()
        self.a = np.array([1.0, 0.5, 0.3, 0.0, 0.0, 0.7])
        self.b = np.array([0.2, 1.0, 0.1, 0.0, 0.0, -0.5])
        self.beta = 2e6

    def update(self, strain, dstrain, state, dt=1.0):
        e = strain + dstrain
        ae = e @ self.a
        stress = e @ self.C.T + self.beta * (ae**2)[:, None] * self.b
        tangent = self.C + 2 * self.beta * ae[:, None, None] * np.outer(self.b, self.a)
        return ConstitutiveResult(stress=stress, tangent=tangent, state=state.copy())


def _plate():
    return PlateProblem(n_radial=3, n_angular=4, end_displacement=0.02).build(MPI.COMM_SELF)


def _residual(solver) -> np.ndarray:
    solver.material.evaluate()
    b = fpetsc.assemble_vector(solver.F_form)
    b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
    out = b.array.copy()
    b.destroy()
    return out


def _taylor_slopes(solver, scale: float) -> tuple[list[float], list[float]]:
    u0 = solver.u.x.array.copy()
    F0 = _residual(solver)
    J = fpetsc.assemble_matrix(solver.J_form)          # no BC rows: the plain Jacobian
    J.assemble()
    rng = np.random.default_rng(1)
    delta = solver.u.x.petsc_vec.duplicate()
    n_owned = delta.getLocalSize()
    delta.array[:] = scale * rng.standard_normal(n_owned)
    Jd = J.createVecLeft()
    J.mult(delta, Jd)
    hs = [1e-1, 5e-2, 2.5e-2, 1.25e-2]
    errs = []
    for h in hs:
        solver.u.x.array[:n_owned] = u0[:n_owned] + h * delta.array
        solver.u.x.scatter_forward()
        r = _residual(solver) - F0 - h * Jd.array
        errs.append(np.linalg.norm(r))
    solver.u.x.array[:] = u0
    slopes = [np.log(errs[i + 1] / errs[i]) / np.log(hs[i + 1] / hs[i])
              for i in range(len(hs) - 1)]
    return errs, slopes


def test_taylor_slope_two_for_j2_in_plastic_flow():
    solver = ElastoplasticSolver(CylinderProblem().build(MPI.COMM_SELF), perfect_j2(),
                                 SolverSettings(steps=10))
    solver.run()                                      # committed at λ = 1, plastic
    assert solver._newton(1.05, 99, 0, []) is not None  # converged, not committed
    assert solver.material.eqps(committed=False).max() > solver.material.eqps().max()
    # perturbation small against the step's plastic increment: no point switches branch
    errs, slopes = _taylor_slopes(solver, scale=1e-6)
    assert errs[0] > 0
    assert min(slopes) > 1.8, (errs, slopes)


def test_taylor_slope_two_with_a_nonsymmetric_tangent():
    model = NonSymmetricElastic()
    solver = ElastoplasticSolver(_plate(),
                                 model, SolverSettings(steps=2))
    solver.run()
    t = model.update(solver.material.strain_n, 0 * solver.material.strain_n,
                     solver.material.state_n).tangent
    k = [0, 1, 5]
    asym = np.abs(t[:, k][:, :, k] - t[:, k][:, :, k].transpose(0, 2, 1)).max()
    assert asym > 0.1 * np.abs(t).max() * 1e-3           # really non-symmetric
    errs, slopes = _taylor_slopes(solver, scale=1e-3)
    assert min(slopes) > 1.8, (errs, slopes)


def test_taylor_detects_a_wrong_tangent():
    """The same check fails (slope 1) when the model reports the transposed tangent."""

    class Transposed(NonSymmetricElastic):
        def update(self, strain, dstrain, state, dt=1.0):
            r = super().update(strain, dstrain, state, dt)
            r.tangent = r.tangent.transpose(0, 2, 1).copy()
            return r

    solver = ElastoplasticSolver(_plate(),
                                 Transposed(), SolverSettings(steps=2, max_iterations=60))
    solver.run()
    _, slopes = _taylor_slopes(solver, scale=1e-3)
    assert max(slopes) < 1.3
