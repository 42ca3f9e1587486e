"""The report's answer says what its loads and band are conditional on, and the FEM's
section carries an informational limit-load cross-check against the DD's flow stress,
both from the artifacts' summaries as runs wrote them (the mo_bench47 fixture and the
numbers of runs/mo_bench80)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scalebridge.continuum.limit_load import limit_load_cross_check
from scalebridge.workflows.report import (
    answer_line,
    conditions_clause,
    limit_load_cross_check_line,
    not_covered_line,
    render_markdown,
)

DATA = Path(__file__).parents[1] / "data" / "mo_bench47_verdicts" / "mo_bench47.json"


def _bench47() -> dict[str, dict]:
    """The mo_bench47 run's summaries by kind, as its manifests held them."""
    doc = json.loads(DATA.read_text())
    return {st["kind"]: st["summary"] for st in doc["stages"]}


def _sections(summaries: dict[str, dict], path: Path | None = None) -> list[dict]:
    return [{"name": kind, "kind": kind, "raw_summary": sm, "summary": [], "path":
             (path / kind) if path else Path(kind), "seconds": None, "properties": [],
             "plots": [], "ovito": [], "paraview": []} for kind, sm in summaries.items()]


def test_answer_is_conditional_on_the_dds_one_glide_character():
    """mo_bench47: the DD glided edges, and the MD measured no screws; its τ₀ record
    predates the fixed-at-0 marking (error 0, not None): no τ₀ clause."""
    s = _bench47()
    answer = answer_line(_sections(s))
    assert answer.startswith("FEM final load 29.24 MPa, band [27.69, 30.78] MPa; ")
    assert answer.endswith("; conditional on edge-only glide in the DD (no screw mobility "
                           "measured)")
    assert conditions_clause(_sections(s)) == ("conditional on edge-only glide in the DD "
                                               "(no screw mobility measured)")


def test_answer_names_the_unused_screw_law_and_the_threshold_fixed_at_zero():
    """A mobility law with a screw drag the DD did not use (glide_character = edge) and an
    edge τ₀ the drag fit fixed at 0 by model selection (its note, no error): both in the
    clause; a τ₀ measured (with an error) is not."""
    s = _bench47()
    mob = {k: v for k, v in s["MobilityLaw"].items() if not k.startswith("drag_edge_tau0")}
    mob.update(drag_screw_b0_pa_s=1.9e-3, drag_screw_b0_err_pa_s=9e-4,
               drag_edge_tau0_mpa=0.0, drag_edge_tau0_mpa_k=0.0,
               drag_edge_tau0_note="fixed at 0 by model selection (chi2 + k ln n: 3.1 "
               "without a threshold (linear) against 5.2 with one (linear)); the best "
               "threshold model (linear) gives tau0 = 12 [-40, 64] MPa (its 95 % interval "
               "covers 0)")
    dd = {**s["DDRun"], "mobility": {**s["DDRun"]["mobility"],
                                     "why": "set: glide_character = edge"}}
    arts = _sections({**s, "MobilityLaw": mob, "DDRun": dd})
    want = ("conditional on edge-only glide in the DD (the screw law not used) and the "
            "edge glide threshold τ₀ = 0 (a model-selection choice)")
    assert conditions_clause(arts) == want
    assert answer_line(arts).endswith("; " + want)
    # a τ₀ the fit could not determine says why instead
    arts = _sections({**s, "DDRun": dd, "MobilityLaw": {
        **mob, "drag_edge_tau0_note": "fixed at 0, not fitted: one stress at 300 K (a "
        "threshold needs two or more distinct stresses at one temperature)"}})
    assert conditions_clause(arts).endswith(
        "the edge glide threshold τ₀ = 0 (not fitted: one stress at 300 K)")
    # measured: an error, no clause
    arts = _sections({**s, "DDRun": dd, "MobilityLaw": {
        **mob, "drag_edge_tau0_mpa": 40.0, "drag_edge_tau0_err_mpa": 6.0}})
    assert conditions_clause(arts) == ("conditional on edge-only glide in the DD (the "
                                       "screw law not used)")


