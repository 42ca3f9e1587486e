"""Glide velocities with honest uncertainty and the glide laws fitted to them
(scalebridge.md.glide_fit, md.mobility): block-averaged errors, replicas, flagged points,
the one drag fit md and dd share, the kink-pair fit, cell sizes in b."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scalebridge.md.glide_fit import (
    block_velocity,
    combine_replicas,
    fit_drag,
    fit_glide_laws,
    fit_kink_pair,
    kink_pair_velocity,
    naive_velocity,
    t95,
)
from scalebridge.md.lammps import SNAPPotential
from scalebridge.md.mobility import (
    REPLICA_COLUMNS,
    VELOCITY_COLUMNS,
    GlidePoint,
    MobilityMaker,
    aggregate_points,
    collect_velocity,
    replica_rows,
)
from scalebridge.md.tables import read_rows

#: The published mlearn SNAP / qSNAP Mo models, shipped in tests/data (BSD-3-Clause).
PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"
A0 = 3.1693          # SNAP Mo, relaxed (tests/md/test_md_properties.py measures it)
B_M = A0 * math.sqrt(3) / 2 * 1e-10


@pytest.fixture(scope="module")
def snap() -> SNAPPotential:
    return SNAPPotential.from_dir(PEERS / "snap")


def _trajectory(rng: np.random.Generator, v_m_s: float, n: int = 200, dt_ps: float = 0.1,
                rho: float = 0.6, sd_a: float = 1.0, walk: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """Core position: linear drift (v m/s = v/100 Å/ps) plus AR(1) noise of stationary
    standard deviation ``sd_a`` and lag-one correlation ``rho``; with ``walk`` the AR(1)
    process is the velocity noise (the position wanders like a random walk, as a core
    kicked by thermal fluctuations does) plus a small uncorrelated location noise."""
    e = rng.normal(0, sd_a * math.sqrt(1 - rho ** 2), n)
    eta = np.empty(n)
    eta[0] = rng.normal(0, sd_a)
    for i in range(1, n):
        eta[i] = rho * eta[i - 1] + e[i]
    if walk:
        eta = 0.2 * np.cumsum(eta) + rng.normal(0, 0.3 * sd_a, n)
    t = np.arange(n) * dt_ps
    return t, v_m_s / 100 * t + eta


@pytest.mark.parametrize("walk", [False, True])
def test_block_error_covers_the_true_slope_where_the_naive_error_does_not(walk):
    """AR(1) noise on a linear drift (or AR(1) velocity noise: a wandering core): the
    velocity's 95% interval from the block error covers the true velocity at least at
    the nominal rate (on the wide side: the whole-window slope is steadier than the block
    mean whose error it takes), but not without bound: the error stays within a few
    times the velocity's own scatter over the trials; the naive least-squares interval
    covers far less often."""
    rng = np.random.default_rng(7)
    v_true, trials = 300.0, 800
    hit_block = hit_naive = 0
    vs, errs = [], []
    for _ in range(trials):
        t, z = _trajectory(rng, v_true, walk=walk)
        b = block_velocity(t, z, 5)
        hit_block += abs(b.velocity_m_s - v_true) <= t95(b.dof) * b.err_m_s
        vs.append(b.velocity_m_s)
        errs.append(b.err_m_s)
        v, se = naive_velocity(t, z)
        hit_naive += abs(v - v_true) <= 1.96 * se
    assert hit_block / trials >= 0.94
    # stationary position noise: 4.3x (a block slope weighs a few frames' noise over a
    # short span)
    assert np.median(errs) < 6 * np.std(vs)
    assert hit_naive / trials < 0.8


def test_the_velocity_is_the_whole_window_slope_not_the_mean_of_block_slopes():
    """A core gliding by Peierls hops (b = 2.74 Å every 5.5 frames at a random phase, 0.3
    Å of position noise: the Mo edge at 100 MPa in 15 fitted frames): the velocity is the
    least-squares slope of all the frames, which scatters over phases and noise 7x less
    than the mean of 3-frame block slopes (those skip the hops between blocks)."""
    rng = np.random.default_rng(5)
    t = np.arange(15) * 0.1
    v, block_mean = [], []
    for _ in range(400):
        z = 2.74 * np.floor(5 * t / 2.74 + rng.uniform()) + rng.normal(0, 0.3, t.size)
        b = block_velocity(t, z, 5)
        assert b.velocity_m_s == naive_velocity(t, z)[0]
        v.append(b.velocity_m_s)
        block_mean.append(np.mean([naive_velocity(tb, zb)[0] for tb, zb in zip(
            np.array_split(t, 5), np.array_split(z, 5), strict=True)]))
    assert np.mean(v) == pytest.approx(500.0, rel=0.02)
    assert np.std(v) < 0.3 * np.std(block_mean)


def test_block_velocity_of_a_clean_line_and_few_frames():
    t = np.arange(30) * 0.1
    b = block_velocity(t, 2.5 * t + 3.0, 5)
    assert b.velocity_m_s == pytest.approx(250.0) and b.err_m_s < 1e-9 and b.dof == 4
    short = block_velocity(t[:5], 2.5 * t[:5], 5)          # under 2 blocks of 3 frames
    assert math.isnan(short.err_m_s) and short.dof == 0
    z = 2.5 * t
    z[[3, 17]] = np.nan                                     # lost frames are skipped
    assert block_velocity(t, z, 5).velocity_m_s == pytest.approx(250.0)


# ----------------------------------------------------------------- replicas
def test_fresh_replicas_fall_inside_the_reported_prediction_interval():
    """Points of 3 replicas whose runs also differ by their start (a between-replica
    spread of velocity): a fresh 4th replica falls inside the point's 95% prediction
    interval at about the nominal rate, and the mean's 95% interval covers the truth."""
    rng = np.random.default_rng(3)
    v_true, spread, trials = 500.0, 20.0, 600
    inside = covered = 0
    for _ in range(trials):
        runs = []
        for _ in range(4):
            t, z = _trajectory(rng, v_true + rng.normal(0, spread))
            runs.append(block_velocity(t, z, 5))
        c = combine_replicas([r.velocity_m_s for r in runs[:3]],
                             [r.err_m_s for r in runs[:3]], [r.dof for r in runs[:3]])
        inside += abs(runs[3].velocity_m_s - c["velocity_m_s"]) <= c["pi95_m_s"]
        covered += abs(c["velocity_m_s"] - v_true) <= c["ci95_m_s"]
    assert 0.91 <= inside / trials <= 0.995
    assert covered / trials >= 0.92


def test_combine_replicas_takes_the_larger_of_scatter_and_block_errors():
    c = combine_replicas([100.0, 110.0, 90.0], [1.0, 1.0, 1.0])
    assert c["error_source"] == "replicas" and c["dof"] == 2
    assert c["velocity_err_m_s"] == pytest.approx(10 / math.sqrt(3))
    assert c["ci95_m_s"] == pytest.approx(4.302652729 * 10 / math.sqrt(3), rel=1e-6)
    c = combine_replicas([100.0, 100.5, 99.5], [20.0, 20.0, 20.0], [4, 4, 4])
    assert c["error_source"] == "blocks" and c["dof"] == 12
    assert c["velocity_err_m_s"] == pytest.approx(20 / math.sqrt(3))


def test_replicas_fan_out_with_distinct_seeds_and_starts():
    """Each replica is its own grid task with its own seeds; the LAMMPS input of each
    displaces the mobile atoms with its own seed before relaxing."""
    from scalebridge.md.dislocations import build_glide_slab, glide_script, repeats_for

    mk = MobilityMaker(characters=["edge"], temperatures_k=[300.0], taus_mpa=[200.0, 400.0])
    grid = mk.grid()
    assert len(grid) == 2 * 3 and len({p.tag for p in grid}) == 6
    assert sorted({p.replica for p in grid}) == [0, 1, 2]
    # screws their own stresses and replica count (a screw run costs several edge runs)
    both = MobilityMaker(characters=["edge", "screw"], temperatures_k=[300.0],
                         taus_mpa=[200.0, 400.0], screw_taus_mpa=[2800.0], screw_replicas=2,
                         peierls_0k=False).grid()
    assert sorted(p.tag for p in both if p.character == "screw") == [
        "screw_T300_tau2800_r0", "screw_T300_tau2800_r1"]
    assert sum(p.character == "edge" for p in both) == 6
    seeds = [mk.replica_seed(r) for r in range(3)]
    _, geo = build_glide_slab(A0, "edge", "Mo", *repeats_for(A0, "edge", (8, 14, 30)),
                              rigid_layers=True)
    scripts = [glide_script(geo, 200.0, 300.0, n_top=10, n_bot=10, equil_steps=10,
                            run_steps=20, dump_every=5, seed=s, damp_ps=0.1,
                            timestep_ps=0.002, perturb_a=0.05) for s in seeds]
    used = set()
    for s, text in zip(seeds, scripts, strict=True):
        lines = text.splitlines()
        create = next(x for x in lines if x.startswith("velocity all create"))
        disp = next(x for x in lines if x.startswith("displace_atoms sb_free random"))
        csvr = next(x for x in lines if "temp/csvr" in x)
        assert create.split()[4] == str(s) and disp.split()[6] == str(s + 2)
        assert csvr.split()[-1] == str(s + 1)
        used |= {s, s + 1, s + 2}
        # thermostat on all components of the mobile atoms, flow profile removed
        assert "fix_modify sb_csvr temp sb_tp" in lines and "temp/profile" in text
        assert any(x.startswith('print "SB temp_z') for x in lines)
    assert len(used) == 9


