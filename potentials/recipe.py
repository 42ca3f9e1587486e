"""A training recipe chosen on the user's validation split, with the budget as its knob.

:class:`RecipeSettings` (``TrainSettings.recipe``) turns one ``TrainSettings`` into:

1. **Pilots**: one short training (``pilot_fraction`` of the budget each, one model) per
   candidate loss-weight/learning-rate schedule in ``schedules``; each is scored on the
   dataset's *validation* split by energy, force and virial MAE together, with the
   user's ``weights`` (:func:`scalebridge.potentials.refit.weighted_score`, each MAE
   relative to the best pilot's; the force weight must be > 0: never energy alone).
2. **The final training** of the winning schedule with the rest of the budget: with
   ``budget_seconds`` the steps follow from the seconds per step the pilots measured
   (``dp`` training time; program start-up, freezing and compression come on top),
   otherwise ``steps`` as set.
3. **The output-layer refit, kept or not by the validation split**
   (:func:`scalebridge.potentials.refit.refit_by_validation`): least squares of the
   output layer on the training frames for each ridge; a ridge is eligible only if the
   validation force MAE rises by at most ``refit_force_tolerance``, and the best
   eligible one by the weighted score is kept if it beats the un-refitted model.
   Otherwise the model stays as trained.

Everything chosen is recorded with its numbers in ``potential.json`` (``recipe``) and the
artifact summary. Pilots are artifacts of their own (``<out>.pilots/<schedule>``): a
rerun reuses them, so the choice and the step count are the same.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator
from scalebridge.errors import SettingsError
from scalebridge.settings import Resources, StrictModel

if TYPE_CHECKING:
    from scalebridge.potentials.train import TrainSettings

log = logging.getLogger("scalebridge.potentials")


class Schedule(StrictModel):
    """A candidate schedule: the ``TrainSettings`` values it overrides (None: keep)."""

    pref_e: tuple[float, float] | None = Field(None, description="energy weight start/end")
    pref_f: tuple[float, float] | None = Field(None, description="force weight start/end")
    pref_v: tuple[float, float] | None = Field(None, description="virial weight start/end")
    start_lr: float | None = Field(None, gt=0, description="initial learning rate")
    stop_lr: float | None = Field(None, gt=0, description="final learning rate")

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


#: The default candidates: the mlearn Mo benchmark's energy-rising schedule and
#: DeePMD-kit's force-first default, both decaying to 5e-6.
DEFAULT_SCHEDULES = {
    "energy_rising": Schedule(pref_e=(0.2, 20.0), pref_f=(1000.0, 1.0), pref_v=(0.2, 2.0),
                              start_lr=1e-3, stop_lr=5e-6),
    "force_first": Schedule(pref_e=(0.02, 1.0), pref_f=(1000.0, 1.0), pref_v=(0.02, 1.0),
                            start_lr=1e-3, stop_lr=5e-6),
}


class ScoreWeights(StrictModel):
    """How much each validation MAE counts (each relative to a reference model's)."""

    energy: float = Field(1.0, ge=0, description="energy MAE weight")
    force: float = Field(1.0, gt=0, description="force MAE weight (> 0: a recipe is never "
                         "judged on energies alone)")
    virial: float = Field(0.25, ge=0, description="virial MAE weight (ignored without "
                          "virials)")


class RecipeSettings(StrictModel):
    """Settings chosen by the data: candidate schedules piloted and scored on the
    validation split, the output-layer refit kept only where validation forces allow."""

    budget_seconds: float | None = Field(
        None, gt=0, description="dp training seconds for pilots + final models + the "
        "refit (the main knob); None: the final training takes TrainSettings.steps and "
        "each pilot pilot_fraction of them")
    pilot_fraction: float = Field(0.1, gt=0, le=0.3, description="share of the budget "
                                  "each candidate schedule's pilot gets")
    schedules: dict[str, Schedule] = Field(
        default_factory=lambda: dict(DEFAULT_SCHEDULES),
        description="candidate schedules by name (one: no pilots)")
    weights: ScoreWeights = Field(default_factory=ScoreWeights,
                                  description="weights of the validation score")
    refit: Literal["auto", "off"] = Field(
        "auto", description="auto: refit the output layer and keep it only where the "
        "validation split says so; off: never")
    refit_force_tolerance: float = Field(
        0.05, ge=0, le=1, description="largest relative rise of the validation force MAE "
        "a kept refit may cause (0.05: 5%)")
    refit_fraction: float = Field(
        0.12, gt=0, lt=0.5, description="share of budget_seconds the refit's features may "
        "take (frames are subsampled to fit); without a budget, no limit")

    @field_validator("schedules")
    @classmethod
    def _some(cls, v: dict[str, Schedule]) -> dict[str, Schedule]:
        if not v:
            raise ValueError("name at least one schedule")
        bad = [k for k in v if not re.fullmatch(r"[A-Za-z0-9_.-]+", k)]
        if bad:
            raise ValueError(f"schedule names may hold only letters, digits, _ . -: {bad}")
        return v

    # ------------------------------------------------------------------ selection
    def choose(self, base: TrainSettings, ds_art, ds, out: Path, res: Resources
               ) -> tuple[TrainSettings, dict[str, Any]]:
        """Run (or reuse) the pilots and return the final settings (``recipe`` kept, for
        the refit decision) and the selection record."""
        from scalebridge.potentials.evaluate import score

        if not ds.systems("validation"):
            raise SettingsError(f"{ds.path}: potentials.train.recipe chooses settings on "
                                "the validation split, and this dataset has none; set "
                                "potentials.ingest.validation_fraction > 0")
        if base.init_model:
            raise SettingsError("potentials.train.recipe and init_model do not combine: "
                                "a recipe trains from scratch")
        w = self.weights.model_dump()
        if not ds.has_virial:
            w["virial"] = 0.0
        names = list(self.schedules)
        pilots: dict[str, dict[str, Any]] = {}
        sec_per_step = None
        if len(names) > 1:
            pilot_steps, sel = self._pilot_steps(base, ds_art, out, res)
            for n in names:
                cfg = self._pilot_settings(base, n, pilot_steps)
                if sel and base.descriptor.sel == "auto":  # the probe's: no neighbor-stat
                    cfg = cfg.model_copy(update={"descriptor": cfg.descriptor.model_copy(
                        update={"sel": sel})})
                art = cfg.make(ds_art, Path(f"{out}.pilots") / n, res)
                pj = json.loads((art.path / "potential.json").read_text())
                sc = score(art.path / pj["models"][0], ds, "validation",
                           art.path / "validation_score", res.threads)
                sc.pop("_parity")
                pilots[n] = {"steps": pilot_steps, "path": str(art.path),
                             "seconds_per_step": seconds_per_step(art.path / "train.log"),
                             "train_seconds": float(sum(pj["train_seconds"])),
                             "validation": sc["overall"]}
            best_ref = {k: min(p["validation"][k] for p in pilots.values())
                        for k in ("energy_mae_mev_per_atom", "force_mae_ev_a",
                                  "virial_mae_mev_per_atom")
                        if all(k in p["validation"] for p in pilots.values())}
            from scalebridge.potentials.refit import weighted_score

            for p in pilots.values():
                p["score"] = weighted_score(p["validation"], best_ref, w)
            winner = min(names, key=lambda n: pilots[n]["score"])
            rates = [p["seconds_per_step"] for p in pilots.values() if p["seconds_per_step"]]
            sec_per_step = max(rates) if rates else None
        else:
            winner = names[0]
        spent = sum(p["steps"] * (p["seconds_per_step"] or 0.0) for p in pilots.values())
        steps = base.steps
        refit_seconds = None
        if self.budget_seconds:
            if sec_per_step is None:
                sec_per_step = self._probe(base, ds_art, out, res)[0]
            refit_seconds = (self.refit_fraction * self.budget_seconds
                             if self.refit == "auto" else 0.0)
            left = self.budget_seconds - spent - refit_seconds
            steps = int(left / sec_per_step / base.ensemble)
            if steps < 100:
                raise SettingsError(
                    f"potentials.train.recipe.budget_seconds = {self.budget_seconds:g} "
                    f"leaves {max(left, 0):.0f} s for the final training after the pilots "
                    f"({spent:.0f} s) and the refit ({refit_seconds:.0f} s), {steps} steps at "
                    f"{sec_per_step:.3f} s/step: raise the budget or lower pilot_fraction")
        final = base.model_copy(update={**self.schedules[winner].overrides(), "steps": steps,
                                        "refit_output_layer": False, "decay_steps": None})
        record = {"schedules": {n: s.overrides() for n, s in self.schedules.items()},
                  "weights": w, "pilots": pilots, "winner": winner,
                  "budget_seconds": self.budget_seconds, "pilot_seconds": round(spent, 1),
                  "seconds_per_step": sec_per_step, "final_steps": steps,
                  "refit_max_seconds": refit_seconds}
        if pilots:
            said = ", ".join(f"{n}: score {p['score']:.3f}, E "
                             f"{p['validation']['energy_mae_mev_per_atom']:.2f} meV/atom, F "
                             f"{p['validation']['force_mae_ev_a']:.4f} eV/Å"
                             for n, p in pilots.items())
            log.info("recipe: schedule %s chosen on the validation split (%s); final "
                     "training %d steps", winner, said, steps)
        return final, record

    def _pilot_settings(self, base: TrainSettings, name: str, steps: int) -> TrainSettings:
        return base.model_copy(update={
            **self.schedules[name].overrides(), "steps": steps, "ensemble": 1,
            "recipe": None, "refit_output_layer": False, "compress": False,
            "evaluate": False, "properties": False, "decay_steps": None,
            "disp_freq": max(10, min(base.disp_freq, steps // 20))})

    def _probe(self, base: TrainSettings, ds_art, out: Path, res: Resources
               ) -> tuple[float, list[int]]:
        """Seconds per training step from a 200-step run of the first schedule, and the
        ``sel`` it used."""
        cfg = self._pilot_settings(base, next(iter(self.schedules)), 200)
        cfg = cfg.model_copy(update={"change_bias": False, "disp_freq": 20})
        art = cfg.make(ds_art, Path(f"{out}.pilots") / "_speed_probe", res)
        s = seconds_per_step(art.path / "train.log")
        if not s:
            raise SettingsError(f"{art.path}/train.log: no step timing to size the budget")
        return s, json.loads((art.path / "potential.json").read_text())["sel"]

    def _pilot_steps(self, base: TrainSettings, ds_art, out: Path, res: Resources
                     ) -> tuple[int, list[int] | None]:
        if not self.budget_seconds:
            return max(20, int(self.pilot_fraction * base.steps)), None
        s, sel = self._probe(base, ds_art, out, res)
        return max(100, int(self.pilot_fraction * self.budget_seconds / s)), sel


def seconds_per_step(train_log: Path) -> float | None:
    """dp training seconds per step from DeePMD's ``Batch N: total wall time = T s``
    lines (each the time since the previous one; the opening interval, which holds the
    start-up, is left out)."""
    pts = [(int(a), float(b)) for a, b in re.findall(
        r"Batch\s+(\d+): total wall time = ([\d.]+) s", Path(train_log).read_text(
            errors="replace"))]
    if len(pts) < 2:
        return None
    # one training per log here; a log of several members restarts at batch 1
    steps = secs = 0.0
    for (b0, _), (b1, t1) in itertools.pairwise(pts):
        if b1 > b0:
            steps += b1 - b0
            secs += t1
    return secs / steps if steps else None
