"""Caches that know the code: editing a stage's source (in a temporary copy of the package
sources) makes that stage and those downstream stale, naming the file; a comment does not;
reverting makes them current again. Damaged artifacts and stages that fail to import."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
import scalebridge
from scalebridge import codehash
from scalebridge.artifacts import Artifact, produce
from scalebridge.errors import ScalebridgeError
from scalebridge.workflows.chain import Chain, StageCall, StageNode

PACKAGE = Path(scalebridge.__file__).parent


@pytest.fixture
def code_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the package's sources (root modules and subpackages, ``*.py`` only) that
    the code records hash instead of the installed package."""
    root = tmp_path / "src"
    root.mkdir()
    for p in PACKAGE.glob("*.py"):
        shutil.copy2(p, root / p.name)
    for pkg in codehash.STAGE_PACKAGES:
        for p in (PACKAGE / pkg).rglob("*.py"):
            if "__pycache__" not in p.parts:
                dest = root / p.relative_to(PACKAGE)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(p, dest)
    monkeypatch.setenv(codehash.ENV_ROOT, str(root))
    return root


def _node(name: str, inputs: tuple[str, ...], code: tuple[str, ...],
          builds: list[str]) -> StageNode:
    """A quick node whose artifact is made with the node's own code record."""

    def make(call: StageCall) -> Artifact:
        def build(work: Path) -> dict:
            builds.append(name)
            ups = [json.loads(a.file("value.json").read_text()) for a in call.inputs.values()]
            value = call.settings["x"] + sum(ups)
            (work / "value.json").write_text(json.dumps(value))
            return {"value": value}

        return produce(name.capitalize(), call.out, call.settings, dict(call.inputs), build,
                       code=call.node.code, force=call.force)

    return StageNode(name, name.capitalize(), inputs, make,
                     settings=lambda c, n=name: c[n], section=name, code=code)


def _chain(builds: list[str]) -> Chain:
    # ingest runs potentials/, relax runs md/ (which also loads models with potentials/),
    # fit runs dd_coupling/ (and what it imports): the chain's stages in miniature
    return Chain([
        _node("ingest", (), ("potentials",), builds),
        _node("relax", ("ingest",), ("md", "workflows/stage_md.py"), builds),
        _node("fit", ("relax",), ("dd_coupling",), builds),
    ])


CFG = {"ingest": {"x": 1}, "relax": {"x": 2}, "fit": {"x": 3}}


def _states(chain: Chain, run_dir: Path) -> dict[str, tuple[str, str]]:
    return {s.name: (s.state, s.reason) for s in chain.status(run_dir, CFG)}


def test_editing_a_stage_source_makes_it_and_downstream_stale(tmp_path, code_copy):
    builds: list[str] = []
    chain, run_dir = _chain(builds), tmp_path / "run"
    chain.run(run_dir, CFG)
    assert builds == ["ingest", "relax", "fit"]
    rec = json.loads((run_dir / ".chain" / "relax.json").read_text())
    assert "md/lammps.py" in rec["code"]["files"] and "artifacts.py" in rec["code"]["files"]
    assert "workflows/chain.py" in rec["code"]["files"]

    src = code_copy / "md" / "lammps.py"
    original = src.read_text()
    assert 'RELAX_FTOL = "$(2e-4*sqrt(3*atoms))"' in original
    changed = original.replace('RELAX_FTOL = "$(2e-4*sqrt(3*atoms))"',
                               'RELAX_FTOL = "$(1.5e-5*sqrt(3*atoms))"')

    # a behaviour change: that stage and those downstream are stale, upstream is done
    src.write_text(changed)
    st = _states(chain, run_dir)
    assert st["ingest"] == ("done", "")
    assert st["relax"] == ("stale", "code changed (md/lammps.py)")
    # (dd_coupling also runs md code, then its own record names the file too)
    assert st["fit"][0] == "stale" and st["fit"][1].endswith("upstream changed: relax")

    # reverting: all current again
    src.write_text(original)
    assert all(s == "done" for s, _ in _states(chain, run_dir).values())

    # a comment, a blank line and a docstring: not a change of behaviour
    src.write_text(original.replace('RELAX_FTOL = "$(2e-4*sqrt(3*atoms))"',
                                    '# relaxation tolerance, per atom\n\n'
                                    'RELAX_FTOL = "$(2e-4*sqrt(3*atoms))"  # eV/Å', 1)
                   .replace('"""', '"""Edited docstring. ', 1))
    assert all(s == "done" for s, _ in _states(chain, run_dir).values())

    # the change again, then run: the edited stage is rebuilt; downstream is remade at the
    # chain level, and its artifact reused (its input's content is the same) unless it
    # runs the edited file itself
    src.write_text(changed)
    fit_code = json.loads((run_dir / ".chain" / "fit.json").read_text())["code"]["files"]
    events: list[tuple[str, str]] = []
    chain.run(run_dir, CFG, on_node=lambda n, e: events.append((n, e)))
    assert builds == ["ingest", "relax", "fit", "relax"] + (
        ["fit"] if "md/lammps.py" in fit_code else [])
    assert events[0] == ("ingest", "skipped") and ("fit", "done") in events
    assert all(s == "done" for s, _ in _states(chain, run_dir).values())