@pytest.mark.slow
def test_replica_runs_start_from_different_relaxed_states(tmp_path, snap):
    mk = MobilityMaker(characters=["edge"], temperatures_k=[100.0], taus_mpa=[500.0],
                       edge_cell_b=(2.8, 5.0, 10.0), equil_steps=10, run_steps=60,
                       dump_every=10, blocks=2, fit_from=0.0)
    rows = [mk.run_point(snap, A0, GlidePoint(character="edge", temperature_k=100.0,
                                              tau_mpa=500.0, replica=r), tmp_path / f"r{r}")
            for r in (0, 1)]
    assert rows[0]["seed"] != rows[1]["seed"]
    inputs = [(tmp_path / f"r{r}" / "in.lmp").read_text() for r in (0, 1)]
    assert inputs[0] != inputs[1]
    a, b = ((tmp_path / f"r{r}" / "glide.dump").read_text() for r in (0, 1))
    assert a != b
    for r in rows:
        # sf_width_a: the stacking-fault width, FCC only; no model deviation of one SNAP
        assert set(REPLICA_COLUMNS) - {"reason", "sf_width_a", "max_devi_f_ev_a"} <= {
            k for k, v in r.items() if v is not None}


# ----------------------------------------------------------------- flagged points
def _rep(tau, v, err=10.0, status="ok", reason="", replica=0, ch="edge", T=300.0, tz=300.0):
    return {"character": ch, "temperature_k": T, "tau_mpa": tau, "replica": replica,
            "velocity_m_s": v, "velocity_err_m_s": err, "block_dof": 4, "status": status,
            "reason": reason, "temperature_z_k": tz, "n_atoms": 100, "duration_ps": 6.0}


def test_points_that_cannot_be_measured_say_why():
    reps = replica_rows([
        _rep(100, 200, replica=0), _rep(100, 210, replica=1), _rep(100, 190, replica=2),
        _rep(200, float("nan"), status="vanished", reason="gone at 3 ps", replica=0),
        _rep(200, float("nan"), status="dxa_lost", reason="no line", replica=1),
        _rep(200, 400, replica=2),
        _rep(300, 5, err=30, replica=0), _rep(300, -8, err=30, replica=1),
        _rep(300, 2, err=30, replica=2),
        _rep(400, -300, replica=0), _rep(400, -320, replica=1), _rep(400, -310, replica=2),
        _rep(500, float("nan"), replica=0)])                  # NaN and no status: rejected
    pts = {p["tau_mpa"]: p for p in aggregate_points(reps)}
    assert pts[100]["status"] == "ok" and pts[100]["velocity_m_s"] == pytest.approx(200)
    assert pts[200]["status"] == "too_few_replicas" and "vanished" in pts[200]["reason"]
    assert pts[300]["status"] == "unresolved" and "thermal noise" in pts[300]["reason"]
    assert pts[400]["status"] == "wrong_sign"
    assert pts[500]["status"] == "too_few_replicas" and "not_finite" in pts[500]["reason"]
    for tau in (200, 300, 400, 500):
        assert "velocity_m_s" not in pts[tau]


def test_defectstats_writes_flagged_points_without_velocity_and_dd_skips_them(tmp_path,
                                                                             snap):
    from scalebridge.dd_coupling.inputs import read_velocity_table

    reps = []
    for tau, v in ((100.0, 150.0), (200.0, 330.0), (400.0, 640.0)):
        reps += [_rep(tau, v + d, replica=i) for i, d in enumerate((-5.0, 0.0, 5.0))]
    reps += [_rep(800.0, float("nan"), status="vanished", reason="left", replica=i)
             for i in range(3)]
    # half velocities: 200 MPa accelerating (ratios 0.5, 0.6, 0.7 -> median 0.6), 400
    # MPa with one replica's second half NaN; 100 MPa rows from before the halves
    for r, (a, b) in zip(reps[3:9], ((100, 200), (120, 200), (140, 200), (600, 600),
                                     (500, 625), (300, float("nan"))), strict=True):
        r.update(velocity_first_half_m_s=a, velocity_second_half_m_s=b)
    art = MobilityMaker(characters=["edge"]).make(snap, tmp_path / "ds", a0_a=A0, rows=reps)
    table = read_rows(art.path / "velocity.csv")
    assert list(table[0]) == list(VELOCITY_COLUMNS) and len(table) == 4
    bad = next(r for r in table if r["tau_mpa"] == 800.0)
    assert bad["status"] == "too_few_replicas" and bad["velocity_m_s"] == ""
    assert "nan" not in (art.path / "velocity.csv").read_text().lower()
    ratio = {r["tau_mpa"]: r["acceleration_ratio"] for r in table}
    assert ratio[200.0] == pytest.approx(0.6) and ratio[400.0] == pytest.approx(0.9)
    assert ratio[100.0] == "" and ratio[800.0] == ""
    # the median ratio's standard error from the replicas' scatter: s/sqrt(n) times the
    # median's variance factor (1.35 for three, 1 for two); none without two ratios
    ratio_err = {r["tau_mpa"]: r["acceleration_ratio_err"] for r in table}
    assert ratio_err[200.0] == pytest.approx(math.sqrt(1.346 * 0.01 / 3), rel=0.01)
    assert ratio_err[400.0] == pytest.approx(0.1)
    assert ratio_err[100.0] == "" and ratio_err[800.0] == ""
    ratio_dof = {r["tau_mpa"]: r["acceleration_ratio_dof"] for r in table}
    assert ratio_dof[200.0] == 2 and ratio_dof[400.0] == 1 and ratio_dof[100.0] == ""
    # each point's error dof: the replicas' ±5 m/s scatter is below their 10 m/s block
    # errors, so the error is the blocks', on 3 x 4 dof (what an exactly determined drag
    # fit would take its quantile from)
    vdof = {r["tau_mpa"]: r["velocity_dof"] for r in table}
    assert vdof[100.0] == vdof[200.0] == vdof[400.0] == 12 and vdof[800.0] == ""
    assert {"edge_drag_b0_window_raw_pa_s", "edge_drag_b0_window_noise_pa_s",
            "edge_drag_b0_window_dof", "edge_drag_b0_dof"} <= set(art.summary)
    replicas = read_rows(art.path / "replicas.csv")
    assert len(replicas) == 12 and list(replicas[0])[-3:] == [
        "velocity_first_half_m_s", "velocity_second_half_m_s", "max_devi_f_ev_a"]
    assert [r["velocity_second_half_m_s"] for r in replicas if r["tau_mpa"] == 400.0] == [
        600.0, 625.0, ""]
    assert "nan" not in (art.path / "replicas.csv").read_text().lower()
    t = read_velocity_table(art)
    assert len(t) == 3 and np.all(np.isfinite(t.velocity_m_s))
    fit = json.loads((art.path / "glide_fit.json").read_text())
    assert fit["points"] == {"measured": 3, "flagged": 1}
    assert art.summary["replicas_min"] == 3
    # the threshold stands beside the drag in the summary, with its interval
    by_t = fit["drag"]["edge"]["by_temperature"][0]
    key = f"edge_{by_t['temperature_k']:g}K"
    assert art.summary["tau0_mpa"][key] == pytest.approx(by_t["tau0_mpa"])
    lo, hi = art.summary["tau0_ci95_mpa"][key]
    assert lo <= art.summary["tau0_mpa"][key] <= hi


def test_classify_glide_reasons():
    from scalebridge.md.dislocations import classify_glide

    t = np.arange(20) * 0.1
    z = 3.0 * t
    y = np.full(20, 10.0)
    blk = block_velocity(t, z, 4)

    def cls(z=z, y=y, T=300.0, tz=300.0):
        return classify_glide(t, z, y, 4, 10.0, A0, blk, T, tz)

    assert cls() == ("ok", "")
    gone = z.copy()
    gone[12:] = np.nan
    assert cls(z=gone)[0] == "vanished" and "1.10 ps" in cls(z=gone)[1]
    holes = z.copy()
    holes[5:19:2] = np.nan
    assert cls(z=holes)[0] == "dxa_lost"
    assert cls(y=y + np.where(t > 0.8, 3.0, 0.0))[0] == "left_glide_plane"
    status, reason = cls(tz=380.0)
    assert status == "temperature" and "380 K vs 300 K" in reason
    assert cls(tz=340.0)[0] == "ok"


