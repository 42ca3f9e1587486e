"""Materials properties of a potential, beside the DFT values.

:class:`PropertiesMaker` runs one LAMMPS input on an n×n×n cubic supercell that

1. relaxes the cell (``box/relax iso``) → a0 at 0 K;
2. applies ±δ normal and shear strains (finite differences of the stress) → C11, C12, C44;
3. scales the volume by ±4 % → E(V), fitted with Birch–Murnaghan → bulk modulus;
4. runs NPT at T → a0(T); then NVE → energy drift (eV/atom/ps);
5. deletes one atom and relaxes at fixed volume → vacancy formation energy;
6. (``stacking_faults``) the generalised stacking-fault curves of the lattice at the
   relaxed a0 (:mod:`scalebridge.md.stacking`: {111}<112> in FCC with γ_SF, {110}<111>
   and {112}<111> in BCC), ``gsf_<plane>.csv`` with ``gsf_<plane>.png`` beside it.

From C_ij it derives the isotropic shear modulus (Voigt–Reuss–Hill), Poisson's ratio and
the Burgers vector b = a0·√3/2 (BCC) or a0/√2 (FCC) that dislocation dynamics needs.

The crystal: ``element``, ``lattice`` and ``a0_guess_a`` as set, else (the chain) from the
``DFTDataset`` (its ``crystal`` record: the species and lattice of the data's
lowest-energy bulk cell), else the potential's single species with ASE's reference
lattice (:meth:`PropertiesMaker.resolve`); a lattice other than BCC or FCC is refused, and
so is a potential of several species (an alloy) with neither an element set nor a data
set: the protocol computes one element's crystal, not a solid solution.
The DFT values beside the model's (``properties.json`` ``dft``) are ``dft_reference``
(the chain: fitted to the data set's own cells, with their source), else the built-in
:data:`DFT_REFERENCE` table, labelled as such.
Output: a ``Properties`` artifact (docs/CONTRACTS.md) with ``properties.json``,
``eos.csv``/``eos.png``, ``nve.csv``/``nve.png``, ``gsf_*.csv``/``gsf_*.png`` and the
LAMMPS runs in ``lammps/`` and ``gsf/``.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.build import bulk
from pydantic import Field
from scalebridge.artifacts import Artifact, produce
from scalebridge.errors import DataError, SettingsError
from scalebridge.md.lammps import (
    BAR_TO_GPA,
    EV_A3_TO_GPA,
    DeviationSettings,
    LammpsPotential,
    as_potential,
    potential_inputs,
    run_lammps,
)
from scalebridge.plotting import save_figure
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.md.properties")

#: Fallback DFT (PBE) values where no data set gives them: mlearn Mo (Zuo et al. 2020),
#: a0 of its ground-state cell and C_ij fitted to its Elastic cells (training + test, |ε| <=
#: 2 %; the chain fits the same 479.3/163.7/108.2 GPa from the data). Derived keys below.
DFT_REFERENCE: dict[str, dict[str, float]] = {
    "Mo": {"a0_a": 3.1676, "c11_gpa": 479.0, "c12_gpa": 164.0, "c44_gpa": 108.0},
}
DFT_TABLE_SOURCE = ("built-in table (md/properties.py DFT_REFERENCE: mlearn Mo, Zuo et al., "
                    "J. Phys. Chem. A 124, 731 (2020))")
#: Lattices the md protocols know.
PROTOCOL_LATTICES = ("bcc", "fcc")


def isotropic_moduli(c11: float, c12: float, c44: float) -> dict[str, float]:
    """Cubic C_ij (GPa) → bulk modulus, VRH shear modulus (GPa), Poisson's ratio."""
    bulk_mod = (c11 + 2 * c12) / 3
    g_v = (c11 - c12 + 3 * c44) / 5
    g_r = 5 * (c11 - c12) * c44 / (4 * c44 + 3 * (c11 - c12))
    g = 0.5 * (g_v + g_r)
    nu = (3 * bulk_mod - 2 * g) / (2 * (3 * bulk_mod + g))
    return {"bulk_modulus_gpa": bulk_mod, "shear_modulus_gpa": g, "poisson_ratio": nu}


