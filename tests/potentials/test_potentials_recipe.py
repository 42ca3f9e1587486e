"""The data-chosen training recipe (potentials/recipe.py), the validation rule for the
output-layer refit, and errors per species."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from pydantic import ValidationError
from scalebridge.errors import SettingsError
from scalebridge.potentials import TrainSettings
from scalebridge.potentials.recipe import RecipeSettings, seconds_per_step
from scalebridge.potentials.refit import choose_refit, weighted_score

BEFORE = {"energy_mae_mev_per_atom": 10.0, "force_mae_ev_a": 0.10,
          "virial_mae_mev_per_atom": 30.0}
W = {"energy": 1.0, "force": 1.0, "virial": 0.25}


def test_refit_that_costs_forces_beyond_the_tolerance_is_rejected():
    """Energy halved but forces +10%: rejected at 5% tolerance, whatever the score; a +3%
    force change with a better score is kept; at 0% tolerance neither is."""
    worse_f = {"energy_mae_mev_per_atom": 5.0, "force_mae_ev_a": 0.11,
               "virial_mae_mev_per_atom": 30.0}
    mild = {"energy_mae_mev_per_atom": 8.0, "force_mae_ev_a": 0.103,
            "virial_mae_mev_per_atom": 29.0}
    assert weighted_score(worse_f, BEFORE, W) < weighted_score(mild, BEFORE, W) < 1.0
    best, rec = choose_refit(BEFORE, {"1e-07": worse_f, "1e-05": mild}, W, 0.05)
    assert best == "1e-05"
    assert "force MAE +10.0%" in rec["1e-07"]["rejected"]
    assert rec["1e-05"]["rejected"] is None
    assert rec["1e-05"]["force_change"] == pytest.approx(0.03)
    best, rec = choose_refit(BEFORE, {"1e-07": worse_f, "1e-05": mild}, W, 0.0)
    assert best is None and all(r["rejected"] for r in rec.values())
    # no worse forces, but no better overall either: the trained model stays
    same = dict(BEFORE, energy_mae_mev_per_atom=10.5)
    assert choose_refit(BEFORE, {"x": same}, W, 0.05)[0] is None


def test_the_score_never_judges_energy_alone():
    with pytest.raises(ValidationError, match="force"):
        RecipeSettings.model_validate({"weights": {"force": 0.0}})
    with pytest.raises(ValidationError, match="at least one schedule"):
        RecipeSettings.model_validate({"schedules": {}})
    with pytest.raises(ValidationError, match="pref_q"):
        RecipeSettings.model_validate({"schedules": {"a": {"pref_q": [1, 2]}}})
    with pytest.raises(ValidationError, match="pilot_fraction"):
        RecipeSettings.model_validate({"pilot_fraction": 0.5})
    with pytest.raises(ValidationError, match="refit_force_tolerance"):
        TrainSettings.model_validate({"recipe": {"refit_force_tolerance": -0.1}})


def test_seconds_per_step_leaves_out_the_start_up(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("x INFO    Batch       1: total wall time = 9.00 s\n"
                   "x INFO    Batch     100: total wall time = 3.00 s\n"
                   "x INFO    Batch     200: total wall time = 3.50 s\n")
    assert seconds_per_step(log) == pytest.approx(6.5 / 199)
    log.write_text("nothing\n")
    assert seconds_per_step(log) is None


def test_recipe_needs_a_validation_split(tmp_path, mo_train_json):
    from scalebridge.potentials import IngestSettings

    ds = IngestSettings(type_map=["Mo"], max_frames_per_group=3, validation_fraction=0.0,
                        test_fraction=0.0).make([mo_train_json], tmp_path / "ds")
    s = TrainSettings.model_validate({"recipe": {}})
    with pytest.raises(SettingsError, match="validation_fraction > 0") as e:
        s.make(ds, tmp_path / "pot")
    assert "\n" not in str(e.value)


def test_a_refused_out_stops_a_recipe_before_its_pilots(tmp_path, tiny_dataset):
    """``potentials train DS -o DIR`` with a recipe and the user's files in DIR is refused
    at once (one line, exit 1): no pilot is trained (no ``DIR.pilots``), DIR is as it
    was. Without the early check the pilots trained for minutes first."""
    import time

    from click.testing import CliRunner
    from scalebridge.workflows.cli import cli

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    toml = tmp_path / "train.toml"
    toml.write_text("steps = 40\nensemble = 1\nevaluate = false\ncompress = false\n"
                    "[recipe]\npilot_fraction = 0.3\n")
    t0 = time.perf_counter()
    res = CliRunner().invoke(cli, ["potentials", "train", str(tiny_dataset.path), "-o",
                                   str(mine), "--settings", str(toml)])
    seconds = time.perf_counter() - t0
    assert res.exit_code == 1, res.output
    assert res.output == (f"error: {mine} exists and is not a scalebridge artifact; "
                          "choose another --out or remove it\n")
    assert seconds < 10, f"{seconds:.1f} s: something ran before the check"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "train.toml"]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "mine"


def test_species_errors_are_split_by_atom_kind():
    """Forces wrong on Nb atoms only: the Mo error is zero, Nb's carries all of it; the
    energy error counts in every species of the frame."""
    from scalebridge.potentials.evaluate import frame_metrics
    from scalebridge.potentials.frames import Frame

    rng = np.random.default_rng(0)
    frames, preds = [], []
    for i, syms in enumerate([["Mo", "Nb"], ["Mo", "Mo", "W"]]):
        n = len(syms)
        f = rng.normal(size=(n, 3))
        frames.append(Frame(syms, rng.normal(size=(n, 3)), np.eye(3) * 5, -10.0 * n, f, None,
                            group=f"g{i}"))
        fp = f.copy()
        fp[[j for j, s in enumerate(syms) if s == "Nb"]] += 0.3
        preds.append((-10.0 * n + 0.003 * n * (i + 1), fp))
    m = frame_metrics(frames, preds)
    sp = m["species"]
    assert sp["Mo"]["force_mae_ev_a"] == 0.0 and sp["W"]["force_mae_ev_a"] == 0.0
    assert sp["Nb"]["force_mae_ev_a"] == pytest.approx(0.3)
    assert sp["Nb"]["atoms"] == 1 and sp["Mo"]["atoms"] == 3
    assert sp["Mo"]["energy_mae_mev_per_atom"] == pytest.approx(4.5)   # (3 + 6) / 2
    assert sp["W"]["energy_mae_mev_per_atom"] == pytest.approx(6.0)
    assert m["groups"]["g0"]["energy_mae_mev_per_atom"] == pytest.approx(3.0)
    assert m["overall"]["energy_mean_error_mev_per_atom"] == pytest.approx(4.5)


@pytest.mark.slow
def test_recipe_pilots_choose_on_validation_and_record_it(tmp_path, tiny_dataset):
    """Two pilots, the lower weighted validation score wins and gets the final training;
    the refit decision is recorded with its numbers and obeys the force rule; the model
    written is the one the record describes (its validation MAE, recomputed here in this
    process through DeePMD's DeepPot: a ``dp test`` subprocess would add ~10 s)."""
    from ase import Atoms
    from scalebridge.potentials.dataset import load_dataset
    from scalebridge.potentials.evaluate import frame_metrics
    from scalebridge.potentials.model import DeepMDCalculator

    cfg = {"descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4},
           "fitting_neuron": [32, 32], "steps": 40, "ensemble": 1, "disp_freq": 10,
           "compress": False, "evaluate": False, "precision": "float32",
           "recipe": {"pilot_fraction": 0.3}}
    art = TrainSettings.model_validate(cfg).make(tiny_dataset, tmp_path / "pot")
    pj = json.loads((art.path / "potential.json").read_text())
    rec = pj["recipe"]
    assert set(rec["pilots"]) == {"energy_rising", "force_first"}
    assert rec["winner"] == min(rec["pilots"], key=lambda n: rec["pilots"][n]["score"])
    assert all(p["steps"] == 20 for p in rec["pilots"].values())
    assert rec["final_steps"] == 40
    inp = json.loads((art.path / "input.json").read_text())
    won = rec["schedules"][rec["winner"]]
    assert inp["loss"]["limit_pref_e"] == won["pref_e"][1]
    (ref,) = rec["refit"]
    assert art.manifest["summary"]["recipe"]["refit_kept"] == [ref["kept"]]
    for c in ref["candidates"].values():
        assert (c["rejected"] is None) == (c["force_change"] <= 0.05 and c["score"] < 1)
    frames = load_dataset(tiny_dataset).frames("validation")
    calc = DeepMDCalculator(art.path / "models/model_0.pth", ["Mo"])
    preds = []
    for fr in frames:
        atoms = Atoms(fr.symbols, positions=fr.positions, cell=fr.cell, pbc=True)
        atoms.calc = calc
        preds.append((atoms.get_potential_energy(), atoms.get_forces()))
    val = frame_metrics(frames, preds)["overall"]
    want = (ref["candidates"][f"{ref['ridge']:g}"] if ref["kept"]
            else ref["validation_before"])
    assert val["force_mae_ev_a"] == pytest.approx(want["force_mae_ev_a"], rel=0.02), ref
    assert val["energy_mae_mev_per_atom"] == pytest.approx(
        want["energy_mae_mev_per_atom"], rel=0.02, abs=0.05), ref


@pytest.mark.slow
def test_refit_fitted_to_energies_alone_is_rejected_on_validation_forces(
        tmp_path, tiny_potential_f32, tiny_dataset):
    """An energy-only least-squares fit of the output layer (no force rows, tiny ridge)
    ruins the validation forces: the rule refuses it and leaves the model file as it was.
    """
    from scalebridge.potentials.dataset import load_dataset
    from scalebridge.potentials.refit import refit_by_validation

    model = tmp_path / "m.pth"
    shutil.copyfile(tiny_potential_f32.path / "models/model_0.pth", model)
    before = model.read_bytes()
    ds = load_dataset(tiny_dataset)
    rec = refit_by_validation(model, ds.systems("train"), ds.systems("validation"), ["Mo"],
                              (1.0, 0.0, 0.0), W, force_tolerance=0.05, ridges=(1e-7,))
    (c,) = rec["candidates"].values()
    assert c["force_change"] > 0.05, c
    assert c["energy_mae_mev_per_atom"] < rec["validation_before"]["energy_mae_mev_per_atom"]
    assert rec["kept"] is False and "tolerance" in rec["reason"]
    assert model.read_bytes() == before


def test_refit_chunks_merge_systems_of_equal_size_and_keep_every_frame():
    """Frames of equal atom count from different systems (alloy compositions) share one
    model call; nothing is lost or reordered within a size; the cap on atoms holds."""
    from scalebridge.potentials.refit import _Chunk, _regroup, _subsample

    rng = np.random.default_rng(1)

    def chunk(nf: int, n: int, t: int) -> _Chunk:
        return _Chunk(coord=rng.normal(size=(nf, 3 * n)), box=rng.normal(size=(nf, 9)),
                      atype=np.full((nf, n), t), energy=rng.normal(size=nf),
                      force=rng.normal(size=(nf, 3 * n)), virial=rng.normal(size=(nf, 9)))

    parts = [chunk(3, 16, 0), chunk(2, 16, 1), chunk(4, 54, 0), chunk(1, 16, 2)]
    out = _regroup(parts, atoms_per_call=64)
    assert [c.natoms for c in out] == [16, 16, 54, 54, 54, 54]
    assert [len(c.energy) for c in out] == [4, 2, 1, 1, 1, 1]
    e16 = np.concatenate([c.energy for c in out if c.natoms == 16])
    assert np.array_equal(e16, np.concatenate([p.energy for p in parts if p.natoms == 16]))
    assert sorted(np.unique(np.concatenate([c.atype[:, 0] for c in out[:2]]))) == [0, 1, 2]
    assert sum(len(c.energy) for c in _subsample(out, 0.0, rng)) >= 1  # never empty
