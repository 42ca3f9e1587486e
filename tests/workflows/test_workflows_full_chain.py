"""The whole chain in the suite: all nine stages of ``scalebridge run``, DFT data to FEM
fields, on tiny settings (the README's main job, shrunk to test size).

The ``potential`` stage continues a small pre-trained Mo model shipped in
``tests/data/mo_deepmd_tiny`` for 20 steps (``init_model``): a model trained from scratch for
the few hundred steps a test can afford is not a stable BCC crystal, and its edge
dislocation dissolves before it can glide. Everything after it runs as in the example:
LAMMPS properties, edge glide (two stresses, one replica each, at 50 K where a 1 ps run
resolves the velocity), a 3×3×3 deformation run, the drag law fitted to the glide, two 2D DD
realisations, a neural-J2 surrogate fitted to them, and the FEniCSx cylinder with it.

The properties leave out the GSF curves and the surrogate its cross-validation folds (a
worker process): nothing here reads them, their own tests do. Measured on 2 cores at load
~2: the chain 50 s, this file 53 s (70 s for the chain with both); marked slow:
``-m "not slow"`` leaves it out, ``./sb test`` runs it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from scalebridge.workflows.pipeline import build_chain, run, status
from scalebridge.workflows.settings import load_run_settings

MO_TINY = Path(__file__).resolve().parents[1] / "data" / "mo_deepmd_tiny" / "model.pth"

TINY_CHAIN = """
[run]
name = "tiny-chain"
data = [{data}]

[potentials.ingest]
type_map = ["Mo"]
max_frames_per_group = 6

[potentials.train]
init_model = {init_model}
steps = 20
ensemble = 1
start_lr = 1e-4
stop_lr = 1e-5
pref_e = [0.02, 2.0]
fitting_neuron = [32, 32]
disp_freq = 10
precision = "float32"
compress = false
evaluate = false
properties = false

[potentials.train.descriptor]
neuron = [8, 16]
axis_neuron = 4
rcut_a = 5.0
rcut_smth_a = 0.5
sel = [48]

[md.properties]
supercell = 2
eos_points = 5
npt_steps = 0
nve_steps = 0
stacking_faults = false   # GSF curves: tests/md/test_md_stacking.py

[md.mobility]
characters = ["edge"]
temperatures_k = [50.0]
taus_mpa = [1000.0, 2000.0]
replicas = 1
equil_steps = 20
run_steps = 500
dump_every = 25

[md.deformation]
size = 3
voids = 0
loops = 0
max_strain = 0.01
strain_rate_per_ps = 0.05
equil_steps = 0
dump_every = 50

[dd.mobility]
law = "drag"
out_of_range = "clamp"

[dd.run]
realisations = 2
cell_lx_um = 0.5
final_strain = 2.0e-3
temperature_k = 50.0
out_of_range = "clamp"

[surrogates]
model = "neural_j2"
hidden = 4
max_iterations = 20
rollout_iterations = 0
cross_validate = 0   # no folds (worker processes): tests/surrogates/test_surrogates_heldout.py

[continuum]
write_fields = true

[continuum.problem]
kind = "cylinder"
n_radial = 2
n_angular = 3
inner_displacement = 0.0015

