"""Benchmark: what the DD's displacement limiter does to its flow stress.

    nice -n 10 python benchmarks/dd_limiter.py --run-dir runs/mo [--rates 7e4] [--seeds 0 1 2]

The DD steps with ``dt = max_glide / q(|v|)``, ``q`` the ``dt_quantile`` of the mobile
dislocations' speeds (0.8 by default and in the README example): the fastest 20 % move
``max_glide`` per step instead of ``v dt``, a displacement limiter that keeps the step
count down. Those fastest dislocations, the ones an avalanche's stress drives, then glide
at the 80th percentile's speed, not at the MD mobility law's: the limiter, not the MD,
sets their velocity. This runs the README example's ``[dd.run]`` (``examples/mo/mo.toml``)
at the given rates and 300 K, each seed with ``dt_quantile`` 0.8 and 1.0 (exact: every
dislocation at its law's velocity), with the material (``<run-dir>/properties``) and the
mobility law (``<run-dir>/mobility``) of a finished chain run: **those two artifacts are
reused** (named below with when they were made; only the DD is timed).

Writes ``benchmarks/results/dd_limiter.json``: per (rate, seed, quantile) the flow stress
(the DD's: mean over the last quarter of the strain on the output grid), the peak
stress, steps, limited moves, dislocations at the end and the wall time; per rate the
paired relative change of the flow stress (exact over limited) with its standard error,
beside the realisations' own relative sd; the reused artifacts; machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
import tomllib
from pathlib import Path

import numpy as np
from _machine import machine
from scalebridge.artifacts import read_artifact
from scalebridge.dd_coupling.inputs import read_properties
from scalebridge.dd_coupling.mobility import load_mobility
from scalebridge.dd_coupling.simulate import DDSettings, resample

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def artifact_record(path: Path, kind: str) -> dict:
    """Which artifact was reused and when it was made."""
    art = read_artifact(path, kind=kind)
    return {"artifact": str(path), "made": art.manifest.get("started"),
            "code": (art.manifest.get("code") or {}).get("digest")}


def flow_stress(trace: np.ndarray, final_strain: float, points: int) -> float:
    """The DD's flow stress (MPa): the trace on its output grid, mean over the last
    quarter of the strain (as ``write_ddrun``)."""
    tab = resample(trace, np.linspace(0.0, final_strain, points), 1)
    return float(tab[tab[:, 1] >= 0.75 * tab[-1, 1], 2].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "mo")
    ap.add_argument("--rates", type=float, nargs="+", default=[7e4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dd_limiter.json")
    args = ap.parse_args()

    cfg = tomllib.loads((ROOT / "examples" / "mo" / "mo.toml").read_text())["dd"]["run"]
    for k in ("study", "drag_probe", "range_probe", "realisations"):
        cfg.pop(k, None)
    material = read_properties(args.run_dir / "properties")
    law = load_mobility(args.run_dir / "mobility", out_of_range="clamp")
    rows, by_rate = [], []
    for rate in args.rates:
        flows: dict[float, list[float]] = {0.8: [], 1.0: []}
        for seed in args.seeds:
            for q in (0.8, 1.0):
                st = DDSettings(**cfg | {"strain_rate_s": rate, "dt_quantile": q,
                                         "temperature_k": args.temperature,
                                         "out_of_range": "clamp"})
                t0 = time.perf_counter()
                res = st.run_realisation(material, law, seed=seed)
                wall = time.perf_counter() - t0
                tr = res["trace"]
                f = flow_stress(tr, st.final_strain, st.output_points)
                flows[q].append(f)
                row = {"rate_s": rate, "seed": seed, "dt_quantile": q, "flow_mpa": f,
                       "peak_mpa": float(tr[:, 2].max()), "steps": res["state"].n_steps,
                       "limited_moves": res["state"].n_limited,
                       "dislocations_end": res["state"].n, "wall_s": round(wall, 1)}
                rows.append(row)
                print(f"{rate:8.3g} /s seed {seed} q {q:.1f}: flow {f:6.2f} MPa, peak "
                      f"{row['peak_mpa']:6.1f}, {row['steps']} steps, "
                      f"{row['limited_moves']} limited moves, {row['dislocations_end']} "
                      f"dislocations, {wall:.0f} s", flush=True)
        f8, f1 = np.array(flows[0.8]), np.array(flows[1.0])
        d = f1 / f8 - 1.0
        rec = {"rate_s": rate, "flow_mpa_limited": f8.tolist(), "flow_mpa_exact": f1.tolist(),
               "rel_change": float(d.mean()),
               "rel_change_err": float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1
               else None,
               "realisation_rel_sd": float(f8.std(ddof=1) / f8.mean()) if f8.size > 1
               else None,
               "steps_ratio": float(np.mean([r["steps"] for r in rows if r["rate_s"] == rate
                                             and r["dt_quantile"] == 1.0])
                                    / np.mean([r["steps"] for r in rows if r["rate_s"] == rate
                                               and r["dt_quantile"] == 0.8]))}
        by_rate.append(rec)
        print(f"{rate:8.3g} /s: exact over limited flow stress {100 * rec['rel_change']:+.1f}"
              + (f" +- {100 * rec['rel_change_err']:.1f} %" if rec["rel_change_err"] else " %")
              + (f" (realisations' sd {100 * rec['realisation_rel_sd']:.1f} %)"
                 if rec["realisation_rel_sd"] else "")
              + f", {rec['steps_ratio']:.2f}x the steps", flush=True)
    out = {"settings": "examples/mo/mo.toml [dd.run] (no study), one realisation per row",
           "temperature_k": args.temperature, "rows": rows, "by_rate": by_rate,
           "reused": {"properties": artifact_record(args.run_dir / "properties", "Properties"),
                      "mobility": artifact_record(args.run_dir / "mobility", "MobilityLaw")},
           "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
