"""Loading in physical time and temperature: what the material sees besides the strain.

    [loading]
    duration_s = 100.0             # λ: 0 → 1 takes 100 s; each increment lasts Δλ·100 s
    # displacement_rate = 1e-3     # or: mm/s of the driven displacement
    temperature_k = 500.0          # uniform, or a field in x, y, z (mm) and t (s):
    # temperature = "300 + 2.0*x + 0.1*t"

A rate-dependent material (a surrogate fitted over strain rates) gets ``dt`` in seconds,
so ``Δε̄_p / dt`` is the plastic strain rate it was trained on; the time of a step is the
load factor times the duration, so a cut step is also a shorter step. The temperature
reaches the material in one of two ways, decided once per run:

1. its ``update(strain, dstrain, state, dt, temperature=...)`` takes a ``temperature``
   argument: the value at each quadrature point, (n,) K;
2. it has a ``temperature_k`` attribute (the chain's NeuralJ2): it is set to the value
   before each call; a field that varies over the body is refused (one value per model).

A material that takes neither is refused when a temperature is set. Without
``duration_s`` / ``displacement_rate`` each nominal step lasts 1 s, as before.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
from pydantic import Field, field_validator, model_validator
from scalebridge.errors import SettingsError
from scalebridge.settings import StrictModel

#: Names a temperature expression may use.
_NAMES = {name: getattr(np, name) for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "arctan2", "abs", "minimum",
    "maximum", "where", "clip", "pi", "hypot")}


class LoadingSettings(StrictModel):
    """Physical time and temperature of the loading (passed to the material)."""

    duration_s: float | None = Field(
        None, gt=0, description="time the loading (load factor 0 -> 1) takes, s; each "
        "increment lasts its share. None: 1 s per nominal step")
    displacement_rate: float | None = Field(
        None, gt=0, description="mm/s of the driven displacement instead of duration_s "
        "(problems driven by a displacement)")
    temperature_k: float | None = Field(
        None, gt=0, description="uniform temperature passed to the material, K")
    temperature: str | None = Field(
        None, description="temperature field, K: a NumPy expression in x, y, z (mm) and "
        "t (s), e.g. '300 + 2*x' (overrides temperature_k)")

    @field_validator("temperature")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                compile(v, "<temperature>", "eval")
            except SyntaxError as e:
                raise ValueError(f"not an expression: {e.msg}") from None
        return v

    @model_validator(mode="after")
    def _one_time(self) -> LoadingSettings:
        if self.duration_s is not None and self.displacement_rate is not None:
            raise ValueError("give duration_s or displacement_rate, not both")
        return self

    @property
    def has_temperature(self) -> bool:
        return self.temperature is not None or self.temperature_k is not None

    def duration(self, steps: int, displacement_max: float) -> float:
        """Seconds the whole loading (λ: 0 → 1) takes.

        Raises:
            SettingsError: ``displacement_rate`` on a problem not driven by displacement.
        """
        if self.duration_s is not None:
            return self.duration_s
        if self.displacement_rate is not None:
            if displacement_max <= 0:
                raise SettingsError("loading.displacement_rate: this problem is not driven "
                                    "by a displacement; give duration_s")
            return displacement_max / self.displacement_rate
        return float(steps)

    def temperature_at(self, x: np.ndarray, t: float) -> np.ndarray | None:
        """Temperature (n,) K at points ``x`` (n, 3) mm and time ``t`` s; None if unset.

        Raises:
            SettingsError: the expression fails or gives non-finite or non-positive K.
        """
        n = x.shape[0]
        if self.temperature is None:
            return None if self.temperature_k is None else np.full(n, self.temperature_k)
        env = {**_NAMES, "np": np, "x": x[:, 0], "y": x[:, 1], "z": x[:, 2], "t": float(t)}
        try:
            val = eval(self.temperature, {"__builtins__": {}}, env)
        except Exception as e:
            raise SettingsError(f"loading.temperature = {self.temperature!r}: "
                                f"{type(e).__name__}: {e}") from None
        val = np.broadcast_to(np.asarray(val, dtype=float), (n,)).copy()
        if n and not (np.all(np.isfinite(val)) and val.min() > 0):
            raise SettingsError(f"loading.temperature = {self.temperature!r} gives "
                                f"{val.min():.4g} .. {val.max():.4g} K (need finite, > 0)")
        return val


def temperature_mode(model: Any) -> str | None:
    """How ``model`` takes a temperature: "argument", "attribute" or None."""
    try:
        params = inspect.signature(model.update).parameters
    except (TypeError, ValueError):
        params = {}
    if "temperature" in params:
        return "argument"
    if hasattr(model, "temperature_k"):
        return "attribute"
    return None
