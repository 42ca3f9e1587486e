"""Chain artifacts made in seconds for the verdict, band and coupling tests.

``synthetic_ddrun`` writes a DDRun in the contract format (docs/CONTRACTS.md) from J2
with Kocks-Mecking hardening in simple shear: realisation i has its initial strength
scaled by 1 + scatter·z_i (z from -1 to 1), and every stress by ``scale`` (the plastic
strain kept, the total strain γ = γ_p + τ/μ recomputed), so a test can scale the
hardening a surrogate learns from. ``mobility_law`` is a MobilityLaw artifact with a
fitted edge drag and its error; ``dd_summary`` the DDRun headline numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scalebridge.artifacts import produce
from scalebridge.surrogates import mandel
from scalebridge.surrogates.j2 import DislocationDensityHardening, J2Plasticity
from scalebridge.surrogates.protocol import integrate_path

MU, NU, B_A = 48e3, 0.34, 2.56      # MPa, -, Å
RATE = 1e4                          # 1/s


def synthetic_ddrun(path: Path, n: int = 3, scale: float = 1.0, scatter: float = 0.08,
                    sigma0: float = 20.0, points: int = 50, summary: dict | None = None,
                    study_scatter: tuple[float, ...] = ()):
    """A DDRun artifact (see the module docstring). ``study_scatter``: more conditions
    (strain rates 2, 3, ... x RATE), n realisations each with that scatter; the summary
    stays the first (reference) condition's."""
    gamma = np.linspace(0, 4e-3, points)
    z = np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)
    scatters = (scatter, *study_scatter)

    def build(work: Path) -> dict:
        flows, per = [], []
        for i in range(n * len(scatters)):
            c, k = divmod(i, n)
            per.append({"strain_rate_s": RATE * (c + 1), "temperature_k": 300.0, "seed": k})
            law = DislocationDensityHardening(sigma0=sigma0 * (1 + scatters[c] * z[k]), mu=MU,
                                              burgers=B_A * 1e-10)
            model = J2Plasticity(2 * MU * (1 + NU), NU, law)
            s, st, _ = integrate_path(model, mandel.shear_strain(gamma)[None])
            tau = scale * s[0, :, 5] / np.sqrt(2)
            gp = 2 * st[0, :, 5] / np.sqrt(2)
            g = gp + tau / MU
            if c == 0:
                flows.append(float(np.mean(tau[-points // 4:])))
            d = work / "realisations" / str(i)
            d.mkdir(parents=True)
            rows = ["time_s,strain,stress_mpa,plastic_strain,density_m2,n_dislocations"]
            rows += [f"{gi / per[i]['strain_rate_s']},{gi},{t},{p},{r},30" for gi, t, p, r
                     in zip(g, tau, gp, st[0, :, 7], strict=True)]
            (d / "stress_strain.csv").write_text("\n".join(rows) + "\n")
        (work / "run.json").write_text(json.dumps({
            "loading": {"mode": "strain", "component": "shear_xy", "resolved": "shear",
                        "strain_rate_s": RATE},
            "temperature_k": 300.0, "shear_modulus_gpa": MU / 1e3, "poisson_ratio": NU,
            "burgers_a": B_A, **({"realisations": per} if study_scatter else {})}))
        out = {"flow_stress_mpa": float(np.mean(flows)),
               "flow_stress_std_mpa": float(np.std(flows, ddof=1)) if n > 1 else 0.0,
               "density_end_m2": 1e13, "taylor_alpha": 0.4, "final_dislocations": [30] * n,
               "out_of_range_fraction": 0.0, "truncated": False,
               "mobility_check": {"passed": True, "failed": None, "overridden": False}}
        out.update(summary or {})
        return out

    return produce("DDRun", path, {"n": n, "scale": scale, "scatter": scatter,
                                   "sigma0": sigma0, "summary": summary,
                                   "study_scatter": list(study_scatter)}, {}, build)


def mobility_law(path: Path, b0: float = 5e-5, err: float = 1e-5, r2: float = 0.99):
    """A MobilityLaw artifact carrying only the summary the band and verdicts read."""
    def build(work: Path) -> dict:
        return {"law": "LinearDragMobility", "n_rows": 6, "tau_max_mpa": 500.0,
                "drag_edge_b0_pa_s": b0, "drag_edge_b0_err_pa_s": err, "drag_r2": r2}

    return produce("MobilityLaw", path, {"b0": b0, "err": err, "r2": r2}, {}, build)
