"""The report's verdicts and the FEM load band, on chain artifacts made in seconds
(a synthetic DD study with realisation scatter, a mobility law with a drag error, a
surrogate fitted to the DD, the FEM cylinder), plus the verdict rules on their own."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scalebridge.artifacts import produce
from scalebridge.errors import SettingsError
from scalebridge.plotting import CHECKED, axis_label, plot_data_file
from scalebridge.surrogates.train import SurrogateSettings
from scalebridge.workflows.band import (
    BandSettings,
    combine,
    effective_dof,
    make_band,
    t_coverage,
)
from scalebridge.workflows.chain import Chain, StageNode
from scalebridge.workflows.report import (
    MAX_LINKED_PLOTS,
    answer_line,
    write_report,
    write_run_report,
)
from scalebridge.workflows.verdicts import (
    AMBER,
    GREEN,
    NA,
    RED,
    THRESHOLDS,
    checks_for,
    run_verdicts,
    worst,
)

from .conftest import FEM
from .synthetic_chain import synthetic_ddrun


def test_band_brackets_the_final_load_with_shares(chain_arts):
    _, arts, _ = chain_arts
    s = arts["band"].summary
    lo, hi = s["fem_load_band_mpa"]
    final = arts["fem"].summary["final_load_mpa"]
    assert lo < final < hi
    assert s["final_load_mpa"] == pytest.approx(final)
    shares = s["band_shares"]
    assert set(shares) == {"potential", "mobility", "dd", "surrogate"}
    assert sum(shares.values()) == pytest.approx(1.0)
    # the DD scatter (8% spread over 3 realisations) dominates the small drag share; the
    # short surrogate fit's own flow-stress error (held-out paths) is carried as well
    assert shares["dd"] > 5 * shares["mobility"] and shares["potential"] == 0.0
    assert shares["surrogate"] > 0.0
    # without a fit per microstructure (a condition split) the surrogate's term is less
    # the dd term, the training realisations' noise it holds to first order
    assert s["sources"]["surrogate"]["rel_u"] == pytest.approx(math.sqrt(max(
        arts["surrogate"].summary["flow_model_rel_u"] ** 2
        - s["sources"]["dd"]["rel_u"] ** 2, 0.0)))
    assert "no potential" in s["sources"]["potential"]["note"]
    # the load responds to the scaled flow stress (a coupling, not a copy): the band's
    # relative half-width is close to k times the relative flow-stress uncertainty
    u, k = s["rel_uncertainty"], s["coverage_factor"]
    # k: Student's t at 95 % for the terms' effective degrees of freedom, above the
    # normal 1.96 because the DD and surrogate terms come from a few paths each (here
    # the surrogate's from its one held-out path: ν_eff below 1 counts as 1)
    nu, paths = s["effective_dof"], s["sources"]["surrogate"]["heldout_paths"]
    assert paths == arts["surrogate"].summary["n_val"]
    # its ν from its final term, less the dd term on this first-order route
    sur = s["sources"]["surrogate"]
    assert sur["dof"] == pytest.approx(sur["rel_u"] ** 4 / (sur["input_rel_u"] ** 4 / paths))
    assert nu is not None and nu > 0 and k == pytest.approx(t_coverage(nu)) and k > 1.96
    assert s["coverage_level"] == 0.95
    assert s["scale_factors"] == pytest.approx([1 - u, 1 + u])
    assert (hi - lo) / (2 * final) == pytest.approx(k * u, rel=0.3)
    # linear propagation: symmetric about the load, k u times the solves' secant
    lo_s, hi_s = s["scaled_solve_loads_mpa"]
    assert lo_s < final < hi_s
    assert s["dload_dscale_mpa"] == pytest.approx((hi_s - lo_s) / (2 * u))
    assert (lo + hi) / 2 == pytest.approx(final)
    assert hi - final == pytest.approx(k * u * s["dload_dscale_mpa"])
    assert s["fem_solves"] == 2
    # the maximum load has its own band, from the scaled solves' own maxima
    lo_p, hi_p = s["scaled_solve_max_loads_mpa"]
    curve = np.loadtxt(arts["fem"].path / "load_displacement.csv", delimiter=",",
                       skiprows=1, usecols=3, ndmin=1)
    assert s["max_load_mpa"] == pytest.approx(curve.max()) and lo_p < curve.max() < hi_p
    assert s["dmax_load_dscale_mpa"] == pytest.approx((hi_p - lo_p) / (2 * u))
    plo, phi = s["max_load_band_mpa"]
    assert (plo + phi) / 2 == pytest.approx(curve.max())
    assert phi - plo == pytest.approx(2 * s["max_load_coverage_factor"] * u
                                      * s["dmax_load_dscale_mpa"])
    # a rerun of the chain differs from this one by sqrt(2) u: its interval is wider
    rlo, rhi = s["rerun_interval_mpa"]
    assert rhi - rlo == pytest.approx(math.sqrt(2) * (hi - lo))
    for f in ("band.json", "load_band.csv", "load_band.png",
              "members/low/load_displacement.csv", "members/high/load_displacement.csv"):
        assert (arts["band"].path / f).is_file(), f


def _dd_band(tmp_path: Path, scatter: float, n: int = 3, cross_validate: int = 2,
             damage: bool = False) -> tuple[Any, dict[str, Any]]:
    """A DD study (n microstructures x 3 strain rates), its surrogate and FEM, and the
    band's summary; ``damage``: one fold fit's record made non-finite first."""
    from scalebridge.surrogates.train import FOLDS_DIR

    dd = synthetic_ddrun(tmp_path / "dd", n=n, scatter=scatter,
                         study_scatter=(scatter, scatter))
    sur = SurrogateSettings(max_iterations=100, rollout_iterations=0,
                            cross_validate=cross_validate).make(dd, tmp_path / "surrogate")
    if damage:
        f = sorted((sur.path / FOLDS_DIR).glob("m*/surrogate.json"))[0]
        rec = json.loads(f.read_text())
        rec["elastic"]["shear_mpa"] = float("nan")
        f.write_text(json.dumps(rec))
    fem = FEM.make(sur, tmp_path / "fem")
    s = make_band(BandSettings(), FEM, {"fem": fem, "surrogate": sur, "dd": dd},
                  tmp_path / "band").summary
    return sur, s


def test_dd_term_is_measured_in_load_units_from_the_fits_without_each_microstructure(
        tmp_path):
    """A DD study (3 microstructures x 3 strain rates): the surrogate keeps its fit with
    each microstructure held out (surrogate/folds), the band solves the FEM with each and
    carries the DD term as sqrt(n - 1) x the sd of their loads, in MPa beside the flow
    stress's terms; the load's uncertainty is their root sum of squares and the band
    L ± k times it. The term follows the realisations' scatter: 8x the scatter (2 % ->
    16 %), 8x the term (7.7 measured)."""
    from scalebridge.surrogates.train import fold_models

    terms = {}
    for scatter in (0.02, 0.16):
        sur, s = _dd_band(tmp_path / str(scatter), scatter)
        ss = sur.summary
        assert ss["heldout_split"] == "microstructure" and len(ss["fold_models"]) == 2
        assert ss["microstructures"] == 3 and ss["training_noise_rel_u"] > 0
        assert [lab for lab, _ in fold_models(sur.path)] == [
            int(f.rsplit("m", 1)[1]) for f in ss["fold_models"]]
        loads = s["fold_loads_mpa"]
        assert len(loads) == 3 and loads[0] == pytest.approx(s["final_load_mpa"])
        d = s["band_contributions_mpa"]["dd"]
        assert d == pytest.approx(math.sqrt(2) * np.std(loads, ddof=1))
        assert s["sources"]["dd"]["load_u_mpa"] == pytest.approx(d)
        assert s["sources"]["dd"]["rel_u"] == pytest.approx(ss["training_noise_rel_u"])
        assert "note" not in s["sources"]["dd"]
        c = s["band_contributions_mpa"]
        assert s["load_uncertainty_mpa"] == pytest.approx(
            math.sqrt(sum(v * v for v in c.values())))
        lo, hi = s["fem_load_band_mpa"]
        # k for the terms' ν_eff: the DD term from 3 fits has 2 degrees of freedom
        assert s["sources"]["dd"]["dof"] == 2
        nu = effective_dof({k: (c[k], s["sources"][k].get("dof")) for k in c})
        assert s["effective_dof"] == pytest.approx(nu)
        assert hi - s["final_load_mpa"] == pytest.approx(
            t_coverage(nu) * s["load_uncertainty_mpa"])
        assert (lo + hi) / 2 == pytest.approx(s["final_load_mpa"])
        assert s["band_shares"]["dd"] == pytest.approx(d ** 2 / s["load_uncertainty_mpa"] ** 2)
        assert s["fem_solves"] == 4
        band_dir = tmp_path / str(scatter) / "band"
        for lab, _ in fold_models(sur.path):
            assert (band_dir / "members" / f"m{lab}" / "load_displacement.csv").is_file()
        # the curve's band holds the DD term point by point: at the last point, the final's
        band = np.loadtxt(band_dir / "load_band.csv", delimiter=",", skiprows=1, ndmin=2)
        assert band[-1, 4] - band[-1, 2] == pytest.approx(hi - s["final_load_mpa"], rel=1e-6)
        terms[scatter] = d
    assert 4.0 < terms[0.16] / terms[0.02] < 12.0


def test_dd_term_needs_a_fit_per_microstructure(tmp_path):
    """Four microstructures: with cross_validate = 2 one was never held out, so the fits
    cannot measure the training noise (None, not 0) and the band takes the DD term through
    the flow stress (sd/mean/sqrt(n)), removing it from the surrogate's term to first
    order; with cross_validate = 3 every one was, and the factor is sqrt(n - 1) = sqrt(3).
    A fit the band cannot use (a damaged record) falls back the same way, with a note
    that makes the band amber."""
    sur, s = _dd_band(tmp_path / "cv2", 0.1, n=4, cross_validate=2)
    assert sur.summary["microstructures"] == 4 and sur.summary["training_noise_rel_u"] is None
    assert s["fold_loads_mpa"] is None and s["fem_solves"] == 2
    dd, su = s["sources"]["dd"], s["sources"]["surrogate"]
    assert "by_fits" not in dd and "sqrt" in dd["method"]
    assert su["rel_u"] == pytest.approx(math.sqrt(max(
        sur.summary["flow_model_rel_u"] ** 2 - dd["rel_u"] ** 2, 0.0)))
    sur, s = _dd_band(tmp_path / "cv3", 0.1, n=4, cross_validate=3)
    loads = s["fold_loads_mpa"]
    assert len(loads) == 4 and s["fem_solves"] == 5
    assert s["band_contributions_mpa"]["dd"] == pytest.approx(
        math.sqrt(3) * np.std(loads, ddof=1))
    _, s = _dd_band(tmp_path / "damaged", 0.1, damage=True)
    dd = s["sources"]["dd"]
    assert "unusable" in dd["note"] and s["fold_loads_mpa"] is None
    assert _status(checks_for("LoadBand", s, tmp_path), "sources") == AMBER


def test_the_drag_laws_threshold_uncertainty_reaches_the_band(tmp_path):
    """With the fitted drag law in the DD, τ₀'s standard error adds to the flow stress
    MPa for MPa; a neural law (which learns the threshold from the rows) adds nothing; a
    τ₀ the fit fixed at 0 (no error) adds nothing either, and the method says why."""
    from scalebridge.artifacts import Artifact
    from scalebridge.workflows.band import mobility_source

    (tmp_path / "run.json").write_text(json.dumps({
        "temperature_k": 300.0, "burgers_a": 2.74, "loading": {"strain_rate_s": 1e4}}))
    dd = Artifact(tmp_path, {"summary": {"flow_stress_mpa": 100.0,
                                         "density_end_m2": 1e13}})
    ms = {"drag_edge_b0_pa_s": 5e-5, "drag_edge_b0_err_pa_s": 5e-6,
          "drag_edge_tau0_mpa": 50.0, "drag_edge_tau0_err_mpa": 6.0}
    neural = mobility_source(Artifact(tmp_path, {"summary": {**ms, "law": "NeuralMobility"}}),
                             dd)
    drag = mobility_source(Artifact(tmp_path, {"summary": {
        **ms, "law": "LinearDragMobility"}}), dd)
    assert "threshold_rel_u" not in neural
    assert drag["threshold_rel_u"] == pytest.approx(0.06)
    assert drag["rel_u"] == pytest.approx(math.hypot(neural["rel_u"], 0.06))
    assert drag["rel_u"] > neural["rel_u"]
    assert "threshold tau0 50 +- 6 MPa" in drag["method"]
    fixed = {**ms, "law": "LinearDragMobility", "drag_edge_tau0_mpa": 0.0,
             "drag_edge_tau0_note": "fixed at 0 by model selection (chi2 + k ln n: ...)"}
    del fixed["drag_edge_tau0_err_mpa"]
    zero = mobility_source(Artifact(tmp_path, {"summary": fixed}), dd)
    assert "threshold_rel_u" not in zero and zero["rel_u"] == neural["rel_u"]
    assert zero["method"] == (f"{neural['method']}; threshold tau0 fixed at 0 by the fit's "
                              "model selection: not in the band")
    one = mobility_source(Artifact(tmp_path, {"summary": {
        **fixed, "drag_edge_tau0_note": "fixed at 0, not fitted: one stress at 300 K"}}), dd)
    assert one["rel_u"] == neural["rel_u"]
    assert one["method"].endswith("; threshold tau0 fixed at 0 (not fitted): not in the band")


def test_combine_attributes_variance_one_source_at_a_time():
    u, shares = combine({"potential": {"rel_u": 0.03}, "mobility": {"rel_u": 0.0},
                         "dd": {"rel_u": 0.04}})
    assert u == pytest.approx(0.05)
    assert shares == pytest.approx({"potential": 0.36, "mobility": 0.0, "dd": 0.64})
    assert combine({"dd": {"rel_u": 0.0}}) == (0.0, {"dd": 0.0})


def test_report_opens_with_verdicts_and_band(chain_arts):
    base, arts, _ = chain_arts
    run_dir = base / "run"
    run_dir.mkdir(exist_ok=True)
    nodes = []
    for name, art in arts.items():
        nodes.append(StageNode(name, art.kind, (), lambda call: None))
    write_report(run_dir, Chain(nodes), arts, title="synthetic")
    md = (run_dir / "report.md").read_text()
    head = md.split("| stage | artifact | seconds |")[0]
    assert "**Overall verdict:" in head and "| stage | verdict | checks |" in head
    assert "red: not to be used as physics" in head and "n/a: does not apply" in head
    for name in arts:
        assert f"| {name} | " in head
    assert "FEM final load" in head and "band [" in head and "dd " in head
    # this curve only rises (maximum = final): no upper yield to speak of; one above the
    # final load is called one, with what sets it
    assert "; maximum load " in head and "upper yield" not in head
    # what the band does not carry, beside it: here the FEM's own choices (this chain's DD
    # records no assumptions); the Mo example's DD adds its sources, obstacles, nucleation
    # rule, cell and glide character
    assert "Not in the band (held fixed, each a stated assumption): " in head
    assert "the inertia its quasi-static solve neglects" in head
    from scalebridge.workflows.report import not_covered_line

    mo_dd = {"assumptions": {"source": "Frank-Read τ = β μ b / L, β = 1",
                             "nucleation": "after 8 bow-out times", "cell_um": [1.5, 1.7321]},
             "mobility": {"character": "edge"}}
    text = not_covered_line([{"kind": "LoadBand", "raw_summary": {"x": 1}},
                             {"kind": "DDRun", "raw_summary": mo_dd}])
    assert text == ("Not in the band (held fixed, each a stated assumption): source "
                    "Frank-Read τ = β μ b / L, β = 1; nucleation after 8 bow-out times; a "
                    "1.5 x 1.73 µm 2D cell; every dislocation gliding with the edge law")
    assert not_covered_line([{"kind": "DDRun", "raw_summary": mo_dd}]) is None
    from scalebridge.workflows.report import band_line

    band = next(a for a in arts.values() if a.kind == "LoadBand")
    peaked = dict(band.summary, max_load_mpa=2.0 * band.summary["final_load_mpa"])
    line = band_line([{"kind": "LoadBand", "raw_summary": peaked}])
    assert "the maximum is an upper yield, which a rate-dependent material sets" in line
    # the key to the stresses, one clause per stage this run has
    key = next(line for line in head.splitlines() if line.startswith("Which stress is which"))
    assert "shear stress τ" in key and "per second" in key and "von Mises" in key
    assert f"the load is {axis_label(arts['fem'].summary['load_name'])}" in key
    v = json.loads((run_dir / "verdicts.json").read_text())
    assert set(v["by_stage"]) == set(arts) and v["overall"] in (GREEN, AMBER, RED)
    assert v["overall"] == worst(v["by_stage"].values())
    assert set(v["thresholds"]) == set(THRESHOLDS)
    # every check has a status and a reason; n/a says why
    for st in v["stages"]:
        for c in st["checks"]:
            assert c["status"] in (GREEN, AMBER, RED, NA) and c["reason"], c
    rows = {st["stage"]: {c["name"]: c for c in st["checks"]} for st in v["stages"]}
    assert rows["surrogate"]["heldout_vs_scatter"]["status"] in (GREEN, AMBER)
    assert rows["fem"]["limit_load"]["status"] == NA       # a hardening surrogate
    assert rows["dd"]["check_mobility"]["status"] == GREEN
    assert rows["band"]["sources"]["status"] == AMBER      # the potential not carried
    html = (run_dir / "report.html").read_text()
    assert "Overall verdict" in html and "verdicts.json" in html
    assert "report written" in html and "amber</span>: usable" in html
    # the table holds one short reason per check, the details follow it
    checks = [(st["stage"], c) for st in v["stages"] for c in st["checks"]]
    assert all(len(c["reason"]) <= 250 and "detail" in c for _, c in checks), checks
    detailed = [(st, c) for st, c in checks if c["detail"]]
    assert detailed and "### Details" in head
    table = head.split("### Details")[0]
    for st, c in detailed:
        assert f"**{st}/{c['name']}**: {c['detail']}" in head and c["detail"] not in table
        assert f"<details id='detail-{st}-{c['name']}'>" in html
    # the answer leads: the line under the title, before the verdicts
    b = arts["band"].summary
    lines = md.splitlines()
    assert lines[2].startswith("**Answer:** FEM final load "), lines[:4]
    assert f"band [{b['fem_load_band_mpa'][0]:.4g}, " in lines[2]
    assert "; maximum load " in lines[2] and "; shares of the band's variance: " in lines[2]
    assert " dd " in lines[2] and " surrogate " in lines[2]
    assert html.index("<b>Answer:</b>") < html.index("Overall verdict")
    # the band's own plot embedded, its helper solves' linked in a list
    embedded = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md)
    assert any(x.endswith("band/load_band.png") for x in embedded), embedded
    assert not [x for x in embedded if "/members/" in x]
    assert "Plots of the band's helper FEM solves" in md
    assert re.search(r"- members/low: \[load_displacement\]\([^)]*members/low/"
                     r"load_displacement\.png\)", md)
    # wide figures may use the page's width
    assert "img{max-width:100%" in html and "520px" not in html
    # no empty row: None, "" and [] stay in the summary, not in the tables
    assert not re.search(r"^\| [\w.]+ \| (None|\[\]|) \|$", md, re.M)


def test_a_partial_run_is_partial_not_green(chain_arts):
    """A run stopped early (scalebridge run --until dd): the stages that did not run are
    'not run' rows, and the overall line says 'partial run: k of n stages', never green,
    whatever the stages that ran say; no answer line without the FEM."""
    base, arts, _ = chain_arts
    run_dir = base / "partial"
    run_dir.mkdir(exist_ok=True)
    nodes = [StageNode(name, art.kind, (), lambda call: None) for name, art in arts.items()]
    made = {k: arts[k] for k in ("mobility", "dd")}
    write_report(run_dir, Chain(nodes), made, title="partial")
    md = (run_dir / "report.md").read_text()
    v = json.loads((run_dir / "verdicts.json").read_text())
    assert v["overall"] == "partial" and v["stages_run"] == 2 and v["stages_planned"] == 5
    assert v["worst_of_run"] == worst(v["by_stage"][k] for k in made)
    assert [st["stage"] for st in v["stages"]] == list(arts)
    assert {k: v["by_stage"][k] for k in ("surrogate", "fem", "band")} == dict.fromkeys(
        ("surrogate", "fem", "band"), "not run")
    line = next(x for x in md.splitlines() if x.startswith("**Overall verdict:"))
    assert "partial run: 2 of 5 stages" in line and "3 not run" in line
    assert "Overall verdict: 🟢" not in md and "Overall verdict: green" not in md
    for name in ("surrogate", "fem", "band"):
        assert f"| {name} | ⬜ not run | |" in md
    assert "not run: no artifact of this stage" in md and "**Answer:**" not in md
    html = (run_dir / "report.html").read_text()
    assert "partial run: 2 of 5 stages" in html and "⬜ not run" in html
    # the whole chain: no partial
    assert run_verdicts(arts, planned=[(n.name, n.kind) for n in nodes])["overall"] != "partial"


def _toy():
    spec = importlib.util.spec_from_file_location("wf_toy_chain_report",
                                                  Path(__file__).parent / "toy_chain.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _overall_line(run_dir):
    md = (run_dir / "report.md").read_text()
    return next(x for x in md.splitlines() if x.startswith("**Overall verdict:"))


def test_a_finished_run_rerun_with_until_is_still_complete(tmp_path):
    """The report is about the run directory: a finished run rerun with --until (which
    makes and returns only the stages up to it) keeps every stage whose artifact is
    current; a stage left stale by a changed setting is not run, and the line says
    where --until stopped."""
    toy = _toy()
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("30\n50\n")
    chain, run, cfg = toy.toy_chain(), tmp_path / "run", toy.toy_config(numbers)
    full = chain.run(run, cfg)
    write_run_report(run, chain, cfg, full)
    first = json.loads((run / "verdicts.json").read_text())
    assert first["overall"] != "partial" and list(first["by_stage"]) == list(full)
    made = chain.run(run, cfg, until="numbers")
    assert list(made) == ["numbers"]
    write_run_report(run, chain, cfg, made, until="numbers")
    v = json.loads((run / "verdicts.json").read_text())
    assert v["overall"] == first["overall"] and "not run" not in v["by_stage"].values()
    assert "stopped_after" not in v and "partial" not in _overall_line(run)
    assert "## total: Total" in (run / "report.md").read_text()
    # a changed setting of primes: primes and total are stale, so not current
    cfg2 = toy.toy_config(numbers, factor=2)
    made = chain.run(run, cfg2, until="numbers")
    write_run_report(run, chain, cfg2, made, until="numbers")
    v = json.loads((run / "verdicts.json").read_text())
    assert v["overall"] == "partial" and v["stages_run"] == 1 and v["stages_planned"] == 3
    assert v["by_stage"] == {"numbers": v["worst_of_run"], "primes": "not run",
                             "total": "not run"}
    line = _overall_line(run)
    assert "partial run: 1 of 3 stages" in line and "stopped after numbers" in line


def test_a_run_stopped_by_until_is_partial(tmp_path):
    """--until numbers on a new run directory: the later stages were never made, so the
    run is partial, and the line says where it stopped."""
    toy = _toy()
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("30\n50\n")
    chain, run, cfg = toy.toy_chain(), tmp_path / "run", toy.toy_config(numbers)
    made = chain.run(run, cfg, until="primes")
    write_run_report(run, chain, cfg, made, until="primes")
    v = json.loads((run / "verdicts.json").read_text())
    assert v["overall"] == "partial" and (v["stages_run"], v["stages_planned"]) == (2, 3)
    assert v["by_stage"]["total"] == "not run" and v["stopped_after"] == "primes"
    line = _overall_line(run)
    assert "partial run: 2 of 3 stages" in line and "stopped after primes" in line
    assert "1 not run" in line
    assert "stopped after primes" in (run / "report.html").read_text()


def test_answer_says_the_band_is_off_and_how_many_plots_are_not_linked(tmp_path):
    """The band turned off in the settings: the answer line says so (not 'did not
    run'); a stage with more helper-solve plots than are linked says how many more."""
    fem = Fake("FieldResults", {"final_load_mpa": 120.0}, tmp_path)
    off = answer_line([fem], band_planned=False)
    assert "off in the settings" in off and "did not run" not in off
    assert "the band stage did not run" in answer_line([fem])

    def build(work):
        for i in range(MAX_LINKED_PLOTS + 5):
            (work / "members" / f"m{i:02d}").mkdir(parents=True)
            (work / "members" / f"m{i:02d}" / "load_displacement.png").write_bytes(b"")
        return {}

    band = produce("LoadBand", tmp_path / "band", {}, {}, build)
    run = tmp_path / "run"
    run.mkdir()
    write_report(run, Chain([StageNode("band", "LoadBand", (), lambda call: None)]),
                 {"band": band})
    md = (run / "report.md").read_text()
    assert md.count("load_displacement](") == MAX_LINKED_PLOTS
    assert "- … 5 more in the stage's folder" in md
    assert "… 5 more in the stage&#x27;s folder" in (run / "report.html").read_text()


def test_every_plot_has_its_numbers_and_readable_ticks(chain_arts):
    _, arts, figs = chain_arts
    pngs = [p for a in arts.values() for p in Path(a.path).rglob("*.png")]
    assert len(pngs) >= 6
    for p in pngs:
        assert plot_data_file(p) is not None, f"{p.name}: no CSV beside it, no source named"
    # every plot of the surrogate, FEM and band went through save_figure, and none was
    # left with overlapping tick labels
    checked = {f.path.name for f in figs}
    for p in pngs:
        assert p.name in checked, f"{p} not saved by scalebridge.plotting.save_figure"
    assert [f for f in figs if f.overlaps_after] == []


# ---------------------------------------------------------------------- the rules
class Fake:
    def __init__(self, kind, summary, path):
        self.kind, self.summary, self.path = kind, summary, Path(path)


def _status(checks, name):
    return next(c for c in checks if c.name == name).status


def _range_probed(tmp_path: Path, d: float, err: float, tested: float, frac: float,
                  limit: dict[str, float]) -> Any:
    """The DD's out_of_range check for an example-like DD summary (worst realisation
    ``frac`` beyond the range, flow stress 57.13 ± 7.59 MPa over 3 realisations) whose
    range probe moved the flow stress by ``d`` ± ``err`` (relative) with ``tested`` of its
    evaluations beyond the range and c_t ``limit`` (m/s by character)."""
    base = {"final_dislocations": [300], "out_of_range_fraction": frac,
            "out_of_range_policy": "clamp", "flow_stress_mpa": 57.13,
            "flow_stress_std_mpa": 7.59, "mobility": {"character": "edge"},
            "out_of_range_fraction_mean": 0.011}
    rng = {"rel_change": d, "rel_change_err": err, "realisations": 3, "limit_m_s": limit,
           "strain_rate_s": 7e4, "temperature_k": 300.0, "out_of_range_fraction": tested,
           "dt_quantile": 0.8}
    return next(c for c in checks_for("DDRun", {**base, "range_sensitivity": rng}, tmp_path)
                if c.name == "out_of_range")


def test_potential_and_properties_against_dft(tmp_path):
    pot = checks_for("Potential", {"models": 2, "energy_mae_mev_per_atom": 81.0,
                                   "force_mae_ev_a": 0.3}, tmp_path)
    assert [c.status for c in pot] == [RED, AMBER, GREEN]
    assert "81" in pot[0].reason and "> 30" in pot[0].reason
    unscored = checks_for("Potential", {"models": 1}, tmp_path)
    assert _status(unscored, "energy_mae") == NA and _status(unscored, "ensemble") == AMBER
    (tmp_path / "properties.json").write_text(json.dumps({
        "a0_a": 3.17, "c11_gpa": 247.0, "c12_gpa": 170.0, "c44_gpa": 100.0,
        "nve_drift_ev_per_atom_ps": 2e-5, "flagged": False, "max_devi_f_ev_a": 0.02,
        "dft": {"a0_a": 3.168, "c11_gpa": 479.0, "c12_gpa": 164.0, "c44_gpa": 108.0,
                "source": {"c11_gpa": "fit"}}}))
    props = checks_for("Properties", {}, tmp_path)
    assert [_status(props, k) for k in ("a0", "c11", "c12", "c44", "nve_drift")] == [
        GREEN, RED, GREEN, GREEN, GREEN]
    assert "-48.4%" in next(c for c in props if c.name == "c11").reason
    # a negative drift keeps its sign in the reason (the table shows -3.194e-07); graded
    # on |drift|
    (tmp_path / "properties.json").write_text(json.dumps({"nve_drift_ev_per_atom_ps":
                                                          -3.194e-07}))
    nve = next(c for c in checks_for("Properties", {}, tmp_path) if c.name == "nve_drift")
    assert nve.status == GREEN and nve.value == pytest.approx(3.194e-07)
    assert nve.reason == "NVE drift -3.2e-07 eV/atom/ps (|drift| <= 0.0001)", nve.reason


def test_dd_surrogate_fem_rules(tmp_path):
    dd = checks_for("DDRun", {"final_dislocations": [4, 5], "out_of_range_fraction": 0.0,
                              "taylor_alpha": 1.27, "truncated": False,
                              "mobility_check": {"passed": False, "failed": "x",
                                                 "overridden": True}}, tmp_path)
    assert _status(dd, "dislocations") == RED and _status(dd, "check_mobility") == RED
    assert _status(dd, "taylor_alpha") == AMBER and _status(dd, "realisations") == GREEN
    # extrapolated mobility: the reason says what the DD did with it and whether its flow
    # stress follows the law's velocities at all (the drag probe); the grade is the share's
    probe = {"factor": 2.0, "dlnsigma_dlnb": -0.0829, "dlnsigma_dlnb_err": 0.1106}
    ex = checks_for("DDRun", {"final_dislocations": [300], "out_of_range_fraction": 0.0247,
                              "out_of_range_policy": "clamp", "drag_sensitivity": probe},
                    tmp_path)
    c = next(c for c in ex if c.name == "out_of_range")
    assert c.status == AMBER and c.reason == (
        "mobility evaluations outside the law's range, in the worst realisation: 2.47% "
        "(> 0.10%)")
    # what the DD did with them and the drag probe: the detail
    assert c.detail.startswith("Clamped at the law's top stress")
    assert "dln sigma/dln B = -0.08 ± 0.11" in c.detail
    # the range probe (clamp vs c_t beyond the range) grades what those evaluations
    # change: to the bit nothing -> green; a change beyond what a rerun moves -> the
    # fraction's grade stands; a probe whose runs had none beyond the range proves nothing
    def ranged(d, err, tested=0.0136, frac=0.0247):
        return _range_probed(tmp_path, d, err, tested, frac,
                             limit={"edge": 3843.3, "screw": 3843.3})

    same = ranged(0.0, 0.0)
    # the reason: the fraction, its bound, the probe's change and the rerun scatter
    # (the fraction's own grade named as such: a green mark beside "amber" is no
    # contradiction)
    assert same.status == GREEN and same.reason == (
        "mobility evaluations outside the law's range, in the worst realisation: 2.47% "
        "(amber on its own: > 0.10%); the range probe: no change to the flow stress "
        "(+0.0 ± 0.0 %), within the 10.8 % two reruns would differ by (computed)")
    # 7.59/57.13 sqrt(2/3)
    # the detail: the clamp, where the probe ran, what it saw, the limiter, the bound
    assert "to the bit" in same.detail and "c_t = 3843 m/s" in same.detail
    assert "at the reference condition, 7e+04 /s, 300 K, 1.4 % of their" in same.detail
    assert "against 1.1 % over the study" in same.detail and "dt_quantile 0.8" in same.detail
    # computed from the realisations' scatter, not two observed reruns: said so
    assert ("within the 10.8 % by which two reruns of the realisations would differ "
            "(computed: √2 × the standard error of the mean of 3 realisations)") in same.detail
    assert "clamped" in same.detail.lower() and "max_glide per step" in same.detail
    moved = ranged(-0.2, 0.05)
    assert moved.status == AMBER and "-20.0 ± 5.0 %" in moved.reason
    assert "up to 30.0 % at 95 %" in moved.reason and "beyond the 10.8 %" in moved.reason
    assert "would differ by 10.8 % (computed: √2 × the standard" in moved.detail
    assert "beyond the 10.8 % two reruns would differ by (computed)" in moved.reason
    # the probe as exposed as the graded worst realisation: the bound as it is
    near = ranged(0.02, 0.04, frac=0.0136)
    assert near.status == GREEN                              # 10 % <= 10.8 %
    assert "the range probe moves the flow stress by +2.0 ± 4.0 %, within" in near.reason
    assert ranged(0.02, 0.05, frac=0.0136).status == AMBER   # 12 % > 10.8 %
    idle = ranged(0.0, 0.0, tested=0.0)
    assert idle.status == AMBER and "tests nothing" in idle.reason
    assert "had no evaluation beyond the range" in idle.detail
    light = ranged(0.0, 0.0, tested=0.008)            # 2.47 % > 3 x 0.8 %: too little
    assert light.status == AMBER and "less than 1/3 of the worst" in light.reason
    assert "0.8 % against 2.47 %" in light.reason
    # below the study's mean (1.1 %), within 3x of the worst: scaled by 2.47/0.9 = 2.74
    assert ranged(0.0, 0.0, tested=0.009).status == GREEN
    assert ranged(0.0, 0.015, tested=0.009).status == GREEN    # 3 % x 2.74 = 8.2 %
    assert ranged(0.0, 0.02, tested=0.009).status == AMBER     # 4 % x 2.74 = 11.0 %
    red = ranged(0.0, 0.0, frac=0.08)
    assert red.status == RED and "beyond the red line" in red.reason     # stands
    for c in (same, moved, idle, light, red):
        assert len(c.reason) <= 250, c.reason
    warned = checks_for("DDRun", {"final_dislocations": [300], "out_of_range_fraction": 0.2,
                                  "out_of_range_policy": "warn"}, tmp_path)
    c = next(c for c in warned if c.name == "out_of_range")
    assert c.status == RED and "probe" not in c.reason
    assert "clamped" not in c.detail and "probe" not in c.detail
    clean = checks_for("DDRun", {"final_dislocations": [300], "out_of_range_fraction": 0.0,
                                 "out_of_range_policy": "clamp", "drag_sensitivity": probe},
                       tmp_path)
    c = next(c for c in clean if c.name == "out_of_range")
    assert c.status == GREEN and "probe" not in c.reason and c.detail == ""
    one = checks_for("DDRun", {"final_dislocations": [40]}, tmp_path)
    assert _status(one, "realisations") == AMBER and _status(one, "check_mobility") == NA
    sur = checks_for("Surrogate", {"checks_passed": True, "validation": {
        "rmse_mpa": 1.0, "out_of_range_fraction": 0.0},
        "realisation_scatter_rmse_mpa": 0.9}, tmp_path)
    assert [c.status for c in sur] == [GREEN, GREEN, GREEN, NA]   # time step: old record
    # a discrete-time surrogate: halving its step moves its paths by 10 % of σ_y
    step = checks_for("Surrogate", {"checks_passed": True, "validation": {"rmse_mpa": 1.0},
                                    "realisation_scatter_rmse_mpa": 9.41,
                                    "time_step_rel_change": 0.10,
                                    "time_step_rms_change_mpa": 9.6,
                                    "trained_dt_s": [3.4e-10, 1.26e-9]}, tmp_path)
    assert _status(step, "time_step") == AMBER
    assert "10.0% (> 2.0%)" in step[-1].reason and "1.26e-09 s" in step[-1].reason
    assert "9.6 MPa RMS, 1.02 x the DD scatter" in step[-1].detail
    assert "median von Mises flow stress" in step[-1].detail
    assert _status(checks_for("Surrogate", {"time_step_rel_change": 0.0},
                              tmp_path), "time_step") == GREEN
    iv = checks_for("Surrogate", {"checks_passed": True, "validation": {
        "rmse_mpa": 17.0, "out_of_range_fraction": 0.0},
        "realisation_scatter_rmse_mpa": 9.41, "heldout_vs_scatter_interval": [1.3, 2.4],
        "heldout_training_mean_ratio": 1.08, "heldout_another_realisation_ratio": 1.39},
        tmp_path)
    assert _status(iv, "heldout_vs_scatter") == AMBER
    assert iv[1].reason == ("held-out RMS error 17 MPa = 1.81 x the DD realisation scatter "
                            "9.41 MPa (green <= 1.25x)")
    # no record of the paths: the bootstrap interval it is (heldout_ratio_interval)
    assert iv[1].detail.startswith("Bootstrap 95 % interval 1.30-2.40 over the held-out paths")
    assert "training realisations scores 1.08x" in iv[1].detail
    assert "another DD realisation 1.39x" in iv[1].detail
    # cross-validated over microstructures: graded on the pooled ratio, folds listed
    cv = checks_for("Surrogate", {"checks_passed": True, "validation": {
        "rmse_mpa": 11.0, "out_of_range_fraction": 0.0},
        "realisation_scatter_rmse_mpa": 10.0, "heldout_fold_ratios": [1.1, 1.34, 2.3],
        "heldout_folds_ratio": 2.05, "heldout_folds_another_realisation_ratio": 1.45,
        "heldout_folds_training_mean_ratio": 1.25}, tmp_path)
    assert _status(cv, "heldout_vs_scatter") == RED        # 2.05 > 2, though 1.1 alone
    assert cv[1].reason == ("pooled held-out error 2.05x the DD realisation scatter 10 MPa, "
                            "each microstructure held out in turn: 1.10/1.34/2.30x (green "
                            "<= 1.25x)")
    # no record to name the microstructure by (its DD seed: see the test below)
    assert ("on its held-out microstructure: held-out RMS error 11 MPa = 1.10 x"
            ) in cv[1].detail
    assert ("Over the folds: another DD realisation 1.45x, the training mean 1.25x (both "
            "by construction)") in cv[1].detail
    assert "miss of the DD's mean" not in cv[1].detail
    # the record's per-condition bias names the condition the model misses most
    (tmp_path / "surrogate.json").write_text(json.dumps({"metrics": {"condition_bias": [
        {"strain_rate_s": 4e4, "temperature_k": 300.0, "paths": 3, "bias_ratio": 0.8,
         "mean_noise_ratio": 0.577},
        {"strain_rate_s": 1.5e5, "temperature_k": 100.0, "paths": 3, "bias_ratio": 1.6,
         "mean_noise_ratio": 0.577}]}}))
    named = checks_for("Surrogate", {"validation": {"rmse_mpa": 11.0},
                                     "realisation_scatter_rmse_mpa": 10.0}, tmp_path)
    assert ("miss of the DD's mean path: 1.5e+05 /s, 100 K, 1.60x the scatter (the mean "
            "of 3 itself ~0.58x") in named[1].detail
    (tmp_path / "surrogate.json").unlink()
    j2 = checks_for("Surrogate", {"checks_passed": None, "validation": {"rmse_mpa": 1.0}},
                    tmp_path)
    assert _status(j2, "heldout_vs_scatter") == NA
    fem = checks_for("FieldResults", {"limit_load_rel_error": 0.0016,
                                      "stopped_at_load_factor": None,
                                      "max_out_of_range_fraction": 0.2}, tmp_path)
    assert [c.name for c in fem] == ["material_checks", "limit_load", "elastic",
                                     "time_step", "mesh_convergence", "completed",
                                     "out_of_range"]
    assert [c.status for c in fem] == [NA, GREEN, NA, NA, NA, GREEN, RED]
    # the FEM stepping outside the steps its surrogate was fitted at
    for used, status in (([7e-10, 7e-10], GREEN), ([3.5e-10, 7e-10], GREEN),
                         ([2.1e-9, 2.1e-9], AMBER), ([2.1e-10, 7e-10], AMBER),
                         ([6e-9, 6e-9], RED)):
        c = checks_for("FieldResults", {"time_step_s": used,
                                        "material_trained_dt_s": [3.4e-10, 1.26e-9]},
                       tmp_path)
        assert _status(c, "time_step") == status, (used, c)
    ts = next(x for x in c if x.name == "time_step")
    assert "fitted at 3.4e-10 to 1.26e-09 s" in ts.reason and "4.76x outside" in ts.reason
    # one step is one value, a range reads "to" (not "7e-10-7e-10")
    one = checks_for("FieldResults", {"time_step_s": [7e-10, 7e-10],
                                      "material_trained_dt_s": [3.4e-10, 1.26e-9]}, tmp_path)
    assert ("FEM time step 7e-10 s, the surrogate was fitted at 3.4e-10 to 1.26e-09 s"
            == next(x for x in one if x.name == "time_step").reason)
    assert "not a learned model" in fem[0].reason
    # the run total decides (5.6 % of the points at the first plastic step, none after:
    # the example's cylinder); the worst step is named in the reason
    run = checks_for("FieldResults", {"stopped_at_load_factor": None,
                                      "max_out_of_range_fraction": 0.0556,
                                      "out_of_range_fraction": 0.0051}, tmp_path)
    assert _status(run, "out_of_range") == AMBER
    assert "worst step 5.56%" in run[-1].reason and "0.51%" in run[-1].reason
    bad = checks_for("FieldResults", {"stopped_at_load_factor": None,
                                      "max_out_of_range_fraction": 0.2,
                                      "out_of_range_fraction": 0.06}, tmp_path)
    assert _status(bad, "out_of_range") == RED


def test_heldout_detail_names_its_microstructure_and_what_its_interval_is(tmp_path):
    """The main split's held-out microstructure is named by its DD seed with the
    realisations run on it (mo_bench75: seed 3, realisations 3/9/15; it is not "the first
    of the folds" by any label the reader has), and its interval is said as what it is:
    ``heldout_ratio_interval`` is a percentile bootstrap over whole paths, which over 3
    paths reaches exactly their lowest and highest ratio, so it is their range, not a
    95 % interval; over enough paths the bootstrap interval it is."""
    per = [0.9742314262324278, 1.2238035982634694, 1.2902754677762351]   # mo_bench75
    rec = {"metrics": {"heldout_vs_scatter": {
        "ratio": 1.1707, "low": per[0], "high": per[2], "level": 0.95, "paths": 3,
        "per_path": per}},
        "data": {"heldout_microstructures": [3], "split": "microstructure",
                 "validation": [f"realisations/{i}/stress_strain.csv" for i in (3, 9, 15)]}}
    (tmp_path / "surrogate.json").write_text(json.dumps(rec))
    summ = {"checks_passed": True, "validation": {"rmse_mpa": 11.012,
                                                  "out_of_range_fraction": 0.0},
            "realisation_scatter_rmse_mpa": 9.406, "heldout_split": "microstructure",
            "heldout_vs_scatter_interval": [per[0], per[2]],
            "heldout_fold_ratios": [1.17, 1.51, 1.37], "heldout_folds_ratio": 1.33}
    c = next(c for c in checks_for("Surrogate", summ, tmp_path)
             if c.name == "heldout_vs_scatter")
    assert ("The main fit alone, on its held-out microstructure (DD seed 3: realisations "
            "3/9/15): held-out RMS error 11 MPa = 1.17 x the DD realisation scatter "
            "9.41 MPa, range over the 3 held-out paths (microstructures no training path "
            "was run on) 0.97-1.29: too few paths for a 95 % interval (a bootstrap over "
            "them gives this range)") in c.detail, c.detail
    assert "first of the folds" not in c.detail and "95% interval" not in c.detail
    # a bootstrap interval inside the paths' own range (many paths) is said as one
    h = rec["metrics"]["heldout_vs_scatter"]
    h.update(per_path=[0.8, 1.0, 1.1, 1.2, 1.3, 1.6], paths=6, low=0.95, high=1.4)
    (tmp_path / "surrogate.json").write_text(json.dumps(rec))
    summ["heldout_vs_scatter_interval"] = [0.95, 1.4]
    c = next(c for c in checks_for("Surrogate", summ, tmp_path)
             if c.name == "heldout_vs_scatter")
    assert ("bootstrap 95 % interval 0.95-1.40 over 6 paths (microstructures no training "
            "path was run on)") in c.detail, c.detail


def test_range_probe_bound_scales_to_the_worst_realisations_exposure(tmp_path):
    """The range probe runs at the reference condition, the graded fraction is the
    study's worst realisation: the probe's 95 % bound is scaled by worst / probed (2.47 %
    / 1.36 % = 1.82 here) before it is compared with the rerun scatter (10.8 %). A zero
    or small bound stays green; 8 %, within the scatter as it is, is 14.5 % scaled and
    amber, and green again where the probe saw as much as the worst realisation."""
    def ranged(d, err, tested=0.0136, frac=0.0247):
        return _range_probed(tmp_path, d, err, tested, frac, limit={"edge": 3843.3})

    zero = ranged(0.0, 0.0)
    assert zero.status == GREEN
    assert ("scaled to the worst realisation's exposure 2.47 % / 1.4 %: at most 0.0 %, "
            "within the 10.8 %") in zero.detail
    small = ranged(0.0, 0.02)                     # 4 % x 1.82 = 7.3 % <= 10.8 %
    assert small.status == GREEN and "1.4 %: at most 7.3 %, within" in small.detail
    flipped = ranged(0.02, 0.03)                  # 8 % <= 10.8 %, but 14.5 % scaled
    assert flipped.status == AMBER
    assert ("the range probe's bound, 8.0 % at 95 %, scaled to the worst realisation's "
            "exposure is 14.5 %, beyond the 10.8 % two reruns would differ by (computed)"
            ) in flipped.reason
    assert "2.47 % / 1.4 %: at most 14.5 %; two reruns" in flipped.detail
    assert len(flipped.reason) <= 250, flipped.reason
    assert ranged(0.02, 0.03, frac=0.0136).status == GREEN       # no scaling: 8 %
    # a probe more exposed than the worst realisation is not scaled down
    more = ranged(0.02, 0.04, tested=0.03)
    assert more.status == GREEN and "scaled" not in more.detail


MO_BENCH47_FIXTURE = (Path(__file__).resolve().parents[1] / "data" / "mo_bench47_verdicts"
                      / "mo_bench47.json")
NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _mo_bench47_runs(tmp_path):
    """(label, verdicts, old rows) of the Mo chain's run mo_bench47: rebuilt by
    rewrite_report from the repository's copy of what its verdicts read (a run directory
    of its stages' summaries and files). The old rows are the verdicts.json the run
    wrote, from before the reason/detail split."""
    from scalebridge.workflows.report import rewrite_report

    fix = json.loads(MO_BENCH47_FIXTURE.read_text())
    run = tmp_path / "mo_bench47"
    for st in fix["stages"]:
        d = run / st["stage"]
        d.mkdir(parents=True)
        (d / "manifest.json").write_text(json.dumps({
            "kind": st["kind"], "schema": 1, "fingerprint": "fixture",
            "summary": st["summary"]}))
        for name, text in st["files"].items():
            (d / name).write_text(text)
    # the Mo example's chain: the default one without the MD deformation run (a stage
    # of the chain without an artifact would be a "not run" row)
    (run / "settings.json").write_text(json.dumps({"md": {"deform": False}}))
    rewrite_report(run)
    out = [("fixture", json.loads((run / "verdicts.json").read_text()))]
    return out, {st["stage"]: st["checks"] for st in fix["verdicts"]}, run


def test_mo_bench47_reasons_are_short_and_lose_nothing(tmp_path):
    """Every reason of the Mo chain's run is at most 250 characters, and nothing the old,
    long reasons said is lost: each number of an old reason is in the new reason or
    detail, with the same grade; the report's table shows the reasons, its Details
    section the details."""
    runs, old, run_dir = _mo_bench47_runs(tmp_path)
    for label, v in runs:
        rows = {st["stage"]: st["checks"] for st in v["stages"]}
        assert list(rows) == list(old) and v["overall"] == AMBER, label   # every stage ran
        split = 0
        # checks added since mo_bench47, each n/a on its artifacts: the band's from
        # before ν_eff, a mobility without fit.json in the fixture, a FEM summary without
        # an elastic step, glide runs that did not record the model deviation, a DD
        # that did not record its sources' inserted plastic strain, a FEM that did not
        # record its body's size
        for stage, name, words in (
                ("band", "degrees_of_freedom", "before"),
                ("mobility", "glide_law", "no fit.json"),
                ("fem", "elastic", "no analytic elastic solution"),
                ("defects", "model_deviation", "before the glide runs recorded it"),
                ("dd", "glide_share", "before it was"),
                ("fem", "quasi_static", "no loading time or body size"),
                ("fem", "mesh_convergence", "not run")):
            (new,) = [c for c in rows[stage] if c["name"] == name]
            assert new["status"] == NA and words in new["reason"], (stage, new)
            rows[stage] = [c for c in rows[stage] if c is not new]
        for stage, checks in old.items():
            assert [c["name"] for c in rows[stage]] == [c["name"] for c in checks], stage
            for was, now in zip(checks, rows[stage], strict=True):
                where = (label, stage, now["name"])
                assert len(now["reason"]) <= 250, (where, now["reason"])
                assert now["status"] == was["status"], where
                text = now["reason"] + " " + now["detail"]
                # as numbers: "2%" and "2.0%" say the same
                lost = ({float(x) for x in NUMBER.findall(was["reason"])}
                        - {float(x) for x in NUMBER.findall(text)})
                if (stage, now["name"]) == ("defects", "replica_agreement"):
                    # redefined since: the median of an even count (6 points here) is the
                    # mean of the middle two, 21 %, where the upper one gave 22 %
                    assert lost == {22.0} and "±21%" in now["reason"], (where, text)
                    lost = set()
                assert not lost, (where, lost, was["reason"], text)
                split += bool(now["detail"])
        # the dd range check, the surrogate's held-out and time-step checks, the glide's
        # characters: each moved its long account into the detail
        assert split == 4, label
        dd = next(c for c in rows["dd"] if c["name"] == "out_of_range")
        assert "2.47 % / 1.4 %: at most 0.0 %" in dd["detail"]
    md = (run_dir / "report.md").read_text()
    table, details = md.split("### Details")
    assert "| stage | verdict | checks |" in table and "(details below)" in table
    assert "limiter" not in table and "displacement limiter" in details
    assert "- 🟢 **dd/out_of_range**: Clamped at the law's top stress" in details
    html = (run_dir / "report.html").read_text()
    # the table's link opens the folded entry it jumps to
    assert ("<a href='#detail-dd-out_of_range' onclick=\"document.getElementById("
            "this.hash.slice(1)).open=true\">details</a>") in html
    assert "<details id='detail-dd-out_of_range'><summary>" in html


def test_band_degrees_of_freedom_are_graded(tmp_path):
    """The band's ν_eff: green from 4 (the Mo example's 6, k 2.45), amber below, red
    below 2 (k above 4.3: one or two fits set the band's width); n/a where k was set by
    hand; green with k = 1.96 when every term's sd is known."""
    base = {"sources": {"dd": {"rel_u": 0.02}}, "fem_load_band_mpa": [28.15, 31.48],
            "final_load_mpa": 29.81, "coverage_level": 0.95}

    def dof(nu: float | None, k: float, **kw: Any) -> Any:
        return next(c for c in checks_for("LoadBand", {**base, "effective_dof": nu,
                                                        "coverage_factor": k, **kw},
                                          tmp_path) if c.name == "degrees_of_freedom")

    c = dof(5.96, 2.45)
    assert c.status == GREEN and c.value == 5.96
    assert c.reason == "effective degrees of freedom 6 (>= 4): k = 2.45 (Student's t at 95 %)"
    assert dof(3.0, 3.18).status == AMBER and dof(1.5, 12.7).status == RED
    assert dof(None, 1.96).status == GREEN and "known" in dof(None, 1.96).reason
    assert dof(3.0, 2.0, coverage_level=None).status == NA


def test_band_must_bracket_its_nominal_load(tmp_path):
    """A band whose scaled solves do not bracket the unscaled load is red (a load that
    is not monotone in the flow stress: seen with a rate-feedback surrogate, nominal
    38.29 MPa against a band [37.09, 38.11]); one that does is green."""
    srcs = {"dd": {"rel_u": 0.02}}
    bad = checks_for("LoadBand", {"sources": srcs, "fem_load_band_mpa": [37.09, 38.11],
                                  "final_load_mpa": 38.29}, tmp_path)
    assert _status(bad, "brackets_nominal") == RED and "38.29" in bad[-1].reason
    assert "no uncertainty interval" in bad[-1].reason and "not monotone" in bad[-1].detail
    # a source not carried: named in the reason, why in the detail
    part = checks_for("LoadBand", {"sources": {**srcs, "potential": {
        "rel_u": 0.0, "note": "one model: no ensemble spread"}},
        "fem_load_band_mpa": [37.09, 38.11], "band_shares": {"dd": 1.0, "potential": 0.0}},
        tmp_path)
    assert part[0].status == AMBER and part[0].reason == (
        "final load in [37.09, 38.11] MPa; not carried: potential (dd 100%, potential 0%)")
    assert part[0].detail == "Potential: one model: no ensemble spread."
    good = checks_for("LoadBand", {"sources": srcs, "fem_load_band_mpa": [37.09, 38.11],
                                   "final_load_mpa": 37.6}, tmp_path)
    assert [c.status for c in good] == [GREEN, NA, GREEN]   # a band from before ν_eff
    none = checks_for("LoadBand", {"sources": srcs, "fem_load_band_mpa": None}, tmp_path)
    assert _status(none, "brackets_nominal") == NA
    # the band is symmetric about the load now: the solves' own loads are what is checked
    linear = {"sources": srcs, "fem_load_band_mpa": [37.2, 39.4], "final_load_mpa": 38.29,
              "scaled_solve_loads_mpa": [37.09, 38.11]}
    assert _status(checks_for("LoadBand", linear, tmp_path), "brackets_nominal") == RED
    linear["scaled_solve_loads_mpa"] = [37.5, 38.4]
    assert _status(checks_for("LoadBand", linear, tmp_path), "brackets_nominal") == GREEN


def test_model_gate_rows_name_what_failed_and_an_override(tmp_path):
    """The rows of the checks a stage ran on its model before using it (the DD's
    check_mobility, the FEM's check_constitutive): n/a without a record, green when it
    passed, red naming what failed and whether it was used anyway."""
    # (kind, summary key, row name)
    dd = ("DDRun", "mobility_check", "check_mobility")
    fem = ("FieldResults", "material_checks", "material_checks")
    failed_dd, failed_fem = {"passed": False, "failed": "odd"}, {"passed": False,
                                                               "failed_detail": "tangent"}
    for (kind, key, name), rec, status, reason in (
            (dd, None, NA, "not recorded (a DD run from before the gate)"),
            (dd, {"passed": True}, GREEN, "the mobility law passes check_mobility"),
            (dd, failed_dd, RED, "the mobility law FAILED odd"),
            (dd, {**failed_dd, "overridden": True}, RED,
             "the mobility law FAILED odd and was used anyway (allow_failed_checks)"),
            (fem, None, NA, "the material is not a learned model"),
            (fem, {"passed": True}, GREEN, "the material passes check_constitutive"),
            (fem, failed_fem, RED, "the material FAILED check_constitutive (tangent)"),
            (fem, {**failed_fem, "overridden": True}, RED,
             "the material FAILED check_constitutive (tangent) and was used anyway")):
        c = checks_for(kind, {key: rec} if rec is not None else {}, tmp_path)[0]
        assert (c.name, c.status, c.reason) == (name, status, reason), (kind, rec)


def test_glide_replicas_deformation_and_overall(tmp_path):
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,replicas,"
        "replicas_ok,status,reason\n"
        "edge,300,250,300,30,3,3,ok,\nedge,300,500,700,60,3,3,ok,\n"
        "edge,300,1000,0,0,3,1,too_few_replicas,1 of 3\n")
    g = checks_for("DefectStats", {"points": 3, "points_measured": 2, "replicas_min": 3},
                   tmp_path)
    assert _status(g, "measured_points") == AMBER and "too_few_replicas" in g[0].reason
    assert _status(g, "replica_agreement") == GREEN
    d = checks_for("DefectStats", {"frames": 13, "max_density_m2": 0.0}, tmp_path)
    assert d[0].status == AMBER and "no dislocation" in d[0].reason
    v = run_verdicts({"deform": Fake("DefectStats", {"frames": 1, "max_density_m2": 1e14},
                                     tmp_path),
                      "fem": Fake("FieldResults", {"limit_load_rel_error": 0.5}, tmp_path),
                      "x": Fake("Unknown", {}, tmp_path)})
    assert v["by_stage"] == {"deform": GREEN, "fem": RED, "x": NA} and v["overall"] == RED
    assert worst([NA, NA]) == NA and worst([]) == NA


