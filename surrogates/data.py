"""Training data for constitutive surrogates: strain paths with their stress responses.

Two sources, one container (:class:`StrainPaths`):

- the analytic J2 law driven along random cyclic strain paths (:class:`J2DataSettings`,
  a ``ConstitutiveDataset`` artifact), for verification;
- ``DDRun`` artifacts of dd_coupling (docs/CONTRACTS.md): one path per realisation.
  The dislocation-dynamics engine is a resolved-shear 2D model, so its shear stress τ and
  shear strain γ become a simple-shear tensor path (ε_xy = γ/2, σ_xy = τ). Its von Mises
  equivalents are then σ = √3 τ and ε̄_p = γ_p/√3, the mapping the hardening is fitted in.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from scalebridge.artifacts import Artifact, produce, read_artifact, write_json_atomic
from scalebridge.errors import DataError
from scalebridge.settings import StrictModel
from scalebridge.surrogates import mandel
from scalebridge.surrogates.j2 import (
    DislocationDensityHardening,
    J2Plasticity,
    LinearHardening,
    VoceHardening,
)
from scalebridge.surrogates.protocol import integrate_path

log = logging.getLogger("scalebridge.surrogates")

DD_COLUMNS = ("time_s", "strain", "stress_mpa", "plastic_strain")


@dataclass
class StrainPaths:
    """P strain paths of T+1 points each (all paths share T).

    Attributes:
        strain: (P, T+1, 6) Mandel total strain.
        stress: (P, T+1, 6) Mandel stress, MPa.
        dt: (P,) step duration, s.
        temperature_k: (P,) temperature, K.
        strain_rate_s: (P,) nominal applied strain rate, 1/s.
        plastic_eq: (P, T+1) equivalent plastic strain where the source gives it, else None.
        meta: ``bulk_mpa``, ``shear_mpa`` (elastic moduli of the source), ``source``,
            ``yield_stress_mpa`` (initial yield, for error scaling) and source details.
        names: (P,) a label per path (file or seed).
        microstructure: (P,) int, the DD seed of each path's microstructure where the
            source records it (a study runs the same seeds in every condition, so such
            paths are not independent), else None.
    """

    strain: np.ndarray
    stress: np.ndarray
    dt: np.ndarray
    temperature_k: np.ndarray
    strain_rate_s: np.ndarray
    plastic_eq: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    microstructure: np.ndarray | None = None

    def __len__(self) -> int:
        return self.strain.shape[0]

    def subset(self, idx: np.ndarray) -> StrainPaths:
        """The paths at indices ``idx``."""
        idx = np.asarray(idx)
        return StrainPaths(self.strain[idx], self.stress[idx], self.dt[idx],
                           self.temperature_k[idx], self.strain_rate_s[idx],
                           None if self.plastic_eq is None else self.plastic_eq[idx],
                           dict(self.meta), [self.names[i] for i in idx] if self.names else [],
                           None if self.microstructure is None else self.microstructure[idx])

    def save(self, path: Path) -> None:
        """``paths.npz`` (arrays) + ``dataset.json`` (meta) in directory ``path``."""
        arrays = {"strain": self.strain, "stress": self.stress, "dt": self.dt,
                  "temperature_k": self.temperature_k, "strain_rate_s": self.strain_rate_s}
        if self.plastic_eq is not None:
            arrays["plastic_eq"] = self.plastic_eq
        if self.microstructure is not None:
            arrays["microstructure"] = self.microstructure
        np.savez(path / "paths.npz", **arrays)
        write_json_atomic(path / "dataset.json", {
            "n_paths": len(self), "n_steps": int(self.strain.shape[1] - 1),
            "meta": self.meta, "names": self.names})

    @classmethod
    def load(cls, path: Path) -> StrainPaths:
        """Read what :meth:`save` wrote."""
        try:
            meta = json.loads((path / "dataset.json").read_text())
            z = np.load(path / "paths.npz")
        except (OSError, json.JSONDecodeError, ValueError) as e:
            raise DataError(f"{path}: cannot read strain paths: {e}") from None
        return cls(z["strain"], z["stress"], z["dt"], z["temperature_k"], z["strain_rate_s"],
                   z["plastic_eq"] if "plastic_eq" in z else None, meta["meta"],
                   list(meta.get("names", [])),
                   z["microstructure"] if "microstructure" in z else None)


def cyclic_strain_paths(rng: np.random.Generator, n_paths: int, cycles: int = 2,
                        steps: int = 20, amplitude: float = 5e-3,
                        proportional_fraction: float = 0.5,
                        volumetric: float = 0.2) -> np.ndarray:
    """Random cyclic Mandel strain paths from zero, (n_paths, 2*cycles*steps + 1, 6).

    Each path reverses 2*cycles times between targets ±a_k d_k with amplitudes a_k in
    [0.3, 1]·``amplitude``; a fraction of the paths keep one direction d (proportional
    cycles), the rest draw a new direction per half cycle (non-proportional). Directions
    are deviatoric plus ``volumetric`` times a random volumetric part.
    """
    def direction(k: int) -> np.ndarray:
        d = rng.normal(size=(k, 6))
        d = mandel.deviator(d)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        d += volumetric * rng.normal(size=(k, 1)) * mandel.I2 / np.sqrt(3.0)
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    prop = rng.uniform(size=n_paths) < proportional_fraction
    d0 = direction(n_paths)
    pts = [np.zeros((n_paths, 6))]
    for k in range(2 * cycles):
        d = np.where(prop[:, None], d0, direction(n_paths))
        a = amplitude * rng.uniform(0.3, 1.0, size=(n_paths, 1))
        pts.append((-1.0) ** k * a * d)
    w = np.linspace(0.0, 1.0, steps + 1)[1:]
    segs = [pts[0][:, None]]
    for a, b in itertools.pairwise(pts):
        segs.append(a[:, None] + w[None, :, None] * (b - a)[:, None])
    return np.concatenate(segs, axis=1)


class J2DataSettings(StrictModel):
    """Random cyclic strain paths through the analytic J2 law (a ``ConstitutiveDataset``)."""

    youngs_modulus_mpa: float = Field(200e3, gt=0, description="Young's modulus E, MPa")
    poisson_ratio: float = Field(0.3, gt=-1, lt=0.5, description="Poisson ratio ν")
    hardening: Literal["linear", "voce", "dislocation"] = Field(
        "voce", description="hardening law of the reference J2 model")
    sigma0_mpa: float = Field(250.0, ge=0, description="initial yield stress σ0, MPa")
    hardening_modulus_mpa: float = Field(
        500.0, ge=0, description="linear hardening modulus H, MPa (linear and Voce)")
    sigma_inf_mpa: float = Field(400.0, ge=0, description="Voce saturation stress σ∞, MPa")
    voce_rate: float = Field(30.0, gt=0, description="Voce rate δ (dimensionless)")
    n_paths: int = Field(64, ge=2, description="number of strain paths")
    cycles: int = Field(2, ge=1, description="load reversals per path / 2")
    steps: int = Field(20, ge=2, description="steps per half cycle")
    amplitude: float = Field(6e-3, gt=0, description="largest strain amplitude (Mandel norm)")
    proportional_fraction: float = Field(
        0.5, ge=0, le=1, description="fraction of paths with one loading direction")
    dt_s: float = Field(1.0, gt=0, description="step duration, s")
    temperature_k: float = Field(300.0, gt=0, description="temperature recorded, K")
    seed: int = Field(0, description="random seed of the paths")

    def model(self) -> J2Plasticity:
        """The reference J2 model these settings describe."""
        if self.hardening == "linear":
            h: Any = LinearHardening(self.sigma0_mpa, self.hardening_modulus_mpa)
        elif self.hardening == "voce":
            h = VoceHardening(self.sigma0_mpa, self.sigma_inf_mpa, self.voce_rate,
                              self.hardening_modulus_mpa)
        else:
            e, nu = self.youngs_modulus_mpa, self.poisson_ratio
            h = DislocationDensityHardening(sigma0=self.sigma0_mpa, mu=e / (2 * (1 + nu)))
        return J2Plasticity(self.youngs_modulus_mpa, self.poisson_ratio, h,
                            name=f"j2_{self.hardening}")

    def generate(self) -> StrainPaths:
        """Drive the reference model along the random paths."""
        model = self.model()
        rng = np.random.default_rng(self.seed)
        strain = cyclic_strain_paths(rng, self.n_paths, self.cycles, self.steps,
                                     self.amplitude, self.proportional_fraction)
        stress, _, _ = integrate_path(model, strain, self.dt_s)
        p = self.n_paths
        return StrainPaths(
            strain, stress, np.full(p, self.dt_s), np.full(p, self.temperature_k),
            np.full(p, float(np.median(np.abs(np.diff(strain, axis=1)).max(axis=2)))
                    / self.dt_s),
            None,  # the learner reconstructs ε̄_p from elasticity, as for measured data
            {"source": "j2", "law": repr(model), "bulk_mpa": model.bulk,
             "shear_mpa": model.shear, "yield_stress_mpa": model.initial_yield_stress()},
            [f"seed{self.seed}_path{i}" for i in range(p)])

    def make(self, path: str | Path) -> Artifact:
        """Write the ``ConstitutiveDataset`` artifact at ``path``."""
        def build(work: Path) -> dict[str, Any]:
            data = self.generate()
            data.save(work)
            return {"n_paths": len(data), "n_steps": int(data.strain.shape[1] - 1),
                    "source": "j2", "yield_stress_mpa": data.meta["yield_stress_mpa"]}

        return produce("ConstitutiveDataset", path, self, {}, build)


def _read_dd_csv(path: Path) -> dict[str, np.ndarray]:
    """Columns of one ``stress_strain.csv``; one-line DataError naming file/column/row."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if len(rows) < 3:
        raise DataError(f"{path}: fewer than two data rows")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in DD_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)} "
                        f"(has {', '.join(header)})")
    out: dict[str, np.ndarray] = {}
    for c in DD_COLUMNS:
        j = header.index(c)
        vals = []
        for i, r in enumerate(rows[1:], start=2):
            try:
                v = float(r[j])
            except (ValueError, IndexError):
                raise DataError(f"{path}: row {i}, column {c!r}: not a number: "
                                f"{r[j] if j < len(r) else ''!r}") from None
            if not math.isfinite(v):
                raise DataError(f"{path}: row {i}, column {c!r}: {v}")
            vals.append(v)
        out[c] = np.asarray(vals)
    return out