def test_a_bcc_screw_hopping_between_peierls_valleys_glides_but_cross_slip_is_flagged():
    """A screw core that steps to the neighbouring {110} valley while it advances glides
    on average along its plane ({112} at 30° included): measured. One that leaves the
    plane faster than it advances (another {110}, 60° away) cross-slipped: flagged. An
    edge with the same off-plane step climbed: flagged."""
    from scalebridge.md.dislocations import classify_glide

    t = np.arange(20) * 0.1
    z = 30.0 * t                                  # 57 Å over the fitted frames
    blk = block_velocity(t, z, 4)
    hop = np.full(20, 10.0) + np.where(t > 0.8, 2.3, 0.0)     # one valley, once

    def cls(z=z, y=hop, character="screw"):
        return classify_glide(t, z, y, 4, 10.0, A0, blk, 300.0, 300.0,
                              character=character)

    assert cls() == ("ok", "")
    assert cls(y=10.0 + np.tan(np.radians(30.0)) * z) == ("ok", "")          # {112}
    status, reason = cls(y=10.0 + np.tan(np.radians(60.0)) * z)             # {110}
    assert status == "left_glide_plane" and "60°" in reason and "cross-slip" in reason
    assert cls(z=np.full(20, 1.0))[0] == "ok"        # stuck below τ_P, one hop: v ≈ 0
    two = np.full(20, 10.0) + np.where(t > 0.8, 4.6, 0.0)
    assert cls(z=np.full(20, 1.0), y=two)[0] == "left_glide_plane"   # two hops away
    assert cls(character="edge")[0] == "left_glide_plane"


# ----------------------------------------------------------------- edge drag law
def _edge_rows(rng, B, tau0, temps=(100.0, 300.0), taus=(100, 200, 300, 500, 700),
               c=3400.0, noise=0.03):
    out = []
    for T in temps:
        BT = B(T) if callable(B) else B
        for tau in taus:
            vl = B_M * (tau - tau0) * 1e6 / BT
            v = vl / math.sqrt(1 + (vl / c) ** 2)
            err = noise * v + 5.0
            out.append((tau * 1e6, T, v + rng.normal(0, err), err))
    return np.array(out).T


def test_drag_fit_recovers_b_and_tau0_with_intervals():
    rng = np.random.default_rng(11)
    tau, T, v, e = _edge_rows(rng, 5.7e-5, 50.0)
    f = fit_drag(tau, T, v, e, B_M, shear_wave_m_s=3400.0)
    assert f["saturation_source"] in ("shear_wave_speed", "fitted")
    # t of the fit's 5 dof, also where the point errors explain the scatter
    assert f["chi2_red"] <= 1 and f["quantile"] == pytest.approx(2.571, abs=1e-3)
    for r in f["by_temperature"]:
        lo, hi = r["drag_ci95_pa_s"]
        assert lo < 5.7e-5 < hi and hi - lo < 0.25 * 5.7e-5
        assert r["tau0_ci95_mpa"][0] < 50.0 < r["tau0_ci95_mpa"][1] and not r["tau0_fixed"]
    assert f["trend"]["supported"] is False and f["b1_pa_s_k"] == 0.0
    # B rising with T by a factor 2: the intervals separate, the trend is supported
    tau, T, v, e = _edge_rows(rng, lambda T: 4e-5 * (1 + (T - 100) / 200), 50.0)
    f = fit_drag(tau, T, v, e, B_M, shear_wave_m_s=3400.0)
    assert f["trend"]["supported"] and f["trend"]["direction"] == "rising"
    assert f["b1_pa_s_k"] == pytest.approx(2e-7, rel=0.25)


def test_drag_fit_with_an_intercept_is_not_fooled_by_a_threshold():
    """The issue's case: two points per temperature of data with a threshold. A line
    through the origin (B = bτ/v) made B rise with T; the fit with τ₀ gives the same B."""
    b = B_M
    tau = np.array([200e6, 400e6, 200e6, 400e6])
    T = np.array([100.0, 100.0, 300.0, 300.0])
    tau0 = np.array([40e6, 40e6, 69e6, 69e6])
    v = b * (tau - tau0) / 5.7e-5
    f = fit_drag(tau, T, v, np.full(4, 5.0), b)
    for r in f["by_temperature"]:
        assert r["drag_pa_s"] == pytest.approx(5.7e-5, rel=0.02), r
    assert [round(r["tau0_mpa"]) for r in f["by_temperature"]] == [40, 69]


def test_drag_fit_through_origin_data_and_saturation_choice():
    rng = np.random.default_rng(0)
    tau = np.array([100.0, 200.0, 400.0]) * 1e6
    v = B_M * tau / 2e-5
    f = fit_drag(tau, np.full(3, 300.0), v, np.full(3, 5.0), B_M)
    assert f["by_temperature"][0]["drag_pa_s"] == pytest.approx(2e-5, rel=1e-6)
    tau, T, v, e = _edge_rows(rng, 2e-5, 0.0, temps=(300.0,), taus=(250, 500, 1000), c=3000)
    f = fit_drag(tau, T, v, e, B_M)                 # saturated: c must be fitted
    assert f["saturation_source"] == "fitted"
    assert f["saturation_m_s"] == pytest.approx(3000, rel=0.1)
    r = f["by_temperature"][0]
    assert r["drag_ci95_pa_s"][0] < 2e-5 < (r["drag_ci95_pa_s"][1] or math.inf)


def test_md_and_dd_give_the_same_drag_for_the_same_rows(tmp_path, snap):
    """One implementation: md's DefectStats fit and dd_coupling's fit of its table agree,
    and dd takes md's fit as it is."""
    from scalebridge.dd_coupling.fit import FitMobilitySettings
    from scalebridge.dd_coupling.fit import fit_drag as dd_fit_drag
    from scalebridge.dd_coupling.inputs import read_velocity_table

    rng = np.random.default_rng(5)
    tau, _, v, e = _edge_rows(rng, 5e-5, 30.0, temps=(300.0,))
    reps = [_rep(ta * 1e-6, vv + d, err=ee, replica=i)
            for ta, vv, ee in zip(tau, v, e, strict=True) for i, d in enumerate((-3, 0, 3))]
    art = MobilityMaker(characters=["edge"]).make(snap, tmp_path / "ds", a0_a=A0, rows=reps)
    md = json.loads((art.path / "glide_fit.json").read_text())["drag"]["edge"]
    dd = dd_fit_drag(read_velocity_table(art), B_M)
    assert dd["by_temperature"][0]["drag_pa_s"] == pytest.approx(
        md["by_temperature"][0]["drag_pa_s"], rel=1e-6)
    props = tmp_path / "props"
    _properties(props)
    law = FitMobilitySettings(law="drag").make(art, tmp_path / "mob", properties=props)
    fit = json.loads((law.path / "fit.json").read_text())
    assert fit["fitted_by"] == "md"
    assert fit["drag"]["edge"]["b0_pa_s"] == pytest.approx(md["b0_pa_s"])


def test_pure_drag_fixes_tau0_at_zero_as_a_choice_and_a_threshold_is_still_measured(
        tmp_path, snap):
    """v = bτ/B plus noise: the model selection (χ² + k ln n) fixes τ₀ = 0. That is a
    modelling choice, not a measurement: no error and no [0, 0] interval anywhere (fit,
    drag.csv, DefectStats summary); the note gives the scores with and without a
    threshold (each with its v_s) and the τ₀ the best threshold candidate fitted, whose
    finite 95% interval covers the true 0 and is narrower than the largest stress (so
    resolved). Data with a real threshold (120 MPa, far above the noise) still get a
    fitted τ₀ whose finite interval covers it, and no note."""
    from scalebridge.workflows.report import summary_rows

    # χ² + k ln n picks τ₀ = 0 for 15 of the first 20 seeds of these pure-drag rows (a free
    # τ₀ lowers χ² by a χ²₁ draw, against ln 5 more penalty); seed 0 is one of them
    tau, T, v, e = _edge_rows(np.random.default_rng(0), 5e-5, 0.0, temps=(300.0,), c=1e9)
    f = fit_drag(tau, T, v, e, B_M)
    chosen = next(m for m in f["model"] if m["chosen"])
    free = sorted((m for m in f["model"] if m["tau0"] == "free"), key=lambda m: m["score"])
    assert chosen["tau0"] == "zero" and free and chosen["score"] < free[0]["score"]
    (est,) = free[0]["tau0_by_temperature"]
    lo, hi = est["tau0_ci95_mpa"]
    assert est["temperature_k"] == 300.0 and est["tau0_err_mpa"] > 0
    assert lo < 0.0 < hi and hi - lo < 200.0                   # finite, covers the truth
    assert est["tau_max_mpa"] == 700.0                         # the largest |τ| fitted
    (r,) = f["by_temperature"]
    assert r["tau0_fixed"] and r["tau0_mpa"] == 0.0
    assert r["tau0_err_mpa"] is None and r["tau0_ci95_mpa"] == [None, None]
    assert f["dd_tau0_mpa"] == 0.0 and f["dd_tau0_mpa_k"] == 0.0      # the law's τ₀: 0
    assert f["dd_tau0_err_mpa"] is None and f["dd_tau0_ci95_mpa"] is None
    words = {"none": "linear", "shear_wave_speed": "v_s = c_t", "fitted": "v_s fitted"}
    for note in (r["tau0_note"], f["dd_tau0_note"]):
        assert note.startswith(
            f"fixed at 0 by model selection (chi2 + k ln n: {chosen['score']:.3g} without a "
            f"threshold ({words[chosen['saturation']]}) against {free[0]['score']:.3g} "
            f"with one ({words[free[0]['saturation']]}))")
        assert note.endswith(f"; the best threshold model ({words[free[0]['saturation']]}) "
                             f"gives tau0 = {est['tau0_mpa']:.4g} [{lo:.4g}, {hi:.4g}] MPa "
                             "(its 95 % interval covers 0)")       # resolved: no more said
    # through the DefectStats: drag.csv's interval cells blank, the summary's note
    reps = [_rep(ta * 1e-6, vv + d, err=ee, replica=i)
            for ta, vv, ee in zip(tau, v, e, strict=True) for i, d in enumerate((-3, 0, 3))]
    art = MobilityMaker(characters=["edge"]).make(snap, tmp_path / "ds", a0_a=A0, rows=reps)
    fit = json.loads((art.path / "glide_fit.json").read_text())["drag"]["edge"]
    assert next(m for m in fit["model"] if m["chosen"])["tau0"] == "zero"
    (row,) = read_rows(art.path / "drag.csv")
    assert row["tau0_mpa"] == 0.0 and row["tau0_fixed"] == "True"
    assert row["tau0_ci95_lo_mpa"] == "" and row["tau0_ci95_hi_mpa"] == ""
    sm = art.summary
    assert sm["tau0_mpa"] == {"edge_300K": 0.0} and "edge_300K" not in sm["tau0_ci95_mpa"]
    assert sm["tau0_note"]["edge_300K"] == fit["by_temperature"][0]["tau0_note"]
    assert sm["tau0_note"]["edge_300K"].startswith("fixed at 0 by model selection")
    shown = dict(summary_rows(sm))
    assert "tau0_note.edge_300K" in shown and not any(
        isinstance(x, list) and len(x) == 2 and x[0] == x[1] for x in shown.values())
    # a real threshold: fitted, with a finite interval around it, no note
    tau, T, v, e = _edge_rows(np.random.default_rng(1), 5e-5, 120.0, temps=(300.0,),
                              taus=(200, 300, 400, 600, 800), c=1e9)
    g = fit_drag(tau, T, v, e, B_M)
    chosen = next(m for m in g["model"] if m["chosen"])
    (r,) = g["by_temperature"]
    lo, hi = r["tau0_ci95_mpa"]
    assert chosen["tau0"] == "free" and not r["tau0_fixed"] and "tau0_note" not in r
    assert math.isfinite(lo) and math.isfinite(hi) and lo < 120.0 < hi and hi - lo < 60.0
    assert chosen["tau0_by_temperature"][0]["tau0_mpa"] == pytest.approx(r["tau0_mpa"])
    assert g["dd_tau0_err_mpa"] > 0 and g["dd_tau0_note"] is None


