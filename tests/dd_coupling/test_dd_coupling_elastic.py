"""Edge-dislocation stress fields: Hirth & Lothe, periodic images, periodicity."""

from __future__ import annotations

import math

import pytest
import torch
from scalebridge.dd_coupling.elastic import (
    from_s1_s2,
    hirth_lothe_edge,
    infinite_field,
    periodic_field,
    resolved_shear,
)

MU, NU, B = 125e9, 0.3, 2.73e-10


def rotated_hl(points: torch.Tensor, theta: float):
    """Hirth & Lothe field of a dislocation with b at angle theta, rotated to x-y."""
    c, s = math.cos(theta), math.sin(theta)
    xl = points[:, 0] * c + points[:, 1] * s
    yl = -points[:, 0] * s + points[:, 1] * c
    a, bb, d = hirth_lothe_edge(xl, yl, MU, NU, B)
    return (c * c * a - 2 * c * s * d + s * s * bb, s * s * a + 2 * c * s * d + c * c * bb,
            c * s * (a - bb) + (c * c - s * s) * d)


@pytest.mark.parametrize("theta", [0.0, 0.7, math.pi / 3, 2 * math.pi / 3])
def test_single_edge_field_matches_hirth_lothe(theta):
    g = torch.Generator().manual_seed(1)
    pts = (torch.rand(200, 2, generator=g, dtype=torch.float64) - 0.5) * 2e-8
    b = torch.tensor([B * complex(math.cos(theta), math.sin(theta))], dtype=torch.complex128)
    s1, s2 = infinite_field(pts, torch.zeros(1, 2, dtype=torch.float64), b, MU, NU)
    for got, want in zip(from_s1_s2(s1, s2), rotated_hl(pts, theta), strict=True):
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-10 * float(want.abs().max()))


def test_hirth_lothe_textbook_values():
    """Spot values: σxy = D/x on the glide plane, σxx = -D/y above the line."""
    d = MU * B / (2 * math.pi * (1 - NU))
    x = torch.tensor([1e-8, 0.0], dtype=torch.float64)
    y = torch.tensor([0.0, 1e-8], dtype=torch.float64)
    sxx, syy, sxy = hirth_lothe_edge(x, y, MU, NU, B)
    assert float(sxy[0]) == pytest.approx(d / 1e-8)
    assert float(sxx[1]) == pytest.approx(-d / 1e-8)
    assert float(syy[1]) == pytest.approx(-d / 1e-8)


def test_resolved_shear_is_s_sigma_n():
    g = torch.Generator().manual_seed(2)
    sxx, syy, sxy = torch.randn(3, 10, generator=g, dtype=torch.float64)
    s2 = torch.complex(syy - sxx, 2 * sxy)
    th = torch.rand(10, generator=g, dtype=torch.float64) * math.pi
    sv = torch.stack([torch.cos(th), torch.sin(th)], 1)
    nv = torch.stack([-torch.sin(th), torch.cos(th)], 1)
    want = (sv[:, 0] * sxx * nv[:, 0] + sv[:, 0] * sxy * nv[:, 1] + sv[:, 1] * sxy * nv[:, 0]
            + sv[:, 1] * syy * nv[:, 1])
    assert torch.allclose(resolved_shear(s2, th), want)


def test_row_sum_matches_brute_force_images():
    """rows=0: the closed-form x-periodic row equals an explicit sum of 2·10^4 images."""
    lx, ly = 1e-7, 0.9e-7
    pos = torch.tensor([[0.3e-7, 0.4e-7]], dtype=torch.float64)
    b = torch.tensor([B * complex(math.cos(1.0), math.sin(1.0))], dtype=torch.complex128)
    g = torch.Generator().manual_seed(3)
    box = torch.tensor([lx, 0.4 * ly])
    pts = torch.rand(20, 2, generator=g, dtype=torch.float64) * box + torch.tensor([0, 0.2 * ly])
    s1, s2 = periodic_field(pts, pos, b, MU, NU, lx, ly, rows=0)
    c = MU / (lx * (1 - NU))
    mean = c * float(b.real[0] * (2 * pos[0, 1] / ly - 1))
    s1, s2 = s1 + mean, s2 - mean                      # undo the cell-mean removal
    n = 10000
    imgs = pos + torch.stack([torch.arange(-n, n + 1, dtype=torch.float64) * lx,
                              torch.zeros(2 * n + 1, dtype=torch.float64)], 1)
    s1b, s2b = infinite_field(pts, imgs, b.expand(2 * n + 1), MU, NU)
    assert float((s1 - s1b).abs().max() / s1b.abs().max()) < 2e-5
    assert float((s2 - s2b).abs().max() / s2b.abs().max()) < 2e-5


