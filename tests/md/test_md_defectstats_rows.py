"""DefectStats from collected glide rows: the rows enter its fingerprint (issue 15), so new
rows are never dropped because an artifact from other rows exists."""

from __future__ import annotations

from pathlib import Path

from scalebridge.md.lammps import SNAPPotential
from scalebridge.md.mobility import MobilityMaker
from scalebridge.md.tables import read_rows

A0 = 3.1693


def _pot(tmp_path: Path) -> SNAPPotential:
    # collecting rows runs no LAMMPS: the model files only enter the fingerprint
    (tmp_path / "mo.snapcoeff").write_text("# coefficients\n")
    (tmp_path / "mo.snapparam").write_text("rcutfac 4.6\n")
    return SNAPPotential.from_dir(tmp_path)


def _row(tau: float, v: float) -> dict:
    return {"character": "edge", "temperature_k": 300.0, "tau_mpa": tau, "velocity_m_s": v,
            "velocity_err_m_s": 5.0, "n_atoms": 100, "duration_ps": 6.0,
            "workdir": "/nowhere"}


def test_collected_rows_enter_the_fingerprint(tmp_path):
    pot, out = _pot(tmp_path), tmp_path / "ds"
    rows = [_row(100.0, 300.0), _row(200.0, 610.0)]
    first = MobilityMaker().make(pot, out, a0_a=A0, rows=rows)
    assert not first.reused and len(read_rows(first.path / "velocity.csv")) == 2
    # the same rows computed elsewhere (another workdir): the same DefectStats
    moved = [dict(r, workdir="/elsewhere") for r in reversed(rows)]
    assert MobilityMaker().make(pot, out, a0_a=A0, rows=moved).reused
    # one more row, or another velocity: another DefectStats
    more = MobilityMaker().make(pot, out, a0_a=A0, rows=[*rows, _row(400.0, 1180.0)])
    assert not more.reused and len(read_rows(more.path / "velocity.csv")) == 3
    other = MobilityMaker().make(pot, out, a0_a=A0, rows=[_row(100.0, 300.0),
                                                          _row(200.0, 640.0), _row(400.0, 1180.0)])
    assert not other.reused
