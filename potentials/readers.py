"""Readers: DFT output files -> :class:`~scalebridge.potentials.frames.Frame` lists.

Every format is a :class:`Reader` (a ``name``, a ``kind`` for messages, ``sniff(path)``
and ``read(path, options)``) in the registry :data:`READERS`; :func:`read_source` reads a
file or folder with the reader of its ``format`` key, or with the first reader whose
``sniff`` claims it (``format = "auto"``). Families of formats that another library
reads are named ``"<prefix>:<its format>"`` (:data:`FAMILIES`).

Formats, their keys and their units (all become the units of :class:`Frame`):

* ``mlearn`` (alias ``maml``): a JSON list of ``{structure, outputs{energy, forces,
  virial_stress | stress}, group, ...}`` (Zuo et al. 2020; the maml alloy files of Li et
  al. 2020 name the stress ``stress``, their ``group`` is the chemical system, so the
  file stem is the group). ``structure`` is a pymatgen ``Structure.as_dict()``; the six
  stresses are kbar, compression positive, in an element-dependent Voigt order that
  :func:`detect_voigt_order` recovers from the sheared Elastic cells.
* ``fitsnap``: one comment line, then ``{"Dataset": {"Data": [...]}}`` with
  ``Positions``, ``Lattice`` (Å), ``Energy`` (eV), ``Forces`` (eV/Å), ``Stress``
  (3x3, bar, compression positive), ``AtomTypes``; the group is the parent folder.
* ``vasprun`` (pymatgen ``Vasprun``) and ``outcar`` (regular expressions over the
  header and the per-step blocks). A file that ends mid-run (no ``</modeling>``; no
  closing timing section) is refused unless ``allow_truncated``.
* ``extxyz`` and ``ase:<ase format>`` (:mod:`scalebridge.potentials.interop`):
  anything ``ase.io.read`` reads with energies and forces; stress as ASE stores it
  (eV/Å³, tension positive) unless ``ase_stress_unit``/``ase_stress_sign`` say
  otherwise, or a ``virial`` (eV, GAP's sign, the same as :class:`Frame`'s).
* ``deepmd/npy``, ``deepmd/raw`` and ``dpdata:<dpdata format>`` (``dpdata:qe/pw/scf``,
  ``dpdata:cp2k/output``, ``dpdata:abacus/scf``, ...): through
  ``dpdata.LabeledSystem``, whose units and virial sign are DeePMD's, i.e. ours.
  ``auto`` recognises DeePMD system folders, Quantum ESPRESSO and CP2K outputs and
  ABACUS run folders.

Every reader is lazy about nothing: it returns all frames with the labels it found and
leaves judging them to :mod:`scalebridge.potentials.validation` (the same checks for
every format, in :meth:`~scalebridge.potentials.dataset.IngestSettings.load`).

Adding a format:

1. Write a class with ``name`` (the ``format`` key), ``kind`` ("a Foo output"),
   ``sniff(path) -> bool`` (cheap: the name, then a few kB; False when unsure) and
   ``read(path, opts: ReadOptions) -> list[Frame]`` returning frames in the units of
   :class:`~scalebridge.potentials.frames.Frame` (eV, Å, eV/Å, virial in eV with
   compression positive), raising :class:`~scalebridge.errors.DataError` with the file
   (and frame) for anything it cannot read. Put it in ``interop.py`` (or its own module
   imported by :func:`_load_plugins`).
2. Register it: ``register(FooReader())`` (a family: ``FAMILIES["foo"] = factory``). The
   position in :data:`READERS` is the order ``auto`` asks in; put specific sniffers
   before general ones.
3. Nothing else: ``IngestSettings.format`` accepts every registered key, ``auto`` asks
   the new ``sniff``, and the dataset checks run on its frames.
4. Test it like ``tests/potentials/test_potentials_formats.py``: a small real file under
   ``tests/data/<format>/`` (README with source, citation and licence) and one test that
   its energies, forces and stress (units and sign) agree with an independent reading:
   another format of the same frames, dpdata or ASE, or P = -dE/dV along a volume scan.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from scalebridge.errors import DataError
from scalebridge.potentials.frames import (
    EV_A3_IN_BAR,
    EV_A3_IN_KBAR,
    Frame,
    kbar_voigt_to_virial,
)

#: Voigt orders seen in mlearn files (Mo uses the first; other elements the second).
MLEARN_ORDERS = {
    "xx yy zz xy xz yz": ("xx", "yy", "zz", "xy", "xz", "yz"),
    "xx yy zz xy yz xz": ("xx", "yy", "zz", "xy", "yz", "xz"),
    "xx yy zz yz xz xy": ("xx", "yy", "zz", "yz", "xz", "xy"),
}
_AXES = "xyz"

log = logging.getLogger("scalebridge.potentials")


class VoigtOrderError(DataError):
    """The Voigt order of a file's stresses is unclear: its sheared cells disagree, or
    (from :meth:`~scalebridge.potentials.dataset.IngestSettings.voigt_orders`) neither
    it nor the data set's other files tell it."""


