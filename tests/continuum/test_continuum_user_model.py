"""A user's own material by import path (module or file), an exported surrogate folder,
and the gate: each is checked with check_constitutive before the FEM uses it."""

from __future__ import annotations

import csv
import textwrap

import pytest
from click.testing import CliRunner
from scalebridge.continuum import (
    FemSettings,
    PatchProblem,
    PythonMaterial,
    SolverSettings,
    SurrogateMaterial,
)
from scalebridge.continuum.cli import fem as fem_cli
from scalebridge.errors import SettingsError
from scalebridge.surrogates.checks import ConstitutiveCheckError

from .conftest import LinearElastic
from .gmsh_shapes import bar

MODEL = textwrap.dedent('''
    """A user's linear-elastic model (Mandel notation, MPa)."""
    import numpy as np
    from scalebridge.surrogates import ConstitutiveResult


    class Elastic:
        name = "user-elastic"
        state_names = ("eps_p_eq",)              # an elastic one: never yields

        def __init__(self, E, nu, tangent_factor=1.0):
            lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
            self.C = 2 * mu * np.eye(6)
            self.C[:3, :3] += lam
            self.factor = tangent_factor

        @classmethod
        def from_config(cls, config):
            return cls(**config)

        def initial_state(self, n):
            return np.zeros((n, 1))

        def update(self, strain, dstrain, state, dt=1.0):
            n = strain.shape[0]
            return ConstitutiveResult(
                stress=(strain + dstrain) @ self.C.T,
                tangent=np.broadcast_to(self.factor * self.C, (n, 6, 6)).copy(),
                state=state.copy())
''')

SMALL = FemSettings(problem=PatchProblem(dim=2, n=2), solver=SolverSettings(steps=2, degree=1),
                    write_fields=False)


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    (tmp_path / "usermat.py").write_text(MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path / "usermat.py"


def test_model_by_module_path_is_checked_and_used(usermod, tmp_path):
    mat = PythonMaterial(model="usermat:Elastic", settings={"E": 70e3, "nu": 0.3})
    art = SMALL.make(mat, tmp_path / "user")
    ref = SMALL.make(LinearElastic(70e3, 0.3), tmp_path / "ref")
    assert art.summary["model"] == "user-elastic"
    assert art.summary["max_load_mpa"] == pytest.approx(ref.summary["max_load_mpa"], rel=1e-12)
    checks = art.summary["material_checks"]
    assert checks["passed"] and checks["source"] == "check_constitutive run by the FEM"
    # its source file enters the fingerprint: an edited model reruns (a new process
    # imports the new code; this one keeps the module it imported)
    assert SMALL.make(mat, tmp_path / "user").reused
    usermod.write_text(MODEL.replace("user-elastic", "user-elastic-2"))
    assert not SMALL.make(mat, tmp_path / "user").reused


def test_failing_user_model_is_refused_unless_overridden(usermod, tmp_path):
    bad = PythonMaterial(model="usermat:Elastic",
                         settings={"E": 70e3, "nu": 0.3, "tangent_factor": 1.5})
    with pytest.raises(ConstitutiveCheckError) as e:
        SMALL.make(bad, tmp_path / "bad")
    msg = str(e.value)
    assert "\n" not in msg and "model usermat:Elastic failed check_constitutive: " \
        "tangent" in msg and "allow_failed_checks = true" in msg
    assert not (tmp_path / "bad").exists()
    art = SMALL.model_copy(update={"allow_failed_checks": True}).make(bad, tmp_path / "bad")
    assert art.summary["material_checks"]["overridden"]
    assert "tangent" in art.summary["material_checks"]["failed"]


def test_import_path_mistakes_are_one_line(usermod):
    for spec, match in (("usermat", "expected 'package.module:Class'"),
                        ("nosuchmod:Model", "cannot import nosuchmod"),
                        ("usermat:Missing", "has no 'Missing'"),
                        ("usermat:np", "cannot build it")):
        with pytest.raises(SettingsError, match=match):
            PythonMaterial(model=spec).build()
    with pytest.raises(SettingsError, match="cannot build it"):
        PythonMaterial(model="usermat:Elastic", settings={"E": 1.0}).build()


@pytest.mark.mpi
def test_user_mesh_and_model_file_through_fem_run_on_two_ranks(tmp_path):
    """What a user writes: a gmsh mesh, a model file and a TOML beside them."""
    case = tmp_path / "case"
    (case / "models").mkdir(parents=True)
    (case / "models" / "elastic.py").write_text(MODEL)
    bar(case / "bar.msh", dim=3)
    (case / "bar.toml").write_text(textwrap.dedent('''
        [problem]
        kind = "mesh"
        mesh = "bar.msh"
        [[problem.bc]]
        boundary = "left"
        kind = "fixed"
        [[problem.bc]]
        boundary = "right"
        kind = "displacement"
        x = 0.01
        [solver]
        steps = 2
        degree = 1
        linear_solver = "cg-gamg"
        [loading]
        duration_s = 10.0
        [material]
        kind = "python"
        model = "models/elastic.py:Elastic"
        settings = { E = 70e3, nu = 0.0 }
    '''))
    out = tmp_path / "runs" / "bar"
    res = CliRunner().invoke(fem_cli, ["run", "--config", str(case / "bar.toml"),
                                       "--ranks", "2", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "reaction on right: x 280" in res.output         # E A u / L = 280 N
    with open(out / "reactions.csv") as f:
        last = list(csv.DictReader(f))[-1]
    assert float(last["reaction_right_x_n"]) == pytest.approx(280.0, rel=1e-7)
    assert float(last["time_s"]) == pytest.approx(10.0)


def test_exported_surrogate_folder_is_a_material(tmp_path):
    from scalebridge.surrogates import export_surrogate

    from .test_continuum_gate import make_surrogate

    art = make_surrogate(tmp_path / "sur")
    export_surrogate(art.path, tmp_path / "exported")
    fem = SMALL.model_copy(update={"solver": SolverSettings(steps=2, degree=1)})
    res = fem.make(SurrogateMaterial(path=tmp_path / "exported"), tmp_path / "fem")
    assert res.summary["model"] == "neural_j2"
    assert res.summary["material_checks"]["source"] == "surrogate.json (checked when fitted)"
    out = CliRunner().invoke(fem_cli, ["run", "--problem", "patch", "--steps", "1",
                                       "--surrogate", str(tmp_path / "exported"),
                                       "--out", str(tmp_path / "cli")])
    assert out.exit_code == 0, out.output
