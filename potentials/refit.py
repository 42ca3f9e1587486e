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


class _LinearHead:
    """A frozen model whose output layers ``θ`` (all fitting networks' last layers,
    concatenated) can be set, evaluated and written back."""

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        import torch
        from scalebridge.potentials.train import load_frozen_model

        torch.set_num_threads(threads)
        self.path = Path(model_path)
        self.model = load_frozen_model(self.path)
        self.params = dict(self.model.named_parameters())
        self.layers = _output_layers(self.model)
        if not self.layers:
            raise SettingsError(f"{model_path}: no linear output layer found in the fitting "
                                "net; the output-layer refit supports DeePMD energy models")
        p = self.params
        self.theta0 = np.concatenate([np.r_[p[w].detach().double().numpy()[:, 0],
                                            p[b].detach().double().numpy()]
                                      for w, b in self.layers])
        self.sizes = [p[w].shape[0] + 1 for w, _ in self.layers]
        self.ncol = len(self.theta0)

    def set_theta(self, theta: np.ndarray) -> None:
        import torch

        i = 0
        with torch.no_grad():
            for (w, b), k in zip(self.layers, self.sizes, strict=True):
                self.params[w].copy_(torch.tensor(theta[i:i + k - 1]).reshape(-1, 1))
                self.params[b].copy_(torch.tensor(theta[i + k - 1:i + k]))
                i += k

    def evaluate(self, c: _Chunk) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Energy (nf,) eV, forces (nf, 3n) eV/Å, virial (nf, 9) eV of a chunk."""
        import torch

        o = self.model(torch.tensor(c.coord), torch.tensor(c.atype), torch.tensor(c.box))
        return (o["energy"].detach().double().numpy().reshape(-1),
                o["force"].detach().double().numpy().reshape(len(c.energy), -1),
                o["virial"].detach().double().numpy().reshape(-1, 9))

    def features(self, chunks: list[_Chunk], label: str) -> list[tuple]:
        """Per chunk ``(chunk, base, SE (nf, K), SF (nf, 3n, K), SV (nf, 9, K))``: the
        model's output is ``base + S @ θ``. Checks that it is (linear output layer)."""
        blocks = []
        for c in track(chunks, label):
            n = c.natoms
            self.set_theta(np.zeros(self.ncol))
            base = self.evaluate(c)
            cols = []
            for k in range(self.ncol):
                e = np.zeros(self.ncol)
                e[k] = 1.0
                self.set_theta(e)
                cols.append(tuple(x - y for x, y in zip(self.evaluate(c), base, strict=True)))
            SE = np.stack([col[0] for col in cols], -1)
            SF = np.stack([col[1] for col in cols], -1)
            SV = np.stack([col[2] for col in cols], -1)
            self.set_theta(self.theta0)
            cur = self.evaluate(c)
            if not (np.allclose(base[0] + SE @ self.theta0, cur[0], atol=1e-3 * n)
                    and np.allclose(SF @ self.theta0, cur[1], atol=1e-2)):
                raise SettingsError(f"{self.path}: the model's energy is not linear in its "
                                    "output layer; the refit does not apply to this model")
            blocks.append((c, base, SE, SF, SV))
        return blocks

    def save(self, theta: np.ndarray) -> None:
        """Write the model with output layers ``theta`` in place of the file."""
        import torch

        self.set_theta(theta)
        tmp = self.path.with_name(f".{self.path.name}.refit.tmp")
        torch.jit.save(self.model, str(tmp))
        os.replace(tmp, self.path)


