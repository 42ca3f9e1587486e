"""Chain nodes of the md stage: ``properties`` (Properties) and ``defects`` (DefectStats).

Run-file section ``[md]``::

    [md]                  models = "auto" | "frozen" | "compressed"
    [md.properties]       scalebridge.md PropertiesMaker (a0, Cij, EOS, vacancy, NVE drift)
    [md.mobility]         scalebridge.md MobilityMaker (the (character, T, τ) glide grid)
    [md.deformation]      scalebridge.md DeformMaker (density vs strain; off: deform = false)

The glide grid is independent work: each point is one task given to the run's mapper
(local, or Parsl workers), each under ``mpiexec`` with ``[execution] mpi_ranks``. A
finished point is kept under ``<run-dir>/.tasks/defects/`` until the chain has recorded the
DefectStats artifact, so a run killed in the middle of the grid resumes at the first unfinished
point.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from scalebridge.artifacts import Artifact, dry_run_path
from scalebridge.errors import ArtifactError
from scalebridge.md.deform import DeformMaker
from scalebridge.md.lammps import DeepMDPotential, LammpsPotential
from scalebridge.md.mobility import MobilityMaker
from scalebridge.md.properties import PropertiesMaker, load_properties
from scalebridge.settings import StrictModel
from scalebridge.workflows.chain import StageCall, StageNode

#: What these nodes run (their code record: see ``StageNode.code``).
CODE = ("md", "workflows/stage_md.py")

log = logging.getLogger("scalebridge.workflows")


class Section(StrictModel):
    """LAMMPS with the learned potential: properties and dislocation glide."""

    models: Literal["auto", "frozen", "compressed"] = Field(
        "auto", description="which DeePMD models LAMMPS runs: compressed (faster) when "
        "the Potential has them (auto), or always the frozen ones")
    properties: PropertiesMaker = Field(default_factory=PropertiesMaker,
                                        description="lattice, elastic constants, EOS, "
                                        "vacancy, NVE drift")
    mobility: MobilityMaker = Field(default_factory=MobilityMaker,
                                    description="dislocation velocity vs (character, T, τ)")
    deform: bool = Field(True, description="also run the deformation with voids (density "
                         "by Burgers vector vs strain, DXA): node 'deform'")
    deformation: DeformMaker = Field(default_factory=DeformMaker,
                                     description="the deformation run (when deform = true)")


def _potential(path: str | Path, models: str) -> LammpsPotential:
    """The LAMMPS potential of a Potential artifact, frozen or compressed models."""
    path = Path(path)
    if models == "frozen":
        return DeepMDPotential.from_artifact(path)
    try:
        pj = json.loads((path / "potential.json").read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path / 'potential.json'}: cannot read the Potential "
                            f"artifact's record ({type(e).__name__}: {e}); rerun the "
                            "potential stage") from None
    if models == "compressed" or (models == "auto" and pj.get("compressed")):
        return DeepMDPotential.from_artifact(path, compressed=True)
    return DeepMDPotential.from_artifact(path)


def _from_data(call: StageCall, maker: Any, pot: LammpsPotential) -> Any:
    """``maker`` with the crystal fields the run file left unset (element, lattice, a0
    guess, DFT reference) taken from the DFTDataset's ``crystal`` record."""
    from scalebridge.md.properties import resolve_crystal
    from scalebridge.potentials.dataset import load_dataset

    ds = call.inputs.get("dataset")
    crystal = load_dataset(ds).crystal if ds is not None else None
    return maker.model_copy(update=resolve_crystal(maker, pot, crystal,
                                                   with_reference=True))


def make_properties(call: StageCall) -> Artifact:
    pot = _potential(call.inputs["potential"].path, call.config.md.models)
    maker = _from_data(call, call.settings["maker"], pot)
    ds = call.inputs.get("dataset")
    cells = None
    if ds is not None and maker.stacking_faults:
        from scalebridge.md.stacking import dataset_gsf_cells

        cells = dataset_gsf_cells(ds, maker.lattice)
    return maker.make(pot, call.out, call.resources, force=call.force, gsf_cells=cells)


def dry_run_properties(call: StageCall) -> list[Path]:
    """The LAMMPS input and data file of the properties run, without running it."""
    from scalebridge.md.lammps import run_lammps

    pot = _potential(call.inputs["potential"].path, call.config.md.models)
    maker: PropertiesMaker = _from_data(call, call.settings["maker"], pot)
    where = dry_run_path(call.out)  # the chain emptied it
    run_lammps(where, maker.script(), pot, maker.structure(), resources=call.resources,
               devi=maker.devi, timestep_ps=maker.timestep_ps, triclinic=True,
               dry_run=True)
    return sorted(p for p in where.rglob("*") if p.is_file())


def glide_task(task: dict[str, Any]) -> dict[str, Any]:
    """One glide point (a fan-out task): its velocity row. The chain's task names the
    potential artifact and its model files; the row (and the resume from ``row.json``)
    comes from :func:`scalebridge.md.mobility.mobility_task`."""
    from scalebridge.md.mobility import mobility_task

    if (Path(task["workdir"]) / "row.json").is_file():  # finished: no potential needed
        return mobility_task(task)
    return mobility_task({**task, "potential": _potential(task["potential"], task["models"])})


def make_defects(call: StageCall) -> Artifact:
    pot_art, props = call.inputs["potential"], call.inputs["properties"]
    maker: MobilityMaker = _from_data(call, call.settings["maker"],
                                      _potential(pot_art.path, call.config.md.models))
    a0 = float(load_properties(props)["a0_a"])
    tasks_dir = call.run_dir / ".tasks" / "defects" / call.fingerprint[:16]
    tasks = [{"maker": maker.model_dump(mode="json"), "point": p.model_dump(mode="json"),
              "potential": str(pot_art.path), "models": call.config.md.models, "a0_a": a0,
              "resources": call.resources.model_dump(), "workdir": str(tasks_dir / p.tag)}
             for p in maker.grid()]
    log.info("defects: %d glide runs on %s", len(tasks), type(call.mapper).__name__)
    rows = call.mapper.map(glide_task, tasks, description="defects: glide runs done")
    # the chain removes .tasks/defects once its record is written
    return maker.make(_potential(pot_art.path, call.config.md.models), call.out,
                      properties=props, rows=rows, resources=call.resources,
                      force=call.force)


def make_deform(call: StageCall) -> Artifact:
    pot = _potential(call.inputs["potential"].path, call.config.md.models)
    return _from_data(call, call.settings["maker"], pot).make(
        pot, call.out, properties=call.inputs["properties"],
                                       resources=call.resources, force=call.force)


def nodes(cfg: Any = None) -> list[StageNode]:
    out = [
        StageNode("properties", "Properties", ("dataset", "potential"), make_properties,
                  settings=lambda c: {"models": c.md.models, "maker": c.md.properties},
                  dry_run=dry_run_properties, section="md.properties", code=CODE),
        StageNode("defects", "DefectStats", ("dataset", "potential", "properties"),
                  make_defects,
                  settings=lambda c: {"models": c.md.models, "maker": c.md.mobility},
                  section="md.mobility", code=CODE),
    ]
    if cfg is None or cfg.md.deform:
        out.append(StageNode(
            "deform", "DefectStats", ("dataset", "potential", "properties"), make_deform,
            settings=lambda c: {"models": c.md.models, "maker": c.md.deformation},
            section="md.deformation", code=CODE))
    return out
