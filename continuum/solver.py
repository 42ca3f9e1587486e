"""Quasi-static small-strain elastoplasticity: Newton over PETSc KSP, load stepping.

The weak form, with σ and its consistent tangent C held at quadrature points by
:class:`~scalebridge.continuum.quadrature.QuadratureMaterial`::

    F(u; v)      = ∫ σ(ε(u)) : ε(v) dx                   (= 0 at free dofs)
    J(u; du, v)  = ∫ ε(v) : C : ε(du) dx

Each Newton iteration makes one batched model call, assembles F and J, and solves
``J δ = F`` with the prescribed displacements enforced by lifting; ``u ← u − δ``. The
linear solver is a direct LU (MUMPS, the default) or, for large meshes, a Krylov method
(CG, or GMRES for a non-symmetric tangent) preconditioned by PETSc's algebraic multigrid
GAMG, with the rigid-body modes as its near-nullspace (3 in 2D, 6 in 3D). Convergence:
the residual norm over the free dofs is at most ``rtol`` times the reaction norm (all
dofs) plus ``atol``. Norms are PETSc global norms, so every rank takes the same decisions
under MPI. A step that fails (too many iterations, a growing or non-finite residual, a
non-finite model output, a linear solver that does not converge) is restored and retried
with half the load increment; after a success the increment grows back.

Each increment Δλ lasts ``Δλ · duration`` seconds (:mod:`scalebridge.continuum.loading`),
passed to the model as ``dt``, with the temperature at the quadrature points at the end
of the increment. After each converged step the reaction force on every boundary with a
prescribed displacement is read off the residual at the dofs it prescribes (the force
the support exerts on the body; a node where two boundaries prescribe the same
component counts in both).
"""

from __future__ import annotations

import logging
import math
import resource
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
from scalebridge.continuum.loading import LoadingSettings, temperature_mode
from scalebridge.continuum.problems import Problem
from scalebridge.continuum.quadrature import ModelFailure, QuadratureMaterial, mandel_strain
from scalebridge.errors import ScalebridgeError, SettingsError
from scalebridge.settings import StrictModel

log = logging.getLogger("scalebridge.continuum")


