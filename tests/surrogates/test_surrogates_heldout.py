"""The held-out error over the DD realisation scatter carries the interval a fresh choice
of held-out realisations would move it in (issue 19: the example scores its surrogate on
four held-out paths, and one of them can carry half of the error)."""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.surrogates import mandel
from scalebridge.surrogates.ensemble import heldout_ratio_interval

T = 50                                            # points per path


def paths(n: int, noise_mpa: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n realisations of a mean shear path (σ_xy 40 MPa) with independent Gaussian
    noise of ``noise_mpa`` on σ_xy, and the mean path itself (the ideal model)."""
    rng = np.random.default_rng(seed)
    mean = np.full((n, T), 40.0)
    # Mandel stress with σ_xy = s is shear_strain(2 s) (ε_xy = γ/2)
    data = mandel.shear_strain(2.0 * (mean + noise_mpa * rng.standard_normal((n, T))))
    return data, mandel.shear_strain(2.0 * mean)


def test_a_model_of_the_mean_scores_one_and_its_interval_covers_it():
    data, model = paths(400, 5.0, 0)
    # the tensor norm of a σ_xy deviation δ is √2 |δ| (xy and yx)
    scatter = np.sqrt(2.0) * 5.0
    r = heldout_ratio_interval(data, model, scatter)
    assert r["ratio"] == pytest.approx(1.0, abs=0.02)
    assert r["low"] < 1.0 < r["high"] and r["high"] - r["low"] < 0.05
    assert r["paths"] == 400 and len(r["per_path"]) == 400


def test_few_paths_give_a_wide_interval_and_one_bad_path_widens_it():
    data, model = paths(4, 5.0, 1)
    scatter = np.sqrt(2.0) * 5.0
    few = heldout_ratio_interval(data, model, scatter)
    many = heldout_ratio_interval(*paths(64, 5.0, 1), scatter)
    assert few["high"] - few["low"] > 2.0 * (many["high"] - many["low"])
    bad = data.copy()
    bad[0] += mandel.shear_strain(np.full(T, 50.0))   # one path 25 MPa off
    b = heldout_ratio_interval(bad, model, scatter)
    assert b["ratio"] > 2.0 and b["per_path"][0] > 3.0 > max(b["per_path"][1:])
    assert b["low"] < 1.5 and b["high"] > 3.0        # with or without the bad path
    # the interval is a function of the data (seeded), not of the call
    assert heldout_ratio_interval(bad, model, scatter) == b


def test_one_path_has_no_interval_and_a_zero_scatter_is_refused():
    data, model = paths(1, 5.0, 2)
    r = heldout_ratio_interval(data, model, 7.0)
    assert r["low"] == r["high"] == r["ratio"]
    with pytest.raises(ValueError, match="scatter"):
        heldout_ratio_interval(data, model, 0.0)


def test_a_dd_study_holds_out_realisations_of_every_condition():
    """18 paths, 6 conditions x 3 realisations: one realisation of each condition is held
    out (a random quarter of the paths, 4 of them, misses at least two conditions)."""
    from scalebridge.surrogates.train import split_paths

    groups = [np.arange(3 * c, 3 * c + 3) for c in range(6)]
    for seed in range(5):
        tr, va = split_paths(18, 0.25, seed, groups)
        assert len(va) == 6 and sorted(int(v) // 3 for v in va) == list(range(6))
        assert sorted([*tr, *va]) == list(range(18))
        assert len({int(v) // 3 for v in split_paths(18, 0.25, seed)[1]}) <= 4
    # a single-path condition stays in training; no condition is held out whole
    tr, va = split_paths(5, 0.9, 0, [np.array([0]), np.array([1, 2]), np.array([3, 4])])
    assert 0 in tr and len(va) == 2 and {1, 2} & set(tr) and {3, 4} & set(tr)
    # the same seed, the same split
    assert all((a == b).all() for a, b in zip(split_paths(18, 0.25, 3, groups),
                                              split_paths(18, 0.25, 3, groups), strict=True))


def test_microstructures_shared_across_conditions_are_held_out_whole(tmp_path):
    """A DD study runs the same seeds in every condition: its 100 K and 300 K paths of one
    seed at one rate are nearly the same curve. Then whole microstructures are held out
    (one of three: a realisation of every condition, none with a twin in training); where
    every path has its own microstructure, realisations of every condition as before.
    StrainPaths keeps the labels through subset, save and load."""
    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.train import split_paths

    groups = [np.arange(3 * c, 3 * c + 3) for c in range(6)]
    shared = np.tile([7, 8, 9], 6)                       # seed of path i: 7 + i % 3
    for seed in range(5):
        tr, va = split_paths(18, 0.25, seed, groups, shared)
        assert len(va) == 6 and len(set(shared[va].tolist())) == 1
        assert not set(shared[va].tolist()) & set(shared[tr].tolist())
        assert sorted(int(v) // 3 for v in va) == list(range(6))
    own = np.arange(18)                                  # no seed shared: per condition
    assert all((a == b).all() for a, b in zip(split_paths(18, 0.25, 1, groups, own),
                                              split_paths(18, 0.25, 1, groups), strict=True))
    data, _ = paths(18, 5.0, 4)
    strain = np.repeat(mandel.shear_strain(np.linspace(0.0, 1e-3, T))[None], 18, 0)
    sp = StrainPaths(strain, data, np.full(18, 1e-9), np.full(18, 300.0), np.full(18, 1e4),
                     names=[str(i) for i in range(18)], microstructure=shared)
    assert sp.subset(np.array([4, 0])).microstructure.tolist() == [8, 7]
    sp.save(tmp_path)
    assert StrainPaths.load(tmp_path).microstructure.tolist() == shared.tolist()


def test_the_training_realisations_mean_scores_sqrt_one_plus_one_over_n():
    """The references beside the surrogate's score: each held-out path predicted by the
    mean of its condition's training realisations, and by each of them alone. With n
    training realisations of independent noise the mean's ratio is sqrt(1 + 1/n) (it
    carries 1/n of the noise), one realisation's sqrt(2); a condition whose paths follow
    different strain histories has no such reference."""
    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.ensemble import (
        another_realisation_pairs,
        conditions,
        realisation_scatter_rmse,
        training_mean_prediction,
    )
    from scalebridge.surrogates.train import split_paths

    n_cond, n_real = 40, 4                      # 3 training realisations per condition
    data, _ = paths(n_cond * n_real, 5.0, 3)
    strain = np.repeat(mandel.shear_strain(np.linspace(0.0, 1e-3, T))[None], len(data), 0)
    rate = np.repeat(np.logspace(3, 5, n_cond), n_real)
    sp = StrainPaths(strain, data, np.full(len(data), 1e-9), np.full(len(data), 300.0),
                     rate)
    tr, va = split_paths(len(sp), 0.25, 0, conditions(sp))
    assert len(va) == n_cond
    ref = training_mean_prediction(sp, tr, va)
    assert ref is not None and ref.shape == (n_cond, T, 6)
    r = heldout_ratio_interval(sp.stress[va], ref, realisation_scatter_rmse(sp))
    assert r["ratio"] == pytest.approx(np.sqrt(1 + 1 / 3), rel=0.08)
    # one realisation for another: the noise of both, sqrt(2)
    data_pairs, pred_pairs = another_realisation_pairs(sp, tr, va)
    assert data_pairs.shape == pred_pairs.shape == (3 * n_cond, T, 6)
    r2 = heldout_ratio_interval(data_pairs, pred_pairs, realisation_scatter_rmse(sp))
    assert r2["ratio"] == pytest.approx(np.sqrt(2), rel=0.08)
    assert r2["low"] < r2["ratio"] < r2["high"]
    # the data's own mean path is not a reference when the strain histories differ
    bent = StrainPaths(strain * np.linspace(1.0, 2.0, len(data))[:, None, None], data,
                       sp.dt, sp.temperature_k, rate)
    assert training_mean_prediction(bent, tr, va) is None
    assert another_realisation_pairs(bent, tr, va) is None


def test_the_fit_plot_shows_six_held_out_paths_without_overlap(tmp_path):
    """A DD study holds out one realisation of each of six conditions; the fit plot shows
    all six (rows of three, the fastest rates last), with no overlapping tick labels, and
    its CSV has every plotted path."""
    from scalebridge.plotting import CHECKED
    from scalebridge.surrogates.plots import plot_paths

    data, model = paths(6, 5.0, 4)
    strain = np.repeat(mandel.shear_strain(np.linspace(0.0, 2.5e-3, T))[None], 6, 0)
    names = [f"realisations/{i}/stress_strain.csv" for i in (2, 5, 8, 10, 12, 15)]
    from scalebridge.surrogates.plots import fit_paths_title, strain_axis

    title = fit_paths_title("m", {"rmse_mpa": 16.58, "max_error_over_yield": 0.798}, 10.7,
                            1.428)
    # the RMS ratio the verdict grades leads, the largest error follows
    assert title.index("RMS error 16.6 MPa = 1.55x the DD realisation scatter 10.7 MPa") \
        < title.index("graded: 1.43x") < title.index("max √(3/2)‖Δσ‖/σ_ref = 0.798")
    plot_paths(tmp_path / "fit_paths.png", strain, data, model, names, title)
    assert CHECKED[-1].overlaps_after == [], CHECKED[-1]
    rows = (tmp_path / "fit_paths.csv").read_text().splitlines()
    head, rows = rows[0].split(","), rows[1:]
    assert {r.split(",")[0] for r in rows} == set(names)
    assert len(rows) == 6 * T
    # the strain axis: the DD's shear strain γ = 2 ε_xy (here to 2.5e-3, as shear_strain
    # was given), in 10⁻³; the CSV keeps ε_xy and the plotted value
    last = dict(zip(head, rows[T - 1].split(","), strict=True))
    assert float(last["strain"]) == pytest.approx(1.25e-3)
    assert float(last["axis_strain"]) == pytest.approx(2.5)
    assert strain_axis(strain[0], 5)[2] == "shear strain γ_xy = 2ε_xy (10⁻³)"


def test_each_microstructure_is_held_out_in_turn():
    """One split holds out one microstructure, and which one moves the score more than
    the bootstrap over its paths covers. The fit is repeated with each other
    microstructure held out (at most ``cross_validate`` more), scored with the same
    references, and pooled over every held-out point: here a Johnston–Gilman law fitted
    to a 2-rate x 3-seed study whose seeds shift the curve (shared across the rates)."""
    import math

    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.ensemble import conditions, realisation_scatter_rmse
    from scalebridge.surrogates.johnston_gilman import (
        JohnstonGilmanJ2,
        MobileDensityHardening,
    )
    from scalebridge.surrogates.protocol import integrate_path
    from scalebridge.surrogates.train import (
        SurrogateSettings,
        microstructure_folds,
        pooled_flow_error,
        started_folds,
    )

    from .conftest import shear_path

    shear, bulk = 126716.0, 266620.0
    strain, stress, dts, rates, seeds = [], [], [], [], []
    for rate in (4e4, 1.5e5):
        e, dt = shear_path(rate, gamma_max=2e-3, n=60)
        for seed, shift in ((3, -4.0), (4, 0.0), (5, 5.0)):  # a microstructure's strength
            h = MobileDensityHardening(20.0 + shift, 50.0 + shift, 3e-4,
                                       np.array([0.0, 1e-3, 3e-3]), np.full(3, math.log(4e-4)))
            m = JohnstonGilmanJ2(bulk, shear, h, 60.0 + shift, 1e-8)
            strain.append(e[0])
            stress.append(integrate_path(m, e, dt)[0][0])
            dts.append(dt), rates.append(rate), seeds.append(seed)
    n = len(seeds)
    sp = StrainPaths(np.array(strain), np.array(stress), np.array(dts), np.full(n, 300.0),
                     np.array(rates), None, {"bulk_mpa": bulk, "shear_mpa": shear,
                                             "nucleation_time_s": 1e-8},
                     [str(i) for i in range(n)], np.array(seeds))
    scatter = realisation_scatter_rmse(sp)
    assert len(conditions(sp)) == 2 and scatter > 0
    s = SurrogateSettings(model="johnston_gilman", evaluations=2, knots=3, cross_validate=2)
    main = {"ratio": 1.5, "paths": 2, "another_realisation_ratio": 1.4,
            "training_mean_ratio": 1.2}
    main_flow = [[60.0, 66.0], [50.0, 45.0]]
    # the folds started in worker processes (as fit_surrogate does) while the same folds
    # are fitted here, one after another
    with started_folds(sp, s, [4], 45.0, scatter) as futures:
        assert len(futures) == 2
        f = microstructure_folds(sp, s, main, [4], 45.0, scatter)
        rows = f["folds"]
        assert [r["microstructures"] for r in rows] == [[4], [3], [5]]
        assert all(r["paths"] == 2 and r["ratio"] > 0 for r in rows)
        # the pooled ratio is the RMS over the folds' held-out points
        assert f["ratio"] == pytest.approx(np.sqrt(np.mean([r["ratio"] ** 2 for r in rows])))
        # holding out an extreme microstructure, the others' mean misses it by the shift
        assert rows[1]["training_mean_ratio"] > 1.0 and rows[2]["training_mean_ratio"] > 1.0
        # each fold keeps its held-out paths' flow stresses; the pooled flow error needs
        # the main split's too, then is the RMS relative error over every fold's paths
        assert f["flow_rel_error"] is None
        assert all(len(r["flow_paths"]) == 2 for r in rows[1:])
        # the workers' folds: the same rows and fits as those fitted here
        g = microstructure_folds(sp, s, main, [4], 45.0, scatter, futures,
                                 main_flow=main_flow)
    assert g["folds"][0]["flow_paths"] == main_flow
    assert {**g, "folds": g["folds"][1:], "flow_rel_error": None} == {
        **f, "folds": f["folds"][1:]}
    every = main_flow + [p for r in g["folds"][1:] for p in r["flow_paths"]]
    assert len(every) == 6
    assert g["flow_rel_error"] == pytest.approx(
        np.sqrt(np.mean([((m - d) / d) ** 2 for d, m in every])))
    rec = pooled_flow_error(g["flow_rel_error"], 0.05,
                            {"rel_error": 0.1, "model_rel_u": 0.0866, "paths": main_flow})
    assert rec["pooled_over"] == "folds" and rec["main_split_rel_error"] == 0.1
    assert rec["model_rel_u"] == pytest.approx(
        math.sqrt(max(g["flow_rel_error"] ** 2 - 0.05 ** 2, 0.0)))
    one = s.model_copy(update={"cross_validate": 1, "evaluations": 1})
    assert len(microstructure_folds(sp, one, main, [4], 45.0, scatter)["folds"]) == 2


def test_condition_bias_finds_where_a_model_misses_the_mean_and_plots_it(tmp_path):
    """The held-out error mixes the model's miss of the DD's mean with the held-out
    realisation's own noise. ``condition_bias`` separates them, condition by condition: a
    model at the true mean scores sqrt(1/n) (the noise left in a mean of n realisations),
    one 10 MPa off in σ_xy on one condition scores sqrt(2)·10/scatter more there and
    nowhere else; a condition whose paths follow different strain histories is left out.
    The plot (each condition's mean, spread and model) is rendered without overlapping
    tick labels, beside its CSV."""
    from scalebridge.plotting import CHECKED
    from scalebridge.surrogates.data import StrainPaths
    from scalebridge.surrogates.ensemble import condition_bias, realisation_scatter_rmse
    from scalebridge.surrogates.plots import plot_condition_means

    n_real, n_cond = 50, 3
    data, mean = paths(n_cond * n_real, 5.0, 7)
    strain = np.repeat(mandel.shear_strain(np.linspace(0.0, 2.5e-3, T))[None], len(data), 0)
    rate = np.repeat([4e4, 7e4, 1.5e5], n_real)
    sp = StrainPaths(strain, data, np.full(len(data), 1e-10), np.full(len(data), 300.0),
                     rate)
    scatter = realisation_scatter_rmse(sp)
    assert scatter == pytest.approx(np.sqrt(2.0) * 5.0, rel=0.03)
    model = mean                                                  # (P, T, 6)
    at_mean = condition_bias(sp, model, scatter)
    assert [c["strain_rate_s"] for c in at_mean] == [4e4, 7e4, 1.5e5]
    for c in at_mean:
        assert c["paths"] == n_real and c["mean_noise_ratio"] == pytest.approx(n_real ** -0.5)
        assert c["bias_ratio"] == pytest.approx(c["mean_noise_ratio"], rel=0.25)
        assert c["mean"].shape == c["model"].shape == c["spread"].shape == (T, 6)
    off = model.copy()
    off[rate == 7e4] += mandel.shear_strain(np.full(T, 20.0))    # σ_xy 10 MPa high
    biased = condition_bias(sp, off, scatter)
    expect = np.sqrt(2.0) * 10.0 / scatter                        # ≈ 2: tensor norm √2 δ
    assert biased[1]["bias_ratio"] == pytest.approx(expect, rel=0.1)
    assert biased[0]["bias_ratio"] == at_mean[0]["bias_ratio"]
    assert biased[2]["bias_ratio"] == at_mean[2]["bias_ratio"]
    # paths of one condition that do not share their strain history have no mean path
    bent = StrainPaths(strain * np.where(rate == 1.5e5, np.linspace(1, 2, len(rate)),
                                         1.0)[:, None, None], data, sp.dt,
                       sp.temperature_k, rate)
    assert [c["strain_rate_s"] for c in condition_bias(bent, model, scatter)] == [4e4, 7e4]
    with pytest.raises(ValueError, match="scatter"):
        condition_bias(sp, model, 0.0)
    plot_condition_means(tmp_path / "condition_means.png", biased, "bias")
    assert CHECKED[-1].overlaps_after == [], CHECKED[-1]
    rows = (tmp_path / "condition_means.csv").read_text().splitlines()
    assert rows[0].startswith("strain_rate_s,temperature_k,step") and len(rows) == 1 + 3 * T
