"""DDSettings: run discrete dislocation dynamics with a mobility law -> DDRun artifact.

``DDSettings().make(mobility, properties, out)`` takes μ, ν, b (and the lattice) from the
md Properties artifact, the mobility law from a MobilityLaw artifact, builds
``realisations`` random microstructures (sources, obstacles, initial dislocations; seeds
``seed + i``), loads each to ``final_strain`` (strain control) or for ``final_time_ns``
(stress control) and writes::

    stress_strain.csv                 mean over the reference condition's realisations
    realisations/<i>/stress_strain.csv  each realisation (of every condition) on one grid
    realisations/<i>/snapshots.csv    dislocation positions at snapshot times
    avalanches.csv, avalanches.png (+ avalanche_ccdf.csv)   strain bursts / stress drops
    stress_strain.png, density_strain.png (+ density_strain.csv), snapshot.png (+ .csv)
    study/                            σ(ε_p, ε̇, T) with scatter, ρ, avalanche fits
                                      (:mod:`scalebridge.dd_coupling.study`)
    run.json                          loading, temperature, μ, ν, b, mobility, strengths,
                                      the sources' nucleation clock (per condition),
                                      and for each realisation its rate and temperature
    drag_probe.csv                    with ``drag_probe``: each reference realisation's
                                      flow stress at B and B·drag_probe, dlnσ/dlnB
    range_probe.csv                   with ``range_probe`` (where it ran): each reference
                                      realisation's flow stress clamped and at c_t beyond
                                      the law's range

Inputs in the units of the scales below. The microstructure is stated in lengths and
densities, its strengths follow from μ and b: Frank-Read sources of lognormal length L
(µm) with ``τ_src = β μ b / L``; point obstacles are forest dislocations of density
``ρ_f`` with ``τ_obs = α_obs μ b √ρ_f``, junctions ``τ_junc = α_junc μ b √ρ_f``.
Strengths typed in MPa (``*_strength_mpa``) are overrides, listed in the summary
(``overrides``) and so in the report; every stated assumption (lengths, densities, α, β,
the nucleation time) is listed there too (``assumptions``).

Mobility from the MD that measured it: every dislocation glides with the law of one
character (``glide_character``; auto: the screw law for a BCC lattice when the MD
measured screws, else edge) at the run's temperature; the summary says which. The
summary counts the law's evaluations beyond its data both ways: above the top stress the
MD reached (``out_of_range_fraction``: clamped, graded) and below the lowest it measured
(``below_data_fraction``, with ``below_data``: the law's own form between v(0) = 0 and
the data, an assumption stated, not graded); each the worst realisation's over the study
and the mean (``*_mean``). Of those above the top stress, the share whose velocity value
reached the dynamics (``out_of_range_law_set_fraction``, same denominator: not held at
an obstacle and not cut to the per-step glide limit, or in a step whose time step they
could set; :func:`~scalebridge.dd_coupling.engine.beyond_law_set`). Where it is 0 in
every run and no source's bow-out (``nucleation = "bow_out"``/``"overstress"``) and no
``bow_out_clock`` strength was timed beyond the range either (``beyond_range``'s
``source_bow_outs`` and ``clock_stresses`` 0), no velocity at least the law's there
changes the trajectories, and ``range_probe = "auto"`` records that instead of rerunning.

A study (``study``: strain rates × temperatures) runs every realisation in every
condition; ``stress_strain.csv`` and the headline numbers are those of the reference
condition (``strain_rate_s``, ``temperature_k``, or the grid point nearest to them).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.dd_coupling.engine import (
    DDGeometry,
    DDParams,
    DDState,
    beyond_range,
    bow_out_time,
    bow_out_times,
    init,
    law_top_stress_mpa,
    make_planes,
    plane_period,
    positions,
    schmid_factor,
    slip_moment,
    sort_obstacles,
    step,
)
from scalebridge.dd_coupling.inputs import Material, _artifact_file, read_properties
from scalebridge.dd_coupling.mobility import (
    BELOW_DATA_FACTOR,
    CHARACTERS,
    DragScaledMobility,
    GlideCharacterMobility,
    LimitSpeedMobility,
    LinearDragMobility,
    MobilityCheckError,
    MobilityLaw,
    check_mobility,
    load_mobility,
    temperature_sensitivity,
)
from scalebridge.dd_coupling.study import (
    Condition,
    DDStudySettings,
    fit_power_law,
    tail_mean,
    write_study,
)
from scalebridge.errors import SettingsError
from scalebridge.log import progress, track
from scalebridge.plotting import pyplot, save_figure
from scalebridge.settings import StrictModel

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.figure import Figure

log = logging.getLogger("scalebridge.dd_coupling")

STRESS_STRAIN_COLUMNS = ("time_s", "strain", "stress_mpa", "plastic_strain", "density_m2",
                         "n_dislocations")


class DDSettings(StrictModel):
    """Discrete dislocation dynamics run (science settings; defaults run in seconds)."""

    realisations: int = Field(2, ge=1, description="independent random microstructures")
    seed: int = Field(0, description="random seed of realisation 0 (then seed+1, ...)")
    cell_lx_um: float = Field(1.0, gt=0, description="cell width lx, μm")
    cell_ly_um: float | None = Field(
        None, gt=0, description="cell height ly, μm; unset: the commensurate height "
        "closest to lx for the slip angles (2·lx/√3 for 0/60/120°, the taller of two "
        "equally close)")
    slip_angles_deg: list[float] = Field(
        [0.0, 60.0, 120.0], min_length=1, description="slip directions of the systems, deg")
    plane_spacing_b: float = Field(100.0, gt=0, description="slip plane spacing, in b")
    initial_density_m2: float = Field(
        0.0, ge=0, description="initial random Burgers-neutral dislocation density, m^-2")
    source_density_m2: float = Field(6.0e13, ge=0, description="Frank-Read sources per m^2")
    source_length_um: float = Field(
        0.7, gt=0, description="mean Frank-Read source length L, µm (lognormal); source "
        "strength τ = source_beta·μ·b/L")
    source_length_sd_um: float = Field(
        0.15, ge=0, description="standard deviation of the source lengths, µm (0: equal)")
    source_beta: float = Field(1.0, gt=0, description="β of the Frank-Read strength "
                               "τ = β μ b / L (line-tension prefactor, ~1)")
    source_strength_mpa: float | None = Field(
        None, gt=0, description="OVERRIDE: mean source strength in MPa (normal, std "
        "source_strength_std_mpa) instead of the Frank-Read lengths; listed as an override")
    source_strength_std_mpa: float = Field(
        10.0, ge=0, description="std of the overriding source strength, MPa")
    nucleation_time_ns: float = Field(
        10.0, gt=0, description="nucleation = 'time': the time a source's resolved stress "
        "must exceed its strength before it emits a dipole, ns (a stated assumption, the "
        "2D DD convention; one bow-out time of the mean source, ~1.2 ns in the Mo "
        "example, lets sources fire on internal stresses alone: 'bow_out_clock' takes "
        "several)")
    nucleation: Literal["time", "bow_out_clock", "bow_out", "overstress"] = Field(
        "time", description="when a source above its strength emits: 'time', after "
        "nucleation_time_ns (a typed time); 'bow_out_clock', after nucleation_bow_outs "
        "bow-out times of the mean source (half the Frank-Read length β·μ·b/τ̄_src glided "
        "at the mobility law's v(τ̄_src)): one clock for every source as with 'time' "
        "(or each source's own: nucleation_clock_of), "
        "its time set by the MD's drag and μ, b (with a drag law scaled by f the DD at "
        "strain rate ε̇/f is the DD at ε̇ with time stretched by f: B and ε̇ enter as "
        "their product); 'bow_out', once its segment has glided half its "
        "Frank-Read length β·μ·b/τ_src at the mobility law's velocity under the source's "
        "resolved stress (the MD drag sets the time: ~1.3 ns at the source strength for "
        "B = 5.4e-5 Pa s, L = 0.7 µm, shorter above it); 'overstress', the same distance at "
        "the law's velocity under the excess |τ| − τ_src (the line tension holds τ_src at "
        "the critical half-circle: L B / (2 b (|τ| − τ_src)) for a linear drag, ~7 ns at "
        "10 MPa above the strength for B = 5.4e-5 Pa s, L = 0.7 µm)")
    nucleation_bow_outs: float = Field(
        8.0, gt=0, description="nucleation = 'bow_out_clock': the nucleation time in "
        "bow-out times of the mean source, a stated assumption (a 2D DD source stands for "
        "a 3D Frank-Read source whose loop, once past the critical half-circle, must still "
        "expand, wrap around its pinning points and close, which the DD does not resolve: "
        "several bow-out times; 8 puts the Mo example's time at 9.3 ns, near the 2D DD "
        "convention's 10 ns)")
    nucleation_clock_of: Literal["mean_source", "each_source"] = Field(
        "mean_source", description="nucleation = 'bow_out_clock': whose bow-out time sets "
        "the clock: 'mean_source', one clock for every source (that of the mean strength "
        "τ̄_src: every source fires in step, so the realisations' mean stress keeps a "
        "sawtooth of that period); 'each_source', each source its own nucleation_bow_outs "
        "bow-out times at its own strength (L_i B / (2 b τ_i) ∝ L_i² for a linear drag: "
        "the long, weak sources start first and take longest, so the firings dephase). "
        "Either way B and ε̇ enter as their product. Other rules ignore it")
    obstacle_density_m2: float = Field(
        3.0e14, ge=0, description="point obstacles per m^2 (forest dislocations piercing "
        "the slip planes)")
    forest_density_m2: float | None = Field(
        None, ge=0, description="forest density ρ_f setting the obstacle and junction "
        "strengths (τ = α μ b √ρ_f), m^-2; unset: obstacle_density_m2")
    obstacle_alpha: float = Field(
        0.25, gt=0, description="obstacle strength τ_obs = obstacle_alpha·μ·b·√ρ_f")
    obstacle_strength_mpa: float | None = Field(
        None, gt=0, description="OVERRIDE: obstacle strength in MPa; listed as an override")
    capture_distance_b: float = Field(6.0, gt=0, description="annihilation distance, in b")
    junction_distance_b: float = Field(
        6.0, ge=0, description="dislocations on different systems closer than this lock "
        "into a junction, in b (0: off)")
    junction_alpha: float = Field(
        0.5, gt=0, description="junction strength (resolved stress without the partner "
        "that breaks it) τ_junc = junction_alpha·μ·b·√ρ_f (ρ_f = 0: junctions never hold)")
    junction_strength_mpa: float | None = Field(
        None, gt=0, description="OVERRIDE: junction strength in MPa; listed as an override")
    glide_character: Literal["auto", "edge", "screw"] = Field(
        "auto", description="whose mobility law every dislocation glides with; auto: "
        "screw for a BCC lattice when the mobility law covers screws (the MD measured "
        "them), else edge")
    temperature_k: float = Field(300.0, gt=0, description="temperature, K (the mobility "
                                 "law's input)")
    loading: Literal["strain", "stress"] = Field("strain", description="control mode")
    component: Literal["shear_xy", "tension_x"] = Field(
        "shear_xy", description="loaded stress component (resolved shear: shear_xy)")
    strain_rate_s: float = Field(1.0e4, gt=0, description="strain rate (strain control), 1/s")
    final_strain: float = Field(2.0e-3, gt=0, description="end strain (strain control)")
    stress_rate_mpa_ns: float = Field(0.5, description="stress rate (stress control), MPa/ns")
    initial_stress_mpa: float = Field(0.0, description="stress at t=0 (stress control), MPa")
    final_time_ns: float = Field(200.0, gt=0, description="duration (stress control), ns")
    dt_max_ns: float = Field(0.5, gt=0, description="largest time step, ns")
    max_strain_step: float = Field(
        2e-5, gt=0, description="largest applied strain increment per step (strain "
        "control): dt <= max_strain_step / strain_rate_s")
    max_glide_b: float = Field(
        20.0, gt=0, description="largest glide per step, in b (adaptive time step)")
    dt_quantile: float = Field(
        0.8, gt=0, le=1, description="dt = max_glide / (this quantile of |v|); faster "
        "dislocations are limited to max_glide per step (1: exact, slower)")
    image_rows: int = Field(1, ge=0, le=4, description="image rows ±M summed along y")
    out_of_range: Literal["error", "warn", "clamp"] = Field(
        "clamp", description="neural mobility outside its training range (core stresses "
        "are singular, so DD clamps by default and reports the fraction)")
    output_points: int = Field(200, ge=10, description="rows of the stress-strain tables")
    snapshots: int = Field(6, ge=1, description="position snapshots per realisation")
    avalanche_threshold_mpa: float = Field(
        0.05, gt=0, description="smallest stress drop counted as an avalanche, MPa")
    max_steps: int = Field(200_000, ge=1, description="safety limit on steps per realisation")
    allow_failed_checks: bool = Field(
        False, description="run with a mobility law that fails check_mobility anyway "
        "(refused by default); the failure and the override go into the DDRun summary")
    drag_probe: float | None = Field(
        None, gt=1, description="rerun the reference condition's realisations (same "
        "seeds) with the mobility law's drag B scaled by this factor (every velocity / "
        "factor) and record dln(flow stress)/dln(B) (drag_sensitivity): how much of the "
        "flow stress the MD's drag sets, measured instead of inferred from the rate "
        "sensitivity (which, with nucleation = 'time', also holds the typed clock's "
        "effect); unset: no probe")
    range_probe: bool | Literal["auto"] = Field(
        False, description="rerun the reference condition's realisations (same seeds) "
        "with every mobility evaluation beyond the law's stress range at the limiting "
        "speed c_t (the Properties' transverse sound speed along the glide direction, "
        "the fastest a dislocation glides) instead of clamped to the velocity at the "
        "law's top stress, and record the flow stress's relative change "
        "(range_sensitivity): the clamp and c_t bracket what the law could do beyond its "
        "data, so this bounds what the out-of-range evaluations change. 'auto': only "
        "where some run of the study had an evaluation beyond the range whose velocity "
        "value reached the dynamics (out_of_range_law_set_fraction > 0, a source's "
        "bow-out timed beyond the range, or a bow_out_clock strength read beyond it); "
        "where none had, the change is exactly zero by "
        "construction and range_sensitivity records that (run: false, exact_zero: "
        "true) without the rerun")
    study: DDStudySettings | None = Field(
        None, description="a grid of strain rates × temperatures, every realisation in "
        "every condition (strain control); unset: the one condition strain_rate_s, "
        "temperature_k")

    @model_validator(mode="after")
    def _study_needs_strain_control(self) -> DDSettings:
        if self.study is not None and self.loading != "strain":
            raise ValueError("a study (strain rates × temperatures) needs loading = "
                             "'strain'")
        # under stress control the stress is prescribed: no law can move it
        for probe in ("drag_probe", "range_probe"):
            if getattr(self, probe) and self.loading != "strain":
                raise ValueError(f"{probe} compares flow stresses, which stress control "
                                 "prescribes: it needs loading = 'strain'")
        return self

    # ------------------------------------------------------------------ inputs that scale
    def forest_density(self) -> float:
        """ρ_f (m⁻²) of the obstacle and junction strengths."""
        return (self.obstacle_density_m2 if self.forest_density_m2 is None
                else self.forest_density_m2)

    def overrides(self) -> list[str]:
        """Settings that replace a quantity otherwise derived from μ, b and the mobility
        law (typed MPa or ns)."""
        return [k for k in ("source_strength_mpa", "obstacle_strength_mpa",
                            "junction_strength_mpa") if getattr(self, k) is not None]

    def source_length_lognormal(self) -> tuple[float, float]:
        """(mean, standard deviation) of ln L, L in m, for the source lengths."""
        sig2 = math.log1p((self.source_length_sd_um / self.source_length_um) ** 2)
        return math.log(self.source_length_um * 1e-6) - 0.5 * sig2, math.sqrt(sig2)

    def strengths(self, material: Material) -> dict[str, dict[str, Any]]:
        """The source (mean, std), obstacle and junction strengths in MPa, each with
        the relation or override it came from."""
        mub = material.mu_pa * material.b_m
        sqrt_rho = math.sqrt(self.forest_density())
        if self.source_strength_mpa is None:
            m, sd = self.source_length_lognormal()
            inv_mean = math.exp(-m + 0.5 * sd * sd)             # E[1/L], lognormal L
            inv_std = inv_mean * math.sqrt(math.expm1(sd * sd))
            src = {"mpa": self.source_beta * mub * inv_mean * 1e-6,
                   "std_mpa": self.source_beta * mub * inv_std * 1e-6,
                   "from": f"Frank-Read τ = β μ b / L, β = {self.source_beta:g}, L "
                           f"lognormal {self.source_length_um:g} ± "
                           f"{self.source_length_sd_um:g} µm"}
        else:
            src = {"mpa": self.source_strength_mpa, "std_mpa": self.source_strength_std_mpa,
                   "from": "OVERRIDE source_strength_mpa"}
        out = {"source": src}
        for name, alpha, typed in (("obstacle", self.obstacle_alpha,
                                    self.obstacle_strength_mpa),
                                   ("junction", self.junction_alpha,
                                    self.junction_strength_mpa)):
            out[name] = ({"mpa": typed, "from": f"OVERRIDE {name}_strength_mpa"}
                         if typed is not None else
                         {"mpa": alpha * mub * sqrt_rho * 1e-6,
                          "from": f"τ = α μ b √ρ_f, α = {alpha:g}, ρ_f = "
                                  f"{self.forest_density():.3g} m^-2"})
        return out

    def glide_law(self, material: Material, law: MobilityLaw
                  ) -> tuple[GlideCharacterMobility, str]:
        """The law every dislocation glides with (one character's), and why that one.

        Raises:
            SettingsError: ``glide_character`` names a character the law does not cover.
        """
        if isinstance(law, GlideCharacterMobility):
            return law, f"given: {CHARACTERS[law.character]}"
        chars = tuple(law.valid_range.characters)
        bcc = material.lattice == "bcc"
        if self.glide_character != "auto":
            c = self.glide_character
            if c not in chars:
                raise SettingsError(
                    f"glide_character = {c!r}, but the mobility law covers {list(chars)} "
                    f"(the MD measured no {c} dislocations); measure them or choose "
                    f"{' or '.join(map(repr, chars))}")
            why = f"set: glide_character = {c}"
        elif bcc and "screw" in chars:
            c, why = "screw", "auto: BCC, and the law covers screws (the slow ones glide)"
        elif "edge" in chars:
            c = "edge"
            why = ("auto: BCC, but the law covers no screws (the MD measured edges only)"
                   if bcc else f"auto: {material.lattice or 'lattice not given'}: edge")
        else:
            c, why = chars[0], f"auto: the law covers {chars[0]} only"
        return GlideCharacterMobility(law, CHARACTERS.index(c)), why

    # ------------------------------------------------------------------ building blocks
    def cell(self) -> tuple[float, float]:
        """(lx, ly) in m."""
        lx = self.cell_lx_um * 1e-6
        if self.cell_ly_um is not None:
            return lx, self.cell_ly_um * 1e-6
        inclined = [a for a in self.slip_angles_deg
                    if abs(math.sin(math.radians(a))) > 1e-12
                    and abs(math.cos(math.radians(a))) > 1e-12]
        if not inclined:
            return lx, lx
        t = abs(math.tan(math.radians(inclined[0])))
        # for 0/60/120° lx·√3/2 and 2·lx/√3 are equally close (in log): a tie, broken
        # for the taller one explicitly (float rounding decided it before)
        best = min((lx * t * m / n for n in range(1, 5) for m in range(1, 5)),
                   key=lambda ly: (round(abs(math.log(ly / lx)), 9), -ly))
        return lx, best

    def nucleation_clock(self, material: Material, mobility: MobilityLaw
                         ) -> dict[str, Any]:
        """The sources' nucleation time at this run's temperature and where it comes
        from: ``{"rule", "time_s"}`` (``time_s`` None where the law times each source:
        bow_out, overstress), with ``bow_out_clock`` also ``bow_outs``,
        ``bow_out_time_s``, ``source_mpa`` (the mean strength τ̄_src), ``length_um``
        (its Frank-Read length β μ b / τ̄_src) and ``clock_of``; with ``each_source``
        ``time_s`` is the mean source's and ``each_source`` holds the clock against the
        strength over τ̄_src ± 4 sd (``source_mpa``, ``time_ns``; strengths the law does
        not move left out, ``never_below_mpa`` the lowest that fires, or None).

        Raises:
            SettingsError: the law does not move a dislocation at τ̄_src (its sources
                would never fire)."""
        if self.nucleation == "time":
            return {"rule": "time", "time_s": self.nucleation_time_ns * 1e-9,
                    "from": "typed (nucleation_time_ns)"}
        if self.nucleation != "bow_out_clock":
            return {"rule": self.nucleation, "time_s": None,
                    "from": "each source timed by the mobility law at its own stress"}
        glide, _ = self.glide_law(material, mobility)
        tau = self.strengths(material)["source"]["mpa"] * 1e6
        length = self.source_beta * material.mu_pa * material.b_m / tau   # m
        t_bow = bow_out_time(glide, tau, material.mu_pa, material.b_m, self.source_beta,
                             self.temperature_k)
        if not math.isfinite(t_bow):
            raise SettingsError(
                f"nucleation = 'bow_out_clock': the mobility law {glide.name!r} does not "
                f"move a dislocation at the mean source strength {tau * 1e-6:.3g} MPa "
                f"({self.temperature_k:g} K), so no source would fire; use "
                "nucleation = 'time'")
        loading_s = (self.final_strain / self.strain_rate_s if self.loading == "strain"
                     else self.final_time_ns * 1e-9)
        if self.nucleation_bow_outs * t_bow > 0.5 * loading_s:
            log.warning("nucleation = 'bow_out_clock': t_nuc = %.3g ns is over half the "
                        "run's %.3g ns (the law moves the mean source at %.3g m/s): its "
                        "sources fire once or never", self.nucleation_bow_outs * t_bow * 1e9,
                        loading_s * 1e9, 0.5 * length / t_bow)
        out = {"rule": "bow_out_clock", "time_s": self.nucleation_bow_outs * t_bow,
               "bow_outs": self.nucleation_bow_outs, "bow_out_time_s": t_bow,
               "source_mpa": tau * 1e-6, "length_um": length * 1e6,
               "clock_of": self.nucleation_clock_of,
               "from": f"{self.nucleation_bow_outs:g} bow-out times of the mean source "
                       "at the mobility law's velocity"}
        if self.nucleation_clock_of == "each_source":
            # each source's clock against its strength, over the strengths' ±4 sd (what a
            # surrogate needs to time its own families the way the DD timed its sources;
            # its families spread wider than the DD's sources, to ~3.5 sd in the example)
            sd = self.strengths(material)["source"]["std_mpa"] * 1e6
            grid = np.linspace(max(tau - 4.0 * sd, 0.2 * tau), tau + 4.0 * sd, 33)
            t = self.source_clocks(material, mobility, grid)
            fires = np.isfinite(t)          # below a law's threshold a source never fires
            out["each_source"] = {"source_mpa": (grid[fires] * 1e-6).tolist(),
                                  "time_ns": (t[fires] * 1e9).tolist(),
                                  "never_below_mpa": (None if fires.all() else
                                                      float(grid[fires][0] * 1e-6))}
            out["from"] = (f"{self.nucleation_bow_outs:g} bow-out times of each source at "
                           "the mobility law's velocity (time_ns: the mean source's)")
        return out

    def source_clocks(self, material: Material, mobility: MobilityLaw,
                      tau_pa: np.ndarray) -> np.ndarray:
        """``nucleation_bow_outs`` bow-out times (s) of sources of strengths ``tau_pa``
        ((n,) Pa) at the glide law's velocity, (n,) (``nucleation_clock_of =
        'each_source'``)."""
        glide, _ = self.glide_law(material, mobility)
        return self.nucleation_bow_outs * bow_out_times(
            glide, tau_pa, material.mu_pa, material.b_m, self.source_beta, self.temperature_k)

    def params(self, material: Material, mobility: MobilityLaw) -> DDParams:
        """Engine parameters: μ, ν, b of ``material``; ``mobility`` restricted to the
        glide character (:meth:`glide_law`); strengths and nucleation time as derived
        (:meth:`nucleation_clock`)."""
        b = material.b_m
        glide, _ = self.glide_law(material, mobility)
        clock = self.nucleation_clock(material, mobility)
        rate = self.strain_rate_s if self.loading == "strain" else self.stress_rate_mpa_ns * 1e15
        dt_max = self.dt_max_ns * 1e-9
        if self.loading == "strain":
            dt_max = min(dt_max, self.max_strain_step / self.strain_rate_s)
        return DDParams(
            mu_pa=material.mu_pa, nu=material.nu, b_m=b, mobility=glide,
            temperature_k=self.temperature_k,
            nucleation_time_s=(self.nucleation_time_ns * 1e-9 if clock["time_s"] is None
                               else clock["time_s"]),
            # the engine's "time" rule at the derived time (each source's own, where
            # run_realisation puts them in the geometry)
            nucleation=self.nucleation if clock["time_s"] is None else "time",
            source_beta=self.source_beta,
            capture_m=self.capture_distance_b * b, junction_m=self.junction_distance_b * b,
            junction_strength_pa=self.strengths(material)["junction"]["mpa"] * 1e6,
            dt_max_s=dt_max, max_glide_m=self.max_glide_b * b,
            dt_quantile=self.dt_quantile, image_rows=self.image_rows, loading=self.loading,
            component=self.component,
            rate=rate, stress_offset_pa=self.initial_stress_mpa * 1e6)

    def geometry(self, material: Material, seed: int) -> tuple[DDGeometry, DDState]:
        """A random microstructure: planes, sources, obstacles, initial dislocations."""
        lx, ly = self.cell()
        angles = torch.tensor([math.radians(a) for a in self.slip_angles_deg],
                              dtype=torch.float64)
        for a in angles.tolist():
            plane_period(a, lx, ly)
        b, mu, nu = material.b_m, material.mu_pa, material.nu
        spacing = self.plane_spacing_b * b
        psys, porig, plen = make_planes(angles, lx, ly, spacing)
        rng = np.random.default_rng(seed)
        area = lx * ly
        n_planes = psys.shape[0]

        def on_planes(k: int) -> tuple[torch.Tensor, torch.Tensor]:
            pl = torch.as_tensor(rng.integers(0, n_planes, k), dtype=torch.long)
            return pl, torch.as_tensor(rng.uniform(0, 1, k)) * plen[pl]

        n_src = round(self.source_density_m2 * area)
        src_plane, src_s = on_planes(n_src)
        if self.source_strength_mpa is None:        # Frank-Read: τ = β μ b / L
            tau_nuc = self.source_beta * mu * b / rng.lognormal(
                *self.source_length_lognormal(), n_src)
        else:                                       # override: typed MPa
            tau_nuc = np.clip(rng.normal(self.source_strength_mpa,
                                         self.source_strength_std_mpa, n_src),
                              0.1 * self.source_strength_mpa, None) * 1e6
        obstacle_pa = self.strengths(material)["obstacle"]["mpa"] * 1e6
        src_tau = torch.as_tensor(tau_nuc)
        src_len = mu * b / (2 * math.pi * (1 - nu) * src_tau)
        n_obs = round(self.obstacle_density_m2 * area)
        obs_plane, obs_s = on_planes(n_obs)
        geom = sort_obstacles(DDGeometry(
            lx=lx, ly=ly, angles=angles, schmid=schmid_factor(angles, self.component),
            plane_system=psys, plane_origin=porig, plane_length=plen, src_plane=src_plane,
            src_s=src_s, src_tau=src_tau, src_length=src_len, obs_plane=obs_plane,
            obs_s=obs_s, obs_tau=torch.full((n_obs,), obstacle_pa, dtype=torch.float64)))
        n_pairs = round(self.initial_density_m2 * area / 2)
        if n_pairs:
            sys_of_pair = rng.integers(0, len(angles), n_pairs)
            planes_of = [np.nonzero(psys.numpy() == k)[0] for k in range(len(angles))]
            pl = np.array([[rng.choice(planes_of[k]), rng.choice(planes_of[k])]
                           for k in sys_of_pair]).reshape(-1)
            plane = torch.as_tensor(pl, dtype=torch.long)
            s = torch.as_tensor(rng.uniform(0, 1, 2 * n_pairs)) * plen[plane]
            sign = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n_pairs)
            state = init(geom, plane, s, sign)
        else:
            state = init(geom)
        return geom, state

    # ------------------------------------------------------------------ one realisation
    def run_realisation(self, material: Material, mobility: MobilityLaw, seed: int,
                        observe: Callable[[DDGeometry, DDParams, DDState], None] | None = None
                        ) -> dict[str, Any]:
        """Run one realisation; returns its per-step trace (arrays) and snapshots.
        ``observe(geometry, params, state)``, if given, sees the state after every step
        (a measurement that must not change it)."""
        geom, state = self.geometry(material, seed)
        params = self.params(material, mobility)
        if self.nucleation == "bow_out_clock" and self.nucleation_clock_of == "each_source":
            t = self.source_clocks(material, mobility, geom.src_tau.numpy())
            never = int(np.sum(~np.isfinite(t)))
            if never:                # the law does not move them at their strength
                log.warning("DD seed %d: %d of %d sources never fire (the mobility law does "
                            "not move a dislocation at their strength)", seed, never, t.size)
            geom = dataclasses.replace(geom, src_time=torch.as_tensor(t))
        state = init(geom, state.plane, state.s, state.sign, params=params)
        end = (self.final_strain / self.strain_rate_s if self.loading == "strain"
               else self.final_time_ns * 1e-9)
        snap_times = list(np.linspace(0, end, self.snapshots))
        trace: list[tuple[float, ...]] = []
        snaps: list[tuple[int, float, float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        def record(st: DDState) -> None:
            trace.append((st.time, st.strain, st.stress_pa * 1e-6, st.plastic_strain,
                          st.n / geom.area, st.n))

        def snap(st: DDState) -> None:
            st = st.to("cpu")                   # the engine's state may be on a GPU
            pos = positions(geom, st.plane, st.s).numpy()
            snaps.append((len(snaps), st.time, st.strain, pos[:, 0], pos[:, 1],
                          st.sign.numpy(), geom.plane_system[st.plane].numpy()))

        record(state)
        snap(state)
        snap_times.pop(0)
        truncated = False
        t0 = time.perf_counter()
        n_oor0 = getattr(mobility, "n_out_of_range", 0)
        n_below0 = getattr(mobility, "n_below_data", 0)
        evals = 0
        # progress: the applied strain reached (in 1e-6), or under stress control the time
        strain_mode = self.loading == "strain"
        unit = 1e6 if strain_mode else 1e12
        total = round((self.final_strain if strain_mode else end) * unit)
        what = (f"{self.strain_rate_s:.3g}/s, {self.temperature_k:g} K), strain x1e6"
                if strain_mode else f"{self.temperature_k:g} K), time in ps")
        shown = 0
        with progress(f"DD seed={seed} ({what}", total=total) as advance:
            while state.time < end:
                if state.n_steps >= self.max_steps:
                    truncated = True
                    log.warning("DD seed %d stopped at max_steps=%d (t=%.3g s of %.3g s)",
                                seed, self.max_steps, state.time, end)
                    break
                evals += state.n
                state = step(geom, params, state)
                if observe is not None:
                    observe(geom, params, state)
                record(state)
                while snap_times and state.time >= snap_times[0]:
                    snap(state)
                    snap_times.pop(0)
                reached = round((state.strain if strain_mode else state.time) * unit)
                if reached > shown:
                    advance(reached - shown)
                    shown = reached
        wall = time.perf_counter() - t0
        n_oor = getattr(mobility, "n_out_of_range", 0) - n_oor0
        n_below = getattr(mobility, "n_below_data", 0) - n_below0
        # the glide law evaluates every dislocation as its one character (index 0 asks
        # for it): None where its range does not record its data's lowest stress
        below_known = params.mobility.valid_range.lowest_tau_mpa(0) is not None
        return {
            "out_of_range_law_set_fraction": state.n_beyond_law_set / max(evals, 1),
            "beyond_range": {"evaluations": evals, "beyond": state.n_beyond,
                             # outside the law's temperatures or characters only: an
                             # extrapolation the stress bound's exact zero does not cover
                             "other_out_of_range": max(n_oor - state.n_beyond, 0),
                             "law_set": state.n_beyond_law_set,
                             "dt_sensitive_steps": state.n_dt_sensitive,
                             "source_bow_outs": state.n_beyond_source_set,
                             "clock_stresses": self._clock_beyond(material, params.mobility,
                                                                   geom)},
            "trace": np.array(trace), "snapshots": snaps, "geometry": geom,
            "params": params, "state": state.to("cpu"), "truncated": truncated, "wall_s": wall,
            "slip_moment": slip_moment(geom, params, state),
            "out_of_range_fraction": n_oor / max(evals, 1),
            "below_data_fraction": n_below / max(evals, 1) if below_known else None,
        }

    def _clock_beyond(self, material: Material, glide: MobilityLaw, geom: DDGeometry
                      ) -> int:
        """How many of the stresses a ``bow_out_clock`` read the glide law at before the
        run lie beyond its stress range (each source's strength with ``each_source``,
        else the mean source's): a faster law there would change the sources' clock. 0
        for the other rules (``bow_out``/``overstress`` are counted per step by the
        engine) and for a law without a finite top stress."""
        hi = law_top_stress_mpa(glide)
        if self.nucleation != "bow_out_clock" or hi is None:
            return 0
        if self.nucleation_clock_of == "each_source":
            return int(beyond_range(geom.src_tau, hi).sum())
        tau = torch.tensor([self.strengths(material)["source"]["mpa"] * 1e6])
        return int(beyond_range(tau, hi).sum())

    # ------------------------------------------------------------------ the stage
    def make(self, mobility: Artifact | str | Path, properties: Artifact | str | Path,
             out: str | Path, force: bool = False, mapper: Any = None) -> Artifact:
        """Run DD with the MobilityLaw artifact ``mobility`` and the material of the
        Properties artifact ``properties``; returns the DDRun artifact at ``out``.

        ``mapper`` (``scalebridge.workflows.engine.Mapper``, anything with
        ``map(fn, items)``) runs the realisations as independent tasks
        (:func:`run_realisation_task`); None: one after the other in this process. Each
        realisation's seed fixes it, so the artifact is the same either way."""
        mob_art = mobility if isinstance(mobility, Artifact) else read_artifact(
            mobility, kind="MobilityLaw")
        material = read_properties(properties)
        prop_input: Artifact | Path = properties if isinstance(properties, Artifact) else (
            Path(material.source))
        law = load_mobility(mob_art.path, out_of_range=self.out_of_range)
        if self.loading == "stress" and self.stress_rate_mpa_ns == 0 and \
                self.initial_stress_mpa == 0:
            raise SettingsError("stress control with zero stress: set initial_stress_mpa "
                                "or stress_rate_mpa_ns")

        limit = limiting_speeds(properties) if self.range_probe else None

        def build(work: Path) -> dict[str, Any]:
            gate = gate_mobility(law, mob_art.path, self.allow_failed_checks)
            summary = write_ddrun(self, material, law, work, mapper=mapper, limit=limit)
            summary["mobility_check"] = gate
            return summary

        return produce("DDRun", out, self, {"mobility": mob_art, "properties": prop_input},
                       build, force=force)


def gate_mobility(law: MobilityLaw, path: Path, allow_failed: bool) -> dict[str, Any]:
    """Refuse a mobility law that fails :func:`check_mobility` unless ``allow_failed``.

    Returns the record that goes into the DDRun summary (``mobility_check``): passed, the
    failure, and whether the user overrode it.

    Raises:
        MobilityCheckError: the law fails and ``allow_failed`` is False (one line naming
            the failed property and the setting that overrides).
    """
    try:
        check_mobility(law)
    except MobilityCheckError as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        if not allow_failed:
            raise MobilityCheckError(
                f"mobility law {path} failed {reason}; the DD refuses it (set "
                "allow_failed_checks = true in [dd.run] to run with it anyway)") from None
        log.warning("mobility law %s failed %s: used anyway (allow_failed_checks = true)",
                    path, reason)
        return {"passed": False, "failed": reason, "overridden": True}
    return {"passed": True, "failed": None, "overridden": False}


# ---------------------------------------------------------------------- outputs
def _write_csv(path: Path, header: list[str] | tuple[str, ...], rows: Any) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.10g}" if isinstance(v, float | np.floating) else v for v in r])


