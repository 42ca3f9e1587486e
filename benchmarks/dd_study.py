"""Benchmark: the README example's DD study (strain rates × temperatures × realisations).

    nice -n 10 python benchmarks/dd_study.py [--workers 2] [--mobility DIR --properties DIR]
    python benchmarks/dd_study.py --tiny      # smoke test: seconds, writes nothing to results

The study is ``[dd.run]`` of ``examples/mo/mo.toml`` (its ``study`` grid, realisations and
cell), run through :meth:`DDSettings.make` with a :class:`LocalMapper` of ``--workers``
processes, as the chain runs it. The mobility law and the material come from MD: either
the artifacts given (``--mobility``, ``--properties``: e.g. ``runs/mo/mobility`` and
``runs/mo/properties`` of the chain), or, by default, the glide velocities the MD mobility
benchmark measured for Mo with the DeePMD potential (``benchmarks/results/md_mobility.json``:
edges and screws at 100 and 300 K) fitted by :class:`FitMobilitySettings` with the
example's ``[dd.mobility]`` (the neural law), with μ, ν of the DFT elastic constants
(:func:`scalebridge.md.properties.dft_properties`, Voigt average) and a0, b of that MD run.

Writes ``benchmarks/results/dd_study.json``: ``wall_seconds`` (the whole study, goal
≤ 240 s on 2 cores), ``rates_s``, ``temperatures_k``, ``realisations`` (per condition),
``min_final_dislocations``, ``flow_stress_mpa`` (rows [rate, T, mean, std]),
``avalanche_events_min``, ``avalanche_exponent`` and ``avalanche_exponent_err`` (the
inverse-variance mean of the per-condition maximum-likelihood exponents, bootstrap
errors), ``avalanche_by_condition``, the mobility law that drove it, the DDRun path,
``machine`` and ``date``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
import tomllib
from pathlib import Path

import torch
from _machine import machine
from scalebridge.artifacts import produce
from scalebridge.dd_coupling.fit import FitMobilitySettings
from scalebridge.dd_coupling.simulate import DDSettings, _finite_or_none
from scalebridge.md.properties import dft_properties
from scalebridge.workflows.engine import LocalMapper

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def md_inputs(work: Path, fit: dict) -> tuple[Path, Path, str]:
    """Properties and MobilityLaw artifacts from the md mobility benchmark's velocities,
    the law fitted with ``fit`` (``[dd.mobility]`` of the example)."""
    md = json.loads((HERE / "results" / "md_mobility.json").read_text())
    dft = dft_properties("Mo", "bcc")
    props_doc = {"shear_modulus_gpa": dft["shear_modulus_gpa"],
                 "poisson_ratio": dft["poisson_ratio"],
                 "burgers_a": md["burgers_a"], "a0_a": md["a0_a"], "lattice": "bcc",
                 "element": "Mo"}

    def props(w: Path) -> dict:
        (w / "properties.json").write_text(json.dumps(props_doc))
        return {}

    prop = produce("Properties", work / "properties", props_doc, {}, props)
    cols = ("character", "temperature_k", "tau_mpa", "velocity_m_s", "velocity_err_m_s",
            "n_atoms", "duration_ps")

    def defects(w: Path) -> dict:
        lines = [",".join(cols)] + [",".join(str(r[c]) for c in cols) for r in md["velocity"]]
        (w / "velocity.csv").write_text("\n".join(lines) + "\n")
        return {"rows": len(md["velocity"])}

    ds = produce("DefectStats", work / "defect_stats", {"rows": md["velocity"]}, {}, defects)
    settings = FitMobilitySettings(**fit)
    mob = settings.make(ds, work / "mobility", properties=prop)
    return prop.path, mob.path, (f"md_mobility.json velocities ({md['date']}), "
                                 f"{settings.law} fit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="processes (LocalMapper)")
    ap.add_argument("--config", default=str(ROOT / "examples" / "mo" / "mo.toml"))
    ap.add_argument("--mobility", type=Path, help="MobilityLaw artifact (with --properties)")
    ap.add_argument("--properties", type=Path, help="Properties artifact")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_dd_study")
    ap.add_argument("--tiny", action="store_true",
                    help="smoke test: 2 rates × 2 T × 2 realisations in a small cell; "
                    "prints the record instead of writing results/dd_study.json")
    ap.add_argument("--out", default=str(HERE / "results" / "dd_study.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    dd = tomllib.loads(Path(args.config).read_text()).get("dd", {})
    run = dd.get("run", {})
    settings = DDSettings(**run)
    if args.tiny:
        settings = settings.model_copy(update={
            "cell_lx_um": 0.4, "final_strain": 1e-3, "realisations": 2,
            "output_points": 40, "study": settings.study.model_copy(update={
                "strain_rates_s": settings.study.strain_rates_s[-2:],
                "temperatures_k": settings.study.temperatures_k[:2],
                "avalanche_bootstrap": 20}) if settings.study else None})
    if settings.study is None:
        sys.exit(f"{args.config}: [dd.run] has no study")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.mobility and args.properties:
        prop, mob, source = args.properties, args.mobility, f"artifacts {args.mobility}"
    else:
        prop, mob, source = md_inputs(args.work, dd.get("mobility", {}))
    out = args.work / ("dd_tiny" if args.tiny else "dd")
    mapper = LocalMapper(workers=args.workers)
    t0 = time.perf_counter()
    try:
        art = settings.make(mob, prop, out, force=True, mapper=mapper)
    finally:
        mapper.close()
    wall = time.perf_counter() - t0
    st = art.summary["study"]
    with open(art.path / "study" / "flow_stress.csv", newline="") as f:
        rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
    rec = {
        "wall_seconds": round(wall, 1), "workers": args.workers,
        "rates_s": st["strain_rates_s"], "temperatures_k": st["temperatures_k"],
        "realisations": st["realisations"],
        "min_final_dislocations": st["min_final_dislocations"],
        "flow_stress_mpa": [[c["strain_rate_s"], c["temperature_k"], c["flow_stress_mpa"],
                             c["flow_stress_std_mpa"]] for c in rows],
        "final_dislocations_min_by_condition": [
            [c["strain_rate_s"], c["temperature_k"], int(c["final_dislocations_min"])]
            for c in rows],
        "avalanche_events_min": st["avalanche_events_min"],
        "avalanche_exponent": st["avalanche_exponent"],
        "avalanche_exponent_err": st["avalanche_exponent_err"],
        "avalanche_by_condition": [[c["strain_rate_s"], c["temperature_k"],
                                    int(c["avalanche_events"]), c["avalanche_exponent"],
                                    c["avalanche_exponent_err"]] for c in rows],
        "mobility": art.summary["mobility"], "inputs": source,
        "strengths_mpa": art.summary["strengths_mpa"],
        "settings": {k: v for k, v in run.items()}, "ddrun": str(art.path),
        "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    text = json.dumps(_finite_or_none(rec), indent=1, default=str)
    if args.tiny:
        print(text)
        return
    Path(args.out).write_text(text + "\n")
    print(f"wrote {args.out}: {wall:.0f} s, min final dislocations "
          f"{rec['min_final_dislocations']}, avalanche α = {rec['avalanche_exponent']}")


if __name__ == "__main__":
    main()
