"""Readable output: tick labels never overlap (rendered and measured), every PNG names
the file with its numbers, and progress is a bar on a terminal and log lines elsewhere."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scalebridge import log as sblog
from scalebridge.plotting import (
    CHECKED,
    plot_data_file,
    png_source,
    pyplot,
    save_figure,
    tick_label_overlaps,
)


def _strain_figure():
    """The DD/surrogate case of issue 19: a strain axis 0..2e-3 in a 5-inch figure."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    x = np.linspace(0, 2e-3, 50)
    ax.plot(x, 30 * np.tanh(x / 1e-4))
    ax.set_xlabel("strain")
    fig.tight_layout()
    return fig


def test_overlapping_strain_ticks_are_found_and_fixed(tmp_path):
    fig = _strain_figure()
    found = tick_label_overlaps(fig)
    assert found and found[0].startswith("axes 0 x:"), found  # the bug, measured
    save_figure(fig, tmp_path / "stress_strain.png", dpi=80)
    rec = CHECKED[-1]
    assert rec.path == tmp_path / "stress_strain.png" and rec.overlaps_before
    assert rec.overlaps_after == [] and rec.fixes
    assert (tmp_path / "stress_strain.png").stat().st_size > 0


def test_abutting_labels_count_as_overlapping(tmp_path):
    """The FEM's load-displacement axis (mo_bench68): 0 to 1.5e-3 mm, 8 labels of six
    characters 2.2 px apart (0.16 em at 100 dpi); saved at 120 dpi they touched
    ("0.00000.0002") without overlapping, unreadable. Labels closer than a quarter em
    count as overlapping, so the axis is fixed; a roomy axis is left alone."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=100)    # continuum.output's figure
    ax.plot(np.linspace(0.0, 1.5e-3, 31), np.linspace(0.0, 60.0, 31), "o-", ms=3,
            label="FEM")
    ax.set_xlabel("inner displacement (mm)")
    ax.set_ylabel("pressure (MPa)")
    ax.set_title("cylinder, source_families_j2, 1 rank(s)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    found = tick_label_overlaps(fig)
    assert found and " x: '0.0000' overlaps '0.0002'" in found[0], found
    save_figure(fig, tmp_path / "load_displacement.png", dpi=120)
    assert CHECKED[-1].overlaps_before and CHECKED[-1].overlaps_after == []
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=100)
    ax.plot([0.0, 1.0], [0.0, 60.0])
    assert tick_label_overlaps(fig) == []


@pytest.mark.parametrize("kind", ["linear_crowded", "log_crowded"])
def test_crowded_axes_end_without_overlap(tmp_path, kind):
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(3.0, 2.0))
    for ax in (a, b):
        if kind == "log_crowded":
            ax.set_xscale("log")
            ax.plot(np.geomspace(1e-3, 1e5, 5), np.linspace(0, 1, 5))
            ax.set_xticks(np.geomspace(1e-3, 1e5, 9))
        else:
            ax.plot(np.linspace(1000.5, 1000.9, 5), np.linspace(1e6, 1.00001e6, 5))
            ax.set_xticks(np.linspace(1000.5, 1000.9, 17))
    save_figure(fig, tmp_path / "crowded.png", dpi=80)
    assert CHECKED[-1].overlaps_after == [], CHECKED[-1]


def test_png_names_its_data_source(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    (tmp_path / "velocity.csv").write_text("a,b\n0,0\n1,1\n")
    save_figure(fig, tmp_path / "velocity_stress.png", data="velocity.csv", dpi=60)
    assert png_source(tmp_path / "velocity_stress.png") == "velocity.csv"
    assert plot_data_file(tmp_path / "velocity_stress.png") == (tmp_path / "velocity.csv")
    fig, ax = plt.subplots(figsize=(3, 2))
    save_figure(fig, tmp_path / "lonely.png", dpi=60)
    assert plot_data_file(tmp_path / "lonely.png") is None       # no CSV, no source
    (tmp_path / "lonely.csv").write_text("x\n1\n")
    assert plot_data_file(tmp_path / "lonely.png") == tmp_path / "lonely.csv"


@pytest.fixture
def off_terminal_clock(monkeypatch):
    """Not on a terminal, and a clock that moves 4 s per reading (so every 10% step of
    a progress bar is old enough to be written)."""
    monkeypatch.setattr(sblog.sys.stderr, "isatty", lambda: False, raising=False)
    clock = iter(np.arange(0.0, 1000.0, 4.0))
    monkeypatch.setattr(sblog.time, "monotonic", lambda: float(next(clock)))


def test_progress_is_log_lines_off_a_terminal(off_terminal_clock, caplog):
    with caplog.at_level(logging.INFO, logger="scalebridge.progress"), \
            sblog.progress("training models", total=3000) as advance:
        for _ in range(30):
            advance(100)
    lines = [r.getMessage() for r in caplog.records if r.name == "scalebridge.progress"]
    assert lines, "no progress line off a terminal"
    assert all(ln.startswith("training models: ") and "%" in ln for ln in lines)
    assert lines[-1].startswith("training models: 100% (3000/3000)")
    assert len(lines) <= 11                       # at most one per 10%, never per step


def test_short_work_stays_silent_off_a_terminal(monkeypatch, caplog):
    monkeypatch.setattr(sblog.sys.stderr, "isatty", lambda: False, raising=False)
    with caplog.at_level(logging.INFO, logger="scalebridge.progress"), \
            sblog.progress("quick", total=10) as advance:
        for _ in range(10):
            advance(1)
    assert not [r for r in caplog.records if r.name == "scalebridge.progress"]


def test_progress_draws_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sblog.sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.delenv("SCALEBRIDGE_NO_PROGRESS", raising=False)
    assert sblog._progress_enabled()
    with sblog.progress("MD steps", total=5) as advance:
        for _ in range(5):
            advance(1)
    assert list(sblog.track(range(3), "DD strain")) == [0, 1, 2]


def test_plain_progress_never_passes_100_percent(off_terminal_clock, caplog):
    with caplog.at_level(logging.INFO, logger="scalebridge.progress"), \
            sblog.progress("properties", total=1000) as advance:
        for _ in range(25):
            advance(100)                          # the program reports 2.5x the plan
    lines = [r.getMessage() for r in caplog.records if r.name == "scalebridge.progress"]
    assert lines and lines[-1].startswith("properties: 100% (1000/1000)")
    assert not [ln for ln in lines if int(ln.split(": ")[1].split("%")[0]) > 100]


def test_lammps_step_counter_counts_md_steps_once_across_runs():
    from scalebridge.md.lammps import ThermoStepCounter

    seen: list[int] = []
    count = ThermoStepCounter(seen.append)
    log = ["Step Temp PotEng", "0 0 -10", "37 0 -11",            # minimise: 37 iterations
           "Step Temp PotEng Press", "37 300 -11 0", "537 300 -11 0", "1037 300 -11 0",
           "Step Temp PotEng Press", "1037 290 -11 0", "2037 295 -11 0",   # second run
           "Step Temp PotEng Press", "0 295 -11 0", "500 295 -11 0"]       # reset_timestep
    for line in log:
        count(line)
    assert sum(seen) == 37 + 1000 + 1000 + 500


def test_axis_labels_read_the_unit_of_a_column_name():
    """A CSV column's unit suffix becomes the label's unit in parentheses (the FEM's and
    the band's axes were labelled with raw column names)."""
    from scalebridge.plotting import axis_label

    assert axis_label("pressure_mpa") == "pressure (MPa)"
    assert axis_label("inner_displacement_mm") == "inner displacement (mm)"
    assert axis_label("velocity_m_s") == "velocity (m/s)"
    assert axis_label("reaction_inner_x_n") == "reaction inner x (N)"
    assert axis_label("strain") == "strain" and axis_label("load (MPa)") == "load (MPa)"
    assert axis_label("mpa") == "mpa"           # a unit alone names no quantity
