"""Chain node of the surrogates stage: ``surrogate`` (Surrogate) fitted to the DD run.

Run-file section ``[surrogates]`` is the stage's own ``SurrogateSettings`` (model kind,
network size, training budget); the training data are the ``dd`` node's strain paths.
"""

from __future__ import annotations

from typing import Any

from scalebridge.artifacts import Artifact
from scalebridge.surrogates.train import SurrogateSettings
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("surrogates", "workflows/stage_surrogates.py")

#: ``[surrogates]`` is SurrogateSettings itself.
Section = SurrogateSettings


def make_surrogate(call: StageCall) -> Artifact:
    return call.settings.make(call.inputs["dd"], call.out, call.resources, force=call.force)


def nodes(cfg: Any = None) -> list[StageNode]:
    return [StageNode("surrogate", "Surrogate", ("dd",), make_surrogate,
                      settings=lambda c: c.surrogates, section="surrogates", code=CODE)]
