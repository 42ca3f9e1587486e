"""A chain fan-out through Parsl's SlurmProvider on a real Slurm.

``.ci/slurm-up`` (run by ``.ci/run``, as root) starts a one-node Slurm on this machine:
slurmctld and slurmd on localhost, munge. Parsl then submits its worker job with
``sbatch`` and the workers connect back; each task runs a real program: LAMMPS (``lmp``
under ``mpiexec -n 1``, through :func:`run_task_command`) at two temperatures, and two
DD realisations (the dd stage's task, :func:`run_realisation_task`). The results must
equal the local run's exactly, and LAMMPS itself prints the Slurm job it ran in.

Without Slurm the test skips ("no Slurm here: run .ci/slurm-up as root"); under
``CI=true`` it fails instead: CI must run it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from scalebridge.dd_coupling.inputs import Material
from scalebridge.dd_coupling.mobility import LinearDragMobility
from scalebridge.dd_coupling.simulate import DDSettings, run_realisation_task
from scalebridge.workflows.engine import (
    ExecutionSettings,
    LocalMapper,
    make_mapper,
    run_task_command,
)

#: A small Lennard-Jones NVE run (500 atoms, 200 steps) that prints the Slurm job it is in.
LJ_INPUT = """\
variable job getenv SLURM_JOB_ID
print "slurm_job_id=[${job}]"
units lj
atom_style atomic
lattice fcc 0.8442
region box block 0 5 0 5 0 5
create_box 1 box
create_atoms 1 box
mass 1 1.0
velocity all create ${t} 87287 loop geom
pair_style lj/cut 2.5
pair_coeff 1 1 1.0 1.0 2.5
neighbor 0.3 bin
fix 1 all nve
thermo 50
run 200
"""
TEMPERATURES = ("1.0", "2.0")
DD = DDSettings(cell_lx_um=0.4, final_strain=5e-4, strain_rate_s=1e5, nucleation_time_ns=2.0,
                source_density_m2=1.5e14, obstacle_density_m2=3e14, output_points=20)
MATERIAL = Material(mu_pa=125e9, nu=0.3, b_m=2.73e-10, source="test")
LAW = LinearDragMobility(burgers_m=2.73e-10, b0_pa_s=5e-5, saturation_m_s=3000.0)


def ci_mode() -> bool:
    """True where ``CI`` is true/1/yes (as tests/conftest.py reads it; .ci/run sets it)."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def slurm_problem() -> str | None:
    """None when Slurm takes jobs here, else why not."""
    for tool in ("sinfo", "sbatch", "squeue", "scancel"):
        if shutil.which(tool) is None:
            return f"{tool} not on PATH"
    try:
        r = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                           timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if r.returncode != 0:
        return f"sinfo failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    states = r.stdout.split()
    if not set(states) & {"idle", "mix", "alloc"}:
        return f"no node takes jobs (sinfo states: {states})"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    why = slurm_problem()
    if why is None:
        return
    if ci_mode():
        pytest.fail(f"CI=true but Slurm is not available ({why}): .ci/slurm-up, run by "
                    ".ci/run before the tests, should have started a one-node Slurm",
                    pytrace=False)
    pytest.skip(f"no Slurm here: run .ci/slurm-up as root ({why})")


def lj_tasks(root: Path) -> list[dict]:
    tasks = []
    for t in TEMPERATURES:
        cwd = root / f"T{t}"
        cwd.mkdir(parents=True)
        (cwd / "in.lj").write_text(LJ_INPUT)
        tasks.append({"argv": ["lmp", "-in", "in.lj", "-var", "t", t, "-log", "log.lammps"],
                      "cwd": str(cwd), "mpi_ranks": 1, "name": f"lmp LJ T={t}"})
    return tasks


def thermo(log: Path) -> np.ndarray:
    """The thermo table (Step Temp E_pair E_mol TotEng Press) of a LAMMPS log."""
    text = log.read_text()
    block = text.split("Step", 1)[1].split("Loop time", 1)[0]
    return np.array([[float(x) for x in ln.split()] for ln in block.splitlines()[1:]
                     if ln.strip()])


def dd_tasks() -> list[dict]:
    return [{"settings": DD, "material": MATERIAL, "law": LAW, "seed": s} for s in (3, 4)]


