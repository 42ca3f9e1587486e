"""The ``scalebridge`` command line.

Each stage owns a click group in ``<stage>/cli.py`` (``potentials``, ``md``, ``dd``,
``surrogates``, ``fem``); this module mounts them beside the chain-level commands
(``run``, ``status``, ``schema``) that ``scalebridge.workflows`` owns. Errors a user can
cause print one line (``error: ...``; invalid settings one such line per problem) and
exit with status 1; so does a run directory that cannot be written (read-only, full).
SIGTERM (what Slurm sends at the wall time) and SIGINT stop the running stage's
programs, remove its partial work, record the interruption and exit with one line and
status 128 + the signal number (143, 130).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator

import click
from scalebridge import __version__
from scalebridge.errors import Interrupted, ScalebridgeError, os_error_line
from scalebridge.log import setup_logging
from scalebridge.runtime import stop_on_signals

#: (module, attribute) of each stage's click group, in chain order.
STAGE_GROUPS = (
    ("scalebridge.potentials.cli", "potentials"),
    ("scalebridge.md.cli", "md"),
    ("scalebridge.dd_coupling.cli", "dd"),
    ("scalebridge.surrogates.cli", "surrogates"),
    ("scalebridge.continuum.cli", "fem"),
    ("scalebridge.workflows.commands", "commands"),
)


def error_line(exc: BaseException) -> tuple[str, int] | None:
    """The one line (without ``error: ``) and exit status the command line gives for
    ``exc``; None for an error that is a bug (its traceback is shown)."""
    if isinstance(exc, Interrupted):
        line = str(exc)
        if exc.node:
            line += "; its partial work was removed, rerun to continue"
        return line, 128 + exc.signum
    if isinstance(exc, ScalebridgeError):
        return str(exc), 1
    line = os_error_line(exc)  # a read-only or full run directory, even when up to date
    return (line, 1) if line is not None else None


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Run a command: a user's error, an unwritable run directory or SIGTERM/SIGINT
    print one line on stderr and exit (:func:`error_line`); bugs keep their traceback."""
    try:
        with stop_on_signals():
            yield
    except (ScalebridgeError, Interrupted, OSError) as e:
        found = error_line(e)
        if found is None:
            raise
        for line in found[0].splitlines() or [""]:  # settings: one line per problem
            click.echo(f"error: {line}", err=True)
        sys.exit(found[1])


class _Main(click.Group):
    """Runs every command under :func:`one_line_errors`."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        with one_line_errors():
            return super().invoke(ctx)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="scalebridge")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
def cli(verbose: int) -> None:
    """scalebridge: DFT data -> DeePMD potentials -> LAMMPS MD -> dislocation dynamics
    -> constitutive surrogates -> FEniCSx, with provenance, caching and resume.

    \b
    Typical use:
      scalebridge run examples/mo/mo.toml --run-dir runs/mo   the whole chain
      scalebridge status runs/mo                              what is done, stale, failed
      scalebridge schema                                      every setting, with defaults
      scalebridge <stage> --help                              one stage on its own
    """
    setup_logging(verbose)


def _mount() -> None:
    for module, attr in STAGE_GROUPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # stage has no CLI yet
                continue
            raise
        obj = getattr(mod, attr)
        if isinstance(obj, click.Group) and attr == "commands":
            for name, cmd in obj.commands.items():
                cli.add_command(cmd, name)
        else:
            cli.add_command(obj)


_mount()


def main() -> None:
    """Console-script entry point."""
    logging.captureWarnings(True)
    cli(prog_name="scalebridge")


if __name__ == "__main__":
    main()
