"""Shared fixtures of the workflows tests.

``chain_arts`` builds the synthetic chain dd -> surrogate -> fem -> band (and a
mobility law) once per session: the band's verdict and report tests
(test_workflows_band_verdicts.py) and its figure and CSV test
(test_workflows_band_figure.py) read the same artifacts. Its inputs are fixed (the
synthetic DD, the mobility law, :data:`FEM`), so one build serves every test that reads
it; a test writes only into folders of its own beside the artifacts.
"""

from __future__ import annotations

import pytest
from scalebridge.continuum import CylinderProblem, FemSettings
from scalebridge.continuum.solver import SolverSettings
from scalebridge.plotting import CHECKED
from scalebridge.surrogates.train import SurrogateSettings
from scalebridge.workflows.band import BandSettings, make_band

from .synthetic_chain import mobility_law, synthetic_ddrun

#: The chain's FEM: the quarter cylinder on a coarse mesh, 4 steps, no field files.
FEM = FemSettings(problem=CylinderProblem(n_radial=2, n_angular=3, inner_displacement=0.0015),
                  solver=SolverSettings(steps=4, degree=1), write_fields=False)


@pytest.fixture(scope="session")
def chain_arts(tmp_path_factory):
    """dd -> surrogate -> fem -> band, and a mobility law, in one session-wide folder:
    (the folder, the artifacts by stage name, the figures saved while building them)."""
    base = tmp_path_factory.mktemp("band")
    n0 = len(CHECKED)
    dd = synthetic_ddrun(base / "dd")
    mob = mobility_law(base / "mobility")
    sur = SurrogateSettings(max_iterations=100, val_fraction=0.34,
                            rollout_iterations=0).make(dd, base / "surrogate")
    fem = FEM.make(sur, base / "fem")
    band = make_band(BandSettings(), FEM, {"fem": fem, "surrogate": sur, "dd": dd,
                                           "mobility": mob}, base / "band")
    figs = CHECKED[n0:]
    return base, {"mobility": mob, "dd": dd, "surrogate": sur, "fem": fem, "band": band}, figs
