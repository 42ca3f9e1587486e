"""Boundary conditions by tag name: the ``[[problem.bc]]`` tables of a mesh problem.

    [[problem.bc]]                       # clamp: every component zero
    boundary = "clamp"
    kind = "fixed"

    [[problem.bc]]                       # symmetry plane x = 0
    boundary = "sym_x"
    kind = "fixed"
    components = ["x"]

    [[problem.bc]]                       # pulled end, ramped with the load factor
    boundary = "end"
    kind = "displacement"
    x = 0.05                             # mm at load factor 1; y, z omitted: free

    [[problem.bc]]
    boundary = "top"
    kind = "traction"                    # MPa at load factor 1 (force per area on the body)
    y = -20.0

    [[problem.bc]]
    boundary = "bore"
    kind = "pressure"                    # MPa at load factor 1, pushing on the surface
    value = 50.0

``boundary`` is a facet label (a gmsh physical name, or a name given in ``labels`` / the
XDMF ``.labels.json``) or the integer tag itself (``"12"``). Every value is scaled by the
load factor λ, which goes 0 → 1 over the loading (a fixed component stays zero).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal

import numpy as np
from pydantic import Field
from scalebridge.errors import SettingsError
from scalebridge.settings import StrictModel

Component = Literal["x", "y", "z"]
AXES = ("x", "y", "z")


class FixedBC(StrictModel):
    """Components held at zero on a boundary."""

    kind: Literal["fixed"] = "fixed"
    boundary: str = Field(description="facet label or integer tag")
    components: list[Component] = Field(
        ["x", "y", "z"], min_length=1,
        description="fixed components (z is ignored on a 2D mesh)")


class DisplacementBC(StrictModel):
    """Prescribed displacement components (mm at load factor 1); omitted ones are free."""

    kind: Literal["displacement"] = "displacement"
    boundary: str = Field(description="facet label or integer tag")
    x: float | None = Field(None, description="u_x at load factor 1 (mm); omitted: free")
    y: float | None = Field(None, description="u_y at load factor 1 (mm); omitted: free")
    z: float | None = Field(None, description="u_z at load factor 1 (mm); omitted: free")


class TractionBC(StrictModel):
    """A surface traction on the body (MPa at load factor 1)."""

    kind: Literal["traction"] = "traction"
    boundary: str = Field(description="facet label or integer tag")
    x: float = Field(0.0, description="t_x at load factor 1 (MPa)")
    y: float = Field(0.0, description="t_y at load factor 1 (MPa)")
    z: float = Field(0.0, description="t_z at load factor 1 (MPa)")


class PressureBC(StrictModel):
    """A normal pressure (MPa at load factor 1), positive pushing on the surface.

    The traction is ``-p n`` with ``n`` the outward normal."""

    kind: Literal["pressure"] = "pressure"
    boundary: str = Field(description="facet label or integer tag")
    value: float = Field(description="pressure p at load factor 1 (MPa)")


BoundaryCondition = Annotated[FixedBC | DisplacementBC | TractionBC | PressureBC,
                              Field(discriminator="kind")]


def vector(bc: DisplacementBC | TractionBC, dim: int) -> np.ndarray:
    """The bc's components as a (dim,) array (None -> 0)."""
    return np.array([getattr(bc, a) or 0.0 for a in AXES[:dim]])


def prescribed(bc: FixedBC | DisplacementBC, dim: int) -> dict[int, float]:
    """Component index -> value at load factor 1 of a Dirichlet bc on a ``dim``-D mesh.

    Raises:
        SettingsError: a z component on a 2D mesh, or a displacement bc without any.
    """
    if isinstance(bc, FixedBC):
        return {AXES.index(c): 0.0 for c in bc.components if AXES.index(c) < dim}
    out = {i: float(getattr(bc, a)) for i, a in enumerate(AXES)
           if getattr(bc, a) is not None}
    if dim == 2 and out.pop(2, 0.0):
        raise SettingsError(f"bc on {bc.boundary!r}: z = {bc.z} on a 2D (plane strain) mesh")
    if not out:
        raise SettingsError(f"bc on {bc.boundary!r}: kind 'displacement' prescribes no "
                            "component (give x, y or z)")
    return out


def check_boundary(name: str, known: list[str], source: str) -> None:
    """Raise a one-line SettingsError with a did-you-mean if ``name`` is no label/tag."""
    if name in known:
        return
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise SettingsError(f"bc boundary {name!r} is not a facet label or tag of {source}"
                        f"{hint} (known: {', '.join(known)})")
