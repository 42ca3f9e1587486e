"""The continuum stage: ``FemSettings.make(model, out, resources) -> FieldResults``.

Example::

    from scalebridge.continuum import FemSettings, J2Material, CylinderProblem
    art = FemSettings(problem=CylinderProblem()).make(J2Material(), "runs/fem/cylinder")
    art.summary["max_load_mpa"], art.file("load_displacement.csv")

With ``Resources(mpi_ranks=N > 1)`` the solve runs in ``mpiexec -n N python -m
scalebridge.continuum.worker`` (the venv's mpiexec) inside the artifact's temporary
directory; with one rank it runs in this process.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

from mpi4py import MPI
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, write_json_atomic
from scalebridge.continuum.materials import ModelLike, resolve_model, spec_to_file
from scalebridge.continuum.problems import CylinderProblem, ProblemSettings
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
    write_fields: bool = Field(True, description="write VTX fields at every step")

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
        obj, record, inputs, spec = resolve_model(model)
        fp_settings = {"fem": self.model_dump(mode="json"), "model": record}

        def build(workdir: Path) -> dict[str, Any]:
            if resources.mpi_ranks > 1:
                return _run_mpi(self, spec, workdir, resources)
            if "torch" in sys.modules:           # a neural surrogate: honour the threads
                sys.modules["torch"].set_num_threads(resources.threads)
            return run_fem(self, obj, workdir, MPI.COMM_SELF)

        return produce(KIND, out, fp_settings, inputs, build, force=force)


def _run_mpi(settings: FemSettings, spec: dict[str, Any], workdir: Path,
             resources: Resources) -> dict[str, Any]:
    """Run the worker under ``mpiexec -n N`` in ``workdir``; its summary."""
    write_json_atomic(workdir / "fem_settings.json", settings.model_dump(mode="json"))
    spec_to_file(spec, workdir / ".model_spec.pkl")
    cmd = [*mpi_prefix(resources.mpi_ranks), sys.executable, "-m",
           "scalebridge.continuum.worker", str(workdir)]
    try:
        run_command(cmd, workdir, name=f"fem worker (mpiexec -n {resources.mpi_ranks})",
                    threads=resources.threads, log_file=workdir / "mpi_output.txt",
                    error_parser=_worker_error)
    finally:
        (workdir / ".model_spec.pkl").unlink(missing_ok=True)
    return json.loads((workdir / "summary.json").read_text())


def _worker_error(lines: list[str]) -> str | None:
    errs = [ln for ln in lines if ln.startswith("error: ")]
    return errs[0][len("error: "):] if errs else None


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
        "reference": reference,
        "stopped_at_load_factor": result.stopped_at,
    }
    sy = getattr(model, "initial_yield_stress", None)
    if "q_lim_over_sigma0" in reference and callable(sy):
        q_lim = float(reference["q_lim_over_sigma0"] * sy())
        out["q_lim_mpa"] = q_lim
        out["limit_load_rel_error"] = float(abs(result.max_load - q_lim) / q_lim)
    return out


def run_fem(settings: FemSettings, model: Any, workdir: Path, comm: MPI.Comm
            ) -> dict[str, Any]:
    """Build the problem, solve, write every FieldResults file into ``workdir``.

    Collective over ``comm``; rank 0 writes the tables and plots. Returns the summary.
    """
    from scalebridge.continuum.output import FieldWriter, write_plots, write_tables

    workdir = Path(workdir)
    try:
        problem = settings.problem.build(comm)
    except ValueError as e:
        raise ScalebridgeError(f"problem ({settings.problem.kind}): {e}") from None
    writer = FieldWriter(workdir / "fields") if settings.write_fields else None
    solver = ElastoplasticSolver(problem, model, settings.solver, on_step=writer)
    try:
        result = solver.run()
    finally:
        if writer is not None:
            writer.close()
    summary = summarize(settings, result, model, problem.reference)
    if comm.rank == 0:
        write_tables(workdir, result, problem.load_name, problem.displacement_name)
        write_plots(workdir, result, problem.load_name, problem.displacement_name,
                    f"{problem.name}, {summary['model']}, {result.ranks} rank(s)",
                    summary.get("q_lim_mpa"))
    log.info("%s with %s: max load %.4g MPa, %d Newton iterations, %d cuts, %.2f s",
             problem.name, summary["model"], result.max_load, result.total_iterations,
             result.cuts, result.wall_seconds)
    return summary
