"""An informational limit-load cross-check of a FieldResults against the DD's flow stress.

A thick cylinder (inner radius R_i, outer R_e) of a perfectly plastic von Mises material
under internal pressure carries at most p_lim = (2/√3) σ_y ln(R_e/R_i) (the FEM summary's
``reference.q_lim_over_sigma0`` times σ_y). :func:`limit_load_cross_check` sets
σ_y = √3 τ_flow with τ_flow the DD's flow stress at the DD shear rate γ̇ = 2 ε̇_θθ of the
FEM's applied hoop strain rate at the bore (the same von Mises rate in plane strain with
incompressible flow), scaled from the DD study's nearest rate by (rate ratio)^m, m the
study's rate sensitivity, and compares the FEM's final load with p_lim. It is not graded:
a rate-dependent, hardening surrogate has no limit load of its own (the FEM's graded
``limit_load`` check is n/a there), and the FEM's final load may sit in the surrogate's
post-yield transient, below the DD's steady flow.

:func:`load_displacement_curve` reads a FieldResults' ``load_displacement.csv`` (load
factor, displacement, load per step); :func:`final_displacement_mm` is its last
displacement. ``scalebridge fem run --surrogate`` prints the check, and the run report
(:mod:`scalebridge.workflows.report`) puts it under the FEM's numbers. Example::

    chk = limit_load_cross_check(fem.summary, dd.summary, final_displacement_mm(fem.path))
    chk["p_lim_mpa"], chk["rel_diff"], chk["text"]
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scalebridge.artifacts import finite_or_none as _num


def _num_pair(v: Any) -> tuple[float, float] | None:
    """``[lo, hi]`` of finite numbers, or None."""
    if isinstance(v, (list, tuple)) and len(v) == 2:
        lo, hi = _num(v[0]), _num(v[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def load_displacement_curve(fem_dir: str | Path) -> np.ndarray:
    """(steps, 3): load factor, displacement, load of each converged step of a
    FieldResults' ``load_displacement.csv`` (its columns 1-3 after the step number:
    :func:`scalebridge.continuum.output.load_columns`); (0,) with no step. Raises OSError
    without the file and ValueError or IndexError on a malformed row."""
    with open(Path(fem_dir) / "load_displacement.csv", newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    return np.array([[float(r[1]), float(r[2]), float(r[3])] for r in rows[1:]])


def final_displacement_mm(fem_dir: str | Path) -> float | None:
    """The driven displacement at the last step of a FieldResults' ``load_displacement.csv``
    (its third column, mm), or None without a readable one."""
    try:
        curve = load_displacement_curve(fem_dir)
        return float(curve[-1, 1]) if len(curve) else None
    except (OSError, ValueError, IndexError):
        return None


def limit_load_cross_check(fem: Mapping[str, Any], dd: Mapping[str, Any],
                           displacement_mm: float | None = None) -> dict[str, Any] | None:
    """An informational cross-check (not graded) of a rate-dependent FEM against the
    perfectly plastic limit load its problem has: p_lim = (2/√3) σ_y ln(Re/Ri) (the FEM
    summary's ``reference.q_lim_over_sigma0`` times σ_y), with σ_y = √3 τ_flow, τ_flow the
    DD's flow stress (von Mises of its shear) at the FEM's strain rate.

    The rate: the FEM records no plastic strain rate, so the applied one, the hoop strain
    rate at the bore ε̇_θθ = u(R_i)/(R_i t) over the ramp (``displacement_mm``, the driven
    displacement at the end, over ``reference.r_inner_mm`` and ``final_time_s``), as the
    DD's shear strain rate of the same von Mises rate: at the bore in plane strain with
    incompressible flow ε̄̇ = (2/√3) ε̇_θθ, and the DD's shear gives ε̄̇ = γ̇/√3, so
    γ̇ = 2 ε̇_θθ; without a physical time (``loading_time`` None) or R_i, the DD's
    reference condition. The flow stress: the DD study's condition nearest
    that rate (in ln rate) at the temperature nearest the FEM's (else the DD's reference
    temperature), scaled by (rate/its rate)^m with m the study's least-squares
    ∂lnτ/∂lnε̇ at that temperature (two or more rates; else that condition's own).

    Returns ``p_lim_mpa``, ``final_load_mpa``, ``rel_diff`` ((FEM − p_lim)/p_lim),
    ``tau_flow_mpa``, ``sigma_y_mpa``, ``fem_rate_s`` (None: the DD's reference), ``dd_rate_s``,
    ``dd_temperature_k``, ``dd_flow_stress_mpa``, ``rate_sensitivity`` and ``text``; None
    where the problem has no analytic limit or the DD no flow stress."""
    ref = fem.get("reference") or {}
    q, final = _num(ref.get("q_lim_over_sigma0")), _num(fem.get("final_load_mpa"))
    if q is None or final is None:
        return None
    conds = [c for c in ((dd.get("study") or {}).get("conditions") or [])
             if isinstance(c, Mapping)]
    rc = dd.get("reference_condition") or {}
    if not conds:
        conds = [{**rc, "flow_stress_mpa": dd.get("flow_stress_mpa")}]
    pts = [(r, _num(c.get("temperature_k")), f) for c in conds
           for r, f in [(_num(c.get("strain_rate_s")), _num(c.get("flow_stress_mpa")))]
           if r and r > 0 and f and f > 0]
    if not pts:
        return None
    ri, t = _num(ref.get("r_inner_mm")), _num(fem.get("final_time_s"))
    # loading_time names where a physical time came from (None: 1 s per step); a summary
    # from before it has no duration_s either
    timed = (fem["loading_time"] is not None if "loading_time" in fem
             else fem.get("duration_s") is not None)
    hoop = (abs(displacement_mm) / (ri * t) if displacement_mm and ri and t and t > 0
            and timed else None)
    rate = 2.0 * hoop if hoop is not None else None     # γ̇ = 2 ε̇_θθ (docstring)
    temps = _num_pair(fem.get("temperature_k"))
    want_t = (sum(temps) / 2 if temps else _num(rc.get("temperature_k")))
    known = [tk for _, tk, _ in pts if tk is not None]
    at_t = (min(known, key=lambda tk: abs(tk - want_t)) if known and want_t is not None
            else known[0] if known else None)
    pts = [p for p in pts if at_t is None or p[1] == at_t]
    m = None
    if len({r for r, _, _ in pts}) >= 2:
        m = float(np.polyfit(np.log([r for r, _, _ in pts]),
                             np.log([f for _, _, f in pts]), 1)[0])
    target = rate if rate is not None else _num(rc.get("strain_rate_s"))
    near = (min(pts, key=lambda p: abs(math.log(p[0] / target))) if target
            else pts[0])
    r_n, _, tau_n = near
    scaled = rate is not None and m is not None and rate != r_n
    tau = tau_n * (rate / r_n) ** m if scaled else tau_n
    sigma_y = math.sqrt(3.0) * tau
    p_lim = q * sigma_y
    rel = (final - p_lim) / p_lim
    at = f", {at_t:g} K" if at_t is not None else ""
    rates = [r for r, _, _ in pts]
    if rate is not None:
        beyond = (f", outside the DD's {min(rates):.3g}-{max(rates):.3g} /s: extrapolated"
                  if scaled and not min(rates) <= rate <= max(rates) else "")
        head = (f"the DD's flow stress at {rate:.3g} /s" if scaled or rate == r_n else
                f"the DD's flow stress at its {r_n:.3g} /s (no rate sensitivity to scale "
                f"to {rate:.3g} /s)")
        how = (f"the rate is the DD shear rate of the same von Mises rate as the FEM's "
               f"applied hoop strain rate at the bore, u(R_i)/(R_i t) = {hoop:.3g} /s (it "
               "records no plastic strain rate): γ̇ = 2 ε̇_θθ (plane strain, incompressible "
               f"flow); τ_flow = the DD's {tau_n:.3g} MPa at {r_n:.3g} /s{at}"
               + (f" × ({rate:.3g}/{r_n:.3g})^{m:.2g} (the DD's rate sensitivity m) = "
                  f"{tau:.3g} MPa{beyond}" if scaled else ""))
    else:
        head = f"the DD's flow stress at its reference rate {r_n:.3g} /s"
        lacks = ("no physical time (1 s per step)" if not timed else
                 "no bore radius" if ri is None else "no final displacement"
                 if not displacement_mm else "no time")
        how = (f"the FEM records {lacks} to give its strain rate; τ_flow = the DD's "
               f"{tau_n:.3g} MPa at {r_n:.3g} /s{at}")
    text = (f"limit-load cross-check (informational, not graded): the perfectly plastic "
            f"limit (2/√3) σ_y ln(Re/Ri) = {q:.4g} σ_y with σ_y = √3 τ_flow, {head}: "
            f"{p_lim:.4g} MPa against the FEM's final load {final:.4g} MPa "
            f"({100 * rel:+.1f} %); {how}")
    return {"p_lim_mpa": p_lim, "final_load_mpa": final, "rel_diff": rel,
            "tau_flow_mpa": tau, "sigma_y_mpa": sigma_y, "fem_rate_s": rate,
            "dd_rate_s": r_n, "dd_temperature_k": at_t, "dd_flow_stress_mpa": tau_n,
            "rate_sensitivity": m, "text": text}
