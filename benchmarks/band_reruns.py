"""Benchmark: does the FEM load band cover what a rerun gives?

The band (``workflows/band.py``) claims an uncertainty of the final load. A rerun of the
DD with other microstructures (another seed), the surrogate refitted to it and the FEM
solved again gives another final load; a band that is an honest error bar covers it.
This reruns the chain from the DD on for each ``--seeds`` value (the DD's ``seed``; its
realisations use seed, seed + 1, ...), starting each from a copy of a finished run
``--base`` (seed 0, e.g. the ``mo_chain`` benchmark's run directory), so the potential,
properties, glide and mobility are the base run's (listed under ``reused``; their times
are not measured here). It writes ``benchmarks/results/band_reruns.json``: each run's
final load, band, the loads of its two scaled solves, u and dL/df; the loads' spread;
and for every ordered pair (i, j) whether run i's band covers run j's load, for the
band as computed (k = ``coverage_factor``), for the run's ``rerun_interval_mpa`` (where a
rerun's load falls: √2 k u), for k = 1 and k = 2 (L ∓ k times the load's standard
uncertainty ``load_uncertainty_mpa``) and for the two solves' own loads (the band before
2026-12-04).

``--keep``: a seed's folder that exists is not copied afresh; the chain runs in it again,
so its stages whose code and inputs are unchanged are reused (listed under ``reused``,
their times not measured) and only what changed reruns (e.g. the band after a change to
``workflows/band.py``).

    .venv/bin/python benchmarks/band_reruns.py --base runs/mo_bench39 [--seeds 3 6] [--keep]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
from _machine import machine
from _reuse import record_reuse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def variant(settings: Path, seed: int) -> Path:
    """A copy of ``settings`` beside it (its relative paths still resolve) with
    ``[dd.run] seed = seed``."""
    text = settings.read_text()
    if "seed" in (tomllib.loads(text).get("dd", {}).get("run", {})):
        raise SystemExit(f"{settings}: [dd.run] sets seed already; give a file without it")
    new, n = re.subn(r"^\[dd\.run\][ \t]*$", f"[dd.run]\nseed = {seed}", text, count=1,
                     flags=re.M)
    if n != 1:
        raise SystemExit(f"{settings}: no [dd.run] table")
    out = settings.with_name(f".{settings.stem}_dd_seed{seed}.toml")
    out.write_text(new)
    return out


def band_of(run_dir: Path) -> dict:
    """The numbers of a run's band.json this benchmark compares."""
    b = json.loads((run_dir / "band" / "band.json").read_text())
    return {"final_load_mpa": b["final_load_mpa"], "band_mpa": b["fem_load_band_mpa"],
            "coverage_factor": b["coverage_factor"], "rel_uncertainty": b["rel_uncertainty"],
            "effective_dof": b.get("effective_dof"),
            "rerun_interval_mpa": b.get("rerun_interval_mpa"),
            "dload_dscale_mpa": b["dload_dscale_mpa"],
            "scaled_solve_loads_mpa": b.get("scaled_solve_loads_mpa"),
            "band_shares": b["band_shares"],
            "load_uncertainty_mpa": load_u(b),
            "fold_loads_mpa": b.get("fold_loads_mpa"),
            "sources_rel_u": {k: v.get("rel_u") for k, v in b["sources"].items()}}


def load_u(b: dict) -> float:
    """The load's standard uncertainty (MPa) of a band.json; one from before
    ``load_uncertainty_mpa`` was u·|dL/df|."""
    if b.get("load_uncertainty_mpa") is not None:
        return float(b["load_uncertainty_mpa"])
    return abs(float(b["dload_dscale_mpa"])) * float(b["rel_uncertainty"])


