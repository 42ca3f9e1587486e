"""A one-node chain whose stage runs an external program that sleeps (for the
reliability suite: signals, kill -9, kept logs).

Run as a script: ``python sleep_chain.py RUN_DIR SECONDS [--mpi N] [--cli]``; prints
``started <pid>`` once the program runs. ``--cli`` runs the chain as the ``scalebridge``
command does (its error handling, PETSc loaded); ``--mpi N`` runs the program under
``mpiexec -n N``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scalebridge.artifacts import Artifact, produce
from scalebridge.runtime import mpi_prefix, run_command
from scalebridge.workflows.chain import Chain, StageCall, StageNode

#: The program: says its pid, then sleeps (``exec``: the sleep is the process started), or
#: with ``rc`` fails after an error line.
SHELL = "echo started $$; exec sleep {seconds}"
FAIL = "echo started $$; echo 'ERROR: something broke at step 3'; exit {rc}"


def make_slow(call: StageCall) -> Artifact:
    cfg = call.settings

    def build(work: Path) -> dict:
        script = (FAIL if cfg.get("rc") else SHELL).format(**cfg)
        run_command([*mpi_prefix(cfg.get("ranks", 1)), "sh", "-c", script], work,
                    name="sleeper", log_file=work / "sleeper.out",
                    on_line=lambda line: print(line, flush=True))
        return {"slept": cfg["seconds"]}

    return produce("Slow", call.out, cfg, {}, build)


def sleep_chain() -> Chain:
    return Chain([StageNode("slow", "Slow", (), make_slow, settings=lambda c: c,
                            section="slow")])


if __name__ == "__main__":
    args = sys.argv[1:]
    cli = "--cli" in args
    ranks = int(args[args.index("--mpi") + 1]) if "--mpi" in args else 1
    cfg = {"seconds": float(args[1]), "ranks": ranks}
    if cli:
        from scalebridge.workflows.cli import one_line_errors  # loads PETSc, as the CLI does

        with one_line_errors():
            sleep_chain().run(Path(args[0]), cfg)
    else:
        sleep_chain().run(Path(args[0]), cfg)
    print("finished", flush=True)
