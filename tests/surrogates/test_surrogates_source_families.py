"""Source families J2 (issue 19, surrogate stage): flow fed by cycling Frank–Read sources.

The Mo example's DD curves serrate in step with its sources: after the first avalanche
the stress sits far below the later flow stress and reloads almost elastically until the
sources have been above their strength for another t_nuc. This model keeps that: K
source families with the DD's strengths, each firing every t_nuc of time above its
strength, the emitted dislocations (a fluidity m) pinned in time. The tests check it
against closed forms (the upper yield s + √3 G γ̇ t_nuc, the stress relaxation after one
firing exp(-3G·emission·t_pin)), that a source's clock pauses below its strength instead
of resetting, the interface checks, the fit's recovery of a known law, persistence, and
that the mobile density read from m responds to the MD drag as ρ_m = 3B m/b².
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scalebridge.errors import ArtifactError
from scalebridge.surrogates import mandel
from scalebridge.surrogates.checks import check_constitutive
from scalebridge.surrogates.data import StrainPaths, replay_rmse
from scalebridge.surrogates.protocol import integrate_path
from scalebridge.surrogates.source_families import (
    SourceFamiliesJ2,
    StaticVoce,
    family_strengths,
    fit_source_families,
)
from scalebridge.surrogates.train import (
    SurrogateSettings,
    export_surrogate,
    fit_surrogate,
    load_surrogate,
)

from .conftest import shear_path, vm

SHEAR, BULK = 126716.0, 266620.0     # MPa, the Mo example's moduli
T_NUC = 1e-8                         # s, the DD's nucleation time


def law(strengths=(60.0,), emission: float = 2e3, t_pin: float = 2.5e-9,
        eps_pin: float = 1e-3, sigma_b: tuple[float, float] = (5.0, 60.0),
        t_nuc: float | np.ndarray = T_NUC, clock_width_mpa: float = 0.0,
        grows: bool = False, dephase: bool = False, wait: bool = False,
        relaxed: bool = False, spread: bool = False) -> SourceFamiliesJ2:
    return SourceFamiliesJ2(BULK, SHEAR, StaticVoce(sigma_b[0], sigma_b[1], 3e-3),
                            np.asarray(strengths, float), t_nuc, emission, t_pin, eps_pin,
                            {"eps_p_eq": [0.0, 3e-3], "rate_s": [4e4, 1.5e5]},
                            clock_width_mpa=clock_width_mpa, field_grows=grows,
                            dephase=dephase, dephase_wait=wait, relaxed_clocks=relaxed,
                            spread_loading=spread)


@pytest.mark.parametrize("rate", [4e4, 1.5e5])
def test_upper_yield_is_the_weakest_strength_plus_loading_over_nucleation_time(rate):
    """Elastic until the weakest family has been above its strength s for t_nuc: the peak
    is s + √3 G γ̇ t_nuc (to two load steps: the crossing step counts whole and the step
    it fires in already flows), then the avalanche drops it."""
    m = law(strengths=(60.0, 90.0))
    strain, dt = shear_path(rate)
    s, _, _ = integrate_path(m, strain, dt)
    q = vm(s[0])
    peak = 60.0 + math.sqrt(3.0) * SHEAR * rate * T_NUC
    step = math.sqrt(3.0) * SHEAR * rate * dt
    assert peak - 2.01 * step <= q.max() <= peak + 1e-9, (q.max(), peak)
    assert q[np.argmax(q):].min() < 0.8 * q.max()         # the avalanche


def _hold_path(levels_s: list[tuple[float, float]], dt: float) -> np.ndarray:
    """Mandel simple-shear strain (1, n, 6) holding von Mises stress levels (MPa) for the
    given times (s), elastic (no flow before any firing)."""
    g = np.concatenate([np.full(max(round(t / dt), 1), lvl / (math.sqrt(3.0) * SHEAR))
                        for lvl, t in levels_s])
    return mandel.shear_strain(np.concatenate([[0.0], g]))[None]


def test_a_source_clock_pauses_below_its_strength_and_does_not_reset():
    """0.6 t_nuc above s, 10 t_nuc below, 0.6 t_nuc above: the source fires (1.2 t_nuc
    above in all); 0.6 t_nuc above from a virgin state does not. The bowed-out source
    does not unbow while the stress is below its strength."""
    m, dt = law(strengths=(60.0,)), T_NUC / 50
    _, st, _ = integrate_path(m, _hold_path([(70.0, 0.6 * T_NUC), (40.0, 10 * T_NUC),
                                             (70.0, 0.6 * T_NUC)], dt), dt)
    assert st[0, -1, 6] > 0.0 and st[0, :, 8].max() > 0.0
    _, st, _ = integrate_path(m, _hold_path([(70.0, 0.6 * T_NUC)], dt), dt)
    assert np.all(st[0, :, 6] == 0.0) and np.all(st[0, :, 8] == 0.0)


@pytest.mark.parametrize("a", [0.5, 2.0])
def test_relaxation_after_one_firing_is_exponential_in_emission_times_pinning_time(a):
    """Held at fixed strain after one firing, with pinning independent of ε̄_p and a
    constant static strength σ_b: dσ/dt = -3G m(t)(σ - σ_b), m = m0 e^(-t/t_pin), so
    σ_∞ - σ_b = (σ_0 - σ_b) exp(-3G m0 t_pin). m0 = a/(3G t_pin)."""
    t_pin = 0.02 * T_NUC
    m = law(strengths=(60.0,), emission=a / (3.0 * SHEAR * t_pin), t_pin=t_pin,
            eps_pin=1e6, sigma_b=(10.0, 10.0))
    dt = t_pin / 200
    # a fast ramp to σ0 = 100 MPa, held until one firing and 40 t_pin after it
    strain = _hold_path([(100.0, T_NUC + 40 * t_pin)], dt)
    strain[0, 0] = 0.0
    s, st, _ = integrate_path(m, strain, dt)
    q = vm(s[0])
    fired = int(np.argmax(st[0, :, 8] > 0))
    sig0 = q[fired - 1]
    expected = 10.0 + (sig0 - 10.0) * math.exp(-a)
    assert int(np.sum(np.diff(st[0, :, 8]) > 0)) == 1          # one firing in the hold
    assert q[-1] == pytest.approx(expected, rel=0.01), (q[-1], expected)


def test_interface_checks_pass():
    m = law(strengths=tuple(family_strengths(52.0, 11.0, 8, 0.9, 0.8)))
    rep = check_constitutive(m, amplitude=4e-3, raise_on_failure=False)
    assert rep.passed, {k: v for k, v in rep.to_dict()["checks"].items() if not v["passed"]}


def _tangent_errors(m: SourceFamiliesJ2, rate: float) -> np.ndarray:
    """Along simple shear at ``rate``: each step's max |central-difference tangent −
    the model's| over max |difference tangent|."""
    strain, dt = shear_path(rate, gamma_max=2.5e-3, n=200)
    st, out, h = m.initial_state(1), [], 1e-9
    for k in range(strain.shape[1] - 1):
        e0, de = strain[:, k], strain[:, k + 1] - strain[:, k]
        r = m.update(e0, de, st, dt)
        fd = np.stack([(m.update(e0, de + h * np.eye(6)[j][None], st, dt).stress[0]
                        - m.update(e0, de - h * np.eye(6)[j][None], st, dt).stress[0])
                       / (2 * h) for j in range(6)], axis=1)
        out.append(np.abs(fd - r.tangent[0]).max() / np.abs(fd).max())
        st = r.state
    return np.asarray(out)


@pytest.mark.parametrize("rate", [4e4, 7e4])
def test_the_tangent_is_consistent_where_a_family_fires_within_the_step(rate, monkeypatch):
    """Newton in the FEM needs dσ/dε of the update itself. Where a family crosses its
    strength within a step and fires there, the trial stress sets its firing time and so
    m_eff: the radial-return tangent at fixed m_eff misses that (relative errors 0.2-0.4
    at such steps of the example's fit, linear Newton convergence in its cylinder); with
    the firing term every step matches central differences."""
    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0))
    err = _tangent_errors(m, rate)
    assert err.max() < 1e-5, (err.max(), int(err.argmax()))
    # the path has such steps, and without the firing term they are off
    monkeypatch.setattr(SourceFamiliesJ2, "_fluidity_tangent", lambda self, t, *a: t)
    assert _tangent_errors(m, rate).max() > 1e-2


@pytest.mark.parametrize("width,grows,wait", [
    (0.0, False, False), (2 * math.sqrt(3.0) * 12.0, True, False), (0.0, False, True),
    (2 * math.sqrt(3.0) * 12.0, True, True)])
def test_the_tangent_is_consistent_with_dephased_families(width, grows, wait, monkeypatch):
    """With ``dephase`` a family that has fired emits at the rate C(1)·emission/t_nuc,
    which the trial stress sets, and a first firing's family emits its renewal share
    over the rest of the step: both move m_eff with the increment. Every step of a path
    through the avalanche and on matches central differences, for step and for smooth
    clocks (the example's: the field growing), and without those terms it does not; so
    with ``dephase_wait``, where the renewal starts one clock after the first firing."""
    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0), clock_width_mpa=width,
            grows=grows, dephase=True, wait=wait)
    err = _tangent_errors(m, 7e4)
    assert err.max() < 1e-5, (err.max(), int(err.argmax()))
    if wait and width == 0.0:
        return   # step clocks: no family dephased a clock later crosses its strength here
        # (a path built for that: the test after this one)
    # without the dephased terms (the firing term kept) the tangent is off. dephased=None
    # makes _dM_dq return before it reads ``start``, so with dephase_wait this control
    # drops the dephased families' term and the renewal starts' term together
    orig = SourceFamiliesJ2._dM_dq
    monkeypatch.setattr(SourceFamiliesJ2, "_dM_dq",
                        lambda self, *a, **k: orig(self, *a[:-1], None, **k))
    # measured 3e-3 (step clocks: crossings only) and 7e-4 (smooth): 70-300x the 1e-5;
    # 2.9e-4 with dephase_wait (the families dephase a clock later)
    assert _tangent_errors(m, 7e4).max() > (1e-4 if wait else 3e-4)