def burgers_length(a0: float, lattice: str) -> float:
    """|b| of the perfect dislocation, Å: a0√3/2 (BCC 1/2<111>), a0/√2 (FCC 1/2<110>)."""
    return a0 * math.sqrt(3) / 2 if lattice == "bcc" else a0 / math.sqrt(2)


def dft_properties(element: str, lattice: str = "bcc",
                   reference: dict[str, Any] | None = None) -> dict[str, Any]:
    """DFT values with the derived moduli: ``reference`` (e.g. fitted to a data set, its
    ``source`` kept) when given, else the built-in table for ``element`` (its ``source``
    says so), ``{}`` if neither has any."""
    if reference:
        ref: dict[str, Any] = dict(reference)
    else:
        ref = dict(DFT_REFERENCE.get(element, {}))
        if ref:
            ref["source"] = DFT_TABLE_SOURCE
    if {"c11_gpa", "c12_gpa", "c44_gpa"} <= ref.keys():
        ref.update(isotropic_moduli(ref["c11_gpa"], ref["c12_gpa"], ref["c44_gpa"]))
    if "a0_a" in ref:
        ref["burgers_a"] = burgers_length(ref["a0_a"], lattice)
    return ref


def birch_murnaghan(volumes: np.ndarray, energies: np.ndarray) -> dict[str, float]:
    """Fit the 3rd-order Birch–Murnaghan E(V) (per atom). Returns V0 (Å³), E0 (eV),
    B0 (GPa), B0'."""
    from scipy.optimize import curve_fit

    def bm(v, e0, v0, b0, bp):
        eta = (v0 / v) ** (2 / 3)
        return e0 + 9 * v0 * b0 / 16 * ((eta - 1) ** 3 * bp + (eta - 1) ** 2 * (6 - 4 * eta))

    i = int(np.argmin(energies))
    c = np.polyfit(volumes, energies, 2)
    b_guess = max(2 * c[0] * volumes[i], 1e-3)
    p, _ = curve_fit(bm, volumes, energies, p0=[energies[i], volumes[i], b_guess, 4.0],
                     maxfev=20000)
    return {"v0_a3": float(p[1]), "e0_ev": float(p[0]), "b0_gpa": float(p[2] * EV_A3_TO_GPA),
            "b0_prime": float(p[3])}


