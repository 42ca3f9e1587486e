"""The potential's learning-curve plot: lcurve rows are one batch's RMSE each, so the
plot draws them as faint points and their running geometric mean as the line."""

from __future__ import annotations

import numpy as np
import pytest
from scalebridge.plotting import CHECKED
from scalebridge.potentials.evaluate import lcurve_window, running_mean, write_lcurves


def test_running_mean_is_a_trailing_geometric_mean():
    y = np.array([1e-2, 1e-4, 1e-2, 1e-3, 1e-1])
    got = running_mean(y, 3)
    assert got[0] == pytest.approx(1e-2)                     # one point so far
    assert got[1] == pytest.approx(1e-3)                     # sqrt(1e-2 x 1e-4)
    assert got[2] == pytest.approx((1e-2 * 1e-4 * 1e-2) ** (1 / 3))
    assert got[4] == pytest.approx((1e-2 * 1e-3 * 1e-1) ** (1 / 3))
    assert lcurve_window(7) == 3 and lcurve_window(450) == 45


def test_lcurve_plot_smooths_one_batch_values(tmp_path):
    """Force RMSEs jumping 0.015-0.4 from row to row (mo_bench47's model 0): the line's
    range is a fraction of the points' and both models' rows are in lcurve.csv."""
    f0 = [0.0768, 0.432, 0.0257, 0.31, 0.0264, 0.0184, 0.0135]
    paths = []
    for i, scale in enumerate((1.0, 1.3)):
        p = tmp_path / f"lcurve{i}.out"
        rows = "".join(f"{s} {0.5 * f * scale} {0.01} {0.01} {f * scale} {f * scale} 5e-05\n"
                       for s, f in zip(range(0, 350, 50), f0, strict=True))
        p.write_text("#  step rmse_val rmse_e_val rmse_e_trn rmse_f_val rmse_f_trn lr\n"
                     + rows)
        paths.append(p)
    n0 = len(CHECKED)
    write_lcurves(paths, tmp_path)
    assert (tmp_path / "lcurve.png").is_file()
    assert [c.overlaps_after for c in CHECKED[n0:]] == [[]]
    lines = (tmp_path / "lcurve.csv").read_text().splitlines()
    assert lines[0].startswith("model,step,") and len(lines) == 1 + 2 * len(f0)
    line = running_mean(np.array(f0), lcurve_window(len(f0)))
    assert np.ptp(np.log(line)) < 0.7 * np.ptp(np.log(f0))


def test_running_mean_leaves_out_nan_and_zero():
    """A NaN row and an RMSE of 0 have no logarithm: each window averages its other
    points (NaN where it has none), and the points after them are untouched."""
    y = np.array([1e-2, np.nan, 0.0, 1e-4, 1e-2, 1e-2, np.inf, -1.0])
    got = running_mean(y, 3)
    assert got[0] == pytest.approx(1e-2)
    assert got[1] == pytest.approx(1e-2)                     # the NaN left out
    assert got[2] == pytest.approx(1e-2)                     # and the 0
    assert got[3] == pytest.approx(1e-4)                     # only 1e-4 in (nan, 0, 1e-4)
    assert got[4] == pytest.approx(1e-3)                     # sqrt(1e-4 x 1e-2)
    assert got[5] == pytest.approx((1e-4 * 1e-2 * 1e-2) ** (1 / 3))
    assert np.isfinite(got[:7]).all()
    assert got[7] == pytest.approx(1e-2)                     # inf and -1 left out
    assert np.isnan(running_mean(np.array([1e-2, np.nan, 0.0, np.nan]), 2)[3])