def _wait_crossing_path() -> tuple[np.ndarray, list[float]]:
    """(Mandel strains (n+1, 6), the n step times) of simple shear for one family
    (strength 60 MPa) with ``dephase_wait``: loaded at 7e4/s in steps of t_nuc/20 until
    it fires (step 27, σ_vm ≈ 200 MPa), unloaded elastically by 80 MPa in 4 steps (the
    clock runs until the stress is below 60 MPa, then stops at ≈ 1.16 t_nuc), held 3
    steps, then reloaded in one step of 2.4 t_nuc whose trial stress rises by 60 MPa
    across the strength (from ≈ 27 to ≈ 87 MPa: 0.45 of the step above it, 1.08 t_nuc of
    clock): the waiting clock reaches 2 t_nuc within that step (step 35); then 5 steps
    more at 7e4/s."""
    per = math.sqrt(3.0) * SHEAR      # von Mises MPa per unit (engineering) shear strain
    dt = T_NUC / 20.0
    g = list(np.arange(29) * 7e4 * dt)
    dts = [dt] * 28
    for _ in range(4):
        g.append(g[-1] - 20.0 / per)
    g += [g[-1]] * 3
    dts += [dt] * 7
    g.append(g[-1] + 60.0 / per)
    dts.append(2.4 * T_NUC)
    for _ in range(5):
        g.append(g[-1] + 7e4 * dt)
        dts.append(dt)
    return mandel.shear_strain(np.array(g)), dts


def _path_tangent_errors(m: SourceFamiliesJ2, strain: np.ndarray, dts: list[float]
                         ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per step of the path: max |central difference of the update's stress w.r.t. the
    increment − the model's tangent| over max |difference tangent| (as
    :func:`_tangent_errors`); and the states at the step starts and the path's end."""
    st, out, states, h = m.initial_state(1), [], [], 1e-9
    for k, dt in enumerate(dts):
        e0, de = strain[k][None], (strain[k + 1] - strain[k])[None]
        r = m.update(e0, de, st, dt)
        fd = np.stack([(m.update(e0, de + h * np.eye(6)[j][None], st, dt).stress[0]
                        - m.update(e0, de - h * np.eye(6)[j][None], st, dt).stress[0])
                       / (2 * h) for j in range(6)], axis=1)
        out.append(np.abs(fd - r.tangent[0]).max() / np.abs(fd).max())
        states.append(st)
        st = r.state
    return np.asarray(out), [*states, st]


def test_the_tangent_is_consistent_where_a_waiting_clock_runs_out_as_the_stress_crosses(
        monkeypatch):
    """Step clocks with ``dephase_wait``: where a family's waiting clock reaches 2 t_nuc
    within a step in which the stress crosses the family's strength, the trial stress sets
    when the renewal starts and so its inflow over the rest of the step (the start term,
    ``_dM_dq(start=...)``). On a path built for it (:func:`_wait_crossing_path`: fire,
    unload below the strength part-way through the wait, reload across it in the step
    that ends the wait) every step's tangent matches central differences to 1e-5
    (measured 1.3e-10 at that step), and with only the start term dropped (``start``
    passed as None, the dephased families' term kept) that step is off (measured 0.75)
    and no other step moves."""
    m = law(strengths=(60.0,), dephase=True, wait=True)
    strain, dts = _wait_crossing_path()
    seen = []
    orig = SourceFamiliesJ2._dM_dq

    def spy(self, *a, start=None, **k):
        seen.append(start is not None and bool(np.any(start[0])))
        return orig(self, *a, start=start, **k)

    monkeypatch.setattr(SourceFamiliesJ2, "_dM_dq", spy)
    err, states = _path_tangent_errors(m, strain, dts)
    assert err.max() < 1e-5, (err.max(), int(err.argmax()))
    # the branch's condition, from the states: a waiting clock c0 in [t_nuc, 2 t_nuc)
    # at the step's start, the strength crossed within the step (0 < frac < 1) and
    # c0 + dt·frac past 2 t_nuc by a margin (the renewal starts inside the step, and
    # the central differences' ±1e-9 strain cannot move it out), only at step 35
    branch = []
    for k, dt in enumerate(dts):
        st0, e0, e1 = states[k], strain[k], strain[k + 1]
        sig_s = float(vm(((e0 - st0[0, :6]) @ m.stiffness.T)[None])[0])
        sig_e = float(vm(((e1 - st0[0, :6]) @ m.stiffness.T)[None])[0])
        c0 = st0[0, 9]
        frac = float(np.clip((sig_e - 60.0) / (sig_e - sig_s), 0.0, 1.0)) \
            if sig_e != sig_s else float(sig_e > 60.0)
        if (T_NUC <= c0 < 2.0 * T_NUC and 0.0 < frac < 1.0 and sig_e > sig_s
                and 0.1 * T_NUC < c0 + dt * frac - 2.0 * T_NUC < dt):
            branch.append(k)
            assert states[k + 1][0, 9] == 2.0 * T_NUC          # the mark reached
            assert states[k + 1][0, 7] > 0.0                    # the point flows
    assert branch == [35], branch
    # the update took that branch there and nowhere else: _dM_dq got a start crossing
    # in that step's update and its 12 central-difference updates, in no other call
    assert sum(seen) == 13, sum(seen)
    seen.clear()
    m.update(strain[35][None], (strain[36] - strain[35])[None], states[35], dts[35])
    assert seen == [True]
    # control: drop only the start term
    monkeypatch.setattr(SourceFamiliesJ2, "_dM_dq",
                        lambda self, *a, **k: orig(self, *a, **{**k, "start": None}))
    off, _ = _path_tangent_errors(m, strain, dts)
    assert off[35] > 1e-2, off[35]
    np.testing.assert_array_equal(np.delete(off, 35), np.delete(err, 35))


def test_the_inflow_integral_is_continuous_across_its_series_switch():
    """``_inflow_integral`` = (t − D)/r with D = (1 − e^(−rt))/r, its series below rt =
    1e-4: both sides of the switch agree with the exact value (mpmath-free: the
    difference at x = 1e-3, where it loses ~6 digits, and t²/2 at x → 0)."""
    from scalebridge.surrogates.source_families import _decay_integral, _inflow_integral

    t = np.array([2e-9, 2e-9, 2e-9, 2e-9])
    r = np.array([1e-3, 0.99e-4, 1.01e-4, 1e-3]) / t
    got = _inflow_integral(r, t)
    x = r * t
    exact = t * t * (x - (-np.expm1(-x))) / (x * x)      # exact, without the series
    exact[:2] = t[:2] ** 2 * (0.5 - x[:2] / 6 + x[:2] ** 2 / 24)   # the series to O(x³)
    np.testing.assert_allclose(got, exact, rtol=1e-9)
    assert abs(got[1] / got[2] - 1) < 1e-4 * 1.01 / 3            # no jump at the switch
    np.testing.assert_allclose(_inflow_integral(np.array([0.0]), np.array([3e-9])),
                               [4.5e-18], rtol=1e-15)
    assert (t - _decay_integral(r, t) >= 0).all()


def test_a_dephased_family_fires_its_first_burst_whatever_the_rounding_of_its_clock():
    """A clock that reaches t_nuc after n steps of t_nuc/n lands a few ulp below t_nuc
    for many n (36 here): it must still fire its first burst (m jumps by the emission)
    before it emits at its renewal rate; a clock one ulp below t_nuc is not the mark."""
    m = law(strengths=(20.0,), emission=50.0, sigma_b=(1e6, 1e6), dephase=True)
    e = np.zeros((1, 6))
    e[0, 3] = 400.0 / (2.0 * SHEAR) * math.sqrt(2.0)
    st = m.initial_state(1)               # steps start at the held strain: frac = 1
    dt = T_NUC / 36
    ms, clocks = [], []
    for _ in range(40):
        st = m.update(e, np.zeros((1, 6)), st, dt).state
        ms.append(st[0, 8])
        clocks.append(st[0, 9])
    ms = np.array(ms)
    k = int(np.argmax(ms > 0))
    assert k in (35, 36)
    # the burst (50, pinning over the rest of the step) dwarfs a step's renewal inflow
    assert ms[k] > 0.5 * 50.0 and ms[k] > 20 * 50.0 * dt / T_NUC
    assert clocks[k] == T_NUC


