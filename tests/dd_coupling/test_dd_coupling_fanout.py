"""DD realisations as fan-out tasks: a process pool gives the same DDRun as the serial run."""

from __future__ import annotations

import json
import pickle

from scalebridge.dd_coupling import DDSettings
from scalebridge.dd_coupling.mobility import load_mobility
from scalebridge.workflows.engine import LocalMapper

from .conftest import make_drag_law, make_properties

SMALL = {"cell_lx_um": 0.5, "final_strain": 1.0e-3, "strain_rate_s": 1.0e5,
         "nucleation_time_ns": 2.0, "source_density_m2": 1.5e14,
         "obstacle_density_m2": 3e14, "output_points": 40, "realisations": 2, "seed": 11}


def _run_doc(path):
    doc = json.loads((path / "run.json").read_text())
    for r in doc["realisations"]:
        r.pop("wall_s")
    return doc


def test_realisations_through_a_process_pool_equal_the_serial_run(tmp_path):
    props = make_properties(tmp_path / "props")
    mob = make_drag_law(tmp_path / "mob")
    assert pickle.loads(pickle.dumps(load_mobility(mob.path))).name  # tasks carry the law
    serial = DDSettings(**SMALL).make(mob, props, tmp_path / "serial")
    pool = LocalMapper(workers=2)
    try:
        fanned = DDSettings(**SMALL).make(mob, props, tmp_path / "pool", mapper=pool)
    finally:
        pool.close()
    assert fanned.summary == serial.summary
    assert _run_doc(fanned.path) == _run_doc(serial.path)
    names = sorted(p.relative_to(serial.path).as_posix()
                   for p in serial.path.rglob("*.csv"))
    assert "realisations/1/stress_strain.csv" in names
    for name in names:  # every table identical, byte for byte (same seeds)
        assert (fanned.path / name).read_bytes() == (serial.path / name).read_bytes(), name
    seeds = [r["seed"] for r in _run_doc(fanned.path)["realisations"]]
    assert seeds == [11, 12]
