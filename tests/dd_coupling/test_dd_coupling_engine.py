"""Physics of the DD engine: velocity = law, dipole passing stress, annihilation,
plastic strain bookkeeping, obstacles, sources."""

from __future__ import annotations

import math

import pytest
import torch
from scalebridge.dd_coupling.engine import burgers, init, positions, slip_moment, step
from scalebridge.dd_coupling.mobility import KinkPairMobility, LinearDragMobility

from .conftest import B_A, MU_GPA, NU, params, simple_geometry

B = B_A * 1e-10
MU = MU_GPA * 1e9
DRAG = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5, saturation_m_s=3000.0)


def t_(x):
    return torch.tensor(x, dtype=torch.float64)


def run(geom, p, st, n_steps=None, until=None, stop=None, max_steps=20000):
    while True:
        st = step(geom, p, st)
        assert st.n_steps < max_steps, f"no progress: t = {st.time:.3g} s"
        if n_steps is not None and st.n_steps >= n_steps:
            return st
        if until is not None and st.time >= until:
            return st
        if stop is not None and stop(st):
            return st


@pytest.mark.parametrize("angle,law,field", [
    (0.0, DRAG, "direct"), (60.0, DRAG, "direct"), (0.0, DRAG, "ewald"), (60.0, DRAG, "ewald"),
    (0.0, KinkPairMobility(burgers_m=B, enthalpy_ev=0.8, peierls_pa=800e6, attempt_m_s=500.0,
                           drag_pa_s=5e-5), "direct")])
def test_single_dislocation_moves_at_law_velocity(angle, law, field):
    """One dislocation under constant applied stress glides at law(Schmid·τ), with either
    field method (its own periodic images exert no glide force)."""
    # a lone (non-neutral) dislocation on an inclined plane feels the periodic cell's
    # σxx band term ~ μ b_x / (lx (1-ν)); a 100 μm cell makes it < 0.5% of the drive
    lx = 100e-6 if angle else 2e-6
    ly = lx * math.sqrt(3) / 2 if angle else lx
    geom = simple_geometry(lx, ly, [(angle, 0.3e-6)])
    tau_app = 80e6
    p = params(law, stress_offset_pa=tau_app, max_glide_m=2e-9, dt_max_s=1e-9, field=field)
    st = init(geom, torch.tensor([0]), t_([0.1e-6]), t_([1.0]), params=p)
    st = run(geom, p, st, n_steps=50)
    m = float(geom.schmid[0])
    v_law = float(law.velocity(t_([m * tau_app]), 300.0, torch.tensor([0]))[0])
    v_dd = float(st.travel[0]) / st.time
    assert v_law != 0
    # angle 0: exact (direct) / to the mesh's ~1e-8 self-image residue (ewald); 60°: the
    # band term of a lone dislocation's σxx (< 0.5%)
    rel = 1e-2 if angle else (1e-9 if field == "direct" else 1e-7)
    assert v_dd == pytest.approx(v_law, rel=rel)
    # a negative dislocation glides the other way
    st2 = init(geom, torch.tensor([0]), t_([0.1e-6]), t_([-1.0]), params=p)
    st2 = run(geom, p, st2, n_steps=10)
    assert float(st2.travel[0]) / st2.time == pytest.approx(-v_law, rel=rel)


def _dipole_escapes(tau_app: float, h: float, field: str = "direct") -> tuple[bool, float]:
    lx = ly = 100 * h
    geom = simple_geometry(lx, ly, [(0.0, 0.5 * ly), (0.0, 0.5 * ly + h)])
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    p = params(law, stress_offset_pa=tau_app, max_glide_m=h / 40, dt_max_s=1e-9,
               capture_m=0.0, junction_m=0.0, field=field)
    # positive on the lower plane, negative above-left at 45°: the stable dipole
    st = init(geom, torch.tensor([0, 1]), t_([0.5 * lx, 0.5 * lx - h]), t_([1.0, -1.0]),
              params=p)

    def sep(s):
        d = float(s.s[1] - s.s[0])
        return d - lx * round(d / lx)

    st = run(geom, p, st, until=60e-9, stop=lambda s: abs(sep(s)) > 8 * h)
    return abs(sep(st)) > 8 * h, sep(st)