class PropertiesMaker(StrictModel):
    """Lattice constant, elastic constants, EOS, vacancy formation energy, NVE drift and
    stacking faults."""

    element: str | None = Field(
        None, description="chemical element (must be in the potential); None: the data "
        "set's (chain), else the potential's single species")
    lattice: Literal["bcc", "fcc"] | None = Field(
        None, description="crystal structure; None: the data set's lowest-energy bulk "
        "cell's (chain), else ASE's reference lattice of the element")
    a0_guess_a: float | None = Field(
        None, gt=0, description="starting lattice constant, Å; None: from the data set "
        "(chain), else the DFT table, else ASE's reference value")
    dft_reference: dict[str, Any] | None = Field(
        None, description="DFT values to compare with (a0_a, c11_gpa, c12_gpa, c44_gpa, "
        "bulk_modulus_eos_gpa, source); None: the data set's fit (chain), else the "
        "built-in table (labelled)")
    supercell: int = Field(4, ge=2, le=12, description="n of the n×n×n cubic supercell")
    strain: float = Field(0.005, gt=0, le=0.05,
                          description="finite strain for the elastic constants")
    eos_max_strain: float = Field(0.02, gt=0, le=0.2,
                                  description="largest linear strain of the EOS scan")
    eos_points: int = Field(9, ge=5, le=41, description="volumes in the EOS scan")
    temperature_k: float = Field(300.0, ge=1, description="NPT and NVE temperature, K")
    npt_steps: int = Field(2000, ge=0, description="NPT steps for a0(T)")
    nve_steps: int = Field(2000, ge=0, description="NVE steps for the energy drift")
    timestep_ps: float = Field(0.001, gt=0, le=0.01, description="MD timestep, ps")
    seed: int = Field(12345, ge=1, description="velocity seed")
    stacking_faults: bool = Field(True, description="also compute the generalised "
                                  "stacking-fault curves (FCC {111}<112> with γ_SF; BCC "
                                  "{110}<111> and {112}<111>)")
    gsf_points: int = Field(12, ge=6, le=120, description="shifts per GSF period (a "
                            "multiple of 3, so the FCC intrinsic fault is sampled; 12 "
                            "samples γ_us at b_p/2 and b/2)")
    devi: DeviationSettings = Field(default_factory=DeviationSettings,
                                    description="model deviation of ensembles")

    def resolve(self, potential: LammpsPotential | None = None,
                crystal: dict[str, Any] | None = None) -> PropertiesMaker:
        """A copy with ``element``, ``lattice``, ``a0_guess_a`` and ``dft_reference``
        filled in (module doc): from the settings, then ``crystal`` (a data set's
        ``crystal`` record), then the potential's type map and ASE's tables."""
        return self.model_copy(update=resolve_crystal(
            self, potential, crystal, with_reference=True))

    def structure(self) -> Atoms:
        """The cubic supercell at the guessed lattice constant."""
        m = self if self.element and self.lattice and self.a0_guess_a else self.resolve()
        return bulk(m.element, m.lattice, a=m.a0_guess_a, cubic=True).repeat(
            self.supercell)

    def script(self) -> str:
        """The LAMMPS body (see the module docstring for the steps)."""
        n, d = self.supercell, self.strain
        T, dt = self.temperature_k, self.timestep_ps
        lines = [
            "thermo_style custom step temp pe etotal press pxx pyy pzz lx vol",
            "thermo 100",
            "# 1. relaxed lattice constant",
            "fix sb_br all box/relax iso 0.0 vmax 0.001",
            "minimize 0 1e-10 2000 20000",
            "unfix sb_br",
            "minimize 0 1e-10 2000 20000",
            f'print "SB a0_a $(lx/{n}:%.10f)"',
            'print "SB e0_ev $(pe/atoms:%.10f)"',
            'print "SB v0_a3 $(vol/atoms:%.10f)"',
            "variable sb_lx0 equal $(lx:%.12f)",
            "# 2. elastic constants: stress at ±strain (pressure p = -σ, bar)",
        ]
        for sign, tag in ((1, "p"), (-1, "m")):
            e = sign * d
            lines += [f"change_box all x scale {1 + e:.10f} remap",
                      "run 0",
                      f'print "SB sxx_x{tag} $(-pxx:%.10f)"',
                      f'print "SB syy_x{tag} $(-pyy:%.10f)"',
                      f"change_box all x scale {1 / (1 + e):.12f} remap",
                      f"change_box all yz final $({e}*lz:%.12f) remap units box",
                      "run 0",
                      f'print "SB syz_{tag} $(-pyz:%.10f)"',
                      "change_box all yz final 0.0 remap units box"]
        lines.append("# 3. equation of state")
        for i, e in enumerate(np.linspace(-self.eos_max_strain, self.eos_max_strain,
                                          self.eos_points)):
            s = 1 + e
            lines += [f"change_box all x scale {s:.10f} y scale {s:.10f} z scale {s:.10f} remap",
                      "run 0",
                      f'print "SB eos_v_{i} $(vol/atoms:%.10f)"',
                      f'print "SB eos_e_{i} $(pe/atoms:%.10f)"',
                      f"change_box all x scale {1 / s:.12f} y scale {1 / s:.12f} "
                      f"z scale {1 / s:.12f} remap"]
        lines += ["# 4. NPT a0(T), then NVE drift"]
        if self.npt_steps > 0:
            lines += [f"velocity all create {2 * T} {self.seed} mom yes rot yes dist gaussian",
                      f"fix sb_npt all npt temp {T} {T} {100 * dt} iso 0.0 0.0 {1000 * dt}",
                      "variable sb_a equal lx",
                      f"fix sb_avg all ave/time 10 {max(self.npt_steps // 20, 1)} "
                      f"{self.npt_steps} v_sb_a",
                      f"run {self.npt_steps}",
                      f'print "SB a0_npt_a $(f_sb_avg/{n}:%.10f)"',
                      "unfix sb_avg", "unfix sb_npt"]
        else:
            lines += [f"velocity all create {2 * T} {self.seed} mom yes rot yes dist gaussian"]
        if self.nve_steps > 0:
            lines += [
                      "fix sb_nve all nve",
                      'fix sb_pr all print 10 "$(step) $(time:%.6f) $(etotal:%.10f) '
                      '$(temp:%.4f)" file nve.txt screen no title "# step time_ps etotal_ev '
                      'temp_k"',
                      f"run {self.nve_steps}",
                      "unfix sb_pr", "unfix sb_nve"]
        lines += ["# 5. vacancy at the relaxed a0, fixed volume",
                  "velocity all set 0 0 0",
                  "change_box all x final 0 ${sb_lx0} y final 0 ${sb_lx0} "
                  "z final 0 ${sb_lx0} remap units box",
                  "minimize 0 1e-10 2000 20000",
                  'print "SB ebulk_ev $(pe:%.10f)"',
                  "group sb_one id 1",
                  "delete_atoms group sb_one",
                  "minimize 0 1e-10 2000 20000",
                  'print "SB evac_ev $(pe:%.10f)"',
                  'print "SB nvac $(atoms)"']
        return "\n".join(lines)

    def compute(self, potential: LammpsPotential, workdir: Path,
                resources: Resources | None = None,
                gsf_cells: dict[str, dict[str, dict[str, Any]]] | None = None
                ) -> dict[str, Any]:
        """Run LAMMPS in ``workdir`` and derive the properties (no artifact).
        ``gsf_cells``: a data set's GSF cells (:func:`scalebridge.md.stacking.
        dft_gsf_sets`), compared with the potential where a curve was computed."""
        if not (self.element and self.lattice and self.a0_guess_a):
            return self.resolve(potential).compute(potential, workdir, resources, gsf_cells)
        workdir = Path(workdir)
        res = run_lammps(workdir / "lammps", self.script(), potential, self.structure(),
                         resources=resources, devi=self.devi, timestep_ps=self.timestep_ps,
                         name="properties", total_steps=self.npt_steps + self.nve_steps,
                         triclinic=True)
        v = res.values
        d = self.strain
        gpa = BAR_TO_GPA
        c11 = (v["sxx_xp"] - v["sxx_xm"]) / (2 * d) * gpa
        c12 = (v["syy_xp"] - v["syy_xm"]) / (2 * d) * gpa
        c44 = (v["syz_p"] - v["syz_m"]) / (2 * d) * gpa
        a0 = res.value("a0_a")
        vols = np.array([v[f"eos_v_{i}"] for i in range(self.eos_points)])
        ens = np.array([v[f"eos_e_{i}"] for i in range(self.eos_points)])
        try:
            eos = birch_murnaghan(vols, ens)
        except RuntimeError:
            raise DataError(f"{workdir}: Birch-Murnaghan fit of E(V) failed; the potential "
                            "has no minimum in the scanned volume range") from None
        n_all = len(self.structure())
        evac = v["evac_ev"] - (v["nvac"] / n_all) * v["ebulk_ev"]
        out: dict[str, Any] = {"a0_a": a0, "a0_npt_a": v.get("a0_npt_a"),
                               "c11_gpa": c11, "c12_gpa": c12, "c44_gpa": c44}
        out.update(isotropic_moduli(c11, c12, c44))
        out["bulk_modulus_eos_gpa"] = eos["b0_gpa"]
        out["eos"] = eos
        out["burgers_a"] = burgers_length(a0, self.lattice)
        out["vacancy_formation_ev"] = evac
        # the crystal's energy per atom at a0 (eV/atom; DFT-referenced, so not a cohesive
        # energy: that needs the isolated atom's)
        out["energy_per_atom_ev"] = v["e0_ev"]
        out["temperature_k"] = self.temperature_k
        nve = _read_nve(res.workdir / "nve.txt") if self.nve_steps else None
        out["nve_drift_ev_per_atom_ps"] = None
        if nve is not None and len(nve) > 2:
            slope = np.polyfit(nve[:, 1], nve[:, 2], 1)[0]
            out["nve_drift_ev_per_atom_ps"] = float(slope / n_all)
            out["nve_fluctuation_ev_per_atom"] = float(np.std(nve[:, 2]) / n_all)
        dev = res.deviation
        out["max_devi_f_ev_a"] = float(dev.max_devi_f.max()) if dev and dev.steps.size else None
        out["flagged"] = bool(dev.flagged) if dev else False
        out["devi_threshold_ev_a"] = self.devi.f_threshold_ev_a
        out["element"], out["lattice"] = self.element, self.lattice
        out["dft"] = dft_properties(self.element, self.lattice, self.dft_reference)
        out["_eos_table"] = np.column_stack([vols, ens])
        out["_nve_table"] = nve
        out["_gsf"] = out["_gsf_dft"] = None
        if self.stacking_faults:
            from scalebridge.md.stacking import compare_gsf_with_dft, stacking_faults

            curves = stacking_faults(potential, a0, self.lattice, self.element,
                                     workdir / "gsf", points=self.gsf_points,
                                     resources=resources)
            out["_gsf"] = curves
            if gsf_cells:
                out["_gsf_dft"] = compare_gsf_with_dft(potential, curves, gsf_cells,
                                                       workdir / "gsf_dft", resources)
            out["stacking_faults"] = {k: c.summary() for k, c in curves.items()}
            if self.lattice == "fcc":
                out["gamma_sf_mj_m2"] = out["stacking_faults"]["111_112"]["gamma_sf_mj_m2"]
                out["gamma_us_mj_m2"] = out["stacking_faults"]["111_112"]["gamma_us_mj_m2"]
        return out

    def make(self, potential: Artifact | str | Path | LammpsPotential, path: str | Path,
             resources: Resources | None = None, *, force: bool = False,
             gsf_cells: dict[str, dict[str, dict[str, Any]]] | None = None) -> Artifact:
        """Compute the properties into a ``Properties`` artifact at ``path`` (the
        settings :meth:`resolve` gives enter its fingerprint). ``gsf_cells``: a data
        set's GSF cells to compare the stacking faults with (the chain passes its
        DFTDataset's, :func:`scalebridge.md.stacking.dft_gsf_sets`)."""
        pot = as_potential(potential)
        maker = self.resolve(pot)

        def build(work: Path) -> dict[str, Any]:
            props = maker.compute(pot, work, resources, gsf_cells)
            eos_t, nve_t = props.pop("_eos_table"), props.pop("_nve_table")
            gsf, gsf_dft = props.pop("_gsf"), props.pop("_gsf_dft")
            if gsf:
                from scalebridge.md.stacking import write_gsf

                props["stacking_faults"] = write_gsf(gsf, work, comparison=gsf_dft)
            _write_csv(work / "eos.csv", ["volume_a3_per_atom", "energy_ev_per_atom"], eos_t)
            _plot_xy(work / "eos.png", eos_t[:, 0], eos_t[:, 1], "volume (Å³/atom)",
                     "energy (eV/atom)", f"EOS, B0 = {props['bulk_modulus_eos_gpa']:.0f} GPa")
            if nve_t is not None and len(nve_t):
                _write_csv(work / "nve.csv", ["step", "time_ps", "etotal_ev", "temp_k"], nve_t)
                _plot_xy(work / "nve.png", nve_t[:, 1], nve_t[:, 2] - nve_t[0, 2],
                         "time (ps)", "total energy − its start (eV)",
                         f"NVE energy (start {nve_t[0, 2]:.6g} eV)")
            (work / "properties.json").write_text(json.dumps(_round(props), indent=2) + "\n")
            summary = {k: _round(props[k]) for k in (
                "a0_a", "c11_gpa", "c12_gpa", "c44_gpa", "bulk_modulus_gpa",
                "shear_modulus_gpa", "poisson_ratio", "burgers_a", "vacancy_formation_ev",
                "nve_drift_ev_per_atom_ps")}
            summary["lattice"] = props["lattice"]
            from ase.data import atomic_numbers
            from scalebridge.potentials.properties import ATOMS_PER_CELL

            if (props.get("element") in atomic_numbers
                    and props["lattice"] in ATOMS_PER_CELL):
                # for the FEM's wave speeds (how long an elastic wave takes to cross it)
                from scalebridge.md.mobility import crystal_density

                summary["density_kg_m3"] = _round(crystal_density(
                    props["a0_a"], props["element"], props["lattice"]))
            for k in ("gamma_sf_mj_m2", "gamma_us_mj_m2"):
                if k in props:
                    summary[k] = _round(props[k])
            for k, v in props.get("stacking_faults", {}).items():
                if "gamma_us_mj_m2" in v and props["lattice"] == "bcc":
                    summary[f"gamma_us_{k}_mj_m2"] = _round(v["gamma_us_mj_m2"])
            return summary

        inputs = potential_inputs(pot)
        settings: dict[str, Any] = {"maker": maker, "potential": pot.name}
        if gsf_cells:
            from scalebridge.md.stacking import gsf_cells_digest

            settings["gsf_cells"] = gsf_cells_digest(gsf_cells)
        return produce("Properties", path, settings, inputs, build, force=force)