# runs/mo_bench74's edge points (defects/velocity.csv: 300 K, tau MPa, v and its error
# m/s) and its c_t (glide_fit.json's shear_wave_m_s)
MO74_EDGE = ((250.0, 1174.6478, 85.489669), (500.0, 1687.1505, 96.190249),
             (1500.0, 2369.2849, 81.043884))
MO74_CT, MO74_B_A = 3844.8394781730426, 2.7438542675723503


def test_the_tau0_note_says_what_the_scores_compare_and_what_the_data_resolve():
    """The Mo example's three edge points (250/500/1500 MPa, 300 K): the selection keeps
    τ₀ = 0 with a fitted v_s (χ² + k ln n 3.16) over a threshold with v_s = c_t (5.29);
    the threshold with a fitted v_s cannot be fitted (k = n = 3). The note names both
    saturations, says that one could not be fitted and why, and of the best threshold
    model's τ₀ (-691 [-4327, 2944] MPa) only the plain facts: its interval covers 0, and
    it is not resolved by the data (7271 MPa wide, above the largest stress, 1500 MPa)."""
    tau, v, e = (np.array(c) for c in zip(*MO74_EDGE, strict=True))
    f = fit_drag(tau * 1e6, np.full(3, 300.0), v, e, MO74_B_A * 1e-10,
                 shear_wave_m_s=MO74_CT)
    chosen = next(m for m in f["model"] if m["chosen"])
    best = min((m for m in f["model"] if m["tau0"] == "free"), key=lambda m: m["score"])
    assert (chosen["tau0"], chosen["saturation"]) == ("zero", "fitted")
    assert best["saturation"] == "shear_wave_speed"
    assert f["model_skipped"] == [{"tau0": "free", "saturation": "fitted", "n_params": 3,
                                   "why": "k = n = 3: a fitted v_s needs n > k"}]
    (est,) = best["tau0_by_temperature"]
    lo, hi = est["tau0_ci95_mpa"]
    assert est["tau_max_mpa"] == 1500.0 and lo < 0.0 < hi and hi - lo > 1500.0
    assert est["tau0_mpa"] == pytest.approx(-691.2, abs=0.1)
    (r,) = f["by_temperature"]
    assert r["tau0_note"] == f["dd_tau0_note"] == (
        f"fixed at 0 by model selection (chi2 + k ln n: {chosen['score']:.3g} without a "
        f"threshold (v_s fitted) against {best['score']:.3g} with one (v_s = c_t)); the "
        "threshold model with v_s fitted could not be fitted (k = n = 3: a fitted v_s "
        f"needs n > k); the best threshold model (v_s = c_t) gives tau0 = "
        f"{est['tau0_mpa']:.4g} [{lo:.4g}, {hi:.4g}] MPa (its 95 % interval covers 0; not "
        f"resolved by the data: the interval, {hi - lo:.4g} MPa wide, exceeds the largest "
        "|tau| fitted, 1500 MPa)")
    assert "3.16 without a threshold (v_s fitted) against 5.29 with one (v_s = c_t)" in (
        r["tau0_note"])
    assert "consistent" not in r["tau0_note"]


def test_fixed_tau0_notes_for_one_stress_a_restricted_fit_and_several_temperatures():
    """One home for the notes: a temperature with one stress (the row's note and, with
    no threshold anywhere, the DD law's say the same); a fit restricted to τ₀ = 0 (the
    window refit) says no threshold candidate was tried, not that none could be fitted;
    with several temperatures each one's τ₀ gets its own outcome. ``tau0_measured``
    tells fitted from fixed on rows, DD thresholds and summaries, old [0, 0] ones too."""
    from scalebridge.md.glide_fit import tau0_measured

    one = "fixed at 0, not fitted: one stress at 300 K (a threshold needs two or more " \
          "distinct stresses at one temperature)"
    f = fit_drag(np.array([400e6]), np.array([300.0]), np.array([1000.0]),
                 np.array([50.0]), B_M)
    (r,) = f["by_temperature"]
    assert r["tau0_note"] == f["dd_tau0_note"] == one
    # a threshold at 100 K (five stresses), one stress at 300 K: only 300 K is fixed
    tau, T, v, e = _edge_rows(np.random.default_rng(1), 5e-5, 120.0, temps=(100.0,),
                              taus=(200, 300, 400, 600, 800), c=1e9)
    g = fit_drag(np.append(tau, 500e6), np.append(T, 300.0), np.append(v, 3000.0),
                 np.append(e, 100.0), B_M)
    r100, r300 = g["by_temperature"]
    assert tau0_measured(r100) and not tau0_measured(r300) and r300["tau0_note"] == one
    assert tau0_measured(g, "dd_") and g["dd_tau0_note"] is None
    # restricted to τ₀ = 0 (the window refit): no threshold candidate was tried
    tau, T, v, e = _edge_rows(np.random.default_rng(0), 5e-5, 0.0, c=1e9)
    h = fit_drag(tau, T, v, e, B_M, only=("zero", "none"))
    for note in [x["tau0_note"] for x in h["by_temperature"]] + [h["dd_tau0_note"]]:
        assert note == ("fixed at 0: no threshold candidate was tried (the fit was "
                        "restricted to tau0 = 0, linear)")
    # two temperatures, τ₀ = 0 chosen: the best threshold model's τ₀ at each, each with
    # its own outcome; a row's note has its temperature's alone
    full = fit_drag(tau, T, v, e, B_M)
    assert next(m for m in full["model"] if m["chosen"])["tau0"] == "zero"
    best = min((m for m in full["model"] if m["tau0"] == "free"), key=lambda m: m["score"])
    said = []
    for est in best["tau0_by_temperature"]:
        lo, hi = est["tau0_ci95_mpa"]
        assert lo < 0.0 < hi and hi - lo < est["tau_max_mpa"] == 700.0
        said.append(f"{est['tau0_mpa']:.4g} [{lo:.4g}, {hi:.4g}] MPa at "
                    f"{est['temperature_k']:g} K (its 95 % interval covers 0)")
    assert full["dd_tau0_note"].endswith("gives tau0 = " + ", ".join(said))
    for r, est in zip(full["by_temperature"], best["tau0_by_temperature"], strict=True):
        lo, hi = est["tau0_ci95_mpa"]
        assert r["tau0_note"].endswith(f"gives tau0 = {est['tau0_mpa']:.4g} [{lo:.4g}, "
                                       f"{hi:.4g}] MPa (its 95 % interval covers 0)")
    # the helper on a DD threshold (new: error None; old: 0 and [0, 0]) and a summary
    assert not tau0_measured(full, "dd_") and full["dd_tau0_err_mpa"] is None
    assert not tau0_measured({"dd_tau0_err_mpa": 0.0, "dd_tau0_ci95_mpa": [0.0, 0.0]}, "dd_")
    assert tau0_measured({"drag_edge_tau0_err_mpa": 4.0}, "drag_edge_")
    assert not tau0_measured({"drag_edge_tau0_mpa": 0.0}, "drag_edge_")


