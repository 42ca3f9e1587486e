"""Meshes for the built-in continuum problems, built with dolfinx alone.

(A user's own mesh file, gmsh ``.msh`` or XDMF with tags, is read by
:mod:`scalebridge.continuum.mesh_input` into the same :class:`TaggedMesh`.)

Each builder makes a structured mesh of the unit square/cube with
:func:`dolfinx.mesh.create_rectangle` / :func:`~dolfinx.mesh.create_box` and maps its
node coordinates onto the physical domain (a quarter annulus, a quarter plate with a
hole, a box). The map is applied to each rank's own geometry array, so it works unchanged
when the mesh is distributed over MPI ranks. Boundaries are found geometrically and
returned as a dict ``name -> facet indices`` (local, owned and ghost).

Lengths are in mm throughout the continuum stage (stress in MPa, forces in N).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx; see ENVIRONMENT.md)
import numpy as np
from dolfinx import mesh as dmesh
from mpi4py import MPI


@dataclass
class TaggedMesh:
    """A mesh and its named boundary facets.

    Attributes:
        mesh: the dolfinx mesh (2D triangles or 3D tetrahedra), lengths in mm.
        facets: boundary name -> local facet indices (int32, shape (k,)).
        cell_tags, facet_tags: the mesh file's tags (None for meshes built in code).
        labels: facet label -> integer facet tag (a mesh file's physical names); each
            is also a key of ``facets``.
        source: where the mesh came from (a file name, or the builder).
        cell_labels: cell-region label -> integer cell tag.
    """

    mesh: dmesh.Mesh
    facets: dict[str, np.ndarray]
    cell_tags: dmesh.MeshTags | None = None
    facet_tags: dmesh.MeshTags | None = None
    labels: dict[str, int] = field(default_factory=dict)
    source: str = ""
    cell_labels: dict[str, int] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.mesh.topology.dim


def _tag(msh: dmesh.Mesh, markers: dict[str, Callable[[np.ndarray], np.ndarray]]
         ) -> dict[str, np.ndarray]:
    fdim = msh.topology.dim - 1
    msh.topology.create_connectivity(fdim, msh.topology.dim)
    return {name: dmesh.locate_entities_boundary(msh, fdim, f).astype(np.int32)
            for name, f in markers.items()}


def _map_geometry(msh: dmesh.Mesh, f: Callable[[np.ndarray], np.ndarray]) -> None:
    """Replace node coordinates x (N, 3) by f(x) in place (on every rank's own copy)."""
    x = msh.geometry.x
    x[:] = f(x.copy())


def quarter_annulus(comm: MPI.Comm, r_inner: float, r_outer: float, n_radial: int,
                    n_angular: int) -> TaggedMesh:
    """Quarter of a thick-walled cylinder cross-section, 0 <= theta <= pi/2 (triangles).

    Boundaries: ``inner`` (r = r_inner), ``outer``, ``bottom`` (y = 0), ``left`` (x = 0).
    """
    msh = dmesh.create_rectangle(comm, [np.array([0.0, 0.0]), np.array([1.0, 1.0])],
                                 [n_radial, n_angular], dmesh.CellType.triangle,
                                 diagonal=dmesh.DiagonalType.crossed)

    def to_annulus(x: np.ndarray) -> np.ndarray:
        r = r_inner + x[:, 0] * (r_outer - r_inner)
        th = x[:, 1] * np.pi / 2
        out = np.zeros_like(x)
        out[:, 0] = r * np.cos(th)
        out[:, 1] = r * np.sin(th)
        return out

    _map_geometry(msh, to_annulus)
    tol = 1e-9 * r_outer
    radius = lambda x: np.hypot(x[0], x[1])  # noqa: E731
    return TaggedMesh(msh, _tag(msh, {
        "inner": lambda x: np.isclose(radius(x), r_inner, atol=tol),
        "outer": lambda x: np.isclose(radius(x), r_outer, atol=tol),
        "bottom": lambda x: np.isclose(x[1], 0.0, atol=tol),
        "left": lambda x: np.isclose(x[0], 0.0, atol=tol),
    }))


def quarter_plate_with_hole(comm: MPI.Comm, half_width: float, hole_radius: float,
                            n_radial: int, n_angular: int, grading: float = 1.6
                            ) -> TaggedMesh:
    """Quarter of a square plate [0, L]^2 with a circular hole of radius a at the origin.

    Rays from the hole to the outer square; radial spacing graded towards the hole
    (``grading`` > 1). ``n_angular`` is rounded up to even so the corner is a node.
    Boundaries: ``hole``, ``right`` (x = L), ``top`` (y = L), ``bottom`` (y = 0),
    ``left`` (x = 0).
    """
    if not 0 < hole_radius < half_width:
        raise ValueError("need 0 < hole_radius < half_width")
    n_angular += n_angular % 2
    msh = dmesh.create_rectangle(comm, [np.array([0.0, 0.0]), np.array([1.0, 1.0])],
                                 [n_radial, n_angular], dmesh.CellType.triangle,
                                 diagonal=dmesh.DiagonalType.crossed)
    L, a = half_width, hole_radius

    def to_plate(x: np.ndarray) -> np.ndarray:
        t = x[:, 0] ** grading
        th = x[:, 1] * np.pi / 2
        c, s = np.cos(th), np.sin(th)
        # ray/square intersection: x = L for theta <= 45 deg, else y = L
        scale = L / np.maximum(c, s)
        out = np.zeros_like(x)
        out[:, 0] = (1 - t) * a * c + t * scale * c
        out[:, 1] = (1 - t) * a * s + t * scale * s
        return out

    _map_geometry(msh, to_plate)
    tol = 1e-9 * L
    return TaggedMesh(msh, _tag(msh, {
        "hole": lambda x: np.isclose(np.hypot(x[0], x[1]), a, atol=tol),
        "right": lambda x: np.isclose(x[0], L, atol=tol),
        "top": lambda x: np.isclose(x[1], L, atol=tol),
        "bottom": lambda x: np.isclose(x[1], 0.0, atol=tol),
        "left": lambda x: np.isclose(x[0], 0.0, atol=tol),
    }))


def box(comm: MPI.Comm, lengths: tuple[float, float, float], cells: tuple[int, int, int]
        ) -> TaggedMesh:
    """Box [0, Lx] x [0, Ly] x [0, Lz] of tetrahedra.

    Boundaries: ``x0``, ``x1``, ``y0``, ``y1``, ``z0``, ``z1``.
    """
    msh = dmesh.create_box(comm, [np.zeros(3), np.asarray(lengths, dtype=float)],
                           list(cells), dmesh.CellType.tetrahedron)
    tol = 1e-9 * max(lengths)
    marks = {}
    for i, ax in enumerate("xyz"):
        marks[f"{ax}0"] = lambda x, i=i: np.isclose(x[i], 0.0, atol=tol)
        marks[f"{ax}1"] = lambda x, i=i: np.isclose(x[i], lengths[i], atol=tol)
    return TaggedMesh(msh, _tag(msh, marks))


def distorted_unit_cell(comm: MPI.Comm, dim: int, n: int, amplitude: float = 0.25
                        ) -> TaggedMesh:
    """Unit square (triangles) or cube (tetrahedra) with interior nodes moved off the grid.

    Interior nodes move by up to ``amplitude`` times the grid spacing along a smooth
    deterministic field, so no element is aligned with the grid (a patch-test mesh).
    Boundary: ``boundary`` (every exterior facet).
    """
    if dim == 2:
        msh = dmesh.create_unit_square(comm, n, n, dmesh.CellType.triangle)
    else:
        msh = dmesh.create_unit_cube(comm, n, n, n, dmesh.CellType.tetrahedron)
    h = 1.0 / n

    def distort(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        interior = np.all((x[:, :dim] > 1e-12) & (x[:, :dim] < 1 - 1e-12), axis=1)
        for i in range(dim):
            phase = 7.3 * x[:, (i + 1) % dim] + 3.1 * x[:, i] + 1.7 * i
            out[interior, i] += amplitude * h * np.sin(phase[interior] * np.pi)
        return out

    _map_geometry(msh, distort)
    return TaggedMesh(msh, _tag(msh, {"boundary": lambda x: np.full(x.shape[1], True)}))
