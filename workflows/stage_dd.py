"""Chain nodes of the dd_coupling stage: ``mobility`` (MobilityLaw) and ``dd`` (DDRun).

Run-file section ``[dd]``::

    [dd.mobility]     scalebridge.dd_coupling FitMobilitySettings (neural law fitted to
                      the md glide velocities; drag fit reported beside it)
    [dd.run]          scalebridge.dd_coupling DDSettings (cell, source lengths, forest
                      density, loading, realisations, glide character)
    [dd.run.study]    strain rates × temperatures: every realisation in every condition,
                      fanned out through the mapper; the DDRun holds σ(ε_p, ε̇, T) with
                      the realisation scatter, ρ and avalanche statistics (study/), and
                      every path with its own rate and temperature for the surrogate

μ, ν and b come from the ``properties`` node (the learned potential), never typed in; the
source, obstacle and junction strengths follow from them (τ = β μ b / L, α μ b √ρ), and
the DD glides with the mobility law of the character the MD measured.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from scalebridge.artifacts import Artifact
from scalebridge.dd_coupling.fit import FitMobilitySettings
from scalebridge.dd_coupling.simulate import DDSettings
from scalebridge.settings import StrictModel
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("dd_coupling", "workflows/stage_dd.py")


class Section(StrictModel):
    """Mobility law fitted to MD glide, then 2D discrete dislocation dynamics."""

    mobility: FitMobilitySettings = Field(default_factory=FitMobilitySettings,
                                          description="fitting the mobility law")
    run: DDSettings = Field(default_factory=DDSettings,
                            description="the dislocation-dynamics run")


def make_mobility(call: StageCall) -> Artifact:
    return call.settings.make(call.inputs["defects"], call.out,
                              properties=call.inputs["properties"], force=call.force)


def make_dd(call: StageCall) -> Artifact:
    return call.settings.make(call.inputs["mobility"], call.inputs["properties"], call.out,
                              force=call.force, mapper=call.mapper)


def nodes(cfg: Any = None) -> list[StageNode]:
    return [
        StageNode("mobility", "MobilityLaw", ("defects", "properties"), make_mobility,
                  settings=lambda c: c.dd.mobility, section="dd.mobility", code=CODE),
        StageNode("dd", "DDRun", ("mobility", "properties"), make_dd,
                  settings=lambda c: c.dd.run, section="dd.run", code=CODE),
    ]
