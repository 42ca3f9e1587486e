"""Chain engine: caching, downstream-only reruns, status, failure records, kill -9
resume and a disk that fills up, on a small real chain (tests/workflows/toy_chain.py);
--until/--force checks, run directories that cannot be made, failure records, folders of
the user's where a stage writes, and dry runs, on quick value nodes."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scalebridge.artifacts import Artifact, dry_run_path, produce, read_artifact
from scalebridge.errors import DataError, ScalebridgeError, SettingsError
from scalebridge.workflows.chain import Chain, StageCall, StageNode

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


# ------------------------------------------------ request checks, run directory, dry run
def _value_node(name: str, inputs: tuple[str, ...] = (), *, section: str = "",
                cheap: bool = False, dry_run=None, builds: list[str] | None = None
                ) -> StageNode:
    """A quick node: ``value.json`` = its setting ``x`` (or ``sub.y``) + its inputs'."""

    def make(call: StageCall) -> Artifact:
        def build(work: Path) -> dict:
            if builds is not None:
                builds.append(name)
            ups = [json.loads(a.file("value.json").read_text()) for a in call.inputs.values()]
            s = call.settings
            x = s["x"] if isinstance(s, dict) else s.x
            (work / "value.json").write_text(json.dumps(x + sum(ups)))
            return {"value": x + sum(ups)}

        return produce(name.capitalize(), call.out, call.settings, dict(call.inputs), build,
                       force=call.force)

    return StageNode(name, name.capitalize(), inputs, make,
                     settings=lambda c, n=name: c[n], section=section or name, cheap=cheap,
                     dry_run=dry_run)


def test_force_and_until_must_name_stages_and_a_section_names_its_stages(tmp_path):
    chain = Chain([_value_node("dataset", section="potentials.ingest"),
                   _value_node("potential", ("dataset",), section="potentials.train"),
                   _value_node("surrogate", ("potential",), section="surrogates")])
    cfg = {"dataset": {"x": 1}, "potential": {"x": 2}, "surrogate": {"x": 3}}
    run_dir = tmp_path / "run"
    cases = {
        (None, ("potentials",)): "unknown stage 'potentials' in --force; did you mean "
                                 "'potential'? ([potentials] configures the stages dataset, "
                                 "potential)",
        (None, ("ingest",)): "unknown stage 'ingest' in --force ([ingest] configures the "
                             "stage dataset)",
        (None, ("xyzzy",)): "unknown stage 'xyzzy' in --force; stages: dataset, potential, "
                            "surrogate",
        ("surrogates", ()): "unknown stage 'surrogates'; did you mean 'surrogate'? "
                            "([surrogates] configures the stage surrogate)",
        ("dataset", ("potential",)): "--force potential: the run stops after dataset "
                                     "(--until or [run] stop_after), before potential, so it "
                                     "would not be made",
    }
    for (until, force), message in cases.items():
        with pytest.raises(SettingsError) as e:
            chain.run(run_dir, cfg, until=until, force=force)
        assert str(e.value) == message
    assert not run_dir.exists()  # refused before anything was written
    chain.run(run_dir, cfg, until="potential")
    events: list[tuple[str, str]] = []
    chain.run(run_dir, cfg, until="potential", force=("dataset",),
              on_node=lambda n, e: events.append((n, e)))
    assert ("dataset", "done") in events


def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path):
    chain, cfg = Chain([_value_node("a")]), {"a": {"x": 1}}
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    with pytest.raises(ScalebridgeError) as e:
        chain.run(a_file, cfg)
    assert str(e.value) == (f"run directory {a_file} is a file, not a directory: choose "
                            "another run directory")
    with pytest.raises(ScalebridgeError) as e:
        chain.run(a_file / "sub" / "run", cfg)
    assert str(e.value) == (f"cannot create run directory {a_file}/sub/run: {a_file} is a "
                            "file, not a directory")
    assert a_file.read_text() == "mine\n"
    if Path("/proc/self").is_dir():  # a file system that refuses new directories
        with pytest.raises(ScalebridgeError, match=r"^cannot create run directory "
                                                   r"/proc/no_such_run: "):
            chain.run(Path("/proc/no_such_run"), cfg)


