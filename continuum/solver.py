"""Quasi-static small-strain elastoplasticity: Newton over PETSc KSP, load stepping.

The weak form, with σ and its consistent tangent C held at quadrature points by
:class:`~scalebridge.continuum.quadrature.QuadratureMaterial`::

    F(u; v)      = ∫ σ(ε(u)) : ε(v) dx                   (= 0 at free dofs)
    J(u; du, v)  = ∫ ε(v) : C : ε(du) dx

Each Newton iteration makes one batched model call, assembles F and J, and solves
``J δ = F`` (a direct LU by default) with the prescribed displacements enforced by
lifting; ``u ← u − δ``. Convergence: the residual norm over the free dofs is at most
``rtol`` times the reaction norm (all dofs) plus ``atol``. Norms are PETSc global norms,
so every rank takes the same decisions under MPI. A step that fails (too many
iterations, a growing or non-finite residual, a non-finite model output) is restored and
retried with half the load increment; after a success the increment grows back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
import numpy as np
import ufl
from dolfinx import fem
from dolfinx import mesh as dmesh
from dolfinx.fem import petsc as fpetsc
from petsc4py import PETSc
from pydantic import Field
from scalebridge.continuum.problems import Problem
from scalebridge.continuum.quadrature import ModelFailure, QuadratureMaterial, mandel_strain
from scalebridge.errors import ScalebridgeError
from scalebridge.settings import StrictModel

log = logging.getLogger("scalebridge.continuum")


class ConvergenceError(ScalebridgeError):
    """Newton failed even after the maximum number of step cuts."""


class SolverSettings(StrictModel):
    """Discretisation, Newton and load-stepping settings."""

    degree: int = Field(2, ge=1, le=3, description="Lagrange degree of the displacement")
    quadrature_degree: int | None = Field(
        None, ge=0, description="quadrature degree for stress/tangent (default 2(degree-1), "
                                "at least 1)")
    steps: int = Field(20, ge=1, description="nominal number of equal load increments")
    max_iterations: int = Field(25, ge=1, description="Newton iterations before a step cut")
    rtol: float = Field(1e-9, gt=0, description="residual / reaction norm for convergence")
    atol: float = Field(1e-11, ge=0, description="absolute residual norm (N) for convergence")
    max_cuts: int = Field(8, ge=0, description="halvings of the nominal increment allowed")
    linear_solver: Literal["lu", "cg-gamg"] = Field(
        "lu", description="lu: direct (MUMPS); cg-gamg: iterative, for large 3D meshes")
    stop_at_limit: bool = Field(
        False, description="end the history at the last converged step instead of failing "
        "when the increment cannot be cut further (load control past a limit load)")

    def qdegree(self) -> int:
        return self.quadrature_degree if self.quadrature_degree is not None else max(
            1, 2 * (self.degree - 1))


@dataclass
class StepRecord:
    """A converged load step."""

    step: int
    load_factor: float
    displacement: float       # mm
    load: float               # MPa
    iterations: int
    max_eqps: float
    max_uncertainty_mpa: float
    out_of_range_fraction: float


@dataclass
class SolveResult:
    """What a run produced (identical on every rank).

    Attributes:
        steps: converged steps, the first one being the unloaded state (step 0).
        newton: (step, attempt, load_factor, iteration, residual_norm, relative_residual).
        cuts: number of step cuts.
        wall_seconds: whole loading history.
        material_seconds: time inside ``model.update`` (max over ranks).
        material_calls: number of batched calls (one per Newton iteration and rank).
        assemble_seconds, linear_solve_seconds: residual/Jacobian assembly and KSP solve
            time (max over ranks).
        stopped_at: load factor at which the history ended early (``stop_at_limit``).
        n_points: quadrature points (all ranks); n_dofs: displacement dofs (global).
        ranks: MPI ranks.
    """

    steps: list[StepRecord] = field(default_factory=list)
    newton: list[tuple[int, int, float, int, float, float]] = field(default_factory=list)
    cuts: int = 0
    wall_seconds: float = 0.0
    material_seconds: float = 0.0
    material_calls: int = 0
    n_points: int = 0
    n_dofs: int = 0
    ranks: int = 1
    assemble_seconds: float = 0.0
    linear_solve_seconds: float = 0.0
    stopped_at: float | None = None

    @property
    def total_iterations(self) -> int:
        return sum(s.iterations for s in self.steps)

    @property
    def all_iterations(self) -> int:
        """Newton iterations including those of failed (cut) attempts."""
        return sum(1 for row in self.newton if row[3] >= 1)

    @property
    def max_load(self) -> float:
        return max((s.load for s in self.steps), default=0.0)


class ElastoplasticSolver:
    """Displacement-controlled quasi-static solve of a :class:`Problem` with any model.

    Args:
        problem: the boundary-value problem (mesh, prescribed displacements, probe).
        model: a ``ConstitutiveModel`` (docs/CONTRACTS.md).
        settings: discretisation and Newton settings.
        on_step: called after each converged step (e.g. to write fields).
    """

    def __init__(self, problem: Problem, model: Any, settings: SolverSettings | None = None,
                 on_step: Callable[[ElastoplasticSolver, StepRecord], None] | None = None
                 ) -> None:
        self.problem = problem
        self.settings = s = settings or SolverSettings()
        self.on_step = on_step
        msh = problem.mesh.mesh
        self.mesh = msh
        self.comm = msh.comm
        dim = problem.dim
        self.V = V = fem.functionspace(msh, ("Lagrange", s.degree, (dim,)))
        self.u = fem.Function(V, name="displacement")
        qd = s.qdegree()
        self.material = mat = QuadratureMaterial(self.u, model, qd)
        dx = ufl.Measure("dx", domain=msh, metadata={"quadrature_degree": qd,
                                                     "quadrature_scheme": "default"})
        v, du = ufl.TestFunction(V), ufl.TrialFunction(V)
        eps = lambda w: mandel_strain(w, dim)  # noqa: E731
        self.lam = fem.Constant(msh, 0.0)
        F = ufl.inner(mat.sigma, eps(v)) * dx
        ds, ids = _boundary_measure(problem, qd)
        self._tractions = []
        f_ext = None
        for spec in problem.tractions:
            t = fem.Function(V, name=f"traction_{spec.boundary}")
            t.interpolate(spec.value)
            self._tractions.append(t)
            term = ufl.inner(t, v) * ds(ids[spec.boundary])
            f_ext = term if f_ext is None else f_ext + term
        if f_ext is not None:
            F = F - self.lam * f_ext
        self.F_form = fem.form(F)
        self.J_form = fem.form(ufl.inner(ufl.dot(mat.tangent, eps(du)), eps(v)) * dx)
        self.w = fem.Function(V, name="probe")
        self.w.interpolate(problem.probe)
        self.load_form = fem.form(ufl.inner(mat.sigma, eps(self.w)) * dx)
        self.disp_forms = None
        if problem.displacement_boundary is not None:
            tag = ids[problem.displacement_boundary]
            self.disp_forms = (fem.form(ufl.inner(self.u, self.w) * ds(tag)),
                               fem.form(fem.Constant(msh, 1.0) * ds(tag)))

        fdim = msh.topology.dim - 1
        self._bc_ref: list[tuple[fem.Function, fem.Function]] = []
        self.bcs: list[fem.DirichletBC] = []
        for spec in problem.dirichlet:
            Vi, _ = V.sub(spec.component).collapse()
            dofs = fem.locate_dofs_topological((V.sub(spec.component), Vi), fdim,
                                               problem.mesh.facets[spec.boundary])
            ref, cur = fem.Function(Vi), fem.Function(Vi)
            ref.interpolate(spec.value)
            self._bc_ref.append((ref, cur))
            self.bcs.append(fem.dirichletbc(cur, dofs, V.sub(spec.component)))

        self.A = fpetsc.create_matrix(self.J_form)
        self.b = fpetsc.create_vector(V)
        self.r = self.b.duplicate()
        self.du = self.b.duplicate()
        self.ksp = self._make_ksp()
        self.f_ext_norm = 0.0
        if f_ext is not None:                       # scale for the residual criterion
            fv = fpetsc.assemble_vector(fem.form(f_ext))
            fv.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fpetsc.set_bc(fv, self.bcs, alpha=0.0)
            self.f_ext_norm = fv.norm()
            fv.destroy()
        self.n_dofs = V.dofmap.index_map.size_global * V.dofmap.index_map_bs
        self.assemble_seconds = 0.0
        self.linear_solve_seconds = 0.0

    def _make_ksp(self) -> PETSc.KSP:
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(self.A)
        pc = ksp.getPC()
        if self.settings.linear_solver == "lu":
            ksp.setType("preonly")
            pc.setType("lu")
            pc.setFactorSolverType("mumps")
        else:
            ksp.setType("cg")
            pc.setType("gamg")
            ksp.setTolerances(rtol=1e-12, atol=1e-14, max_it=2000)
        return ksp

    # -- one load step ---------------------------------------------------------------
    def _set_load(self, lam: float) -> None:
        self.lam.value = lam
        for ref, cur in self._bc_ref:
            cur.x.array[:] = lam * ref.x.array

    def _residual(self) -> tuple[float, float]:
        """Assemble F(u) into b; (free-dof residual norm, all-dof norm) in N."""
        t0 = time.perf_counter()
        with self.b.localForm() as loc:
            loc.set(0.0)
        fpetsc.assemble_vector(self.b, self.F_form)
        self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
        with self.b.localForm() as loc:       # ghosts were added to their owners: clear
            loc.array[self.b.getLocalSize():] = 0.0  # them before lifting adds more
        full = self.b.norm()
        self.b.copy(self.r)
        fpetsc.set_bc(self.r, self.bcs, alpha=0.0)
        self.assemble_seconds += time.perf_counter() - t0
        return self.r.norm(), full

    def _newton(self, lam: float, step: int, attempt: int, log_rows: list) -> int | None:
        """Solve at load factor ``lam`` from the current u; iterations, or None if failed."""
        s = self.settings
        self._set_load(lam)
        first = None
        for it in range(s.max_iterations + 1):
            try:
                self.material.evaluate()
            except ModelFailure:
                return None
            res, full = self._residual()
            scale = max(full, res, lam * self.f_ext_norm)
            rel = res / scale if scale > 0 else 0.0
            log_rows.append((step, attempt, lam, it, res, rel))
            if not math.isfinite(res):
                return None
            if it >= 1 and res <= s.atol + s.rtol * scale:
                return it
            first = res if it == 1 else first
            if it == s.max_iterations or (first is not None and it > 3 and res > 1e3 * first):
                return None
            t0 = time.perf_counter()
            self.A.zeroEntries()
            fpetsc.assemble_matrix(self.A, self.J_form, bcs=self.bcs)
            self.A.assemble()
            fpetsc.apply_lifting(self.b, [self.J_form], bcs=[self.bcs],
                                 x0=[self.u.x.petsc_vec], alpha=-1.0)
            self.b.ghostUpdate(addv=PETSc.InsertMode.ADD, mode=PETSc.ScatterMode.REVERSE)
            fpetsc.set_bc(self.b, self.bcs, x0=self.u.x.petsc_vec, alpha=-1.0)
            t1 = time.perf_counter()
            self.ksp.solve(self.b, self.du)
            self.assemble_seconds += t1 - t0
            self.linear_solve_seconds += time.perf_counter() - t1
            if self.ksp.getConvergedReason() < 0:
                return None
            self.u.x.petsc_vec.axpy(-1.0, self.du)
            self.u.x.scatter_forward()
        return None

    def displacement(self, lam: float) -> float:
        """The displacement measure (mm): prescribed λ·d_max, or a boundary mean of u·w."""
        if self.disp_forms is None:
            return lam * self.problem.displacement_max
        num = self.comm.allreduce(fem.assemble_scalar(self.disp_forms[0]))
        den = self.comm.allreduce(fem.assemble_scalar(self.disp_forms[1]))
        return num / den

    def load(self) -> float:
        """The reaction load measure (MPa) of the current stress field (global)."""
        return self.comm.allreduce(fem.assemble_scalar(self.load_form)) / \
            self.problem.probe_scale

    def _record(self, step: int, lam: float, iters: int) -> StepRecord:
        mat, comm = self.material, self.comm
        eq = mat.eqps()
        unc = mat.uncertainty
        oor = mat.out_of_range
        n_all = comm.allreduce(mat.n_points)
        return StepRecord(
            step=step, load_factor=lam, displacement=self.displacement(lam),
            load=self.load() if self.problem.applied_load is None
            else lam * self.problem.applied_load, iterations=iters,
            max_eqps=comm.allreduce(float(eq.max()) if eq is not None and eq.size else 0.0,
                                    op=_max()),
            max_uncertainty_mpa=comm.allreduce(
                float(np.max(unc)) if unc is not None and np.size(unc) else 0.0, op=_max()),
            out_of_range_fraction=comm.allreduce(
                int(np.count_nonzero(oor)) if oor is not None else 0) / max(n_all, 1),
        )

    # -- the loading history ---------------------------------------------------------
    def run(self) -> SolveResult:
        """Load from λ = 0 to 1 in ``steps`` increments, cutting steps on failure.

        Raises:
            ConvergenceError: a step failed with the increment cut ``max_cuts`` times.
        """
        s = self.settings
        t0 = time.perf_counter()
        result = SolveResult(ranks=self.comm.size, n_dofs=self.n_dofs,
                             n_points=self.comm.allreduce(self.material.n_points))
        nominal = 1.0 / s.steps
        min_inc = nominal / 2 ** s.max_cuts
        self.material.evaluate()                          # the unloaded state
        self.material.commit()
        first = self._record(0, 0.0, 0)
        result.steps.append(first)
        if self.on_step:
            self.on_step(self, first)
        lam, inc, step, attempt = 0.0, nominal, 0, 0
        while lam < 1.0 - 1e-12:
            inc = min(inc, 1.0 - lam)
            target = lam + inc
            u_saved = self.u.x.array.copy()
            iters = self._newton(target, step + 1, attempt, result.newton)
            if iters is None:
                self.u.x.array[:] = u_saved
                result.cuts += 1
                attempt += 1
                inc /= 2
                log.info("step %d: Newton failed at load factor %.5g; increment cut to %.3g",
                         step + 1, target, inc)
                if inc < min_inc * (1 - 1e-9):
                    if s.stop_at_limit:
                        log.warning("%s: no convergence beyond load factor %.5g (limit "
                                    "load?): history ends there", self.problem.name, lam)
                        result.stopped_at = target
                        break
                    raise ConvergenceError(
                        f"{self.problem.name}: Newton failed at load factor {target:.5g} "
                        f"after {s.max_cuts} step cuts (model "
                        f"{getattr(self.material.model, 'name', '?')!r}); see newton.csv")
                continue
            self.material.commit()
            lam, step, attempt = target, step + 1, 0
            rec = self._record(step, lam, iters)
            result.steps.append(rec)
            log.debug("step %d: λ=%.4f load=%.4g MPa in %d iterations", step, lam, rec.load,
                      iters)
            if self.on_step:
                self.on_step(self, rec)
            inc = min(nominal, inc * 1.5)
        result.wall_seconds = time.perf_counter() - t0
        result.material_seconds = self.comm.allreduce(self.material.seconds, op=_max())
        result.material_calls = self.material.calls
        result.assemble_seconds = self.comm.allreduce(self.assemble_seconds, op=_max())
        result.linear_solve_seconds = self.comm.allreduce(self.linear_solve_seconds, op=_max())
        return result


def _boundary_measure(problem: Problem, degree: int) -> tuple[Any, dict[str, int]]:
    """``ds`` over the boundaries that carry tractions or the displacement measure."""
    names = [t.boundary for t in problem.tractions]
    if problem.displacement_boundary is not None:
        names.append(problem.displacement_boundary)
    names = list(dict.fromkeys(names))
    ids = {name: i + 1 for i, name in enumerate(names)}
    msh = problem.mesh.mesh
    if not names:
        return ufl.Measure("ds", domain=msh), ids
    facets = np.concatenate([problem.mesh.facets[n] for n in names])
    values = np.concatenate([np.full(len(problem.mesh.facets[n]), ids[n], dtype=np.int32)
                             for n in names])
    facets, first = np.unique(facets, return_index=True)
    tags = dmesh.meshtags(msh, msh.topology.dim - 1, facets.astype(np.int32), values[first])
    return ufl.Measure("ds", domain=msh, subdomain_data=tags,
                       metadata={"quadrature_degree": max(2 * degree, 2)}), ids


def _max() -> Any:
    from mpi4py import MPI

    return MPI.MAX