def _properties(path: Path) -> None:
    from scalebridge.artifacts import produce

    doc = {"a0_a": A0, "shear_modulus_gpa": 125.0, "poisson_ratio": 0.3,
           "burgers_a": B_M * 1e10}

    def build(work: Path) -> dict:
        (work / "properties.json").write_text(json.dumps(doc))
        return {}

    produce("Properties", path, doc, {}, build)


# ----------------------------------------------------------------- screw kink pairs
def test_kink_pair_fit_recovers_enthalpy_with_interval_and_fixed_peierls():
    rng = np.random.default_rng(2)
    rows = []
    for T in (100.0, 300.0, 600.0):
        for tau in np.linspace(300, 1500, 5) * 1e6:
            v = float(kink_pair_velocity(np.array([tau]), np.array([T]), 3e3, 0.9,
                                         2000e6)[0])
            rows.append((tau, T, v * (1 + 0.05 * rng.normal()), 0.05 * v))
    tau, T, v, e = np.array(rows).T
    k = fit_kink_pair(tau, T, v, e)
    assert not k["peierls_fixed"]
    assert k["enthalpy_ci95_ev"][0] < 0.9 < k["enthalpy_ci95_ev"][1]
    assert k["peierls_ci95_mpa"][0] < 2000 < k["peierls_ci95_mpa"][1]
    # two stresses only: τ_P cannot be fitted, the 0 K value is used
    two = np.isin(tau, tau[:2])
    with pytest.raises(ValueError, match="Peierls"):
        fit_kink_pair(tau[two], T[two], v[two], e[two])
    k2 = fit_kink_pair(tau[two], T[two], v[two], e[two], tau_p_pa=2000e6)
    assert k2["peierls_fixed"] and k2["peierls_mpa"] == pytest.approx(2000)
    assert k2["enthalpy_ci95_ev"][0] < 0.9 < k2["enthalpy_ci95_ev"][1]
    laws = fit_glide_laws(["screw"] * len(tau), tau, T, v, e, B_M)
    assert laws["kink_pair"]["enthalpy_ev"] == pytest.approx(k["enthalpy_ev"], rel=1e-6)


# ----------------------------------------------------------------- cells in b
def test_cells_scale_with_the_crystal_and_screw_lines_are_long():
    from scalebridge.errors import SettingsError
    from scalebridge.settings import validate

    mk = MobilityMaker()
    mo, nb = mk.cell_a("screw", 3.16), mk.cell_a("screw", 3.30)
    assert nb[0] / mo[0] == pytest.approx(3.30 / 3.16)
    assert mo[0] == pytest.approx(20 * 3.16 * math.sqrt(3) / 2)
    with pytest.raises(SettingsError, match="shorter than 20 b"):
        validate(MobilityMaker, {"screw_cell_b": [8.0, 7.0, 12.0]})
    MobilityMaker(characters=["edge"], screw_cell_b=(8.0, 7.0, 12.0))   # no screws: fine
    assert len(mk.temperatures_k) >= 3
    tags = [p.tag for p in mk.grid()]
    assert tags[-1] == "screw_peierls_0K" and len(tags) == len(set(tags))


def test_example_settings_have_long_replicated_screws():
    """Both run files measure screws on lines of >= 20 b with replicas; production.toml
    at three temperatures or more (a kink-pair law), the example at its DD's one."""
    from scalebridge.workflows.settings import load_run_settings

    root = Path(__file__).resolve().parents[2] / "examples" / "mo"
    for name in ("mo.toml", "production.toml"):
        m = load_run_settings(root / name).md.mobility
        assert "screw" in m.characters and m.screw_cell_b[0] >= 20 and m.replicas >= 3
        assert m.replicas_for("screw") >= 2
        assert len(m.temperatures_k) >= (3 if name == "production.toml" else 1)


# ----------------------------------------------------------------- Peierls, 0 K
@pytest.mark.slow
def test_peierls_stress_of_a_tiny_screw_cell(tmp_path, snap):
    """Quasi-static loading moves the screw at some stress of the order of the GPa the
    DFT and the SNAP model give for Mo (a short line: a 0 K straight line glides as one).

    Measured (192 atoms): each static level converges in 63-67 FIRE iterations, and the
    first gliding level (2750 MPa) never converges (the core keeps gliding), so it runs
    to ``level_steps``: with 1000 the slip jumped 2.01 Å (35 s of the run's ~60 s),
    with 300 it jumps 0.52 Å against the 0.114 Å threshold and the core moved 6.5 Å
    (half a valley: 1.29 Å); both give 2625 ± 125 MPa."""
    from scalebridge.md.dislocations import peierls_stress

    b = A0 * math.sqrt(3) / 2
    r = peierls_stress(snap, A0, tmp_path, cell_a=(2 * b, 6 * b, 10 * b), step_mpa=250.0,
                       max_mpa=6000.0, level_steps=300)
    assert r.status == "ok", r.reason
    assert 300 < r.peierls_mpa < 5000
    assert r.peierls_err_mpa == 125.0
    assert np.all(np.diff(r.slip_a[:-1]) < 0.5)                 # elastic before it glides


def test_defectstats_fits_edge_and_screw_laws_and_keeps_the_peierls_stress(tmp_path, snap):
    """Collected replica rows of both characters at three temperatures and the 0 K
    Peierls task: glide_fit.json holds the edge drag, the kink-pair law (τ_P fixed to the
    0 K value: two screw stresses cannot fit it) and the Peierls stress."""
    rng = np.random.default_rng(4)
    rows = []
    for T in (100.0, 300.0, 600.0):
        for tau in (100.0, 300.0, 600.0):
            v = B_M * (tau - 20) * 1e6 / 5e-5
            rows += [_rep(tau, v * (1 + 0.02 * rng.normal()), err=0.02 * v, replica=i, T=T,
                          tz=T) for i in range(3)]
        for tau in (1200.0, 1800.0):
            v = float(kink_pair_velocity(np.array([tau * 1e6]), np.array([T]), 3e3, 0.9,
                                         2500e6)[0])
            rows += [_rep(tau, v * (1 + 0.03 * rng.normal()), err=0.03 * v, replica=i, T=T,
                          ch="screw", tz=T) for i in range(3)]
    rows.append({"kind": "peierls", "character": "screw", "temperature_k": 0.0,
                 "tau_mpa": 0.0, "replica": 0, "peierls_mpa": 2500.0,
                 "peierls_err_mpa": 50.0, "status": "ok", "reason": ""})
    art = MobilityMaker().make(snap, tmp_path / "ds", a0_a=A0, rows=rows)
    fit = json.loads((art.path / "glide_fit.json").read_text())
    edge = fit["drag"]["edge"]
    assert [r["temperature_k"] for r in edge["by_temperature"]] == [100.0, 300.0, 600.0]
    assert all(r["drag_ci95_pa_s"][0] < 5e-5 < r["drag_ci95_pa_s"][1]
               for r in edge["by_temperature"])
    kp = fit["kink_pair"]
    assert kp["peierls_fixed"] and kp["peierls_mpa"] == pytest.approx(2500.0)
    assert kp["enthalpy_ci95_ev"][0] < 0.9 < kp["enthalpy_ci95_ev"][1]
    assert fit["peierls_0k"]["peierls_mpa"] == 2500.0
    assert art.summary["peierls_0k_mpa"] == 2500.0 and art.summary["replicas_min"] == 3


def test_a_finished_task_is_read_back_not_run_again(tmp_path):
    from scalebridge.md.mobility import mobility_task

    done = tmp_path / "edge_T300_tau500_r1"
    done.mkdir()
    row = {"character": "edge", "temperature_k": 300.0, "tau_mpa": 500.0, "replica": 1,
           "velocity_m_s": 1262.0, "velocity_err_m_s": 43.0, "status": "ok"}
    (done / "row.json").write_text(json.dumps(row))
    task = {"workdir": str(done), "maker": {}, "potential": None, "a0_a": A0,
            "point": {"character": "edge", "temperature_k": 300.0, "tau_mpa": 500.0,
                      "replica": 1}}
    assert mobility_task(task) == row


# ----------------------------------------------------------------- steady glide
@pytest.mark.slow
def test_loaded_thermalisation_measures_steady_glide(tmp_path, snap):
    """A suddenly loaded edge (300 K, 250 MPa, default cell) sits ~1 ps and reaches its
    steady velocity only 2-3 ps after the load (its effective mass over its drag). With
    the load on from the start of 2 ps of thermalisation the measured 1.5 ps are steady
    glide: the core moves from the first frame and the first half of the run is as fast
    as the second (same seed, measured: 3.8 Å in the first 0.5 ps, halves 853 and 1044
    m/s, v = 982 ± 106 m/s; after 2.5 ps of thermalisation: 3.9 Å, halves 901 and 1062
    m/s over 1.5 ps, 961 and 1084 m/s over 2 ps, v = 1079 ± 55 m/s). Loading with the
    measured run instead, after 1250 steps at τ = 0 (the earlier protocol, measured over
    2 ps): 0.4 Å, halves 151 and 581 m/s, v = 338 ± 111 m/s."""
    mk = MobilityMaker(characters=["edge"], temperatures_k=[300.0], taus_mpa=[250.0],
                       equil_steps=1000, run_steps=750, dump_every=25, fit_from=0.0)
    assert mk.load_at == "thermalisation"
    row = mk.run_point(snap, A0, GlidePoint(character="edge", temperature_k=300.0,
                                            tau_mpa=250.0), tmp_path)
    assert row["status"] == "ok"
    t, z = np.loadtxt(tmp_path / "core_position.csv", delimiter=",", skiprows=1,
                      usecols=(0, 1)).T
    assert z[(t >= 0.45) & (t <= 0.5)].mean() - z[t <= 0.05].mean() > 2.0   # > 400 m/s
    h = t.size // 2
    v1, v2 = (naive_velocity(t[:h], z[:h])[0], naive_velocity(t[h:], z[h:])[0])
    assert v1 > 0.7 * v2 > 0
    assert 700.0 < row["velocity_m_s"] < 2000.0


