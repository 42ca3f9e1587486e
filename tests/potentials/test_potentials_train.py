"""Training and evaluation with real dp runs (tiny models)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from scalebridge.errors import DataError, SettingsError
from scalebridge.potentials import EvaluateSettings, TrainSettings, load_potential


def test_dry_run_writes_inputs(tmp_path, tiny_dataset):
    """Into ``<out>.dry_run/``, emptied first (an earlier dry run's members would look
    current); ``out`` stays free."""
    (tmp_path / "pot.dry_run" / "train" / "model_5").mkdir(parents=True)
    (tmp_path / "pot.dry_run" / "train" / "model_5" / "input.json").write_text("{}")
    s = TrainSettings(ensemble=3, steps=500, seed=7)
    art = s.make(tiny_dataset, tmp_path / "pot", dry_run=True)
    assert art.path == tmp_path / "pot.dry_run"
    inputs = sorted(art.path.rglob("input.json"))
    assert len(inputs) == 3
    inp = [json.loads(p.read_text()) for p in inputs]
    assert [i["training"]["seed"] for i in inp] == [7, 8, 9]
    d = inp[0]["model"]["descriptor"]
    assert d["type"] == "se_e2_a" and d["rcut"] == 5.0
    assert d["sel"] == "auto"  # a dry run runs no program (no neighbor-stat)
    assert inp[0]["loss"]["limit_pref_v"] == 1.0  # the Mo data have virials
    assert all(p.startswith(str(tiny_dataset.path)) for p in
               inp[0]["training"]["training_data"]["systems"])
    assert not (tmp_path / "pot").exists()


def test_an_artifact_of_another_kind_at_out_is_refused_before_training(tiny_dataset):
    from scalebridge.errors import ArtifactError

    before = (tiny_dataset.path / "manifest.json").read_text()
    with pytest.raises(ArtifactError) as e:
        TrainSettings(ensemble=1, steps=10).make(tiny_dataset, tiny_dataset.path)
    assert str(e.value) == (f"{tiny_dataset.path} holds a DFTDataset artifact, not a "
                            "Potential; choose another --out or remove it")
    assert (tiny_dataset.path / "manifest.json").read_text() == before


def test_dpa1_input(tmp_path, tiny_dataset):
    s = TrainSettings.model_validate({"descriptor": {"type": "dpa1", "sel": [40]},
                                      "ensemble": 1})
    art = s.make(tiny_dataset, tmp_path / "pot", dry_run=True)
    inp = json.loads(next(art.path.rglob("input.json")).read_text())
    assert inp["model"]["descriptor"]["type"] == "dpa1"
    assert inp["model"]["descriptor"]["sel"] == 40
    assert not s.compressible


def test_sel_must_match_type_map(tmp_path, tiny_dataset):
    s = TrainSettings.model_validate({"descriptor": {"sel": [40, 10]}})
    with pytest.raises(SettingsError, match=r"descriptor\.sel has 2 entries"):
        s.make(tiny_dataset, tmp_path / "pot", dry_run=True)


def test_potential_is_reused_when_done(tiny_potential, tiny_dataset):
    """Same settings and data: the artifact is returned without training again."""
    s = TrainSettings.model_validate(tiny_potential.settings)
    again = s.make(tiny_dataset, tiny_potential.path)
    assert again.manifest["started"] == tiny_potential.manifest["started"]


@pytest.mark.slow
def test_evaluate_writes_metrics_plots_and_properties(tmp_path, tiny_potential,
                                                       tiny_dataset):
    ev = EvaluateSettings(split="test").make(tiny_potential, tiny_dataset, tmp_path / "ev")
    m = json.loads((ev.path / "metrics.json").read_text())
    ov = m["test"]["overall"]
    for k in ("energy_mae_mev_per_atom", "energy_rmse_mev_per_atom", "force_mae_ev_a",
              "force_rmse_ev_a", "virial_mae_mev_per_atom"):
        assert np.isfinite(ov[k]) and ov[k] > 0
    assert ov["energy_rmse_mev_per_atom"] >= ov["energy_mae_mev_per_atom"]
    groups = m["test"]["groups"]
    assert set(groups) == {"AIMD-NVT", "Elastic", "Surface", "Vacancy"}
    assert sum(g["frames"] for g in groups.values()) == ov["frames"]
    # dp test's numbers agree with the ASE calculator on one test frame
    from scalebridge.potentials import load_dataset

    fr = load_dataset(tiny_dataset).frames("test")[0]
    atoms = fr.to_atoms()
    atoms.calc = load_potential(tiny_potential).calculator()
    with open(ev.path / "parity_energy.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["group"] == fr.group]
    assert float(rows[0]["model_ev_per_atom"]) == pytest.approx(
        atoms.get_potential_energy() / len(atoms), abs=1e-6)
    for name in ("parity_energy", "parity_force"):
        assert (ev.path / f"{name}.png").stat().st_size > 1000
        assert (ev.path / f"{name}.csv").is_file()
    props = m["properties"]
    assert props["dft"]["c11_gpa"] == pytest.approx(479, rel=0.05)
    assert props["dft"]["c44_gpa"] == pytest.approx(108, rel=0.05)
    # the data set's own reference (a0 at zero pressure, not the Elastic reference
    # cell's 3.1676 Å), the values its properties verdict compares with
    assert props["dft"]["a0_a"] == pytest.approx(3.1692, abs=1e-3)
    ref = load_dataset(tiny_dataset).crystal["dft_reference"]
    for k in ("a0_a", "c11_gpa", "c12_gpa", "c44_gpa"):
        assert props["dft"][k] == ref[k], k
    assert 2.8 < props["model"]["a0_a"] < 3.6
    assert set(m["ensemble"]["max_devi_f_ev_a"]) == set(groups)


def test_evaluate_unknown_split(tmp_path, tiny_potential, tiny_dataset):
    with pytest.raises(DataError, match="split 'bogus' is empty or unknown"):
        EvaluateSettings(split="bogus").make(tiny_potential, tiny_dataset, tmp_path / "e")


@pytest.mark.slow
def test_compressed_model_matches(tmp_path, tiny_dataset):
    """sel from dp neighbor-stat, dp compress; the compressed model gives the same
    energies and forces (tabulated embedding, step 0.01)."""
    s = TrainSettings.model_validate({
        "descriptor": {"neuron": [8, 16], "axis_neuron": 4}, "fitting_neuron": [16, 16],
        "steps": 30, "ensemble": 1, "disp_freq": 10, "compress": True, "evaluate": False})
    pot = s.make(tiny_dataset, tmp_path / "pot")
    info = load_potential(pot)
    assert len(info.compressed) == 1 and info.production_model == info.compressed[0]
    assert info.raw["sel"][0] >= 40 and info.raw["min_nbor_dist_a"] > 1.5
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    res = []
    for compressed in (False, True):
        atoms.calc = info.calculator(compressed=compressed)
        res.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert res[0][0] == pytest.approx(res[1][0], abs=1e-3 * len(atoms))
    assert np.allclose(res[0][1], res[1][1], atol=1e-3)


@pytest.mark.slow
def test_init_model_continues_from_a_frozen_model(tmp_path, tiny_potential, tiny_dataset):
    """init_model: one step at a negligible learning rate reproduces the start model."""
    start = load_potential(tiny_potential).models[0]
    s = TrainSettings.model_validate({
        "descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4},
        "fitting_neuron": [32, 32], "steps": 1, "ensemble": 1, "start_lr": 1e-9,
        "stop_lr": 1e-9, "compress": False, "evaluate": False, "init_model": str(start),
        "precision": "float64"})  # the precision of the model it starts from
    pot = s.make(tiny_dataset, tmp_path / "cont")
    assert pot.manifest["inputs"]["init_model"]["sha256"]
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    out = []
    for info in (load_potential(tiny_potential), load_potential(pot)):
        atoms.calc = info.calculator()
        out.append((atoms.get_potential_energy(), atoms.get_forces()))
    assert out[0][0] == pytest.approx(out[1][0], abs=1e-4 * len(atoms))
    assert np.allclose(out[0][1], out[1][1], atol=1e-4)


def test_a_fine_tune_with_sel_auto_takes_the_start_sel_and_dp_trains_neighbour_stat(
        tmp_path, tiny_potential, tiny_dataset):
    """sel = "auto" with init_model: the start model's sel, and the data's neighbour
    statistics from dp train's own log (no dp neighbor-stat process of their own): the
    minimal distance is the data's, the same a from-scratch run's neighbor-stat reports."""
    from scalebridge.potentials.train import logged_neighbor_stat, model_definition, neighbor_stat

    start = load_potential(tiny_potential).models[0]
    s = TrainSettings.model_validate({
        "descriptor": {"neuron": [8, 16], "axis_neuron": 4},
        "fitting_neuron": [32, 32], "steps": 1, "ensemble": 1, "start_lr": 1e-9,
        "stop_lr": 1e-9, "compress": False, "evaluate": False, "init_model": str(start),
        "precision": "float64"})
    pot = s.make(tiny_dataset, tmp_path / "ft")
    info = load_potential(pot)
    assert not (pot.path / "neighbor_stat.log").exists()
    assert info.raw["sel"] == model_definition(start)["descriptor"]["sel"]
    nmax, dmin = logged_neighbor_stat(pot.path / "train.log")
    assert nmax and dmin and info.raw["min_nbor_dist_a"] == dmin
    # what dp neighbor-stat says of the same training data
    assert neighbor_stat(tiny_dataset.path / "systems" / "train", s.descriptor.rcut_a,
                         info.type_map, tmp_path) == (nmax, pytest.approx(dmin))


@pytest.mark.slow
def test_init_model_per_member_fine_tunes_each_member_from_its_own_start(
        tmp_path, tiny_potential, tiny_dataset):
    """A list of init models: member i starts from model i (the pretrained ensemble's
    spread survives), and sel 'auto' takes the start models' sel. At a negligible learning
    rate each member reproduces its own start model, and the two stay different."""
    starts = [str(m) for m in load_potential(tiny_potential).models]
    s = TrainSettings.model_validate({
        "descriptor": {"sel": "auto", "neuron": [8, 16], "axis_neuron": 4},
        "fitting_neuron": [32, 32], "steps": 1, "ensemble": 2, "start_lr": 1e-9,
        "stop_lr": 1e-9, "compress": False, "evaluate": False, "init_model": starts,
        "precision": "float64"})
    pot = s.make(tiny_dataset, tmp_path / "ft")
    assert {"init_model_0", "init_model_1"} <= set(pot.manifest["inputs"])
    from ase.build import bulk

    atoms = bulk("Mo", "bcc", a=3.16, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)

    def forces(model: Path) -> np.ndarray:
        from scalebridge.potentials.model import DeepMDCalculator

        atoms.calc = DeepMDCalculator(model, type_map=["Mo"])
        return atoms.get_forces()

    new = load_potential(pot).models
    for i in range(2):
        assert np.allclose(forces(new[i]), forces(Path(starts[i])), atol=1e-4)
    assert not np.allclose(forces(new[0]), forces(new[1]), atol=1e-3)


def test_init_model_list_must_match_the_ensemble_and_resolves_against_the_run_file(
        tmp_path):
    """Two start models for three members is refused; relative paths are taken from the
    run file's folder."""
    with pytest.raises(ValueError, match="init_model lists 2 models for an ensemble of 3"):
        TrainSettings.model_validate({"ensemble": 3, "init_model": ["a.pth", "b.pth"]})
    s = TrainSettings.model_validate({"ensemble": 2, "init_model": ["a.pth", "/x/b.pth"]})
    r = s.resolve_paths(tmp_path)
    assert r.init_model == [str(tmp_path.resolve() / "a.pth"), "/x/b.pth"]
    assert [p.name for p in r.init_models()] == ["a.pth", "b.pth"]
    one = TrainSettings.model_validate({"ensemble": 3, "init_model": "a.pth"})
    assert [p.name for p in one.init_models()] == ["a.pth"] * 3


