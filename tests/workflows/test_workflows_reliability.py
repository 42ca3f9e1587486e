"""The reliability suite (issue 16): what a batch system, a full or read-only disk and a
second run do to a run directory.

- a refused or invalid ``run`` changes nothing on disk (settings, status);
- SIGTERM (Slurm at the wall time) and SIGINT stop the stage's program, remove its partial
  work, record "interrupted" and exit with one line (143 / 130), without PETSc's banner;
- ``kill -9`` of the main process leaves no child program running;
- a read-only or full run directory gives one line, no traceback, no ``.tmp`` files;
- a failed stage's logs are kept in ``<node>.failed/`` and its error points there.

Each case is quick: a one-node chain whose program is ``sleep`` (``sleep_chain.py``),
``produce`` directly, or the real chain up to its first node (``dataset``).
"""

from __future__ import annotations

import builtins
import errno
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from scalebridge.artifacts import failure_logs, produce, write_text_atomic
from scalebridge.errors import ExternalProgramError, Interrupted, ScalebridgeError, SettingsError
from scalebridge.runtime import run_command, stop_on_signals
from scalebridge.workflows.chain import Chain, StageNode, _run_lock
from scalebridge.workflows.cli import cli
from scalebridge.workflows.pipeline import run, status

HERE = Path(__file__).parent
SCRIPT = HERE / "sleep_chain.py"
_spec = importlib.util.spec_from_file_location("wf_sleep_chain", SCRIPT)
sleepy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sleepy)

TINY = """
[run]
name = "tiny"
data = [{data}]

[potentials.ingest]
type_map = ["Mo"]
max_frames_per_group = {frames}
"""


def _toml(path: Path, data: Path, frames: int = 2) -> Path:
    path.write_text(TINY.format(data=json.dumps(str(data)), frames=frames))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, mo_train_json) -> tuple[Path, Path]:
    """A run directory with the real chain made up to its first node (``dataset``)."""
    base = tmp_path_factory.mktemp("finished")
    toml = _toml(base / "tiny.toml", mo_train_json)
    run(toml, base / "run", until="dataset", report=False)
    return toml, base / "run"


def _copy(finished_run, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[1], run_dir)
    return run_dir


def _top_files(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}


def _states(run_dir: Path) -> list[tuple[str, str, str]]:
    return [(s.name, s.state, s.reason) for s in status(run_dir)]


# ---------------------------------------------------------------- refused / invalid run
def test_invalid_until_changes_nothing(finished_run, tmp_path, mo_train_json):
    run_dir = _copy(finished_run, tmp_path)
    other = _toml(tmp_path / "other.toml", mo_train_json, frames=3)
    files, states = _top_files(run_dir), _states(run_dir)
    assert states[0][:2] == ("dataset", "done")
    with pytest.raises(SettingsError, match=r"^unknown stage 'nonsense'"):
        run(other, run_dir, until="nonsense")
    r = CliRunner().invoke(cli, ["run", str(other), "--run-dir", str(run_dir), "--until",
                                 "nonsense"])
    assert r.exit_code == 1 and r.output.startswith("error: unknown stage 'nonsense'"), r.output
    assert len(r.output.strip().splitlines()) == 1
    assert _top_files(run_dir) == files  # settings.json, settings.toml: same bytes
    assert _states(run_dir) == states


def test_run_refused_by_the_lock_changes_nothing(finished_run, tmp_path, mo_train_json):
    run_dir = _copy(finished_run, tmp_path)
    other = _toml(tmp_path / "other.toml", mo_train_json, frames=3)
    files, states = _top_files(run_dir), _states(run_dir)
    with _run_lock(run_dir):  # as another process running there holds it
        files = _top_files(run_dir)  # (the lock file now holds our pid)
        with pytest.raises(ScalebridgeError, match=r"is in use by pid \d+"):
            run(other, run_dir, until="dataset")
        assert _top_files(run_dir) == files
    assert _states(run_dir) == states
    # once the lock is free, the other settings are recorded (and the dataset redone)
    res = run(other, run_dir, until="dataset", report=False)
    assert list(res.seconds) == ["dataset"]
    assert json.loads((run_dir / "settings.json").read_text())["potentials"]["ingest"][
        "max_frames_per_group"] == 3
    assert (run_dir / "settings.toml").read_text() == other.read_text()


