"""Process environment and external programs, shared by every stage.

Each stage calls its own program from one function (``run_dp``, ``run_lammps``, ...);
those functions build on :func:`run_command`, which streams output to the stage log,
keeps the tail for the error message and raises :class:`ExternalProgramError`.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from scalebridge.errors import ExternalProgramError

log = logging.getLogger("scalebridge.runtime")


def venv_bin() -> Path:
    """The ``bin/`` of the running interpreter's environment (where lmp, dp, mpiexec live)."""
    return Path(sys.executable).parent


def venv_lib() -> Path:
    """The environment's ``lib/`` (mpich puts ``libmpi.so.12`` there)."""
    return Path(sys.prefix) / "lib"


def find_program(name: str) -> str:
    """Absolute path of ``name``: the environment's bin first, then PATH."""
    cand = venv_bin() / name
    if cand.is_file() and os.access(cand, os.X_OK):
        return str(cand)
    found = shutil.which(name)
    if found is None:
        raise ExternalProgramError(
            f"program {name!r} not found in {venv_bin()} or on PATH; run ./sb setup")
    return found


def program_env(threads: int = 1, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for an external program using ``threads`` threads per process.

    Sets the OpenMP and DeePMD thread variables (DeePMD warns without them), puts the
    environment's bin on PATH and its lib on LD_LIBRARY_PATH (for libmpi.so.12).
    """
    env = dict(os.environ)
    env["PATH"] = f"{venv_bin()}{os.pathsep}{env.get('PATH', '')}"
    lib = str(venv_lib())
    if lib not in env.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        env["LD_LIBRARY_PATH"] = lib + (os.pathsep + env["LD_LIBRARY_PATH"]
                                        if env.get("LD_LIBRARY_PATH") else "")
    env["OMP_NUM_THREADS"] = str(threads)
    env["DP_INTRA_OP_PARALLELISM_THREADS"] = str(threads)
    env["DP_INTER_OP_PARALLELISM_THREADS"] = "1"
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    # CUDA builds of torch/deepmd fall back to the CPU; keep them from probing GPUs
    # unless the user asked for a device explicitly.
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    if extra:
        env.update(extra)
    return env


def mpi_prefix(ranks: int) -> list[str]:
    """``[mpiexec, -n, N]`` for N > 1 ranks, else ``[]``."""
    return [find_program("mpiexec"), "-n", str(ranks)] if ranks > 1 else []


def run_command(cmd: Sequence[str], cwd: Path, *, name: str, threads: int = 1,
                env: Mapping[str, str] | None = None, log_file: Path | None = None,
                on_line: Callable[[str], None] | None = None, tail_lines: int = 40,
                timeout: float | None = None,
                error_parser: Callable[[list[str]], str | None] | None = None) -> list[str]:
    """Run an external program, streaming its output.

    Args:
        cmd: argv.
        cwd: working directory.
        name: short program name for messages (``"lmp"``, ``"dp train"``).
        threads: threads per process (sets OMP/DeePMD variables).
        env: extra environment variables.
        log_file: every output line is appended here.
        on_line: called with each output line (progress bars, parsers).
        error_parser: given the output tail, returns the one-line cause, or None.

    Returns:
        The last ``tail_lines`` lines of output.

    Raises:
        ExternalProgramError: non-zero exit, with the program's own error line.
    """
    cwd = Path(cwd)
    full_env = program_env(threads, env)
    log.info("running %s in %s: %s", name, cwd, " ".join(map(str, cmd)))
    tail: deque[str] = deque(maxlen=tail_lines)
    fh = open(log_file, "a") if log_file else None
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail.append(line)
            if fh:
                fh.write(line + "\n")
            if on_line:
                on_line(line)
        rc = proc.wait(timeout=timeout)
    except FileNotFoundError:
        raise ExternalProgramError(f"{name}: program not found: {cmd[0]}") from None
    finally:
        if fh:
            fh.close()
    lines = list(tail)
    if rc != 0:
        cause = error_parser(lines) if error_parser else None
        if cause is None:
            errs = [ln for ln in lines if "ERROR" in ln or "Error" in ln or "error" in ln]
            cause = (errs[-1] if errs else (lines[-1] if lines else "no output")).strip()
        where = f" (full output: {log_file})" if log_file else ""
        raise ExternalProgramError(f"{name} failed with exit code {rc} in {cwd}: {cause}{where}")
    return lines
