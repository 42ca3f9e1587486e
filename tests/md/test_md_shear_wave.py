"""The edge glide law's candidate saturation speed (issue 18): the transverse wave along
the glide direction polarised along the slip-plane normal, ρv² = C'₁₂₁₂ of the rotated
cubic stiffness (md.mobility.glide_shear_wave_speed), what DefectStats records as its
source, and the built line length ``replicas.csv`` reports."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scalebridge.md.lammps import SNAPPotential
from scalebridge.md.mobility import (
    GlidePoint,
    MobilityMaker,
    crystal_density,
    glide_shear_wave_speed,
    shear_wave_from_properties,
    shear_wave_speed,
)
from scalebridge.md.properties import isotropic_moduli

PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"
A0 = 3.1693          # SNAP Mo, relaxed (tests/md/test_md_properties.py)
#: The maml Ta-W-Nb-Mo SNAP's Nb at 0 K (PropertiesMaker, 3x3x3 cell): C11, C12, C44 GPa,
#: a0 Å. Zener ratio 2 C44/(C11 - C12) = 0.11: strongly anisotropic.
NB = (236.14, 127.32, 5.785, 3.3265)


def _voigt_stiffness(c11: float, c12: float, c44: float) -> np.ndarray:
    """C_ijkl from the 6x6 Voigt matrix (independent of md.mobility.cubic_stiffness)."""
    v = np.zeros((6, 6))
    v[:3, :3] = c12
    v[[0, 1, 2], [0, 1, 2]] = c11
    v[[3, 4, 5], [3, 4, 5]] = c44
    pair = {(0, 0): 0, (1, 1): 1, (2, 2): 2, (1, 2): 3, (2, 1): 3, (0, 2): 4, (2, 0): 4,
            (0, 1): 5, (1, 0): 5}
    c = np.zeros((3, 3, 3, 3))
    for (i, j), p in pair.items():
        for (k, m), q in pair.items():
            c[i, j, k, m] = v[p, q]
    return c


@pytest.mark.parametrize("lattice", ["bcc", "fcc"])
def test_isotropic_limit_is_sqrt_c44_over_rho_on_any_slip_system(lattice):
    c12, c44 = 120.0, 95.0
    c11 = c12 + 2 * c44                                    # Zener ratio 1
    rho = crystal_density(3.2, "Mo", lattice)
    exact = math.sqrt(c44 * 1e9 / rho)
    assert glide_shear_wave_speed(c11, c12, c44, 3.2, "Mo", lattice) == pytest.approx(
        exact, rel=1e-12)
    assert shear_wave_speed(c44, 3.2, "Mo", lattice) == pytest.approx(exact, rel=1e-12)
    # isotropic: the frame does not matter (an arbitrary orthogonal pair)
    g = np.array([0.3, -1.2, 0.7])
    n = np.cross(g, [1.0, 0.4, 0.2])
    assert glide_shear_wave_speed(c11, c12, c44, 3.2, "Mo", lattice, glide_direction=g,
                                  plane_normal=n) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("lattice", ["bcc", "fcc"])
def test_slab_slip_system_gives_the_closed_form_and_the_christoffel_wave(lattice):
    """(C11 - C12 + C44)/3 on BCC [111](-110) and FCC [1-10](111); in BCC [111] is a
    threefold axis, so the two transverse waves along it are degenerate and one of them,
    polarised along [-110], has ρv² equal to the Christoffel matrix's lower eigenvalue."""
    c11, c12, c44, a0 = NB
    rho = crystal_density(a0, "Nb", lattice)
    v = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", lattice)
    assert rho * v ** 2 * 1e-9 == pytest.approx((c11 - c12 + c44) / 3, rel=1e-12)
    if lattice == "bcc":
        g = np.ones(3) / math.sqrt(3)
        gamma = np.einsum("ijkl,j,l->ik", _voigt_stiffness(c11, c12, c44), g, g)
        lam = np.linalg.eigvalsh(gamma)
        assert lam[0] == pytest.approx(lam[1], rel=1e-12)              # degenerate
        assert lam[2] == pytest.approx((c11 + 2 * c12 + 4 * c44) / 3)  # longitudinal
        assert rho * v ** 2 * 1e-9 == pytest.approx(lam[0], rel=1e-12)


