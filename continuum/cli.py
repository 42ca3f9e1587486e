"""``scalebridge fem``: run the continuum problems from the command line.

    scalebridge fem run --problem cylinder --out runs/fem/cyl              analytic J2
    scalebridge fem run --problem plate --surrogate runs/mo/surrogate      a Surrogate
    scalebridge fem run --config fem.toml --ranks 2 --out runs/fem/cyl2    under mpiexec
    scalebridge fem run --config bracket.toml --out runs/bracket           your mesh
    scalebridge fem convert-mesh bracket.msh bracket.xdmf                  .msh -> XDMF
    scalebridge fem schema                                                 every setting

The TOML file holds ``FemSettings`` keys (``[problem]`` with ``kind``, ``[solver]``,
``[loading]``, ``write_fields``) and optionally ``[material]``: analytic J2 keys (the
default kind), ``kind = "python"`` with ``model = "module:Class"`` and its ``settings``,
or ``kind = "surrogate"`` with a ``path``. ``--surrogate`` replaces the material by a
Surrogate artifact (or exported folder). Relative paths in the file (the mesh, a model
file, a surrogate) are relative to the file. A mesh problem::

    [problem]
    kind = "mesh"
    mesh = "bracket.msh"                     # gmsh physical names are the labels
    [[problem.bc]]
    boundary = "clamp"
    kind = "fixed"
    [[problem.bc]]
    boundary = "load"
    kind = "displacement"
    z = -0.2
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from scalebridge.errors import SettingsError
from scalebridge.settings import Resources, load_toml, schema_doc, validate


@click.group("fem")
def fem() -> None:
    """Continuum: dolfinx elastoplasticity with an analytic or surrogate material."""


@fem.command("run")
@click.option("-s", "--settings", "--config", "config",
              type=click.Path(dir_okay=False, path_type=Path),
              help="settings TOML (also --config): FemSettings keys and an optional "
              "[material] section.")
@click.option("--problem", type=click.Choice(["cylinder", "plate", "compression", "patch"]),
              help="Problem kind (overrides [problem].kind; other keys keep defaults).")
@click.option("--surrogate", type=click.Path(path_type=Path),
              help="Surrogate artifact (or exported folder) to use as the material "
              "instead of [material].")
@click.option("--steps", type=int, help="Nominal number of load steps.")
@click.option("--ranks", type=int, default=1, show_default=True,
              help="MPI ranks; > 1 runs the solve under the venv's mpiexec.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="FieldResults artifact directory to write.")
@click.option("--force", is_flag=True, help="Rebuild even if the artifact is current.")
@click.option("--allow-failed-checks", is_flag=True,
              help="Use a surrogate that fails check_constitutive anyway (recorded in the "
              "artifact); same as allow_failed_checks = true in the TOML.")
def run(config: Path | None, problem: str | None, surrogate: Path | None, steps: int | None,
        ranks: int, out: Path, force: bool, allow_failed_checks: bool) -> None:
    """Solve a problem and write a FieldResults artifact."""
    from scalebridge.continuum.fem import FemSettings

    data = load_toml(config) if config else {}
    source = str(config) if config else "command line"
    base_dir = config.absolute().parent if config else Path.cwd()
    material = _material(data.pop("material", {}), f"{source} [material]")
    if hasattr(material, "resolve_paths"):
        material = material.resolve_paths(base_dir)
    if problem is not None and data.get("problem", {}).get("kind") != problem:
        data["problem"] = {"kind": problem}
    if steps is not None:
        data.setdefault("solver", {})["steps"] = steps
    if allow_failed_checks:
        data["allow_failed_checks"] = True
    settings = validate(FemSettings, data, source=source).resolve_paths(base_dir)
    model = surrogate if surrogate is not None else material
    art = settings.make(model, out, Resources(mpi_ranks=ranks), force=force)
    s = art.summary
    click.echo(f"{art.path}: {s['problem']} with {s['model']}, max load "
               f"{s['max_load_mpa']:.4g} MPa, {s['newton_iterations']} Newton iterations, "
               f"{s['cuts']} cuts, {s['wall_seconds']:.2f} s on {s['ranks']} rank(s), "
               f"{s.get('n_dofs', 0)} dofs")
    for name, r in (s.get("final_reactions_n") or {}).items():
        click.echo(f"reaction on {name}: " + ", ".join(
            f"{'xyz'[i]} {v:.5g}" for i, v in enumerate(r)) + " N")
    if s.get("limit_load_rel_error") is not None:
        click.echo(f"limit pressure {s['max_load_mpa']:.4f} MPa vs analytic "
                   f"{s['q_lim_mpa']:.4f} MPa: rel. error {s['limit_load_rel_error']:.2e}")
    elif s.get("limit_load_note"):
        click.echo(s["limit_load_note"])
        from scalebridge.continuum.limit_load import final_displacement_mm, limit_load_cross_check

        dd = _surrogate_dd_summary(surrogate)
        check = limit_load_cross_check(s, dd, final_displacement_mm(art.path)) if dd else None
        if check:
            click.echo(check["text"])
    checks = s.get("material_checks") or {}
    if checks.get("overridden"):
        click.echo(f"WARNING: the surrogate failed check_constitutive "
                   f"({checks.get('failed_detail')}); used because allow_failed_checks is set")


def _surrogate_dd_summary(surrogate: Path | None) -> Mapping[str, Any] | None:
    """The summary of the DDRun a Surrogate artifact was fitted to (its manifest's
    input of kind DDRun), or None (no surrogate, an exported folder, a DD moved away)."""
    from scalebridge.artifacts import read_artifact
    from scalebridge.errors import ArtifactError

    if surrogate is None:
        return None
    try:
        records = read_artifact(surrogate, "Surrogate").manifest.get("inputs") or {}
        rec = next(r for r in records.values()
                   if isinstance(r, Mapping) and r.get("kind") == "DDRun")
        return read_artifact(rec["artifact"], "DDRun").summary
    except (ArtifactError, StopIteration, KeyError, TypeError, OSError):
        return None


def _material(data: dict[str, Any], source: str) -> Any:
    """Validate ``[material]`` (J2 keys by default) with the one-line error style."""
    from scalebridge.continuum.materials import (
        J2Material,
        PythonMaterial,
        SurrogateMaterial,
    )

    kinds = {"j2": J2Material, "python": PythonMaterial, "surrogate": SurrogateMaterial}
    kind = data.get("kind", "j2")
    if kind not in kinds:
        raise SettingsError(f"{source}: kind = {kind!r}; expected one of "
                            f"{', '.join(kinds)}")
    return validate(kinds[kind], data, source=source)


@fem.command("convert-mesh")
@click.argument("mesh", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--label", "labels", multiple=True, metavar="NAME=TAG",
              help="Name a facet tag (repeatable); gmsh physical names are kept.")
def convert_mesh(mesh: Path, out: Path, labels: tuple[str, ...]) -> None:
    """Write MESH (.msh or .xdmf) as OUT.xdmf (+ .h5, .labels.json) for parallel reading."""
    from mpi4py import MPI
    from scalebridge.continuum.mesh_input import read_mesh, write_xdmf

    named = {}
    for item in labels:
        name, sep, tag = item.partition("=")
        if not sep or not tag.strip().lstrip("-").isdigit():
            raise SettingsError(f"--label {item!r}: expected NAME=TAG (an integer tag)")
        named[name.strip()] = int(tag)
    tm = read_mesh(mesh, MPI.COMM_WORLD, labels=named)
    files = write_xdmf(tm, out)
    n = tm.mesh.topology.index_map(tm.dim).size_global
    click.echo(f"{files[0]}: {n} {tm.mesh.topology.cell_name()} cells, facet labels "
               f"{', '.join(f'{k}={v}' for k, v in sorted(tm.labels.items())) or 'none'}")


@fem.command("schema")
@click.option("--json", "as_json", is_flag=True, help="JSON schema instead of TOML lines.")
def schema(as_json: bool) -> None:
    """Print every FEM setting with its default and description."""
    from scalebridge.continuum.boundary import (
        DisplacementBC,
        FixedBC,
        PressureBC,
        TractionBC,
    )
    from scalebridge.continuum.fem import FemSettings
    from scalebridge.continuum.materials import J2Material, PythonMaterial, SurrogateMaterial
    from scalebridge.continuum.problems import MeshProblem

    materials = {"j2": J2Material, "python": PythonMaterial, "surrogate": SurrogateMaterial}
    bcs = (FixedBC, DisplacementBC, TractionBC, PressureBC)
    if as_json:
        click.echo(json.dumps({"fem": FemSettings.model_json_schema(),
                               "material": {k: m.model_json_schema()
                                            for k, m in materials.items()}}, indent=1))
        return
    click.echo("\n".join(schema_doc(FemSettings)))
    click.echo("[problem]  # kind = \"mesh\": your mesh file")
    click.echo("\n".join(schema_doc(MeshProblem, prefix="problem.")))
    for bc in bcs:
        click.echo(f"[[problem.bc]]  # kind = \"{bc.model_fields['kind'].default}\": "
                   f"{(bc.__doc__ or '').strip().splitlines()[0]}")
        click.echo("\n".join(schema_doc(bc, prefix="problem.bc.")))
    for kind, model in materials.items():
        click.echo(f"[material]  # kind = \"{kind}\": {(model.__doc__ or '').strip()}"
                   + (" (ignored with --surrogate)" if kind == "j2" else ""))
        click.echo("\n".join(schema_doc(model, prefix="material.")))
