"""Checks a list of frames must pass before it becomes a training set.

Each check raises :class:`~scalebridge.errors.DataError` naming the file and frame, or
(where the policy allows it) drops the offending frames and says so in the log and in
the returned report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scalebridge.errors import DataError
from scalebridge.potentials.frames import Frame

log = logging.getLogger("scalebridge.potentials")

Policy = Literal["error", "drop"]

_ELEMENTS: set[str] | None = None


def _elements() -> set[str]:
    global _ELEMENTS
    if _ELEMENTS is None:
        from ase.data import chemical_symbols

        _ELEMENTS = set(chemical_symbols[1:])
    return _ELEMENTS


def check_species(frames: Sequence[Frame], type_map: Sequence[str] | None) -> list[str]:
    """Every symbol is an element and in ``type_map``; every ``type_map`` entry occurs.

    Returns:
        The type map (``type_map`` or the sorted species found).
    """
    found: dict[str, Frame] = {}
    for fr in frames:
        if fr.natoms == 0:
            raise DataError(f"{fr.where}: frame has no atoms")
        for s in fr.symbols:
            if s not in _elements():
                raise DataError(f"{fr.where}: unknown species {s!r} (not an element)")
            found.setdefault(s, fr)
    if type_map is None:
        return sorted(found)
    for s, fr in found.items():
        if s not in type_map:
            raise DataError(f"{fr.where}: species {s!r} is not in type_map "
                            f"{list(type_map)}")
    missing = [s for s in type_map if s not in found]
    if missing:
        raise DataError(f"type_map species {missing} occur in no frame of the data "
                        f"({len(frames)} frames from {_sources(frames)})")
    return list(type_map)


def _sources(frames: Sequence[Frame]) -> str:
    srcs = sorted({fr.source for fr in frames})
    return ", ".join(srcs[:3]) + (f" and {len(srcs) - 3} more" if len(srcs) > 3 else "")


def check_labels(frames: Sequence[Frame]) -> None:
    """Energy and forces present with the right shapes; all numbers finite."""
    for fr in frames:
        if fr.forces is None:
            raise DataError(f"{fr.where}: frame has no forces")
        if not np.isfinite(fr.energy):
            raise DataError(f"{fr.where}: energy is {fr.energy} (missing, NaN or inf)")
        for name, arr in (("positions", fr.positions), ("cell", fr.cell),
                          ("forces", fr.forces), ("virial", fr.virial)):
            if arr is None:
                continue
            bad = ~np.isfinite(np.asarray(arr, float))
            if bad.any():
                where = np.argwhere(bad)[0]
                raise DataError(f"{fr.where}: {name} has NaN/inf (first at index "
                                f"{tuple(int(i) for i in where)})")
        if abs(np.linalg.det(fr.cell)) < 1e-6:
            raise DataError(f"{fr.where}: cell is singular (volume 0); non-periodic "
                            "frames need a box")


def check_virials(frames: Sequence[Frame], policy: Policy = "error") -> bool:
    """All frames have virials, or none. ``drop`` removes every virial instead.

    Returns:
        Whether the data set has virials.
    """
    with_v = [fr for fr in frames if fr.virial is not None]
    if not with_v:
        return False
    if len(with_v) == len(frames):
        return True
    without = next(fr for fr in frames if fr.virial is None)
    msg = (f"{without.where}: has no virial/stress while {len(with_v)} of {len(frames)} "
           f"frames (e.g. {with_v[0].where}) have one")
    if policy == "error":
        raise DataError(msg + "; set mixed_virials = 'drop' to train without virials")
    log.warning("%s: dropping all virials", msg)
    for fr in frames:
        fr.virial = None
    return False


def check_converged(frames: list[Frame], policy: Policy = "error") -> list[Frame]:
    """No frame whose electronic loop hit NELM."""
    bad = [fr for fr in frames if fr.converged is False]
    if bad and policy == "error":
        fr = bad[0]
        raise DataError(
            f"{fr.where}: electronic steps did not converge ({fr.meta.get('electronic_steps')}"
            f" = NELM {fr.meta.get('nelm')} iterations); {len(bad)} such frame(s); set "
            "unconverged = 'drop' to skip them")
    for fr in bad:
        log.warning("%s: unconverged electronic steps: dropped", fr.where)
    return [fr for fr in frames if fr.converged is not False]


def _key(fr: Frame, decimals: int = 6) -> tuple:
    return (tuple(fr.symbols), np.round(fr.cell, decimals).tobytes(),
            np.round(fr.positions, decimals).tobytes())


def check_duplicates(frames: list[Frame], policy: Policy = "error") -> list[Frame]:
    """No two frames with the same species, cell and positions (to 1e-6 Å)."""
    seen: dict[tuple, Frame] = {}
    keep = []
    for fr in frames:
        k = _key(fr)
        if k in seen:
            first = seen[k]
            if policy == "error":
                raise DataError(f"{fr.where}: duplicate of {first.where} (same cell and "
                                "positions); set duplicates = 'drop' to keep only the first")
            log.warning("%s: duplicate of %s: dropped", fr.where, first.where)
            continue
        seen[k] = fr
        keep.append(fr)
    return keep


def min_distance(fr: Frame, cutoff: float = 3.0) -> float:
    """Shortest interatomic distance (periodic), Å; ``cutoff`` if none is shorter."""
    from ase.neighborlist import neighbor_list

    atoms = fr.to_atoms()
    d = neighbor_list("d", atoms, cutoff)
    return float(d.min()) if len(d) else cutoff


def check_distances(frames: Sequence[Frame], min_distance_a: float) -> None:
    """No two atoms closer than ``min_distance_a`` (Å)."""
    for fr in frames:
        d = min_distance(fr, cutoff=max(min_distance_a, 0.1))
        if d < min_distance_a:
            raise DataError(f"{fr.where}: two atoms are {d:.3f} Å apart, closer than "
                            f"min_distance_a = {min_distance_a} Å")
