"""MPI entry point: ``mpiexec -n N python -m scalebridge.continuum.worker WORKDIR``.

Reads ``fem_settings.json`` and ``.model_spec.pkl`` from WORKDIR (written by
:meth:`FemSettings.make`), solves on ``MPI.COMM_WORLD`` and writes the FieldResults files
and ``summary.json`` into WORKDIR.

A rank that fails (a user error, or any exception from the imports on, naming the step)
writes the one-line reason to ``WORKDIR/worker_error.<rank>.err`` before it prints
``error: <reason>`` and aborts every rank (so no rank waits forever on a collective).
The file is what the launcher reads (:func:`scalebridge.continuum.fem.worker_error_parser`):
hydra's ``mpiexec`` exits as soon as a rank's abort reaches it, and a proxy that was
not scheduled between the rank's print and its abort (a loaded machine) forwards the
abort first, so the printed line, and the rest of the output, can be lost.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from scalebridge.errors import ScalebridgeError

ERROR_FILE = "worker_error.{rank}.err"


def write_error(workdir: Path, rank: int, reason: str) -> None:
    """``reason`` (made one line) into ``workdir/worker_error.<rank>.err``, whole or not at
    all (written beside it, then renamed)."""
    path = workdir / ERROR_FILE.format(rank=rank)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        f.write(" ".join(reason.split()) + "\n")
    os.replace(tmp, path)


def main(workdir: Path) -> None:
    rank = int(os.environ.get("PMI_RANK", "0"))   # hydra's; the communicator's once MPI is up
    comm: Any = None
    step = "importing dolfinx and mpi4py"
    try:
        import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        rank = comm.rank
        step = "importing scalebridge.continuum"
        from scalebridge.artifacts import write_json_atomic
        from scalebridge.continuum.fem import FemSettings, run_fem
        from scalebridge.continuum.materials import model_from_spec_file
        from scalebridge.settings import validate

        step = f"reading {workdir / 'fem_settings.json'}"
        settings = validate(FemSettings, json.loads((workdir / "fem_settings.json").read_text()),
                            source=str(workdir / "fem_settings.json"))
        step = f"rebuilding the model from {workdir / '.model_spec.pkl'}"
        model = model_from_spec_file(workdir / ".model_spec.pkl")
        step = "solving"
        summary = run_fem(settings, model, workdir, comm)
        if comm.rank == 0:
            step = f"writing {workdir / 'summary.json'}"
            write_json_atomic(workdir / "summary.json", summary)
    except BaseException as e:  # every failure must leave its reason
        user = isinstance(e, ScalebridgeError)
        reason = str(e) if user else f"rank {rank}, {step}: {type(e).__name__}: {e}"
        if not user:
            traceback.print_exc()
        try:
            write_error(workdir, rank, reason)
        except OSError as w:   # the workdir itself is the problem: the output must do
            print(f"error: cannot write {ERROR_FILE.format(rank=rank)} in {workdir}: {w}",
                  flush=True)
        # Errors from collective decisions reach every rank: let rank 0 speak first.
        if rank != 0:
            time.sleep(1.0)
        print(f"error: {' '.join(reason.split())}", flush=True)
        sys.stderr.flush()
        if comm is not None:
            comm.Abort(1)
        os._exit(1)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
