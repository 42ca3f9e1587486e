"""The mobility law's stress range per character: ``tau_max_mpa`` is the top over every
row (a screw point at 2.8 GPa in the Mo example), while the DD glides one character;
``tau_max_mpa_by_character`` holds each character's own top, ``dd fit-mobility`` prints
them all and ``dd run`` the glided character's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from scalebridge.artifacts import read_artifact
from scalebridge.dd_coupling.cli import glide_text, tau_tops_text

from .conftest import make_defect_stats, make_properties, sample_velocity_table

#: elastic (no sources): seconds
ELASTIC = {"cell_lx_um": 0.5, "final_strain": 2e-4, "strain_rate_s": 1e5,
           "source_density_m2": 0.0, "obstacle_density_m2": 0.0, "output_points": 20,
           "realisations": 1}


def _edge_and_screw_rows() -> list[dict]:
    """Edges driven to 300 MPa, screws (30x the drag) to 900 MPa, at 300 K."""
    rng = np.random.default_rng(3)
    edge = sample_velocity_table(rng, 5e-5, 0.0, temps=(300.0,), c=1e9,
                                 tau_mpa=np.array([50.0, 100.0, 200.0, 300.0]))
    screw = sample_velocity_table(rng, 1.5e-3, 0.0, temps=(300.0,), c=1e9,
                                  tau_mpa=np.array([300.0, 600.0, 900.0]))
    return edge + [{**r, "character": "screw"} for r in screw]


def test_each_characters_top_stress_is_kept_and_the_glided_ones_printed(tmp_path):
    from scalebridge.workflows.cli import cli

    ds = make_defect_stats(tmp_path / "defects", _edge_and_screw_rows())
    props = make_properties(tmp_path / "props")
    res = CliRunner().invoke(cli, ["dd", "fit-mobility", str(ds.path), "--properties",
                                   str(props.path), "--law", "drag", "--out",
                                   str(tmp_path / "mob")])
    assert res.exit_code == 0, res.output
    s = read_artifact(tmp_path / "mob", "MobilityLaw").summary
    assert s["tau_max_mpa"] == 900.0                         # every row's: the screws'
    assert s["tau_max_mpa_by_character"] == {"edge": 300.0, "screw": 900.0}
    assert "(|tau| <= 300 MPa edge, 900 MPa screw)" in res.output
    cfg = tmp_path / "dd.toml"
    cfg.write_text("\n".join(f"{k} = {v!r}" for k, v in
                             {**ELASTIC, "glide_character": "edge"}.items()))
    res = CliRunner().invoke(cli, ["dd", "run", str(tmp_path / "mob"), str(props.path),
                                   "--config", str(cfg), "--out", str(tmp_path / "dd")])
    assert res.exit_code == 0, res.output
    assert ("glide: every dislocation with the edge law (set: glide_character = edge); "
            "its MD data reach |tau| <= 300 MPa") in res.output
    assert "900 MPa" not in res.output


def test_a_law_written_before_the_per_character_tops_prints_its_one_top():
    """mo_bench47's MobilityLaw summary (tau_max_mpa alone) and its DD's glide record."""
    doc = json.loads((Path(__file__).parents[1] / "data" / "mo_bench47_verdicts"
                      / "mo_bench47.json").read_text())
    s = {st["kind"]: st["summary"] for st in doc["stages"]}
    assert tau_tops_text(s["MobilityLaw"]) == "1500 MPa"
    assert glide_text(s["DDRun"], s["MobilityLaw"]) == (
        "glide: every dislocation with the edge law (auto: BCC, but the law covers no "
        "screws (the MD measured edges only))")
    assert glide_text({"flow_stress_mpa": 50.0}, None) is None
