"""The component example (examples/component/plate_with_hole.py) runs as a test, small:
its own checks (equilibrium of the reactions, net-section yield) run inside it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "component" / "plate_with_hole.py"


@pytest.mark.mpi
def test_component_example_small(tmp_path):
    out = tmp_path / "component"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--size", "6", "--steps", "3",
                           "--ranks", "2", "--surrogate", str(tmp_path / "none"),
                           "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rec = json.loads((out / "summary.json").read_text())
    assert rec["ranks"] == 2 and rec["model"] == "j2" and rec["cuts"] == 0
    for name in ("reactions.csv", "reactions.png", "load_displacement.csv"):
        assert (out / "fem" / name).stat().st_size > 0
    assert (out / "fem" / "fields" / "displacement.bp").is_dir()
    assert (out / "fem.toml").read_text().startswith("[problem]")
