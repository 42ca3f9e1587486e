"""Benchmark: when does the MD's drag B set the DD's flow stress?

    nice -n 10 python benchmarks/dd_drag_response.py --run-dir runs/mo [--seeds 0 1 2 3]
        [--factors 1 2 4 8 16 32 64 128 256 512]

The example's drag probe (B × 2 at the reference condition) moves the DD's flow stress
by dln σ/dln B ≈ 0, and the FEM band's mobility share is ~0.1 %. Is that the DD ignoring
its mobility law, or the physics of this regime? This runs the README example's
``[dd.run]`` (``examples/mo/mo.toml``) at its reference condition (7·10⁴ /s, 300 K) with
every velocity of the MD's law divided by f (B × f, ``DragScaledMobility``) over a ladder
of f, each seed at every f, and measures:

* the flow stress (the DD's: mean over the last quarter of the strain on the output
  grid) and, paired by seed between neighbouring f, the response
  ``dln σ / dln B = ln(σ(2f)/σ(f)) / ln 2`` (mean and standard error over the seeds);
* the drag stress ``τ_d = γ̇ / S`` (``engine.drag_compliance``, sampled at 21 points over
  the same last quarter: S = ∂γ̇_p/∂τ_app of the free dislocations with the
  microstructure held): Orowan's drag stress at the DD's own free density, and with it
  the response a microstructure that could not adapt would give,
  ``ln(1 + τ_d/σ) / ln 2`` for B × 2, an upper bound where sources and obstacles let the
  density grow instead;
* the share of the plastic strain the sources inserted (``DDState.inserted_strain``: each
  firing's dipole, L_nuc wide, net) rather than glided.

``--nucleation`` runs another source rule (``"bow_out_clock"``: one clock of bow-out
times of the mean source at the law's velocity, so B × f stretches the clock by f too and
the DD at B × f is the DD at f × the strain rate; ``"overstress"``, ``"bow_out"``: the law
times each firing; in all three B enters through the firings as well, so the
fixed-microstructure bound, which counts glide only, no longer bounds the response);
``--clock-of each_source`` times each source by its own bow-out time (``bow_out_clock``);
``--rate`` another strain rate.

The material (``<run-dir>/properties``) and the mobility law (``<run-dir>/mobility``) of a
finished chain run are **reused** (named below with when they were made; only the DD is
timed). Two runs at a time, one per core.

Writes ``benchmarks/results/dd_drag_response.json`` (rows per (f, seed); per f the
means, the inserted share, the measured response and the fixed-microstructure bound; the
reused artifacts;
machine and date) and ``dd_drag_response.csv`` / ``.png`` (flow and drag stress against
B/B_MD; measured response against the drag share τ_d/σ with the bound).
"""

from __future__ import annotations

import argparse
import csv
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
from dd_limiter import flow_stress
from scalebridge.artifacts import read_artifact
from scalebridge.dd_coupling.engine import DDGeometry, DDParams, DDState, drag_compliance
from scalebridge.dd_coupling.inputs import read_properties
from scalebridge.dd_coupling.mobility import DragScaledMobility, load_mobility
from scalebridge.dd_coupling.simulate import DDSettings
from scalebridge.plotting import pyplot, save_figure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: drag-compliance samples over the flow window (the last quarter of the strain)
SAMPLES = 21