def test_limit_load_cross_check_at_the_dds_reference_rate_without_a_bore_radius():
    """mo_bench47's FEM records q_lim/σ0 but not R_i (it predates r_inner_mm): the DD's
    reference condition (7e4 /s, 300 K: 57.13 MPa) gives σ_y = √3 τ and p_lim = 0.303 σ_y
    = 29.98 MPa against the FEM's final 29.24 MPa, -2.5 %."""
    s = _bench47()
    fem, dd = s["FieldResults"], s["DDRun"]
    chk = limit_load_cross_check(fem, dd, 0.0015)
    tau = 57.12582203617103
    assert chk["fem_rate_s"] is None and chk["dd_rate_s"] == 7e4
    assert chk["tau_flow_mpa"] == pytest.approx(tau)
    assert chk["p_lim_mpa"] == pytest.approx(0.3029521574320883 * math.sqrt(3) * tau)
    assert chk["p_lim_mpa"] == pytest.approx(29.98, abs=0.01)
    assert chk["rel_diff"] == pytest.approx(29.23627608118007 / chk["p_lim_mpa"] - 1)
    assert chk["rate_sensitivity"] == pytest.approx(0.467, abs=1e-3)   # 3 rates at 300 K
    assert chk["text"].startswith(
        "limit-load cross-check (informational, not graded): the perfectly plastic limit "
        "(2/√3) σ_y ln(Re/Ri) = 0.303 σ_y with σ_y = √3 τ_flow, the DD's flow stress at "
        "its reference rate 7e+04 /s: 29.98 MPa against the FEM's final load 29.24 MPa "
        "(-2.5 %); the FEM records no bore radius to give its strain rate")
    # no analytic limit for the problem, or no DD flow stress: nothing to say
    assert limit_load_cross_check({**fem, "reference": {}}, dd) is None
    assert limit_load_cross_check(fem, {"study": None}) is None


def test_the_fems_section_carries_the_cross_check_not_graded(tmp_path):
    """The report's FEM section (under its numbers, where limit_load is n/a) carries the
    cross-check's line; a FEM with a graded limit load (J2) does not."""
    s = _bench47()
    sections = _sections(s, tmp_path)
    line = limit_load_cross_check_line(sections)
    assert line is not None and "29.98 MPa against the FEM's final load 29.24 MPa" in line
    md = render_markdown(tmp_path, sections, "t")
    fem_part = md.split("## FieldResults: FieldResults")[1].split("\n## ")[0]
    assert "Limit-load cross-check (informational, not graded)" in fem_part
    assert md.count("Limit-load cross-check") == 1
    graded = _sections({**s, "FieldResults": {**s["FieldResults"],
                                              "limit_load_rel_error": 0.01}}, tmp_path)
    assert limit_load_cross_check_line(graded) is None
    assert "cross-check" not in render_markdown(tmp_path, graded, "t")


#: runs/mo_bench80 (the Mo example, 2026-12-06): the FEM's and DD's summaries as their
#: manifests hold them (the keys the cross-check reads), and the last row's displacement
#: of fem/load_displacement.csv
BENCH80_FEM = {
    "problem": "cylinder", "model": "source_families_j2",
    "max_load_mpa": 60.38471952749715, "final_load_mpa": 30.97959807588709,
    "reference": {"q_lim_over_sigma0": 0.3029521574320883, "r_inner_mm": 0.05,
                  "r_outer_mm": 0.065},
    "duration_s": 2.1e-08, "loading_time": "duration_s", "body_size_mm": 0.065,
    "final_time_s": 2.0999999999999996e-08, "temperature_k": None,
    "limit_load_rel_error": None,
    "limit_load_note": "no analytic limit load: the material is rate dependent (viscous "
    "flow above a static yield stress 0.1168 -> 0.1168 MPa over eps_p_eq <= 0.00132); the "
    "analytic limit holds for rate-independent perfect plasticity only",
    "load_name": "pressure_mpa", "displacement_name": "inner_displacement_mm"}
BENCH80_DD = {
    "reference_condition": {"strain_rate_s": 70000.0, "temperature_k": 300.0},
    "flow_stress_mpa": 65.70922756653484,
    "mobility": {"law": "NeuralMobility", "glide": "NeuralMobility[edge]",
                 "character": "edge", "why": "set: glide_character = edge"},
    "study": {"conditions": [
        {"strain_rate_s": 40000.0, "temperature_k": 300.0,
         "flow_stress_mpa": 49.62011986465338, "flow_stress_std_mpa": 4.516837890375623},
        {"strain_rate_s": 70000.0, "temperature_k": 300.0,
         "flow_stress_mpa": 65.70922756653484, "flow_stress_std_mpa": 1.923064084960892},
        {"strain_rate_s": 150000.0, "temperature_k": 300.0,
         "flow_stress_mpa": 94.69287442561553, "flow_stress_std_mpa": 5.007760125177362}],
        "strain_rates_s": [40000.0, 70000.0, 150000.0], "temperatures_k": [300.0]}}
BENCH80_DISPLACEMENT_MM = 7.5e-05