def resolve_crystal(maker: Any, potential: LammpsPotential | None = None,
                    crystal: dict[str, Any] | None = None, *,
                    with_reference: bool = False) -> dict[str, Any]:
    """The crystal fields a maker left unset (``element``, ``lattice``, ``a0_guess_a``,
    and with ``with_reference`` its ``dft_reference``), as an update for
    ``maker.model_copy``: from ``crystal`` (a ``DFTDataset``'s ``crystal`` record) where
    it has the maker's element (its cells of that element alone:
    :func:`scalebridge.potentials.crystal.element_record`; one warning line where they
    give no DFT reference), else the potential's single species, ASE's reference
    lattice and the DFT table. Works for any maker with these fields; fields the user set
    (``model_fields_set``), and fields the maker does not have, are left alone.

    An alloy potential (several species) with no element set and no data set is refused
    rather than run on a default element: the protocols (vacancy, stacking faults,
    dislocations) are defined for a one-element crystal, and which element's crystal is
    wanted is the user's choice. With a data set, its ``crystal`` record (the
    lowest-energy one-element bulk cell, e.g. Mo for the Mo–Nb–W data) decides.

    Raises:
        SettingsError: no element can be chosen (a multi-species potential with none
            set), or its lattice has no md protocol.
    """
    from ase.data import atomic_numbers, reference_states

    fields = type(maker).model_fields
    user = maker.model_fields_set
    crystal = crystal or {}
    up: dict[str, Any] = {}
    element = getattr(maker, "element", None) if "element" in user else None
    source = "settings"
    if element is None and crystal.get("element"):
        element, source = crystal["element"], "the data set"
    if element is None and potential is not None and len(potential.type_map) == 1:
        element, source = potential.type_map[0], f"the potential ({potential.name})"
    if element is None and potential is not None and len(potential.type_map) > 1:
        species = ", ".join(potential.type_map)
        raise SettingsError(
            f"md: the potential holds {len(potential.type_map)} species ({species}) and the "
            "md protocols build a one-element crystal: set element (e.g. element = "
            f'"{potential.type_map[0]}" in the settings) or pass the DFTDataset, whose '
            "lowest-energy one-element bulk cell names it")
    if element is None:
        element = getattr(maker, "element", None)
        source = "the default"
    if not element or element not in atomic_numbers:
        raise SettingsError(f"md: element {element!r} is not a chemical symbol; set element")
    if potential is not None and element not in potential.type_map:
        raise SettingsError(f"md: element {element} (from {source}) is not in the "
                            f"potential's type map {list(potential.type_map)}; set element")
    if "element" in fields:
        up["element"] = element
    from scalebridge.potentials.crystal import element_record

    rec = element_record(crystal, element)          # the data's cells of this element
    from_data = bool(rec)
    ref_state = reference_states[atomic_numbers[element]] or {}
    if "lattice" in fields:
        lattice = getattr(maker, "lattice", None) if "lattice" in user else None
        why = "set"
        if lattice is None and from_data and rec.get("structure"):
            lattice = rec["structure"]
            why = "the data set's lowest-energy bulk cell"
        if lattice is None:
            lattice = ref_state.get("symmetry") or getattr(maker, "lattice", None)
            why = "ASE's reference state"
        if lattice not in PROTOCOL_LATTICES:
            raise SettingsError(f"md: {element} is {lattice} ({why}); the md protocols "
                                "cover bcc and fcc only: set lattice to run one anyway")
        up["lattice"] = lattice
    lattice = up.get("lattice", getattr(maker, "lattice", None))
    if "a0_guess_a" in fields and "a0_guess_a" not in user:
        a0 = rec.get("a0_guess_a") if from_data else None
        if a0 is None:
            a0 = DFT_REFERENCE.get(element, {}).get("a0_a")
        if a0 is None and ref_state.get("symmetry") == lattice:
            a0 = ref_state.get("a")
        if a0 is None:  # another lattice: the same volume per atom as ASE's
            from ase.build import bulk as _bulk

            v = _bulk(element).get_volume() / len(_bulk(element))
            a0 = (v * (2 if lattice == "bcc" else 4)) ** (1 / 3)
        up["a0_guess_a"] = float(a0)
    if with_reference and "dft_reference" in fields and "dft_reference" not in user:
        ref = rec.get("dft_reference") if from_data else None
        if ref and rec.get("structure") == lattice:
            up["dft_reference"] = dict(ref)
        elif crystal:
            why = (f"its {element} cells are {rec.get('structure')}, not {lattice}" if ref
                   else rec.get("note") or "it records none")
            log.warning("md: the data set gives no DFT reference for %s: %s", element, why)
    return up