def _single_shear(cell: np.ndarray, tol: float = 1e-3) -> str | None:
    """The shear component ("xy", "xz", "yz") of a cell whose only off-diagonal
    entries form one symmetric pair of axes, else None."""
    off = [(i, j) for i in range(3) for j in range(3)
           if i != j and abs(cell[i, j]) > tol * np.abs(cell).max()]
    pairs = {tuple(sorted(p)) for p in off}
    if len(pairs) != 1:
        return None
    i, j = next(iter(pairs))
    return _AXES[i] + _AXES[j]


def detect_voigt_order(items: list[dict], source: str) -> tuple[str, ...] | None:
    """Order of the six ``virial_stress`` numbers, from single-shear cells.

    For each cell sheared in exactly one plane, the shear slot (3, 4 or 5) with the
    largest magnitude is the one answering that component. Returns None when the file
    has no sheared cell. Raises :class:`DataError` when votes disagree.
    """
    votes: dict[str, Counter] = {}
    for it in items:
        try:
            cell = np.asarray(it["structure"]["lattice"]["matrix"], float)
            out = it["outputs"]
            s = np.asarray(out["virial_stress"] if "virial_stress" in out
                           else out["stress"], float)
        except (KeyError, TypeError, ValueError):
            continue
        comp = _single_shear(cell)
        if comp is None or s.shape != (6,) or not np.all(np.isfinite(s)):
            continue
        shear = np.abs(s[3:])
        if shear.max() < 5 * np.median(np.abs(s[3:])) or shear.max() < 1.0:
            continue
        votes.setdefault(comp, Counter())[3 + int(np.argmax(shear))] += 1
    if not votes:
        return None
    slot_of = {}
    for comp, c in votes.items():
        slot, n = c.most_common(1)[0]
        if n < 0.8 * sum(c.values()):
            raise VoigtOrderError(f"{source}: sheared cells disagree on which virial_stress slot "
                            f"is {comp} ({dict(c)}); set voigt_order explicitly")
        slot_of[comp] = slot
    if len(set(slot_of.values())) != len(slot_of):
        raise VoigtOrderError(f"{source}: two shear components answer in one virial_stress "
                        f"slot ({slot_of}); set voigt_order explicitly")
    missing = [c for c in ("xy", "xz", "yz") if c not in slot_of]
    free = [s for s in (3, 4, 5) if s not in slot_of.values()]
    if len(missing) == 1:
        slot_of[missing[0]] = free[0]
    elif missing:
        return None
    order = ["xx", "yy", "zz", "", "", ""]
    for comp, slot in slot_of.items():
        order[slot] = comp
    return tuple(order)


def _load_json(path: Path, skip_comment: bool = False):
    skipped = 0  # characters of a leading comment line (FitSNAP) cut off before parsing
    try:
        text = path.read_text()
        if skip_comment and text.lstrip().startswith("#"):
            skipped = text.index("\n") + 1
        return json.loads(text[skipped:])
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(json_error_line(path, e, text, skipped)) from None


