"""Settings: strict schema, one-line errors naming key, value and expectation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from scalebridge.errors import SettingsError
from scalebridge.settings import Resources, StrictModel, load_settings, schema_doc, validate


class Inner(StrictModel):
    steps: int = Field(100, ge=1, description="training steps")
    rcut_a: float = Field(5.0, description="cutoff (Å)")


class Needs(StrictModel):
    path: Path = Field(description="input file")
    rates: list[float] | None = Field(description="rates (1/s)")
    mode: Literal["a", "b"]


class Outer(StrictModel):
    name: str = "run"
    train: Inner = Inner()
    resources: Resources = Resources()


def test_defaults_validate() -> None:
    s = validate(Outer, {})
    assert s.train.steps == 100 and s.resources.mpi_ranks == 1


def test_wrong_type_names_key_value_and_expectation() -> None:
    with pytest.raises(SettingsError) as e:
        validate(Outer, {"train": {"steps": "many"}}, source="run.toml")
    msg = str(e.value)
    assert "\n" not in msg
    assert "run.toml" in msg and "train.steps" in msg and "'many'" in msg and "integer" in msg


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(SettingsError, match=r"unknown key 'train.stpes'; did you mean 'steps'"):
        validate(Outer, {"train": {"stpes": 3}})


def test_unknown_section_lists_the_allowed_ones() -> None:
    with pytest.raises(SettingsError, match="unknown key 'trian'; did you mean 'train'"):
        validate(Outer, {"trian": {}})


def test_constraint_violation() -> None:
    pattern = r"resources.mpi_ranks' = 0: .*greater than or equal to 1"
    with pytest.raises(SettingsError, match=pattern):
        validate(Outer, {"resources": {"mpi_ranks": 0}})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(Outer, tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3\n")
    with pytest.raises(SettingsError, match="invalid TOML"):
        load_settings(Outer, bad)
    good = tmp_path / "good.toml"
    good.write_text('name = "x"\n[train]\nsteps = 7\n')
    assert load_settings(Outer, good).train.steps == 7


def test_schema_doc_lists_every_key_with_default() -> None:
    doc = "\n".join(schema_doc(Outer))
    assert "train.steps = 100  # training steps" in doc
    assert "resources.mpi_ranks = 1" in doc


def test_schema_doc_marks_required_keys_with_their_type() -> None:
    doc = schema_doc(Needs, prefix="x.")
    assert doc == ["x.path = <required: path>  # input file",
                   "x.rates = <required: list of float>  # rates (1/s)",
                   "x.mode = <required: 'a' | 'b'>"]
