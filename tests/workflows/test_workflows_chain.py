"""Chain engine: caching, downstream-only reruns, status, failure records, kill -9
resume and a disk that fills up, on a small real chain (tests/workflows/toy_chain.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scalebridge.artifacts import read_artifact
from scalebridge.errors import DataError, ScalebridgeError

HERE = Path(__file__).parent
_spec = importlib.util.spec_from_file_location("wf_toy_chain", HERE / "toy_chain.py")
toy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy)


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    p = tmp_path / "numbers.txt"
    p.write_text("300\n500\n700\n")
    return p


def _states(chain, run_dir, cfg) -> dict[str, tuple[str, str]]:
    return {s.name: (s.state, s.reason) for s in chain.status(run_dir, cfg)}


def test_rerun_skips_and_a_change_reruns_only_downstream(tmp_path, numbers):
    chain, run_dir = toy.toy_chain(), tmp_path / "run"
    cfg = toy.toy_config(numbers)
    assert {k: v[0] for k, v in _states(chain, run_dir, cfg).items()} == {
        "numbers": "pending", "primes": "pending", "total": "pending"}

    events: list[tuple[str, str]] = []
    arts = chain.run(run_dir, cfg, on_node=lambda n, e: events.append((n, e)))
    assert arts["total"].summary["total"] == 62 + 95 + 125  # primes below 300, 500, 700
    assert [e for _, e in events].count("done") == 3
    assert all(s == "done" for s, _ in _states(chain, run_dir, cfg).values())
    mtimes = {n: (run_dir / n / "manifest.json").stat().st_mtime_ns for n in arts}

    events.clear()
    chain.run(run_dir, cfg, on_node=lambda n, e: events.append((n, e)))
    assert events == [("numbers", "skipped"), ("primes", "skipped"), ("total", "skipped")]
    assert {n: (run_dir / n / "manifest.json").stat().st_mtime_ns for n in arts} == mtimes

    # --force remakes that node only
    events.clear()
    chain.run(run_dir, cfg, force=("total",), on_node=lambda n, e: events.append((n, e)))
    assert events == [("numbers", "skipped"), ("primes", "skipped"), ("total", "started"),
                      ("total", "done")]
    assert (run_dir / "total" / "manifest.json").stat().st_mtime_ns != mtimes["total"]
    assert (run_dir / "primes" / "manifest.json").stat().st_mtime_ns == mtimes["primes"]

    # change a setting of the middle node: it and the node after it are stale, with why
    cfg2 = toy.toy_config(numbers, factor=2)
    st = _states(chain, run_dir, cfg2)
    assert st["numbers"][0] == "done"
    assert st["primes"] == ("stale", "settings changed (factor: 1 -> 2)")
    assert st["total"] == ("stale", "upstream changed: primes")

    events.clear()
    arts2 = chain.run(run_dir, cfg2, on_node=lambda n, e: events.append((n, e)))
    assert events == [("numbers", "skipped"), ("primes", "started"), ("primes", "done"),
                      ("total", "started"), ("total", "done")]
    assert (run_dir / "numbers" / "manifest.json").stat().st_mtime_ns == mtimes["numbers"]
    assert arts2["total"].summary["total"] == 109 + 168 + 222  # below 600, 1000, 1400
    # the artifact's own fingerprint includes its input's fingerprint
    assert arts2["total"].fingerprint != arts["total"].fingerprint

    # the input file's content is part of the fingerprint
    numbers.write_text("300\n500\n")
    st = _states(chain, run_dir, cfg2)
    assert st["numbers"] == ("stale", "input changed: numbers")
    assert st["total"][0] == "stale"


def test_bad_data_fails_with_one_line_and_status_shows_why(tmp_path, numbers):
    chain, run_dir = toy.toy_chain(), tmp_path / "run"
    numbers.write_text("300\nfive hundred\n")
    with pytest.raises(DataError, match=r"^stage numbers: .*numbers.txt: line 2: 'five'"):
        chain.run(run_dir, toy.toy_config(numbers))
    assert not (run_dir / "numbers").exists()
    assert not list(run_dir.glob(".numbers.partial-*"))
    rec = json.loads((run_dir / "numbers.failed.json").read_text())
    assert rec["error_type"] == "DataError" and rec["node"] == "numbers"
    st = _states(chain, run_dir, toy.toy_config(numbers))
    assert st["numbers"][0] == "failed" and "line 2" in st["numbers"][1]
    assert st["total"] == ("pending", "waits for primes")

    numbers.write_text("300\n500\n")
    chain.run(run_dir, toy.toy_config(numbers))
    assert not (run_dir / "numbers.failed.json").exists()
    assert all(s == "done" for s, _ in _states(chain, run_dir, toy.toy_config(numbers)).values())


def test_missing_input_file_names_it(tmp_path):
    chain = toy.toy_chain()
    with pytest.raises(ScalebridgeError,
                       match=r"^numbers: input file 'numbers' does not exist: .*nope.txt$"):
        chain.run(tmp_path / "run", toy.toy_config(tmp_path / "nope.txt"))
    assert not (tmp_path / "run" / "numbers").exists()


def test_unknown_stage_in_until_has_did_you_mean(tmp_path, numbers):
    with pytest.raises(ScalebridgeError, match="unknown stage 'prims'; did you mean 'primes'"):
        toy.toy_chain().run(tmp_path / "run", toy.toy_config(numbers), until="prims")


def _script(run_dir: Path, cfg: dict, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE / "toy_chain.py"), str(run_dir),
                             json.dumps(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_mid_stage_then_resume_gives_the_same_result(tmp_path, numbers):
    cfg = toy.toy_config(numbers, factor=400)  # primes takes a few seconds
    ref = toy.toy_chain().run(tmp_path / "ref", cfg)["total"].summary["total"]

    run_dir = tmp_path / "run"
    proc = _script(run_dir, cfg, start_new_session=True)
    deadline = time.time() + 60
    while not list(run_dir.glob(".primes.partial-*")):  # the primes stage is running
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)  # the chain and its child program, no cleanup
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (run_dir / "numbers" / "manifest.json").exists()
    assert not (run_dir / "primes").exists()  # no half artifact that looks whole
    st = _states(toy.toy_chain(), run_dir, cfg)
    assert st["numbers"][0] == "done" and st["primes"][0] == "pending"
    assert st["primes"][1].startswith("interrupted")

    events: list[tuple[str, str]] = []
    arts = toy.toy_chain().run(run_dir, cfg, on_node=lambda n, e: events.append((n, e)))
    assert events[0] == ("numbers", "skipped")
    assert not list(run_dir.glob(".*.partial-*"))
    assert arts["total"].summary["total"] == ref
    assert read_artifact(run_dir / "total").fingerprint == \
        read_artifact(tmp_path / "ref" / "total").fingerprint


def test_second_process_on_the_same_run_dir_is_refused(tmp_path, numbers):
    cfg = toy.toy_config(numbers, factor=400)
    run_dir = tmp_path / "run"
    proc = _script(run_dir, cfg, start_new_session=True)
    try:
        deadline = time.time() + 60
        while not list(run_dir.glob(".primes.partial-*")):
            assert proc.poll() is None and time.time() < deadline
            time.sleep(0.05)
        with pytest.raises(ScalebridgeError, match=rf"is in use by pid {proc.pid}"):
            toy.toy_chain().run(run_dir, cfg)
        st = _states(toy.toy_chain(), run_dir, cfg)
        assert st["primes"] == ("running", f"being made by pid {proc.pid}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _small_file_limit() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_disk_full_fails_cleanly_then_resumes(tmp_path, numbers):
    """A write error (files capped at 200 kB by RLIMIT_FSIZE, as a full disk would) in
    the middle stage: one-line error, no partial artifact, a later run completes."""
    cfg = toy.toy_config(numbers, pad_bytes=400_000)
    run_dir = tmp_path / "run"
    proc = _script(run_dir, cfg, preexec_fn=_small_file_limit)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: stage primes"), err
    assert "File too large" in lines[0] or "No space" in lines[0]
    assert (run_dir / "numbers" / "manifest.json").exists()
    assert not (run_dir / "primes").exists()
    assert not list(run_dir.glob(".primes.partial-*"))
    assert _states(toy.toy_chain(), run_dir, cfg)["primes"][0] == "failed"

    arts = toy.toy_chain().run(run_dir, cfg)  # space again
    assert arts["total"].summary["total"] == 62 + 95 + 125