def resample(trace: np.ndarray, grid: np.ndarray, by: int) -> np.ndarray:
    """Interpolate a (steps, 6) trace (STRESS_STRAIN_COLUMNS) onto ``grid`` of column
    ``by`` (1 = strain, 0 = time); returns (len(grid), 6)."""
    x = trace[:, by]
    out = np.empty((len(grid), trace.shape[1]))
    for j in range(trace.shape[1]):
        out[:, j] = np.interp(grid, x, trace[:, j])
    out[:, by] = grid
    return out


def avalanches(trace: np.ndarray, threshold_mpa: float, loading: str) -> np.ndarray:
    """Avalanches of one trace, (k, 4): strain at start, stress drop (MPa), plastic strain
    jump, duration (s). Strain control: maximal runs of decreasing stress with a drop above
    the threshold. Stress control: runs where the plastic strain rate exceeds 3× its mean;
    the 'drop' column then holds the stress at the start."""
    t, e, sig, ep = trace[:, 0], trace[:, 1], trace[:, 2], trace[:, 3]
    events = []
    if loading == "strain":
        dec = np.diff(sig) < 0
        i = 0
        while i < len(dec):
            if dec[i]:
                j = i
                while j + 1 < len(dec) and dec[j + 1]:
                    j += 1
                drop = sig[i] - sig[j + 1]
                if drop >= threshold_mpa:
                    events.append((e[i], drop, ep[j + 1] - ep[i], t[j + 1] - t[i]))
                i = j + 1
            else:
                i += 1
    else:
        dt = np.diff(t)
        rate = np.diff(ep) / np.where(dt > 0, dt, np.inf)
        fast = rate > 3 * max(float(np.mean(np.abs(rate))), 1e-300)
        i = 0
        while i < len(fast):
            if fast[i]:
                j = i
                while j + 1 < len(fast) and fast[j + 1]:
                    j += 1
                events.append((e[i], sig[i], ep[j + 1] - ep[i], t[j + 1] - t[i]))
                i = j + 1
            else:
                i += 1
    return np.array(events).reshape(-1, 4)