def json_error_line(path: Path, e: json.JSONDecodeError, text: str, skipped: int = 0) -> str:
    """One line for invalid JSON in ``path`` (``text`` its content, of which the first
    ``skipped`` characters, a comment line, were not parsed): json's reason, line,
    column and character, and, when the error is where the file ends, that it may be
    cut off (an mlearn file is one line, so the character locates it)."""
    pos = e.pos + skipped
    line = e.lineno + (1 if skipped else 0)
    msg = " ".join(e.msg.split())
    end = len(text.rstrip())
    tail = ("; the file ends there: cut off?"
            if pos >= end - 1 or msg.startswith("Unterminated") else "")
    return (f"{path}: invalid JSON: {msg}: line {line} column {e.colno} (character {pos} "
            f"of {len(text)}){tail}")


def _mlearn_group(item: dict, path: Path) -> str:
    """The item's ``group``; for maml items (``_id`` and ``tags``, whose group is the
    chemical system such as "W-Mo") the file stem ("MoW_SS", "Mo_Elastic")."""
    if "_id" in item and "tags" in item:
        return path.stem
    return str(item.get("group", "") or "")


def _forces_array(forces, natoms: int, where: str) -> np.ndarray | None:
    """A reader's forces label as an (natoms, 3) float array, eV/Å (None: no forces);
    any other shape is a :class:`DataError` naming ``where``."""
    if forces is None:
        return None
    f = np.asarray(forces, float)
    if f.shape != (natoms, 3):
        raise DataError(f"{where}: forces have shape {f.shape}, expected ({natoms}, 3)")
    return f


def read_mlearn_json(path: str | Path, voigt_order: str = "auto",
                     fallback_order: tuple[str, ...] | None = None) -> list[Frame]:
    """Read an mlearn/pymatgen JSON list (see the module doc).

    Args:
        voigt_order: "auto" (detect from sheared cells) or a key of
            :data:`MLEARN_ORDERS`.
        fallback_order: used when "auto" finds no sheared cell, or sheared cells that
            disagree (e.g. the order the data set's other files agree on).
    """
    from pymatgen.core import Structure

    path = Path(path)
    items = _load_json(path)
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of configurations (mlearn format)")
    if voigt_order == "auto":
        try:
            order = detect_voigt_order(items, str(path)) or fallback_order
        except VoigtOrderError:
            if fallback_order is None:
                raise
            order = fallback_order  # the data set's other files agree on it
    else:
        if voigt_order not in MLEARN_ORDERS:
            raise DataError(f"voigt_order {voigt_order!r}: choose auto or one of "
                            f"{', '.join(MLEARN_ORDERS)}")
        order = MLEARN_ORDERS[voigt_order]
    frames = []
    for i, it in enumerate(items):
        where = f"{path} frame {i}"
        if not isinstance(it, dict) or "structure" not in it:
            raise DataError(f"{where}: no 'structure' (not an mlearn-style entry)")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                st = Structure.from_dict(it["structure"])
        except Exception as e:  # pymatgen raises many kinds
            raise DataError(f"{where}: unreadable structure: {e}") from None
        if not st.is_ordered:
            raise DataError(f"{where}: disordered (partially occupied) structure")
        out = it.get("outputs", {}) or {}
        energy = out.get("energy")
        forces = out.get("forces")
        stress = out.get("virial_stress", out.get("stress"))
        cell = np.array(st.lattice.matrix, float)
        virial = None
        if stress is not None:
            s = np.asarray(stress, float)
            if s.shape != (6,):
                raise DataError(f"{where}: virial_stress has shape {s.shape}, expected (6,)")
            if order is None:
                raise DataError(f"{path}: cannot tell the Voigt order of virial_stress (no "
                                "sheared Elastic cell in this file); set voigt_order")
            virial = kbar_voigt_to_virial(s, order, abs(np.linalg.det(cell)))
        f = _forces_array(forces, len(st), where)
        frames.append(Frame(
            symbols=[sp.symbol for sp in st.species], positions=np.array(st.cart_coords),
            cell=cell, energy=float("nan") if energy is None else float(energy), forces=f,
            virial=virial, group=_mlearn_group(it, path), source=str(path), index=i,
            meta={"description": it.get("description", ""),
                  "voigt_order": " ".join(order) if order else None}))
    return frames


