"""The scalebridge chain, DFT data to FEM fields, and the Python API behind the CLI.

The nodes, in order (each stage's adapter lives in ``workflows/stage_<stage>.py``)::

    dataset (DFTDataset) -> potential (Potential) -> properties (Properties)
                                                 \\-> defects (DefectStats)
    defects + properties -> mobility (MobilityLaw) -> dd (DDRun) -> surrogate (Surrogate)
    surrogate -> fem (FieldResults)

A stage whose package cannot be imported is an error naming the stage and the import.

Example (the same as ``scalebridge run examples/mo/mo.toml --run-dir runs/mo``)::

    from scalebridge.workflows import run
    result = run("examples/mo/mo.toml", "runs/mo")
    result.artifacts["potential"].summary
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalebridge.artifacts import DRY_RUN_SUFFIX, Artifact, write_json_atomic, write_text_atomic
from scalebridge.errors import ScalebridgeError, os_error_line
from scalebridge.workflows.chain import Chain, NodeStatus, StageNode
from scalebridge.workflows.engine import make_mapper
from scalebridge.workflows.settings import (
    import_stage,
    load_run_settings,
    parse_run_settings,
)

log = logging.getLogger("scalebridge.workflows")

#: The validated settings of the last run, as JSON, in the run directory.
SETTINGS_JSON = "settings.json"
#: The run file as given (when run from a file), beside it.
SETTINGS_TOML = "settings.toml"

#: Stage adapter modules in chain order; each has ``nodes() -> list[StageNode]``.
STAGE_ADAPTERS = tuple(
    (section, f"scalebridge.workflows.stage_{section}")
    for section in ("potentials", "md", "dd", "surrogates", "continuum")
)


def build_chain(cfg: Any = None) -> Chain:
    """The chain of every stage available in this installation, in order (``cfg`` may
    switch optional nodes off, e.g. ``[md] deform = false``)."""
    nodes: list[StageNode] = []
    for section, module in STAGE_ADAPTERS:
        nodes.extend(import_stage(section, module).nodes(cfg))
    return Chain(nodes)


def _settings(settings: Any) -> tuple[Any, Path | None]:
    if isinstance(settings, (str, Path)):
        return load_run_settings(settings), Path(settings)
    if isinstance(settings, dict):
        return parse_run_settings(settings), None
    return settings, None


@dataclass
class RunResult:
    """What :func:`run` returns: the artifacts by node, seconds per node, the report;
    for a dry run, ``dry_run``: node -> (the files it wrote, what it did)."""

    run_dir: Path
    artifacts: dict[str, Artifact]
    seconds: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    report: Path | None = None
    wall_seconds: float = 0.0
    dry_run: dict[str, tuple[list[Path], str]] | None = None


def run(settings: str | Path | dict[str, Any] | Any, run_dir: str | Path, *,
        until: str | None = None, dry_run: bool = False, force: tuple[str, ...] = (),
        report: bool = True) -> RunResult:
    """Run the chain for a run file (path, dict, or validated settings).

    Args:
        settings: the run TOML path, its data as a dict, or a validated RunSettings.
        run_dir: where the artifacts go.
        until: last node to make (default: ``[run] stop_after`` or the whole chain).
        dry_run: write each stage's inputs into ``<run-dir>/<node>.dry_run/`` without
            running anything (where the stage can); nothing is made or recorded, no
            ``settings.json``, no report (``RunResult.dry_run`` says what was written).
        force: nodes to remake even when up to date (each a stage up to ``until``).
        report: write ``report.md`` and ``report.html`` at the end.
    """
    from scalebridge.workflows.report import write_run_report

    cfg, source = _settings(settings)
    run_dir = Path(run_dir).absolute()
    chain = build_chain(cfg)
    until = until or cfg.run.stop_after
    seconds: dict[str, float] = {}
    skipped: list[str] = []
    starts: dict[str, float] = {}
    dry: dict[str, tuple[list[Path], str]] = {}

    def on_node(name: str, event: str) -> None:
        if event == "started":
            starts[name] = time.perf_counter()
        elif event == "done":
            seconds[name] = round(time.perf_counter() - starts[name], 3)
        elif event == "skipped":
            skipped.append(name)

    def record_settings() -> None:
        """What status reads back (data paths absolute); written once the run holds the
        lock and its request is valid, so a refused or invalid run changes nothing."""
        if dry_run:
            return
        try:
            write_json_atomic(run_dir / SETTINGS_JSON, cfg.model_dump(mode="json"))
            if source is not None:
                write_text_atomic(run_dir / SETTINGS_TOML, toml_text)
        except OSError as e:  # a read-only or full run directory: one line
            raise ScalebridgeError(os_error_line(e) or str(e)) from None

    t0 = time.perf_counter()
    # an unknown --until or --force fails here, before anything is written
    chain.check_request(until, force)
    toml_text = source.read_text() if source is not None else ""
    with make_mapper(cfg.execution, run_dir) as mapper:
        arts = chain.run(run_dir, cfg, mapper=mapper, resources=cfg.execution.resources,
                         until=until, dry_run=dry_run, force=force, on_node=on_node,
                         on_locked=record_settings,
                         on_dry_run=lambda name, files, what: dry.update({name: (files, what)}))
    result = RunResult(run_dir=run_dir, artifacts=arts, seconds=seconds, skipped=skipped,
                       wall_seconds=round(time.perf_counter() - t0, 3),
                       dry_run=dry if dry_run else None)
    if report and not dry_run and arts:
        # the report is about the run directory: the stages after --until whose
        # artifacts are current there are in it too
        result.report = write_run_report(run_dir, chain, cfg, arts, until=until,
                                         title=f"scalebridge run: {cfg.run.name}")
    return result


def status(run_dir: str | Path, settings: str | Path | dict[str, Any] | Any | None = None
           ) -> list[NodeStatus]:
    """done / stale / failed / pending per node, for ``settings`` (default: the settings
    the last run in ``run_dir`` used)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ScalebridgeError(f"{run_dir} is not a directory: give the run directory"
                               if run_dir.exists() else f"no run directory {run_dir}")
    if settings is None:
        path = run_dir / SETTINGS_JSON
        if not path.is_file():
            dry = sorted(p.name for p in run_dir.glob(f"*{DRY_RUN_SUFFIX}") if p.is_dir())
            why = (f"only a dry run wrote here ({', '.join(dry)}), and a dry run records "
                   "no settings" if dry else f"no {SETTINGS_JSON}")
            raise ScalebridgeError(f"{run_dir} is not a scalebridge run directory ({why}); "
                                   "name the run file: scalebridge status "
                                   f"{run_dir} --settings RUN.toml")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ScalebridgeError(f"{path} is not valid JSON: {e}") from None
        settings = data
    cfg, _ = _settings(settings)
    return build_chain(cfg).status(run_dir, cfg)


__all__ = ["STAGE_ADAPTERS", "RunResult", "build_chain", "run", "status"]
