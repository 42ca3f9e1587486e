"""The top-level CLI: help, version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
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


#: Every command that takes a settings TOML, with the cheapest arguments that reach the
#: settings check (the paths it names need only exist where click checks them).
SETTINGS_COMMANDS = {
    "potentials ingest": lambda t: ["potentials", "ingest", str(t / "none.json"), "-o",
                                    str(t / "ds")],
    "potentials train": lambda t: ["potentials", "train", str(t), "-o", str(t / "pot")],
    "md properties": lambda t: ["md", "properties", "-p", str(t / "x.eam"), "-o",
                                str(t / "p")],
    "md dislocation": lambda t: ["md", "dislocation", "-p", str(t / "x.eam"), "-o",
                                 str(t / "d")],
    "md deform": lambda t: ["md", "deform", "-p", str(t / "x.eam"), "-o", str(t / "d")],
    "dd fit-mobility": lambda t: ["dd", "fit-mobility", str(t), "-o", str(t / "mob")],
    "dd run": lambda t: ["dd", "run", str(t), str(t), "-o", str(t / "dd")],
    "surrogates dataset": lambda t: ["surrogates", "dataset", "-o", str(t / "data")],
    "surrogates fit": lambda t: ["surrogates", "fit", str(t), "-o", str(t / "sur")],
    "fem run": lambda t: ["fem", "run", "-o", str(t / "fem")],
    "status": lambda t: ["status", str(t)],
}


@pytest.mark.parametrize("command", sorted(SETTINGS_COMMANDS))
def test_settings_file_is_s_settings_or_config(command: str, tmp_path) -> None:
    """``-s``, ``--settings`` and ``--config`` are one option: each reads the file (an
    unknown key in it is the same one-line settings error naming the file, exit 1)."""
    (tmp_path / "x.eam").write_text("not read: the settings are checked first\n")
    toml = tmp_path / "bad.toml"
    toml.write_text("nonsense_key = 1\n")
    argv = SETTINGS_COMMANDS[command](tmp_path)
    outputs = []
    for spelling in ("-s", "--settings", "--config"):
        r = CliRunner().invoke(cli, [*argv, spelling, str(toml)])
        lines = r.output.splitlines()
        assert r.exit_code == 1 and len(lines) == 1, (spelling, r.exit_code, r.output)
        # a run file (status) says "unknown stage or section [nonsense_key]"
        assert lines[0].startswith(f"error: {toml}: unknown ") and (
            "nonsense_key" in lines[0]), lines
        outputs.append(r.output)
    assert outputs[0] == outputs[1] == outputs[2], outputs
    assert "(also --config)" in CliRunner().invoke(cli, [*command.split(), "--help"]).output
    assert not any(p.name not in ("x.eam", "bad.toml") for p in tmp_path.iterdir())


def test_out_has_o_everywhere() -> None:
    """Every command with ``--out`` also takes ``-o``."""
    for group in cli.commands.values():
        commands = group.commands if isinstance(group, click.Group) else {"": group}
        for name, cmd in commands.items():
            for p in cmd.params:
                if "--out" in p.opts:
                    assert "-o" in p.opts, (group.name, name)


def _one_usage_line(argv: list[str]) -> str:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, (argv, r.exit_code, r.output)
    lines = r.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, r.output)
    return lines[0]


def test_usage_errors_are_one_line_and_exit_2(tmp_path) -> None:
    nope = tmp_path / "nope"
    assert _one_usage_line(["dd", "run", str(nope), str(tmp_path), "-o", str(tmp_path / "o")]
                           ) == (f"error: dd run: Invalid value for 'MOBILITY': Path "
                                 f"'{nope}' does not exist.")
    assert _one_usage_line(["dd", "fit-mobility", str(nope), "-o", str(tmp_path / "o")]
                           ) == (f"error: dd fit-mobility: Invalid value for 'DEFECT_STATS': "
                                 f"Path '{nope}' does not exist.")
    line = _one_usage_line(["md", "properties", "-p", str(nope), "-o", str(tmp_path / "o")])
    assert line.startswith("error: md properties: Invalid value for ") and (
        f"Path '{nope}' does not exist." in line), line
    line = _one_usage_line(["fem", "convert-mesh", str(nope), str(tmp_path / "m.xdmf")])
    assert line == (f"error: fem convert-mesh: Invalid value for 'MESH': File '{nope}' "
                    "does not exist."), line
    assert _one_usage_line(["dd", "run", "--no-such-flag"]).startswith(
        "error: dd run: No such option '--no-such-flag'")
    assert _one_usage_line(["nonsense"]) == "error: No such command 'nonsense'."
    assert _one_usage_line(["--no-such-flag"]).startswith("error: No such option")
    assert not any(tmp_path.iterdir())


def test_help_and_bare_group_still_show_usage() -> None:
    r = CliRunner().invoke(cli, ["dd", "run", "--help"])
    assert r.exit_code == 0 and r.output.startswith("Usage: ") and "--config" in r.output
    r = CliRunner().invoke(cli, ["dd"])  # a bare group prints its help, as click does
    assert r.output.startswith("Usage: ") and "Commands:" in r.output, r.output
    assert not r.output.startswith("error:")


def test_console_script_usage_error_is_one_line_on_stderr(tmp_path) -> None:
    exe = __import__("pathlib").Path(sys.executable).parent / "scalebridge"
    nope = tmp_path / "nope"
    out = subprocess.run([str(exe), "dd", "run", str(nope), str(tmp_path), "--out",
                          str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and out.stdout == "", (out.returncode, out.stdout)
    assert out.stderr == (f"error: dd run: Invalid value for 'MOBILITY': Path '{nope}' "
                          "does not exist.\n"), out.stderr