def test_anisotropic_speed_is_above_the_isotropic_one_for_nb_and_mo():
    """Nb (maml SNAP): √(μ/ρ) = 1429 m/s is below the ~1530 m/s its edge was seen to
    glide at at 200 MPa (issue 18); the glide-direction wave is 2135 m/s. Mo (mlearn DFT
    C_ij 479/164/108 GPa, a0 3.1676 Å): 3750 against 3540 m/s."""
    c11, c12, c44, a0 = NB
    mu = isotropic_moduli(c11, c12, c44)["shear_modulus_gpa"]
    iso, aniso = shear_wave_speed(mu, a0, "Nb"), glide_shear_wave_speed(c11, c12, c44, a0,
                                                                        "Nb")
    assert iso == pytest.approx(1429, rel=2e-3) and aniso == pytest.approx(2135, rel=2e-3)
    assert iso < 1530 < aniso
    mo = isotropic_moduli(479.0, 164.0, 108.0)["shear_modulus_gpa"]
    assert shear_wave_speed(mo, 3.1676, "Mo") == pytest.approx(3540, rel=1e-3)
    assert glide_shear_wave_speed(479.0, 164.0, 108.0, 3.1676, "Mo") == pytest.approx(
        3750, rel=1e-3)


def test_equivalent_slip_systems_agree_and_other_ones_do_not():
    c11, c12, c44, a0 = NB
    ref = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", "bcc", glide_direction=(1, 1, 1),
                                 plane_normal=(1, -1, 0))
    for g, n in (((-1, 1, 1), (1, 1, 0)), ((1, 1, -1), (0, 1, 1)), ((-1, -1, -1), (1, -1, 0)),
                 ((1, -1, 1), (1, 1, 0)), ((2, 2, 2), (-3, 3, 0))):
        assert glide_shear_wave_speed(c11, c12, c44, a0, "Nb", "bcc", glide_direction=g,
                                      plane_normal=n) == pytest.approx(ref, rel=1e-12)
    # the default is the edge slab's [111](-110)
    assert glide_shear_wave_speed(c11, c12, c44, a0, "Nb") == pytest.approx(ref, rel=1e-12)
    # a cube-axis wave ([100] polarised [010]) is C44's: the rotation matters here
    cube = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", glide_direction=(1, 0, 0),
                                  plane_normal=(0, 1, 0))
    assert cube == pytest.approx(math.sqrt(c44 * 1e9 / crystal_density(a0, "Nb")))
    assert cube < 0.6 * ref
    fcc = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", "fcc")
    assert fcc == pytest.approx(glide_shear_wave_speed(
        c11, c12, c44, a0, "Nb", "fcc", glide_direction=(0, 1, -1), plane_normal=(-1, 1, 1)),
        rel=1e-12)
    with pytest.raises(ValueError, match="not in the plane"):
        glide_shear_wave_speed(c11, c12, c44, a0, "Nb", glide_direction=(1, 1, 1),
                               plane_normal=(1, 1, 0))
    with pytest.raises(ValueError, match="unstable"):
        glide_shear_wave_speed(100.0, 150.0, 10.0, a0, "Nb")       # C11 - C12 + C44 < 0


def test_density_counts_the_atoms_of_the_cubic_cell_and_refuses_other_lattices():
    from scalebridge.errors import SettingsError

    amu = 1.66053906660e-27
    assert crystal_density(3.1676, "Mo") == pytest.approx(
        2 * 95.95 * amu / 3.1676e-10 ** 3, rel=1e-4)                 # ~10,000 kg/m^3
    assert crystal_density(3.1676, "Mo", "fcc") == pytest.approx(
        2 * crystal_density(3.1676, "Mo", "bcc"), rel=1e-12)
    with pytest.raises(SettingsError, match="hcp"):
        crystal_density(3.2, "Mo", "hcp")
    with pytest.raises(SettingsError, match="chemical symbol"):
        crystal_density(3.2, "Xx")