@pytest.mark.parametrize("ratios, status, words", [
    (("0.97", "1.05", "0.9"), GREEN, "steady glide: first-half velocity 0.97 x"),
    (("0.78", "0.7", "0.8"), AMBER, "glide still accelerating: first-half velocity 0.78 x"),
    (("0.5", "0.4", "0.55"), RED, "lengthen equil_steps/run_steps"),
    (("1.02", "0.83", "1.1"), GREEN, "steady glide: first-half velocity 1.02 x"),
    (("1.3", "1.25", "1.4"), AMBER, "glide slowing down: first-half velocity 1.30 x"),
    (("2.0", "1.8", "2.5"), RED, "the glide region): the velocities are not free glide"),
    (None, NA, "no acceleration_ratio")])
def test_steady_glide_grades_the_median_acceleration_ratio(tmp_path, ratios, status, words):
    """Steady, accelerating and strongly accelerating glide, the same for a line that
    slows down (graded on 1/r, with its own reason), and an older table without the
    column (the first ratio of each triple is its median); a flagged point's ratio (0.1)
    does not count."""
    head = "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,status"
    rows = ["edge,300,250,300,30,ok", "edge,300,500,700,60,ok", "edge,300,1000,900,60,ok",
            "edge,300,50,,,unresolved"]
    if ratios is not None:
        head += ",acceleration_ratio"
        rows = [f"{r},{x}" for r, x in zip(rows, (*ratios, "0.1"), strict=True)]
    (tmp_path / "velocity.csv").write_text("\n".join([head, *rows]) + "\n")
    g = checks_for("DefectStats", {"points": 4, "replicas_min": 3}, tmp_path)
    c = next(c for c in g if c.name == "steady_glide")
    assert c.status == status and words in c.reason, c
    if ratios is not None:
        assert c.value == pytest.approx(float(ratios[0])) and "median of 3 points" in c.reason


