"""Boundary-value problems: geometry, displacement-controlled loading, a load measure.

Every problem is driven by prescribed displacements (and optionally tractions) scaled by
a load factor λ ∈ [0, 1] (displacement control follows softening and limit loads, which
load control cannot).
The load reported is a reaction computed by virtual work: for a field w that equals the
unit loading direction on the driven boundary and vanishes where the other constraints
act, ``∫ σ : ε(w) dx = ∫ t · w ds`` is the total reaction, and dividing by the loaded
length/area gives a mean traction in MPa.

- ``cylinder``: quarter of a thick-walled tube (plane strain), uniform radial displacement
  of the inner wall; load = internal pressure q (MPa). Under uniform pressure the exact
  solution is axisymmetric with uniform inner radial displacement, so this is the
  pressurised-cylinder problem; perfect J2 plasticity gives the limit pressure
  ``q_lim = (2/√3) σ0 ln(R_e/R_i)``. ``loading = "pressure"`` applies the pressure itself
  (load control, a traction on the inner wall): it cannot pass the limit load, so use it
  with ``stop_at_limit``; the displacement is then the mean inner radial displacement.
- ``plate``: quarter of a plate with a central hole in uniaxial tension (plane strain);
  load = mean tensile stress on the loaded edge (MPa).
- ``compression``: one eighth of a block compressed between platens (3D), sticking or
  frictionless platens; load = mean compressive stress on the platen (MPa).
- ``patch``: a distorted unit square/cube with ``u = λ E x`` on its whole boundary; the
  exact solution is the homogeneous strain E (the patch test).
- ``mesh``: your own mesh file (gmsh ``.msh`` or XDMF, 2D plane strain or 3D) with
  boundary conditions by tag name (:mod:`scalebridge.continuum.boundary`): fixed
  components, prescribed displacements, tractions, pressures. The load is the reaction
  on ``load_boundary`` (found from the residual at its prescribed dofs) over its area.

Adding a problem: a ``StrictModel`` with a ``kind`` literal and ``build(comm) ->
Problem`` (and ``refined(factor)``, the same problem with every element size divided by
``factor``, for the mesh-convergence check; None where it cannot), one entry in
``ProblemSettings``; copy ``tests/continuum/test_continuum_plate.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from mpi4py import MPI
from pydantic import Field
from scalebridge.continuum import meshes
from scalebridge.continuum.boundary import BoundaryCondition
from scalebridge.errors import SettingsError
from scalebridge.settings import StrictModel

SQ2 = np.sqrt(2.0)


@dataclass
class DirichletSpec:
    """One prescribed displacement component on a named boundary.

    Attributes:
        boundary: facet-group name in the mesh.
        component: 0, 1 (, 2): x, y (, z).
        value: ``value(x) -> (N,)`` the displacement (mm) at load factor 1 for points
            x of shape (3, N); scaled by λ during the loading.
    """

    boundary: str
    component: int
    value: Callable[[np.ndarray], np.ndarray]


@dataclass
class TractionSpec:
    """A surface traction on a named boundary, scaled by the load factor λ.

    Attributes:
        boundary: facet-group name in the mesh.
        value: ``value(x) -> (dim, N)`` traction on the body (MPa) at λ = 1.
    """

    boundary: str
    value: Callable[[np.ndarray], np.ndarray]


@dataclass
class PressureSpec:
    """A normal pressure on a named boundary (MPa at λ = 1): traction ``-p n``."""

    boundary: str
    value: float


@dataclass
class Problem:
    """A displacement-controlled boundary-value problem.

    Attributes:
        name: problem kind.
        mesh: the mesh with named boundaries.
        dirichlet: prescribed components (zeros for symmetry planes).
        probe: ``probe(x) -> (dim, N)`` virtual displacement w for the reaction.
        probe_scale: loaded length (2D, mm per unit thickness) or area (3D, mm²);
            load = ``∫ σ:ε(w) dx / probe_scale`` in MPa.
        displacement_max: the driven displacement at λ = 1 (mm).
        load_name, displacement_name: CSV column names for the load and displacement.
        reference: analytic numbers for checks (e.g. ``q_lim_over_sigma0``).
        tractions: surface loads scaled by λ (load control); empty for pure
            displacement control.
        displacement_boundary: where the reported displacement is measured under load
            control: the mean of u·w over that boundary. None: λ·displacement_max.
        applied_load: under load control, the load reported at λ = 1 (MPa, e.g. the
            pressure); None: the reaction measure.
        pressures: normal pressures scaled by λ (load control).
        reaction_load: ``(boundary, direction)``: the load is the reaction force on that
            boundary's prescribed dofs along ``direction`` (dim,) divided by
            ``probe_scale`` (used instead of ``probe``).
        displacement_normal: the reported displacement is the mean of ``-u·n`` over
            ``displacement_boundary`` (a pressure load) instead of ``u·w``.
        thickness: out-of-plane thickness of a 2D (plane strain) model (mm); reactions
            are reported in N for that thickness.
    """

    name: str
    mesh: meshes.TaggedMesh
    dirichlet: list[DirichletSpec]
    probe: Callable[[np.ndarray], np.ndarray]
    probe_scale: float
    displacement_max: float
    load_name: str = "load_mpa"
    displacement_name: str = "displacement_mm"
    reference: dict[str, float] = field(default_factory=dict)
    tractions: list[TractionSpec] = field(default_factory=list)
    displacement_boundary: str | None = None
    applied_load: float | None = None
    pressures: list[PressureSpec] = field(default_factory=list)
    reaction_load: tuple[str, np.ndarray] | None = None
    displacement_normal: bool = False
    thickness: float = 1.0

    @property
    def dim(self) -> int:
        return self.mesh.dim


def _zero(x: np.ndarray) -> np.ndarray:
    return np.zeros(x.shape[1])


class CylinderProblem(StrictModel):
    """Thick-walled cylinder under internal pressure (plane strain, quarter model)."""

    kind: Literal["cylinder"] = "cylinder"
    r_inner: float = Field(1.0, gt=0, description="inner radius R_i (mm)")
    r_outer: float = Field(1.3, gt=0, description="outer radius R_e (mm)")
    n_radial: int = Field(6, ge=1, description="cells through the wall")
    n_angular: int = Field(12, ge=2, description="cells along the quarter circle")
    loading: Literal["displacement", "pressure"] = Field(
        "displacement", description="displacement: drive the inner wall radially (follows "
        "the limit load); pressure: apply the internal pressure (load control)")
    inner_displacement: float = Field(
        0.02, gt=0, description="final radial displacement of the inner wall (mm), "
        "displacement loading")
    pressure: float = Field(70.0, gt=0, description="final internal pressure (MPa), "
                            "pressure loading")

    def refined(self, factor: int) -> CylinderProblem:
        """The same problem with every element's size divided by ``factor`` (the cells
        through the wall and along the quarter circle times ``factor``)."""
        return self.model_copy(update={"n_radial": self.n_radial * factor,
                                       "n_angular": self.n_angular * factor})

    def build(self, comm: MPI.Comm) -> Problem:
        ri, re = self.r_inner, self.r_outer
        if re <= ri:
            raise ValueError("r_outer must exceed r_inner")
        tm = meshes.quarter_annulus(comm, ri, re, self.n_radial, self.n_angular)
        d = self.inner_displacement

        def radial(x: np.ndarray) -> np.ndarray:
            r = np.hypot(x[0], x[1])
            return np.stack([x[0] / r, x[1] / r])

        # the limit pressure of perfect J2, and the radii for the elastic (Lamé) check
        reference = {"q_lim_over_sigma0": float(2 / np.sqrt(3) * np.log(re / ri)),
                     "r_inner_mm": float(ri), "r_outer_mm": float(re)}
        if self.loading == "pressure":
            p = self.pressure
            return Problem(
                name="cylinder", mesh=tm,
                dirichlet=[DirichletSpec("bottom", 1, _zero), DirichletSpec("left", 0, _zero)],
                tractions=[TractionSpec("inner", lambda x: p * radial(x))],
                probe=radial, probe_scale=np.pi * ri / 2, displacement_max=0.0,
                displacement_boundary="inner", applied_load=p, load_name="pressure_mpa",
                displacement_name="inner_displacement_mm", reference=reference)
        return Problem(
            name="cylinder", mesh=tm,
            dirichlet=[
                DirichletSpec("bottom", 1, _zero), DirichletSpec("left", 0, _zero),
                DirichletSpec("inner", 0, lambda x: d * x[0] / np.hypot(x[0], x[1])),
                DirichletSpec("inner", 1, lambda x: d * x[1] / np.hypot(x[0], x[1])),
            ],
            probe=radial, probe_scale=np.pi * ri / 2, displacement_max=d,
            load_name="pressure_mpa", displacement_name="inner_displacement_mm",
            reference=reference,
        )


class PlateProblem(StrictModel):
    """Square plate with a central circular hole in uniaxial tension (plane strain)."""

    kind: Literal["plate"] = "plate"
    half_width: float = Field(10.0, gt=0, description="half side L of the plate (mm)")
    hole_radius: float = Field(3.0, gt=0, description="hole radius a (mm)")
    n_radial: int = Field(8, ge=1, description="cells from hole to edge")
    n_angular: int = Field(12, ge=2, description="cells around the quarter hole (even)")
    end_displacement: float = Field(
        0.08, gt=0, description="final displacement of the loaded edge x = L (mm)")

    def refined(self, factor: int) -> PlateProblem:
        """The same problem with every element's size divided by ``factor`` (the
        angular cells as the mesh has them, rounded up to even, times ``factor``)."""
        return self.model_copy(update={
            "n_radial": self.n_radial * factor,
            "n_angular": (self.n_angular + self.n_angular % 2) * factor})

    def build(self, comm: MPI.Comm) -> Problem:
        L = self.half_width
        if not self.hole_radius < L:
            raise ValueError("hole_radius must be smaller than half_width")
        tm = meshes.quarter_plate_with_hole(comm, L, self.hole_radius, self.n_radial,
                                            self.n_angular)
        d = self.end_displacement
        return Problem(
            name="plate", mesh=tm,
            dirichlet=[DirichletSpec("left", 0, _zero), DirichletSpec("bottom", 1, _zero),
                       DirichletSpec("right", 0, lambda x: np.full(x.shape[1], d))],
            probe=lambda x: np.stack([x[0] / L, np.zeros(x.shape[1])]), probe_scale=L,
            displacement_max=d, load_name="mean_stress_mpa",
            displacement_name="edge_displacement_mm",
            reference={"net_section_fraction": 1 - self.hole_radius / L},
        )


class CompressionProblem(StrictModel):
    """Block compressed between rigid platens (3D, one eighth by symmetry)."""

    kind: Literal["compression"] = "compression"
    width: float = Field(10.0, gt=0, description="side of the square cross-section (mm)")
    height: float = Field(15.0, gt=0, description="specimen height (mm)")
    cells: tuple[int, int, int] = Field((3, 3, 4), description="cells of the 1/8 model")
    platen_displacement: float = Field(
        0.15, gt=0, description="final shortening of the half height (mm)")
    sticking: bool = Field(True, description="platen holds the end face (no sliding)")

    def refined(self, factor: int) -> CompressionProblem:
        """The same problem with every element's size divided by ``factor``."""
        return self.model_copy(update={"cells": tuple(c * factor for c in self.cells)})

    def build(self, comm: MPI.Comm) -> Problem:
        hw, hh = self.width / 2, self.height / 2
        tm = meshes.box(comm, (hw, hw, hh), self.cells)
        d = self.platen_displacement
        bcs = [DirichletSpec("x0", 0, _zero), DirichletSpec("y0", 1, _zero),
               DirichletSpec("z0", 2, _zero),
               DirichletSpec("z1", 2, lambda x: np.full(x.shape[1], -d))]
        if self.sticking:
            bcs += [DirichletSpec("z1", 0, _zero), DirichletSpec("z1", 1, _zero)]
        n0 = lambda x: np.zeros(x.shape[1])  # noqa: E731
        return Problem(
            name="compression", mesh=tm, dirichlet=bcs,
            probe=lambda x: np.stack([n0(x), n0(x), -x[2] / hh]), probe_scale=hw * hw,
            displacement_max=d, load_name="compressive_stress_mpa",
            displacement_name="shortening_mm",
        )