def test_properties_choose_the_speed_and_say_which():
    c11, c12, c44, a0 = NB
    cij = {"c11_gpa": c11, "c12_gpa": c12, "c44_gpa": c44, "shear_modulus_gpa": 17.1}
    v, src = shear_wave_from_properties(cij, a0, "Nb", "bcc")
    assert src == "glide_direction_cij"
    assert v == pytest.approx(glide_shear_wave_speed(c11, c12, c44, a0, "Nb"))
    v, src = shear_wave_from_properties({"shear_modulus_gpa": 17.1, "c44_gpa": None}, a0,
                                        "Nb")
    assert src == "isotropic_mu" and v == pytest.approx(shear_wave_speed(17.1, a0, "Nb"))
    assert shear_wave_from_properties({}, a0, "Nb") == (None, None)


@pytest.fixture(scope="module")
def snap() -> SNAPPotential:
    return SNAPPotential.from_dir(PEERS / "snap")


def _properties(path: Path, doc: dict) -> None:
    from scalebridge.artifacts import produce

    def build(work: Path) -> dict:
        (work / "properties.json").write_text(json.dumps(doc))
        return {}

    produce("Properties", path, doc, {}, build)


def _edge_rows() -> list[dict]:
    b = A0 * math.sqrt(3) / 2 * 1e-10
    rows = []
    for tau in (100.0, 300.0, 600.0):
        v = b * (tau - 20) * 1e6 / 5e-5
        rows += [{"character": "edge", "temperature_k": 300.0, "tau_mpa": tau,
                  "replica": i, "velocity_m_s": v + d, "velocity_err_m_s": 0.02 * v,
                  "block_dof": 4, "status": "ok", "reason": "", "temperature_z_k": 300.0,
                  "n_atoms": 100, "duration_ps": 6.0} for i, d in enumerate((-5, 0, 5))]
    return rows


def test_defectstats_records_the_speed_and_its_source(tmp_path, snap):
    """Through MobilityMaker.make with a Properties artifact (mlearn DFT C_ij of Mo):
    the glide-direction wave, not √(μ/ρ), and ``shear_wave_source`` says so."""
    c11, c12, c44 = 479.0, 164.0, 108.0
    doc = {"a0_a": A0, "c11_gpa": c11, "c12_gpa": c12, "c44_gpa": c44,
           **isotropic_moduli(c11, c12, c44), "element": "Mo", "lattice": "bcc"}
    _properties(tmp_path / "props", doc)
    art = MobilityMaker(characters=["edge"]).make(snap, tmp_path / "ds", rows=_edge_rows(),
                                                  properties=tmp_path / "props")
    fit = json.loads((art.path / "glide_fit.json").read_text())
    want = glide_shear_wave_speed(c11, c12, c44, A0, "Mo")
    assert fit["shear_wave_m_s"] == pytest.approx(want)
    assert fit["shear_wave_m_s"] > shear_wave_speed(doc["shear_modulus_gpa"], A0, "Mo")
    assert fit["shear_wave_source"] == art.summary["shear_wave_source"] == (
        "glide_direction_cij")
    set_art = MobilityMaker(characters=["edge"], shear_wave_m_s=3000.0).make(
        snap, tmp_path / "ds_set", rows=_edge_rows(), properties=tmp_path / "props")
    fit = json.loads((set_art.path / "glide_fit.json").read_text())
    assert (fit["shear_wave_m_s"], fit["shear_wave_source"]) == (3000.0, "setting")


