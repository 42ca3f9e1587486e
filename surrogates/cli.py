"""``scalebridge surrogates``: make J2 data, fit, check and export constitutive surrogates."""

from __future__ import annotations

import json
from pathlib import Path

import click
from scalebridge.settings import Resources, load_settings, schema_doc


@click.group("surrogates")
def surrogates() -> None:
    """Constitutive surrogates (J2 reference, neural J2, internal variable) behind one protocol.

    \b
      scalebridge surrogates dataset --out runs/j2data          analytic J2 strain paths
      scalebridge surrogates fit runs/j2data --out runs/sur     fit (or a DDRun artifact)
      scalebridge surrogates check runs/sur                     check_constitutive
      scalebridge surrogates export runs/sur --out exported/    TorchScript + tables
    """


@surrogates.command("dataset")
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="artifact directory to create")
@click.option("-s", "--settings", "--config", "settings_file", type=click.Path(path_type=Path),
              help="settings TOML (also --config): J2DataSettings keys (see "
              "`surrogates schema`)")
@click.option("--seed", type=int, help="override the seed of the random paths")
def dataset_cmd(out: Path, settings_file: Path | None, seed: int | None) -> None:
    """Random cyclic strain paths through the analytic J2 law (ConstitutiveDataset)."""
    from scalebridge.surrogates.data import J2DataSettings

    s = load_settings(J2DataSettings, settings_file) if settings_file else J2DataSettings()
    if seed is not None:
        s.seed = seed
    art = s.make(out)
    click.echo(f"{art.path}: {json.dumps(art.summary)}")


@surrogates.command("fit")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="Surrogate artifact directory to create")
@click.option("-s", "--settings", "--config", "settings_file", type=click.Path(path_type=Path),
              help="settings TOML (also --config): SurrogateSettings keys (see "
              "`surrogates schema`)")
@click.option("--model", type=click.Choice(["neural_j2", "johnston_gilman", "source_families",
                                           "internal_variable", "recurrent"]),
              help="override the model kind (recurrent = internal_variable)")
@click.option("--threads", type=int, default=1, show_default=True, help="torch threads")
@click.option("--force", is_flag=True, help="refit even if the artifact is current (it "
              "replaces only an artifact at --out: any other folder there is refused)")
def fit_cmd(data: Path, out: Path, settings_file: Path | None, model: str | None,
            threads: int, force: bool) -> None:
    """Fit a surrogate to DATA (a ConstitutiveDataset or a DDRun artifact)."""
    from scalebridge.artifacts import read_artifact
    from scalebridge.surrogates.train import SurrogateSettings

    s = load_settings(SurrogateSettings, settings_file) if settings_file else SurrogateSettings()
    if model:
        s.model = model  # type: ignore[assignment]
    # --force refits over a previous Surrogate; a folder of the user's at --out is refused
    # (produce's check), never removed
    art = s.make(read_artifact(data), out, Resources(threads=threads), force=force)
    click.echo(f"{art.path}: {json.dumps(art.summary, default=str)}")


@surrogates.command("check")
@click.argument("target")
@click.option("--amplitude", type=float, help="strain amplitude of the probing paths "
              "(default: 0.8 x the training strain range, 5e-3 for j2:*)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def check_cmd(target: str, amplitude: float | None, as_json: bool) -> None:
    """Run check_constitutive on TARGET: a Surrogate artifact, or j2:linear|voce|dislocation.

    Exits with status 1 when a check that the model claims fails."""
    from scalebridge.errors import SettingsError
    from scalebridge.surrogates.checks import check_constitutive
    from scalebridge.surrogates.data import J2DataSettings
    from scalebridge.surrogates.train import load_surrogate

    if target.startswith("j2:"):
        kind = target[3:]
        if kind not in ("linear", "voce", "dislocation"):
            raise SettingsError(f"unknown J2 hardening {kind!r}: use linear, voce or dislocation")
        model = J2DataSettings(hardening=kind).model()  # type: ignore[arg-type]
        amp = amplitude or 5e-3
    else:
        model = load_surrogate(target)
        rng = getattr(model, "training_range", {}).get("strain_norm", [0, 6.25e-3])
        amp = amplitude or 0.8 * rng[1]
    rep = check_constitutive(model, amplitude=amp, raise_on_failure=False)
    click.echo(json.dumps(rep.to_dict(), indent=2) if as_json else rep.summary())
    if not rep.passed:
        from scalebridge.surrogates.checks import ConstitutiveCheckError

        raise ConstitutiveCheckError(f"{target}: failed {', '.join(rep.failed)}")


@surrogates.command("export")
@click.argument("surrogate", type=click.Path(path_type=Path))
@click.option("-o", "--out", "out", type=click.Path(path_type=Path), required=True,
              help="folder to write model.ts, surrogate.json, model.pt (and tables)")
def export_cmd(surrogate: Path, out: Path) -> None:
    """Export a Surrogate: TorchScript of its network, and for neural J2 a tabulated
    hardening curve (hardening_table.csv: eps_p_eq, sigma_y_mpa) other FE codes read."""
    from scalebridge.surrogates.train import export_surrogate

    files = export_surrogate(surrogate, out)
    click.echo("\n".join(str(f) for f in files))


@surrogates.command("schema")
def schema_cmd() -> None:
    """Print every setting of dataset and fit, with defaults."""
    from scalebridge.surrogates.data import J2DataSettings
    from scalebridge.surrogates.train import SurrogateSettings

    click.echo("# surrogates dataset (J2DataSettings)")
    click.echo("\n".join(schema_doc(J2DataSettings)))
    click.echo("\n# surrogates fit (SurrogateSettings)")
    click.echo("\n".join(schema_doc(SurrogateSettings)))


