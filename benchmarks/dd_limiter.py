"""Benchmark: what the DD's displacement limiter does to its flow stress.

    nice -n 10 python benchmarks/dd_limiter.py --run-dir runs/mo [--rates 7e4] [--seeds 0 1 2]
        [--variants exact_fine --merge]   (one variant again, the others' rows kept)

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
the law does there), and 1.0 at half the glide per step (``exact_fine``: whether the DD
is converged in its time step; ``exact_fine_ct`` with c_t beyond the range), with the
material (``<run-dir>/properties``) and the mobility law
(``<run-dir>/mobility``) of a finished chain run: **those two artifacts are reused**
(named below with when they were made; only the DD is timed). Two runs at a time, one per
core.

Writes ``benchmarks/results/dd_limiter.json``: per (rate, seed, quantile) the flow stress
(the DD's: mean over the last quarter of the strain on the output grid), the peak
stress, steps, limited moves, dislocations at the end and the wall time; per rate the
paired relative changes of the flow stress (exact over limited; exact_ct over exact;
exact_fine over exact) with
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


#: variant -> (dt_quantile, max_glide_b over the example's); ``exact_fine``: exact stepping
#: at half the glide per step, whether the DD is converged in its step
VARIANTS = {"limited": (0.8, 1.0), "exact": (1.0, 1.0), "exact_ct": (1.0, 1.0),
            "exact_fine": (1.0, 0.5), "exact_fine_ct": (1.0, 0.5)}


def run_one(task: dict) -> dict:
    """One realisation: ``task`` = cfg, run_dir, rate, seed, variant, temperature."""
    import torch

    torch.set_num_threads(1)
    material = read_properties(task["run_dir"] / "properties")
    law = load_mobility(task["run_dir"] / "mobility", out_of_range="clamp")
    if task["variant"].endswith("_ct"):
        law = LimitSpeedMobility(law, limiting_speeds(task["run_dir"] / "properties")["m_s"])
    q, glide = VARIANTS[task["variant"]]
    st = DDSettings(**task["cfg"] | {"strain_rate_s": task["rate"],
                                     "dt_quantile": q,
                                     "max_glide_b": glide * task["cfg"].get(
                                         "max_glide_b",
                                         DDSettings.model_fields["max_glide_b"].default),
                                     "temperature_k": task["temperature"],
                                     "out_of_range": "clamp"})
    t0 = time.perf_counter()
    res = st.run_realisation(material, law, seed=task["seed"])
    wall = time.perf_counter() - t0
    tr = res["trace"]
    return {"rate_s": task["rate"], "seed": task["seed"], "variant": task["variant"],
            "dt_quantile": st.dt_quantile, "max_glide_b": st.max_glide_b,
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
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the other variants from --out (measured earlier "
                    "on the same reused artifacts: each row says when)")
    args = ap.parse_args()
    kept: list[dict] = []
    if args.merge and args.out.exists():
        old = json.loads(args.out.read_text())
        when = old.get("date")
        kept = [r | {"measured": r.get("measured", when)} for r in old["rows"]
                if r["variant"] not in args.variants]

    cfg = tomllib.loads((ROOT / "examples" / "mo" / "mo.toml").read_text())["dd"]["run"]
    for k in ("study", "drag_probe", "range_probe", "realisations"):
        cfg.pop(k, None)
    tasks = [{"cfg": cfg, "run_dir": args.run_dir.resolve(), "rate": r, "seed": s,
              "variant": v, "temperature": args.temperature}
             for r in args.rates for s in args.seeds for v in args.variants]
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(run_one, tasks):
            row["measured"] = now
            rows.append(row)
            print(f"{row['rate_s']:8.3g} /s seed {row['seed']} {row['variant']:8s}: flow "
                  f"{row['flow_mpa']:6.2f} MPa, peak {row['peak_mpa']:6.1f}, {row['steps']} "
                  f"steps, {row['limited_moves']} limited moves, "
                  f"{100 * row['out_of_range_fraction']:.2f} % beyond the range, "
                  f"{row['wall_s']:.0f} s", flush=True)
    rows = kept + rows
    by_rate = []
    for rate in args.rates:
        got = [v for v in VARIANTS if any(r["variant"] == v for r in rows)]
        # paired by seed: the seeds every variant ran
        seeds = sorted(set.intersection(*({r["seed"] for r in rows if r["rate_s"] == rate
                                           and r["variant"] == v} for v in got)))
        pick = {v: {r["seed"]: r for r in rows if r["rate_s"] == rate and r["variant"] == v}
                for v in got}
        f = {v: np.array([pick[v][s]["flow_mpa"] for s in seeds]) for v in got}
        steps = {v: float(np.mean([pick[v][s]["steps"] for s in seeds])) for v in got}
        rec = {"rate_s": rate, "seeds": seeds, **{f"flow_mpa_{v}": f[v].tolist() for v in got},
               "realisation_rel_sd": {v: float(f[v].std(ddof=1) / f[v].mean())
                                      for v in got} if len(seeds) > 1 else None}
        comparisons = (("limiter", "limited", "exact", "exact over limited"),
                       ("c_t_exact", "exact", "exact_ct", "c_t over clamp, exact stepping"),
                       ("step_convergence", "exact", "exact_fine",
                        "exact stepping, half the glide per step over the full"),
                       ("c_t_exact_fine", "exact_fine", "exact_fine_ct",
                        "c_t over clamp, exact stepping at half the glide per step"))
        for key, a, b, _ in comparisons:
            if a in f and b in f:
                rec[key] = paired(f[a], f[b])
                rec[f"steps_ratio_{b}_over_{a}"] = steps[b] / steps[a]
        by_rate.append(rec)
        for key, _, _, what in comparisons:
            if key not in rec:
                continue
            p = rec[key]
            print(f"{rate:8.3g} /s: {what}: flow stress {100 * p['rel_change']:+.1f}"
                  + (f" +- {100 * p['rel_change_err']:.1f} %" if p["rel_change_err"] else " %"),
                  flush=True)
        print(f"{rate:8.3g} /s: realisations' relative sd {rec['realisation_rel_sd']}; step "
              "ratios " + ", ".join(f"{k[12:]} {v:.2f}" for k, v in rec.items()
                                    if k.startswith("steps_ratio_")), flush=True)
    out = {"settings": "examples/mo/mo.toml [dd.run] (no study), one realisation per row",
           "temperature_k": args.temperature, "rows": rows, "by_rate": by_rate,
           "note": "two realisations ran at a time (one per core); wall_s is each one's own; "
                   "each row's 'measured' says when it ran (with --merge, rows of variants "
                   "not rerun are kept from the earlier run on the same reused artifacts)",
           "reused": {k: made_record(read_artifact(args.run_dir / k, kind=kind))
                      for k, kind in (("properties", "Properties"), ("mobility", "MobilityLaw"))},
           "machine": machine(), "date": now}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
