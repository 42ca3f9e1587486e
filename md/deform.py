"""Deformation of a small crystal with dislocation sources: density and line length by
Burgers vector over strain (DXA), with the stress-strain curve.

The crystal is an n×n×n cubic BCC supercell with dislocation sources: prismatic
1/2<111> vacancy loops and/or spherical voids (loops nucleate at their surfaces).
After NPT equilibration at T, the box is
strained along z at a constant engineering rate (``fix deform``) while x and y are kept
at zero stress (NPT barostat on x, y). Every ``dump_every`` steps the frame is dumped and
analysed with OVITO's DXA. Output: a ``DefectStats`` artifact with ``density.csv`` (per
docs/CONTRACTS.md), ``stress_strain.csv``, plots ``density_strain.png`` and
``stress_strain.png``, and ``dumps/deform.dump`` for OVITO.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.build import bulk
from pydantic import Field
from scalebridge.artifacts import Artifact, produce
from scalebridge.md.dislocations import burgers_family
from scalebridge.md.lammps import (
    RELAX_FTOL,
    LammpsPotential,
    as_potential,
    potential_inputs,
    run_lammps,
)
from scalebridge.md.tables import pyplot, write_rows
from scalebridge.plotting import save_figure
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.md.deform")

FAMILIES = ("1/2<111>", "<100>", "other")


class DeformMaker(StrictModel):
    """Uniaxial deformation of a BCC crystal containing voids and dislocation loops."""

    element: str = Field("Mo", description="chemical element")
    lattice: Literal["bcc", "fcc"] = Field("bcc", description="crystal structure")
    size: int = Field(8, ge=3, le=40, description="n of the n×n×n cubic supercell")
    voids: int = Field(0, ge=0, le=20, description="number of spherical voids (sources)")
    void_radius_a: float = Field(5.0, gt=0, description="void radius, Å")
    loops: int = Field(1, ge=0, le=20,
                       description="prismatic 1/2<111> vacancy loops (sources), random normals")
    loop_radius_a: float = Field(8.0, gt=0, description="loop radius, Å")
    temperature_k: float = Field(300.0, ge=1, description="temperature, K")
    mode: Literal["tension", "compression"] = Field("compression",
                                                    description="loading along z")
    strain_rate_per_ps: float = Field(0.005, gt=0, description="engineering strain rate, 1/ps")
    max_strain: float = Field(0.12, gt=0, le=0.5, description="final engineering strain")
    equil_steps: int = Field(500, ge=0, description="NPT steps before loading")
    dump_every: int = Field(500, ge=1, description="dump + DXA every N steps")
    timestep_ps: float = Field(0.002, gt=0, le=0.005, description="MD timestep, ps")
    seed: int = Field(8841, ge=1, description="void placement and velocity seed")

    def structure(self, a0: float) -> Atoms:
        """The supercell with ``voids`` spherical holes and ``loops`` prismatic
        1/2<111> vacancy loops at random, non-overlapping spots.

        A loop of radius R with normal n ∥ <111>: the atoms of a disk of thickness b
        (three (222) planes) are removed and the crystal above and below is pulled
        together by b/2 each (decaying away from the disk), so that a relaxation closes
        it into a perfect loop (DXA: one 1/2<111> line of length ≈ 2πR).
        """
        atoms = bulk(self.element, self.lattice, a=a0, cubic=True).repeat(self.size)
        rng = np.random.default_rng(self.seed)
        L = atoms.cell.lengths()
        b = a0 * np.sqrt(3) / 2
        sizes = [self.void_radius_a] * self.voids + [self.loop_radius_a] * self.loops
        centres: list[np.ndarray] = []
        tries = 0
        while len(centres) < len(sizes) and tries < 1000:
            tries += 1
            c = rng.random(3) * L
            r = sizes[len(centres)]
            if all(np.linalg.norm(_mic(c - o, L)) > 1.5 * (r + ro) for o, ro in
                   zip(centres, sizes, strict=False)):
                centres.append(c)
        keep = np.ones(len(atoms), bool)
        for c in centres[:self.voids]:
            d = _mic(atoms.positions - c, L)
            keep &= np.linalg.norm(d, axis=1) > self.void_radius_a
        for c in centres[self.voids:]:
            n = np.array([1.0, 1.0, 1.0]) * rng.choice([-1.0, 1.0], 3) / np.sqrt(3)
            d = _mic(atoms.positions - c, L)
            ax = d @ n
            rad = np.linalg.norm(d - np.outer(ax, n), axis=1)
            R = self.loop_radius_a
            keep &= ~((rad < R) & (ax > -b / 2 + 1e-3) & (ax <= b / 2 + 1e-3))
            smooth = 0.5 * (1 - np.tanh((rad - R) / 1.5))
            u = -np.sign(ax) * b / 2 * np.exp(-np.maximum(np.abs(ax) - b / 2, 0) / 6.0) * smooth
            atoms.positions += np.outer(u, n)
        return atoms[keep]

    def steps(self) -> int:
        return round(self.max_strain / self.strain_rate_per_ps / self.timestep_ps)

    def script(self) -> str:
        T, dt = self.temperature_k, self.timestep_ps
        rate = self.strain_rate_per_ps * (1 if self.mode == "tension" else -1)
        k = self.dump_every
        return "\n".join([
            "thermo 100", "thermo_style custom step temp pe lz pxx pyy pzz",
            "min_style fire", f"minimize 0 {RELAX_FTOL} 2000 20000",
            f"velocity all create {2 * T} {self.seed} mom yes rot yes dist gaussian",
            f"fix sb_npt all npt temp {T} {T} {100 * dt} iso 0.0 0.0 {1000 * dt}",
            f"run {self.equil_steps}", "unfix sb_npt",
            "variable sb_lz0 equal $(lz:%.10f)",
            "reset_timestep 0",
            f"fix sb_npt all npt temp {T} {T} {100 * dt} x 0.0 0.0 {1000 * dt} "
            f"y 0.0 0.0 {1000 * dt}",
            f"fix sb_def all deform 1 z erate {rate:.8g} remap x",
            f'fix sb_ss all print {max(k // 5, 1)} "$(step) $((lz-v_sb_lz0)/v_sb_lz0:%.8f) '
            f'$(-pzz*0.1:%.4f) $(temp:%.2f)" file stress_strain.txt screen no '
            f'title "# step strain stress_mpa temp_k"',
            f"dump sb_d all custom {k} deform.dump id type element x y z",
            "dump_modify sb_d sort id element ${sb_elements}",
            f"run {self.steps()}",
        ])

    def make(self, potential: Artifact | str | Path | LammpsPotential, path: str | Path,
             *, properties: Artifact | str | Path | None = None, a0_a: float | None = None,
             resources: Resources | None = None, force: bool = False) -> Artifact:
        """Run the deformation into a ``DefectStats`` artifact (``density.csv``)."""
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

                a0 = relaxed_lattice_constant(pot, work / "runs" / "a0", self.element,
                                              self.lattice)
            run = work / "runs" / "deform"
            body = f'variable sb_elements string "{" ".join(pot.type_map)}"\n' + self.script()
            run_lammps(run, body, pot, self.structure(a0), resources=resources,
                       timestep_ps=self.timestep_ps, name="deform",
                       total_steps=self.equil_steps + self.steps())
            return analyse_deformation(run, work, self.lattice)

        settings = {"maker": self, "a0_a": a0_a, "potential": pot.name}
        return produce("DefectStats", path, settings, inputs, build, force=force)


def _mic(d: np.ndarray, L: np.ndarray) -> np.ndarray:
    return d - L * np.round(d / L)


def dislocation_content(dump: Path, lattice: str = "bcc") -> list[dict[str, Any]]:
    """Per frame of a dump: step, cell volume (Å³) and DXA line length per family (Å)."""
    from scalebridge.md.dislocations import _dxa_pipeline

    pipe = _dxa_pipeline(Path(dump), lattice, min_length_a=0.0)
    out = []
    for frame in range(pipe.source.num_frames):
        data = pipe.compute(frame)
        lengths = dict.fromkeys(FAMILIES, 0.0)
        if data.dislocations is not None:
            for seg in data.dislocations.segments:
                fam = burgers_family(seg.true_burgers_vector)
                lengths[fam if fam in lengths else "other"] += float(seg.length)
        out.append({"step": int(data.attributes.get("Timestep", frame)),
                    "volume_a3": float(abs(np.linalg.det(np.asarray(data.cell[:, :3])))),
                    **lengths})
    return out


def analyse_deformation(run: Path, work: Path, lattice: str = "bcc") -> dict[str, Any]:
    """DXA on ``run/deform.dump`` → ``density.csv`` and plots in ``work``."""
    ss = np.loadtxt(run / "stress_strain.txt", comments="#", ndmin=2)
    write_rows(work / "stress_strain.csv",
               [{"step": int(r[0]), "strain": float(r[1]), "stress_mpa": float(r[2]),
                 "temperature_k": float(r[3])} for r in ss],
               ["step", "strain", "stress_mpa", "temperature_k"])
    frames = dislocation_content(run / "deform.dump", lattice)
    rows = []
    by_step = {int(r[0]): r for r in ss}
    for f in frames:
        r = by_step.get(f["step"])
        if r is None:
            continue
        total = sum(f[k] for k in FAMILIES)
        row = {"strain": float(r[1]), "stress_mpa": float(r[2]),
               "density_m2": total / f["volume_a3"] * 1e20, "line_length_a_total": total}
        row.update({f"line_length_a_{k}": f[k] for k in FAMILIES})
        rows.append(row)
    cols = ["strain", "stress_mpa", "density_m2", "line_length_a_total",
            *[f"line_length_a_{k}" for k in FAMILIES]]
    write_rows(work / "density.csv", rows, cols)
    (work / "dumps").mkdir(exist_ok=True)
    shutil.copyfile(run / "deform.dump", work / "dumps" / "deform.dump")
    shutil.copyfile(work / "density.csv", work / "density_strain.csv")
    _plots(ss, rows, work)
    peak = float(np.abs(ss[:, 2]).max()) if ss.size else float("nan")
    return {"frames": len(rows), "max_density_m2": max((r["density_m2"] for r in rows),
                                                       default=0.0),
            "peak_stress_mpa": peak,
            "final_strain": float(ss[-1, 1]) if ss.size else 0.0}


def _plots(ss: np.ndarray, rows: list[dict[str, Any]], work: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(np.abs(ss[:, 1]), np.abs(ss[:, 2]), lw=1)
    ax.set_xlabel("|strain|")
    ax.set_ylabel("|σ_zz| (MPa)")
    fig.tight_layout()
    save_figure(fig, work / "stress_strain.png")
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    s = np.abs([r["strain"] for r in rows])
    ax.plot(s, [r["density_m2"] for r in rows], "o-", ms=3, label="total")
    for k in FAMILIES:
        ax.plot(s, [r[f"line_length_a_{k}"] / max(r["line_length_a_total"], 1e-30)
                    * r["density_m2"] for r in rows], "--", lw=0.8, label=k)
    ax.set_xlabel("|strain|")
    ax.set_ylabel("dislocation density (m⁻²)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, work / "density_strain.png")
    plt.close(fig)
