"""``scalebridge fem run --surrogate``: where the FEM's limit load is n/a (a learned,
hardening or rate-dependent material), the command prints after the note an
informational cross-check against the perfectly plastic limit with the flow stress of
the DD the surrogate was fitted to (σ_y = √3 τ_flow)."""

from __future__ import annotations

import math

from click.testing import CliRunner
from scalebridge.artifacts import read_artifact
from scalebridge.surrogates.train import SurrogateSettings

from ..workflows.synthetic_chain import RATE, synthetic_ddrun


def test_fem_run_prints_the_limit_load_cross_check_with_the_dds_flow_stress(tmp_path):
    from scalebridge.workflows.cli import cli

    dd = synthetic_ddrun(tmp_path / "dd", summary={
        "reference_condition": {"strain_rate_s": RATE, "temperature_k": 300.0}})
    sur = SurrogateSettings(max_iterations=100, val_fraction=0.34,
                            rollout_iterations=0).make(dd, tmp_path / "surrogate")
    cfg = tmp_path / "fem.toml"
    # hoop strain 0.15 % at the bore (R_i = 1 mm) over 3e-7 s: 5e3 /s, the von Mises rate
    # of a DD shear at 1e4 /s (γ̇ = 2 ε̇_θθ), the DD's rate
    cfg.write_text('write_fields = false\n[problem]\nkind = "cylinder"\nn_radial = 2\n'
                   'n_angular = 3\ninner_displacement = 0.0015\n[solver]\nsteps = 4\n'
                   'degree = 1\n[loading]\nduration_s = 3e-7\n')
    res = CliRunner().invoke(cli, ["fem", "run", "--config", str(cfg), "--surrogate",
                                   str(sur.path), "--out", str(tmp_path / "fem")])
    assert res.exit_code == 0, res.output
    s = read_artifact(tmp_path / "fem", "FieldResults").summary
    assert s["limit_load_rel_error"] is None and s["limit_load_note"] in res.output
    p_lim = s["reference"]["q_lim_over_sigma0"] * math.sqrt(3) * dd.summary["flow_stress_mpa"]
    line = next(ln for ln in res.output.splitlines() if "limit-load cross-check" in ln)
    assert line.startswith("limit-load cross-check (informational, not graded): ")
    assert (f"the DD's flow stress at 1e+04 /s: {p_lim:.4g} MPa against the FEM's final "
            f"load {s['final_load_mpa']:.4g} MPa") in line
    assert "applied hoop strain rate at the bore" in line
    # a J2 material (no surrogate, no DD): the note alone
    res = CliRunner().invoke(cli, ["fem", "run", "--config", str(cfg), "--out",
                                   str(tmp_path / "j2")])
    assert res.exit_code == 0, res.output
    assert "cross-check" not in res.output
