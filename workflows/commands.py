"""Chain-level commands, mounted at the top level by ``workflows/cli.py``:
``scalebridge run``, ``scalebridge status``, ``scalebridge schema``."""

from __future__ import annotations

from pathlib import Path

import click
from scalebridge.errors import ScalebridgeError


@click.group()
def commands() -> None:
    """Chain-level commands (mounted at the top level)."""


@commands.command("run")
@click.argument("settings", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Run directory (default: runs/<run.name>).")
@click.option("--until", default=None, help="Stop after this stage (e.g. potential).")
@click.option("--dry-run", is_flag=True,
              help="Write every stage's inputs without running them (where stages can).")
@click.option("--force", multiple=True, help="Remake this stage even if up to date "
              "(repeatable).")
@click.option("--no-report", is_flag=True, help="Do not write report.md/report.html.")
def run_cmd(settings: Path, run_dir: Path | None, until: str | None, dry_run: bool,
            force: tuple[str, ...], no_report: bool) -> None:
    """Run the whole chain of SETTINGS (a TOML run file) into a run directory.

    Unchanged stages are skipped; a changed setting reruns the stages downstream of it;
    a killed run resumes where it stopped.
    """
    from scalebridge.workflows.pipeline import run
    from scalebridge.workflows.settings import load_run_settings

    cfg = load_run_settings(settings)
    run_dir = run_dir or Path("runs") / cfg.run.name
    result = run(settings, run_dir, until=until, dry_run=dry_run, force=force,
                 report=not no_report)
    made = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()) or "none"
    click.echo(f"run {result.run_dir}: made {made}; up to date: "
               f"{', '.join(result.skipped) or 'none'}; wall {result.wall_seconds:.1f} s")
    if result.report is not None:
        click.echo(f"report: {result.report}")


_COLOURS = {"done": "green", "stale": "yellow", "damaged": "magenta", "failed": "red",
            "running": "cyan", "pending": "white"}


@commands.command("status")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--settings", "settings", type=click.Path(path_type=Path), default=None,
              help="Compare against this run file instead of the one the run used.")
def status_cmd(run_dir: Path, settings: Path | None) -> None:
    """Show which stages of RUN_DIR are done, stale, damaged, failed or pending, and why."""
    import signal

    from scalebridge.workflows.pipeline import status
    from scalebridge.workflows.settings import UNAVAILABLE

    # `scalebridge status | head`: a closed pipe ends us quietly (PETSc, loaded by the
    # continuum stage, would otherwise report SIGPIPE as a crash)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

    if not run_dir.is_dir():
        raise ScalebridgeError(f"no run directory {run_dir}")
    rows = status(run_dir, settings)
    width = max((len(r.name) for r in rows), default=5)
    for r in rows:
        secs = f"{r.seconds:8.1f} s" if r.seconds is not None else " " * 10
        line = f"{r.name:<{width}}  {r.state:<7} {secs}  {r.reason}"
        click.secho(line.rstrip(), fg=_COLOURS.get(r.state))
    for section, why in UNAVAILABLE.items():
        click.echo(f"(stage {section} not available: {why})")
    if any(r.state == "failed" for r in rows):
        raise SystemExit(2)


@commands.command("schema")
def schema_cmd() -> None:
    """Print every key of a run file with its default and description."""
    from scalebridge.workflows.settings import schema_text

    click.echo(schema_text())