# ---------------------------------------------------------------- read-only / full disk
def _refuse_writes(monkeypatch, under: Path, err: int) -> None:
    """Every open for writing below ``under`` fails with ``err``. We run as root, for whom
    chmod does not make a directory read-only, and cannot mount: what is tested is how
    the error is reported, which is the same for a real read-only or full file system."""
    real_open = io.open

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") \
                and str(Path(file).absolute()).startswith(str(under)):
            raise OSError(err, os.strerror(err), str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)


@pytest.mark.parametrize("err", [errno.EROFS, errno.ENOSPC])
def test_unwritable_up_to_date_run_dir_is_one_line(finished_run, tmp_path, monkeypatch, err):
    run_dir = _copy(finished_run, tmp_path)
    files = _top_files(run_dir)
    _refuse_writes(monkeypatch, run_dir, err)
    r = CliRunner().invoke(cli, ["run", str(finished_run[0]), "--run-dir", str(run_dir),
                                 "--until", "dataset"])
    assert r.exit_code == 1, r.output
    assert r.output == f"error: cannot write {run_dir / '.lock'}: {os.strerror(err)}\n"
    monkeypatch.undo()
    assert _top_files(run_dir) == files


def test_unwritable_file_outside_the_chain_is_one_line(tmp_path, monkeypatch):
    """The CLI maps such an OSError wherever it comes from (e.g. the report)."""
    import click

    @click.command("writer")
    def writer() -> None:
        (tmp_path / "report.md").write_text("x")

    _refuse_writes(monkeypatch, tmp_path, errno.EROFS)
    cli.add_command(writer)
    try:
        r = CliRunner().invoke(cli, ["writer"])
    finally:
        cli.commands.pop("writer")
    assert r.exit_code == 1
    assert r.output == f"error: cannot write {tmp_path / 'report.md'}: Read-only file system\n"


def test_a_failed_atomic_write_leaves_no_tmp_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomic(tmp_path / "x.failed.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_full_disk_in_a_fan_out_stage_removes_the_partial_task(tmp_path):
    """A stage with fan-out tasks (``.tasks/<node>/<fp>/<task>``, as ``defects``): the
    half-made task goes, the finished one stays, and the message says so."""

    def make(call):
        tasks = call.run_dir / ".tasks" / "fan" / call.fingerprint[:16]
        (tasks / "t1").mkdir(parents=True)
        (tasks / "t2.partial").mkdir()
        (tasks / "t2.partial" / "lmp.out").write_text("half\n")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tasks / "t2.partial/x"))

    chain, run_dir = Chain([StageNode("fan", "Fan", (), make)]), tmp_path / "run"
    with pytest.raises(ScalebridgeError) as e:
        chain.run(run_dir, {})
    assert str(e.value).startswith("stage fan: could not write ")
    assert str(e.value).endswith("No space left on device (is the disk full?); its partial "
                                 "work was removed; 1 finished task(s) kept for the next "
                                 "run, rerun when there is space")
    assert not list(run_dir.glob(".tasks/fan/*/*.partial"))
    assert len(list(run_dir.glob(".tasks/fan/*/t1"))) == 1
    assert (failure_logs(run_dir / "fan") / "tasks" / "t2" / "lmp.out").read_text() == "half\n"
    assert not list(run_dir.rglob("*.tmp"))


