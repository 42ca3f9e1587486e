"""Saving matplotlib figures the way every stage should: readable ticks, data beside.

:func:`save_figure` is the one place a stage writes a PNG. Before saving it draws the
figure and checks that no two tick labels of an axis overlap or abut (their rendered
bounding boxes, padded to keep a quarter em between neighbours,
:func:`tick_label_overlaps`); where they do it fixes the axis (short scientific
labels for a linear axis, fewer ticks, then every other label) and checks again. The PNG
records where its numbers are: the CSV of the same stem beside it, or the file named by
``data=`` (stored in the PNG's ``Source`` text chunk, read back by :func:`plot_data_file`;
the report links it).

Example::

    fig, ax = plt.subplots()
    ax.plot(strain, stress)
    save_figure(fig, work / "stress_strain.png", dpi=120)      # stress_strain.csv beside
    save_figure(fig, work / "velocity_stress.png", data="velocity.csv")
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("scalebridge.plotting")

#: PNG text-chunk key naming the file that holds a plot's numbers.
SOURCE_KEY = "Source"
#: Pixels two labels may share before they count as overlapping (anti-aliasing slack).
OVERLAP_SLACK_PX = 0.5
#: The gap two neighbouring labels must keep, in units of their font size: labels that
#: abut ("0.00000.0002") do not overlap but cannot be read; a quarter em is about a space.
MIN_GAP_EM = 0.25


@dataclass
class FigureCheck:
    """What :func:`save_figure` found and did for one PNG."""

    path: Path
    overlaps_before: list[str] = field(default_factory=list)
    overlaps_after: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    data: str | None = None


#: Every figure saved in this process (tests read it; bounded).
CHECKED: list[FigureCheck] = []
_MAX_CHECKED = 500


#: Unit suffixes of column names, as an axis label shows them.
_UNITS = {"mpa": "MPa", "gpa": "GPa", "pa": "Pa", "mm": "mm", "um": "µm", "m": "m",
          "n": "N", "s": "s", "ns": "ns", "ps": "ps", "k": "K", "ev": "eV", "a": "Å",
          "m_s": "m/s", "m2": "m⁻²", "pa_s": "Pa·s"}


def axis_label(column: str) -> str:
    """A CSV column name as an axis label: ``pressure_mpa`` -> ``pressure (MPa)``,
    ``inner_displacement_mm`` -> ``inner displacement (mm)``; a name without a known
    unit suffix only loses its underscores."""
    words = column.split("_")
    for k in (2, 1):
        unit = "_".join(words[-k:]).lower()
        if len(words) > k and unit in _UNITS:
            return f"{' '.join(words[:-k])} ({_UNITS[unit]})"
    return " ".join(words)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _visible_labels(axis: Any, renderer: Any) -> list[tuple[str, Any]]:
    """(text, window bbox) of the major tick labels an axis draws (inside its view)."""
    lo, hi = sorted(axis.get_view_interval())
    span = hi - lo
    out = []
    locs = axis.get_majorticklocs()
    labels = axis.get_majorticklabels()
    for loc, lab in zip(locs, labels, strict=False):
        if not (lo - 1e-9 * abs(span) <= loc <= hi + 1e-9 * abs(span)):
            continue
        if not lab.get_visible() or not lab.get_text().strip():
            continue
        # padded by half the gap each, so that labels closer than the gap overlap
        pad = 0.5 * MIN_GAP_EM * lab.get_fontsize() * renderer.points_to_pixels(1.0)
        out.append((lab.get_text(), lab.get_window_extent(renderer).padded(pad)))
    return out


def _overlapping(boxes: list[tuple[str, Any]]) -> list[tuple[str, str]]:
    pairs = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i][1], boxes[j][1]
            w = min(a.x1, b.x1) - max(a.x0, b.x0)
            h = min(a.y1, b.y1) - max(a.y0, b.y0)
            if w > OVERLAP_SLACK_PX and h > OVERLAP_SLACK_PX:
                pairs.append((boxes[i][0], boxes[j][0]))
    return pairs


def _axes_name(fig: Any, ax: Any) -> str:
    i = fig.axes.index(ax)
    return f"axes {i}" + (f" ({ax.get_title()[:30]})" if ax.get_title() else "")


def tick_label_overlaps(fig: Any) -> list[str]:
    """One line per axis of ``fig`` whose drawn tick labels overlap (draws the figure).

    Each line names the axes, the axis (x/y) and the first overlapping pair."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            pairs = _overlapping(_visible_labels(axis, renderer))
            if pairs:
                out.append(f"{_axes_name(fig, ax)} {name}: {pairs[0][0]!r} overlaps "
                           f"{pairs[0][1]!r}" + (f" (+{len(pairs) - 1})" if len(pairs) > 1
                                                 else ""))
    return out


