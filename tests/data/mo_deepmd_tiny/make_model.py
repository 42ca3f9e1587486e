"""How model.pth was made (run from the repository root; about 2 min on 2 cores):

    .venv/bin/python tests/data/mo_deepmd_tiny/make_model.py /tmp/mo_tiny

then copy /tmp/mo_tiny/potential/models/model_0.pth here as model.pth. DeePMD-kit training is
not bit-reproducible across machines; a rerun gives a model of the same quality, not the
same bytes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from scalebridge.potentials import IngestSettings, TrainSettings

ROOT = Path(__file__).resolve().parents[3]

#: The architecture tests/workflows/test_workflows_full_chain.py continues from.
SETTINGS = {
    "descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4, "rcut_a": 5.0,
                   "rcut_smth_a": 0.5},
    "fitting_neuron": [32, 32], "steps": 2000, "ensemble": 1, "disp_freq": 100,
    "start_lr": 2e-3, "stop_lr": 1e-5, "pref_e": [0.02, 2.0], "precision": "float32",
    "compress": False, "evaluate": False, "properties": False,
}


def main(out: Path) -> None:
    ds = IngestSettings(type_map=["Mo"], validation_fraction=0.1, test_fraction=0.0,
                        seed=0).make([ROOT / "examples" / "mo" / "data" / "training.json"],
                                     out / "dataset")
    pot = TrainSettings.model_validate(SETTINGS).make(ds, out / "potential")
    print(pot.path / "models" / "model_0.pth")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
