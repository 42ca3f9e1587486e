"""``check_constitutive``: the interface and physics checks every constitutive model passes.

Each check drives the model from its virgin state along strain paths scaled by
``amplitude`` (a strain several times the yield strain) and compares against a property
any small-strain elastoplastic model must have (torch-sim's ``validate_model_outputs``
and ASE's finite-difference force tests are the models for this):

- ``interface``: shapes (n, 6), (n, 6, 6), (n, m) with m = len(state_names), float64,
  ``out_of_range`` (n,) bool when given.
- ``inputs_untouched``: strain, dstrain and state are not mutated.
- ``batched``: a batch gives the same answer as the points one at a time.
- ``tangent``: the tangent equals the central finite difference of the stress with
  respect to the strain increment (points at a yield kink, where two step sizes disagree,
  are skipped).
- ``symmetry``: major symmetry of the tangent (for models claiming ``symmetric_tangent``).
- ``objectivity``: rotating the strain path rotates the stress and the tangent
  (for models claiming ``isotropic``).
- ``elastic_unloading``: after plastic loading and a hold at fixed strain (one step of
  ``HOLD_FACTOR`` × dt with no strain increment), an unloading step (20% of the equivalent
  stress after the hold) and a reloading step of half its size are linear with the
  virgin elastic stiffness. For a rate-independent law the hold does nothing. For a
  rate-dependent (overstress, viscoplastic) law it asserts that the law has a static
  yield surface: during the hold any overstress relaxes (the plastic rate is ~1e-6 of the
  loading one), the stress comes to rest on the static yield surface, and inside it the
  response is elastic. Without the hold a sound overstress law probed at a rate where its
  overstress exceeds a quarter of the flow stress would rightly keep flowing after the
  20% unloading. A law whose yield stress at slow rates is negative or falls below 80 %
  of the relaxed stress (a viscous fluid; e.g. a learned σ_y(ε̇_p) extrapolated below
  zero at its slowest rate) keeps flowing and fails. Reloading stops short of the
  relaxed stress.
- ``dissipation``: the work ∮σ:dε around closed strain cycles from the virgin state is
  non-negative (Ilyushin's postulate; elastic energy + plastic dissipation ≥ 0).
- ``finite``: every parameter of the model (its float attributes, arrays, tensors and
  network weights, searched through its attributes) and every output along the probing
  paths is finite. A NaN parameter can hide behind finite outputs (a NaN yield stress
  never yields: the model is silently elastic), so a model with non-finite parameters
  fails at once and the other checks are not run.
"""

from __future__ import annotations

import inspect
import itertools
import math
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scalebridge.errors import ScalebridgeError
from scalebridge.surrogates import mandel
from scalebridge.surrogates.protocol import ConstitutiveModel, integrate_path

#: Duration of the ``elastic_unloading`` hold, in units of the probing step dt.
HOLD_FACTOR = 1e6


class ConstitutiveCheckError(ScalebridgeError):
    """A constitutive model failed one of the checks of :func:`check_constitutive`."""


@dataclass
class CheckOutcome:
    """One check: passed, the measured error, the tolerance it was held to, and a note."""

    passed: bool
    error: float
    tolerance: float
    note: str = ""


@dataclass
class CheckReport:
    """The outcome of every check run on one model."""

    model: str
    outcomes: dict[str, CheckOutcome] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes.values())

    @property
    def failed(self) -> list[str]:
        return [k for k, o in self.outcomes.items() if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "passed": bool(self.passed),
                "checks": {k: {"passed": bool(o.passed), "error": float(o.error),
                               "tolerance": float(o.tolerance), "note": o.note}
                           for k, o in self.outcomes.items()}}

    def summary(self) -> str:
        """One line per check."""
        return "\n".join(f"{k:18s} {'ok  ' if o.passed else 'FAIL'} error {o.error:.3g} "
                         f"(tol {o.tolerance:.3g}) {o.note}"
                         for k, o in self.outcomes.items())


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_paths(rng: np.random.Generator, n: int, segments: int, steps: int,
                  amplitude: float, close: bool = False) -> np.ndarray:
    """(n, segments*steps+1, 6) piecewise-linear Mandel strain paths from zero, mostly
    deviatoric, reaching ``amplitude``; ``close`` returns to zero at the end."""
    pts = [np.zeros((n, 6))]
    for s in range(segments):
        if close and s == segments - 1:
            pts.append(np.zeros((n, 6)))
            continue
        d = rng.normal(size=(n, 6))
        d = mandel.deviator(d) + 0.1 * d[:, :1] * mandel.I2
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        pts.append(d * amplitude * rng.uniform(0.5, 1.0, size=(n, 1)))
    out = [pts[0][:, None]]
    for a, b in itertools.pairwise(pts):
        w = np.linspace(0, 1, steps + 1)[1:, None, None]
        out.append(np.swapaxes(a[None] + w * (b - a)[None], 0, 1))
    return np.concatenate(out, axis=1)


