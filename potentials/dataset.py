"""Ingest: DFT files -> validated, split ``DFTDataset`` artifact (see docs/CONTRACTS.md).

Example::

    ds = IngestSettings(type_map=["Mo"]).make(["training.json"], "runs/mo/dataset",
                                               test_sources=["test.json"])
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.errors import DataError
from scalebridge.potentials.frames import Frame
from scalebridge.potentials.npy import read_system, write_systems
from scalebridge.potentials.readers import read_source
from scalebridge.potentials.validation import (
    check_converged,
    check_distances,
    check_duplicates,
    check_energy_outliers,
    check_forces,
    check_labels,
    check_species,
    check_virials,
)
from scalebridge.settings import StrictModel

log = logging.getLogger("scalebridge.potentials")

SPLITS = ("train", "validation", "test")


class IngestSettings(StrictModel):
    """How DFT files become a validated, split DeePMD data set."""

    type_map: list[str] | None = Field(
        None, description="species in model order; None: the sorted species found")
    format: Literal["auto", "mlearn", "fitsnap", "vasprun", "outcar"] = Field(
        "auto", description="input format; auto: from file name and content")
    voigt_order: str = Field(
        "auto", description="order of mlearn's six virial_stress numbers; auto: detected "
        "from sheared Elastic cells (Mo: 'xx yy zz xy xz yz')")
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="fraction of each group's frames held out for validation")
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="fraction of each group held out for test (0 when "
        "test_sources are given)")
    seed: int = Field(0, description="seed of the split shuffle")
    max_frames_per_group: int | None = Field(
        None, ge=1, description="keep at most this many frames per group of each file set, "
        "chosen with seed (quick runs)")
    min_distance_a: float = Field(
        0.5, ge=0, description="reject frames with two atoms closer than this, Å")
    unconverged: Literal["error", "drop"] = Field(
        "error", description="frames whose electronic loop hit NELM")
    duplicates: Literal["error", "drop"] = Field(
        "drop", description="frames repeating another's species, cell, positions and "
        "energy (within the tolerances below), e.g. one step read from a run's OUTCAR and "
        "its vasprun.xml: drop keeps the first copy and records the pairs in dataset.json; "
        "error refuses. Between the pool and test_sources always an error")
    duplicate_position_tol_a: float = Field(
        1e-3, gt=0, description="duplicates: cells and positions (minimum image) within "
        "this, Å")
    duplicate_energy_tol_ev_per_atom: float = Field(
        1e-4, gt=0, description="duplicates: energies within this, eV/atom")
    max_force_ev_a: float | None = Field(
        50.0, gt=0, description="implausible: a force above this on any atom, eV/Å "
        "(null: no bound; the mlearn Mo AIMD data reach 19)")
    energy_outlier_z: float | None = Field(
        200.0, gt=0, description="implausible: energy per atom (after per-species "
        "references) more than this many robust SDs (MAD) from the median of its group, "
        "or of the file set when its group has < 3 frames (null: no check). Real sets "
        "reach 14 (FitSNAP Ta volume scans), 136 when subsampled to 3 per group; an energy "
        "x1000 reaches 10^4-10^6")
    implausible: Literal["error", "drop"] = Field(
        "error", description="frames failing max_force_ev_a or energy_outlier_z: error, or "
        "drop them with a warning")
    allow_truncated: bool = Field(
        False, description="a vasprun.xml without </modeling> or an OUTCAR without its "
        "closing timing section (cut off, or the run was killed): false refuses it, true "
        "keeps its complete ionic steps and records a note")
    mixed_virials: Literal["error", "drop"] = Field(
        "error", description="some frames with virials and some without: error, or drop "
        "all virials")

    def load(self, sources: Sequence[str | Path],
             order: tuple[str, ...] | None = None, notes: list[str] | None = None,
             duplicates: list[tuple[Frame, Frame]] | None = None) -> list[Frame]:
        """Read and validate frames from ``sources`` (files or FitSNAP folders).

        ``order``: Voigt order for mlearn files without sheared cells (the order found
        in an earlier file is used for later ones without). ``notes`` collects one-line
        warnings about the files, ``duplicates`` the (kept, dropped) duplicate pairs.
        """
        frames: list[Frame] = []
        for src in sources:
            got = read_source(src, self.format, voigt_order=self.voigt_order,
                              fallback_order=order, allow_truncated=self.allow_truncated,
                              notes=notes)
            for fr in got:
                if fr.meta.get("voigt_order"):
                    order = tuple(fr.meta["voigt_order"].split())
            frames.extend(got)
        if not frames:
            raise DataError(f"no frames in {', '.join(map(str, sources))}")
        if self.max_frames_per_group:  # subset first: validation is the slow part
            rng = np.random.default_rng(self.seed)
            groups: dict[str, list[int]] = {}
            for i, fr in enumerate(frames):
                groups.setdefault(fr.group, []).append(i)
            keep = sorted(i for g in sorted(groups) for i in
                          rng.permutation(groups[g])[: self.max_frames_per_group])
            frames = [frames[i] for i in keep]
        frames = check_converged(frames, self.unconverged)
        check_labels(frames)
        frames = check_duplicates(frames, self.duplicates, self.duplicate_position_tol_a,
                                  self.duplicate_energy_tol_ev_per_atom, duplicates)
        frames = check_forces(frames, self.max_force_ev_a, self.implausible)
        frames = check_energy_outliers(frames, self.energy_outlier_z, self.implausible)
        check_distances(frames, self.min_distance_a)
        return frames

    def make(self, sources: Sequence[str | Path], out: str | Path,
             test_sources: Sequence[str | Path] | None = None, *,
             force: bool = False) -> Artifact:
        """Build the ``DFTDataset`` artifact at ``out``.

        Args:
            sources: DFT files (train + validation pool; also test unless
                ``test_sources`` is given).
            test_sources: files whose frames form the test split as they are.
        """
        sources = [Path(s) for s in sources]
        tests = [Path(s) for s in (test_sources or [])]
        inputs = {f"source_{i}": s for i, s in enumerate(sources)}
        inputs.update({f"test_{i}": s for i, s in enumerate(tests)})
        for s in [*sources, *tests]:
            if not s.exists():
                raise DataError(f"DFT source not found: {s}")

        def build(work: Path) -> dict:
            notes: list[str] = []
            dups: list[tuple[Frame, Frame]] = []
            pool = self.load(sources, notes=notes, duplicates=dups)
            order = next((tuple(f.meta["voigt_order"].split()) for f in pool
                          if f.meta.get("voigt_order")), None)
            test = self.load(tests, order, notes=notes, duplicates=dups) if tests else []
            allf = pool + test
            if tests:  # the same configuration must not be in train and test
                check_duplicates(list(allf), "error", self.duplicate_position_tol_a,
                                 self.duplicate_energy_tol_ev_per_atom)
            if dups:
                notes.append(f"{len(dups)} duplicate frame(s) dropped, the first copy kept "
                             "(dataset.json 'duplicates' lists them)")
            type_map = check_species(allf, self.type_map)
            has_virial = check_virials(allf, self.mixed_virials)
            splits = self.split(pool, explicit_test=bool(tests))
            if tests:
                splits["test"] = test
            info: dict = {"type_map": type_map, "has_virial": has_virial,
                          "sources": [str(s) for s in sources],
                          "test_sources": [str(s) for s in tests],
                          "voigt_order": next((f.meta.get("voigt_order") for f in allf
                                               if f.meta.get("voigt_order")), None),
                          "notes": notes,
                          "duplicates": [{"kept": a.where, "dropped": b.where}
                                         for a, b in dups],
                          "splits": {}}
            for name in SPLITS:
                frs = splits[name]
                systems = write_systems(frs, work / "systems" / name, type_map) if frs else {}
                info["splits"][name] = {
                    "frames": len(frs), "atoms": int(sum(f.natoms for f in frs)),
                    "groups": dict(Counter(f.group for f in frs)),
                    "systems": systems, "stats": _stats(frs)}
            write_json_atomic(work / "dataset.json", info)
            return {"type_map": type_map,
                    "n_frames": {k: info["splits"][k]["frames"] for k in SPLITS},
                    "duplicates_dropped": len(dups), "notes": notes}

        return produce("DFTDataset", out, self, inputs, build, force=force)

    def split(self, frames: list[Frame], explicit_test: bool) -> dict[str, list[Frame]]:
        """Stratified by group: each group's frames are shuffled (``seed``) and cut into
        test/validation/train; every group with >= 2 frames keeps one for training."""
        rng = np.random.default_rng(self.seed)
        by_group: dict[str, list[Frame]] = {}
        for fr in frames:
            by_group.setdefault(fr.group, []).append(fr)
        out: dict[str, list[Frame]] = {k: [] for k in SPLITS}
        for g in sorted(by_group):
            frs = by_group[g]
            idx = rng.permutation(len(frs))
            if self.max_frames_per_group:
                idx = idx[: self.max_frames_per_group]
            n = len(idx)
            n_test = 0 if explicit_test else round(self.test_fraction * n)
            n_val = round(self.validation_fraction * n)
            if n_test + n_val >= n:  # keep at least one training frame
                n_test = min(n_test, max(n - 1, 0))
                n_val = max(min(n_val, n - 1 - n_test), 0)
            out["test"] += [frs[i] for i in sorted(idx[:n_test])]
            out["validation"] += [frs[i] for i in sorted(idx[n_test:n_test + n_val])]
            out["train"] += [frs[i] for i in sorted(idx[n_test + n_val:])]
        return out


def _stats(frames: Sequence[Frame]) -> dict:
    if not frames:
        return {}
    e = np.array([f.energy / f.natoms for f in frames])
    fa = np.concatenate([np.abs(f.forces).reshape(-1) for f in frames if f.forces is not None])
    return {"energy_per_atom_mean_ev": float(e.mean()),
            "energy_per_atom_std_ev": float(e.std()),
            "force_rms_ev_a": float(np.sqrt(np.mean(fa ** 2))),
            "force_max_ev_a": float(fa.max())}


@dataclass
class DatasetInfo:
    """A ``DFTDataset`` opened for reading.

    Attributes:
        path: the artifact directory.
        info: parsed ``dataset.json``.
    """

    path: Path
    info: dict

    @property
    def type_map(self) -> list[str]:
        return list(self.info["type_map"])

    @property
    def has_virial(self) -> bool:
        return bool(self.info["has_virial"])

    def systems(self, split: str) -> list[Path]:
        """System folders of ``split`` (may be empty)."""
        return [self.path / "systems" / split / s
                for s in self.info["splits"][split]["systems"]]

    def frames(self, split: str) -> list[Frame]:
        """All frames of ``split``, with their group and original source/index."""
        out = []
        for name, meta in self.info["splits"][split]["systems"].items():
            frs = read_system(self.path / "systems" / split / name, group=meta["group"])
            for fr, (src, idx) in zip(frs, meta["sources"], strict=True):
                fr.meta["system"] = name
                fr.source, fr.index = src, idx
            out.extend(frs)
        return out


def load_dataset(path: str | Path | Artifact) -> DatasetInfo:
    """Open a ``DFTDataset`` artifact."""
    art = path if isinstance(path, Artifact) else read_artifact(path, "DFTDataset")
    try:
        info = json.loads((art.path / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{art.path}/dataset.json unreadable: {e}") from None
    return DatasetInfo(path=art.path, info=info)
