"""The ``scalebridge`` command line.

Each stage owns a click group in ``<stage>/cli.py`` (``potentials``, ``md``, ``dd``,
``surrogates``, ``fem``); this module mounts them beside the chain-level commands
(``run``, ``status``, ``schema``) that ``scalebridge.workflows`` owns. Errors a user can
cause print one line (``error: ...``; invalid settings one such line per problem) and
exit with status 1; so does a run directory that cannot be written (read-only, full).
A command line click cannot parse (a missing input path, an unknown option, a bad value)
prints one line too, ``error: <command>: <click's message>``, and exits with status 2,
as usage errors do; ``--help`` and a bare group (``scalebridge dd``) still print help.
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
from typing import IO, Any

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


def usage_error_line(exc: click.UsageError) -> str:
    """``<command>: <click's message>`` for a usage error (the command path without the
    program's name, e.g. ``dd run``; just the message for the top level)."""
    names = []
    ctx = exc.ctx
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    where = " ".join(reversed(names)).strip()
    message = " ".join(exc.format_message().split())
    return f"{where}: {message}" if where else message


class OneLineUsageError(click.UsageError):
    """A usage error shown as one line, ``error: <command>: <message>`` (exit 2)."""

    def __init__(self, exc: click.UsageError) -> None:
        super().__init__(usage_error_line(exc), ctx=exc.ctx)

    def format_message(self) -> str:
        return self.message

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", file=file, err=True)


#: Usage errors left as click shows them: a bare group's help (click >= 8.2 raises it).
_AS_CLICK_SHOWS = tuple(c for c in (getattr(click.exceptions, "NoArgsIsHelpError", None),
                                    OneLineUsageError) if c is not None)


@contextlib.contextmanager
def one_line_usage_errors() -> Iterator[None]:
    """Turn click's usage errors (usage, hint and ``Error: ...``) into one line
    (:class:`OneLineUsageError`); a bare group's help is left as it is."""
    try:
        yield
    except _AS_CLICK_SHOWS:
        raise
    except click.UsageError as e:
        raise OneLineUsageError(e) from None


class _Main(click.Group):
    """Runs every command under :func:`one_line_errors`; usage errors, of the top level
    and of every command under it, print one line (:func:`one_line_usage_errors`)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        with one_line_usage_errors():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        with one_line_usage_errors(), one_line_errors():
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
