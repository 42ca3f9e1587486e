"""Perforated plate in tension (plane strain): the net-section limit load."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI
from scalebridge.continuum import ElastoplasticSolver, PlateProblem, SolverSettings

from .conftest import perfect_j2


def test_plate_limit_load_is_net_section_yield():
    ps = PlateProblem()
    result = ElastoplasticSolver(ps.build(MPI.COMM_SELF), perfect_j2(250.0),
                                 SolverSettings(steps=10)).run()
    # plane strain, perfect plasticity: the ligament of width L - a carries
    # (2/√3) σ0 at collapse, so the mean stress on the edge is (2/√3) σ0 (1 - a/L)
    net = 2 / np.sqrt(3) * 250.0 * (1 - ps.hole_radius / ps.half_width)
    assert result.max_load == pytest.approx(net, rel=0.015)
    loads = np.array([s.load for s in result.steps])
    assert np.all(np.diff(loads) > -1e-6 * net)          # no spurious softening