@pytest.mark.parametrize("field", ["direct", "ewald"])
def test_dipole_passing_stress_within_2_percent(field):
    """Edge dipole on planes h apart: bound below μb/(8π(1-ν)h), passes above (±2%)."""
    h = 40e-9
    tau_pass = MU * B / (8 * math.pi * (1 - NU) * h)
    escaped_lo, sep_lo = _dipole_escapes(0.98 * tau_pass, h, field)
    escaped_hi, sep_hi = _dipole_escapes(1.02 * tau_pass, h, field)
    assert not escaped_lo, f"dipole broke at 0.98 τ_pass (separation {sep_lo / h:.2f} h)"
    assert escaped_hi, f"dipole held at 1.02 τ_pass (separation {sep_hi / h:.2f} h)"
    # bound equilibrium sits between x = h and (1+√2)h
    assert h < abs(sep_lo) < (1 + math.sqrt(2)) * h


def test_annihilation_conserves_net_burgers_and_plastic_strain():
    """Random ± dislocations on a few planes of three systems relax; opposite pairs on a
    plane annihilate; Σ b is unchanged; plastic strain = b Σ sign·m·Δs / area."""
    lx = 0.6e-6
    ly = lx * math.sqrt(3) / 2
    planes = [(a, d) for a in (0.0, 60.0, 120.0) for d in (0.05e-6, 0.15e-6)]
    geom = simple_geometry(lx, ly, planes)
    g = torch.Generator().manual_seed(3)
    n = 40
    plane = torch.randint(0, len(planes), (n,), generator=g)
    s = torch.rand(n, generator=g, dtype=torch.float64) * geom.plane_length[plane]
    sign = torch.where(torch.rand(n, generator=g) < 0.55, 1.0, -1.0).to(torch.float64)
    p = params(DRAG, loading="strain", rate=2e4, dt_quantile=0.8, max_glide_m=3 * B,
               capture_m=6 * B, junction_m=6 * B)
    st = init(geom, plane, s, sign, params=p)
    net0 = complex((burgers(geom, st.plane, st.sign)).sum())
    st = run(geom, p, st, until=1.5e-9)
    assert st.n_annihilated >= 2 and st.n_annihilated % 2 == 0
    assert st.n == n - st.n_annihilated
    net = complex((burgers(geom, st.plane, st.sign)).sum())
    assert abs(net - net0) < 1e-9
    assert st.plastic_strain == pytest.approx(slip_moment(geom, p, st), rel=1e-9, abs=1e-15)


