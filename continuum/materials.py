"""Which constitutive model a FEM run uses: the ``[material]`` of ``scalebridge fem run``.

    [material]                          # analytic J2 (kind = "j2" may be omitted)
    youngs_modulus = 200e3

    [material]                          # any ConstitutiveModel by import path
    kind = "python"
    model = "mypkg.models:Hill48"       # or "models/hill.py:Hill48", beside the TOML
    settings = { sigma0 = 300.0, r = [1.0, 1.2, 0.9] }

    [material]                          # a Surrogate artifact, or an exported one
    kind = "surrogate"
    path = "runs/mo/surrogate"          # or the folder 'scalebridge surrogates export' wrote

:func:`resolve_model` turns what a user passes (these settings, a ``Surrogate`` artifact
or its path, or any object with the ``ConstitutiveModel`` protocol) into the model
object, the record that enters the FieldResults fingerprint, the input artifacts and
files, and a spec the MPI worker can rebuild the model from on every rank. A model by
import path is built as ``Class.from_config(settings)`` when the class has that method,
else ``Class(**settings)`` (a factory function works too); its source file's content
enters the fingerprint. Models by import path and surrogates are checked with
``check_constitutive`` before use (:func:`scalebridge.continuum.fem.gate_model`).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import pickle
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag
from scalebridge.artifacts import Artifact, read_artifact, sha256_path
from scalebridge.errors import ArtifactError, SettingsError
from scalebridge.settings import StrictModel


class J2Material(StrictModel):
    """Analytic von Mises plasticity with isotropic hardening (the reference model)."""

    kind: Literal["j2"] = "j2"
    youngs_modulus: float = Field(70e3, gt=0, description="Young's modulus E (MPa)")
    poisson_ratio: float = Field(0.3, gt=-1, lt=0.5, description="Poisson's ratio ν")
    sigma0: float = Field(250.0, gt=0, description="initial yield stress σ0 (MPa)")
    hardening: Literal["linear", "voce"] = Field("linear", description="hardening law")
    hardening_modulus: float = Field(
        0.0, ge=0, description="linear hardening modulus H (MPa); 0 = perfect plasticity")
    sigma_inf: float = Field(400.0, gt=0, description="Voce saturation stress (MPa)")
    voce_rate: float = Field(20.0, gt=0, description="Voce rate δ (-)")

    def build(self) -> Any:
        """The :class:`scalebridge.surrogates.J2Plasticity` these settings describe."""
        from scalebridge.surrogates import J2Plasticity, LinearHardening, VoceHardening

        if self.hardening == "linear":
            law: Any = LinearHardening(self.sigma0, self.hardening_modulus)
        else:
            law = VoceHardening(self.sigma0, self.sigma_inf, self.voce_rate,
                                self.hardening_modulus)
        return J2Plasticity(self.youngs_modulus, self.poisson_ratio, law, name="j2")


class PythonMaterial(StrictModel):
    """Any ConstitutiveModel by import path, built from its settings."""

    kind: Literal["python"] = "python"
    model: str = Field(description="'package.module:Class' or 'path/to/file.py:Class' "
                       "(relative to the settings file); a class or a factory function")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="its settings: Class.from_config(settings) if "
        "it has from_config, else Class(**settings)")
    check_amplitude: float = Field(
        5e-3, gt=0, description="strain amplitude of the check_constitutive paths the "
        "model must pass before use (a few yield strains)")

    def _split(self) -> tuple[str, str]:
        target, sep, attr = self.model.rpartition(":")
        if not sep or not target or not attr:
            raise SettingsError(f"material.model = {self.model!r}: expected "
                                "'package.module:Class' or 'file.py:Class'")
        return target, attr

    def resolve_paths(self, base_dir: Path) -> PythonMaterial:
        """A copy whose file path (``file.py:Class``) is absolute."""
        target, attr = self._split()
        if target.endswith(".py") and not Path(target).is_absolute():
            return self.model_copy(update={"model": f"{(Path(base_dir) / target).absolute()}"
                                                    f":{attr}"})
        return self

    def load_target(self) -> Any:
        """The class (or factory) the import path names.

        Raises:
            SettingsError: the module cannot be imported or has no such attribute.
        """
        target, attr = self._split()
        try:
            if target.endswith(".py"):
                path = Path(target).absolute()
                if not path.is_file():
                    raise SettingsError(f"material.model: file not found: {path}")
                name = "scalebridge_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
                module = sys.modules.get(name)
                if module is None:
                    spec = importlib.util.spec_from_file_location(name, path)
                    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
                    sys.modules[name] = module
                    try:
                        spec.loader.exec_module(module)  # type: ignore[union-attr]
                    except BaseException:
                        sys.modules.pop(name, None)
                        raise
            else:
                module = importlib.import_module(target)
        except SettingsError:
            raise
        except Exception as e:
            raise SettingsError(f"material.model = {self.model!r}: cannot import {target} "
                                f"({type(e).__name__}: {e})") from None
        obj = module
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise SettingsError(f"material.model = {self.model!r}: {target} has no "
                                    f"{attr!r}")
            obj = getattr(obj, part)
        return obj

    def build(self) -> Any:
        """The model object.

        Raises:
            SettingsError: import or construction failed, or the object lacks the
                ConstitutiveModel methods.
        """
        target = self.load_target()
        try:
            if hasattr(target, "from_config"):
                model = target.from_config(dict(self.settings))
            else:
                model = target(**self.settings)
        except Exception as e:
            raise SettingsError(f"material.model = {self.model!r}: cannot build it from "
                                f"settings {self.settings} ({type(e).__name__}: {e})"
                                ) from None
        if not (callable(getattr(model, "update", None))
                and callable(getattr(model, "initial_state", None))):
            raise SettingsError(f"material.model = {self.model!r}: {type(model).__name__} "
                                "is not a ConstitutiveModel (needs initial_state(n) and "
                                "update(strain, dstrain, state, dt))")
        return model

    def source_file(self) -> Path | None:
        """The file defining the model (its content enters the fingerprint)."""
        try:
            src = inspect.getsourcefile(self.load_target())
        except TypeError:
            return None
        return Path(src) if src else None


class SurrogateMaterial(StrictModel):
    """A Surrogate artifact, or a folder written by ``scalebridge surrogates export``."""

    kind: Literal["surrogate"] = "surrogate"
    path: Path = Field(description="Surrogate artifact directory, or an exported folder "
                       "(surrogate.json + model.pt); relative to the settings file")

    def resolve_paths(self, base_dir: Path) -> SurrogateMaterial:
        p = self.path if self.path.is_absolute() else Path(base_dir) / self.path
        return self.model_copy(update={"path": p.absolute()})


def _material_kind(v: Any) -> str:
    if isinstance(v, dict):
        return str(v.get("kind", "j2"))
    return str(getattr(v, "kind", "j2"))


#: The ``[material]`` section: J2 (the default kind), a model by import path, a surrogate.
MaterialSettings = Annotated[
    Annotated[J2Material, Tag("j2")] | Annotated[PythonMaterial, Tag("python")]
    | Annotated[SurrogateMaterial, Tag("surrogate")],
    Discriminator(_material_kind)]

ModelLike = J2Material | PythonMaterial | SurrogateMaterial | Artifact | str | \
    os.PathLike[str] | Any


def is_exported_surrogate(path: str | os.PathLike[str]) -> bool:
    """A folder with ``surrogate.json`` but no manifest (``surrogates export`` output)."""
    p = Path(path)
    return (p / "surrogate.json").is_file() and not (p / "manifest.json").exists()


def load_surrogate_model(path: str | os.PathLike[str]) -> Any:
    """The ConstitutiveModel stored in a Surrogate artifact or an exported folder."""
    if is_exported_surrogate(path):
        from scalebridge.surrogates.train import load_surrogate

        return load_surrogate(path)
    art = read_artifact(path, kind="Surrogate")
    try:
        from scalebridge.surrogates import load_surrogate  # type: ignore[attr-defined]
    except ImportError:
        try:
            from scalebridge.surrogates.train import load_surrogate
        except ImportError:
            raise ArtifactError(
                f"{art.path}: this scalebridge has no surrogates.load_surrogate to read it"
            ) from None
    return load_surrogate(art.path)


def resolve_model(model: ModelLike) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(model object, fingerprint record, inputs, worker spec) for ``model``.

    ``inputs`` holds ``surrogate`` (an artifact), ``surrogate_files`` (an exported
    folder) or ``model_source`` (the file of a model by import path).

    Raises:
        SettingsError: ``model`` is none of the accepted kinds, or cannot be built.
        ArtifactError: a path that is not a Surrogate artifact.
    """
    if isinstance(model, J2Material):
        rec = model.model_dump(mode="json")
        return model.build(), rec, {}, {"j2": rec}
    if isinstance(model, PythonMaterial):
        obj = model.build()
        rec = {"python": model.model_dump(mode="json")}
        src = model.source_file()
        inputs: dict[str, Any] = {"model_source": src} if src and src.is_file() else {}
        return obj, rec, inputs, rec
    if isinstance(model, SurrogateMaterial):
        model = model.path
    if isinstance(model, str | os.PathLike) and is_exported_surrogate(model):
        path = Path(model).absolute()
        obj = load_surrogate_model(path)
        return obj, {"surrogate_files": sha256_path(path)}, {"surrogate_files": path}, {
            "surrogate": str(path)}
    if isinstance(model, Artifact | str | os.PathLike):
        path = model.path if isinstance(model, Artifact) else Path(model)
        art = read_artifact(path, kind="Surrogate")
        obj = load_surrogate_model(art.path)
        return obj, {"surrogate": art.fingerprint}, {"surrogate": art}, {
            "surrogate": str(art.path)}
    if callable(getattr(model, "update", None)) and callable(
            getattr(model, "initial_state", None)):
        rec = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
               "repr": repr(model), "name": getattr(model, "name", "")}
        return model, rec, {}, {"object": model}
    raise SettingsError(
        f"model: expected J2Material settings, a Surrogate artifact (or its path) or a "
        f"ConstitutiveModel, got {type(model).__name__}")


def spec_to_file(spec: dict[str, Any], path: Path) -> None:
    """Store a worker spec (pickling a model object) for ranks to rebuild the model."""
    try:
        data = pickle.dumps(spec)
    except Exception as e:
        raise SettingsError(f"model cannot be sent to MPI ranks (not picklable: {e}); "
                            f"use J2Material settings or a Surrogate artifact") from None
    path.write_bytes(data)


def model_from_spec_file(path: Path) -> Any:
    """Rebuild the model from :func:`spec_to_file`'s output (on each MPI rank)."""
    spec = pickle.loads(path.read_bytes())
    if "j2" in spec:
        return J2Material.model_validate(spec["j2"]).build()
    if "python" in spec:
        return PythonMaterial.model_validate(spec["python"]).build()
    if "surrogate" in spec:
        return load_surrogate_model(spec["surrogate"])
    return spec["object"]
