"""Benchmark: what the DD's displacement limiter does to its flow stress.

    nice -n 10 python benchmarks/dd_limiter.py --run-dir runs/mo [--rates 7e4] [--seeds 0 1 2]

The DD steps with ``dt = max_glide / q(|v|)``, ``q`` the ``dt_quantile`` of the mobile
dislocations' speeds (0.8 by default and in the README example): the fastest 20 % move
``max_glide`` per step instead of ``v dt``, a displacement limiter that keeps the step
count down. Those fastest dislocations, the ones an avalanche's stress drives, then glide
at the 80th percentile's speed, not at the MD mobility law's: the limiter, not the MD,
sets their velocity. This runs the README example's ``[dd.run]`` (``examples/mo/mo.toml``)
at the given rates and 300 K, each seed three ways: ``dt_quantile`` 0.8 (``limited``, the
example's), 1.0 (``exact``: every dislocation at its law's velocity), and 1.0 with every
evaluation beyond the law's stress range at the sound speed c_t instead of clamped
(``exact_ct``: the DD's range probe without the limiter, which in the example hides what
the law does there), with the material (``<run-dir>/properties``) and the mobility law
(``<run-dir>/mobility``) of a finished chain run: **those two artifacts are reused**
(named below with when they were made; only the DD is timed). Two runs at a time, one per
core.

Writes ``benchmarks/results/dd_limiter.json``: per (rate, seed, quantile) the flow stress
(the DD's: mean over the last quarter of the strain on the output grid), the peak
stress, steps, limited moves, dislocations at the end and the wall time; per rate the
paired relative changes of the flow stress (exact over limited; exact_ct over exact) with
their standard errors, beside the realisations' own relative sd; the reused artifacts;
machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from _machine import machine
from _reuse import made_record
from scalebridge.artifacts import read_artifact
from scalebridge.dd_coupling.inputs import read_properties
from scalebridge.dd_coupling.mobility import LimitSpeedMobility, load_mobility
from scalebridge.dd_coupling.simulate import (
    DDSettings,
    limiting_speeds,
    resample,
    tail_mean,
)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def flow_stress(trace: np.ndarray, final_strain: float, points: int) -> float:
    """The DD's flow stress (MPa): the trace on its output grid, ``tail_mean`` as the
    DD's summary takes it."""
    return tail_mean(resample(trace, np.linspace(0.0, final_strain, points), 1), 2)


VARIANTS = {"limited": 0.8, "exact": 1.0, "exact_ct": 1.0}


def run_one(task: dict) -> dict:
    """One realisation: ``task`` = cfg, run_dir, rate, seed, variant, temperature."""
    import torch

    torch.set_num_threads(1)
    material = read_properties(task["run_dir"] / "properties")
    law = load_mobility(task["run_dir"] / "mobility", out_of_range="clamp")
    if task["variant"] == "exact_ct":
        law = LimitSpeedMobility(law, limiting_speeds(task["run_dir"] / "properties")["m_s"])
    st = DDSettings(**task["cfg"] | {"strain_rate_s": task["rate"],
                                     "dt_quantile": VARIANTS[task["variant"]],
                                     "temperature_k": task["temperature"],
                                     "out_of_range": "clamp"})
    t0 = time.perf_counter()
    res = st.run_realisation(material, law, seed=task["seed"])
    wall = time.perf_counter() - t0
    tr = res["trace"]
    return {"rate_s": task["rate"], "seed": task["seed"], "variant": task["variant"],
            "dt_quantile": st.dt_quantile,
            "flow_mpa": flow_stress(tr, st.final_strain, st.output_points),
            "peak_mpa": float(tr[:, 2].max()), "steps": res["state"].n_steps,
            "limited_moves": res["state"].n_limited, "dislocations_end": res["state"].n,
            "out_of_range_fraction": res["out_of_range_fraction"], "wall_s": round(wall, 1)}


def paired(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean and standard error of b/a − 1 over the pairs."""
    d = b / a - 1.0
    return {"rel_change": float(d.mean()),
            "rel_change_err": float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1
            else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "mo")
    ap.add_argument("--rates", type=float, nargs="+", default=[7e4])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dd_limiter.json")
    args = ap.parse_args()

    cfg = tomllib.loads((ROOT / "examples" / "mo" / "mo.toml").read_text())["dd"]["run"]
    for k in ("study", "drag_probe", "range_probe", "realisations"):
        cfg.pop(k, None)
    tasks = [{"cfg": cfg, "run_dir": args.run_dir.resolve(), "rate": r, "seed": s,
              "variant": v, "temperature": args.temperature}
             for r in args.rates for s in args.seeds for v in VARIANTS]
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(run_one, tasks):
            rows.append(row)
            print(f"{row['rate_s']:8.3g} /s seed {row['seed']} {row['variant']:8s}: flow "
                  f"{row['flow_mpa']:6.2f} MPa, peak {row['peak_mpa']:6.1f}, {row['steps']} "
                  f"steps, {row['limited_moves']} limited moves, "
                  f"{100 * row['out_of_range_fraction']:.2f} % beyond the range, "
                  f"{row['wall_s']:.0f} s", flush=True)
    by_rate = []
    for rate in args.rates:
        f = {v: np.array([r["flow_mpa"] for r in rows if r["rate_s"] == rate
                          and r["variant"] == v]) for v in VARIANTS}
        steps = {v: np.mean([r["steps"] for r in rows if r["rate_s"] == rate
                             and r["variant"] == v]) for v in VARIANTS}
        rec = {"rate_s": rate, **{f"flow_mpa_{v}": f[v].tolist() for v in VARIANTS},
               "limiter": paired(f["limited"], f["exact"]),
               "c_t_exact": paired(f["exact"], f["exact_ct"]),
               "realisation_rel_sd": {v: float(f[v].std(ddof=1) / f[v].mean())
                                      for v in VARIANTS} if len(args.seeds) > 1 else None,
               "steps_ratio_exact": float(steps["exact"] / steps["limited"])}
        by_rate.append(rec)
        for key, what in (("limiter", "exact over limited"), ("c_t_exact", "c_t over clamp, "
                                                                          "exact stepping")):
            p = rec[key]
            print(f"{rate:8.3g} /s: {what}: flow stress {100 * p['rel_change']:+.1f}"
                  + (f" +- {100 * p['rel_change_err']:.1f} %" if p["rel_change_err"] else " %"),
                  flush=True)
        print(f"{rate:8.3g} /s: realisations' relative sd {rec['realisation_rel_sd']}, exact "
              f"stepping {rec['steps_ratio_exact']:.2f}x the steps", flush=True)
    out = {"settings": "examples/mo/mo.toml [dd.run] (no study), one realisation per row",
           "temperature_k": args.temperature, "rows": rows, "by_rate": by_rate,
           "note": "two realisations ran at a time (one per core); wall_s is each one's own",
           "reused": {k: made_record(read_artifact(args.run_dir / k, kind=kind))
                      for k, kind in (("properties", "Properties"), ("mobility", "MobilityLaw"))},
           "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
