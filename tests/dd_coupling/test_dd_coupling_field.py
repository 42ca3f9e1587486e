"""The fast field (Ewald split: particle mesh + cell lists) against the direct periodic sum;
cell lists against all pairs; annihilation and junction neighbours against O(N²)
references; the engine on its device.

Accuracy measure (issue 17): the resolved shear stress τ_i on every dislocation, from all
the others, with the direct sum ``periodic_field`` at 4 image rows (converged to ~1e-11;
at the engine's default of 1 row the direct sum itself is off by ~3e-4 of max|τ|) as the
reference:

* ``max_norm = max_i |τ_fast - τ_ref| / max_i |τ_ref|``  (the issue's "maximum over
  dislocations"; max|τ| is set by the closest pair);
* ``per_dislocation = max_i |τ_fast - τ_ref| / max(|τ_ref,i|, rms(τ_ref))``  (relative
  error of each dislocation, with the RMS stress as the floor below which a relative error
  means nothing).
"""

from __future__ import annotations

import math

import pytest
import torch
from scalebridge.dd_coupling import field
from scalebridge.dd_coupling.elastic import periodic_field, resolved_shear
from scalebridge.dd_coupling.engine import (
    _annihilation_mask,
    init,
    internal_field,
    resolve_device,
    step,
)
from scalebridge.dd_coupling.field import cell_pairs, ewald_field, make_plan

from .conftest import B_A, MU_GPA, NU, params, simple_geometry

MU, B = MU_GPA * 1e9, B_A * 1e-10