def _frame_rows(c: _Chunk, base, SE, SF, SV, j: int, prefs: tuple[float, float, float]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Weighted rows ``(A, y)`` of frame ``j`` of a chunk in the loss of the module doc."""
    pe, pf, pv = prefs
    n = c.natoms
    rows = [np.sqrt(pe / n) * SE[j][None], np.sqrt(pf / (3 * n)) * SF[j]]
    ys = [np.sqrt(pe / n) * np.atleast_1d(c.energy[j] - base[0][j]),
          np.sqrt(pf / (3 * n)) * c.force[j]]
    if c.virial is not None and pv > 0:
        rows.append(np.sqrt(pv / (9 * n)) * SV[j])
        ys.append(np.sqrt(pv / (9 * n)) * c.virial[j])
    return np.vstack(rows), np.concatenate(ys)


def _solve(Gs: np.ndarray, rs: np.ndarray, m: float, lam: float, theta0: np.ndarray
           ) -> np.ndarray:
    """Ridge solution towards ``theta0``; ``lam`` relative to the mean diagonal of
    ``Gs/m``."""
    ncol = len(theta0)
    scale = np.trace(Gs) / ncol / m
    A = Gs / m + lam * scale * np.eye(ncol)
    return np.linalg.solve(A, rs / m + lam * scale * theta0)


def _maes(blocks: list[tuple], th: np.ndarray) -> dict[str, float]:
    """Energy (meV/atom), force (eV/Å) and virial (meV/atom) MAEs of ``θ`` on blocks."""
    de, df, dv = [], [], []
    for c, base, SE, SF, SV in blocks:
        de += list(np.abs(base[0] + SE @ th - c.energy) / c.natoms * 1000)
        df += list(np.abs(base[1] + SF @ th - c.force).ravel())
        if c.virial is not None:
            dv += list((np.abs(base[2] + SV @ th - c.virial) / c.natoms * 1000).ravel())
    return {"energy_mae_mev_per_atom": float(np.mean(de)),
            "force_mae_ev_a": float(np.mean(df)),
            **({"virial_mae_mev_per_atom": float(np.mean(dv))} if dv else {})}


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
    t0 = time.perf_counter()
    head = _LinearHead(model_path, threads)
    theta0, ncol = head.theta0, head.ncol
    rng = np.random.default_rng(seed)
    # per fold: normal matrix G = Σ AᵀA, right-hand side r = Σ Aᵀy, and Σ yᵀy, in the
    # weighted rows of the loss above
    G = np.zeros((folds, ncol, ncol))
    r = np.zeros((folds, ncol))
    yy = np.zeros(folds)
    nfr = np.zeros(folds)
    blocks = head.features(_chunks(systems, type_map, atoms_per_call),
                           f"refitting the output layer of {model_path.name}")
    for blk in blocks:
        fold = rng.integers(0, folds, len(blk[0].energy))
        for j in range(len(blk[0].energy)):
            A, y = _frame_rows(*blk, j, prefs)
            G[fold[j]] += A.T @ A
            r[fold[j]] += A.T @ y
            yy[fold[j]] += y @ y
            nfr[fold[j]] += 1

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
            held.append(loss(_solve(G[keep].sum(0), r[keep].sum(0), m, lam, theta0), f)
                        * nfr[f])
        cv[f"{lam:g}"] = float(np.sum(held) / nfr[live].sum()) if held else float("inf")
    cv["keep"] = float(sum(loss(theta0, f) * nfr[f] for f in live) / nfr[live].sum())
    best = min(cv, key=cv.get)
    if best == "keep":
        theta = theta0
    else:
        theta = _solve(G.sum(0), r.sum(0), nfr.sum(), float(best), theta0)
    before, after = _maes(blocks, theta0), _maes(blocks, theta)
    if best != "keep":
        head.save(theta)
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


#: the MAE keys a validation score combines, by the name of their weight
SCORE_KEYS = {"energy": "energy_mae_mev_per_atom", "force": "force_mae_ev_a",
              "virial": "virial_mae_mev_per_atom"}


def weighted_score(maes: dict[str, float], ref: dict[str, float],
                   weights: dict[str, float]) -> float:
    """``Σ_k w_k mae_k / ref_k / Σ_k w_k`` over energy, force and virial (those with a
    weight > 0 present in both): 1.0 means "as good as ``ref``", lower is better."""
    num = den = 0.0
    for name, key in SCORE_KEYS.items():
        w = float(weights.get(name, 0.0))
        if w > 0 and key in maes and key in ref and ref[key] > 0:
            num += w * maes[key] / ref[key]
            den += w
    return num / den if den else float("nan")


def choose_refit(before: dict[str, float], candidates: dict[str, dict[str, float]],
                 weights: dict[str, float], force_tolerance: float
                 ) -> tuple[str | None, dict[str, dict]]:
    """The rule that keeps or rejects the refit, on validation MAEs.

    A candidate (one ridge) is eligible only if its validation force MAE is at most
    ``(1 + force_tolerance)`` times the un-refitted model's; among the eligible, the one
    with the lowest :func:`weighted_score` (relative to the un-refitted model) wins if it
    scores below 1. Returns ``(winner or None, per-candidate record with score,
    force_change and why it lost)``.
    """
    rec: dict[str, dict] = {}
    for name, m in candidates.items():
        fchg = m["force_mae_ev_a"] / before["force_mae_ev_a"] - 1.0
        s = weighted_score(m, before, weights)
        why = None
        if fchg > force_tolerance:
            why = (f"validation force MAE {fchg:+.1%} (tolerance "
                   f"+{force_tolerance:.0%})")
        elif not s < 1.0:
            why = f"weighted validation score {s:.4f} not below 1 (the un-refitted model)"
        rec[name] = {"score": s, "force_change": fchg, "rejected": why, **m}
    ok = [n for n, r in rec.items() if r["rejected"] is None]
    return (min(ok, key=lambda n: rec[n]["score"]) if ok else None), rec


def refit_by_validation(model_path: Path, train_systems: list[Path],
                        valid_systems: list[Path], type_map: list[str],
                        prefs: tuple[float, float, float], weights: dict[str, float], *,
                        force_tolerance: float = 0.05, ridges: tuple[float, ...] = RIDGE_GRID,
                        max_seconds: float | None = None, seed: int = 0, threads: int = 1,
                        atoms_per_call: int = 4000) -> dict:
    """Refit the output layer on the training frames for each ridge in ``ridges`` and keep
    the one the validation frames prefer (:func:`choose_refit`), or none.

    Unlike :func:`refit_output_layer` (cross-validated DeePMD loss), the decision is made
    on held-out validation energy, force and virial MAEs combined with the user's
    ``weights``, and a refit whose validation force MAE rises by more than
    ``force_tolerance`` is never kept.

    Args:
        max_seconds: time for the features (``K + 2`` model calls per chunk of frames of
            equal size, ``K`` output-layer numbers; timed on warm calls); when the
            estimate exceeds it, random subsets of the validation frames (up to half the
            time, at least ``MIN_VALIDATION_FRAMES``) and of the training frames are used,
            and the record says how many.

    Returns:
        ``{"kept", "ridge", "validation_before", "candidates": {ridge: {..MAEs, score,
        force_change, rejected}}, "force_tolerance", "weights", "train_frames",
        "validation_frames", "seconds", "reason"}``.
    """
    t0 = time.perf_counter()
    head = _LinearHead(model_path, threads)
    rng = np.random.default_rng(seed)
    tr = _chunks(train_systems, type_map, atoms_per_call)
    va = _chunks(valid_systems, type_map, atoms_per_call)
    if not tr or not va:
        raise SettingsError(f"{model_path}: the refit decision needs training and "
                            "validation frames (the validation split is empty)")
    tr, va = _regroup(tr, atoms_per_call), _regroup(va, atoms_per_call)
    if max_seconds:
        a_call, b_atom = _call_cost(head, tr[0])
        k = head.ncol + 2

        def cost(chunks: list[_Chunk]) -> float:
            return k * sum(a_call + b_atom * c.atype.size for c in chunks)

        def fraction(chunks: list[_Chunk], seconds: float) -> float:
            fixed = k * a_call * len(chunks)
            var = k * b_atom * sum(c.atype.size for c in chunks)
            return float(np.clip((seconds - fixed) / max(var, 1e-12), 0.0, 1.0))

        nva = sum(len(c.energy) for c in va)
        fva = max(fraction(va, 0.5 * max_seconds), min(1.0, MIN_VALIDATION_FRAMES / nva))
        va = _regroup(_subsample(va, fva, rng), atoms_per_call)
        ftr = max(fraction(tr, max_seconds - cost(va)), 0.0)
        ntr = sum(len(c.energy) for c in tr)
        ftr = max(ftr, min(1.0, MIN_VALIDATION_FRAMES / ntr))
        tr = _regroup(_subsample(tr, ftr, rng), atoms_per_call)
    tblocks = head.features(tr, f"output-layer features of {model_path.name} (train)")
    vblocks = head.features(va, f"output-layer features of {model_path.name} (validation)")
    ncol = head.ncol
    G, r, m = np.zeros((ncol, ncol)), np.zeros(ncol), 0
    for blk in tblocks:
        for j in range(len(blk[0].energy)):
            A, y = _frame_rows(*blk, j, prefs)
            G += A.T @ A
            r += A.T @ y
            m += 1
    before = _maes(vblocks, head.theta0)
    thetas = {f"{lam:g}": _solve(G, r, m, lam, head.theta0) for lam in ridges}
    best, cands = choose_refit(before, {k: _maes(vblocks, th) for k, th in thetas.items()},
                               weights, force_tolerance)
    if best is not None:
        head.save(thetas[best])
        reason = (f"kept ridge {best}: weighted validation score "
                  f"{cands[best]['score']:.4f} (1 = un-refitted), force MAE "
                  f"{cands[best]['force_change']:+.1%}")
    else:
        reason = "not kept: " + "; ".join(f"ridge {k}: {c['rejected']}"
                                          for k, c in cands.items())
    rec = {"kept": best is not None, "ridge": None if best is None else float(best),
           "validation_before": before, "candidates": cands,
           "force_tolerance": force_tolerance, "weights": dict(weights), "prefs": prefs,
           "train_frames": int(sum(len(c.energy) for c in tr)),
           "validation_frames": int(sum(len(c.energy) for c in va)),
           "parameters": ncol, "seconds": round(time.perf_counter() - t0, 2),
           "reason": reason}
    log.info("output-layer refit of %s decided on %d validation frames: %s",
             model_path.name, rec["validation_frames"], reason)
    return rec


#: the refit decision uses at least this many validation (and training) frames, even
#: when that takes longer than ``max_seconds``
MIN_VALIDATION_FRAMES = 20


def _call_cost(head: _LinearHead, c: _Chunk) -> tuple[float, float]:
    """Seconds per model call and per atom, from warm calls on one frame and on ``c``."""
    one = _Chunk(coord=c.coord[:1], box=c.box[:1], atype=c.atype[:1], energy=c.energy[:1],
                 force=c.force[:1], virial=None if c.virial is None else c.virial[:1])
    head.evaluate(one)  # the first call of a TorchScript model compiles it
    t0 = time.perf_counter()
    head.evaluate(one)
    t1 = time.perf_counter()
    head.evaluate(c)
    t2 = time.perf_counter()
    n1, nc = one.atype.size, c.atype.size
    b = max((t2 - t1) - (t1 - t0), 0.0) / max(nc - n1, 1)
    return max((t1 - t0) - b * n1, 0.0), max(b, 1e-9)


def _regroup(chunks: list[_Chunk], atoms_per_call: int) -> list[_Chunk]:
    """The same frames in as few chunks as possible: frames with the same number of atoms
    (any species, any system) evaluated together, up to ``atoms_per_call`` atoms; a model
    call costs a fixed time (~tens of ms on one core) plus a time per atom, and a data set
    of many small systems (alloys: one per composition) would otherwise pay the fixed
    part once per system and output-layer number."""
    by_n: dict[int, list[tuple[_Chunk, int]]] = {}
    for c in chunks:
        for j in range(len(c.energy)):
            by_n.setdefault(c.natoms, []).append((c, j))
    out = []
    for n, rows in sorted(by_n.items()):
        step = max(1, atoms_per_call // n)
        for a in range(0, len(rows), step):
            part = rows[a:a + step]
            virial = all(c.virial is not None for c, _ in part)
            out.append(_Chunk(
                coord=np.stack([c.coord[j] for c, j in part]),
                box=np.stack([c.box[j] for c, j in part]),
                atype=np.stack([c.atype[j] for c, j in part]),
                energy=np.array([c.energy[j] for c, j in part]),
                force=np.stack([c.force[j] for c, j in part]),
                virial=np.stack([c.virial[j] for c, j in part]) if virial else None))
    return out


def _subsample(chunks: list[_Chunk], frac: float, rng) -> list[_Chunk]:
    """A random ``frac`` of the frames of every chunk (at least one frame overall)."""
    if frac >= 1.0:
        return chunks
    out = []
    for c in chunks:
        keep = np.flatnonzero(rng.random(len(c.energy)) < frac)
        if len(keep):
            out.append(_Chunk(coord=c.coord[keep], box=c.box[keep], atype=c.atype[keep],
                              energy=c.energy[keep], force=c.force[keep],
                              virial=None if c.virial is None else c.virial[keep]))
    return out or [chunks[0]]