def test_coverage_factor_follows_the_terms_degrees_of_freedom():
    """Welch–Satterthwaite and Student's t against their textbook values (GUM G.4): one
    term with 3 degrees of freedom is itself (t = 3.182); two equal such terms pool to 6
    (2.447); a term known well (None) does not lower ν_eff, and all known give the normal
    1.960; a term 10x smaller than its neighbour barely moves ν_eff."""
    assert effective_dof({"dd": (0.5, 3)}) == pytest.approx(3.0)
    assert t_coverage(3.0) == pytest.approx(3.182, abs=1e-3)
    assert effective_dof({"a": (0.5, 3), "b": (0.5, 3)}) == pytest.approx(6.0)
    assert t_coverage(6.0) == pytest.approx(2.447, abs=1e-3)
    # adding a term with many degrees of freedom raises ν_eff: (1 + 1)² / (1/3) = 12
    assert effective_dof({"a": (1.0, 3), "b": (1.0, None)}) == pytest.approx(12.0)
    assert effective_dof({"a": (1.0, None), "b": (0.0, 2)}) is None
    assert t_coverage(None) == pytest.approx(1.960, abs=1e-3)
    assert effective_dof({"a": (1.0, 3), "b": (0.1, 1)}) == pytest.approx(
        (1.01 ** 2) / (1 / 3 + 1e-4), rel=1e-9)
    # more fits, a narrower band for the same u: k falls towards the normal value
    ks = [t_coverage(effective_dof({"dd": (1.0, n - 1)})) for n in (3, 4, 8, 20)]
    assert all(a > b for a, b in itertools.pairwise(ks)) and ks[-1] > 1.96