def run_one(task: dict) -> dict:
    """One realisation at B × f: ``task`` = cfg, run_dir, factor, seed."""
    import torch

    torch.set_num_threads(1)
    material = read_properties(task["run_dir"] / "properties")
    law = load_mobility(task["run_dir"] / "mobility", out_of_range="clamp")
    if task["factor"] != 1.0:
        law = DragScaledMobility(law, task["factor"])
    st = DDSettings(**task["cfg"] | {"out_of_range": "clamp"})
    end = st.final_strain / st.strain_rate_s
    marks = list(np.linspace(0.75 * end, end, SAMPLES))
    samples: list[tuple[float, int, int]] = []

    def observe(geom: DDGeometry, params: DDParams, state: DDState) -> None:
        while marks and state.time >= marks[0]:
            marks.pop(0)
            s, n_free = drag_compliance(geom, params, state)
            samples.append((s, n_free, state.n))

    t0 = time.perf_counter()
    res = st.run_realisation(material, law, seed=task["seed"], observe=observe)
    wall = time.perf_counter() - t0
    t_nuc = st.nucleation_clock(material, law)["time_s"]
    s_mean = float(np.mean([x[0] for x in samples]))
    return {"factor": task["factor"], "seed": task["seed"],
            "flow_mpa": flow_stress(res["trace"], st.final_strain, st.output_points),
            "drag_stress_mpa": st.strain_rate_s / s_mean * 1e-6 if s_mean > 0 else None,
            "free_fraction": float(np.mean([x[1] / max(x[2], 1) for x in samples])),
            "insertion_share": (res["state"].inserted_strain / res["state"].plastic_strain
                                if res["state"].plastic_strain else None),
            "firings": res["state"].n_nucleated,
            "nucleation_time_ns": None if t_nuc is None else t_nuc * 1e9,
            "dislocations_end": res["state"].n, "steps": res["state"].n_steps,
            "samples": len(samples), "wall_s": round(wall, 1)}


def summarise(rows: list[dict], factors: list[float]) -> list[dict]:
    """Per factor: mean flow and drag stress; to the next factor (×2) the measured
    response paired by seed and the fixed-microstructure bound."""
    out = []
    for i, f in enumerate(factors):
        at = {r["seed"]: r for r in rows if r["factor"] == f}
        flow = np.array([r["flow_mpa"] for r in at.values()])
        drag = np.array([r["drag_stress_mpa"] for r in at.values()], dtype=float)
        rec = {"factor": f, "seeds": len(at), "flow_mpa": float(flow.mean()),
               "flow_sd_mpa": float(flow.std(ddof=1)) if flow.size > 1 else None,
               "drag_stress_mpa": float(np.nanmean(drag)),
               "drag_share": float(np.nanmean(drag / flow)),
               "free_fraction": float(np.mean([r["free_fraction"] for r in at.values()])),
               "insertion_share": float(np.nanmean([r["insertion_share"] for r in at.values()],
                                                   dtype=float))}
        nxt = factors[i + 1] if i + 1 < len(factors) else None
        if nxt is not None:
            up = {r["seed"]: r for r in rows if r["factor"] == nxt}
            seeds = sorted(set(at) & set(up))
            k = math.log(nxt / f)
            d = np.array([math.log(up[s]["flow_mpa"] / at[s]["flow_mpa"]) / k for s in seeds])
            bound = np.array([math.log1p((nxt / f - 1.0) * at[s]["drag_stress_mpa"]
                                         / at[s]["flow_mpa"]) / k for s in seeds
                              if at[s]["drag_stress_mpa"] is not None])
            rec |= {"to_factor": nxt, "dlnsigma_dlnb": float(d.mean()),
                    "dlnsigma_dlnb_err": (float(d.std(ddof=1) / math.sqrt(d.size))
                                          if d.size > 1 else None),
                    "fixed_microstructure_bound": float(bound.mean()) if bound.size
                    else None}
        out.append(rec)
    return out