def read_fitsnap_json(path: str | Path, group: str | None = None) -> list[Frame]:
    """Read one FitSNAP JSON file; ``group`` defaults to the parent folder's name."""
    path = Path(path)
    data = _load_json(path, skip_comment=True)
    try:
        ds = data["Dataset"]
        entries = ds["Data"]
    except (KeyError, TypeError):
        raise DataError(f"{path}: expected {{'Dataset': {{'Data': [...]}}}} (FitSNAP JSON)"
                        ) from None
    for key, unit in (("PositionsStyle", "angstrom"), ("LatticeStyle", "angstrom"),
                      ("EnergyStyle", "electronvolt"), ("StressStyle", "bar")):
        if key in ds and str(ds[key]).lower() != unit:
            raise DataError(f"{path}: {key} is {ds[key]!r}; only {unit!r} is supported")
    frames = []
    for i, e in enumerate(entries):
        where = f"{path} frame {i}"
        try:
            pos = np.asarray(e["Positions"], float)
            cell = np.asarray(e["Lattice"], float)
            types = [str(t) for t in e["AtomTypes"]]
        except KeyError as k:
            raise DataError(f"{where}: missing key {k}") from None
        virial = None
        if e.get("Stress") is not None:
            virial = (np.asarray(e["Stress"], float).reshape(3, 3) / EV_A3_IN_BAR
                      * abs(np.linalg.det(cell)))
        f = np.asarray(e["Forces"], float) if e.get("Forces") is not None else None
        if f is not None and f.shape != pos.shape:
            raise DataError(f"{where}: Forces shape {f.shape} differs from Positions "
                            f"{pos.shape}")
        frames.append(Frame(
            symbols=types, positions=pos, cell=cell,
            energy=float(e.get("Energy", float("nan"))), forces=f, virial=virial,
            group=group if group is not None else path.parent.name, source=str(path),
            index=i))
    return frames


def _truncated(path: Path, what: str, n: int, allow: bool, notes: list[str] | None) -> None:
    """Refuse a file that ends mid-run, or (``allow``) note that only its ``n`` complete
    ionic steps are kept."""
    if n == 0:
        raise DataError(f"{path}: ends before its first complete ionic step (truncated, or "
                        "the run was killed)")
    msg = (f"{path}: ends before {what} (truncated, or the run was killed); "
           f"{n} complete ionic step(s)")
    if not allow:
        raise DataError(msg + "; set allow_truncated = true to keep them")
    _note(notes, msg + " kept (allow_truncated = true)")


def _note(notes: list[str] | None, msg: str) -> None:
    log.warning("%s", msg)
    if notes is not None:
        notes.append(msg)


def _check_not_empty(path: Path, kind: str) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if size == 0:
        raise DataError(f"{path}: file is empty (0 bytes); expected {kind}")


