"""Benchmark: what the source nucleation rule does to the DD's stress-strain curve.

    nice -n 10 python benchmarks/dd_nucleation.py --run-dir runs/mo [--rates 1.5e5 7e4]

One realisation (seed 0) per (rate, rule) of the README example's ``[dd.run]``
(``examples/mo/mo.toml``) at 300 K, with the material (``<run-dir>/properties``) and the
mobility law (``<run-dir>/mobility``) of a finished chain run: **those two artifacts are
reused** (the benchmark names them and when they were made; it times only the DD).

Rules (``DDSettings.nucleation``):

* ``time``: a source above its strength fires after ``nucleation_time_ns`` (10 ns, the 2D
  DD convention, a typed assumption). At 10⁴-10⁵ /s the stress rises by μ ε̇ t_nuc
  (≈ 19 MPa per ns at 1.5·10⁵ /s) before the first source fires: an upper yield point.
* ``bow_out``: a source fires once its segment has glided half its Frank-Read length
  β μ b / τ_src at the MD mobility law's v(τ): the drag the MD measured sets the time.

Writes ``benchmarks/results/dd_nucleation.json``: per (rate, rule) the peak stress, the
flow stress (mean and std over the last 40 % of the strain), the DD steps, the
dislocations at the end and the wall time; the reused artifacts; machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import time
import tomllib
from pathlib import Path

import numpy as np
from _machine import machine
from _reuse import made_record
from scalebridge.artifacts import read_artifact
from scalebridge.dd_coupling.inputs import read_properties
from scalebridge.dd_coupling.mobility import load_mobility
from scalebridge.dd_coupling.simulate import DDSettings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "mo")
    ap.add_argument("--rates", type=float, nargs="+", default=[1.5e5, 7e4])
    ap.add_argument("--temperature", type=float, default=300.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dd_nucleation.json")
    args = ap.parse_args()

    cfg = tomllib.loads((ROOT / "examples" / "mo" / "mo.toml").read_text())["dd"]["run"]
    cfg.pop("study", None)
    material = read_properties(args.run_dir / "properties")
    law = load_mobility(args.run_dir / "mobility", out_of_range="clamp")
    rows = []
    for rate in args.rates:
        for rule in ("time", "bow_out"):
            st = DDSettings(**cfg | {"strain_rate_s": rate, "temperature_k": args.temperature,
                                     "nucleation": rule, "out_of_range": "clamp"})
            t0 = time.perf_counter()
            res = st.run_realisation(material, law, seed=0)
            wall = time.perf_counter() - t0
            tr = res["trace"]                      # time, strain, stress MPa, eps_p, rho, n
            eps, sig = tr[:, 1], tr[:, 2]
            tail = sig[eps >= 0.6 * eps[-1]]
            row = {"rate_s": rate, "nucleation": rule, "peak_mpa": float(sig.max()),
                   "strain_at_peak": float(eps[int(np.argmax(sig))]),
                   "flow_mpa": float(tail.mean()), "flow_std_mpa": float(tail.std()),
                   "steps": int(len(tr) - 1), "dislocations_end": int(tr[-1, 5]),
                   "plastic_strain_end": float(tr[-1, 3]), "wall_s": round(wall, 1)}
            rows.append(row)
            print(f"{rate:9.3g} /s  {rule:8s} peak {row['peak_mpa']:6.1f} MPa at "
                  f"eps {row['strain_at_peak']:.2e}, flow {row['flow_mpa']:5.1f} ± "
                  f"{row['flow_std_mpa']:4.1f} MPa, {row['steps']} steps, "
                  f"{row['dislocations_end']} dislocations, {wall:.0f} s", flush=True)
    out = {"settings": "examples/mo/mo.toml [dd.run], one realisation (seed 0) per row",
           "temperature_k": args.temperature, "rows": rows,
           "reused": {k: made_record(read_artifact(args.run_dir / k, kind=kind))
                      for k, kind in (("properties", "Properties"), ("mobility", "MobilityLaw"))},
           "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