def power_law_exponent(x: np.ndarray, xmin: float) -> tuple[float, float]:
    """Maximum-likelihood exponent α of p(x) ∝ x^-α for x ≥ xmin, and its standard error
    (Clauset, Shalizi & Newman 2009); (nan, nan) with fewer than 5 events."""
    x = x[x >= xmin]
    if len(x) < 5:
        return math.nan, math.nan
    a = 1.0 + len(x) / float(np.sum(np.log(x / xmin)))
    return a, (a - 1.0) / math.sqrt(len(x))


def run_realisation_task(task: dict[str, Any]) -> dict[str, Any]:
    """A fan-out task: one DD realisation.

    Args:
        task: ``{"settings": DDSettings, "material": Material, "law": MobilityLaw,
            "seed": int}`` (all picklable).

    Returns:
        :meth:`DDSettings.run_realisation`'s result without ``params`` (it holds the
        law, which need not travel back) but with the nucleation time it ran with,
        ``nucleation_time_s``.
    """
    res = task["settings"].run_realisation(task["material"], task["law"], task["seed"])
    res["nucleation_time_s"] = res.pop("params").nucleation_time_s
    return res


def conditions_of(settings: DDSettings) -> tuple[list[tuple[float, float]], int]:
    """The loading conditions (strain rate, temperature) of a run and the index of the
    reference one: the study's grid point with the rate nearest ``strain_rate_s`` (in
    log) and the temperature nearest ``temperature_k``; without a study, the one."""
    if settings.study is None:
        return [(settings.strain_rate_s, settings.temperature_k)], 0
    st = settings.study
    rate = min(st.strain_rates_s, key=lambda r: abs(math.log(r / settings.strain_rate_s)))
    temp = min(st.temperatures_k, key=lambda t: abs(t - settings.temperature_k))
    conds = st.conditions()
    return conds, conds.index((rate, temp))


