"""The material model seen from the finite-element side: quadrature-space callbacks.

:class:`QuadratureMaterial` holds stress σ and consistent tangent C as dolfinx
functions on quadrature elements. :meth:`QuadratureMaterial.evaluate` computes the strain
ε(u) at every quadrature point of the rank's owned cells, calls the constitutive model
**once** for all of them (``model.update(ε_n, ε − ε_n, state_n)``), and writes σ and C
into those functions; the residual ``∫ σ : ε(v) dx`` and Jacobian ``∫ ε(v) : C : ε(du) dx``
are ordinary UFL forms over them. The internal state lives in NumPy arrays per point and
is committed (:meth:`commit`) only after a load step converged. The solver never learns
which model it calls: anything with the ``ConstitutiveModel`` protocol of
``docs/CONTRACTS.md`` works (Mandel 6-vectors, MPa, float64).

Point order: point ``p = i·nq + q`` is quadrature point ``q`` of owned cell ``i``.
Plane strain (2D) embeds into 3D with ε_zz = ε_yz = ε_xz = 0; the forms use the
in-plane Mandel components ``[xx, yy, √2·xy]`` (indices 0, 1, 5 of the 6-vector).
"""

from __future__ import annotations

import time
from typing import Any

import basix.ufl
import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
import numpy as np
import ufl
from dolfinx import fem
from scalebridge.errors import DataError

SQ2 = np.sqrt(2.0)

#: Mandel components that plane strain keeps, in the 6-vector [xx, yy, zz, yz, xz, xy].
PLANE_INDICES = (0, 1, 5)
SOLID_INDICES = (0, 1, 2, 3, 4, 5)

#: State columns read as the equivalent (accumulated) plastic strain, first match wins.
EQPS_NAMES = ("eps_p_eq", "eqps", "p", "epbar", "ep_eq", "equivalent_plastic_strain",
              "alpha", "kappa")


def mandel_strain(v: Any, dim: int) -> Any:
    """UFL Mandel strain of displacement ``v``: (3,) in 2D [xx, yy, √2xy], (6,) in 3D."""
    e = ufl.sym(ufl.grad(v))
    s = float(SQ2)
    if dim == 2:
        return ufl.as_vector([e[0, 0], e[1, 1], s * e[0, 1]])
    return ufl.as_vector([e[0, 0], e[1, 1], e[2, 2], s * e[1, 2], s * e[0, 2], s * e[0, 1]])


def mandel_to_tensor(m: np.ndarray) -> np.ndarray:
    """Mandel 6-vectors (n, 6) -> symmetric tensors (n, 3, 3)."""
    t = np.empty((m.shape[0], 3, 3))
    t[:, 0, 0], t[:, 1, 1], t[:, 2, 2] = m[:, 0], m[:, 1], m[:, 2]
    t[:, 1, 2] = t[:, 2, 1] = m[:, 3] / SQ2
    t[:, 0, 2] = t[:, 2, 0] = m[:, 4] / SQ2
    t[:, 0, 1] = t[:, 1, 0] = m[:, 5] / SQ2
    return t


def von_mises(stress: np.ndarray) -> np.ndarray:
    """Equivalent stress √(3/2 s:s) of Mandel stresses (n, 6) -> (n,) (same unit)."""
    dev = stress.copy()
    dev[:, :3] -= stress[:, :3].mean(axis=1, keepdims=True)
    return np.sqrt(1.5 * np.einsum("ij,ij->i", dev, dev))


class ModelFailure(Exception):
    """The model returned non-finite values: the load step is cut, not the run."""


def _check_result(model: Any, res: Any, n: int, m: int) -> None:
    name = getattr(model, "name", type(model).__name__)
    for attr, shape in (("stress", (n, 6)), ("tangent", (n, 6, 6)), ("state", (n, m))):
        arr = getattr(res, attr, None)
        if not isinstance(arr, np.ndarray) or arr.shape != shape:
            got = getattr(arr, "shape", type(arr).__name__)
            raise DataError(f"constitutive model {name!r}: update() returned {attr} of "
                            f"shape {got}, expected {shape}")