def test_a_family_that_waits_a_clock_emits_nothing_until_then_and_renews_after():
    """With ``dephase_wait`` a family held above its strength fires its first burst at
    t_nuc as a dephased one does, then emits nothing (m only pins away) until its clock
    has run one more t_nuc, and from then on at the dephased family's renewal rate: the
    same steady m. The config carries the flag; an old config without it loads as
    False, and the flag without ``dephase`` is refused."""
    kw = dict(strengths=(20.0,), emission=50.0, sigma_b=(1e6, 1e6), dephase=True)
    deph, wait = law(**kw), law(**kw, wait=True)
    e = np.zeros((1, 6))
    e[0, 3] = 400.0 / (2.0 * SHEAR) * math.sqrt(2.0)     # σ_xy 400 MPa, held
    dt = T_NUC / 37.0
    out = []
    for model in (deph, wait):
        st = model.update(np.zeros((1, 6)), e, model.initial_state(1), dt).state
        ms, clocks = [], []
        for _ in range(10 * 37):
            st = model.update(e, np.zeros((1, 6)), st, dt).state
            ms.append(st[0, 8])
            clocks.append(st[0, 9])
        out.append((np.array(ms), np.array(clocks)))
    (m_d, _), (m_w, c_w) = out
    first = int(np.argmax(m_w > 0))
    assert first == int(np.argmax(m_d > 0))             # the same first burst
    assert m_w[first] == pytest.approx(m_d[first], rel=0.05)
    # the waiting clock: no inflow, m decays by the pinning alone, step after step
    quiet = slice(first + 2, first + 34)
    ratio = m_w[quiet][1:] / m_w[quiet][:-1]
    np.testing.assert_allclose(ratio, math.exp(-dt / 2.5e-9), rtol=1e-9)
    assert (m_w[quiet] < m_d[quiet]).all()
    assert c_w[first + 20] > T_NUC and c_w[-1] == 2.0 * T_NUC
    assert m_w[-1] == pytest.approx(m_d[-1], rel=1e-6)  # then the same renewal
    c = wait.to_config()
    assert c["dephase_wait"] and SourceFamiliesJ2.from_config(c).dephase_wait
    del c["dephase_wait"]
    assert not SourceFamiliesJ2.from_config(c).dephase_wait
    with pytest.raises(ValueError, match="dephase_wait needs dephase"):
        law(strengths=(20.0,), wait=True)