def write_plot(per: list[dict], b_md: float | None, path: Path, rate: float = 7e4,
               nucleation: str = "time", temperature: float = 300.0,
               clock_of: str = "mean_source") -> None:
    """Flow and drag stress against B/B_MD; the measured response against the drag
    share with the fixed-microstructure bound; the CSV beside it."""
    with path.with_suffix(".csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["b_factor", "b_pa_s", "flow_mpa", "flow_sd_mpa", "drag_stress_mpa",
                    "drag_share", "insertion_share", "dlnsigma_dlnb", "dlnsigma_dlnb_err",
                    "fixed_microstructure_bound"])
        for r in per:
            w.writerow([r["factor"], (b_md * r["factor"]) if b_md else "", r["flow_mpa"],
                        r["flow_sd_mpa"], r["drag_stress_mpa"], r["drag_share"],
                        r["insertion_share"], r.get("dlnsigma_dlnb", ""),
                        r.get("dlnsigma_dlnb_err", ""),
                        r.get("fixed_microstructure_bound", "")])
    plt = pyplot()
    fig, (a, c, g) = plt.subplots(1, 3, figsize=(14.5, 4.2))
    g.set_xscale("log")
    f = np.array([r["factor"] for r in per])
    flow = np.array([r["flow_mpa"] for r in per])
    sd = np.array([r["flow_sd_mpa"] or 0.0 for r in per])
    a.errorbar(f, flow, yerr=sd, fmt="o-", capsize=3, label="DD flow stress (mean ± sd)")
    a.plot(f, [r["drag_stress_mpa"] for r in per], "s--",
           label="drag stress γ̇/S (Orowan, free density)")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, ScalarFormatter

    a.set_xscale("log")
    a.set_yscale("log")
    a.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    a.yaxis.set_major_formatter(ScalarFormatter())
    a.yaxis.set_minor_formatter(NullFormatter())
    for ax in (a, g):
        ax.set_xticks(f, [f"{x:g}" for x in f])
        ax.xaxis.set_minor_formatter(NullFormatter())
    a.set_xlabel("B / B_MD" + (f"   (B_MD = {b_md:.3g} Pa·s)" if b_md else ""))
    a.set_ylabel("applied shear stress (MPa)")
    a.legend(fontsize=8)
    exp = math.floor(math.log10(rate))
    sup = str(exp).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    a.set_title(f"flow stress and drag stress, {rate / 10 ** exp:g}·10{sup} /s, "
                f"{temperature:g} K", fontsize=10)
    have = [r for r in per if "dlnsigma_dlnb" in r]
    x = np.array([r["drag_share"] for r in have])
    y = np.array([r["dlnsigma_dlnb"] for r in have])
    e = np.array([r["dlnsigma_dlnb_err"] or 0.0 for r in have])
    doubling = all(r["to_factor"] == 2 * r["factor"] for r in have)
    c.errorbar(x, y, yerr=e, fmt="o", capsize=3,
               label="measured (B → " + ("2B" if doubling else "the next f") + ", paired seeds)")
    if doubling:
        xs = np.logspace(math.log10(max(min(x.min(), 0.01), 1e-3)),
                         math.log10(max(x.max(), 1)), 100)
        c.plot(xs, np.log1p(xs) / math.log(2.0), "-", color="0.5",
               label="fixed microstructure: ln(1 + τ_d/σ)/ln 2")
    else:
        c.plot(x, [r["fixed_microstructure_bound"] for r in have], "s", mfc="none",
               color="0.5", label="fixed microstructure: ln(1 + (k−1) τ_d/σ)/ln k")
    for r in have:
        c.annotate(f"×{r['factor']:g}", (r["drag_share"], r["dlnsigma_dlnb"]),
                   textcoords="offset points", xytext=(4, 4), fontsize=7)
    c.axhline(0.0, color="0.8", lw=0.8)
    c.set_xscale("log")
    c.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    c.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    c.xaxis.set_minor_formatter(NullFormatter())
    c.set_xlabel("drag share τ_d / σ at B")
    c.set_ylabel("dln σ / dln B")
    lo, hi = c.get_ylim()        # headroom: the legend above the highest point
    c.set_ylim(lo, hi + 0.35 * (hi - lo))
    c.legend(fontsize=8, loc="upper left")
    c.set_title("response of the flow stress to B", fontsize=10)
    g.plot(f, [100 * r["insertion_share"] for r in per], "o-", color="C2")
    g.set_ylim(0, 100)
    g.set_xlabel("B / B_MD")
    g.set_ylabel("plastic strain inserted by source firings (%)")
    g.set_title("inserted by source firings, not glided"
                + (" (10-ns clock)" if nucleation == "time" else
                   " (each source's bow-out clock)" if nucleation == "bow_out_clock"
                   and clock_of == "each_source"
                   else " (clock of bow-out times)" if nucleation == "bow_out_clock"
                   else f" ({nucleation})"),
                fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "mo")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--factors", type=float, nargs="+",
                    default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512])
    ap.add_argument("--nucleation", choices=["time", "bow_out_clock", "bow_out",
                                             "overstress"],
                    help="the source rule (default: the example's)")
    ap.add_argument("--clock-of", choices=["mean_source", "each_source"],
                    help="bow_out_clock: whose bow-out time times the sources (default: "
                    "the example's)")
    ap.add_argument("--rate", type=float, help="strain rate, /s (default: the example's "
                    "reference condition)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dd_drag_response.json")
    ap.add_argument("--replot", action="store_true",
                    help="redraw the plot and CSV from --out's rows (no DD run)")
    args = ap.parse_args()
    if args.replot:
        old = json.loads(args.out.read_text())
        write_plot(old["by_factor"], old.get("b_md_pa_s"), args.out.with_suffix(".png"),
                   old.get("strain_rate_s") or 7e4, old.get("nucleation", "time"),
                   old.get("temperature_k") or 300.0,
                   old.get("nucleation_clock_of", "mean_source"))
        return
    cfg = tomllib.loads((ROOT / "examples" / "mo" / "mo.toml").read_text())["dd"]["run"]
    for k in ("study", "drag_probe", "range_probe", "realisations"):
        cfg.pop(k, None)
    if args.nucleation:
        cfg["nucleation"] = args.nucleation
    if args.clock_of:
        cfg["nucleation_clock_of"] = args.clock_of
    if args.rate:
        cfg["strain_rate_s"] = args.rate
    run_dir = args.run_dir.resolve()
    factors = sorted(args.factors)
    tasks = [{"cfg": cfg, "run_dir": run_dir, "factor": f, "seed": s}
             for f in factors for s in args.seeds]
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    rows = []
    with ProcessPoolExecutor(args.workers) as pool:
        for row in pool.map(run_one, tasks):
            rows.append(row)
            print(f"B x{row['factor']:<5g} seed {row['seed']}: flow {row['flow_mpa']:6.2f} MPa, "
                  f"drag stress {row['drag_stress_mpa']:7.2f} MPa, free "
                  f"{100 * row['free_fraction']:.0f} %, {row['dislocations_end']} at the end, "
                  f"{row['firings']} firings carry {100 * row['insertion_share']:.0f} % of the "
                  "plastic strain, "
                  f"{row['steps']} steps, {row['wall_s']:.0f} s", flush=True)
    per = summarise(rows, factors)
    for r in per:
        if "dlnsigma_dlnb" in r:
            print(f"B x{r['factor']:g} -> x{r['to_factor']:g}: dln sigma/dln B "
                  f"{r['dlnsigma_dlnb']:+.3f} +- {r['dlnsigma_dlnb_err'] or 0:.3f} "
                  f"(fixed microstructure {r['fixed_microstructure_bound'] or math.nan:.3f}; "
                  "drag share "
                  f"{r['drag_share']:.3f})")
    mob = read_artifact(run_dir / "mobility", kind="MobilityLaw")
    defects = run_dir / "defects"
    b_md = None
    if (defects / "manifest.json").exists():
        dsum = read_artifact(defects, kind="DefectStats").manifest.get("summary", {})
        b_md = dsum.get("edge_drag_b0_pa_s")
    result = {
        "settings": "examples/mo/mo.toml [dd.run] at its reference condition, no study; "
                    "one realisation per (factor, seed); the MD's law with every velocity / f"
                    + (f"; nucleation = {args.nucleation!r}" if args.nucleation else "")
                    + (f"; nucleation_clock_of = {args.clock_of!r}" if args.clock_of else "")
                    + (f"; strain rate {args.rate:g} /s" if args.rate else ""),
        "nucleation": cfg.get("nucleation", "time"),
        "nucleation_clock_of": cfg.get("nucleation_clock_of", "mean_source"),
        "strain_rate_s": cfg.get("strain_rate_s"), "temperature_k": cfg.get("temperature_k",
                                                                            300.0),
        "b_md_pa_s": b_md, "rows": rows, "by_factor": per,
        "reused": {"properties": made_record(read_artifact(run_dir / "properties")),
                   "mobility": made_record(mob)},
        "wall_s": round(time.perf_counter() - t0, 1), "started": started,
        "machine": machine(), "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    write_plot(per, b_md, args.out.with_suffix(".png"), cfg["strain_rate_s"],
               cfg.get("nucleation", "time"), cfg.get("temperature_k", 300.0),
               cfg.get("nucleation_clock_of", "mean_source"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png').name} (+ .csv)")


if __name__ == "__main__":
    main()
