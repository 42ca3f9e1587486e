"""Dislocation velocity vs resolved shear stress, temperature and character.

Each grid task is one replica of one point (τ, T, character):
:meth:`MobilityMaker.run_point` (a function of one task, so ``workflows`` fans the grid
out, replicas included; with screws, one more task measures the 0 K Peierls stress).
Replicas differ in their velocity and thermostat seeds and in their relaxed start (the
mobile atoms are displaced at random before relaxing). :meth:`MobilityMaker.make` runs
the grid itself, or collects rows computed elsewhere, into a ``DefectStats`` artifact
(docs/CONTRACTS.md):

- ``replicas.csv``: one row per run: block-averaged velocity and error, per-component
  temperature, ``status``/``reason``, the velocities of the first and second halves of
  the fitted frames;
- ``velocity.csv``: one row per point: the replicas combined
  (:func:`~scalebridge.md.glide_fit.combine_replicas`) with the standard error and the
  95% confidence and prediction half-widths, and ``acceleration_ratio`` (median
  first-half / second-half velocity, :func:`acceleration_ratio`: below 1, the glide
  still accelerates and the velocity is below steady state) with
  ``acceleration_ratio_err`` (its standard error from the replicas' scatter,
  :func:`~scalebridge.md.glide_fit.half_ratio_err`: the fitted window's noise) on
  ``acceleration_ratio_dof`` (the replicas with a ratio, less one), and ``velocity_dof``
  (the dof of the point's error: its replicas less one, or its blocks'); a
  point that cannot be measured (its dislocation lost, gone, off its plane or too hot
  in most replicas, or its velocity below its error or against the stress) has
  ``status`` ≠ ``ok``, a ``reason`` and no velocity;
- ``glide_fit.json`` and ``drag.csv``: the laws of :mod:`scalebridge.md.glide_fit` fitted
  to the measured points (edge drag B(T), τ₀(T) with intervals and whether B has a
  trend with T; screw kink-pair ΔH₀, τ_P; the 0 K Peierls stress);
- ``velocity_stress.png`` (+ CSV) and the glide dumps in ``dumps/`` (OVITO opens them).

Slab sizes are settings in Burgers vectors, so a metal with a larger lattice gets a
proportionally larger cell.

The crystal decides the slab: BCC 1/2<111>{110} or FCC 1/2<110>{111} dislocations
(``lattice``: set, else the Properties' relaxed crystal, else the data set's or the
potential's, :func:`~scalebridge.md.properties.resolve_crystal`). In FCC the dislocation
splits into two Shockley partials: one more task per character relaxes its slab at 0 K
(:func:`~scalebridge.md.dislocations.relaxed_dissociation`), and ``dissociation.csv``
gives the stacking-fault width beside the isotropic elastic estimate from the
Properties' γ_SF, μ and ν (:func:`~scalebridge.md.dislocations.
elastic_partial_separation`), and the mean width while gliding; the glide laws are the
same fit as in BCC (for screws a drag law; the kink-pair law is BCC only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator
from scalebridge.artifacts import Artifact, produce, write_json_atomic
from scalebridge.artifacts import finite_or_none as _num
from scalebridge.errors import SettingsError
from scalebridge.md.dislocations import (
    elastic_partial_separation,
    peierls_stress,
    periodic_row_separation,
    relaxed_dissociation,
    run_glide,
    slab_axes,
)
from scalebridge.md.glide_fit import (
    REL_ERROR,
    combine_replicas,
    fit_glide_laws,
    half_ratio_err,
    tau0_measured,
)
from scalebridge.md.lammps import (
    DeviationSettings,
    LammpsPotential,
    as_potential,
    driven_by,
    ensemble_size,
    potential_inputs,
)
from scalebridge.md.properties import burgers_length
from scalebridge.md.tables import pyplot, write_rows
from scalebridge.plotting import save_figure
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.md.mobility")

#: ``velocity.csv``: one row per (character, T, τ) point.
VELOCITY_COLUMNS = ("character", "temperature_k", "tau_mpa", "velocity_m_s",
                    "velocity_err_m_s", "velocity_ci95_m_s", "velocity_pi95_m_s",
                    "replicas", "replicas_ok", "error_source", "glide_temperature_k",
                    "status", "reason", "n_atoms", "duration_ps", "acceleration_ratio",
                    "max_devi_f_ev_a", "acceleration_ratio_err", "acceleration_ratio_dof",
                    "velocity_dof")
#: ``replicas.csv``: one row per glide run.
REPLICA_COLUMNS = ("character", "temperature_k", "tau_mpa", "replica", "seed", "member",
                   "velocity_m_s", "velocity_err_m_s", "block_dof", "naive_err_m_s",
                   "temperature_x_k", "temperature_y_k", "temperature_z_k", "status",
                   "reason", "line_b", "n_atoms", "duration_ps", "sf_width_a",
                   "velocity_first_half_m_s", "velocity_second_half_m_s",
                   "max_devi_f_ev_a")
#: ``dissociation.csv`` (FCC): one row per character.
DISSOCIATION_COLUMNS = ("character", "width_a", "width_b", "width_glide_a",
                        "elastic_width_a", "elastic_width_periodic_a", "ratio_to_elastic",
                        "glide_period_a", "partials", "gamma_sf_mj_m2", "shear_modulus_gpa",
                        "poisson_ratio", "status", "reason")
DRAG_COLUMNS = ("character", "temperature_k", "n_points", "drag_pa_s", "drag_err_pa_s",
                "drag_ci95_lo_pa_s", "drag_ci95_hi_pa_s", "tau0_mpa", "tau0_ci95_lo_mpa",
                "tau0_ci95_hi_mpa", "tau0_fixed", "saturation_m_s", "saturation_source",
                "burgers_a")

#: Shortest screw line (in Burgers vectors) whose thermally activated glide is by kink
#: pairs; shorter lines move as one rigid segment (session 3: a 3 b line at 300 K, 1200 MPa
#: hopped back and forth, 27 m/s against 323 m/s at 100 K).
MIN_SCREW_LINE_B = 20


class GlidePoint(BaseModel):
    """One task of the grid: one replica of a glide point, or (``kind = "peierls"``)
    the 0 K Peierls stress of the screw."""

    character: Literal["edge", "screw"]
    temperature_k: float
    tau_mpa: float
    replica: int = 0
    kind: Literal["glide", "peierls", "dissociation"] = "glide"

    @property
    def tag(self) -> str:
        if self.kind == "peierls":
            return f"{self.character}_peierls_0K"
        if self.kind == "dissociation":
            return f"{self.character}_dissociation_0K"
        return (f"{self.character}_T{self.temperature_k:g}_tau{self.tau_mpa:g}"
                f"_r{self.replica}")


class MobilityMaker(StrictModel):
    """Glide of straight dislocations (BCC 1/2<111>, FCC 1/2<110>) under constant
    resolved shear stress."""

    element: str = Field("Mo", description="chemical element")
    lattice: Literal["bcc", "fcc"] | None = Field(
        None, description="crystal: bcc (1/2<111>{110}) or fcc (1/2<110>{111}, dissociated "
        "into Shockley partials); None: the Properties' relaxed crystal, else the data "
        "set's or the potential's")
    characters: list[Literal["edge", "screw"]] = Field(
        default_factory=lambda: ["edge", "screw"], description="dislocation characters")
    temperatures_k: list[float] = Field(default_factory=lambda: [100.0, 300.0, 600.0],
                                        description="temperatures, K")
    taus_mpa: list[float] = Field(default_factory=lambda: [200.0, 500.0, 1000.0],
                                  description="resolved shear stresses, MPa")
    screw_taus_mpa: list[float] | None = Field(
        None, description="stresses for screws if different (their Peierls stress is "
        "much higher), MPa")
    edge_cell_b: tuple[float, float, float] = Field(
        (2.8, 7.0, 16.0), description="edge slab (line, normal, glide) lengths in Burgers "
        "vectors (the line repeats every 2.83 b)")
    screw_cell_b: tuple[float, float, float] = Field(
        (20.0, 7.0, 12.0), description=f"screw slab (line, normal, glide) lengths in Burgers "
        f"vectors; the line at least {MIN_SCREW_LINE_B} b (kink pairs)")
    replicas: int = Field(3, ge=1, description="independent runs per (character, T, τ) "
                          "point (other seeds and relaxed start)")
    screw_replicas: int | None = Field(
        None, ge=2, description="replicas per screw point if different (a screw run costs "
        "several edge runs); None: replicas")
    blocks: int = Field(5, ge=2, description="blocks of the block-averaged velocity of "
                        "one run")
    perturb_a: float = Field(0.05, ge=0, le=0.3, description="random displacement (± Å per "
                             "component) of the mobile atoms before each run's relaxation")
    equil_steps: int = Field(500, ge=0, description="MD steps of thermalisation before "
                             "the measured run (loaded unless load_at = 'run')")
    run_steps: int = Field(3000, ge=10, description="MD steps of the measured run (dumped, "
                           "fitted from fit_from)")
    # Why the load goes on with the thermalisation: a suddenly loaded edge dislocation
    # (mlearn Mo SNAP, 300 K, 250 MPa, default cell) sits 0.3-1 ps (by seed), then
    # accelerates with a ~1 ps time constant (1-ps windows after the load: 130, 740,
    # 1010, 1200, 1250 m/s; its effective mass over its drag: pre-shearing the slab to the
    # loaded strain changed nothing). The example's 200 + 1000 steps measured 585 +- 174
    # m/s loading after the thermalisation, 811 +- 95 (second seed 872 +- 179) loading
    # with it (fit 1.0-2.4 ps after the load), against 1020-1280 once steady (3-5 ps):
    # same steps, less of the transient in the fit, still ~25 % low at that length.
    load_at: Literal["thermalisation", "run"] = Field(
        "thermalisation", description="switch the load on at the start of the "
        "thermalisation (its equil_steps count toward the dislocation's ~2-3 ps "
        "acceleration to steady glide) or with the measured run (τ = 0 before)")
    dump_every: int = Field(50, ge=1, description="dump/locate every N steps")
    devi: DeviationSettings = Field(
        default_factory=DeviationSettings, description="model deviation of an ensemble "
        "along each glide run (the loaded core is where a learned potential extrapolates "
        "first): every out_freq steps; the md verdict grades its maximum")
    timestep_ps: float = Field(0.002, gt=0, le=0.005, description="MD timestep, ps")
    damp_ps: float = Field(0.1, gt=0, description="thermostat time constant, ps")
    thermostat: Literal["all", "normal"] = Field(
        "all", description="thermostat all components of the thermal velocities (flow "
        "profile removed) or only the normal (y) ones")
    max_temperature_deviation: float = Field(
        0.2, gt=0, description="flag a run whose glide-direction temperature is off the "
        "target by more than this fraction")
    fit_from: float = Field(0.3, ge=0, lt=0.9,
                            description="fraction of the loaded run skipped before the fit")
    seed: int = Field(4928, ge=1, description="velocity and thermostat seed of replica 0 "
                      "(replica r: seed + 7919 r)")
    ensemble_replicas: bool = Field(
        True, description="replica r runs on the potential ensemble's member r mod n (the "
        "others give the model deviation), so the replica scatter, and the velocity and "
        "drag errors from it, carry the ensemble's spread; false: member 0 drives every run")
    drag_fit_max_tau_mpa: float | None = Field(
        None, description="fit the glide laws only up to this stress, MPa")
    shear_wave_m_s: float | None = Field(
        None, gt=0, description="shear-wave speed, m/s, a candidate saturation speed of "
        "the edge law (default: from the Properties, the transverse wave along the glide "
        "direction polarised along the slip-plane normal, rho v^2 = C'_1212 from C11, C12, "
        "C44; sqrt(mu/rho) where they have no C_ij)")
    boundary: Literal["rigid", "traction"] = Field(
        "rigid", description="rigid loaded blocks (far-field built) or traction on free "
        "surfaces")
    peierls_0k: bool = Field(True, description="with screws, also measure the 0 K Peierls "
                             "stress by quasi-static loading of the screw cell")
    peierls_step_mpa: float = Field(50.0, gt=0, description="stress increment of the 0 K "
                                    "loading, MPa")
    peierls_max_mpa: float = Field(5000.0, gt=0, description="highest stress of the 0 K "
                                   "loading, MPa")

    @model_validator(mode="after")
    def _screw_line(self) -> MobilityMaker:
        if "screw" in self.characters and self.screw_cell_b[0] < MIN_SCREW_LINE_B:
            raise ValueError(
                f"screw_cell_b[0] = {self.screw_cell_b[0]:g} b: a screw line shorter than "
                f"{MIN_SCREW_LINE_B} b cannot form kink pairs (the whole line hops between "
                "Peierls valleys, a cell-size artefact)")
        return self

    def taus_for(self, character: str) -> list[float]:
        return (self.screw_taus_mpa if character == "screw" and self.screw_taus_mpa else
                self.taus_mpa)

    def replicas_for(self, character: str) -> int:
        return (self.screw_replicas if character == "screw" and self.screw_replicas else
                self.replicas)

    def replica_seed(self, replica: int) -> int:
        """Velocity seed of a replica (thermostat +1, start perturbation +2)."""
        return self.seed + 7919 * replica

    @property
    def crystal(self) -> str:
        """The lattice the tasks use (``bcc`` where none was resolved)."""
        return self.lattice or "bcc"

    def grid(self) -> list[GlidePoint]:
        """Every task: each (character, T, τ) point ``replicas`` times (screws
        ``screw_replicas``); in BCC with screws (``peierls_0k``) the 0 K Peierls stress;
        in FCC the 0 K dissociation of each character."""
        out = [GlidePoint(character=c, temperature_k=T, tau_mpa=t, replica=r)
               for c in self.characters for T in self.temperatures_k
               for t in self.taus_for(c) for r in range(self.replicas_for(c))]
        if self.crystal == "fcc":
            out += [GlidePoint(character=c, temperature_k=0.0, tau_mpa=0.0,
                               kind="dissociation") for c in self.characters]
        elif self.peierls_0k and "screw" in self.characters:
            out.append(GlidePoint(character="screw", temperature_k=0.0, tau_mpa=0.0,
                                  kind="peierls"))
        return out

    def cell_a(self, character: str, a0: float) -> tuple[float, float, float]:
        """The slab lengths in Å for this crystal (the settings are in b)."""
        b = burgers_length(a0, self.crystal)
        cell = self.edge_cell_b if character == "edge" else self.screw_cell_b
        return (cell[0] * b, cell[1] * b, cell[2] * b)

    def run_point(self, potential: LammpsPotential, a0: float, point: GlidePoint,
                  workdir: str | Path, resources: Resources | None = None) -> dict[str, Any]:
        """One task; returns its ``replicas.csv`` row (plus ``workdir``), or for the
        Peierls task a row with ``kind = "peierls"``."""
        cell = self.cell_a(point.character, a0)
        b = burgers_length(a0, self.crystal)
        if point.kind == "dissociation":
            d = relaxed_dissociation(potential, a0, point.character, workdir,
                                     element=self.element, cell_a=cell, resources=resources)
            log.info("%s: stacking-fault width %.1f Å (%s)", point.tag, d.width_a, d.status)
            return {"kind": "dissociation", "character": point.character,
                    "temperature_k": 0.0, "tau_mpa": 0.0, "replica": 0,
                    "width_a": _num(d.width_a), "glide_period_a": d.glide_a,
                    "partials": " ".join(sorted(set(d.families))),
                    "partial_burgers": [list(v) for v in d.partial_burgers],
                    "status": d.status, "reason": d.reason, "workdir": str(d.workdir)}
        if point.kind == "peierls":
            pr = peierls_stress(potential, a0, workdir, character=point.character,
                                element=self.element, cell_a=cell,
                                step_mpa=self.peierls_step_mpa, max_mpa=self.peierls_max_mpa,
                                resources=resources)
            log.info("%s: tau_P = %.0f ± %.0f MPa (%s)", point.tag, pr.peierls_mpa,
                     pr.peierls_err_mpa, pr.status)
            return {"kind": "peierls", "character": point.character, "temperature_k": 0.0,
                    "tau_mpa": 0.0, "replica": 0, "peierls_mpa": _num(pr.peierls_mpa),
                    "peierls_err_mpa": _num(pr.peierls_err_mpa), "status": pr.status,
                    "reason": pr.reason, "levels_mpa": pr.taus_mpa.tolist(),
                    "slip_a": pr.slip_a.tolist(), "workdir": str(pr.workdir)}
        seed = self.replica_seed(point.replica)
        # each replica on another member: the points' replica scatter is thermal noise
        # plus the ensemble's spread in the mobility, which the drag's error then carries
        member = point.replica % ensemble_size(potential) if self.ensemble_replicas else 0
        r = run_glide(driven_by(potential, member), a0, point.character, point.tau_mpa,
                      point.temperature_k,
                      workdir, element=self.element, cell_a=cell,
                      equil_steps=self.equil_steps, run_steps=self.run_steps,
                      dump_every=self.dump_every, timestep_ps=self.timestep_ps,
                      damp_ps=self.damp_ps, seed=seed, fit_from=self.fit_from,
                      boundary=self.boundary, perturb_a=self.perturb_a,
                      thermostat=self.thermostat, blocks=self.blocks,
                      max_temperature_deviation=self.max_temperature_deviation,
                      lattice=self.crystal, load_at=self.load_at, devi=self.devi,
                      resources=resources)
        log.info("%s: v = %.0f ± %.0f m/s (%s%s)", point.tag, r.velocity_m_s,
                 r.velocity_err_m_s, r.status, f": {r.reason}" if r.reason else "")
        blk = r.block
        return {"kind": "glide", "character": point.character,
                "temperature_k": point.temperature_k, "tau_mpa": point.tau_mpa,
                "replica": point.replica, "seed": seed, "member": member,
                "velocity_m_s": _num(r.velocity_m_s), "velocity_err_m_s": _num(r.velocity_err_m_s),
                "block_dof": blk.dof if blk else 0,
                "naive_err_m_s": _num(blk.naive_err_m_s) if blk else None,
                "temperature_x_k": _num(r.temperature_xyz_k[0]),
                "temperature_y_k": _num(r.temperature_xyz_k[1]),
                "temperature_z_k": _num(r.temperature_xyz_k[2]),
                "status": r.status, "reason": r.reason,
                # the built line (whole repeats), not the requested cell[0]
                "line_b": round(r.line_a / b, 2), "n_atoms": r.n_atoms,
                "duration_ps": r.duration_ps, "sf_width_a": _num(r.sf_width_a),
                "velocity_first_half_m_s": _num(r.half_velocities_m_s[0]),
                "velocity_second_half_m_s": _num(r.half_velocities_m_s[1]),
                "max_devi_f_ev_a": _num(r.max_devi_f_ev_a),
                "workdir": str(r.workdir)}

    def make(self, potential: Artifact | str | Path | LammpsPotential, path: str | Path,
             *, properties: Artifact | str | Path | None = None, a0_a: float | None = None,
             rows: Sequence[dict[str, Any]] | None = None,
             resources: Resources | None = None, force: bool = False) -> Artifact:
        """Run the grid (or collect ``rows`` already computed) into ``DefectStats``.

        Args:
            potential: the potential (artifact, path or object).
            path: artifact directory.
            properties: a ``Properties`` artifact giving a0, b and the shear-wave speed
                (:func:`shear_wave_from_properties`: from its C_ij along the glide
                direction, else √(μ/ρ)) (else ``a0_a``, else a quick relaxation).
            rows: rows from :meth:`run_point` run elsewhere (then nothing is run here).
        """
        pot = as_potential(potential)
        inputs: dict[str, Any] = dict(potential_inputs(pot))
        from scalebridge.md.properties import lattice_constant_input, load_properties

        props_art, a0_a = lattice_constant_input(properties, a0_a)
        props = load_properties(props_art) if props_art is not None else {}
        maker = self.for_crystal(pot, props)
        c_t = c_t_screw = maker.shear_wave_m_s
        c_t_source = "setting" if c_t is not None else None
        if props_art is not None:
            inputs["properties"] = props_art
            if c_t is None and a0_a:
                c_t, c_t_source = shear_wave_from_properties(props, a0_a, maker.element,
                                                             maker.crystal)
                c_t_screw, _ = shear_wave_from_properties(props, a0_a, maker.element,
                                                          maker.crystal, "screw")
        elastic = {k: props.get(k) for k in ("shear_modulus_gpa", "poisson_ratio",
                                              "gamma_sf_mj_m2")}

        def build(work: Path) -> dict[str, Any]:
            a0 = a0_a
            if a0 is None:
                from scalebridge.md.properties import relaxed_lattice_constant

                a0 = relaxed_lattice_constant(pot, work / "runs" / "a0", maker.element,
                                              maker.crystal)
            out = list(rows) if rows is not None else [
                maker.run_point(pot, a0, p, work / "runs" / p.tag, resources)
                for p in maker.grid()]
            return collect_velocity(out, work, a0, maker, shear_wave_m_s=c_t,
                                    shear_wave_source=c_t_source, elastic=elastic,
                                    screw_shear_wave_m_s=c_t_screw,
                                    ensemble_members=ensemble_size(pot))

        settings = {"maker": maker, "a0_a": a0_a, "potential": pot.name,
                    "collected": rows is not None,
                    "rows": rows_digest(rows) if rows is not None else None}
        return produce("DefectStats", path, settings, inputs, build, force=force)

    def for_crystal(self, potential: LammpsPotential | None = None,
                    properties: dict[str, Any] | None = None) -> MobilityMaker:
        """A copy with ``element`` and ``lattice`` resolved: as set, else the crystal the
        Properties relaxed (its ``element``/``lattice``), else
        :func:`~scalebridge.md.properties.resolve_crystal` (the potential's species and
        ASE's reference lattice); a lattice without a protocol is refused there."""
        if self.lattice is not None:
            return self
        props = properties or {}
        if props.get("lattice"):
            if props["lattice"] not in ("bcc", "fcc"):
                raise SettingsError(f"md: the Properties' crystal is {props['lattice']}; "
                                    "the dislocation protocols cover bcc and fcc only")
            up: dict[str, Any] = {"lattice": props["lattice"]}
            if props.get("element") and "element" not in self.model_fields_set:
                up["element"] = props["element"]
            return self.model_copy(update=up)
        from scalebridge.md.properties import resolve_crystal

        return self.model_copy(update=resolve_crystal(self, potential))


def mobility_task(task: dict[str, Any]) -> dict[str, Any]:
    """One grid task for a mapper (module level, so a process pool or Parsl can pickle it
    by reference). ``task``: ``maker`` (settings dict), ``point`` (a :class:`GlidePoint`
    dict), ``potential`` (a :class:`LammpsPotential`), ``a0_a``, ``workdir`` and
    ``resources`` (dict). A finished task is read back from ``workdir/row.json`` instead
    of being run again, so an interrupted grid resumes at its first unfinished task."""
    workdir = Path(task["workdir"])
    done = workdir / "row.json"
    if done.is_file():
        return json.loads(done.read_text())
    maker = MobilityMaker.model_validate(task["maker"])
    point = GlidePoint.model_validate(task["point"])
    tmp = workdir.with_name(workdir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    row = maker.run_point(task["potential"], float(task["a0_a"]), point, tmp,
                          Resources.model_validate(task.get("resources") or {}))
    row["workdir"] = str(workdir)
    write_json_atomic(tmp / "row.json", row)
    shutil.rmtree(workdir, ignore_errors=True)
    tmp.rename(workdir)
    return row


def crystal_density(a0_a: float, element: str, lattice: str = "bcc") -> float:
    """Mass density ρ, kg/m³, of a cubic crystal of lattice constant ``a0_a`` (Å): atoms
    per cubic cell from :data:`scalebridge.potentials.properties.ATOMS_PER_CELL` (2 in
    BCC, 4 in FCC); another lattice is refused rather than taken for BCC."""
    from ase.data import atomic_masses, atomic_numbers
    from scalebridge.potentials.properties import ATOMS_PER_CELL

    if element not in atomic_numbers:
        raise SettingsError(f"element {element!r} is not a chemical symbol")
    if lattice not in ATOMS_PER_CELL:
        raise SettingsError(f"lattice {lattice!r}: a density needs one of "
                            f"{sorted(ATOMS_PER_CELL)}")
    per_cell = ATOMS_PER_CELL[lattice]
    return (per_cell * atomic_masses[atomic_numbers[element]] * 1.66053906660e-27
            / (a0_a * 1e-10) ** 3)


def shear_wave_speed(mu_gpa: float, a0_a: float, element: str, lattice: str = "bcc"
                     ) -> float:
    """Isotropic shear-wave speed √(μ/ρ), m/s (μ in GPa, a0 in Å; ρ from
    :func:`crystal_density`)."""
    return math.sqrt(mu_gpa * 1e9 / crystal_density(a0_a, element, lattice))


def cubic_stiffness(c11_gpa: float, c12_gpa: float, c44_gpa: float) -> np.ndarray:
    """(3, 3, 3, 3) stiffness tensor C_ijkl (GPa) of a cubic crystal in its cube axes:
    C12 δij δkl + C44 (δik δjl + δil δjk) + (C11 − C12 − 2 C44) Σm δim δjm δkm δlm."""
    d = np.eye(3)
    c = (c12_gpa * np.einsum("ij,kl->ijkl", d, d)
         + c44_gpa * (np.einsum("ik,jl->ijkl", d, d) + np.einsum("il,jk->ijkl", d, d)))
    for m in range(3):
        c[m, m, m, m] += c11_gpa - c12_gpa - 2 * c44_gpa
    return c


def glide_shear_wave_speed(c11_gpa: float, c12_gpa: float, c44_gpa: float, a0_a: float,
                           element: str, lattice: str = "bcc", *,
                           glide_direction: Sequence[float] | None = None,
                           plane_normal: Sequence[float] | None = None,
                           character: str = "edge") -> float:
    """Speed (m/s) of the transverse wave that travels along the glide direction with its
    polarisation along the slip-plane normal, the limiting speed of an edge dislocation in
    an anisotropic cubic crystal: ρ v² = C'₁₂₁₂, with C' the stiffness rotated into the
    frame x = glide direction, y = slip-plane normal (C'ijkl = a_ip a_jq a_kr a_ls C_pqrs,
    rows of a the frame's unit vectors in cube axes).

    For an isotropic crystal (C11 − C12 = 2 C44) this is √(C44/ρ); on the edge slabs' slip
    systems (BCC [111](-110), FCC [1-10](111)) it is (C11 − C12 + C44)/3 (> C44 where the
    Zener ratio 2 C44/(C11 − C12) < 1, e.g. Nb).

    Args:
        c11_gpa, c12_gpa, c44_gpa: cubic elastic constants, GPa.
        a0_a: lattice constant, Å (with ``element`` and ``lattice``: the density).
        element: chemical symbol.
        lattice: ``bcc`` or ``fcc``.
        glide_direction, plane_normal: (3,) cube-axis directions (any length, orthogonal):
            the wave's direction and its polarisation; default: those of ``character``'s
            limiting wave (:func:`~scalebridge.md.dislocations.slab_axes`): an edge's
            travels along its glide direction (b) polarised along the glide-plane normal,
            a screw's along its glide direction polarised along b (its line). In BCC
            {110}<111> both give (C11 − C12 + C44)/3; in FCC {111}<110> the screw's is
            (C11 − C12 + 4 C44)/6.

    Raises:
        ValueError: a direction of zero length or not in the slip plane, or C'₁₂₁₂ ≤ 0.
    """
    line, normal, glide = slab_axes(lattice, character)
    pol = line if character == "screw" else normal
    g = np.asarray(glide if glide_direction is None else glide_direction, float)
    n = np.asarray(pol if plane_normal is None else plane_normal, float)
    if min(np.linalg.norm(g), np.linalg.norm(n)) == 0:
        raise ValueError("glide direction and plane normal must be non-zero")
    g, n = g / np.linalg.norm(g), n / np.linalg.norm(n)
    if abs(float(g @ n)) > 1e-9:
        raise ValueError(f"glide direction {g} is not in the plane of normal {n}")
    c = cubic_stiffness(c11_gpa, c12_gpa, c44_gpa)
    c1212 = float(np.einsum("p,q,r,s,pqrs->", g, n, g, n, c))
    if c1212 <= 0:
        raise ValueError(f"C'1212 = {c1212:.3g} GPa: no transverse wave along the glide "
                         "direction (elastically unstable)")
    return math.sqrt(c1212 * 1e9 / crystal_density(a0_a, element, lattice))


#: ``shear_wave_source``: where the edge law's candidate saturation speed came from.
SHEAR_WAVE_SOURCES = {
    "setting": "MobilityMaker.shear_wave_m_s as set",
    "glide_direction_cij": "rho v^2 = C'_1212 (glide direction, slip-plane normal) from "
                           "the Properties' C11, C12, C44",
    "isotropic_mu": "sqrt(mu/rho) from the Properties' Voigt-Reuss-Hill shear modulus"}


def shear_wave_from_properties(props: dict[str, Any], a0_a: float, element: str,
                               lattice: str = "bcc", character: str = "edge"
                               ) -> tuple[float | None, str | None]:
    """(speed m/s, source) of ``character``'s candidate saturation speed from a
    Properties document: :func:`glide_shear_wave_speed` when it has C11, C12 and C44 (and
    the glide-direction C'₁₂₁₂ is positive), else :func:`shear_wave_speed` from its shear
    modulus, else (None, None). Sources: :data:`SHEAR_WAVE_SOURCES`."""
    c11, c12, c44 = (_num(props.get(k)) for k in ("c11_gpa", "c12_gpa", "c44_gpa"))
    if c11 is not None and c12 is not None and c44 is not None:
        try:
            return (glide_shear_wave_speed(c11, c12, c44, a0_a, element, lattice,
                                           character=character), "glide_direction_cij")
        except ValueError as e:      # C'1212 ≤ 0: no such wave, fall back to μ
            log.warning("no glide-direction shear wave from the Properties' C_ij: %s", e)
    mu = _num(props.get("shear_modulus_gpa"))
    if mu is not None and mu > 0:
        return shear_wave_speed(mu, a0_a, element, lattice), "isotropic_mu"
    return None, None


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """Content hash of collected glide rows (every measured column, in table order;
    where and how long they ran does not count): other rows make another DefectStats."""
    skip = ("workdir", "wall_s", "reused")
    table = sorted(json.dumps({k: v for k, v in sorted(r.items()) if k not in skip},
                               default=str) for r in rows)
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def _clean(obj: Any) -> Any:
    """NaN/inf → None, numpy scalars → Python, recursively (for JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _num(obj)
    return obj


def replica_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The glide rows, normalised: a row without ``status`` (collected from elsewhere)
    is ``ok`` when its velocity is finite; a row whose velocity or error is not finite
    is never ``ok`` (``not_finite``); half velocities that are missing or not finite are
    None."""
    out = []
    for r in rows:
        if r.get("kind", "glide") != "glide":
            continue
        r = dict(r)
        r.setdefault("replica", 0)
        r.setdefault("status", "ok")
        r.setdefault("reason", "")
        v, e = _num(r.get("velocity_m_s")), _num(r.get("velocity_err_m_s"))
        if r["status"] == "ok" and (v is None or (e is None and "velocity_err_m_s" in r)):
            r["status"] = "not_finite"
            r["reason"] = "velocity or its error is not a finite number"
        r["velocity_m_s"], r["velocity_err_m_s"] = v, e
        for k in ("velocity_first_half_m_s", "velocity_second_half_m_s",
                  "max_devi_f_ev_a"):
            r[k] = _num(r.get(k))       # absent in rows from before them: empty
        out.append(r)
    return out


def aggregate_points(reps: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ``velocity.csv`` row per (character, T, τ) from its replica rows.

    A point is measured when a majority of its replicas are ``ok``; its velocity and
    errors come from :func:`~scalebridge.md.glide_fit.combine_replicas` over those. It is
    then flagged ``unresolved`` when |v| is below its standard error (thermal noise
    outruns the glide) and ``wrong_sign`` when v·τ < 0. Flagged points carry no velocity.
    """
    keys = sorted({(r["character"], float(r["temperature_k"]), float(r["tau_mpa"]))
                   for r in reps})
    out = []
    for ch, T, tau in keys:
        sel = [r for r in reps if (r["character"], float(r["temperature_k"]),
                                   float(r["tau_mpa"])) == (ch, T, tau)]
        ok = [r for r in sel if r["status"] == "ok"]
        row: dict[str, Any] = {
            "character": ch, "temperature_k": T, "tau_mpa": tau, "replicas": len(sel),
            "replicas_ok": len(ok), "n_atoms": sel[0].get("n_atoms"),
            "duration_ps": sel[0].get("duration_ps"), "status": "ok", "reason": ""}
        tz = [_num(r.get("temperature_z_k")) for r in ok]
        tz = [x for x in tz if x is not None]
        row["glide_temperature_k"] = float(np.mean(tz)) if tz else None
        row["acceleration_ratio"] = acceleration_ratio(ok)
        ratios = half_ratios(ok)
        row["acceleration_ratio_err"] = half_ratio_err(ratios)
        # the dof of that scatter (the window term's noise carries it: glide_fit)
        n_fin = sum(1 for x in ratios if np.isfinite(x))
        row["acceleration_ratio_dof"] = n_fin - 1 if n_fin >= 2 else None
        devi = [d for r in sel if (d := _num(r.get("max_devi_f_ev_a"))) is not None]
        row["max_devi_f_ev_a"] = max(devi) if devi else None
        if 2 * len(ok) <= len(sel):
            why = sorted({f"{r['status']}: {r['reason']}" if r["reason"] else r["status"]
                          for r in sel if r["status"] != "ok"})
            row.update(status="too_few_replicas",
                       reason=f"{len(ok)} of {len(sel)} replicas measured; " + "; ".join(why))
            out.append(row)
            continue
        dof = [int(r.get("block_dof") or 4) for r in ok]
        c = combine_replicas([r["velocity_m_s"] for r in ok],
                             [r["velocity_err_m_s"] or 0.0 for r in ok], dof)
        v, se = c["velocity_m_s"], c["velocity_err_m_s"]
        if abs(v) < se:
            row.update(status="unresolved", reason=f"|v| = {abs(v):.0f} m/s is below its "
                       f"error {se:.0f} m/s: thermal noise outruns the glide")
        elif v * tau < 0:
            row.update(status="wrong_sign", reason=f"v = {v:.0f} ± {se:.0f} m/s moves "
                       "against the applied stress")
        else:
            row.update(velocity_m_s=v, velocity_err_m_s=se, velocity_ci95_m_s=c["ci95_m_s"],
                       velocity_pi95_m_s=c["pi95_m_s"], error_source=c["error_source"],
                       velocity_dof=c["dof"])
        if len(ok) < len(sel) and row["status"] == "ok":
            row["reason"] = f"{len(sel) - len(ok)} of {len(sel)} replicas not measured"
        out.append(row)
    return out


def acceleration_ratio(reps: Sequence[dict[str, Any]]) -> float | None:
    """Median over ``reps`` of first-half / second-half velocity of the fitted frames
    (``velocity_first_half_m_s`` / ``velocity_second_half_m_s``): ≈ 1 at steady glide,
    below 1 while the dislocation still accelerates after the load (its inertia: ~1 ps
    time constant for a Mo edge at 300 K). None where no replica has both halves (rows
    from before the halves were recorded, too few frames)."""
    ratios = half_ratios(reps)
    return float(np.median(ratios)) if ratios else None


def half_ratios(reps: Sequence[dict[str, Any]]) -> list[float]:
    """First-half / second-half velocity of each replica in ``reps`` that has both."""
    ratios = []
    for r in reps:
        a = _num(r.get("velocity_first_half_m_s"))
        b = _num(r.get("velocity_second_half_m_s"))
        if a is not None and b:
            ratios.append(a / b)
    return ratios


def collect_velocity(rows: Sequence[dict[str, Any]], work: Path, a0: float,
                     maker: MobilityMaker | None = None, *,
                     shear_wave_m_s: float | None = None,
                     shear_wave_source: str | None = None,
                     elastic: dict[str, Any] | None = None,
                     screw_shear_wave_m_s: float | None = None,
                     ensemble_members: int | None = None) -> dict[str, Any]:
    """Write ``replicas.csv``, ``velocity.csv``, ``glide_fit.json``, ``drag.csv``, the
    plot and the dumps (and in FCC ``dissociation.csv``) into ``work``; returns the
    artifact summary. ``shear_wave_m_s``: the edge law's candidate saturation speed, m/s,
    recorded with ``shear_wave_source`` (:data:`SHEAR_WAVE_SOURCES`) in
    ``glide_fit.json`` and the summary; ``screw_shear_wave_m_s``: the screw law's (its
    own limiting wave, :func:`glide_shear_wave_speed`; None: the edge's). ``elastic``:
    ``shear_modulus_gpa``, ``poisson_ratio`` and ``gamma_sf_mj_m2`` of the Properties,
    for the elastic stacking-fault width. ``ensemble_members``: how many models the
    potential has (recorded beside ``members_driving``, the members the runs used)."""
    maker = maker or MobilityMaker()
    b = burgers_length(a0, maker.crystal)
    reps = sorted(replica_rows(rows), key=lambda r: (r["character"], r["temperature_k"],
                                                     r["tau_mpa"], r["replica"]))
    peierls = next((r for r in rows if r.get("kind") == "peierls"), None)
    points = aggregate_points(reps)
    write_rows(work / "replicas.csv", reps, REPLICA_COLUMNS)
    write_rows(work / "velocity.csv", points, VELOCITY_COLUMNS)
    shutil.copyfile(work / "velocity.csv", work / "velocity_stress.csv")
    good = [p for p in points if p["status"] == "ok"]
    for p in points:
        if p["status"] != "ok":
            log.warning("%s %g K %g MPa not measured: %s: %s", p["character"],
                        p["temperature_k"], p["tau_mpa"], p["status"], p["reason"])
    tau_p = (peierls["peierls_mpa"] * 1e6 if peierls and peierls["status"] == "ok"
             and peierls.get("peierls_mpa") else None)
    fits: dict[str, Any] = {"drag": {}, "kink_pair": None, "skipped": {}}
    if good:
        fits = fit_glide_laws(
            [p["character"] for p in good], np.array([p["tau_mpa"] for p in good]) * 1e6,
            np.array([p["temperature_k"] for p in good]),
            np.array([p["velocity_m_s"] for p in good]),
            np.array([p["velocity_err_m_s"] for p in good]), b * 1e-10,
            shear_wave_m_s=shear_wave_m_s, screw_shear_wave_m_s=screw_shear_wave_m_s,
            peierls_pa=tau_p, rel=REL_ERROR,
            max_tau_pa=(maker.drag_fit_max_tau_mpa * 1e6
                        if maker.drag_fit_max_tau_mpa else None),
            ratio=np.array([np.nan if p.get("acceleration_ratio") is None
                            else p["acceleration_ratio"] for p in good], float),
            ratio_err=np.array([np.nan if p.get("acceleration_ratio_err") is None
                                else p["acceleration_ratio_err"] for p in good], float),
            ratio_dof=np.array([np.nan if p.get("acceleration_ratio_dof") is None
                                else p["acceleration_ratio_dof"] for p in good], float),
            err_dof=np.array([np.nan if p.get("velocity_dof") is None
                              else p["velocity_dof"] for p in good], float))
    else:
        fits["skipped"]["all"] = "no point was measured"
    if maker.crystal == "fcc" and any(p["character"] == "screw" for p in good):
        fits["kink_pair"] = None
        fits["skipped"]["kink_pair"] = ("FCC: screws glide by drag (no Peierls barrier "
                                        "worth a kink-pair law); see the drag fit")
    fits["lattice"] = maker.crystal
    diss = dissociation_rows(rows, reps, a0, elastic or {})
    if diss:
        write_rows(work / "dissociation.csv", diss, DISSOCIATION_COLUMNS)
        fits["dissociation"] = diss
    fits["peierls_0k"] = ({k: peierls.get(k) for k in ("peierls_mpa", "peierls_err_mpa",
                                                        "status", "reason", "levels_mpa",
                                                        "slip_a")} if peierls else None)
    fits["shear_wave_m_s"] = shear_wave_m_s
    fits["screw_shear_wave_m_s"] = screw_shear_wave_m_s or shear_wave_m_s
    fits["shear_wave_source"] = shear_wave_source if shear_wave_m_s else None
    fits["burgers_a"] = b
    fits["points"] = {"measured": len(good), "flagged": len(points) - len(good)}
    write_json_atomic(work / "glide_fit.json", _clean(fits))
    drag_rows = []
    for ch, f in fits["drag"].items():
        for d in f["by_temperature"]:
            lo, hi = d["drag_ci95_pa_s"]
            drag_rows.append({
                "character": ch, "temperature_k": d["temperature_k"],
                "n_points": d["n_points"], "drag_pa_s": d["drag_pa_s"],
                "drag_err_pa_s": d["drag_err_pa_s"], "drag_ci95_lo_pa_s": lo,
                "drag_ci95_hi_pa_s": hi if hi is not None else "", "tau0_mpa": d["tau0_mpa"],
                # a τ₀ fixed at 0 by the model choice has no interval: blank cells
                "tau0_ci95_lo_mpa": d["tau0_ci95_mpa"][0] if tau0_measured(d) else "",
                "tau0_ci95_hi_mpa": d["tau0_ci95_mpa"][1] if tau0_measured(d) else "",
                "tau0_fixed": d["tau0_fixed"],
                "saturation_m_s": f["saturation_m_s"] or "",
                "saturation_source": f["saturation_source"], "burgers_a": b})
    write_rows(work / "drag.csv", drag_rows, DRAG_COLUMNS)
    dumps = work / "dumps"
    dumps.mkdir(exist_ok=True)
    for r in reps:
        src = Path(str(r.get("workdir", ""))) / "glide.dump"
        if src.is_file():
            tag = (f"{r['character']}_T{r['temperature_k']:g}_tau{r['tau_mpa']:g}"
                   f"_r{r['replica']}")
            shutil.copyfile(src, dumps / f"glide_{tag}.dump")
    plot_velocity(points, fits, b, work / "velocity_stress.png")
    n_rep = [p["replicas"] for p in points]
    by_t = {f"{ch}_{d['temperature_k']:g}K": d
            for ch, f in fits["drag"].items() for d in f["by_temperature"]}
    summary: dict[str, Any] = {
        "points": len(points), "points_measured": len(good), "runs": len(reps),
        "replicas_min": min(n_rep) if n_rep else 0,
        # potential ensemble members that drove the runs (MobilityMaker.ensemble_replicas)
        "members_driving": len({r.get("member", 0) for r in reps}) if reps else 0,
        "ensemble_members": ensemble_members,
        # the ensemble's largest force deviation over every run (None: one model)
        "max_devi_f_ev_a": max((d for r in reps
                                if (d := _num(r.get("max_devi_f_ev_a"))) is not None),
                               default=None),
        "devi_threshold_ev_a": maker.devi.f_threshold_ev_a,
        "a0_a": a0, "burgers_a": b,
        "lattice": maker.crystal, "shear_wave_m_s": shear_wave_m_s,
        "screw_shear_wave_m_s": fits["screw_shear_wave_m_s"],
        "shear_wave_source": fits["shear_wave_source"],
        "drag_pa_s": {k: d["drag_pa_s"] for k, d in by_t.items()},
        # the threshold of v = b(τ - τ0)/B beside B: the DD's drag law takes both; a τ0
        # fixed at 0 by the model choice has no interval, its note says why and what the
        # threshold models fitted
        "tau0_mpa": {k: d["tau0_mpa"] for k, d in by_t.items()},
        "tau0_ci95_mpa": {k: list(d["tau0_ci95_mpa"]) for k, d in by_t.items()
                          if tau0_measured(d)},
        "tau0_note": {k: d["tau0_note"] for k, d in by_t.items()
                      if not tau0_measured(d) and d.get("tau0_note")}}
    if "edge" in fits["drag"]:
        e = fits["drag"]["edge"]
        summary["edge_drag_trend_supported"] = e["trend"]["supported"]
        summary["edge_drag_b0_pa_s"] = e["b0_pa_s"]
        summary["edge_drag_b0_err_pa_s"] = e["b0_err_pa_s"]
        summary["edge_drag_b0_window_err_pa_s"] = e.get("b0_window_err_pa_s")
        # the raw late-minus-whole difference and its steady-glide noise, subtracted
        summary["edge_drag_b0_window_raw_pa_s"] = e.get("b0_window_raw_pa_s")
        summary["edge_drag_b0_window_noise_pa_s"] = e.get("b0_window_noise_pa_s")
        summary["edge_drag_b0_window_dof"] = e.get("b0_window_dof")
        summary["edge_drag_b0_dof"] = e.get("b0_dof")
    if fits["kink_pair"]:
        summary["kink_pair_enthalpy_ev"] = fits["kink_pair"]["enthalpy_ev"]
    if peierls:
        summary["peierls_0k_mpa"] = peierls.get("peierls_mpa")
    for d in diss:
        summary[f"sf_width_{d['character']}_a"] = d["width_a"]
        summary[f"sf_width_{d['character']}_elastic_a"] = d.get("elastic_width_a")
    return _clean(summary)


def dissociation_rows(rows: Sequence[dict[str, Any]], reps: Sequence[dict[str, Any]],
                      a0: float, elastic: dict[str, Any]) -> list[dict[str, Any]]:
    """One ``dissociation.csv`` row per FCC character: the 0 K width, the mean width of
    its ok glide runs, and the isotropic elastic estimate (infinite medium, and with the
    images of the periodic glide direction) where μ, ν and γ_SF are known."""
    out = []
    mu, nu, gam = (elastic.get(k) for k in ("shear_modulus_gpa", "poisson_ratio",
                                            "gamma_sf_mj_m2"))
    for r in rows:
        if r.get("kind") != "dissociation":
            continue
        ch = r["character"]
        w = _num(r.get("width_a"))
        gl = [x["sf_width_a"] for x in reps if x["character"] == ch and
              x["status"] == "ok" and _num(x.get("sf_width_a")) is not None]
        row: dict[str, Any] = {
            "character": ch, "width_a": w,
            "width_b": w / burgers_length(a0, "fcc") if w is not None else None,
            "width_glide_a": float(np.mean(gl)) if gl else None,
            "glide_period_a": r.get("glide_period_a"), "partials": r.get("partials"),
            "gamma_sf_mj_m2": gam, "shear_modulus_gpa": mu, "poisson_ratio": nu,
            "status": r.get("status", "ok"), "reason": r.get("reason", "")}
        if mu and nu is not None and gam and gam > 0:
            d_inf = elastic_partial_separation(float(mu), float(nu), a0, float(gam),
                                               90.0 if ch == "edge" else 0.0)
            row["elastic_width_a"] = d_inf
            if r.get("glide_period_a"):
                row["elastic_width_periodic_a"] = periodic_row_separation(
                    d_inf, float(r["glide_period_a"]))
            if w is not None:
                row["ratio_to_elastic"] = w / d_inf
        elif not row["reason"]:
            row["reason"] = ("no elastic estimate: the Properties give no γ_SF, μ or ν "
                             "(run with properties and stacking_faults = true)")
        out.append(row)
    return out


def plot_velocity(points: Sequence[dict[str, Any]], fits: dict[str, Any], b_a: float,
                  path: Path) -> None:
    """Measured points (95% confidence bars) per (character, T) with the fitted laws."""
    from scalebridge.md.glide_fit import kink_pair_velocity

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    keys = sorted({(p["character"], float(p["temperature_k"])) for p in points})
    for i, (ch, T) in enumerate(keys):
        sel = [p for p in points if (p["character"], float(p["temperature_k"])) == (ch, T)
               and p["status"] == "ok"]
        c = f"C{i}"
        if sel:
            ax.errorbar([p["tau_mpa"] for p in sel], [p["velocity_m_s"] for p in sel],
                        yerr=[p["velocity_ci95_m_s"] for p in sel],
                        fmt="o" if ch == "edge" else "s", color=c, label=f"{ch} {T:g} K",
                        ms=4, capsize=2)
        taus = [p["tau_mpa"] for p in points if p["character"] == ch]
        tt = np.linspace(0, max(taus), 60)
        d = next((r for r in fits["drag"].get(ch, {}).get("by_temperature", [])
                  if r["temperature_k"] == T), None)
        kp = fits.get("kink_pair")
        if d is not None and (ch == "edge" or not kp):   # a screw without its kink-pair law
            vs = fits["drag"][ch]["saturation_m_s"]
            vl = np.maximum(b_a * 1e-10 * (tt - d["tau0_mpa"]) * 1e6 / d["drag_pa_s"], 0)
            ax.plot(tt, vl if not vs else vl / np.sqrt(1 + (vl / vs) ** 2), "--", color=c,
                    lw=0.8)
        if kp and ch == "screw":
            ax.plot(tt, kink_pair_velocity(tt * 1e6, np.full_like(tt, T), kp["attempt_m_s"],
                                           kp["enthalpy_ev"], kp["peierls_mpa"] * 1e6,
                                           kp["p"], kp["q"], kp["drag_pa_s"], b_a * 1e-10),
                    ":", color=c, lw=0.8)
    ax.set_xlabel("resolved shear stress τ (MPa)")
    ax.set_ylabel("velocity (m/s)")
    ax.set_title("glide: points with 95% intervals; fitted laws", fontsize=8)
    ax.axhline(0, color="0.7", lw=0.5)
    if keys:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