def test_limit_load_cross_check_at_the_fems_applied_rate():
    """mo_bench80: hoop strain 0.15 % at the 50 µm bore in 21 ns, 7.14e4 /s, the von
    Mises rate of a DD shear at 1.43e5 /s (γ̇ = 2 ε̇_θθ in plane strain); the DD's 94.69
    MPa at 1.5e5 /s scaled by (1.43e5/1.5e5)^m with the study's m over its three rates;
    σ_y = √3 τ, p_lim = 0.303 σ_y against the FEM's final 30.98 MPa."""
    chk = limit_load_cross_check(BENCH80_FEM, BENCH80_DD, BENCH80_DISPLACEMENT_MM)
    rate = 2 * 7.5e-5 / (0.05 * 2.1e-8)
    assert chk["fem_rate_s"] == pytest.approx(rate) and chk["dd_rate_s"] == 1.5e5
    x = [math.log(r) for r in (4e4, 7e4, 1.5e5)]
    y = [math.log(f) for f in (49.62011986465338, 65.70922756653484, 94.69287442561553)]
    mx, my = sum(x) / 3, sum(y) / 3
    m = (sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
         / sum((a - mx) ** 2 for a in x))
    assert chk["rate_sensitivity"] == pytest.approx(m)
    tau = 94.69287442561553 * (rate / 1.5e5) ** m
    assert chk["tau_flow_mpa"] == pytest.approx(tau)
    p_lim = 0.3029521574320883 * math.sqrt(3) * tau
    assert chk["p_lim_mpa"] == pytest.approx(p_lim)
    assert chk["rel_diff"] == pytest.approx(30.97959807588709 / p_lim - 1)
    text = chk["text"]
    assert (f"the DD's flow stress at 1.43e+05 /s: {p_lim:.4g} MPa against the FEM's final "
            f"load 30.98 MPa ({100 * (30.97959807588709 / p_lim - 1):+.1f} %)") in text
    assert ("the FEM's applied hoop strain rate at the bore, u(R_i)/(R_i t) = 7.14e+04 /s"
            in text and "γ̇ = 2 ε̇_θθ (plane strain, incompressible flow)" in text)
    assert f"τ_flow = the DD's 94.7 MPa at 1.5e+05 /s, 300 K × (1.43e+05/1.5e+05)^{m:.2g}" in text
    # a loading without physical time: the DD's reference condition, said why
    untimed = limit_load_cross_check({**BENCH80_FEM, "loading_time": None}, BENCH80_DD,
                                     BENCH80_DISPLACEMENT_MM)
    assert untimed["fem_rate_s"] is None
    assert untimed["tau_flow_mpa"] == pytest.approx(65.70922756653484)
    assert "the FEM records no physical time (1 s per step)" in untimed["text"]
    # a summary from before the FEM recorded its time: untimed too
    old = {k: v for k, v in BENCH80_FEM.items() if k not in ("loading_time", "duration_s")}
    assert limit_load_cross_check(old, BENCH80_DD, BENCH80_DISPLACEMENT_MM)[
        "fem_rate_s"] is None


def test_bench80_answer_is_conditional_on_edge_glide_and_the_fixed_threshold():
    """mo_bench80's MobilityLaw summary as written (a screw drag at 2.8 GPa the DD does
    not use; the edge τ₀ fixed at 0 by model selection) and its DD (glide_character =
    edge)."""
    mob = {"law": "NeuralMobility", "n_rows": 5, "tau_max_mpa": 2800.0,
           "drag_edge_b0_pa_s": 5.5414895620315326e-05,
           "drag_edge_b0_err_pa_s": 7.652678323086964e-06, "drag_edge_b0_dof": 2,
           "drag_edge_tau0_mpa": 0.0, "drag_edge_tau0_mpa_k": 0.0,
           "drag_edge_tau0_over_mu": 0.0,
           "drag_edge_tau0_note": "fixed at 0 by model selection (chi2 + k ln n: 3.19 "
           "without a threshold (v_s fitted) against 4.47 with one (v_s fitted)); the best "
           "threshold model (v_s fitted) gives tau0 = 11.27 [-53.06, 75.6] MPa (its 95 % "
           "interval covers 0)",
           "drag_screw_b0_pa_s": 0.001836241024037957,
           "drag_screw_b0_err_pa_s": 0.000569021896423352, "drag_screw_b0_dof": 0,
           "drag_screw_tau0_mpa": 0.0,
           "drag_screw_tau0_note": "fixed at 0, not fitted: one stress at 300 K (a "
           "threshold needs two or more distinct stresses at one temperature)"}
    band = {"fem_load_band_mpa": [23.242965459938787, 38.71623069183539],
            "final_load_mpa": 30.97959807588709, "max_load_mpa": 60.38471953,
            "max_load_band_mpa": [48.24148010553863, 72.52795895446137],
            "band_shares": {"potential": 0.034, "mobility": 0.77, "dd": 0.081,
                            "surrogate": 0.11}}
    arts = _sections({"MobilityLaw": mob, "DDRun": BENCH80_DD, "FieldResults": BENCH80_FEM,
                      "LoadBand": band})
    assert answer_line(arts) == (
        "FEM final load 30.98 MPa, band [23.24, 38.72] MPa; maximum load 60.38 MPa, band "
        "[48.24, 72.53] MPa; shares of the band's variance: potential 3.4%, mobility 77%, "
        "dd 8.1%, surrogate 11%; conditional on edge-only glide in the DD (the screw law "
        "not used) and the edge glide threshold τ₀ = 0 (a model-selection choice)")


