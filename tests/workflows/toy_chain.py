"""A small real chain for the engine tests: three nodes that compute (not sleep).

- ``numbers`` reads an input text file of integers and writes them scaled (CSV).
- ``primes`` runs an external Python process (through ``run_command``) that counts the
  primes below each number by trial division: seconds of real CPU work, in a child process
  a test can kill.
- ``total`` sums the counts.

Run as a script, it runs the chain: ``python toy_chain.py RUN_DIR INPUT SETTINGS_JSON``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from scalebridge.artifacts import Artifact, produce
from scalebridge.errors import DataError
from scalebridge.runtime import run_command
from scalebridge.workflows.chain import Chain, StageCall, StageNode
from scalebridge.workflows.engine import run_task_command

PRIME_PROGRAM = r"""
import sys, json
limits = json.loads(sys.argv[1]); out = sys.argv[2]; pad = int(sys.argv[3])
def count(n):
    c = 0
    for k in range(2, n):
        if all(k % d for d in range(2, int(k ** 0.5) + 1)):
            c += 1
    return c
rows = [(n, count(n)) for n in limits]
with open(out, "w") as f:
    f.write("limit,primes\n")
    f.writelines(f"{n},{c}\n" for n, c in rows)
    f.write("#" * pad)
print("counted", len(rows))
"""


def make_numbers(call: StageCall) -> Artifact:
    src = call.files["numbers"]

    def build(work: Path) -> dict:
        vals = []
        for i, line in enumerate(src.read_text().split(), 1):
            try:
                vals.append(int(line) * call.settings["scale"])
            except ValueError:
                raise DataError(f"{src}: line {i}: {line!r} is not an integer") from None
        (work / "numbers.csv").write_text("n\n" + "".join(f"{v}\n" for v in vals))
        return {"count": len(vals), "max": max(vals)}

    return produce("Numbers", call.out, call.settings, {"numbers": src}, build)


def make_primes(call: StageCall) -> Artifact:
    """One external program for all limits, or (``fan_out``) one task per limit given to
    the chain's mapper (local or Parsl), each writing its own CSV."""
    numbers = call.inputs["numbers"]

    def build(work: Path) -> dict:
        vals = [int(x) for x in numbers.file("numbers.csv").read_text().split()[1:]]
        limits = [v * call.settings["factor"] for v in vals]
        pad = str(call.settings.get("pad_bytes", 0))
        if not call.settings.get("fan_out"):
            run_command([sys.executable, "-c", PRIME_PROGRAM, json.dumps(limits),
                         str(work / "primes.csv"), pad],
                        work, name="primes", log_file=work / "primes.log")
            return {"limits": len(limits)}
        code = call.settings.get("task_prelude", "") + PRIME_PROGRAM
        tasks = [{"argv": [sys.executable, "-c", code, json.dumps([n]),
                           str(work / f"part_{i}.csv"), pad], "cwd": str(work),
                  "name": f"primes {n}"} for i, n in enumerate(limits)]
        results = call.mapper.map(run_task_command, tasks)
        rows = ["limit,primes"] + [ln for i in range(len(limits)) for ln in
                                   (work / f"part_{i}.csv").read_text().splitlines()[1:]]
        (work / "primes.csv").write_text("\n".join(rows) + "\n")
        return {"limits": len(limits), "workers": len({r["pid"] for r in results})}

    return produce("Primes", call.out, call.settings, {"numbers": numbers}, build)


def make_total(call: StageCall) -> Artifact:
    primes = call.inputs["primes"]

    def build(work: Path) -> dict:
        lines = primes.file("primes.csv").read_text().splitlines()[1:]
        total = sum(int(ln.split(",")[1]) for ln in lines if not ln.startswith("#"))
        (work / "total.json").write_text(json.dumps({"total": total}))
        return {"total": total}

    return produce("Total", call.out, call.settings, {"primes": primes}, build,
                   force=call.force)


def toy_chain() -> Chain:
    return Chain([
        StageNode("numbers", "Numbers", (), make_numbers,
                  settings=lambda c: c["numbers"], files=lambda c: {"numbers": c["input"]},
                  section="numbers"),
        StageNode("primes", "Primes", ("numbers",), make_primes,
                  settings=lambda c: c["primes"], section="primes"),
        StageNode("total", "Total", ("primes",), make_total,
                  settings=lambda c: c.get("total", {}), section="total"),
    ])


def toy_config(input_file: Path, scale: int = 1, factor: int = 1, pad_bytes: int = 0) -> dict:
    return {"input": str(input_file), "numbers": {"scale": scale},
            "primes": {"factor": factor, "pad_bytes": pad_bytes}, "total": {}}


if __name__ == "__main__":
    run_dir, config_json = Path(sys.argv[1]), sys.argv[2]
    from scalebridge.errors import ScalebridgeError

    try:
        arts = toy_chain().run(run_dir, json.loads(config_json))
    except ScalebridgeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(arts["total"].summary))
