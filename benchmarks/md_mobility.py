"""Dislocation mobility of Mo with the learned potential: edge drag B(T), τ₀(T) and the
screw kink-pair law, with replicas, intervals and the 0 K Peierls stress.

Runs :class:`scalebridge.md.mobility.MobilityMaker`'s grid (1/2<111> edge and screw
glide slabs between rigid blocks, constant resolved shear stress, all thermal velocity
components thermostatted) with one DeePMD model of a Potential artifact. Every point runs
``replicas`` independent times (other seeds and relaxed start) plus ``--fresh`` more
replicas that are kept out of the reported numbers: the fraction of those fresh runs
that fall inside their point's reported 95% prediction interval is
``replica_coverage``. Every run is one task of the workflows mapper (``--jobs`` local
processes, or ``--engine parsl``); a finished task is kept as ``row.json`` under
``--work``, so a killed benchmark resumes where it stopped. The rows are collected into
a ``DefectStats`` artifact, whose ``glide_fit.json`` (scalebridge.md.glide_fit) gives
the laws.

Writes ``benchmarks/results/md_mobility.json`` (keys: ``replicas_min``, ``edge_drag``
rows of temperature_k, B_pa_s, B_ci95, tau0_mpa, tau0_ci95; ``screw_kink_pair`` with
dH0_ev, dH0_ci95, tau_p_mpa, p, q, temperatures_k; ``peierls_stress_0k_mpa``;
``screw_line_b_min``; ``replica_coverage``; machine; date) and copies the plot and table
beside it (``md_mobility.png``, ``md_mobility.csv``).

Usage (long: 48 edge runs of ~470 atoms, 30 screw runs of ~3000 atoms (fresh screw
replicas at 300 K only: ``--fresh-screw-k 300``), 1800 steps each, and the 0 K loading:
8.3 CPU-hours of LAMMPS measured on 2026-12-03 with the compressed float32 model, a
screw run 7-13 min with two at a time on 2 cores; ``--smoke`` checks the plumbing in
about 10 minutes). Finished runs are kept
under ``--work``/points/<key>, the key hashing the settings, the potential's content, a0
and the md code, so a rerun resumes only what the same code and potential computed::

    python benchmarks/md_mobility.py --potential runs/bench_potential_v2/potential \\
        [--work runs/bench_mobility] [--jobs 2] [--fresh 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

from _machine import machine

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "md_mobility.json"

#: The grid. Edge stresses span the linear range and the onset of saturation (shear-wave
#: speed ~3400 m/s for Mo); screws need far more stress (Peierls barrier, kink pairs);
#: three temperatures for both; slabs in Burgers vectors, screw lines 20 b.
MAKER = {
    "element": "Mo", "characters": ["edge", "screw"],
    "temperatures_k": [100.0, 300.0, 600.0],
    "taus_mpa": [100.0, 200.0, 400.0, 700.0], "screw_taus_mpa": [1000.0, 1500.0, 2000.0],
    "edge_cell_b": (2.8, 8.0, 16.0), "screw_cell_b": (20.0, 8.0, 12.0),
    "replicas": 3, "blocks": 5, "perturb_a": 0.05,
    "equil_steps": 200, "run_steps": 1600, "dump_every": 40, "timestep_ps": 0.0025,
    "fit_from": 0.3, "thermostat": "all", "boundary": "rigid",
    "peierls_0k": True, "peierls_step_mpa": 100.0, "peierls_max_mpa": 5000.0,
}

#: Published values to set the 0 K Peierls stress beside (MPa; where they come from).
PEIERLS_LITERATURE = [
    {"peierls_mpa": 1800.0, "method": "DFT",
     "source": "First-principles calculation on screw dislocation core properties in BCC "
               "molybdenum (6-fold compact core; simple shear on (-110)); abstract at "
               "paperexplained.cn/articles/paper/detail/9299886b5b018ac138fa845ad6c111f05711db2e"},
    {"peierls_mpa": 3800.0, "method": "tight binding (environment-dependent)",
     "source": "J. Li et al., Phys. Rev. B 70, 104113 (2004)"},
    {"peierls_mpa": 2400.0, "method": "empirical many-body potential",
     "source": "J. Li et al., Phys. Rev. B 70, 104113 (2004)"},
]


def _ci(pair):
    return [None if x is None or not math.isfinite(x) else float(x) for x in pair]


def _lammps_wall(dirs: list[Path]) -> float:
    """Sum (s) of the 'Total wall time' lines of the LAMMPS logs under ``dirs``: the time
    each run took when it ran, whichever invocation ran it."""
    total = 0.0
    for d in dirs:
        for log in d.glob("**/log.lammps"):
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("Total wall time:"):
                    h, m, s = (int(x) for x in line.split(":", 1)[1].strip().split(":"))
                    total += 3600 * h + 60 * m + s
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--potential", type=Path, required=True, help="Potential artifact")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_mobility"))
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (1 core each)")
    ap.add_argument("--engine", choices=["local", "parsl"], default="local")
    ap.add_argument("--fresh", type=int, default=1,
                    help="extra replicas per point kept out of the fit (coverage check)")
    ap.add_argument("--fresh-screw-k", type=float, nargs="*", default=None,
                    help="temperatures (K) whose screw points get the fresh replicas "
                         "(default: all; a screw run costs ~12x an edge one)")
    ap.add_argument("--lammps-cache", type=Path, default=None,
                    help="keep finished LAMMPS runs here by their exact inputs "
                         "(md.lammps_cache; default: --work/lammps_cache): after a change "
                         "to the md analysis code the runs are re-analysed, not re-run")
    ap.add_argument("--frozen", action="store_true", help="frozen instead of compressed")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny cells and a few steps: checks the plumbing only")
    args = ap.parse_args()

    from scalebridge.artifacts import content_digest, read_artifact
    from scalebridge.codehash import code_fingerprint
    from scalebridge.log import setup_logging
    from scalebridge.md.lammps import DeepMDPotential
    from scalebridge.md.mobility import MobilityMaker, mobility_task
    from scalebridge.md.properties import PropertiesMaker, load_properties
    from scalebridge.settings import Resources
    from scalebridge.workflows.engine import ExecutionSettings, make_mapper

    setup_logging()
    full = DeepMDPotential.from_artifact(args.potential, compressed=not args.frozen)
    pot = DeepMDPotential(full.models[:1], full.type_map, name=full.name, source=full.source)
    settings = dict(MAKER)
    if args.smoke:
        settings.update(temperatures_k=[100.0, 300.0], taus_mpa=[300.0, 600.0],
                        screw_taus_mpa=[1500.0, 2500.0], edge_cell_b=(2.8, 5.0, 10.0),
                        screw_cell_b=(20.0, 5.0, 8.0), equil_steps=20, run_steps=120,
                        dump_every=10, fit_from=0.2, peierls_step_mpa=500.0)
    maker = MobilityMaker.model_validate(settings)
    work = args.work.absolute()
    t0 = time.perf_counter()
    # a0 and the shear modulus (→ shear-wave speed) of this potential: a small Properties
    props = PropertiesMaker(element=maker.element, lattice="bcc", supercell=3,
                            npt_steps=0 if args.smoke else 500,
                            nve_steps=0 if args.smoke else 500).make(pot, work / "properties")
    pj = load_properties(props)
    a0 = float(pj["a0_a"])
    grid = maker.grid()
    fresh = [p.model_copy(update={"replica": maker.replicas + k})
             for p in grid if p.kind == "glide" and p.replica == 0
             and (p.character == "edge" or args.fresh_screw_k is None
                  or p.temperature_k in args.fresh_screw_k)
             for k in range(args.fresh)]
    # finished runs are read back from their row.json; the folder is keyed by what the
    # rows depend on (settings, the potential's content, a0, the md code), so a resumed
    # benchmark never reuses a row computed by other code or another potential
    key = hashlib.sha256(json.dumps({
        "maker": maker.model_dump(mode="json"), "a0_a": round(a0, 6),
        "potential": content_digest(read_artifact(args.potential)),
        "frozen": args.frozen, "code": code_fingerprint(["md"])["digest"]},
        sort_keys=True).encode()).hexdigest()[:16]
    tasks = [{"maker": maker.model_dump(mode="json"), "point": p.model_dump(mode="json"),
              "potential": pot, "a0_a": a0, "resources": Resources(threads=1).model_dump(),
              "workdir": str(work / "points" / key / p.tag)} for p in grid + fresh]
    # a run finished by an earlier invocation is read back, not re-run: counted apart, and
    # the runs' own LAMMPS wall times (whichever invocation measured them) are summed
    reused = sum((Path(t["workdir"]) / "row.json").exists() for t in tasks)
    print(f"a0 = {a0:.4f} Å, mu = {pj.get('shear_modulus_gpa')} GPa; {len(tasks)} tasks "
          f"({len(grid)} reported, {len(fresh)} fresh; {reused} finished earlier), "
          f"{args.jobs} at a time", flush=True)
    # finished runs of any earlier key seed the LAMMPS cache: a run whose input the
    # current code writes again byte for byte is read back and analysed by this code
    from scalebridge.md import lammps_cache

    cache = (args.lammps_cache or work / "lammps_cache").absolute()
    seeded = sum(lammps_cache.seed_from_run(cache, d)
                 for d in sorted((work / "points").glob("*/*"))
                 if d.is_dir() and not d.name.endswith(".partial"))
    os.environ[lammps_cache.CACHE_ENV] = str(cache)
    print(f"LAMMPS cache {cache}: {seeded} finished runs seeded", flush=True)
    ex = ExecutionSettings(engine=args.engine, workers=args.jobs, threads=1)
    # cheap and decisive first (fresh edge replicas, the 0 K Peierls loading), then the
    # screws (~12 min each): a benchmark stopped early has kept what matters most
    n_grid = len(grid)

    def _rank(i: int) -> int:
        p = (grid + fresh)[i]
        if p.character == "edge":
            return 0
        return 1 if p.kind == "peierls" else 2 if i < n_grid else 3

    order = sorted(range(len(tasks)), key=_rank)
    with make_mapper(ex, work) as mapper:
        done = mapper.map(mobility_task, [tasks[i] for i in order])
    rows: list = [None] * len(tasks)
    for j, i in enumerate(order):
        rows[i] = done[j]
    reported, fresh_rows = rows[:len(grid)], rows[len(grid):]
    art = maker.make(pot, work / "defect_stats", properties=props, rows=reported)
    wall = time.perf_counter() - t0
    fits = json.loads((art.path / "glide_fit.json").read_text())
    from scalebridge.md.tables import read_rows

    points = read_rows(art.path / "velocity.csv")

    # coverage: each fresh run against its point's 95% prediction interval
    inside = inside_ci = pairs = 0
    for r in fresh_rows:
        p = next((q for q in points if q["character"] == r["character"]
                  and q["temperature_k"] == r["temperature_k"]
                  and q["tau_mpa"] == r["tau_mpa"]), None)
        if p is None or p["status"] != "ok" or r["status"] != "ok" \
                or r.get("velocity_m_s") is None:
            continue
        pairs += 1
        d = abs(r["velocity_m_s"] - p["velocity_m_s"])
        inside += d <= p["velocity_pi95_m_s"]
        inside_ci += d <= p["velocity_ci95_m_s"]

    edge = fits["drag"].get("edge")
    kp = fits.get("kink_pair")
    pz = fits.get("peierls_0k") or {}
    screw_lines = [r["line_b"] for r in reported if r.get("character") == "screw"
                   and r.get("line_b")]
    out = {
        "potential": str(args.potential), "model": "frozen" if args.frozen else "compressed",
        "a0_a": a0, "burgers_a": fits["burgers_a"],
        "shear_wave_m_s": fits["shear_wave_m_s"],
        "shear_wave_source": fits.get("shear_wave_source"), "properties": str(props.path),
        "replicas_min": art.summary["replicas_min"],
        "edge_drag": [{"temperature_k": d["temperature_k"], "B_pa_s": d["drag_pa_s"],
                       "B_ci95": _ci(d["drag_ci95_pa_s"]), "tau0_mpa": d["tau0_mpa"],
                       "tau0_ci95": _ci(d["tau0_ci95_mpa"]), "tau0_fixed": d["tau0_fixed"],
                       "tau0_note": d.get("tau0_note"), "n_points": d["n_points"]}
                      for d in (edge["by_temperature"] if edge else [])],
        "edge_drag_trend": edge["trend"] if edge else None,
        "edge_saturation_m_s": edge["saturation_m_s"] if edge else None,
        "edge_saturation_source": edge["saturation_source"] if edge else None,
        "edge_fit": {k: edge[k] for k in ("chi2_red", "dof", "quantile", "n", "model",
                                          "law")} if edge else None,
        "screw_kink_pair": {
            "dH0_ev": kp["enthalpy_ev"], "dH0_ci95": _ci(kp["enthalpy_ci95_ev"]),
            "tau_p_mpa": kp["peierls_mpa"], "tau_p_ci95": _ci(kp["peierls_ci95_mpa"]),
            "tau_p_fixed": kp["peierls_fixed"], "v0_m_s": kp["attempt_m_s"],
            "v0_ci95": _ci(kp["attempt_ci95_m_s"]), "p": kp["p"], "q": kp["q"],
            "temperatures_k": kp["temperatures_k"], "chi2_red": kp["chi2_red"],
            "n_points": kp["n"], "law": kp["law"]} if kp else None,
        "fits_skipped": fits.get("skipped"),
        "peierls_stress_0k_mpa": pz.get("peierls_mpa"),
        "peierls_stress_0k_err_mpa": pz.get("peierls_err_mpa"),
        "peierls_status": pz.get("status"), "peierls_reason": pz.get("reason"),
        "peierls_literature": PEIERLS_LITERATURE,
        "screw_line_b_min": min(screw_lines) if screw_lines else None,
        "replica_coverage": inside / pairs if pairs else None,
        "replica_coverage_of_mean_ci95": inside_ci / pairs if pairs else None,
        "replica_coverage_pairs": pairs,
        "replica_coverage_rule": "a fresh replica (not used in the fit) inside its point's "
                                 "95% prediction interval mean ± t·s·sqrt(1 + 1/n)",
        "points": points,
        "settings": settings, "fresh_replicas": args.fresh, "defect_stats": str(art.path),
        "plot": str(args.out.with_suffix(".png").relative_to(HERE.parent))
        if args.out.is_relative_to(HERE.parent) else str(args.out.with_suffix(".png")),
        "wall_seconds": round(wall, 1),
        "wall_note": f"this invocation only; {reused} of {len(tasks)} rows were finished "
                     f"by an earlier invocation of the same code and read back, and "
                     f"{seeded} LAMMPS runs of earlier invocations (other analysis code) "
                     "were seeded into the LAMMPS cache and re-analysed, not re-run "
                     "(their MD time is in lammps_wall_seconds_sum, not here)",
        "runs_reused": reused, "runs_total": len(tasks), "lammps_runs_seeded": seeded,
        "lammps_cache": str(cache),
        "lammps_wall_seconds_sum": _lammps_wall([Path(t["workdir"]) for t in tasks]),
        "jobs": args.jobs, "smoke": args.smoke,
        "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(art.path / "velocity_stress.png", args.out.with_suffix(".png"))
    shutil.copyfile(art.path / "velocity.csv", args.out.with_suffix(".csv"))
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")
    for p in points:
        print({k: p[k] for k in ("character", "temperature_k", "tau_mpa", "velocity_m_s",
                                 "velocity_ci95_m_s", "status")})
    for d in out["edge_drag"]:
        print(d)
    print(out["screw_kink_pair"], "tau_P(0 K) =", out["peierls_stress_0k_mpa"])
    print(f"coverage {out['replica_coverage']} over {pairs}; wall {wall:.0f} s; "
          f"wrote {args.out}")


if __name__ == "__main__":
    main()
