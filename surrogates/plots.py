"""Fit plots of the Surrogate artifact: PNG with the CSV of the plotted numbers beside it."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scalebridge.plotting import save_figure
from scalebridge.surrogates import mandel

COMPONENTS = ("xx", "yy", "zz", "yz", "xz", "xy")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _panels(plt, p: int, title: str):
    """A figure of ``p`` panels of one path each, in rows of three beyond three (the
    extra axes hidden): ``(fig, axes)``, ``axes`` (nrow, ncol)."""
    nrow = 1 if p <= 3 else 2
    ncol = math.ceil(p / nrow)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.3 * nrow), squeeze=False)
    for ax in axes.flat[p:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize=9)
    return fig, axes


def _shear_axis(stress: np.ndarray) -> tuple[int, float]:
    """The Mandel component of largest amplitude in ``stress`` (T, 6) and the factor
    that turns it into the tensor component."""
    k = int(np.abs(stress).max(axis=0).argmax())
    return k, 1.0 / mandel.WEIGHT[k]


def strain_axis(strain: np.ndarray, k: int) -> tuple[np.ndarray, float, str]:
    """(x, factor, label) of a panel's strain axis for Mandel component ``k`` of
    ``strain`` (T, 6): a shear component as the engineering shear strain γ = 2 ε (the
    DD's strain: its stress_strain.png plots γ), a normal one as ε; in units of 10⁻³
    where it stays below 5 %, so the ticks read 0, 1, 2 ... rather than 0.0020 0.0025
    run together. ``x = strain[:, k] * factor``; the CSV keeps the tensor component."""
    comp = COMPONENTS[k]
    w = 1.0 / mandel.WEIGHT[k]            # Mandel -> tensor component
    shear = k >= 3
    factor = w * (2.0 if shear else 1.0)
    x = strain[:, k] * factor
    milli = bool(np.abs(x).max() < 0.05)
    name = f"shear strain γ_{comp} = 2ε_{comp}" if shear else f"strain ε_{comp}"
    if milli:
        return x * 1e3, factor * 1e3, f"{name} (10⁻³)"
    return x, factor, name


def path_label(name: str) -> str:
    """A short panel title for a path's name: ``realisation 2`` for a DD run's
    ``.../realisations/2/stress_strain.csv``, else the name's last 28 characters."""
    parts = Path(str(name)).parts
    if len(parts) >= 3 and parts[-1].endswith(".csv") and parts[-2].isdigit():
        return f"{parts[-3].removesuffix('s')} {parts[-2]}"
    text = str(name)
    return text if len(text) <= 28 else "…" + text[-27:]


def fit_paths_title(name: str, metrics_val: dict, scatter: float | None = None,
                    pooled: float | None = None) -> str:
    """The fit plot's title: the RMS error first, as the verdict grades it (over the DD
    realisation scatter, and pooled over every microstructure held out in turn where the
    fit was cross-validated), the largest error after it."""
    rmse, mx = metrics_val.get("rmse_mpa"), metrics_val.get("max_error_over_yield")
    head = f"{name} on the held-out paths"
    if rmse is not None:
        head += f": RMS error {rmse:.3g} MPa"
        if scatter:
            head += f" = {rmse / scatter:.2f}x the DD realisation scatter {scatter:.3g} MPa"
        if pooled is not None:
            head += f" (graded: {pooled:.2f}x, pooled over each microstructure held out)"
    return head + ("" if mx is None else f"\nlargest error: max √(3/2)‖Δσ‖/σ_ref = {mx:.3g}")


def plot_paths(png: Path, strain: np.ndarray, stress_data: np.ndarray,
               stress_model: np.ndarray, names: Sequence[str], title: str,
               conditions: Sequence[str] | None = None) -> None:
    """Stress-strain loops of up to 6 paths (P, T+1, 6): the tensor component with the
    largest stress amplitude, data (line) vs model (dashed); plus the von Mises stress.
    ``conditions``: (P,) what each path was loaded at, added to its panel's title.

    Six, in rows of three beyond three: a DD study holds out one realisation of each of
    its (typically six) conditions, and the fastest rates, last, are where a surrogate
    misses most."""
    plt = _pyplot()
    p = min(6, strain.shape[0])
    fig, axes = _panels(plt, p, title)
    rows = []
    for i in range(p):
        c, w = _shear_axis(stress_data[i])
        ax = axes.flat[i]
        x, _, xlabel = strain_axis(strain[i], c)
        ax.plot(x, stress_data[i, :, c] * w, "-", lw=1.5, label="data")
        ax.plot(x, stress_model[i, :, c] * w, "--", lw=1.2, label="model")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"σ_{COMPONENTS[c]} (MPa)")
        ax.set_title(path_label(names[i]) + (f": {conditions[i]}" if conditions else ""),
                     fontsize=8)
        vm_d, vm_m = mandel.von_mises(stress_data[i]), mandel.von_mises(stress_model[i])
        for t in range(strain.shape[1]):
            rows.append([names[i], t, COMPONENTS[c], strain[i, t, c] * w, x[t],
                         stress_data[i, t, c] * w, stress_model[i, t, c] * w, vm_d[t], vm_m[t]])
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)
    # strain: the tensor component; axis_strain: as plotted (γ = 2ε for a shear one, in
    # 10⁻³ where the axis says so)
    _write_csv(png.with_suffix(".csv"), ["path", "step", "component", "strain",
                                         "axis_strain", "stress_data_mpa", "stress_model_mpa",
                                         "von_mises_data_mpa", "von_mises_model_mpa"], rows)


