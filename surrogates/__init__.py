"""scalebridge.surrogates: constitutive models (analytic J2 and learned) behind one protocol.

Public API::

    ConstitutiveModel, ConstitutiveResult, integrate_path     (protocol)
    J2Plasticity, LinearHardening, VoceHardening, DislocationDensityHardening  (reference)
"""

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