def _held_wait_path(model: SourceFamiliesJ2, dt: float, n: int, compiled: bool = False
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(m, m_eff, clock, ε̄_p) at the step ends t = k·dt, k = 0..n, of a single family
    held at σ_xy 400 MPa from the first step on (the step starts at the held strain:
    frac = 1, the clock runs at rate 1), stepping :meth:`SourceFamiliesJ2.update` or,
    ``compiled``, ``integrate_stress_only`` (the kernel)."""
    e = np.zeros((1, 6))
    e[0, 3] = 400.0 / (2.0 * SHEAR) * math.sqrt(2.0)
    if compiled:
        path = np.repeat(e[:, None], n + 1, axis=1)
        out = model.integrate_stress_only(path, np.array([dt]), model.initial_state(1))
        assert out is not None
        st = out[1][0]
    else:
        rows = [model.initial_state(1)[0]]
        st1 = model.initial_state(1)
        for _ in range(n):
            st1 = model.update(e, np.zeros((1, 6)), st1, dt).state
            rows.append(st1[0])
        st = np.array(rows)
    return st[:, 8], st[:, 7], st[:, 9], st[:, 6]


def _wait_closed_form(t: np.ndarray, dt: float, emission: float, r: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(m(t), m_eff of the step ending at t) of a family whose clock runs at rate 1 from
    t = 0 (``dephase_wait``): the burst ``emission`` at t_f = t_nuc, pinning at ``r``;
    from t_s = 2 t_nuc the renewal inflow emission/t_nuc, pinning as it comes:
    m(t) = E e^(−r(t − t_f)) [t > t_f] + E/(t_nuc r)(1 − e^(−r(t − t_s))) [t > t_s], and
    the step's M = ∫m over [t − dt, t] in closed form, m_eff = expm1(3G M)/(3G dt)."""
    tf, ts, big_e = T_NUC, 2.0 * T_NUC, emission
    m, big_m = np.zeros(t.size), np.zeros(t.size)
    for i, b in enumerate(t):
        t0 = b - dt
        if b > tf:
            lo = max(t0, tf)
            m[i] += big_e * math.exp(-r * (b - tf))
            big_m[i] += big_e * math.exp(-r * (lo - tf)) * -math.expm1(-r * (b - lo)) / r
        if b > ts:
            lo = max(t0, ts)
            m[i] += big_e / (T_NUC * r) * -math.expm1(-r * (b - ts))
            big_m[i] += big_e / (T_NUC * r) * (
                (b - lo) - math.exp(-r * (lo - ts)) * -math.expm1(-r * (b - lo)) / r)
    g3 = 3.0 * SHEAR
    a = g3 * big_m                  # the update's own branch below 3G M = 1e-8
    m_eff = np.where(a > 1e-8, np.expm1(a) / (g3 * dt), big_m / dt)
    return m, m_eff


def _wait_errors(model: SourceFamiliesJ2, steps_per_t_nuc: float, compiled: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """Per step end: |m − closed form|/closed form and the same for m_eff (0 where both
    are 0, inf where only one is), along 4.5 t_nuc of the held path at dt =
    t_nuc/``steps_per_t_nuc``; and dt."""
    dt = T_NUC / steps_per_t_nuc
    n = math.ceil(4.5 * steps_per_t_nuc)
    m, m_eff, clock, ep = _held_wait_path(model, dt, n, compiled)
    assert np.all(ep == 0.0)            # no flow (σ_b far above): the pinning rate is 1/t_pin
    t = dt * np.arange(n + 1)
    # the clock runs at rate 1 up to the mark 2 t_nuc and is held there
    np.testing.assert_allclose(clock, np.minimum(t, 2.0 * T_NUC), rtol=1e-12, atol=0)
    assert np.all(clock[t > 2.0 * T_NUC + dt] == 2.0 * T_NUC)
    want_m, want_eff = _wait_closed_form(t, dt, model.emission, 1.0 / model.pinning_time_s)

    def rel(got, want):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(want > 0, np.abs(got / want - 1.0),
                            np.where(got == 0, 0.0, np.inf))
    return rel(m, want_m), rel(m_eff, want_eff), dt


def _waiting_family() -> SourceFamiliesJ2:
    # one family whose strength (20 MPa) is far below the held stress (its clock runs at
    # rate 1), no flow (σ_b 1e6 MPa)
    return law(strengths=(20.0,), emission=50.0, sigma_b=(1e6, 1e6), dephase=True,
               wait=True)


@pytest.mark.parametrize("steps_per_t_nuc,inside", [(12.3, True), (40.3, True),
                                                    (12.5, False)])
@pytest.mark.parametrize("compiled", [False, True])
def test_a_waiting_family_follows_its_closed_form_at_every_step_end(steps_per_t_nuc,
                                                                      inside, compiled):
    """``dephase_wait`` held at a stress above the family's strength (clock rate exactly
    1, no flow, so the pinning rate is r = 1/t_pin): the burst E at t_f = t_nuc, nothing
    for one more t_nuc, then the renewal inflow E/t_nuc from t_s = 2 t_nuc on, resolved
    within the step. m(t) = E e^(−r(t − t_f)) + E/(t_nuc r)(1 − e^(−r(t − t_s)))[t > t_s]
    and each step's m_eff = expm1(3G ∫m dt)/(3G dt) match the update (and the compiled
    kernel) at every step end to 1e-9, at t_nuc/12.3 and t_nuc/40.3 (t_f and t_s strictly
    inside steps: a switch moved to a step end fails, see the control below; so would
    the firing's remainder taken for the renewal's, which leaves the switch step without
    inflow as that control does, or a longer wait) and t_nuc/12.5 (t_s at a step end).
    t_f is never at a step end: m jumps there, so the step end's m could be either
    limit, depending on the clock's rounding."""
    ts_steps = 2.0 * steps_per_t_nuc
    assert (abs(ts_steps - round(ts_steps)) > 0.1) == inside
    assert abs(steps_per_t_nuc - round(steps_per_t_nuc)) > 0.1
    err_m, err_eff, _ = _wait_errors(_waiting_family(), steps_per_t_nuc, compiled)
    assert err_m.max() < 1e-9, (err_m.max(), int(err_m.argmax()))
    assert err_eff.max() < 1e-9, (err_eff.max(), int(err_eff.argmax()))


def test_the_waiting_closed_form_catches_a_renewal_switched_at_step_ends(monkeypatch):
    """The control of the closed-form test: with the renewal's start moved to the end of
    the step in which the waiting clock runs out (``_since`` of the starting families
    returned as 0, so that step gets no renewal inflow; the clock still goes to the mark),
    at t_nuc/12.3 the check passes up to the switch and fails from the step that holds
    t_s = 2 t_nuc on."""
    m = _waiting_family()
    orig = SourceFamiliesJ2._since
    calls = []

    def quantised(self, rem, fired, *a):
        # update calls _since for the first firings, then (dephase_wait) for the starts
        calls.append(None)
        out = orig(self, rem, fired, *a)
        return np.zeros_like(out) if len(calls) % 2 == 0 else out

    monkeypatch.setattr(SourceFamiliesJ2, "_since", quantised)
    err_m, err_eff, dt = _wait_errors(m, 12.3)
    switch = math.ceil(2.0 * T_NUC / dt)           # the step end after t_s (step 25)
    assert err_m[:switch].max() < 1e-9 and err_eff[:switch].max() < 1e-9
    assert err_m[switch] > 0.05 and err_eff[switch] > 0.05, (err_m[switch],
                                                              err_eff[switch])
    assert err_m.max() > 0.05


def test_a_dephased_family_emits_at_its_renewal_rate():
    """Held at a stress above every strength (no flow: σ_b far above), a family firing in
    bursts every t_nuc and a dephased one emit the same on average: m of the dephased
    model settles at emission·K/(t_nuc·r), the time average of the bursting one's
    sawtooth, and the first firing of both comes at t_nuc."""
    k, r_pin = 3, 1.0 / 2.5e-9
    kw = dict(strengths=(20.0, 30.0, 40.0), emission=50.0, sigma_b=(1e6, 1e6))
    burst, deph = law(**kw), law(**kw, dephase=True)
    e = np.zeros((1, 6))
    e[0, 3] = 400.0 / (2.0 * SHEAR) * math.sqrt(2.0)     # σ_xy 400 MPa, held
    dt = T_NUC / 37.0
    m_b, m_d = [], []
    for model, out in ((burst, m_b), (deph, m_d)):
        st = model.initial_state(1)
        st = model.update(np.zeros((1, 6)), e, st, dt).state
        for _ in range(40 * 37):
            st = model.update(e, np.zeros((1, 6)), st, dt).state
            out.append(st[0, 8])
    m_b, m_d = np.array(m_b), np.array(m_d)
    # nothing before the first firing, the same first firing in both
    first_b, first_d = int(np.argmax(m_b > 0)), int(np.argmax(m_d > 0))
    assert first_b == first_d and abs(first_b - 36) <= 1
    steady = 50.0 * k / (T_NUC * r_pin)
    assert m_d[-1] == pytest.approx(steady, rel=1e-3)
    # in the steady state ∫m dt over a step is steady·dt exactly, so m_eff is its map
    m_eff = deph.update(e, np.zeros((1, 6)), st, dt).state[0, 7]
    g3 = 3.0 * SHEAR
    assert m_eff == pytest.approx(math.expm1(g3 * steady * dt) / (g3 * dt), rel=1e-6)
    # 20 whole periods of the bursting sawtooth, sampled at step ends: each sample is
    # x e^-x/(1 - e^-x) of its step's mean (x = r dt, the decay within a step)
    late = m_b[-20 * 37:]
    x = r_pin * dt
    assert late.mean() * -math.expm1(-x) / (x * math.exp(-x)) == pytest.approx(steady,
                                                                             rel=0.02)
    assert late.max() > 1.5 * steady > m_d[-37:].max()  # the bursts, not the dephased


def test_mobile_density_responds_to_the_md_drag():
    """ρ_m = 3B m/b²: the same fluidity read with twice the MD drag is twice the density."""
    m = law()
    r1 = m.mobile_density(np.array([1e3]), 8.45e-5, 2.744e-10)[0]
    r2 = m.mobile_density(np.array([1e3]), 2 * 8.45e-5, 2.744e-10)[0]
    assert r1 == pytest.approx(3 * 8.45e-5 * 1e3 * 1e-6 / (2.744e-10) ** 2, rel=1e-12)
    assert r2 == pytest.approx(2.0 * r1, rel=1e-12)


def synthetic(model: SourceFamiliesJ2, rates=(4e4, 7e4, 1.5e5), n: int = 80) -> StrainPaths:
    strain, stress, dts = [], [], []
    for rate in rates:
        e, dt = shear_path(rate, gamma_max=4e-3, n=n)
        strain.append(e[0])
        stress.append(integrate_path(model, e, dt)[0][0])
        dts.append(dt)
    return StrainPaths(np.array(strain), np.array(stress), np.array(dts),
                       np.full(len(rates), 300.0), np.array(rates, float), None,
                       {"source": "j2", "bulk_mpa": BULK, "shear_mpa": SHEAR,
                        "yield_stress_mpa": 60.0, "nucleation_time_s": T_NUC,
                        "source_strength_mpa": 40.0, "source_strength_std_mpa": 8.0})


def truth() -> SourceFamiliesJ2:
    """8 families of the DD-like strength distribution 40 ± 8 MPa (resolved)."""
    return law(strengths=tuple(family_strengths(40.0, 8.0, 8, 0.9, 0.8)), emission=1.5e3,
               eps_pin=2e-3)


def test_fit_recovers_a_known_law():
    """Paths at 4e4, 1e5 and 1.5e5 /s from a known law: the fit cuts the training error
    of its start by more than 40 % and reproduces the 7e4 /s path to within 15 % of its
    flow stress. The firings make the loss rugged: the fit ends in a minimum near the
    truth, not on it, and which one moves with the Powell budget (measured, each with the
    100-evaluation polish: 200 Powell evaluations 2.2 MPa from 18.9 at the start, the
    7e4 /s path within 4.8 MPa, 7.6 % of its 63.7 MPa; 150: 4.3 and 11.9 %; 250: 5.3
    and 11.6 %; 300: 7.3 and 15.4 %; 400: 7.3 and 15.3 %; 800: 6.1 and 12.6 %; with the
    clocks held to step ends the same fit on 4e4 and 1.5e5 /s alone reached 4.6 and
    5.2 MPa, with continuous-time clocks 4.4 and 8.7: two rates pin the rate dependence
    less than three)."""
    data = synthetic(truth(), rates=(4e4, 7e4, 1e5, 1.5e5))
    tr, va = data.subset(np.array([0, 2, 3])), data.subset(np.array([1]))
    kw = {"families": 8, "nucleation_time_s": T_NUC, "source_mean_mpa": 40.0,
          "source_std_mpa": 8.0, "restarts": 0}
    start = fit_source_families(tr, va, max_evaluations=1, polish=0, **kw)[2][0]
    model, rec, hist = fit_source_families(tr, va, max_evaluations=200, **kw)
    flow = float(vm(va.stress)[0, -16:].mean())
    # two starts, the lower training RMS kept: here the first (σ_b hardening, as the
    # law's); from the second (σ_b at its floor) alone the fit ends near 10 MPa
    assert len(hist) == 2 == rec["fit"]["starts"]
    best = min(hist, key=lambda h: h["train_rmse_mpa"])
    assert best is hist[0] and hist[1]["train_rmse_mpa"] > 2 * hist[0]["train_rmse_mpa"]
    assert replay_rmse(model, tr) == pytest.approx(best["train_rmse_mpa"], rel=1e-9)
    assert best["train_rmse_mpa"] < 0.6 * start["train_rmse_mpa"], (start, hist)
    assert best["val_rmse_mpa"] < 0.15 * flow, (flow, hist)
    assert rec["class"] == "SourceFamiliesJ2"
    assert set(rec["fit"]["parameters"]) >= {"scale", "spread", "pinning_time_s"}
    # the fit trades the truth's small initial static strength (5 of 60 MPa) for source
    # hardening and stops σ_0 at its floor (1e-3 σ_ref): the record says so; every other
    # parameter is set by the data
    assert rec["fit"]["at_bound"] == ["sigma0_mpa"]
    assert rec["fit"]["parameters"]["sigma0_mpa"] == pytest.approx(
        rec["fit"]["static_floor_mpa"], rel=1e-9)


def test_the_parameters_at_the_edge_of_their_range_are_named():
    """A parameter the fit left at the edge of what it allows (ln PARAM_RANGE about the
    first start, σ_b's two at their floor) was bounded, not fitted: named, in PARAMETERS
    order; one just inside is not, nor a σ_b above its floor, and a floor that came back
    an ulp high from exp(log) still counts."""
    from scalebridge.surrogates.source_families import (
        PARAM_RANGE,
        PARAMETERS,
        parameters_at_bound,
    )

    span = math.log(PARAM_RANGE)
    x0 = np.linspace(-3.0, 3.0, len(PARAMETERS))
    floor = 0.0915
    x = x0.copy()
    params = {k: 1.0 for k in PARAMETERS} | {"sigma0_mpa": 2 * floor, "sigma_inf_mpa": 40.0}
    assert parameters_at_bound(x, x0, params, floor) == []
    x[PARAMETERS.index("scale")] = x0[PARAMETERS.index("scale")] - span - 0.5   # past
    x[PARAMETERS.index("eps_h")] = x0[PARAMETERS.index("eps_h")] + span * (1 - 1e-6)
    params["sigma_inf_mpa"] = math.exp(math.log(floor)) * (1 + 2e-16)
    assert parameters_at_bound(x, x0, params, floor) == ["scale", "sigma_inf_mpa"]
    x[PARAMETERS.index("eps_h")] = x0[PARAMETERS.index("eps_h")] + span   # at the edge
    params["sigma0_mpa"] = floor
    assert parameters_at_bound(x, x0, params, floor) == [
        k for k in PARAMETERS if k in {"scale", "eps_h", "sigma0_mpa", "sigma_inf_mpa"}]


def test_surrogate_roundtrip_export_and_damaged_record(tmp_path):
    """fit_surrogate's files, persistence, export and a damaged record refused; nothing
    here reads the fit's quality (test_fit_recovers_a_known_law does), so three coarse
    paths (20 steps) keep the fit (up to 1500 Powell evaluations) short. The steps still
    move the serrated paths: halving them moves the stress by 0.22 of the flow stress
    (RMS; measured, against the 1e-3 asked)."""
    data = synthetic(truth(), n=20)
    s = SurrogateSettings(model="source_families", families=8, restarts=0, val_fraction=0.3)
    summ = fit_surrogate(data, s, tmp_path)
    assert summ["class"] == "SourceFamiliesJ2" and summ["checks_passed"]
    assert (tmp_path / "mobile_density.png").stat().st_size > 0     # no drag in the meta:
    head = (tmp_path / "mobile_density.csv").read_text().splitlines()[0]   # fluidity only
    assert head == "path,strain_rate_s,strain_eq,eps_p_eq,fluidity_per_mpa_s"
    m = load_surrogate(tmp_path)
    assert isinstance(m, SourceFamiliesJ2) and m.nucleation_time_s == T_NUC
    # a discrete-time fit: it records the steps it was fitted at, for the FEM's check
    assert summ["time_step_rel_change"] > 1e-3
    assert m.training_range["dt_s"] == summ["trained_dt_s"] == [
        pytest.approx(float(data.dt.min())), pytest.approx(float(data.dt.max()))]
    rec = json.loads((tmp_path / "surrogate.json").read_text())
    assert rec["source_families"]["nucleation_time_from"] == "the DD run's nucleation clock"
    e, dt = shear_path(7e4, n=50)
    again = integrate_path(m, e, dt)[0]
    fresh = integrate_path(SourceFamiliesJ2.from_config(rec["config"]), e, dt)[0]
    np.testing.assert_array_equal(again, fresh)
    files = export_surrogate(tmp_path, tmp_path / "export")
    assert [f.name for f in files] == ["surrogate.json"]
    rec["config"]["pinning_time_s"] = float("nan")
    (tmp_path / "surrogate.json").write_text(json.dumps(rec))
    with pytest.raises(ArtifactError, match="pinning_time_s is nan"):
        load_surrogate(tmp_path)


def test_a_dd_run_without_source_settings_is_refused(tmp_path):
    data = synthetic(truth())
    data.meta.pop("nucleation_time_s")
    with pytest.raises(Exception, match="needs a DD run whose sources fire on"):
        fit_surrogate(data, SurrogateSettings(model="source_families"), tmp_path)


def test_time_step_sensitivity_is_zero_for_a_rate_independent_law_not_for_the_clocks():
    """Halving the step: radial return of rate-independent J2 on a proportional path is
    exact at any step (no change); the source clocks, though run in continuous time
    within a step, still read the elastic trial stress and the flow is backward Euler,
    so the serrated path moves a little (the FEM steps where the fit was made)."""
    from scalebridge.surrogates.j2 import J2Plasticity, LinearHardening
    from scalebridge.surrogates.train import refined_paths, time_step_sensitivity

    e, dt = shear_path(1e5, n=60)
    paths = StrainPaths(e, np.zeros_like(e), np.array([dt]),
                        np.array([300.0]), np.array([1e5]))
    fine = refined_paths(paths, 3)
    assert fine.strain.shape[1] == 3 * (e.shape[1] - 1) + 1
    np.testing.assert_allclose(fine.strain[:, ::3], paths.strain, atol=1e-15)
    assert fine.dt[0] == pytest.approx(dt / 3)
    j2 = J2Plasticity(300e3, 0.3, LinearHardening(60.0, 2e3))
    flat = time_step_sensitivity(j2, paths)
    assert flat["rms_change_mpa"] < 1e-6 and flat["refine"] == 2
    clocks = time_step_sensitivity(law(strengths=(60.0, 70.0, 80.0)), paths)
    assert clocks["rms_change_mpa"] > 1.0 and clocks["dt_s"] == [dt, dt]


def test_a_step_of_no_time_is_elastic():
    """dt = 0 (a load step of no duration): no clock runs, no viscous flow; the stress is
    the elastic trial, finite, and the state keeps its fluidity."""
    m = law(strengths=(60.0,))
    strain, dt = shear_path(1.5e5, n=80)
    _, states, _ = integrate_path(m, strain, dt)
    st = states[0, -1][None]                       # after the avalanche: m > 0
    assert st[0, 8] > 0
    e, de = strain[0, -1][None], mandel.shear_strain(np.array([2e-4]))
    r = m.update(e, de, st, 0.0)
    np.testing.assert_allclose(r.stress, (e + de - st[:, :6]) @ m.stiffness.T, rtol=1e-12)
    assert np.isfinite(r.tangent).all() and r.state[0, 8] == st[0, 8]


def _numpy_replay(m: SourceFamiliesJ2, path: np.ndarray, dt: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """integrate_path stepping :meth:`SourceFamiliesJ2.update` (the compiled replay off)."""
    m.integrate_stress_only = lambda *a: None        # an instance attribute: this model only
    try:
        return integrate_path(m, path, dt)
    finally:
        del m.integrate_stress_only


def _numpy_replay_from(m: SourceFamiliesJ2, path: np.ndarray, dt: np.ndarray,
                      state: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m.integrate_stress_only = lambda *a: None
    try:
        return integrate_path(m, path, dt, state=state)
    finally:
        del m.integrate_stress_only


def test_a_stress_only_replay_gives_the_same_stresses_and_no_tangents():
    """A stress-only replay (every fit's thousands) skips the consistent tangent: its
    stresses and states are bit for bit those of steps that compute it, the model is
    back to returning tangents afterwards, and inside stress_only it returns none."""
    from scalebridge.surrogates.protocol import stress_only

    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0))
    runs = [shear_path(r, 2e-3, 60) for r in (4e4, 7e4, 1.5e5)]
    path = np.concatenate([p for p, _ in runs])
    dt = np.asarray([d for _, d in runs])
    stress, states, _ = _numpy_replay(m, path, dt)
    st = m.initial_state(3)
    for k in range(60):
        r = m.update(path[:, k], path[:, k + 1] - path[:, k], st, dt)
        assert r.tangent is not None and r.tangent.shape == (3, 6, 6)
        np.testing.assert_array_equal(r.stress, stress[:, k + 1])
        st = r.state
        np.testing.assert_array_equal(st, states[:, k + 1])
    assert vm(stress).max() > 60.0     # the families fired: the plastic branch was taken
    assert m.stress_only is False
    with stress_only(m):
        assert m.update(path[:, 5], path[:, 6] - path[:, 5], states[:, 5], dt).tangent is None
    assert m.stress_only is False


@pytest.mark.parametrize("rate", [4e4, 1.5e5])
def test_each_family_fires_on_its_own_clock(rate):
    """Families with their own nucleation times (the DD's ``nucleation_clock_of =
    'each_source'``): the upper yield is the weakest family's strength plus the loading
    over *its* time (the strong family's, though shorter, comes later), twice the single
    clock's; one time per family equal to the single clock is that model to the bit, and
    the per-family times survive to_config/from_config."""
    strain, dt = shear_path(rate)
    one = law(strengths=(60.0, 90.0))
    # strengths unsorted: the times follow them
    each = law(strengths=(500.0, 60.0), t_nuc=np.array([T_NUC, 2 * T_NUC]))
    same = law(strengths=(60.0, 90.0), t_nuc=np.array([T_NUC, T_NUC]))
    np.testing.assert_array_equal(integrate_path(one, strain, dt)[0],
                                  integrate_path(same, strain, dt)[0])
    assert same.to_config()["nucleation_time_s"] == T_NUC
    assert each.nucleation_times_s.tolist() == [2 * T_NUC, T_NUC]
    q = vm(integrate_path(each, strain, dt)[0][0])
    first = q[:int(np.argmax(np.diff(q) < 0)) + 1].max()     # up to the first drop
    step = math.sqrt(3.0) * SHEAR * rate * dt
    peak = 60.0 + math.sqrt(3.0) * SHEAR * rate * 2 * T_NUC
    assert peak - 2.01 * step <= first <= peak + 1e-9, (first, peak)
    back = SourceFamiliesJ2.from_config(each.to_config())
    np.testing.assert_array_equal(back.nucleation_times_s, each.nucleation_times_s)
    np.testing.assert_allclose(integrate_path(back, strain, dt)[0],      # K, G round-off
                               integrate_path(each, strain, dt)[0], rtol=1e-12, atol=1e-9)


def test_the_fit_times_each_family_by_the_dd_clock_of_its_strength():
    """``nucleation_clocks`` (the DD's clock of each source against its strength): family
    k takes the time of the DD sources it stands for, strength τ̄ + spread·s_τ·z_k with
    the fitted spread (the internal stresses' scale aside), interpolated in log-log (here
    t ∝ 1/τ², a linear drag's, so exactly)."""
    data = synthetic(truth(), n=20)
    tau = np.linspace(20.0, 60.0, 9)
    clocks = {"source_mpa": tau.tolist(), "time_s": (T_NUC * (40.0 / tau) ** 2).tolist()}
    kw = {"families": 4, "nucleation_time_s": T_NUC, "source_mean_mpa": 40.0,
          "source_std_mpa": 8.0, "restarts": 0, "max_evaluations": 30, "polish": 0}
    m, rec, _ = fit_source_families(data, data.subset(np.array([], int)),
                                    nucleation_clocks=clocks, **kw)
    z = np.array([-1.150349, -0.318639, 0.318639, 1.150349])      # the 4 mid-quantiles
    spread = rec["fit"]["parameters"]["spread"]
    assert abs(spread - 1.0) > 1e-3                                 # the fit moved it
    want = T_NUC * (40.0 / (40.0 + spread * 8.0 * z)) ** 2
    np.testing.assert_allclose(m.nucleation_times_s, want, rtol=1e-5)   # log-log: exact
    assert rec["fit"]["nucleation_clocks"] == clocks
    assert fit_source_families(data, data.subset(np.array([], int)), **kw)[0] \
        .nucleation_times_s.tolist() == [T_NUC] * 4


def test_a_start_with_no_model_is_skipped_and_none_at_all_is_a_clear_error():
    """A family whose strength falls below zero has no DD clock (log-log interpolation),
    so no model exists there: a start (or a seeded restart) where Powell finds none is
    skipped, and where every start is such, the fit says so instead of failing inside
    the model's constructor."""
    data = synthetic(truth(), n=20)
    tau = np.linspace(20.0, 60.0, 9)
    clocks = {"source_mpa": tau.tolist(), "time_s": (T_NUC * (40.0 / tau) ** 2).tolist()}
    kw = {"families": 4, "nucleation_time_s": T_NUC, "source_std_mpa": 8.0,
          "max_evaluations": 30, "polish": 0, "nucleation_clocks": clocks}
    empty = data.subset(np.array([], int))
    # mean 5 MPa, spread 0.8 x 8: the weakest families are below zero at every start
    with pytest.raises(ValueError, match="no start gave a model"):
        fit_source_families(data, empty, source_mean_mpa=5.0, restarts=0, **kw)
    _, rec, hist = fit_source_families(data, empty, source_mean_mpa=40.0, restarts=3, **kw)
    assert len(hist) == 5 and math.isfinite(min(h["train_rmse_mpa"] for h in hist))
    assert all(v > 0 for v in rec["fit"]["parameters"].values())


def test_a_smooth_clock_runs_below_its_strength_at_the_normal_tail_rate():
    """``clock_width_mpa = w``: the stress at a source is the applied one plus an internal
    field of width w, so its clock runs at Φ((σ − S)/w). Held at S − w it fires after
    t_nuc/Φ(−1) = 6.3 t_nuc (the step clock never fires there); held at S + 2w, after
    t_nuc/Φ(2)."""
    from scipy.special import ndtr

    dt = T_NUC / 50
    for level, rate in ((50.0, ndtr(-1.0)), (80.0, ndtr(2.0))):
        _, st, _ = integrate_path(law(clock_width_mpa=10.0),
                                  _hold_path([(level, 8 * T_NUC)], dt), dt)
        first = int(np.argmax(st[0, :, 8] > 0))       # the step it fires in
        assert first > 0
        # the first step ramps to the level; the step it fires in ends after the time
        assert (first - 2) * dt <= T_NUC / rate <= first * dt, (first * dt, T_NUC / rate)
    _, st, _ = integrate_path(law(strengths=(60.0,)), _hold_path([(50.0, 8 * T_NUC)], dt), dt)
    assert np.all(st[0, :, 8] == 0.0)


def test_a_growing_internal_field_starts_from_the_step_clock_and_the_sources_own_strength():
    """``field_grows``: the internal field is the emitted dislocations', so a virgin
    crystal has none: the clock width is 1e-3 of the full one, so held at S − w a family
    does not fire (the full width's clock would, after 6.3 t_nuc) and held above S it
    fires when the step clock does; with ``virgin_strength_factor`` 1.25 its strength is
    1.25 S before any plastic strain, so held at 1.1 S it does not fire either. The
    field's share grows as √(ε̄_p/(ε̄_p + ε_pin))."""
    dt = T_NUC / 50
    m = law(clock_width_mpa=10.0, grows=True)
    _, st, _ = integrate_path(m, _hold_path([(50.0, 8 * T_NUC)], dt), dt)
    assert np.all(st[0, :, 8] == 0.0)
    _, st, _ = integrate_path(m, _hold_path([(70.0, 3 * T_NUC)], dt), dt)
    _, step, _ = integrate_path(law(), _hold_path([(70.0, 3 * T_NUC)], dt), dt)
    assert int(np.argmax(st[0, :, 8] > 0)) == int(np.argmax(step[0, :, 8] > 0)) > 0
    m.virgin_strength_factor = 1.25
    _, st, _ = integrate_path(m, _hold_path([(66.0, 8 * T_NUC)], dt), dt)
    assert np.all(st[0, :, 8] == 0.0)
    ep = np.array([0.0, 1e-3, 3e-3])
    np.testing.assert_allclose(m.internal_field(ep)[:, 0], [0.0, math.sqrt(0.5),
                                                            math.sqrt(0.75)])
    assert law(clock_width_mpa=10.0).internal_field(ep)[:, 0].tolist() == [1.0] * 3


def test_the_smooth_clock_firing_time_inverts_the_clock():
    """``_smooth_since`` finds the firing time τ_f within the step from the clock's closed
    form C(τ) = [G(x_s + Δx τ) − G(x_s)]/Δx (in units of dt, ``clock_integral``): given
    the remainder C(1) − C(τ_f) it returns (1 − τ_f) dt, to 1e-9 of the step, for a
    stress rising, falling, barely moving (both by a hair and by less than the midpoint
    rule's switch), far below and far above the strength, and a root at either end of the
    step."""
    from scalebridge.surrogates.source_families import clock_integral, smooth_fraction

    m = law(clock_width_mpa=10.0)
    xs = np.array([-1.0, 1.5, 0.3, -40.0, 30.0, 0.2, -0.5, 2.0, 0.8, -1.2])
    dx = np.array([2.0, -1.0, 1e-12, 0.5, -3.0, 1.0, 1.0, 0.7, 1e-5, -1e-8])
    tau = np.array([0.3, 0.7, 0.55, 0.9, 0.1, 0.0, 1.0, 0.45, 0.35, 0.8])
    dt = np.full(xs.size, 2e-10)
    c = clock_integral(xs, dx, tau)
    frac = smooth_fraction(xs, xs + dx)[:, None]
    w = np.full((xs.size, 1), 10.0)
    thr = np.zeros((xs.size, 1))
    clocks = (frac[:, 0] - c)[:, None] * dt[:, None]
    since = m._smooth_since(clocks, np.ones_like(clocks), frac, (xs * 10.0)[:, None],
                            ((xs + dx) * 10.0)[:, None], thr, dt, w)
    assert np.all(np.isfinite(since))
    ok = frac[:, 0] > 1e-12           # far below, the clock does not move: any time fits
    np.testing.assert_allclose(since[ok, 0] / dt[ok], 1.0 - tau[ok], atol=1e-9)


def test_the_clock_integral_matches_quadrature_however_little_x_moves():
    """``clock_integral`` = ∫₀^τ Φ(x_s + Δx t) dt: the closed form (G(x_s + Δx τ) −
    G(x_s))/Δx where x moves by |Δx τ| ≥ SMALL_MOVE, the midpoint rule below, within 1e-9
    of scipy's quadrature for x_s in [−5, 5], Δx from 1e-8 to 2 either way and τ from
    1e-3 to 1 (the switch on Δx alone took the closed form at Δx = 1e-5, τ = 1e-3, 1e-8
    off); ``smooth_fraction`` is its τ = 1."""
    from scalebridge.surrogates.source_families import (
        SMALL_MOVE,
        clock_integral,
        smooth_fraction,
    )
    from scipy.integrate import quad
    from scipy.special import ndtr

    worst, moves = 0.0, []
    for xs in (-5.0, -2.0, -0.4, 0.0, 1.0, 2.5, 5.0):
        for dx in (1e-8, -1e-8, 1e-5, -1e-5, 1e-4, -1e-3, 0.5, -2.0):
            for tau in (1e-3, 0.3, 1.0):
                ref = quad(lambda t, xs=xs, dx=dx: ndtr(xs + dx * t), 0.0, tau,
                           epsabs=0.0, epsrel=1e-13)[0]
                got = float(clock_integral(np.float64(xs), np.float64(dx), tau))
                worst = max(worst, abs(got / ref - 1.0))
                moves.append(abs(dx * tau) < SMALL_MOVE)
                if tau == 1.0:
                    assert float(smooth_fraction(np.float64(xs), np.float64(xs + dx))) \
                        == pytest.approx(ref, rel=1e-9)
    assert worst < 1e-9, worst
    assert any(moves) and not all(moves)          # both branches were taken
    # broadcast as update uses it: (n, 1) x_s-like against (n, K), τ a scalar
    xs = np.linspace(-2.0, 2.0, 6).reshape(3, 2)
    dx = np.array([[1e-7], [0.3], [-1.0]])
    np.testing.assert_array_equal(clock_integral(xs, dx, 1.0),
                                  np.vectorize(lambda a, b: float(clock_integral(
                                      np.float64(a), np.float64(b), 1.0)))(xs, dx))


@pytest.mark.parametrize("dx", [2e-6, 0.4])
def test_the_firing_time_derivative_is_that_of_the_clock_inverted(dx):
    """``_dsince_dq`` (the tangent's firing term) against central differences of
    ``_smooth_since`` in the trial stress, the clock's remainder at the firing held: where
    x barely moves (the midpoint rule's branch, Δx = 2e-6) and where it moves (the closed
    form's)."""
    m = law(clock_width_mpa=10.0)
    w = np.full((4, 1), 10.0)
    xs = np.array([-1.0, 0.2, 1.5, 0.7])
    tau = np.array([0.2, 0.5, 0.9, 0.65])
    dt = np.full(4, 3e-10)
    thr = np.full((4, 1), 60.0)
    sig_s = (60.0 + 10.0 * xs)[:, None]
    from scalebridge.surrogates.source_families import clock_integral

    held = clock_integral(xs, dx, tau)                 # C(τ_f), fixed by the remainder

    def since(q: np.ndarray) -> np.ndarray:
        frac = clock_integral(xs[:, None], (q - sig_s) / 10.0, 1.0)
        clocks = (frac - held[:, None]) * dt[:, None]
        return m._smooth_since(clocks, np.ones_like(clocks), frac, sig_s, q, thr, dt, w)

    q = sig_s + 10.0 * dx
    s0 = since(q)
    np.testing.assert_allclose(s0[:, 0] / dt, 1.0 - tau, atol=1e-9)
    h = 1e-4           # MPa: Δx ± 1e-5, within the midpoint branch at Δx = 2e-6
    fd = (since(q + h) - since(q - h)) / (2 * h)
    got = m._dsince_dq(sig_s, q, thr, s0, dt, w)
    np.testing.assert_allclose(got, fd, rtol=1e-4)


def test_without_a_growing_field_the_virgin_strength_factor_is_not_used():
    """The virgin strengths only apply where the internal field grows: without
    ``field_grows`` (the update then skips the field's share g, the strength factor and,
    for step clocks, the width) the strengths and width are the full field's to the bit,
    whatever ``virgin_strength_factor`` says, for smooth and step clocks."""
    strain, dt = shear_path(7e4, gamma_max=2.5e-3, n=200)
    for width in (0.0, 2 * math.sqrt(3.0) * 12.0):
        ms = [law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)),
                  emission=677.0, t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0),
                  clock_width_mpa=width) for _ in range(2)]
        ms[1].virgin_strength_factor = 2.4
        a, b = (integrate_path(m, strain, dt) for m in ms)
        assert vm(a[0]).max() > 60.0
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("rate, grows", [(4e4, False), (7e4, False), (7e4, True)])
def test_smooth_clocks_keep_the_consistent_tangent(rate, grows):
    """Every family that fires within a step moves m_eff with the increment (its clock's
    rate follows the trial stress): with that term the tangent matches central
    differences at every step, and the interface checks pass."""
    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0),
            clock_width_mpa=2 * math.sqrt(3.0) * 12.0, grows=grows)
    m.virgin_strength_factor = 1.3 if grows else 1.0
    err = _tangent_errors(m, rate)
    assert err.max() < 1e-5, (err.max(), int(err.argmax()))
    rep = check_constitutive(m, amplitude=4e-3, raise_on_failure=False)
    assert rep.passed, {k: v for k, v in rep.to_dict()["checks"].items() if not v["passed"]}
    back = SourceFamiliesJ2.from_config(m.to_config())
    assert (back.clock_width_mpa, back.field_grows) == (m.clock_width_mpa, grows)
    assert back.virgin_strength_factor == m.virgin_strength_factor


