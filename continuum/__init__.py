"""scalebridge.continuum: dolfinx elastoplasticity whose material is any ConstitutiveModel.

Public API::

    FemSettings(problem=..., solver=...).make(model, out, resources) -> FieldResults
    J2Material                      analytic J2 settings (a model for make)
    CylinderProblem, PlateProblem, CompressionProblem, PatchProblem
    ElastoplasticSolver, SolverSettings, SolveResult     (the solver, for scripts)
    QuadratureMaterial                                    (the quadrature-space callback)
"""

from scalebridge.continuum.fem import FemSettings, run_fem
from scalebridge.continuum.materials import J2Material, resolve_model
from scalebridge.continuum.problems import (
    CompressionProblem,
    CylinderProblem,
    PatchProblem,
    PlateProblem,
    Problem,
)
from scalebridge.continuum.quadrature import QuadratureMaterial
from scalebridge.continuum.solver import (
    ConvergenceError,
    ElastoplasticSolver,
    SolveResult,
    SolverSettings,
)

__all__ = [
    "CompressionProblem",
    "ConvergenceError",
    "CylinderProblem",
    "ElastoplasticSolver",
    "FemSettings",
    "J2Material",
    "PatchProblem",
    "PlateProblem",
    "Problem",
    "QuadratureMaterial",
    "SolveResult",
    "SolverSettings",
    "resolve_model",
    "run_fem",
]