def test_init_model_of_another_precision_or_shape_is_a_clear_error(tmp_path, tiny_potential,
                                                                   tiny_dataset):
    """DeePMD would load a float64 model into a float32 training without a word (and
    shifted energies); a different fitting net fails deep in torch. Both are named here,
    before anything trains, and nothing is written."""
    start = load_potential(tiny_potential).models[0]
    base = {"descriptor": {"sel": [48], "neuron": [8, 16], "axis_neuron": 4},
            "fitting_neuron": [32, 32], "steps": 1, "ensemble": 1, "compress": False,
            "evaluate": False, "init_model": str(start)}
    with pytest.raises(SettingsError, match=r"precision: model 'float64', settings "
                                            r"'float32'\)"):
        TrainSettings.model_validate({**base, "precision": "float32"}).make(
            tiny_dataset, tmp_path / "f32")
    with pytest.raises(SettingsError, match=r"fitting_neuron: model \[32, 32\], settings "
                                            r"\[64, 64\]"):
        TrainSettings.model_validate({**base, "precision": "float64",
                                      "fitting_neuron": [64, 64]}).make(
            tiny_dataset, tmp_path / "wide")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a model")
    with pytest.raises(SettingsError, match="is not a frozen DeePMD-kit PyTorch model"):
        TrainSettings.model_validate({**base, "init_model": str(junk)}).make(
            tiny_dataset, tmp_path / "junk")
    assert not (tmp_path / "f32").exists() and not (tmp_path / "wide").exists()