def test_a_fresh_chain_has_the_band_node():
    from scalebridge.workflows.pipeline import build_chain
    from scalebridge.workflows.settings import parse_run_settings

    cfg = parse_run_settings({"continuum": {"band": {"coverage_factor": 2.0}}})
    names = [n.name for n in build_chain(cfg).nodes]
    assert names[-2:] == ["fem", "band"]
    assert cfg.continuum.band.coverage_factor == 2.0
    assert parse_run_settings({}).continuum.band.coverage_factor == "auto"
    for bad in (0.0, -1.0, "t"):
        with pytest.raises(SettingsError, match="coverage_factor"):
            parse_run_settings({"continuum": {"band": {"coverage_factor": bad}}})
    assert "band" not in cfg.continuum.fem().model_dump()      # not in the fem's settings
    off = parse_run_settings({"continuum": {"band": {"enabled": False}}})
    assert [n.name for n in build_chain(off).nodes][-1] == "fem"




def test_dd_plots_have_readable_strain_axes(tmp_path):
    """The DD's stress-strain and density plots (strain axes to 1e-3, where the labels
    overlapped): rendered, measured, fixed; each beside its CSV."""
    import math

    from scalebridge.artifacts import produce
    from scalebridge.dd_coupling import DDSettings
    from scalebridge.dd_coupling.mobility import LinearDragMobility, save_mobility

    doc = {"a0_a": 2.73 * 2 / math.sqrt(3), "shear_modulus_gpa": 125.0,
           "poisson_ratio": 0.3, "burgers_a": 2.73}

    def props(work):
        (work / "properties.json").write_text(json.dumps(doc))
        return {}

    def law(work):
        save_mobility(LinearDragMobility(burgers_m=2.73e-10, b0_pa_s=5e-5,
                                         saturation_m_s=3000.0), work)
        return {}

    p = produce("Properties", tmp_path / "props", doc, {}, props)
    m = produce("MobilityLaw", tmp_path / "mob", {"b0": 5e-5}, {}, law)
    n0 = len(CHECKED)
    dd = DDSettings(cell_lx_um=0.5, final_strain=1e-3, strain_rate_s=1e5,
                    nucleation_time_ns=2.0, source_density_m2=1.5e14,
                    obstacle_density_m2=3e14, output_points=40, realisations=2
                    ).make(m, p, tmp_path / "dd")
    figs = {f.path.name: f for f in CHECKED[n0:]}
    pngs = sorted(dd.path.rglob("*.png"))
    assert {"stress_strain.png", "density_strain.png"} <= {q.name for q in pngs}
    for q in pngs:
        assert q.name in figs, f"{q.name} not saved through save_figure"
        assert figs[q.name].overlaps_after == [], figs[q.name]
        assert plot_data_file(q) is not None, q


