"""The ``scalebridge`` command line.

Each stage owns a click group in ``<stage>/cli.py`` (``potentials``, ``md``, ``dd``,
``surrogates``, ``fem``); this module mounts them beside the chain-level commands
(``run``, ``status``, ``schema``) that ``scalebridge.workflows`` owns. Errors a user can
cause print one line (``error: ...``) and exit with status 1.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click
from scalebridge import __version__
from scalebridge.errors import ScalebridgeError
from scalebridge.log import setup_logging

#: (module, attribute) of each stage's click group, in chain order.
STAGE_GROUPS = (
    ("scalebridge.potentials.cli", "potentials"),
    ("scalebridge.md.cli", "md"),
    ("scalebridge.dd_coupling.cli", "dd"),
    ("scalebridge.surrogates.cli", "surrogates"),
    ("scalebridge.continuum.cli", "fem"),
    ("scalebridge.workflows.commands", "commands"),
)


class _Main(click.Group):
    """Turns ScalebridgeError into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ScalebridgeError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)


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
