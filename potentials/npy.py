"""DeePMD ``deepmd/npy`` systems: write frames, read them back.

A system is a folder holding frames with the same atoms in the same order::

    type.raw            (natoms,) int, index into type_map
    type_map.raw        one symbol per line
    set.000/box.npy     (nframes, 9) Å, cell rows
    set.000/coord.npy   (nframes, natoms*3) Å
    set.000/energy.npy  (nframes,) eV
    set.000/force.npy   (nframes, natoms*3) eV/Å
    set.000/virial.npy  (nframes, 9) eV, compression positive (only when every frame has one)

Frames are grouped into systems by (group, composition); within a frame atoms are
sorted by type (stable), so each system has one ``type.raw``.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
from scalebridge.errors import DataError
from scalebridge.potentials.frames import Frame


def _sorted_frame(fr: Frame, type_map: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(types sorted, permutation) for a frame."""
    try:
        types = np.array([type_map.index(s) for s in fr.symbols], int)
    except ValueError:
        bad = sorted(set(fr.symbols) - set(type_map))
        raise DataError(f"{fr.where}: species {bad} not in type_map {type_map}") from None
    perm = np.argsort(types, kind="stable")
    return types[perm], perm


def system_name(group: str, types: np.ndarray, type_map: list[str]) -> str:
    """``<group>_<formula>`` with only [A-Za-z0-9_.-] characters."""
    counts = np.bincount(types, minlength=len(type_map))
    formula = "".join(f"{type_map[i]}{c}" for i, c in enumerate(counts) if c)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{group or 'all'}_{formula}")


def write_systems(frames: list[Frame], out: Path, type_map: list[str]) -> dict[str, dict]:
    """Write ``frames`` as npy systems under ``out``.

    Returns:
        ``{system_name: {"group", "frames", "natoms", "sources": [[file, index], ...]}}``.
    """
    out = Path(out)
    buckets: dict[tuple[str, bytes], list[tuple[Frame, np.ndarray]]] = defaultdict(list)
    for fr in frames:
        types, perm = _sorted_frame(fr, type_map)
        buckets[(fr.group, types.tobytes())].append((fr, perm))
    has_virial = bool(frames) and all(fr.virial is not None for fr in frames)
    index: dict[str, dict] = {}
    for (group, tkey), items in sorted(buckets.items()):
        types = np.frombuffer(tkey, dtype=int)
        name = system_name(group, types, type_map)
        d = out / name
        (d / "set.000").mkdir(parents=True, exist_ok=True)
        np.savetxt(d / "type.raw", types, fmt="%d")
        (d / "type_map.raw").write_text("\n".join(type_map) + "\n")
        n = len(items)
        box = np.array([fr.cell.reshape(9) for fr, _ in items])
        coord = np.array([fr.positions[p].reshape(-1) for fr, p in items])
        energy = np.array([fr.energy for fr, _ in items])
        np.save(d / "set.000" / "box.npy", box)
        np.save(d / "set.000" / "coord.npy", coord)
        np.save(d / "set.000" / "energy.npy", energy)
        if all(fr.forces is not None for fr, _ in items):
            force = np.array([fr.forces[p].reshape(-1) for fr, p in items])
            np.save(d / "set.000" / "force.npy", force)
        if has_virial:
            np.save(d / "set.000" / "virial.npy",
                    np.array([fr.virial.reshape(9) for fr, _ in items]))
        index[name] = {"group": group, "frames": n, "natoms": len(types),
                       "sources": [[fr.source, fr.index] for fr, _ in items]}
    return index


def read_system(path: Path, group: str = "") -> list[Frame]:
    """Read one npy system back into frames (all ``set.*`` folders)."""
    path = Path(path)
    try:
        type_map = (path / "type_map.raw").read_text().split()
        types = np.loadtxt(path / "type.raw", dtype=int, ndmin=1)
    except OSError as e:
        raise DataError(f"{path}: not a deepmd/npy system: {e}") from None
    symbols = [type_map[t] for t in types]
    frames: list[Frame] = []
    for s in sorted(path.glob("set.*")):
        box = np.load(s / "box.npy").reshape(-1, 3, 3)
        coord = np.load(s / "coord.npy").reshape(len(box), -1, 3)
        energy = np.load(s / "energy.npy").reshape(-1)
        force = (np.load(s / "force.npy").reshape(len(box), -1, 3)
                 if (s / "force.npy").exists() else None)
        virial = (np.load(s / "virial.npy").reshape(-1, 3, 3)
                  if (s / "virial.npy").exists() else None)
        for i in range(len(box)):
            frames.append(Frame(
                symbols=list(symbols), positions=coord[i], cell=box[i],
                energy=float(energy[i]), forces=None if force is None else force[i],
                virial=None if virial is None else virial[i], group=group,
                source=str(path), index=len(frames)))
    return frames
