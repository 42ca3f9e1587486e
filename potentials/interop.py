"""Readers that go through ASE and dpdata (registered in
:data:`scalebridge.potentials.readers.READERS`; see that module for the protocol).

* ``extxyz`` and the family ``ase:<ase format>``: ``ase.io.read(path, index=":")``.
  Energies and forces from the attached calculator (``energy``/``free_energy``, and the
  ``REF_``-prefixed keys of MACE/NequIP files); stress as ASE stores it, eV/Å³ with
  tension positive (``σ``; virial ``W = -V σ``), unless the settings say the file holds
  another unit or sign (``ase_stress_unit``, ``ase_stress_sign``: FitSNAP's extxyz
  holds bar, compression positive); or a ``virial`` key, eV, GAP's sign (``-V σ``,
  the same as :class:`~scalebridge.potentials.frames.Frame`). The group is
  ``config_type`` (GAP), else ``group``, else the file stem.
* ``deepmd/npy``, ``deepmd/raw`` and the family ``dpdata:<dpdata format>``:
  ``dpdata.LabeledSystem(path, fmt=...)``. dpdata converts every code to eV, Å, eV/Å and
  a virial in eV with DeePMD's sign, which is :class:`Frame`'s; species it names
  ``Type_<i>`` take the names of ``type_map``, species named like CP2K kinds
  (``Fe1``, ``O_2``) the element they start with. ``auto`` recognises Quantum ESPRESSO
  (``Program PWSCF``) and CP2K (``CP2K|``) outputs and ABACUS run folders (``INPUT`` +
  ``OUT.<suffix>/``); other dpdata formats are named explicitly.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
from scalebridge.errors import DataError
from scalebridge.potentials.frames import EV_A3_IN_BAR, EV_A3_IN_GPA, EV_A3_IN_KBAR, Frame
from scalebridge.potentials.readers import (
    FAMILIES,
    ReadOptions,
    _forces_array,
    _head,
    _note,
    register,
)

log = logging.getLogger("scalebridge.potentials")

#: One ASE-stress unit in eV/Å³.
STRESS_UNITS = {"eV/A^3": 1.0, "GPa": 1 / EV_A3_IN_GPA, "kbar": 1 / EV_A3_IN_KBAR,
                "bar": 1 / EV_A3_IN_BAR}
#: |σ| above this (eV/Å³, 16 TPa) is a unit mistake, not physics.
MAX_PLAUSIBLE_STRESS = 100.0

_ENERGY_KEYS = ("energy", "free_energy", "REF_energy", "DFT_energy", "dft_energy")
_FORCE_KEYS = ("forces", "REF_forces", "DFT_forces", "dft_forces")
_STRESS_KEYS = ("stress", "REF_stress", "DFT_stress", "dft_stress")


# --------------------------------------------------------------------------- ASE
def _first(mapping: dict, keys: tuple[str, ...]):
    for k in keys:
        if mapping.get(k) is not None:
            return mapping[k]
    return None


def _as_3x3(x) -> np.ndarray:
    a = np.asarray(x, float).reshape(-1)
    if a.size == 9:
        return a.reshape(3, 3)
    if a.size == 6:  # ASE's Voigt order: xx yy zz yz xz xy
        xx, yy, zz, yz, xz, xy = a
        return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    raise ValueError(f"{a.size} numbers (expected 6 or 9)")


def atoms_to_frame(atoms, source: Path, index: int, opts: ReadOptions) -> Frame:
    """One ``ase.Atoms`` with its labels -> :class:`Frame` (see the module doc)."""
    where = f"{source} frame {index}"
    res = dict(atoms.calc.results) if atoms.calc is not None else {}
    info, arrays = atoms.info, atoms.arrays
    energy = _first(res, _ENERGY_KEYS)
    if energy is None:
        energy = _first(info, _ENERGY_KEYS)
    forces = _first(res, _FORCE_KEYS)
    if forces is None:
        forces = _first(arrays, _FORCE_KEYS)
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise DataError(f"{where}: not periodic in three directions (pbc {atoms.pbc.tolist()}"
                        "); only bulk cells are read")
    cell = np.array(atoms.cell[:], float)
    volume = abs(np.linalg.det(cell))
    virial = None
    stress = _first(res, _STRESS_KEYS)
    if stress is None:
        stress = _first(info, _STRESS_KEYS)
    try:
        if stress is not None:
            sigma = _as_3x3(stress) * STRESS_UNITS[opts.ase_stress_unit]
            if opts.ase_stress_sign == "compression":
                sigma = -sigma
            if np.abs(sigma).max() > MAX_PLAUSIBLE_STRESS:
                raise DataError(
                    f"{where}: stress up to {np.abs(sigma).max():.3g} eV/Å³ "
                    f"({np.abs(sigma).max() * EV_A3_IN_GPA:.3g} GPa) read as "
                    f"{opts.ase_stress_unit}: not physical; set ase_stress_unit (and "
                    "ase_stress_sign) to what the file holds, e.g. 'bar' and "
                    "'compression' for FitSNAP's extxyz")
            virial = -sigma * volume
        elif info.get("virial") is not None:
            virial = _as_3x3(info["virial"])
    except ValueError as e:
        raise DataError(f"{where}: stress/virial has {e}") from None
    f = _forces_array(forces, len(atoms), where)
    group = opts.group
    if group is None:
        group = str(info.get("config_type", info.get("group", source.stem)))
    return Frame(symbols=atoms.get_chemical_symbols(), positions=atoms.get_positions(),
                 cell=cell, energy=float("nan") if energy is None else float(energy),
                 forces=f, virial=virial, group=group, source=str(source), index=index,
                 meta={"stress_convention": f"{opts.ase_stress_unit} "
                       f"{opts.ase_stress_sign}" if stress is not None else None})


class ASEReader:
    """Any format ``ase.io.read`` reads (``ase_format`` None: ASE guesses)."""

    def __init__(self, name: str, ase_format: str | None, suffixes: tuple[str, ...] = ()):
        self.name, self.ase_format, self.suffixes = name, ase_format, suffixes
        self.kind = f"an {ase_format} file" if ase_format else "a file ASE reads"

    def sniff(self, path: Path) -> bool:
        if not path.is_file() or path.suffix.lower() not in self.suffixes:
            return False
        lines = _head(path).splitlines()
        return len(lines) > 1 and ("Lattice=" in lines[1] or "Properties=" in lines[1])

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        import ase.io

        try:
            images = ase.io.read(path, index=":", format=self.ase_format)
        except Exception as e:  # ASE raises many kinds
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DataError(f"{path}: ASE cannot read it as "
                            f"{self.ase_format or 'any format it knows'}: {first}") from None
        if not images:
            raise DataError(f"{path}: no configurations")
        return [atoms_to_frame(a, path, i, opts) for i, a in enumerate(images)]

    def __repr__(self) -> str:
        return f"<Reader {self.name}>"


register(ASEReader("extxyz", "extxyz", (".xyz", ".extxyz")))
FAMILIES["ase"] = lambda fmt: ASEReader(f"ase:{fmt}", None if fmt == "auto" else fmt)


# --------------------------------------------------------------------------- dpdata
_KIND_NAME = re.compile(r"^([A-Z][a-z]?)")


def _species_names(names: list[str], type_map: list[str] | None, source: Path,
                   notes: list[str] | None) -> list[str]:
    from ase.data import chemical_symbols

    if all(n in chemical_symbols[1:] for n in names):
        return list(names)
    if type_map and all(re.fullmatch(r"Type_\d+", n) for n in names):
        if len(type_map) < len(names):
            raise DataError(f"{source}: {len(names)} atom types but type_map has "
                            f"{len(type_map)}: {type_map}")
        return [type_map[int(n.split("_")[1])] for n in names]
    out = []
    for n in names:
        m = _KIND_NAME.match(n)
        sym = m.group(1) if m else ""
        if sym not in chemical_symbols[1:] and len(sym) == 2 and sym[0] in chemical_symbols:
            sym = sym[0]
        if sym not in chemical_symbols[1:]:
            raise DataError(f"{source}: atom type {n!r} is no element; name the types "
                            "(type_map.raw, or the type_map setting for Type_<i> names)")
        out.append(sym)
    _note(notes, f"{source}: atom types {names} read as the elements {out}")
    return out


def system_to_frames(system, source: Path, group: str, opts: ReadOptions) -> list[Frame]:
    """A labelled ``dpdata.LabeledSystem`` -> frames (dpdata's units are Frame's)."""
    if getattr(system, "nopbc", False) or system.data.get("nopbc"):
        raise DataError(f"{source}: a non-periodic system (nopbc); only bulk cells are read")
    names = _species_names([str(n) for n in system["atom_names"]], opts.type_map, source,
                           opts.notes)
    symbols = [names[t] for t in system["atom_types"]]
    virials = system.data.get("virials")
    out = []
    for i in range(len(system)):
        out.append(Frame(
            symbols=list(symbols), positions=np.array(system["coords"][i], float),
            cell=np.array(system["cells"][i], float),
            energy=float(system["energies"][i]),
            forces=np.array(system["forces"][i], float) if "forces" in system.data else None,
            virial=None if virials is None else np.array(virials[i], float),
            group=group, source=str(source), index=i))
    return out


class DpdataReader:
    """Any labelled format dpdata reads: ``dpdata.LabeledSystem(path, fmt=fmt)``."""

    def __init__(self, fmt: str, name: str | None = None, kind: str | None = None):
        self.fmt = fmt
        self.name = name or f"dpdata:{fmt}"
        self.kind = kind or f"a {fmt} output (read by dpdata)"

    def sniff(self, path: Path) -> bool:
        return False  # only when named; subclasses recognise their own files

    def group(self, path: Path) -> str:
        return ""

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        import dpdata

        try:
            system = dpdata.LabeledSystem(str(path), fmt=self.fmt)
        except Exception as e:  # dpdata raises many kinds
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DataError(f"{path}: dpdata cannot read it as {self.fmt}: "
                            f"{type(e).__name__}: {first}") from None
        if len(system) == 0:
            raise DataError(f"{path}: dpdata found no labelled frame in it ({self.fmt})")
        group = opts.group if opts.group is not None else self.group(path)
        return system_to_frames(system, path, group, opts)

    def __repr__(self) -> str:
        return f"<Reader {self.name}>"


class DeepmdReader(DpdataReader):
    """A DeePMD system folder (``type.raw``, ``set.*/*.npy`` or ``*.raw``); its group
    is the folder's name."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt, fmt, f"a {fmt} system")

    def sniff(self, path: Path) -> bool:
        if not (path.is_dir() and (path / "type.raw").is_file()):
            return False
        has_sets = any(path.glob("set.*/coord.npy"))
        return has_sets if self.fmt == "deepmd/npy" else (path / "coord.raw").is_file()

    def group(self, path: Path) -> str:
        return path.name


class QEReader(DpdataReader):
    """Quantum ESPRESSO ``pw.x`` SCF output, with its input beside it (``x.out`` and
    ``x.in``: dpdata takes the cell and species from the input)."""

    def __init__(self) -> None:
        super().__init__("qe/pw/scf", kind="a Quantum ESPRESSO pw.x output")

    def sniff(self, path: Path) -> bool:
        return path.is_file() and "Program PWSCF" in _head(path)

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        inp = path.with_name(path.name.replace("out", "in"))
        if inp == path or not inp.is_file():
            raise DataError(f"{path}: the pw.x input {inp.name} is not beside it (dpdata "
                            "reads the cell and species from it; name them x.out and x.in)")
        return super().read(path, opts)


class CP2KReader(DpdataReader):
    """CP2K ``ENERGY_FORCE`` output (``dpdata:cp2k/output``)."""

    def __init__(self) -> None:
        super().__init__("cp2k/output", kind="a CP2K output")

    def sniff(self, path: Path) -> bool:
        return path.is_file() and " CP2K| " in _head(path, 20000)


class AbacusReader(DpdataReader):
    """An ABACUS run folder (``INPUT``, the structure file, ``OUT.<suffix>/``): scf, md or
    relax from INPUT's ``calculation``."""

    def __init__(self) -> None:
        super().__init__("abacus/scf", kind="an ABACUS run folder")

    def sniff(self, path: Path) -> bool:
        return path.is_dir() and (path / "INPUT").is_file() and any(path.glob("OUT.*"))

    def read(self, path: Path, opts: ReadOptions) -> list[Frame]:
        m = re.search(r"^\s*calculation\s+(\S+)", (path / "INPUT").read_text(
            errors="replace"), re.M)
        calc = m.group(1).lower() if m else "scf"
        fmt = {"md": "abacus/md", "relax": "abacus/relax",
               "cell-relax": "abacus/relax"}.get(calc, "abacus/scf")
        return DpdataReader(fmt).read(path, opts)


register(DeepmdReader("deepmd/npy"))
register(DeepmdReader("deepmd/raw"))
for _r in (QEReader(), CP2KReader(), AbacusReader()):
    register(_r)
FAMILIES["dpdata"] = DpdataReader
