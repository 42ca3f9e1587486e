"""Chain-level commands, mounted at the top level by ``workflows/cli.py``:
``scalebridge run``, ``scalebridge status``, ``scalebridge schema``."""

from __future__ import annotations

from pathlib import Path

import click
from scalebridge.errors import SettingsError


@click.group()
def commands() -> None:
    """Chain-level commands (mounted at the top level)."""


@commands.command("run")
@click.argument("settings", type=click.Path(path_type=Path))
@click.option("--run-dir", type=click.Path(path_type=Path), default=None,
              help="Run directory (default: runs/<run.name>).")
@click.option("--until", default=None, help="Stop after this stage (e.g. potential).")
@click.option("--dry-run", is_flag=True,
              help="Write every stage's inputs into RUN_DIR/<stage>.dry_run/ without "
              "running anything (where stages can); nothing is made or recorded.")
@click.option("--force", multiple=True, help="Remake this stage even if up to date "
              "(repeatable; a stage name, e.g. potential).")
@click.option("--no-report", is_flag=True, help="Do not write report.md/report.html.")
def run_cmd(settings: Path, run_dir: Path | None, until: str | None, dry_run: bool,
            force: tuple[str, ...], no_report: bool) -> None:
    """Run the whole chain of SETTINGS (a TOML run file) into a run directory.

    Unchanged stages are skipped; a changed setting reruns the stages downstream of it;
    a killed run resumes where it stopped.
    """
    from scalebridge.workflows.pipeline import run
    from scalebridge.workflows.settings import load_run_settings

    if settings.is_dir():
        raise SettingsError(f"{settings} is a directory, not a run file: give the run's "
                            "TOML file (e.g. examples/mo/mo.toml), or see a run "
                            f"directory's state with: scalebridge status {settings}")
    cfg = load_run_settings(settings)
    run_dir = run_dir or Path("runs") / cfg.run.name
    result = run(settings, run_dir, until=until, dry_run=dry_run, force=force,
                 report=not no_report)
    if result.dry_run is not None:
        _echo_dry_run(result.run_dir, result.dry_run)
        return
    made = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()) or "none"
    click.echo(f"run {result.run_dir}: made {made}; up to date: "
               f"{', '.join(result.skipped) or 'none'}; wall {result.wall_seconds:.1f} s")
    if result.report is not None:
        click.echo(f"report: {result.report}")


def _echo_dry_run(run_dir: Path, nodes: dict[str, tuple[list[Path], str]]) -> None:
    """One line per stage: what the dry run wrote (where) or why it wrote nothing."""
    wrote = any(files for files, _ in nodes.values())
    click.echo(f"dry run {run_dir}: nothing was run{'' if wrote else ', written'} or recorded")
    width = max((len(name) for name in nodes), default=5)
    for name, (files, what) in nodes.items():
        where = sorted({_top(run_dir, f) for f in files})
        at = f" ({len(files)} file(s) in {', '.join(where)})" if files else ""
        click.echo(f"  {name:<{width}}  {what}{at}")


def _top(run_dir: Path, path: Path) -> str:
    """``potential.dry_run/``: the folder of the run directory that ``path`` is in."""
    try:
        return Path(path).relative_to(run_dir).parts[0] + "/"
    except (ValueError, IndexError):
        return str(path)


_COLOURS = {"done": "green", "stale": "yellow", "damaged": "magenta", "failed": "red",
            "running": "cyan", "pending": "white"}


@commands.command("status")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("-s", "--settings", "--config", "settings", type=click.Path(path_type=Path),
              default=None, help="settings TOML (also --config): compare against this run "
              "file instead of the one the run used.")
def status_cmd(run_dir: Path, settings: Path | None) -> None:
    """Show which stages of RUN_DIR are done, stale, damaged, failed or pending, and why."""
    import signal

    from scalebridge.workflows.pipeline import status
    from scalebridge.workflows.settings import UNAVAILABLE

    # `scalebridge status | head`: a closed pipe ends us quietly (PETSc, loaded by the
    # continuum stage, would otherwise report SIGPIPE as a crash)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

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
