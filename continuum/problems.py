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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from mpi4py import MPI
from pydantic import Field
from scalebridge.continuum import meshes
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

    def build(self, comm: MPI.Comm) -> Problem:
        ri, re = self.r_inner, self.r_outer
        if re <= ri:
            raise ValueError("r_outer must exceed r_inner")
        tm = meshes.quarter_annulus(comm, ri, re, self.n_radial, self.n_angular)
        d = self.inner_displacement

        def radial(x: np.ndarray) -> np.ndarray:
            r = np.hypot(x[0], x[1])
            return np.stack([x[0] / r, x[1] / r])

        reference = {"q_lim_over_sigma0": float(2 / np.sqrt(3) * np.log(re / ri))}
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


ProblemSettings = Annotated[CylinderProblem | PlateProblem | CompressionProblem | PatchProblem,
                            Field(discriminator="kind")]
