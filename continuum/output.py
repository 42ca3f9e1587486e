"""FieldResults files: VTX fields for ParaView, CSV tables, PNG plots beside them.

``load_displacement.csv`` has the load measure against the displacement (and the
physical time) per converged step; ``reactions.csv`` the reaction force (N) on every
boundary with a prescribed displacement, per component, against the load factor and
time, plotted in ``reactions.png``. A dof two boundaries prescribe (a corner) carries
both constraints' reaction and is counted in each: the quarter cylinder's inner-wall
reaction differs from its symmetry planes' by the corner nodes' share (4 % on the main
example's mesh). The load in ``load_displacement.csv`` is the virtual-work reaction of
the driven boundary (:mod:`.problems`), which has no such ambiguity.

``fields/displacement.bp`` holds u (the solver's Lagrange space); ``fields/cells.bp``
holds cell averages (DG0) over the quadrature points of the stress tensor, the von Mises
stress, the equivalent plastic strain and, where the model reports one, the surrogate
uncertainty. One time step per converged load step, time = load factor.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import dolfinx_solver  # noqa: F401  (loads libmpi before dolfinx)
import numpy as np
from dolfinx import fem, io
from scalebridge.artifacts import write_csv_atomic
from scalebridge.continuum.quadrature import mandel_to_tensor, von_mises
from scalebridge.continuum.solver import ElastoplasticSolver, SolveResult, StepRecord
from scalebridge.plotting import axis_label, pyplot, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NEWTON_COLUMNS = ("step", "attempt", "load_factor", "iteration", "residual_norm",
                  "relative_residual")


class FieldWriter:
    """Writes u and cell-averaged σ, σ_vm, ε̄^p (and uncertainty) at each converged step.

    Use as ``on_step`` of :class:`ElastoplasticSolver`; call :meth:`close` at the end.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._writers: list[io.VTXWriter] = []
        self._cells: dict[str, fem.Function] = {}
        self._ready = False

    def _setup(self, solver: ElastoplasticSolver) -> None:
        msh = solver.mesh
        self.folder.mkdir(parents=True, exist_ok=True)
        mat = solver.material
        scalar = fem.functionspace(msh, ("DG", 0))
        tensor = fem.functionspace(msh, ("DG", 0, (3, 3)))
        self._cells = {"stress": fem.Function(tensor, name="stress"),
                       "von_mises": fem.Function(scalar, name="von_mises"),
                       "equivalent_plastic_strain": fem.Function(
                           scalar, name="equivalent_plastic_strain")}
        if mat.uncertainty is not None:
            self._cells["uncertainty"] = fem.Function(scalar, name="uncertainty")
        self._dofs = {k: f.function_space.dofmap.list[mat.cells].reshape(-1)
                      for k, f in self._cells.items()}
        self._writers = [
            io.VTXWriter(msh.comm, self.folder / "displacement.bp", [solver.u], engine="BP4"),
            io.VTXWriter(msh.comm, self.folder / "cells.bp", list(self._cells.values()),
                         engine="BP4")]
        self._ready = True

    def __call__(self, solver: ElastoplasticSolver, rec: StepRecord) -> None:
        if not self._ready:
            self._setup(solver)
        mat = solver.material
        values: dict[str, np.ndarray] = {
            "stress": mandel_to_tensor(mat.stress_n).reshape(-1, 9),
            "von_mises": von_mises(mat.stress_n),
        }
        eq = mat.eqps()
        values["equivalent_plastic_strain"] = eq if eq is not None else np.zeros(mat.n_points)
        if "uncertainty" in self._cells:
            unc = mat.uncertainty
            values["uncertainty"] = (np.asarray(unc, dtype=float) if unc is not None
                                     else np.zeros(mat.n_points))
        for name, f in self._cells.items():
            avg = mat.cell_average(values[name])
            bs = f.function_space.dofmap.bs
            idx = (self._dofs[name][:, None] * bs + np.arange(bs)).reshape(-1)
            f.x.array[idx] = avg.reshape(-1)
            f.x.scatter_forward()
        for w in self._writers:
            w.write(rec.load_factor)

    def close(self) -> None:
        for w in self._writers:
            w.close()
        self._writers = []


def _write_csv(path: Path, header: list[str] | tuple[str, ...], rows: list[Any]) -> None:
    write_csv_atomic(path, header, rows)


def load_columns(solver_problem_load: str, solver_problem_disp: str) -> list[str]:
    """Column names of ``load_displacement.csv``."""
    return ["step", "load_factor", solver_problem_disp, solver_problem_load, "iterations",
            "max_equivalent_plastic_strain", "max_uncertainty_mpa", "out_of_range_fraction",
            "time_s"]


