"""Reading a ``Potential`` artifact and using its models from Python (ASE).

Example::

    info = load_potential("runs/mo/potential")
    atoms.calc = info.calculator()            # ASE calculator around models[0]
    f = atoms.get_forces()                    # eV/Å
    dev = info.model_deviation(atoms)         # max force deviation across the ensemble, eV/Å
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scalebridge.artifacts import Artifact, read_artifact
from scalebridge.errors import ArtifactError


@dataclass(frozen=True)
class PotentialInfo:
    """A ``Potential`` artifact opened for use.

    Attributes:
        path: the artifact directory.
        type_map: species in model order.
        models: absolute paths of the frozen models; ``models[0]`` is the production model.
        compressed: absolute paths of compressed models (may be empty).
        rcut_a: descriptor cutoff, Å.
        descriptor: descriptor type (``se_e2_a``, ``dpa1``).
        metrics: parsed ``metrics.json`` ({} when absent).
    """

    path: Path
    type_map: list[str]
    models: list[Path]
    compressed: list[Path]
    rcut_a: float
    descriptor: str
    metrics: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def production_model(self) -> Path:
        """The model MD should use: the compressed ``models[0]`` when present."""
        return self.compressed[0] if self.compressed else self.models[0]

    def calculator(self, index: int = 0, compressed: bool = False):
        """An ASE calculator (``deepmd.calculator.DP``) around model ``index``."""
        return DeepMDCalculator(self.compressed[index] if compressed else self.models[index],
                                self.type_map)

    def model_deviation(self, atoms) -> float:
        """Max over atoms of the ensemble's force standard deviation, eV/Å (DP-GEN's
        ``max_devi_f``); 0 for a single model."""
        rows = []
        for m in self.models:  # each model's own type map: species match by name
            dp = _deep_pot(m)
            rows.append(dp.eval(*_inputs(atoms, dp.get_type_map()))[1][0])
        forces = np.array(rows)
        if len(forces) < 2:
            return 0.0
        mean = forces.mean(axis=0)
        dev = np.sqrt(((forces - mean) ** 2).sum(axis=2).mean(axis=0))
        return float(dev.max())


def load_potential(path: str | Path | Artifact) -> PotentialInfo:
    """Open a ``Potential`` artifact (see docs/CONTRACTS.md).

    Raises:
        ArtifactError: not a complete Potential, or a model file missing.
    """
    art = path if isinstance(path, Artifact) else read_artifact(path, "Potential")
    root = art.path
    try:
        pj = json.loads((root / "potential.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{root}/potential.json unreadable: {e}") from None
    for key in ("type_map", "models", "rcut_a", "descriptor"):
        if key not in pj:
            raise ArtifactError(f"{root}/potential.json lacks the key {key!r}")
    models = [root / m for m in pj["models"]]
    comp = [root / m for m in pj.get("compressed", [])]
    for m in [*models, *comp]:
        if not m.is_file():
            raise ArtifactError(f"{root}: model file {m.name} is missing")
    if not models:
        raise ArtifactError(f"{root}/potential.json lists no models")
    metrics = {}
    if (root / "metrics.json").is_file():
        metrics = json.loads((root / "metrics.json").read_text())
    return PotentialInfo(path=root, type_map=list(pj["type_map"]), models=models,
                         compressed=comp, rcut_a=float(pj["rcut_a"]),
                         descriptor=str(pj["descriptor"]), metrics=metrics, raw=pj)


_CACHE: dict[str, Any] = {}


def _deep_pot(model: Path):
    """A cached ``deepmd.infer.DeepPot`` for ``model``."""
    key = str(Path(model).resolve())
    if key not in _CACHE:
        from deepmd.infer import DeepPot

        _CACHE[key] = DeepPot(key)
    return _CACHE[key]


def _inputs(atoms, type_map: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(coord (1, n*3), cell (1, 9) or None, atom types (n,)) for DeepPot.eval."""
    try:
        types = np.array([type_map.index(s) for s in atoms.get_chemical_symbols()])
    except ValueError:
        bad = sorted(set(atoms.get_chemical_symbols()) - set(type_map))
        raise ArtifactError(f"species {bad} not in the model's type_map {type_map}") from None
    cell = atoms.cell.array.reshape(1, 9) if atoms.pbc.any() else None
    return atoms.positions.reshape(1, -1), cell, types


def _calculator_base():
    from ase.calculators.calculator import Calculator

    return Calculator


class DeepMDCalculator(_calculator_base()):
    """ASE calculator around a frozen DeePMD model: energy (eV), forces (eV/Å),
    stress (eV/Å³, ASE sign: tension positive, Voigt order xx yy zz yz xz xy).

    A thin wrapper of ``deepmd.infer.DeepPot`` (the same engine as
    ``deepmd.calculator.DP``) that shares loaded models between calculators. Species are
    matched to the model's types by name (the model's own type map), so ``type_map`` in
    any order names the same species; a species the model lacks is an error.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", "energies")

    def __init__(self, model: str | Path, type_map: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.model = Path(model)
        self.dp = _deep_pot(self.model)
        self.model_type_map = [str(t) for t in self.dp.get_type_map()]
        if missing := [s for s in type_map or () if s not in self.model_type_map]:
            raise ArtifactError(f"{self.model}: species {missing} are not in the model's "
                                f"type map {self.model_type_map}")
        self.type_map = list(type_map or self.model_type_map)

    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        from ase.calculators.calculator import all_changes

        super().calculate(atoms, properties, system_changes or all_changes)
        coord, cell, types = _inputs(self.atoms, self.model_type_map)
        e, f, v, ae, _ = self.dp.eval(coord, cell, types, atomic=True)
        self.results["energy"] = self.results["free_energy"] = float(e.reshape(-1)[0])
        self.results["forces"] = f.reshape(-1, 3).copy()
        self.results["energies"] = ae.reshape(-1).copy()
        if cell is not None:
            from ase.stress import full_3x3_to_voigt_6_stress

            virial = v.reshape(3, 3)
            self.results["stress"] = full_3x3_to_voigt_6_stress(
                -virial / self.atoms.get_volume())
