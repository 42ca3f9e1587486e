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
from pydantic import Field, field_validator
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.errors import DataError
from scalebridge.potentials.crystal import describe_data
from scalebridge.potentials.frames import Frame
from scalebridge.potentials.npy import read_system, write_systems
from scalebridge.potentials.readers import (
    MLEARN_ORDERS,
    ReadOptions,
    VoigtOrderError,
    get_reader,
    read_source,
    voigt_order_of,
)
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
    format: str = Field(
        "auto", description="input format of every data file: auto (from file name and "
        "content), mlearn, maml, fitsnap, vasprun, outcar, extxyz, deepmd/npy, deepmd/raw, "
        "'ase:<ASE format>' or 'dpdata:<dpdata format>' (e.g. 'dpdata:qe/pw/scf')")
    voigt_order: str = Field(
        "auto", description="order of the six stress numbers of mlearn/maml JSON; auto: "
        "each file's sheared Elastic cells, and for a file without (or with disagreeing) "
        "sheared cells the order the data set's other files agree on; set it (e.g. "
        "'xx yy zz xy xz yz', mlearn Mo's; other mlearn elements: 'xx yy zz xy yz xz') "
        "only when the files disagree or none has sheared cells")
    ase_stress_unit: Literal["eV/A^3", "GPa", "kbar", "bar"] = Field(
        "eV/A^3", description="unit of the stress in files read through ASE (extxyz, "
        "'ase:...'): ASE's eV/A^3, or what the file holds (FitSNAP's extxyz: bar)")
    ase_stress_sign: Literal["tension", "compression"] = Field(
        "tension", description="sign of that stress: tension positive (ASE's) or "
        "compression positive (VASP's, FitSNAP's)")
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

    @field_validator("format")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if v != "auto":
            try:
                get_reader(v)
            except DataError as e:
                raise ValueError(str(e)) from None
        return v

    @field_validator("voigt_order")
    @classmethod
    def _known_order(cls, v: str) -> str:
        if v != "auto" and v not in MLEARN_ORDERS:
            raise ValueError(f"choose auto or one of {', '.join(MLEARN_ORDERS)}")
        return v

    def options(self, fallback_order: tuple[str, ...] | None = None,
                notes: list[str] | None = None) -> ReadOptions:
        """The reader options these settings give."""
        return ReadOptions(voigt_order=self.voigt_order, fallback_order=fallback_order,
                           allow_truncated=self.allow_truncated, notes=notes,
                           type_map=self.type_map, ase_stress_unit=self.ase_stress_unit,
                           ase_stress_sign=self.ase_stress_sign)

    def voigt_orders(self, sources: Sequence[str | Path], notes: list[str] | None = None
                     ) -> dict[Path, tuple[str, ...] | None]:
        """The stress order each source is read with (mlearn/maml JSON; None for the
        rest or where nothing needs one).

        Each file's own sheared cells decide (files of different elements may differ);
        a file without them, or whose sheared cells disagree, takes the order the other
        files agree on, and a note says so. Only when such a file finds no order, or
        the others disagree, does the data set stop, naming ``voigt_order``.
        """
        if self.voigt_order != "auto":
            return {}
        own: dict[Path, tuple[str, ...] | None] = {}
        unclear: dict[Path, str] = {}
        for src in map(Path, sources):
            try:
                own[src] = voigt_order_of(src, self.format)
            except VoigtOrderError as e:
                own[src] = None
                unclear[src] = str(e).split(": ", 1)[-1]
            except DataError:
                own[src] = None  # read_source reports what is wrong with the file
        needy = [s for s, o in own.items() if o is None and self._needs_order(s)]
        if not needy:
            return own
        found = {o for o in own.values() if o is not None}
        if len(found) > 1:
            said = "; ".join(f"{s.name}: {' '.join(o)}" for s, o in own.items() if o)
            raise VoigtOrderError(f"{needy[0]}: its stresses need a Voigt order and the "
                                  f"other data files disagree on it ({said}); set "
                                  "potentials.ingest.voigt_order")
        if not found:
            src = next((s for s in needy if s in unclear), needy[0])
            why = unclear.get(src, "no sheared Elastic cells tell the order of its stresses")
            raise VoigtOrderError(f"{src}: {why}, and no other data file has sheared "
                                  "cells that tell it; set potentials.ingest.voigt_order")
        (order,) = found
        fromwhere = ", ".join(s.name for s, o in own.items() if o)
        for src in needy:
            why = ("its sheared cells disagree" if src in unclear
                   else "its own sheared cells do not tell it")
            _log_note(notes, f"{src}: stress order {' '.join(order)} taken from "
                             f"{fromwhere} ({why})")
            own[src] = order
        return own

    def checked_orders(self, source_sets: Sequence[Sequence[str | Path]],
                       notes: list[str] | None = None) -> dict[Path, tuple[str, ...] | None]:
        """:meth:`voigt_orders` of all the files of ``source_sets`` (the pool, the test
        files); when it cannot tell an order, each set's frames are first read (with a
        stand-in order, thrown away) and checked as :meth:`load` checks them, so that a
        frame's own error (no energy, a NaN, a missing force row) is the one reported,
        and only frames without one ask for ``voigt_order``.

        Raises:
            DataError: a frame's error, else the :class:`VoigtOrderError`.
        """
        try:
            return self.voigt_orders([s for ss in source_sets for s in ss], notes)
        except VoigtOrderError as order_error:
            log.info("the stress order is unknown: checking the frames first")
            stand_in = self.model_copy(update={"voigt_order": next(iter(MLEARN_ORDERS))})
            for ss in source_sets:
                if ss:
                    stand_in.load(ss, notes=[], duplicates=[])
            raise order_error from None

    def _needs_order(self, src: Path) -> bool:
        """An mlearn/maml JSON whose items carry stresses."""
        try:
            fmt = self.format
            if fmt == "auto":
                from scalebridge.potentials.readers import detect_format

                fmt = detect_format(src)
            if get_reader(fmt) is not get_reader("mlearn") or not src.is_file():
                return False
            items = json.loads(src.read_text())
        except (DataError, OSError, ValueError):
            return False
        return isinstance(items, list) and any(
            isinstance(it, dict) and isinstance(it.get("outputs"), dict)
            and (it["outputs"].get("virial_stress") is not None
                 or it["outputs"].get("stress") is not None) for it in items)

    def load(self, sources: Sequence[str | Path],
             order: tuple[str, ...] | None = None, notes: list[str] | None = None,
             duplicates: list[tuple[Frame, Frame]] | None = None,
             orders: dict[Path, tuple[str, ...] | None] | None = None) -> list[Frame]:
        """Read and validate frames from ``sources`` (files or folders).

        ``orders``: the stress order of each mlearn/maml file (default
        :meth:`voigt_orders` of ``sources``); ``order``: the one for files it leaves
        open. ``notes`` collects one-line warnings about the files, ``duplicates`` the
        (kept, dropped) duplicate pairs.
        """
        frames: list[Frame] = []
        if orders is None:
            orders = self.checked_orders([sources], notes)
        for src in sources:
            got = read_source(src, self.format,
                              options=self.options(orders.get(Path(src)) or order, notes))
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
            orders = self.checked_orders([sources, tests], notes)
            pool = self.load(sources, notes=notes, duplicates=dups, orders=orders)
            order = next((tuple(f.meta["voigt_order"].split()) for f in pool
                          if f.meta.get("voigt_order")), None)
            test = self.load(tests, order, notes=notes, duplicates=dups,
                             orders=orders) if tests else []
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
                          "crystal": describe_data(allf, type_map),
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
                    "duplicates_dropped": len(dups), "notes": notes,
                    "crystal": {k: v for k, v in info["crystal"].items()
                                if k in ("species", "element", "structure", "a0_guess_a",
                                         "dft_reference")}}

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


def _log_note(notes: list[str] | None, msg: str) -> None:
    log.info("%s", msg)
    if notes is not None:
        notes.append(msg)


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
    def crystal(self) -> dict:
        """The ``crystal`` record (:func:`scalebridge.potentials.crystal.describe_data`):
        species, element, structure, a0_guess_a, dft_reference; {} for data sets made
        before it existed."""
        return dict(self.info.get("crystal") or {})

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
