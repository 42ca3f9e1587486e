"""MD throughput and accuracy: DeePMD (frozen, compressed) vs SNAP and quadratic SNAP.

Every model runs the same BCC Mo cell (``--size``³ conventional cells, 2 atoms each) on
the same cores in LAMMPS: velocities at 300 K, ``--warmup`` NVE steps, then ``--steps``
timed NVE steps; the speed is LAMMPS's own loop time of the timed run per atom-step.
Beside it, each model's force MAE on the mlearn Mo test set (23 DFT configurations),
evaluated in LAMMPS (:func:`scalebridge.md.lammps.single_points`), so the comparison is
like for like. Writes ``benchmarks/results/md_throughput.json``::

    {"natoms": ..., "threads": ..., "mpi_ranks": ...,
     "models": {"deepmd_frozen": {"us_per_atom_step": ..., "force_mae_ev_per_a": ...},
                "deepmd_compressed": {...}, "snap": {...}, "qsnap": {...}},
     "ratios": {...}, ...}

Usage::

    python benchmarks/md_throughput.py --potential runs/mo/potential [--size 10]
        [--steps 50] [--repeat 3] [--threads 1] [--ranks 1]

The machine this ran on is shared (see ``load_average``): take ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model
from ase.build import bulk
from scalebridge.md.lammps import (
    DeepMDPotential,
    LammpsPotential,
    SNAPPotential,
    run_lammps,
    single_points,
)
from scalebridge.settings import Resources

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCALEBRIDGE_SHARED", ROOT.parent / "shared"))
MO = SHARED / "data" / "mlearn" / "Mo"
_LOOP = re.compile(r"Loop time of ([\d.eE+-]+) on (\d+) procs for (\d+) steps with (\d+) atoms")


def speed(pot: LammpsPotential, natoms_side: int, steps: int, warmup: int, work: Path,
          res: Resources) -> dict:
    """µs per atom-step of NVE MD on the BCC Mo cell."""
    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(natoms_side)
    body = "\n".join(["velocity all create 300 4321 mom yes rot yes", "fix 1 all nve",
                      "thermo 1000", f"run {warmup}", f"run {steps}"])
    r = run_lammps(work, body, pot, atoms, resources=res, name=f"speed {pot.name}")
    loops = _LOOP.findall((r.workdir / "log.lammps").read_text())
    t, _procs, n, natoms = (float(loops[-1][0]), int(loops[-1][1]), int(loops[-1][2]),
                            int(loops[-1][3]))
    return {"us_per_atom_step": t / (n * natoms) * 1e6, "loop_s": t, "steps": n,
            "natoms": natoms}


def accuracy(pot: LammpsPotential, frames, work: Path, res: Resources) -> dict:
    """Energy and force MAE on the test set, evaluated in LAMMPS."""
    out = single_points(pot, frames, work, res)
    ferr = np.concatenate([np.abs(f - a.get_forces()).ravel() for (_, f), a in
                           zip(out, frames, strict=True)])
    eerr = [abs(e - a.get_potential_energy()) / len(a) for (e, _), a in
            zip(out, frames, strict=True)]
    return {"force_mae_ev_per_a": float(ferr.mean()),
            "energy_mae_mev_per_atom": float(np.mean(eerr) * 1e3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--potential", required=True, help="Potential artifact (DeePMD)")
    ap.add_argument("--size", type=int, default=10, help="n of the n³ conventional cell")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs per model, interleaved over models; the fastest counts "
                         "(the machine is shared)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--ranks", type=int, default=1)
    ap.add_argument("--models", default="deepmd_frozen,deepmd_compressed,snap,qsnap")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" /
                                         "md_throughput.json"))
    args = ap.parse_args(argv)

    from scalebridge.potentials.readers import read_mlearn_json

    test = [f.to_atoms() for f in read_mlearn_json(MO / "test.json",
                                                   voigt_order="xx yy zz xy xz yz")]
    res = Resources(mpi_ranks=args.ranks, threads=args.threads)
    pots: dict[str, LammpsPotential] = {}
    wanted = args.models.split(",")
    if "deepmd_frozen" in wanted:
        frozen = DeepMDPotential.from_artifact(args.potential)
        pots["deepmd_frozen"] = DeepMDPotential(frozen.models[:1], frozen.type_map,
                                                "deepmd_frozen", frozen.source)
    if "deepmd_compressed" in wanted:
        try:
            comp = DeepMDPotential.from_artifact(args.potential, compressed=True)
            pots["deepmd_compressed"] = DeepMDPotential(comp.models[:1], comp.type_map,
                                                        "deepmd_compressed", comp.source)
        except Exception as e:
            print(f"no compressed model: {e}", file=sys.stderr)
    for name in ("snap", "qsnap"):
        if name in wanted:
            pots[name] = SNAPPotential.from_dir(MO / "peer_models" / name, name=name)

    inp = json.loads((Path(args.potential) / "input.json").read_text())["model"]
    result: dict = {"natoms": 2 * args.size ** 3, "threads": args.threads,
                    "mpi_ranks": args.ranks, "steps": args.steps,
                    "potential": str(Path(args.potential).resolve()),
                    "deepmd_model": {
                        "descriptor": {k: inp["descriptor"].get(k) for k in (
                            "type", "rcut", "sel", "neuron", "axis_neuron", "precision")},
                        "fitting_net": {k: inp["fitting_net"].get(k) for k in (
                            "neuron", "precision")}},
                    "machine": {"cores": os.cpu_count(), "cpu_model": cpu_model()},
                    "test_set": str(MO / "test.json"), "models": {},
                    "load_average_start": os.getloadavg()[0],
                    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory(prefix="md_throughput_") as tmp:
        best: dict[str, dict] = {}
        for rep in range(args.repeat):
            for name, pot in pots.items():
                sp = speed(pot, args.size, args.steps, args.warmup,
                           Path(tmp) / name / f"speed_{rep}", res)
                print(name, "run", rep, round(sp["us_per_atom_step"], 2), flush=True)
                if name not in best or sp["us_per_atom_step"] < best[name]["us_per_atom_step"]:
                    best[name] = sp
        for name, pot in pots.items():
            work = Path(tmp) / name
            sp = best[name]
            acc = accuracy(pot, test, work / "accuracy", res)
            result["models"][name] = {"us_per_atom_step": round(sp["us_per_atom_step"], 3),
                                      "force_mae_ev_per_a": round(acc["force_mae_ev_per_a"], 4),
                                      "energy_mae_mev_per_atom":
                                          round(acc["energy_mae_mev_per_atom"], 3),
                                      "timed_steps": sp["steps"],
                                      "repeats": args.repeat}
            print(name, result["models"][name], flush=True)
    m = result["models"]
    ratios = {}
    for a in ("deepmd_frozen", "deepmd_compressed"):
        for b in ("snap", "qsnap"):
            if a in m and b in m:
                ratios[f"{a}_speedup_vs_{b}"] = round(
                    m[b]["us_per_atom_step"] / m[a]["us_per_atom_step"], 3)
    if "deepmd_compressed" in m and "deepmd_frozen" in m:
        ratios["compressed_speedup_vs_frozen"] = round(
            m["deepmd_frozen"]["us_per_atom_step"] / m["deepmd_compressed"]["us_per_atom_step"],
            3)
    result["ratios"] = ratios
    if "deepmd_compressed" in m and "qsnap" in m:
        result["target_met"] = bool(
            m["deepmd_compressed"]["us_per_atom_step"] <= m["qsnap"]["us_per_atom_step"]
            and m["deepmd_compressed"]["force_mae_ev_per_a"] < m["qsnap"]["force_mae_ev_per_a"])
    result["load_average_end"] = os.getloadavg()[0]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpf = out.with_name(out.name + ".tmp")
    tmpf.write_text(json.dumps(result, indent=2) + "\n")
    tmpf.replace(out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