def _axis_overlaps(fig: Any, axis: Any) -> bool:
    fig.canvas.draw()
    return bool(_overlapping(_visible_labels(axis, fig.canvas.get_renderer())))


def _fix_axis(fig: Any, ax: Any, name: str) -> list[str]:
    """Make the tick labels of ``ax``'s ``name`` axis stop overlapping; what was done:
    short scientific labels (linear axes), then fewer ticks, then every other label."""
    from matplotlib.ticker import LogLocator, MaxNLocator, ScalarFormatter

    axis = ax.xaxis if name == "x" else ax.yaxis
    done = []
    scale = axis.get_scale()
    if scale == "linear" and isinstance(axis.get_major_formatter(), ScalarFormatter):
        ax.ticklabel_format(axis=name, style="sci", scilimits=(-2, 3), useMathText=True)
        done.append(f"{name}: scientific labels")
        if not _axis_overlaps(fig, axis):
            return done
    if scale in ("linear", "log"):
        n = max(len(axis.get_majorticklocs()) - 1, 2)
        while n >= 2:
            axis.set_major_locator(MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10])
                                   if scale == "linear" else LogLocator(numticks=n))
            if not _axis_overlaps(fig, axis):
                done.append(f"{name}: at most {n} ticks")
                return done
            n -= 1
    for _ in range(4):  # last resort: show every other label
        shown = [lab for lab in axis.get_majorticklabels()
                 if lab.get_visible() and lab.get_text().strip()]
        for lab in shown[1::2]:
            lab.set_visible(False)
        done.append(f"{name}: every other label")
        if not _axis_overlaps(fig, axis):
            break
    return done


def fix_tick_overlaps(fig: Any) -> tuple[list[str], list[str], list[str]]:
    """(overlaps before, what was changed, overlaps left) for every axis of ``fig``."""
    before = tick_label_overlaps(fig)
    if not before:
        return before, [], []
    fixes: list[str] = []
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if _overlapping(_visible_labels(axis, renderer)):
                fixes += [f"{_axes_name(fig, ax)} {f}" for f in _fix_axis(fig, ax, name)]
                renderer = fig.canvas.get_renderer()
    return before, fixes, tick_label_overlaps(fig)


def save_figure(fig: Any, path: str | os.PathLike[str], *, data: str | None = None,
                dpi: float | None = None, close: bool = True, **savefig_kw: Any) -> Path:
    """Check and fix tick-label overlaps, then save ``fig`` to ``path`` (PNG).

    Args:
        data: the file, relative to the PNG's folder, holding the plotted numbers, where
            it is not ``<stem>.csv`` (stored in the PNG's ``Source`` text chunk).
        close: close the figure after saving.

    Overlaps that cannot be fixed are logged as a warning (and recorded in
    :data:`CHECKED`); they never fail a run.
    """
    path = Path(path)
    before, fixes, after = fix_tick_overlaps(fig)
    if after:
        log.warning("%s: tick labels still overlap: %s", path.name, "; ".join(after))
    meta = dict(savefig_kw.pop("metadata", None) or {})
    if data is not None and path.suffix.lower() == ".png":
        meta[SOURCE_KEY] = str(data)
    kw: dict[str, Any] = {"metadata": meta} if meta else {}
    if dpi is not None:
        kw["dpi"] = dpi
    fig.savefig(path, **kw, **savefig_kw)
    if close:
        pyplot().close(fig)
    if len(CHECKED) >= _MAX_CHECKED:
        del CHECKED[: _MAX_CHECKED // 2]
    CHECKED.append(FigureCheck(path, before, after, fixes, data))
    return path


def png_source(png: str | os.PathLike[str]) -> str | None:
    """The ``Source`` text chunk of a PNG written by :func:`save_figure`, or None."""
    try:
        from PIL import Image

        with Image.open(png) as im:
            return (getattr(im, "text", None) or im.info).get(SOURCE_KEY)
    except Exception:  # not a PNG, unreadable: no documented source
        return None


def plot_data_file(png: str | os.PathLike[str]) -> Path | None:
    """The file holding a plot's numbers: ``<stem>.csv`` beside it, else the file its
    ``Source`` chunk names (when it exists), else None."""
    png = Path(png)
    csv = png.with_suffix(".csv")
    if csv.is_file():
        return csv
    src = png_source(png)
    if src:
        p = (png.parent / src).resolve()
        if p.is_file():
            return p
    return None


__all__ = ["CHECKED", "FigureCheck", "fix_tick_overlaps", "plot_data_file", "png_source",
           "pyplot", "save_figure", "tick_label_overlaps"]
