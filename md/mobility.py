"""Dislocation velocity vs resolved shear stress, temperature and character.

Each grid point (τ, T, character) is one independent job, :meth:`MobilityMaker.run_point`
(a function of one point, so ``workflows`` can fan the grid out); :meth:`MobilityMaker.make`
runs the grid itself, or collects rows computed elsewhere, into a ``DefectStats``
artifact (docs/CONTRACTS.md): ``velocity.csv``, ``velocity_stress.png`` (+ CSV),
``drag.csv`` (linear-drag fit v = b·τ/B per character and T) and the glide dumps in
``dumps/`` (LAMMPS text dumps OVITO opens).
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
from pydantic import BaseModel, Field
from scalebridge.artifacts import Artifact, produce
from scalebridge.md.dislocations import run_glide
from scalebridge.md.lammps import LammpsPotential, as_potential, potential_inputs
from scalebridge.md.properties import burgers_length
from scalebridge.md.tables import pyplot, write_rows
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.md.mobility")

VELOCITY_COLUMNS = ("character", "temperature_k", "tau_mpa", "velocity_m_s",
                    "velocity_err_m_s", "n_atoms", "duration_ps")


class GlidePoint(BaseModel):
    """One job of the grid."""

    character: Literal["edge", "screw"]
    temperature_k: float
    tau_mpa: float

    @property
    def tag(self) -> str:
        return f"{self.character}_T{self.temperature_k:g}_tau{self.tau_mpa:g}"


#: Shortest screw line (in Burgers vectors) whose thermally activated glide is by kink
#: pairs; shorter lines move as one rigid segment (session 3: a 3 b line at 300 K, 1200 MPa
#: hopped back and forth, 27 m/s against 323 m/s at 100 K).
MIN_SCREW_LINE_B = 20


class MobilityMaker(StrictModel):
    """Glide of straight 1/2<111> dislocations under constant resolved shear stress."""

    element: str = Field("Mo", description="chemical element (BCC)")
    characters: list[Literal["edge", "screw"]] = Field(
        default_factory=lambda: ["edge", "screw"], description="dislocation characters")
    temperatures_k: list[float] = Field(default_factory=lambda: [100.0, 300.0],
                                        description="temperatures, K")
    taus_mpa: list[float] = Field(default_factory=lambda: [200.0, 500.0, 1000.0],
                                  description="resolved shear stresses, MPa")
    screw_taus_mpa: list[float] | None = Field(
        None, description="stresses for screws if different (their Peierls stress is "
        "much higher), MPa")
    edge_cell_a: tuple[float, float, float] = Field(
        (7.0, 18.0, 40.0), description="edge slab (line, normal, glide) lengths, Å")
    screw_cell_a: tuple[float, float, float] = Field(
        (8.0, 18.0, 30.0), description="screw slab (line, normal, glide) lengths, Å")
    equil_steps: int = Field(500, ge=0, description="MD steps at τ = 0 before loading")
    run_steps: int = Field(3000, ge=10, description="MD steps under load")
    dump_every: int = Field(50, ge=1, description="dump/locate every N steps")
    timestep_ps: float = Field(0.002, gt=0, le=0.005, description="MD timestep, ps")
    damp_ps: float = Field(0.1, gt=0,
                           description="thermostat time of the y (normal) velocities, ps")
    fit_from: float = Field(0.3, ge=0, lt=0.9,
                            description="fraction of the loaded run skipped before the fit")
    seed: int = Field(4928, ge=1, description="velocity and thermostat seed")
    drag_fit_max_tau_mpa: float | None = Field(
        None, description="fit the linear drag only up to this stress (linear regime), MPa")
    boundary: Literal["rigid", "traction"] = Field(
        "rigid", description="rigid loaded blocks (far-field built) or traction on free "
        "surfaces")

    def grid(self) -> list[GlidePoint]:
        """Every (character, T, τ) point."""
        def taus(c: str) -> list[float]:
            return self.screw_taus_mpa if c == "screw" and self.screw_taus_mpa else \
                self.taus_mpa

        return [GlidePoint(character=c, temperature_k=T, tau_mpa=t)
                for c in self.characters for T in self.temperatures_k for t in taus(c)]

    def run_point(self, potential: LammpsPotential, a0: float, point: GlidePoint,
                  workdir: str | Path, resources: Resources | None = None) -> dict[str, Any]:
        """One glide job; returns its ``velocity.csv`` row (plus ``workdir``)."""
        cell = self.edge_cell_a if point.character == "edge" else self.screw_cell_a
        b = burgers_length(a0, "bcc")
        if point.character == "screw" and cell[0] < MIN_SCREW_LINE_B * b:
            log.warning("%s: the screw line is %.0f Å = %.1f b long (< %d b): kink pairs "
                        "cannot form and the whole line hops back and forth between Peierls "
                        "valleys, so its velocity is a cell-size artefact, not a mobility "
                        "(set screw_cell_a[0] >= %.0f Å)", point.tag, cell[0], cell[0] / b,
                        MIN_SCREW_LINE_B, MIN_SCREW_LINE_B * b)
        r = run_glide(potential, a0, point.character, point.tau_mpa, point.temperature_k,
                      workdir, element=self.element, cell_a=cell,
                      equil_steps=self.equil_steps, run_steps=self.run_steps,
                      dump_every=self.dump_every, timestep_ps=self.timestep_ps,
                      damp_ps=self.damp_ps, seed=self.seed, fit_from=self.fit_from,
                      boundary=self.boundary, resources=resources)
        log.info("%s: v = %.0f ± %.0f m/s", point.tag, r.velocity_m_s, r.velocity_err_m_s)
        return {"character": point.character, "temperature_k": point.temperature_k,
                "tau_mpa": point.tau_mpa, "velocity_m_s": r.velocity_m_s,
                "velocity_err_m_s": r.velocity_err_m_s, "n_atoms": r.n_atoms,
                "duration_ps": r.duration_ps, "workdir": str(r.workdir)}

    def make(self, potential: Artifact | str | Path | LammpsPotential, path: str | Path,
             *, properties: Artifact | str | Path | None = None, a0_a: float | None = None,
             rows: Sequence[dict[str, Any]] | None = None,
             resources: Resources | None = None, force: bool = False) -> Artifact:
        """Run the grid (or collect ``rows`` already computed) into ``DefectStats``.

        Args:
            potential: the potential (artifact, path or object).
            path: artifact directory.
            properties: a ``Properties`` artifact giving a0 and b (else ``a0_a``, else a
                quick relaxation).
            rows: rows from :meth:`run_point` run elsewhere (then nothing is run here).
        """
        pot = as_potential(potential)
        inputs: dict[str, Any] = dict(potential_inputs(pot))
        from scalebridge.md.properties import lattice_constant_input

        props_art, a0_a = lattice_constant_input(properties, a0_a)
        if props_art is not None:
            inputs["properties"] = props_art

        def build(work: Path) -> dict[str, Any]:
            a0 = a0_a
            if a0 is None:
                from scalebridge.md.properties import relaxed_lattice_constant

                a0 = relaxed_lattice_constant(pot, work / "runs" / "a0", self.element)
            out = list(rows) if rows is not None else [
                self.run_point(pot, a0, p, work / "runs" / p.tag, resources)
                for p in self.grid()]
            return collect_velocity(out, work, a0, self.drag_fit_max_tau_mpa)

        settings = {"maker": self, "a0_a": a0_a, "potential": pot.name,
                    "collected": rows is not None,
                    "rows": rows_digest(rows) if rows is not None else None}
        return produce("DefectStats", path, settings, inputs, build, force=force)


def rows_digest(rows: Sequence[dict[str, Any]]) -> str:
    """Content hash of collected glide rows (every measured column, in table order;
    where and how long they ran does not count): other rows make another DefectStats."""
    skip = ("workdir", "wall_s", "reused")
    table = sorted(json.dumps({k: v for k, v in sorted(r.items()) if k not in skip},
                               default=str) for r in rows)
    return hashlib.sha256(json.dumps(table).encode()).hexdigest()


def fit_drag(rows: Sequence[dict[str, Any]], b_a: float,
             max_tau_mpa: float | None = None) -> list[dict[str, Any]]:
    """Linear drag v = b·τ/B through the origin, per (character, T), on the rows with
    τ·v > 0 (and |τ| ≤ ``max_tau_mpa``: the linear regime). Returns rows with
    ``drag_pa_s`` and its standard error."""
    out = []
    keys = sorted({(r["character"], float(r["temperature_k"])) for r in rows})
    for ch, T in keys:
        sel = [r for r in rows if r["character"] == ch and float(r["temperature_k"]) == T
               and np.isfinite(r["velocity_m_s"]) and r["tau_mpa"] * r["velocity_m_s"] > 0
               and (max_tau_mpa is None or abs(r["tau_mpa"]) <= max_tau_mpa)]
        if len(sel) < 1:
            continue
        tau = np.array([r["tau_mpa"] for r in sel]) * 1e6
        v = np.array([r["velocity_m_s"] for r in sel])
        k = float((tau * v).sum() / (tau ** 2).sum())                 # m/s per Pa
        resid = v - k * tau
        se_k = (math.sqrt((resid @ resid) / max(len(v) - 1, 1) / (tau ** 2).sum())
                if len(v) > 1 else float("nan"))
        B = b_a * 1e-10 / k
        out.append({"character": ch, "temperature_k": T, "n_points": len(sel),
                    "drag_pa_s": B, "drag_err_pa_s": B * se_k / abs(k),
                    "burgers_a": b_a})
    return out


def collect_velocity(rows: Sequence[dict[str, Any]], work: Path, a0: float,
                     max_tau_mpa: float | None = None) -> dict[str, Any]:
    """Write ``velocity.csv``, ``drag.csv``, the plot and the dumps into ``work``."""
    b = burgers_length(a0, "bcc")
    rows = sorted(rows, key=lambda r: (r["character"], r["temperature_k"], r["tau_mpa"]))
    write_rows(work / "velocity.csv", rows, VELOCITY_COLUMNS)
    shutil.copyfile(work / "velocity.csv", work / "velocity_stress.csv")
    drag = fit_drag(rows, b, max_tau_mpa)
    write_rows(work / "drag.csv", drag, ["character", "temperature_k", "n_points",
                                         "drag_pa_s", "drag_err_pa_s", "burgers_a"])
    dumps = work / "dumps"
    dumps.mkdir(exist_ok=True)
    for r in rows:
        src = Path(str(r.get("workdir", ""))) / "glide.dump"
        if src.is_file():
            tag = f"{r['character']}_T{r['temperature_k']:g}_tau{r['tau_mpa']:g}"
            shutil.copyfile(src, dumps / f"glide_{tag}.dump")
    plot_velocity(rows, drag, work / "velocity_stress.png")
    return {"points": len(rows), "a0_a": a0, "burgers_a": b,
            "drag_pa_s": {f"{d['character']}_{d['temperature_k']:g}K": d["drag_pa_s"]
                          for d in drag}}


def plot_velocity(rows: Sequence[dict[str, Any]], drag: Sequence[dict[str, Any]],
                  path: Path) -> None:
    """Velocity vs τ per (character, T), with the fitted linear drag lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6), dpi=120)
    keys = sorted({(r["character"], float(r["temperature_k"])) for r in rows})
    for i, (ch, T) in enumerate(keys):
        sel = [r for r in rows if r["character"] == ch and float(r["temperature_k"]) == T]
        tau = np.array([r["tau_mpa"] for r in sel])
        v = np.array([r["velocity_m_s"] for r in sel])
        err = np.array([r["velocity_err_m_s"] for r in sel])
        c = f"C{i}"
        ax.errorbar(tau, v, yerr=err, fmt="o" if ch == "edge" else "s", color=c,
                    label=f"{ch} {T:g} K", ms=4, capsize=2)
        d = next((d for d in drag if d["character"] == ch and d["temperature_k"] == T), None)
        if d is not None and tau.size:
            tt = np.linspace(0, tau.max(), 20)
            ax.plot(tt, d["burgers_a"] * 1e-10 * tt * 1e6 / d["drag_pa_s"], "--", color=c,
                    lw=0.8)
    ax.set_xlabel("resolved shear stress τ (MPa)")
    ax.set_ylabel("velocity (m/s)")
    ax.axhline(0, color="0.7", lw=0.5)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