#: runs/mo_bench81's fem summary ``mesh_convergence`` (the FEM re-solved with every element
#: size halved: 31.239 -> 31.246 MPa, 0.024 %)
BENCH81_MESH = {"h_ratio": 2, "levels": 2, "elements": [288, 1152],
                "final_load_mpa": [31.23906701998399, 31.246483895519063],
                "max_load_mpa": [64.29639171237551, 64.32415854274642],
                "rel_change_final": 0.00023736672452079718,
                "rel_change_max": 0.0004316703241824051, "wall_s": 3.093}


def test_a_screw_is_measured_where_the_laws_tops_have_it_and_the_report_says_it_once(
        tmp_path):
    """A character is measured where the MobilityLaw summary's ``tau_max_mpa_by_character``
    has it (a neural law need not carry a screw drag), the drag key only for summaries from
    before it. The report's line of what the band does not carry refers to the answer's
    glide conditions instead of repeating them, and names the FEM's mesh only where the
    FEM did not measure it (its mesh_convergence: the final load's change said instead)."""
    mob = {"law": "NeuralMobility", "tau_max_mpa": 2800.0,
           "tau_max_mpa_by_character": {"edge": 1500.0, "screw": 2800.0},
           "drag_edge_b0_pa_s": 6.08e-05, "drag_edge_b0_err_pa_s": 7.7e-06,
           "drag_edge_tau0_mpa": 0.0, "drag_edge_tau0_note": "fixed at 0 by model "
           "selection (chi2 + k ln n: 3.2 without a threshold against 4.5 with one)"}
    band = {"fem_load_band_mpa": [23.5, 38.98], "final_load_mpa": 31.24,
            "band_shares": {"potential": 0.0072, "mobility": 0.43, "dd": 0.57,
                            "surrogate": 0.0}}
    fem = {**BENCH80_FEM, "mesh_convergence": BENCH81_MESH}
    kinds = {"MobilityLaw": mob, "DDRun": BENCH80_DD, "FieldResults": fem, "LoadBand": band}
    cond = ("conditional on edge-only glide in the DD (the screw law not used) and the "
            "edge glide threshold τ₀ = 0 (a model-selection choice)")
    assert conditions_clause(_sections(kinds)) == cond      # no drag_screw_b0_pa_s
    edge_only = {**mob, "tau_max_mpa_by_character": {"edge": 1500.0},
                 "drag_screw_b0_pa_s": 1.5e-3}
    assert conditions_clause(_sections({**kinds, "MobilityLaw": edge_only})).startswith(
        "conditional on edge-only glide in the DD (no screw mobility measured) and ")
    md = render_markdown(tmp_path, _sections(kinds), "t")
    assert md.count("edge-only glide") == 1 and md.count("glide threshold τ₀") == 1
    line = next(x for x in md.splitlines() if x.startswith("Not in the band"))
    assert "every dislocation gliding" not in line
    assert "the glide the answer is conditional on (above)" in line
    assert "the FEM's mesh" not in line
    assert line.endswith("the FEM's time step and the inertia its quasi-static solve "
                         "neglects (its mesh is measured instead: every element size "
                         "halved moves the final load 0.024 %).")
    # without an answer above it, the line says it all; an unmeasured mesh is listed
    alone = not_covered_line(_sections({**kinds, "FieldResults": BENCH80_FEM}))
    assert ("every dislocation gliding with the edge law; the edge glide threshold τ₀ "
            "(fixed at 0 by model selection)") in alone
    assert alone.endswith("the FEM's mesh and time step, and the inertia its quasi-static "
                          "solve neglects")
    # a refined solve that stopped early measured nothing: the mesh stays listed
    stopped = {**fem, "mesh_convergence": {**BENCH81_MESH,
                                           "stopped_at_load_factor": [None, 0.8]}}
    assert "the FEM's mesh and time step" in render_markdown(
        tmp_path, _sections({**kinds, "FieldResults": stopped}), "t")