def condition_settings(settings: DDSettings, rate: float, temp: float) -> DDSettings:
    """The settings of one condition of a study (itself without a study)."""
    if settings.study is None:
        return settings
    return settings.model_copy(update={"strain_rate_s": rate, "temperature_k": temp,
                                       "study": None})


def mobility_record(settings: DDSettings, material: Material, law: MobilityLaw,
                    temps: list[float]) -> dict[str, Any]:
    """Which law drove the run, for which character and why, and whether it feels the
    temperature over ``temps`` (at the mean source strength); for a linear drag law its
    threshold stress τ₀ at each of ``temps`` (``threshold_mpa`` and
    ``threshold_over_mu``, keyed ``"<T>K"``)."""
    glide, why = settings.glide_law(material, law)
    tau = settings.strengths(material)["source"]["mpa"] * 1e6
    pair = (min(temps), max(temps)) if len(temps) > 1 else (temps[0], temps[0] + 100.0)
    sens = temperature_sensitivity(law, glide.character, tau, pair)
    lo, hi = law.valid_range.temperature_k
    rec = {"law": law.name, "glide": glide.name, "character": CHARACTERS[glide.character],
           "why": why, "law_temperature_range_k": [lo, hi if math.isfinite(hi) else None],
           "velocity_change_between_k": list(pair), "velocity_change": sens}
    inner = glide.law
    if isinstance(inner, LinearDragMobility):     # the threshold (friction) stress
        t0 = {f"{t:g}K": float(inner.threshold(torch.tensor([float(t)], dtype=torch.float64),
                                                torch.tensor([glide.character]))[0]) * 1e-6
              for t in temps}
        rec["threshold_mpa"] = t0
        rec["threshold_over_mu"] = {k: v * 1e6 / material.mu_pa for k, v in t0.items()}
        if not math.isfinite(sens):
            rec["velocity_change_note"] = (
                f"the mean source strength {tau * 1e-6:.3g} MPa is below the threshold "
                f"stress at {pair[0]:g} K: no glide there to compare")
    if any(t < lo or t > hi for t in temps):
        rec["temperature_note"] = (
            f"the law covers T in [{lo:g}, {hi:g}] K; the run's temperatures "
            f"{[float(t) for t in temps]} K reach outside it (a neural law is clamped "
            "there: no temperature dependence beyond its data)")
    return rec