@pytest.mark.slow
def test_potential_ensemble_spread_reaches_the_band(tiny_potential, tiny_dataset):
    """Each DeePMD ensemble member's elastic constants (two tiny models): a spread in μ b
    that the band carries with sensitivity 1. And the verdicts of the real artifacts."""
    from scalebridge.workflows.band import potential_members, potential_source, unitless_keys

    v = run_verdicts({"dataset": tiny_dataset, "potential": tiny_potential})
    rows = {st["stage"]: {c["name"]: c for c in st["checks"]} for st in v["stages"]}
    assert rows["dataset"]["dft_reference"]["status"] == GREEN
    assert rows["dataset"]["test_split"]["status"] == GREEN
    assert rows["potential"]["ensemble"]["status"] == GREEN       # two models
    assert rows["potential"]["energy_mae"]["status"] == NA        # evaluate = false
    assert "not scored" in rows["potential"]["energy_mae"]["reason"]

    members = potential_members(tiny_potential, None)
    assert [m["model"] for m in members] == [0, 1]
    for m in members:
        assert all(np.isfinite(m[k]) for k in ("a0_a", "c11_gpa", "c44_gpa",
                                                "shear_modulus_gpa"))
        assert 2.8 < m["a0_a"] < 3.6
    src = potential_source(members)
    assert src["rel_u"] > 0 and src["members"] == 2 and src["sensitivity"] == 1.0
    assert set(src["member_rel_sd"]) == {"a0_a", "c11_gpa", "c12_gpa", "c44_gpa",
                                         "shear_modulus_gpa"}
    # the band's summary shows them as what they are, relative sds of no unit
    assert unitless_keys(src["member_rel_sd"]) == {
        k: src["member_rel_sd"][f"{k}_{u}"] for k, u in (
            ("a0", "a"), ("c11", "gpa"), ("c12", "gpa"), ("c44", "gpa"),
            ("shear_modulus", "gpa"))}


def test_potential_term_moves_the_flow_stress_by_one_minus_the_drag_response():
    """μ × f is the DD at B / f with every stress × f (strengths, field and loading in μ
    b units; with a clock of bow-out times the clock follows too), so the flow stress
    answers μ b with 1 − dln σ/dln B, the drag probe's slope under the DD's own rule,
    carried with the probe's error as the mobility term carries it. Without a probe:
    Taylor's 1; with typed strengths (overrides) the relation does not hold: 1, said."""
    from scalebridge.workflows.band import mu_sensitivity, potential_source

    def member(mu):
        return {"shear_modulus_gpa": mu, "burgers_a": 2.744, "a0_a": 3.168,
                "c11_gpa": 490.0, "c12_gpa": 155.0, "c44_gpa": 105.0}

    members = [member(125.0), member(129.0)]
    taylor = potential_source(members)
    assert taylor["sensitivity"] == 1.0 and "Taylor" in taylor["method"]
    probe = {"dlnsigma_dlnb": 0.42, "dlnsigma_dlnb_err": 0.06}
    clocked = potential_source(members, dd_summary={"drag_sensitivity": probe,
                                                    "overrides": []})
    assert clocked["sensitivity"] == pytest.approx(math.hypot(0.58, 0.06))
    assert clocked["rel_u"] == pytest.approx(clocked["sensitivity"] * taylor["rel_u"])
    assert "1 - dln(sigma)/dln(B) = 1 - 0.42" in clocked["method"]
    # the typed clock's probe: ~1, the same relation
    s, _ = mu_sensitivity({"drag_sensitivity": {"dlnsigma_dlnb": -0.02,
                                                "dlnsigma_dlnb_err": 0.03}})
    assert s == pytest.approx(math.hypot(1.02, 0.03))
    s, why = mu_sensitivity({"drag_sensitivity": probe,
                             "overrides": ["source_strength_mpa"]})
    assert s == 1.0 and "typed strengths" in why


