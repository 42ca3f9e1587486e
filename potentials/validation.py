"""Checks a list of frames must pass before it becomes a training set.

Each check raises :class:`~scalebridge.errors.DataError` naming the file and frame, or
(where the policy allows it) drops the offending frames and says so in the log and in
the returned report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
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


def _same_geometry(a: Frame, b: Frame, tol: float) -> bool:
    """Same species in the same order, cells within ``tol`` Å, and every atom within
    ``tol`` Å of its counterpart under the minimum-image convention (so wrapped and
    unwrapped copies of a position compare equal)."""
    if a.symbols != b.symbols or np.abs(a.cell - b.cell).max() > tol:
        return False
    d = (b.positions - a.positions) @ np.linalg.inv(a.cell)
    d -= np.round(d)
    return bool(np.sqrt(((d @ a.cell) ** 2).sum(axis=1)).max() <= tol)


def check_duplicates(frames: list[Frame], policy: Policy = "error",
                     position_tol_a: float = 1e-3, energy_tol_ev_per_atom: float = 1e-4,
                     found: list[tuple[Frame, Frame]] | None = None) -> list[Frame]:
    """No two frames that are the same configuration: same species (in order), cells and
    positions within ``position_tol_a`` (minimum image), energies within
    ``energy_tol_ev_per_atom``; e.g. one step read from a trajectory's OUTCAR and its
    vasprun.xml. ``drop`` keeps the first and logs one line; the (kept, dropped) pairs
    are appended to ``found``.

    Frames are bucketed by species and energy per atom (in steps of the tolerance), so
    only frames in neighbouring buckets are compared.
    """
    buckets: dict[tuple, list[Frame]] = {}
    keep: list[Frame] = []
    pairs: list[tuple[Frame, Frame]] = []
    for fr in frames:
        e = fr.energy / fr.natoms
        b = int(np.floor(e / energy_tol_ev_per_atom)) if np.isfinite(e) else 0
        sym = tuple(fr.symbols)
        first = next((o for k in (b - 1, b, b + 1) for o in buckets.get((sym, k), ())
                      if abs(o.energy / o.natoms - e) <= energy_tol_ev_per_atom
                      and _same_geometry(o, fr, position_tol_a)), None)
        if first is None:
            buckets.setdefault((sym, b), []).append(fr)
            keep.append(fr)
            continue
        if policy == "error":
            raise DataError(f"{fr.where}: duplicate of {first.where} (same species, cell "
                            f"and positions within {position_tol_a} Å, energy within "
                            f"{energy_tol_ev_per_atom} eV/atom); set duplicates = 'drop' "
                            "to keep only the first")
        pairs.append((first, fr))
    if pairs:
        shown = "; ".join(f"{b.where} (same as {a.where})" for a, b in pairs[:3])
        more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
        log.warning("%d duplicate frame(s) dropped: %s%s", len(pairs), shown, more)
        if found is not None:
            found.extend(pairs)
    return keep


def _drop_implausible(judged: Iterable[tuple[Frame, str | None]], setting: str,
                      policy: Policy) -> list[Frame]:
    """The frames of ``judged`` (frame, what is implausible about it or None) that are
    plausible, in order. Each other frame raises :class:`DataError` (policy ``error``:
    its message, then how to let it pass: raise ``setting`` or drop) or is dropped with
    a warning line (``drop``)."""
    keep = []
    for fr, msg in judged:
        if msg is None:
            keep.append(fr)
            continue
        if policy == "error":
            raise DataError(f"{msg}; raise {setting} or set implausible = 'drop' to skip "
                            "such frames")
        log.warning("%s: dropped", msg)
    return keep


def check_forces(frames: list[Frame], max_force_ev_a: float | None,
                 policy: Policy = "error") -> list[Frame]:
    """No atom with a force above ``max_force_ev_a`` (eV/Å; None: no bound)."""
    if max_force_ev_a is None:
        return list(frames)

    def problem(fr: Frame) -> str | None:
        f = np.sqrt((np.asarray(fr.forces) ** 2).sum(axis=1))
        if f.max() <= max_force_ev_a:
            return None
        return (f"{fr.where}: force on atom {int(f.argmax())} is {f.max():.4g} eV/Å, above "
                f"max_force_ev_a = {max_force_ev_a:g}")

    return _drop_implausible(((fr, problem(fr)) for fr in frames),
                             "max_force_ev_a (null: no bound)", policy)


def _robust_z(r: np.ndarray, ref: np.ndarray, mad_floor: float) -> np.ndarray:
    med = np.median(ref)
    mad = max(float(np.median(np.abs(ref - med))), mad_floor)
    return 0.6745 * np.abs(r - med) / mad


def energy_zscores(frames: Sequence[Frame], z_max: float, min_frames: int = 3,
                   mad_floor: float = 0.05) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Robust z-score ``0.6745 |r - median| / MAD`` of each frame's energy per atom.

    ``r`` is the energy per atom minus per-species reference energies, a least-squares
    fit of each composition's median energy per atom (weighted by its frame count) to
    its atom fractions (one species: the median), refitted without the frames above
    ``z_max``: a gross outlier moves neither. The median and MAD (at least
    ``mad_floor`` eV/atom) are those of the frame's group (configuration family) when it
    has ``min_frames`` frames or more, else the data set's: a volume scan's compressed
    cells are judged against the volume scan.

    Returns:
        (r, z, scope) with scope a phrase naming what each frame was compared with.
    """
    species = sorted({s for fr in frames for s in fr.symbols})
    x = np.array([[fr.symbols.count(s) / fr.natoms for s in species] for fr in frames])
    e = np.array([fr.energy / fr.natoms for fr in frames])
    comp = np.unique(np.round(x, 6), axis=0, return_inverse=True)[1].reshape(-1)
    inlier = np.ones(len(frames), bool)
    r = e
    for _ in range(5):
        rows, rhs, w = [], [], []
        for c in np.unique(comp[inlier]):
            sel = inlier & (comp == c)
            rows.append(x[sel][0])
            rhs.append(np.median(e[sel]))
            w.append(np.sqrt(sel.sum()))
        w_ = np.array(w)
        mu = np.linalg.lstsq(np.array(rows) * w_[:, None], np.array(rhs) * w_,
                             rcond=None)[0]
        r = e - x @ mu
        new = _robust_z(r, r[inlier], mad_floor) <= z_max
        if (new == inlier).all() or not new.any():
            break
        inlier = new
    z = _robust_z(r, r[inlier], mad_floor)
    scope = [f"the data set ({len(frames)} frames)"] * len(frames)
    groups: dict[str, list[int]] = {}
    for i, fr in enumerate(frames):
        groups.setdefault(fr.group, []).append(i)
    for g, idx in groups.items():
        if len(idx) >= min_frames and len(idx) < len(frames):
            z[idx] = _robust_z(r[idx], r[idx], mad_floor)
            for i in idx:
                scope[i] = f"group {g!r} ({len(idx)} frames)"
    return r, z, scope


def check_energy_outliers(frames: list[Frame], z_max: float | None,
                          policy: Policy = "error", min_frames: int = 3) -> list[Frame]:
    """No frame whose energy per atom is more than ``z_max`` robust standard deviations
    from its group's or the data set's (:func:`energy_zscores`). Fewer than
    ``min_frames`` frames are not judged; None: no check."""
    if z_max is None or len(frames) < min_frames:
        return list(frames)
    _, z, scope = energy_zscores(frames, z_max, min_frames)
    return _drop_implausible(
        ((fr, None if zi <= z_max else
          f"{fr.where}: energy {fr.energy / fr.natoms:.6g} eV/atom is {zi:.3g} robust SDs "
          f"from the median of {sc}, above energy_outlier_z = {z_max:g}")
         for fr, zi, sc in zip(frames, z, scope, strict=True)),
        "energy_outlier_z (null: no check)", policy)


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
