"""Benchmark: DeePMD training speed on each device, with the production recipe.

    python benchmarks/potentials_device.py --device cuda [--steps 3000] [--threads 2]

Trains the configuration of ``potentials_mlearn.py`` (se_e2_a, float32, the whole mlearn
Mo training set of ``examples/mo/data``, automatic batch size) for ``--steps`` steps on
``--device`` through :class:`~scalebridge.potentials.TrainSettings` (the product path:
``Resources.device``), without compression, refit or evaluation, and records:

* ``ms_per_step``: the steady rate, DeePMD's own average over every display interval
  but the first (start-up, data loading and the first steps' compilation left out);
  ``train_seconds``: the whole ``dp train`` with its start-up;
* ``computing_device`` as DeePMD's start-up summary names it, and ``train_device``;
* the last learning-curve row (one seed, but torch's CPU and CUDA generators draw
  different initial weights from it: the devices' losses are not expected to agree);
* ``hours_for_production_steps``: the production recipe's step count at that rate.

Each device's run is merged into ``benchmarks/results/potentials_device.json`` under its
device name; machine and date per run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path

import torch
from _machine import machine
from potentials_mlearn import TRAIN
from scalebridge.potentials import IngestSettings, TrainSettings
from scalebridge.runtime import torch_device
from scalebridge.settings import Resources

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "examples" / "mo" / "data" / "training.json"
RESULT = HERE / "results" / "potentials_device.json"


def steady_ms_per_step(train_log: Path) -> float:
    """Milliseconds per step in steady state: DeePMD's own "average training time: T
    s/batch (N batches excluded)" line, which leaves out the first display interval."""
    m = re.search(r"average training time: ([\d.eE+-]+) s/batch", train_log.read_text())
    if m is None:
        raise SystemExit(f"{train_log}: no 'average training time' line; more --steps")
    return 1e3 * float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads for dp")
    ap.add_argument("--run-dir", default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--out", default=str(RESULT))
    args = ap.parse_args()
    device = torch_device(args.device)
    disp = 500
    work = Path(args.run_dir or tempfile.mkdtemp(prefix="sb_potdev_"))
    ds = IngestSettings(type_map=["Mo"], validation_fraction=0.0, test_fraction=0.0,
                        seed=0).make([DATA], work / "dataset")
    cfg = {**TRAIN, "steps": args.steps, "disp_freq": disp, "compress": False,
           "refit_output_layer": False, "evaluate": False}
    art = TrainSettings.model_validate(cfg).make(
        ds, work / f"potential_{device}", Resources(threads=args.threads, device=args.device))
    log = (art.path / "train.log")
    named = re.search(r"computing device\W+(\w+)", log.read_text(), re.IGNORECASE)
    ms = steady_ms_per_step(log)
    lines = (art.path / "train" / "model_0" / "lcurve.out").read_text().splitlines()
    lc = [ln.split() for ln in lines if not ln.startswith("#")]
    header = next(ln for ln in lines if ln.startswith("#")).lstrip("# ").split()
    rec = {"train_device": art.summary["train_device"],
           "computing_device": named.group(1).upper() if named else None,
           "steps": args.steps, "threads": args.threads, "ms_per_step": round(ms, 3),
           "train_seconds": art.summary["train_seconds"],
           "hours_for_production_steps": round(ms * TRAIN["steps"] / 3.6e6, 3),
           "production_steps": TRAIN["steps"],
           "last_lcurve": dict(zip(header, map(float, lc[-1]), strict=False)),
           "torch": torch.__version__, "machine": machine(),
           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    out = Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc.setdefault("what", "DeePMD training, the potentials_mlearn configuration (se_e2_a, "
                   "float32, whole mlearn Mo training set), ms per step in steady state")
    doc.setdefault("runs", {})[device] = rec
    runs = doc["runs"]
    if "cpu" in runs and "cuda" in runs:
        doc["cuda_over_cpu_run_speedup"] = round(  # each run on its own machine
            runs["cpu"]["ms_per_step"] / runs["cuda"]["ms_per_step"], 2)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
