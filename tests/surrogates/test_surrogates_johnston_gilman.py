"""Johnston–Gilman J2 (issue 19, surrogate stage): source-limited viscoplasticity.

The Mo example's DD study rises elastically to an upper yield that grows linearly with
rate (its sources need the stress above their strength for t_nuc = 10 ns), drops in an
avalanche and then flows at a rate-dependent stress set by the mobile density. A neural
J2 law with a fading overstress reached 2.7x the realisation scatter on it; this model,
with the DD's t_nuc and a mobile-density viscosity, 1.7x. The tests check the mechanics
against closed forms (upper yield σ_src + 3G ε̄̇ t_nuc, steady flow σ_b + η ε̄̇), the
interface checks, the fit's recovery of a known law, persistence, and that the mobile
density read from η responds to the MD drag B as ρ_m = 3B/(η b²).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scalebridge.errors import ArtifactError
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.data import StrainPaths
from scalebridge.surrogates.johnston_gilman import (
    JohnstonGilmanJ2,
    MobileDensityHardening,
    fit_johnston_gilman,
    mobile_density,
)
from scalebridge.surrogates.protocol import integrate_path
from scalebridge.surrogates.train import (
    SurrogateSettings,
    export_surrogate,
    fit_surrogate,
    load_surrogate,
)

from .conftest import shear_path, vm

SHEAR, BULK = 126716.0, 266620.0     # MPa, the Mo example's moduli
T_NUC = 1e-8                         # s, the DD's nucleation time


def law(eta: float = 4e-4, src: float = 60.0, t_nuc: float = T_NUC) -> JohnstonGilmanJ2:
    """σ_b 20 -> 50 MPa (ε_h 3e-4), constant η (MPa·s)."""
    h = MobileDensityHardening(20.0, 50.0, 3e-4, np.array([0.0, 1e-3, 3e-3]),
                               np.full(3, math.log(eta)))
    return JohnstonGilmanJ2(BULK, SHEAR, h, src, t_nuc,
                            {"eps_p_eq": [0.0, 3e-3], "rate_s": [4e4, 1.5e5]})


@pytest.mark.parametrize("rate", [4e4, 1.5e5])
def test_upper_yield_is_source_strength_plus_loading_over_nucleation_time(rate):
    """Elastic until the trial stress has been above σ_src for t_nuc: the peak is
    σ_src + σ̇ t_nuc with σ̇ = √3 G γ̇, then the avalanche drops it. To two load steps:
    the clock counts the crossing step whole, and the step it fires in already flows."""
    m = law()
    strain, dt = shear_path(rate)
    s, _, _ = integrate_path(m, strain, dt)
    q = vm(s[0])
    peak = m.source_stress_mpa + math.sqrt(3.0) * SHEAR * rate * T_NUC
    step = math.sqrt(3.0) * SHEAR * rate * dt
    assert peak - 2.01 * step <= q.max() <= peak + 1e-9, (q.max(), peak)
    assert q[-1] < 0.8 * q.max()                     # it dropped


@pytest.mark.parametrize("eta", [2e-4, 4e-4, 8e-4])
def test_steady_flow_is_static_plus_viscous_stress(eta):
    """Long after the drop at constant γ̇ the stress is σ_b(ε̄_p) + η ε̄̇_p, ε̄̇_p = γ̇/√3
    (Orowan with linear drag): doubling η (halving ρ_m) doubles the overstress."""
    rate = 7e4
    m = law(eta=eta)
    strain, dt = shear_path(rate, gamma_max=0.02, n=800)
    s, st, _ = integrate_path(m, strain, dt)
    ep = st[0, -1, 6]
    rate_p = (st[0, -1, 6] - st[0, -2, 6]) / dt
    assert rate_p == pytest.approx(rate / math.sqrt(3.0), rel=0.02)
    want = m.hardening.static(np.array([ep]))[0][0] + eta * rate / math.sqrt(3.0)
    assert vm(s[0, -1]) == pytest.approx(want, rel=1e-3)


def test_no_flow_below_the_source_strength_however_long():
    m = law(src=60.0)
    g = np.full(200, 50.0 / (math.sqrt(3.0) * SHEAR))   # held at σ = 50 MPa < σ_src
    g[:20] = np.linspace(0.0, g[-1], 20)
    s, st, _ = integrate_path(m, mandel.shear_strain(g)[None], 1e-6)
    assert np.all(st[0, :, 6] == 0.0) and np.all(st[0, :, 8] == 0.0)
    assert vm(s[0, -1]) == pytest.approx(50.0, rel=1e-9)


def test_interface_checks_pass():
    rep = check_constitutive(law(t_nuc=0.0), amplitude=4e-3, raise_on_failure=False)
    assert rep.passed, {k: v for k, v in rep.to_dict()["checks"].items() if not v["passed"]}
    rep = check_constitutive(law(), amplitude=4e-3, raise_on_failure=False)
    assert rep.passed, {k: v for k, v in rep.to_dict()["checks"].items() if not v["passed"]}


def test_mobile_density_responds_to_the_md_drag():
    """ρ_m = 3B/(η b²): the same η read with twice the MD drag is twice the density."""
    m = law(eta=4e-4)
    meta = {"drag_pa_s": 8.45e-5, "burgers_a": 2.744}
    r1 = mobile_density(m, np.array([1e-3]), meta)[0]
    r2 = mobile_density(m, np.array([1e-3]), {**meta, "drag_pa_s": 2 * 8.45e-5})[0]
    assert r1 == pytest.approx(3 * 8.45e-5 / (4e-4 * 1e6 * (2.744e-10) ** 2), rel=1e-12)
    assert r2 == pytest.approx(2.0 * r1, rel=1e-12)
    assert mobile_density(m, np.array([1e-3]), {}) is None


def synthetic(model: JohnstonGilmanJ2, rates=(4e4, 7e4, 1.5e5), per=2) -> StrainPaths:
    strain, stress, dts, rr = [], [], [], []
    for rate in rates:
        for _ in range(per):
            e, dt = shear_path(rate, gamma_max=4e-3, n=80)
            s, _, _ = integrate_path(model, e, dt)
            strain.append(e[0])
            stress.append(s[0])
            dts.append(dt)
            rr.append(rate)
    return StrainPaths(np.array(strain), np.array(stress), np.array(dts),
                       np.full(len(rr), 300.0), np.array(rr), None,
                       {"source": "j2", "bulk_mpa": BULK, "shear_mpa": SHEAR,
                        "yield_stress_mpa": 50.0, "nucleation_time_s": T_NUC,
                        "source_strength_mpa": 60.0 / math.sqrt(3.0)})


def test_fit_recovers_a_known_law():
    """Paths from a known law (σ_src 60 MPa on the scan's grid, t_nuc given), fitted at
    4e4 and 1.5e5 /s: the fit reproduces the held-out 7e4 /s path to well under 2 MPa
    (3 % of its 66 MPa flow stress) and finds σ_src (measured: 4e-12 MPa RMS at 60 MPa
    after 8 evaluations; the next-best candidate, 51 MPa, 4.2 MPa)."""
    truth = law(eta=4e-4)
    data = synthetic(truth, per=1)
    tr, va = data.subset(np.array([0, 2])), data.subset(np.array([1]))
    m, rec, hist = fit_johnston_gilman(tr, va, knots=3, nucleation_time_s=T_NUC,
                                       source_guess_mpa=60.0, max_evaluations=10)
    assert m.source_stress_mpa == pytest.approx(60.0)
    assert min(h["val_rmse_mpa"] for h in hist) < 2.0, hist
    assert rec["class"] == "JohnstonGilmanJ2" and len(hist) == 6


def test_surrogate_roundtrip_export_and_damaged_record(tmp_path):
    """fit_surrogate's files, persistence, export and a damaged record refused; nothing
    here reads the fit's quality (test_fit_recovers_a_known_law does): one path per rate,
    5 evaluations per candidate."""
    data = synthetic(law(eta=4e-4), per=1)
    s = SurrogateSettings(model="johnston_gilman", knots=4, evaluations=5, val_fraction=0.3)
    summ = fit_surrogate(data, s, tmp_path)
    assert summ["class"] == "JohnstonGilmanJ2" and summ["checks_passed"]
    assert (tmp_path / "hardening.png").stat().st_size > 0
    assert (tmp_path / "hardening.csv").read_text().startswith("eps_p_eq,sigma_b_mpa")
    m = load_surrogate(tmp_path)
    assert isinstance(m, JohnstonGilmanJ2) and m.nucleation_time_s == T_NUC
    rec = json.loads((tmp_path / "surrogate.json").read_text())
    assert rec["johnston_gilman"]["nucleation_time_from"] == "the DD run's nucleation clock"
    e, dt = shear_path(7e4, n=50)
    again = integrate_path(m, e, dt)[0]
    fresh = integrate_path(JohnstonGilmanJ2.from_config(rec["config"]), e, dt)[0]
    np.testing.assert_array_equal(again, fresh)
    files = export_surrogate(tmp_path, tmp_path / "export")
    assert [f.name for f in files] == ["surrogate.json", "hardening_table.csv"]
    head = (tmp_path / "export" / "hardening_table.csv").read_text().splitlines()[0]
    assert head == "eps_p_eq,sigma_b_mpa,eta_mpa_s"
    rec["config"]["source_stress_mpa"] = float("nan")
    (tmp_path / "surrogate.json").write_text(json.dumps(rec))
    with pytest.raises(ArtifactError, match="source_stress_mpa is nan"):
        load_surrogate(tmp_path)