def _auto_prob(inp: dict) -> tuple[list[str], dict[tuple[int, int], float]]:
    td = inp["training"]["training_data"]
    parts = td["auto_prob"].split(";")
    assert parts[0] == "prob_sys_size"
    ranges = {}
    for p in parts[1:]:
        a, b, w = p.split(":")
        ranges[(int(a), int(b))] = float(w)
    return td["systems"], ranges


def test_group_weights_set_each_groups_share_of_batches(tmp_path, tiny_dataset):
    s = TrainSettings(ensemble=1, group_weights={"Vacancy": 0.3, "Surface": 0.2})
    inp = json.loads(next(s.make(tiny_dataset, tmp_path / "pot", dry_run=True)
                          .path.rglob("input.json")).read_text())
    systems, ranges = _auto_prob(inp)
    assert sum(ranges.values()) == pytest.approx(1.0)
    meta = json.loads((tiny_dataset.path / "dataset.json").read_text())
    group = {k: v["group"] for k, v in meta["splits"]["train"]["systems"].items()}
    frames = {k: v["frames"] for k, v in meta["splits"]["train"]["systems"].items()}
    by_group: dict[str, float] = {}
    for (a, b), w in ranges.items():
        gs = {group[p.rsplit("/", 1)[1]] for p in systems[a:b]}
        assert len(gs) == 1, f"systems {a}:{b} mix groups {gs}"
        by_group[gs.pop()] = w
    assert by_group["Vacancy"] == pytest.approx(0.3)
    assert by_group["Surface"] == pytest.approx(0.2)
    rest = {g: sum(f for k, f in frames.items() if group[k] == g)
            for g in by_group if g not in ("Vacancy", "Surface")}
    for g, n in rest.items():  # the unnamed groups share 0.5 by frame count
        assert by_group[g] == pytest.approx(0.5 * n / sum(rest.values()))
    assert "auto_prob" not in json.loads(next(TrainSettings(ensemble=1).make(
        tiny_dataset, tmp_path / "pot2", dry_run=True).path.rglob("input.json")).read_text()
    )["training"]["training_data"]


