"""Chain nodes of the potentials stage: ``dataset`` (DFTDataset) and ``potential``.

Run-file section ``[potentials]`` with the stage's own models::

    [potentials.ingest]     scalebridge.potentials IngestSettings (format, split, checks)
    [potentials.train]      scalebridge.potentials TrainSettings (descriptor, steps, ensemble)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from scalebridge.artifacts import Artifact
from scalebridge.errors import SettingsError
from scalebridge.potentials.dataset import IngestSettings
from scalebridge.potentials.train import TrainSettings
from scalebridge.settings import StrictModel
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("potentials", "workflows/stage_potentials.py")


class Section(StrictModel):
    """DFT files -> DFTDataset -> DeePMD Potential ensemble."""

    ingest: IngestSettings = Field(default_factory=IngestSettings,
                                   description="reading, checking and splitting the DFT data")
    train: TrainSettings = Field(default_factory=TrainSettings,
                                 description="DeePMD-kit training of the ensemble")

    def resolve_paths(self, base_dir: Path) -> Section:
        """``train.init_model`` relative to the run file's folder."""
        return self.model_copy(update={"train": self.train.resolve_paths(base_dir)})


def _files(cfg: Any) -> dict[str, Path]:
    if not cfg.run.data:
        raise SettingsError("[run] data is empty: name the DFT files to train on")
    files = {f"source_{i}": Path(p) for i, p in enumerate(cfg.run.data)}
    files.update({f"test_{i}": Path(p) for i, p in enumerate(cfg.run.test_data)})
    for key, paths in (("data", cfg.run.data), ("test_data", cfg.run.test_data)):
        for i, p in enumerate(paths):
            if not Path(p).exists():
                raise SettingsError(f"[run] {key}[{i}]: DFT file does not exist: {p}")
    return files


def make_dataset(call: StageCall) -> Artifact:
    cfg = call.config
    return call.settings.make(cfg.run.data, call.out, test_sources=cfg.run.test_data or None,
                              force=call.force)


def make_potential(call: StageCall) -> Artifact:
    return call.settings.make(call.inputs["dataset"], call.out, call.resources,
                              force=call.force, mapper=call.mapper)


def dry_run_potential(call: StageCall) -> list[Path]:
    art = call.settings.make(call.inputs["dataset"], call.out, call.resources, dry_run=True)
    return sorted(p for p in Path(art.path).rglob("*") if p.is_file())


def nodes(cfg: Any = None) -> list[StageNode]:
    return [
        StageNode("dataset", "DFTDataset", (), make_dataset,
                  settings=lambda c: c.potentials.ingest, files=_files,
                  section="potentials.ingest", cheap=True, code=CODE),
        StageNode("potential", "Potential", ("dataset",), make_potential,
                  settings=lambda c: c.potentials.train, dry_run=dry_run_potential,
                  section="potentials.train", code=CODE),
    ]