def test_surrogate_source_is_its_heldout_flow_error_beyond_the_scatter():
    """A DD-fitted surrogate carries its held-out flow-stress error less the realisation
    scatter (sensitivity 1); an older DD-fitted record says it is not carried; one fitted
    to an analytic law carries nothing and says nothing."""
    from types import SimpleNamespace

    from scalebridge.surrogates.train import heldout_flow_error
    from scalebridge.workflows.band import surrogate_source

    dd_fit = SimpleNamespace(summary={"realisation_scatter_rmse_mpa": 9.6,
                                      "heldout_flow_rel_error": 0.15,
                                      "flow_model_rel_u": 0.12})
    src = surrogate_source(dd_fit)
    assert src["rel_u"] == 0.12 and src["sensitivity"] == 1.0 and "note" not in src
    old = surrogate_source(SimpleNamespace(summary={"realisation_scatter_rmse_mpa": 9.6}))
    assert old["rel_u"] == 0.0 and "predates" in old["note"]
    j2 = surrogate_source(SimpleNamespace(summary={}))
    assert j2["rel_u"] == 0.0 and "note" not in j2
    # the metric: 10 % and 20 % high on two paths, realisation scatter 9 %
    from scalebridge.surrogates import mandel
    from scalebridge.surrogates.data import StrainPaths

    tau = np.linspace(0.0, 50.0, 11)[None].repeat(2, axis=0)
    strain = mandel.shear_strain(np.linspace(0, 1e-3, 11))[None].repeat(2, axis=0)
    data = StrainPaths(strain, mandel.shear_strain(2.0 * tau), np.ones(2), np.full(2, 300.0),
                       np.ones(2))
    model = data.stress * np.array([1.1, 1.2])[:, None, None]
    h = heldout_flow_error(data, model, 0.09)
    assert h["rel_error"] == pytest.approx(np.sqrt((0.1 ** 2 + 0.2 ** 2) / 2))
    assert h["model_rel_u"] == pytest.approx(np.sqrt(h["rel_error"] ** 2 - 0.09 ** 2))
    assert heldout_flow_error(data, model, 0.5)["model_rel_u"] == 0.0


def test_training_noise_is_one_fits_spread_from_leave_one_out_fits():
    """Fits that are each the mean of the realisations they saw (n = 3 microstructures,
    each held out once): their spread is 1/sqrt(n - 1) of that of fits to independent
    sets, so training_noise gives σ/sqrt(n - 1), the sd of a fit to n - 1 realisations
    (σ = 10 % here, 4000 paths); the training realisations' noise then leaves the
    surrogate's held-out error (pooled_flow_error)."""
    from scalebridge.surrogates.train import pooled_flow_error, training_noise

    rng = np.random.default_rng(7)
    n, sigma = 3, 0.10
    x = 100.0 * (1.0 + sigma * rng.standard_normal((n, 4000)))   # realisations' flow
    fits = np.array([np.delete(x, k, axis=0).mean(axis=0) for k in range(n)])
    got = training_noise(fits, n)
    assert got == pytest.approx(sigma / math.sqrt(n - 1), rel=0.05)
    # the naive spread of the three fits would say 1/sqrt(n - 1) of it
    assert np.sqrt(np.mean((fits.std(axis=0, ddof=1) / fits.mean(axis=0)) ** 2)) \
        == pytest.approx(sigma / (n - 1), rel=0.05)
    assert training_noise(fits[:2], n) is None           # a microstructure never held out
    main = {"rel_error": 0.2, "model_rel_u": 0.1}
    rec = pooled_flow_error(0.15, 0.09, main, 0.05)
    assert rec["model_rel_u"] == pytest.approx(math.sqrt(0.15 ** 2 - 0.09 ** 2 - 0.05 ** 2))
    assert rec["training_noise_rel_u"] == 0.05
    assert pooled_flow_error(0.15, 0.09, main, 0.2)["model_rel_u"] == 0.0


def test_dd_source_pools_the_scatter_over_the_study(tmp_path):
    """Over a study the DD term is the flow stress's relative sd pooled over every
    condition (three realisations give an sd with two degrees of freedom), / sqrt(n):
    a reference condition with 2 % scatter beside one with 16 % gives their pooled
    value, not the reference's; one condition keeps the reference's sd/mean/sqrt(n)."""
    from scalebridge.surrogates.data import read_ddrun
    from scalebridge.surrogates.ensemble import flow_stress_distribution
    from scalebridge.workflows.band import dd_source

    one = dd_source(synthetic_ddrun(tmp_path / "one", scatter=0.02))
    ref = one["input_rel_u"]
    assert one["rel_u"] == pytest.approx(ref / math.sqrt(3)) and "pooled" not in one["method"]
    art = synthetic_ddrun(tmp_path / "study", scatter=0.02, study_scatter=(0.16,))
    src = dd_source(art)
    paths = read_ddrun(art.path)
    assert sorted(set(paths.strain_rate_s)) == [1e4, 2e4]
    pooled = flow_stress_distribution(paths)["rel_std"]
    assert src["input_rel_u"] == pytest.approx(pooled)
    assert src["rel_u"] == pytest.approx(pooled / math.sqrt(3))
    assert src["conditions"] == 2 and "pooled over the study's 2 conditions" in src["method"]
    # the reference's 2 % scatter alone would have been ~5x smaller
    assert src["reference_condition_rel_sd"] == pytest.approx(ref, rel=1e-6)
    assert pooled > 4 * ref


@pytest.mark.parametrize("ratio, status, words", [
    (0.95, GREEN, "fitted to steady glide: first-half velocity 0.95 x"),
    (0.7, AMBER, "the drag above it"),
    (0.5, RED, "lengthen the md runs"),
    (None, NA, "no acceleration ratio")])
def test_a_mobility_law_inherits_the_steadiness_of_its_glide(tmp_path, ratio, status, words):
    """A law fitted to accelerating glide has a drag biased high beyond its error bar: its
    stage says so with the md stage's thresholds, whatever its own fit quality."""
    g = checks_for("MobilityLaw", {"law": "LinearDragMobility", "drag_r2": 0.999,
                                   "drag_edge_b0_pa_s": 5e-5, "drag_edge_b0_err_pa_s": 5e-6,
                                   "n_rows": 6, "glide_acceleration_ratio": ratio}, tmp_path)
    c = next(c for c in g if c.name == "steady_glide")
    assert c.status == status and words in c.reason, c
    assert _status(g, "fit_r2") == GREEN


def _glide_fit(tmp_path, edge_chi2, edge_dof, kink=None, points=3, n_terms=None):
    fit = {"drag": {"edge": {"chi2_red": edge_chi2, "dof": edge_dof,
                             "by_temperature": [{"temperature_k": 300.0,
                                                 "n_points": points}]}},
           "kink_pair": kink}
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    if n_terms is not None:
        (tmp_path / "mobility.json").write_text(json.dumps(
            {"class": "NeuralMobility", "config": {"n_terms": n_terms}}))


@pytest.mark.parametrize("edge, kink, status, p", [
    ((0.97, 1), None, GREEN, 0.325),              # the Mo example's edge drag fit
    ((6.0, 1), None, AMBER, 0.0143),
    ((20.0, 1), None, RED, 7.7e-6),
    ((1.0, 2), {"chi2_red": 9.0, "dof": 3}, RED, 2.32e-5),   # the screws' law fails it
    ((1.2, 0), None, NA, None)])
def test_mobility_grades_the_md_against_the_physical_glide_law(tmp_path, edge, kink, status,
                                                              p):
    """The MD velocities against the drag (and kink-pair) laws fitted to them, by the χ²
    of their own errors: a check that fails when the data do not follow the physics,
    where a flexible law's R² on its own training points cannot; with no degree of
    freedom left it does not apply."""
    _glide_fit(tmp_path, *edge, kink=kink)
    g = checks_for("MobilityLaw", {"law": "LinearDragMobility", "drag_r2": 0.99,
                                   "n_rows": 3}, tmp_path)
    c = next(c for c in g if c.name == "glide_law")
    assert c.status == status, c
    if p is None:
        assert "no degree of freedom" in c.reason
    else:
        assert c.value == pytest.approx(p, rel=0.02)
        assert f"χ²_red {edge[0]:.2f} on {edge[1]} dof" in c.detail


@pytest.mark.parametrize("check, status, words", [
    ({"rel_error": 1.2e-4, "step": 1, "load_mpa": 4.1715, "analytic_mpa": 4.1720,
      "youngs_modulus_mpa": 328.9e3, "poisson_ratio": 0.2947,
      "analytic": "Lamé, plane strain, free outer wall"}, GREEN,
     "first load step (elastic) vs Lamé, plane strain, free outer wall: 0.012% (<= 1.000%)"),
    ({"rel_error": 0.03}, AMBER, "(> 1.000%)"),
    ({"rel_error": 0.1}, RED, "(> 5.000%)"),
    ({"note": "no load step before the first yield"}, NA, "no load step before"),
    (None, NA, "no analytic elastic solution")])
def test_fem_grades_its_elastic_step_against_theory(tmp_path, check, status, words):
    """The FEM's physics check that applies to any material: its first elastic step
    against the analytic solution (the run summary's ``elastic_check``), graded by the
    relative error; n/a with the reason where there is none."""
    summ = {"elastic_check": check} if check is not None else {}
    c = next(c for c in checks_for("FieldResults", summ, tmp_path) if c.name == "elastic")
    assert c.status == status and words in c.reason, c
    if status == GREEN:
        assert "4.1715 MPa against 4.172 MPa for E = 328.9 GPa, ν = 0.2947" in c.detail


@pytest.mark.parametrize("devi, status, words", [
    (0.12, GREEN, "model deviation in the glide runs 0.12 eV/Å below the threshold 0.3"),
    (0.45, AMBER, "model deviation in the glide runs 0.45 eV/Å above the threshold 0.3"),
    (None, NA, "before the glide runs recorded it")])
def test_glide_grades_the_model_deviation_at_the_loaded_cores(tmp_path, devi, status, words):
    """The ensemble's force deviation along the glide runs (the loaded core, where a
    learned potential leaves its data first), against the threshold that exports frames
    as DFT candidates."""
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,status\n"
        "edge,300,500,700,60,ok\n")
    g = checks_for("DefectStats", {"points": 1, "replicas_min": 3, "lattice": "bcc",
                                   "max_devi_f_ev_a": devi, "devi_threshold_ev_a": 0.3},
                   tmp_path)
    c = next(c for c in g if c.name == "model_deviation")
    assert c.status == status and words in c.reason, c


def test_a_neural_law_on_few_points_says_its_r2_is_a_training_check(tmp_path):
    """17 coefficients per curve through 3 MD points: R² ~ 1 whatever the physics, so the
    reason says it checks the training (the glide-law check grades the data); with more
    points per curve than coefficients it is the law's R² again."""
    summ = {"law": "NeuralMobility", "neural_r2": 0.9999, "n_rows": 3}
    _glide_fit(tmp_path, 0.97, 1, n_terms=4)
    r2 = next(c for c in checks_for("MobilityLaw", summ, tmp_path) if c.name == "fit_r2")
    assert r2.status == GREEN and r2.reason.startswith(
        "training converged: NeuralMobility (17 coefficients per curve; MD points per "
        "curve: edge 3) R²")
    # each character its own count (mo_bench75: edge 3, screw 1; not their mean, 2)
    fit = json.loads((tmp_path / "fit.json").read_text())
    fit["drag"]["screw"] = {"by_temperature": [{"temperature_k": 300.0, "n_points": 1}]}
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    r2 = next(c for c in checks_for("MobilityLaw", summ, tmp_path) if c.name == "fit_r2")
    assert "(17 coefficients per curve; MD points per curve: edge 3, screw 1) R²" in \
        r2.reason, r2.reason
    fit["drag"]["edge"]["by_temperature"].append({"temperature_k": 600.0, "n_points": 4})
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    r2 = next(c for c in checks_for("MobilityLaw", summ, tmp_path) if c.name == "fit_r2")
    assert "MD points per curve: edge 3-4, screw 1) R²" in r2.reason, r2.reason
    _glide_fit(tmp_path, 0.97, 1, points=40, n_terms=4)
    r2 = next(c for c in checks_for("MobilityLaw", summ, tmp_path) if c.name == "fit_r2")
    assert r2.reason.startswith("NeuralMobility R² on the MD velocities"), r2


@pytest.mark.parametrize("rows, lattice, status, words, more", [
    (["edge,ok", "screw,ok"], "bcc", GREEN, "edge and screw glide measured (edge at 1 "
     "stress, 500 MPa; screw at 1 stress, 500 MPa; one screw stress: its drag there, no "
     "kink-pair law)", ""),
    (["edge,ok", "screw,unresolved"], "bcc", AMBER, "edge glide only: the screw's mobility",
     "Peierls barrier sets the flow stress"),
    (["screw,ok"], "bcc", AMBER, 'set [md.mobility] characters = ["edge", "screw"]',
     "fast, drag-controlled edges are not measured"),
    (["edge,ok"], "fcc", AMBER, "the screw's mobility was not measured",
     "The law covers edge glide alone"),
    (["edge,unresolved"], "bcc", NA, "no glide point measured", "")])
def test_glide_says_which_characters_it_measured(tmp_path, rows, lattice, status, words,
                                                 more):
    """One character alone is amber, with what it leaves out (a screw row that did not
    resolve does not count as measured): the reason says which, the detail why it
    matters."""
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,status\n"
        + "".join(f"{c},300,500,700,60,{st}\n" for c, st in (r.split(",") for r in rows)))
    g = checks_for("DefectStats", {"points": len(rows), "replicas_min": 3,
                                   "lattice": lattice}, tmp_path)
    c = next(c for c in g if c.name == "characters")
    assert c.status == status and words in c.reason, c
    assert more in c.detail and (c.detail == "") == (more == ""), c


