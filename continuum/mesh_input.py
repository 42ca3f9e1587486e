"""A user's mesh: gmsh ``.msh`` or XDMF with cell and facet tags, read under MPI.

    tm = read_mesh("bracket.msh", MPI.COMM_WORLD)          # physical names from gmsh
    tm = read_mesh("bracket.xdmf", comm, labels={"clamp": 3, "load": 4})
    tm.mesh, tm.cell_tags, tm.facet_tags, tm.labels        # {"clamp": 3, ...}
    tm.facets["clamp"]                                     # local facet indices

Every reader returns the :class:`~scalebridge.continuum.meshes.TaggedMesh` the built-in
problems use: the dolfinx mesh, its cell and facet tags, the labels (facet name ->
integer tag; ``cell_labels`` for regions) and ``facets`` (label, or the tag number as a
string -> local facet indices, owned and ghost), so boundary conditions are found by
name.

- ``.msh`` (any gmsh format the gmsh library reads): rank 0 reads the file with gmsh and
  :func:`dolfinx.io.gmsh.model_to_mesh` distributes the cells over the communicator;
  physical groups of dimension d (cells) and d-1 (facets) become the tags, their
  physical names the labels. Needs the ``gmsh`` Python package (rank 0 only).
- ``.xdmf`` (with its ``.h5``): every rank reads its part (XDMF/HDF5 is the parallel
  format). The grids are named ``mesh``, ``cell_tags`` and ``facet_tags`` by default
  (what :func:`write_xdmf` and ``scalebridge fem convert-mesh`` write). XDMF holds no
  names for the tags: they come from ``<stem>.labels.json`` beside the file
  (``{"facets": {"clamp": 3}, "cells": {"steel": 1}}``, or a flat ``{"clamp": 3}`` of
  facet names; written by :func:`write_xdmf`) and/or the ``labels`` argument.
- From a live gmsh model (a script that meshes with gmsh's Python API):
  :func:`from_gmsh_model`.

The mesh dimension is the topological dimension of the cells: triangles/quadrilaterals
are plane strain (2D, coordinates x, y), tetrahedra/hexahedra are 3D. ``scale``
multiplies the coordinates (mm per mesh unit: 1000 for a mesh drawn in m).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
import numpy as np
from dolfinx import io
from dolfinx import mesh as dmesh
from mpi4py import MPI
from scalebridge.continuum.meshes import TaggedMesh
from scalebridge.errors import DataError, SettingsError

SUFFIXES = (".msh", ".xdmf")
GMSH_PIN = "gmsh==4.15.2"


def labels_file(path: str | Path) -> Path:
    """The labels sidecar of a mesh file: ``bracket.xdmf`` -> ``bracket.labels.json``."""
    p = Path(path)
    return p.with_name(p.stem + ".labels.json")


def read_mesh(path: str | Path, comm: MPI.Comm, *, labels: dict[str, int] | None = None,
              scale: float = 1.0, mesh_name: str = "mesh", cell_tags_name: str = "cell_tags",
              facet_tags_name: str = "facet_tags") -> TaggedMesh:
    """Read a tagged mesh file (collective over ``comm``).

    Args:
        path: ``.msh`` or ``.xdmf``.
        comm: the communicator the mesh is distributed over.
        labels: extra names for facet tags (override the file's names).
        scale: mm per mesh length unit.
        mesh_name, cell_tags_name, facet_tags_name: XDMF grid names.

    Raises:
        SettingsError: missing file, unknown suffix, gmsh not installed.
        DataError: an unreadable file, a mesh without facet tags, a label naming no tag.
    """
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"mesh file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".msh":
        tm = _read_msh(path, comm)
    elif suffix == ".xdmf":
        tm = _read_xdmf(path, comm, mesh_name, cell_tags_name, facet_tags_name)
    else:
        raise SettingsError(f"mesh file {path}: unknown format {path.suffix!r} "
                            f"(expected {' or '.join(SUFFIXES)})")
    return _finish(tm, labels or {}, scale, str(path))


def from_gmsh_model(comm: MPI.Comm, *, rank: int = 0, labels: dict[str, int] | None = None,
                    scale: float = 1.0, source: str = "gmsh model") -> TaggedMesh:
    """The current gmsh model (meshed on ``rank``) as a TaggedMesh (collective)."""
    gmsh = _gmsh() if comm.rank == rank else None
    dim = comm.bcast(gmsh.model.getDimension() if gmsh is not None else None, root=rank)
    tm = _model_to_tagged(gmsh.model if gmsh is not None else None, comm, rank, dim, source)
    return _finish(tm, labels or {}, scale, source)


def write_xdmf(tm: TaggedMesh, path: str | Path) -> list[Path]:
    """Write ``tm`` as XDMF (``path`` and its ``.h5``) with grids ``mesh``, ``cell_tags``,
    ``facet_tags``, and its labels as ``<stem>.labels.json`` (collective)."""
    path = Path(path).with_suffix(".xdmf")
    msh = tm.mesh
    msh.topology.create_connectivity(msh.topology.dim - 1, msh.topology.dim)
    with io.XDMFFile(msh.comm, path, "w") as xf:
        xf.write_mesh(msh)
        for tags, name in ((tm.cell_tags, "cell_tags"), (tm.facet_tags, "facet_tags")):
            if tags is not None:
                tags.name = name
                xf.write_meshtags(tags, msh.geometry)
    if msh.comm.rank == 0:
        labels_file(path).write_text(json.dumps(
            {"facets": tm.labels, "cells": tm.cell_labels}, indent=1, sort_keys=True) + "\n")
    msh.comm.barrier()
    return [path, path.with_suffix(".h5"), labels_file(path)]


# -- readers ---------------------------------------------------------------------------
def _gmsh() -> Any:
    """The gmsh module, initialised and quiet (one-line error when not installed)."""
    try:
        import gmsh
    except ImportError:
        raise SettingsError(f"reading a .msh file needs the gmsh Python package "
                            f"(pip install {GMSH_PIN}), or convert the mesh to XDMF "
                            "elsewhere (scalebridge fem convert-mesh)") from None
    if not gmsh.isInitialized():
        gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    return gmsh


def _read_msh(path: Path, comm: MPI.Comm, rank: int = 0) -> TaggedMesh:
    gmsh, err, dim, previous = None, None, None, None
    if comm.rank == rank:
        try:
            gmsh = _gmsh()
            previous = gmsh.model.getCurrent()
            gmsh.model.add("scalebridge: " + path.name)
            gmsh.merge(str(path))
            dim = gmsh.model.getDimension()
            if dim not in (2, 3) or not gmsh.model.mesh.getNodes()[0].size:
                err = (f"mesh file {path}: no 2D or 3D mesh in it (dimension {dim}; "
                       "mesh it with gmsh first: gmsh -3 file.geo)")
        except SettingsError as e:
            err = str(e)
        except Exception as e:                       # gmsh raises plain Exceptions
            err = f"mesh file {path}: gmsh cannot read it ({e})"
    err, dim = comm.bcast((err, dim), root=rank)
    if err:
        if gmsh is not None:
            _drop_model(gmsh, previous)
        raise (SettingsError if "needs the gmsh" in err else DataError)(err)
    try:
        return _model_to_tagged(gmsh.model if gmsh is not None else None, comm, rank, dim,
                                str(path))
    finally:
        if gmsh is not None:
            _drop_model(gmsh, previous)


def _drop_model(gmsh: Any, previous: str | None) -> None:
    """Remove the model read from file; make a script's own model current again."""
    try:
        gmsh.model.remove()
        if previous is not None and previous in gmsh.model.list():
            gmsh.model.setCurrent(previous)
    except Exception:                                # nothing to remove: fine
        pass


def _model_to_tagged(model: Any, comm: MPI.Comm, rank: int, dim: int, source: str
                     ) -> TaggedMesh:
    """The mesh, tags and physical names of a gmsh model."""
    from dolfinx.io import gmsh as gio

    data = gio.model_to_mesh(model, comm, rank, gdim=dim)
    groups = data.physical_groups.items()
    return TaggedMesh(data.mesh, {}, data.cell_tags, data.facet_tags,
                      {name: int(g.tag) for name, g in groups if g.dim == dim - 1}, source,
                      cell_labels={name: int(g.tag) for name, g in groups if g.dim == dim})


def _grid_names(path: Path) -> list[str]:
    try:
        return re.findall(r'<Grid[^>]*Name="([^"]+)"', path.read_text(errors="replace"))
    except OSError:
        return []


def _read_xdmf(path: Path, comm: MPI.Comm, mesh_name: str, cell_tags_name: str,
               facet_tags_name: str) -> TaggedMesh:
    names = comm.bcast(_grid_names(path) if comm.rank == 0 else None, root=0)
    for want, what in ((mesh_name, "mesh"), (facet_tags_name, "facet tags")):
        if want not in names:
            raise DataError(f"mesh file {path}: no {what} grid named {want!r} (grids: "
                            f"{', '.join(names) or 'none'}; set mesh_name / "
                            "facet_tags_name, or write it with scalebridge fem convert-mesh)")
    try:
        with io.XDMFFile(comm, path, "r") as xf:
            msh = xf.read_mesh(name=mesh_name)
            tdim = msh.topology.dim
            msh.topology.create_connectivity(tdim - 1, tdim)
            ct = (xf.read_meshtags(msh, name=cell_tags_name)
                  if cell_tags_name in names else None)
            ft = xf.read_meshtags(msh, name=facet_tags_name)
    except RuntimeError as e:
        raise DataError(f"mesh file {path}: cannot read it ({e})") from None
    if msh.geometry.dim != msh.topology.dim:
        raise DataError(
            f"mesh file {path}: {msh.topology.dim}D cells with {msh.geometry.dim}D "
            "coordinates; write a plane mesh with 2D coordinates (gdim = 2)")
    labels: dict[str, int] = {}
    cell_labels: dict[str, int] = {}
    side = labels_file(path)
    if side.is_file():
        try:
            raw = json.loads(side.read_text())
            if set(raw) <= {"facets", "cells"}:
                labels = {str(k): int(v) for k, v in raw.get("facets", {}).items()}
                cell_labels = {str(k): int(v) for k, v in raw.get("cells", {}).items()}
            else:
                labels = {str(k): int(v) for k, v in raw.items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise DataError(f"{side}: expected {{\"facets\": {{name: tag}}, \"cells\": "
                            f"{{name: tag}}}} or {{name: tag}} ({e})") from None
    return TaggedMesh(msh, {}, ct, ft, labels, str(path), cell_labels=cell_labels)


# -- labels -> facets ----------------------------------------------------------------
def _finish(tm: TaggedMesh, extra: dict[str, int], scale: float, source: str
            ) -> TaggedMesh:
    """Scale the coordinates, merge labels, fill ``facets`` by label and by tag number."""
    msh = tm.mesh
    tdim = msh.topology.dim
    if tdim not in (2, 3):
        raise DataError(f"mesh {source}: {tdim}D cells; need 2D (plane strain) or 3D")
    if tm.facet_tags is None:
        raise DataError(f"mesh {source}: no facet tags (give the boundaries physical "
                        "groups / facet tags: boundary conditions are found by tag)")
    if scale != 1.0:
        msh.geometry.x[:] *= scale
    msh.topology.create_connectivity(tdim - 1, tdim)
    tm.labels = {**tm.labels, **{str(k): int(v) for k, v in extra.items()}}
    ftags = _tag_values(msh.comm, tm.facet_tags)
    for name, tag in tm.labels.items():
        if tag not in ftags:
            if name in extra:
                raise DataError(f"mesh {source}: label {name!r} = {tag} names no facet tag "
                                f"(facet tags: {sorted(ftags)})")
            continue                                   # a group with no facets in it
        tm.facets[name] = tm.facet_tags.find(tag).astype(np.int32)
    for tag in sorted(ftags):                  # unnamed tags are reachable by number
        tm.facets.setdefault(str(tag), tm.facet_tags.find(tag).astype(np.int32))
    tm.source = source
    return tm


def _tag_values(comm: MPI.Comm, tags: dmesh.MeshTags | None) -> set[int]:
    """The tag values present on any rank."""
    mine = set() if tags is None else {int(v) for v in np.unique(tags.values)}
    return set().union(*comm.allgather(mine))
