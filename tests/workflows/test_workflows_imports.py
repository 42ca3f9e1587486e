"""The chain's one process imports dolfinx (the CLI's continuum stage) and later DeePMD
(the potential's evaluation, through h5py). With numba installed, which ffcx imports
when present, h5py imported after dolfinx failed in h5py.h5t ("Not a datatype") and
the potential stage died; the package imports h5py first. Run in a fresh interpreter:
this test's own process has imported everything in some order already."""

from __future__ import annotations

import subprocess
import sys


def test_deepmd_loads_after_the_cli_has_loaded_dolfinx():
    code = ("import scalebridge.workflows.cli, sys\n"
            "assert 'dolfinx' in sys.modules and 'numba' in sys.modules\n"
            "from deepmd.infer import DeepPot\n"
            "import h5py\n"
            "h5py.File\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
