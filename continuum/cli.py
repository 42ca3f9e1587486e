"""``scalebridge fem``: run the continuum problems from the command line.

    scalebridge fem run --problem cylinder --out runs/fem/cyl              analytic J2
    scalebridge fem run --problem plate --surrogate runs/mo/surrogate      a Surrogate
    scalebridge fem run --config fem.toml --ranks 2 --out runs/fem/cyl2    under mpiexec
    scalebridge fem schema                                                 every setting

The TOML file holds ``FemSettings`` keys (``[problem]`` with ``kind``, ``[solver]``,
``write_fields``) and optionally ``[material]`` (``J2Material`` keys) for the analytic
model; ``--surrogate`` replaces the material by a trained Surrogate artifact.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from scalebridge.settings import Resources, load_toml, schema_doc, validate


@click.group("fem")
def fem() -> None:
    """Continuum: dolfinx elastoplasticity with an analytic or surrogate material."""


@fem.command("run")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML with FemSettings keys and an optional [material] section.")
@click.option("--problem", type=click.Choice(["cylinder", "plate", "compression", "patch"]),
              help="Problem kind (overrides [problem].kind; other keys keep defaults).")
@click.option("--surrogate", type=click.Path(path_type=Path),
              help="Surrogate artifact to use as the material instead of analytic J2.")
@click.option("--steps", type=int, help="Nominal number of load steps.")
@click.option("--ranks", type=int, default=1, show_default=True,
              help="MPI ranks; > 1 runs the solve under the venv's mpiexec.")
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="FieldResults artifact directory to write.")
@click.option("--force", is_flag=True, help="Rebuild even if the artifact is current.")
@click.option("--allow-failed-checks", is_flag=True,
              help="Use a surrogate that fails check_constitutive anyway (recorded in the "
              "artifact); same as allow_failed_checks = true in the TOML.")
def run(config: Path | None, problem: str | None, surrogate: Path | None, steps: int | None,
        ranks: int, out: Path, force: bool, allow_failed_checks: bool) -> None:
    """Solve a problem and write a FieldResults artifact."""
    from scalebridge.continuum.fem import FemSettings
    from scalebridge.continuum.materials import J2Material

    data = load_toml(config) if config else {}
    source = str(config) if config else "command line"
    material = validate(J2Material, data.pop("material", {}), source=f"{source} [material]")
    if problem is not None and data.get("problem", {}).get("kind") != problem:
        data["problem"] = {"kind": problem}
    if steps is not None:
        data.setdefault("solver", {})["steps"] = steps
    if allow_failed_checks:
        data["allow_failed_checks"] = True
    settings = validate(FemSettings, data, source=source)
    model = surrogate if surrogate is not None else material
    art = settings.make(model, out, Resources(mpi_ranks=ranks), force=force)
    s = art.summary
    click.echo(f"{art.path}: {s['problem']} with {s['model']}, max load "
               f"{s['max_load_mpa']:.4g} MPa, {s['newton_iterations']} Newton iterations, "
               f"{s['cuts']} cuts, {s['wall_seconds']:.2f} s on {s['ranks']} rank(s)")
    if s.get("limit_load_rel_error") is not None:
        click.echo(f"limit pressure {s['max_load_mpa']:.4f} MPa vs analytic "
                   f"{s['q_lim_mpa']:.4f} MPa: rel. error {s['limit_load_rel_error']:.2e}")
    elif s.get("limit_load_note"):
        click.echo(s["limit_load_note"])
    checks = s.get("material_checks") or {}
    if checks.get("overridden"):
        click.echo(f"WARNING: the surrogate failed check_constitutive "
                   f"({checks.get('failed_detail')}); used because allow_failed_checks is set")


@fem.command("schema")
@click.option("--json", "as_json", is_flag=True, help="JSON schema instead of TOML lines.")
def schema(as_json: bool) -> None:
    """Print every FEM setting with its default and description."""
    from scalebridge.continuum.fem import FemSettings
    from scalebridge.continuum.materials import J2Material

    if as_json:
        click.echo(json.dumps({"fem": FemSettings.model_json_schema(),
                               "material": J2Material.model_json_schema()}, indent=1))
        return
    click.echo("\n".join(schema_doc(FemSettings)))
    click.echo("[material]  # analytic J2 (ignored with --surrogate)")
    click.echo("\n".join(schema_doc(J2Material, prefix="material.")))
