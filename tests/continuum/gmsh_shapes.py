"""Meshes written the way a user writes them: gmsh's Python API, physical groups named.

Each function writes a ``.msh`` file and returns its path. Lengths in mm.
"""

from __future__ import annotations

from pathlib import Path

import gmsh


def _start(name: str) -> None:
    if gmsh.isInitialized():          # a fresh session: no options or fields left over
        gmsh.finalize()
    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.model.add(name)


def _finish(path: Path, dim: int, order: int = 1) -> Path:
    gmsh.model.mesh.generate(dim)
    if order > 1:
        gmsh.model.mesh.setOrder(order)
    gmsh.write(str(path))
    gmsh.finalize()
    return path


def _name_faces(dim: int, tests: dict[str, callable]) -> None:
    """Physical groups of the boundary entities whose centre passes each test."""
    for name, test in tests.items():
        tags = [t for d, t in gmsh.model.getEntities(dim - 1)
                if test(gmsh.model.occ.getCenterOfMass(d, t))]
        assert tags, name
        gmsh.model.addPhysicalGroup(dim - 1, tags, name=name)


def bar(path: Path, length: float = 10.0, width: float = 2.0, dim: int = 3,
        size: float = 1.0) -> Path:
    """A bar [0, L] x [0, W] (x [0, W]): faces ``left`` (x=0), ``right`` (x=L), ``y0``,
    ``z0`` (3D), region ``steel``."""
    _start("bar")
    occ = gmsh.model.occ
    if dim == 3:
        occ.addBox(0, 0, 0, length, width, width)
    else:
        occ.addRectangle(0, 0, 0, length, width)
    occ.synchronize()
    gmsh.model.addPhysicalGroup(dim, [t for _, t in gmsh.model.getEntities(dim)],
                                name="steel")
    tests = {"left": lambda c: abs(c[0]) < 1e-9, "right": lambda c: abs(c[0] - length) < 1e-9,
             "y0": lambda c: abs(c[1]) < 1e-9}
    if dim == 3:
        tests["z0"] = lambda c: abs(c[2]) < 1e-9
    _name_faces(dim, tests)
    gmsh.option.setNumber("Mesh.MeshSizeMax", size)
    return _finish(path, dim)


def quarter_plate_with_hole(path: Path, half_width: float = 10.0, radius: float = 1.0,
                            size_hole: float = 0.1, size_far: float = 1.5) -> Path:
    """Quarter of a square plate with a central hole (2D): ``hole``, ``left`` (x=0),
    ``bottom`` (y=0), ``right`` (x=L), ``top`` (y=L)."""
    _start("plate")
    occ = gmsh.model.occ
    L, a = half_width, radius
    plate = occ.addRectangle(0, 0, 0, L, L)
    disk = occ.addDisk(0, 0, 0, a, a)
    occ.cut([(2, plate)], [(2, disk)])
    occ.synchronize()
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)], name="plate")
    _name_faces(2, {
        "hole": lambda c: 0 < c[0] < a and 0 < c[1] < a,
        "left": lambda c: abs(c[0]) < 1e-9, "bottom": lambda c: abs(c[1]) < 1e-9,
        "right": lambda c: abs(c[0] - L) < 1e-9, "top": lambda c: abs(c[1] - L) < 1e-9})
    hole = [t for d, t in gmsh.model.getEntities(1)
            if gmsh.model.occ.getMass(d, t) < 2 * a]
    f = gmsh.model.mesh.field
    dist = f.add("Distance")
    f.setNumbers(dist, "CurvesList", hole)
    th = f.add("Threshold")
    f.setNumber(th, "InField", dist)
    f.setNumber(th, "SizeMin", size_hole)
    f.setNumber(th, "SizeMax", size_far)
    f.setNumber(th, "DistMin", 0.0)
    f.setNumber(th, "DistMax", 4 * a)
    f.setAsBackgroundMesh(th)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    return _finish(path, 2)


def quarter_annulus(path: Path, r_inner: float = 1.0, r_outer: float = 2.0,
                    size: float = 0.1) -> Path:
    """Quarter of a thick-walled tube cross-section (2D): ``bore`` (r = Ri), ``outer``,
    ``left`` (x=0), ``bottom`` (y=0)."""
    _start("annulus")
    occ = gmsh.model.occ
    outer = occ.addDisk(0, 0, 0, r_outer, r_outer)
    inner = occ.addDisk(0, 0, 0, r_inner, r_inner)
    box = occ.addRectangle(0, 0, 0, 2 * r_outer, 2 * r_outer)
    ring, _ = occ.cut([(2, outer)], [(2, inner)])
    occ.intersect(ring, [(2, box)])
    occ.synchronize()
    gmsh.model.addPhysicalGroup(2, [t for _, t in gmsh.model.getEntities(2)], name="wall")
    mid = 0.5 * (r_inner + r_outer)
    _name_faces(2, {
        "bore": lambda c: c[0] > 0 and c[1] > 0 and (c[0] ** 2 + c[1] ** 2) ** 0.5 < mid,
        "outer": lambda c: c[0] > 0 and c[1] > 0 and (c[0] ** 2 + c[1] ** 2) ** 0.5 > mid,
        "left": lambda c: abs(c[0]) < 1e-9, "bottom": lambda c: abs(c[1]) < 1e-9})
    gmsh.option.setNumber("Mesh.MeshSizeMax", size)
    return _finish(path, 2)