# ---------------------------------------------------------------- logs of a failed stage
def test_failed_program_log_is_kept_where_the_error_points(tmp_path):
    def build(work: Path) -> dict:
        (work / "step").mkdir()
        run_command(["sh", "-c", "echo thermo 1; echo 'ERROR: Lost atoms: 12'; exit 3"],
                    work / "step", name="lmp", log_file=work / "step" / "lmp.out")
        return {}

    with pytest.raises(ExternalProgramError) as e:
        produce("Properties", tmp_path / "properties", {}, {}, build)
    msg = str(e.value)
    kept = tmp_path / "properties.failed" / "step" / "lmp.out"
    assert msg.endswith(f"ERROR: Lost atoms: 12 (full output: {kept})"), msg
    assert ".partial-" not in msg
    assert kept.read_text() == "thermo 1\nERROR: Lost atoms: 12\n"
    assert "running lmp in " in (kept.parent.parent / "log.txt").read_text()  # the stage log
    assert not list(tmp_path.glob(".properties.partial-*"))
    rec = json.loads((tmp_path / "properties.failed.json").read_text())
    assert rec["error"] == msg and rec["logs"] == str(kept.parent.parent)

    produce("Properties", tmp_path / "properties", {}, {}, lambda w: {})  # a success
    assert not (tmp_path / "properties.failed").exists()
    assert not (tmp_path / "properties.failed.json").exists()


