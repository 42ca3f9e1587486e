"""Least-squares refit of a trained model's output layer on its training frames.

A DeePMD energy model ends in a linear layer: atom ``i`` of type ``t`` contributes
``E_i = w_t · h_i + b_t (+ fixed bias)``, where ``h_i`` (``H`` numbers) is the last hidden
layer. The total energy, the forces ``-dE/dx`` and the virial are therefore *linear* in
``θ = (w_t, b_t)``. Stochastic gradient descent leaves ``θ`` wherever the last noisy
single-frame steps put it; here it is solved for exactly, as SNAP solves for its
coefficients: minimise the training loss DeePMD itself uses (per frame, ``N`` atoms)::

    L(θ) = mean_frames[ p_e/N ΔE² + p_f/(3N) Σ ΔF² + p_v/(9N) Σ ΔW² ] + λ |θ - θ₀|²

with the loss weights' limits ``p_e, p_f, p_v`` and a ridge towards the trained ``θ₀``
whose strength ``λ`` is chosen by k-fold cross-validation on the training frames (``λ =
∞``, the model as trained, is one of the choices, so held-out loss never gets worse).

The features come from the frozen TorchScript model itself: with the output layer set to
a unit vector ``e_k`` (and the others zero), the model's energy, forces and virial are
the ``k``-th column of the linear map, so nothing about the network's internals beyond
"the last layer of each fitting network is linear" is assumed, and that is checked.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scalebridge.errors import SettingsError
from scalebridge.log import track
from scalebridge.potentials.npy import read_system

log = logging.getLogger(__name__)

#: ridge strengths tried, relative to the mean diagonal of the normal matrix
RIDGE_GRID = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class _Chunk:
    """Frames of one system evaluated together (``nf`` frames of ``n`` atoms)."""

    coord: np.ndarray   # (nf, n*3) Å
    box: np.ndarray     # (nf, 9) Å
    atype: np.ndarray   # (nf, n)
    energy: np.ndarray  # (nf,) eV
    force: np.ndarray   # (nf, n*3) eV/Å
    virial: np.ndarray | None  # (nf, 9) eV

    @property
    def natoms(self) -> int:
        return self.atype.shape[1]


def _chunks(systems: list[Path], type_map: list[str], atoms_per_call: int) -> list[_Chunk]:
    out = []
    for s in systems:
        frames = read_system(s)
        if not frames:
            continue
        n = frames[0].natoms
        types = np.array([type_map.index(x) for x in frames[0].symbols])
        virial = all(f.virial is not None for f in frames)
        step = max(1, atoms_per_call // n)
        for a in range(0, len(frames), step):
            fr = frames[a:a + step]
            out.append(_Chunk(
                coord=np.stack([f.positions.reshape(-1) for f in fr]),
                box=np.stack([np.asarray(f.cell).reshape(-1) for f in fr]),
                atype=np.tile(types, (len(fr), 1)),
                energy=np.array([f.energy for f in fr]),
                force=np.stack([f.forces.reshape(-1) for f in fr]),
                virial=np.stack([f.virial.reshape(-1) for f in fr]) if virial else None))
    return out


def _output_layers(model) -> list[tuple[str, str]]:
    """(matrix, bias) parameter names of the last layer of each fitting network."""
    last: dict[str, tuple[int, str]] = {}
    pat = re.compile(r"^(.*fitting_net\.filter_layers\.networks\.\d+)\.layers\.(\d+)\.matrix$")
    for name, p in model.named_parameters():
        if (m := pat.match(name)) and p.ndim == 2 and p.shape[1] == 1:
            k = int(m.group(2))
            if m.group(1) not in last or k > last[m.group(1)][0]:
                last[m.group(1)] = (k, name)
    return [(n, n[: -len("matrix")] + "bias") for _, n in sorted(last.values())]


def refit_output_layer(model_path: Path, systems: list[Path], type_map: list[str],
                       prefs: tuple[float, float, float], *, folds: int = 5,
                       seed: int = 0, threads: int = 1,
                       atoms_per_call: int = 4000) -> dict:
    """Refit the output layer of the frozen model at ``model_path`` in place.

    Args:
        systems: the training npy systems.
        prefs: loss weights ``(p_e, p_f, p_v)`` (``p_v`` is ignored for frames without
            virials).
        folds: cross-validation folds for the ridge strength (frames assigned at random
            with ``seed``).

    Returns:
        a record: the chosen ridge (None: the model is kept as trained), the
        cross-validated loss per ridge, and training-frame MAEs before and after (energy
        meV/atom, force eV/Å, virial meV/atom).
    """
    import torch
    from scalebridge.potentials.train import load_frozen_model

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    model = load_frozen_model(model_path)
    params = dict(model.named_parameters())
    layers = _output_layers(model)
    if not layers:
        raise SettingsError(f"{model_path}: no linear output layer found in the fitting "
                            "net; the output-layer refit supports DeePMD energy models")
    theta0 = np.concatenate([np.r_[params[w].detach().double().numpy()[:, 0],
                                   params[b].detach().double().numpy()] for w, b in layers])
    sizes = [params[w].shape[0] + 1 for w, _ in layers]
    ncol = len(theta0)

    def set_theta(theta: np.ndarray) -> None:
        i = 0
        with torch.no_grad():
            for (w, b), k in zip(layers, sizes, strict=True):
                params[w].copy_(torch.tensor(theta[i:i + k - 1]).reshape(-1, 1))
                params[b].copy_(torch.tensor(theta[i + k - 1:i + k]))
                i += k

    def evaluate(c: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = model(torch.tensor(c.coord), torch.tensor(c.atype), torch.tensor(c.box))
        return (o["energy"].detach().double().numpy().reshape(-1),
                o["force"].detach().double().numpy().reshape(len(c.energy), -1),
                o["virial"].detach().double().numpy().reshape(-1, 9))

    chunks = _chunks(systems, type_map, atoms_per_call)
    pe, pf, pv = prefs
    rng = np.random.default_rng(seed)
    # per fold: normal matrix G = Σ AᵀA, right-hand side r = Σ Aᵀy, and Σ yᵀy, in the
    # weighted rows of the loss above; plus the per-frame MAEs before/after
    G = np.zeros((folds, ncol, ncol))
    r = np.zeros((folds, ncol))
    yy = np.zeros(folds)
    nfr = np.zeros(folds)
    blocks = []
    for c in track(chunks, f"refitting the output layer of {model_path.name}"):
        n = c.natoms
        set_theta(np.zeros(ncol))
        base = evaluate(c)
        cols = []
        for k in range(ncol):
            e = np.zeros(ncol)
            e[k] = 1.0
            set_theta(e)
            cols.append(tuple(x - y for x, y in zip(evaluate(c), base, strict=True)))
        SE = np.stack([col[0] for col in cols], -1)  # (nf, K)
        SF = np.stack([col[1] for col in cols], -1)  # (nf, 3n, K)
        SV = np.stack([col[2] for col in cols], -1)  # (nf, 9, K)
        set_theta(theta0)
        cur = evaluate(c)
        if not (np.allclose(base[0] + SE @ theta0, cur[0], atol=1e-3 * n)
                and np.allclose(SF @ theta0, cur[1], atol=1e-2)):
            raise SettingsError(f"{model_path}: the model's energy is not linear in its "
                                "output layer; the refit does not apply to this model")
        fold = rng.integers(0, folds, len(c.energy))
        for j in range(len(c.energy)):
            rows = [np.sqrt(pe / n) * SE[j][None], np.sqrt(pf / (3 * n)) * SF[j]]
            ys = [np.sqrt(pe / n) * np.atleast_1d(c.energy[j] - base[0][j]),
                  np.sqrt(pf / (3 * n)) * c.force[j]]
            if c.virial is not None and pv > 0:
                rows.append(np.sqrt(pv / (9 * n)) * SV[j])
                ys.append(np.sqrt(pv / (9 * n)) * c.virial[j])
            A, y = np.vstack(rows), np.concatenate(ys)
            G[fold[j]] += A.T @ A
            r[fold[j]] += A.T @ y
            yy[fold[j]] += y @ y
            nfr[fold[j]] += 1
        blocks.append((c, base, SE, SF, SV))

    def solve(Gs: np.ndarray, rs: np.ndarray, m: float, lam: float) -> np.ndarray:
        scale = np.trace(Gs) / ncol / m
        A = Gs / m + lam * scale * np.eye(ncol)
        return np.linalg.solve(A, rs / m + lam * scale * theta0)

    def loss(th: np.ndarray, f: int) -> float:
        return float(th @ G[f] @ th - 2 * r[f] @ th + yy[f]) / max(nfr[f], 1)

    cv: dict[str, float] = {}
    live = [f for f in range(folds) if nfr[f] > 0]
    for lam in RIDGE_GRID:
        held = []
        for f in live:
            keep = [g for g in live if g != f]
            m = nfr[keep].sum()
            if m == 0:
                continue
            held.append(loss(solve(G[keep].sum(0), r[keep].sum(0), m, lam), f) * nfr[f])
        cv[f"{lam:g}"] = float(np.sum(held) / nfr[live].sum()) if held else float("inf")
    cv["keep"] = float(sum(loss(theta0, f) * nfr[f] for f in live) / nfr[live].sum())
    best = min(cv, key=cv.get)
    if best == "keep":
        theta = theta0
    else:
        theta = solve(G.sum(0), r.sum(0), nfr.sum(), float(best))

    def maes(th: np.ndarray) -> dict[str, float]:
        de, df, dv = [], [], []
        for c, base, SE, SF, SV in blocks:
            de += list(np.abs(base[0] + SE @ th - c.energy) / c.natoms * 1000)
            df += list(np.abs(base[1] + SF @ th - c.force).ravel())
            if c.virial is not None:
                dv += list((np.abs(base[2] + SV @ th - c.virial) / c.natoms * 1000).ravel())
        return {"energy_mae_mev_per_atom": float(np.mean(de)),
                "force_mae_ev_a": float(np.mean(df)),
                **({"virial_mae_mev_per_atom": float(np.mean(dv))} if dv else {})}

    before, after = maes(theta0), maes(theta)
    set_theta(theta)
    if best != "keep":
        tmp = model_path.with_name(f".{model_path.name}.refit.tmp")
        torch.jit.save(model, str(tmp))
        os.replace(tmp, model_path)
    rec = {"ridge": None if best == "keep" else float(best), "cv_loss": cv,
           "frames": int(nfr.sum()), "parameters": ncol,
           "parameter_change": float(np.linalg.norm(theta - theta0)),
           "train_before": before, "train_after": after,
           "seconds": round(time.perf_counter() - t0, 2)}
    log.info("output-layer refit of %s (%d frames, %d parameters): ridge %s; training "
             "energy MAE %.2f -> %.2f meV/atom, force MAE %.4f -> %.4f eV/Å (%.0f s)",
             model_path.name, rec["frames"], ncol, best, before["energy_mae_mev_per_atom"],
             after["energy_mae_mev_per_atom"], before["force_mae_ev_a"],
             after["force_mae_ev_a"], rec["seconds"])
    return rec
