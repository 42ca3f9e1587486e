"""scalebridge.surrogates: constitutive models (analytic J2 and learned) behind one protocol.

Public API::

    ConstitutiveModel, ConstitutiveResult, integrate_path     (protocol)
    J2Plasticity, LinearHardening, VoceHardening, DislocationDensityHardening  (reference)
    check_constitutive                                        (checks)
    load_surrogate, SurrogateSettings, J2DataSettings, read_ddrun   (learned; import torch)
"""

from typing import Any

from scalebridge.surrogates import mandel
from scalebridge.surrogates.j2 import (
    DislocationDensityHardening,
    Hardening,
    J2Plasticity,
    LinearHardening,
    VoceHardening,
)
from scalebridge.surrogates.protocol import (
    ConstitutiveModel,
    ConstitutiveResult,
    integrate_path,
)

__all__ = [
    "ConstitutiveModel",
    "ConstitutiveResult",
    "DislocationDensityHardening",
    "Hardening",
    "J2Plasticity",
    "LinearHardening",
    "VoceHardening",
    "integrate_path",
    "mandel",
]

_LAZY = {
    "check_constitutive": "scalebridge.surrogates.checks",
    "CheckReport": "scalebridge.surrogates.checks",
    "ConstitutiveCheckError": "scalebridge.surrogates.checks",
    "load_surrogate": "scalebridge.surrogates.train",
    "export_surrogate": "scalebridge.surrogates.train",
    "SurrogateSettings": "scalebridge.surrogates.train",
    "J2DataSettings": "scalebridge.surrogates.data",
    "StrainPaths": "scalebridge.surrogates.data",
    "read_ddrun": "scalebridge.surrogates.data",
    "NeuralJ2": "scalebridge.surrogates.neural",
    "InternalVariableModel": "scalebridge.surrogates.internal_variable",
}


def __getattr__(name: str) -> Any:
    """Learned models and checks are imported on first use (they import torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scalebridge.surrogates' has no attribute {name!r}")
