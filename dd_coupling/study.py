"""The DD study: hardening, density and avalanche statistics over strain rates and
temperatures, in the form a surrogate learns from.

``[dd.run.study]`` (:class:`DDStudySettings`) turns a DDRun into a grid of loading
conditions ``strain_rates_s × temperatures_k``, each with ``realisations`` random
microstructures (the same seeds in every condition, so conditions differ by their loading
and not by their microstructure). :func:`write_study` writes, under ``study/`` of the
DDRun artifact, one CSV per table and a plot beside each::

    flow_stress.csv / .png   rate, T, realisations, flow stress mean and std (the
                             realisation scatter), final dislocation counts, density
                             (flow stress and density: means over the last quarter of
                             the strain, as the run's summary, :func:`tail_mean`)
    hardening.csv / .png     σ(ε_p) per condition: mean, std, n on a common ε_p grid
    density.csv / .png       ρ(ε) per condition: mean and std, with the mean ε_p
    avalanches.csv / .png    every strain burst (stress drop) of every realisation, and
                             the complementary distribution with the power-law fit
    avalanche_fit.csv        per condition: events, x_min, exponent α ± bootstrap error, KS

The exponent of ``p(x) ∝ x^-α`` above ``x_min`` is the maximum-likelihood estimate
(Clauset, Shalizi & Newman, SIAM Rev. 51, 661 (2009)); ``x_min`` minimises the
Kolmogorov-Smirnov distance between the tail and the fit (tails of at least
``avalanche_min_tail`` events), and the error is the standard deviation over bootstrap
resamples of the events, each refitted with its own ``x_min``.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator
from scalebridge.plotting import pyplot, save_figure
from scalebridge.settings import StrictModel


class DDStudySettings(StrictModel):
    """A grid of loading conditions, each run with every realisation."""

    strain_rates_s: list[float] = Field(
        min_length=1, description="applied strain rates, 1/s (strain control)")
    temperatures_k: list[float] = Field(
        min_length=1, description="temperatures, K (the mobility law's T input)")
    avalanche_min_tail: int = Field(
        50, ge=5, description="fewest events above x_min when choosing x_min")
    avalanche_bootstrap: int = Field(
        200, ge=0, description="bootstrap resamples for the exponent's error (0: the "
        "asymptotic (α-1)/√n instead)")

    @field_validator("strain_rates_s", "temperatures_k")
    @classmethod
    def _positive_distinct(cls, v: list[float]) -> list[float]:
        if any(x <= 0 or not math.isfinite(x) for x in v):
            raise ValueError("every value must be finite and > 0")
        if len(set(v)) != len(v):
            raise ValueError("values must be distinct")
        return sorted(v)

    def conditions(self) -> list[tuple[float, float]]:
        """(strain rate, temperature) of every condition, rates outer."""
        return [(r, t) for r in self.strain_rates_s for t in self.temperatures_k]


# ---------------------------------------------------------------------- power law
def power_law_mle(x: np.ndarray, xmin: float) -> tuple[float, int]:
    """Maximum-likelihood α of the continuous power law above ``xmin`` and the number of
    events it used; (nan, n) with fewer than 2 events or no spread."""
    tail = x[x >= xmin]
    s = float(np.sum(np.log(tail / xmin))) if len(tail) else 0.0
    if len(tail) < 2 or s <= 0:
        return math.nan, len(tail)
    return 1.0 + len(tail) / s, len(tail)


def _ks(tail: np.ndarray, xmin: float, alpha: float) -> float:
    """Kolmogorov-Smirnov distance between the sorted ``tail`` and the fitted law."""
    n = len(tail)
    model = 1.0 - (tail / xmin) ** (1.0 - alpha)
    emp_hi = np.arange(1, n + 1) / n
    emp_lo = np.arange(0, n) / n
    return float(max(np.max(np.abs(emp_hi - model)), np.max(np.abs(emp_lo - model))))


def select_xmin(x: np.ndarray, min_tail: int, candidates: int = 60
                ) -> tuple[float, float, float]:
    """``(xmin, α, KS distance)`` with the smallest KS distance over candidate ``xmin``
    (quantiles of ``x`` leaving at least ``min_tail`` events above)."""
    xs = np.sort(x[x > 0])
    n = len(xs)
    if n < 2:
        return math.nan, math.nan, math.nan
    last = max(n - min_tail, 0)
    idx = np.unique(np.linspace(0, last, min(candidates, last + 1)).round().astype(int))
    best = (math.inf, math.nan, math.nan)
    for i in idx:
        xmin = xs[i]
        tail = xs[i:]
        alpha, _ = power_law_mle(tail, xmin)
        if not math.isfinite(alpha):
            continue
        d = _ks(tail, xmin, alpha)
        if d < best[0]:
            best = (d, float(xmin), alpha)
    return best[1], best[2], best[0]


def fit_power_law(x: np.ndarray, min_tail: int = 50, bootstrap: int = 200, seed: int = 0
                  ) -> dict[str, Any]:
    """Power-law fit of event sizes ``x`` (Clauset et al. 2009).

    Returns:
        ``n`` events, ``xmin``, ``n_tail`` events at or above it, ``alpha`` (MLE),
        ``alpha_err`` (standard deviation over ``bootstrap`` resamples, each with its own
        ``xmin``; with ``bootstrap = 0`` the asymptotic ``(α-1)/√n_tail``), ``ks``; NaN
        where there are too few events.
    """
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x) & (x > 0)]
    out: dict[str, Any] = {"n": len(x), "xmin": math.nan, "n_tail": 0, "alpha": math.nan,
                           "alpha_err": math.nan, "ks": math.nan, "bootstrap": bootstrap}
    if len(x) < 5:
        return out
    min_tail = min(min_tail, len(x))
    xmin, alpha, ks = select_xmin(x, min_tail)
    if not math.isfinite(alpha):
        return out
    n_tail = int(np.sum(x >= xmin))
    out.update(xmin=xmin, alpha=alpha, ks=ks, n_tail=n_tail)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        boot = [select_xmin(rng.choice(x, len(x)), min_tail)[1] for _ in range(bootstrap)]
        boot = np.array([b for b in boot if math.isfinite(b)])
        out["alpha_err"] = float(np.std(boot, ddof=1)) if len(boot) > 1 else math.nan
    else:
        out["alpha_err"] = (alpha - 1.0) / math.sqrt(n_tail)
    return out


def weighted_mean(values: list[float], errors: list[float]) -> tuple[float, float]:
    """Inverse-variance weighted mean and its error (finite, positive errors only)."""
    pairs = [(v, e) for v, e in zip(values, errors, strict=True)
             if math.isfinite(v) and math.isfinite(e) and e > 0]
    if not pairs:
        return math.nan, math.nan
    w = np.array([1.0 / e ** 2 for _, e in pairs])
    v = np.array([p[0] for p in pairs])
    return float(np.sum(w * v) / np.sum(w)), float(1.0 / math.sqrt(np.sum(w)))


# ---------------------------------------------------------------------- curves
def stress_at_plastic_strain(trace: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Applied stress (MPa) at the step where a trace's plastic strain first reaches each
    ``grid`` value (its running maximum, so serrations do not fold the curve back; a
    burst's plastic strain is all at the stress ending it, not interpolated across the
    jump); NaN beyond the largest plastic strain reached. ``trace`` columns:
    STRESS_STRAIN_COLUMNS."""
    ep, sig = trace[:, 3], trace[:, 2]
    cm = np.maximum.accumulate(ep)
    idx = np.searchsorted(cm, grid, side="left")     # first step with ε_p >= g
    out = np.full(len(grid), np.nan)
    ok = idx < len(cm)
    out[ok] = sig[idx[ok]]
    return out