def test_the_clock_width_setting_reaches_the_fitted_model(tmp_path):
    """``[surrogates] clock_width`` is in units of the DD's source-strength spread √3·s_τ
    (the data's meta: 8 MPa here): the fitted model's w is that, and the file keeps it."""
    data = synthetic(truth(), n=20)
    s = SurrogateSettings(model="source_families", families=4, restarts=0, val_fraction=0.3,
                          clock_width=1.5, internal_field_grows=True, dephase=True,
                          relaxed_clocks=True, spread_loading=True, run_checks=False)
    summ = fit_surrogate(data, s, tmp_path)
    m = load_surrogate(tmp_path)
    # the report's line: the families beside the DD's sources and the fitted mapping
    lo, hi = m.strengths_mpa[0], m.strengths_mpa[-1]
    assert summ["families"].startswith(f"4 families {lo:.3g}-{hi:.3g} MPa")
    assert "√3 × (40 ± 8)" in summ["families"] and "spread" in summ["families"]
    assert m.clock_width_mpa == pytest.approx(1.5 * math.sqrt(3.0) * 8.0)
    assert m.dephase
    rec = json.loads((tmp_path / "surrogate.json").read_text())
    assert rec["fit"]["clock_width"] == 1.5 and rec["fit"]["internal_field_grows"]
    assert rec["fit"]["dephase"] and rec["config"]["dephase"]
    # the step update's switches reach the model, the fit record and the config; a config
    # saved without them replays without them
    assert m.relaxed_clocks and m.spread_loading
    assert rec["fit"]["relaxed_clocks"] and rec["fit"]["spread_loading"]
    assert rec["config"]["relaxed_clocks"] and rec["config"]["spread_loading"]
    old_cfg = {k: v for k, v in rec["config"].items()
               if k not in ("relaxed_clocks", "spread_loading")}
    back = SourceFamiliesJ2.from_config(old_cfg)
    assert not back.relaxed_clocks and not back.spread_loading
    assert m.field_grows and m.virgin_strength_factor == pytest.approx(
        1.0 / rec["fit"]["parameters"]["scale"], rel=1e-12)


