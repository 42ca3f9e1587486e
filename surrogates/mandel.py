"""Mandel notation for symmetric 3x3 tensors, batched.

A symmetric tensor ``a`` is stored as the 6-vector
``[a_xx, a_yy, a_zz, √2·a_yz, √2·a_xz, √2·a_xy]``, so the Euclidean norm of the vector
is the Frobenius norm of the tensor, double contractions are dot products and fourth-order
tensors with minor symmetries are 6x6 matrices whose products are tensor contractions.
"""

from __future__ import annotations

import numpy as np

SQRT2 = float(np.sqrt(2.0))
#: (i, j) of each Mandel component.
INDEX = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
#: Mandel weight of each component (1 on the diagonal, √2 off it).
WEIGHT = np.array([1.0, 1.0, 1.0, SQRT2, SQRT2, SQRT2])

#: Second-order identity, (6,).
I2 = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
#: Fourth-order symmetric identity, (6, 6).
I4 = np.eye(6)
#: Volumetric projector (1/3) I⊗I, (6, 6).
P_VOL = np.outer(I2, I2) / 3.0
#: Deviatoric projector I4 - P_VOL, (6, 6).
P_DEV = I4 - P_VOL


def to_tensor(v: np.ndarray) -> np.ndarray:
    """Mandel (..., 6) -> symmetric tensors (..., 3, 3)."""
    v = np.asarray(v, dtype=np.float64)
    t = np.zeros((*v.shape[:-1], 3, 3))
    for k, (i, j) in enumerate(INDEX):
        t[..., i, j] = v[..., k] / WEIGHT[k]
        t[..., j, i] = t[..., i, j]
    return t


def from_tensor(t: np.ndarray) -> np.ndarray:
    """Symmetric tensors (..., 3, 3) -> Mandel (..., 6) (the symmetric part is used)."""
    t = np.asarray(t, dtype=np.float64)
    ts = 0.5 * (t + np.swapaxes(t, -1, -2))
    return np.stack([ts[..., i, j] * WEIGHT[k] for k, (i, j) in enumerate(INDEX)], axis=-1)


def rotation_matrix6(q: np.ndarray) -> np.ndarray:
    """The (6, 6) Mandel matrix R with ``from_tensor(Q a Qᵀ) = R @ a`` for rotation Q (3, 3)."""
    r = np.zeros((6, 6))
    for k in range(6):
        e = np.zeros(6)
        e[k] = 1.0
        r[:, k] = from_tensor(q @ to_tensor(e) @ q.T)
    return r


def deviator(v: np.ndarray) -> np.ndarray:
    """Deviatoric part of Mandel vectors (..., 6)."""
    v = np.asarray(v, dtype=np.float64)
    return v - (v[..., :3].sum(axis=-1, keepdims=True) / 3.0) * I2


def von_mises(v: np.ndarray) -> np.ndarray:
    """Von Mises equivalent √(3/2 s:s) of Mandel stresses (..., 6) -> (...)."""
    s = deviator(v)
    return np.sqrt(1.5 * np.einsum("...i,...i->...", s, s))


def equivalent_strain(v: np.ndarray) -> np.ndarray:
    """Equivalent (plastic) strain √(2/3 e:e) of deviatoric Mandel strains (..., 6) -> (...)."""
    e = deviator(v)
    return np.sqrt(2.0 / 3.0 * np.einsum("...i,...i->...", e, e))


def isotropic_stiffness(bulk: float, shear: float) -> np.ndarray:
    """Isotropic elastic stiffness 3K P_vol + 2G P_dev as a (6, 6) Mandel matrix."""
    return 3.0 * bulk * P_VOL + 2.0 * shear * P_DEV


def shear_strain(gamma: np.ndarray) -> np.ndarray:
    """Simple-shear strain γ (engineering, (n,)) as Mandel vectors (n, 6): ε_xy = γ/2."""
    gamma = np.asarray(gamma, dtype=np.float64)
    out = np.zeros((*gamma.shape, 6))
    out[..., 5] = SQRT2 * gamma / 2.0
    return out
