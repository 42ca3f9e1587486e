"""# A 3D component with your own mesh and the chain's material, under ``mpiexec -n 2``

A steel-like plate with a central hole, pulled at its ends: meshed with gmsh's Python
API, boundary conditions found by the names of its physical groups, the material a
Surrogate artifact (the chain's neural J2, ``runs/mo/surrogate`` after ``./sb example``)
or, without one, the analytic J2 it was trained to reproduce. Run it as::

    .venv/bin/python examples/component/plate_with_hole.py            # 2 ranks, 1.1e5 dofs
    .venv/bin/python examples/component/plate_with_hole.py --surrogate runs/mo/surrogate \\
        --size 1.1 --ranks 2 --out runs/component

It writes a FieldResults artifact (``runs/component/fem``: ParaView fields in
``fields/*.bp``, ``reactions.csv``/``.png``, ``load_displacement.csv``/``.png``), the
mesh and a ``fem.toml`` that reruns the same job from the command line
(``scalebridge fem run --config runs/component/fem.toml --ranks 2 --out ...``), and
``summary.json`` with the times.

## The geometry

Plate 2L x 2W x 2T with a hole of radius a through its thickness. Three symmetry planes
leave one eighth to mesh::

      y
      ^  sym_x (x = 0)
      |_______________________________
      |                               |
      |-.                             | grip: u_x = λ·d (x = L)
      |  \\ hole                       |
      +---'---------------------------+--> x
        sym_y (y = 0);  sym_z (z = 0) is the mid-plane

The mesh is graded towards the hole, where the stress concentrates (Kirsch: σ_xx at the
hole's top is about 3x the remote stress in a wide plate; here d/W = 0.25).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gmsh

# Dimensions (mm)
L, W, T, A = 50.0, 20.0, 2.0, 5.0


def mesh_plate_with_hole(path: Path, size: float = 1.5, hole_size: float | None = None
                         ) -> Path:
    """Write the eighth plate as a gmsh ``.msh`` with named faces; return its path.

    ``size``: element size far from the hole (mm); ``hole_size``: at the hole
    (default size/4). Faces: ``sym_x``, ``sym_y``, ``sym_z``, ``grip``, ``hole``, and the
    free ``top``/``front``; the volume is ``plate``.
    """
    hole_size = hole_size or size / 4
    if gmsh.isInitialized():
        gmsh.finalize()
    gmsh.initialize(interruptible=False)
    gmsh.option.setNumber("General.Terminal", 0)
    gmsh.model.add("plate_with_hole")
    occ = gmsh.model.occ
    box = occ.addBox(0, 0, 0, L, W, T)
    hole = occ.addCylinder(0, 0, 0, 0, 0, T, A)
    occ.cut([(3, box)], [(3, hole)])
    occ.synchronize()

    # Physical groups: the names the boundary conditions use
    gmsh.model.addPhysicalGroup(3, [t for _, t in gmsh.model.getEntities(3)], name="plate")
    faces: dict[str, list[int]] = {}
    for _, tag in gmsh.model.getEntities(2):
        x, y, z = occ.getCenterOfMass(2, tag)
        name = ("sym_x" if abs(x) < 1e-6 else "grip" if abs(x - L) < 1e-6 else
                "sym_y" if abs(y) < 1e-6 else "top" if abs(y - W) < 1e-6 else
                "sym_z" if abs(z) < 1e-6 else "front" if abs(z - T) < 1e-6 else "hole")
        faces.setdefault(name, []).append(tag)
    for name, tags in faces.items():
        gmsh.model.addPhysicalGroup(2, tags, name=name)

    # Size field: fine at the hole, coarse far away
    field = gmsh.model.mesh.field
    dist = field.add("Distance")
    field.setNumbers(dist, "SurfacesList", faces["hole"])
    thr = field.add("Threshold")
    field.setNumber(thr, "InField", dist)
    field.setNumber(thr, "SizeMin", hole_size)
    field.setNumber(thr, "SizeMax", size)
    field.setNumber(thr, "DistMin", 0.2 * A)
    field.setNumber(thr, "DistMax", 2.5 * A)
    field.setAsBackgroundMesh(thr)
    gmsh.option.setNumber("Mesh.MeshSizeExtendFromBoundary", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromPoints", 0)
    gmsh.option.setNumber("Mesh.MeshSizeFromCurvature", 0)
    gmsh.model.mesh.generate(3)
    gmsh.write(str(path))
    gmsh.finalize()
    return path


# ## The problem: boundary conditions by name
#
# Symmetry planes hold their normal component; the grip is pulled by d = 0.4 mm
# (a nominal strain of 0.8 %, several times the yield strain) in load steps.
def problem_settings(mesh: Path, grip: float = 0.4) -> dict:
    return {"kind": "mesh", "mesh": str(mesh), "bc": [
        {"boundary": "sym_x", "kind": "fixed", "components": ["x"]},
        {"boundary": "sym_y", "kind": "fixed", "components": ["y"]},
        {"boundary": "sym_z", "kind": "fixed", "components": ["z"]},
        {"boundary": "grip", "kind": "displacement", "x": grip}]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("# "))
    ap.add_argument("--surrogate", type=Path, default=Path("runs/mo/surrogate"),
                    help="Surrogate artifact or exported folder (default: the chain's; "
                    "analytic J2 when it does not exist)")
    ap.add_argument("--size", type=float, default=1.1,
                    help="element size far from the hole, mm (1.1: 1.1e5 dofs)")
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--out", type=Path, default=Path("runs/component"))
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args()

    import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
    from scalebridge.continuum import FemSettings, J2Material
    from scalebridge.settings import Resources

    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mesh = mesh_plate_with_hole(out / "plate_with_hole.msh", size=args.size)
    t_mesh = time.perf_counter() - t0

    # ## The material: the chain's surrogate, or the J2 law it was trained on
    if args.surrogate.exists():
        material, sigma_y = args.surrogate, None
    else:
        material = J2Material(youngs_modulus=70e3, poisson_ratio=0.3, sigma0=250.0,
                              hardening_modulus=1000.0)
        sigma_y = material.sigma0
        print(f"no surrogate at {args.surrogate}: using analytic J2 ({material.sigma0} MPa)")

    settings = FemSettings.model_validate({
        "problem": problem_settings(mesh),
        "solver": {"steps": args.steps, "degree": 2, "linear_solver": "cg-gamg",
                   "linear_rtol": 1e-6, "line_search": True},
        "loading": {"displacement_rate": 4e-3}})        # 0.4 mm in 100 s: ε̇ ≈ 8e-5 /s
    # The same job as a TOML beside the mesh, for `scalebridge fem run --config`
    toml = out / "fem.toml"
    toml.write_text(_toml(settings, material))

    t1 = time.perf_counter()
    art = settings.make(material, out / "fem", Resources(mpi_ranks=args.ranks),
                        force=args.force)
    t_solve = time.perf_counter() - t1
    s = art.summary

    # ## Checks
    # 1. Equilibrium: the grip's pull is balanced by the sym_x plane's reaction.
    r = s["final_reactions_n"]
    pull = r["grip"][0]
    assert abs(pull + r["sym_x"][0]) < 1e-6 * abs(pull), r
    # 2. Net-section yield (analytic J2 only): the mean stress at the grip passes
    #    σ_y·(1 − a/W), the load at which the ligament beside the hole is all plastic.
    net = (1 - A / W)
    if sigma_y is not None:
        assert s["max_load_mpa"] > 0.97 * sigma_y * net, s["max_load_mpa"]
    assert s["n_dofs"] >= 1e5 or args.size > 1.1, s["n_dofs"]

    record = {"dofs": s["n_dofs"], "ranks": s["ranks"], "model": s["model"],
              "mesh_s": round(t_mesh, 2), "fem_wall_s": round(t_solve, 2),
              "solve_s": s["wall_seconds"], "material_s": s["material_seconds"],
              "linear_solver": s["linear_solver"],
              "newton_iterations": s["newton_iterations"],
              "linear_iterations": s["linear_iterations"], "cuts": s["cuts"],
              "peak_memory_mb": s["peak_memory_mb"], "grip_force_n": pull * 4,
              "max_mean_stress_mpa": s["max_load_mpa"], "artifact": str(art.path),
              "reused": art.reused}
    (out / "summary.json").write_text(json.dumps(record, indent=1) + "\n")
    print(json.dumps(record, indent=1))
    print(f"ParaView: {art.path / 'fields' / 'displacement.bp'} and cells.bp; "
          f"reaction curve: {art.path / 'reactions.png'}")


def _toml(settings, material) -> str:
    """The run as a ``scalebridge fem run --config`` file (mesh path relative to it)."""
    p, sv, ld = settings.problem, settings.solver, settings.loading
    lines = ["[problem]", 'kind = "mesh"', f'mesh = "{Path(p.mesh).name}"']
    for bc in p.bc:
        lines += ["", "[[problem.bc]]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in bc.model_dump(exclude_none=True).items()]
    lines += ["", "[solver]", f"steps = {sv.steps}", f"degree = {sv.degree}",
              f'linear_solver = "{sv.linear_solver}"', f"linear_rtol = {sv.linear_rtol}",
              f"line_search = {str(sv.line_search).lower()}",
              "", "[loading]", f"displacement_rate = {ld.displacement_rate}", ""]
    if isinstance(material, Path):
        lines += ["[material]", 'kind = "surrogate"', f'path = "{material.absolute()}"']
    else:
        lines += ["[material]"] + [f"{k} = {json.dumps(v)}" for k, v in
                                   material.model_dump().items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