[continuum.solver]
steps = 3
degree = 1
"""

#: The nine nodes, in chain order, and the artifact kind each makes.
NODES = {"dataset": "DFTDataset", "potential": "Potential", "properties": "Properties",
         "defects": "DefectStats", "deform": "DefectStats", "mobility": "MobilityLaw",
         "dd": "DDRun", "surrogate": "Surrogate", "fem": "FieldResults"}

#: The last of the nine: optional nodes after it (the FEM load band) are not run here.
LAST = "fem"

#: (node, its manifest's input key, the upstream node that input must be).
LINKS = [("potential", "dataset", "dataset"), ("defects", "properties", "properties"),
         ("deform", "properties", "properties"), ("mobility", "defect_stats", "defects"),
         ("mobility", "properties", "properties"), ("dd", "mobility", "mobility"),
         ("dd", "properties", "properties"), ("surrogate", "data", "dd"),
         ("fem", "surrogate", "surrogate")]

#: Files each stage must have written (relative to its artifact directory).
FILES = {"dataset": ["dataset.json"],
         "potential": ["potential.json", "models/model_0.pth", "lcurve.csv"],
         "properties": ["properties.json", "eos.csv"],
         "defects": ["velocity.csv"],
         "deform": ["density_strain.csv", "stress_strain.csv"],
         "mobility": ["mobility.json", "fit.json"],
         "dd": ["stress_strain.csv", "realisations/0/stress_strain.csv",
                "realisations/1/stress_strain.csv"],
         "surrogate": ["surrogate.json", "model.pt"],
         "fem": ["load_displacement.csv", "fields"]}


def _finite(*xs) -> bool:
    return all(isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def full_chain(tmp_path_factory, mo_train_json):
    """The tiny chain run once, all nine stages, from an empty run directory."""
    base = tmp_path_factory.mktemp("full_chain")
    toml = base / "tiny_chain.toml"
    toml.write_text(TINY_CHAIN.format(data=json.dumps(str(mo_train_json)),
                                      init_model=json.dumps(str(MO_TINY))))
    return toml, run(toml, base / "run", until=LAST)


def test_the_chain_has_nine_stages(tmp_path, mo_train_json):
    toml = tmp_path / "t.toml"
    toml.write_text(TINY_CHAIN.format(data=json.dumps(str(mo_train_json)),
                                      init_model=json.dumps(str(MO_TINY))))
    chain = build_chain(load_run_settings(toml))
    assert [(n.name, n.kind) for n in chain.nodes][:len(NODES)] == list(NODES.items())


@pytest.mark.slow
def test_every_stage_made_its_artifact(full_chain):
    _, res = full_chain
    assert list(res.artifacts) == list(NODES) and res.skipped == []
    assert set(res.seconds) == set(NODES)
    for name, kind in NODES.items():
        art = res.artifacts[name]
        assert art.kind == kind, name
        assert Path(art.path) == res.run_dir / name
        for f in FILES[name]:
            assert (art.path / f).exists(), f"{name}: {f} missing"
    # each stage read the artifact of the stage before it, not some other one
    for node, key, upstream in LINKS:
        got = res.artifacts[node].manifest["inputs"][key]["fingerprint"]
        assert got == res.artifacts[upstream].fingerprint, (node, key)
    assert not list(res.run_dir.glob(".*.partial-*"))


@pytest.mark.slow
def test_stage_numbers_are_finite_and_physical(full_chain):
    _, res = full_chain
    s = {name: art.summary for name, art in res.artifacts.items()}
    assert s["dataset"]["n_frames"]["train"] > 0
    assert s["potential"]["models"] == 1

    p = s["properties"]
    assert _finite(p["a0_a"], p["c11_gpa"], p["c12_gpa"], p["c44_gpa"],
                   p["shear_modulus_gpa"], p["poisson_ratio"], p["vacancy_formation_ev"])
    assert 3.0 < p["a0_a"] < 3.4                         # BCC Mo (DFT 3.168 Å)
    assert p["c11_gpa"] > p["c12_gpa"] > 0 and p["c44_gpa"] > 0   # a stable cubic crystal

    d = s["defects"]
    assert d["points"] == 2 and d["points_measured"] == 2
    rows = _rows(res.artifacts["defects"].path / "velocity.csv")
    v = {float(r["tau_mpa"]): float(r["velocity_m_s"]) for r in rows}
    assert set(v) == {1000.0, 2000.0} and _finite(*v.values())
    assert 0 < v[1000.0] < v[2000.0]                     # glides with the stress, faster

    df = s["deform"]
    assert _finite(df["peak_stress_mpa"], df["max_density_m2"], df["final_strain"])
    assert df["final_strain"] == pytest.approx(-0.01)    # compression to 1 %

    m = s["mobility"]
    assert m["law"] == "LinearDragMobility" and m["n_rows"] == 2
    assert _finite(m["drag_edge_b0_pa_s"]) and m["drag_edge_b0_pa_s"] > 0

    dd = s["dd"]
    assert _finite(dd["flow_stress_mpa"], dd["plastic_strain_end"])
    assert dd["plastic_strain_end"] > 0 and not dd["truncated"]
    assert dd["mobility_check"]["passed"]

    sg = s["surrogate"]
    assert sg["class"] == "NeuralJ2" and sg["checks_passed"]
    assert _finite(sg["validation"]["rmse_mpa"])

    f = s["fem"]
    assert f["model"] == "neural_j2" and f["steps"] == 3 and f["cuts"] == 0
    assert _finite(f["max_load_mpa"]) and f["max_load_mpa"] > 0
    assert f["material_checks"]["passed"]
    # no analytic limit load for a hardening surrogate: null with the reason
    assert f["limit_load_rel_error"] is None and f["limit_load_note"]
    curve = _rows(res.artifacts["fem"].path / "load_displacement.csv")
    assert len(curve) == 4 and all(_finite(float(r["pressure_mpa"])) for r in curve)


@pytest.mark.slow
def test_report_names_every_stage(full_chain):
    import re

    _, res = full_chain
    md = (res.run_dir / "report.md").read_text()
    html = (res.run_dir / "report.html").read_text()
    for name, kind in NODES.items():
        assert f"## {name}: {kind}" in md, name
        assert f"id='{name}'" in html, name
    for p in re.findall(r"\]\(([^)]+)\)", md):
        assert (res.run_dir / p).exists(), p


@pytest.mark.slow
def test_status_all_done_and_a_rerun_remakes_nothing(full_chain):
    toml, res = full_chain
    sts = status(res.run_dir, toml)
    states = {s.name: s.state for s in sts}
    assert {k: states[k] for k in NODES} == dict.fromkeys(NODES, "done"), {
        s.name: s.reason for s in sts if s.state != "done"}
    again = run(toml, res.run_dir, until=LAST)
    assert again.skipped == list(NODES) and again.seconds == {}
    assert {k: a.fingerprint for k, a in again.artifacts.items()} == {
        k: a.fingerprint for k, a in res.artifacts.items()}