def read_vasprun(path: str | Path, group: str = "", *, allow_truncated: bool = False,
                 notes: list[str] | None = None) -> list[Frame]:
    """Every ionic step of a ``vasprun.xml`` (pymatgen): free energy (``e_fr_energy``,
    consistent with the forces), forces, stress; flagged unconverged when its electronic
    loop ran NELM steps.

    A file that does not end with ``</modeling>`` (cut off, or the run was killed) is a
    :class:`DataError`, or with ``allow_truncated`` its complete ionic steps are kept and
    a note says so (appended to ``notes`` and logged).
    """
    from pymatgen.io.vasp.outputs import Vasprun

    path = Path(path)
    _check_not_empty(path, "a vasprun.xml")
    with open(path, "rb") as fh:
        head = fh.read(4096)
        fh.seek(max(fh.seek(0, 2) - 4096, 0))
        tail = fh.read()
    if b"<modeling" not in head:
        raise DataError(f"{path}: not a vasprun.xml (no <modeling> element at its start)")
    complete = b"</modeling>" in tail
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vr = Vasprun(str(path), parse_dos=False, parse_eigen=False,
                         parse_projected_eigen=False, parse_potcar_file=False,
                         exception_on_bad_xml=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if not complete:
            raise DataError(f"{path}: ends before </modeling> (truncated, or the run was "
                            f"killed) and cannot be read: {first}") from None
        raise DataError(f"{path}: not a readable vasprun.xml: {first}") from None
    if not complete:
        _truncated(path, "</modeling>", len(vr.ionic_steps), allow_truncated, notes)
    nelm = int(vr.parameters.get("NELM", 60))
    frames = []
    for i, step in enumerate(vr.ionic_steps):
        st = step["structure"]
        cell = np.array(st.lattice.matrix, float)
        stress = step.get("stress")
        virial = None
        if stress is not None and np.asarray(stress).size == 9:
            virial = np.asarray(stress, float) / EV_A3_IN_KBAR * abs(np.linalg.det(cell))
        forces = step.get("forces")
        elec = step.get("electronic_steps", [])
        n_elec = len(elec)
        # The free energy (TOTEN), the one VASP's forces are derivatives of. (VASP 5.4
        # also writes a wrong e_0_energy into this block: vasprun.Ge.vdw.xml.)
        energy = step.get("e_fr_energy")
        if energy is None and elec:
            energy = elec[-1].get("e_fr_energy")
        frames.append(Frame(
            symbols=[sp.symbol for sp in st.species], positions=np.array(st.cart_coords),
            cell=cell, energy=float("nan") if energy is None else float(energy),
            forces=None if forces is None else np.asarray(forces, float), virial=virial,
            group=group, source=str(path), index=i,
            converged=bool(n_elec < nelm) if n_elec else None,
            meta={"electronic_steps": n_elec, "nelm": nelm}))
    return frames


_FLOAT = r"[-+]?\d+\.?\d*(?:[eE][-+]?\d+)?"


def read_outcar(path: str | Path, group: str = "", *, allow_truncated: bool = False,
                notes: list[str] | None = None) -> list[Frame]:
    """Every ionic step of an ``OUTCAR``: positions, forces, free energy (TOTEN), stress
    ("in kB" line, compression positive) and cell; unconverged steps (NELM electronic
    iterations) flagged.

    An OUTCAR without VASP's closing "General timing and accounting" section ends
    mid-run: a :class:`DataError`, or with ``allow_truncated`` its complete ionic steps
    are kept and a note says so. One that ran more ionic steps than it printed forces
    for (``NWRITE = 0`` prints only the first and last) yields the steps it holds and a
    note (appended to ``notes`` and logged) saying how many of how many.
    """
    path = Path(path)
    _check_not_empty(path, "an OUTCAR")
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    complete = "General timing and accounting" in text
    try:
        symbols = _outcar_symbols(text, path)
    except DataError:
        if complete:
            raise
        raise DataError(f"{path}: ends before its species header (POTCAR / ions per "
                        "type): truncated, or not an OUTCAR") from None
    m = re.search(r"NELM\s*=\s*(\d+)", text)
    nelm = int(m.group(1)) if m else 60
    # Split at each ionic step's force table; the text before each holds its cell,
    # stress and electronic iterations.
    blocks = re.split(r"\n\s*POSITION\s+TOTAL-FORCE \(eV/Angst\)\s*\n", text)
    frames = []
    prev_end = blocks[0]
    for i, block in enumerate(blocks[1:]):
        head = prev_end
        lines = block.split("\n")
        rows: list[list[float]] = []
        closed = False
        for ln in lines[1:]:
            if ln.strip().startswith("---"):
                closed = True
                break
            try:
                vals = [float(x) for x in ln.split()[:6]]
            except ValueError:
                vals = []
            rows.append(vals)
        rest = "\n".join(lines)
        em = re.search(r"free\s+energy\s+TOTEN\s*=\s*(" + _FLOAT + ")", rest)
        whole = closed and len(rows) == len(symbols) and all(len(r) == 6 for r in rows)
        if not complete and i == len(blocks) - 2 and (not whole or em is None):
            break  # the file ends inside this step
        if not whole:
            raise DataError(f"{path} frame {i}: force table has {len(rows)} rows, expected "
                            f"{len(symbols)} atoms with 6 numbers each")
        arr = np.asarray(rows, float)
        cells = re.findall(r"direct lattice vectors.*\n((?:.*\n){3})", head)
        if not cells:
            raise DataError(f"{path} frame {i}: no lattice vectors before the forces")
        cell = np.array([[float(x) for x in re.findall(_FLOAT, r)[:3]]
                         for r in cells[-1].strip().split("\n")])
        iters = re.findall(r"Iteration\s+\d+\(\s*(\d+)\)", head)
        stress_m = re.findall(r"in kB\s+(" + r"\s+".join([_FLOAT] * 6) + ")", head)
        virial = None
        if stress_m:
            xx, yy, zz, xy, yz, zx = (float(x) for x in stress_m[-1].split())
            s = np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])
            virial = s / EV_A3_IN_KBAR * abs(np.linalg.det(cell))
        energy = float(em.group(1)) if em else float("nan")
        n_elec = int(iters[-1]) if iters else 0
        frames.append(Frame(
            symbols=list(symbols), positions=arr[:, :3], cell=cell, energy=energy,
            forces=arr[:, 3:], virial=virial, group=group, source=str(path), index=i,
            converged=bool(n_elec < nelm) if n_elec else None,
            meta={"electronic_steps": n_elec, "nelm": nelm}))
        prev_end = rest
    if not complete:
        _truncated(path, "VASP's closing timing section", len(frames), allow_truncated,
                   notes)
    if not frames:
        raise DataError(f"{path}: no ionic step with forces found (not an OUTCAR?)")
    n_ionic = len(set(re.findall(r"Iteration\s+(\d+)\(", text)))
    if complete and n_ionic > len(frames):
        nw = re.search(r"NWRITE\s*=\s*(\d+)", text)
        why = f" (NWRITE = {nw.group(1)})" if nw else ""
        _note(notes, f"{path}: holds forces for {len(frames)} of its {n_ionic} ionic "
                     f"steps{why}; only those {len(frames)} are read (the vasprun.xml of "
                     "the run has all)")
    return frames