def test_plastic_strain_equals_sum_b_dx_over_area():
    """Single slip, no annihilation: γ_p from the step increments equals Σ sign·b·Δx / A
    with Δx measured from the positions."""
    lx = ly = 1e-6
    geom = simple_geometry(lx, ly, [(0.0, d) for d in (0.1e-6, 0.35e-6, 0.6e-6, 0.85e-6)])
    plane = torch.tensor([0, 1, 2, 3, 0, 2])
    s0 = t_([0.1e-6, 0.3e-6, 0.5e-6, 0.7e-6, 0.6e-6, 0.05e-6])
    sign = t_([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    p = params(DRAG, loading="strain", rate=1e5)
    st = init(geom, plane, s0, sign, params=p)
    x0 = positions(geom, st.plane, st.s)[:, 0].clone()
    st = run(geom, p, st, until=3e-9)
    assert st.n == 6
    dx = positions(geom, st.plane, st.s)[:, 0] - x0
    dx = dx - lx * torch.round(dx / lx)
    expected = float((sign * B * dx).sum()) / (lx * ly)
    assert abs(expected) > 1e-6
    assert st.plastic_strain == pytest.approx(expected, rel=1e-9)


def test_obstacle_pins_below_strength_and_releases_above():
    lx = ly = 1e-6
    obs = [(0, 0.5e-6, 100e6)]
    for tau, passes in ((80e6, False), (120e6, True)):
        geom = simple_geometry(lx, ly, [(0.0, 0.5e-6)], obstacles=obs)
        p = params(DRAG, stress_offset_pa=tau, max_glide_m=2e-9)
        st = run(geom, p, init(geom, torch.tensor([0]), t_([0.45e-6]), t_([1.0]), params=p),
                 until=2e-9)
        s_final = float(st.s[0])
        if passes:
            assert s_final > 0.5e-6 + 1e-8
        else:
            assert s_final == 0.5e-6 and st.n_pinned == 1


def test_source_nucleates_dipole_after_nucleation_time():
    lx = ly = 1e-6
    tau_nuc = 50e6
    for tau, fires in ((45e6, False), (55e6, True)):
        geom = simple_geometry(lx, ly, [(0.0, 0.5e-6)], sources=[(0, 0.3e-6, tau_nuc)])
        p = params(DRAG, stress_offset_pa=tau, nucleation_time_s=10e-9, dt_max_s=0.5e-9)
        st = run(geom, p, init(geom, params=p), until=9.4e-9)
        assert st.n == 0
        st = run(geom, p, st, until=10.6e-9)
        assert (st.n == 2) == fires
        if fires:
            # + dislocation ahead (glides +x under τ > 0), - behind; spacing ≈ L_nuc
            i = int(torch.argmax(st.sign))
            assert float(st.s[i]) > 0.3e-6 > float(st.s[1 - i])
            assert st.plastic_strain > 0


@pytest.mark.parametrize("b0", [5e-5, 1e-4])
def test_bow_out_nucleation_time_is_half_the_frank_read_length_over_the_mobility(b0):
    """``nucleation="bow_out"``: a source above its strength fires once its segment has
    glided half its Frank-Read length L = β μ b / τ_src at the law's v(τ): the time is
    β μ b / (2 τ_src v(τ)), so doubling the drag B doubles it; below strength, never."""
    law = LinearDragMobility(burgers_m=B, b0_pa_s=b0)
    lx = ly = 1e-6
    tau_src, beta = 50e6, 1.3
    for tau, fires in ((45e6, False), (80e6, True)):
        geom = simple_geometry(lx, ly, [(0.0, 0.5e-6)], sources=[(0, 0.3e-6, tau_src)])
        p = params(law, stress_offset_pa=tau, nucleation="bow_out", source_beta=beta,
                   dt_max_s=0.05e-9)
        t_bow = beta * MU * B / (2 * tau_src) / float(law.velocity([tau], 300.0, 0)[0])
        assert 1e-9 < t_bow < 20e-9          # the window below is meaningful
        st = run(geom, p, init(geom, params=p), until=t_bow - 0.1e-9)
        assert st.n == 0
        st = run(geom, p, st, until=t_bow + 0.1e-9)
        assert (st.n == 2) == fires, (tau, t_bow, st.n)


@pytest.mark.parametrize("b0", [5e-5, 1e-4])
def test_overstress_nucleation_time_diverges_at_the_source_strength(b0):
    """``nucleation="overstress"``: the segment glides half its Frank-Read length
    L = β μ b / τ_src at v(|τ| − τ_src), the stress beyond what the line tension holds at
    the critical half-circle: t = β μ b / (2 τ_src v(τ − τ_src)) = L B / (2 b (τ − τ_src))
    for a linear drag, so doubling B doubles it and halving the overstress doubles it;
    at or below the strength, never."""
    law = LinearDragMobility(burgers_m=B, b0_pa_s=b0)
    lx = ly = 1e-6
    tau_src, beta = 50e6, 1.3
    length = beta * MU * B / tau_src
    for tau, fires in ((49e6, False), (60e6, True), (80e6, True)):
        geom = simple_geometry(lx, ly, [(0.0, 0.5e-6)], sources=[(0, 0.3e-6, tau_src)])
        p = params(law, stress_offset_pa=tau, nucleation="overstress", source_beta=beta,
                   dt_max_s=0.05e-9)
        t_bow = length * b0 / (2 * B * (tau - tau_src)) if fires else 30e-9
        if fires:
            assert t_bow == pytest.approx(length / 2 / float(
                law.velocity([tau - tau_src], 300.0, 0)[0]), rel=1e-12)
        assert 1e-9 < t_bow < 40e-9                    # the window below is meaningful
        st = run(geom, p, init(geom, params=p), until=t_bow - 0.1e-9)
        assert st.n == 0
        st = run(geom, p, st, until=t_bow + 0.1e-9)
        assert (st.n == 2) == fires, (tau, t_bow, st.n)


def test_single_dislocation_with_neural_law_moves_at_its_velocity():
    """The engine calls the neural law like any other: v_DD = law(τ); beyond the training
    range the DD policy clamps instead of failing."""
    from scalebridge.dd_coupling.mobility import ValidRange
    from scalebridge.dd_coupling.neural import NeuralMobility

    torch.manual_seed(0)
    vr = ValidRange(tau_mpa=(0, 200.0), temperature_k=(300.0, 300.0), characters=("edge",))
    law = NeuralMobility(200e6, 500.0, 300.0, 1.0, vr, n_members=2, out_of_range="clamp")
    lx = ly = 2e-6
    geom = simple_geometry(lx, ly, [(0.0, 0.3e-6)])
    for tau_app in (60e6, 400e6):
        p = params(law, stress_offset_pa=tau_app, max_glide_m=2e-9, dt_max_s=1e-9)
        st = run(geom, p, init(geom, torch.tensor([0]), t_([0.1e-6]), t_([1.0]), params=p),
                 n_steps=20)
        v_law = float(law.velocity(t_([min(tau_app, 200e6)]), 300.0, torch.tensor([0]))[0])
        assert v_law > 0
        assert float(st.travel[0]) / st.time == pytest.approx(v_law, rel=1e-9)
    assert law.n_out_of_range > 0


def test_drag_compliance_is_orowan_for_free_dislocations_and_zero_for_held_ones():
    """``drag_compliance``: S = ∂γ̇_p/∂τ_app at a fixed microstructure. Two free
    dislocations under a linear drag law (v = bτ/B, no saturation) on systems
    with Schmid factors m1, m2 give S = b² (m1² + m2²) / (B area) exactly, so γ̇/S is
    Orowan's drag stress; doubling B halves S; a dislocation held at an obstacle
    stronger than its stress adds nothing; the plastic rate the engine then produces
    answers a small applied-stress step by S."""
    from scalebridge.dd_coupling.engine import drag_compliance

    lx, ly = 2e-6, 2e-6 * math.sqrt(3) / 2          # commensurate with 0 and 60°
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    geom = simple_geometry(lx, ly, [(0.0, 0.5e-6), (60.0, 0.3e-6)],
                           obstacles=[(0, 0.9e-6, 500e6)])
    p = params(law, stress_offset_pa=50e6, max_glide_m=1e-8, dt_max_s=1e-11,
               junction_m=0.0)
    st = init(geom, torch.tensor([0, 1]), t_([0.2e-6, 0.4e-6]), t_([1.0, -1.0]), params=p)
    m = geom.schmid[geom.plane_system[st.plane]]
    s, n_free = drag_compliance(geom, p, st)
    assert n_free == 2
    assert s == pytest.approx(B * B * float((m * m).sum()) / (5e-5 * geom.area), rel=1e-9)
    p2 = params(LinearDragMobility(burgers_m=B, b0_pa_s=1e-4), stress_offset_pa=50e6,
                max_glide_m=1e-8, dt_max_s=1e-11, junction_m=0.0)
    assert drag_compliance(geom, p2, st)[0] == pytest.approx(s / 2, rel=1e-9)
    # the rate the engine gives answers a stress step by S (the pair's own field included)
    rates = []
    for tau in (50e6, 51e6):
        q = params(law, stress_offset_pa=tau, max_glide_m=1e-8, dt_max_s=1e-11,
                   junction_m=0.0)
        nxt = step(geom, q, init(geom, st.plane, st.s, st.sign, params=q))
        rates.append(nxt.plastic_strain / nxt.time)
    assert (rates[1] - rates[0]) / 1e6 == pytest.approx(s, rel=1e-6)
    # the first dislocation parked at the strong obstacle: only the second is free
    held = init(geom, torch.tensor([0, 1]), t_([0.9e-6, 0.4e-6]), t_([1.0, -1.0]), params=p)
    s_held, n_held = drag_compliance(geom, p, held)
    assert n_held == 1
    assert s_held == pytest.approx(B * B * float(m[1] ** 2) / (5e-5 * geom.area), rel=1e-6)


@pytest.mark.parametrize("wrap", ["drag_scaled", "limit_speed", "glide_character"])
def test_drag_compliance_leaves_the_laws_counters_alone(wrap):
    """The drag compliance evaluates the law three times per dislocation; the counts the
    run reports (the neural law's clamped evaluations, the range probe's replaced ones)
    must stay the run's own, whatever wraps the law; a law that refuses evaluations
    beyond its range ("error") is evaluated only inside it (one-sided at the top)."""
    from scalebridge.dd_coupling.engine import drag_compliance
    from scalebridge.dd_coupling.mobility import (
        DragScaledMobility,
        GlideCharacterMobility,
        LimitSpeedMobility,
        ValidRange,
    )
    from scalebridge.dd_coupling.neural import NeuralMobility

    torch.manual_seed(0)
    vr = ValidRange(tau_mpa=(0, 200.0), temperature_k=(300.0, 300.0), characters=("edge",))
    neural = NeuralMobility(200e6, 500.0, 300.0, 1.0, vr, n_members=2, out_of_range="clamp")
    law = {"drag_scaled": lambda: DragScaledMobility(neural, 2.0),
           "limit_speed": lambda: LimitSpeedMobility(neural, (3000.0, 3000.0)),
           "glide_character": lambda: GlideCharacterMobility(neural, 0)}[wrap]()
    geom = simple_geometry(2e-6, 2e-6, [(0.0, 0.3e-6)])
    p = params(law, stress_offset_pa=400e6, max_glide_m=2e-9, dt_max_s=1e-9)
    st = init(geom, torch.tensor([0]), t_([0.1e-6]), t_([1.0]), params=p)
    st = step(geom, p, st)
    counted = (neural.n_out_of_range, law.n_out_of_range)
    assert counted[1] > 0
    s, n_free = drag_compliance(geom, p, st)
    assert n_free == 1 and s == 0.0            # beyond the range the clamped law is flat
    assert (neural.n_out_of_range, law.n_out_of_range) == counted
    # at the top of its range, a law that refuses beyond it: one-sided, no error
    strict = NeuralMobility(200e6, 500.0, 300.0, 1.0, vr, n_members=2, out_of_range="error")
    q = params(strict, stress_offset_pa=199.9e6, max_glide_m=2e-9, dt_max_s=1e-9)
    top = init(geom, torch.tensor([0]), t_([0.1e-6]), t_([1.0]), params=q)
    s_top, _ = drag_compliance(geom, q, top)
    assert s_top > 0


def test_drag_compliance_leaves_out_dislocations_locked_in_a_junction():
    """Two dislocations on different systems within the junction distance are locked
    while the stress without their partner is below the junction strength: they do not
    answer a small stress step, so they add nothing to S; a weak junction frees them."""
    from scalebridge.dd_coupling.engine import drag_compliance

    lx, ly = 2e-6, 2e-6 * math.sqrt(3) / 2
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    geom = simple_geometry(lx, ly, [(0.0, 0.5e-6), (60.0, 0.3e-6)])
    st = init(geom, torch.tensor([0, 1]), t_([0.2e-6, 0.4e-6]), t_([1.0, -1.0]))
    got = {}
    for strength in (1e12, 0.0):
        p = params(law, stress_offset_pa=50e6, max_glide_m=1e-8, dt_max_s=1e-11,
                   junction_m=5e-6, junction_strength_pa=strength)
        got[strength] = drag_compliance(geom, p, init(geom, st.plane, st.s, st.sign,
                                                      params=p))
    assert got[1e12] == (0.0, 0)
    assert got[0.0][1] == 2 and got[0.0][0] > 0


def test_inserted_strain_is_the_dipoles_and_the_rest_is_glide():
    """``DDState.inserted_strain``: each firing's dipole (spacing L_nuc) brings
    b m L_nuc / area of plastic strain at once; what the dislocations glide afterwards
    adds the rest, so plastic_strain - inserted_strain = b Σ sign·m·(travel ∓ L_nuc/2)
    / area, and a faster law (B / 4) glides more of it in the same time."""
    lx = ly = 1e-6
    geom = simple_geometry(lx, ly, [(0.0, 0.5e-6)], sources=[(0, 0.3e-6, 50e6)])
    l_nuc = float(geom.src_length[0])
    glided = []
    for b0 in (2e-3, 5e-4):
        p = params(LinearDragMobility(burgers_m=B, b0_pa_s=b0), stress_offset_pa=60e6,
                   nucleation_time_s=10e-9, dt_max_s=0.5e-9, capture_m=0.0)
        st = run(geom, p, init(geom, params=p), until=10.6e-9)
        assert st.n_nucleated == 1 and st.n == 2
        m = float(geom.schmid[0])
        assert st.inserted_strain == pytest.approx(B * m * l_nuc / geom.area, rel=1e-12)
        st = run(geom, p, st, until=15e-9)
        assert st.n_nucleated == 1                     # one firing: the timer restarted
        half = torch.where(st.sign > 0, 0.5 * l_nuc, -0.5 * l_nuc)
        glide = B / geom.area * float((st.sign * m * (st.travel - half)).sum())
        assert st.plastic_strain - st.inserted_strain == pytest.approx(glide, rel=1e-9)
        assert glide > 0
        glided.append(glide)
    assert glided[1] > 3 * glided[0]
