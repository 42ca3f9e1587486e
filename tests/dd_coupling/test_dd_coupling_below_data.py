"""The DD's mobility evaluations below the lowest stress the law's data measured: the law
records that stress per character (``ValidRange.tau_lowest_mpa_by_character``, optional:
a law written before it loads as "not known"), counts the evaluations below it
(``n_below_data``) without refusing or clamping them, and the DD reports the share
(``below_data_fraction``) with the verdict's range row, not graded."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scalebridge.dd_coupling import DDSettings, FitMobilitySettings
from scalebridge.dd_coupling.engine import bow_out_times
from scalebridge.dd_coupling.inputs import Material
from scalebridge.dd_coupling.mobility import (
    DragScaledMobility,
    GlideCharacterMobility,
    LimitSpeedMobility,
    LinearDragMobility,
    ValidRange,
    count_below_data,
    load_mobility,
)
from scalebridge.dd_coupling.neural import NeuralMobility
from scalebridge.dd_coupling.simulate import below_data_summary, write_ddrun
from scalebridge.workflows.verdicts import NA, checks_for

from .conftest import (
    B_A,
    MU_GPA,
    NU,
    law_from_before,
    make_defect_stats,
    make_properties,
    sample_velocity_table,
)

MAT = Material(MU_GPA * 1e9, NU, B_A * 1e-10, lattice="bcc")
#: a small cell with strong forest obstacles (as the study tests): ~20 dislocations, ~1 s
SMALL = {"cell_lx_um": 0.5, "final_strain": 3e-3, "strain_rate_s": 1e5,
         "source_density_m2": 1.5e14, "obstacle_density_m2": 1e15, "output_points": 40}


def _rows() -> list[dict]:
    """Edges measured at ±100, 250, 500, 1500 MPa (the Mo example's grid), screws (3x
    the drag) from 300 to 2500 MPa, 300 K."""
    rng = np.random.default_rng(5)
    edges = sample_velocity_table(rng, 2e-5, 0.0, temps=(300.0,),
                                  tau_mpa=np.array([-1500, -500, -250, -100,
                                                    100, 250, 500, 1500.0]))
    screws = sample_velocity_table(rng, 6e-5, 0.0, temps=(300.0,),
                                   tau_mpa=np.array([-2500, -1400, -300, 300, 1400, 2500.0]))
    return edges + [{**r, "character": "screw"} for r in screws]


def test_a_fitted_law_counts_its_evaluations_below_the_lowest_data_stress(tmp_path):
    """The fitted laws (neural and drag) record each character's lowest measured stress
    beside a range that still starts at 0; an evaluation with 0 < |τ| below it is counted
    (per point's character, through every wrapper), never refused (policy "error") nor
    clamped; τ = 0 and the data's own stresses are not; the count is the run's only
    (bow-out times leave it); mobility.json carries it, and one written before loads with
    it "not known", the same range and the same velocities."""
    ds = make_defect_stats(tmp_path / "defects", _rows())
    props = make_properties(tmp_path / "props")
    art = FitMobilitySettings(members=2, epochs=30).make(ds, tmp_path / "mob",
                                                         properties=props)
    law = load_mobility(art.path, out_of_range="clamp")
    assert isinstance(law, NeuralMobility)
    r = law.valid_range
    assert dict(r.tau_lowest_mpa_by_character) == pytest.approx({"edge": 100.0,
                                                                 "screw": 300.0})
    assert r.tau_range("edge") == pytest.approx((0.0, 1500.0)) and r.tau_mpa[0] == 0.0
    doc = json.loads((art.path / "mobility.json").read_text())
    assert doc["valid_range"]["tau_lowest_mpa_by_character"] == pytest.approx(
        {"edge": 100.0, "screw": 300.0})

    def counted(lw, tau_mpa, char):
        n0, o0 = lw.n_below_data, getattr(lw, "n_out_of_range", 0)
        lw.velocity(np.asarray(tau_mpa, dtype=float) * 1e6, 300.0, char)
        return lw.n_below_data - n0, getattr(lw, "n_out_of_range", 0) - o0

    # edges: 50 and -99 below 100 MPa; 0 (v = 0 by oddness) and 100 are not; 2000 beyond
    assert counted(law, [0, 50, -99, 100, 250, -2000], 0) == (2, 1)
    assert counted(law, [200, 300, 2000], 1) == (1, 0)            # screws: below 300
    assert counted(law, [200, 200], np.array([0, 1])) == (1, 0)   # each its own character
    law.out_of_range = "error"
    assert counted(law, [50], 0) == (1, 0)                        # not refused
    law.out_of_range = "clamp"
    # the DD's glide laws: the glide character's stress for every character asked
    glide = GlideCharacterMobility(law, 0)
    assert glide.valid_range.lowest_tau_mpa("screw") == pytest.approx(100.0)
    assert GlideCharacterMobility(law, 1).valid_range.lowest_tau_mpa(0) == pytest.approx(300.0)
    n0 = law.n_below_data
    glide.velocity(np.array([50e6, 150e6]), 300.0, np.array([1, 1]))
    assert glide.n_below_data == law.n_below_data == n0 + 1
    assert DragScaledMobility(glide, 2.0).n_below_data == glide.n_below_data
    bounded = LimitSpeedMobility(law, (3000.0, 2000.0))
    bounded.velocity(np.array([20e6, 2000e6]), 300.0, np.array([0, 0]))
    assert bounded.n_below_data == n0 + 2 and bounded.n_replaced == 1
    before = law.n_below_data
    assert np.all(np.isfinite(bow_out_times(glide, np.array([20e6, 50e6]), MAT.mu_pa,
                                            MAT.b_m)))
    assert law.n_below_data == before                            # not the run's own

    # a mobility.json from before: the same range and velocities, the stress not known
    del doc["valid_range"]["tau_lowest_mpa_by_character"]
    old = load_mobility(law_from_before(art.path, doc, tmp_path / "old"),
                        out_of_range="clamp")
    assert old.valid_range.lowest_tau_mpa(0) is None and old.valid_range == r
    tau = np.array([50e6, 100e6, 700e6])
    assert np.array_equal(old.velocity(tau, 300.0, 0), law.velocity(tau, 300.0, 0))
    assert counted(old, [50, 20], 0) == (0, 0)
    note = below_data_summary(GlideCharacterMobility(old, 0), [None], 300.0)
    assert note["below_data_fraction"] is None
    assert note["below_data"]["note"].startswith("not known")

    # the drag law of the same data: the same stresses, counted the same way
    drag = load_mobility(FitMobilitySettings(law="drag").make(
        ds, tmp_path / "drag", properties=props).path)
    assert isinstance(drag, LinearDragMobility)
    assert drag.valid_range.tau_lowest_mpa_by_character == r.tau_lowest_mpa_by_character
    assert counted(drag, [0, 50, -99, 100, 2000], 0) == (2, 0)
    assert "n_below_data" not in drag.config()


def test_valid_range_lowest_stress_round_trip_and_checks():
    r = ValidRange(tau_mpa=(0.0, 1500.0), temperature_k=(300.0, 300.0),
                   tau_lowest_mpa_by_character={"screw": 300.0, "edge": 100.0})
    assert r.tau_lowest_mpa_by_character == (("edge", 100.0), ("screw", 300.0))
    back = ValidRange.from_json(json.loads(json.dumps(r.to_json())))
    assert back.tau_lowest_mpa_by_character == r.tau_lowest_mpa_by_character
    assert "tau_lowest_mpa_by_character" not in ValidRange().to_json()
    assert ValidRange().lowest_tau_mpa("edge") is None and r.lowest_tau_mpa(5) is None
    for bad in ({"edge": 0.0}, {"edge": math.nan}, {"bcc": 10.0}):
        with pytest.raises(ValueError, match="tau_lowest_mpa_by_character"):
            ValidRange(tau_lowest_mpa_by_character=bad)
    assert ValidRange.lowest_by_character(np.array([0, 0, 0, 1, 1]),
                                          np.array([0.0, -2e8, 3e8, 0.0, 0.0])) == {
        "edge": pytest.approx(200.0)}                 # a character only at τ = 0: none
    import torch
    tau = torch.tensor([50e6, 150e6, 250e6, 50e6], dtype=torch.float64)
    char = torch.tensor([0, 0, 1, 7])                 # an unknown index: not known
    assert count_below_data(r, tau, char) == 2
    assert count_below_data(ValidRange(), tau, char) == 0
    # an analytic law: nothing recorded, nothing counted, "not applicable"
    plain = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5)
    plain.velocity(np.array([1e6]), 300.0, 0)
    assert plain.n_below_data == 0
    rec = below_data_summary(GlideCharacterMobility(plain, 0), [None, None], 300.0)
    assert rec["below_data"]["note"].startswith("not applicable")


def test_the_dd_reports_the_share_below_the_data_without_changing_the_run(tmp_path):
    """A DD run counts its glide evaluations below the law's lowest measured stress: the
    same trajectory to the bit whatever that stress, a share that grows with it, None
    where it is not known; the summary has the worst realisation's and the mean, the
    record says what the law does there, and the verdict states it in a row of its own
    beside the range row, not graded."""
    def law(lowest):
        vr = ValidRange(tau_mpa=(0.0, 1e4), temperature_k=(0.0, 1000.0),
                        tau_lowest_mpa_by_character={} if lowest is None else
                        {"edge": lowest, "screw": lowest})
        return LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5, valid_range=vr)

    s = DDSettings(**SMALL, realisations=1)
    runs = {lo: s.run_realisation(MAT, law(lo), s.seed) for lo in (None, 30.0, 1e6)}
    for lo, res in runs.items():
        assert np.array_equal(res["trace"], runs[None]["trace"]), lo
    f = {lo: res["below_data_fraction"] for lo, res in runs.items()}
    assert f[None] is None
    assert 0 < f[30.0] < f[1e6] <= 1.0    # measured 27 % and 93 % (7 %: locked, τ = 0)

    s2 = DDSettings(**SMALL, realisations=2)
    summary = write_ddrun(s2, MAT, law(30.0), tmp_path)
    per = [rr["below_data_fraction"] for rr in
           json.loads((tmp_path / "run.json").read_text())["realisations"]]
    assert summary["below_data_fraction"] == pytest.approx(max(per))
    assert summary["below_data_fraction_mean"] == pytest.approx(np.mean(per))
    rec = summary["below_data"]
    assert rec["lowest_measured_mpa"] == 30.0 and rec["graded"] is False
    assert rec["law_below"] == "the drag line extrapolated to v(0) = 0"
    assert 0.0 <= rec["sources_below_fraction"] <= 1.0
    checks = checks_for("DDRun", summary, tmp_path)
    names = [c.name for c in checks]
    assert names.index("below_data") == names.index("out_of_range") + 1
    c = checks[names.index("below_data")]
    assert c.status == NA and c.reason.startswith("not graded")
    assert " below the lowest MD stress, 30 MPa (" in c.reason and len(c.reason) <= 250
    # an analytic law (no data): no row
    plain = {**summary, **below_data_summary(
        GlideCharacterMobility(LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5), 0),
        [None, None], 300.0)}
    assert plain["below_data_fraction"] is None and not plain["below_data"]["applicable"]
    assert "below_data" not in [c.name for c in checks_for("DDRun", plain, tmp_path)]


@pytest.mark.parametrize("rule", ["bow_out", "overstress"])
def test_a_sources_bow_out_is_not_counted_as_glide(rule):
    """Under the bow-out rules every source above its strength asks the law for its
    bow-out velocity each step; that is not a dislocation gliding, and the fraction's
    denominator counts dislocations: with every stress below the data the fraction is
    the share of the gliding (τ ≠ 0) evaluations, at most 1, as under the clock rule."""
    vr = ValidRange(tau_mpa=(0.0, 1e4), temperature_k=(0.0, 1000.0),
                    tau_lowest_mpa_by_character={"edge": 1e6, "screw": 1e6})
    law = LinearDragMobility(burgers_m=MAT.b_m, b0_pa_s=5e-5, valid_range=vr)
    s = DDSettings(**SMALL, realisations=1, nucleation=rule)
    res = s.run_realisation(MAT, law, s.seed)
    assert 0.5 < res["below_data_fraction"] <= 1.0


def test_the_verdict_states_the_share_below_the_data_and_does_not_grade_it(tmp_path):
    base = {"final_dislocations": [300], "out_of_range_fraction": 0.0, "truncated": False}
    before = checks_for("DDRun", base, tmp_path)               # a run from before: no row
    assert "below_data" not in [c.name for c in before]
    how = "interpolated to v(0) = 0 by the law's zero-threshold form"
    summ = {**base, "below_data_fraction": 0.62, "below_data_fraction_mean": 0.553,
            "below_data": {"character": "edge", "lowest_measured_mpa": 100.0,
                           "law_below": how, "graded": False,
                           "sources_below_fraction": 0.8},
            "nucleation": {"rule": "bow_out_clock", "clock_of": "each_source"}}
    now = checks_for("DDRun", summ, tmp_path)
    assert [(c.name, c.status) for c in now if c.name != "below_data"] == [
        (c.name, c.status) for c in before]                    # nothing else moves
    c = next(c for c in now if c.name == "below_data")
    assert c.status == NA and c.value == 0.62
    assert c.reason == (
        "not graded (an assumption, not an error): 62 % of glide evaluations in the worst "
        "realisation (55 % on average) below the lowest MD stress, 100 MPa (edge): "
        f"{how}") and len(c.reason) <= 250
    assert "neither refused nor clamped" in c.detail
    assert "80 % of the sources are weaker than 100 MPa" in c.detail
    mean_clock = {**summ, "nucleation": {"rule": "bow_out_clock", "clock_of": "mean_source"},
                  "strengths_mpa": {"source": 52.0}}
    c = next(c for c in checks_for("DDRun", mean_clock, tmp_path) if c.name == "below_data")
    assert "the mean source strength, 52 MPa, below that stress too" in c.detail
    unknown = {**base, "below_data_fraction": None,
               "below_data": {"character": "edge", "lowest_measured_mpa": None,
                              "note": "not known: the law's range does not record it"}}
    c = next(c for c in checks_for("DDRun", unknown, tmp_path) if c.name == "below_data")
    assert c.status == NA and c.reason == (
        "not graded; glide evaluations below the lowest MD stress: not known: the law's "
        "range does not record it")
    # the neural law's record from the summary builder
    neural = NeuralMobility(1.5e9, 1000.0, 300.0, 1.0, ValidRange(
        (0.0, 1500.0), (300.0, 300.0), ("edge",), tau_lowest_mpa_by_character={"edge": 100.0}),
        n_members=1)
    rec = below_data_summary(GlideCharacterMobility(neural, 0), [0.5, 0.7], 300.0,
                             np.array([20e6, 90e6, 120e6, 140e6]))
    assert rec["below_data_fraction"] == 0.7
    assert rec["below_data_fraction_mean"] == pytest.approx(0.6)
    assert rec["below_data"]["law_below"] == how
    assert rec["below_data"]["sources_below_fraction"] == 0.5
