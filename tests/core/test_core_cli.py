"""The top-level CLI: help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner
from scalebridge import __version__
from scalebridge.errors import SettingsError
from scalebridge.workflows.cli import STAGE_GROUPS, cli


def test_help_and_version() -> None:
    r = CliRunner().invoke(cli, ["--help"])
    assert r.exit_code == 0
    assert "scalebridge run examples/mo/mo.toml" in r.output
    r = CliRunner().invoke(cli, ["--version"])
    assert r.exit_code == 0 and __version__ in r.output


def test_every_mounted_group_has_help() -> None:
    names = [name for name in cli.commands]
    assert names, "no subcommands mounted"
    for name in names:
        r = CliRunner().invoke(cli, [name, "--help"])
        assert r.exit_code == 0, (name, r.output)
        assert "Usage:" in r.output


def test_stage_groups_are_mounted_when_present() -> None:
    import importlib.util

    for module, attr in STAGE_GROUPS:
        if attr == "commands" or importlib.util.find_spec(module) is None:
            continue
        assert attr in cli.commands, f"{module} defines no mounted group {attr!r}"


def test_user_error_is_one_line_and_exit_1() -> None:
    @click.command("boom")
    def boom() -> None:
        raise SettingsError("run.toml: key 'dd.steps' = 'x': expected an integer")

    cli.add_command(boom)
    try:
        r = CliRunner().invoke(cli, ["boom"])
    finally:
        cli.commands.pop("boom")
    assert r.exit_code == 1
    assert r.output.strip() == "error: run.toml: key 'dd.steps' = 'x': expected an integer"


def test_console_script_runs() -> None:
    exe = __import__("pathlib").Path(sys.executable).parent / "scalebridge"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Usage: scalebridge" in out.stdout