def _neutral_config(n=12, seed=4):
    g = torch.Generator().manual_seed(seed)
    lx, ly = 1e-6, 0.9e-6
    pos = torch.rand(n, 2, generator=g, dtype=torch.float64) * torch.tensor([lx, ly])
    th = torch.tensor([0.0, math.pi / 3, 2 * math.pi / 3], dtype=torch.float64)[
        torch.arange(n) % 3]
    sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    b = B * sign * torch.exp(1j * th)
    return lx, ly, pos, b


def test_periodic_field_is_periodic_and_translation_invariant():
    lx, ly, pos, b = _neutral_config()
    g = torch.Generator().manual_seed(5)
    pts = torch.rand(30, 2, generator=g, dtype=torch.float64) * torch.tensor([lx, ly])
    s1, s2 = periodic_field(pts, pos, b, MU, NU, lx, ly, rows=3)
    scale = float(s2.abs().max())
    # the same physical point seen one cell over (wrapped back) gives the same field:
    # translate everything by a shift that wraps dislocations across the boundary
    shift = torch.tensor([0.37 * lx, 0.61 * ly], dtype=torch.float64)
    box = torch.tensor([lx, ly], dtype=torch.float64)
    s1t, s2t = periodic_field(torch.remainder(pts + shift, box), torch.remainder(pos + shift, box),
                              b, MU, NU, lx, ly, rows=3)
    assert float((s1t - s1).abs().max()) < 1e-6 * scale
    assert float((s2t - s2).abs().max()) < 1e-6 * scale
    # continuity across the cell boundary (points just inside both edges)
    eps = 1e-16  # m: the two points of a pair are 2·eps apart
    edge = torch.tensor([[0.3 * lx, eps], [0.3 * lx, ly - eps], [eps, 0.4 * ly],
                         [lx - eps, 0.4 * ly]], dtype=torch.float64)
    e1, e2 = periodic_field(edge, pos, b, MU, NU, lx, ly, rows=3)
    assert abs(complex(e2[0] - e2[1])) < 1e-6 * scale
    assert abs(complex(e2[2] - e2[3])) < 1e-6 * scale
    assert abs(float(e1[0] - e1[1])) < 1e-6 * scale


def test_periodic_field_has_zero_cell_mean_and_converges_with_rows():
    lx, ly, pos, b = _neutral_config(n=6, seed=7)
    m = 120
    xs = (torch.arange(m, dtype=torch.float64) + 0.5) / m
    gx, gy = torch.meshgrid(xs * lx, xs * ly, indexing="ij")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    s1, s2 = periodic_field(grid, pos, b, MU, NU, lx, ly, rows=2)
    sxx, syy, sxy = from_s1_s2(s1, s2)
    typical = MU * B / (2 * math.pi * (1 - NU)) / (lx / 20)
    # the mean converges slowly (1/r singular cells), so a loose bound on a fine grid
    for comp in (sxx, syy, sxy):
        assert abs(float(comp.mean())) < 0.05 * typical
    pts = grid[::97]
    ref = periodic_field(pts, pos, b, MU, NU, lx, ly, rows=4)[1]
    err1 = float((periodic_field(pts, pos, b, MU, NU, lx, ly, rows=1)[1] - ref).abs().max())
    err2 = float((periodic_field(pts, pos, b, MU, NU, lx, ly, rows=2)[1] - ref).abs().max())
    scale = float(ref.abs().max())
    assert err2 < err1 and err1 < 1e-3 * scale and err2 < 1e-5 * scale