class PatchProblem(StrictModel):
    """Patch test: homogeneous strain imposed on the boundary of a distorted mesh."""

    kind: Literal["patch"] = "patch"
    dim: Literal[2, 3] = Field(2, description="2 (plane strain) or 3")
    n: int = Field(4, ge=1, description="cells per side before distortion")
    strain: tuple[float, float, float, float, float, float] = Field(
        (1e-3, -4e-4, 0.0, 0.0, 0.0, 6e-4),
        description="imposed Mandel strain [xx, yy, zz, √2yz, √2xz, √2xy]; "
                    "2D uses xx, yy, xy")

    def tensor(self) -> np.ndarray:
        """The imposed strain as a 3x3 tensor (plane components only in 2D)."""
        e = np.array(self.strain, dtype=float)
        t = np.array([[e[0], e[5] / SQ2, e[4] / SQ2],
                      [e[5] / SQ2, e[1], e[3] / SQ2],
                      [e[4] / SQ2, e[3] / SQ2, e[2]]])
        if self.dim == 2:
            t[2, :] = t[:, 2] = 0.0
        return t

    def refined(self, factor: int) -> PatchProblem:
        """The same problem with every element's size divided by ``factor`` (the
        distortion is redrawn on the finer grid: the meshes are not nested)."""
        return self.model_copy(update={"n": self.n * factor})

    def build(self, comm: MPI.Comm) -> Problem:
        tm = meshes.distorted_unit_cell(comm, self.dim, self.n)
        E = self.tensor()
        bcs = [DirichletSpec("boundary", i, lambda x, i=i: E[i, :self.dim] @ x[:self.dim])
               for i in range(self.dim)]

        def probe(x: np.ndarray) -> np.ndarray:
            w = np.zeros((self.dim, x.shape[1]))
            w[0] = x[0]
            return w

        return Problem(name="patch", mesh=tm, dirichlet=bcs, probe=probe, probe_scale=1.0,
                       displacement_max=float(E[0, 0]), load_name="mean_stress_xx_mpa",
                       displacement_name="displacement_mm")


