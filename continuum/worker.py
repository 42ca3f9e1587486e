"""MPI entry point: ``mpiexec -n N python -m scalebridge.continuum.worker WORKDIR``.

Reads ``fem_settings.json`` and ``.model_spec.pkl`` from WORKDIR (written by
:meth:`FemSettings.make`), solves on ``MPI.COMM_WORLD`` and writes the FieldResults files
and ``summary.json`` into WORKDIR. A user error prints ``error: <message>`` and aborts
every rank, so no rank waits forever on a collective.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
from mpi4py import MPI
from scalebridge.artifacts import write_json_atomic
from scalebridge.continuum.fem import FemSettings, run_fem
from scalebridge.continuum.materials import model_from_spec_file
from scalebridge.errors import ScalebridgeError
from scalebridge.settings import validate


def main(workdir: Path) -> None:
    comm = MPI.COMM_WORLD
    try:
        settings = validate(FemSettings, json.loads((workdir / "fem_settings.json").read_text()),
                            source=str(workdir / "fem_settings.json"))
        model = model_from_spec_file(workdir / ".model_spec.pkl")
        summary = run_fem(settings, model, workdir, comm)
    except ScalebridgeError as e:
        # Errors from collective decisions reach every rank: let rank 0 speak first.
        if comm.rank != 0:
            time.sleep(1.0)
        print(f"error: {e}", flush=True)
        comm.Abort(1)
        return
    if comm.rank == 0:
        write_json_atomic(workdir / "summary.json", summary)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