def test_upstream_code_of_a_stage_counts_and_versions_are_named(tmp_path, code_copy,
                                                                monkeypatch):
    builds: list[str] = []
    chain, run_dir = _chain(builds), tmp_path / "run"
    chain.run(run_dir, CFG)
    # md loads models through potentials: a potentials edit touches both stages
    src = code_copy / "potentials" / "model.py"
    src.write_text(src.read_text() + "\n_EXTRA_CONSTANT = 1\n")
    st = _states(chain, run_dir)
    assert st["ingest"] == ("stale", "code changed (potentials/model.py)")
    assert st["relax"] == ("stale", "code changed (potentials/model.py); "
                                    "upstream changed: ingest")
    src.write_text(src.read_text().replace("\n_EXTRA_CONSTANT = 1\n", ""))

    real = codehash.tool_versions()
    monkeypatch.setattr(codehash, "tool_versions", lambda: {**real, "torch": "99.0"})
    st = _states(chain, run_dir)
    assert st["ingest"] == (
        "stale", f"versions changed (torch {real.get('torch', 'absent')} -> 99.0)")


def test_a_damaged_artifact_is_named_by_status_and_rebuilt_by_run(tmp_path, code_copy,
                                                                  caplog):
    builds: list[str] = []
    chain, run_dir = _chain(builds), tmp_path / "run"
    chain.run(run_dir, CFG)
    (run_dir / "relax" / "value.json").write_text("4")  # 3 -> 4: same size, other bytes
    st = _states(chain, run_dir)
    assert st["ingest"][0] == "done" and st["relax"] == ("damaged", "value.json changed")
    (run_dir / "relax" / "value.json").unlink()
    assert _states(chain, run_dir)["relax"] == ("damaged", "value.json missing")

    with caplog.at_level(logging.INFO, logger="scalebridge"):
        chain.run(run_dir, CFG)
    assert builds == ["ingest", "relax", "fit", "relax"]  # fit: same content, reused
    assert "relax: damaged (value.json missing): rebuilding it" in caplog.text
    assert all(s == "done" for s, _ in _states(chain, run_dir).values())

    # a rebuilt upstream with other content: downstream is stale until remade
    (run_dir / "ingest" / "value.json").unlink()
    chain.run(run_dir, {**CFG}, until="ingest")
    assert _states(chain, run_dir)["relax"][0] == "done"  # same content: nothing to do
    rec = run_dir / ".chain" / "relax.json"
    data = json.loads(rec.read_text())
    data["upstream_content"]["ingest"] = "0" * 64
    rec.write_text(json.dumps(data))
    assert _states(chain, run_dir)["relax"] == (
        "stale", "upstream rebuilt with other content: ingest")


def test_a_stage_that_fails_to_import_is_an_error_naming_it(tmp_path, monkeypatch):
    from scalebridge.workflows import pipeline, settings

    (tmp_path / "sb_broken_stage.py").write_text("import sb_no_such_solver_package\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # only the broken stage (the real ones import torch, LAMMPS, dolfinx: slow)
    monkeypatch.setattr(settings, "STAGE_SECTIONS", {"solver": ("sb_broken_stage", "Section")})
    monkeypatch.setattr(pipeline, "STAGE_ADAPTERS", (("solver", "sb_broken_stage"),))
    settings.available_sections.cache_clear()
    settings.run_settings_model.cache_clear()
    want = (r"^stage solver: cannot import sb_broken_stage: ModuleNotFoundError: "
            r"No module named 'sb_no_such_solver_package'")
    try:
        with pytest.raises(ScalebridgeError, match=want):
            settings.parse_run_settings({})
        with pytest.raises(ScalebridgeError, match=want):
            pipeline.build_chain(None)
    finally:
        monkeypatch.undo()
        sys.modules.pop("sb_broken_stage", None)
        settings.available_sections.cache_clear()
        settings.run_settings_model.cache_clear()
        settings.UNAVAILABLE.pop("solver", None)