def test_the_load_goes_on_with_the_thermalisation_for_both_boundaries():
    """``load_at = "thermalisation"``: the loading fixes come before the thermalisation's
    ``run`` (rigid: the holding aveforce replaced; traction: addforce, nothing held);
    ``load_at = "run"``: τ = 0 until the measured run."""
    from scalebridge.md.dislocations import build_glide_slab, glide_script, repeats_for

    _, geo = build_glide_slab(A0, "edge", "Mo", *repeats_for(A0, "edge", (8, 14, 30)),
                              rigid_layers=True)
    kw = dict(n_top=10, n_bot=10, equil_steps=10, run_steps=20, dump_every=5, seed=7,
              damp_ps=0.1, timestep_ps=0.002)
    for boundary, fix in (("rigid", "fix sb_rt sb_top aveforce "),
                          ("traction", "fix sb_ftop sb_top addforce ")):
        for load_at in ("thermalisation", "run"):
            lines = glide_script(geo, 300.0, 300.0, boundary=boundary, load_at=load_at,
                                 **kw).splitlines()
            runs = [i for i, x in enumerate(lines) if x.startswith("run ")]
            (load,) = [i for i, x in enumerate(lines)            # τ > 0: force along +z
                       if x.startswith(fix) and float(x.split()[-1]) > 0]
            assert (load < runs[0]) == (load_at == "thermalisation")
            assert load < runs[1]
            hold = [i for i, x in enumerate(lines) if x.startswith("fix sb_rt")]
            unfix = [i for i, x in enumerate(lines) if x == "unfix sb_rt"]
            if boundary == "rigid":
                assert hold[0] < unfix[0] < load       # held while relaxing, then loaded
            else:
                assert hold == [] and unfix == []


@pytest.mark.slow
def test_traction_boundary_still_glides_with_the_early_load(tmp_path, snap):
    """The traction boundary (forces on deformable surface layers) under the default
    protocol: LAMMPS takes the script and the edge moves along +z."""
    from scalebridge.md.dislocations import run_glide

    r = run_glide(snap, A0, "edge", 1000.0, 50.0, tmp_path, cell_a=(3, 14, 25),
                  equil_steps=200, run_steps=300, dump_every=30, fit_from=0.0,
                  boundary="traction")
    assert np.isfinite(r.core_z_a).all()
    assert r.core_z_a[-1] - r.core_z_a[0] > 3.0


@pytest.mark.parametrize("ratio", [0.8, 1.0])
def test_an_accelerating_window_widens_the_drag_error_by_its_shift(ratio):
    """Rows v = bτ/B whose first half glides ``ratio`` times the second: B refitted to
    the second-half velocities 2v/(1 + r) is B(1 + r)/2, the raw window term is the
    shift B(1 - r)/2, and B0's error grows in quadrature by that shift less its
    steady-glide noise (here from the row errors: no replica ratios); a steady window
    (r = 1) leaves the error and the fit's dof as they were; unknown ratios say so."""
    from scalebridge.md.glide_fit import fit_drag, satterthwaite_dof, t95, window_systematic

    b, drag = 2.74e-10, 8e-5
    tau = np.repeat([100e6, 200e6, 400e6], 2)
    temp = np.tile([100.0, 300.0], 3)
    v = b * tau / drag
    err = 0.03 * v
    f = fit_drag(tau, temp, v, err, b, rel=0.0)
    stat = f["b0_err_pa_s"]
    assert f["b0_dof"] == f["dof"] and f["b0_quantile"] == t95(f["dof"])
    window_systematic(f, tau, temp, v, err, np.full(6, ratio), b, rel=0.0)
    assert f["b0_late_pa_s"] == pytest.approx(drag * (1 + ratio) / 2, rel=1e-3)
    assert f["b0_stat_err_pa_s"] == stat
    raw, noise = f["b0_window_raw_pa_s"], f["b0_window_noise_pa_s"]
    assert raw == pytest.approx(drag * (1 - ratio) / 2, abs=1e-3 * drag)
    # 3 % row errors: the window difference's noise is about the statistical error
    assert 0.3 * stat < noise < 3 * stat
    assert f["b0_window_err_pa_s"] == pytest.approx(math.sqrt(max(raw ** 2 - noise ** 2, 0)))
    assert f["b0_err_pa_s"] == pytest.approx(math.hypot(stat, f["b0_window_err_pa_s"]))
    lo, hi = f["b0_ci95_pa_s"]
    assert (hi - lo) / 2 == pytest.approx(t95(f["b0_dof"]) * f["b0_err_pa_s"])
    if ratio < 1:
        net = f["b0_window_err_pa_s"]                   # the net window's own dof:
        nu_n = f["b0_window_noise_dof"]               # rows' scatter dof 1 each (none given)
        assert 1 <= nu_n <= 6 and f["b0_window_dof"] < 1e3
        nu_w = net ** 4 / (2 * net ** 2 * noise ** 2 + noise ** 4 * (1 + 1 / nu_n))
        assert f["b0_err_pa_s"] > 3 * stat and f["b0_window_dof"] == pytest.approx(nu_w)
        assert f["b0_dof"] == pytest.approx(satterthwaite_dof(stat, f["dof"], net, nu_w))
        assert nu_w > 10 and f["b0_dof"] > 10     # a 10 % shift measured to 3 %
    else:
        assert f["b0_err_pa_s"] == stat and f["b0_dof"] == f["dof"]
    g = fit_drag(tau, temp, v, err, b, rel=0.0)
    window_systematic(g, tau, temp, v, err, np.full(6, np.nan), b, rel=0.0)
    assert g["b0_err_pa_s"] == stat and "not measured" in g["b0_window_note"]
    assert g["b0_dof"] == g["dof"]


_B_TRUE, _B_M = 1e-4, 2.74e-10
_TAUS = np.array([100e6, 250e6, 500e6, 1000e6])


def _glide_point(rng, v, accel=0.0, white=0.3, walk=0.15, run=60.0, frames=30, span=1.5):
    """Three replica trajectories z(t) (Å, ps) of one point, gliding at ``v`` (m/s) with
    a per-run velocity offset (``run`` m/s), a random walk (``walk`` Å per frame) and
    position noise (``white`` Å), the second half ``1 + accel`` times faster; measured as
    md does: (velocity, error, median half ratio, its standard error, that error's dof)."""
    from scalebridge.md.glide_fit import (
        block_velocity,
        combine_replicas,
        half_ratio_err,
        naive_velocity,
    )

    t = np.linspace(0.0, span, frames)
    vs, es, ratios = [], [], []
    for _ in range(3):
        vr = (v + run * rng.standard_normal()) / 100                      # Å/ps
        vel = np.where(t < span / 2, vr, vr * (1 + accel))
        z = np.concatenate([[0.0], np.cumsum(vel[:-1] * np.diff(t))])
        z += np.cumsum(walk * rng.standard_normal(frames)) + white * rng.standard_normal(
            frames)
        bv = block_velocity(t, z)
        h = frames // 2
        ratios.append(naive_velocity(t[:h], z[:h])[0] / naive_velocity(t[h:], z[h:])[0])
        vs.append(bv.velocity_m_s)
        es.append(bv.err_m_s)
    c = combine_replicas(vs, es)
    return c["velocity_m_s"], c["velocity_err_m_s"], float(np.median(ratios)), \
        half_ratio_err(ratios), len(ratios) - 1


def _glide_fit(seed, **kw):
    from scalebridge.md.glide_fit import fit_glide_laws

    rng = np.random.default_rng(seed)
    v, e, r, r_err, r_dof = map(np.array, zip(*(_glide_point(rng, _B_M * t / _B_TRUE,
                                                             **kw)
                                                for t in _TAUS), strict=True))
    return fit_glide_laws(["edge"] * 4, _TAUS, np.full(4, 300.0), v, e, _B_M, ratio=r,
                          ratio_err=r_err, ratio_dof=r_dof)["drag"]["edge"]