def _states_along(model: ConstitutiveModel, path: np.ndarray, dt: float) -> np.ndarray:
    _, states, _ = integrate_path(model, path, dt)
    return states


def nonfinite_parameters(model: Any, max_depth: int = 5) -> list[str]:
    """Dotted names of the model's non-finite parameters (see ``finite`` above).

    Scalars (float attributes) and network weights (parameters and buffers of every
    ``torch.nn.Module`` reached) must be finite; arrays and plain tensors must hold no
    NaN (±inf is allowed there: open bounds such as an unclamped feature range)."""
    torch = sys.modules.get("torch")
    bad: list[str] = []
    seen: set[int] = set()

    def visit(obj: Any, name: str, depth: int, in_container: bool) -> None:
        if obj is None or isinstance(obj, bool | int | str | bytes):
            return
        if isinstance(obj, float | np.floating):
            if math.isnan(obj) or (not in_container and math.isinf(obj)):
                bad.append(name)
            return
        if isinstance(obj, np.ndarray):
            if obj.dtype.kind in "fc" and bool(np.isnan(obj).any()):
                bad.append(name)
            return
        if torch is not None and isinstance(obj, torch.nn.Module):
            if id(obj) in seen:
                return
            seen.add(id(obj))
            for kind in (obj.named_parameters(), obj.named_buffers()):
                for pn, t in kind:
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        bad.append(f"{name}.{pn}")
            return
        if torch is not None and isinstance(obj, torch.Tensor):
            if obj.is_floating_point() and bool(torch.isnan(obj).any()):
                bad.append(name)
            return
        if depth >= max_depth or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, dict):
            for k, v in obj.items():
                visit(v, f"{name}.{k}", depth + 1, True)
        elif isinstance(obj, list | tuple):
            for i, v in enumerate(obj):
                visit(v, f"{name}[{i}]", depth + 1, True)
        elif hasattr(obj, "__dict__") and not isinstance(obj, type | types.ModuleType) \
                and not inspect.isroutine(obj):
            for k, v in vars(obj).items():
                if not k.startswith("__"):
                    visit(v, f"{name}.{k}" if name else k, depth + 1, False)

    visit(model, "", 0, False)
    return bad


def _finish(rep: CheckReport, raise_on_failure: bool) -> CheckReport:
    if raise_on_failure and not rep.passed:
        o = rep.outcomes
        raise ConstitutiveCheckError(
            f"model {rep.model!r} failed " + ", ".join(
                f"{k} ({o[k].note})" if k == "finite" else
                f"{k} (error {o[k].error:.3g} > tol {abs(o[k].tolerance):.3g})"
                for k in rep.failed))
    return rep


