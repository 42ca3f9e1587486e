"""Shared fixtures for dd_coupling tests: md-like input artifacts made with produce()."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scalebridge.artifacts import produce
from scalebridge.dd_coupling.engine import DDGeometry, DDParams, schmid_factor
from scalebridge.dd_coupling.mobility import LinearDragMobility, save_mobility

MU_GPA, NU, B_A = 125.0, 0.3, 2.73          # Mo-like isotropic constants
DRAG_PA_S = 5e-5


def make_properties(path: Path, mu_gpa: float = MU_GPA, nu: float = NU,
                    b_a: float = B_A, **extra: float):
    """A Properties artifact holding properties.json with the contract keys."""
    doc = {"a0_a": b_a * 2 / math.sqrt(3), "shear_modulus_gpa": mu_gpa,
           "poisson_ratio": nu, "burgers_a": b_a, **extra}

    def build(work: Path) -> dict:
        (work / "properties.json").write_text(json.dumps(doc))
        return {}

    return produce("Properties", path, doc, {}, build)


def make_drag_law(path: Path, b0: float = DRAG_PA_S, saturation: float | None = 3000.0):
    law = LinearDragMobility(burgers_m=B_A * 1e-10, b0_pa_s=b0, saturation_m_s=saturation)

    def build(work: Path) -> dict:
        save_mobility(law, work)
        return {}

    return produce("MobilityLaw", path, {"b0": b0, "c": saturation}, {}, build)


def sample_velocity_table(rng: np.random.Generator, b0: float, b1: float,
                          temps: tuple[float, ...] = (100.0, 300.0, 600.0),
                          c: float = 3000.0, noise: float = 0.03,
                          tau_mpa: np.ndarray | None = None) -> list[dict]:
    """Rows of velocity.csv sampled from the saturating drag law with relative noise."""
    rows = []
    taus = np.linspace(-300, 300, 13) if tau_mpa is None else tau_mpa
    for t in temps:
        for tau in taus:
            if tau == 0:
                continue
            vl = B_A * 1e-10 * tau * 1e6 / (b0 + b1 * t)
            v = vl / math.sqrt(1 + (vl / c) ** 2)
            err = noise * abs(v) + 1.0
            rows.append({"character": "edge", "temperature_k": t, "tau_mpa": tau,
                         "velocity_m_s": v + rng.normal(0, err), "velocity_err_m_s": err,
                         "n_atoms": 20000, "duration_ps": 100.0})
    return rows


def make_defect_stats(path: Path, rows: list[dict], header: list[str] | None = None):
    """A DefectStats artifact with velocity.csv holding ``rows``."""
    header = header or ["character", "temperature_k", "tau_mpa", "velocity_m_s",
                        "velocity_err_m_s", "n_atoms", "duration_ps"]

    def build(work: Path) -> dict:
        lines = [",".join(header)]
        lines += [",".join(str(r.get(h, "")) for h in header) for r in rows]
        (work / "velocity.csv").write_text("\n".join(lines) + "\n")
        return {"rows": len(rows)}

    return produce("DefectStats", path, {"n": len(rows), "first": rows[0] if rows else None},
                   {}, build)


def law_from_before(law_dir: Path, doc: dict, dest: Path) -> Path:
    """A copy of the neural law in ``law_dir`` whose ``mobility.json`` is ``doc`` (a
    reader's view of a file written before some key existed): ``dest`` with that json
    and the weights beside it."""
    dest.mkdir()
    (dest / "mobility.json").write_text(json.dumps(doc))
    (dest / "mobility.pt").write_bytes((law_dir / "mobility.pt").read_bytes())
    return dest


def simple_geometry(lx: float, ly: float, planes: list[tuple[float, float]],
                    obstacles: list[tuple[int, float, float]] = (),
                    sources: list[tuple[int, float, float]] = (),
                    component: str = "shear_xy") -> DDGeometry:
    """Geometry with hand-placed planes (angle_deg, offset_m), obstacles (plane, s, τ_Pa),
    sources (plane, s, τ_Pa). Angles must be commensurate with the cell."""
    from scalebridge.dd_coupling.engine import plane_period, sort_obstacles

    angles_deg = sorted({a for a, _ in planes})
    angles = torch.tensor([math.radians(a) for a in angles_deg], dtype=torch.float64)
    psys = torch.tensor([angles_deg.index(a) for a, _ in planes], dtype=torch.long)
    origin = torch.tensor([[-d * math.sin(math.radians(a)), d * math.cos(math.radians(a))]
                           for a, d in planes], dtype=torch.float64)
    length = torch.tensor([plane_period(math.radians(a), lx, ly)[0] for a, _ in planes],
                          dtype=torch.float64)
    mu, nu, b = MU_GPA * 1e9, NU, B_A * 1e-10
    src_tau = torch.tensor([t for _, _, t in sources], dtype=torch.float64)
    f64 = torch.float64
    return sort_obstacles(DDGeometry(
        lx=lx, ly=ly, angles=angles, schmid=schmid_factor(angles, component),
        plane_system=psys, plane_origin=origin, plane_length=length,
        src_plane=torch.tensor([p for p, _, _ in sources], dtype=torch.long),
        src_s=torch.tensor([s for _, s, _ in sources], dtype=f64), src_tau=src_tau,
        src_length=mu * b / (2 * math.pi * (1 - nu) * src_tau),
        obs_plane=torch.tensor([p for p, _, _ in obstacles], dtype=torch.long),
        obs_s=torch.tensor([s for _, s, _ in obstacles], dtype=f64),
        obs_tau=torch.tensor([t for _, _, t in obstacles], dtype=f64)))


def params(mobility, **kw) -> DDParams:
    base = {"mu_pa": MU_GPA * 1e9, "nu": NU, "b_m": B_A * 1e-10, "mobility": mobility,
            "loading": "stress", "rate": 0.0, "image_rows": 2}
    base.update(kw)
    return DDParams(**base)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
