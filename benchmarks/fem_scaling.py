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

Run it on a quiet machine: with other jobs on the cores, the 2-rank times say little.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
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
    args = ap.parse_args()

    import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
    from scalebridge.continuum import J2Material

    ex = _example()
    work = args.work.absolute()
    work.mkdir(parents=True, exist_ok=True)
    material = args.surrogate if args.surrogate else J2Material(
        youngs_modulus=70e3, poisson_ratio=0.3, sigma0=250.0, hardening_modulus=1000.0)
    load_start = list(os.getloadavg())
    rows = []
    for size in args.sizes:
        mesh = ex.mesh_plate_with_hole(work / f"plate_{size}.msh", size=size)
        for ranks in args.ranks:
            rows.append({"element_size_mm": size, **run_case(
                ex, mesh, material, ranks, args.steps, work / f"fem_{size}_{ranks}")})
    speedup = {}
    for size in args.sizes:
        by = {r["ranks"]: r for r in rows if r["element_size_mm"] == size and "error" not in r}
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
                 "ranks); peak_memory_mb: peak resident memory summed over ranks",
        "load_average_at_start": load_start,
        "machine": machine(),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