def test_failed_stage_in_a_chain_points_to_the_kept_log(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(ExternalProgramError) as e:
        sleepy.sleep_chain().run(run_dir, {"seconds": 0, "rc": 3})
    msg = str(e.value)
    kept = run_dir / "slow.failed" / "sleeper.out"
    assert msg.startswith("stage slow: sleeper failed with exit code 3 in ")
    assert msg.endswith(f"ERROR: something broke at step 3 (full output: {kept})")
    assert "ERROR: something broke" in kept.read_text()


# ---------------------------------------------------------------- signals and kill -9
def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _start(run_dir: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """The sleep chain in a child Python; returns it and the pid of its program."""
    env = {**os.environ, "SCALEBRIDGE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, str(SCRIPT), str(run_dir), "30", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "started <pid>" once the program runs
    if not line.startswith("started "):
        proc.kill()
        raise AssertionError(f"no program started: {line!r} {proc.communicate()}")
    return proc, int(line.split()[1])


def _gone(pids: list[int], seconds: float = 10.0) -> bool:
    deadline = time.time() + seconds
    while any(_alive(p) for p in pids):
        if time.time() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_sigterm_stops_the_stage_with_one_line(tmp_path):
    """As Slurm at the wall time, to a process that loaded PETSc (as ``scalebridge``
    does): exit 143, one line, the program stopped, "interrupted" recorded, nothing partial;
    a later successful run clears the record."""
    run_dir = tmp_path / "run"
    proc, child = _start(run_dir, "--cli")
    try:
        assert list(run_dir.glob(".slow.partial-*"))
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert err == ("error: stage slow interrupted by SIGTERM; its partial work was removed, "
                   "rerun to continue\n"), err
    assert _gone([child], 2)
    assert not list(run_dir.glob(".slow.partial-*")) and not (run_dir / "slow").exists()
    rec = json.loads((run_dir / "slow.failed.json").read_text())
    assert rec["error_type"] == "Interrupted" and rec["node"] == "slow"
    chain, cfg = sleepy.sleep_chain(), {"seconds": 30.0, "ranks": 1}
    (st,) = chain.status(run_dir, cfg)
    assert st.state == "failed"
    assert st.reason == ("Interrupted: by SIGTERM; its partial work was removed, the next "
                         "run makes this stage again")

    chain.run(run_dir, {"seconds": 0.0, "ranks": 1})  # a later run that succeeds
    assert not (run_dir / "slow.failed.json").exists()
    assert not (run_dir / "slow.failed").exists()
    (st,) = chain.status(run_dir, {"seconds": 0.0, "ranks": 1})
    assert (st.state, st.reason) == ("done", "")


def test_sigint_in_process_raises_interrupted_and_stops_the_program(tmp_path):
    """Ctrl-C (SIGINT) in this very process, during the stage: ``Interrupted``, the sleep
    program gone, the partial build removed, the record says SIGINT."""
    import threading

    run_dir, pids = tmp_path / "run", []

    def on_start(line: str) -> None:
        if line.startswith("started "):
            pids.append(int(line.split()[1]))
            threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()

    def make(call):
        def build(work: Path) -> dict:
            run_command(["sh", "-c", "echo started $$; exec sleep 30"], work, name="sleep",
                        on_line=on_start)
            return {}
        return produce("Slow", call.out, {}, {}, build)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, else Python's
    t0 = time.time()
    with pytest.raises(Interrupted, match=r"^stage slow interrupted by SIGINT$"):
        Chain([StageNode("slow", "Slow", (), make)]).run(run_dir, {})
    assert time.time() - t0 < 20
    assert pids and _gone(pids, 2)
    assert not list(run_dir.glob(".slow.partial-*"))
    rec = json.loads((run_dir / "slow.failed.json").read_text())
    assert rec["error_type"] == "Interrupted" and rec["error"].startswith("by SIGINT;")
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_stop_on_signals_raises_once_then_lets_cleanup_finish():
    hits = []
    with pytest.raises(Interrupted, match="interrupted by SIGTERM"), stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        finally:  # cleanup: a second SIGTERM is ignored
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            hits.append("cleaned")
    assert hits == ["cleaned"]
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.parametrize("mpi", [False, True], ids=["plain", "mpiexec"])
def test_kill_9_of_the_main_process_leaves_no_program_running(tmp_path, mpi):
    """Only the main process is killed (not its process group): its program (and, under
    mpiexec, hydra's proxy and ranks) die with it (PR_SET_PDEATHSIG)."""
    if mpi and shutil.which("mpiexec", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("no mpiexec in the environment")
    proc, child = _start(tmp_path / "run", *(["--mpi", "2"] if mpi else []))
    try:
        from scalebridge.runtime import _descendants

        below = _descendants(proc.pid)
        assert child in below
        assert len(below) >= (3 if mpi else 1)  # mpiexec, proxy, ranks
        proc.kill()
        proc.wait()
        assert _gone(below), [p for p in below if _alive(p)]
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


POOL_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from scalebridge.runtime import exit_with_parent

def work(_):
    # one write of the whole line: with PYTHONUNBUFFERED print writes its parts one by
    # one, and the two workers' parts interleaved into lines the test could not read
    os.write(1, f"worker {os.getpid()}\\n".encode())
    time.sleep(60)

if __name__ == "__main__":
    init = dict(initializer=exit_with_parent, initargs=(os.getpid(),)) if sys.argv[1] == "1" else {}
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), **init) as pool:
        list(pool.map(work, range(2)))
"""


@pytest.mark.parametrize("guarded", [True, False], ids=["exit_with_parent", "bare"])
def test_kill_9_of_the_main_process_stops_its_pool_workers(tmp_path, guarded):
    """The surrogate's cross-validation folds fit in spawned worker processes: a kill -9
    of the chain must take them with it (exit_with_parent), where a bare pool's workers
    sleep on (the control: the test can tell)."""
    script = tmp_path / "pool.py"
    script.write_text(POOL_SCRIPT)
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, str(script), "1" if guarded else "0"],
                                stdout=subprocess.PIPE, stderr=fh, text=True,
                                start_new_session=True)
    try:
        assert proc.stdout is not None
        workers: list[int] = []
        for line in proc.stdout:    # the workers' lines (anything else is skipped)
            if line.startswith("worker "):
                workers.append(int(line.split()[1]))
                if len(workers) == 2:
                    break
        assert len(workers) == 2, f"the pool script ended early: {err.read_text()[-2000:]}"
        proc.kill()
        proc.wait()
        assert _gone(workers, 5.0) is guarded, [p for p in workers if _alive(p)]
    finally:
        with __import__("contextlib").suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_md_stage_on_a_potential_without_its_record_is_one_line(tmp_path):
    from scalebridge.errors import ArtifactError
    from scalebridge.workflows.stage_md import _potential

    (tmp_path / "potential").mkdir()
    with pytest.raises(ArtifactError, match=r"potential\.json: cannot read") as e:
        _potential(tmp_path / "potential", "auto")
    assert "\n" not in str(e.value)