def test_replica_row_reports_the_built_line_length(tmp_path, snap):
    """``line_b`` is the built slab's line (whole repeats: 1 x a0√6 = 2.83 b for the
    requested 2.8 b), the x length of the box LAMMPS ran. A few MD steps only."""
    mk = MobilityMaker(characters=["edge"], temperatures_k=[100.0], taus_mpa=[500.0],
                       edge_cell_b=(2.8, 5.0, 10.0), equil_steps=0, run_steps=20,
                       dump_every=10, blocks=2, fit_from=0.0)
    row = mk.run_point(snap, A0, GlidePoint(character="edge", temperature_k=100.0,
                                            tau_mpa=500.0), tmp_path)
    lines = (tmp_path / "glide.dump").read_text().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("ITEM: BOX BOUNDS"))
    lo, hi = (float(x) for x in lines[i + 1].split()[:2])
    b = A0 * math.sqrt(3) / 2
    assert row["line_b"] == pytest.approx(round((hi - lo) / b, 2))
    assert row["line_b"] == pytest.approx(2 * math.sqrt(2), abs=0.006)
    assert row["line_b"] != mk.edge_cell_b[0]


@pytest.mark.parametrize(("lattice", "closed_form"), [
    ("bcc", lambda c11, c12, c44: (c11 - c12 + c44) / 3.0),
    ("fcc", lambda c11, c12, c44: (c11 - c12 + 4.0 * c44) / 6.0)])
def test_screw_wave_along_its_glide_direction_polarised_along_b(lattice, closed_form):
    """A screw's limiting wave travels along its glide direction (the slab's z) with its
    displacement along b (the line, x). In BCC {110}<111> its C' is the edge's,
    (C11 - C12 + C44)/3, so the edge's candidate speed serves the screw law too; in FCC
    {111}<110> it is (C11 - C12 + 4 C44)/6 (Cu: 19 % above the edge's), which the screw
    law gets as its own candidate (``character="screw"``; it had the edge's)."""
    from scalebridge.md.dislocations import slab_axes

    c11, c12, c44, a0 = NB                                 # anisotropic: Zener 0.11
    line, _, glide = slab_axes(lattice, "screw")
    rho = crystal_density(a0, "Nb", lattice)
    screw = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", lattice,
                                   glide_direction=glide, plane_normal=line)
    assert screw == pytest.approx(math.sqrt(closed_form(c11, c12, c44) * 1e9 / rho),
                                  rel=1e-12)
    edge = glide_shear_wave_speed(c11, c12, c44, a0, "Nb", lattice)
    assert (screw == pytest.approx(edge, rel=1e-12)) == (lattice == "bcc")
    assert glide_shear_wave_speed(c11, c12, c44, a0, "Nb", lattice,
                                  character="screw") == pytest.approx(screw, rel=1e-12)
    props = {"c11_gpa": c11, "c12_gpa": c12, "c44_gpa": c44}
    assert shear_wave_from_properties(props, a0, "Nb", lattice, "screw") == (
        pytest.approx(screw, rel=1e-12), "glide_direction_cij")


def test_each_character_law_gets_its_own_limiting_wave():
    """Edge and screw rows that saturate at different speeds (FCC Cu-like: 2,142 and
    2,559 m/s): with each character's candidate, each law takes its own as v_s."""
    from scalebridge.md.glide_fit import fit_glide_laws

    b, drag = 2.55e-10, 2e-5
    tau = np.array([20e6, 50e6, 100e6, 200e6, 400e6, 800e6] * 2)
    temp = np.full(12, 300.0)
    ch = ["edge"] * 6 + ["screw"] * 6
    c_edge, c_screw = 2142.0, 2559.0
    vs = np.array([c_edge] * 6 + [c_screw] * 6)
    x = b * tau / (drag * vs)
    v = vs * x / np.sqrt(1 + x ** 2)
    fits = fit_glide_laws(ch, tau, temp, v, 0.01 * v, b, shear_wave_m_s=c_edge,
                          screw_shear_wave_m_s=c_screw, rel=0.0)
    for c, want in (("edge", c_edge), ("screw", c_screw)):
        f = fits["drag"][c]
        assert f["saturation_source"] == "shear_wave_speed", f["model"]
        assert f["saturation_m_s"] == pytest.approx(want)
        assert f["b0_pa_s"] == pytest.approx(drag, rel=1e-3)
