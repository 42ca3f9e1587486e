"""Evaluation of a ``Potential``: ``dp test`` errors per group, parity plots, learning
curves, and physical properties vs the DFT values of the same data.

``metrics.json`` layout::

    {"test": {"overall": {energy_mae_mev_per_atom, energy_rmse_mev_per_atom,
                          force_mae_ev_a, force_rmse_ev_a,
                          virial_mae_mev_per_atom, virial_rmse_mev_per_atom, frames, atoms},
              "groups": {<group>: {... same keys ...}},
              "species": {<species>: {force errors on that species' atoms, energy
                                      errors of the frames holding it, frames, atoms}}},
     "ensemble": {"max_devi_f_ev_a": {<group>: median over frames}},
     "properties": {"model": {...}, "dft": {...}, "relative_error": {...}}}
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.errors import DataError, ExternalProgramError
from scalebridge.plotting import save_figure
from scalebridge.settings import Resources, StrictModel

log = logging.getLogger("scalebridge.potentials")


# --------------------------------------------------------------------------- lcurves
def read_lcurve(path: Path) -> tuple[list[str], np.ndarray]:
    """(column names, rows) of a DeePMD ``lcurve.out``."""
    header: list[str] = []
    rows = []
    for ln in Path(path).read_text().splitlines():
        if ln.startswith("#"):
            if ln.lstrip("# ").startswith("step"):
                header = ln.lstrip("#").split()
        elif ln.strip():
            rows.append([float(x) for x in ln.split()])
    return header, np.array(rows)


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing running geometric mean of ``y`` over ``window`` points (fewer at the
    start): the trend of lcurve values that are each one batch's RMSE, spread over
    decades, on the log axis they are drawn on. A value that is not finite or not
    positive (a NaN row, an RMSE of 0) has no logarithm and is left out: each window
    averages its valid points only, NaN where it has none."""
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    logs = np.log(np.where(ok, y, 1.0))
    c = np.concatenate([[0.0], np.cumsum(np.where(ok, logs, 0.0))])
    k = np.concatenate([[0], np.cumsum(ok)])
    i = np.arange(1, len(y) + 1)
    lo = np.maximum(i - window, 0)
    n = k[i] - k[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.exp((c[i] - c[lo]) / np.maximum(n, 1)), np.nan)


def lcurve_window(n: int) -> int:
    """Points in :func:`running_mean`'s window for an lcurve of ``n`` rows: 3, or a tenth
    of a long one."""
    return max(3, n // 10)


def write_lcurves(paths: list[Path], out: Path) -> None:
    """``lcurve.csv`` (model, step, every lcurve column) and ``lcurve.png``.

    Each lcurve row is one batch's RMSE (training and validation alike: ``numb_btch``
    1, a frame or a few), which jumps by an order of magnitude from one row to the next
    without the training diverging: the rows are drawn as faint points, their running
    geometric mean (:func:`running_mean`) as the line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not paths:
        return
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.9))
    windows = set()
    with open(out / "lcurve.csv", "w", newline="") as fh:
        w = None
        for i, p in enumerate(paths):
            cols, rows = read_lcurve(p)
            if rows.size == 0:
                continue
            if w is None:
                w = csv.writer(fh)
                w.writerow(["model", *cols])
            for r in rows:
                w.writerow([i, *r])
            c = {k: rows[:, j] for j, k in enumerate(cols)}
            win = lcurve_window(len(rows))
            windows.add(win)
            for ax, key, label in ((axes[0], "rmse_e", "energy RMSE (eV/atom)"),
                                   (axes[1], "rmse_f", "force RMSE (eV/Å)")):
                for suffix, ls, mk, name in (("_trn", "-", "o", "training"),
                                             ("_val", "--", "x", "validation")):
                    if key + suffix in c:
                        y = c[key + suffix]
                        ax.semilogy(c["step"], y, mk, ms=3, alpha=0.45, color=f"C{i}")
                        ax.semilogy(c["step"], running_mean(y, win), ls, lw=1.5,
                                    color=f"C{i}", label=f"model {i} {name}"
                                    if ax is axes[0] else None)
                ax.set_xlabel("step")
                ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    each = " / ".join(str(x) for x in sorted(windows)) or "3"
    fig.suptitle(f"points: one batch each (o training, x validation); lines: their running "
                 f"geometric mean over {each} points", fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "lcurve.png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- dp test
def dp_test_job(model: Path, systems: list[tuple[Path, int, int]], cwd: Path
                ) -> tuple[list[str], Path]:
    """The ``dp test`` job (:func:`scalebridge.potentials.train.run_dp`'s ``(args,
    workdir)``) that :func:`dp_test` runs; writes its ``systems.txt`` into ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    listing = cwd / "systems.txt"
    listing.write_text("".join(f"{p}\n" for p, _, _ in systems))
    return (["test", "-m", str(model), "-f", str(listing), "-d", str(cwd / "dp_test")], cwd)


