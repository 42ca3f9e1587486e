"""Fast periodic field of many edge dislocations: Ewald split, particle mesh + cell lists.

:func:`ewald_field` returns what :func:`~scalebridge.dd_coupling.elastic.periodic_field`
returns (S1 = σxx+σyy, S2 = σyy-σxx+2iσxy at the points, optionally the nearest
dislocation of each point), for the doubly periodic cell with zero cell mean, in
O(N log N) instead of O(N²): the row sum of ``periodic_field`` converges (exponentially
in the number of image rows) to the same field.

The split. The point kernels are ``S2 = 2(Ā/ζ - A ζ̄/ζ²)``, ``S1 = 2(A/ζ + Ā/ζ̄)``; in
Fourier space (``κ = kx + i ky``) ``Ŝ2 = -4πi (Ā/κ + A κ̄/κ²)``,
``Ŝ1 = -4πi (A/κ + Ā/κ̄)``. The doubly periodic, zero-mean field is
``(1/area) Σ_{k≠0} Ŝ(k) Σ_j e^{-ik·z_j} e^{ik·z}``. It is split with
``f(k) = (1 + k²σ²/2) e^{-k²σ²/2}`` (not the plain Gaussian of Coulomb Ewald: the Airy
stress function is biharmonic, and ``1 - e^{-k²σ²/2}`` leaves a ``σ²/r³`` real-space
tail; ``1 - f = O(k⁴)`` does not):

* long range, ``f(k) Ŝ(k)``: smooth, summed on a mesh (Gaussian spreading of the complex
  Burgers factors A_j, FFT, multiply, inverse FFT, Gaussian interpolation back: the
  spectral Ewald method of Lindbo & Tornberg, J. Comput. Phys. 229 (2010) 8994);
* short range, the inverse transform of ``(1 - f) Ŝ``: each angular mode of the point
  kernel (``1/ζ``: order 1, ``ζ̄/ζ²``: order 3) times a radial factor
  ``Q_n(r) = ∫_0^∞ (1 - f(u/r)) J_n(u) du``, in closed form with ``t = r²/(2σ²)``::

      Q_1 = e^{-t} (1 - t),     Q_3 = e^{-t} (1 + t)

  so ``S2_short = 2(Ā Q_1/ζ - A ζ̄ Q_3/ζ²)`` over pairs closer than ``r_c`` (``e^{-t}(1+t)``
  below ~1e-8 there), found with cell lists (sources sorted by cell, targets compare the
  5 × 5 cells of side ≥ r_c/2 around theirs).

Cost: O(N) pairs (at fixed density), O(N P²) spreading and
interpolation (P points per direction), O(M log M) FFTs on M ∝ N mesh points.

Why this method (measured on the shared 2-core development machine, one thread, CPU
time; ``benchmarks/results/dd_scaling.json`` for whole steps):

* the direct closed-form sum (``periodic_field``, 1 image row) costs ~140 ns per pair
  (0.56 s at N = 2000, 8 s at N = 10⁴);
* a precomputed, bicubically interpolated periodic kernel costs more per pair than that
  closed form (~300 ns per pair for one of the four tables it needs: 16 gathers per
  pair), so a table only pays with the far sources aggregated, which is what a mesh does;
* this particle mesh: 0.04 s at N = 2000, ~0.2 s at 10⁴, ~1.8 s at 10⁵ per field
  evaluation (float32 arithmetic; the torch path, before the compiled pair loops below,
  not re-measured since), resolved shear within ~1e-7 of max|τ| (1e-6 of the
  RMS stress) of the converged direct sum;
* a 2D complex-variable FMM (the kernels are ``1/ζ`` and ``ζ̄/ζ²``) was not built: it is
  a tree walk with irregular interaction lists that torch runs as many small operations,
  where the mesh is a handful of large regular ones (scatter into tiles, batched matrix
  products, FFT, one pass over a pair list) that run the same way on CPU threads and on a
  GPU, with an error set by three numbers (σ, mesh spacing, spreading support).

On the CPU the pair search and sums (:func:`_near_pairs_kernel`,
:func:`_pair_sums_kernel`) and the tile bookkeeping (:func:`_tiles_kernel`) run as
compiled loops (numba) instead of a few dozen torch passes over the candidate pairs:
the same operations in the same order (sorts and exponentials stay torch's), so the same
bits as the torch code, which other devices run (``ewald_field(compiled=False)``;
tests/dd_coupling/test_dd_coupling_field.py);
a DD step of the Mo example (~300 dislocations, ~390 sources) takes 25-36 % less CPU
time (measured beside other work; the example's DD stage 354.9 -> 289.1 s wall,
runs/mo_bench84 -> 85). Inputs that require grad take the torch operations throughout
(the compiled loops cannot carry a graph); the field is not differentiable as a whole
(its pair sums go through bincount): no caller differentiates it.

Precision: pair offsets are formed in float64 (a float32 position in a 10 µm cell is
uncertain by ~1e-12 m, a 1e-3 relative error in the field of a pair 1 nm apart); the
mesh part is smooth and may run in float32 (``dtype``), and so may the pair kernels once
the offsets are formed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from scalebridge.dd_coupling.cache import BoundedCache

#: e^{-t}(1+t) at the cutoff t_c = r_c²/(2σ²): the short-range truncation error, relative
#: to the field of the pair (t_c = 20: 4e-8)
T_CUT = 20.0
#: cell-list cells have side ≥ r_c / REACH; a target meets the (2 REACH + 1)² cells around
#: its own (2: a 5 × 5 block of half-r_c cells covers 6.25 r_c² instead of 9 r_c²)
REACH = 2


@dataclass(frozen=True)
class EwaldPlan:
    """Numerical parameters of :func:`ewald_field` for one cell and source count.

    Attributes:
        sigma: Ewald splitting length σ, m.
        rc: short-range cutoff, m (``rc = σ √(2 T_CUT)``).
        ncx, ncy: cell-list cells along x and y (each ≥ 2 REACH + 1, side ≥ rc / REACH).
        mx, my: mesh points along x and y.
        eta_x, eta_y: widths of the spreading Gaussian along x and y, m.
        support: mesh points per direction a source is spread over (and a target
            interpolated from).
    """

    sigma: float
    rc: float
    ncx: int
    ncy: int
    mx: int
    my: int
    eta_x: float
    eta_y: float
    support: int


def _good_fft_size(n: int, least: int = 8) -> int:
    """Smallest integer ≥ max(n, least) whose prime factors are 2, 3, 5."""
    m = max(least, n)
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


def make_plan(n_sources: int, lx: float, ly: float, sigma_over_spacing: float = 0.5,
              mesh_per_sigma: float = 2.0, eta_over_h: float = 1.0, support: int = 11,
              min_cutoff: float = 0.0) -> EwaldPlan:
    """Parameters for ``n_sources`` dislocations in an ``lx × ly`` cell.

    σ is ``sigma_over_spacing`` times the mean spacing ``sqrt(area/n)`` (smaller: fewer
    pairs, a larger mesh), capped so that the cell holds 2 REACH + 1 cell-list cells of
    side r_c / REACH in each direction; mesh spacing ``h ≤ σ / mesh_per_sigma`` (the mesh
    is a whole number of TILE-point tiles); spreading Gaussian widths
    ``η = eta_over_h · h`` (each direction with its own h) over ``support`` points per
    direction. ``min_cutoff``: the least r_c (the engine's junction distance, found among
    the short-range pairs). The defaults give a resolved shear within ~1e-6 of the largest
    (measured, tests/dd_coupling/test_dd_coupling_field.py).
    """
    spacing = math.sqrt(lx * ly / max(1, n_sources))
    rc_per_sigma = math.sqrt(2.0 * T_CUT)
    largest = min(lx, ly) / ((2 * REACH + 1) / REACH * rc_per_sigma)
    if min_cutoff > rc_per_sigma * largest:
        raise ValueError(f"cutoff {min_cutoff:.3g} m does not fit the {lx:.3g} x {ly:.3g} m "
                         "cell's cell lists")
    sigma = max(min(sigma_over_spacing * spacing, largest), min_cutoff / rc_per_sigma)
    rc = rc_per_sigma * sigma
    ncx = max(2 * REACH + 1, int(lx * REACH / rc))
    ncy = max(2 * REACH + 1, int(ly * REACH / rc))
    h = sigma / mesh_per_sigma
    tiles_x = _good_fft_size(max(1, math.ceil(lx / (h * TILE))), 1)
    tiles_y = _good_fft_size(max(1, math.ceil(ly / (h * TILE))), 1)
    mx, my = tiles_x * TILE, tiles_y * TILE
    return EwaldPlan(sigma=sigma, rc=rc, ncx=ncx, ncy=ncy, mx=mx, my=my,
                     eta_x=eta_over_h * lx / mx, eta_y=eta_over_h * ly / my,
                     support=min(support | 1, TILE + 1))


# ------------------------------------------------------------------------- cell lists
_ARANGE: dict[torch.device, torch.Tensor] = {}


def _arange(n: int, device: torch.device) -> torch.Tensor:
    """``torch.arange(n)`` (long) as a view of a cached, growing one (read only)."""
    a = _ARANGE.get(device)
    if a is None or a.shape[0] < n:
        a = torch.arange(max(n, 2 * (0 if a is None else a.shape[0]), 1024), device=device)
        _ARANGE[device] = a
    return a[:n]


def _cell_lists(points: torch.Tensor, pos: torch.Tensor, lx: float, ly: float, ncx: int,
                ncy: int, reach: int) -> tuple[torch.Tensor, ...]:
    """The periodic ``ncx × ncy`` cell lists both pair searches walk (one home: the
    compiled search's pairs equal :func:`cell_pairs`' only in this order): ``(order,
    counts, start, tcx, tcy)``, the sources (n, 2) sorted by cell, each cell's count
    and first slot in ``order``, and each target's cell (p,) in x and y."""
    if min(ncx, ncy) < 2 * reach + 1:
        raise ValueError(f"cell lists need at least {2 * reach + 1} cells per direction")
    sx, sy = lx / ncx, ly / ncy

    def cell_of(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cx = torch.floor(p[:, 0] / sx).long().remainder(ncx)
        cy = torch.floor(p[:, 1] / sy).long().remainder(ncy)
        return cx, cy

    scx, scy = cell_of(pos)
    scell = scx * ncy + scy
    order = torch.argsort(scell)
    counts = torch.bincount(scell, minlength=ncx * ncy)
    start = torch.cumsum(counts, 0) - counts
    tcx, tcy = cell_of(points)
    return order, counts, start, tcx, tcy


def cell_pairs(points: torch.Tensor, pos: torch.Tensor, lx: float, ly: float, ncx: int,
               ncy: int, chunk: int | None = None, reach: int = 1
               ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Candidate pairs (target index, source index) of points (p, 2) and sources (n, 2)
    (wrapped into the cell) whose cells of an ``ncx × ncy`` periodic grid are at most
    ``reach`` cells apart in x and in y (ncx, ncy ≥ 2 reach + 1: each pair at most once).
    Every pair closer than ``reach`` cell sides is among them. Returned in chunks of
    about ``chunk`` pairs (a list of (target index, source index) tensors)."""
    dev = points.device
    order, counts, start, tcx, tcy = _cell_lists(points, pos, lx, ly, ncx, ncy, reach)
    off = torch.arange(-reach, reach + 1, device=dev)
    k = off.shape[0] ** 2
    ncell = ((tcx[:, None, None] + off[None, :, None]).remainder(ncx) * ncy
             + (tcy[:, None, None] + off[None, None, :]).remainder(ncy)).reshape(-1)
    cnt = counts.index_select(0, ncell).reshape(-1, k)           # (p, k)
    per_target = cnt.sum(1)
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    p = points.shape[0]
    if p == 0:
        return out
    mean = float(per_target.float().mean()) if p else 0.0
    step = p if chunk is None else max(1, int(chunk / max(mean, 1.0)))
    # pair q of the chunk, the i-th of its (target, cell) slot's, has source
    # order[start[cell] + i] = order[q + shift[slot]], shift = start[cell] - first pair
    base = start.index_select(0, ncell).reshape(-1, k)
    for i0 in range(0, p, step):
        c = cnt[i0:i0 + step].reshape(-1)
        total = int(c.sum())
        if total == 0:
            continue
        shift = base[i0:i0 + step].reshape(-1) - (torch.cumsum(c, 0) - c)
        q = _arange(total, dev) + torch.repeat_interleave(shift, c, output_size=total)
        ti = torch.repeat_interleave(_arange(i0 + per_target[i0:i0 + step].shape[0], dev)[i0:],
                                     per_target[i0:i0 + step], output_size=total)
        out.append((ti, order.index_select(0, q)))
    return out


@njit(cache=True, error_model="numpy")
def _near_pairs_kernel(px: np.ndarray, py: np.ndarray, sx: np.ndarray, sy: np.ndarray,
                       tcx: np.ndarray, tcy: np.ndarray, order: np.ndarray,
                       start: np.ndarray, counts: np.ndarray, ncx: int, ncy: int,
                       reach: int, lx: float, ly: float, rc2: float, tiny_x: float,
                       tiny_y: float, i0: int, i1: int, nearest: bool, best: np.ndarray,
                       near_idx: np.ndarray, near_dx: np.ndarray, near_dy: np.ndarray
                       ) -> tuple[np.ndarray, ...]:
    # cell_pairs' candidates of targets i0..i1-1 in its order (target, then its
    # (2 reach + 1)^2 cells x outer, y inner, then the sources of a cell in ``order``),
    # kept where ewald_field keeps them, with the same float64 operations; and the
    # nearest kept source of each target (its scatter amin, then the last pair at it)
    cap = 0
    for i in range(i0, i1):
        for a in range(-reach, reach + 1):
            cx = (tcx[i] + a) % ncx
            for c in range(-reach, reach + 1):
                cap += counts[cx * ncy + (tcy[i] + c) % ncy]
    ti = np.empty(cap, dtype=np.int64)
    sj = np.empty(cap, dtype=np.int64)
    dxs = np.empty(cap, dtype=np.float64)
    dys = np.empty(cap, dtype=np.float64)
    r2s = np.empty(cap, dtype=np.float64)
    k = 0
    half_x, half_y = 0.5 * lx, 0.5 * ly
    for i in range(i0, i1):
        xi, yi = px[i], py[i]
        for a in range(-reach, reach + 1):
            cx = (tcx[i] + a) % ncx
            for c in range(-reach, reach + 1):
                cell = cx * ncy + (tcy[i] + c) % ncy
                q0 = start[cell]
                for q in range(q0, q0 + counts[cell]):
                    j = order[q]
                    dx = xi - sx[j]
                    dy = yi - sy[j]
                    # dx - lx round(dx / lx), which is dx itself where |dx| <= lx / 2
                    # (|dx / lx| <= 0.5 rounds to ±0 and dx - ±0 is dx, but -0 - -0 is
                    # +0: adding +0 gives the same, without fastmath it is not dropped)
                    if abs(dx) > half_x:
                        dx = dx - lx * np.rint(dx / lx)
                    else:
                        dx = dx + 0.0
                    if abs(dy) > half_y:
                        dy = dy - ly * np.rint(dy / ly)
                    else:
                        dy = dy + 0.0
                    r2 = dx * dx + dy * dy
                    if r2 < rc2 and (abs(dx) >= tiny_x or abs(dy) >= tiny_y):
                        ti[k] = i
                        sj[k] = j
                        dxs[k] = dx
                        dys[k] = dy
                        r2s[k] = r2
                        k += 1
    if nearest:
        for q in range(k):
            t = ti[q]
            if r2s[q] < best[t]:
                best[t] = r2s[q]
        for q in range(k):
            t = ti[q]
            if r2s[q] == best[t]:
                near_idx[t] = sj[q]
                near_dx[t] = dxs[q]
                near_dy[t] = dys[q]
    return ti[:k], sj[:k], dxs[:k], dys[:k], r2s[:k]


def _near_pairs_cpu(points: torch.Tensor, pos: torch.Tensor, lx: float, ly: float,
                    plan: EwaldPlan, chunk: int, nearest: bool, best: np.ndarray,
                    near_idx: np.ndarray, near_dx: np.ndarray, near_dy: np.ndarray
                    ) -> Iterator[tuple[torch.Tensor, ...]]:
    """The pairs of :func:`ewald_field`'s short range on the CPU, in chunks of targets
    of about ``chunk`` candidates: (target, source, dx, dy, r²) of every pair
    :func:`cell_pairs` proposes (``reach = REACH``) that is closer than ``plan.rc`` and
    not coincident, in cell_pairs' order, with the offsets formed by the same float64
    operations (so the same numbers as filtering cell_pairs' output with torch, in one
    compiled pass instead of a dozen passes over the candidates); with ``nearest`` the
    nearest pair of each target goes into ``best``, ``near_idx``, ``near_dx``,
    ``near_dy`` (numpy views of ewald_field's arrays), complete once every chunk has
    been taken. Yields the chunks one by one (one chunk's pairs held at a time)."""
    ncx, ncy, reach = plan.ncx, plan.ncy, REACH
    order, counts, start, tcx, tcy = _cell_lists(points, pos, lx, ly, ncx, ncy, reach)
    p = points.shape[0]
    mean = pos.shape[0] * (2 * reach + 1) ** 2 / (ncx * ncy)   # candidates per target
    step = max(1, int(chunk / max(mean, 1.0)))
    args = (points[:, 0].contiguous().numpy(), points[:, 1].contiguous().numpy(),
            pos[:, 0].contiguous().numpy(), pos[:, 1].contiguous().numpy(),
            tcx.numpy(), tcy.numpy(), order.numpy(), start.numpy(), counts.numpy(),
            ncx, ncy, reach, float(lx), float(ly), float(plan.rc ** 2), 1e-12 * lx,
            1e-12 * ly)
    for i0 in range(0, p, step):
        got = _near_pairs_kernel(*args, i0, min(p, i0 + step), nearest, best, near_idx,
                                 near_dx, near_dy)
        if got[0].shape[0]:
            yield tuple(torch.from_numpy(x) for x in got)


def _near_pairs_torch(points: torch.Tensor, pos: torch.Tensor, lx: float, ly: float,
                      plan: EwaldPlan, chunk: int, nearest: bool, best: torch.Tensor | None,
                      near_idx: torch.Tensor, near_dz: torch.Tensor
                      ) -> Iterator[tuple[torch.Tensor, ...]]:
    """:func:`_near_pairs_cpu` with torch operations (any device): yields (target,
    source, dx, dy, r²) per chunk of :func:`cell_pairs`, filling ``best``,
    ``near_idx``, ``near_dz`` with each target's nearest pair."""
    dev = points.device
    rc2 = plan.rc ** 2
    tiny_x, tiny_y = 1e-12 * lx, 1e-12 * ly
    px, py = points[:, 0].contiguous(), points[:, 1].contiguous()
    sx, sy = pos[:, 0].contiguous(), pos[:, 1].contiguous()
    for ti, sj in cell_pairs(points, pos, lx, ly, plan.ncx, plan.ncy, chunk, REACH):
        # (index_select and masked_select: the same gathers as x[idx] and nonzero,
        # several times faster on the CPU)
        dx = px.index_select(0, ti) - sx.index_select(0, sj)
        dy = py.index_select(0, ti) - sy.index_select(0, sj)
        dx = dx - lx * torch.round(dx / lx)
        dy = dy - ly * torch.round(dy / ly)
        r2 = dx * dx + dy * dy
        keep = _arange(r2.shape[0], dev).masked_select(
            (r2 < rc2) & ((dx.abs() >= tiny_x) | (dy.abs() >= tiny_y)))
        ti, sj = ti.index_select(0, keep), sj.index_select(0, keep)
        dx, dy, r2 = dx.index_select(0, keep), dy.index_select(0, keep), r2.index_select(0, keep)
        if nearest:
            assert best is not None
            # chunks split the targets, so each target's pairs are all in one chunk
            best.scatter_reduce_(0, ti, r2, reduce="amin")
            hit = _arange(r2.shape[0], dev).masked_select(r2 == best.index_select(0, ti))
            t_hit = ti.index_select(0, hit)
            near_idx[t_hit] = sj.index_select(0, hit)
            near_dz[t_hit] = torch.complex(dx.index_select(0, hit), dy.index_select(0, hit))
        yield ti, sj, dx, dy, r2


@njit(cache=True, error_model="numpy")
def _pair_sums_kernel(ti: np.ndarray, sj: np.ndarray, dx: np.ndarray, dy: np.ndarray,
                      r2: np.ndarray, t: np.ndarray, e: np.ndarray, ar: np.ndarray,
                      ai: np.ndarray, with_s1: bool, re: np.ndarray, im: np.ndarray,
                      s1: np.ndarray) -> None:
    # ewald_field's short-range sums of one chunk of pairs: the torch expressions there,
    # operation by operation in the pairs' dtype (no fused multiply-adds), summed per
    # target in pair order in that dtype (as bincount) and then added to the float64
    # re, im, s1 (every target, as ``re += bincount(...)``)
    p = re.shape[0]
    one = dx.dtype.type(1.0)
    two = dx.dtype.type(2.0)
    four = dx.dtype.type(4.0)
    acc_re = np.zeros(p, dtype=dx.dtype)
    acc_im = np.zeros(p, dtype=dx.dtype)
    acc_s1 = np.zeros(p if with_s1 else 0, dtype=dx.dtype)
    for q in range(ti.shape[0]):
        eq, tq = e[q], t[q]
        et = eq * tq
        q1 = eq - et
        q3 = eq + et
        ir2 = one / r2[q]
        x, y = dx[q], dy[q]
        ux = x * ir2
        uy = -y * ir2
        wx = ux * ux - uy * uy
        wy = two * ux * uy
        wx, wy = x * wx + y * wy, x * wy - y * wx
        aj_r, aj_i = ar[sj[q]], ai[sj[q]]
        ux, uy, wx, wy = ux * q1, uy * q1, wx * q3, wy * q3
        i = ti[q]
        acc_re[i] += aj_r * ux + aj_i * uy - aj_r * wx + aj_i * wy
        acc_im[i] += aj_r * uy - aj_i * ux - aj_r * wy - aj_i * wx
        if with_s1:
            acc_s1[i] += aj_r * ux - aj_i * uy
    for i in range(p):
        re[i] += acc_re[i]
        im[i] += acc_im[i]
    if with_s1:
        for i in range(p):
            s1[i] += acc_s1[i] * four


# ------------------------------------------------------------------------- the mesh
#: mesh points per tile side: points are handled in batches of BATCH points that share a
#: tile, so spreading and interpolation are batched matrix products over the 2 × 2 tiles
#: from a batch's tile on (a stencil of P ≤ TILE + 1 points fits in them)
TILE = 16
BATCH = 32
#: batches per chunk of the mesh operations (keeps the blocks in cache)
CHUNK_BATCHES = 256


@njit(cache=True, error_model="numpy")
def _tiles_kernel(tile: np.ndarray, order: np.ndarray, ntx: int, nty: int,
                  cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    # _Tiles' slot, quad and weight block (its torch operations, the same integers;
    # the weights copied): points ordered by ``order`` fill BATCH-point batches of
    # their tile, the batches of tile 0 first
    p = tile.shape[0]
    ntile = ntx * nty
    counts = np.zeros(ntile, dtype=np.int64)
    for i in range(p):
        counts[tile[i]] += 1
    bstart = np.empty(ntile, dtype=np.int64)
    nb = 0
    for t in range(ntile):
        bstart[t] = nb
        nb += (counts[t] + BATCH - 1) // BATCH
    seen = np.zeros(ntile, dtype=np.int64)
    slot = np.empty(p, dtype=np.int64)
    for q in range(p):
        i = order[q]
        t = tile[i]
        rank = seen[t]
        seen[t] += 1
        slot[i] = (bstart[t] + rank // BATCH) * BATCH + rank % BATCH
    quad = np.empty((nb, 4), dtype=np.int64)
    for t in range(ntile):
        btx, bty = t // nty, t % nty
        for b in range(bstart[t], bstart[t] + (counts[t] + BATCH - 1) // BATCH):
            quad[b, 0] = btx * nty + bty
            quad[b, 1] = btx * nty + (bty + 1) % nty
            quad[b, 2] = ((btx + 1) % ntx) * nty + bty
            quad[b, 3] = ((btx + 1) % ntx) * nty + (bty + 1) % nty
    w = np.zeros((2, nb * BATCH, 2 * TILE), dtype=rows.dtype)
    for d in range(2):
        for i in range(p):
            s = slot[i]
            for j in range(rows.shape[2]):
                w[d, s, cols[d, i, j]] = rows[d, i, j]
    return slot, quad, w


class _Tiles:
    """Points (p, 2) grouped by mesh tile, with their 1D Gaussian weights over the 2 × 2
    tiles from their tile on (``2 TILE`` mesh points per direction).

    Attributes:
        quad: (nb, 4) tiles (row-major over ntx × nty) of the 2 × 2 block of each batch,
            in the order (0,0), (0,1), (1,0), (1,1).
        slot: (p,) flat position ``batch * BATCH + k`` of each point.
        wx, wy: (nb, BATCH, 2 TILE) weights (0 in unused slots), normalised so that
            ``wx ⊗ wy / (hx hy)`` samples the unit-integral Gaussian g_η.

    ``weights``: :func:`_point_weights` of ``pts`` where the caller has them.
    ``compiled``: on the CPU, :func:`_tiles_kernel` (else the torch operations).
    """

    def __init__(self, pts: torch.Tensor, plan: EwaldPlan, lx: float, ly: float,
                 dtype: torch.dtype, weights: tuple[torch.Tensor, ...] | None = None,
                 compiled: bool = True):
        dev = pts.device
        ntx, nty = plan.mx // TILE, plan.my // TILE
        width = 2 * TILE
        tiles, rows, cols = weights if weights is not None else _point_weights(
            pts, plan, lx, ly, dtype)
        tile = tiles[0] * nty + tiles[1]
        ntile = ntx * nty
        order = torch.argsort(tile)
        self.ntile = ntile
        if compiled and dev.type == "cpu" and dtype in (torch.float32, torch.float64):
            # the same integers and the same copies of the weights, in one compiled pass
            slot, quad, w = _tiles_kernel(tile.numpy(), order.numpy(), ntx, nty,
                                          cols.contiguous().numpy(), rows.contiguous().numpy())
            self.slot, self.quad, w = (torch.from_numpy(slot), torch.from_numpy(quad),
                                       torch.from_numpy(w))
            nb = w.shape[1] // BATCH
            self.wx, self.wy = w[0].reshape(nb, BATCH, width), w[1].reshape(nb, BATCH, width)
            return
        counts = torch.bincount(tile, minlength=ntile)
        nb_tile = (counts + BATCH - 1) // BATCH
        bstart = torch.cumsum(nb_tile, 0) - nb_tile
        start = torch.cumsum(counts, 0) - counts
        ts = tile.index_select(0, order)
        rank = _arange(pts.shape[0], dev) - start.index_select(0, ts)
        slot = torch.empty_like(order)
        slot[order] = (bstart.index_select(0, ts) + rank // BATCH) * BATCH + rank % BATCH
        nb = int(nb_tile.sum())
        bt = torch.repeat_interleave(_arange(ntile, dev), nb_tile)
        btx, bty = bt // nty, bt % nty
        self.quad = torch.stack([btx * nty + bty, btx * nty + (bty + 1) % nty,
                                 ((btx + 1) % ntx) * nty + bty,
                                 ((btx + 1) % ntx) * nty + (bty + 1) % nty], 1)
        self.slot = slot
        # both directions' weights into one block of zeros (each entry written once)
        w = torch.zeros(2, nb * BATCH, width, dtype=dtype, device=dev)
        at = slot[:, None] * width + cols
        at[1] += nb * BATCH * width
        w.view(-1).index_put_((at,), rows)
        self.wx, self.wy = w[0].reshape(nb, BATCH, width), w[1].reshape(nb, BATCH, width)


def _point_weights(pts: torch.Tensor, plan: EwaldPlan, lx: float, ly: float,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each point (p, 2) and direction (x, y): its tile (2, p), the 1D Gaussian
    weights (2, p, P) of the ``P = plan.support`` mesh points from ``first`` on, and their
    columns (2, p, P) in the 2 × 2-tile block from its tile on. Point by point (every
    operation elementwise), so the first rows of a longer list of points are the weights
    of those points alone."""
    dev = pts.device
    p_sup = plan.support
    h = torch.tensor([lx / plan.mx, ly / plan.my], dtype=pts.dtype, device=dev)[:, None]
    eta = torch.tensor([plan.eta_x, plan.eta_y], dtype=pts.dtype, device=dev)[:, None, None]
    norm = torch.tensor([lx / plan.mx / (math.sqrt(2.0 * math.pi) * plan.eta_x),
                         ly / plan.my / (math.sqrt(2.0 * math.pi) * plan.eta_y)],
                        dtype=dtype, device=dev)[:, None, None]
    size = torch.tensor([plan.mx, plan.my], device=dev)[:, None]
    j = _arange(p_sup, dev)
    coord = pts.T                                                   # (2, p)
    first = torch.round(coord / h).long() - p_sup // 2              # unwrapped first point
    fw = first.remainder(size)
    t = fw // TILE
    d = ((coord[:, :, None] - (first[:, :, None] + j).to(coord.dtype) * h[:, :, None])
         / eta).to(dtype)
    rows = torch.exp(-0.5 * d * d) * norm
    cols = (fw - t * TILE)[:, :, None] + j                           # column in the block
    return t, rows, cols


def _spread(src: _Tiles, vals: torch.Tensor, plan: EwaldPlan) -> torch.Tensor:
    """Periodic mesh (c, mx, my) of ``Σ_j vals[c, j] g_η(x - z_j) hx hy`` for real
    channels ``vals`` (c, n)."""
    c = vals.shape[0]
    nb = src.wx.shape[0]
    t, w = TILE, 2 * TILE
    v = torch.zeros(c, nb * BATCH, dtype=vals.dtype, device=vals.device)
    v[:, src.slot] = vals
    v = v.reshape(c, nb, BATCH, 1)
    tiles = torch.zeros(src.ntile, c, t, t, dtype=vals.dtype, device=vals.device)
    for b0 in range(0, nb, CHUNK_BATCHES):
        sl = slice(b0, b0 + CHUNK_BATCHES)
        k = src.wx[sl].shape[0]
        # (k, c·2T, B) @ (k, B, 2T): each batch's 2 × 2-tile block, every channel at once
        left = (src.wx[None, sl] * v[:, sl]).permute(1, 0, 3, 2).reshape(k, c * w, BATCH)
        blocks = torch.bmm(left, src.wy[sl]).reshape(k, c, 2, t, 2, t)
        blocks = blocks.permute(0, 2, 4, 1, 3, 5).reshape(k * 4, c, t, t)
        tiles.index_add_(0, src.quad[sl].reshape(-1), blocks)
    ntx, nty = plan.mx // t, plan.my // t
    return tiles.reshape(ntx, nty, c, t, t).permute(2, 0, 3, 1, 4).reshape(c, plan.mx,
                                                                          plan.my)


def _interpolate(tgt: _Tiles, grid: torch.Tensor, plan: EwaldPlan) -> torch.Tensor:
    """``Σ_m grid[c, m] g_η(z - x_m) hx hy`` (c, p) at the targets of ``tgt``."""
    c = grid.shape[0]
    t, w = TILE, 2 * TILE
    ntx, nty = plan.mx // t, plan.my // t
    tiles = grid.reshape(c, ntx, t, nty, t).permute(1, 3, 0, 2, 4).reshape(-1, c, t, t)
    nb = tgt.wx.shape[0]
    out = torch.empty(nb, BATCH, c, dtype=grid.dtype, device=grid.device)
    for b0 in range(0, nb, CHUNK_BATCHES):
        sl = slice(b0, b0 + CHUNK_BATCHES)
        k = tgt.wx[sl].shape[0]
        block = tiles.index_select(0, tgt.quad[sl].reshape(-1)).reshape(k, 2, 2, c, t, t)
        # Σ_a wx[a] G[a, b]: (k, B, 2T) @ (k, 2T, c·2T)
        g = block.permute(0, 1, 4, 3, 2, 5).reshape(k, w, c * w)
        m = torch.bmm(tgt.wx[sl], g).reshape(k, BATCH, c, w)
        out[sl] = (m * tgt.wy[sl, :, None, :]).sum(-1)
    return out.reshape(nb * BATCH, c).index_select(0, tgt.slot).T


def ewald_field(points: torch.Tensor, pos: torch.Tensor, b: torch.Tensor, mu_pa: float,
                nu: float, lx: float, ly: float, plan: EwaldPlan | None = None,
                nearest: bool = False, with_s1: bool = True,
                dtype: torch.dtype = torch.float64, pair_chunk: int = 1 << 20,
                compiled: bool = True) -> tuple[torch.Tensor, ...]:
    """(S1, S2) at ``points`` (p, 2) from dislocations at ``pos`` (n, 2) (both wrapped into
    ``[0, lx) × [0, ly)``, float64) with complex Burgers vectors ``b`` (n,), m, in the
    doubly periodic cell with zero cell mean. Coincident point-dislocation pairs add
    nothing. ``with_s1=False``: S1 is returned as zeros (saves a transform). ``dtype``:
    arithmetic of the mesh and of the pair kernels (pair offsets are always formed in
    float64, results are float64/complex128).

    With ``nearest=True`` also returns, per point, the minimum-image offset (p,) complex
    (point - dislocation) to the nearest non-coincident dislocation closer than the
    short-range cutoff ``plan.rc`` and its index (p,) (offset ``inf`` where there is
    none); the engine uses it for junctions (junction distances are ≪ r_c).

    ``compiled``: on the CPU, the compiled loops for the pairs and the tiles (the same
    bits); False: the torch operations throughout (what other devices run)."""
    dev = points.device
    p, n = points.shape[0], pos.shape[0]
    cdt = torch.complex128
    s1 = torch.zeros(p, dtype=torch.float64, device=dev)
    s2 = torch.zeros(p, dtype=cdt, device=dev)
    near_dz = torch.full((p,), complex(math.inf, 0), dtype=cdt, device=dev)
    near_idx = torch.zeros(p, dtype=torch.long, device=dev)
    if n == 0 or p == 0:
        return (s1, s2, near_dz, near_idx) if nearest else (s1, s2)
    plan = plan or make_plan(n, lx, ly)
    # numba takes CPU arrays without autograd (``.numpy()`` refuses a graph): inputs
    # that require grad take the torch operations, tiles and pairs alike
    compiled = (compiled and dev.type == "cpu"
                and not (points.requires_grad or pos.requires_grad or b.requires_grad))
    a = mu_pa * (-1j) * b.to(cdt) / (4.0 * math.pi * (1.0 - nu))     # A_j
    s1, s2 = _long_range(points, pos, a, lx, ly, plan, with_s1, dtype, compiled)

    # ---- short range over cell-list pairs, in real arithmetic: with u = 1/ζ and
    # w = ζ̄/ζ² = ζ̄ u², S2 += 2(Ā u Q1 - A w Q3), S1 += 4 Re(A u) Q1
    inv_sig2 = 0.5 / plan.sigma ** 2
    ar, ai = a.real.to(dtype), a.imag.to(dtype)
    re = torch.zeros(p, dtype=torch.float64, device=dev)
    im = torch.zeros(p, dtype=torch.float64, device=dev)
    best = torch.full((p,), math.inf, dtype=torch.float64, device=dev) if nearest else None
    cpu_pairs = compiled and points.dtype == torch.float64 and pos.dtype == torch.float64
    if cpu_pairs:
        # the pairs (and the nearest) in one compiled pass: the same pairs, in the same
        # order, with the same offsets as the torch filter below
        near_dx = torch.full((p,), math.inf, dtype=torch.float64)
        near_dy = torch.zeros(p, dtype=torch.float64)
        # without ``nearest`` the kernel does not read ``best``: any float64 array will do
        chunks: Iterable[tuple[torch.Tensor, ...]] = _near_pairs_cpu(
            points, pos, lx, ly, plan, pair_chunk, nearest,
            (best if best is not None else near_dx).numpy(), near_idx.numpy(),
            near_dx.numpy(), near_dy.numpy())
    else:
        chunks = _near_pairs_torch(points, pos, lx, ly, plan, pair_chunk, nearest, best,
                                   near_idx, near_dz)
    fused = compiled and dtype in (torch.float32, torch.float64)
    for ti, sj, dx, dy, r2 in chunks:
        dx, dy, r2 = dx.to(dtype), dy.to(dtype), r2.to(dtype)
        t = r2 * inv_sig2
        e = torch.exp(-t)
        if fused:
            # the products and sums below, in one compiled pass (the same operations
            # in the same order, each chunk's sums in ``dtype`` as bincount's)
            _pair_sums_kernel(ti.numpy(), sj.numpy(), dx.numpy(), dy.numpy(), r2.numpy(),
                              t.numpy(), e.numpy(), ar.numpy(), ai.numpy(), with_s1,
                              re.numpy(), im.numpy(), s1.numpy())
            continue
        et = e * t
        q1, q3 = e - et, e + et
        ir2 = 1.0 / r2
        ux, uy = dx * ir2, -dy * ir2                                 # u = 1/ζ
        wx = (ux * ux - uy * uy)                                     # u², then ζ̄ u²
        wy = 2.0 * ux * uy
        wx, wy = dx * wx + dy * wy, dx * wy - dy * wx
        aj_r, aj_i = ar.index_select(0, sj), ai.index_select(0, sj)
        ux, uy, wx, wy = ux * q1, uy * q1, wx * q3, wy * q3
        re += torch.bincount(ti, aj_r * ux + aj_i * uy - aj_r * wx + aj_i * wy, minlength=p)
        im += torch.bincount(ti, aj_r * uy - aj_i * ux - aj_r * wy - aj_i * wx, minlength=p)
        if with_s1:
            s1 += torch.bincount(ti, aj_r * ux - aj_i * uy, minlength=p) * 4.0
    s2 = s2 + 2.0 * torch.complex(re, im)
    if cpu_pairs and nearest:      # filled by the kernel as the chunks were taken
        near_dz = torch.complex(near_dx, near_dy)
    if nearest:
        assert best is not None
        near_dz = torch.where(torch.isinf(best), complex(math.inf, 0), near_dz)
    return (s1, s2, near_dz, near_idx) if nearest else (s1, s2)


#: k-space factors of recent plans (:func:`_kspace`), oldest dropped first beyond
#: KSPACE_ENTRIES entries or KSPACE_BYTES bytes
KSPACE_ENTRIES = 32
KSPACE_BYTES = 64 << 20
_KSPACE = BoundedCache(KSPACE_ENTRIES, KSPACE_BYTES)


def _kspace(plan: EwaldPlan, lx: float, ly: float, dtype: torch.dtype, dev: torch.device
            ) -> tuple[torch.Tensor, ...]:
    """The mesh's k-space factors ``(gs, κ, 1/κ)``: ``gs = -4πi/area · f(k) e^{k·η²·k}``
    (0 at k = 0) and ``κ = kx + i ky`` (1 at k = 0). Kept for recent plans (the engine's
    dislocation count, and with it the plan, repeats from step to step): read only."""
    key = (plan, lx, ly, dtype, dev)
    hit = _KSPACE.get(key)
    if hit is not None:
        return hit
    out = _kspace_factors(plan, lx, ly, dtype, dev)
    _KSPACE.put(key, out, sum(t.numel() * t.element_size() for t in out))
    return out


def _kspace_factors(plan: EwaldPlan, lx: float, ly: float, dtype: torch.dtype,
                    dev: torch.device) -> tuple[torch.Tensor, ...]:
    mx, my = plan.mx, plan.my
    kx = 2.0 * math.pi * torch.fft.fftfreq(mx, d=lx / mx, device=dev, dtype=dtype)
    ky = 2.0 * math.pi * torch.fft.fftfreq(my, d=ly / my, device=dev, dtype=dtype)
    kxx, kyy = kx[:, None], ky[None, :]
    k2 = kxx * kxx + kyy * kyy
    # f(k) e^{k·η²·k}: deconvolve the spreading and the interpolation Gaussians
    g = (1.0 + 0.5 * k2 * plan.sigma ** 2) * torch.exp(
        -0.5 * k2 * plan.sigma ** 2 + kxx * kxx * plan.eta_x ** 2 + kyy * kyy * plan.eta_y ** 2)
    g[0, 0] = 0.0
    kappa = torch.complex(kxx.expand(mx, my), kyy.expand(mx, my))
    kappa[0, 0] = 1.0
    inv_k = 1.0 / kappa
    gs = (-4j * math.pi / (lx * ly)) * g
    return gs, kappa, inv_k


def _long_range(points: torch.Tensor, pos: torch.Tensor, a: torch.Tensor, lx: float,
                ly: float, plan: EwaldPlan, with_s1: bool, dtype: torch.dtype,
                compiled: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Mesh part: (S1, S2) at ``points`` of the smooth field ``f(k) Ŝ(k)``
    (``compiled``: see :func:`ewald_field`)."""
    dev = points.device
    mx, my = plan.mx, plan.my
    # spread A_j with Gaussians (periodic, unit integral): H(x) = Σ A_j g_η(x - z_j)
    # the targets' weights; the sources' are their first n when they lead the targets
    # (the engine's field points: the dislocations, then the sources)
    n = pos.shape[0]
    tw = _point_weights(points, plan, lx, ly, dtype)
    sw = (tuple(x[:, :n] for x in tw) if points.shape[0] >= n and torch.equal(points[:n], pos)
          else None)
    src = _Tiles(pos, plan, lx, ly, dtype, sw, compiled)
    a_ri = torch.stack([a.real, a.imag]).to(dtype)
    grid = _spread(src, a_ri, plan)                                  # H·hx·hy, (2, mx, my)
    hk = torch.fft.fft2(torch.complex(grid[0], grid[1]))            # Ĥ(k) = Â(k) e^{-k²η²/2}
    gs, kappa, inv_k = _kspace(plan, lx, ly, dtype, dev)
    # Ā̂(k) e^{-k²η²/2} = conj(Ĥ(-k))
    hk_bar = torch.conj(torch.roll(torch.flip(hk, (0, 1)), (1, 1), (0, 1)))
    # field on the mesh G(x) = (1/area) Σ_k Ŝ(k) f(k) e^{k²η²} Ĥ(k) e^{ik·x}
    # (= ifft2 · mx·my / area); interpolating it with g_η restores Â(k) f(k) Ŝ(k)
    fields = [gs * (hk_bar * inv_k + hk * kappa.conj() * inv_k * inv_k)]
    if with_s1:
        fields.append(gs * (hk * inv_k + hk_bar * torch.conj(inv_k)))
    chans = []
    for fk in fields:
        f = torch.fft.ifft2(fk) * (mx * my)
        chans += [f.real, f.imag]
    tgt = _Tiles(points, plan, lx, ly, dtype, tw, compiled)
    vals = _interpolate(tgt, torch.stack(chans).to(dtype), plan).to(torch.float64)
    s2 = torch.complex(vals[0], vals[1])
    s1 = vals[2] if with_s1 else torch.zeros(points.shape[0], dtype=torch.float64,
                                             device=dev)
    return s1, s2


__all__ = ["EwaldPlan", "cell_pairs", "ewald_field", "make_plan"]