def covers(lo: float, hi: float, x: float) -> bool:
    return lo <= x <= hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="a finished run of --settings (seed 0)")
    ap.add_argument("--settings", default=str(ROOT / "examples" / "mo" / "mo.toml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 6])
    ap.add_argument("--work", default=str(ROOT / "runs" / "band_reruns"))
    ap.add_argument("--out", default=str(HERE / "results" / "band_reruns.json"))
    ap.add_argument("--keep", action="store_true",
                    help="run again in a seed's existing folder (reuse its current stages)")
    args = ap.parse_args()

    from scalebridge.workflows.chain import read_records

    base, work = Path(args.base), Path(args.work)
    if not (base / "band" / "band.json").is_file():
        raise SystemExit(f"{base}: no band/band.json (run the chain there first)")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SCALEBRIDGE_NO_PROGRESS"] = "1"
    exe = str(Path(sys.executable).parent / "scalebridge")
    runs = {0: {"run_dir": str(base), "measured": False, **band_of(base)}}
    reused: dict[str, dict] = {}
    for seed in args.seeds:
        d = work / f"seed{seed}"
        if not (args.keep and (d / "band" / "band.json").is_file()):
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(base, d, symlinks=True)
        toml = variant(Path(args.settings), seed)
        since = _dt.datetime.now(_dt.UTC).isoformat()
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([exe, "run", str(toml), "--run-dir", str(d), "--no-report"],
                                  env=env, cwd=ROOT)
        finally:
            toml.unlink(missing_ok=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise SystemExit(f"seed {seed}: the chain failed ({proc.returncode})")
        recs = read_records(d)
        reused[f"seed{seed}"] = {k: r for k, r in ((k, record_reuse(v, since))
                                                   for k, v in recs.items()) if r}
        runs[seed] = {"run_dir": str(d), "measured": True, "wall_seconds": round(wall, 1),
                      "stage_seconds": {k: v.get("seconds") for k, v in recs.items()
                                        if k not in reused[f"seed{seed}"]},
                      **band_of(d)}
        print(f"seed {seed}: final load {runs[seed]['final_load_mpa']:.2f} MPa, band "
              f"{[round(x, 2) for x in runs[seed]['band_mpa']]} ({wall:.0f} s)", flush=True)

    loads = {s: r["final_load_mpa"] for s, r in runs.items()}
    pairs = list(itertools.permutations(runs, 2))

    def coverage(interval) -> dict:
        hit = {f"{i}->{j}": covers(*interval(runs[i]), loads[j]) for i, j in pairs}
        return {"covered": sum(hit.values()), "pairs": len(hit), "each": hit}

    def linear(k: float):
        return lambda r: (r["final_load_mpa"] - k * r["load_uncertainty_mpa"],
                          r["final_load_mpa"] + k * r["load_uncertainty_mpa"])

    v = np.array(list(loads.values()))
    predicted = [r["load_uncertainty_mpa"] for r in runs.values()]
    out = {
        "settings": os.path.relpath(args.settings, ROOT), "base": str(base),
        "note": "seed 0 is --base, read here, not run (its times are the mo_chain "
                "benchmark's); the other seeds rerun the DD, surrogate, FEM and band from "
                "a copy of it: the stages before the DD are reused (listed)"
                + ("; --keep: each seed's folder from an earlier run of this benchmark was "
                   "run again, its stages that were current reused as well (listed), so "
                   "wall_seconds is that rerun's, not a full DD's" if args.keep else ""),
        "runs": {str(s): r for s, r in runs.items()},
        "final_loads_mpa": [loads[s] for s in runs],
        "final_load_sd_mpa": float(np.std(v, ddof=1)) if len(v) > 1 else None,
        "predicted_load_u_mpa": predicted,
        "coverage_band": coverage(lambda r: r["band_mpa"]),
        "coverage_rerun_interval": coverage(
            lambda r: r["rerun_interval_mpa"] or (float("nan"), float("nan"))),
        "coverage_k1": coverage(linear(1.0)),
        "coverage_k2": coverage(linear(2.0)),
        "coverage_scaled_solves": coverage(
            lambda r: (min(r["scaled_solve_loads_mpa"]), max(r["scaled_solve_loads_mpa"]))),
        "reused": reused,
        "machine": machine(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("final_loads_mpa", "final_load_sd_mpa",
                                          "predicted_load_u_mpa")}, indent=1))
    for k in ("coverage_band", "coverage_rerun_interval", "coverage_k1", "coverage_k2",
              "coverage_scaled_solves"):
        print(f"{k}: {out[k]['covered']} of {out[k]['pairs']} pairs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
