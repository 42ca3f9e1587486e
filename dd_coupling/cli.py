"""``scalebridge dd``: mobility fitting and discrete dislocation dynamics.

    scalebridge dd fit-mobility runs/mo/defects --properties runs/mo/properties --out runs/mo/mobility
    scalebridge dd run runs/mo/mobility runs/mo/properties --out runs/mo/dd --realisations 4
    scalebridge dd schema                      every setting with its default

``-s/--settings`` (also ``--config``) takes a TOML file with FitMobilitySettings
(fit-mobility) or DDSettings (run) keys; command-line options override it. μ, ν and b
always come from the Properties artifact (properties.json of the md stage).
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
from scalebridge.settings import load_toml, schema_doc, validate


@click.group("dd")
def dd() -> None:
    """Dislocation dynamics: MD glide data -> mobility law -> 2D DDD stress-strain."""


@dd.command("fit-mobility")
@click.argument("defect_stats", type=click.Path(exists=True, path_type=Path))
@click.option("--properties", type=click.Path(exists=True, path_type=Path),
              help="Properties artifact (or properties.json) giving the Burgers vector.")
@click.option("-s", "--settings", "--config", "config",
              type=click.Path(dir_okay=False, path_type=Path),
              help="settings TOML (also --config): FitMobilitySettings keys.")
@click.option("--law", type=click.Choice(["neural", "drag"]), help="Law to write.")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="MobilityLaw artifact directory to write.")
@click.option("--force", is_flag=True, help="Rebuild even if the artifact is current.")
def fit_mobility(defect_stats: Path, properties: Path | None, config: Path | None,
                 law: str | None, out: Path, force: bool) -> None:
    """Fit a mobility law to a DefectStats artifact (velocity.csv)."""
    from scalebridge.dd_coupling.fit import FitMobilitySettings
    from scalebridge.md.glide_fit import tau0_measured

    data = load_toml(config) if config else {}
    if law is not None:
        data["law"] = law
    settings = validate(FitMobilitySettings, data, source=str(config or "command line"))
    art = settings.make(defect_stats, out, properties=properties, force=force)
    s = art.summary
    parts = [f"{art.path}: {s['law']} from {s['n_rows']} rows (|tau| <= "
             f"{tau_tops_text(s)})"]
    for c in ("edge", "screw"):
        if f"drag_{c}_b0_pa_s" in s:
            parts.append(f"{c} drag B0 = {s[f'drag_{c}_b0_pa_s']:.4g} ± "
                         f"{s[f'drag_{c}_b0_err_pa_s']:.2g} Pa·s")
        if f"drag_{c}_tau0_mpa" in s and not tau0_measured(s, f"drag_{c}_"):
            # not measured: fixed at 0 by the model choice (the note says so, and what the
            # data say of a threshold)
            parts.append(f"{c} threshold tau0 {s.get(f'drag_{c}_tau0_note') or 'fixed at 0'}")
        elif f"drag_{c}_tau0_mpa" in s:
            lo, hi = s[f"drag_{c}_tau0_ci95_mpa"]
            mu = (f" = {s[f'drag_{c}_tau0_over_mu']:.3g} μ"
                  if f"drag_{c}_tau0_over_mu" in s else "")
            slope = s.get(f"drag_{c}_tau0_mpa_k") or 0.0
            per_t = f" + {slope:.3g} MPa/K·T" if slope else ""
            parts.append(f"{c} threshold tau0 = {s[f'drag_{c}_tau0_mpa']:.4g} MPa "
                         f"(95% {lo:.3g}..{hi:.3g}){mu}{per_t}")
    click.echo("; ".join(parts))


@dd.command("run")
@click.argument("mobility", type=click.Path(exists=True, path_type=Path))
@click.argument("properties", type=click.Path(exists=True, path_type=Path))
@click.option("-s", "--settings", "--config", "config",
              type=click.Path(dir_okay=False, path_type=Path),
              help="settings TOML (also --config): DDSettings keys.")
@click.option("--realisations", type=int, help="Number of random microstructures.")
@click.option("--final-strain", type=float, help="End strain (strain control).")
@click.option("-o", "--out", type=click.Path(path_type=Path), required=True,
              help="DDRun artifact directory to write.")
@click.option("--force", is_flag=True, help="Rebuild even if the artifact is current.")
def run(mobility: Path, properties: Path, config: Path | None, realisations: int | None,
        final_strain: float | None, out: Path, force: bool) -> None:
    """Run 2D DDD with a MobilityLaw artifact and the material of a Properties artifact."""
    from scalebridge.dd_coupling.simulate import DDSettings

    data = load_toml(config) if config else {}
    if realisations is not None:
        data["realisations"] = realisations
    if final_strain is not None:
        data["final_strain"] = final_strain
    settings = validate(DDSettings, data, source=str(config or "command line"))
    art = settings.make(mobility, properties, out, force=force)
    s = art.summary
    click.echo(f"{art.path}: flow stress {s['flow_stress_mpa']:.4g} MPa, density "
               f"{s['density_end_m2']:.3g} m^-2, plastic strain {s['plastic_strain_end']:.3g}, "
               f"{s['n_avalanches']} avalanches, steps {s['steps']}")
    glide = glide_text(s, _mobility_summary(mobility))
    if glide:
        click.echo(glide)


def tau_tops_text(summary: Mapping[str, Any]) -> str:
    """Each character's largest |τ| of a MobilityLaw summary (``tau_max_mpa_by_character``),
    ``1500 MPa edge, 2800 MPa screw``; the top over all characters (``tau_max_mpa``)
    for a law written before the per-character tops."""
    tops = summary.get("tau_max_mpa_by_character")
    if isinstance(tops, Mapping) and tops:
        return ", ".join(f"{float(v):.4g} MPa {c}" for c, v in tops.items())
    return f"{float(summary['tau_max_mpa']):.4g} MPa"


def glide_text(dd: Mapping[str, Any], mobility: Mapping[str, Any] | None) -> str | None:
    """The character every dislocation of a DDRun glided with (its summary's
    ``mobility.character`` and why), with that character's largest |τ| the mobility law
    was fitted to (the MobilityLaw summary's ``tau_max_mpa_by_character``: the law's data
    for that character end there); None where the DD records no character."""
    rec = dd.get("mobility") or {}
    c = rec.get("character")
    if not c:
        return None
    out = f"glide: every dislocation with the {c} law ({rec.get('why') or 'as set'})"
    top = ((mobility or {}).get("tau_max_mpa_by_character") or {}).get(c)
    if isinstance(top, (int, float)):
        out += f"; its MD data reach |tau| <= {float(top):.4g} MPa"
    return out


def _mobility_summary(path: Path) -> Mapping[str, Any] | None:
    """The summary of the MobilityLaw artifact at ``path``, or None (a law's folder that
    is no artifact)."""
    from scalebridge.artifacts import read_artifact
    from scalebridge.errors import ArtifactError

    try:
        return read_artifact(path, "MobilityLaw").summary
    except ArtifactError:
        return None


@dd.command("schema")
def schema() -> None:
    """Print every dd setting with its default and description."""
    from scalebridge.dd_coupling.fit import FitMobilitySettings
    from scalebridge.dd_coupling.simulate import DDSettings

    click.echo("# scalebridge dd fit-mobility --settings")
    click.echo("\n".join(schema_doc(FitMobilitySettings)))
    click.echo("# scalebridge dd run --settings")
    click.echo("\n".join(schema_doc(DDSettings)))
