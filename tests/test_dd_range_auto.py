"""``range_probe = "auto"``: the DD counts the evaluations beyond the mobility law's stress
range whose velocity value reached the dynamics (law-set), skips the range probe where
none did in any run (its change exactly zero by construction) and runs it otherwise."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
from scalebridge.artifacts import Artifact
from scalebridge.dd_coupling import DDSettings
from scalebridge.dd_coupling.engine import DDParams, beyond_law_set, law_top_stress_mpa
from scalebridge.dd_coupling.inputs import Material
from scalebridge.dd_coupling.mobility import LimitSpeedMobility, LinearDragMobility, ValidRange
from scalebridge.dd_coupling.simulate import write_ddrun
from scalebridge.workflows.band import mobility_source
from scalebridge.workflows.verdicts import AMBER, GREEN, THRESHOLDS, checks_for

MU_GPA, NU, B_A = 125.0, 0.3, 2.73          # Mo-like isotropic constants
MAT = Material(MU_GPA * 1e9, NU, B_A * 1e-10, lattice="bcc")
#: a small cell with strong forest obstacles: ~15 dislocations, < 1 s per realisation
SMALL = {"cell_lx_um": 0.5, "final_strain": 2e-3, "strain_rate_s": 1e5,
         "source_density_m2": 1.5e14, "obstacle_density_m2": 1e15, "output_points": 30}
#: the probe's limiting speed: faster than the drag law anywhere the DD drives it, so
#: every evaluation beyond the range is raised
LIMIT = {"m_s": (1e4, 1e4), "source": "test"}


def counted_drag(top_mpa: float) -> LimitSpeedMobility:
    """A linear drag law trusted up to ``top_mpa`` that counts its evaluations beyond
    that (``n_out_of_range``, as a neural law does): a limiting speed far below its own
    velocity leaves every velocity the law's (max(limit, |v|))."""
    vr = ValidRange(tau_mpa=(0.0, top_mpa), temperature_k=(0.0, 1000.0))
    law = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5, valid_range=vr)
    return LimitSpeedMobility(law, (1e-3, 1e-3))


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_law_set_criterion_matches_the_quantile_it_protects():
    """A step's beyond-range evaluations set the time step iff raising their speeds can
    move the dt_quantile quantile of the speeds: checked against torch.quantile with
    them raised, on random speeds (ties included); where they cannot, only the ones
    neither held nor cut (|v| dt < max_glide) count."""
    law = counted_drag(100.0)
    assert law_top_stress_mpa(law) == 100.0
    assert law_top_stress_mpa(LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5)) is None
    gen = torch.Generator().manual_seed(3)
    seen = {True: 0, False: 0}
    for q in (0.5, 0.8, 1.0):
        params = DDParams(mu_pa=MAT.mu_pa, nu=NU, b_m=MAT.b_m, mobility=law, dt_quantile=q,
                          max_glide_m=1e-9)
        for n in (1, 2, 5, 7, 12, 40):
            for _ in range(30):
                v = torch.randint(-6, 7, (n,), generator=gen).to(torch.float64) * 100.0
                beyond = torch.rand(n, generator=gen) < 0.3
                held = torch.rand(n, generator=gen) < 0.2
                speed = torch.where(held, 0.0, v.abs())
                vref = float(torch.quantile(speed, q)) if n > 1 and q < 1 else float(
                    speed.max())
                dt = 1e-9 / vref if vref > 0 else 1e-10
                mask, sensitive = beyond_law_set(beyond, held, speed, v, dt, params)
                raised = torch.where(beyond & ~held, speed.max() * 10 + 1e4, speed)
                vref2 = float(torch.quantile(raised, q)) if n > 1 and q < 1 else float(
                    raised.max())
                assert sensitive == (vref2 != vref), (q, n, speed, beyond, held)
                seen[sensitive] += 1
                # a held one moves at 0 whatever its speed: never law-set
                want = beyond & ~held & (
                    True if sensitive else (v * dt).abs() < params.max_glide_m)
                assert torch.equal(mask, want)
    assert min(seen.values()) > 50            # both branches exercised