def below_data_summary(glide: GlideCharacterMobility, fractions: list[float | None],
                       temperature_k: float, source_strengths_pa: np.ndarray | None = None
                       ) -> dict[str, Any]:
    """The DD's mobility evaluations below the lowest |τ| > 0 the law's data measured
    for the glide character (``fractions``: each realisation's share of its evaluations,
    None where not known): ``below_data_fraction`` (the worst realisation's, over the
    study, as ``out_of_range_fraction``), ``below_data_fraction_mean`` and ``below_data``,
    a record of that lowest stress, the character and what the law does below it
    (``law_below``; a drag law's threshold at ``temperature_k``), the share of the
    sources (``source_strengths_pa``, every realisation's) weaker than that stress
    (``sources_below_fraction``: a clock of bow-out times or a bow-out at the source's
    strength asks the law there, outside the count), ``graded: False`` (an assumption of
    the law's form, not an error: neither refused nor clamped) and, where the fractions
    are not known, why (``note``)."""
    inner = glide.law
    while hasattr(inner, "law"):                     # the fitted law under any wrapper
        inner = inner.law
    lowest = glide.valid_range.lowest_tau_mpa(glide.character)
    rec: dict[str, Any] = {"character": CHARACTERS[glide.character],
                           "lowest_measured_mpa": lowest, "graded": False}
    known = [f for f in fractions if f is not None]
    if lowest is None or not known or len(known) != len(fractions):
        analytic = not math.isfinite(glide.valid_range.tau_range(glide.character)[1])
        rec["applicable"] = not analytic
        rec["note"] = ("not applicable: an analytic law, no data" if analytic else
                       "not known: the law's range does not record the lowest stress its "
                       "data measured (a law fitted before it was recorded)")
        return {"below_data_fraction": None, "below_data_fraction_mean": None,
                "below_data": rec}
    if isinstance(inner, LinearDragMobility):
        t0 = float(inner.threshold(torch.tensor([float(temperature_k)], dtype=torch.float64),
                                   torch.tensor([glide.character]))[0]) * 1e-6
        rec["law_below"] = (f"the drag line extrapolated to its threshold τ0 = {t0:.3g} MPa "
                            f"at {temperature_k:g} K" if t0 > 0 else
                            "the drag line extrapolated to v(0) = 0")
    elif inner.name == "NeuralMobility":
        rec["law_below"] = "interpolated to v(0) = 0 by the law's zero-threshold form"
    else:
        rec["law_below"] = f"the {inner.name} law's own form down to v(0) = 0"
    if source_strengths_pa is not None and np.size(source_strengths_pa):
        rec["sources_below_fraction"] = float(np.mean(
            np.abs(source_strengths_pa) < lowest * 1e6 * BELOW_DATA_FACTOR))
    return {"below_data_fraction": float(max(known)),
            "below_data_fraction_mean": float(np.mean(known)), "below_data": rec}


def limiting_speeds(properties: Artifact | str | Path) -> dict[str, Any]:
    """The range probe's limiting speeds: ``{"m_s": (edge, screw) m/s, "source": str}``
    from the Properties' C_ij (the transverse wave along each character's glide
    direction; else √(μ/ρ)): :func:`scalebridge.md.mobility.shear_wave_from_properties`.

    Raises:
        SettingsError: the Properties give no speed (no C_ij or μ with a0 and element)."""
    from scalebridge.md.mobility import shear_wave_from_properties

    path = _artifact_file(properties, "properties.json", "Properties")
    try:
        doc = json.loads(path.read_text())
        a0, element = float(doc["a0_a"]), str(doc["element"])
        lattice = str(doc.get("lattice") or "bcc").lower()
        speeds = [shear_wave_from_properties(doc, a0, element, lattice, c) for c in CHARACTERS]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SettingsError(f"range_probe: no limiting speed from {path}: {e!r} (it needs "
                            "a0_a, element and C_ij or shear_modulus_gpa)") from None
    if any(v is None or not v > 0 for v, _ in speeds):
        raise SettingsError(f"range_probe: {path} gives no sound speed (no C_ij or "
                            "shear_modulus_gpa)")
    return {"m_s": tuple(float(v) for v, _ in speeds),
            "source": {c: str(src) for c, (_, src) in zip(CHARACTERS, speeds, strict=True)}}


