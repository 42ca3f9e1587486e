"""Chain node of the continuum stage: ``fem`` (FieldResults) with the chain's Surrogate.

Run-file section ``[continuum]`` is the stage's own ``FemSettings`` (problem, solver);
the material is the ``surrogate`` node's model. With ``[execution] mpi_ranks > 1`` the
solve runs under ``mpiexec``.
"""

from __future__ import annotations

from typing import Any

from scalebridge.artifacts import Artifact
from scalebridge.continuum import FemSettings
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("continuum", "workflows/stage_continuum.py")

#: ``[continuum]`` is FemSettings itself.
Section = FemSettings


def make_fem(call: StageCall) -> Artifact:
    return call.settings.make(call.inputs["surrogate"], call.out, call.resources,
                              force=call.force)


def nodes(cfg: Any = None) -> list[StageNode]:
    return [StageNode("fem", "FieldResults", ("surrogate",), make_fem,
                      settings=lambda c: c.continuum, section="continuum", code=CODE)]