def plot_hardening(png: Path, ep: np.ndarray, sy: np.ndarray, ep_grid: np.ndarray,
                   sy_grid: np.ndarray) -> None:
    """Flow stress samples (ε̄_p, σ_eq) from the data and the learned σ_y(ε̄_p)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    ax.plot(ep, sy, ".", ms=2, alpha=0.5, label="data (plastic steps)")
    ax.plot(ep_grid, sy_grid, "-", lw=1.5, label="learned σ_y")
    ax.set_xlabel("equivalent plastic strain ε̄_p")
    ax.set_ylabel("yield stress (MPa)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)
    _write_csv(png.with_suffix(".csv"), ["kind", "eps_p_eq", "sigma_y_mpa"],
               [["data", a, b] for a, b in zip(ep, sy, strict=True)]
               + [["model", a, b] for a, b in zip(ep_grid, sy_grid, strict=True)])


def plot_history(png: Path, history: list[dict[str, float]]) -> None:
    """Training and validation loss against iteration; a fit of a few independent starts
    (rows with ``evaluations``: source_families' restarts) as points, one per start, not
    a line that reads as a training curve."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    starts = bool(history) and all("evaluations" in h for h in history)
    for phase, ls in (("fit", "-"), ("rollout", "--")):
        hs = [h for h in history if h.get("phase", "fit") == phase]
        if hs:
            it = [h["iteration"] for h in hs]
            style = "o" if starts else ls
            ax.semilogy(it, [h["train_loss"] for h in hs], "C0" + style,
                        label=f"train ({phase})")
            ax.semilogy(it, [h["val_loss"] for h in hs], "C1" + style,
                        label=f"validation ({phase})")
    if starts:
        ax.set_xticks([h["iteration"] for h in history])
    ax.set_xlabel("start" if starts else "iteration")
    ax.set_ylabel("loss (scaled MSE)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)
    _write_csv(png.with_suffix(".csv"), ["iteration", "train_loss", "val_loss", "phase"],
               [[h["iteration"], h["train_loss"], h["val_loss"], h.get("phase", "fit")]
                for h in history])


def plot_mobile_density(png: Path, ep: np.ndarray, sigma_b: np.ndarray, eta: np.ndarray,
                        rho_m: np.ndarray | None) -> None:
    """Johnston–Gilman law over ε̄_p (n,): static yield σ_b (MPa) and the viscosity η
    (MPa·s) or, where the drag is known, the mobile density ρ_m (m⁻²), log scale. The
    numbers are the ``hardening.csv`` beside it (written by the caller)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.0, 3.4))
    a.plot(ep, sigma_b, "-", lw=1.5)
    a.set_xlabel("equivalent plastic strain ε̄_p")
    a.set_ylabel("static yield σ_b (MPa)")
    if rho_m is not None:
        b.semilogy(ep, rho_m, "-", lw=1.5, color="C1")
        b.set_ylabel("mobile density ρ_m (m⁻²)")
    else:
        b.semilogy(ep, eta, "-", lw=1.5, color="C1")
        b.set_ylabel("viscosity η (MPa·s)")
    b.set_xlabel("equivalent plastic strain ε̄_p")
    for ax in (a, b):
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)


def plot_mobile_history(png: Path, strain: np.ndarray, ep: np.ndarray, value: np.ndarray,
                        rates: np.ndarray, ylabel: str) -> None:
    """Source-families fit along paths (P, T+1): the mobile density (or fluidity) and
    ε̄_p over the equivalent total strain, one line per path coloured by its rate (log
    scale for the density). The numbers are the CSV beside it (written by the caller)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8.4, 3.4))
    levels = sorted(set(np.round(rates, 6).tolist()))
    for i in range(strain.shape[0]):
        k = levels.index(round(float(rates[i]), 6))
        lab = f"{rates[i]:.2g} /s" if i == int(np.flatnonzero(np.round(rates, 6)
                                                              == levels[k])[0]) else None
        a.semilogy(strain[i], np.maximum(value[i], 1e-300), lw=0.8, color=f"C{k}",
                   label=lab)
        b.plot(strain[i], ep[i], lw=0.8, color=f"C{k}")
    a.set_ylabel(ylabel)
    b.set_ylabel("equivalent plastic strain ε̄_p")
    if np.any(value > 0):   # zeros (before the first firing) stay off the log axis
        hi = float(np.max(value))
        a.set_ylim(max(hi * 1e-4, float(np.min(value[value > 0]))), hi * 3.0)
    a.legend(fontsize=8)
    for ax in (a, b):
        ax.set_xlabel("equivalent strain ε̄")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)


