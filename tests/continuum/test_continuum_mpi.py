"""`mpiexec -n 2` (a real subprocess under the venv's mpiexec) gives the 1-rank curve."""

from __future__ import annotations

import csv

import pytest
from scalebridge.continuum import CylinderProblem, FemSettings, J2Material, SolverSettings
from scalebridge.settings import Resources


def _curve(art):
    with open(art.file("load_displacement.csv")) as f:
        rows = list(csv.DictReader(f))
    return [(float(r["inner_displacement_mm"]), float(r["pressure_mpa"]),
             int(r["iterations"])) for r in rows]


@pytest.mark.mpi
def test_two_ranks_reproduce_one_rank_curve(tmp_path):
    settings = FemSettings(problem=CylinderProblem(n_radial=4, n_angular=10),
                           solver=SolverSettings(steps=10))
    material = J2Material(hardening_modulus=0.0)
    one = settings.make(material, tmp_path / "one", Resources(mpi_ranks=1))
    two = settings.make(material, tmp_path / "two", Resources(mpi_ranks=2))
    assert one.summary["ranks"] == 1 and two.summary["ranks"] == 2
    assert two.summary["n_dofs"] == one.summary["n_dofs"]
    assert two.summary["n_points"] == one.summary["n_points"]
    c1, c2 = _curve(one), _curve(two)
    assert len(c1) == len(c2) == 11
    for (d1, q1, i1), (d2, q2, i2) in zip(c1, c2, strict=True):
        assert d1 == d2
        assert q2 == pytest.approx(q1, rel=1e-8, abs=1e-9)
        assert i1 == i2
    assert c1[-1][1] > 0.98 * two.summary["q_lim_mpa"]   # it did go plastic
    # both ranks wrote their parts of the fields
    assert (two.path / "fields" / "displacement.bp").is_dir()
    assert (two.path / "mpi_output.txt").is_file()


@pytest.mark.mpi
def test_mpi_worker_error_is_one_line(tmp_path):
    from scalebridge.errors import ScalebridgeError

    settings = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=4),
                           solver=SolverSettings(steps=2, max_iterations=1, max_cuts=1),
                           write_fields=False)
    with pytest.raises(ScalebridgeError) as info:
        settings.make(J2Material(), tmp_path / "bad", Resources(mpi_ranks=2))
    msg = str(info.value)
    assert "\n" not in msg and "Newton failed" in msg
    assert not (tmp_path / "bad").exists()
