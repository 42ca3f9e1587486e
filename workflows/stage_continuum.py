"""Chain node of the continuum stage: ``fem`` (FieldResults) with the chain's Surrogate.

Run-file section ``[continuum]`` is the stage's own ``FemSettings`` (problem, solver,
loading); the material is the ``surrogate`` node's model. With ``[execution] mpi_ranks >
1`` the solve runs under ``mpiexec``. A mesh problem (``[continuum.problem] kind =
"mesh"``, boundary conditions in ``[[continuum.problem.bc]]`` by tag name) declares its
mesh file as the node's input file, so an edited mesh reruns the node.

``band`` (LoadBand, :mod:`scalebridge.workflows.band`, settings ``[continuum.band]``)
carries the upstream uncertainties (potential ensemble, mobility law, DD realisations)
to a band on the FEM's final load, with two extra solves, and each source's share.

``[continuum] mesh_convergence`` (1 in the chain, 0 for a FEM run of its own) solves the
fem node's problem again with every element size halved (2: and quartered, for the
observed order), the same surrogate and loading; the loads' changes go into the
FieldResults summary and :func:`scalebridge.workflows.verdicts.mesh_convergence_check`
grades them (the band's solves
skip it).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from scalebridge.artifacts import Artifact
from scalebridge.continuum import FemSettings
from scalebridge.workflows.band import BandSettings, make_band
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("continuum", "workflows/stage_continuum.py")


class ContinuumSection(FemSettings):
    """``[continuum]``: the FEM run (FemSettings) and ``[continuum.band]``."""

    band: BandSettings = Field(default_factory=BandSettings,
                               description="the FEM load band from upstream uncertainty")
    mesh_convergence: int = Field(
        1, ge=0, le=2, description="mesh-convergence check of the fem node: the same "
        "problem, surrogate and loading solved again with every element size halved, this "
        "many times (0: off; 2: also quartered, for the observed order); the final and max "
        "loads' changes go into its summary and its verdict (the band's solves skip it)")

    def fem(self) -> FemSettings:
        """The FEM settings alone (the band's settings do not enter the fem node)."""
        return FemSettings.model_validate(
            {k: getattr(self, k) for k in FemSettings.model_fields})


Section = ContinuumSection

#: Upstream nodes the band reads (those the chain has).
BAND_INPUTS = ("fem", "surrogate", "dd", "mobility", "properties", "potential")


def _fem(settings: Any) -> FemSettings:
    return settings.fem() if isinstance(settings, ContinuumSection) else settings


def make_fem(call: StageCall) -> Artifact:
    return _fem(call.settings).make(call.inputs["surrogate"], call.out, call.resources,
                                    force=call.force)


def make_band_node(call: StageCall) -> Artifact:
    return make_band(call.settings["band"], call.settings["fem"], call.inputs, call.out,
                     call.resources, force=call.force)


def mesh_files(cfg: Any) -> dict[str, Any]:
    """The mesh problem's files (mesh, .h5, labels), entering the chain fingerprint."""
    return cfg.continuum.input_files()


def _band_settings(c: Any) -> dict[str, Any]:
    # the band's solves measure load sensitivities on the run's mesh: no refinement
    fem = _fem(c.continuum).model_copy(update={"mesh_convergence": 0})
    return {"band": getattr(c.continuum, "band", BandSettings()), "fem": fem}


def nodes(cfg: Any = None) -> list[StageNode]:
    out = [StageNode("fem", "FieldResults", ("surrogate",), make_fem,
                     settings=lambda c: _fem(c.continuum), section="continuum", code=CODE,
                     files=mesh_files)]
    band = getattr(getattr(cfg, "continuum", None), "band", None) if cfg is not None else None
    if band is None or band.enabled:
        out.append(StageNode("band", "LoadBand", BAND_INPUTS, make_band_node,
                             settings=_band_settings, section="continuum.band",
                             code=(*CODE, "surrogates", "potentials", "md/properties.py",
                                   "workflows/band.py")))
    return out
