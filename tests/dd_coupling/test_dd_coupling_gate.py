"""Checks that gate the DD: a mobility law failing check_mobility is refused unless the
user overrides (recorded in the DDRun summary and the report); damaged neural weights are
a one-line error (restricted loading, never the advice to use ``weights_only=False``)."""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner
from scalebridge.dd_coupling import DDSettings
from scalebridge.dd_coupling.mobility import (
    MOBILITY_PT,
    MobilityCheckError,
    ValidRange,
    load_mobility,
    save_mobility,
)
from scalebridge.dd_coupling.neural import NeuralMobility
from scalebridge.errors import ArtifactError
from scalebridge.workflows.report import override_warnings

from .conftest import make_drag_law, make_properties

#: elastic (no sources): seconds, and no dislocation driven backwards by a bad law
ELASTIC = {"cell_lx_um": 0.5, "final_strain": 2e-4, "strain_rate_s": 1e5,
           "source_density_m2": 0.0, "obstacle_density_m2": 0.0, "output_points": 20,
           "realisations": 1}


def test_failing_mobility_law_is_refused_then_overridden(tmp_path):
    props = make_properties(tmp_path / "props")
    bad = make_drag_law(tmp_path / "bad", b0=-5e-5)   # v against τ: negative dissipation
    with pytest.raises(MobilityCheckError) as e:
        DDSettings(**ELASTIC).make(bad, props, tmp_path / "dd")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"mobility law {bad.path} failed check_mobility('LinearDragMobility')")
    assert "allow_failed_checks = true in [dd.run]" in msg
    assert not (tmp_path / "dd" / "manifest.json").exists()

    art = DDSettings(**ELASTIC, allow_failed_checks=True).make(bad, props, tmp_path / "dd")
    mc = art.summary["mobility_check"]
    assert mc["passed"] is False and mc["overridden"] is True
    assert mc["failed"].startswith("check_mobility('LinearDragMobility')")
    warn = override_warnings(art.summary)
    assert len(warn) == 1 and "mobility law FAILED check_mobility" in warn[0]

    good = DDSettings(**ELASTIC).make(make_drag_law(tmp_path / "good"), props,
                                      tmp_path / "dd_good")
    assert good.summary["mobility_check"] == {"passed": True, "failed": None,
                                              "overridden": False}


def test_cli_refuses_a_failing_law_in_one_line(tmp_path):
    from scalebridge.workflows.cli import cli

    props = make_properties(tmp_path / "props")
    bad = make_drag_law(tmp_path / "bad", b0=-5e-5)
    cfg = tmp_path / "dd.toml"
    cfg.write_text("\n".join(f"{k} = {v!r}" for k, v in ELASTIC.items()))
    res = CliRunner().invoke(cli, ["dd", "run", str(bad.path), str(props.path), "--config",
                                   str(cfg), "--out", str(tmp_path / "dd")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if "check_mobility" in ln]
    assert len(lines) == 1 and "the DD refuses it" in lines[0]


@pytest.mark.parametrize("damage", ["random", "nan"])
def test_damaged_neural_weights_are_a_one_line_error(tmp_path, damage):
    vr = ValidRange(tau_mpa=(0, 300.0), temperature_k=(100.0, 600.0), characters=("edge",))
    law = NeuralMobility(300e6, 1000.0, 350.0, 250.0, vr, n_members=2)
    save_mobility(law, tmp_path)
    pt = tmp_path / MOBILITY_PT
    if damage == "random":
        pt.write_bytes(os.urandom(2048))
    else:
        state = torch.load(pt, weights_only=True)
        key = next(iter(state))
        state[key].view(-1)[0] = float("nan")
        torch.save(state, pt)
    with pytest.raises(ArtifactError) as e:
        load_mobility(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and "weights_only" not in msg and msg.startswith(str(pt))
    assert ("is not a readable neural mobility weights file (damaged or not a model)"
            if damage == "random" else "has non-finite values") in msg