def test_a_fit_that_cannot_see_a_static_strength_keeps_one_and_is_no_fluid(tmp_path):
    """Paths from a law with (next to) no static strength leave σ_b unresolved: the fit
    holds σ_0 and σ_∞ at STATIC_FLOOR σ_ref at least (recorded), so the model still has a
    static yield surface and check_constitutive's elastic unloading after a hold passes;
    at σ_b = 1e-29 MPa (an unfloored fit reached 3e-29 to 4e-9 on a DD of the example) the hold
    relaxes the stress into roundoff and it fails."""
    from scalebridge.surrogates.checks import check_constitutive
    from scalebridge.surrogates.source_families import STATIC_FLOOR

    fluid = law(strengths=tuple(family_strengths(40.0, 8.0, 8, 0.9, 0.8)), emission=1.5e3,
                eps_pin=2e-3, sigma_b=(1e-29, 1e-29), clock_width_mpa=20.0, dephase=True)
    bad = check_constitutive(fluid, amplitude=3e-3, raise_on_failure=False)
    assert not bad.outcomes["elastic_unloading"].passed
    data = synthetic(fluid, n=20)
    s = SurrogateSettings(model="source_families", families=4, restarts=0, val_fraction=0.3,
                          clock_width=1.5, dephase=True, run_checks=True)
    fit_surrogate(data, s, tmp_path)
    rec = json.loads((tmp_path / "surrogate.json").read_text())
    floor = rec["fit"]["static_floor_mpa"]
    assert floor == pytest.approx(STATIC_FLOOR * rec["fit"]["sigma_ref_mpa"], rel=1e-12)
    par = rec["fit"]["parameters"]
    assert par["sigma0_mpa"] >= floor and par["sigma_inf_mpa"] >= floor
    assert rec["checks"]["checks"]["elastic_unloading"]["passed"]