class QuadratureMaterial:
    """Stress, tangent and state of a constitutive model at the quadrature points.

    Args:
        u: the displacement function (vector Lagrange on a 2D or 3D mesh, mm).
        model: any ``ConstitutiveModel`` (``initial_state``, ``update``).
        degree: quadrature degree of the stress/tangent elements.

    Attributes:
        sigma: quadrature function of the active Mandel stress components (MPa).
        tangent: quadrature function of the active tangent block (MPa).
        n_points: owned quadrature points on this rank.
        strain_n, stress_n, state_n: committed values at the last converged step,
            shapes (n, 6), (n, 6), (n, m).
        strain, stress, state: trial values of the latest evaluation.
        uncertainty: (n,) MPa or None; out_of_range: (n,) bool or None (latest trial).
        seconds, calls: wall time in and number of ``model.update`` calls.
    """

    def __init__(self, u: fem.Function, model: Any, degree: int) -> None:
        msh = u.function_space.mesh
        self.mesh = msh
        self.model = model
        self.dim = msh.topology.dim
        self.active = np.array(PLANE_INDICES if self.dim == 2 else SOLID_INDICES)
        k = len(self.active)
        cell = msh.topology.cell_name()
        qs = basix.ufl.quadrature_element(cell, value_shape=(k,), degree=degree)
        qt = basix.ufl.quadrature_element(cell, value_shape=(k, k), degree=degree)
        self.points, self.weights = qs.custom_quadrature()
        self.degree = degree
        self.S = fem.functionspace(msh, qs)
        self.T = fem.functionspace(msh, qt)
        self.sigma = fem.Function(self.S, name="stress_qp")
        self.tangent = fem.Function(self.T, name="tangent_qp")
        n_cells = msh.topology.index_map(self.dim).size_local
        self.cells = np.arange(n_cells, dtype=np.int32)
        self.nq = self.points.shape[0]
        self.n_points = n_cells * self.nq
        blocks = self.S.dofmap.list[self.cells].reshape(-1)            # (n,) point -> block
        self._s_idx = (blocks[:, None] * k + np.arange(k)).reshape(-1)
        self._t_idx = (blocks[:, None] * k * k + np.arange(k * k)).reshape(-1)
        self._strain_expr = fem.Expression(mandel_strain(u, self.dim), self.points)

        n = self.n_points
        self.state_names = tuple(getattr(model, "state_names", ()))
        self.state_n = np.asarray(model.initial_state(n), dtype=np.float64)
        if self.state_n.ndim != 2 or self.state_n.shape[0] != n:
            raise DataError(f"constitutive model {getattr(model, 'name', model)!r}: "
                            f"initial_state({n}) has shape {self.state_n.shape}, "
                            f"expected ({n}, m)")
        self.strain_n = np.zeros((n, 6))
        self.stress_n = np.zeros((n, 6))
        self.strain = self.strain_n.copy()
        self.stress = self.stress_n.copy()
        self.state = self.state_n.copy()
        self.uncertainty: np.ndarray | None = None
        self.out_of_range: np.ndarray | None = None
        self.seconds = 0.0
        self.calls = 0
        #: step duration passed to the model, s (set by the solver for each increment)
        self.dt = 1.0
        #: temperature at the points (n,) K, or None; see :meth:`set_temperature`
        self.temperature: np.ndarray | None = None
        self._temperature_mode: str | None = None

    def point_coordinates(self) -> np.ndarray:
        """Physical coordinates (n, 3) of the owned quadrature points (mm)."""
        expr = fem.Expression(ufl.SpatialCoordinate(self.mesh), self.points)
        x = expr.eval(self.mesh, self.cells).reshape(self.n_points, -1)
        out = np.zeros((self.n_points, 3))
        out[:, :x.shape[1]] = x
        return out

    def set_temperature(self, values: np.ndarray | None, mode: str | None) -> None:
        """Temperature (n,) K for the next calls, passed as ``temperature=`` ("argument")
        or set as ``model.temperature_k`` ("attribute": the caller ensures it is uniform)."""
        self.temperature = None if values is None else np.asarray(values, dtype=float)
        self._temperature_mode = mode

    def strain_at_points(self) -> np.ndarray:
        """Total strain ε(u) at the owned quadrature points, Mandel (n, 6)."""
        vals = self._strain_expr.eval(self.mesh, self.cells)
        full = np.zeros((self.n_points, 6))
        full[:, self.active] = vals.reshape(self.n_points, len(self.active))
        return full

    def evaluate(self) -> None:
        """One batched model call at the current displacement; fills σ and C.

        Raises:
            ModelFailure: the model returned NaN/inf (the caller cuts the step).
            DataError: the model returned arrays of the wrong shape.
        """
        strain = self.strain_at_points()
        dstrain = strain - self.strain_n
        kwargs: dict[str, Any] = {}
        if self.temperature is not None:
            if self._temperature_mode == "argument":
                kwargs["temperature"] = self.temperature
            elif self.temperature.size:
                self.model.temperature_k = float(self.temperature[0])
        t0 = time.perf_counter()
        res = self.model.update(self.strain_n, dstrain, self.state_n, dt=self.dt, **kwargs)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        _check_result(self.model, res, self.n_points, self.state_n.shape[1])
        ok = bool(np.isfinite(res.stress).all() and np.isfinite(res.tangent).all())
        if not self.mesh.comm.allreduce(ok, op=_land()):
            raise ModelFailure("non-finite stress or tangent")
        a = self.active
        self.strain, self.stress, self.state = strain, res.stress, res.state
        self.uncertainty = getattr(res, "uncertainty", None)
        self.out_of_range = getattr(res, "out_of_range", None)
        self.sigma.x.array[self._s_idx] = res.stress[:, a].reshape(-1)
        self.tangent.x.array[self._t_idx] = res.tangent[:, a][:, :, a].reshape(-1)
        self.sigma.x.scatter_forward()
        self.tangent.x.scatter_forward()

    def commit(self) -> None:
        """Accept the latest trial values as the converged state of the step."""
        self.strain_n = self.strain.copy()
        self.stress_n = np.array(self.stress, copy=True)
        self.state_n = np.array(self.state, copy=True)

    def eqps(self, committed: bool = True) -> np.ndarray | None:
        """Equivalent plastic strain per point (n,) from the state column that names it."""
        state = self.state_n if committed else self.state
        for name in EQPS_NAMES:
            if name in self.state_names:
                return state[:, self.state_names.index(name)]
        return None

    def cell_average(self, values: np.ndarray) -> np.ndarray:
        """Quadrature-weighted cell averages of per-point values (n, ...) -> (cells, ...)."""
        v = values.reshape(len(self.cells), self.nq, *values.shape[1:])
        w = self.weights / self.weights.sum()
        return np.tensordot(w, v, axes=(0, 1))


def _land() -> Any:
    from mpi4py import MPI

    return MPI.LAND