def dp_test(model: Path, systems: list[tuple[Path, int, int]], cwd: Path, threads: int = 1,
            *, ran: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Run ``dp --pt test`` on ``systems`` = [(folder, nframes, natoms), ...] (in that
    order, through ``-f``; rows of its detail files are cut by the frame counts).
    ``ran``: :func:`dp_test_job` already ran in ``cwd`` (e.g. beside the compression,
    :func:`scalebridge.potentials.train.compress_and_test`): only read its files.

    Returns:
        ``{system_name: {"e": (nframes, 2) data/pred eV, "f": (nframes*natoms, 6)
        data/pred eV/Å, "v": (nframes, 18) data/pred eV (when written)}}``.
    """
    from scalebridge.potentials.train import run_dp

    prefix = cwd / "dp_test"
    if not ran:
        run_dp([dp_test_job(model, systems, cwd)], cwd, threads=threads,
               log_file=cwd / "dp_test.log")
    out: dict[str, dict[str, np.ndarray]] = defaultdict(dict)
    for kind in ("e", "f", "v"):
        f = prefix.with_name(prefix.name + f".{kind}.out")
        if not f.exists():
            if kind == "v":
                continue
            raise ExternalProgramError(f"dp test wrote no {f.name} in {cwd}")
        rows = np.loadtxt(f, comments="#", ndmin=2)
        want = sum(n * (a if kind == "f" else 1) for _, n, a in systems)
        if len(rows) != want:
            raise ExternalProgramError(f"dp test: {f.name} has {len(rows)} rows, expected "
                                       f"{want} ({cwd})")
        i = 0
        for p, n, a in systems:
            k = n * (a if kind == "f" else 1)
            out[Path(p).name][kind] = rows[i:i + k]
            i += k
    return dict(out)


def _split_systems(ds, split: str) -> list[tuple[Path, int, int]]:
    """``[(folder, nframes, natoms), ...]`` of ``split``, in the dataset's order."""
    return [(ds.path / "systems" / split / name, m["frames"], m["natoms"])
            for name, m in ds.info["splits"][split]["systems"].items()]


def score_job(model: Path, ds, split: str, cwd: Path) -> tuple[list[str], Path]:
    """The ``dp test`` job :func:`score` runs (to run elsewhere, then ``score(...,
    ran=True)``)."""
    return dp_test_job(model, _split_systems(ds, split), cwd)


def error_metrics(e_true: np.ndarray, e_pred: np.ndarray, natoms: np.ndarray,
                  f_true: np.ndarray, f_pred: np.ndarray,
                  v_true: np.ndarray | None = None, v_pred: np.ndarray | None = None
                  ) -> dict[str, float]:
    """MAE/RMSE of energy per atom (meV/atom), force components (eV/Å), virial per atom
    (meV/atom). Shapes: e (nf,), natoms (nf,), f (m, 3), v (nf, 9)."""
    de = (e_pred - e_true) / natoms * 1e3
    df = (f_pred - f_true).reshape(-1)
    out = {"frames": len(de), "atoms": int(natoms.sum()),
           "energy_mae_mev_per_atom": float(np.abs(de).mean()),
           "energy_mean_error_mev_per_atom": float(de.mean()),
           "energy_rmse_mev_per_atom": float(np.sqrt((de ** 2).mean())),
           "force_mae_ev_a": float(np.abs(df).mean()),
           "force_rmse_ev_a": float(np.sqrt((df ** 2).mean()))}
    if v_true is not None and v_pred is not None and len(v_true):
        dv = (v_pred - v_true) / natoms[:, None] * 1e3
        out["virial_mae_mev_per_atom"] = float(np.abs(dv).mean())
        out["virial_rmse_mev_per_atom"] = float(np.sqrt((dv ** 2).mean()))
    return out


def score(model: Path, ds, split: str, cwd: Path, threads: int = 1, *,
          ran: bool = False) -> dict[str, Any]:
    """Per-group and overall errors of ``model`` on ``split`` of dataset ``ds``, plus the
    raw parity data under the key ``_parity``. ``ran``: :func:`score_job` already ran."""
    cwd.mkdir(parents=True, exist_ok=True)
    systems = ds.info["splits"][split]["systems"]
    res = dp_test(model, _split_systems(ds, split), cwd, threads, ran=ran)
    per_group: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    sym_by_group: dict[str, list[list[str]]] = {}
    for name, meta in systems.items():
        if name not in res:
            raise ExternalProgramError(f"dp test reported nothing for system {name} ({cwd})")
        r, g = res[name], per_group[meta["group"]]
        types = np.loadtxt(ds.path / "systems" / split / name / "type.raw", dtype=int,
                           ndmin=1)
        syms = [ds.type_map[t] for t in types]
        g["e_true"].append(r["e"][:, 0])
        g["e_pred"].append(r["e"][:, 1])
        g["natoms"].append(np.full(len(r["e"]), meta["natoms"]))
        g["f_true"].append(r["f"][:, :3])
        g["f_pred"].append(r["f"][:, 3:6])
        sym_by_group.setdefault(meta["group"], []).extend([syms] * len(r["e"]))
        if "v" in r and ds.has_virial:
            g["v_true"].append(r["v"][:, :9])
            g["v_pred"].append(r["v"][:, 9:18])
    cat = {g: {k: np.concatenate(v) for k, v in d.items()} for g, d in per_group.items()}
    # the same group order as ``symbols`` (systems in order, grouped)
    allc = {k: np.concatenate([cat[g][k] for g in per_group]) for k in next(iter(cat.values()))}

    def m(c):
        return error_metrics(c["e_true"], c["e_pred"], c["natoms"], c["f_true"], c["f_pred"],
                             c.get("v_true"), c.get("v_pred"))

    return {"overall": m(allc), "groups": {g: m(c) for g, c in sorted(cat.items())},
            "species": species_metrics(allc["e_true"], allc["e_pred"],
                                       [s for g in per_group for s in sym_by_group[g]],
                                       allc["f_true"], allc["f_pred"]),
            "_parity": cat}


def species_metrics(e_true: np.ndarray, e_pred: np.ndarray, symbols: list[list[str]],
                    f_true: np.ndarray, f_pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Errors per species: force MAE/RMSE (eV/Å) on that species' atoms, energy MAE/RMSE
    (meV/atom) of the frames that hold it.

    Args:
        e_true, e_pred: (nf,) eV. symbols: each frame's species, atom by atom, in the
            order of the rows of ``f_true``/``f_pred`` ((Σ natoms, 3) eV/Å).
    """
    flat = np.array([s for syms in symbols for s in syms])
    if len(flat) != len(f_true):
        raise ValueError(f"species_metrics: {len(flat)} atoms named, {len(f_true)} force rows")
    natoms = np.array([len(s) for s in symbols])
    de = (e_pred - e_true) / natoms * 1e3
    out = {}
    for sp in sorted(set(flat)):
        df = (f_pred[flat == sp] - f_true[flat == sp]).reshape(-1)
        has = np.array([sp in s for s in symbols])
        out[sp] = {"atoms": int((flat == sp).sum()), "frames": int(has.sum()),
                   "force_mae_ev_a": float(np.abs(df).mean()),
                   "force_rmse_ev_a": float(np.sqrt((df ** 2).mean())),
                   "energy_mae_mev_per_atom": float(np.abs(de[has]).mean()),
                   "energy_rmse_mev_per_atom": float(np.sqrt((de[has] ** 2).mean()))}
    return out


def frame_metrics(frames, predictions: list[tuple[float, np.ndarray]]) -> dict[str, Any]:
    """``{"overall", "groups", "species"}`` (the keys of :func:`score`) of predictions
    made elsewhere (e.g. a SNAP model in LAMMPS: ``md.lammps.single_points``).

    Args:
        frames: labelled :class:`~scalebridge.potentials.frames.Frame` objects.
        predictions: per frame ``(energy eV, forces (n, 3) eV/Å)``.
    """
    if len(frames) != len(predictions):
        raise ValueError(f"{len(frames)} frames but {len(predictions)} predictions")
    by: dict[str, list[int]] = defaultdict(list)
    for i, fr in enumerate(frames):
        by[fr.group].append(i)

    def m(idx: list[int]) -> dict[str, float]:
        return error_metrics(np.array([frames[i].energy for i in idx]),
                             np.array([predictions[i][0] for i in idx]),
                             np.array([frames[i].natoms for i in idx]),
                             np.concatenate([frames[i].forces for i in idx]),
                             np.concatenate([predictions[i][1] for i in idx]))

    every = list(range(len(frames)))
    return {"overall": m(every), "groups": {g: m(ix) for g, ix in sorted(by.items())},
            "species": species_metrics(
                np.array([f.energy for f in frames]), np.array([p[0] for p in predictions]),
                [list(f.symbols) for f in frames], np.concatenate([f.forces for f in frames]),
                np.concatenate([p[1] for p in predictions]))}


def parity_plots(cat: dict[str, dict[str, np.ndarray]], out: Path, tag: str = "") -> None:
    """``parity_energy{tag}.png`` and ``parity_force{tag}.png`` with CSVs, colour by group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for kind, unit in (("energy", "eV/atom"), ("force", "eV/Å")):
        fig, ax = plt.subplots(figsize=(4.2, 4))
        rows = []
        for i, (g, c) in enumerate(sorted(cat.items())):
            if kind == "energy":
                x, y = c["e_true"] / c["natoms"], c["e_pred"] / c["natoms"]
            else:
                x, y = c["f_true"].reshape(-1), c["f_pred"].reshape(-1)
            ax.plot(x, y, ".", ms=3, color=f"C{i}", label=g)
            rows += [(g, a, b) for a, b in zip(x, y, strict=True)]
        lo = min(r[1] for r in rows)
        hi = max(r[1] for r in rows)
        ax.plot([lo, hi], [lo, hi], "k-", lw=0.6)
        ax.set_xlabel(f"DFT {kind} ({unit})")
        ax.set_ylabel(f"model {kind} ({unit})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, out / f"parity_{kind}{tag}.png", dpi=110)
        plt.close(fig)
        u = "ev_per_atom" if kind == "energy" else "ev_a"
        with open(out / f"parity_{kind}{tag}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["group", f"dft_{u}", f"model_{u}"])
            w.writerows(rows)


def ensemble_deviation(models: list[Path], frames) -> dict[str, float]:
    """Median over frames of DP-GEN's max force deviation (eV/Å), per group."""
    if len(models) < 2:
        return {}
    from scalebridge.potentials.model import _deep_pot

    by_group: dict[str, list[float]] = defaultdict(list)
    for fr in frames:
        types = np.zeros(fr.natoms, int)
        fs = []
        for m in models:
            dp = _deep_pot(m)
            tm = dp.get_type_map()
            types = np.array([tm.index(s) for s in fr.symbols])
            fs.append(dp.eval(fr.positions.reshape(1, -1), fr.cell.reshape(1, 9),
                              types)[1].reshape(-1, 3))
        f = np.array(fs)
        dev = np.sqrt(((f - f.mean(0)) ** 2).sum(axis=2).mean(axis=0))
        by_group[fr.group].append(float(dev.max()))
    return {g: float(np.median(v)) for g, v in sorted(by_group.items())}


def evaluate_into(work: Path, ds, res: Resources, properties: bool = True,
                  split: str = "test", *, tested: bool = False) -> dict[str, Any]:
    """Score ``work``'s models on ``ds``'s ``split``; write metrics.json and plots there.
    ``tested``: the first model's :func:`score_job` already ran in ``work/dp_test``."""
    pj = json.loads((work / "potential.json").read_text())
    models = [work / m for m in pj["models"]]
    sc = score(models[0], ds, split, work / "dp_test", res.threads, ran=tested)
    parity = sc.pop("_parity")
    parity_plots(parity, work)
    metrics: dict[str, Any] = {split: sc}
    metrics["ensemble"] = {"max_devi_f_ev_a": ensemble_deviation(models, ds.frames(split))}
    if properties:
        from scalebridge.potentials.properties import compare_properties

        metrics["properties"] = compare_properties(models[0], pj["type_map"], ds)
    write_json_atomic(work / "metrics.json", metrics)
    return metrics


class EvaluateSettings(StrictModel):
    """Score a ``Potential`` on a ``DFTDataset`` split (an ``Evaluation`` artifact with
    ``metrics.json`` and parity plots)."""

    split: str = Field("test", description="which split of the dataset to score")
    properties: bool = Field(True, description="also lattice/elastic/vacancy vs DFT")

    def make(self, potential: Artifact | str | Path, dataset: Artifact | str | Path,
             out: str | Path, resources: Resources | None = None, *,
             force: bool = False) -> Artifact:
        from scalebridge.potentials.dataset import load_dataset

        res = resources or Resources()
        pot = potential if isinstance(potential, Artifact) else read_artifact(potential,
                                                                               "Potential")
        ds_art = dataset if isinstance(dataset, Artifact) else read_artifact(dataset,
                                                                             "DFTDataset")
        ds = load_dataset(ds_art)
        if not ds.info["splits"].get(self.split, {}).get("systems"):
            raise DataError(f"{ds_art.path}: split {self.split!r} is empty or unknown "
                            f"(splits: {', '.join(ds.info['splits'])})")
        try:  # before dp test: a foreign species only shows there after the model loads
            model_map = json.loads((pot.path / "potential.json").read_text())["type_map"]
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{pot.path}/potential.json unreadable: {e}") from None
        if missing := [s for s in ds.type_map if s not in model_map]:
            raise DataError(f"{ds_art.path}: species {missing} of the dataset's type_map "
                            f"{ds.type_map} are not in the model's type_map {model_map} "
                            f"({pot.path})")

        def build(work: Path) -> dict:
            pj = json.loads((pot.path / "potential.json").read_text())
            pj["models"] = [str(pot.path / m) for m in pj["models"]]
            pj["compressed"] = [str(pot.path / m) for m in pj.get("compressed", [])]
            write_json_atomic(work / "potential.json", pj)
            m = evaluate_into(work, ds, res, properties=self.properties, split=self.split)
            return {k: m[self.split]["overall"].get(k) for k in
                    ("energy_mae_mev_per_atom", "force_mae_ev_a", "frames")}

        return produce("Evaluation", out, self, {"potential": pot, "dataset": ds_art}, build,
                       force=force)