@pytest.mark.parametrize("width,grows,dephase,each,wait,relaxed,spread", [
    (0.0, False, False, False, False, False, False),
    (0.0, False, True, False, False, False, False),
    (24.0, False, False, True, False, False, False),
    (0.0, True, False, True, False, False, False),
    (0.0, True, True, True, False, False, False),
    (24.0, False, True, False, False, False, False),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, False, False, False),
    (2 * math.sqrt(3.0) * 12.0, True, False, False, False, False, False),
    (0.0, False, True, False, True, False, False),
    (24.0, False, True, True, True, False, False),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, True, False, False),
    (0.0, False, True, False, True, True, True),
    (24.0, False, False, True, False, False, True),
    (0.0, True, False, True, False, True, False),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, True, True, False),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, True, False, True),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, True, True, True)])
def test_the_compiled_replay_is_the_numpy_update(width, grows, dephase, each, wait, relaxed,
                                                 spread):
    """The fits replay through a compiled kernel (27x faster on the Mo example's 18 DD
    paths); the NumPy update stays the reference. Along loading at three rates, then
    unloading, reloading past the upper yield and a hold (steps of 0.4-1.7 ns), a hold
    at steps of 2.5 t_nuc (several firings of a family within one step) and a path of
    steps of no time, from the virgin state and from one taken mid-path, the two agree
    to 1e-9 of the stress and of each state variable (clocks, fluidities, plastic
    strain) in every combination of step or smooth clocks, growing field, dephasing
    and per-family clocks, and dephasing one clock after the first firing
    (``dephase_wait``), with and without ``relaxed_clocks`` and ``spread_loading``;
    the out-of-range flags are the same, and a scaled copy's static strength (not a
    StaticVoce) steps the update."""
    k = 16
    t_nuc = np.geomspace(4e-9, 2e-8, k) if each else T_NUC
    m = law(strengths=tuple(family_strengths(60.0, 12.0, k, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0), t_nuc=t_nuc,
            clock_width_mpa=width, grows=grows, dephase=dephase, wait=wait,
            relaxed=relaxed, spread=spread)
    m.training_range = {"eps_p_eq": [0.0, 1e-3], "rate_s": [4e4, 1e5]}
    gams, dts = [], []
    for rate in (4e4, 7e4, 1.5e5):
        e, dt = shear_path(rate, 4e-3, 60)
        g = e[0, :, 5]
        # load, unload to half, reload beyond, hold: 150 steps of the loading's dt
        gams.append(np.concatenate([g, g[-1] - 0.5 * g[1:31], g[-1] - 0.5 * g[30] + g[1:41],
                                    np.full(19, g[-1] - 0.5 * g[30] + g[40])]))
        dts.append(dt)
    # a ramp to 1.5x the strongest family's strength held at steps of 2.5 t_nuc, and the
    # first path at steps of no time (elastic)
    hold = 1.5 * m.strengths_mpa[-1] / (math.sqrt(3.0) * SHEAR) * math.sqrt(2.0)
    gams += [np.concatenate([np.linspace(0.0, hold, 10), np.full(140, hold)]), gams[0]]
    dts += [2.5 * float(np.max(t_nuc)), 0.0]
    strain = np.zeros((len(gams), gams[0].size, 6))
    for i, gam in enumerate(gams):
        strain[i, :, 5] = gam
    dt = np.array(dts)

    def same(fast, ref):
        scale = np.abs(ref[0]).max()
        np.testing.assert_allclose(fast[0], ref[0], rtol=0, atol=1e-9 * scale)
        for j in range(ref[1].shape[2]):          # each state variable on its own scale
            col = ref[1][:, :, j]
            np.testing.assert_allclose(fast[1][:, :, j], col, rtol=0,
                                       atol=1e-9 * max(np.abs(col).max(), 1e-300),
                                       err_msg=str(j))
        np.testing.assert_array_equal(fast[2], ref[2])

    fast = integrate_path(m, strain, dt)
    ref = _numpy_replay(m, strain, dt)
    assert m.integrate_stress_only(strain, dt, m.initial_state(len(dt))) is not None
    same(fast, ref)
    assert ref[2].any() and not ref[2].all()          # the flags were exercised
    fam = ref[1][:, :, 9:]
    if dephase:                                       # families reached the mark
        mark = np.broadcast_to(t_nuc, (k,)) * (2.0 if wait else 1.0)
        assert (fam == mark).any()
        if wait:                                      # and waited between
            assert ((fam > np.broadcast_to(t_nuc, (k,))) & (fam < mark)).any()
    else:                                             # families fired (clocks wrapped)
        assert (np.diff(fam, axis=1) < 0).any()
    assert vm(ref[0]).max() > 60.0
    assert np.all(ref[0][-1] == (ref[0][-1] @ [0, 0, 0, 0, 0, 1])[:, None]
                  * [0, 0, 0, 0, 0, 1])               # no time, no flow: elastic
    mid = ref[1][:, 70]
    m.integrate_stress_only(strain[:, 70:], dt, mid)
    same(integrate_path(m, strain[:, 70:], dt, state=mid),
         _numpy_replay_from(m, strain[:, 70:], dt, mid))
    with pytest.raises(ValueError, match="state of"):
        m.integrate_stress_only(strain, dt, np.zeros((len(dt), 3)))
    from scalebridge.surrogates.ensemble import scale_hardening
    scaled = scale_hardening(m, 1.1)
    assert scaled.integrate_stress_only(strain, dt, scaled.initial_state(3)) is None


@pytest.mark.parametrize("width,grows,wait,relaxed,spread", [
    (0.0, False, False, False, True), (0.0, False, False, True, False),
    (0.0, False, False, True, True), (2 * math.sqrt(3.0) * 12.0, True, True, False, True),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, False),
    (2 * math.sqrt(3.0) * 12.0, True, True, True, True)])