@dataclass
class Condition:
    """The realisations of one (strain rate, temperature) condition.

    Attributes:
        rate_s, temperature_k: the loading. tables: each realisation on the common strain
        grid, (points, 6). traces: each realisation per step, (steps, 6). events: each
        realisation's avalanches, (k, 4) (strain, stress drop MPa, ε_p jump, duration).
        final_n: dislocations at the end of each realisation. flow_mpa: each
        realisation's flow stress (mean over the last quarter of the strain).
    """

    rate_s: float
    temperature_k: float
    tables: list[np.ndarray] = field(default_factory=list)
    traces: list[np.ndarray] = field(default_factory=list)
    events: list[np.ndarray] = field(default_factory=list)
    final_n: list[int] = field(default_factory=list)
    flow_mpa: list[float] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{rate_label(self.rate_s)}/s, {self.temperature_k:g} K"

    def drops(self) -> np.ndarray:
        ev = [e[:, 1] for e in self.events if len(e)]
        return np.concatenate(ev) if ev else np.zeros(0)


def tail_mean(tab: np.ndarray, col: int, strain_mode: bool = True) -> float:
    """A headline number of a (rows, 6) table on the output grid (STRESS_STRAIN_COLUMNS):
    column ``col``'s mean over the last quarter of the strain (strain control) or of the
    rows (stress control)."""
    sel = tab[tab[:, 1] >= 0.75 * tab[-1, 1]] if strain_mode else tab[-max(
        1, len(tab) // 4):]
    return float(np.mean(sel[:, col]))


def rate_label(rate: float) -> str:
    """A strain rate as short text that keeps its digits: 1.5e+05, 3e+04."""
    return f"{rate:.3g}"


def _std(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Sample standard deviation over realisations (NaN ignored; 0 with one value)."""
    x = np.asarray(x, dtype=float)
    n = np.sum(np.isfinite(x), axis=axis)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = np.nanstd(x, axis=axis, ddof=1)
    return np.where(n > 1, s, 0.0)


def _write_csv(path: Path, header: tuple[str, ...], rows: Any) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.10g}" if isinstance(v, float | np.floating) else v for v in r])


def _temperature_panels(path: Path, conditions: list[Condition],
                        draw: Callable[[Any, int, str], None], xlabel: str, ylabel: str,
                        x_ticks: int | None = None, legend_fontsize: float = 7,
                        legend_on_first: bool = True) -> None:
    """One panel per temperature (shared y), each condition at that temperature drawn in
    it by ``draw(ax, index in conditions, colour)``, the colour that of its strain rate
    (``C<k>``, k its rank among the rates); saved to ``path`` (PNG, 120 dpi).

    Args:
        x_ticks: at most this many major x ticks (None: matplotlib's choice).
        legend_on_first: the legend on the first panel only (else on every panel that
            has labelled lines).
    """
    import matplotlib.ticker

    plt = pyplot()
    temps = sorted({c.temperature_k for c in conditions})
    rates = sorted({c.rate_s for c in conditions})
    fig, axes = plt.subplots(1, len(temps), figsize=(3.3 * len(temps) + 0.8, 3.4),
                             sharey=True, squeeze=False)
    for j, t in enumerate(temps):
        ax = axes[0, j]
        for i, c in enumerate(conditions):
            if c.temperature_k == t:
                draw(ax, i, f"C{rates.index(c.rate_s)}")
        ax.set_title(f"{t:g} K", fontsize=9)
        ax.set_xlabel(xlabel)
        if x_ticks is not None:
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(x_ticks))
        if j == 0:
            ax.set_ylabel(ylabel)
        if (j == 0) if legend_on_first else bool(ax.get_legend_handles_labels()[0]):
            ax.legend(fontsize=legend_fontsize)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


# ---------------------------------------------------------------------- the study files
def write_study(out: Path, conditions: list[Condition], settings: DDStudySettings,
                points: int, seed: int = 0) -> dict[str, Any]:
    """Write the study tables and plots into ``out`` (created); returns the summary
    (per-condition rows and the headline numbers)."""
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    temps = sorted({c.temperature_k for c in conditions})
    rates = sorted({c.rate_s for c in conditions})

    # flow stress with the realisation scatter, and avalanche fits, per condition
    rows, fits = [], []
    for c in conditions:
        flow = np.array(c.flow_mpa)
        fit = fit_power_law(c.drops(), settings.avalanche_min_tail,
                            settings.avalanche_bootstrap, seed)
        fits.append(fit)
        # over the last quarter of the strain, as the flow stress and the run's summary
        rho_end = np.array([tail_mean(t, 4) for t in c.tables])
        rows.append({
            "strain_rate_s": c.rate_s, "temperature_k": c.temperature_k,
            "realisations": len(flow), "flow_stress_mpa": float(np.mean(flow)),
            "flow_stress_std_mpa": float(_std(flow)),
            "density_end_m2": float(np.mean(rho_end)),
            "density_end_std_m2": float(_std(rho_end)),
            "final_dislocations_min": int(min(c.final_n)),
            "final_dislocations_mean": float(np.mean(c.final_n)),
            "avalanche_events": fit["n"], "avalanche_xmin_mpa": fit["xmin"],
            "avalanche_tail": fit["n_tail"], "avalanche_exponent": fit["alpha"],
            "avalanche_exponent_err": fit["alpha_err"], "avalanche_ks": fit["ks"]})
    keys = tuple(rows[0])
    _write_csv(out / "flow_stress.csv", keys, ([r[k] for k in keys] for r in rows))
    _write_csv(out / "avalanche_fit.csv",
               ("strain_rate_s", "temperature_k", "events", "xmin_mpa", "tail_events",
                "exponent", "exponent_err", "ks_distance", "bootstrap"),
               ((c.rate_s, c.temperature_k, f["n"], f["xmin"], f["n_tail"], f["alpha"],
                 f["alpha_err"], f["ks"], f["bootstrap"])
                for c, f in zip(conditions, fits, strict=True)))

    # log-log, so the slope is the rate sensitivity m = dln σ/dln ε̇ (in the legend)
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k, t in enumerate(temps):
        sel = [r for r in rows if r["temperature_k"] == t]
        x = [r["strain_rate_s"] for r in sel]
        y = [r["flow_stress_mpa"] for r in sel]
        label = f"{t:g} K"
        if len(set(x)) > 1 and min(y) > 0:
            label += f": m = {np.polyfit(np.log(x), np.log(y), 1)[0]:.2f}"
        ax.errorbar(x, y, yerr=[r["flow_stress_std_mpa"] for r in sel], fmt="o-", capsize=3,
                    color=f"C{k}", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(rates)
    ax.set_xticklabels([rate_label(r) for r in rates])
    lo, hi = ax.get_ylim()
    ticks = [v for v in MaxNLocator(5).tick_values(lo, hi) if lo <= v <= hi and v > 0]
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"{v:g}" for v in ticks])
    ax.minorticks_off()
    ax.set_xlabel("strain rate (1/s)")
    ax.set_ylabel("flow stress τ (MPa)")
    ax.set_title(f"mean ± std over {rows[0]['realisations']} realisations", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "flow_stress.png", dpi=120)
    plt.close(fig)

    # hardening σ(ε_p) and density ρ(ε): mean and std per condition
    hard_rows, dens_rows = [], []
    curves = []
    for c in conditions:
        # up to the largest plastic strain of any realisation: the ``realisations``
        # column says how many reached each point (the mean is over those)
        ep_end = max(float(np.max(t[:, 3])) for t in c.traces)
        grid = np.linspace(0.0, max(ep_end, 0.0), points)
        sig = np.array([stress_at_plastic_strain(t, grid) for t in c.traces])
        n_ok = np.sum(np.isfinite(sig), axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)     # all-NaN columns
            mean = np.nanmean(sig, axis=0)
        std = _std(sig)
        hard_rows.extend((c.rate_s, c.temperature_k, g, m, s, int(n))
                         for g, m, s, n in zip(grid, mean, std, n_ok, strict=True))
        tabs = np.array(c.tables)
        rho_m, rho_s = tabs[:, :, 4].mean(0), _std(tabs[:, :, 4])
        dens_rows.extend((c.rate_s, c.temperature_k, e, p, r, s) for e, p, r, s in zip(
            tabs[0, :, 1], tabs[:, :, 3].mean(0), rho_m, rho_s, strict=True))
        curves.append((grid, np.where(n_ok > 0, mean, np.nan), std, tabs[0, :, 1], rho_m,
                       rho_s))
    _write_csv(out / "hardening.csv", ("strain_rate_s", "temperature_k", "plastic_strain",
                                       "stress_mpa", "stress_std_mpa", "realisations"),
               hard_rows)
    _write_csv(out / "density.csv", ("strain_rate_s", "temperature_k", "strain",
                                     "plastic_strain", "density_m2", "density_std_m2"),
               dens_rows)
    for name, xl, yl, (ix, iy, isd), yscale in (
            ("hardening", "plastic strain", "applied stress (MPa)", (0, 1, 2), 1.0),
            ("density", "strain", "dislocation density (10$^{14}$ m$^{-2}$)", (3, 4, 5),
             1e-14)):
        def draw(ax: Any, i: int, colour: str, ix: int = ix, iy: int = iy, isd: int = isd,
                 yscale: float = yscale) -> None:
            c, cur = conditions[i], curves[i]
            x, y, sd = cur[ix], cur[iy] * yscale, cur[isd] * yscale
            ax.plot(x * 1e3, y, color=colour, lw=1.4, label=f"{rate_label(c.rate_s)}/s")
            ax.fill_between(x * 1e3, y - sd, y + sd, color=colour, alpha=0.2, lw=0)

        _temperature_panels(out / f"{name}.png", conditions, draw, f"{xl} (10$^{{-3}}$)", yl,
                            x_ticks=4)

    # avalanches: every event, and the distributions with their fits
    _write_csv(out / "avalanches.csv", ("strain_rate_s", "temperature_k", "realisation",
                                        "strain", "stress_drop_mpa", "plastic_strain_jump",
                                        "duration_s"),
               ((c.rate_s, c.temperature_k, i, *ev) for c in conditions
                for i, e in enumerate(c.events) for ev in e))
    def draw_drops(ax: Any, i: int, colour: str) -> None:
        c, f = conditions[i], fits[i]
        xs = np.sort(c.drops())[::-1]
        if not len(xs):
            return
        ccdf = np.arange(1, len(xs) + 1) / len(xs)
        lab = f"{rate_label(c.rate_s)}/s" + (
            f": α={f['alpha']:.2f}±{f['alpha_err']:.2f}" if math.isfinite(f["alpha"])
            else "")
        ax.loglog(xs, ccdf, ".", ms=2, color=colour, label=lab)
        if math.isfinite(f["alpha"]):
            xf = np.geomspace(f["xmin"], xs[0], 20)
            p_tail = f["n_tail"] / len(xs)
            ax.loglog(xf, p_tail * (xf / f["xmin"]) ** (1 - f["alpha"]), "-",
                      color=colour, lw=1)

    _temperature_panels(out / "avalanches.png", conditions, draw_drops, "stress drop (MPa)",
                        "P(drop ≥ x) ∝ x^(1−α)", legend_fontsize=6, legend_on_first=False)

    alpha, alpha_err = weighted_mean([f["alpha"] for f in fits],
                                     [f["alpha_err"] for f in fits])
    return {
        "conditions": [{k: r[k] for k in ("strain_rate_s", "temperature_k",
                                          "flow_stress_mpa", "flow_stress_std_mpa",
                                          "final_dislocations_min", "avalanche_events",
                                          "avalanche_exponent", "avalanche_exponent_err")}
                       for r in rows],
        "table": "study/flow_stress.csv",
        "strain_rates_s": rates, "temperatures_k": temps,
        "realisations": rows[0]["realisations"],
        "min_final_dislocations": min(r["final_dislocations_min"] for r in rows),
        "avalanche_events_min": min(r["avalanche_events"] for r in rows),
        "avalanche_exponent": alpha, "avalanche_exponent_err": alpha_err,
    }


__all__ = ["Condition", "DDStudySettings", "fit_power_law", "power_law_mle",
           "select_xmin", "stress_at_plastic_strain", "tail_mean", "weighted_mean",
           "write_study"]