def _outcar_symbols(text: str, path: Path) -> list[str]:
    """Per-atom symbols from the POTCAR titles and ``ions per type``."""
    titles = re.findall(r"POTCAR:\s+\S+\s+([A-Z][a-z]?)", text)
    # POTCAR lines appear twice (header and summary); keep first occurrence order
    seen: list[str] = []
    for t in titles:
        if t in seen:
            break
        seen.append(t)
    m = re.search(r"ions per type\s*=\s*([\d\s]+)\n", text)
    if not seen or not m:
        raise DataError(f"{path}: cannot find species (POTCAR / ions per type) in OUTCAR")
    counts = [int(x) for x in m.group(1).split()]
    if len(counts) != len(seen):
        raise DataError(f"{path}: {len(seen)} POTCARs but {len(counts)} ion counts")
    return [s for s, c in zip(seen, counts, strict=True) for _ in range(c)]


# --------------------------------------------------------------------------- registry
@dataclass
class ReadOptions:
    """What a reader may need besides the path (every field has a neutral default).

    Attributes:
        group: configuration family for every frame (None: the reader's own choice).
        voigt_order: mlearn/maml ``virial_stress``/``stress`` order ("auto" or a key of
            :data:`MLEARN_ORDERS`).
        fallback_order: the order to use where "auto" finds none in the file.
        allow_truncated: keep the complete steps of a VASP run that ends mid-run.
        notes: one-line warnings about the file are appended here (and logged).
        type_map: species names for DeePMD systems without ``type_map.raw``.
        ase_stress_unit, ase_stress_sign: how files read through ASE store stress
            (ASE's own: eV/Å³, tension positive; FitSNAP's extxyz: bar, compression).
    """

    group: str | None = None
    voigt_order: str = "auto"
    fallback_order: tuple[str, ...] | None = None
    allow_truncated: bool = False
    notes: list[str] | None = None
    type_map: list[str] | None = None
    ase_stress_unit: str = "eV/A^3"
    ase_stress_sign: str = "tension"