@pytest.mark.parametrize("weights, msg", [({"Vacancies": 0.2}, "has the groups"),
                                          ({"Vacancy": 0.6, "Surface": 0.5}, "leave nothing")])
def test_group_weights_errors(tmp_path, tiny_dataset, weights, msg):
    with pytest.raises(SettingsError, match=msg):
        TrainSettings(ensemble=1, group_weights=weights).make(tiny_dataset, tmp_path / "p",
                                                              dry_run=True)


def test_float32_group_weighted_model_trains_and_compresses(tiny_potential_f32):
    """DeePMD honours the group shares (its own summary table) and float32 precision."""
    art = tiny_potential_f32
    inp = json.loads((art.path / "input.json").read_text())
    assert inp["model"]["fitting_net"]["precision"] == "float32"
    log_text = (art.path / "train.log").read_text()
    probs = {}
    for ln in log_text.splitlines():  # "-- ...systems/train/Vacancy_Mo53  53  1  6  4.0e-01  T"
        if "/systems/train/" in ln and ln.rstrip().endswith(("T", "F")):
            f = ln.split()
            probs[f[-6].rsplit("/", 1)[1]] = float(f[-2])
    assert probs, "no DeePMD data summary in train.log"
    vac = sum(p for k, p in probs.items() if k.startswith("Vacancy"))
    assert vac == pytest.approx(0.4, abs=1e-3)
    pot = load_potential(art.path)
    assert pot.compressed, "float32 se_e2_a model was not compressed"


