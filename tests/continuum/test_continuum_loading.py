"""Physical time and temperature reach the material: dt = Δλ · duration, the temperature
at each quadrature point (as an argument or as the model's temperature_k)."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from mpi4py import MPI
from scalebridge.continuum import (
    ElastoplasticSolver,
    FemSettings,
    LoadingSettings,
    PatchProblem,
    PlateProblem,
    SolverSettings,
)
from scalebridge.errors import SettingsError

from .conftest import LinearElastic


class Recording(LinearElastic):
    """Linear elasticity that records dt and the temperature of every call."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.dts: list[float] = []
        self.temps: list[np.ndarray | None] = []

    def update(self, strain, dstrain, state, dt=1.0, temperature=None):
        self.dts.append(float(dt))
        self.temps.append(None if temperature is None else np.array(temperature))
        return super().update(strain, dstrain, state, dt)


class OneTemperature(LinearElastic):
    """A model with one temperature attribute (as the chain's NeuralJ2)."""

    name = "one-temperature"

    def __init__(self) -> None:
        super().__init__()
        self.temperature_k = 300.0
        self.seen: list[float] = []

    def update(self, strain, dstrain, state, dt=1.0):
        self.seen.append(self.temperature_k)
        return super().update(strain, dstrain, state, dt)


PATCH = PatchProblem(dim=2, n=2)
ONE_STEP_EACH = SolverSettings(steps=4, degree=1)


def _run(model, loading, problem=PATCH, settings=ONE_STEP_EACH):
    solver = ElastoplasticSolver(problem.build(MPI.COMM_SELF), model, settings,
                                 loading=loading)
    return solver, solver.run()


def test_dt_is_the_load_increment_times_the_duration():
    model = Recording()
    _, res = _run(model, LoadingSettings(duration_s=100.0))
    assert res.duration_s == 100.0 and res.cuts == 0
    assert set(model.dts) == {25.0}                       # 4 steps of 25 s
    assert [s.time_s for s in res.steps] == pytest.approx([0, 25, 50, 75, 100])


def test_default_is_one_second_per_nominal_step():
    model = Recording()
    _, res = _run(model, LoadingSettings())
    assert set(model.dts) == {1.0} and res.steps[-1].time_s == pytest.approx(4.0)


def test_displacement_rate_sets_the_duration(tmp_path):
    plate = PlateProblem(n_radial=2, n_angular=4, end_displacement=0.08)
    fem = FemSettings(problem=plate, solver=SolverSettings(steps=2, degree=1),
                      loading=LoadingSettings(displacement_rate=0.004), write_fields=False)
    art = fem.make(LinearElastic(), tmp_path / "plate")
    assert art.summary["duration_s"] == pytest.approx(20.0)     # 0.08 mm at 4 µm/s
    with open(art.file("load_displacement.csv")) as f:
        assert float(list(csv.DictReader(f))[-1]["time_s"]) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="not both"):
        LoadingSettings(duration_s=1.0, displacement_rate=1.0)


def test_temperature_field_reaches_every_point():
    model = Recording()
    solver, res = _run(model, LoadingSettings(duration_s=4.0,
                                              temperature="300 + 100*x + 10*t"))
    x = solver.material.point_coordinates()
    assert np.allclose(model.temps[-1], 300 + 100 * x[:, 0] + 10 * 4.0)
    lo, hi = res.steps[-1].temperature_k
    assert lo == pytest.approx(model.temps[-1].min()) and hi > lo + 50


def test_uniform_temperature_sets_temperature_k():
    model = OneTemperature()
    solver = ElastoplasticSolver(PATCH.build(MPI.COMM_SELF), model, ONE_STEP_EACH,
                                 loading=LoadingSettings(temperature="500 + t"))
    solver.run()
    assert model.seen[-1] == pytest.approx(504.0) and min(model.seen) >= 500.0


def test_temperature_the_model_cannot_take_is_refused():
    with pytest.raises(SettingsError, match="takes none"):
        _run(LinearElastic(), LoadingSettings(temperature_k=400.0))
    with pytest.raises(SettingsError, match="varies over the body"):
        _run(OneTemperature(), LoadingSettings(temperature="300 + x"))
    with pytest.raises(SettingsError, match="need finite, > 0"):
        _run(Recording(), LoadingSettings(temperature="-x - 1"))
    with pytest.raises(ValueError, match="not an expression"):
        LoadingSettings(temperature="300 +")
