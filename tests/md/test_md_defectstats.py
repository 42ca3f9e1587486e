"""DefectStats: velocity table + drag fit (collected rows), deformation with DXA, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scalebridge.artifacts import read_artifact
from scalebridge.errors import ArtifactError
from scalebridge.md.deform import DeformMaker
from scalebridge.md.lammps import SNAPPotential
from scalebridge.md.mobility import VELOCITY_COLUMNS, MobilityMaker
from scalebridge.md.tables import read_rows

#: The published mlearn SNAP / qSNAP Mo models, shipped in tests/data (BSD-3-Clause).
PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"


@pytest.fixture(scope="module")
def snap() -> SNAPPotential:
    return SNAPPotential.from_dir(PEERS / "snap")


def _rows(B: float, b_a: float, noise: float = 0.0):
    rng = np.random.default_rng(0)
    rows = []
    for ch, scale in (("edge", 1.0), ("screw", 0.25)):
        for tau in (100.0, 200.0, 400.0):
            v = b_a * 1e-10 * tau * 1e6 / (B / scale) * (1 + noise * rng.standard_normal())
            rows.append({"character": ch, "temperature_k": 300.0, "tau_mpa": tau,
                         "velocity_m_s": v, "velocity_err_m_s": 5.0, "n_atoms": 100,
                         "duration_ps": 6.0})
    return rows


def test_collected_rows_make_defectstats(tmp_path, snap):
    rows = _rows(3e-5, 3.1693 * 3 ** 0.5 / 2)
    art = MobilityMaker().make(snap, tmp_path / "ds", a0_a=3.1693, rows=rows)
    assert art.kind == "DefectStats"
    table = read_rows(art.path / "velocity.csv")
    assert list(table[0]) == list(VELOCITY_COLUMNS) and len(table) == 6
    assert {r["character"] for r in table} == {"edge", "screw"}
    assert (art.path / "velocity_stress.png").stat().st_size > 1000
    assert (art.path / "velocity_stress.csv").is_file()
    drag = read_rows(art.path / "drag.csv")
    assert drag[0]["drag_pa_s"] == pytest.approx(3e-5, rel=1e-6)


@pytest.mark.slow
def test_deformation_elastic_slope_and_no_spurious_dislocations(tmp_path, snap):
    maker = DeformMaker(size=4, voids=0, loops=0, temperature_k=100, mode="tension",
                        strain_rate_per_ps=0.01, max_strain=0.02, equil_steps=200,
                        dump_every=250, timestep_ps=0.002)
    art = maker.make(snap, tmp_path / "deform", a0_a=3.1693)
    dens = read_rows(art.path / "density.csv")
    assert list(dens[0])[:4] == ["strain", "stress_mpa", "density_m2", "line_length_a_total"]
    assert "line_length_a_1/2<111>" in dens[0] and len(dens) >= 4
    assert all(r["density_m2"] == 0 for r in dens)     # a perfect crystal at 2 %: none
    ss = read_rows(art.path / "stress_strain.csv")
    e = np.array([r["strain"] for r in ss])
    s = np.array([r["stress_mpa"] for r in ss])
    sel = (e > 0.002) & (e < 0.015)
    young = np.polyfit(e[sel], s[sel], 1)[0] / 1e3       # GPa
    c11, c12 = 456.6, 158.4                               # SNAP (test_md_properties)
    e100 = (c11 - c12) * (c11 + 2 * c12) / (c11 + c12)
    assert young == pytest.approx(e100, rel=0.2)
    assert (art.path / "dumps" / "deform.dump").is_file()
    for f in ("density_strain.png", "stress_strain.png", "density_strain.csv"):
        assert (art.path / f).is_file()


def test_cli_properties_dry_run_and_errors(tmp_path):
    from scalebridge.workflows.cli import cli

    (tmp_path / "p.dry_run").mkdir()
    (tmp_path / "p.dry_run" / "old.lmp").write_text("an earlier dry run's")
    r = CliRunner().invoke(cli, ["md", "properties", "-p", str(PEERS / "qsnap"), "-o",
                                 str(tmp_path / "p"), "--dry-run"])
    assert r.exit_code == 0, r.output
    # beside -o, not in it (the real run must find it free), emptied first
    assert r.output == f"wrote {tmp_path / 'p.dry_run' / 'in.lmp'}\n"
    assert not (tmp_path / "p").exists() and not (tmp_path / "p.dry_run" / "old.lmp").exists()
    text = (tmp_path / "p.dry_run" / "in.lmp").read_text()
    assert "pair_style snap" in text and "box/relax iso" in text
    bad = tmp_path / "bad.toml"
    bad.write_text("supercel = 3\n")
    r = CliRunner().invoke(cli, ["md", "properties", "-p", str(PEERS / "qsnap"), "-o",
                                 str(tmp_path / "p"), "-s", str(bad)])
    assert r.exit_code == 1 and "did you mean 'supercell'" in r.output
    r = CliRunner().invoke(cli, ["md", "dislocation", "-p", str(tmp_path), "-o",
                                 str(tmp_path / "d")])
    assert r.exit_code == 1 and "is none of: a Potential artifact" in r.output
    with pytest.raises(ArtifactError):
        read_artifact(tmp_path / "d")


def test_cli_dislocation_and_deform_read_their_own_settings_table(tmp_path):
    """``md dislocation`` reads ``[md.mobility]`` and ``md deform`` ``[md.deformation]``
    of a chain TOML (a typo in each is named, before any LAMMPS run); both take
    ``--properties``."""
    from scalebridge.workflows.cli import cli

    toml = tmp_path / "chain.toml"
    toml.write_text("[md.mobility]\ntaus_mpaa = [100.0]\n[md.deformation]\nsizee = 4\n")
    for cmd, hint in (("dislocation", "did you mean 'taus_mpa'"),
                      ("deform", "did you mean 'size'")):
        r = CliRunner().invoke(cli, ["md", cmd, "-p", str(PEERS / "qsnap"), "-o",
                                     str(tmp_path / cmd), "-s", str(toml)])
        assert r.exit_code == 1 and hint in r.output, (cmd, r.output)
        r = CliRunner().invoke(cli, ["md", cmd, "--help"])
        assert "Properties artifact (a0); else a0 is relaxed first" in " ".join(
            r.output.split())  # as wrapped to the width of the options column


def test_prismatic_loop_source_is_found_by_dxa(tmp_path, snap):
    from scalebridge.md.deform import dislocation_content
    from scalebridge.md.lammps import run_lammps

    maker = DeformMaker(size=8, voids=0, loops=1, loop_radius_a=8.0)
    atoms = maker.structure(3.1693)
    assert len(atoms) < 2 * 8 ** 3                          # a disk of atoms removed
    body = ("min_style fire\nminimize 0 1e-3 3000 30000\n"
            "write_dump all custom loop.dump id type element x y z modify element Mo sort id")
    run_lammps(tmp_path, body, snap, atoms, name="relax loop")
    (frame,) = dislocation_content(tmp_path / "loop.dump")
    assert frame["<100>"] == frame["other"] == 0.0
    assert frame["1/2<111>"] == pytest.approx(2 * np.pi * 8.0, rel=0.15)
