"""``scalebridge potentials ...`` through click, as a user types it."""

from __future__ import annotations

import json

from click.testing import CliRunner
from scalebridge.workflows.cli import cli

from ..conftest import DATA


def test_ingest_and_dry_run(tmp_path, vasp_dir):
    r = CliRunner().invoke(cli, ["potentials", "ingest",
                                 str(vasp_dir / "Ti-aimd-nwrite0_vasprun.xml"),
                                 "-o", str(tmp_path / "ds"), "--type-map", "Ti"])
    assert r.exit_code == 0, r.output
    assert "DFTDataset" in r.output
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["type_map"] == ["Ti"]
    (tmp_path / "t.toml").write_text("steps = 50\n[descriptor]\nsel = [60]\n")
    r = CliRunner().invoke(cli, ["potentials", "train", str(tmp_path / "ds"), "-o",
                                 str(tmp_path / "pot"), "--settings",
                                 str(tmp_path / "t.toml"), "--ensemble", "2", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert sum(ln.startswith("wrote ") for ln in r.output.splitlines()) == 2
    inp = json.loads((tmp_path / "pot.dry_run" / "train" / "model_1" / "input.json")
                     .read_text())
    assert inp["training"]["numb_steps"] == 50
    assert inp["model"]["descriptor"]["sel"] == [60]


def test_errors_are_one_line(tmp_path, vasp_dir):
    r = CliRunner().invoke(cli, ["potentials", "ingest",
                                 str(vasp_dir / "OUTCAR.ch4.unconverged"),
                                 "-o", str(tmp_path / "ds")])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1 and r.output.strip().splitlines()[-1] == lines[0]
    assert "OUTCAR.ch4.unconverged frame 0" in lines[0]
    (tmp_path / "bad.toml").write_text("stepz = 5\n")
    r = CliRunner().invoke(cli, ["potentials", "train", str(tmp_path), "-o",
                                 str(tmp_path / "p"), "--settings", str(tmp_path / "bad.toml")])
    assert r.exit_code == 1 and "did you mean 'steps'" in r.output


def test_type_map_takes_several_words(tmp_path):
    """``--type-map Mo Nb`` (unquoted) is two species, in that order, for ingest (whose
    data files are positional: a following path is not a species) and for the md
    commands; one quoted or comma separated value still works."""
    from scalebridge.md.cli import md
    from scalebridge.potentials.cli import join_type_map, parse_type_map

    alloy = DATA / "maml_MoNbW"
    r = CliRunner().invoke(cli, ["potentials", "ingest", str(alloy / "Nb_Elastic_every10.json"),
                                 str(alloy / "Mo_Elastic.json"), "--type-map", "Nb", "Mo",
                                 "-o", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["type_map"] == [
        "Nb", "Mo"]
    model = tmp_path / "model.pth"
    model.write_bytes(b"")
    for words in (["Mo", "Nb", "W"], ["Mo,Nb,W"], ["Mo Nb W"], ["Mo,Nb", "W"]):
        ctx = md.commands["properties"].make_context(
            "properties", ["-p", str(model), "--type-map", *words, "-o", "out"])
        assert parse_type_map(ctx.params["type_map"]) == ["Mo", "Nb", "W"], words
        assert ctx.params["out"] == "out"
    assert join_type_map(["--type-map=Mo", "Nb", "a.json", "W"]) == [
        "--type-map=Mo,Nb", "a.json", "W"]
    assert join_type_map(["--type-map", "Mo", "--", "Nb"]) == ["--type-map=Mo", "--", "Nb"]
    assert join_type_map(["x.json", "-o", "Mo"]) == ["x.json", "-o", "Mo"]
    assert parse_type_map(None) is None and parse_type_map(" , ") is None


def test_out_that_is_not_an_artifact_is_refused_and_kept(tmp_path, mo_train_json):
    """``-o`` pointing at the user's own data folder (or a file) is refused with one line,
    exit 1, and nothing in it changes; a previous DFTDataset there is replaced."""
    mydft = tmp_path / "mydft"
    mydft.mkdir()
    (mydft / "training.json").write_bytes(mo_train_json.read_bytes())
    note = tmp_path / "note.txt"
    note.write_text("mine")
    for out in (mydft, note):
        r = CliRunner().invoke(cli, ["potentials", "ingest", str(mydft), "-o", str(out),
                                     "--type-map", "Mo"])
        assert r.exit_code == 1, r.output
        assert r.output == (f"error: {out} exists and is not a scalebridge artifact; "
                            "choose another --out or remove it\n")
    assert [p.name for p in mydft.iterdir()] == ["training.json"]
    assert (mydft / "training.json").read_bytes() == mo_train_json.read_bytes()
    assert note.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mydft", "note.txt"]


def test_ingest_over_an_artifact_of_another_kind_is_refused(tmp_path, mo_train_json):
    """``potentials ingest x.json -o runs/mo/potential`` does not replace the trained
    Potential there with a DFTDataset: one line naming both kinds, exit 1."""
    from scalebridge.artifacts import produce, read_artifact

    def build(work) -> dict:
        (work / "potential.json").write_text("{}")
        return {}

    pot = produce("Potential", tmp_path / "potential", {}, {}, build)
    r = CliRunner().invoke(cli, ["potentials", "ingest", str(mo_train_json), "-o",
                                 str(pot.path), "--type-map", "Mo"])
    assert r.exit_code == 1, r.output
    assert r.output == (f"error: {pot.path} holds a Potential artifact, not a DFTDataset; "
                        "choose another --out or remove it\n")
    assert read_artifact(pot.path).manifest == pot.manifest


def test_failed_ingest_leaves_only_its_record(tmp_path, mo_train_json):
    """A plain input error leaves ``<out>.failed.json`` (with the log's text), no
    ``<out>.failed/`` beside it."""
    cut = tmp_path / "t.json"
    cut.write_bytes(mo_train_json.read_bytes()[:300])
    r = CliRunner().invoke(cli, ["potentials", "ingest", str(cut), "-o", str(tmp_path / "x")])
    assert r.exit_code == 1 and "invalid JSON" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json", "x.failed.json"]
    rec = json.loads((tmp_path / "x.failed.json").read_text())
    assert "invalid JSON" in rec["error"] and "DFTDataset: building into" in rec["log"]


def test_ingest_format_and_voigt_order_flags(tmp_path, mo_train_json):
    """``--format`` and ``--voigt-order`` set IngestSettings.format/voigt_order without a
    TOML: surfaces alone (no sheared cell) need the order."""
    raw = json.loads(mo_train_json.read_text())
    src = tmp_path / "surfaces.data"  # a name auto cannot place: --format says it
    src.write_text(json.dumps([it for it in raw if it["group"] == "Surface"][:4]))
    base = ["potentials", "ingest", str(src), "--type-map", "Mo"]
    r = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / "a")])
    assert r.exit_code == 1 and "unknown DFT file format" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--format", "mlearn", "-o", str(tmp_path / "b")])
    assert r.exit_code == 1 and "set potentials.ingest.voigt_order" in r.output, r.output
    r = CliRunner().invoke(cli, [*base, "--format", "mlearn", "--voigt-order",
                                 "xx yy zz xy xz yz", "-o", str(tmp_path / "ds")])
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["voigt_order"] == "xx yy zz xy xz yz" and info["has_virial"]
    r = CliRunner().invoke(cli, [*base, "--format", "mlearn", "--voigt-order", "xx yy zz",
                                 "-o", str(tmp_path / "c")])
    assert r.exit_code == 1 and "voigt_order" in r.output and "choose auto" in r.output
