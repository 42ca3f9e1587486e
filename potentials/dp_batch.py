"""Run several DeePMD-kit command lines in one Python process.

``python -m scalebridge.potentials.dp_batch jobs.json`` where ``jobs.json`` is a list of
``{"cwd": "/abs/dir", "argv": ["--pt", "train", "input.json"]}``. Each job is exactly
what ``dp ARGV`` would do in ``cwd`` (it calls ``deepmd.main.main``), but torch and
deepmd are imported once instead of once per command, which on a small shared machine
saves most of a short training's wall time. Used only by
:func:`scalebridge.potentials.train.run_dp`.

A job that fails stops the batch: its traceback is printed, then one line
``dp_batch: failed: dp ARGV (in CWD): ErrorType: message``, which
:func:`scalebridge.potentials.train.run_dp` puts in its error, and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(path: str) -> int:
    jobs = json.loads(open(path).read())
    from deepmd.main import main as dp_main

    for job in jobs:
        os.chdir(job["cwd"])
        what = f"dp {' '.join(job['argv'])} (in {job['cwd']})"
        print(f"dp_batch: {what}", flush=True)
        try:
            dp_main(job["argv"])
        except SystemExit as e:  # argparse and DeePMD's own exits
            if e.code not in (None, 0):
                print(f"dp_batch: failed: {what}: exit {e.code}", flush=True)
                return 1
        except Exception as e:
            traceback.print_exc()
            msg = (str(e).strip().splitlines() or [""])[0][:300]
            print(f"dp_batch: failed: {what}: {type(e).__name__}: {msg}", flush=True)
            return 1
        print(f"dp_batch: done: dp {' '.join(job['argv'][:2])}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