@runtime_checkable
class Reader(Protocol):
    """One DFT format: claims files (``sniff``) and reads them into frames.

    Attributes:
        name: the ``format`` key users write (``"mlearn"``, ``"extxyz"``, ...).
        kind: what the file is, for messages (``"an mlearn JSON"``).
    """

    name: str
    kind: str

    def sniff(self, path: Path) -> bool:
        """True when ``format = "auto"`` should read ``path`` (a file or a folder) with
        this reader: by its name first, by a look at its first few kB second."""
        ...

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        """All frames of ``path`` with the labels it holds (units of :class:`Frame`)."""
        ...


#: Readers by format key, in the order ``format = "auto"`` asks them.
READERS: dict[str, Reader] = {}
#: Families of formats named ``"<prefix>:<their own format>"`` (``"dpdata:qe/pw/scf"``,
#: ``"ase:vasp-out"``): prefix -> factory of a reader for that format.
FAMILIES: dict[str, Callable[[str], Reader]] = {}


def register(reader: Reader) -> Reader:
    """Add ``reader`` to :data:`READERS` (a later one with the same name replaces it)."""
    if not isinstance(reader, Reader):
        raise TypeError(f"{reader!r} does not implement the Reader protocol")
    READERS[reader.name] = reader
    return reader


def get_reader(fmt: str) -> Reader:
    """The reader of a format key or ``"<family>:<format>"``; a :class:`DataError`
    listing the known keys otherwise."""
    _load_plugins()
    if fmt in READERS:
        return READERS[fmt]
    prefix, sep, rest = fmt.partition(":")
    if sep and prefix in FAMILIES and rest:
        return FAMILIES[prefix](rest)
    known = ", ".join([*READERS, *(f"{p}:<format>" for p in FAMILIES)])
    raise DataError(f"unknown format {fmt!r}; choose auto or one of {known}")


def format_names() -> list[str]:
    """Every registered format key (families as ``"<prefix>:<format>"``)."""
    _load_plugins()
    return [*READERS, *(f"{p}:<format>" for p in FAMILIES)]


def _load_plugins() -> None:
    # the readers that go through ASE and dpdata live in their own module
    import scalebridge.potentials.interop  # noqa: F401


def _head(path: Path, n: int = 4096) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(n)
    except OSError:
        return ""


class _FileReader:
    """A reader made of a sniff and a read function (the built-in formats)."""

    def __init__(self, name: str, kind: str, sniff: Callable[[Path], bool],
                 read: Callable[[Path, ReadOptions], list[Frame]]) -> None:
        self.name, self.kind = name, kind
        self._sniff, self._read = sniff, read

    def sniff(self, path: Path) -> bool:
        return path.is_file() and self._sniff(path)

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        _check_not_empty(path, self.kind)
        return self._read(path, opts)

    def __repr__(self) -> str:
        return f"<Reader {self.name}>"


def _is_fitsnap(path: Path) -> bool:
    if not path.name.lower().endswith(".json"):
        return False
    head = _head(path)
    return head.lstrip().startswith("#") or '"Dataset"' in head


register(_FileReader("fitsnap", "a FitSNAP JSON", _is_fitsnap,
                     lambda p, o: read_fitsnap_json(p, o.group)))
register(_FileReader(
    "mlearn", "an mlearn/maml JSON", lambda p: p.name.lower().endswith(".json"),
    lambda p, o: read_mlearn_json(p, o.voigt_order, o.fallback_order)))
READERS["maml"] = READERS["mlearn"]  # the same family of JSON (outputs.stress)
register(_FileReader(
    "outcar", "an OUTCAR", lambda p: "outcar" in p.name.lower(),
    lambda p, o: read_outcar(p, o.group or "", allow_truncated=o.allow_truncated,
                             notes=o.notes)))
