"""Benchmark: wall time per DD step vs number of dislocations, field accuracy, and the
neural/analytic mobility cost.

    nice -n 10 python benchmarks/dd_scaling.py [--threads 2] [--nmax 100000] [--device auto]

Random Burgers-neutral dislocations on three slip systems at a fixed density (the cell
grows with N), no sources or obstacles; each step is the full engine step (internal field,
junction neighbours, mobility, obstacles, annihilation) with the engine's defaults
(``field="auto"``: direct sum up to 300 × 300 pairs, particle mesh above; float32 mesh
arithmetic). Writes ``benchmarks/results/dd_scaling.json``:

* ``n``, ``n_actual`` (after the timed steps), ``seconds_per_step``, ``field_method``;
* ``exponent``: log-log slope of seconds_per_step against n_actual for N ≥ 1000;
* ``field_seconds``: the internal field alone (dislocations on themselves), particle mesh
  ("ewald") and direct sum (1 image row, the previous engine default; up to 10⁴);
* ``field_rel_error``: resolved shear of the particle mesh (float32 and float64) against
  the direct sum with 4 (N = 10³) or 3 (N = 10⁴) image rows, converged to ~1e-9:
  ``max_norm = max|Δτ| / max|τ|`` and ``per_dislocation = max(|Δτ_i| / max(|τ_i|,
  rms τ))``; ``direct_1_row`` is the same measure for the previous default (1 row);
* ``neural_over_analytic``: time per step with a fitted neural law over the drag law it
  was fitted to (same configuration, N = 1000; ``_by_n`` also N = 100;
  ``_full_run``: a complete small DD run with each);
* machine (benchmarks/_machine.py), load average at start and end, date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from _machine import machine
from scalebridge.dd_coupling.elastic import periodic_field, resolved_shear
from scalebridge.dd_coupling.engine import (
    DIRECT_MAX_PAIRS,
    burgers,
    geometry_on,
    positions,
    step,
)
from scalebridge.dd_coupling.field import ewald_field, make_plan
from scalebridge.dd_coupling.fit import FitMobilitySettings, fit_neural
from scalebridge.dd_coupling.inputs import Material, VelocityTable
from scalebridge.dd_coupling.mobility import LinearDragMobility
from scalebridge.dd_coupling.simulate import DDSettings

MAT = Material(mu_pa=125e9, nu=0.3, b_m=2.73e-10, source="benchmark (Mo-like)")
DENSITY = 1e14


def configuration(n: int, law, seed: int = 0, device: str = "auto"):
    lx, ly = DDSettings(cell_lx_um=1.0).cell()
    lx_um = math.sqrt(n / DENSITY / (ly / lx)) * 1e6     # area n / DENSITY
    s = DDSettings(cell_lx_um=lx_um, initial_density_m2=DENSITY, source_density_m2=0.0,
                   obstacle_density_m2=0.0, loading="strain", strain_rate_s=1e4)
    geom, state = s.geometry(MAT, seed)
    params = s.params(MAT, law)
    params.device = device
    from scalebridge.dd_coupling.engine import init
    return geom, params, init(geom, state.plane, state.s, state.sign, params=params)


def _sync(device: str) -> None:
    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


def time_steps(n: int, law, steps: int, device: str) -> tuple[float, int]:
    geom, params, state = configuration(n, law, device=device)
    state = step(geom, params, state)                   # warm-up
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        state = step(geom, params, state)
    _sync(device)
    return (time.perf_counter() - t0) / steps, state.n


def field_inputs(n: int, device: str = "cpu"):
    geom, _, state = configuration(n, LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5),
                                        device=device)
    geom = geometry_on(geom, state.s.device)
    pos = positions(geom, state.plane, state.s)
    b = MAT.b_m * burgers(geom, state.plane, state.sign)
    th = geom.angles[geom.plane_system[state.plane]]
    return geom.lx, geom.ly, pos, b, th


def field_seconds(n: int, method: str, device: str, repeat: int = 2) -> float:
    lx, ly, pos, b, _ = field_inputs(n, device)
    best = math.inf
    for _ in range(repeat):
        _sync(device)
        t0 = time.perf_counter()
        if method == "ewald":
            ewald_field(pos, pos, b, MAT.mu_pa, MAT.nu, lx, ly, nearest=True, with_s1=False,
                        dtype=torch.float32)
        else:
            periodic_field(pos, pos, b, MAT.mu_pa, MAT.nu, lx, ly, rows=1, nearest=True)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def field_errors(n: int) -> dict:
    """Resolved shear of the mesh against the converged direct sum (see the docstring)."""
    lx, ly, pos, b, th = field_inputs(n)
    rows = 4 if n <= 2000 else 3
    t0 = time.perf_counter()
    ref = resolved_shear(periodic_field(pos, pos, b, MAT.mu_pa, MAT.nu, lx, ly, rows=rows)[1],
                         th)
    t_ref = time.perf_counter() - t0
    rms = float(ref.pow(2).mean().sqrt())

    def measure(tau: torch.Tensor) -> dict:
        err = (tau - ref).abs()
        return {"max_norm": float(err.max() / ref.abs().max()),
                "per_dislocation": float((err / ref.abs().clamp(min=rms)).max()),
                "rms_norm": float(err.pow(2).mean().sqrt() / rms)}

    out = {"n": int(pos.shape[0]), "reference_rows": rows, "reference_seconds": t_ref,
           "max_over_rms_stress": float(ref.abs().max()) / rms}
    for name, dtype in (("ewald_float32", torch.float32), ("ewald_float64", torch.float64)):
        s2 = ewald_field(pos, pos, b, MAT.mu_pa, MAT.nu, lx, ly, with_s1=False, dtype=dtype)[1]
        out[name] = measure(resolved_shear(s2, th))
    out["direct_1_row"] = measure(resolved_shear(
        periodic_field(pos, pos, b, MAT.mu_pa, MAT.nu, lx, ly, rows=1)[1], th))
    out["plan"] = make_plan(int(pos.shape[0]), lx, ly).__dict__
    return out


def fitted_neural(drag: LinearDragMobility):
    """A neural law fitted to samples of the drag law (clamped outside its range)."""
    tau = np.linspace(-500e6, 500e6, 41)
    tau = tau[tau != 0]
    v = np.asarray(drag.velocity(tau, 300.0, 0))
    t = VelocityTable(np.zeros(len(tau), int), np.full(len(tau), 300.0), tau, v,
                      0.02 * np.abs(v) + 1.0, "drag samples")
    return fit_neural(t, FitMobilitySettings(members=4, epochs=300, out_of_range="clamp"))


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
    s = DDSettings(cell_lx_um=0.7, realisations=1, final_strain=1.5e-3,
                   allow_failed_checks=True)
    t0 = time.perf_counter()
    art = s.make(mob, prop, workdir / f"dd_{law.name}", force=True)
    return time.perf_counter() - t0, art.summary


def note(load_start: tuple[float, ...], load_end: tuple[float, ...], cores: int) -> str:
    """How loaded the machine was: the 1-minute load average before this script started
    working is other jobs' (at the end it includes this script's own threads)."""
    if load_start[0] < 0.15 * cores:      # e.g. 0.3 on 2 cores: nothing else ran
        return (f"quiet machine: 1-min load average {load_start[0]:.2f} on {cores} cores "
                "at the start")
    return (f"shared machine: other jobs held a 1-min load average of {load_start[0]:.2f} "
            f"(5-min {load_start[1]:.2f}) on {cores} cores when this started, "
            f"{load_end[0]:.2f} at the end with it; absolute times are inflated, rerun on "
            "a quiet machine for them; the exponent, the ratios and the errors hold")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--nmax", type=int, default=100000)
    ap.add_argument("--device", default="auto", help="engine device (auto: cuda if any)")
    ap.add_argument("--skip-errors", action="store_true",
                    help="skip field_rel_error (the N = 10⁴ direct reference is minutes)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "dd_scaling.json"))
    args = ap.parse_args()
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    from scalebridge.dd_coupling.engine import resolve_device
    device = str(resolve_device(args.device))
    drag = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5, saturation_m_s=3000.0)
    ns = [n for n in (100, 300, 1000, 3000, 10000, 30000, 100000) if n <= args.nmax]
    sec, actual, methods = [], [], []
    for n in ns:
        steps = 20 if n <= 300 else (5 if n <= 3000 else (3 if n <= 30000 else 2))
        t, n_act = time_steps(n, drag, steps, device)
        sec.append(t)
        actual.append(n_act)
        methods.append("direct" if n * n <= DIRECT_MAX_PAIRS else "ewald")
        print(f"N={n:6d} ({n_act} after) {t * 1e3:10.2f} ms/step  field {methods[-1]}",
              flush=True)
    big = [i for i, n in enumerate(ns) if n >= 1000] or list(range(len(ns)))
    slope = float(np.polyfit(np.log([actual[i] for i in big]),
                             np.log([sec[i] for i in big]), 1)[0])
    slope_all = float(np.polyfit(np.log(actual), np.log(sec), 1)[0])
    fsec: dict[str, dict[str, float]] = {"ewald": {}, "direct": {}}
    for n in ns:
        fsec["ewald"][str(n)] = field_seconds(n, "ewald", device)
        if n <= 10000:
            fsec["direct"][str(n)] = field_seconds(n, "direct", device, 1 if n > 3000 else 2)
        print(f"field N={n}: ewald {fsec['ewald'][str(n)] * 1e3:.1f} ms, direct "
              f"{fsec['direct'].get(str(n), math.nan) * 1e3:.1f} ms", flush=True)
    errs = {}
    if not args.skip_errors:
        for n in (1000, 10000):
            if n <= args.nmax:
                errs[str(n)] = field_errors(n)
                print(f"field error N={n}: " + json.dumps(
                    {k: v for k, v in errs[str(n)].items() if k.startswith(("ewald", "direct"))}),
                    flush=True)
    neural = fitted_neural(drag)
    ratios = {}
    for n in (100, 1000):
        ta, _ = time_steps(n, drag, 10 if n > 100 else 40, device)
        tn, _ = time_steps(n, neural, 10 if n > 100 else 40, device)
        ratios[n] = tn / ta
        print(f"N={n}: neural {tn * 1e3:.2f} ms/step, analytic {ta * 1e3:.2f} ms/step, "
              f"ratio {tn / ta:.3f}", flush=True)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t_an, sum_an = full_run_seconds(drag, Path(tmp))
        t_ne, sum_ne = full_run_seconds(neural, Path(tmp))
    print(f"full run: neural {t_ne:.1f} s ({sum_ne['steps']} steps), analytic {t_an:.1f} s "
          f"({sum_an['steps']} steps), ratio {t_ne / t_an:.3f}", flush=True)
    load_end = os.getloadavg()
    cores = os.cpu_count() or 1
    doc = {
        "n": ns, "seconds_per_step": sec, "n_actual": actual, "field_method": methods,
        "exponent": slope, "exponent_all_n": slope_all,
        "goals": {"seconds_per_step_1e4": 0.5, "seconds_per_step_1e5": 5.0,
                  "exponent_max": 1.2, "field_rel_error_max": 1e-4},
        "field_seconds": fsec, "field_rel_error": errs,
        "neural_over_analytic": ratios[1000], "neural_over_analytic_by_n": ratios,
        "neural_over_analytic_full_run": t_ne / t_an,
        "full_run": {"analytic_s": t_an, "neural_s": t_ne, "analytic_steps": sum_an["steps"],
                     "neural_steps": sum_ne["steps"],
                     "analytic_flow_stress_mpa": sum_an["flow_stress_mpa"],
                     "neural_flow_stress_mpa": sum_ne["flow_stress_mpa"]},
        "density_m2": DENSITY, "threads": args.threads, "device": device,
        "machine": {**machine(), "torch": torch.__version__,
                    "load_average_at_start": load_start},
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "note": note(load_start, load_end, cores),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: doc[k] for k in ("n", "seconds_per_step", "exponent",
                                          "neural_over_analytic")}))


if __name__ == "__main__":
    main()
