"""The continuum stage: ``FemSettings.make(model, out, resources) -> FieldResults``.

Example::

    from scalebridge.continuum import FemSettings, J2Material, CylinderProblem
    art = FemSettings(problem=CylinderProblem()).make(J2Material(), "runs/fem/cylinder")
    art.summary["max_load_mpa"], art.file("load_displacement.csv")

With ``Resources(mpi_ranks=N > 1)`` the solve runs in ``mpiexec -n N python -m
scalebridge.continuum.worker`` (the venv's mpiexec) inside the artifact's temporary
directory; with one rank it runs in this process.

Your own component::

    from scalebridge.continuum import FemSettings, MeshProblem, PythonMaterial
    fem = FemSettings(problem=MeshProblem(mesh="bracket.msh", bc=[
        {"boundary": "clamp", "kind": "fixed"},
        {"boundary": "load", "kind": "displacement", "z": -0.2}]),
        loading={"duration_s": 10.0, "temperature_k": 300.0})
    art = fem.make(PythonMaterial(model="mypkg:MyModel", settings={...}), "runs/bracket")
    art.file("reactions.csv")

A mesh file's contents (and its .h5 and labels sidecar) enter the fingerprint, its path
does not.

``mesh_convergence = 1`` (or 2) solves the same problem again on the mesh with every
element size halved (and quartered) and puts the loads' changes into the summary
(:func:`mesh_convergence`): the run's discretisation error on its final and max load.

A Surrogate (artifact or exported folder) or a model by import path must pass
``check_constitutive`` (:func:`gate_model`) unless ``allow_failed_checks``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from mpi4py import MPI
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, write_json_atomic
from scalebridge.continuum.loading import LoadingSettings
from scalebridge.continuum.materials import (
    ModelLike,
    PythonMaterial,
    resolve_model,
    spec_to_file,
)
from scalebridge.continuum.problems import CylinderProblem, MeshProblem, ProblemSettings
from scalebridge.continuum.solver import ElastoplasticSolver, SolveResult, SolverSettings
from scalebridge.errors import ScalebridgeError
from scalebridge.runtime import mpi_prefix, run_command
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.continuum")

KIND = "FieldResults"


class FemSettings(StrictModel):
    """A quasi-static elastoplastic FEM run: the problem and the solver settings.

    The material model is passed to :meth:`make` (J2Material settings or a Surrogate).
    """

    problem: ProblemSettings = Field(default_factory=CylinderProblem,
                                     description="boundary-value problem (by `kind`)")
    solver: SolverSettings = Field(default_factory=SolverSettings,
                                   description="discretisation, Newton, load stepping")
    loading: LoadingSettings = Field(default_factory=LoadingSettings,
                                     description="physical time and temperature of the "
                                     "loading, passed to the material")
    write_fields: bool = Field(True, description="write VTX fields at every step")
    allow_failed_checks: bool = Field(
        False, description="use a Surrogate that fails check_constitutive anyway (refused "
        "by default); the failed checks and the override go into the FieldResults summary")
    mesh_convergence: int = Field(
        0, ge=0, le=2, description="mesh-convergence check: the same problem, material and "
        "loading solved again on meshes with every element size halved, this many times "
        "(0: off; 1: the refined mesh; 2: also the twice-refined one, which gives the "
        "observed order of convergence); the final and max loads' changes go into the "
        "summary (mesh_convergence), no files are written for them; built-in problems only "
        "(a mesh file: not run, said so)")

    def resolve_paths(self, base_dir: str | Path) -> FemSettings:
        """A copy whose file paths (a mesh problem's mesh) are absolute, relative ones
        taken from ``base_dir`` (the settings file's folder)."""
        if isinstance(self.problem, MeshProblem):
            return self.model_copy(update={"problem": self.problem.resolve_paths(
                Path(base_dir))})
        return self

    def input_files(self) -> dict[str, Path]:
        """Files the result depends on besides the model (a mesh problem's mesh)."""
        if isinstance(self.problem, MeshProblem):
            return self.problem.input_files()
        return {}

    def fingerprint_settings(self) -> dict[str, Any]:
        """The settings as they enter the fingerprint: a mesh by name (its contents enter
        as an input file), not by path."""
        d = self.model_dump(mode="json")
        if isinstance(self.problem, MeshProblem):
            d["problem"]["mesh"] = self.problem.mesh.name
        return d

    def make(self, model: ModelLike, out: str | Path, resources: Resources | None = None,
             force: bool = False) -> Artifact:
        """Solve and store a FieldResults artifact at ``out`` (skipped when current).

        Args:
            model: ``J2Material`` settings, a ``Surrogate`` artifact (or its path), or any
                ConstitutiveModel object (pickled for MPI runs).
            out: artifact directory.
            resources: MPI ranks and threads (not part of the fingerprint).
            force: rebuild even if a current artifact exists.
        """
        resources = resources or Resources()
        settings = self.resolve_paths(Path.cwd())
        obj, record, inputs, spec = resolve_model(model)
        inputs = {**inputs, **settings.input_files()}
        fp_settings = {"fem": settings.fingerprint_settings(), "model": record}

        def build(workdir: Path) -> dict[str, Any]:
            gate = None
            if "surrogate" in inputs:            # refused unless its checks pass
                gate = gate_surrogate(obj, inputs["surrogate"].path,
                                      self.allow_failed_checks)
            elif "surrogate_files" in inputs:
                gate = gate_surrogate(obj, inputs["surrogate_files"],
                                      self.allow_failed_checks)
            elif isinstance(model, PythonMaterial):
                gate = gate_python(obj, model, self.allow_failed_checks)
            if resources.mpi_ranks > 1:
                summary = _run_mpi(settings, spec, workdir, resources)
            else:
                if "torch" in sys.modules:       # a neural surrogate: honour the threads
                    sys.modules["torch"].set_num_threads(resources.threads)
                summary = run_fem(settings, obj, workdir, MPI.COMM_SELF)
            if gate is not None:
                summary["material_checks"] = gate
            return summary

        return produce(KIND, out, fp_settings, inputs, build, force=force)


def _run_mpi(settings: FemSettings, spec: dict[str, Any], workdir: Path,
             resources: Resources) -> dict[str, Any]:
    """Run the worker under ``mpiexec -n N`` in ``workdir``; its summary."""
    write_worker_inputs(settings, spec, workdir)
    try:
        run_command(worker_command(workdir, resources.mpi_ranks), workdir,
                    name=f"fem worker (mpiexec -n {resources.mpi_ranks})",
                    threads=resources.threads, log_file=workdir / "mpi_output.txt",
                    error_parser=worker_error_parser(workdir))
    finally:
        (workdir / ".model_spec.pkl").unlink(missing_ok=True)
    return json.loads((workdir / "summary.json").read_text())


def write_worker_inputs(settings: FemSettings, spec: dict[str, Any], workdir: Path) -> None:
    """The files the MPI worker reads: ``fem_settings.json`` and ``.model_spec.pkl``; any
    ``worker_error.*.err`` an earlier launch left is removed."""
    for old in workdir.glob("worker_error.*.err"):
        old.unlink(missing_ok=True)
    write_json_atomic(workdir / "fem_settings.json", settings.model_dump(mode="json"))
    spec_to_file(spec, workdir / ".model_spec.pkl")


def worker_command(workdir: Path, ranks: int) -> list[str]:
    """``mpiexec -n ranks python -m scalebridge.continuum.worker workdir``."""
    return [*mpi_prefix(ranks), sys.executable, "-m", "scalebridge.continuum.worker",
            str(workdir)]


def surrogate_check_report(model: Any, path: Path) -> tuple[dict[str, Any], str]:
    """The check_constitutive report of a Surrogate and where it comes from.

    The report stored in ``surrogate.json`` at fit time (same model, same probing paths)
    when it holds every current check; otherwise (fitted with ``run_checks = false``, or
    by a version without a check) the checks are run now, at the fit's amplitude
    (0.8 x the largest training strain)."""
    from scalebridge.surrogates.checks import check_constitutive

    try:
        stored = json.loads((Path(path) / "surrogate.json").read_text()).get("checks")
    except (OSError, ValueError, AttributeError):
        stored = None
    if isinstance(stored, dict) and "finite" in (stored.get("checks") or {}):
        return stored, "surrogate.json (checked when fitted)"
    rng = (getattr(model, "training_range", None) or {}).get("strain_norm") or [0, 6.25e-3]
    rep = check_constitutive(model, amplitude=0.8 * float(rng[1]), raise_on_failure=False)
    return rep.to_dict(), "check_constitutive run by the FEM"


def gate_surrogate(model: Any, path: Path, allow_failed: bool) -> dict[str, Any]:
    """Refuse a Surrogate that fails check_constitutive unless ``allow_failed``.

    Returns the record that goes into the FieldResults summary (``material_checks``):
    passed, the failed checks with their numbers, where the report comes from, and
    whether the user overrode a failure.

    Raises:
        ConstitutiveCheckError: a check failed and ``allow_failed`` is False (one line
            naming the failed checks and the setting that overrides).
    """
    report, source = surrogate_check_report(model, path)
    return gate_model(report, source, f"surrogate {path}", allow_failed)


def gate_python(model: Any, material: PythonMaterial, allow_failed: bool
                ) -> dict[str, Any]:
    """Run check_constitutive on a model given by import path; refuse it if it fails
    unless ``allow_failed`` (as :func:`gate_surrogate`)."""
    from scalebridge.surrogates.checks import check_constitutive

    try:
        report = check_constitutive(model, amplitude=material.check_amplitude,
                                    raise_on_failure=False).to_dict()
    except Exception as e:               # a model the checks cannot even drive
        report = {"checks": {"runs": {
            "passed": False, "error": None, "tolerance": 0.0,
            "note": f"check_constitutive raised {type(e).__name__}: {e}"}}}
    return gate_model(report, "check_constitutive run by the FEM",
                      f"model {material.model}", allow_failed)


def gate_model(report: dict[str, Any], source: str, what: str, allow_failed: bool
               ) -> dict[str, Any]:
    """The gate itself: a check_constitutive report -> the ``material_checks`` record.

    Raises:
        ConstitutiveCheckError: a check failed and ``allow_failed`` is False.
    """
    from scalebridge.surrogates.checks import ConstitutiveCheckError

    checks = report.get("checks") or {}
    failed = {k: v for k, v in checks.items() if not v.get("passed")}
    detail = ", ".join(
        f"{k} ({v['note']})" if k == "finite" or not v.get("tolerance") else
        f"{k} (error {v['error']:.3g} > tol {abs(v['tolerance']):.3g})"
        for k, v in failed.items())
    rec: dict[str, Any] = {"passed": not failed, "failed": list(failed),
                           "failed_detail": detail, "source": source,
                           "overridden": bool(failed) and allow_failed}
    if failed and not allow_failed:
        raise ConstitutiveCheckError(
            f"{what} failed check_constitutive: {detail}; the FEM refuses it "
            "(set allow_failed_checks = true in [continuum], or pass "
            "--allow-failed-checks to 'fem run', to use it anyway)")
    if failed:
        log.warning("%s failed check_constitutive (%s): used anyway "
                    "(allow_failed_checks = true)", what, detail)
    return rec


def limit_load(reference: dict[str, float], model: Any, max_load: float,
               max_eqps: float) -> dict[str, Any]:
    """``q_lim_mpa`` and ``limit_load_rel_error`` where the analytic limit load applies
    (a problem with ``q_lim_over_sigma0`` and perfectly plastic J2: von Mises yield with
    a yield stress that stays σ0 over the plastic strain reached), else
    ``limit_load_rel_error`` None and ``limit_load_note`` saying why; {} for a problem
    without an analytic limit load."""
    from scalebridge.surrogates.j2 import J2Plasticity

    if "q_lim_over_sigma0" not in reference:
        return {}
    name = getattr(model, "name", type(model).__name__)
    if not isinstance(model, J2Plasticity):
        return {"limit_load_rel_error": None, "limit_load_note":
                f"no analytic limit load: {name} is not J2 (von Mises) plasticity"}
    hard = model.hardening
    n = 33
    # the static yield stress σ_y(ε̄_p) at a vanishing plastic rate: a model whose flow is
    # viscous (σ_b + η ε̄̇_p, η = 1/fluidity, no fluidity before its sources fire) would
    # otherwise read as σ_y ~ 1e27 MPa for one finite plastic increment
    ep = np.linspace(0.0, max(float(max_eqps), 1e-3), n)
    q0 = np.repeat(hard.initial_state(1), n, axis=0)
    sy, h, _ = hard.yield_stress(ep, np.zeros(n), q0, np.ones(n))
    sy, h = np.asarray(sy, dtype=float), np.asarray(h, dtype=float)
    s0 = abs(float(sy[0])) or 1.0
    if not (np.all(np.isfinite(sy)) and np.all(np.isfinite(h))):
        return {"limit_load_rel_error": None,
                "limit_load_note": "no analytic limit load: non-finite yield stress"}
    if float(np.abs(h).max()) > 1e12 * s0:
        # dσ_y/dΔε̄_p holds 1/(fluidity·dt) at no fluidity: a viscous (rate-dependent)
        # flow above its static strength, which no rate-independent limit describes
        return {"limit_load_rel_error": None, "limit_load_note":
                f"no analytic limit load: the material is rate dependent (viscous flow "
                f"above a static yield stress {sy[0]:.4g} -> {sy[-1]:.4g} MPa over "
                f"eps_p_eq <= {ep[-1]:.3g}); the analytic limit holds for rate-independent "
                "perfect plasticity only"}
    if float(np.ptp(sy)) > 1e-12 * s0 or float(np.abs(h).max()) > 1e-12 * s0:
        return {"limit_load_rel_error": None, "limit_load_note":
                f"no analytic limit load: the material hardens (static yield stress "
                f"{sy[0]:.4g} -> {sy[-1]:.4g} MPa over eps_p_eq <= {ep[-1]:.3g}); "
                "the analytic limit holds for perfect plasticity only"}
    q_lim = float(reference["q_lim_over_sigma0"] * sy[0])
    return {"q_lim_mpa": q_lim,
            "limit_load_rel_error": float(abs(max_load - q_lim) / q_lim),
            "limit_load_note": "perfectly plastic J2: q_lim = (2/sqrt(3)) sigma0 ln(Re/Ri)"}


def lame_pressure(u_mm: float, r_inner: float, r_outer: float, e_mpa: float,
                  nu: float) -> float:
    """Internal pressure (MPa) that moves the inner wall of an elastic thick-walled tube
    (plane strain, free outer wall) radially by ``u_mm``: Lamé,
    u(R_i) = q R_i (1 + ν) ((1 − 2ν) R_i² + R_e²) / (E (R_e² − R_i²))."""
    a2, b2 = r_inner ** 2, r_outer ** 2
    return u_mm * e_mpa * (b2 - a2) / (r_inner * (1 + nu) * ((1 - 2 * nu) * a2 + b2))


def elastic_response(reference: dict[str, float], model: Any,
                     steps: list[Any]) -> dict[str, Any]:
    """``elastic_check``: the first load step where no point has yielded, against the
    analytic elastic solution with the material's own moduli (the cylinder: Lamé), so
    the assembly, the boundary conditions, the load measure and the material's elastic
    tangent are checked by theory in every run whatever the material does later; a
    note instead where it does not apply. {} for a problem without an elastic
    reference."""
    if "r_inner_mm" not in reference or "r_outer_mm" not in reference:
        return {}
    c = getattr(model, "stiffness", None)
    if c is None:
        return {"elastic_check": {"note": "the material has no elastic stiffness to "
                                          "compare with"}}
    c = np.asarray(c, dtype=float)
    g = 0.5 * c[3, 3]                          # Mandel: the shear block is 2G
    k = (c[0, 0] + 2.0 * c[0, 1]) / 3.0
    e, nu = 9 * k * g / (3 * k + g), (3 * k - 2 * g) / (2 * (3 * k + g))
    first = next((st for st in steps[1:] if st.displacement != 0), None)
    if first is None or first.max_eqps > 0:
        return {"elastic_check": {"note": "no load step before the first yield"}}
    q = lame_pressure(first.displacement, reference["r_inner_mm"],
                      reference["r_outer_mm"], e, nu)
    return {"elastic_check": {"step": int(first.step),
                              "displacement_mm": float(first.displacement),
                              "load_mpa": float(first.load), "analytic_mpa": float(q),
                              "rel_error": float(abs(first.load - q) / abs(q)),
                              "youngs_modulus_mpa": float(e), "poisson_ratio": float(nu),
                              "analytic": "Lamé, plane strain, free outer wall"}}


def _level(problem: Any, result: SolveResult, model: Any) -> dict[str, Any]:
    """One mesh level's numbers for :func:`mesh_convergence`."""
    msh = problem.mesh.mesh
    tdim = msh.topology.dim
    msh.topology.create_entities(tdim)
    rec: dict[str, Any] = {
        "elements": int(msh.topology.index_map(tdim).size_global),
        "n_dofs": int(result.n_dofs), "final_load_mpa": float(result.steps[-1].load),
        "max_load_mpa": float(result.max_load), "stopped_at": result.stopped_at,
        "wall_s": float(result.wall_seconds)}
    eqps = max(s.max_eqps for s in result.steps)
    lim = limit_load(problem.reference, model, result.max_load, eqps)
    rec["limit_load_rel_error"] = lim.get("limit_load_rel_error")
    ela = elastic_response(problem.reference, model, result.steps).get("elastic_check") or {}
    rec["elastic_rel_error"] = ela.get("rel_error")
    return rec


def _rel(fine: float, coarse: float) -> float | None:
    return float(abs(fine - coarse) / abs(fine)) if fine != 0 else None


def _order(f: list[float]) -> tuple[float | None, float | None]:
    """Observed order p and the Richardson-extrapolated value from three levels ``f``
    (each element size halved from one to the next); (None, None) where the changes are
    not monotone (opposite signs) or one is zero (no asymptotic range to read)."""
    d1, d2 = f[1] - f[0], f[2] - f[1]
    if d1 == 0 or d2 == 0 or (d1 > 0) != (d2 > 0):
        return None, None
    p = float(np.log(abs(d1) / abs(d2)) / np.log(2.0))
    return p, (float(f[2] + d2 / (2.0 ** p - 1.0)) if p > 0 else None)


def mesh_convergence(settings: FemSettings, model: Any, comm: MPI.Comm,
                     coarse: tuple[Any, SolveResult]) -> dict[str, Any]:
    """The mesh-convergence study of a solved run: the same problem, material, solver
    and loading on ``settings.mesh_convergence`` meshes, each with every element size
    half the previous one's (``problem.refined(2**k)``), solved without writing
    anything; computes, writes nothing (the caller puts it into the summary).

    ``coarse`` is the run's own (problem, result). Returns ``h_ratio`` (2), per level
    (the run's mesh first) ``elements``, ``n_dofs``, ``final_load_mpa``,
    ``max_load_mpa``, ``limit_load_rel_error`` and ``elastic_rel_error`` (None where
    they do not apply), ``rel_change_final`` / ``rel_change_max`` (the run's mesh
    against the once-refined one, relative to the refined value: the run's
    discretisation error estimate), with three levels also ``rel_change_final_next`` /
    ``rel_change_max_next`` (once- against twice-refined), ``order_final`` /
    ``order_max`` (observed order of convergence, None where the changes are not
    monotone) and ``extrapolated_final_mpa`` / ``extrapolated_max_mpa`` (Richardson),
    and ``wall_s`` (the refined solves). Where it cannot be run, ``note`` says why
    (a mesh file, a refined solve that failed) and the changes are absent.
    Collective over ``comm``.
    """
    levels = int(settings.mesh_convergence)
    if levels < 1:
        return {}
    t0 = time.perf_counter()
    out: dict[str, Any] = {"h_ratio": 2, "levels": levels + 1}
    refine = getattr(settings.problem, "refined", None)
    if refine is None or refine(2) is None:
        out["note"] = (f"not run: the {settings.problem.kind} problem's mesh is not refined "
                       "by the FEM (a mesh file: mesh it again with every element size "
                       "halved and compare the loads)")
        return out
    recs = [_level(*coarse, model)]
    for k in range(1, levels + 1):
        fine = refine(2 ** k)
        try:
            problem = fine.build(comm)
            result = ElastoplasticSolver(problem, model, settings.solver,
                                         loading=settings.loading).run()
        except (ScalebridgeError, ValueError) as e:   # ConvergenceError, a model failure
            out["note"] = (f"the mesh refined {2 ** k}x ({fine.kind}) did not solve: "
                           f"{' '.join(str(e).split())}")
            break
        recs.append(_level(problem, result, model))
    for key in ("elements", "n_dofs", "final_load_mpa", "max_load_mpa",
                "limit_load_rel_error", "elastic_rel_error"):
        out[key] = [r[key] for r in recs]
    if any(r["stopped_at"] is not None for r in recs):
        out["stopped_at_load_factor"] = [r["stopped_at"] for r in recs]
    for what in ("final", "max"):
        f = out[f"{what}_load_mpa"]
        if len(f) >= 2:
            out[f"rel_change_{what}"] = _rel(f[1], f[0])
        if len(f) >= 3:
            out[f"rel_change_{what}_next"] = _rel(f[2], f[1])
            out[f"order_{what}"], out[f"extrapolated_{what}_mpa"] = _order(f)
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    return out


def worker_error_parser(workdir: Path) -> Callable[[list[str]], str | None]:
    """The one-line cause of a failed worker in ``workdir``, for ``run_command``.

    First the reason a rank wrote to ``worker_error.<rank>.err`` (the lowest rank's):
    ``mpiexec`` may exit on a rank's abort before the rank's printed ``error:`` line
    reaches it (see :mod:`scalebridge.continuum.worker`). Then that ``error:`` line; else
    None (``run_command`` then quotes the output's last error line or last line), or,
    where the worker printed nothing either, a line saying so.
    """
    def rank_of(path: Path) -> int:
        try:
            return int(path.name.split(".")[1])
        except (IndexError, ValueError):
            return 1 << 30

    def parse(lines: list[str]) -> str | None:
        for path in sorted(workdir.glob("worker_error.*.err"), key=rank_of):
            try:
                reason = path.read_text().strip()
            except OSError:
                continue
            if reason:
                return reason
        errs = [ln for ln in lines if ln.startswith("error: ")]
        if errs:
            return errs[0][len("error: "):]
        if not any(ln.strip() for ln in lines):
            return ("no output, and no rank wrote worker_error.<rank>.err: mpiexec, or "
                    "Python on a rank, failed before the worker ran")
        return None

    return parse


def summarize(settings: FemSettings, result: SolveResult, model: Any,
              reference: dict[str, float]) -> dict[str, Any]:
    """Headline numbers of a run (the manifest summary)."""
    local_points = result.n_points / max(result.ranks, 1)
    calls = max(result.material_calls, 1)
    out: dict[str, Any] = {
        "problem": settings.problem.kind,
        "model": getattr(model, "name", type(model).__name__),
        "max_load_mpa": result.max_load,
        "final_load_mpa": result.steps[-1].load,
        "steps": len(result.steps) - 1,
        "cuts": result.cuts,
        "newton_iterations": result.total_iterations,
        "newton_iterations_all": result.all_iterations,
        "wall_seconds": round(result.wall_seconds, 4),
        "material_seconds": round(result.material_seconds, 4),
        "material_calls": result.material_calls,
        "assemble_seconds": round(result.assemble_seconds, 4),
        "linear_solve_seconds": round(result.linear_solve_seconds, 4),
        "material_us_per_point_call": 1e6 * result.material_seconds / (calls * local_points),
        "n_points": result.n_points,
        "n_dofs": result.n_dofs,
        "ranks": result.ranks,
        "max_equivalent_plastic_strain": max(s.max_eqps for s in result.steps),
        "max_uncertainty_mpa": max(s.max_uncertainty_mpa for s in result.steps),
        "max_out_of_range_fraction": max(s.out_of_range_fraction for s in result.steps),
        # the fraction of every quadrature-point update of the run, the measure the DD
        # (mobility evaluations) and the surrogate (held-out points) report: the worst
        # step alone is the first plastic one, where points that yield late in the
        # increment show dε_p/dt far below their rate after yield. The load steps only:
        # steps[0] is the unloaded state, no update of the run, and would dilute it
        "out_of_range_fraction": float(np.mean([s.out_of_range_fraction
                                                for s in result.steps[1:]]
                                               or [result.steps[0].out_of_range_fraction])),
        "reference": reference,
        "stopped_at_load_factor": result.stopped_at,
        "linear_solver": settings.solver.linear_solver,
        "linear_iterations": result.linear_iterations,
        "linear_solves": result.linear_solves,
        "duration_s": result.duration_s,
        # whether duration_s is a physical time (set, or from a displacement rate) or
        # the default 1 s per step, which the quasi_static check cannot grade
        "loading_time": ("duration_s" if settings.loading.duration_s is not None else
                         "displacement_rate" if settings.loading.displacement_rate
                         is not None else None),
        "body_size_mm": result.body_size_mm,
        # [min, max] step (s; cuts shorten them) and the steps a time-step-dependent
        # surrogate was fitted at: the verdict compares them
        "time_step_s": _time_steps(result),
        "material_trained_dt_s": (getattr(model, "training_range", None) or {}).get("dt_s"),
        "final_time_s": result.steps[-1].time_s,
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "final_reactions_n": result.steps[-1].reactions,
        "temperature_k": _temperature_range(result),
    }
    out.update(limit_load(reference, model, result.max_load,
                          out["max_equivalent_plastic_strain"]))
    out.update(elastic_response(reference, model, result.steps))
    return out


def _time_steps(result: SolveResult) -> list[float] | None:
    """[min, max] duration (s) of the load steps, or None before any step."""
    t = np.diff([s.time_s for s in result.steps])
    t = t[t > 0]
    return [float(t.min()), float(t.max())] if t.size else None


def _temperature_range(result: SolveResult) -> list[float] | None:
    """[min, max] temperature (K) the material saw over the loading, or None."""
    ranges = [s.temperature_k for s in result.steps if s.temperature_k is not None]
    if not ranges:
        return None
    return [min(r[0] for r in ranges), max(r[1] for r in ranges)]


def run_fem(settings: FemSettings, model: Any, workdir: Path, comm: MPI.Comm
            ) -> dict[str, Any]:
    """Build the problem, solve, write every FieldResults file into ``workdir``.

    Collective over ``comm``; rank 0 writes the tables and plots. Returns the summary.
    """
    from scalebridge.continuum.output import (
        FieldWriter,
        write_plots,
        write_reactions,
        write_tables,
    )

    workdir = Path(workdir)
    try:
        problem = settings.problem.build(comm)
    except ValueError as e:
        raise ScalebridgeError(f"problem ({settings.problem.kind}): {e}") from None
    writer = FieldWriter(workdir / "fields") if settings.write_fields else None
    solver = ElastoplasticSolver(problem, model, settings.solver, on_step=writer,
                                 loading=settings.loading)
    try:
        result = solver.run()
    finally:
        if writer is not None:
            writer.close()
    summary = summarize(settings, result, model, problem.reference)
    summary["load_name"] = problem.load_name
    summary["displacement_name"] = problem.displacement_name
    if comm.rank == 0:
        write_reactions(workdir, result, f"{problem.name}: reaction forces, "
                        f"{summary['model']}")
        write_tables(workdir, result, problem.load_name, problem.displacement_name)
        write_plots(workdir, result, problem.load_name, problem.displacement_name,
                    f"{problem.name}, {summary['model']}, {result.ranks} rank(s)",
                    summary.get("q_lim_mpa"))
    log.info("%s with %s: max load %.4g MPa, %d Newton iterations, %d cuts, %.2f s",
             problem.name, summary["model"], result.max_load, result.total_iterations,
             result.cuts, result.wall_seconds)
    if settings.mesh_convergence:
        mc = summary["mesh_convergence"] = mesh_convergence(settings, model, comm,
                                                            (problem, result))
        if "rel_change_final" in mc:
            log.info("mesh convergence: final load %s MPa on %s elements (%.3g %% change "
                     "on the refined mesh), %.2f s", ", ".join(
                         f"{x:.4g}" for x in mc["final_load_mpa"]), mc["elements"],
                     100 * (mc["rel_change_final"] or 0.0), mc["wall_s"])
        else:
            log.info("mesh convergence: %s", mc.get("note"))
    return summary