def random_config(n: int, seed: int = 0, density: float = 1e14):
    """n Burgers-neutral edge dislocations (± pairs on 0/60/120° systems) at random
    positions in a 0/60/120-commensurate cell of ``n / density`` m²."""
    g = torch.Generator().manual_seed(seed)
    lx = math.sqrt(n / density / (math.sqrt(3) / 2))
    ly = lx * math.sqrt(3) / 2
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([lx, ly])
    th = torch.tensor([0.0, math.pi / 3, 2 * math.pi / 3], dtype=torch.float64)[
        torch.randint(0, 3, (n // 2,), generator=g)].repeat_interleave(2)
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    return lx, ly, pos, B * sign * torch.exp(1j * th), th


def errors(n: int, seed: int, dtype: torch.dtype, rows: int = 4) -> dict[str, float]:
    lx, ly, pos, b, th = random_config(n, seed)
    ref = resolved_shear(periodic_field(pos, pos, b, MU, NU, lx, ly, rows=rows)[1], th)
    fast = resolved_shear(ewald_field(pos, pos, b, MU, NU, lx, ly, dtype=dtype)[1], th)
    err = (fast - ref).abs()
    rms = float(ref.pow(2).mean().sqrt())
    return {"max_norm": float(err.max() / ref.abs().max()),
            "per_dislocation": float((err / ref.abs().clamp(min=rms)).max())}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ewald_resolved_shear_matches_direct_sum_1000(dtype):
    """N = 10³: measured max_norm 1.1e-7 (float64) / 1.4e-7 (float32), per_dislocation
    1.5e-6 / 1.9e-6; the issue asks for 1e-4."""
    e = errors(1000, seed=1, dtype=dtype)
    assert e["max_norm"] < 1e-5, e
    assert e["per_dislocation"] < 1e-4, e


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_ewald_resolved_shear_matches_direct_sum_10000(dtype):
    e = errors(10000, seed=2, dtype=dtype, rows=3)
    assert e["max_norm"] < 1e-5, e
    assert e["per_dislocation"] < 1e-4, e


def test_ewald_field_s1_s2_and_sources_at_other_points():
    """Both stress combinations, at points that are not dislocations (sources), a
    dislocation sitting on a point adds nothing there, and a 2-dislocation cell."""
    lx, ly, pos, b, _ = random_config(200, seed=3)
    g = torch.Generator().manual_seed(4)
    pts = torch.cat([torch.rand(50, 2, generator=g, dtype=torch.float64)
                     * torch.tensor([lx, ly]), pos[:5]])
    s1r, s2r = periodic_field(pts, pos, b, MU, NU, lx, ly, rows=4)
    s1f, s2f = ewald_field(pts, pos, b, MU, NU, lx, ly)
    assert float((s1f - s1r).abs().max()) < 1e-5 * float(s1r.abs().max())
    assert float((s2f - s2r).abs().max()) < 1e-5 * float(s2r.abs().max())
    dip = torch.tensor([[0.3 * lx, 0.5 * ly], [0.3 * lx + 40e-9, 0.5 * ly + 40e-9]],
                       dtype=torch.float64)
    bd = B * torch.tensor([1.0, -1.0], dtype=torch.complex128)
    ref = periodic_field(dip, dip, bd, MU, NU, lx, ly, rows=4)[1]
    fast = ewald_field(dip, dip, bd, MU, NU, lx, ly)[1]
    assert float((fast - ref).abs().max()) < 1e-5 * float(ref.abs().max())


def test_cell_pairs_hold_every_pair_within_the_cutoff_once():
    lx, ly, pos, _, _ = random_config(600, seed=5)
    plan = make_plan(600, lx, ly)
    pairs = cell_pairs(pos, pos, lx, ly, plan.ncx, plan.ncy, chunk=5000, reach=2)
    ti = torch.cat([p[0] for p in pairs])
    sj = torch.cat([p[1] for p in pairs])
    key = ti * 600 + sj
    assert key.unique().numel() == key.numel()                     # no pair twice
    d = pos[:, None, :] - pos[None, :, :]
    d[..., 0] -= lx * torch.round(d[..., 0] / lx)
    d[..., 1] -= ly * torch.round(d[..., 1] / ly)
    close = torch.nonzero((d * d).sum(-1) < plan.rc ** 2)
    want = set((close[:, 0] * 600 + close[:, 1]).tolist())
    assert want <= set(key.tolist())


def _same_bits(x: torch.Tensor, y: torch.Tensor) -> bool:
    if x.is_complex():
        x, y = torch.view_as_real(x).contiguous(), torch.view_as_real(y).contiguous()
    if x.shape != y.shape or x.dtype != y.dtype:
        return False
    if x.is_floating_point():
        as_int = torch.int64 if x.element_size() == 8 else torch.int32
        x, y = x.contiguous().view(as_int), y.contiguous().view(as_int)
    return torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_cpu_loops_give_the_torch_operations_bits(dtype):
    """On the CPU the pair search, the pair sums and the tile bookkeeping run as compiled
    loops: every output (S1, S2, the nearest offset and index) has the bits of the torch
    operations (``compiled=False``), with extra field points (the engine's sources), a
    point on a dislocation, close pairs, pairs across the cell's edges and small chunks."""
    for seed in range(3):
        lx, ly, pos, b, _ = random_config(300, seed=seed)
        g = torch.Generator().manual_seed(20 + seed)
        box = torch.tensor([lx, ly])
        pos[:40] = torch.remainder(pos[40:80] + (torch.rand(40, 2, generator=g,
                                                            dtype=torch.float64) - 0.5) * 4e-8, box)
        pos[80:90, 0] = lx * (1 - 1e-9 * torch.rand(10, generator=g, dtype=torch.float64))
        extra = torch.rand(400, 2, generator=g, dtype=torch.float64) * box
        extra[0] = pos[7]                                       # coincident: adds nothing
        plan = make_plan(pos.shape[0], lx, ly)
        for points in (pos, torch.cat([pos, extra]), extra):
            for nearest, with_s1 in ((True, False), (False, True)):
                for chunk in (1 << 20, 4000):
                    kw = dict(nearest=nearest, with_s1=with_s1, dtype=dtype, pair_chunk=chunk)
                    fast = ewald_field(points, pos, b, MU, NU, lx, ly, plan, **kw)
                    ref = ewald_field(points, pos, b, MU, NU, lx, ly, plan, compiled=False,
                                      **kw)
                    assert len(fast) == len(ref)
                    assert all(_same_bits(x, y) for x, y in zip(fast, ref, strict=True))
    # a point at -0.0 against a dislocation at +0.0 (the torch wrap gives +0), two
    # dislocations at one place (a tie for the nearest: the last one wins in both), and a
    # call that keeps no pair at all
    lx, ly, pos, b, _ = random_config(120, seed=5)
    pos[0] = torch.tensor([0.0, 1e-7], dtype=torch.float64)
    pos[96] = pos[95]
    points = torch.cat([torch.tensor([[-0.0, 1.05e-7]], dtype=torch.float64),
                        pos[95:96] + torch.tensor([[1e-9, 0.0]], dtype=torch.float64), pos])
    plan = make_plan(pos.shape[0], lx, ly)
    for pts, src, bb in ((points, pos, b), (pos[:1], pos[:1], b[:1])):
        kw = dict(nearest=True, with_s1=True, dtype=dtype)
        fast = ewald_field(pts, src, bb, MU, NU, lx, ly, plan, **kw)
        ref = ewald_field(pts, src, bb, MU, NU, lx, ly, plan, compiled=False, **kw)
        assert all(_same_bits(x, y) for x, y in zip(fast, ref, strict=True))
    # float32 positions take the torch pairs with the compiled sums (a mixed path the
    # engine, whose positions are float64, does not run; without the nearest pair, which
    # needs float64 offsets)
    lx, ly, pos, b, _ = random_config(300, seed=1)
    p32 = pos.float()
    kw = dict(nearest=False, with_s1=True, dtype=dtype)
    plan = make_plan(pos.shape[0], lx, ly)
    fast = ewald_field(p32, p32, b, MU, NU, lx, ly, plan, **kw)
    ref = ewald_field(p32, p32, b, MU, NU, lx, ly, plan, compiled=False, **kw)
    assert all(_same_bits(x, y) for x, y in zip(fast, ref, strict=True))
    # the compiled loops were taken (compiled now or loaded from numba's cache)
    assert field._near_pairs_kernel.signatures and field._pair_sums_kernel.signatures
    assert field._tiles_kernel.signatures


def test_nearest_neighbour_from_cell_lists_equals_all_pairs():
    """The junction partner (nearest other dislocation) from the field's cell lists equals
    the all-pairs search wherever it is within the cutoff, on random configurations
    with close pairs."""
    for seed in range(3):
        lx, ly, pos, b, _ = random_config(400, seed=seed)
        g = torch.Generator().manual_seed(10 + seed)
        # close partners: a third of the dislocations get one within 1-20 nm
        k = 130
        partner = pos[:k] + (torch.rand(k, 2, generator=g, dtype=torch.float64) - 0.5) * 4e-8
        pos = torch.remainder(torch.cat([pos[k:2 * k], partner, pos[2 * k:]]),
                              torch.tensor([lx, ly]))
        _, _, dz_ref, j_ref = periodic_field(pos, pos, b, MU, NU, lx, ly, rows=1,
                                             nearest=True)
        plan = make_plan(pos.shape[0], lx, ly)
        _, _, dz, j = ewald_field(pos, pos, b, MU, NU, lx, ly, plan, nearest=True)
        inside = dz_ref.abs() < plan.rc
        assert bool(inside.any())
        assert torch.equal(j[inside], j_ref[inside])
        assert torch.allclose(dz[inside], dz_ref[inside], rtol=0, atol=1e-18)
        assert bool(torch.isinf(dz[~inside].real).all())


def _annihilation_reference(geom, state, capture, ds):
    """O(N²) reference of the annihilation rule: for every dislocation, its next
    neighbour along +s on its plane (cyclic) by a search over all dislocations; a pair is
    a candidate when of opposite sign with gap (after the glide) below capture; chosen
    when its gap is below the gaps of the candidate pairs on either side."""
    n = state.n
    nxt = list(range(n))
    for i in range(n):
        best = math.inf
        for j in range(n):
            if j == i or int(state.plane[j]) != int(state.plane[i]):
                continue
            length = float(geom.plane_length[state.plane[i]])
            g = (float(state.s[j]) - float(state.s[i])) % length
            if g < best:
                best, nxt[i] = g, j
    gap = [math.inf] * n
    for i in range(n):
        j = nxt[i]
        if j == i or float(state.sign[j]) == float(state.sign[i]):
            continue
        length = float(geom.plane_length[state.plane[i]])
        g = (float(state.s[j]) - float(state.s[i])) % length + float(ds[j] - ds[i])
        if g < capture:
            gap[i] = g
    prv = {nxt[i]: i for i in range(n)}
    remove = [False] * n
    for i in range(n):
        if gap[i] == math.inf:
            continue
        if gap[prv[i]] <= gap[i] or gap[nxt[i]] < gap[i]:
            continue
        remove[i] = remove[nxt[i]] = True
    return torch.tensor(remove)


def test_annihilation_equals_all_pairs_reference():
    """The sort-based annihilation (O(N log N)) removes the same dislocations as the
    O(N²) neighbour search, on random configurations with many close opposite pairs."""
    lx = 0.6e-6
    ly = lx * math.sqrt(3) / 2
    planes = [(a, d) for a in (0.0, 60.0, 120.0) for d in (0.05e-6, 0.15e-6, 0.25e-6)]
    geom = simple_geometry(lx, ly, planes)
    for seed in range(4):
        g = torch.Generator().manual_seed(seed)
        n = 120
        plane = torch.randint(0, len(planes), (n,), generator=g)
        s = torch.rand(n, generator=g, dtype=torch.float64) * geom.plane_length[plane]
        sign = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0).to(torch.float64)
        ds = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 20e-9
        st = init(geom, plane, s, sign)
        capture = 15e-9
        got = _annihilation_mask(geom, st, capture, ds)
        want = _annihilation_reference(geom, st, capture, ds)
        assert int(want.sum()) >= 2
        assert torch.equal(got, want)


def test_engine_field_methods_agree_and_junctions_lock_alike():
    """One engine step of a random configuration with sources, junction partners and
    obstacles: "ewald" and "direct" (4 rows) give the same velocities (junction locks
    included) to ~1e-6 of the largest, and the same glide."""
    from scalebridge.dd_coupling.mobility import LinearDragMobility

    from .conftest import simple_geometry as geo

    lx = 1.2e-6
    ly = lx * math.sqrt(3) / 2
    planes = [(a, (i + 0.5) * ly / 12) for a in (0.0, 60.0, 120.0) for i in range(12)]
    g = torch.Generator().manual_seed(7)
    srcs = [(int(k), float(s), 50e6) for k, s in zip(
        torch.randint(0, 36, (30,), generator=g),
        torch.rand(30, generator=g) * 0.5e-6, strict=True)]
    geom = geo(lx, ly, planes, sources=srcs)
    n = 400
    # Burgers-neutral (as every DD state): ± pairs on one system, on random planes of it
    system = torch.randint(0, 3, (n // 2,), generator=g).repeat_interleave(2)
    plane = system * 12 + torch.randint(0, 12, (n,), generator=g)
    s = torch.rand(n, generator=g, dtype=torch.float64) * geom.plane_length[plane]
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    out = {}
    for method in ("ewald", "direct"):
        p = params(law, field=method, image_rows=4, junction_m=30e-9, capture_m=2 * B,
                   stress_offset_pa=30e6)
        st = init(geom, plane, s, sign, params=p)
        from scalebridge.dd_coupling.engine import glide_velocity, positions
        v, tau, tau_src = glide_velocity(
            geom, p, st, positions(geom, geom.src_plane, geom.src_s),
            geom.plane_system[geom.src_plane])
        out[method] = (v, tau, tau_src, step(geom, p, st))
    (v1, t1, ts1, s1), (v2, t2, ts2, s2) = out["ewald"], out["direct"]
    scale = float(t2.abs().max())
    assert float((t1 - t2).abs().max()) < 1e-5 * scale
    assert float((ts1 - ts2).abs().max()) < 1e-5 * scale
    assert torch.equal(v1 == 0, v2 == 0) and int((v2 == 0).sum()) > 0   # same locks
    assert float((v1 - v2).abs().max()) < 1e-5 * float(v2.abs().max())
    assert s1.n == s2.n
    assert float((s1.s - s2.s).abs().max()) < 1e-5 * 20 * B


def test_internal_field_auto_switches_to_the_mesh_above_the_threshold():
    from scalebridge.dd_coupling.engine import DIRECT_MAX_PAIRS
    from scalebridge.dd_coupling.mobility import LinearDragMobility

    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    n = int(math.sqrt(DIRECT_MAX_PAIRS)) + 20
    lx, ly, pos, b, _ = random_config(n, seed=8)
    geom = simple_geometry(lx, ly, [(0.0, 0.1 * ly)])
    got = internal_field(geom, params(law, field="auto", image_rows=4), pos, pos, b)[0]
    direct = internal_field(geom, params(law, field="direct", image_rows=4), pos, pos, b)[0]
    assert float((got - direct).abs().max()) < 1e-5 * float(direct.abs().max())
    assert not torch.equal(got, direct)                             # the mesh ran


def test_device_setting():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_engine_on_cuda_matches_cpu():
    from scalebridge.dd_coupling.mobility import LinearDragMobility

    lx = 1.2e-6
    ly = lx * math.sqrt(3) / 2
    planes = [(a, (i + 0.5) * ly / 12) for a in (0.0, 60.0, 120.0) for i in range(12)]
    geom = simple_geometry(lx, ly, planes, sources=[(3, 0.1e-6, 40e6)],
                           obstacles=[(5, 0.2e-6, 100e6)])
    g = torch.Generator().manual_seed(9)
    n = 600
    system = torch.randint(0, 3, (n // 2,), generator=g).repeat_interleave(2)
    plane = system * 12 + torch.randint(0, 12, (n,), generator=g)
    s = torch.rand(n, generator=g, dtype=torch.float64) * geom.plane_length[plane]
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    law = LinearDragMobility(burgers_m=B, b0_pa_s=5e-5)
    states = []
    for dev in ("cpu", "cuda"):
        p = params(law, field="ewald", device=dev, field_dtype="float64",
                   stress_offset_pa=50e6)
        st = init(geom, plane, s, sign, params=p)
        for _ in range(5):
            st = step(geom, p, st)
        assert st.s.device.type == dev
        states.append(st)
    a, c = states
    assert a.n == c.n
    assert torch.allclose(a.s, c.s.cpu(), rtol=0, atol=1e-12)


def test_inputs_that_require_grad_take_the_torch_operations():
    """Positions that require grad cannot go through the compiled loops (``.numpy()``
    refuses a graph; the tiles' weights came from them): with ``compiled=True`` asked for,
    the field runs the torch operations throughout, tiles included, to the same bits. (It
    is not differentiable as a whole: its pair sums go through bincount.)"""
    lx, ly, pos, b, _ = random_config(200, seed=3)
    plan = make_plan(pos.shape[0], lx, ly)
    for nearest in (False, True):
        ref = ewald_field(pos, pos, b, MU, NU, lx, ly, plan, nearest=nearest, compiled=False)
        p = pos.clone().requires_grad_(True)
        out = ewald_field(p, p, b, MU, NU, lx, ly, plan, nearest=nearest)
        assert all(_same_bits(x.detach(), y) for x, y in zip(out, ref, strict=True))
