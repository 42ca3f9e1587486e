"""``scalebridge md``: properties, dislocation mobility and deformation with LAMMPS."""

from __future__ import annotations

import json
from typing import Any

import click
from scalebridge.potentials.cli import TypeMapCommand, parse_type_map
from scalebridge.settings import Resources, load_toml, schema_doc, validate


def _resources(ranks: int, threads: int) -> Resources:
    return Resources(mpi_ranks=ranks, threads=threads)


def _maker(cls, settings: str | None, *sections: str):
    """Settings from a TOML file: its ``[md.<section>]`` table (the first of ``sections``
    present; the chain TOML names them ``properties``, ``mobility``, ``deformation``),
    else its top level."""
    if settings is None:
        return cls()
    data = load_toml(settings)
    if "md" in data:
        md_tables = data["md"]
        data = next((md_tables[s] for s in sections if s in md_tables), {})
    return validate(cls, data, source=settings)


_common = [
    click.option("--potential", "-p", required=True, multiple=True,
                 type=click.Path(exists=True),
                 help="Potential artifact; a frozen DeePMD model (.pth/.pb; repeat -p for "
                 "an ensemble with model deviation); a directory with SNAP "
                 ".snapcoeff/.snapparam; an EAM file (.eam, .eam.alloy, .eam.fs)"),
    click.option("--type-map", "type_map", default=None,
                 help="species of the model's types, e.g. Mo, or Mo Nb W, or Mo,Nb,W "
                 "(default: what the model or file names)"),
    click.option("--dataset", "dataset", type=click.Path(exists=True), default=None,
                 help="DFTDataset artifact: element, lattice, a0 guess and DFT reference "
                 "values from its data (as the chain does)"),
    click.option("--out", "-o", required=True, type=click.Path(),
                 help="artifact directory to write"),
    click.option("-s", "--settings", "--config", "settings", type=click.Path(exists=True),
                 default=None, help="settings TOML (also --config): the maker's settings "
                 "(top level or [md.<command>])"),
    click.option("--ranks", default=1, show_default=True, help="MPI ranks for lmp"),
    click.option("--threads", default=1, show_default=True, help="OpenMP threads per rank"),
    click.option("--compressed", is_flag=True, help="use the compressed DeePMD models"),
    click.option("--force", is_flag=True, help="rebuild even if up to date"),
]


def common(f):
    for opt in reversed(_common):
        f = opt(f)
    return f


def _pot(paths: tuple[str, ...], compressed: bool, type_map: str | None):
    from scalebridge.md.lammps import as_potential

    return as_potential(list(paths), compressed=compressed, type_map=parse_type_map(type_map))


def _crystal(dataset: str | None) -> dict | None:
    if dataset is None:
        return None
    from scalebridge.potentials.dataset import load_dataset

    return load_dataset(dataset).crystal


def _with_crystal(maker, pot, dataset: str | None):
    """``maker`` with the crystal fields it left unset filled in (md.properties
    :func:`resolve_crystal`: the data set's, else the potential's species)."""
    from scalebridge.md.properties import resolve_crystal

    return maker.model_copy(update=resolve_crystal(maker, pot, _crystal(dataset),
                                                   with_reference=True))


def _pot_and_maker(cls, sections: tuple[str, ...], potential: tuple[str, ...],
                   type_map: str | None, dataset: str | None, settings: str | None,
                   compressed: bool):
    """The potential of ``-p`` and the ``cls`` maker of ``--settings`` (its
    ``[md.<section>]`` table, :func:`_maker`) with the crystal filled in
    (:func:`_with_crystal`). The settings are read first: a bad settings file is
    reported before the potential is loaded."""
    maker = _maker(cls, settings, *sections)
    pot = _pot(potential, compressed, type_map)
    return pot, _with_crystal(maker, pot, dataset)


#: ``--properties`` of the commands that start from a relaxed a0.
_properties_option = click.option(
    "--properties", "props", type=click.Path(exists=True), default=None,
    help="Properties artifact (a0); else a0 is relaxed first")


def _make_from_properties(cls, sections: tuple[str, ...], *, potential: tuple[str, ...],
                          type_map: str | None, dataset: str | None, out: str,
                          settings: str | None, ranks: int, threads: int, compressed: bool,
                          force: bool, props: str | None) -> None:
    """Build the ``cls`` maker (settings from its ``sections``) and make its artifact in
    ``out`` from the Properties artifact ``props``; echo the summary."""
    pot, maker = _pot_and_maker(cls, sections, potential, type_map, dataset, settings,
                                compressed)
    art = maker.make(pot, out, properties=props,
                     resources=_resources(ranks, threads), force=force)
    click.echo(json.dumps(art.summary, indent=1))


@click.group("md")
def md() -> None:
    """LAMMPS with learned potentials: properties, dislocation mobility, deformation."""


@md.command("properties", cls=TypeMapCommand)
@common
@click.option("--dry-run", is_flag=True, help="write the LAMMPS input only, into "
              "OUT.dry_run/ (OUT stays free for the real run)")
def properties_cmd(potential, type_map, dataset, out, settings, ranks, threads, compressed,
                   force, dry_run):
    """a0 (min + NPT), C11/C12/C44, EOS, vacancy, μ/ν/b, NVE drift → Properties."""
    from scalebridge.md.lammps import run_lammps
    from scalebridge.md.properties import PropertiesMaker

    pot, maker = _pot_and_maker(PropertiesMaker, ("properties",), potential, type_map,
                                dataset, settings, compressed)
    if dry_run:
        from scalebridge.artifacts import fresh_dry_run_dir

        res = run_lammps(fresh_dry_run_dir(out), maker.script(), pot, maker.structure(),
                         dry_run=True, triclinic=True)
        click.echo(f"wrote {res.workdir / 'in.lmp'}")
        return
    cells = None
    if dataset is not None and maker.stacking_faults:
        from scalebridge.md.stacking import dataset_gsf_cells

        cells = dataset_gsf_cells(dataset, maker.lattice)
    art = maker.make(pot, out, _resources(ranks, threads), force=force, gsf_cells=cells)
    click.echo(json.dumps(art.summary, indent=1))


@md.command("dislocation", cls=TypeMapCommand)
@common
@_properties_option
def dislocation_cmd(**opts: Any) -> None:
    """Velocity of edge/screw dislocations (BCC 1/2<111>, FCC 1/2<110> split into
    Shockley partials) over a (τ, T) grid → DefectStats."""
    from scalebridge.md.mobility import MobilityMaker

    _make_from_properties(MobilityMaker, ("dislocation", "mobility"), **opts)


@md.command("deform", cls=TypeMapCommand)
@common
@_properties_option
def deform_cmd(**opts: Any) -> None:
    """Deform a crystal with voids: density by Burgers vector and stress vs strain."""
    from scalebridge.md.deform import DeformMaker

    _make_from_properties(DeformMaker, ("deform", "deformation"), **opts)


@md.command("schema")
def schema_cmd() -> None:
    """Print every md setting with its default and description."""
    from scalebridge.md.deform import DeformMaker
    from scalebridge.md.mobility import MobilityMaker
    from scalebridge.md.properties import PropertiesMaker

    for name, cls in (("properties", PropertiesMaker), ("dislocation", MobilityMaker),
                      ("deform", DeformMaker)):
        click.echo(f"[md.{name}]")
        for line in schema_doc(cls):
            click.echo(line)
        click.echo("")
