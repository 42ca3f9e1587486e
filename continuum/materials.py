"""Which constitutive model a FEM run uses: analytic J2 settings or a Surrogate artifact.

:func:`resolve_model` turns what a user passes (``J2Material`` settings, a ``Surrogate``
artifact or its path, or any object with the ``ConstitutiveModel`` protocol) into the
model object, the record that enters the FieldResults fingerprint, the input artifacts,
and a spec the MPI worker can rebuild the model from on every rank.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from scalebridge.artifacts import Artifact, read_artifact
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


ModelLike = J2Material | Artifact | str | os.PathLike[str] | Any


def load_surrogate_model(path: str | os.PathLike[str]) -> Any:
    """The ConstitutiveModel stored in a Surrogate artifact (via the surrogates stage)."""
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
    """(model object, fingerprint record, input artifacts, worker spec) for ``model``.

    Raises:
        SettingsError: ``model`` is none of the accepted kinds.
        ArtifactError: a path that is not a Surrogate artifact.
    """
    if isinstance(model, J2Material):
        rec = model.model_dump(mode="json")
        return model.build(), rec, {}, {"j2": rec}
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
    if "surrogate" in spec:
        return load_surrogate_model(spec["surrogate"])
    return spec["object"]