def squeue_line(job: str) -> str:
    r = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %j %T %N %C"],
                       capture_output=True, text=True, timeout=20)
    return r.stdout.strip() or r.stderr.strip()


@pytest.mark.slow
def test_fan_out_through_slurm_equals_the_local_run(slurm, tmp_path, capsys):
    local = LocalMapper()
    lj_local = local.map(run_task_command, lj_tasks(tmp_path / "local"))
    dd_local = local.map(run_realisation_task, dd_tasks())

    settings = ExecutionSettings.model_validate({
        "engine": "parsl", "provider": "slurm", "workers": 2, "retries": 0,
        "slurm": {"walltime": "00:10:00", "max_blocks": 1}})
    t0 = time.perf_counter()
    with make_mapper(settings, tmp_path / "slurm_run") as mapper:
        lj_slurm = mapper.map(run_task_command, lj_tasks(tmp_path / "slurm"))
        dd_slurm = mapper.map(run_realisation_task, dd_tasks())
        jobs = mapper.block_jobs()
        running = [squeue_line(j) for j in jobs.values()]
    wall = time.perf_counter() - t0

    assert len(jobs) == 1, f"expected one Slurm worker job, got {jobs}"
    job = next(iter(jobs.values()))
    assert re.fullmatch(r"\d+", job), f"not a Slurm job id: {job!r}"
    printed = set()
    for t, a, b in zip(TEMPERATURES, lj_local, lj_slurm, strict=True):
        assert a["returncode"] == b["returncode"] == 0
        loc = thermo(tmp_path / "local" / f"T{t}" / "log.lammps")
        sl = thermo(tmp_path / "slurm" / f"T{t}" / "log.lammps")
        assert loc.shape == (5, 6)
        np.testing.assert_array_equal(sl, loc)  # bit for bit: same binary, same input
        log = (tmp_path / "slurm" / f"T{t}" / "log.lammps").read_text()
        printed |= set(re.findall(r"slurm_job_id=\[(\d*)\]", log))
    # each LAMMPS run read SLURM_JOB_ID from its environment: it ran inside that job
    assert printed == {job}, f"LAMMPS saw Slurm jobs {printed}, Parsl submitted {job}"
    assert "slurm_job_id=[]" in (tmp_path / "local" / "T1.0" / "log.lammps").read_text()
    for a, b in zip(dd_local, dd_slurm, strict=True):
        np.testing.assert_array_equal(b["trace"], a["trace"])
        assert b["state"].n_steps == a["state"].n_steps > 0
        assert b["slip_moment"] == a["slip_moment"]
    scripts = [p for p in (tmp_path / "slurm_run" / "parsl").rglob("submit_scripts/*")
               if p.is_file() and "#SBATCH" in p.read_text(errors="replace")]
    assert len(scripts) == 1, scripts  # the one sbatch script Parsl wrote
    line = (f"slurm: {len(lj_slurm)} lmp + {len(dd_slurm)} DD tasks ran in Slurm job "
            f"{job} via Parsl SlurmProvider (squeue: {' | '.join(running)}; LAMMPS "
            f"printed slurm_job_id=[{job}]); identical to the local run; {wall:.1f} s")
    with capsys.disabled():
        print(f"\n{line}")


def test_slurm_config_scales_blocks_and_keeps_scheduler_lines_apart(tmp_path):
    """No Slurm needed: the Parsl config the slurm settings make."""
    from scalebridge.workflows.engine import ParslMapper

    s = ExecutionSettings.model_validate({
        "engine": "parsl", "provider": "slurm", "workers": 8, "mpi_ranks": 4,
        "slurm": {"cores_per_node": 32, "max_blocks": 4,
                  "scheduler_options": "#SBATCH --constraint=cpu"}})
    mapper = ParslMapper(s, tmp_path)
    cfg = mapper.config()
    assert cfg.strategy == "htex_auto_scale"  # up to max_blocks jobs while tasks wait
    assert mapper.slots == 32
    # Parsl appends '#SBATCH --cpus-per-task' to these: it must start a line of its own
    assert cfg.executors[0].provider.scheduler_options.startswith(
        "#SBATCH --constraint=cpu\n")
    local = ExecutionSettings(engine="parsl", workers=2)
    assert ParslMapper(local, tmp_path).config().strategy == "none"
    assert LocalMapper(workers=3).slots == 3