@pytest.mark.parametrize("dd_glides, verdict", [("edge", AMBER), ("screw", RED)])
def test_replicas_are_graded_per_character(tmp_path, dd_glides, verdict):
    """Three well-resolved edge points do not outvote one unresolved screw point (the
    median over all four would be green): each character is graded on its own; a red
    one the DD does not glide with is amber, saying why, and spoils nothing downstream."""
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,replicas,"
        "replicas_ok,status\n"
        "edge,300,250,1175,186,3,3,ok\nedge,300,500,1687,414,3,3,ok\n"
        "edge,300,1500,2369,177,3,3,ok\nscrew,300,2800,410,1867,2,2,ok\n")
    g = checks_for("DefectStats", {"points": 4, "replicas_min": 2, "lattice": "bcc"},
                   tmp_path)
    assert [c.name for c in g if c.name.startswith("replica")] == [
        "replica_agreement_edge", "replica_agreement_screw"]
    edge, screw = (next(c for c in g if c.name == f"replica_agreement_{x}")
                   for x in ("edge", "screw"))
    assert edge.status == GREEN and edge.reason.startswith("edge: 3+ replicas per point, "
                                                           "median 95% CI ±16%")
    assert screw.status == RED and "±455% of the velocity over 1 point" in screw.reason
    v = run_verdicts({"defects": Fake("DefectStats", {"points": 4, "replicas_min": 2,
                                                      "lattice": "bcc"}, tmp_path),
                      "dd": Fake("DDRun", {"mobility": {"character": dd_glides}}, tmp_path)})
    row = next(r for r in v["stages"] if r["stage"] == "defects")
    chk = next(c for c in row["checks"] if c["name"] == "replica_agreement_screw")
    assert row["verdict"] == verdict == chk["status"]
    assert ("nothing downstream uses the screw law" in chk["reason"]) == (verdict == AMBER)
    # one edge replica (replicas = 1), two screw ones (screw_replicas = 2): the screws
    # are still graded, under their own name
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,replicas,"
        "replicas_ok,status\nedge,300,250,1175,186,1,1,ok\nscrew,300,2800,410,1867,2,2,ok\n")
    g = checks_for("DefectStats", {"points": 2, "replicas_min": 1}, tmp_path)
    assert [c.name for c in g if c.name.startswith("replica")] == ["replica_agreement_screw"]
    # four edge points (the example's): the median of an even count is the mean of the
    # middle two, (0.159 + 0.245)/2 = 20 %, not the upper one's 25 %
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,replicas,"
        "replicas_ok,status\nedge,300,100,449,492.5,3,3,ok\nedge,300,250,1175,186,3,3,ok\n"
        "edge,300,500,1687,414,3,3,ok\nedge,300,1500,2369,177,3,3,ok\n")
    g = checks_for("DefectStats", {"points": 4, "replicas_min": 3}, tmp_path)
    rep = next(c for c in g if c.name == "replica_agreement")
    assert "median 95% CI ±20% of the velocity over 4 points" in rep.reason, rep.reason


@pytest.mark.parametrize("used, n, status", [(2, 2, GREEN), (1, 2, AMBER), (1, 1, NA),
                                             (None, None, NA)])
def test_glide_runs_say_whether_they_carried_the_ensemble(tmp_path, used, n, status):
    (tmp_path / "velocity.csv").write_text(
        "character,temperature_k,tau_mpa,velocity_m_s,velocity_ci95_m_s,replicas,status\n"
        "edge,300,250,300,30,3,ok\n")
    g = checks_for("DefectStats", {"points": 1, "replicas_min": 3, "members_driving": used,
                                   "ensemble_members": n}, tmp_path)
    assert _status(g, "ensemble_members") == status


def test_the_band_takes_b_s_effect_from_the_dd_drag_probe(tmp_path):
    """A measured dlnσ/dlnB (the DD's drag probe) sets the mobility term, not the study's
    rate sensitivity (which, with a typed nucleation time, also holds the sources'
    clock); the probe's error is carried (RMS sensitivity), so a response it cannot tell
    from zero, even a negative one, still counts by its error."""
    from scalebridge.artifacts import Artifact
    from scalebridge.workflows.band import mobility_source

    (tmp_path / "run.json").write_text(json.dumps({"temperature_k": 300.0}))
    study = {"conditions": [{"strain_rate_s": r, "temperature_k": 300.0,
                             "flow_stress_mpa": f} for r, f in ((4e4, 40.0), (1.6e5, 80.0))]}
    mob = Artifact(tmp_path, {"summary": {"law": "NeuralMobility", "drag_edge_b0_pa_s": 5e-5,
                                          "drag_edge_b0_err_pa_s": 1e-5}})

    def src(probe):
        sm = {"flow_stress_mpa": 50.0, "study": study}
        if probe is not None:
            sm["drag_sensitivity"] = {"dlnsigma_dlnb": probe, "dlnsigma_dlnb_err": 0.05,
                                      "factor": 2.0, "realisations": 3}
        return mobility_source(mob, Artifact(tmp_path, {"summary": sm}))

    rate, probed, negative = src(None), src(0.1), src(-0.05)
    assert rate["sensitivity"] == pytest.approx(0.5) and "rate sensitivity" in rate["method"]
    assert probed["sensitivity"] == pytest.approx(math.hypot(0.1, 0.05))
    assert probed["rel_u"] == pytest.approx(math.hypot(0.1, 0.05) * 0.2)
    assert "drag probe" in probed["method"] and "0.5" in probed["method"]
    # -0.05 +- 0.05: unresolved, carried as sqrt(2) x 0.05, the same as +0.05 would be
    assert negative["rel_u"] == pytest.approx(math.hypot(0.05, 0.05) * 0.2)
    # doubling the probe's error (same slope) widens the mobility term as predicted
    wide = mobility_source(mob, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "drag_sensitivity": {
            "dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.1, "factor": 2.0,
            "realisations": 3}}}))
    assert wide["rel_u"] == pytest.approx(math.hypot(0.1, 0.1) * 0.2)
    # the term's degrees of freedom: the probe's slope 0.1 measured to 0.05 carried as
    # S^2 + err^2, relative variance (4 S^2 err^2 + 2 err^4)/(S^2 + 2 err^2)^2 = 0.5: 4
    # alone, and with B's error resting on a drag fit of 2 residual dof
    # 2/((1 + 2/4)(1 + 2/2) - 1) = 1 (independent factors' relative variances)
    assert probed["dof"] == pytest.approx(4.0)
    few = Artifact(tmp_path, {"summary": {**mob.summary, "drag_edge_b0_dof": 2}})
    both = mobility_source(few, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "drag_sensitivity": {
            "dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.05, "factor": 2.0,
            "realisations": 3}}}))
    assert both["dof"] == pytest.approx(1.0) and both["rel_u"] == probed["rel_u"]
    assert "2/((1 + 2/4)(1 + 2/2) - 1) = 1" in both["method"]
    # a drag law's measured threshold adds its clause after it, not in its place
    drag = Artifact(tmp_path, {"summary": {**few.summary, "law": "LinearDragMobility",
                                           "drag_edge_tau0_mpa": 5.0,
                                           "drag_edge_tau0_err_mpa": 1.0}})
    with_t0 = mobility_source(drag, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "drag_sensitivity": {
            "dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.05, "factor": 2.0,
            "realisations": 3}}}))
    assert with_t0["method"].startswith(both["method"] + "; threshold tau0 5 +- 1 MPa")
    exact = Artifact(tmp_path, {"summary": {**mob.summary, "drag_edge_b0_dof": 0}})
    assert mobility_source(exact, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "drag_sensitivity": {
            "dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.05, "factor": 2.0,
            "realisations": 3}}}))["dof"] == pytest.approx(2 / (1.5 * 3 - 1))   # n = k: 1 at least
    # B's Welch-Satterthwaite dof is a fraction, carried as it is
    ws = Artifact(tmp_path, {"summary": {**mob.summary, "drag_edge_b0_dof": 2.4}})
    frac = mobility_source(ws, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "drag_sensitivity": {
            "dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.05, "factor": 2.0,
            "realisations": 3}}}))
    assert frac["dof"] == pytest.approx(2 / (1.5 * (1 + 2 / 2.4) - 1))
    assert "2/((1 + 2/4)(1 + 2/2.4) - 1) = 1.1" in frac["method"]
    # the range probe's bracket adds a rectangular term in quadrature
    rng = {"rel_change": -0.03, "rel_change_err": 0.04, "realisations": 3}
    ranged = mobility_source(mob, Artifact(tmp_path, {"summary": {
        "flow_stress_mpa": 50.0, "study": study, "range_sensitivity": rng,
        "drag_sensitivity": {"dlnsigma_dlnb": 0.1, "dlnsigma_dlnb_err": 0.05,
                             "factor": 2.0, "realisations": 3}}}))
    u_rng = math.sqrt(0.03 ** 2 / 3.0 + 0.04 ** 2)
    assert ranged["range_rel_u"] == pytest.approx(u_rng)
    assert ranged["rel_u"] == pytest.approx(math.hypot(probed["rel_u"], u_rng))
    assert "range probe" in ranged["method"]
    # carried even where the law has no drag uncertainty to carry
    bare = mobility_source(Artifact(tmp_path, {"summary": {"law": "NeuralMobility"}}),
                           Artifact(tmp_path, {"summary": {"range_sensitivity": rng}}))
    assert bare["rel_u"] == pytest.approx(u_rng) and bare["method"].startswith("beyond")


def test_band_paragraph_says_what_is_computed_and_each_terms_dof(tmp_path):
    """The band paragraph (mo_bench75's numbers): the rerun interval is computed from the
    band (L -/+ √2 k u), not two observed runs, and says so; each source's share has its
    term's degrees of freedom beside it (band.json ``sources.<s>.dof``), a term below 1
    flagged as barely determined. The line of what the band does not carry lists the
    edge glide threshold τ₀ the drag fit fixed at 0 (a note, no error) and the source
    families' static-strength floor (``fit.static_floor_mpa``)."""
    from scalebridge.workflows.report import band_line, not_covered_line

    band = {"fem_load_band_mpa": [25.398, 35.118], "final_load_mpa": 30.258,
            "load_uncertainty_mpa": 2.024, "coverage_factor": 2.401, "effective_dof": 6.512,
            "coverage_level": 0.95, "flow_rel_uncertainty": 0.0815,
            "rerun_interval_mpa": [23.385, 37.131],
            "band_shares": {"potential": 0.01625, "mobility": 0.7832, "dd": 0.1574,
                            "surrogate": 0.04315},
            "sources": {"potential": {"dof": 1}, "mobility": {"dof": 5}, "dd": {"dof": 5},
                        "surrogate": {"dof": 0.07254929497502355}}}
    line = band_line([{"kind": "LoadBand", "raw_summary": band}])
    assert ("; expected interval of a rerun's final load (computed: two runs differ by √2 "
            "× the uncertainty): [23.39, 37.13] MPa") in line, line
    assert "a rerun of the chain's final load" not in line
    assert line.endswith("share of the band's variance: potential 1.6% (1 dof), mobility "
                         "78% (5 dof), dd 16% (5 dof), surrogate 4.3% (0.073 dof); the "
                         "surrogate term's 0.073 dof: its value is barely determined"), line
    # a band.json without the terms' dof: the shares alone, as before
    old = {k: v for k, v in band.items() if k != "sources"}
    assert band_line([{"kind": "LoadBand", "raw_summary": old}]).endswith(
        "share of the band's variance: potential 1.6%, mobility 78%, dd 16%, surrogate 4.3%")

    mob = {"drag_edge_tau0_mpa": 0.0, "drag_edge_tau0_note": (
        "fixed at 0 by model selection (chi2 + k ln n: 3.16 without a threshold against "
        "5.29 with one); the best threshold model (v_s = c_t) gives tau0 = -691.2 [-4327, "
        "2944] MPa, consistent with no threshold")}
    sur = tmp_path / "surrogate"
    sur.mkdir()
    (sur / "surrogate.json").write_text(json.dumps(
        {"fit": {"static_floor_mpa": 0.10689254267885416}}))
    dd = {"mobility": {"character": "edge"}}
    text = not_covered_line([{"kind": "LoadBand", "raw_summary": band},
                             {"kind": "MobilityLaw", "raw_summary": mob},
                             {"kind": "DDRun", "raw_summary": dd},
                             {"kind": "Surrogate", "raw_summary": {}, "path": sur}])
    assert text == ("Not in the band (held fixed, each a stated assumption): every "
                    "dislocation gliding with the edge law; the edge glide threshold τ₀ "
                    "(fixed at 0 by model selection); the surrogate's static strength, at "
                    "least 0.107 MPa: not resolved by the DD's rates"), text
    # parameters the fit left at the edge of their range are named in words; σ_b's at
    # the floor go into the floor's sentence (mo_bench86's main fit: ε_h and σ_∞)
    sections = [{"kind": "LoadBand", "raw_summary": band},
                {"kind": "Surrogate", "raw_summary": {}, "path": sur}]
    (sur / "surrogate.json").write_text(json.dumps(
        {"fit": {"static_floor_mpa": 0.107, "at_bound": ["eps_h", "sigma_inf_mpa"],
                 "parameters": {"sigma_inf_mpa": 0.107, "eps_h": 7e9}}}))
    assert not_covered_line(sections).endswith(
        "assumption): the surrogate's static strength, at least 0.107 MPa (σ_∞ at it): not "
        "resolved "
        "by the DD's rates; the surrogate's ε_h: at the edge of the range the fit allows "
        "its value (bounded, not set by the DD)"), not_covered_line(sections)
    (sur / "surrogate.json").write_text(json.dumps(
        {"fit": {"static_floor_mpa": 0.107, "at_bound": ["scale", "sigma0_mpa"],
                 "parameters": {"sigma0_mpa": 0.5}}}))
    assert not_covered_line(sections).endswith(
        "least 0.107 MPa: not resolved by the DD's rates; the surrogate's family strength "
        "scale, σ_0: at the edge of the range the fit allows their value (bounded, not "
        "set by the DD)"), not_covered_line(sections)
    # a malformed list does not cost the floor's sentence
    (sur / "surrogate.json").write_text(json.dumps(
        {"fit": {"static_floor_mpa": 0.107, "at_bound": 3}}))
    assert not_covered_line(sections).endswith("least 0.107 MPa: not resolved by the DD's "
                                               "rates")
    # a note of another form keeps its reason after a colon
    screw = {"drag_edge_tau0_note": "fixed at 0: no threshold model could be fitted (1 "
             "point; a threshold needs two or more distinct stresses at one temperature)"}
    assert "the edge glide threshold τ₀ (fixed at 0: no threshold model could be fitted)" \
        in not_covered_line([{"kind": "LoadBand", "raw_summary": band},
                             {"kind": "MobilityLaw", "raw_summary": screw}])
    # a measured threshold (with its error) and a record without the floor: neither listed
    measured = dict(mob, drag_edge_tau0_err_mpa=12.0)
    (sur / "surrogate.json").write_text(json.dumps({"fit": {}}))
    assert not_covered_line([{"kind": "LoadBand", "raw_summary": band},
                             {"kind": "MobilityLaw", "raw_summary": measured},
                             {"kind": "DDRun", "raw_summary": dd},
                             {"kind": "Surrogate", "raw_summary": {}, "path": sur}]) == (
        "Not in the band (held fixed, each a stated assumption): every dislocation gliding "
        "with the edge law")


