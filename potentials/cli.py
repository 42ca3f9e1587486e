"""``scalebridge potentials ingest|train|evaluate``: the stage on its own.

Settings come from an optional TOML file (the same keys as the Python settings objects)
plus a few command-line overrides; ``--threads`` is a machine setting.

Example::

    scalebridge potentials ingest training.json --test test.json --type-map Mo -o runs/ds
    scalebridge potentials ingest Mo.json Nb.json --type-map Mo Nb -o runs/monb
    scalebridge potentials ingest mo_elastic.json --voigt-order 'xx yy zz xy xz yz' -o ds
    scalebridge potentials train runs/ds -o runs/pot --steps 2000 --ensemble 4
    scalebridge potentials evaluate runs/pot runs/ds -o runs/eval
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import click
from scalebridge.settings import Resources, load_toml, validate


def _settings(model, path: Path | None, overrides: dict):
    data = load_toml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(model, data, source=str(path) if path else "command line")


#: A word that continues a ``--type-map`` value: element-like symbols, comma separated.
_SPECIES_WORD = re.compile(r"[A-Z][a-z]{0,2}(,[A-Z][a-z]{0,2})*")


def join_type_map(args: Sequence[str]) -> list[str]:
    """Command-line words with ``--type-map Mo Nb W`` joined into ``--type-map=Mo,Nb,W``:
    the words after the option's value that look like element symbols (``Nb``, ``Nb,W``)
    belong to it; the first other word (a path, an option) ends it, as does ``--``."""
    out: list[str] = []
    rest = list(args)
    while rest:
        word = rest.pop(0)
        if word == "--":
            out += [word, *rest]
            break
        if word == "--type-map" and rest:
            word = f"{word}={rest.pop(0)}"
        if word.startswith("--type-map="):
            while rest and _SPECIES_WORD.fullmatch(rest[0]):
                word += "," + rest.pop(0)
        out.append(word)
    return out


def parse_type_map(value: str | None) -> list[str] | None:
    """The species of a ``--type-map`` value, comma and/or space separated
    (``"Mo,Nb"``, ``"Mo Nb"``); None when not given."""
    species = value.replace(",", " ").split() if value else []
    return species or None


class TypeMapCommand(click.Command):
    """A command whose ``--type-map`` takes several species as separate words
    (``--type-map Mo Nb W``, :func:`join_type_map`), as well as one quoted or comma
    separated value."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, join_type_map(args))


def _show(art) -> None:
    click.echo(f"{art.kind}: {art.path}")
    click.echo(json.dumps(art.summary, indent=2))


@click.group("potentials")
def potentials() -> None:
    """DFT data -> validated DeePMD-kit potentials (ingest, train, evaluate)."""


@potentials.command("ingest", cls=TypeMapCommand)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="DFTDataset artifact directory to create")
@click.option("--test", "tests", multiple=True, type=click.Path(path_type=Path),
              help="files forming the test split as they are (repeatable)")
@click.option("--type-map", help="species in model order (e.g. Mo, or Mo Nb W, or Mo,Nb,W)")
@click.option("--format", "fmt", help="input format of every data file (IngestSettings."
              "format: auto, mlearn, fitsnap, vasprun, outcar, extxyz, deepmd/npy, "
              "'ase:<format>', 'dpdata:<format>', ...)")
@click.option("--voigt-order", help="order of the six stresses of mlearn/maml JSON "
              "(IngestSettings.voigt_order), quoted: 'xx yy zz xy xz yz' (mlearn Mo), "
              "'xx yy zz xy yz xz' or 'xx yy zz yz xz xy'; default auto")
@click.option("-s", "--settings", "--config", "settings_file", type=click.Path(path_type=Path),
              help="settings TOML (also --config): IngestSettings keys (the options "
              "above override them)")
@click.option("--force", is_flag=True, help="rebuild even when up to date")
def ingest(sources, out, tests, type_map, fmt, voigt_order, settings_file, force) -> None:
    """Read DFT files (vasprun.xml, OUTCAR, mlearn or FitSNAP JSON), validate them and
    write a split deepmd/npy DFTDataset."""
    from scalebridge.potentials.dataset import IngestSettings

    s = _settings(IngestSettings, settings_file,
                  {"type_map": parse_type_map(type_map), "format": fmt,
                   "voigt_order": " ".join(voigt_order.replace(",", " ").split())
                   if voigt_order else None})
    _show(s.make(list(sources), out, test_sources=list(tests) or None, force=force))


@potentials.command("train")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Potential artifact directory to create")
@click.option("-s", "--settings", "--config", "settings_file", type=click.Path(path_type=Path),
              help="settings TOML (also --config): TrainSettings keys")
@click.option("--steps", type=int, help="training steps per model")
@click.option("--ensemble", type=int, help="number of models (seeds)")
@click.option("--threads", type=int, default=1, show_default=True,
              help="threads per dp process")
@click.option("--dry-run", is_flag=True, help="write the DeePMD input.json files only")
@click.option("--force", is_flag=True, help="retrain even when up to date")
def train(dataset, out, settings_file, steps, ensemble, threads, dry_run, force) -> None:
    """Train an ensemble of DeePMD-kit models (dp --pt) on a DFTDataset."""
    from scalebridge.potentials.train import TrainSettings

    s = _settings(TrainSettings, settings_file, {"steps": steps, "ensemble": ensemble})
    art = s.make(dataset, out, Resources(threads=threads), force=force, dry_run=dry_run)
    if dry_run:
        for p in sorted(art.path.rglob("input.json")):
            click.echo(f"wrote {p}")
        return
    _show(art)


@potentials.command("evaluate")
@click.argument("potential", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="Evaluation artifact directory to create")
@click.option("--split", default="test", show_default=True, help="dataset split to score")
@click.option("--no-properties", is_flag=True, help="skip lattice/elastic/vacancy")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--force", is_flag=True)
def evaluate(potential, dataset, out, split, no_properties, threads, force) -> None:
    """Score a Potential on a DFTDataset split: errors per group, parity plots,
    properties vs DFT (metrics.json)."""
    from scalebridge.potentials.evaluate import EvaluateSettings

    s = EvaluateSettings(split=split, properties=not no_properties)
    _show(s.make(potential, dataset, out, Resources(threads=threads), force=force))
