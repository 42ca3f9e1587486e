"""The real chain through ``scalebridge run``: bad DFT input, dry run, kill -9 of a real
DeePMD training run and resume (same learning curve as an uninterrupted run)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scalebridge.errors import ScalebridgeError
from scalebridge.workflows.pipeline import run, status

TINY = """
[run]
name = "tiny"
data = [{data}]

[potentials.ingest]
type_map = ["Mo"]
max_frames_per_group = 2

[potentials.train]
steps = {steps}
ensemble = 1
fitting_neuron = [8]
disp_freq = 10
compress = false
evaluate = false
properties = false

[potentials.train.descriptor]
neuron = [4, 8]
axis_neuron = 4
rcut_a = 3.5
sel = [30]
"""


def _toml(tmp_path: Path, data: list[Path], steps: int = 20) -> Path:
    p = tmp_path / "tiny.toml"
    p.write_text(TINY.format(data=", ".join(json.dumps(str(d)) for d in data), steps=steps))
    return p


def test_missing_dft_file_is_one_line_and_makes_nothing(tmp_path):
    toml = _toml(tmp_path, [tmp_path / "no_such_training.json"])
    with pytest.raises(ScalebridgeError) as e:
        run(toml, tmp_path / "run", until="potential")
    msg = str(e.value)
    assert "\n" not in msg and "no_such_training.json" in msg and "does not exist" in msg
    assert not (tmp_path / "run" / "dataset").exists()


def test_cli_missing_dft_file_exit_1(tmp_path):
    toml = _toml(tmp_path, [tmp_path / "missing.json"])
    proc = subprocess.run([sys.executable, "-m", "scalebridge.workflows.cli", "run",
                           str(toml), "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "missing.json" in proc.stderr and "Traceback" not in proc.stderr


def test_dry_run_writes_training_inputs_without_training(tmp_path, mo_train_json):
    """The dry run writes the training inputs and the dataset they read into
    ``<node>.dry_run/`` and says so; it makes and records nothing (no artifact, no chain
    record, no settings.json, no report), so every stage is still pending."""
    toml = _toml(tmp_path, [mo_train_json], steps=77)
    run_dir = tmp_path / "run"
    res = run(toml, run_dir, until="potential", dry_run=True)
    inputs = list((run_dir / "potential.dry_run").rglob("input.json"))
    assert inputs, "no DeePMD input.json written"
    spec = json.loads(inputs[0].read_text())
    assert spec["training"]["numb_steps"] == 77
    assert spec["model"]["type_map"] == ["Mo"]
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "dataset.dry_run",
                                                         "potential.dry_run"]
    assert res.dry_run is not None and res.report is None
    assert {k: a.path for k, a in res.artifacts.items()} == {
        "dataset": run_dir / "dataset.dry_run"}
    assert res.dry_run["potential"][1] == "wrote its inputs"
    assert inputs[0] in res.dry_run["potential"][0]
    assert res.dry_run["dataset"][1] == "built for the stages after it (not recorded)"
    st = {s.name: s.state for s in status(run_dir, toml)}
    assert st["dataset"] == "pending" and st["potential"] == "pending"
    with pytest.raises(ScalebridgeError, match=r"only a dry run wrote here \(dataset.dry_run, "
                                               r"potential.dry_run\).*--settings RUN.toml"):
        status(run_dir)

    # up to the dataset alone there is nothing to write: no run directory either
    from click.testing import CliRunner
    from scalebridge.workflows.cli import cli

    other = tmp_path / "other"
    r = CliRunner().invoke(cli, ["run", str(toml), "--run-dir", str(other), "--until",
                                 "dataset", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        f"dry run {other}: nothing was run, written or recorded",
        "  dataset  nothing to write: it only reads its input files, and no later stage of "
        "this run needs it"]
    assert not other.exists()


def _children_named(pgid: int, word: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,pgid,args"], capture_output=True, text=True).stdout
    return [int(ln.split()[0]) for ln in out.splitlines()[1:]
            if ln.split()[1] == str(pgid) and word in ln]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, mo_train_json):
    """A run directory with the tiny chain made up to the potential (40 steps)."""
    base = tmp_path_factory.mktemp("trained")
    toml = _toml(base, [mo_train_json], steps=40)
    res = run(toml, base / "run", until="potential")
    return toml, res


def _copy_run(trained_run, tmp_path: Path, extra: str = "") -> tuple[Path, Path]:
    toml, res = trained_run
    run_dir = tmp_path / "run"
    shutil.copytree(res.run_dir, run_dir)
    new = tmp_path / "tiny.toml"
    new.write_text(toml.read_text() + extra)
    return new, run_dir


@pytest.mark.slow
def test_species_the_potential_does_not_know(trained_run, tmp_path):
    toml, run_dir = _copy_run(trained_run, tmp_path, '\n[md.properties]\nelement = "W"\n')
    with pytest.raises(ScalebridgeError) as e:
        run(toml, run_dir, until="properties")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("stage properties: ") and "W" in msg
    assert not (run_dir / "properties").exists()
    st = {s.name: s for s in status(run_dir, toml)}
    assert st["potential"].state == "done"  # nothing upstream was redone or broken
    assert st["properties"].state == "failed" and "W" in st["properties"].reason


@pytest.mark.slow
def test_corrupt_potential_file_is_damaged_and_rebuilt(trained_run, tmp_path):
    toml, run_dir = _copy_run(trained_run, tmp_path)
    model = run_dir / "potential" / "models" / "model_0.pth"
    model.write_bytes(model.read_bytes()[:1000])  # truncated: a broken file
    st = {s.name: s for s in status(run_dir, toml)}
    assert st["dataset"].state == "done"
    assert (st["potential"].state, st["potential"].reason) == (
        "damaged", "models/model_0.pth changed")
    res = run(toml, run_dir, until="potential")  # rebuilds it instead of using it
    assert res.skipped == ["dataset"] and list(res.seconds) == ["potential"]
    assert model.stat().st_size > 1000
    st = {s.name: s for s in status(run_dir, toml)}
    assert st["dataset"].state == st["potential"].state == "done"


@pytest.mark.slow
def test_kill_9_during_training_then_resume_same_result(tmp_path, trained_run):
    toml = trained_run[0]
    ref = trained_run[1]
    ref_curve = (ref.artifacts["potential"].path / "lcurve.csv").read_text()

    run_dir = tmp_path / "run"
    env = {**os.environ, "SCALEBRIDGE_NO_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "scalebridge.workflows.cli", "run",
                             str(toml), "--run-dir", str(run_dir), "--until", "potential"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    deadline = time.time() + 300
    # wait until the dp training program itself is running (a child of the chain)
    while not (list(run_dir.glob(".potential.partial-*/train/model_0/input.json"))
               and _children_named(proc.pid, "dp_batch")):
        assert proc.poll() is None, "the chain ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(2.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(0.5)
    assert not _children_named(proc.pid, "dp_batch")
    assert not (run_dir / "potential").exists()
    st = {s.name: s for s in status(run_dir)}
    assert st["dataset"].state == "done"
    assert st["potential"].state == "pending" and "interrupted" in st["potential"].reason

    res = run(toml, run_dir, until="potential")
    assert res.skipped == ["dataset"] and list(res.seconds) == ["potential"]
    assert not list(run_dir.glob(".*.partial-*"))
    art = res.artifacts["potential"]
    assert art.fingerprint == ref.artifacts["potential"].fingerprint
    assert (art.path / "lcurve.csv").read_text() == ref_curve  # same training, same numbers
    st = {s.name: s.state for s in status(run_dir)}
    assert st["dataset"] == st["potential"] == "done"


@pytest.mark.slow
def test_report_has_every_stage_and_its_links_resolve(trained_run):
    import re

    res = trained_run[1]
    md = (res.run_dir / "report.md").read_text()
    html = (res.run_dir / "report.html").read_text()
    for name in ("dataset", "potential"):
        assert f"## {name}: " in md and f"id='{name}'" in html
    assert "| n_frames.train |" in md
    links = re.findall(r"\]\(([^)]+)\)", md) + re.findall(r"(?:src|href)='([^'#]+)'", html)
    assert any(p.endswith("lcurve.png") for p in links)
    for p in links:
        assert (res.run_dir / p).exists(), p


@pytest.mark.slow
def test_status_command_and_a_changed_setting(trained_run, tmp_path):
    from click.testing import CliRunner
    from scalebridge.workflows.cli import cli

    toml, run_dir = _copy_run(trained_run, tmp_path)
    out = CliRunner().invoke(cli, ["status", str(run_dir)])
    assert out.exit_code == 0, out.output
    lines = {ln.split()[0]: ln for ln in out.output.splitlines() if ln.strip()}
    assert lines["dataset"].split()[1] == "done" and lines["potential"].split()[1] == "done"

    toml.write_text(toml.read_text().replace("steps = 40", "steps = 41"))
    out = CliRunner().invoke(cli, ["status", str(run_dir), "--settings", str(toml)])
    lines = {ln.split()[0]: ln for ln in out.output.splitlines() if ln.strip()}
    assert lines["dataset"].split()[1] == "done"
    assert "stale" in lines["potential"] and "steps: 40 -> 41" in lines["potential"]