def test_a_small_share_still_shows_it_is_carried():
    """Shares print to two significant figures below 10 %: a carried source at 0.4 % of
    the variance reads 0.4 %, not 0 %, in the report, the verdict and the plot title."""
    from scalebridge.workflows.band import shares_text

    assert shares_text({"potential": 0.0934, "mobility": 0.004, "dd": 0.177,
                        "surrogate": 0.7255}) == \
        "potential 9.3%, mobility 0.40%, dd 18%, surrogate 73%"
    # two significant figures for every share under 10 %: 2.0 % beside 0.99 %
    assert shares_text({"potential": 0.02049, "mobility": 0.009907, "dd": 0.68,
                        "surrogate": 0.2896}) == \
        "potential 2.0%, mobility 0.99%, dd 68%, surrogate 29%"
    assert shares_text({"a": 1.0, "b": 0.0}, " / ") == "a 100% / b 0%"


#: the drag probe's dln sigma/dln B and its error: resolved from 0, and not
RESOLVED, UNRESOLVED = (0.42, 0.06), (-0.019, 0.031)
CLOCK = ("the mobility law (a clock of 8 bow-out times of the mean source at its "
         "velocity)")


@pytest.mark.parametrize("rule,status", [("time", AMBER), ("bow_out_clock", GREEN),
                                         ("overstress", GREEN)])
def test_glide_share_reads_the_nucleation_rule_the_dd_recorded(tmp_path, rule, status):
    """Whether the law times the insertions comes from the summary's ``nucleation.rule``
    where the DD recorded it, not from the ``timed_by`` prose (which names the typed clock
    here whatever the rule)."""
    summ = {"final_dislocations": [300], "out_of_range_fraction": 0.0,
            "nucleation": {"rule": rule},
            "drag_sensitivity": {"factor": 2.0, "dlnsigma_dlnb": RESOLVED[0],
                                 "dlnsigma_dlnb_err": RESOLVED[1]},
            "plastic_strain_inserted": {"share": 0.61, "timed_by": "the nucleation clock"}}
    c = next(c for c in checks_for("DDRun", summ, tmp_path) if c.name == "glide_share")
    assert c.status == status, c


@pytest.mark.parametrize("rec,probe,status,words", [
    ({"share": 0.61, "share_min": 0.55, "share_max": 0.70,
      "timed_by": "the nucleation clock (10 ns, an assumption)"}, UNRESOLVED, AMBER,
     "carries 39% of the plastic strain (< 50%), the sources' inserted dipoles 61% (net)"),
    ({"share": 0.2, "share_min": 0.2, "share_max": 0.3, "timed_by": "the nucleation clock"},
     UNRESOLVED, GREEN, "carries 80% of the plastic strain (>= 50%)"),
    ({"share": 0.95, "timed_by": "the nucleation clock"}, UNRESOLVED, RED, "carries 5%"),
    # net: firings against the applied stress can take the inserted share beyond 1
    ({"share": 1.07, "timed_by": "the nucleation clock"}, UNRESOLVED, RED,
     "carries 0% of the plastic"),
    # the law times the insertions and the probe sees the flow stress answer B
    ({"share": 0.95, "timed_by": "the mobility law (bow-out)"}, RESOLVED, GREEN,
     "the mobility law times every source insertion (bow-out;"),
    ({"share": 0.46, "timed_by": "the mobility law (overstress)"}, RESOLVED, GREEN,
     "the mobility law times every source insertion (overstress; net 46%"),
    ({"share": 0.65, "timed_by": CLOCK}, RESOLVED, GREEN,
     "the mobility law times every source insertion (a clock of 8 bow-out times"),
    # ... and where the probe does not: graded on the glided share, said why
    ({"share": 0.65, "timed_by": CLOCK}, UNRESOLVED, AMBER,
     "the law times the insertions (a clock of 8 bow-out times of the mean source at its "
     "velocity), but the drag probe does not resolve a response"),
    # ... and where no probe ran: on the rule alone, said so
    ({"share": 0.65, "timed_by": CLOCK}, None, GREEN, "no drag probe ran"),
    ({"share": None, "timed_by": "the nucleation clock"}, UNRESOLVED, NA, "no plastic strain"),
    (None, UNRESOLVED, NA, "not recorded")])
def test_dd_grades_how_much_plastic_strain_its_mobility_input_sets(tmp_path, rec, probe,
                                                                   status, words):
    """The DD's ``glide_share``: the plastic strain the mobility law moves (glide, or
    insertions the law times: a clock of bow-out times, bow-out, overstress) against the
    sources' dipoles inserted on a typed clock. Law-timed insertions are green only where
    the drag probe resolves the flow stress's response to B (more than twice its error),
    else the glided share is graded; the probe's response stands beside it."""
    summ = {"final_dislocations": [300], "out_of_range_fraction": 0.0}
    if probe is not None:
        summ["drag_sensitivity"] = {"factor": 2.0, "dlnsigma_dlnb": probe[0],
                                    "dlnsigma_dlnb_err": probe[1]}
    if rec is not None:
        summ["plastic_strain_inserted"] = rec
    c = next(c for c in checks_for("DDRun", summ, tmp_path) if c.name == "glide_share")
    assert c.status == status and words in c.reason, c
    if status != NA and probe is not None:
        assert f"dln sigma/dln B = {probe[0]:.2f} ± {probe[1]:.2f}" in c.reason, c.reason
    if rec and "clock" in rec["timed_by"] and rec.get("share_min") == 0.55:
        assert "55% to 70%" in c.detail and "whatever the mobility law" in c.detail
        assert "not sufficient" in c.detail


def test_the_fem_is_quasi_static_only_when_the_load_takes_many_wave_transits(tmp_path):
    """``quasi_static`` (cross-stage: the wave speed is the Properties'): the loading time
    over the time a longitudinal wave, c_l = √((K + 4G/3)/ρ), takes to cross the body.
    The Mo example's (K 267.0, G 127.0 GPa, ρ 10,019 kg/m³): c_l = 6,599 m/s. The example's ramp (21
    ns) on a 1.3 mm cylinder is 0.107 transits (red: inertia carries the load), on 65 µm
    2.13 (amber), on 13 µm 10.7 (green); the reason names the largest quasi-static body
    and how many DD cells that is; without the density the check says why it is n/a.
    The ratio scales as 1/size (the load does not: test_continuum_cylinder)."""
    from scalebridge.workflows.verdicts import quasi_static_check

    props = {"bulk_modulus_gpa": 266.993, "shear_modulus_gpa": 126.986,
             "density_kg_m3": 10019.2}
    dd = {"assumptions": {"cell_um": [1.5, 1.7321]}}
    got = {size: quasi_static_check({"duration_s": 2.1e-8, "body_size_mm": size}, props, dd)
           for size in (1.3, 0.065, 0.013)}
    c_l = math.sqrt((266.993 + 4 * 126.986 / 3) * 1e9 / 10019.2)
    assert c_l == pytest.approx(6599, abs=1)
    for size, chk in got.items():
        assert chk.value == pytest.approx(2.1e-8 * c_l / (size * 1e-3), rel=1e-12)
    assert [c.status for c in got.values()] == [RED, AMBER, GREEN]
    assert "1.3 mm" in got[1.3].reason and "0.107 transits (< 1)" in got[1.3].reason
    assert "at most 0.0139 mm" in got[1.3].detail
    assert "size would be 8 DD cells across" in got[1.3].detail
    assert got[0.013].detail == ""
    # a cylinder's wall (R_e − R_i = 0.23 R_e): 1.8 cells at the quasi-static size, so no
    # body is both quasi-static and ten cells thick
    wall = quasi_static_check({"duration_s": 2.1e-8, "body_size_mm": 0.065,
                               "reference": {"r_inner_mm": 0.05, "r_outer_mm": 0.065}},
                              props, dd)
    assert "its wall would be 1.8 DD cells across" in wall.detail
    assert "no body is both quasi-static and ten DD cells thick" in wall.detail
    no_rho = quasi_static_check({"duration_s": 2.1e-8, "body_size_mm": 1.3},
                                {k: v for k, v in props.items() if k != "density_kg_m3"})
    assert no_rho.status == NA and "density" in no_rho.reason
    # 1 s per step is no physical time; a displacement rate's time shrinks with the body
    fake = quasi_static_check({"duration_s": 30.0, "body_size_mm": 1.3,
                               "loading_time": None}, props, dd)
    assert fake.status == NA and "no physical time" in fake.reason
    rate = quasi_static_check({"duration_s": 2.1e-8, "body_size_mm": 1.3,
                               "loading_time": "displacement_rate"}, props, dd)
    assert rate.status == RED and "shrinks with the body" in rate.detail
    assert quasi_static_check({"duration_s": 2.1e-8, "body_size_mm": 1.3},
                              dict(props, bulk_modulus_gpa=-300.0)).status == NA
    # in a run: the FEM row gets the check, its verdict the worst of its checks
    v = run_verdicts({"properties": Fake("Properties", props, tmp_path),
                      "dd": Fake("DDRun", dd, tmp_path),
                      "fem": Fake("FieldResults", {"final_load_mpa": 30.0, "duration_s": 2.1e-8,
                                                   "body_size_mm": 1.3}, tmp_path)})
    row = next(r for r in v["stages"] if r["stage"] == "fem")
    chk = next(c for c in row["checks"] if c["name"] == "quasi_static")
    assert chk["status"] == RED == row["verdict"]


def test_a_green_band_says_how_many_sources_it_sampled_not_that_it_carries_all():
    """The band samples the chain's uncertain inputs; what it holds fixed (the DD's
    microstructure rules, the FEM's mesh, ...) is listed beside it: the green check says
    'each of the N sampled sources', never 'every source carried'."""
    from scalebridge.workflows.verdicts import band_checks

    s = {"sources": {k: {"rel_u": 0.02} for k in ("potential", "mobility", "dd")},
         "fem_load_band_mpa": [20.0, 40.0],
         "band_shares": {"potential": 0.2, "mobility": 0.5, "dd": 0.3}}
    c = next(c for c in band_checks(s, Path(".")) if c.name == "sources")
    assert c.status == GREEN
    assert "each of the 3 sampled sources carried" in c.reason
    assert "every source" not in c.reason


def test_the_mobility_terms_dof_matches_simulated_reruns(tmp_path):
    """The mobility term's variance s²·u_B², s² = Ŝ² + err² carried from the drag probe's
    slope Ŝ ~ N(S, err) and u_B² resting on ν_B dof: the Welch-Satterthwaite dof band.py
    gives it is 2/relvar over simulated reruns (Ŝ normal, u_B² chi-square), for a precise
    and an imprecise slope; counting the probe's pairs less one as the slope's dof (what
    err rests on, not S) would be far off."""
    from scalebridge.artifacts import Artifact
    from scalebridge.workflows.band import mobility_source

    (tmp_path / "run.json").write_text(json.dumps({"temperature_k": 300.0}))
    rng = np.random.default_rng(3)
    for s_hat, err, nu_b in ((0.57, 0.05, 3.3), (0.3, 0.02, 8.0), (0.12, 0.08, 6.0)):
        mob = Artifact(tmp_path, {"summary": {
            "law": "NeuralMobility", "drag_edge_b0_pa_s": 5e-5, "drag_edge_b0_err_pa_s": 5e-6,
            "drag_edge_b0_dof": nu_b}})
        dd = Artifact(tmp_path, {"summary": {"flow_stress_mpa": 50.0, "drag_sensitivity": {
            "dlnsigma_dlnb": s_hat, "dlnsigma_dlnb_err": err, "factor": 2.0,
            "realisations": 6}}})
        nu = mobility_source(mob, dd)["dof"]
        n = 1_000_000
        v = (rng.normal(s_hat, err, n) ** 2 + err ** 2) * rng.chisquare(nu_b, n) / nu_b
        simulated = 2.0 / (v.var() / v.mean() ** 2)
        assert nu == pytest.approx(simulated, rel=0.05)
        assert abs(1.0 / (1.0 / 5 + 1.0 / nu_b) - simulated) > 0.2 * simulated