def write_tables(folder: Path, result: SolveResult, load_name: str, disp_name: str) -> None:
    """``load_displacement.csv`` and ``newton.csv`` (call on one rank)."""
    rows = [(s.step, f"{s.load_factor:.10g}", f"{s.displacement:.10g}", f"{s.load:.10g}",
             s.iterations, f"{s.max_eqps:.6g}", f"{s.max_uncertainty_mpa:.6g}",
             f"{s.out_of_range_fraction:.6g}", f"{s.time_s:.10g}") for s in result.steps]
    _write_csv(folder / "load_displacement.csv", load_columns(load_name, disp_name), rows)
    _write_csv(folder / "newton.csv", NEWTON_COLUMNS,
               [(a, b, f"{c:.10g}", d, f"{e:.6e}", f"{g:.6e}")
                for a, b, c, d, e, g in result.newton])


def reaction_columns(result: SolveResult) -> list[tuple[str, int, str]]:
    """(boundary, component, ``reaction_<boundary>_<x|y|z>_n``) for every prescribed
    component of every constrained boundary."""
    return [(name, c, f"reaction_{name}_{'xyz'[c]}_n")
            for name, comps in result.reaction_components.items() for c in comps]


def write_reactions(folder: Path, result: SolveResult, title: str) -> None:
    """``reactions.csv`` (step, load factor, time, the reaction in N of every prescribed
    component) and ``reactions.png``: each boundary's reaction along its largest
    component against the load factor (call on one rank)."""
    cols = reaction_columns(result)
    rows = [(s.step, f"{s.load_factor:.10g}", f"{s.time_s:.10g}",
             *(f"{s.reactions[name][c]:.10g}" for name, c, _ in cols))
            for s in result.steps]
    _write_csv(folder / "reactions.csv",
               ["step", "load_factor", "time_s", *(c[2] for c in cols)], rows)
    if not cols:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lam = [s.load_factor for s in result.steps]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    dims = 0
    for j, (name, comps) in enumerate(result.reaction_components.items()):
        vals = np.array([[s.reactions[name][c] for c in comps] for s in result.steps])
        i = int(np.argmax(np.abs(vals).max(axis=0)))
        dims = max(dims, max(comps) + 1)
        # symmetric boundaries carry equal reactions: a line style each keeps both in view
        ax.plot(lam, vals[:, i], ("o-", "s--", "^:", "d-.")[j % 4], ms=3 + 3 * (j % 2),
                mfc="none" if j % 2 else None, label=f"{name} ({'xyz'[comps[i]]})")
    ax.set_xlabel("load factor")
    ax.set_ylabel("reaction force (N per mm of thickness)" if dims == 2
                  else "reaction force (N)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "reactions.png", dpi=120)
    plt.close(fig)


def write_plots(folder: Path, result: SolveResult, load_name: str, disp_name: str,
                title: str, reference: float | None = None) -> None:
    """``load_displacement.png`` and ``newton.png`` beside their CSVs (call on one rank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot([s.displacement for s in result.steps], [s.load for s in result.steps], "o-",
            ms=3, label="FEM")
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label="analytic limit")
    ax.set_xlabel(axis_label(disp_name))
    ax.set_ylabel(axis_label(load_name))
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "load_displacement.png", dpi=120)
    plt.close(fig)

    fig = newton_figure(result.newton)
    save_figure(fig, folder / "newton.png", dpi=120)
    plt.close(fig)


def newton_figure(newton: list[tuple[int, int, float, int, float, float]]) -> Figure:
    """The figure of ``newton.png`` (the caller saves and closes it): the relative
    residual of each Newton iterate, one line per load step (and attempt) with a marker
    per iterate, so that a step converged in one iteration shows as a point; the title
    counts such steps, and a history without iterations says so on the plot."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5, 3.6))
    by_step: dict[tuple[int, int], list[float]] = {}
    for step, attempt, _lam, it, _r, rel in newton:
        if it >= 1:
            by_step.setdefault((step, attempt), []).append(max(rel, 1e-17))
    for (_step, _att), rels in by_step.items():
        ax.semilogy(range(1, len(rels) + 1), rels, "-o", ms=3, lw=0.8, alpha=0.7)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if by_step:     # whole iterations, also when every step took one
        ax.set_xlim(0.7, max(len(rels) for rels in by_step.values()) + 0.3)
    ax.set_xlabel("Newton iteration")
    ax.set_ylabel("residual / reaction norm")
    title = "Newton convergence, one line per load step"
    one = sum(1 for rels in by_step.values() if len(rels) == 1)
    if one:
        title += f"\n{one} of {len(by_step)} steps converged in 1 iteration (the points at 1)"
    if not by_step:
        ax.text(0.5, 0.5, "no Newton iterations recorded", ha="center", va="center",
                transform=ax.transAxes)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
