"""The native stacks the chain loads into one process must not disturb each other.

The chain's process imports dolfinx (the CLI's continuum stage), DeePMD (through h5py)
and torch (the DD); with numba installed, which ffcx imports whenever it is present,
two orders went wrong: h5py imported after dolfinx failed in h5py.h5t ("Not a
datatype") and the potential stage died; and dolfinx (with numba) loaded before torch
moved the DD's torch arithmetic in its last bits, so a serial DD run in such a process
differed from the same run in a fresh worker (the process-pool test failed in the
suite, and a later torch FFT crashed it). The package imports h5py and torch first.
Each check runs in fresh interpreters: this test's own process has imported
everything in some order already."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> str:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_deepmd_loads_after_the_cli_has_loaded_dolfinx():
    _python("import scalebridge.workflows.cli, sys\n"
            "assert 'dolfinx' in sys.modules and 'numba' in sys.modules\n"
            "from deepmd.infer import DeepPot\n"
            "import h5py\n"
            "h5py.File\n")


DD = """
import json, sys, tempfile, pathlib
{first}
sys.path.insert(0, {root!r})
from tests.dd_coupling.conftest import make_drag_law, make_properties
from scalebridge.dd_coupling import DDSettings
t = pathlib.Path(tempfile.mkdtemp())
run = DDSettings(cell_lx_um=0.5, final_strain=1e-3, strain_rate_s=1e5,
                 nucleation_time_ns=2.0, source_density_m2=1.5e14,
                 obstacle_density_m2=3e14, output_points=40, realisations=1,
                 seed=11).make(make_drag_law(t / "mob"), make_properties(t / "p"), t / "dd")
doc = json.loads((run.path / "run.json").read_text())
print(json.dumps([r.get("plastic_strain") for r in doc["realisations"]]
                 + [(run.path / "realisations/0/stress_strain.csv").read_text()]))
"""


def test_a_dd_run_is_the_same_bits_after_dolfinx_and_numba_are_loaded():
    fresh = json.loads(_python(DD.format(first="", root=str(ROOT))))
    loaded = json.loads(_python(DD.format(
        first="import scalebridge.continuum\nassert 'numba' in sys.modules", root=str(ROOT))))
    assert fresh[0] and fresh == loaded
