"""Run several DeePMD-kit command lines in one Python process.

``python -m scalebridge.potentials.dp_batch jobs.json`` where ``jobs.json`` is a list of
``{"cwd": "/abs/dir", "argv": ["--pt", "train", "input.json"]}``. Each job is exactly
what ``dp ARGV`` would do in ``cwd`` (it calls ``deepmd.main.main``), but torch and
deepmd are imported once instead of once per command, which on a small shared machine
saves most of a short training's wall time. Used only by
:func:`scalebridge.potentials.train.run_dp`.
"""

from __future__ import annotations

import json
import os
import sys


def main(path: str) -> int:
    jobs = json.loads(open(path).read())
    from deepmd.main import main as dp_main

    for job in jobs:
        os.chdir(job["cwd"])
        print(f"dp_batch: dp {' '.join(job['argv'])} (in {job['cwd']})", flush=True)
        dp_main(job["argv"])
        print(f"dp_batch: done: dp {' '.join(job['argv'][:2])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
