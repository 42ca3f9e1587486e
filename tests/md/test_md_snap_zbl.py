"""SNAP on top of a ZBL reference (FitSNAP's Ta fits): the peers of
benchmarks/potentials_elements.py are only right with the reference they were fitted on."""

from __future__ import annotations

import pytest
from scalebridge.md.lammps import SNAPPotential, single_points
from scalebridge.potentials.evaluate import frame_metrics
from scalebridge.potentials.readers import read_source

#: FitSNAP's own training errors of this fit (``Ta_metrics.md``, all frames of a group):
#: Displaced_A15 force MAE 0.0981 eV/Å, Elastic_BCC energy MAE 0.00641 eV/atom
FITSNAP_A15_FORCE = 0.0980601
FITSNAP_ELASTIC_BCC_ENERGY_MEV = 6.41149


def test_fitsnap_ta_snap_reproduces_its_own_errors_only_with_its_zbl(tmp_path,
                                                                     fitsnap_ta_dir):
    peer = fitsnap_ta_dir.parent / "peer_models" / "linear_JCP2014"
    frames = [f for g in ("Displaced_A15", "Elastic_BCC")
              for f in read_source(fitsnap_ta_dir / g)]
    atoms = [f.to_atoms() for f in frames]
    with_zbl = SNAPPotential.from_dir(peer, ["Ta"], name="ta", zbl=(4.0, 4.8))
    lines = with_zbl.pair_commands(tmp_path)
    assert lines[0] == "pair_style hybrid/overlay zbl 4.0 4.8 snap"
    assert lines[1] == "pair_coeff 1 1 zbl 73 73"
    m = frame_metrics(frames, single_points(with_zbl, atoms, tmp_path / "zbl"))["groups"]
    # 3 of the 9 Displaced_A15 frames, 3 of the 100 Elastic_BCC frames
    assert m["Displaced_A15"]["force_mae_ev_a"] == pytest.approx(FITSNAP_A15_FORCE, rel=0.1)
    assert m["Elastic_BCC"]["energy_mae_mev_per_atom"] == pytest.approx(
        FITSNAP_ELASTIC_BCC_ENERGY_MEV, abs=1.0)
    bare = SNAPPotential.from_dir(peer, ["Ta"], name="ta")
    b = frame_metrics(frames, single_points(bare, atoms, tmp_path / "bare"))["groups"]
    assert b["Displaced_A15"]["force_mae_ev_a"] > 5 * FITSNAP_A15_FORCE