register(_FileReader(
    "vasprun", "a vasprun.xml",
    lambda p: p.name.lower().endswith(".xml") or "vasprun" in p.name.lower(),
    lambda p, o: read_vasprun(p, o.group or "", allow_truncated=o.allow_truncated,
                              notes=o.notes)))


def detect_format(path: Path) -> str:
    """The format key of ``path``: the first reader of :data:`READERS` that claims it."""
    _load_plugins()
    for name, reader in READERS.items():
        if name == "maml":
            continue
        if reader.sniff(path):
            return name
    raise DataError(f"{path}: unknown DFT file format (expected vasprun*.xml, *OUTCAR*, "
                    "mlearn/maml/FitSNAP JSON, extxyz, a deepmd/npy or deepmd/raw system, "
                    "a Quantum ESPRESSO, CP2K or ABACUS output; or set format, e.g. "
                    "'dpdata:qe/pw/scf' or 'ase:<format>')")


def voigt_order_of(path: str | Path, fmt: str = "auto") -> tuple[str, ...] | None:
    """The Voigt order a file's own sheared cells give (None: the file has none, or
    is no format with a Voigt question). Raises :class:`DataError` when they disagree."""
    path = Path(path)
    if path.is_dir():
        return None
    name = detect_format(path) if fmt == "auto" else fmt
    if get_reader(name) is not READERS["mlearn"]:
        return None
    items = _load_json(path)
    return detect_voigt_order(items, str(path)) if isinstance(items, list) else None


def _folder_members(path: Path) -> list[Path]:
    """What a folder no reader claims holds: DeePMD systems (folders with type.raw),
    then JSON and extxyz files outside them, in sorted order."""
    systems = sorted(p.parent for p in path.rglob("type.raw"))
    inside = {s for s in systems}
    files = [f for f in sorted(path.rglob("*"))
             if f.is_file() and f.suffix.lower() in (".json", ".xyz", ".extxyz")
             and not any(parent in inside for parent in f.parents)]
    return [*systems, *files]


def read_source(path: str | Path, fmt: str = "auto", group: str | None = None,
                voigt_order: str = "auto",
                fallback_order: tuple[str, ...] | None = None, *,
                allow_truncated: bool = False,
                notes: list[str] | None = None,
                options: ReadOptions | None = None) -> list[Frame]:
    """Read one file or folder with the reader of ``fmt`` (auto: :func:`detect_format`).

    A folder that no reader claims (a FitSNAP group folder, a tree of DeePMD systems)
    is read member by member (:func:`_folder_members`). ``allow_truncated``: keep the
    complete ionic steps of a vasprun.xml/OUTCAR that ends mid-run instead of refusing
    it. ``notes``: one-line warnings about the file (steps it does not hold, truncation
    allowed) are appended here as well as logged. ``options`` carries the rest (type
    map for DeePMD systems, stress convention of ASE-read files) and, when given, its
    own copies of the arguments before it.
    """
    opts = options or ReadOptions(group=group, voigt_order=voigt_order,
                                  fallback_order=fallback_order,
                                  allow_truncated=allow_truncated, notes=notes)
    path = Path(path)
    if not path.exists():
        raise DataError(f"DFT source not found: {path}")
    if fmt == "auto":
        try:
            fmt = detect_format(path)
        except DataError:
            if not path.is_dir():
                raise
            members = _folder_members(path)
            if not members:
                raise DataError(f"{path}: folder holds no *.json or *.xyz files and no "
                                "DeePMD system (type.raw)") from None
            out: list[Frame] = []
            for m in members:
                out.extend(read_source(m, "auto", options=opts))
            return out
    elif path.is_dir() and fmt in ("fitsnap", "mlearn", "maml"):
        out = []
        for f in sorted(path.rglob("*.json")):
            out.extend(read_source(f, fmt, options=opts))
        if not out:
            raise DataError(f"{path}: folder holds no *.json files")
        return out
    frames = get_reader(fmt).read(path, opts)
    if opts.group is not None:
        for fr in frames:
            fr.group = opts.group
    return frames
