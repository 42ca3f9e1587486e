"""DDSettings.make -> DDRun artifact (contract files), CLI, and Taylor hardening."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scalebridge.dd_coupling import DDSettings
from scalebridge.errors import SettingsError

from .conftest import B_A, MU_GPA, NU, make_drag_law, make_properties

COLUMNS = ["time_s", "strain", "stress_mpa", "plastic_strain", "density_m2", "n_dislocations"]
SMALL = {"cell_lx_um": 0.5, "final_strain": 1.0e-3, "strain_rate_s": 1.0e5,
         "nucleation_time_ns": 2.0,
         "source_density_m2": 1.5e14, "obstacle_density_m2": 3e14, "output_points": 40,
         "realisations": 2}


def read_table(path):
    with open(path) as f:
        rows = list(csv.reader(f))
    return rows[0], np.array(rows[1:], dtype=float)


def test_ddrun_artifact_follows_contract(tmp_path):
    props = make_properties(tmp_path / "props")
    mob = make_drag_law(tmp_path / "mob")
    art = DDSettings(**SMALL).make(mob, props, tmp_path / "dd")
    assert art.kind == "DDRun"
    header, mean = read_table(art.path / "stress_strain.csv")
    assert header == COLUMNS
    tabs = []
    for i in range(2):
        h, tab = read_table(art.path / "realisations" / str(i) / "stress_strain.csv")
        assert h == COLUMNS and tab.shape == mean.shape
        tabs.append(tab)
    assert np.allclose(mean, np.mean(tabs, axis=0), rtol=1e-8, atol=1e-12)
    assert mean[-1, 1] == pytest.approx(1e-3)
    # strain control: stress = μ (γ - γ_p) on the mean curve
    assert np.allclose(mean[:, 2], MU_GPA * 1e3 * (mean[:, 1] - mean[:, 3]), rtol=1e-6,
                       atol=1e-6)
    assert mean[-1, 3] > 0                     # sources fired and dislocations glided
    run = json.loads((art.path / "run.json").read_text())
    assert run["shear_modulus_gpa"] == pytest.approx(MU_GPA)
    assert run["poisson_ratio"] == NU and run["burgers_a"] == pytest.approx(B_A)
    assert run["loading"]["strain_rate_s"] == 1.0e5 and run["temperature_k"] == 300.0
    for r in run["realisations"]:
        assert r["plastic_strain"] == pytest.approx(r["plastic_strain_from_slip"], rel=1e-9)
        assert r["nucleated"] > 0
        assert r["plastic_strain_inserted"] != 0      # the sources' dipoles, net
    for name in ("stress_strain", "density_strain", "avalanches", "snapshot"):
        assert (art.path / f"{name}.png").is_file()
    assert (art.path / "avalanche_ccdf.csv").is_file()
    assert (art.path / "density_strain.csv").is_file() and (art.path / "snapshot.csv").is_file()
    snaps = (art.path / "realisations" / "0" / "snapshots.csv").read_text().splitlines()
    assert snaps[0] == "frame,time_s,strain,x_m,y_m,sign,system"
    s = art.summary
    for key in ("flow_stress_mpa", "density_end_m2", "taylor_alpha", "n_avalanches"):
        assert key in s
    # the summary's inserted share is the realisations' (one condition: all reference)
    shares = [r["plastic_strain_inserted"] / r["plastic_strain"] for r in run["realisations"]]
    ins = s["plastic_strain_inserted"]
    assert ins["share"] == pytest.approx(np.mean(shares), rel=1e-12)
    assert ins["share_min"] == pytest.approx(min(shares)) and "clock" in ins["timed_by"]
    # a second make with the same inputs is skipped
    assert DDSettings(**SMALL).make(mob, props, tmp_path / "dd").fingerprint == art.fingerprint


def test_material_comes_from_properties(tmp_path):
    """A softer material (smaller μ) gives a lower elastic slope: μ is not typed by hand."""
    mob = make_drag_law(tmp_path / "mob")
    cfg = {**SMALL, "realisations": 1, "final_strain": 2e-4, "source_density_m2": 0.0}
    a = DDSettings(**cfg).make(mob, make_properties(tmp_path / "p1", mu_gpa=50.0),
                               tmp_path / "d1")
    _, tab = read_table(a.path / "stress_strain.csv")
    assert tab[-1, 2] == pytest.approx(50e3 * 2e-4, rel=1e-6)   # no dislocations: elastic


def test_dd_cli_run_and_settings_errors(tmp_path):
    from scalebridge.workflows.cli import cli

    props = make_properties(tmp_path / "props")
    mob = make_drag_law(tmp_path / "mob")
    cfg = tmp_path / "dd.toml"
    cfg.write_text("\n".join(f"{k} = {v!r}" for k, v in {**SMALL, "realisations": 1}.items()))
    res = CliRunner().invoke(cli, ["dd", "run", str(mob.path), str(props.path), "--config",
                                   str(cfg), "--out", str(tmp_path / "dd")])
    assert res.exit_code == 0, res.output
    assert "flow stress" in res.output
    cfg.write_text("cell_lx_um = 0.5\nrealisatons = 2\n")
    res = CliRunner().invoke(cli, ["dd", "run", str(mob.path), str(props.path), "--config",
                                   str(cfg), "--out", str(tmp_path / "dd2")])
    assert res.exit_code == 1 and "did you mean 'realisations'" in res.output
    with pytest.raises(SettingsError, match="not commensurate"):
        DDSettings(cell_ly_um=0.77).geometry(
            __import__("scalebridge.dd_coupling.inputs", fromlist=["Material"]).Material(
                50e9, 0.3, 2.7e-10), 0)
    res = CliRunner().invoke(cli, ["dd", "schema"])
    assert res.exit_code == 0 and "junction_strength_mpa" in res.output
    assert math.isfinite(float(SMALL["cell_lx_um"]))


@pytest.mark.slow
def test_taylor_hardening_flow_stress_scales_with_sqrt_density(capsys):
    """Single slip, random ± dislocations in a fixed cell at three densities: the stress
    at which plastic strain reaches 2 b √ρ scales as √ρ; α = τ / (μ b √ρ) is reported.
    The ramp rate, glide limit and capture distance are scaled with the density so that
    the only length is 1/√ρ, except the cell, which is fixed (N varies 16 -> 144)."""
    import torch
    from scalebridge.dd_coupling.engine import init, step
    from scalebridge.dd_coupling.mobility import LinearDragMobility

    from .conftest import params, simple_geometry

    b, mu, drag = B_A * 1e-10, MU_GPA * 1e9, 5e-5
    law = LinearDragMobility(burgers_m=b, b0_pa_s=drag)
    lx = ly = 0.6e-6
    n_planes = 60
    geom = simple_geometry(lx, ly, [(0.0, (i + 0.5) * ly / n_planes) for i in range(n_planes)])
    rho_all, tau_all = [], []
    for n in (16, 48, 144):
        rho = n / (lx * ly)
        d = 1 / math.sqrt(rho)
        t_rho = drag / (mu * b * b * rho)                 # drag time over one spacing
        p = params(law, loading="stress", rate=0.01 * mu * b * math.sqrt(rho) / t_rho,
                   max_glide_m=0.02 * d, capture_m=0.04 * d, junction_m=0.0,
                   dt_quantile=0.9, image_rows=1)
        for seed in range(2):
            g = torch.Generator().manual_seed(seed)
            plane = torch.randint(0, n_planes, (n,), generator=g)
            s = torch.rand(n, generator=g, dtype=torch.float64) * lx
            sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
            st = init(geom, plane, s, sign, params=p)
            while abs(st.plastic_strain) < 2 * b * math.sqrt(rho):
                st = step(geom, p, st)
                assert st.n_steps < 20000
            rho_all.append(rho)
            tau_all.append(st.stress_pa)
    rho_all, tau_all = np.array(rho_all), np.array(tau_all)
    slope = np.polyfit(np.log(rho_all), np.log(tau_all), 1)[0]
    alpha = float(np.mean(tau_all / (mu * b * np.sqrt(rho_all))))
    with capsys.disabled():
        print(f"\nTaylor: flow stress ∝ ρ^{slope:.3f}, α = {alpha:.3f} "
              f"(τ = α μ b √ρ, ρ = initial density)")
    assert 0.35 < slope < 0.65
    assert 0.05 < alpha < 1.5


def test_stress_control_run(tmp_path):
    """Stress control: the applied stress follows offset + rate·t and the strain column is
    elastic + plastic."""
    props = make_properties(tmp_path / "props")
    mob = make_drag_law(tmp_path / "mob")
    cfg = {**SMALL, "realisations": 1, "loading": "stress", "initial_stress_mpa": 20.0,
           "stress_rate_mpa_ns": 5.0, "final_time_ns": 12.0}
    art = DDSettings(**cfg).make(mob, props, tmp_path / "dd")
    _, tab = read_table(art.path / "stress_strain.csv")
    assert np.allclose(tab[:, 2], 20.0 + 5.0 * tab[:, 0] * 1e9, rtol=1e-6)
    assert np.allclose(tab[:, 1], tab[:, 3] + tab[:, 2] / (MU_GPA * 1e3), rtol=1e-6,
                       atol=1e-12)
    assert tab[-1, 3] > 0
    run = json.loads((art.path / "run.json").read_text())
    assert run["loading"]["mode"] == "stress" and run["loading"]["strain_rate_s"] is None