def test_a_made_stage_clears_only_its_own_failure_leftovers(tmp_path):
    """After a stage is made, the record and logs its failed attempt left go; a file or
    folder of the user's by those names (``<node>.failed.json``, ``<node>.failed/``) stays
    as it was."""
    attempts: list[int] = []

    def make(call: StageCall) -> Artifact:
        def build(work: Path) -> dict:
            attempts.append(1)
            if len(attempts) == 1:  # a program's log, then the failure
                (work / "prog.out").write_text("ERROR: Lost atoms\n")
                raise RuntimeError("prog failed")
            (work / "value.json").write_text("1")
            return {}

        return produce("A", call.out, {}, {}, build, force=call.force)

    chain, run_dir = Chain([StageNode("a", "A", (), make)]), tmp_path / "run"
    with pytest.raises(ScalebridgeError, match="prog failed"):
        chain.run(run_dir, {})
    assert (run_dir / "a.failed" / "prog.out").is_file()
    assert "prog failed" in json.loads((run_dir / "a.failed.json").read_text())["error"]
    chain.run(run_dir, {})
    assert not (run_dir / "a.failed").exists() and not (run_dir / "a.failed.json").exists()

    mine = run_dir / "a.failed"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    (run_dir / "a.failed.json").write_text('{"notes": "mine"}')
    chain.run(run_dir, {}, force=("a",))
    assert len(attempts) == 3
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert (mine / "thesis.tex").read_text() == "mine"
    assert (run_dir / "a.failed.json").read_text() == '{"notes": "mine"}'


def test_a_failure_beside_the_users_failed_files_goes_under_another_name(tmp_path):
    """A file ``<node>.failed.json`` and a folder ``<node>.failed/`` of the user's are
    not written into: the failure's record and its tasks' logs take the next free names,
    the error and status say where, and once the stage is made they go (the user's
    stay)."""
    attempts: list[int] = []
    run_dir = tmp_path / "run"

    def make(call: StageCall) -> Artifact:
        attempts.append(1)
        if len(attempts) == 1:  # a fan-out task in flight, then the failure
            task = call.run_dir / ".tasks" / "a" / "fp" / "t0.partial"
            task.mkdir(parents=True)
            (task / "lmp.out").write_text("ERROR: Lost atoms\n")
            raise RuntimeError("prog failed")
        return produce("A", call.out, {}, {}, _writer_of("1"), force=call.force)

    chain = Chain([StageNode("a", "A", (), make)])
    run_dir.mkdir()
    (run_dir / "a.failed.json").write_text('{"notes": "mine"}')
    (run_dir / "a.failed").mkdir()
    (run_dir / "a.failed" / "thesis.tex").write_text("mine")
    with pytest.raises(ScalebridgeError) as e:
        chain.run(run_dir, {})
    assert str(e.value) == (f"stage a failed: RuntimeError: prog failed (details: "
                            f"{run_dir / 'a.failed-1.json'})")
    assert json.loads((run_dir / "a.failed-1.json").read_text())["error"] == "prog failed"
    assert (run_dir / "a.failed-1" / "tasks" / "t0" / "lmp.out").is_file()
    assert [p.name for p in (run_dir / "a.failed").iterdir()] == ["thesis.tex"]
    assert (run_dir / "a.failed.json").read_text() == '{"notes": "mine"}'
    assert chain.status(run_dir, {})[0].state == "failed"
    chain.run(run_dir, {})
    assert sorted(p.name for p in run_dir.glob("a*")) == ["a", "a.failed", "a.failed.json"]
    assert [p.name for p in (run_dir / "a.failed").iterdir()] == ["thesis.tex"]
    assert (run_dir / "a.failed.json").read_text() == '{"notes": "mine"}'


def test_the_refusal_in_a_run_names_the_run_directory_and_a_dangling_link_is_replaced(
        tmp_path):
    chain, run_dir = Chain([_value_node("a")]), tmp_path / "run"
    (run_dir / "a").mkdir(parents=True)
    (run_dir / "a" / "notes.txt").write_text("mine")
    with pytest.raises(ScalebridgeError) as e:
        chain.run(run_dir, {"a": {"x": 1}})
    assert str(e.value) == (f"stage a: {run_dir / 'a'} exists and is not a scalebridge "
                            "artifact; move it away or choose another --run-dir")
    assert [p.name for p in (run_dir / "a").iterdir()] == ["notes.txt"]
    (run_dir / "a" / "notes.txt").unlink()
    other = produce("Potential", run_dir / "a", {}, {}, _writer_of("models"))
    with pytest.raises(ScalebridgeError) as e:
        chain.run(run_dir, {"a": {"x": 1}})
    assert str(e.value) == (f"stage a: {run_dir / 'a'} holds a Potential artifact, not a "
                            "A; move it away or choose another --run-dir")
    assert read_artifact(run_dir / "a").manifest == other.manifest
    shutil.rmtree(run_dir / "a")
    (run_dir / "a").symlink_to(tmp_path / "gone")  # destroys nothing to replace
    chain.run(run_dir, {"a": {"x": 1}})
    assert not (run_dir / "a").is_symlink() and (run_dir / "a" / "value.json").is_file()
    assert not (tmp_path / "gone").exists()


