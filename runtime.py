"""Process environment and external programs, shared by every stage.

Each stage calls its own program from one function (``run_dp``, ``run_lammps``, ...);
those functions build on :func:`run_command`, which streams output to the stage log,
keeps the tail for the error message and raises :class:`ExternalProgramError`.

The programs it starts die with the process that started them: on Linux each gets
``PR_SET_PDEATHSIG(SIGKILL)`` (a ``kill -9`` of scalebridge leaves no ``dp`` or ``lmp``
running), and any exception while one runs (a failure, or :class:`Interrupted` raised by
:func:`stop_on_signals` on SIGTERM/SIGINT) stops it before propagating.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from scalebridge.errors import ExternalProgramError, Interrupted, SettingsError

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


def torch_device(setting: str) -> str:
    """``"cpu"`` or ``"cuda"`` for a device setting (``Resources.device``): ``"auto"`` is
    the GPU where torch sees one, else the CPU.

    Raises:
        SettingsError: ``"cuda"`` asked for where torch sees no GPU (one line, before any
            program starts), or an unknown setting.
    """
    if setting not in ("auto", "cpu", "cuda"):
        raise SettingsError(f"execution.device = {setting!r}: expected auto, cpu or cuda")
    if setting == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        why = (" (CUDA_VISIBLE_DEVICES is empty)" if os.environ.get("CUDA_VISIBLE_DEVICES")
               == "" else "")
        raise SettingsError(f"execution.device = 'cuda', but torch {torch.__version__} sees no "
                            f"CUDA device{why}; use auto or cpu")
    return "cpu"


def device_name(device: str) -> str:
    """What a record says about ``device``: ``"cpu"`` or e.g. ``"cuda (NVIDIA H200)"``."""
    if device != "cuda":
        return device
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})"


def program_env(threads: int = 1, extra: Mapping[str, str] | None = None,
                gpu: bool = False) -> dict[str, str]:
    """Environment for an external program using ``threads`` threads per process.

    Sets the OpenMP and DeePMD thread variables (DeePMD warns without them), puts the
    environment's bin on PATH and its lib on LD_LIBRARY_PATH (for libmpi.so.12). Without
    ``gpu`` the program sees no GPU (a CUDA build of torch or DeePMD would otherwise take
    one, e.g. every LAMMPS rank the same card); with it, the GPUs this process sees.
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
    if not gpu:
        # CUDA builds of torch/deepmd fall back to the CPU; keep them from probing GPUs
        # unless the user chose the devices (CUDA_VISIBLE_DEVICES set by hand).
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
                error_parser: Callable[[list[str]], str | None] | None = None,
                gpu: bool = False) -> list[str]:
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
        gpu: let the program see the GPUs (:func:`program_env`).

    Returns:
        The last ``tail_lines`` lines of output.

    Raises:
        ExternalProgramError: non-zero exit, with the program's own error line.
    """
    cwd = Path(cwd)
    full_env = program_env(threads, env, gpu=gpu)
    log.info("running %s in %s: %s", name, cwd, " ".join(map(str, cmd)))
    tail: deque[str] = deque(maxlen=tail_lines)
    fh = open(log_file, "a") if log_file else None
    proc: subprocess.Popen[str] | None = None
    try:
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1, errors="replace", preexec_fn=_die_with_parent())
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
    except subprocess.TimeoutExpired:
        stop_process(proc)
        raise ExternalProgramError(
            f"{name}: still running {timeout} s after its output ended; stopped") from None
    except BaseException:  # a failure here or SIGTERM/SIGINT (Interrupted): stop it too
        stop_process(proc)
        raise
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


# ---------------------------------------------------------------- child processes
_PR_SET_PDEATHSIG = 1


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover
        return None


_PRCTL = _load_prctl()  # looked up here: the child between fork and exec only calls it


def _die_with_parent() -> Callable[[], None] | None:
    """``preexec_fn`` that makes the child get SIGKILL when its parent dies (Linux).

    The signal fires when the *thread* that forked exits; :func:`run_command` waits for
    its child in that thread, so the child outlives neither. ``mpiexec`` (hydra) killed
    this way takes its ranks with it.
    """
    if _PRCTL is None:
        return None
    parent = os.getpid()
    return lambda: _kill_with(parent)


def _kill_with(parent: int) -> None:
    """In a child: SIGKILL when its parent dies (Linux), and exit now if ``parent`` died
    already (before the prctl took effect)."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def exit_with_parent(parent: int, every_s: float = 0.5) -> None:
    """Pool initializer (``ProcessPoolExecutor(initializer=exit_with_parent,
    initargs=(os.getpid(),))``): the worker exits as soon as ``parent`` is no longer its
    parent process. A ``kill -9`` of scalebridge gives its workers no shutdown message; a
    worker busy with a fit would otherwise run it to the end (minutes) for nobody. Linux's
    PR_SET_PDEATHSIG where it exists, and a daemon thread that polls ``os.getppid()``
    every ``every_s`` seconds (the death signal follows the *thread* that started the
    worker, which a pool may let exit)."""
    _kill_with(parent)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (Linux ``/proc``; empty where it cannot tell)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                kids = [int(c) for c in children.read_text().split()]
                out.extend(kids)
                todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _signal(pids: Sequence[int], sig: int) -> None:
    for p in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, sig)


def stop_process(proc: subprocess.Popen | None, grace: float = 5.0) -> None:
    """Stop ``proc`` and what it started, if it still runs: SIGTERM (mpiexec forwards it
    to its ranks), then SIGKILL to whatever still runs ``grace`` seconds later."""
    if proc is None or proc.poll() is not None:
        return
    below = _descendants(proc.pid)
    log.info("stopping pid %d%s", proc.pid, f" and {len(below)} below it" if below else "")
    _signal([proc.pid, *below], signal.SIGTERM)
    deadline = time.monotonic() + grace
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal([proc.pid], signal.SIGKILL)
        proc.wait()
    while any(_alive(p) for p in below) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal([p for p in below if _alive(p)], signal.SIGKILL)


# ---------------------------------------------------------------- signals
#: What a batch system or a user sends to stop a run: Slurm sends SIGTERM at the wall time.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(signals: Sequence[int] = STOP_SIGNALS) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT raise :class:`Interrupted` in the main thread.

    The first signal raises; later ones (Slurm may repeat SIGTERM) are logged and ignored
    so the cleanup the exception triggers (stopping programs, removing partial work,
    recording the interruption) runs to its end. Installing Python's handlers also
    replaces the ones PETSc sets up when petsc4py initialises (its crash banner). Outside
    the main thread this does nothing (Python handles signals there only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _SIGNALS["depth"] == 0:
        _SIGNALS["fired"] = None
    previous = {s: signal.signal(s, _raise_interrupted) for s in signals}
    _SIGNALS["depth"] += 1
    try:
        yield
    finally:
        _SIGNALS["depth"] -= 1
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


_SIGNALS: dict[str, Any] = {"depth": 0, "fired": None}


def _raise_interrupted(signum: int, frame: object) -> None:
    if _SIGNALS["fired"] is not None:
        log.warning("%s again: already stopping", signal.Signals(signum).name)
        return
    _SIGNALS["fired"] = signum
    raise Interrupted(signum)
