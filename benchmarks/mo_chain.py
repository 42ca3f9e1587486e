"""Benchmark: the README's main job (the Mo example) from an empty run directory.

Runs ``scalebridge run examples/mo/mo.toml --run-dir <dir>`` as a separate process (as a
user would), then reads the run's chain records and artifacts and writes
``benchmarks/results/mo_chain.json``: ``wall_seconds``, per-stage seconds, the headline
numbers of the report, each stage's verdict (``verdicts``), the FEM load band
(``fem_load_band_mpa``) with each source's share (``band_shares``), the machine and the
date.

    ./sb setup && .venv/bin/python benchmarks/mo_chain.py [--run-dir runs/mo_bench]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_model
from _reuse import record_reuse

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

#: Headline numbers per node (summary keys), when the artifact has them.
HEADLINES = {
    "dataset": ("n_frames",),
    "potential": ("models", "train_seconds", "energy_mae_mev_per_atom", "force_mae_ev_a",
                  "force_mae_ev_per_a"),
    "properties": ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa", "bulk_modulus_gpa",
                   "shear_modulus_gpa", "vacancy_formation_ev", "nve_drift_ev_per_atom_ps"),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=str(ROOT / "examples" / "mo" / "mo.toml"))
    ap.add_argument("--run-dir", default=str(ROOT / "runs" / "mo_bench"))
    ap.add_argument("--out", default=str(HERE / "results" / "mo_chain.json"))
    ap.add_argument("--keep", action="store_true", help="do not empty the run dir first "
                    "(resume; the stages already done are listed in the JSON and their "
                    "seconds come from their records)")
    args = ap.parse_args()

    from scalebridge.workflows.chain import read_records

    run_dir = Path(args.run_dir)
    if run_dir.exists() and not args.keep:
        shutil.rmtree(run_dir)
    already = sorted(read_records(run_dir)) if run_dir.exists() else []
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["SCALEBRIDGE_NO_PROGRESS"] = "1"
    venv_bin = Path(sys.executable).parent
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["LD_LIBRARY_PATH"] = f"{Path(sys.prefix) / 'lib'}{os.pathsep}" \
                             f"{env.get('LD_LIBRARY_PATH', '')}"
    cmd = [str(venv_bin / "scalebridge"), "run", args.settings, "--run-dir", str(run_dir)]
    print("running:", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    since = _dt.datetime.now(_dt.UTC).isoformat()
    proc = subprocess.run(cmd, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0

    records = read_records(run_dir)
    # a stage finished before this run started (--keep) was not timed now: null + record
    reused = {k: r for k, r in ((k, record_reuse(rec, since))
                                for k, rec in records.items()) if r}
    stages: dict[str, float | None] = {k: None if k in reused else r.get("seconds")
                                       for k, r in records.items()}
    headline: dict[str, dict] = {}
    for name, rec in records.items():
        mpath = Path(rec.get("artifact", run_dir / name)) / "manifest.json"
        if not mpath.is_file():
            continue
        summary = json.loads(mpath.read_text()).get("summary", {})
        keys = HEADLINES.get(name)
        headline[name] = ({k: summary[k] for k in keys if k in summary} if keys
                          else {k: v for k, v in summary.items()
                                if isinstance(v, (int, float, str, bool))})
    # issue 19: each stage's verdict, the FEM load band and its shares, DFT beside C_ij
    verdicts = {}
    if (run_dir / "verdicts.json").is_file():
        v = json.loads((run_dir / "verdicts.json").read_text())
        verdicts = {"overall": v.get("overall"), **v.get("by_stage", {})}
    band = headline.get("band", {})
    props = run_dir / "properties" / "properties.json"
    if props.is_file() and "properties" in headline:
        dft = json.loads(props.read_text()).get("dft") or {}
        headline["properties"]["dft"] = {k: dft.get(k) for k in
                                         ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa")}
    surr = run_dir / "surrogate" / "surrogate.json"
    if surr.is_file() and "surrogate" in headline:   # the held-out error the verdict grades
        rec = json.loads(surr.read_text())
        val = (rec.get("metrics") or {}).get("validation") or {}
        headline["surrogate"]["validation_rmse_mpa"] = val.get("rmse_mpa")
        headline["surrogate"]["overstress"] = rec.get("overstress")
        h = (rec.get("metrics") or {}).get("heldout_vs_scatter")
        if h:   # the ratio with the interval another choice of held-out paths gives
            headline["surrogate"]["heldout_vs_scatter"] = {
                k: h[k] for k in ("ratio", "low", "high", "level", "paths", "per_path",
                                  "training_mean_ratio", "training_mean_per_path",
                                  "another_realisation_ratio",
                                  "another_realisation_interval") if k in h}
        folds = (rec.get("metrics") or {}).get("heldout_folds")
        if folds:   # each microstructure held out in turn: the ratio's spread over them
            headline["surrogate"]["heldout_folds"] = folds
    band_mpath = run_dir / "band" / "manifest.json"
    if band_mpath.is_file():
        band = json.loads(band_mpath.read_text()).get("summary", {})
    out = {
        "settings": os.path.relpath(args.settings, ROOT),
        "command": "scalebridge run examples/mo/mo.toml --run-dir <empty dir>",
        "returncode": proc.returncode,
        "wall_seconds": round(wall, 1),
        "stage_seconds": stages,
        "stage_seconds_total": round(sum(v for v in stages.values() if v), 1),
        "already_done_at_start": already,
        "reused": reused,
        "headline": headline,
        "verdicts": verdicts,
        "fem_load_band_mpa": band.get("fem_load_band_mpa"),
        "band_shares": band.get("band_shares"),
        "report": str(run_dir / "report.md"),
        "machine": {"cores": os.cpu_count(), "cpu": cpu_model(),
                    "host": platform.node(),
                    "load_average_at_end": list(os.getloadavg()),
                    "omp_num_threads": env["OMP_NUM_THREADS"]},
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
