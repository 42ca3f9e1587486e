"""Execution engines: where the chain's independent tasks run.

A stage with independent work (the MD (stress, temperature) grid, ensemble members, DD
realisations) is given a :class:`Mapper` and calls ``mapper.map(fn, items)`` instead of a
loop; it gets the results back in the order of ``items``. Two implementations:

- :class:`LocalMapper` (the default, no configuration): runs the tasks in this process,
  one after the other, or in a pool of ``workers`` local processes.
- :class:`ParslMapper`: Parsl's HighThroughputExecutor with a LocalProvider (this
  machine) or a SlurmProvider (a cluster). A task whose worker dies (killed, out of
  memory) is retried ``retries`` times; the run completes if a retry succeeds.

Tasks that run an MPI program take their ranks from :class:`scalebridge.settings.Resources`
and launch ``mpiexec -n <ranks>`` themselves (``scalebridge.runtime.mpi_prefix``); a Parsl
worker is then sized to ``mpi_ranks * threads`` cores. :func:`run_task_command` is such a
task for any external command.

``fn`` must be picklable by reference for the process pool and Parsl (a module-level
function of an importable module, or a ``functools.partial`` of one).

Example::

    with make_mapper(ExecutionSettings(engine="parsl", workers=2), run_dir) as mapper:
        velocities = mapper.map(run_glide, grid_points)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from pydantic import Field
from scalebridge.errors import ExternalProgramError, ScalebridgeError, SettingsError
from scalebridge.log import progress
from scalebridge.runtime import mpi_prefix, program_env, run_command, venv_bin, venv_lib
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.workflows.engine")

T = TypeVar("T")
R = TypeVar("R")


class SlurmSettings(StrictModel):
    """Slurm provider for Parsl (used when ``provider = "slurm"``)."""

    partition: str | None = Field(None, description="Slurm partition (sbatch -p)")
    account: str | None = Field(None, description="Slurm account to charge")
    qos: str | None = Field(None, description="Slurm QOS")
    walltime: str = Field("01:00:00", description="wall time per block (HH:MM:SS)")
    nodes_per_block: int = Field(1, ge=1, description="nodes per Slurm job (block)")
    cores_per_node: int | None = Field(None, ge=1, description="cores per node to request")
    max_blocks: int = Field(1, ge=1, description="most Slurm jobs held at once")
    scheduler_options: str = Field("", description="extra '#SBATCH ...' lines")
    worker_init: str = Field("", description="shell lines run before workers start "
                             "(module load ...); the venv is put on PATH automatically")


class ExecutionSettings(StrictModel):
    """Where and how tasks run. Machine settings: they never enter a fingerprint."""

    engine: Literal["local", "parsl"] = Field(
        "local", description="local: tasks run in this process (or a local process pool); "
        "parsl: Parsl HighThroughputExecutor")
    provider: Literal["local", "slurm"] = Field(
        "local", description="Parsl provider: this machine, or Slurm jobs (see [execution.slurm])")
    workers: int = Field(1, ge=1, description="tasks run at once (per node under Slurm)")
    retries: int = Field(2, ge=0, description="Parsl: times a failed task (e.g. its worker "
                         "died) is retried")
    mpi_ranks: int = Field(1, ge=1, description="MPI ranks per task for MPI programs "
                           "(lmp, FEM): mpiexec -n")
    threads: int = Field(1, ge=1, description="OpenMP/torch threads per rank")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="torch device for DeePMD training: auto is the GPU where torch "
        "sees one, else the CPU; cuda fails at once without one")
    heartbeat_s: int = Field(2, ge=1, description="Parsl: seconds between worker liveness "
                             "checks (a dead worker is noticed within about this)")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings,
                                 description="Slurm provider settings")

    @property
    def resources(self) -> Resources:
        """Per-task machine resources handed to the stages."""
        return Resources(mpi_ranks=self.mpi_ranks, threads=self.threads,
                         device=self.device)


@runtime_checkable
class Mapper(Protocol):
    """Runs independent tasks; results come back in the order of ``items``.

    A mapper may also say how many tasks it runs at once (``slots``, an int; 1 if absent):
    a stage reads it with ``getattr(mapper, "slots", 1)`` to cut its work, e.g. the
    ensemble members train in one process (torch imported once) when only one task runs
    at a time, and one task per member otherwise.
    """

    resources: Resources

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            description: str | None = None) -> list[R]:
        """``[fn(x) for x in items]``, possibly in parallel; with ``description``, the
        tasks finished are shown as they finish (:func:`scalebridge.log.progress`)."""
        ...


@contextmanager
def _tasks_done(description: str | None, n: int) -> Iterator[Callable[..., None]]:
    """``advance()`` to call as each of ``n`` tasks finishes: a progress bar on a
    terminal, log lines off one (:func:`scalebridge.log.progress`); a no-op without a
    ``description``."""
    if description is None:
        yield lambda k=1: None
        return
    with progress(description, total=n) as advance:
        yield advance


def _no_progress_bars(threads: int = 1) -> None:
    """Pool worker start-up: only the parent draws on the terminal (a worker's bar would
    overwrite the parent's), and each worker's OpenMP/torch pool gets ``threads``
    (set before the task imports torch). Otherwise every worker sizes its pool to the
    whole machine: on the Mo example's DD study (2 workers, 2 cores) the realisations ran
    ~8x slower as soon as any other process took a slice of a core, each of the engine's
    many small tensor operations waiting for a descheduled pool thread."""
    os.environ["SCALEBRIDGE_NO_PROGRESS"] = "1"
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(max(int(threads), 1))


class LocalMapper:
    """Tasks in this process (``workers == 1``) or in a local process pool."""

    def __init__(self, workers: int = 1, resources: Resources | None = None) -> None:
        self.workers = workers
        self.resources = resources or Resources()
        self._pool: ProcessPoolExecutor | None = None

    @property
    def slots(self) -> int:
        """Tasks that can run at once."""
        return self.workers

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            description: str | None = None) -> list[R]:
        items = list(items)
        with _tasks_done(description, len(items)) as done:
            if self.workers <= 1 or len(items) <= 1:
                out = []
                for x in items:
                    out.append(fn(x))
                    done()
                return out
            if self._pool is None:
                # spawn, not fork: the parent may hold torch/MPI threads
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_no_progress_bars, initargs=(self.resources.threads,))
            futures = [self._pool.submit(fn, x) for x in items]
            for fut in as_completed(futures):
                fut.result()                    # the first failure raises here
                done()
            return [fut.result() for fut in futures]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class ParslMapper:
    """Parsl HighThroughputExecutor; use as a context manager (starts/stops Parsl)."""

    def __init__(self, settings: ExecutionSettings, run_dir: Path) -> None:
        self.settings = settings
        self.resources = settings.resources
        self.run_dir = Path(run_dir).absolute()
        self._dfk: Any = None

    @property
    def slots(self) -> int:
        """Tasks that can run at once: workers per block times the blocks allowed."""
        s = self.settings
        return s.workers * (s.slurm.max_blocks if s.provider == "slurm" else 1)

    def block_jobs(self) -> dict[str, str]:
        """``{block id: scheduler job id}`` of the blocks submitted so far (under Slurm,
        the Slurm job ids of the worker jobs; under the local provider, process ids)."""
        if self._dfk is None:
            return {}
        htex = self._dfk.executors["scalebridge"]
        return {str(k): str(v) for k, v in getattr(htex, "blocks_to_job_id", {}).items()}

    def config(self) -> Any:
        """The Parsl ``Config`` these settings describe."""
        from parsl.config import Config
        from parsl.executors import HighThroughputExecutor

        s = self.settings
        env_lines = (f"export PATH={venv_bin()}:$PATH; "
                     f"export LD_LIBRARY_PATH={venv_lib()}:${{LD_LIBRARY_PATH:-}}; "
                     f"export OMP_NUM_THREADS={s.threads}")
        if s.provider == "local":
            from parsl.providers import LocalProvider

            provider: Any = LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1,
                                          worker_init=env_lines)
        else:
            from parsl.launchers import SingleNodeLauncher
            from parsl.providers import SlurmProvider

            sl = s.slurm
            # Parsl appends its own '#SBATCH --cpus-per-task' line right after these
            options = sl.scheduler_options.rstrip("\n")
            options = f"{options}\n" if options else ""
            provider = SlurmProvider(
                partition=sl.partition, account=sl.account, qos=sl.qos,
                walltime=sl.walltime, nodes_per_block=sl.nodes_per_block,
                cores_per_node=sl.cores_per_node, init_blocks=1, min_blocks=0,
                max_blocks=sl.max_blocks, scheduler_options=options,
                worker_init=f"{sl.worker_init}\n{env_lines}".strip(),
                launcher=SingleNodeLauncher(), exclusive=False)
        htex = HighThroughputExecutor(
            label="scalebridge", provider=provider, max_workers_per_node=s.workers,
            cores_per_worker=float(s.mpi_ranks * s.threads),
            heartbeat_period=s.heartbeat_s, heartbeat_threshold=max(10, 5 * s.heartbeat_s),
            poll_period=100, encrypted=False,
            worker_logdir_root=str(self.run_dir / "parsl" / "workers"))
        return Config(executors=[htex], retries=s.retries,
                      run_dir=str(self.run_dir / "parsl" / "runinfo"),
                      # Slurm: more blocks (jobs, up to max_blocks) while tasks wait, a
                      # new one when a block ends (walltime), idle ones released; locally
                      # the one block is fixed
                      strategy="htex_auto_scale" if s.provider == "slurm" else "none",
                      initialize_logging=False)

    def __enter__(self) -> ParslMapper:
        import parsl

        # The interchange and the worker pool are launched as programs found on PATH.
        env = program_env(self.settings.threads)
        os.environ["PATH"] = env["PATH"]
        os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
        (self.run_dir / "parsl").mkdir(parents=True, exist_ok=True)
        self._dfk = parsl.load(self.config())
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._dfk is not None:
            try:
                self._dfk.cleanup()
            finally:
                self._dfk = None

    def map(self, fn: Callable[[T], R], items: Sequence[T],
            description: str | None = None) -> list[R]:
        """See :meth:`Mapper.map`; the tasks finished are counted in ``items`` order."""
        if self._dfk is None:
            raise ScalebridgeError("ParslMapper used outside 'with': Parsl is not started")
        from parsl.app.python import PythonApp

        app = PythonApp(fn, data_flow_kernel=self._dfk, executors=["scalebridge"])
        futures = [app(x) for x in items]
        out: list[R] = []
        with _tasks_done(description, len(futures)) as done:
            for i, fut in enumerate(futures):
                try:
                    out.append(fut.result())
                except ScalebridgeError:
                    raise
                except Exception as e:  # Parsl wraps worker loss and remote exceptions
                    raise ScalebridgeError(
                        f"task {i} of {len(futures)} ({getattr(fn, '__name__', fn)!s}) "
                        f"failed after {self.settings.retries} retries: "
                        f"{type(e).__name__}: {e}") from None
                done()
        return out


@contextmanager
def make_mapper(settings: ExecutionSettings | None, run_dir: Path) -> Iterator[Mapper]:
    """The mapper ``settings`` asks for, started and stopped around the block."""
    settings = settings or ExecutionSettings()
    if settings.engine == "local":
        if settings.provider != "local":
            raise SettingsError("execution.provider = 'slurm' needs execution.engine = 'parsl'")
        mapper = LocalMapper(settings.workers, settings.resources)
        try:
            yield mapper
        finally:
            mapper.close()
        return
    try:
        import parsl  # noqa: F401
    except ImportError:
        raise SettingsError("execution.engine = 'parsl' but parsl is not installed; "
                            "run ./sb setup") from None
    t0 = time.perf_counter()
    with ParslMapper(settings, run_dir) as pm:
        log.info("Parsl started (%s provider, %d workers) in %.1f s", settings.provider,
                 settings.workers, time.perf_counter() - t0)
        yield pm


def run_task_command(task: dict[str, Any]) -> dict[str, Any]:
    """A fan-out task that runs one external command, under mpiexec when asked.

    Args:
        task: ``{"argv": [...], "cwd": str, "mpi_ranks": int = 1, "threads": int = 1,
            "name": str, "log_file": str | None}``.

    Returns:
        ``{"returncode": 0, "tail": [last output lines], "seconds": float, "pid": int}``.

    Raises:
        ExternalProgramError: the command failed (its own error line is quoted).
    """
    ranks = int(task.get("mpi_ranks", 1))
    argv = [*mpi_prefix(ranks), *map(str, task["argv"])]
    t0 = time.perf_counter()
    log_file = task.get("log_file")
    tail = run_command(argv, Path(task.get("cwd", ".")), name=str(task.get("name", argv[0])),
                       threads=int(task.get("threads", 1)),
                       log_file=Path(log_file) if log_file else None)
    return {"returncode": 0, "tail": tail, "seconds": round(time.perf_counter() - t0, 3),
            "pid": os.getpid()}


def python_argv(code: str) -> list[str]:
    """argv that runs ``code`` with this environment's Python (for command tasks)."""
    return [sys.executable, "-c", code]


__all__ = [
    "ExecutionSettings", "ExternalProgramError", "LocalMapper", "Mapper", "ParslMapper",
    "SlurmSettings", "make_mapper", "python_argv", "run_task_command",
]
