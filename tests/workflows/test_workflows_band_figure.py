"""The band's figure and CSV say which band is which: the shaded pointwise band of the
load-displacement curve (± k·u at each displacement, the final load's k) is not the
final or maximum load's band of band.json, which the figure draws as error bars, each
with its own k; ``load_band.csv`` names its columns so."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scalebridge.plotting import CHECKED
from scalebridge.workflows.band import band_csv_columns, plot_band


def test_plot_band_labels_the_pointwise_band_apart_from_the_final_and_max_bands(tmp_path):
    """A curve with an upper yield (a maximum mid-way, the final load on the reload): the
    pointwise band at the maximum reaches above the maximum's own band (as in the Mo run:
    74.9 MPa against [48.0, 70.3]); the legend says which is which, with each band's k."""
    lam = np.linspace(0.0, 1.0, 31)
    disp = 7.5e-5 * lam
    load = np.where(lam < 0.5, 118.0 * lam, 59.0 - 40.0 * (lam - 0.5))
    half = 2.45 * (0.4 + 6.0 * np.exp(-((lam - 0.5) / 0.05) ** 2))
    main = np.column_stack([lam, disp, load])
    fold = np.column_stack([lam, disp, load * 1.02])
    n0 = len(CHECKED)
    labels = plot_band(tmp_path / "load_band.png", main, load - half, load + half, [fold],
                       k=2.45, level=0.95, final_band=[38.1, 40.1], max_band=[48.0, 70.3],
                       max_k=3.18, shares={"potential": 0.02, "mobility": 0.01, "dd": 0.7,
                                           "surrogate": 0.27},
                       load_name="pressure_mpa", disp_name="inner_displacement_mm")
    assert (tmp_path / "load_band.png").stat().st_size > 0
    assert (load + half).max() > 70.3    # the shaded band is wider there than the max's
    pointwise = [t for t in labels if t.startswith("pointwise band")]
    assert pointwise == ["pointwise band of the curve: ± k·u at each displacement, "
                         "k = 2.45 (the final load's, 95 %)"]
    assert "final load 39 MPa, its band [38.1, 40.1] MPa (k = 2.45)" in labels
    assert ("maximum load 59 MPa, its band [48, 70.3] MPa (k = 3.18; the curves' maxima)"
            in labels)
    assert "surrogates fitted to other DD realisations" in labels
    fig = CHECKED[n0:]
    assert len(fig) == 1 and fig[0].overlaps_after == []


def test_plot_band_with_the_maximum_at_the_end_draws_both_bars(tmp_path):
    """A curve that rises to its end: the final load is the maximum, and both bars (with
    their own k) are drawn, side by side."""
    lam = np.linspace(0.0, 1.0, 11)
    main = np.column_stack([lam, lam, 30.0 * lam])
    labels = plot_band(tmp_path / "b.png", main, main[:, 2] - 1.0, main[:, 2] + 1.0, [],
                       k=2.0, level=None, final_band=[29.0, 31.0], max_band=[28.5, 31.5],
                       max_k=2.2, shares={"dd": 1.0}, load_name="load_mpa",
                       disp_name="displacement_mm")
    assert "pointwise band of the curve: ± k·u at each displacement, k = 2 (the final " \
           "load's)" in labels
    assert any(t.startswith("final load 30 MPa") and "(k = 2)" in t for t in labels)
    assert any(t.startswith("maximum load 30 MPa") and "(k = 2.2;" in t for t in labels)


def test_band_csv_names_the_pointwise_band_and_band_json_its_value_at_the_maximum(
        chain_arts):
    """The chain's band (synthetic DD -> surrogate -> FEM cylinder, the session's
    ``chain_arts``): ``load_band.csv`` names its band columns pointwise, with their k;
    band.json keeps the pointwise band at the maximum beside the maximum's own band."""
    _, arts, _ = chain_arts
    fem, band = arts["fem"], arts["band"]
    s = band.summary
    with open(band.path / "load_band.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == band_csv_columns(fem.summary["displacement_name"])
    assert rows[0][3:] == ["pointwise_band_low_mpa", "pointwise_band_high_mpa",
                           "pointwise_coverage_factor"]
    data = np.array([[float(x) for x in r] for r in rows[1:]])
    assert np.allclose(data[:, 5], s["coverage_factor"])
    i = int(np.argmax(data[:, 2]))
    assert s["pointwise_band_at_max_load_mpa"] == pytest.approx(data[i, 3:5], rel=1e-6)
    assert json.loads((band.path / "band.json").read_text())[
        "pointwise_band_at_max_load_mpa"] == pytest.approx(data[i, 3:5], rel=1e-6)
    assert (band.path / "load_band.png").is_file()
