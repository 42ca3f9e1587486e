"""scalebridge.continuum: dolfinx elastoplasticity whose material is any ConstitutiveModel.

Public API::

    FemSettings(problem=..., solver=..., loading=...).make(model, out, resources)
                                    -> FieldResults
    J2Material, PythonMaterial, SurrogateMaterial      materials (models for make)
    CylinderProblem, PlateProblem, CompressionProblem, PatchProblem
    MeshProblem                     your mesh (.msh / .xdmf), boundary conditions by tag
    read_mesh, from_gmsh_model      tagged meshes (mesh, cell/facet tags, labels)
    LoadingSettings                 physical time and temperature
    ElastoplasticSolver, SolverSettings, SolveResult     (the solver, for scripts)
    QuadratureMaterial                                    (the quadrature-space callback)
"""

from scalebridge.continuum.fem import FemSettings, run_fem
from scalebridge.continuum.loading import LoadingSettings
from scalebridge.continuum.materials import (
    J2Material,
    PythonMaterial,
    SurrogateMaterial,
    resolve_model,
)
from scalebridge.continuum.mesh_input import from_gmsh_model, read_mesh
from scalebridge.continuum.problems import (
    CompressionProblem,
    CylinderProblem,
    MeshProblem,
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
    "LoadingSettings",
    "MeshProblem",
    "PatchProblem",
    "PlateProblem",
    "Problem",
    "PythonMaterial",
    "QuadratureMaterial",
    "SolveResult",
    "SolverSettings",
    "SurrogateMaterial",
    "from_gmsh_model",
    "read_mesh",
    "resolve_model",
    "run_fem",
]
