"""The run file: one-line errors for bad settings, the schema command, the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from scalebridge.errors import SettingsError
from scalebridge.workflows.cli import cli
from scalebridge.workflows.settings import load_run_settings, parse_run_settings, schema_text


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.toml"
    p.write_text(text)
    return p


def test_defaults_and_relative_data_paths(tmp_path):
    (tmp_path / "data").mkdir()
    p = _write(tmp_path, '[run]\nname = "t"\ndata = ["data/x.json"]\n'
                         '[execution]\nworkers = 2\n')
    s = load_run_settings(p)
    assert s.run.data == [tmp_path / "data" / "x.json"]
    assert s.execution.workers == 2 and s.execution.engine == "local"
    assert s.execution.resources.mpi_ranks == 1


def test_wrong_type_names_file_and_key(tmp_path):
    p = _write(tmp_path, '[execution]\nworkers = "two"\n')
    with pytest.raises(SettingsError) as e:
        load_run_settings(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{p}: key 'execution.workers' = 'two'")


def test_unknown_stage_has_did_you_mean(tmp_path):
    p = _write(tmp_path, "[executon]\nworkers = 1\n")
    with pytest.raises(SettingsError, match=r"unknown stage or section \[executon\]; "
                                            r"did you mean \[execution\]\?"):
        load_run_settings(p)


def test_unknown_key_has_did_you_mean():
    with pytest.raises(SettingsError, match=r"unknown key 'run.nmae'; did you mean 'name'"):
        parse_run_settings({"run": {"nmae": "x"}})


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(SettingsError, match="settings file not found"):
        load_run_settings(tmp_path / "nope.toml")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_run_settings(_write(tmp_path, "[run\n"))


def test_schema_lists_every_key_with_default_and_description():
    text = schema_text()
    assert "[execution]" in text and "[run]" in text
    assert "execution.engine = 'local'  # local: tasks run in this process" in text
    assert "[execution.slurm]  # Slurm provider settings" in text
    assert "execution.slurm.partition = None  # Slurm partition" in text
    out = CliRunner().invoke(cli, ["schema"])
    assert out.exit_code == 0 and "mpi_ranks = 1" in out.output


def test_cli_bad_settings_is_one_line_and_exit_1(tmp_path):
    p = _write(tmp_path, "[run]\nname = 3\n")
    proc = subprocess.run([sys.executable, "-m", "scalebridge.workflows.cli", "run", str(p),
                           "--run-dir", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "run.name" in lines[0]
    assert "Traceback" not in proc.stderr


def test_stage_sections_are_the_stages_own_models():
    from scalebridge.workflows.settings import available_sections

    sections = available_sections()
    assert {"potentials", "md", "dd", "surrogates", "continuum"} <= set(sections)
    with pytest.raises(SettingsError) as e:
        parse_run_settings({"potentials": {"train": {"steps": "many"}}}, source="mo.toml")
    assert str(e.value).startswith("mo.toml: key 'potentials.train.steps' = 'many'")
    with pytest.raises(SettingsError, match=r"unknown key 'md.mobilty'; did you mean "
                                            r"'mobility'"):
        parse_run_settings({"md": {"mobilty": {}}})
    s = parse_run_settings({"md": {"mobility": {"taus_mpa": [100.0]}}})
    assert s.md.mobility.taus_mpa == [100.0] and s.dd.run.realisations >= 1


def test_dephase_wait_without_dephase_is_refused_when_the_file_loads():
    """The wait is a pause before a dephased family's renewal emission: without
    ``dephase`` it means nothing, and the run file is refused at load (one line naming
    the key), not after the DD stage has run."""
    with pytest.raises(SettingsError) as e:
        parse_run_settings({"surrogates": {"model": "source_families", "dephase_wait": True}},
                           source="mo.toml")
    msg = str(e.value)
    assert msg.startswith("mo.toml: key 'surrogates.dephase_wait' = True") and \
        "needs dephase = true" in msg
    assert "\n" not in msg
    s = parse_run_settings({"surrogates": {"dephase": True, "dephase_wait": True}})
    assert s.surrogates.dephase_wait


def test_example_files_validate():
    root = Path(__file__).resolve().parents[2] / "examples" / "mo"
    for name in ("mo.toml", "production.toml"):
        s = load_run_settings(root / name)
        assert s.run.data == [root / "data" / "training.json"]
    prod = load_run_settings(root / "production.toml")
    assert prod.execution.engine == "parsl" and prod.execution.mpi_ranks > 1
    # production fits the surrogate the example's scores were measured with, one
    # microstructure held out by the main fit and every other one in turn
    ex = load_run_settings(root / "mo.toml")
    for k in ("model", "dephase", "dephase_wait", "spread_loading", "relaxed_clocks",
              "clock_width", "internal_field_grows", "restarts"):
        assert getattr(prod.surrogates, k) == getattr(ex.surrogates, k), k
    assert round(prod.surrogates.val_fraction * prod.dd.run.realisations) == 1
    assert prod.surrogates.cross_validate == prod.dd.run.realisations - 1


def test_finished_glide_task_is_not_run_again(tmp_path):
    """A glide point finished before a kill is returned from its row.json, not rerun
    (the task has no potential or LAMMPS to run with: it would fail if it tried)."""
    import json

    from scalebridge.errors import ArtifactError
    from scalebridge.workflows.stage_md import glide_task

    done = tmp_path / "edge_T300_tau500"
    done.mkdir()
    row = {"character": "edge", "temperature_k": 300.0, "tau_mpa": 500.0,
           "velocity_m_s": 1262.0, "velocity_err_m_s": 43.0, "n_atoms": 348,
           "duration_ps": 2.0, "workdir": str(done)}
    (done / "row.json").write_text(json.dumps(row))
    point = {"character": "edge", "temperature_k": 300.0, "tau_mpa": 1000.0}
    task = {"workdir": str(done), "maker": {}, "point": point,
            "potential": str(tmp_path / "no_potential"), "models": "frozen", "a0_a": 3.16,
            "resources": {}}
    assert glide_task(task) == row
    # not finished: its settings validate, then it must run, and there is no potential
    task["workdir"] = str(tmp_path / "edge_T300_tau1000")
    with pytest.raises(ArtifactError, match=r"no artifact at .*no_potential"):
        glide_task(task)
    assert not (tmp_path / "edge_T300_tau1000").exists()


def test_cli_run_and_status_name_what_is_wrong_with_a_path(tmp_path, mo_train_json):
    """run/status given a directory, a file or a path that cannot be a run directory, and
    --force/--until given a name that is no stage: one line each, nothing written."""
    toml = _write(tmp_path, f'[run]\nname = "t"\ndata = ["{mo_train_json}"]\n'
                            '[potentials.ingest]\ntype_map = ["Mo"]\n')
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    runner = CliRunner()
    cases = [
        (["run", str(empty)], f"{empty} is a directory, not a run file: give the run's TOML "
         f"file (e.g. examples/mo/mo.toml), or see a run directory's state with: "
         f"scalebridge status {empty}"),
        (["status", str(empty)], f"{empty} is not a scalebridge run directory (no "
         f"settings.json); name the run file: scalebridge status {empty} --settings RUN.toml"),
        (["status", str(a_file)], f"{a_file} is not a directory: give the run directory"),
        (["status", str(tmp_path / "nope")], f"no run directory {tmp_path / 'nope'}"),
        (["run", str(toml), "--run-dir", str(a_file), "--until", "dataset", "--dry-run"],
         f"run directory {a_file} is a file, not a directory: choose another run directory"),
        (["run", str(toml), "--run-dir", str(a_file / "sub"), "--until", "dataset"],
         f"cannot create run directory {a_file / 'sub'}: {a_file} is a file, not a "
         "directory"),
        (["run", str(toml), "--run-dir", str(empty), "--until", "dataset", "--force",
          "potentials"], "unknown stage 'potentials' in --force; did you mean 'potential'? "
         "([potentials] configures the stages dataset, potential)"),
        (["run", str(toml), "--run-dir", str(empty), "--force", "md"],
         "unknown stage 'md' in --force ([md] configures the stages properties, defects, "
         "deform)"),
        (["run", str(toml), "--run-dir", str(empty), "--until", "surrogates"],
         "unknown stage 'surrogates'; did you mean 'surrogate'? ([surrogates] configures "
         "the stage surrogate)"),
    ]
    for argv, line in cases:
        r = runner.invoke(cli, argv)
        assert r.exit_code == 1 and r.output == f"error: {line}\n", (argv, r.output)
    assert a_file.read_text() == "mine\n" and list(empty.iterdir()) == []


def test_cli_prints_one_error_line_per_settings_problem(tmp_path):
    p = _write(tmp_path, '[run]\nname = 3\nnmae = "x"\n[md]\ntemprature_k = 300\n')
    r = CliRunner().invoke(cli, ["run", str(p), "--run-dir", str(tmp_path / "r")])
    assert r.exit_code == 1
    assert r.output.splitlines() == [
        f"error: {p}: key 'run.name' = 3: Input should be a valid string",
        f"error: {p}: unknown key 'run.nmae'; did you mean 'name'? allowed: name, data, "
        "test_data, stop_after, description",
        f"error: {p}: unknown key 'md.temprature_k'; did you mean 'temperature_k' in "
        "[md.properties]? allowed: models, properties, mobility, deform, deformation"]
    assert not (tmp_path / "r").exists()