def check_constitutive(model: ConstitutiveModel, *, amplitude: float = 5e-3, n: int = 6,
                       dt: float = 1.0, rtol: float = 1e-5, seed: int = 0,
                       isotropic: bool | None = None, symmetric: bool | None = None,
                       raise_on_failure: bool = True) -> CheckReport:
    """Run every check on ``model``; see the module docstring.

    Args:
        model: any :class:`~scalebridge.surrogates.protocol.ConstitutiveModel`.
        amplitude: strain amplitude of the probing paths (several yield strains).
        n: points per batch.
        dt: step duration passed to the model, s.
        rtol: relative tolerance of the tangent, symmetry and objectivity checks.
        seed: random seed of the probing paths.
        isotropic, symmetric: override the model's ``isotropic`` / ``symmetric_tangent``
            attributes (default: the attribute, True when absent).
        raise_on_failure: raise :class:`ConstitutiveCheckError` naming the failed checks.

    Returns:
        A :class:`CheckReport`.
    """
    rng = np.random.default_rng(seed)
    rep = CheckReport(model=getattr(model, "name", type(model).__name__))
    iso = getattr(model, "isotropic", True) if isotropic is None else isotropic
    sym = getattr(model, "symmetric_tangent", True) if symmetric is None else symmetric

    # finite parameters first: a NaN parameter can hide behind finite outputs
    bad_params = nonfinite_parameters(model)
    if bad_params:
        rep.outcomes["finite"] = CheckOutcome(
            False, float(len(bad_params)), 0.0,
            "non-finite parameters: " + ", ".join(bad_params[:4])
            + (f" and {len(bad_params) - 4} more" if len(bad_params) > 4 else "")
            + " (other checks not run)")
        return _finish(rep, raise_on_failure)

    path = _random_paths(rng, n, segments=3, steps=8, amplitude=amplitude)
    states = _states_along(model, path, dt)
    k = path.shape[1] - 2  # probe the last step of the path
    strain, dstrain, state = path[:, k], path[:, k + 1] - path[:, k], states[:, k]

    # inputs untouched (first, so that a mutating model cannot hide it)
    ins = (strain.copy(), dstrain.copy(), state.copy())
    model.update(*ins, dt=dt)
    changed = [nm for nm, a, b in zip(("strain", "dstrain", "state"), ins,
                                      (strain, dstrain, state), strict=True)
               if not np.array_equal(a, b)]
    inputs_outcome = CheckOutcome(not changed, float(len(changed)), 0.0, ", ".join(changed))

    # interface
    s0 = model.initial_state(n)
    res = model.update(strain.copy(), dstrain.copy(), state.copy(), dt=dt)
    m = len(model.state_names)
    problems = []
    if s0.shape != (n, m) or s0.dtype != np.float64:
        problems.append(f"initial_state {s0.shape} {s0.dtype}, expected ({n}, {m}) float64")
    for nm, arr, shape in (("stress", res.stress, (n, 6)), ("tangent", res.tangent, (n, 6, 6)),
                           ("state", res.state, (n, m))):
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != np.float64:
            problems.append(f"{nm} {getattr(arr, 'shape', None)} {getattr(arr, 'dtype', None)}"
                            f", expected {shape} float64")
    for nm, arr in (("out_of_range", res.out_of_range), ("uncertainty", res.uncertainty)):
        if arr is not None and (np.shape(arr) != (n,)
                                or (nm == "out_of_range" and arr.dtype != bool)):
            problems.append(f"{nm} {np.shape(arr)} {getattr(arr, 'dtype', None)}")
    if not all(np.all(np.isfinite(a)) for a in (res.stress, res.tangent, res.state)):
        problems.append("non-finite values")
    rep.outcomes["interface"] = CheckOutcome(not problems, float(len(problems)), 0.0,
                                             "; ".join(problems))

    rep.outcomes["inputs_untouched"] = inputs_outcome

    # batched == unbatched
    scale = float(np.abs(res.stress).max()) + 1e-12
    err = 0.0
    for i in range(n):
        r1 = model.update(strain[i:i + 1], dstrain[i:i + 1], state[i:i + 1], dt=dt)
        err = max(err, float(np.abs(r1.stress[0] - res.stress[i]).max()) / scale,
                  float(np.abs(r1.tangent[0] - res.tangent[i]).max())
                  / (np.abs(res.tangent).max() + 1e-12),
                  # initial=0: a stateless model (m = 0) has nothing to compare
                  float(np.abs(r1.state[0] - res.state[i]).max(initial=0.0)
                        / (np.abs(res.state).max(initial=0.0) + 1e-12)))
    rep.outcomes["batched"] = CheckOutcome(err <= 1e-9, err, 1e-9)

    # tangent vs central finite difference, at every step of the path
    tscale = float(np.abs(res.tangent).max()) + 1e-12
    worst, skipped, probed = 0.0, 0, 0
    for j in range(1, path.shape[1] - 1):
        e, de, st = path[:, j], path[:, j + 1] - path[:, j], states[:, j]
        tan = model.update(e, de, st, dt=dt).tangent
        fds = []
        for h in (1e-6 * amplitude, 0.5e-6 * amplitude):
            fd = np.zeros((n, 6, 6))
            for c in range(6):
                d = np.zeros(6)
                d[c] = h
                fd[:, :, c] = (model.update(e, de + d, st, dt=dt).stress
                               - model.update(e, de - d, st, dt=dt).stress) / (2 * h)
            fds.append(fd)
        kink = np.abs(fds[0] - fds[1]).max(axis=(1, 2)) > 10 * rtol * tscale
        skipped += int(kink.sum())
        probed += int((~kink).sum())
        if np.any(~kink):
            worst = max(worst, float(np.abs(tan - fds[1])[~kink].max()) / tscale)
    rep.outcomes["tangent"] = CheckOutcome(worst <= 10 * rtol and probed > 0, worst,
                                           10 * rtol, f"{probed} points, {skipped} at kinks")

    # symmetry
    asym = float(np.abs(res.tangent - np.swapaxes(res.tangent, 1, 2)).max()) / tscale
    rep.outcomes["symmetry"] = CheckOutcome(asym <= rtol or not sym, asym, rtol,
                                            "" if sym else "not claimed by the model")

    # objectivity under a rotation of the whole path
    q = _random_rotation(rng)
    r6 = mandel.rotation_matrix6(q)
    rpath = path @ r6.T
    stress, _, _ = integrate_path(model, path, dt)
    rstress, rstates, _ = integrate_path(model, rpath, dt)
    rres = model.update(rpath[:, k], rpath[:, k + 1] - rpath[:, k], rstates[:, k], dt=dt)
    obj = max(float(np.abs(rstress - stress @ r6.T).max()) / scale,
              float(np.abs(rres.tangent - r6 @ res.tangent @ r6.T).max()) / tscale)
    rep.outcomes["objectivity"] = CheckOutcome(obj <= 100 * rtol or not iso, obj, 100 * rtol,
                                               "" if iso else "not claimed by the model")

    # elastic unloading after a hold (overstress relaxed): linear with the virgin
    # stiffness, and reversible
    c0 = model.update(np.zeros((n, 6)), np.zeros((n, 6)), model.initial_state(n), dt=dt).tangent
    end = path[:, -1]
    held = model.update(end, np.zeros((n, 6)), states[:, -1], dt=HOLD_FACTOR * dt)
    sig_end, st_end = held.stress, held.state
    g_est = np.einsum("nii->n", c0 @ mandel.P_DEV) / 10.0  # tr(2G P_dev) = 10 G
    back = -mandel.deviator(sig_end)
    back /= np.linalg.norm(back, axis=1, keepdims=True) + 1e-300
    delta = back * (0.2 * mandel.von_mises(sig_end) / (2.0 * g_est * np.sqrt(1.5)))[:, None]
    un = model.update(end, delta, st_end, dt=dt)
    re = model.update(end + delta, -0.5 * delta, un.state, dt=dt)
    dsig = un.stress - sig_end
    lin = np.einsum("nij,nj->ni", c0, delta)
    ref = np.abs(dsig).max() + 1e-12
    e_un = max(float(np.abs(dsig - lin).max()) / ref,
               float(np.abs(re.stress - (sig_end + 0.5 * lin)).max()) / ref)
    rep.outcomes["elastic_unloading"] = CheckOutcome(
        e_un <= 1e-3, e_un, 1e-3,
        "hold, unload by 20% of σ_eq, reload half: virgin stiffness")

    # dissipation: work around closed strain cycles ≥ 0
    cyc = _random_paths(rng, n, segments=4, steps=20, amplitude=amplitude, close=True)
    cstress, _, _ = integrate_path(model, cyc, dt)
    work = np.einsum("nti,nti->n", 0.5 * (cstress[:, 1:] + cstress[:, :-1]),
                     np.diff(cyc, axis=1))
    wscale = float(np.abs(cstress).max()) * amplitude + 1e-300
    wmin = float(work.min()) / wscale
    rep.outcomes["dissipation"] = CheckOutcome(wmin >= -1e-3, wmin, -1e-3,
                                               "min ∮σ:dε / (σ_max·amplitude)")

    # finite outputs everywhere the checks drove the model
    outputs = {"stress": (res.stress, stress, rstress, cstress, held.stress, un.stress,
                          re.stress),
               "tangent": (res.tangent, rres.tangent, c0, held.tangent),
               "state": (res.state, states, rstates, held.state, un.state, re.state)}
    nonfinite = [k for k, arrs in outputs.items()
                 if not all(np.all(np.isfinite(np.asarray(a, dtype=float))) for a in arrs)]
    rep.outcomes["finite"] = CheckOutcome(
        not nonfinite, float(len(nonfinite)), 0.0,
        f"non-finite {', '.join(nonfinite)} along the probing paths" if nonfinite
        else "parameters and outputs finite")
    return _finish(rep, raise_on_failure)
