"""Fan-out engines: local and Parsl (HighThroughputExecutor + LocalProvider, real
workers on this machine), a worker killed mid-task is retried, MPI tasks get ranks."""

from __future__ import annotations

import functools
import operator
from pathlib import Path

import pytest
from scalebridge.errors import ExternalProgramError, ScalebridgeError, SettingsError
from scalebridge.workflows.engine import (
    ExecutionSettings,
    LocalMapper,
    Mapper,
    make_mapper,
    python_argv,
    run_task_command,
)

#: Kills the Parsl worker that runs it (its parent), the first time only.
KILL_PARENT_ONCE = (
    "import os, signal, pathlib\n"
    "p = pathlib.Path({marker!r})\n"
    "if not p.exists():\n"
    "    p.write_text(str(os.getppid()))\n"
    "    os.kill(os.getppid(), signal.SIGKILL)\n"
    "print('survived', os.getpid())\n"
)


def test_local_mapper_keeps_order_and_is_a_mapper(tmp_path):
    m = LocalMapper()
    assert isinstance(m, Mapper)
    assert m.map(functools.partial(operator.mul, 3), [1, 2, 3]) == [3, 6, 9]
    with make_mapper(ExecutionSettings(workers=2), tmp_path) as pool:
        assert pool.map(functools.partial(operator.pow, 2), range(6)) == [1, 2, 4, 8, 16, 32]


def test_slurm_needs_parsl(tmp_path):
    with pytest.raises(SettingsError, match=r"provider = 'slurm' needs execution\.engine"), \
            make_mapper(ExecutionSettings(provider="slurm"), tmp_path):
        pass


def test_command_task_runs_under_mpiexec_with_its_ranks(tmp_path):
    code = ("import os, pathlib; r = os.environ.get('PMI_RANK', 'none'); "
            "pathlib.Path(f'rank_{r}.txt').write_text(os.environ['PMI_SIZE'])")
    run_task_command({"argv": python_argv(code), "cwd": str(tmp_path), "mpi_ranks": 2,
                      "name": "ranks"})
    assert sorted(p.name for p in tmp_path.glob("rank_*")) == ["rank_0.txt", "rank_1.txt"]
    assert (tmp_path / "rank_1.txt").read_text() == "2"
    with pytest.raises(ExternalProgramError, match="boom failed with exit code 3"):
        run_task_command({"argv": python_argv("raise SystemExit(3)"), "cwd": str(tmp_path),
                          "name": "boom"})


@pytest.mark.slow
def test_parsl_worker_killed_mid_task_is_retried(tmp_path):
    """Real Parsl HTEX workers; the first attempt of one task kills its worker process."""
    marker = tmp_path / "killed-once"
    settings = ExecutionSettings(engine="parsl", workers=2, retries=2)
    tasks = [{"argv": python_argv(KILL_PARENT_ONCE.format(marker=str(marker))),
              "cwd": str(tmp_path), "name": "victim"},
             {"argv": python_argv("print('plain task')"), "cwd": str(tmp_path),
              "name": "plain"}]
    with make_mapper(settings, tmp_path / "run") as mapper:
        assert mapper.map(functools.partial(operator.add, 10), [1, 2, 3]) == [11, 12, 13]
        results = mapper.map(run_task_command, tasks)
    killed_worker = int(marker.read_text())
    assert results[0]["tail"][-1].startswith("survived")
    assert results[0]["pid"] != killed_worker  # the retry ran on a new worker
    assert results[1]["tail"] == ["plain task"]


@pytest.mark.slow
def test_parsl_without_retries_reports_the_lost_worker(tmp_path):
    marker = tmp_path / "killed-once"
    settings = ExecutionSettings(engine="parsl", workers=1, retries=0)
    task = {"argv": python_argv(KILL_PARENT_ONCE.format(marker=str(marker))),
            "cwd": str(tmp_path), "name": "victim"}
    with make_mapper(settings, tmp_path / "run") as mapper, \
            pytest.raises(ScalebridgeError, match=r"task 0 of 1 .* failed after 0 retries: "
                                                  r".*WorkerLost"):
        mapper.map(run_task_command, [task])
    assert marker.exists()


def test_parsl_config_for_slurm_is_built_from_settings(tmp_path):
    from parsl.providers import SlurmProvider
    from scalebridge.workflows.engine import ParslMapper

    s = ExecutionSettings.model_validate({
        "engine": "parsl", "provider": "slurm", "workers": 4, "mpi_ranks": 8,
        "slurm": {"partition": "compute", "walltime": "02:00:00", "max_blocks": 3,
                  "worker_init": "module load gcc"}})
    cfg = ParslMapper(s, Path(tmp_path)).config()
    htex = cfg.executors[0]
    assert isinstance(htex.provider, SlurmProvider)
    assert htex.provider.partition == "compute" and htex.provider.max_blocks == 3
    assert "module load gcc" in htex.provider.worker_init
    assert "LD_LIBRARY_PATH=" in htex.provider.worker_init
    assert htex.cores_per_worker == 8.0 and cfg.retries == 2


@pytest.mark.slow
def test_chain_fans_out_on_parsl_and_survives_a_dying_worker(tmp_path):
    """A chain whose middle stage gives one task per item to Parsl workers; the first
    attempt of one task kills its worker: the task is retried and the chain's result is
    the same as the serial, local run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("wf_toy_chain2",
                                                  Path(__file__).parent / "toy_chain.py")
    toy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toy)
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("300\n500\n700\n")
    marker = tmp_path / "killed-once"
    cfg = toy.toy_config(numbers)
    cfg["primes"]["fan_out"] = True
    local = toy.toy_chain().run(tmp_path / "local", cfg)["total"].summary["total"]

    prelude = (f"import os, signal, pathlib, json, sys\n"
               f"if json.loads(sys.argv[1]) == [500] and not pathlib.Path({str(marker)!r})"
               f".exists():\n"
               f"    pathlib.Path({str(marker)!r}).write_text('x')\n"
               f"    os.kill(os.getppid(), signal.SIGKILL)\n")
    cfg["primes"]["task_prelude"] = prelude  # the settings differ: a separate artifact
    with make_mapper(ExecutionSettings(engine="parsl", workers=2, retries=2),
                     tmp_path / "parsl_run") as mapper:
        arts = toy.toy_chain().run(tmp_path / "parsl_run", cfg, mapper=mapper)
    assert marker.exists()  # a worker really died
    assert arts["total"].summary["total"] == local == 62 + 95 + 125
    assert arts["primes"].summary["limits"] == 3