def load_properties(path: str | Path | Artifact) -> dict[str, Any]:
    """``properties.json`` of a ``Properties`` artifact."""
    from scalebridge.artifacts import read_artifact

    art = path if isinstance(path, Artifact) else read_artifact(path, "Properties")
    return json.loads(art.file("properties.json").read_text())


def lattice_constant_input(properties: str | Path | Artifact | None, a0_a: float | None
                           ) -> tuple[Artifact | None, float | None]:
    """(Properties artifact, its a0 in Å) when ``properties`` is given, else (None, a0_a).

    The makers that need a0 take it from a ``Properties`` artifact (which then enters their
    fingerprint), from an explicit ``a0_a``, or (both None) relax it themselves.
    """
    if properties is None:
        return None, a0_a
    from scalebridge.artifacts import read_artifact

    art = properties if isinstance(properties, Artifact) else read_artifact(
        properties, "Properties")
    return art, float(load_properties(art)["a0_a"])


def _read_nve(path: Path) -> np.ndarray | None:
    if not path.is_file():
        return None
    return np.loadtxt(path, comments="#", ndmin=2)


def _round(x: Any) -> Any:
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    return x


def _write_csv(path: Path, header: list[str], rows: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([[f"{x:.10g}" for x in r] for r in np.asarray(rows)])


def _plot_xy(path: Path, x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str,
             title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    ax.plot(x, y, "o-", ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def relaxed_lattice_constant(potential: LammpsPotential, workdir: Path, element: str = "Mo",
                             lattice: str = "bcc", a0_guess_a: float = 3.16,
                             resources: Resources | None = None) -> float:
    """a0 (Å) at 0 K from a box relaxation of a 3×3×3 cubic cell (a quick run for
    stages that need a0 without a Properties artifact)."""
    atoms = bulk(element, lattice, a=a0_guess_a, cubic=True).repeat(3)
    body = "\n".join(["fix sb_br all box/relax iso 0.0 vmax 0.001",
                      "minimize 0 1e-10 2000 20000", 'print "SB a0_a $(lx/3:%.10f)"'])
    res = run_lammps(workdir, body, potential, atoms, resources=resources, name="a0")
    return res.value("a0_a")