#: PETSc options of the iterative solvers' GAMG preconditioner (``[solver] petsc_options``
#: overrides them). The matrix carries block size = dim (dolfinx's blocked space) and the
#: rigid-body near-nullspace built from the dof coordinates (:func:`rigid_body_modes`), so
#: GAMG aggregates whole nodes and its coarse spaces hold the rigid motions. Measured on
#: the component example (eighth plate with a hole, P2 tetrahedra, linear rtol 1e-6;
#: ``runs/`` experiments of issue 20): elastic tangents take 17-33 CG iterations at 1e4
#: and 1e5 dofs alike (the hierarchy is h-independent); plastic tangents 55-110, their
#: yielded zones being nearly incompressible (3K against the plastic shear stiffness:
#: about 180 to 1 for H = 1 GPa), which smoothed aggregation with point smoothers does
#: not resolve. No option tried lowers that at equal cost: thresholds 0.02-0.1 (same or
#: fewer iterations, set-up 2-4x dearer: more levels), no aggressive coarsening (40-45
#: iterations, set-up 5x), SOR smoothing (half the iterations, 2-2.3x the cost of each),
#: point-block Jacobi, Chebyshev degree 3-4 or a wider smoothing range (-10 to -25 %
#: iterations, dearer sweeps), classical AMG (190). ``pc_gamg_reuse_interpolation`` (on
#: in this PETSc by default, stated here because it matters): Newton's tangents share one
#: sparsity pattern, so the aggregates and the smoothed prolongator of the first set-up
#: are kept and each new tangent only redoes the Galerkin coarse operators and the
#: smoothers' eigenvalue estimates (set-up 3.4 -> 1.5-2.3 s CPU at 1.1e5 dofs, iteration
#: counts within 1-2 of a fresh set-up).
GAMG_OPTIONS: dict[str, str | int | float] = {
    "pc_gamg_type": "agg",                     # smoothed aggregation (elasticity's AMG)
    "pc_gamg_agg_nsmooths": 1,                 # smooth the tentative prolongator once
    "pc_gamg_threshold": 0.01,                 # drop weak couplings from the graph
    "pc_gamg_coarse_eq_limit": 1000,           # direct solve below this many equations
    "pc_gamg_reuse_interpolation": 1,          # keep the prolongator across tangents
    "mg_levels_ksp_type": "chebyshev",         # polynomial smoother: no inner products
    "mg_levels_pc_type": "jacobi",
    "mg_levels_ksp_chebyshev_esteig_steps": 20,
}


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
    linear_solver: Literal["lu", "cg-gamg", "gmres-gamg"] = Field(
        "lu", description="lu: direct (MUMPS); cg-gamg: conjugate gradients with algebraic "
        "multigrid (rigid-body near-nullspace), for large 3D meshes; gmres-gamg: the same "
        "with GMRES, for a non-symmetric tangent")
    linear_rtol: float = Field(
        1e-10, gt=0, lt=1, description="iterative solvers: relative residual tolerance of "
        "each linear solve")
    linear_max_iterations: int = Field(
        1000, ge=1, description="iterative solvers: iterations before the Newton "
        "iteration counts as failed (the step is cut)")
    petsc_options: dict[str, str | int | float] = Field(
        default_factory=dict, description="extra PETSc options for the iterative solvers, "
        "without the leading dash (e.g. {mg_levels_ksp_max_it = 4})")
    line_search: bool = Field(
        False, description="backtrack a Newton update (halving it up to 4 times) when it "
        "does not lower the residual: steadies Newton where yield spreads through a "
        "section (notches, holes) at the cost of extra material calls")
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
    time_s: float = 0.0       # physical time at the end of the step
    #: boundary -> reaction force (dim,) in N (2D: for the problem's thickness)
    reactions: dict[str, list[float]] = field(default_factory=dict)
    temperature_k: tuple[float, float] | None = None   # (min, max) over the body


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
        linear_iterations: Krylov iterations over all linear solves (0 for LU).
        linear_solves: number of linear solves.
        duration_s: physical time of the whole loading (λ = 1).
        body_size_mm: the body's largest extent (the mesh's bounding box, all ranks),
            mm: with the wave speed, how long an elastic wave takes to cross it.
        peak_memory_mb: peak resident memory, summed over ranks (MB).
        reaction_components: boundary -> the components its bcs prescribe.
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
    linear_iterations: int = 0
    linear_solves: int = 0
    duration_s: float = 0.0
    body_size_mm: float = 0.0
    peak_memory_mb: float = 0.0
    reaction_components: dict[str, list[int]] = field(default_factory=dict)

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
        loading: physical time and temperature (default: 1 s per nominal step, none).

    Raises:
        SettingsError: a temperature for a model that takes none.
    """

    def __init__(self, problem: Problem, model: Any, settings: SolverSettings | None = None,
                 on_step: Callable[[ElastoplasticSolver, StepRecord], None] | None = None,
                 loading: LoadingSettings | None = None) -> None:
        self.problem = problem
        self.settings = s = settings or SolverSettings()
        self.on_step = on_step
        self.loading = loading = loading or LoadingSettings()
        self.duration = loading.duration(s.steps, problem.displacement_max)
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
        n = ufl.FacetNormal(msh)
        for ps in problem.pressures:
            term = -fem.Constant(msh, float(ps.value)) * ufl.inner(n, v) * ds(ids[ps.boundary])
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
            along = -n if problem.displacement_normal else self.w
            self.disp_forms = (fem.form(ufl.inner(self.u, along) * ds(tag)),
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
        self._reaction_dofs = self._constrained_dofs()

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
        self.linear_iterations = 0
        self.linear_solves = 0
        self._xq: np.ndarray | None = None
        self._tmode = temperature_mode(model)
        if loading.has_temperature and self._tmode is None:
            raise SettingsError(
                f"loading: a temperature is set but the model "
                f"{getattr(model, 'name', type(model).__name__)!r} takes none (its update() "
                "has no temperature argument and it has no temperature_k attribute)")

    def _make_ksp(self) -> PETSc.KSP:
        s = self.settings
        ksp = PETSc.KSP().create(self.comm)
        ksp.setOperators(self.A)
        pc = ksp.getPC()
        if s.linear_solver == "lu":
            ksp.setType("preonly")
            pc.setType("lu")
            pc.setFactorSolverType("mumps")
            return ksp
        self.A.setNearNullSpace(rigid_body_modes(self.V))
        prefix = f"sb_elastoplastic_{id(self)}_"
        ksp.setOptionsPrefix(prefix)
        opts = PETSc.Options()
        for key, val in {**GAMG_OPTIONS, **s.petsc_options}.items():
            opts[prefix + key] = val
        ksp.setType("cg" if s.linear_solver == "cg-gamg" else "gmres")
        pc.setType("gamg")
        ksp.setFromOptions()     # (the options stay: GAMG reads its levels' at set-up)
        ksp.setTolerances(rtol=s.linear_rtol, atol=0.0, max_it=s.linear_max_iterations)
        if s.linear_solver == "gmres-gamg":
            ksp.setGMRESRestart(200)
        return ksp

    def _constrained_dofs(self) -> dict[str, list[np.ndarray]]:
        """Boundary -> per component, the owned dofs (indices into the local PETSc
        array) that the boundary's own bcs prescribe (empty for a free component):
        where its reaction acts."""
        V, fdim = self.V, self.mesh.topology.dim - 1
        n_owned = V.dofmap.index_map.size_local * V.dofmap.index_map_bs
        out: dict[str, list[np.ndarray]] = {}
        for spec in self.problem.dirichlet:
            comps = out.setdefault(spec.boundary, [np.zeros(0, np.int64)] * self.problem.dim)
            c = spec.component
            Vi, _ = V.sub(c).collapse()
            dofs = fem.locate_dofs_topological((V.sub(c), Vi), fdim,
                                               self.problem.mesh.facets[spec.boundary])[0]
            comps[c] = np.asarray(dofs[dofs < n_owned], dtype=np.int64)
        self.reaction_components = {
            name: [c for c in range(self.problem.dim)
                   if any(d.boundary == name and d.component == c
                          for d in self.problem.dirichlet)]
            for name in out}
        return out

    def reactions(self) -> dict[str, list[float]]:
        """Reaction force (N) on each constrained boundary: the residual summed over the
        dofs its bcs prescribe, per component (0 for a component it leaves free; 2D:
        times the problem's thickness). Uses the residual of the last
        :meth:`_residual` call (collective)."""
        arr = self.b.array_r
        scale = self.problem.thickness if self.problem.dim == 2 else 1.0
        local = np.array([[arr[d].sum() for d in comps]
                          for comps in self._reaction_dofs.values()]).reshape(-1)
        total = np.zeros_like(local)
        self.comm.Allreduce(local, total)
        dim = self.problem.dim
        return {name: [float(v) * scale for v in total[i * dim:(i + 1) * dim]]
                for i, name in enumerate(self._reaction_dofs)}

    # -- one load step ---------------------------------------------------------------
    def _set_load(self, lam: float, dt: float = 1.0) -> None:
        """Load factor ``lam`` reached over ``dt`` seconds: boundary values, the model's
        step duration and the temperature at time ``lam · duration``."""
        self.lam.value = lam
        for ref, cur in self._bc_ref:
            cur.x.array[:] = lam * ref.x.array
        self.material.dt = dt
        if self.loading.has_temperature:
            self._set_temperature(lam * self.duration)

    def _set_temperature(self, t: float) -> None:
        if self._xq is None:
            self._xq = self.material.point_coordinates()
        T = self.loading.temperature_at(self._xq, t)
        lo, hi = self._temperature_range(T)
        if self._tmode == "attribute" and hi - lo > 1e-9 * max(abs(hi), 1.0):
            raise SettingsError(
                f"loading.temperature varies over the body ({lo:.6g} .. {hi:.6g} K) but the "
                f"model {getattr(self.material.model, 'name', '?')!r} takes one temperature "
                "(temperature_k): give a uniform temperature, or a model whose update() "
                "takes temperature")
        self.material.set_temperature(T, self._tmode)

    def _temperature_range(self, T: np.ndarray | None) -> tuple[float, float]:
        if T is None:
            return (math.nan, math.nan)
        lo = self.comm.allreduce(float(T.min()) if T.size else math.inf, op=_min())
        hi = self.comm.allreduce(float(T.max()) if T.size else -math.inf, op=_max())
        return lo, hi

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

    def _newton(self, lam: float, step: int, attempt: int, log_rows: list,
                dt: float = 1.0) -> int | None:
        """Solve at load factor ``lam`` (reached over ``dt`` s) from the current u;
        iterations, or None if failed."""
        s = self.settings
        self._set_load(lam, dt)
        first = None
        searched: tuple[float, float] | None = None
        for it in range(s.max_iterations + 1):
            if searched is not None:             # the line search evaluated this u
                res, full = searched
                searched = None
            else:
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
            self.linear_iterations += self.ksp.getIterationNumber()
            self.linear_solves += 1
            if self.ksp.getConvergedReason() < 0:
                log.info("linear solver failed (%s, reason %d after %d iterations)",
                         s.linear_solver, self.ksp.getConvergedReason(),
                         self.ksp.getIterationNumber())
                return None
            u_prev = self.u.x.array.copy() if s.line_search and it >= 1 else None
            self.u.x.petsc_vec.axpy(-1.0, self.du)
            self.u.x.scatter_forward()
            if u_prev is not None:           # not at it = 0: that step applies the bcs
                searched = self._line_search(u_prev, res)
        return None

    def _line_search(self, u_prev: np.ndarray, res0: float, halvings: int = 4
                     ) -> tuple[float, float]:
        """Halve the update u_prev → u until the free-dof residual falls below ``res0``
        (at most ``halvings`` times; the last try is kept). Returns its residual norms,
        with the material evaluated there."""
        step = u_prev - self.u.x.array
        alpha = 1.0
        for k in range(halvings + 1):
            try:
                self.material.evaluate()
                res, full = self._residual()
            except ModelFailure:
                res = full = math.inf
            if (math.isfinite(res) and res < res0) or k == halvings:
                return res, full
            alpha *= 0.5
            self.u.x.array[:] = u_prev - alpha * step
        return res, full

    def displacement(self, lam: float) -> float:
        """The displacement measure (mm): prescribed λ·d_max, or a boundary mean of u·w."""
        if self.disp_forms is None:
            return lam * self.problem.displacement_max  # the prescribed one
        num = self.comm.allreduce(fem.assemble_scalar(self.disp_forms[0]))
        den = self.comm.allreduce(fem.assemble_scalar(self.disp_forms[1]))
        return num / den

    def load(self, reactions: dict[str, list[float]] | None = None) -> float:
        """The reaction load measure (MPa) of the current stress field (global)."""
        p = self.problem
        if p.reaction_load is not None:
            name, direction = p.reaction_load
            r = np.asarray((reactions or self.reactions())[name])
            if p.dim == 2:
                r = r / p.thickness
            return float(r @ direction) / p.probe_scale
        return self.comm.allreduce(fem.assemble_scalar(self.load_form)) / p.probe_scale

    def _record(self, step: int, lam: float, iters: int) -> StepRecord:
        mat, comm = self.material, self.comm
        eq = mat.eqps()
        unc = mat.uncertainty
        oor = mat.out_of_range
        n_all = comm.allreduce(mat.n_points)
        reactions = self.reactions()
        trange = (self._temperature_range(mat.temperature)
                  if self.loading.has_temperature else None)
        return StepRecord(
            step=step, load_factor=lam, displacement=self.displacement(lam),
            load=self.load(reactions) if self.problem.applied_load is None
            else lam * self.problem.applied_load, iterations=iters,
            time_s=lam * self.duration, reactions=reactions, temperature_k=trange,
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
        self._set_load(0.0, self.duration / s.steps)
        self.material.evaluate()                          # the unloaded state
        self.material.commit()
        self._residual()
        first = self._record(0, 0.0, 0)
        result.steps.append(first)
        if self.on_step:
            self.on_step(self, first)
        lam, inc, step, attempt = 0.0, nominal, 0, 0
        while lam < 1.0 - 1e-12:
            inc = min(inc, 1.0 - lam)
            target = lam + inc
            u_saved = self.u.x.array.copy()
            iters = self._newton(target, step + 1, attempt, result.newton,
                                 dt=inc * self.duration)
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
                    # A failed build writes no newton.csv. One rank logs each cut (a
                    # build keeps log.txt in <name>.failed/); the MPI worker logs none,
                    # and its launcher's message names the output it keeps instead.
                    raise ConvergenceError(
                        f"{self.problem.name}: Newton failed at load factor {target:.5g} "
                        f"after {s.max_cuts} step cuts (model "
                        f"{getattr(self.material.model, 'name', '?')!r})"
                        + ("; the cuts are in the build's log.txt"
                           if self.comm.size == 1 else "")
                        + ("" if s.line_search else "; [solver] line_search = true or "
                           "more steps may help"))
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
        result.linear_iterations = self.linear_iterations
        result.linear_solves = self.linear_solves
        result.duration_s = self.duration
        result.body_size_mm = body_size(self.mesh)
        result.reaction_components = self.reaction_components
        result.peak_memory_mb = self.comm.allreduce(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
        return result


def body_size(msh: Any) -> float:
    """The largest extent of the mesh's bounding box over all ranks (mesh units, mm)."""
    x = msh.geometry.x
    lo = np.min(x, axis=0) if len(x) else np.full(3, np.inf)
    hi = np.max(x, axis=0) if len(x) else np.full(3, -np.inf)
    from mpi4py import MPI

    lo = np.array([msh.comm.allreduce(float(v), op=MPI.MIN) for v in lo])
    hi = np.array([msh.comm.allreduce(float(v), op=MPI.MAX) for v in hi])
    return float(np.max(hi - lo))


def _boundary_measure(problem: Problem, degree: int) -> tuple[Any, dict[str, int]]:
    """``ds`` over the boundaries that carry tractions or the displacement measure."""
    names = [t.boundary for t in problem.tractions] + [p.boundary for p in problem.pressures]
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


def rigid_body_modes(V: fem.FunctionSpace) -> PETSc.NullSpace:
    """The rigid-body modes of a vector space (2D: 2 translations + 1 rotation; 3D: 3 + 3),
    orthonormalised: the near-nullspace for algebraic multigrid."""
    dim = V.dofmap.index_map_bs
    n_owned = V.dofmap.index_map.size_local
    x = V.tabulate_dof_coordinates()[:n_owned]
    modes = []
    for i in range(dim):                                 # translations
        m = np.zeros((n_owned, dim))
        m[:, i] = 1.0
        modes.append(m)
    rotations = [(0, 1)] if dim == 2 else [(0, 1), (1, 2), (2, 0)]
    for i, j in rotations:                               # rotations in the i-j plane
        m = np.zeros((n_owned, dim))
        m[:, i], m[:, j] = -x[:, j], x[:, i]
        modes.append(m)
    vecs = []
    for m in modes:
        v = fpetsc.create_vector(V)
        v.array_w[:] = m.reshape(-1)
        for w in vecs:                                   # Gram-Schmidt (global dots)
            v.axpy(-v.dot(w), w)
        v.scale(1.0 / v.norm())
        vecs.append(v)
    return PETSc.NullSpace().create(vectors=vecs, comm=V.mesh.comm)


def _max() -> Any:
    from mpi4py import MPI

    return MPI.MAX


def _min() -> Any:
    from mpi4py import MPI

    return MPI.MIN
