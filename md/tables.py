"""Small helpers for tidy CSV tables and their PNG plots (every plot has its CSV)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scalebridge.artifacts import write_csv_atomic


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write dict rows as CSV with a header (missing keys → empty), atomically."""
    return write_csv_atomic(path, columns,
                            ([_fmt(r.get(c, "")) for c in columns] for r in rows))


def read_rows(path: Path) -> list[dict[str, Any]]:
    """CSV → list of dicts, numbers parsed as floats where they parse."""
    with open(path, newline="") as f:
        out = []
        for r in csv.DictReader(f):
            out.append({k: _parse(v) for k, v in r.items()})
    return out


def _fmt(x: Any) -> Any:
    return f"{x:.8g}" if isinstance(x, float) else x


def _parse(v: str) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def pyplot():
    """matplotlib.pyplot with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
