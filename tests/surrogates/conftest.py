"""Shared helpers for the surrogate tests: a simple-shear path and the von Mises stress."""

from __future__ import annotations

import numpy as np
from scalebridge.surrogates import mandel


def shear_path(rate: float, gamma_max: float = 5e-3, n: int = 400
               ) -> tuple[np.ndarray, float]:
    """(Mandel strain (1, n+1, 6), dt s) for simple shear at γ̇ = ``rate``."""
    g = np.linspace(0.0, gamma_max, n + 1)
    return mandel.shear_strain(g)[None], float((g[1] - g[0]) / rate)


def vm(stress: np.ndarray) -> np.ndarray:
    return mandel.von_mises(stress)