class MeshProblem(StrictModel):
    """Your own mesh (gmsh ``.msh`` or XDMF with facet tags), boundary conditions by tag.

    The load factor λ goes 0 → 1 and scales every bc value. The reported load is that of
    ``load_boundary``: driven by displacement, the reaction force along the prescribed
    displacement divided by the boundary's area (a mean traction, MPa) against λ·|u|;
    driven by a traction or pressure, its magnitude (MPa) against the boundary's mean
    displacement along it. ``reactions.csv`` has every constrained boundary's reaction
    force (N) per step.
    """

    kind: Literal["mesh"] = "mesh"
    mesh: Path = Field(description="mesh file: gmsh .msh, or .xdmf (+ its .h5) with cell "
                       "and facet tags; relative paths are relative to the settings file")
    bc: list[BoundaryCondition] = Field(
        min_length=1, description="boundary conditions by tag name ([[problem.bc]] tables: "
        "kind = fixed | displacement | traction | pressure)")
    load_boundary: str | None = Field(
        None, description="the boundary whose load is reported (default: the first "
        "displacement bc with a nonzero value, else the first traction or pressure bc)")
    labels: dict[str, int] = Field(
        default_factory=dict, description="names for tags, added to the file's own (gmsh "
        "physical names; for XDMF also <stem>.labels.json beside the file)")
    scale: float = Field(1.0, gt=0, description="mm per mesh length unit (1000: drawn in m)")
    thickness: float = Field(1.0, gt=0, description="2D (plane strain) meshes: thickness "
                             "(mm) the reactions are given for")
    mesh_name: str = Field("mesh", description="XDMF: the mesh grid's name")
    cell_tags_name: str = Field("cell_tags", description="XDMF: the cell tags grid's name")
    facet_tags_name: str = Field("facet_tags", description="XDMF: the facet tags grid's name")

    def refined(self, factor: int) -> None:
        """None: a mesh file is not refined here (mesh it again finer and compare)."""
        return None

    def resolve_paths(self, base_dir: Path) -> MeshProblem:
        """A copy whose mesh path is absolute (a relative one is taken from ``base_dir``)."""
        p = self.mesh if self.mesh.is_absolute() else Path(base_dir) / self.mesh
        return self.model_copy(update={"mesh": p.absolute()})

    def input_files(self) -> dict[str, Path]:
        """The files the result depends on: the mesh (and its .h5 / labels sidecar)."""
        from scalebridge.continuum.mesh_input import labels_file

        files = {"mesh": self.mesh}
        if self.mesh.suffix.lower() == ".xdmf":
            files["mesh_h5"] = self.mesh.with_suffix(".h5")
            if labels_file(self.mesh).is_file():
                files["mesh_labels"] = labels_file(self.mesh)
        return files

    def read(self, comm: MPI.Comm) -> meshes.TaggedMesh:
        """The tagged mesh (collective over ``comm``)."""
        from scalebridge.continuum.mesh_input import read_mesh

        return read_mesh(self.mesh, comm, labels=self.labels, scale=self.scale,
                         mesh_name=self.mesh_name, cell_tags_name=self.cell_tags_name,
                         facet_tags_name=self.facet_tags_name)

    def build(self, comm: MPI.Comm) -> Problem:
        tm = self.read(comm)
        return self.problem_on(tm)

    def problem_on(self, tm: meshes.TaggedMesh) -> Problem:
        """The Problem these bcs define on an already read mesh ``tm``."""
        from scalebridge.continuum.boundary import (
            DisplacementBC,
            FixedBC,
            TractionBC,
            check_boundary,
            prescribed,
            vector,
        )

        dim, src = tm.dim, Path(tm.source).name or "the mesh"
        known = sorted(tm.facets)
        dirichlet: list[DirichletSpec] = []
        tractions: list[TractionSpec] = []
        pressures: list[PressureSpec] = []
        seen: set[tuple[str, int]] = set()
        for bc in self.bc:
            check_boundary(bc.boundary, known, src)
            if isinstance(bc, FixedBC | DisplacementBC):
                for comp, val in prescribed(bc, dim).items():
                    if (bc.boundary, comp) in seen:
                        raise SettingsError(f"bc: component {'xyz'[comp]} of "
                                            f"{bc.boundary!r} is prescribed twice")
                    seen.add((bc.boundary, comp))
                    dirichlet.append(DirichletSpec(
                        bc.boundary, comp, lambda x, v=val: np.full(x.shape[1], v)))
            elif isinstance(bc, TractionBC):
                if dim == 2 and bc.z:
                    raise SettingsError(f"bc on {bc.boundary!r}: traction z = {bc.z} on a "
                                        "2D (plane strain) mesh")
                t = vector(bc, dim)
                tractions.append(TractionSpec(
                    bc.boundary, lambda x, t=t: np.repeat(t[:, None], x.shape[1], axis=1)))
            else:
                pressures.append(PressureSpec(bc.boundary, bc.value))
        if not dirichlet:
            raise SettingsError("bc: no fixed or displacement bc, so nothing holds the body "
                                "(rigid-body motion): fix some boundary")
        load_bc = self._load_bc(dim)
        tag = load_bc.boundary
        size = boundary_size(tm, tag)
        common = dict(name="mesh", mesh=tm, dirichlet=dirichlet, tractions=tractions,
                      pressures=pressures, thickness=self.thickness,
                      reference={"load_boundary_size": size})
        if isinstance(load_bc, DisplacementBC):
            d = np.zeros(dim)
            for comp, val in prescribed(load_bc, dim).items():
                d[comp] = val
            dmax = float(np.linalg.norm(d))
            dirn = d / dmax
            return Problem(probe=_constant(dirn), probe_scale=size, displacement_max=dmax,
                           load_name=f"{tag}_mean_traction_mpa",
                           displacement_name=f"{tag}_displacement_mm",
                           reaction_load=(tag, dirn), **common)
        if isinstance(load_bc, TractionBC):
            t = vector(load_bc, dim)
            mag = float(np.linalg.norm(t))
            return Problem(probe=_constant(t / mag), probe_scale=size, displacement_max=0.0,
                           displacement_boundary=tag, applied_load=mag,
                           load_name=f"{tag}_traction_mpa",
                           displacement_name=f"{tag}_displacement_mm", **common)
        return Problem(probe=_constant(np.zeros(dim)), probe_scale=size,
                       displacement_max=0.0, displacement_boundary=tag,
                       displacement_normal=True, applied_load=float(load_bc.value),
                       load_name=f"{tag}_pressure_mpa",
                       displacement_name=f"{tag}_normal_displacement_mm", **common)

    def _load_bc(self, dim: int) -> Any:
        from scalebridge.continuum.boundary import DisplacementBC, FixedBC, prescribed

        def loads(bc: Any) -> bool:
            if isinstance(bc, FixedBC):
                return False
            if isinstance(bc, DisplacementBC):
                return any(v != 0.0 for v in prescribed(bc, dim).values())
            vals = [bc.value] if bc.kind == "pressure" else [bc.x, bc.y, bc.z][:dim]
            return any(v != 0.0 for v in vals)

        if self.load_boundary is not None:
            cands = [bc for bc in self.bc if bc.boundary == self.load_boundary and loads(bc)]
            if not cands:
                raise SettingsError(f"load_boundary {self.load_boundary!r}: no displacement, "
                                    "traction or pressure bc with a nonzero value on it")
            return cands[0]
        for kinds in (("displacement",), ("traction", "pressure")):
            for bc in self.bc:
                if bc.kind in kinds and loads(bc):
                    return bc
        raise SettingsError("bc: nothing loads the body (no displacement, traction or "
                            "pressure bc with a nonzero value)")


def _constant(v: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    v = np.asarray(v, dtype=float)
    return lambda x: np.repeat(v[:, None], x.shape[1], axis=1)


def boundary_size(tm: meshes.TaggedMesh, name: str) -> float:
    """Length (2D, mm) or area (3D, mm²) of the named boundary (collective)."""
    import ufl
    from dolfinx import fem
    from dolfinx import mesh as dmesh

    msh = tm.mesh
    facets = np.unique(tm.facets[name]).astype(np.int32)
    mt = dmesh.meshtags(msh, msh.topology.dim - 1, facets, np.ones(facets.size, np.int32))
    ds = ufl.Measure("ds", domain=msh, subdomain_data=mt)
    local = fem.assemble_scalar(fem.form(fem.Constant(msh, 1.0) * ds(1)))
    return float(msh.comm.allreduce(local))


ProblemSettings = Annotated[
    CylinderProblem | PlateProblem | CompressionProblem | PatchProblem | MeshProblem,
    Field(discriminator="kind")]