def _first_key(d: dict[str, Any], keys: tuple[str, ...], scale: tuple[float, ...],
               what: str, src: Path) -> float:
    for k, s in zip(keys, scale, strict=True):
        if k in d and d[k] is not None:
            return float(d[k]) * s
    raise DataError(f"{src}: no {what} (looked for {', '.join(keys)})")


def integrate_at_path_dt(model: Any, strain: np.ndarray, dt: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`~scalebridge.surrogates.protocol.integrate_path` of the paths ``strain``
    (P, T+1, 6), each at its own step ``dt`` (P,) s (one scalar step where they all
    share it): (stress, states, out_of_range)."""
    return integrate_path(model, strain, dt if np.ptp(dt) > 0 else float(dt[0]))


def replay(model: Any, paths: StrainPaths) -> tuple[np.ndarray, np.ndarray]:
    """(stress (P, T+1, 6) MPa, states (P, T+1, m)) of every path replayed through
    ``model`` at its own step dt (a model without a temperature input; for one with it,
    :func:`scalebridge.surrogates.train.integrate_paths`)."""
    s, st, _ = integrate_at_path_dt(model, paths.strain, paths.dt)
    return s, st


def replay_rmse(model: Any, paths: StrainPaths) -> float:
    """RMS over the paths' steps of the stress error norm |σ_model − σ_data| (MPa)."""
    err = np.linalg.norm(replay(model, paths)[0] - paths.stress, axis=-1)
    return float(np.sqrt(np.mean(err ** 2)))


def plastic_history(paths: StrainPaths) -> np.ndarray:
    """(P, T+1) equivalent plastic strain: the source's, else from ε_p = ε - C⁻¹σ."""
    if paths.plastic_eq is not None:
        return paths.plastic_eq
    c = mandel.isotropic_stiffness(paths.meta["bulk_mpa"], paths.meta["shear_mpa"])
    eps_p = paths.strain - paths.stress @ np.linalg.inv(c).T
    dep = mandel.equivalent_strain(np.diff(eps_p, axis=1))
    return np.concatenate([np.zeros((len(paths), 1)), np.cumsum(dep, axis=1)], axis=1)


def _mobility_drag(art: Any) -> dict[str, Any]:
    """The edge drag B (Pa·s) of the mobility law a DD run used, from that MobilityLaw
    artifact's ``fit.json`` (its path in the run's manifest), or {} where it is not
    readable (no mobility input, moved or another kind of law)."""
    rec = (art.manifest.get("inputs") or {}).get("mobility") or {}
    try:
        fit = json.loads((Path(rec["artifact"]) / "fit.json").read_text())
        b = float(fit["drag"]["edge"]["b0_pa_s"])   # B at the law's reference T
    except (KeyError, TypeError, ValueError, OSError):
        return {}
    return {"drag_pa_s": b, "drag_source": str(rec["artifact"])} if b > 0 else {}


def read_ddrun(path: str | Path) -> StrainPaths:
    """A ``DDRun`` artifact as simple-shear strain paths, one per realisation.

    Realisations of different lengths are resampled onto a common number of points along
    their own strain axis (linear interpolation), so they can be batched. A study (a grid
    of strain rates and temperatures) gives each realisation its own ``strain_rate_s``
    and ``temperature_k`` in ``run.json``'s ``realisations`` list; they override the
    run-wide values path by path.
    """
    path = Path(path)
    art = read_artifact(path, kind="DDRun")
    run_file = art.file("run.json")
    try:
        run = json.loads(run_file.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{run_file}: invalid JSON: {e}") from None
    mu = _first_key(run, ("shear_modulus_gpa", "shear_modulus_mpa", "mu_gpa", "mu_mpa",
                          "mu_pa"), (1e3, 1.0, 1e3, 1.0, 1e-6), "shear modulus", run_file)
    nu = _first_key(run, ("nu", "poisson_ratio"), (1.0, 1.0), "Poisson ratio", run_file)
    temp = _first_key(run, ("temperature_k",), (1.0,), "temperature_k", run_file)
    loading = run.get("loading") or {}
    if not isinstance(loading, dict):
        raise DataError(f"{run_file}: key 'loading' is not a table")
    resolved = loading.get("resolved", "shear")
    if resolved != "shear" and loading.get("component", "shear_xy") != "shear_xy":
        raise DataError(f"{run_file}: loading {loading.get('component')!r} is not resolved "
                        "shear; surrogates read shear_xy DD runs only")
    rate_v = loading.get("strain_rate_s", run.get("strain_rate_s"))
    files = sorted(path.glob("realisations/*/stress_strain.csv"),
                   key=lambda p: (len(p.parent.name), p.parent.name))
    if not files:
        files = [art.file("stress_strain.csv")]
    tables = [_read_dd_csv(f) for f in files]
    npts = min(len(t["strain"]) for t in tables)
    gam, tau, gp, tim = [], [], [], []
    for f, t in zip(files, tables, strict=True):
        if np.any(np.diff(t["time_s"]) <= 0):
            raise DataError(f"{f}: column 'time_s' is not increasing")
        s = np.linspace(0.0, 1.0, len(t["strain"]))
        si = np.linspace(0.0, 1.0, npts)
        gam.append(np.interp(si, s, t["strain"]))
        tau.append(np.interp(si, s, t["stress_mpa"]))
        gp.append(np.interp(si, s, t["plastic_strain"]))
        tim.append(np.interp(si, s, t["time_s"]))
    per = run.get("realisations") if isinstance(run.get("realisations"), list) else []
    temps, rates = np.full(len(files), temp), np.full(len(files), np.nan)
    seeds: list[int | None] = []
    for j, f in enumerate(files):
        i = int(f.parent.name) if f.parent.name.isdigit() else len(per)
        rec = per[i] if i < len(per) and isinstance(per[i], dict) else {}
        if rec.get("temperature_k") is not None:
            temps[j] = float(rec["temperature_k"])
        if rec.get("strain_rate_s") is not None:
            rates[j] = float(rec["strain_rate_s"])
        seeds.append(int(rec["seed"]) if isinstance(rec.get("seed"), int) else None)
    gam_a, tau_a, gp_a = np.array(gam), np.array(tau), np.array(gp)
    dt = np.array([float(np.mean(np.diff(t))) for t in tim])
    if rate_v is None:  # stress control: the mean applied strain rate
        rate = float(np.mean((gam_a[:, -1] - gam_a[:, 0]) / (np.array(tim)[:, -1]
                                                             - np.array(tim)[:, 0])))
    else:
        rate = float(rate_v)
    strain = mandel.shear_strain(gam_a)
    stress = mandel.shear_strain(2.0 * tau_a)  # σ_xy = τ → Mandel √2 τ
    plastic_eq = np.concatenate(
        [np.zeros((len(files), 1)), np.cumsum(np.abs(np.diff(gp_a, axis=1)), axis=1)],
        axis=1) / np.sqrt(3.0)
    bulk = 2.0 * mu * (1.0 + nu) / (3.0 * (1.0 - 2.0 * nu))
    flow = np.sqrt(3.0) * np.abs(tau_a)
    # the DD's source physics, for a surrogate that keeps it (johnston_gilman): the time
    # a source must stay above its strength before it emits, and the mean strength
    sources: dict[str, Any] = {}
    clock = run.get("nucleation") if isinstance(run.get("nucleation"), dict) else None
    # the time the DD ran with, typed or from the law (the reference condition's: a law
    # with B(T) gives each temperature its own, one surrogate keeps one)
    if clock is not None:
        if isinstance(clock.get("time_ns"), int | float):
            sources["nucleation_time_s"] = float(clock["time_ns"]) * 1e-9
        each = clock.get("each_source")
        if isinstance(each, dict) and each.get("source_mpa") and each.get("time_ns"):
            rows = [(float(s), float(t) * 1e-9) for s, t in zip(each["source_mpa"],
                                                                each["time_ns"], strict=False)
                    if isinstance(s, int | float) and isinstance(t, int | float) and t > 0]
            if rows:
                sources["nucleation_clocks"] = {"source_mpa": [r[0] for r in rows],
                                                "time_s": [r[1] for r in rows]}
    elif art.settings.get("nucleation", "time") == "time" \
            and isinstance(art.settings.get("nucleation_time_ns"), int | float):
        sources["nucleation_time_s"] = float(art.settings["nucleation_time_ns"]) * 1e-9
    src = (run.get("strengths") or {}).get("source") if isinstance(
        run.get("strengths"), dict) else None
    if isinstance(src, dict) and isinstance(src.get("mpa"), int | float):
        sources["source_strength_mpa"] = float(src["mpa"])
        if isinstance(src.get("std_mpa"), int | float):
            sources["source_strength_std_mpa"] = float(src["std_mpa"])
    if isinstance(run.get("burgers_a"), int | float):
        sources["burgers_a"] = float(run["burgers_a"])
    sources.update(_mobility_drag(art))
    return StrainPaths(
        strain, stress, dt, temps, np.where(np.isfinite(rates), rates, rate), plastic_eq,
        {"source": "ddrun", "ddrun": str(path), "bulk_mpa": bulk, "shear_mpa": mu,
         "poisson_ratio": nu, "mapping": "σ = √3 τ, ε̄_p = γ_p/√3 (simple shear)",
         "yield_stress_mpa": float(np.median(flow[:, -max(npts // 5, 1):])), **sources},
        [str(f.relative_to(path)) for f in files],
        None if None in seeds else np.array(seeds, dtype=np.int64))


def load_paths(path: str | Path) -> StrainPaths:
    """Strain paths from a ``ConstitutiveDataset`` or a ``DDRun`` artifact directory."""
    art = read_artifact(path)
    if art.kind == "ConstitutiveDataset":
        return StrainPaths.load(art.path)
    if art.kind == "DDRun":
        return read_ddrun(art.path)
    raise DataError(f"{path}: a {art.kind} artifact; expected ConstitutiveDataset or DDRun")