def plot_condition_means(png: Path, rows_in: Sequence[dict], title: str) -> None:
    """The DD's mean path of each condition with its realisation spread (± one sample
    standard deviation, shaded) against the model's answer on that history (dashed), in
    the stress component with the largest amplitude: where a surrogate misses the mean
    rather than one realisation. ``rows_in``: :func:`~.ensemble.condition_bias`."""
    if not rows_in:
        return
    plt = _pyplot()
    fig, axes = _panels(plt, len(rows_in), title)
    rows = []
    for i, c in enumerate(rows_in):
        mean, model, spread, strain = c["mean"], c["model"], c["spread"], c["strain"]
        k, w = _shear_axis(mean)
        eps = strain[:, k] * w
        x, _, xlabel = strain_axis(strain, k)
        ax = axes.flat[i]
        ax.fill_between(x, (mean[:, k] - spread[:, k]) * w, (mean[:, k] + spread[:, k]) * w,
                        alpha=0.3, lw=0, label="DD ± 1 sd")
        ax.plot(x, mean[:, k] * w, "-", lw=1.5, label=f"DD mean of {c['paths']}")
        ax.plot(x, model[:, k] * w, "--", lw=1.2, label="model")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"σ_{COMPONENTS[k]} (MPa)")
        ax.set_title(f"{c['strain_rate_s']:.2g} /s, {c['temperature_k']:g} K: bias "
                     f"{c['bias_ratio']:.2f}x (noise {c['mean_noise_ratio']:.2f}x)",
                     fontsize=8)
        vm_d, vm_m = mandel.von_mises(mean), mandel.von_mises(model)
        for t in range(x.size):
            rows.append([c["strain_rate_s"], c["temperature_k"], t, COMPONENTS[k], eps[t],
                         x[t], mean[t, k] * w, spread[t, k] * w, model[t, k] * w, vm_d[t],
                         vm_m[t]])
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    plt.close(fig)
    _write_csv(png.with_suffix(".csv"),
               ["strain_rate_s", "temperature_k", "step", "component", "strain",
                "axis_strain", "stress_mean_mpa", "stress_sd_mpa", "stress_model_mpa",
                "von_mises_mean_mpa", "von_mises_model_mpa"], rows)
