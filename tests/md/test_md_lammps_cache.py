"""A finished LAMMPS run is read back only for the exact inputs it ran (md.lammps_cache).

Changed analysis code must re-read an MD trajectory, not re-run it; anything that
changes what LAMMPS computes (the structure, a seed, the potential's file, the ranks)
must run again. The published mlearn SNAP Mo model (tests/data, BSD-3-Clause) runs a
few MD steps; a log read back is byte-identical to the one stored (a new run's timing
lines differ).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ase.build import bulk
from scalebridge.md import lammps_cache
from scalebridge.md.lammps import SNAPPotential, run_lammps

PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"
BODY = """velocity all create 300 {seed} mom yes rot yes
fix nve all nve
thermo 5
dump d all custom 10 traj.dump id type x y z
run 20
"""


@pytest.fixture(scope="module")
def snap() -> SNAPPotential:
    return SNAPPotential.from_dir(PEERS / "snap")


def _run(workdir: Path, snap: SNAPPotential, seed: int = 7, a: float = 3.16):
    atoms = bulk("Mo", "bcc", a=a, cubic=True).repeat(2)
    return run_lammps(workdir, BODY.format(seed=seed), snap, atoms, name="cache test")


def test_same_inputs_are_read_back_and_changed_inputs_run(tmp_path, snap, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(lammps_cache.CACHE_ENV, str(cache))
    first = _run(tmp_path / "a", snap)
    log_a = (tmp_path / "a" / "log.lammps").read_bytes()
    assert len(list(cache.glob("*/*/outputs.json"))) == 1
    again = _run(tmp_path / "b", snap)                    # same inputs elsewhere
    assert (tmp_path / "b" / "log.lammps").read_bytes() == log_a
    assert (tmp_path / "b" / "traj.dump").read_bytes() == \
        (tmp_path / "a" / "traj.dump").read_bytes()
    key = next(iter(first.thermo[-1]))
    assert (again.thermo[-1][key] == first.thermo[-1][key]).all()
    _run(tmp_path / "c", snap, seed=8)                     # another seed: runs
    assert (tmp_path / "c" / "log.lammps").read_bytes() != log_a
    _run(tmp_path / "d", snap, a=3.17)                     # another structure: runs
    assert len(list(cache.glob("*/*/outputs.json"))) == 3
    assert lammps_cache.inputs_digest(tmp_path / "a") != \
        lammps_cache.inputs_digest(tmp_path / "a", mpi_ranks=2)


def test_a_run_made_without_the_cache_can_seed_it(tmp_path, snap, monkeypatch):
    monkeypatch.delenv(lammps_cache.CACHE_ENV, raising=False)
    _run(tmp_path / "old", snap)
    (tmp_path / "old" / "row.json").write_text("{}")      # analysis output: not LAMMPS's
    cache = tmp_path / "cache"
    assert lammps_cache.seed_from_run(cache, tmp_path / "old")
    (entry,) = cache.glob("*/*/outputs.json")
    assert set(entry.parent.iterdir()) >= {entry.parent / "traj.dump",
                                           entry.parent / "log.lammps"}
    assert not (entry.parent / "row.json").exists()
    monkeypatch.setenv(lammps_cache.CACHE_ENV, str(cache))
    _run(tmp_path / "new", snap)
    assert (tmp_path / "new" / "log.lammps").read_bytes() == \
        (tmp_path / "old" / "log.lammps").read_bytes()
    (tmp_path / "old" / "log.lammps").write_text("LAMMPS (killed)\n")   # unfinished
    assert not lammps_cache.seed_from_run(tmp_path / "cache2", tmp_path / "old")
