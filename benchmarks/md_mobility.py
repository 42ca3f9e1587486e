"""Dislocation mobility of Mo with the learned potential: velocity vs τ, T and character.

Runs :class:`scalebridge.md.mobility.MobilityMaker`'s grid (1/2<111> edge and screw glide
slabs between rigid blocks, constant resolved shear stress, Langevin thermostat on the
normal velocities) with a DeePMD potential artifact, the points two at a time (one LAMMPS
per core), then collects them into a ``DefectStats`` artifact and fits the linear drag
coefficient B (τ b = B v) per character and temperature.

Writes ``benchmarks/results/md_mobility.json`` (table, drag, machine, date) and copies the
plot and table beside it (``md_mobility.png``, ``md_mobility.csv``).

Usage (long; in the background)::

    python benchmarks/md_mobility.py --potential runs/bench_potential_v2/potential \\
        [--work runs/bench_mobility] [--jobs 2]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _machine import machine
from _reuse import reuse_record

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "md_mobility.json"

#: The grid. Edge stresses stay in the drag regime (v well below the shear wave speed,
#: ~3400 m/s for Mo); screws need far more stress (Peierls barrier, kink-pair glide).
MAKER = {
    "element": "Mo", "characters": ["edge", "screw"], "temperatures_k": [100.0, 300.0],
    "taus_mpa": [100.0, 200.0], "screw_taus_mpa": [1200.0, 2400.0],
    "edge_cell_a": (7.8, 22.0, 45.0), "screw_cell_a": (8.3, 22.0, 36.0),
    "equil_steps": 200, "run_steps": 1600, "dump_every": 40, "timestep_ps": 0.0025,
    "fit_from": 0.35, "drag_fit_max_tau_mpa": 200.0, "boundary": "rigid",
}


def _one(job) -> dict:
    """One glide point (in a worker process); reuses a finished run's dump if present."""
    from scalebridge.md.dislocations import build_glide_slab, glide_velocity, repeats_for

    maker, pot, a0, p, wd, res = job
    t = time.perf_counter()
    log = wd / "log.lammps"
    done = log.is_file() and f"for {maker.run_steps} steps" in log.read_text()
    if done and (wd / "glide.dump").is_file():
        # the slab run_point built: its glide length and size
        cell = maker.edge_cell_a if p.character == "edge" else maker.screw_cell_a
        atoms, geo = build_glide_slab(a0, p.character, maker.element,
                                      *repeats_for(a0, p.character, cell),
                                      rigid_layers=maker.boundary == "rigid")
        _, _, _, v, err = glide_velocity(wd, geo.glide_a, maker.dump_every,
                                         maker.timestep_ps, maker.fit_from)
        row = {"character": p.character, "temperature_k": p.temperature_k,
               "tau_mpa": p.tau_mpa, "velocity_m_s": v, "velocity_err_m_s": err,
               "n_atoms": len(atoms), "duration_ps": maker.run_steps * maker.timestep_ps,
               "workdir": str(wd), "reused": True}
    else:
        row = maker.run_point(pot, a0, p, wd, res)
    row["wall_s"] = round(time.perf_counter() - t, 1)
    print(f"{p.tag}: v = {row['velocity_m_s']:.0f} ± {row['velocity_err_m_s']:.0f} m/s "
          f"({row['n_atoms']} atoms, {row['wall_s']} s)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--potential", type=Path, required=True, help="Potential artifact")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_mobility"))
    ap.add_argument("--jobs", type=int, default=2, help="glide runs at once (1 core each)")
    ap.add_argument("--frozen", action="store_true", help="frozen instead of compressed")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--smoke", action="store_true",
                    help="a few steps of one temperature: checks the plumbing only")
    args = ap.parse_args()

    from scalebridge.log import setup_logging
    from scalebridge.md.lammps import DeepMDPotential
    from scalebridge.md.mobility import MobilityMaker
    from scalebridge.md.properties import relaxed_lattice_constant
    from scalebridge.settings import Resources

    setup_logging()
    full = DeepMDPotential.from_artifact(args.potential, compressed=not args.frozen)
    pot = DeepMDPotential(full.models[:1], full.type_map, name=full.name, source=full.source)
    settings = dict(MAKER)
    if args.smoke:
        settings.update(temperatures_k=[300.0], taus_mpa=[200.0], screw_taus_mpa=[1800.0],
                        equil_steps=20, run_steps=120, dump_every=20, fit_from=0.2)
    maker = MobilityMaker.model_validate(settings)
    work = args.work.absolute()
    t0 = time.perf_counter()
    a0 = relaxed_lattice_constant(pot, work / "a0", maker.element)
    res = Resources(threads=1)
    grid = maker.grid()
    print(f"a0 = {a0:.4f} Å; {len(grid)} glide runs, {args.jobs} at a time", flush=True)

    jobs = [(maker, pot, a0, p, work / "points" / p.tag, res) for p in grid]
    # processes, not threads: ASE's lattice factories and OVITO's DXA are not thread-safe
    with ProcessPoolExecutor(args.jobs) as ex:
        rows = list(ex.map(_one, jobs))
    art = maker.make(pot, work / "defect_stats", a0_a=a0, rows=rows)
    wall = time.perf_counter() - t0
    drag = list(csv.DictReader((art.path / "drag.csv").open()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(art.path / "velocity_stress.png", args.out.with_suffix(".png"))
    shutil.copyfile(art.path / "velocity.csv", args.out.with_suffix(".csv"))
    out = {
        "potential": str(args.potential), "model": "compressed" if not args.frozen else
        "frozen", "a0_a": a0, "burgers_a": art.summary["burgers_a"],
        "velocity": [{k: r[k] for k in ("character", "temperature_k", "tau_mpa",
                                        "velocity_m_s", "velocity_err_m_s", "n_atoms",
                                        "duration_ps", "wall_s")} for r in rows],
        "drag": [{k: (float(v) if k not in ("character",) else v) for k, v in d.items()}
                 for d in drag],
        "settings": settings, "defect_stats": str(art.path),
        "defect_stats_reused": reuse_record(art),
        "plot": str(args.out.with_suffix(".png").relative_to(HERE.parent)),
        "wall_seconds": round(wall, 1), "jobs": args.jobs,
        "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    for r in out["velocity"]:
        print(r)
    for d in out["drag"]:
        print(d)
    print(f"wall {wall:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
