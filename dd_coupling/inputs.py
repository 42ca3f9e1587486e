"""Readers for the md artifacts dd_coupling consumes (formats in docs/CONTRACTS.md).

Bad content raises :class:`~scalebridge.errors.DataError` with one line naming the file,
the key or column, and the row.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scalebridge.artifacts import Artifact, read_artifact
from scalebridge.errors import DataError

VELOCITY_COLUMNS = ("character", "temperature_k", "tau_mpa", "velocity_m_s",
                    "velocity_err_m_s", "n_atoms", "duration_ps")


@dataclass(frozen=True)
class Material:
    """Isotropic elastic constants and Burgers vector taken from a Properties artifact.

    Attributes:
        mu_pa: shear modulus, Pa. nu: Poisson ratio. b_m: Burgers vector length, m.
        source: where they came from (the properties.json path).
        lattice: "bcc", "fcc" or None when the Properties do not say.
    """

    mu_pa: float
    nu: float
    b_m: float
    source: str = ""
    lattice: str | None = None


@dataclass(frozen=True)
class VelocityTable:
    """The rows of a DefectStats ``velocity.csv`` as arrays, each (n,).

    Attributes:
        character: int (0 edge, 1 screw); temperature_k; tau_pa; velocity_m_s;
        velocity_err_m_s; acceleration_ratio: first-half over second-half velocity of
        each point's runs (NaN where not known; None for a table without the column);
        source: the file read.
    """

    character: np.ndarray
    temperature_k: np.ndarray
    tau_pa: np.ndarray
    velocity_m_s: np.ndarray
    velocity_err_m_s: np.ndarray
    source: str = ""
    acceleration_ratio: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tau_pa.shape[0])

    def select(self, mask: np.ndarray) -> VelocityTable:
        ratio = None if self.acceleration_ratio is None else self.acceleration_ratio[mask]
        return VelocityTable(self.character[mask], self.temperature_k[mask],
                             self.tau_pa[mask], self.velocity_m_s[mask],
                             self.velocity_err_m_s[mask], self.source, ratio)

    def steadiness(self) -> float | None:
        """Median first-half / second-half velocity over the points that have one (~1:
        steady glide; below, the velocities are low and a drag from them high), None when
        no point has one."""
        if self.acceleration_ratio is None:
            return None
        r = self.acceleration_ratio[np.isfinite(self.acceleration_ratio)]
        return float(np.median(r)) if r.size else None


def _artifact_file(art: Artifact | str | Path, name: str, kind: str) -> Path:
    if isinstance(art, Artifact):
        return art.file(name)
    p = Path(art)
    if p.is_file():
        return p
    return read_artifact(p, kind=kind).file(name)


def read_properties(properties: Artifact | str | Path) -> Material:
    """μ, ν, b (and the lattice, when given) from a Properties artifact (or its
    ``properties.json``)."""
    path = _artifact_file(properties, "properties.json", "Properties")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    vals = {}
    for key in ("shear_modulus_gpa", "poisson_ratio", "burgers_a"):
        if key not in doc:
            raise DataError(f"{path}: missing key {key!r} (dd_coupling needs μ, ν, b)")
        try:
            vals[key] = float(doc[key])
        except (TypeError, ValueError):
            raise DataError(f"{path}: key {key!r} = {doc[key]!r} is not a number") from None
        if not math.isfinite(vals[key]):
            raise DataError(f"{path}: key {key!r} = {doc[key]!r} is not finite")
    if vals["shear_modulus_gpa"] <= 0:
        raise DataError(f"{path}: key 'shear_modulus_gpa' = {vals['shear_modulus_gpa']} "
                        "must be > 0")
    if not -1.0 < vals["poisson_ratio"] < 0.5:
        raise DataError(f"{path}: key 'poisson_ratio' = {vals['poisson_ratio']} must lie in "
                        "(-1, 0.5)")
    if vals["burgers_a"] <= 0:
        raise DataError(f"{path}: key 'burgers_a' = {vals['burgers_a']} must be > 0")
    lattice = doc.get("lattice")
    return Material(mu_pa=vals["shear_modulus_gpa"] * 1e9, nu=vals["poisson_ratio"],
                    b_m=vals["burgers_a"] * 1e-10, source=str(path),
                    lattice=str(lattice).lower() if lattice else None)


def read_velocity_table(defect_stats: Artifact | str | Path) -> VelocityTable:
    """Rows of a DefectStats ``velocity.csv`` (or the CSV itself), validated; rows whose
    ``status`` column is not ``ok`` (points md could not measure) are skipped."""
    path = _artifact_file(defect_stats, "velocity.csv", "DefectStats")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        need = ("character", "temperature_k", "tau_mpa", "velocity_m_s")
        missing = [c for c in need if c not in header]
        if missing:
            raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                            f"(has {', '.join(header) or 'no header'})")
        cols: dict[str, list[float]] = {c: [] for c in VELOCITY_COLUMNS[1:5]}
        chars: list[int] = []
        ratios: list[float] = []
        flagged: list[str] = []
        for row_no, row in enumerate(reader, start=2):
            status = (row.get("status") or "ok").strip()
            if status != "ok":          # a point md could not measure: skipped, with why
                flagged.append(f"line {row_no}: {status}")
                continue
            ch = (row.get("character") or "").strip().lower()
            if ch not in ("edge", "screw"):
                raise DataError(f"{path}: line {row_no}: character {ch!r} is not edge|screw")
            chars.append(0 if ch == "edge" else 1)
            for c in cols:
                raw = row.get(c)
                if c == "velocity_err_m_s" and (raw is None or raw.strip() == ""):
                    cols[c].append(0.0)
                    continue
                try:
                    val = float(raw)  # type: ignore[arg-type]
                except (TypeError, ValueError):
                    raise DataError(f"{path}: line {row_no}: column {c} = {raw!r} is not a "
                                    "number") from None
                if not math.isfinite(val):
                    raise DataError(f"{path}: line {row_no}: column {c} = {raw!r} is not "
                                    "finite")
                cols[c].append(val)
            if cols["temperature_k"][-1] <= 0:
                raise DataError(f"{path}: line {row_no}: temperature_k must be > 0")
            if cols["velocity_err_m_s"][-1] < 0:
                raise DataError(f"{path}: line {row_no}: velocity_err_m_s must be >= 0")
            try:        # a diagnostic: an empty or odd value is "not known", not an error
                ratios.append(float(row.get("acceleration_ratio") or "nan"))
            except ValueError:
                ratios.append(float("nan"))
    if not chars:
        raise DataError(f"{path}: no data rows" + (
            f" with status ok ({len(flagged)} flagged: {', '.join(flagged[:4])})"
            if flagged else ""))
    return VelocityTable(character=np.array(chars, dtype=np.int64),
                         temperature_k=np.array(cols["temperature_k"]),
                         tau_pa=np.array(cols["tau_mpa"]) * 1e6,
                         velocity_m_s=np.array(cols["velocity_m_s"]),
                         velocity_err_m_s=np.array(cols["velocity_err_m_s"]),
                         source=str(path),
                         acceleration_ratio=(np.array(ratios) if "acceleration_ratio"
                                             in header else None))


__all__ = ["Material", "VelocityTable", "read_properties", "read_velocity_table"]