def write_ddrun(settings: DDSettings, material: Material, law: MobilityLaw, work: Path,
                mapper: Any = None, limit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run all realisations (of every condition) and write the DDRun files into
    ``work``; returns the summary.

    ``mapper``: runs the realisations as tasks (see :meth:`DDSettings.make`).
    ``limit``: :func:`limiting_speeds`, with ``range_probe`` (required then; with
    "auto" even where the probe does not run: it is known before the study runs)."""
    if settings.range_probe and limit is None:
        raise SettingsError("range_probe needs the limiting speeds (limiting_speeds)")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strain_mode = settings.loading == "strain"
    end = settings.final_strain if strain_mode else settings.final_time_ns * 1e-9
    grid = np.linspace(0.0, end, settings.output_points)
    by = 1 if strain_mode else 0
    conds, ref = conditions_of(settings)
    n_real = settings.realisations
    cond_settings = [condition_settings(settings, r, t) for r, t in conds]
    # rates ascending: the slowest conditions (most steps) start first
    tasks = [{"settings": cs, "material": material, "law": law, "seed": settings.seed + k}
             for cs in cond_settings for k in range(n_real)]
    n_main = len(tasks)
    if settings.drag_probe:         # the reference condition again, with B x drag_probe
        scaled = DragScaledMobility(law, settings.drag_probe)
        tasks += [{"settings": cond_settings[ref], "material": material, "law": scaled,
                   "seed": settings.seed + k} for k in range(n_real)]
    range_tasks: list[dict[str, Any]] = []
    if settings.range_probe:        # ... and with c_t beyond the law's range
        assert limit is not None
        # the bound goes under the glide character's choice (edge or screw c_t)
        bounded = (GlideCharacterMobility(LimitSpeedMobility(law.law, limit["m_s"]),
                                          law.character)
                   if isinstance(law, GlideCharacterMobility)
                   else LimitSpeedMobility(law, limit["m_s"]))
        range_tasks = [{"settings": cond_settings[ref], "material": material,
                        "law": bounded, "seed": settings.seed + k} for k in range(n_real)]
    auto = settings.range_probe == "auto"
    if not auto:                    # one fan-out with the study
        tasks += range_tasks
    done = (f"DD: realisations done ({len(conds)} conditions x {n_real}"
            + (f" + {n_real} with B x {settings.drag_probe:g}" if settings.drag_probe
               else "")
            + (f" + {n_real} with c_t beyond the law's range" if settings.range_probe
               and not auto else "") + ")")
    runs = _run_tasks(tasks, mapper, done, len(conds))
    n_drag = n_real if settings.drag_probe else 0
    runs, probe_runs, range_runs = (runs[:n_main], runs[n_main:n_main + n_drag],
                                    runs[n_main + n_drag:])
    # "auto": the probe only where some run's evaluations beyond the range reached its
    # dynamics; else the change is exactly zero by construction
    law_set_runs = [i for i, r in enumerate(runs) if _beyond_reached(r)]
    range_exact_zero = auto and not law_set_runs
    if auto and law_set_runs:
        range_runs = _run_tasks(range_tasks, mapper,
                                f"DD: range probe done ({n_real} with c_t beyond the "
                                "law's range)", 1)
    all_tables = []
    for i, res in enumerate(runs):
        tab = resample(res["trace"], grid, by)
        all_tables.append(tab)
        rdir = work / "realisations" / str(i)
        rdir.mkdir(parents=True)
        _write_csv(rdir / "stress_strain.csv", STRESS_STRAIN_COLUMNS, tab)
        snap_rows = []
        for frame, t, e, x, y, sg, sy in res["snapshots"]:
            snap_rows.extend((frame, t, e, xi, yi, int(si), int(ci))
                             for xi, yi, si, ci in zip(x, y, sg, sy, strict=True))
        _write_csv(rdir / "snapshots.csv", ("frame", "time_s", "strain", "x_m", "y_m", "sign",
                                            "system"), snap_rows)
    events = [avalanches(r["trace"], settings.avalanche_threshold_mpa, settings.loading)
              for r in runs]

    # the reference condition: the contract files and the headline numbers
    ref_runs = runs[ref * n_real:(ref + 1) * n_real]
    tables = all_tables[ref * n_real:(ref + 1) * n_real]
    aval_rows = [(k, *ev) for k, evs in enumerate(events[ref * n_real:(ref + 1) * n_real])
                 for ev in evs]
    mean = np.mean(tables, axis=0)
    _write_csv(work / "stress_strain.csv", STRESS_STRAIN_COLUMNS, mean)
    _write_csv(work / "density_strain.csv", ("strain", "density_m2", "density_std_m2"),
               zip(mean[:, 1], mean[:, 4], np.std([t[:, 4] for t in tables], axis=0),
                   strict=True))
    _write_csv(work / "avalanches.csv", ("realisation", "strain", "stress_drop_mpa",
                                          "plastic_strain_jump", "duration_s"), aval_rows)

    # plots, each with its CSV beside it; a realisation named by its folder
    ref_labels = [realisation_label(i, sd) for i, sd in
                  reference_realisations(ref, n_real, settings.seed)]
    fig = stress_strain_figure(
        tables, mean, ref_labels,
        "shear strain γ" if strain_mode else "shear strain γ (elastic + plastic)",
        f"reference condition {conds[ref][0]:.3g}/s, {conds[ref][1]:g} K"
        if len(conds) > 1 else None)
    save_figure(fig, work / "stress_strain.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(mean[:, 1], mean[:, 4], "k")
    ax.set_xlabel("strain")
    ax.set_ylabel("dislocation density (m$^{-2}$)")
    fig.tight_layout()
    save_figure(fig, work / "density_strain.png", dpi=120)
    plt.close(fig)

    drops = np.array([r[2] if strain_mode else r[3] for r in aval_rows])
    boot = settings.study.avalanche_bootstrap if settings.study else 200
    min_tail = settings.study.avalanche_min_tail if settings.study else 50
    fit = fit_power_law(drops, min_tail, boot, settings.seed)
    alpha, alpha_err = fit["alpha"], fit["alpha_err"]
    xs = np.sort(drops)[::-1]
    ccdf = np.arange(1, len(xs) + 1) / max(len(xs), 1)
    _write_csv(work / "avalanche_ccdf.csv", ("size", "ccdf"), zip(xs, ccdf, strict=True))
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    if len(xs):
        ax.loglog(xs, ccdf, ".")
    ax.set_xlabel("stress drop (MPa)" if strain_mode else "plastic strain jump")
    ax.set_ylabel("P(drop ≥ x)" if strain_mode else "P(jump ≥ x)")
    # α is the exponent of the drop-size density p(x) ~ x^-α: this CCDF falls as x^(1-α)
    ax.set_title(f"{len(xs)} avalanches, p(size) ∝ size^-α, α = {alpha:.2f} ± "
                 f"{alpha_err:.2f}" if math.isfinite(alpha) else f"{len(xs)} avalanches",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, work / "avalanches.png", dpi=120)
    plt.close(fig)

    frame, t, e, x, y, sg, sy = ref_runs[0]["snapshots"][-1]
    _write_csv(work / "snapshot.csv", ("x_m", "y_m", "sign", "system"),
               zip(x, y, sg.astype(int), sy, strict=True))
    geom0: DDGeometry = ref_runs[0]["geometry"]
    fig = snapshot_figure(x, y, sg, sy, geom0.angles.tolist(), geom0.lx, geom0.ly,
                          f"{ref_labels[0]}, strain {e:.2e}")
    save_figure(fig, work / "snapshot.png", dpi=120)
    plt.close(fig)

    # the study: σ(ε_p, ε̇, T) with the realisation scatter, ρ, avalanche statistics
    study_summary = None
    if strain_mode:
        cond_objs = []
        for ci, (rate, temp) in enumerate(conds):
            sl = slice(ci * n_real, (ci + 1) * n_real)
            cond_objs.append(Condition(
                rate, temp, tables=all_tables[sl], traces=[r["trace"] for r in runs[sl]],
                events=events[sl], final_n=[r["state"].n for r in runs[sl]],
                flow_mpa=[tail_mean(tab, 2, strain_mode) for tab in all_tables[sl]]))
        st = settings.study or DDStudySettings(strain_rates_s=[settings.strain_rate_s],
                                               temperatures_k=[settings.temperature_k])
        study_summary = write_study(work / "study", cond_objs, st, settings.output_points,
                                    settings.seed)

    # headline numbers
    flow_mpa = tail_mean(mean, 2, strain_mode)
    rho_end = tail_mean(mean, 4, strain_mode)
    flows = [tail_mean(tab, 2, strain_mode) for tab in tables]
    drag_sensitivity = None
    if probe_runs:
        probe_flows = [tail_mean(resample(r["trace"], grid, by), 2, strain_mode)
                       for r in probe_runs]
        drag_sensitivity = drag_probe_result(flows, probe_flows, float(settings.drag_probe))
        _write_csv(work / "drag_probe.csv", ("realisation", "flow_stress_mpa",
                                             "flow_stress_probe_mpa", "dlnsigma_dlnb"),
                   [(k, f0, f1, s) for k, (f0, f1, s) in enumerate(zip(
                       flows, probe_flows, drag_sensitivity.pop("per_realisation"),
                       strict=True))])
    range_sensitivity = None
    if range_runs:
        assert limit is not None
        range_flows = [tail_mean(resample(r["trace"], grid, by), 2, strain_mode)
                       for r in range_runs]
        range_sensitivity = range_probe_result(
            flows, range_flows, limit, [r["out_of_range_fraction"] for r in ref_runs],
            [r["out_of_range_fraction"] for r in range_runs])
        range_sensitivity.update(
            dt_quantile=settings.dt_quantile, run=True, exact_zero=False,
            out_of_range_law_set_fraction=float(np.mean(
                [r["out_of_range_law_set_fraction"] for r in ref_runs])))
        if auto:
            counts = {k: sum(runs[i]["beyond_range"][k] for i in law_set_runs)
                      for k in ("law_set", "source_bow_outs", "clock_stresses")}
            what = ", ".join(
                f"{counts[k]} {name}" for k, name in (
                    ("law_set", "glide evaluations whose velocity reached the dynamics"),
                    ("source_bow_outs", "source bow-outs timed there"),
                    ("clock_stresses", "nucleation clock strengths read there"))
                if counts[k])
            range_sensitivity["why_run"] = (
                f"range_probe = 'auto': {len(law_set_runs)} of {len(runs)} runs of the "
                f"study had evaluations beyond the law's stress range that reached the "
                f"dynamics ({what})")
        _write_csv(work / "range_probe.csv", ("realisation", "flow_stress_mpa",
                                              "flow_stress_probe_mpa", "rel_change",
                                              "out_of_range_fraction",
                                              "out_of_range_law_set_fraction"),
                   [(k, f0, f1, d, r["out_of_range_fraction"],
                     r["out_of_range_law_set_fraction"])
                    for k, (f0, f1, d, r) in enumerate(zip(
                        flows, range_flows, range_sensitivity.pop("per_realisation"),
                        ref_runs, strict=True))])
    elif range_exact_zero:
        assert limit is not None
        range_sensitivity = range_exact_zero_result(runs, limit, len(conds), n_real,
                                                    settings.dt_quantile)
    smax = float(geom0.schmid.abs().max())
    alpha_taylor = (flow_mpa * 1e6 * smax / (material.mu_pa * material.b_m * math.sqrt(rho_end))
                    if rho_end > 0 else math.nan)
    strengths = settings.strengths(material)
    mobility = mobility_record(settings, material, law, sorted({c[1] for c in conds}))
    clocks = [_clock_record(cs.nucleation_clock(material, law)) for cs in cond_settings]
    run_doc = {
        "loading": {"mode": settings.loading, "component": settings.component,
                    "resolved": "shear" if settings.component == "shear_xy" else "tension",
                    "strain_rate_s": conds[ref][0] if strain_mode else None,
                    "stress_rate_mpa_ns": None if strain_mode else settings.stress_rate_mpa_ns},
        "temperature_k": conds[ref][1],
        "shear_modulus_gpa": material.mu_pa * 1e-9, "poisson_ratio": material.nu,
        "burgers_a": material.b_m * 1e10, "lattice": material.lattice,
        "material_source": material.source,
        "mobility": law.name, "mobility_law": mobility,
        "strengths": strengths, "overrides": settings.overrides(),
        "nucleation": clocks[ref],
        "cell_um": [geom0.lx * 1e6, geom0.ly * 1e6],
        "slip_angles_deg": settings.slip_angles_deg,
        "conditions": [{"strain_rate_s": r if strain_mode else None, "temperature_k": t,
                        "realisations": list(range(ci * n_real, (ci + 1) * n_real)),
                        "nucleation_time_ns": clocks[ci]["time_ns"]}
                       for ci, (r, t) in enumerate(conds)],
        "reference_condition": ref,
        "realisations": [{
            "seed": settings.seed + i % n_real, "condition": i // n_real,
            "strain_rate_s": conds[i // n_real][0] if strain_mode else None,
            "temperature_k": conds[i // n_real][1],
            "steps": r["state"].n_steps,
            "wall_s": round(r["wall_s"], 3), "nucleated": r["state"].n_nucleated,
            "annihilated": r["state"].n_annihilated, "final_n": r["state"].n,
            "truncated": r["truncated"], "limited_moves": r["state"].n_limited,
            "out_of_range_fraction": r["out_of_range_fraction"],
            "out_of_range_law_set_fraction": r.get("out_of_range_law_set_fraction"),
            "beyond_range": r.get("beyond_range"),
            "below_data_fraction": r.get("below_data_fraction"),
            "plastic_strain": r["state"].plastic_strain,
            "plastic_strain_inserted": r["state"].inserted_strain,
            "plastic_strain_from_slip": r["slip_moment"]} for i, r in enumerate(runs)],
    }
    write_json_atomic(work / "run.json", _finite_or_none(run_doc))
    summary: dict[str, Any] = {
        # the headline numbers below are this condition's (the study's are under study)
        "reference_condition": {"strain_rate_s": conds[ref][0] if strain_mode else None,
                                "temperature_k": conds[ref][1]},
        "flow_stress_mpa": flow_mpa,
        "flow_stress_std_mpa": float(np.std(flows, ddof=1)) if len(flows) > 1 else 0.0,
        "density_end_m2": rho_end,
        "taylor_alpha": alpha_taylor, "plastic_strain_end": float(mean[-1, 3]),
        "n_avalanches": len(aval_rows), "avalanche_exponent": alpha,
        "avalanche_exponent_err": alpha_err,
        "steps": [r["state"].n_steps for r in ref_runs],
        "final_dislocations": [r["state"].n for r in ref_runs],
        "out_of_range_fraction": max(r["out_of_range_fraction"] for r in runs),
        "out_of_range_fraction_mean": float(np.mean([r["out_of_range_fraction"]
                                                     for r in runs])),
        "out_of_range_law_set_fraction": max(r["out_of_range_law_set_fraction"]
                                             for r in runs),
        "out_of_range_law_set_fraction_mean": float(np.mean(
            [r["out_of_range_law_set_fraction"] for r in runs])),
        "out_of_range_policy": settings.out_of_range,
        **below_data_summary(settings.glide_law(material, law)[0],
                             [r.get("below_data_fraction") for r in runs], conds[ref][1],
                             np.concatenate([r["geometry"].src_tau.cpu().numpy().ravel()
                                             for r in runs]) if runs else None),
        "truncated": any(r["truncated"] for r in runs),
        "mobility": mobility,
        "strengths_mpa": {"source": strengths["source"]["mpa"],
                          "source_std": strengths["source"]["std_mpa"],
                          "obstacle": strengths["obstacle"]["mpa"],
                          "junction": strengths["junction"]["mpa"]},
        "assumptions": {k: strengths[k]["from"] for k in strengths} | {
            "nucleation": (f"after {settings.nucleation_time_ns:g} ns above strength"
                           if settings.nucleation == "time" else
                           f"after {settings.nucleation_bow_outs:g} bow-out times of the "
                           + (f"mean source at the mobility law's v(τ̄_src): "
                              f"{clocks[ref]['time_ns']:.3g} ns"
                              if settings.nucleation_clock_of == "mean_source" else
                              "source at the mobility law's v at its strength: "
                              f"{clocks[ref]['time_ns']:.3g} ns for the mean source")
                           if settings.nucleation == "bow_out_clock" else
                           "bow-out: half the Frank-Read length at the mobility law's v(τ)"
                           if settings.nucleation == "bow_out" else
                           "bow-out at the mobility law's v(|τ| - τ_src): half the "
                           "Frank-Read length under the stress beyond the strength"),
            "cell_um": [round(geom0.lx * 1e6, 4), round(geom0.ly * 1e6, 4)],
            "source_density_m2": settings.source_density_m2,
            "obstacle_density_m2": settings.obstacle_density_m2},
        "overrides": settings.overrides(),
    }
    summary["nucleation"] = clocks[ref]
    summary["plastic_strain_inserted"] = inserted_share(ref_runs, runs, settings)
    if drag_sensitivity is not None:
        summary["drag_sensitivity"] = {
            **drag_sensitivity, "strain_rate_s": conds[ref][0] if strain_mode else None,
            "temperature_k": conds[ref][1],
            # the clock the probe's realisations ran with (their engine parameters)
            "nucleation_time_ns": probe_runs[0]["nucleation_time_s"] * 1e9}
    if range_sensitivity is not None:
        summary["range_sensitivity"] = {
            **range_sensitivity, "strain_rate_s": conds[ref][0] if strain_mode else None,
            "temperature_k": conds[ref][1]}
    if study_summary is not None and settings.study is not None:
        summary["study"] = study_summary
    return _finite_or_none(summary)


def _run_tasks(tasks: list[dict[str, Any]], mapper: Any, done: str, n_conds: int
               ) -> list[dict[str, Any]]:
    """:func:`run_realisation_task` of every task, on ``mapper`` (None: here, one after
    the other), in order."""
    if mapper is None:
        return [run_realisation_task(t) for t in track(tasks, done)]
    log.info("DD: %d realisations (%d conditions) on %s", len(tasks), n_conds,
             type(mapper).__name__)
    return mapper.map(run_realisation_task, tasks, description=done)


def _beyond_reached(run: dict[str, Any]) -> bool:
    """Whether any evaluation of the law beyond its stress range reached a run's
    dynamics by its value: a glide evaluation not held and not cut (or in a step whose
    time step it could set), a source's bow-out timed there, or a ``bow_out_clock``
    read there (:meth:`DDSettings.run_realisation`'s ``beyond_range``)."""
    b = run["beyond_range"]
    return bool(b["law_set"] or b["source_bow_outs"] or b["clock_stresses"])


def range_exact_zero_result(runs: list[dict[str, Any]], limit: dict[str, Any],
                            n_conds: int, n_real: int, dt_quantile: float
                            ) -> dict[str, Any]:
    """``range_sensitivity`` where ``range_probe = "auto"`` did not rerun: no evaluation
    beyond the law's stress range reached the dynamics of any of ``runs`` (every run of
    the study), so the probe's change is exactly zero by construction (``rel_change``
    and its error 0.0, ``run: false``, ``exact_zero: true``), with the exposure it
    covers (``out_of_range_fraction``: mean over ``runs``; ``_max``), the limiting
    speeds it would have used and why (``method``)."""
    oor = [r["out_of_range_fraction"] for r in runs]
    beyond = sum(r["beyond_range"]["beyond"] for r in runs)
    evals = sum(r["beyond_range"]["evaluations"] for r in runs)
    other = sum(r["beyond_range"].get("other_out_of_range", 0) for r in runs)
    c = limit["m_s"]
    return {
        "rel_change": 0.0, "rel_change_err": 0.0, "run": False, "exact_zero": True,
        "runs_checked": len(runs), "conditions": n_conds, "realisations": n_real,
        "out_of_range_fraction": float(np.mean(oor)),
        "out_of_range_fraction_max": float(max(oor)),
        "beyond_evaluations": int(beyond), "evaluations": int(evals),
        "other_out_of_range_evaluations": int(other),
        "covers_out_of_range": other == 0,
        "out_of_range_law_set_fraction": 0.0,
        "limit_m_s": dict(zip(CHARACTERS, c, strict=True)),
        "limit_source": limit["source"], "dt_quantile": dt_quantile,
        "method": (
            f"not rerun (range_probe = 'auto'): in every step of every run of the study "
            f"({n_conds} condition{'s' if n_conds != 1 else ''} x {n_real} "
            f"realisation{'s' if n_real != 1 else ''}) "
            + (f"each of the {beyond} mobility evaluations beyond the law's stress range "
               f"was cut to the per-step glide limit (max_glide) or held at an obstacle, "
               "and never set the time step ("
               + ("the fastest speed" if dt_quantile >= 1 else
                  f"the {dt_quantile:g} quantile of the speeds") + ")" if beyond else
               "no mobility evaluation was beyond the law's stress range")
            + ", and no source's bow-out or nucleation clock was timed beyond the "
            "range; so any velocity at least the law's there (the clamp's, c_t "
            "included) gives the same trajectories: the change is exactly zero by "
            "construction"
            + (f"; {other} evaluations outside the law's temperatures or characters "
               "(within its stresses) are an extrapolation this does not cover"
               if other else "")),
    }


def _clock_record(clock: dict[str, Any]) -> dict[str, Any]:
    """:meth:`DDSettings.nucleation_clock` for run.json and the summary: times in ns."""
    out = {k: v for k, v in clock.items() if not k.endswith("_s")}
    out["time_ns"] = None if clock["time_s"] is None else clock["time_s"] * 1e9
    if "bow_out_time_s" in clock:
        out["bow_out_time_ns"] = clock["bow_out_time_s"] * 1e9
    return out


def inserted_share(ref_runs: list[dict[str, Any]], runs: list[dict[str, Any]],
                   settings: DDSettings) -> dict[str, Any]:
    """Which part of the plastic strain the sources inserted (each firing's dipole,
    L_nuc = μb/(2π(1-ν)τ_src) wide, b m sign(τ_src) L_nuc / area: net) rather than glided
    at the mobility law's velocities: the share at the reference condition (mean over its
    realisations with plastic strain; ``None`` if none has any) and its range over every
    realisation. With ``nucleation="time"`` the insertions come on the typed clock,
    whatever the law; with ``"bow_out_clock"``, ``"bow_out"`` or ``"overstress"`` the
    law times them."""
    def share(r: dict[str, Any]) -> float:
        total = r["state"].plastic_strain
        return r["state"].inserted_strain / total if total else math.nan

    ref = [x for x in (share(r) for r in ref_runs) if math.isfinite(x)]
    every = [x for x in (share(r) for r in runs) if math.isfinite(x)]
    return {"share": float(np.mean(ref)) if ref else None,
            "share_min": float(min(every)) if every else None,
            "share_max": float(max(every)) if every else None,
            "without_plastic_strain": len(runs) - len(every),
            "timed_by": (f"the mobility law ({settings.nucleation.replace('_', '-')})"
                         if settings.nucleation in ("bow_out", "overstress")
                         else "the mobility law (a clock of "
                              f"{settings.nucleation_bow_outs:g} bow-out times of the "
                              + ("mean source" if settings.nucleation_clock_of == "mean_source"
                                 else "source") + " at its velocity)"
                         if settings.nucleation == "bow_out_clock"
                         else f"the nucleation clock ({settings.nucleation_time_ns:g} ns, "
                              "an assumption)"),
            "method": "each source firing inserts a dipole L_nuc = mu b / (2 pi (1 - nu) "
                      "tau_src) wide: b m sign(tau_src) L_nuc / area of plastic strain at "
                      "once; the share of the realisation's plastic strain those insertions "
                      "make, net (the rest is glide at the mobility law's velocities)"}


def reference_realisations(ref: int, n_real: int, seed: int) -> list[tuple[int, int]]:
    """(folder under ``realisations/``, seed) of each realisation of the reference
    condition ``ref``, as run.json lists them: every condition runs ``n_real`` seeds
    ``seed + k``, the folders numbered on over the conditions."""
    return [(i, seed + i % n_real) for i in range(ref * n_real, (ref + 1) * n_real)]


def realisation_label(folder: int, seed: int) -> str:
    """How a plot names a realisation: its folder under ``realisations/`` (where its
    CSVs are), with its seed."""
    return f"realisations/{folder} (seed {seed})"


def stress_strain_figure(tables: list[np.ndarray], mean: np.ndarray, labels: list[str],
                         xlabel: str, title: str | None) -> Figure:
    """``stress_strain.png`` (the caller saves and closes it): each realisation's
    stress-strain table (``STRESS_STRAIN_COLUMNS``), named by ``labels`` in the legend up
    to 8 of them, and their mean."""
    plt = pyplot()

    # the legend beside the axes: inside them it covered the flow the curves show
    fig, ax = plt.subplots(figsize=(6.6, 3.6))
    for tab, lab in zip(tables, labels, strict=True):
        ax.plot(tab[:, 1], tab[:, 2], lw=0.8, alpha=0.5,
                label=lab if len(tables) <= 8 else None)
    ax.plot(mean[:, 1], mean[:, 2], "k", lw=1.8, label="mean")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("applied shear stress τ (MPa)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def snapshot_figure(x: np.ndarray, y: np.ndarray, sign: np.ndarray, system: np.ndarray,
                    angles: list[float], lx: float, ly: float, title: str) -> Figure:
    """``snapshot.png`` (the caller saves and closes it): the dislocations at ``x``, ``y``
    (m) in the ``lx`` x ``ly`` cell, marked by slip system (``angles``, rad) and sign."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(5, 5 * ly / lx + 0.5))    # + room for the legend
    for k, ang in enumerate(angles):
        for sgn, mk in ((1, "^"), (-1, "v")):
            sel = (system == k) & (sign == sgn)
            ax.scatter(x[sel] * 1e6, y[sel] * 1e6, s=10, marker=mk, color=f"C{k}",
                       label=f"{math.degrees(ang):.0f}° {'+' if sgn > 0 else '-'}")
    ax.set_xlim(0, lx * 1e6)
    ax.set_ylim(0, ly * 1e6)
    ax.set_aspect("equal")
    ax.set_xlabel("x (μm)")
    ax.set_ylabel("y (μm)")
    ax.set_title(title)
    # below the axes (a column per slip system, + over -), so it covers no dislocation
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12),
              ncol=max(len(angles), 1), frameon=False)
    fig.tight_layout()
    return fig


def _paired(flows: list[float], probe_flows: list[float], per: np.ndarray, key: str
            ) -> dict[str, Any]:
    """The statistics two probes share: ``per`` (n,) a per-pair effect (NaN where a pair
    has none): its mean as ``key``, the standard error of the mean as ``key_err`` (None
    with one pair), the mean flow stresses, the pairs used, ``per_realisation``."""
    good = per[np.isfinite(per)]
    return {key: float(np.mean(good)) if good.size else None,
            f"{key}_err": (float(np.std(good, ddof=1) / math.sqrt(good.size))
                           if good.size > 1 else None),
            "flow_stress_mpa": float(np.mean(flows)),
            "flow_stress_probe_mpa": float(np.mean(probe_flows)),
            "realisations": int(good.size), "per_realisation": per.tolist()}


def drag_probe_result(flows: list[float], probe_flows: list[float], factor: float
                      ) -> dict[str, Any]:
    """dln σ/dln B from paired realisations (same seeds) at B and B·``factor``: per
    realisation ln(σ'/σ)/ln(factor); its mean, the standard error of the mean over the
    realisations (None with one), the mean flow stresses, and ``per_realisation`` (NaN
    where a flow stress is not positive)."""
    f0, f1 = np.asarray(flows, float), np.asarray(probe_flows, float)
    ok = (f0 > 0) & (f1 > 0)
    per = np.full(f0.shape, np.nan)
    per[ok] = np.log(f1[ok] / f0[ok]) / math.log(factor)
    return {"factor": factor, **_paired(f0, f1, per, "dlnsigma_dlnb"),
            "method": f"the reference condition's realisations rerun (same seeds) with "
                      f"every velocity / {factor:g} (B x {factor:g}): mean of "
                      f"ln(sigma'/sigma)/ln({factor:g}) over the pairs"}


def range_probe_result(flows: list[float], probe_flows: list[float], limit: dict[str, Any],
                       out_of_range: list[float], replaced: list[float]) -> dict[str, Any]:
    """The flow stress's relative change σ'/σ − 1 from paired realisations (same seeds)
    with the law as it is beyond its range (``flows``: clamped, for a neural law) and at
    the limiting speed there (``probe_flows``): per realisation, their mean and the
    standard error of the mean (None with one), the mean flow stresses, the limiting
    speeds and their sources, the mean fraction of evaluations beyond the range in the
    runs (``out_of_range``, as the law counted them) and in the probe's (``replaced``: the
    evaluations it set to c_t), and ``per_realisation``."""
    f0, f1 = np.asarray(flows, float), np.asarray(probe_flows, float)
    per = np.full(f0.shape, np.nan)
    ok = f0 > 0
    per[ok] = f1[ok] / f0[ok] - 1.0
    c = limit["m_s"]
    return {**_paired(f0, f1, per, "rel_change"),
            "limit_m_s": dict(zip(CHARACTERS, c, strict=True)),
            "limit_source": limit["source"],
            "out_of_range_fraction": float(np.mean(out_of_range)),
            "replaced_fraction": float(np.mean(replaced)),
            "method": "the reference condition's realisations rerun (same seeds) with every "
                      "mobility evaluation beyond the law's stress range at the limiting "
                      "speed c_t: mean of sigma'/sigma - 1 over the pairs"}


def _finite_or_none(d: Any) -> Any:
    """NaN/inf -> None (nested), so manifests stay strict JSON."""
    if isinstance(d, dict):
        return {k: _finite_or_none(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_finite_or_none(v) for v in d]
    if isinstance(d, float | np.floating):
        return float(d) if math.isfinite(d) else None
    return d


__all__ = [
    "STRESS_STRAIN_COLUMNS",
    "DDSettings",
    "DDStudySettings",
    "avalanches",
    "below_data_summary",
    "condition_settings",
    "conditions_of",
    "drag_probe_result",
    "gate_mobility",
    "limiting_speeds",
    "mobility_record",
    "power_law_exponent",
    "range_exact_zero_result",
    "range_probe_result",
    "resample",
    "run_realisation_task",
    "tail_mean",
    "write_ddrun",
]
