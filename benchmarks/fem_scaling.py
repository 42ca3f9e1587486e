"""Benchmark: the 3D FEM at scale, on 1 and 2 MPI ranks.

The component example's plate with a hole (``examples/component/plate_with_hole.py``:
a gmsh mesh, boundary conditions by name, P2 tetrahedra) is pulled to 0.8 % nominal
strain in a few steps with CG + GAMG (rigid-body near-nullspace) and the Newton line
search, at about 1e4, 1e5 and 5e5 displacement dofs, each on 1 and 2 ranks. Per run:
solve wall time (the load history, no start-up), time inside the material, Newton and
linear iterations, peak resident memory summed over ranks. Writes
``benchmarks/results/fem_scaling.json`` (rows under ``scaling_3d``).

    python benchmarks/fem_scaling.py                      # 1e4, 1e5, 5e5 dofs; 1, 2 ranks
    python benchmarks/fem_scaling.py --sizes 3.0 --ranks 1 2 --out /tmp/quick.json
    python benchmarks/fem_scaling.py --surrogate runs/mo/surrogate
    python benchmarks/fem_scaling.py --sizes 0.63 --ranks 2 --keep   # one row, others kept

Each run is a child process (its own peak memory) with a time limit: ``--deadline``
(UTC, e.g. ``03:00``) skips a run whose estimate (the same ranks at the previous size,
scaled by dofs^1.2) would not end before it and stops one that runs past it; either way
the row stays in the table with the reason. The JSON is rewritten after every row, and
``scaling_3d`` is also put into ``fem_material_cost.json`` (where issue 20 asks for it).
Each row records the load average before and after it.

Run it on a quiet machine: with other jobs on the cores, the 2-rank times say little.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _machine import machine
from scalebridge.artifacts import write_json_atomic

ROOT = Path(__file__).resolve().parent
EXAMPLE = ROOT.parent / "examples" / "component" / "plate_with_hole.py"
#: element size far from the hole (mm) -> about this many P2 dofs (gmsh 4.15)
SIZES = {3.0: 1.1e4, 1.1: 1.1e5, 0.63: 5.1e5}


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("plate_with_hole", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def run_case(ex: Any, mesh: Path, material: Any, ranks: int, steps: int, out: Path
             ) -> dict[str, Any]:
    from scalebridge.continuum import FemSettings
    from scalebridge.settings import Resources

    settings = FemSettings.model_validate({
        "problem": ex.problem_settings(mesh),
        "solver": {"steps": steps, "degree": 2, "linear_solver": "cg-gamg",
                   "linear_rtol": 1e-6, "line_search": True},
        "write_fields": False})
    t0 = time.perf_counter()
    try:
        art = settings.make(material, out, Resources(mpi_ranks=ranks), force=True)
    except Exception as e:            # record why, go on with the other runs
        return {"ranks": ranks, "error": f"{type(e).__name__}: {e}"}
    s = art.summary
    row = {"dofs": s["n_dofs"], "ranks": s["ranks"], "solve_s": s["wall_seconds"],
           "material_s": s["material_seconds"], "linear_iterations": s["linear_iterations"],
           "peak_memory_mb": s["peak_memory_mb"], "newton_iterations": s["newton_iterations"],
           "linear_solves": s["linear_solves"], "cuts": s["cuts"],
           "assemble_s": s["assemble_seconds"], "linear_solve_s": s["linear_solve_seconds"],
           "quadrature_points": s["n_points"], "max_mean_stress_mpa": s["max_load_mpa"],
           "artifact_s": round(time.perf_counter() - t0, 2)}
    print(json.dumps(row), flush=True)
    return row


def _estimate(rows: list[dict[str, Any]], ranks: int, dofs: float) -> float | None:
    """Seconds a run of ``dofs`` on ``ranks`` should take: the largest finished run on the
    same ranks scaled by (dofs ratio)^1.2 (CG + GAMG iterations grow slowly with size)."""
    done = [r for r in rows if r.get("ranks") == ranks and r.get("artifact_s")]
    if not done:
        return None
    ref = max(done, key=lambda r: r["dofs"])
    return ref["artifact_s"] * (dofs / ref["dofs"]) ** 1.2


def _child(args: argparse.Namespace) -> None:
    """One run (``--case SIZE RANKS``): its row as JSON on the last stdout line."""
    import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
    from scalebridge.continuum import J2Material

    ex = _example()
    size, ranks = args.case[0], int(args.case[1])
    work = args.work.absolute()
    material = args.surrogate if args.surrogate else J2Material(
        youngs_modulus=70e3, poisson_ratio=0.3, sigma0=250.0, hardening_modulus=1000.0)
    row = run_case(ex, work / f"plate_{size}.msh", material, ranks, args.steps,
                   work / f"fem_{size}_{ranks}")
    print("ROW " + json.dumps(row), flush=True)


def _run_child(args: argparse.Namespace, size: float, ranks: int, timeout: float | None
               ) -> dict[str, Any]:
    """Run one case in a child process group; kill the group past ``timeout`` s."""
    cmd = [sys.executable, __file__, "--case", str(size), str(ranks), "--steps",
           str(args.steps), "--work", str(args.work.absolute())]
    if args.surrogate:
        cmd += ["--surrogate", str(args.surrogate)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"ranks": ranks, "error": f"stopped at the deadline after "
                f"{time.perf_counter() - t0:.0f} s (not finished)"}
    rows = [ln[4:] for ln in out.splitlines() if ln.startswith("ROW ")]
    if proc.returncode or not rows:
        return {"ranks": ranks, "error": f"child exited with {proc.returncode}, no row"}
    return json.loads(rows[-1])


def _deadline(text: str | None) -> float | None:
    """``HH:MM`` UTC today (tomorrow if past) as a time.time() value."""
    if not text:
        return None
    now = dt.datetime.now(dt.UTC)
    h, m = (int(v) for v in text.split(":"))
    t = now.replace(hour=h, minute=m, second=0, microsecond=0)
    if t < now:
        t += dt.timedelta(days=1)
    return t.timestamp()


def _write(args: argparse.Namespace, rows: list[dict[str, Any]], load_start: list[float]
           ) -> None:
    speedup = {}
    for size in sorted({r["element_size_mm"] for r in rows}, reverse=True):
        by = {r["ranks"]: r for r in rows
              if r["element_size_mm"] == size and r.get("solve_s") is not None}
        if 1 in by and 2 in by:
            speedup[str(by[1]["dofs"])] = round(by[1]["solve_s"] / by[2]["solve_s"], 3)
    result = {
        "scaling_3d": rows,
        "speedup_2_ranks": speedup,
        "problem": "eighth of a plate 100 x 40 x 4 mm with a 10 mm hole (gmsh, graded at "
                   "the hole), symmetry planes fixed, grip pulled 0.4 mm in "
                   f"{args.steps} steps; P2 tetrahedra, quadrature degree 2; "
                   "CG + GAMG (rigid-body near-nullspace), linear rtol 1e-6, Newton line "
                   "search",
        "material": str(args.surrogate) if args.surrogate else "analytic J2, E 70 GPa, "
                    "nu 0.3, sigma0 250 MPa, H 1 GPa",
        "notes": "solve_s: the load history (assembly, material, linear solves), no "
                 "start-up or mesh reading; material_s: time inside model.update (max over "
                 "ranks); peak_memory_mb: peak resident memory summed over ranks; "
                 "load_before/after: os.getloadavg() (1, 5, 15 min) around each run on "
                 f"{os.cpu_count()} cores: with other jobs on the cores the times, and "
                 "above all the 2-rank speed-ups, are those of a loaded machine; a row "
                 "with 'error' or 'not_run' says why it has no times",
        "load_average_at_start": load_start,
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(args.out, result)
    if args.out.resolve().parent == (ROOT / "results").resolve():
        # issue 20 asks for the table in fem_material_cost.json under the same key
        cost = ROOT / "results" / "fem_material_cost.json"
        if cost.is_file():
            data = json.loads(cost.read_text())
            data["scaling_3d"] = rows
            data["scaling_3d_source"] = ("benchmarks/fem_scaling.py -> "
                                         "results/fem_scaling.json, " + result["date"])
            write_json_atomic(cost, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=list(SIZES),
                    help="element sizes far from the hole (mm); see SIZES")
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--surrogate", type=Path, default=None,
                    help="Surrogate artifact as the material (default: analytic J2)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_fem_scaling"))
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "fem_scaling.json")
    ap.add_argument("--deadline", default=None,
                    help="HH:MM UTC: skip runs estimated to end after it, stop runs past it")
    ap.add_argument("--keep", action="store_true",
                    help="keep the rows of --out for the sizes and ranks not run now")
    ap.add_argument("--case", type=float, nargs=2, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        return _child(args)

    ex = _example()
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    deadline = _deadline(args.deadline)
    load_start = list(os.getloadavg())
    rows: list[dict[str, Any]] = []
    if args.keep and args.out.is_file():
        # a long size can be run on its own (a quiet machine for each rank count) and
        # take its place beside the rows measured before; each row keeps its own load
        plan = {(s, r) for s in args.sizes for r in args.ranks}
        rows = [r for r in json.loads(args.out.read_text())["scaling_3d"]
                if (r["element_size_mm"], r["ranks"]) not in plan]
    for size in args.sizes:
        mesh = work / f"plate_{size}.msh"
        meshed = False
        for ranks in args.ranks:
            base = {"element_size_mm": size, "dofs": SIZES.get(size), "ranks": ranks,
                    "solve_s": None, "material_s": None, "linear_iterations": None,
                    "peak_memory_mb": None}
            left = None if deadline is None else deadline - time.time()
            est = _estimate(rows, ranks, SIZES.get(size) or 0.0)
            if left is not None and (left < 60 or (est is not None and est > left)):
                row = {**base, "not_run": f"estimated {est or 0:.0f} s from the smaller "
                       f"size on {ranks} rank(s) (dofs^1.2), {max(left, 0):.0f} s left "
                       f"before the deadline {args.deadline} UTC; dofs is the size's "
                       "nominal count"}
            else:
                if not meshed:             # only for a size that runs (5e5: minutes)
                    ex.mesh_plate_with_hole(mesh, size=size)
                    meshed = True
                before = list(os.getloadavg())
                row = {**base, **_run_child(args, size, ranks, left)}
                row.update(load_before=before, load_after=list(os.getloadavg()))
            print(json.dumps(row), flush=True)
            rows.append(row)
            rows.sort(key=lambda r: (-r["element_size_mm"], r["ranks"]))
            _write(args, rows, load_start)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