def _writer_of(text: str):
    def build(work: Path) -> dict:
        (work / "value.json").write_text(text)
        return {}

    return build


def _dry_inputs(call: StageCall) -> list[Path]:
    """The inputs a node would run on: its upstream values, in ``<node>.dry_run/``."""
    where = dry_run_path(call.out)  # the chain made it, empty
    ups = {u: str(a.file("value.json")) for u, a in call.inputs.items()}
    (where / "input.json").write_text(json.dumps({"reads": ups}))
    return [where / "input.json"]


def test_a_dry_run_makes_and_records_nothing(tmp_path):
    builds: list[str] = []
    chain = Chain([_value_node("data", cheap=True, builds=builds),
                   _value_node("fit", ("data",), dry_run=_dry_inputs, builds=builds),
                   _value_node("use", ("fit",), dry_run=_dry_inputs, builds=builds)])
    cfg = {"data": {"x": 1}, "fit": {"x": 2}, "use": {"x": 3}}
    run_dir = tmp_path / "run"
    seen: dict[str, tuple[list[Path], str]] = {}

    def on_dry_run(name, files, what):
        seen[name] = (files, what)

    # only the cheap node: nothing to write, and no run directory is left behind
    assert chain.run(run_dir, cfg, until="data", dry_run=True, on_dry_run=on_dry_run) == {}
    assert not run_dir.exists() and builds == []
    assert seen == {"data": ([], "nothing to write: it only reads its input files, and no "
                                 "later stage of this run needs it")}

    seen.clear()
    chain.run(run_dir, cfg, dry_run=True, on_dry_run=on_dry_run)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "data.dry_run",
                                                         "fit.dry_run"]
    assert seen["data"][1] == "built for the stages after it (not recorded)"
    assert {p.parent for p in seen["data"][0]} == {run_dir / "data.dry_run"}
    assert seen["fit"] == ([run_dir / "fit.dry_run" / "input.json"], "wrote its inputs")
    assert seen["use"] == ([], "needs fit, which a dry run does not make")
    reads = json.loads((run_dir / "fit.dry_run" / "input.json").read_text())["reads"]
    assert reads == {"data": str(run_dir / "data.dry_run" / "value.json")}
    assert {s.name: s.state for s in chain.status(run_dir, cfg)} == {
        "data": "pending", "fit": "pending", "use": "pending"}
    # a dry run empties the folder first: what an earlier one left would look current
    (run_dir / "fit.dry_run" / "old_input.json").write_text("{}")
    chain.run(run_dir, cfg, dry_run=True)
    assert [p.name for p in (run_dir / "fit.dry_run").iterdir()] == ["input.json"]

    events: list[tuple[str, str]] = []
    chain.run(run_dir, cfg, on_node=lambda n, e: events.append((n, e)))
    assert [e for _, e in events].count("done") == 3
    # made for real: the dry runs' folders are gone
    assert not list(run_dir.glob("*.dry_run"))
    # once made, a dry run reads the done nodes and writes the inputs of the stale ones
    seen.clear()
    chain.run(run_dir, {**cfg, "use": {"x": 4}}, dry_run=True, on_dry_run=on_dry_run)
    assert seen["data"][1].startswith("up to date") and seen["fit"][1].startswith("up to")
    assert seen["use"] == ([run_dir / "use.dry_run" / "input.json"], "wrote its inputs")
    assert json.loads((run_dir / "use.dry_run" / "input.json").read_text())["reads"] == {
        "fit": str(run_dir / "fit" / "value.json")}
    # a forced node is one the real run would remake: its inputs, not its artifact
    seen.clear()
    chain.run(run_dir, cfg, dry_run=True, on_dry_run=on_dry_run, force=("fit",))
    assert seen["fit"][1] == "wrote its inputs"
    assert seen["use"][1] == "needs fit, which a dry run does not make"
    # built: data into data.dry_run/ by the first two dry runs, then the real run's three
    assert builds == ["data", "data", "data", "fit", "use"]
