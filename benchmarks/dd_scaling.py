"""Benchmark: wall time per DD step vs number of dislocations, and neural/analytic cost.

    nice -n 10 python benchmarks/dd_scaling.py [--threads 2] [--nmax 10000]

Random Burgers-neutral dislocations on three slip systems at a fixed density (the cell
grows with N), no sources or obstacles; each step is the full engine step (periodic
field with ±1 image rows, mobility, obstacles, annihilation). Writes
``benchmarks/results/dd_scaling.json``: ``n``, ``seconds_per_step``, ``exponent`` (log-log
slope against the dislocation count ``n_actual``, for N ≥ 1000), ``neural_over_analytic``
(time per step with a fitted neural law over the drag law it was fitted to, same
configuration; ``neural_over_analytic_full_run``: a complete small DD run with each),
machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from scalebridge.dd_coupling.engine import step
from scalebridge.dd_coupling.fit import FitMobilitySettings, fit_neural
from scalebridge.dd_coupling.inputs import Material, VelocityTable
from scalebridge.dd_coupling.mobility import LinearDragMobility
from scalebridge.dd_coupling.simulate import DDSettings

MAT = Material(mu_pa=125e9, nu=0.3, b_m=2.73e-10, source="benchmark (Mo-like)")
DENSITY = 1e14


def configuration(n: int, law, seed: int = 0):
    lx, ly = DDSettings(cell_lx_um=1.0).cell()
    lx_um = math.sqrt(n / DENSITY / (ly / lx)) * 1e6     # area n / DENSITY
    s = DDSettings(cell_lx_um=lx_um, initial_density_m2=DENSITY, source_density_m2=0.0,
                   obstacle_density_m2=0.0, loading="strain", strain_rate_s=1e4)
    geom, state = s.geometry(MAT, seed)
    return geom, s.params(MAT, law), state


def time_steps(n: int, law, steps: int) -> tuple[float, int]:
    geom, params, state = configuration(n, law)
    state = step(geom, params, state)                   # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        state = step(geom, params, state)
    return (time.perf_counter() - t0) / steps, state.n


def fitted_neural(drag: LinearDragMobility):
    """A neural law fitted to samples of the drag law (clamped outside its range)."""
    tau = np.linspace(-500e6, 500e6, 41)
    tau = tau[tau != 0]
    v = np.asarray(drag.velocity(tau, 300.0, 0))
    t = VelocityTable(np.zeros(len(tau), int), np.full(len(tau), 300.0), tau, v,
                      0.02 * np.abs(v) + 1.0, "drag samples")
    law = fit_neural(t, FitMobilitySettings(members=4, epochs=300, out_of_range="clamp"))
    return law


def full_run_seconds(law, workdir: Path) -> tuple[float, dict]:
    """Wall time of a complete small DDSettings run (sources, obstacles, 1 realisation)
    with ``law``; the material comes from a Properties artifact as in the chain."""
    from scalebridge.artifacts import produce
    from scalebridge.dd_coupling.mobility import save_mobility

    def props(work: Path) -> dict:
        (work / "properties.json").write_text(json.dumps({
            "shear_modulus_gpa": MAT.mu_pa * 1e-9, "poisson_ratio": MAT.nu,
            "burgers_a": MAT.b_m * 1e10}))
        return {}

    prop = produce("Properties", workdir / "props", {"b": MAT.b_m}, {}, props)
    mob = produce("MobilityLaw", workdir / f"mob_{law.name}", {"law": law.name}, {},
                  lambda w: save_mobility(law, w) and {})
    s = DDSettings(cell_lx_um=0.7, realisations=1, final_strain=1.5e-3)
    t0 = time.perf_counter()
    art = s.make(mob, prop, workdir / f"dd_{law.name}", force=True)
    return time.perf_counter() - t0, art.summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the shared 2-core machine is oversubscribed, "
                    "2 threads ran 30x slower there)")
    ap.add_argument("--nmax", type=int, default=10000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dd_scaling.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    drag = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5, saturation_m_s=3000.0)
    ns = [n for n in (100, 300, 1000, 3000, 10000) if n <= args.nmax]
    sec, actual = [], []
    for n in ns:
        steps = 20 if n <= 300 else (5 if n <= 3000 else 2)
        t, n_act = time_steps(n, drag, steps)
        sec.append(t)
        actual.append(n_act)
        print(f"N={n:6d} ({n_act} after step) {t * 1e3:10.2f} ms/step", flush=True)
    big = [i for i, n in enumerate(ns) if n >= 1000] or list(range(len(ns)))
    slope = float(np.polyfit(np.log([actual[i] for i in big]),
                             np.log([sec[i] for i in big]), 1)[0])
    slope_all = float(np.polyfit(np.log(actual), np.log(sec), 1)[0])
    neural = fitted_neural(drag)
    ratios = {}
    for n in (100, 1000):
        ta, _ = time_steps(n, drag, 10 if n > 100 else 40)
        tn, _ = time_steps(n, neural, 10 if n > 100 else 40)
        ratios[n] = tn / ta
        print(f"N={n}: neural {tn * 1e3:.2f} ms/step, analytic {ta * 1e3:.2f} ms/step, "
              f"ratio {tn / ta:.3f}", flush=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t_an, sum_an = full_run_seconds(drag, Path(tmp))
        t_ne, sum_ne = full_run_seconds(neural, Path(tmp))
    print(f"full run: neural {t_ne:.1f} s ({sum_ne['steps']} steps), analytic {t_an:.1f} s "
          f"({sum_an['steps']} steps), ratio {t_ne / t_an:.3f}", flush=True)
    doc = {
        "n": ns, "seconds_per_step": sec, "n_actual": actual,
        "exponent": slope, "exponent_all_n": slope_all,
        "neural_over_analytic": ratios[1000], "neural_over_analytic_by_n": ratios,
        "neural_over_analytic_full_run": t_ne / t_an,
        "full_run": {"analytic_s": t_an, "neural_s": t_ne, "analytic_steps": sum_an["steps"],
                     "neural_steps": sum_ne["steps"],
                     "analytic_flow_stress_mpa": sum_an["flow_stress_mpa"],
                     "neural_flow_stress_mpa": sum_ne["flow_stress_mpa"]},
        "density_m2": DENSITY, "image_rows": 1, "threads": args.threads,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "load_average_at_end": os.getloadavg()},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "note": "shared 2-core machine with other jobs running: absolute times are noisy, "
                "the exponent and the ratio are the quantities to read",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("n", "seconds_per_step", "exponent",
                                          "neural_over_analytic")}))


if __name__ == "__main__":
    main()