def test_auto_skips_the_probe_where_every_beyond_range_evaluation_was_cut(tmp_path):
    """With dt_quantile 0.5 every evaluation beyond the law's 300 MPa (a few % of them)
    belongs to the fastest dislocations, cut to max_glide, and none sets the time step:
    law-set 0, so "auto" records an exact zero and writes no range_probe.csv. The claim
    checked physically: the probe run anyway (c_t = 1e4 m/s beyond the range, every
    evaluation there raised) gives the same flow stress to the bit. The dd verdict turns
    the (amber) fraction green by it, in words, and the band's range term is 0."""
    law = counted_drag(300.0)
    settings = DDSettings(**SMALL, realisations=2, dt_quantile=0.5, range_probe="auto")
    (tmp_path / "auto").mkdir()
    auto = write_ddrun(settings, MAT, law, tmp_path / "auto", limit=LIMIT)
    run = json.loads((tmp_path / "auto" / "run.json").read_text())
    reals = run["realisations"]
    assert all(r["beyond_range"]["beyond"] > 0 for r in reals)        # some beyond ...
    assert all(r["beyond_range"]["law_set"] == 0 for r in reals)      # ... none law-set
    assert all(r["out_of_range_law_set_fraction"] == 0.0 for r in reals)
    # the engine's count is the law's own (the same denominator)
    for r in reals:
        b = r["beyond_range"]
        assert r["out_of_range_fraction"] == b["beyond"] / b["evaluations"]
    band = THRESHOLDS["out_of_range"]
    assert band.green < auto["out_of_range_fraction"] <= band.amber      # amber on its own
    assert auto["out_of_range_law_set_fraction"] == 0.0
    assert auto["out_of_range_law_set_fraction_mean"] == 0.0
    rng = auto["range_sensitivity"]
    assert rng["run"] is False and rng["exact_zero"] is True
    assert rng["rel_change"] == 0.0 and rng["rel_change_err"] == 0.0
    assert rng["runs_checked"] == 2
    assert rng["covers_out_of_range"] is True and rng["other_out_of_range_evaluations"] == 0
    assert "cut to the per-step glide limit" in rng["method"]
    assert "exactly zero by construction" in rng["method"]
    assert not (tmp_path / "auto" / "range_probe.csv").exists()

    # physically: the probe run anyway changes nothing, to the bit
    forced = settings.model_copy(update={"range_probe": True})
    (tmp_path / "forced").mkdir()
    full = write_ddrun(forced, MAT, law, tmp_path / "forced", limit=LIMIT)
    rows = read_csv(tmp_path / "forced" / "range_probe.csv")
    assert len(rows) == 2
    assert [r["flow_stress_mpa"] for r in rows] == [r["flow_stress_probe_mpa"] for r in rows]
    assert full["range_sensitivity"]["rel_change"] == 0.0
    assert full["range_sensitivity"]["replaced_fraction"] > 0     # it did raise some
    assert full["flow_stress_mpa"] == auto["flow_stress_mpa"]

    # the dd verdict: green because nothing the law could be there changes the answer
    check = next(c for c in checks_for("DDRun", auto, tmp_path) if c.name == "out_of_range")
    assert check.status == GREEN
    assert "amber on its own" in check.reason
    assert "nothing the law could be beyond its range changes the answer" in check.reason
    assert "cut to the per-step glide limit or held at an obstacle" in check.reason
    assert "probe" not in check.reason
    # without the exact zero the same fraction is amber
    plain = {k: v for k, v in auto.items() if k != "range_sensitivity"}
    assert next(c for c in checks_for("DDRun", plain, tmp_path)
                if c.name == "out_of_range").status == AMBER
    # the band: the range term is 0, and says why
    src = mobility_source(Artifact(tmp_path, {"summary": {"law": "NeuralMobility"}}),
                          Artifact(tmp_path, {"summary": auto}))
    assert src["range_rel_u"] == 0.0 and src["range_exact_zero"] is True
    assert "0, exactly" in src["method"] and "never set the time step" in src["method"]


def test_auto_runs_the_probe_where_beyond_range_evaluations_set_the_dynamics(tmp_path):
    """Without the displacement limiter (dt_quantile 1: the fastest dislocation sets dt)
    and a top stress of 150 MPa, the evaluations beyond it set the time step and their
    own glide: law-set > 0, so "auto" runs the probe, and c_t there moves the flow
    stress."""
    law = counted_drag(150.0)
    settings = DDSettings(**SMALL, realisations=1, dt_quantile=1.0, range_probe="auto")
    (tmp_path / "dd").mkdir()
    s = write_ddrun(settings, MAT, law, tmp_path / "dd", limit=LIMIT)
    assert s["out_of_range_law_set_fraction"] > 0
    run = json.loads((tmp_path / "dd" / "run.json").read_text())
    b = run["realisations"][0]["beyond_range"]
    assert 0 < b["law_set"] <= b["beyond"] and b["dt_sensitive_steps"] > 0
    rng = s["range_sensitivity"]
    assert rng["run"] is True and rng["exact_zero"] is False
    assert "1 of 1 runs" in rng["why_run"]
    assert abs(rng["rel_change"]) > 0.05, rng
    rows = read_csv(tmp_path / "dd" / "range_probe.csv")
    assert float(rows[0]["out_of_range_law_set_fraction"]) == pytest.approx(
        s["out_of_range_law_set_fraction"])
    assert math.isclose(float(rows[0]["rel_change"]), rng["rel_change"])