def test_the_tangent_is_consistent_with_relaxed_clocks_and_spread_loading(
        width, grows, wait, relaxed, spread, monkeypatch):
    """``spread_loading``: m_eff depends on the trial stress directly (through the share
    r = s_0/s_tr of the overstress already there at the step's start); ``relaxed_clocks``:
    the clocks' path ends at the predictor's returned stress, itself set by the trial
    stress through the predictor's m_eff. With those terms every step of a path through
    the avalanche and on matches central differences; without them it does not."""
    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0), clock_width_mpa=width,
            grows=grows, dephase=True, wait=wait, relaxed=relaxed, spread=spread)
    err = _tangent_errors(m, 7e4)
    assert err.max() < 1e-5, (err.max(), int(err.argmax()))
    if relaxed:     # the chain through the predictor's end stress dropped
        monkeypatch.setattr(SourceFamiliesJ2, "_dqend_dq", lambda self, sg, *a: 1.0)
    else:           # the direct term dropped
        orig = SourceFamiliesJ2._fluidity

        def no_direct(self, sg, *a):
            orig(self, sg, *a)
            sg["dm_direct"] = None
        monkeypatch.setattr(SourceFamiliesJ2, "_fluidity", no_direct)
    assert _tangent_errors(m, 7e4).max() > 1e-4


@pytest.mark.parametrize("rate", [4e4, 1.5e5])
def test_relaxed_clocks_and_spread_loading_converge_in_the_time_step(rate):
    """Halving the step along simple shear through the avalanche into flow: the default
    update (clocks along start -> elastic trial, the whole increment loaded at the step's
    start then relaxed) converges to first order, so halving moves the answer by about
    as much as the rest of the way to the converged one; ``spread_loading`` (the
    increment loaded over the step in m_eff) and ``relaxed_clocks`` (the clocks along
    start -> the predictor's returned stress) together move it much less, and are
    closer to the fine-step answer. Alone they do less, and ``spread_loading`` alone can
    do worse: the two errors partly cancel (measured here, rms change when halved, MPa,
    default / relaxed / spread / both: 2.73/1.97/2.12/0.60 at 4e4 /s, 2.11/1.87/2.94/0.21
    at 1.5e5 /s), so the example switches on both."""
    from scalebridge.surrogates.train import refined_paths, time_step_sensitivity

    e, dt = shear_path(rate, gamma_max=4e-3, n=80)
    paths = StrainPaths(e, np.zeros_like(e), np.array([dt]), np.array([300.0]),
                        np.array([rate]))
    kw = dict(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)),
              emission=677.0, t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(30.0, 60.0),
              clock_width_mpa=2 * math.sqrt(3.0) * 12.0, grows=True, dephase=True,
              wait=True)
    old, new = law(**kw), law(**kw, relaxed=True, spread=True)
    ts_old = time_step_sensitivity(old, paths)["rms_change_mpa"]
    ts_new = time_step_sensitivity(new, paths)["rms_change_mpa"]
    alone = [time_step_sensitivity(law(**kw, relaxed=r, spread=not r), paths)[
        "rms_change_mpa"] for r in (True, False)]
    assert alone[0] < 0.95 * ts_old, (alone, ts_old)            # relaxed_clocks alone
    assert ts_new < 0.5 * min(alone), (ts_new, alone)
    fine = refined_paths(paths, 16)

    def err(m):
        base = integrate_path(m, paths.strain, paths.dt)[0]
        ref = integrate_path(m, fine.strain, fine.dt)[0][:, ::16]
        return float(np.sqrt(np.mean(np.sum((base - ref) ** 2, axis=-1))))
    assert ts_new < 0.5 * ts_old, (ts_new, ts_old)
    assert err(new) < 0.5 * err(old), (err(new), err(old))


@pytest.mark.parametrize("relaxed,spread", [(True, False), (False, True), (True, True)])
def test_interface_checks_pass_with_relaxed_clocks_and_spread_loading(relaxed, spread):
    """check_constitutive (steps of 1 s: ∫m dt far past the x = 600 cap, where
    ``spread_loading``'s m_eff still moves with the trial stress through r, and a held
    point's D = e^(−600) must not round to 0) passes with either switch and both."""
    m = law(strengths=tuple(family_strengths(52.0, 11.0, 8, 0.9, 0.8)),
            clock_width_mpa=2 * math.sqrt(3.0) * 11.0, grows=True, dephase=True, wait=True,
            relaxed=relaxed, spread=spread)
    rep = check_constitutive(m, amplitude=4e-3, raise_on_failure=False)
    assert rep.passed, {k: v for k, v in rep.to_dict()["checks"].items() if not v["passed"]}


def test_a_scaled_copys_tangent_scales_its_viscous_stress():
    """The band solves the FEM with copies whose hardening is scaled by f
    (``ensemble.scale_hardening``): σ_y = f (σ_b + Δγ/(m dt)), so the fluidity term of
    the tangent carries f as well; every step matches central differences (without f
    it is off by ~(f − 1) of that term)."""
    from scalebridge.surrogates.ensemble import scale_hardening

    m = law(strengths=tuple(family_strengths(60.0, 12.0, 16, 0.76, 0.86)), emission=677.0,
            t_pin=2.3e-9, eps_pin=2.4e-3, sigma_b=(6.0, 213.0),
            clock_width_mpa=2 * math.sqrt(3.0) * 12.0, grows=True, dephase=True, wait=True,
            relaxed=True, spread=True)
    for f in (0.8, 1.25):
        err = _tangent_errors(scale_hardening(m, f), 7e4)
        assert err.max() < 1e-5, (f, err.max(), int(err.argmax()))


def test_spread_loading_is_the_exact_relaxation_while_loading():
    """No family fires (strength 10 GPa) and σ_b is flat (50 MPa): the overstress s obeys
    ds/dt = 3G(ε̄̇ − m s) with m pinning at 1/t_pin from m_0, so over a step with x =
    3G∫m dt, the start overstress s_0 and the trial's s_tr, the increment loaded evenly
    over the step (a constant rate in the m-weighted time) gives s_0 e^(−x) + (s_tr − s_0)
    (1 − e^(−x))/x at the end: ``spread_loading``'s update returns that, to rounding. A
    hold (no increment) is the default update's exact relaxation s_0 e^(−x)."""
    t_pin, m0 = 2.5e-9, 2.0e3                               # s, 1/(MPa s)
    kw = dict(strengths=(1e4,), emission=0.0, t_pin=t_pin, eps_pin=1e9,
              sigma_b=(50.0, 50.0))
    spread, default = law(**kw, spread=True), law(**kw)
    n = np.array([1.0, -1.0, 0.0, 0.0, 0.0, 0.0]) / math.sqrt(2.0)   # deviatoric, |n| = 1

    def strain_at(q_mpa: float) -> np.ndarray:                # elastic: q = √6 G c
        return (q_mpa / (math.sqrt(6.0) * SHEAR) * n)[None]

    st = spread.initial_state(1)
    st[:, 8] = m0
    for dt, s0, s_tr in ((1e-9, 10.0, 40.0), (3e-9, 0.0, 25.0), (0.2e-9, 5.0, 6.0)):
        x = 3.0 * SHEAR * m0 * t_pin * -math.expm1(-dt / t_pin)
        e0 = strain_at(50.0 + s0)
        de = strain_at(50.0 + s_tr) - e0
        got = vm(spread.update(e0, de, st, dt).stress)[0] - 50.0
        want = s0 * math.exp(-x) + (s_tr - s0) * -math.expm1(-x) / x
        assert got == pytest.approx(want, rel=1e-9), (dt, got, want, x)
        # the default loads the increment at the start and relaxes it all: s_tr e^(−x)
        # would be its held answer; in flow it lies below the exact one
        assert vm(default.update(e0, de, st, dt).stress)[0] - 50.0 < got
        hold = [vm(m.update(e0, 0.0 * de, st, dt).stress)[0] - 50.0 for m in (spread, default)]
        assert hold[0] == pytest.approx(hold[1], rel=1e-12)
        assert hold[0] == pytest.approx(s0 * math.exp(-x), rel=1e-9, abs=1e-12)