def test_a_steady_window_adds_no_error_and_its_interval_covers_b():
    """Steady glide (trajectories with run-to-run, random-walk and position noise, three
    replicas a point, measured as md does): B refitted to the second halves differs from
    B by noise alone, and the noise the fit predicts for that difference is its size
    (mean square ratio about 1), so the net window term is 0 in most seeds (median) and
    small on average, where the raw difference is a sizeable part of the statistical
    error; B ± t95(dof)·error covers the true B in ≥ 93 % of 120 seeds, and is not
    bought by width (median half-width under 12 % of B)."""
    fits = [_glide_fit(seed) for seed in range(120)]
    stat = np.array([f["b0_stat_err_pa_s"] for f in fits])
    raw = np.array([f["b0_window_raw_pa_s"] for f in fits])
    noise = np.array([f["b0_window_noise_pa_s"] for f in fits])
    net = np.array([f["b0_window_err_pa_s"] for f in fits])
    assert np.median(raw / stat) > 0.3                   # counted whole before: noise
    assert 0.6 < np.mean(raw ** 2) / np.mean(noise ** 2) < 1.6
    assert np.median(net / stat) < 0.05 and np.mean(net / stat) < 0.35
    b0 = np.array([f["b0_pa_s"] for f in fits])
    half = np.array([(f["b0_ci95_pa_s"][1] - f["b0_ci95_pa_s"][0]) / 2 for f in fits])
    assert np.mean(np.abs(b0 - _B_TRUE) <= half) >= 0.93
    assert np.median(half / _B_TRUE) < 0.12


def test_a_line_that_accelerates_keeps_its_window_term():
    """Second halves 20 % faster than the first, little noise: the whole-window slope is
    1.1 v1, the late one 1.2 v1, so B shifts by B(1/1.1 - 1/1.2) = 7.6 %; the net window
    term keeps that shift (its noise is small beside it) and dominates the error; the
    offset is measured to within its small noise, so the dof is the window's, large."""
    shift = _B_TRUE * (1 / 1.1 - 1 / 1.2)
    for seed in range(3):
        f = _glide_fit(seed, accel=0.2, white=0.05, walk=0.02, run=10.0)
        assert f["b0_window_err_pa_s"] == pytest.approx(shift, rel=0.1)
        assert f["b0_window_noise_pa_s"] < 0.2 * f["b0_window_raw_pa_s"]
        assert f["b0_window_err_pa_s"] > 3 * f["b0_stat_err_pa_s"]
        assert f["b0_window_dof"] > 25 and f["b0_dof"] > 20


def test_the_window_terms_dof_is_its_rerun_scatter():
    """A line 10 % faster in its second halves, with the steady test's noise (the window
    offset w about 2.3 times its noise n), 200 reruns (seeds 0-199): the estimated square
    d² − n² of the offset scatters as a chi-square of 2E²/var = 2.6 dof;
    :func:`window_dof` at the reruns' mean w² and n², with the noise's median dof (4.1:
    four rows of three replicas), says 2.3 (a fixed offset measured with noise; the
    one-sample model, (w/d)⁴, ~0.8). In the Welch–Satterthwaite sum the term enters as
    w⁴/ν = 2w²n² + n⁴(1 + 1/ν_n): over the runs with a term its mean is var(d² − n²)/2
    (measured 0.92 of it). A single run's
    ν is typically high (median 5.0: its n² is below the mean in most runs, median/mean
    0.59), as any plug-in Welch–Satterthwaite; B ± t95(dof)·error still covers the
    steady B (late-half velocities) in every run (half-width median 13 % of B)."""
    from scalebridge.md.glide_fit import window_dof

    fits = [_glide_fit(seed, accel=0.1) for seed in range(200)]
    n2 = np.array([f["b0_window_noise_pa_s"] for f in fits]) ** 2
    d = np.array([f["b0_late_pa_s"] - f["b0_pa_s"] for f in fits])
    w2 = d ** 2 - n2                                 # unbiased for the offset's square
    rerun = 2 * w2.mean() ** 2 / w2.var(ddof=1)
    nu_n = np.median([f["b0_window_noise_dof"] for f in fits])
    model = window_dof(math.sqrt(w2.mean()), math.sqrt(n2.mean()), nu_n)
    assert 1.5 < rerun < 4 and 2 <= nu_n <= 8 and model == pytest.approx(rerun, rel=0.35)
    per_run = np.array([f["b0_window_err_pa_s"] ** 4 / f["b0_window_dof"] for f in fits
                        if f["b0_window_dof"] > 0])
    assert per_run.mean() == pytest.approx(w2.var(ddof=1) / 2, rel=0.25)
    steady = _B_TRUE / 1.1
    lo, hi = np.array([f["b0_ci95_pa_s"] for f in fits]).T
    assert np.mean((lo <= steady) & (steady <= hi)) >= 0.95
    assert np.median((hi - lo) / 2) < 0.2 * steady
    assert window_dof(1.0, 0.0) == math.inf and window_dof(0.0, 1.0) == 0.0
    assert window_dof(2.0, 1.0) == pytest.approx(16 / 9)
    assert window_dof(2.0, 1.0, 2.0) == pytest.approx(16 / 9.5)


def test_a_window_whose_noise_cannot_be_propagated_keeps_one_dof():
    """Ratios known but with a zero standard error: no row's noise enters, so the whole
    difference is the window term, on 1 dof (not the ∞ of a noise measured as 0), and
    the note says so."""
    from scalebridge.md.glide_fit import fit_drag, window_systematic

    b, drag = 2.74e-10, 8e-5
    tau = np.repeat([100e6, 200e6, 400e6], 2)
    temp = np.tile([100.0, 300.0], 3)
    v = b * tau / drag
    f = fit_drag(tau, temp, v, 0.03 * v, b, rel=0.0)
    window_systematic(f, tau, temp, v, 0.03 * v, np.full(6, 0.8), b,
                      ratio_err=np.zeros(6), rel=0.0)
    assert f["b0_window_noise_pa_s"] == 0 and f["b0_window_err_pa_s"] > 0
    assert f["b0_window_dof"] == 1.0 and "could not be propagated" in f["b0_window_note"]


def test_the_window_noises_dof_is_its_rows_replicas():
    """The noise n² is a sum of the rows' shares, each estimated from its replicas'
    ratio scatter: with every row on 4 dof its Welch–Satterthwaite dof is exactly 4 times
    that with every row on 1 (the default), and the window's dof follows
    w⁴/(2w²n² + n⁴(1 + 1/ν_n))."""
    from scalebridge.md.glide_fit import fit_drag, window_dof, window_systematic

    b, drag = 2.74e-10, 8e-5
    tau = np.repeat([100e6, 200e6, 400e6], 2)
    temp = np.tile([100.0, 300.0], 3)
    v = b * tau / drag * (1 + 0.02 * np.sin(np.arange(6)))
    out = {}
    for nu in (None, 4.0):
        f = fit_drag(tau, temp, v, 0.03 * v, b, rel=0.0)
        window_systematic(f, tau, temp, v, 0.03 * v, np.full(6, 0.8), b,
                          ratio_err=np.full(6, 0.05),
                          ratio_dof=None if nu is None else np.full(6, nu), rel=0.0)
        out[nu] = f
        assert f["b0_window_dof"] == pytest.approx(window_dof(
            f["b0_window_err_pa_s"], f["b0_window_noise_pa_s"], f["b0_window_noise_dof"]))
    assert 1 < out[None]["b0_window_noise_dof"] < 6
    assert out[4.0]["b0_window_noise_dof"] == pytest.approx(
        4 * out[None]["b0_window_noise_dof"])
    assert out[4.0]["b0_window_dof"] > out[None]["b0_window_dof"]


def test_the_drag_errors_dof_is_welch_satterthwaite():
    """sqrt(stat² + window²) carries (s² + w²)²/(s⁴/ν_s + w⁴/1) dof: ν_s with no window,
    → 1 as the window dominates, in between otherwise; an exactly determined fit's
    statistical part (ν_s = 0) counts as 1 inside the sum, as the FEM band counts it,
    and the result is at least 1. The median's variance factor
    for three normal draws is 1.346 (exact 3 × 0.4487)."""
    from scalebridge.md.glide_fit import median_variance_factor, satterthwaite_dof

    assert satterthwaite_dof(1.0, 3, 0.0) == 3
    assert satterthwaite_dof(1.0, 3, 1.0) == pytest.approx(4 / (1 / 3 + 1))
    assert satterthwaite_dof(1.0, 3, 30.0) == pytest.approx(1.0, abs=0.01)
    assert satterthwaite_dof(1.0, 0, 1.0) == pytest.approx(2.0)
    assert satterthwaite_dof(1.0, 0, 0.0) == 0          # the fit's own, its quantile 1.96
    assert satterthwaite_dof(1.0, 3, 1.0, 0.05) == 1.0  # 0.19 floored
    # a window term known to dof 0.5 weighs twice one known to 1
    assert satterthwaite_dof(1.0, 3, 1.0, 0.5) == pytest.approx(4 / (1 / 3 + 2))
    # both parts known exactly: ∞ (the normal quantile), not a division by zero
    assert satterthwaite_dof(0.0, 3, 1.0, math.inf) == math.inf
    # a singular fit's NaN error or an unknown window dof: the floor, not ∞
    assert satterthwaite_dof(math.nan, 3, 1.0) == 1.0
    assert satterthwaite_dof(1.0, 3, 1.0, math.nan) == 1.0
    assert median_variance_factor(2) == 1.0
    assert median_variance_factor(3) == pytest.approx(1.346, rel=0.01)


