"""Artifacts: atomic writes, skip-when-done, resume, manifest validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from scalebridge.artifacts import (
    SCHEMA_VERSION,
    Artifact,
    clean_partials,
    content_digest,
    dry_run_path,
    failure_logs,
    failure_record,
    fresh_dry_run_dir,
    produce,
    read_artifact,
    verify_artifact,
)
from scalebridge.errors import ArtifactError


def _writer(text: str, calls: list[int] | None = None):
    def build(workdir: Path) -> dict:
        if calls is not None:
            calls.append(1)
        (workdir / "out.txt").write_text(text)
        return {"length": len(text)}
    return build


def test_produce_writes_manifest_and_files(tmp_path: Path) -> None:
    art = produce("Demo", tmp_path / "demo", {"a": 1}, {}, _writer("hello"))
    assert art.kind == "Demo"
    assert (tmp_path / "demo" / "out.txt").read_text() == "hello"
    m = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert m["kind"] == "Demo" and m["schema"] == SCHEMA_VERSION
    assert m["settings"] == {"a": 1} and m["summary"] == {"length": 5}
    assert "numpy" in m["versions"] and m["wall_seconds"] >= 0
    assert (tmp_path / "demo" / "log.txt").exists()


def test_skip_when_current_and_rerun_when_settings_or_inputs_change(tmp_path: Path) -> None:
    calls: list[int] = []
    src = tmp_path / "input.txt"
    src.write_text("x")
    produce("Demo", tmp_path / "d", {"a": 1}, {"src": src}, _writer("1", calls))
    produce("Demo", tmp_path / "d", {"a": 1}, {"src": src}, _writer("1", calls))
    assert len(calls) == 1, "an unchanged stage must be skipped"
    produce("Demo", tmp_path / "d", {"a": 2}, {"src": src}, _writer("2", calls))
    assert len(calls) == 2, "a changed setting must rebuild"
    src.write_text("y")
    produce("Demo", tmp_path / "d", {"a": 2}, {"src": src}, _writer("3", calls))
    assert len(calls) == 3, "a changed input file must rebuild"
    assert (tmp_path / "d" / "out.txt").read_text() == "3"


def test_downstream_fingerprint_follows_upstream(tmp_path: Path) -> None:
    up1 = produce("Up", tmp_path / "up", {"a": 1}, {}, _writer("u1"))
    calls: list[int] = []
    produce("Down", tmp_path / "down", {}, {"up": up1}, _writer("d", calls))
    up2 = produce("Up", tmp_path / "up", {"a": 2}, {}, _writer("u2"))
    produce("Down", tmp_path / "down", {}, {"up": up2}, _writer("d", calls))
    assert len(calls) == 2


def test_failed_build_leaves_no_artifact_and_records_why(tmp_path: Path) -> None:
    def bad(workdir: Path) -> dict:
        (workdir / "half.txt").write_text("partial")
        raise RuntimeError("solver diverged at step 3")

    with pytest.raises(RuntimeError):
        produce("Demo", tmp_path / "d", {}, {}, bad)
    assert not (tmp_path / "d").exists()
    assert not list(tmp_path.glob(".d.partial-*"))
    rec = json.loads(failure_record(tmp_path / "d").read_text())
    assert rec["error"] == "solver diverged at step 3"
    produce("Demo", tmp_path / "d", {}, {}, _writer("ok"))
    assert not failure_record(tmp_path / "d").exists()


def test_previous_artifact_survives_failed_rebuild(tmp_path: Path) -> None:
    produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("good"))

    def bad(workdir: Path) -> dict:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        produce("Demo", tmp_path / "d", {"a": 2}, {}, bad)
    assert read_artifact(tmp_path / "d").settings == {"a": 1}
    assert (tmp_path / "d" / "out.txt").read_text() == "good"


# ------------------------------------------------ what is at the output path already
def _refusal(path: Path) -> str:
    return (f"{path} exists and is not a scalebridge artifact; choose another --out or "
            "remove it")


def test_a_users_folder_or_file_at_the_path_is_refused_and_left_untouched(tmp_path):
    """A folder with the user's files in it, or a file, is never replaced: refused before
    any work, with one line, and nothing is left beside it."""
    folder = tmp_path / "mydft"
    folder.mkdir()
    (folder / "training.json").write_text("[1, 2]")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    calls: list[int] = []
    for target in (folder, afile):
        with pytest.raises(ArtifactError) as e:
            produce("Demo", target, {}, {}, _writer("x", calls))
        assert str(e.value) == _refusal(target)
    assert calls == [], "refused before the build"
    assert (folder / "training.json").read_text() == "[1, 2]"
    assert sorted(p.name for p in folder.iterdir()) == ["training.json"]
    assert afile.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "mydft"]  # no litter


def test_a_previous_artifact_is_replaced_and_an_empty_folder_used(tmp_path):
    produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("first"))
    art = produce("Demo", tmp_path / "d", {"a": 2}, {}, _writer("second"))
    assert not art.reused and (tmp_path / "d" / "out.txt").read_text() == "second"
    forced = produce("Demo", tmp_path / "d", {"a": 2}, {}, _writer("third"), force=True)
    assert not forced.reused and (tmp_path / "d" / "out.txt").read_text() == "third"
    # an artifact whose files were damaged (and so is not current) is still ours
    (tmp_path / "d" / "out.txt").write_text("damaged")
    produce("Demo", tmp_path / "d", {"a": 2}, {}, _writer("fourth"))
    assert (tmp_path / "d" / "out.txt").read_text() == "fourth"
    (tmp_path / "empty").mkdir()
    produce("Demo", tmp_path / "empty", {}, {}, _writer("used"))
    assert (tmp_path / "empty" / "out.txt").read_text() == "used"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "empty"]  # no .old-* left


def test_a_users_folder_named_like_a_stage_in_a_run_directory_is_refused(tmp_path):
    """The chain's stages write through ``produce``: a user's folder where a stage's
    artifact goes stops the run with one line and stays; the stage rebuilt over its own
    artifact (forced) still works."""
    from scalebridge.workflows.chain import Chain, StageNode

    def make(call):
        return produce("Numbers", call.out, {}, {}, _writer("42"), force=call.force)

    chain, run_dir = Chain([StageNode("numbers", "Numbers", (), make)]), tmp_path / "run"
    (run_dir / "numbers").mkdir(parents=True)
    (run_dir / "numbers" / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError) as e:
        chain.run(run_dir, {})
    assert str(e.value) == (f"stage numbers: {run_dir / 'numbers'} exists and is not a "
                            "scalebridge artifact; move it away or choose another --run-dir")
    assert [p.name for p in (run_dir / "numbers").iterdir()] == ["notes.txt"]
    assert (run_dir / "numbers" / "notes.txt").read_text() == "mine"
    (run_dir / "numbers" / "notes.txt").unlink()
    first = chain.run(run_dir, {})["numbers"]
    again = chain.run(run_dir, {}, force=["numbers"])["numbers"]
    assert first.path == again.path and not again.reused
    assert (run_dir / "numbers" / "out.txt").read_text() == "42"


def test_a_plain_failure_leaves_one_record_with_its_log(tmp_path):
    """A build that fails with nothing but its own log.txt leaves ``<name>.failed.json``
    only, the log's text in it; logs of programs keep their ``<name>.failed/``, and so
    does a log the message names."""
    def bad(workdir: Path) -> dict:
        import logging
        logging.getLogger("scalebridge.demo").info("reading the input")
        raise ValueError("frame 3: energy is nan")

    with pytest.raises(ValueError):
        produce("Demo", tmp_path / "d", {}, {}, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.failed.json"]
    rec = json.loads(failure_record(tmp_path / "d").read_text())
    assert rec["error"] == "frame 3: energy is nan" and "logs" not in rec
    assert "Demo: building into" in rec["log"] and "reading the input" in rec["log"]

    def bad_program(workdir: Path) -> dict:
        (workdir / "lmp.out").write_text("ERROR: Lost atoms\n")
        raise RuntimeError("lammps failed")

    with pytest.raises(RuntimeError):
        produce("Demo", tmp_path / "p", {}, {}, bad_program)
    rec = json.loads(failure_record(tmp_path / "p").read_text())
    assert rec["logs"] == str(failure_logs(tmp_path / "p")) and "log" not in rec
    assert (failure_logs(tmp_path / "p") / "lmp.out").is_file()

    def bad_named(workdir: Path) -> dict:
        raise RuntimeError("no convergence; the cuts are in the build's log.txt")

    with pytest.raises(RuntimeError):
        produce("Demo", tmp_path / "n", {}, {}, bad_named)
    assert (failure_logs(tmp_path / "n") / "log.txt").is_file()


def test_a_users_folder_named_like_the_failure_logs_stays(tmp_path):
    mine = failure_logs(tmp_path / "d")
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")

    def bad(workdir: Path) -> dict:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        produce("Demo", tmp_path / "d", {}, {}, bad)
    produce("Demo", tmp_path / "d", {}, {}, _writer("ok"))
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert not failure_record(tmp_path / "d").exists()


def test_an_artifact_of_another_kind_is_refused_and_a_dangling_link_replaced(tmp_path):
    """One kind of artifact never replaces another (``potentials ingest -o`` at a trained
    Potential): one line naming both, the artifact untouched; the same kind is replaced.
    A dangling symbolic link at the path destroys nothing: it is replaced, its missing
    target left missing."""
    pot = produce("Potential", tmp_path / "pot", {}, {}, _writer("models"))
    with pytest.raises(ArtifactError) as e:
        produce("DFTDataset", tmp_path / "pot", {}, {}, _writer("frames"))
    assert str(e.value) == (f"{tmp_path / 'pot'} holds a Potential artifact, not a "
                            "DFTDataset; choose another --out or remove it")
    assert read_artifact(tmp_path / "pot").manifest == pot.manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pot"]
    assert not produce("Potential", tmp_path / "pot", {"b": 1}, {}, _writer("new")).reused
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    art = produce("Demo", tmp_path / "link", {}, {}, _writer("x"))
    assert not (tmp_path / "link").is_symlink() and art.file("out.txt").read_text() == "x"
    assert not (tmp_path / "gone").exists()


def test_a_failure_beside_a_users_failed_file_and_folder_takes_other_names(tmp_path):
    """``<name>.failed.json`` and ``<name>.failed/`` of the user's are not written: the
    record and the logs take ``<name>.failed-1.json`` / ``<name>.failed-1/``, the message
    says where; a success removes those, not the user's."""
    (tmp_path / "d.failed.json").write_text("my notes")
    (tmp_path / "d.failed").mkdir()
    (tmp_path / "d.failed" / "thesis.tex").write_text("mine")

    def bad(workdir: Path) -> dict:
        (workdir / "lmp.out").write_text("ERROR: Lost atoms\n")
        raise RuntimeError("lammps failed")

    with pytest.raises(RuntimeError) as e:
        produce("Demo", tmp_path / "d", {}, {}, bad)
    assert str(e.value) == (
        f"lammps failed (logs kept in {tmp_path / 'd.failed-1'}: {tmp_path / 'd.failed'} "
        f"is not scalebridge's) (recorded in {tmp_path / 'd.failed-1.json'}: "
        f"{tmp_path / 'd.failed.json'} is not scalebridge's)")
    rec = json.loads((tmp_path / "d.failed-1.json").read_text())
    assert rec["error"].startswith("lammps failed") and rec["logs"] == str(tmp_path /
                                                                           "d.failed-1")
    assert (tmp_path / "d.failed-1" / "lmp.out").is_file()
    assert (tmp_path / "d.failed.json").read_text() == "my notes"
    assert [p.name for p in (tmp_path / "d.failed").iterdir()] == ["thesis.tex"]
    produce("Demo", tmp_path / "d", {}, {}, _writer("ok"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "d.failed", "d.failed.json"]
    assert (tmp_path / "d.failed.json").read_text() == "my notes"


def test_a_dry_runs_folder_is_emptied_before_and_removed_once_made(tmp_path):
    where = fresh_dry_run_dir(tmp_path / "pot")
    assert where == dry_run_path(tmp_path / "pot") == tmp_path / "pot.dry_run"
    (where / "input.json").write_text("{}")
    assert list(fresh_dry_run_dir(tmp_path / "pot").iterdir()) == []
    (where / "input.json").write_text("{}")
    produce("Potential", tmp_path / "pot", {}, {}, _writer("models"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pot"]
    (tmp_path / "x.dry_run").write_text("a file of mine")
    with pytest.raises(ArtifactError, match=r"x\.dry_run exists and is not a dry run's"):
        fresh_dry_run_dir(tmp_path / "x")
    assert (tmp_path / "x.dry_run").read_text() == "a file of mine"


KILLED_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from scalebridge.artifacts import produce
    def build(workdir):
        (workdir / "big.txt").write_text("x" * 1000)
        Path(sys.argv[2]).write_text("started")
        time.sleep(60)
        return {}
    produce("Slow", Path(sys.argv[1]), {"n": 1}, {}, build)
""")


def test_killed_stage_leaves_nothing_that_looks_complete_and_resumes(tmp_path: Path) -> None:
    target, flag = tmp_path / "slow", tmp_path / "started.flag"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, str(target), str(flag)])
    deadline = time.time() + 60
    while not flag.exists():
        assert time.time() < deadline and proc.poll() is None, "child never started"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists(), "a killed build must not leave an artifact"
    with pytest.raises(ArtifactError, match="no artifact"):
        read_artifact(target)
    assert len(list(tmp_path.glob(".slow.partial-*"))) == 1
    assert len(clean_partials(tmp_path)) == 1
    calls: list[int] = []
    art = produce("Slow", target, {"n": 1}, {}, _writer("resumed", calls))
    assert calls == [1] and art.path == target.absolute()


def test_read_artifact_errors(tmp_path: Path) -> None:
    produce("Demo", tmp_path / "d", {}, {}, _writer("x"))
    with pytest.raises(ArtifactError, match="is a Demo artifact, expected Potential"):
        read_artifact(tmp_path / "d", kind="Potential")
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    m["schema"] = SCHEMA_VERSION + 1
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="newer than this scalebridge reads"):
        read_artifact(tmp_path / "d")
    (tmp_path / "d" / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        read_artifact(tmp_path / "d")
    (tmp_path / "e").mkdir()
    with pytest.raises(ArtifactError, match="not a complete artifact"):
        read_artifact(tmp_path / "e")


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="input file does not exist"):
        produce("Demo", tmp_path / "d", {}, {"src": tmp_path / "nope.json"}, _writer("x"))


def test_stage_log_lands_in_artifact_log(tmp_path: Path) -> None:
    import logging

    def build(workdir: Path) -> dict:
        logging.getLogger("scalebridge.demo").info("converged in 4 iterations")
        return {}

    art = produce("Demo", tmp_path / "d", {}, {}, build)
    assert "converged in 4 iterations" in (art.path / "log.txt").read_text()


# ---------------------------------------------------------------- file hashes, content, code
def test_manifest_records_every_file_hash_and_the_code(tmp_path: Path) -> None:
    import hashlib

    def build(workdir: Path) -> dict:
        (workdir / "out.txt").write_text("hello")
        (workdir / "sub").mkdir()
        (workdir / "sub" / "table.csv").write_text("a\n1\n")
        return {}

    art = produce("Demo", tmp_path / "d", {}, {}, build)
    files = art.manifest["files"]
    assert sorted(files) == ["out.txt", "sub/table.csv"]  # not manifest.json, not log.txt
    assert files["out.txt"]["sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert files["out.txt"]["size"] == 5 and files["out.txt"]["mtime_ns"] > 0
    code = art.manifest["code"]
    assert "artifacts.py" in code["files"] and "torch" in code["versions"]
    assert verify_artifact(read_artifact(art.path)) == []


def test_damaged_artifact_is_detected_and_rebuilt(tmp_path: Path) -> None:
    calls: list[int] = []
    art = produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("hello", calls))
    out = art.path / "out.txt"
    os.utime(out, ns=(1, 1))  # touched, not changed: size+mtime differ, the hash agrees
    assert verify_artifact(read_artifact(art.path)) == []
    out.write_text("HELLO")  # same size, other bytes
    assert verify_artifact(read_artifact(art.path)) == ["out.txt changed"]
    produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("hello", calls))
    assert calls == [1, 1] and out.read_text() == "hello"
    out.unlink()
    assert verify_artifact(read_artifact(art.path)) == ["out.txt missing"]
    again = produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("hello", calls))
    assert len(calls) == 3 and not again.reused
    assert produce("Demo", tmp_path / "d", {"a": 1}, {}, _writer("hello", calls)).reused
    assert len(calls) == 3


def test_old_manifest_without_file_hashes_is_not_current(tmp_path: Path) -> None:
    calls: list[int] = []
    art = produce("Demo", tmp_path / "d", {}, {}, _writer("x", calls))
    m = dict(art.manifest)
    del m["files"]
    (art.path / "manifest.json").write_text(json.dumps(m))
    assert "older scalebridge" in verify_artifact(read_artifact(art.path))[0]
    produce("Demo", tmp_path / "d", {}, {}, _writer("x", calls))
    assert len(calls) == 2


def test_inputs_are_hashed_by_content_not_by_fingerprint(tmp_path: Path) -> None:
    calls: list[int] = []
    up1 = produce("Up", tmp_path / "up", {"a": 1}, {}, _writer("same"))
    produce("Down", tmp_path / "down", {}, {"up": up1}, _writer("d", calls))
    # other settings, same files and summary: the downstream stays current
    up2 = produce("Up", tmp_path / "up", {"a": 2}, {}, _writer("same"))
    assert up2.fingerprint != up1.fingerprint
    assert content_digest(up2) == content_digest(up1)
    assert produce("Down", tmp_path / "down", {}, {"up": up2}, _writer("d", calls)).reused
    # same fingerprint, other content (a forced rebuild that came out different): rebuilt
    up3 = produce("Up", tmp_path / "up", {"a": 2}, {}, _writer("diff"), force=True)
    assert up3.fingerprint == up2.fingerprint
    produce("Down", tmp_path / "down", {}, {"up": up3}, _writer("d", calls))
    assert len(calls) == 2


def test_code_change_rebuilds_a_comment_does_not(tmp_path: Path) -> None:
    from scalebridge import codehash

    root = tmp_path / "src"
    (root / "md").mkdir(parents=True)
    mod = root / "md" / "physics.py"
    mod.write_text('"""Physics."""\nTOL = 1e-8\n')
    calls: list[int] = []
    codehash.set_code_root(root)
    try:
        def make() -> Artifact:
            return produce("Demo", tmp_path / "d", {}, {}, _writer("x", calls), code=("md",))

        art = make()
        assert "md/physics.py" in art.manifest["code"]["files"]
        mod.write_text('"""Physics, documented at length."""\n# a comment\nTOL = 1e-8  # same\n')
        assert make().reused and len(calls) == 1
        mod.write_text('"""Physics."""\nTOL = 1.5e-8\n')
        assert not make().reused and len(calls) == 2
        # the caller's subpackage is the default: this test module runs the root only
        assert "md/physics.py" not in produce("Demo", tmp_path / "e", {}, {},
                                              _writer("x")).manifest["code"]["files"]
    finally:
        codehash.set_code_root(None)