def test_auto_runs_the_probe_where_only_a_non_reference_condition_is_law_set(tmp_path):
    """A study of two strain rates with a top stress of 200 MPa and dt_quantile 0.5: the
    reference condition (1e5 /s) has evaluations beyond the range but none law-set, the
    other (1.5e5 /s) has some that set the time step; "auto" runs the probe (any run of
    the study counts, not only the reference's)."""
    from scalebridge.dd_coupling.study import DDStudySettings
    law = counted_drag(200.0)
    settings = DDSettings(**SMALL, realisations=1, dt_quantile=0.5, range_probe="auto",
                          study=DDStudySettings(strain_rates_s=[1e5, 1.5e5],
                                                temperatures_k=[300.0]))
    ref = settings.model_copy(update={"study": None})
    b_ref = ref.run_realisation(MAT, law, settings.seed)["beyond_range"]
    assert b_ref["beyond"] > 0 and b_ref["law_set"] == 0            # reference: none
    (tmp_path / "dd").mkdir()
    s = write_ddrun(settings, MAT, law, tmp_path / "dd", limit=LIMIT)
    rng = s["range_sensitivity"]
    assert rng["run"] is True and rng["exact_zero"] is False
    assert "1 of 2 runs" in rng["why_run"]
    assert "glide evaluations whose velocity reached the dynamics" in rng["why_run"]
    assert "source bow-outs" not in rng["why_run"]
    assert (tmp_path / "dd" / "range_probe.csv").exists()


def test_auto_runs_the_probe_where_source_bow_outs_are_timed_beyond_the_range(tmp_path):
    """nucleation = "bow_out" with the law trusted only to 30 MPa, below the sources'
    drive (~50 MPa Frank-Read strengths): the sources' bow-outs are timed beyond the
    range while, in this short run, no glide evaluation there is law-set; "auto" runs
    the probe and says it was the bow-outs."""
    law = counted_drag(30.0)
    settings = DDSettings(**{**SMALL, "final_strain": 5e-4}, realisations=1,
                          dt_quantile=0.5, nucleation="bow_out", range_probe="auto")
    (tmp_path / "dd").mkdir()
    s = write_ddrun(settings, MAT, law, tmp_path / "dd", limit=LIMIT)
    run = json.loads((tmp_path / "dd" / "run.json").read_text())
    b = run["realisations"][0]["beyond_range"]
    assert b["source_bow_outs"] > 0 and b["law_set"] == 0
    rng = s["range_sensitivity"]
    assert rng["run"] is True and rng["exact_zero"] is False
    assert f"{b['source_bow_outs']} source bow-outs timed there" in rng["why_run"]
    assert "glide evaluations" not in rng["why_run"]


def test_a_law_against_the_stress_beyond_its_range_counts_as_law_set():
    """A law that fails the dissipation check (v·τ < 0: a negative drag, which
    allow_failed_checks lets through) moves held dislocations free when made faster
    with the right sign: every evaluation beyond its range counts as law-set."""
    vr = ValidRange(tau_mpa=(0.0, 100.0), temperature_k=(0.0, 1000.0))
    law = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=-5e-5, valid_range=vr)
    settings = DDSettings(**SMALL, realisations=1, dt_quantile=0.5)
    b = settings.run_realisation(MAT, law, 0)["beyond_range"]
    assert b["beyond"] > 0 and b["law_set"] == b["beyond"]


def test_the_exact_zero_does_not_cover_a_temperature_outside_the_law(tmp_path):
    """The exact zero is the stress bound's: evaluations a (neural) law counts out of range
    by temperature or character alone are an extrapolation it does not cover, so the
    out-of-range fraction keeps its own grade, and the method and the verdict say why.
    On a real small run's records with such evaluations added to the law's count as a
    neural law at a temperature it was not trained at would count them."""
    from scalebridge.dd_coupling.simulate import range_exact_zero_result

    law = counted_drag(300.0)
    settings = DDSettings(**SMALL, realisations=2, dt_quantile=0.5, range_probe="auto")
    out = write_ddrun(settings, MAT, law, tmp_path, limit=LIMIT)
    runs = json.loads((tmp_path / "run.json").read_text())["realisations"]
    assert out["range_sensitivity"]["covers_out_of_range"] is True
    for r in runs:                      # the law's count: every evaluation out by T too
        b = r["beyond_range"]
        r["out_of_range_fraction"] = 1.0
        b["other_out_of_range"] = b["evaluations"] - b["beyond"]
    rng = range_exact_zero_result(runs, LIMIT, 1, 2, 0.5)
    assert rng["exact_zero"] is True and rng["covers_out_of_range"] is False
    assert rng["other_out_of_range_evaluations"] == sum(
        r["beyond_range"]["evaluations"] - r["beyond_range"]["beyond"] for r in runs)
    assert "does not cover" in rng["method"]
    hot = {**out, "out_of_range_fraction": 0.004, "range_sensitivity": rng}   # amber
    check = next(c for c in checks_for("DDRun", hot, tmp_path) if c.name == "out_of_range")
    assert check.status == AMBER
    assert "covers the stress bound only" in check.reason
    assert "outside the law's temperatures or characters" in check.reason
    # covered, the same amber fraction turns green
    cov = {**hot, "range_sensitivity": out["range_sensitivity"]}
    assert next(c for c in checks_for("DDRun", cov, tmp_path)
                if c.name == "out_of_range").status == GREEN
    # an artifact from before the count: its coverage is unknown, the grade stands
    old = {**hot, "range_sensitivity": {k: v for k, v in out["range_sensitivity"].items()
                                        if k not in ("covers_out_of_range",
                                                     "other_out_of_range_evaluations")}}
    c_old = next(c for c in checks_for("DDRun", old, tmp_path) if c.name == "out_of_range")
    assert c_old.status == AMBER and "does not record" in c_old.reason