def test_the_window_refit_keeps_the_chosen_model():
    """``only`` fits one candidate; the late refit uses the model the fit chose, so a
    threshold or a saturation appearing in the late velocities cannot pose as the
    window's effect (the Mo example's late data preferred a τ₀ of 59-140 MPa: B0 -42 %
    instead of -18 % with the chosen model)."""
    from scalebridge.md.glide_fit import fit_drag, window_systematic

    b = 2.74e-10
    tau = np.repeat([250e6, 500e6, 1500e6], 2)
    temp = np.tile([100.0, 300.0], 3)
    v = np.array([1050.0, 820.0, 1640.0, 1570.0, 2510.0, 2530.0])
    ratio = np.array([0.66, 0.76, 0.79, 0.76, 1.0, 1.02])
    err = np.full(6, 90.0)
    f = fit_drag(tau, temp, v, err, b, shear_wave_m_s=3843.0)
    chosen = next(m for m in f["model"] if m["chosen"])
    one = fit_drag(tau, temp, v, err, b, shear_wave_m_s=3843.0,
                   only=(chosen["tau0"], chosen["saturation"]))
    assert one["b0_pa_s"] == pytest.approx(f["b0_pa_s"], rel=1e-9)
    assert [m["chosen"] for m in one["model"]] == [True]
    with pytest.raises(ValueError, match="cannot be fitted"):
        fit_drag(tau[:1], temp[:1], v[:1], err[:1], b, only=("zero", "fitted"))
    window_systematic(f, tau, temp, v, err, ratio, b, shear_wave_m_s=3843.0)
    late = fit_drag(tau, temp, 2 * v / (1 + ratio), err, b, shear_wave_m_s=3843.0,
                    only=(chosen["tau0"], chosen["saturation"]))
    assert f["b0_late_pa_s"] == pytest.approx(late["b0_pa_s"], rel=1e-9)
    assert 0.05 < f["b0_window_err_pa_s"] / f["b0_pa_s"] < 0.35


def test_replicas_run_on_alternating_ensemble_members(tmp_path, tiny_potential, snap):
    """Replica r of a point is driven by ensemble member r mod n (first in pair_style
    deepmd, the others still there for the model deviation), so the replica scatter
    carries the ensemble's spread; ``ensemble_replicas = false`` drives all with
    member 0. A single model or another potential is unchanged."""
    from scalebridge.md.lammps import as_potential, driven_by, ensemble_size

    pot = as_potential(tiny_potential.path)
    assert ensemble_size(pot) == 2 and driven_by(pot, 2) is pot
    swapped = driven_by(pot, 1)
    assert swapped.models == pot.models[::-1]
    assert "out_file model_devi.out" in swapped.pair_commands(tmp_path)[0]
    assert driven_by(snap, 1) is snap and ensemble_size(snap) == 1

    def pair_style(row):
        line = next(ln for ln in (Path(row["workdir"]) / "in.lmp").read_text().splitlines()
                    if ln.startswith("pair_style"))
        return line.split()[2]

    for rotate, members in ((True, [0, 1]), (False, [0, 0])):
        mk = MobilityMaker(characters=["edge"], temperatures_k=[50.0], taus_mpa=[1000.0],
                           replicas=2, equil_steps=10, run_steps=20, dump_every=10,
                           ensemble_replicas=rotate)
        rows = [mk.run_point(pot, A0, p, tmp_path / f"{rotate}" / p.tag) for p in mk.grid()]
        assert [r["member"] for r in rows] == members
        assert [pair_style(r) for r in rows] == [str(pot.models[m]) for m in members]


def test_glide_runs_record_the_model_deviation_without_changing_the_dynamics(
        tmp_path, tiny_potential):
    """Every glide run of an ensemble records its largest force deviation (the loaded
    core is where a learned potential extrapolates first; the md verdict grades it): the
    two tiny models differ, so it is > 0, in the replica row, the point row and the
    summary; and recording it leaves the trajectory as it was, to the bit (the driving
    member's forces are the same at the deviation steps)."""
    from scalebridge.md.lammps import DeviationSettings, as_potential

    pot = as_potential(tiny_potential.path)
    dumps, devi_10 = {}, 0.0
    for freq in (10, 1_000_000):
        mk = MobilityMaker(characters=["edge"], temperatures_k=[50.0], taus_mpa=[1000.0],
                           replicas=1, equil_steps=10, run_steps=20, dump_every=10,
                           devi=DeviationSettings(out_freq=freq))
        (p,) = mk.grid()
        row = mk.run_point(pot, A0, p, tmp_path / str(freq) / p.tag)
        dumps[freq] = (Path(row["workdir"]) / "glide.dump").read_text()
        if freq == 10:
            assert row["max_devi_f_ev_a"] > 1e-4, row
            (tmp_path / "collected").mkdir()
            summ = collect_velocity([row], tmp_path / "collected", A0, mk)
            assert summ["max_devi_f_ev_a"] == row["max_devi_f_ev_a"]
            assert summ["devi_threshold_ev_a"] == 0.3
            head, first = (tmp_path / "collected" / "velocity.csv").read_text().splitlines()[:2]
            assert float(first.split(",")[head.split(",").index("max_devi_f_ev_a")]) == \
                pytest.approx(row["max_devi_f_ev_a"])
        else:      # step 0 of the measured run only
            assert 0 < row["max_devi_f_ev_a"] <= devi_10
            continue
        devi_10 = row["max_devi_f_ev_a"]
    assert dumps[10] == dumps[1_000_000]


def test_an_exactly_determined_drag_takes_its_quantile_from_the_points_dof():
    """One stress (the example's screw): the drag is b τ/v exactly, no residual is left to
    check the point's error by, so its interval's quantile is Student's on the point
    error's own dof (Welch–Satterthwaite with the stated 2 % relative error, known), not
    the normal 1.96. Measured on 2,000 simulated reruns of a point from three replicas
    (dof 2): the true B inside its 95 % interval in 94.0 % of them with the point's dof,
    82.0 % with 1.96."""
    from scalebridge.md.glide_fit import REL_ERROR, fit_drag, point_error_dof, t95
    from scipy.optimize import OptimizeResult

    b, tau = 2.74e-10, np.array([2.8e9])
    f = fit_drag(tau, [300.0], [500.0], [128.7], b, err_dof=[8])
    e2, r2, fl2 = 128.7 ** 2, (REL_ERROR * 500.0) ** 2, (1e-3 * 500.0) ** 2
    want = (e2 + r2 + fl2) ** 2 / (e2 ** 2 / 8)
    assert f["dof"] == 0 and f["error_dof"] == pytest.approx(want, rel=1e-6)
    assert f["quantile"] == pytest.approx(t95(want)) and f["b0_dof"] == f["error_dof"]
    assert fit_drag(tau, [300.0], [500.0], [128.7], b)["quantile"] == pytest.approx(1.96,
                                                                                   abs=1e-3)
    # two temperatures, one point each: the less certain one sets the common quantile
    two = fit_drag(np.repeat(tau, 2), [100.0, 300.0], [400.0, 500.0], [100.0, 100.0], b,
                   err_dof=[2, 30])
    assert 2.0 < two["error_dof"] < 2.1
    # a fit with residuals keeps their dof
    four = fit_drag(np.array([1e8, 2.5e8, 5e8, 1e9]), [300.0] * 4,
                    [450.0, 1000.0, 1700.0, 2300.0], [100.0] * 4, b, err_dof=[2] * 4)
    assert four["error_dof"] == four["dof"] > 0
    # a singular Jacobian: no dof to give
    assert math.isnan(point_error_dof(OptimizeResult(jac=np.zeros((1, 1))), np.ones(1),
                                      np.ones(1)))
    # an exactly determined threshold (two stresses, one temperature): its τ₀ interval,
    # the chosen model's and the candidate's, on the points' dof, not 1.96
    two_tau = fit_drag(np.array([5e8, 1.5e9]), [300.0] * 2, [900.0, 2400.0], [100.0] * 2,
                       b, err_dof=[2, 2])
    free = next(m for m in two_tau["model"] if m["tau0"] == "free" and m["chosen"])
    lo, hi = free["tau0_by_temperature"][0]["tau0_ci95_mpa"]
    se = free["tau0_by_temperature"][0]["tau0_err_mpa"]
    assert 2.0 < two_tau["error_dof"] < 3.0 and two_tau["quantile"] > 3.0   # 2.85, 3.28
    assert (hi - lo) / (2 * se) == pytest.approx(two_tau["quantile"])
    assert two_tau["by_temperature"][0]["tau0_ci95_mpa"] == [lo, hi]
    # reruns: three replicas of sd 150 m/s about 500 m/s
    rng = np.random.default_rng(7)
    truth = b * 2.8e9 / 500.0
    hit = {"dof": 0, "normal": 0}
    for _ in range(2000):
        v = rng.normal(500.0, 150.0, 3)
        m, se = float(v.mean()), float(v.std(ddof=1) / math.sqrt(3))
        for key, dof in (("dof", [2]), ("normal", None)):
            lo, hi = fit_drag(tau, [300.0], [m], [se], b, err_dof=dof)["by_temperature"][0][
                "drag_ci95_pa_s"]
            hit[key] += lo <= truth and (hi is None or truth <= hi)
    assert 0.93 <= hit["dof"] / 2000 <= 0.98, hit
    assert hit["normal"] / 2000 < 0.88, hit