@pytest.mark.slow
def test_change_bias_leaves_no_mean_energy_error_on_the_training_frames(tmp_path,
                                                                        tiny_potential,
                                                                        tiny_dataset):
    """After ``dp change-bias`` the energy bias is the least-squares one on the training
    frames: the best further per-atom shift b = Σ n_i ΔE_i / Σ n_i² is zero (it was the
    recorded shift before)."""
    from scalebridge.potentials.dataset import load_dataset
    from scalebridge.potentials.evaluate import score

    pj = json.loads((tiny_potential.path / "potential.json").read_text())
    assert len(pj["energy_bias_shift_ev"]) == 2          # one per ensemble member
    before = abs(pj["energy_bias_shift_ev"][0][0])
    assert before > 1e-3                                 # 100 steps leave a real offset
    ds = load_dataset(tiny_dataset)
    c = score(load_potential(tiny_potential).models[0], ds, "train", tmp_path)["_parity"]
    n = np.concatenate([g["natoms"] for g in c.values()])
    de = np.concatenate([g["e_pred"] - g["e_true"] for g in c.values()])
    b = float((n * de).sum() / (n * n).sum())
    assert abs(b) < 1e-4 * before + 1e-6, (b, before)


@pytest.mark.slow
def test_output_layer_refit_lowers_the_training_loss_and_reaches_the_written_models(
        tmp_path, tiny_potential_f32, tiny_dataset):
    """The refit picks a ridge by cross-validation that beats the trained layer on held-out
    frames, lowers the training energy error, and what it reports is what the written
    model (and the compressed one built from it) predicts under ``dp test``."""
    from scalebridge.potentials.dataset import load_dataset
    from scalebridge.potentials.evaluate import score
    from scalebridge.potentials.refit import refit_output_layer

    pj = json.loads((tiny_potential_f32.path / "potential.json").read_text())
    (rec,) = pj["output_refit"]
    assert rec["ridge"] is not None, rec["cv_loss"]        # 20 steps leave a lot to gain
    assert rec["cv_loss"][f"{rec['ridge']:g}"] < rec["cv_loss"]["keep"]
    before, after = rec["train_before"], rec["train_after"]
    assert after["energy_mae_mev_per_atom"] < 0.8 * before["energy_mae_mev_per_atom"], rec
    pot = load_potential(tiny_potential_f32)
    assert pot.compressed
    ds = load_dataset(tiny_dataset)
    plain = score(pot.models[0], ds, "train", tmp_path / "plain")["overall"]
    comp = score(pot.compressed[0], ds, "train", tmp_path / "comp")["overall"]
    assert plain["energy_mae_mev_per_atom"] == pytest.approx(
        after["energy_mae_mev_per_atom"], rel=0.02, abs=0.05)
    assert plain["force_mae_ev_a"] == pytest.approx(after["force_mae_ev_a"], rel=0.02)
    assert comp["energy_mae_mev_per_atom"] == pytest.approx(
        plain["energy_mae_mev_per_atom"], rel=0.05, abs=0.1)
    bad = tmp_path / "not_a_model.pth"
    bad.write_text("hello")
    with pytest.raises(SettingsError, match="not a frozen DeePMD-kit"):
        refit_output_layer(bad, [], ["Mo"], (1.0, 1.0, 1.0))
