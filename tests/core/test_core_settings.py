"""Settings: strict schema, one line per problem naming key, value and expectation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

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


class Deep(StrictModel):
    properties: Inner = Inner()
    models: str = "auto"


class Fixed(StrictModel):
    kind: Literal["fixed"] = "fixed"
    boundary: str


class Traction(StrictModel):
    kind: Literal["traction"] = "traction"
    boundary: str
    x: float = 0.0


class Cylinder(StrictModel):
    kind: Literal["cylinder"] = "cylinder"
    n_radial: int = 4


class Mesh(StrictModel):
    kind: Literal["mesh"] = "mesh"
    mesh: Path
    bc: list[Annotated[Fixed | Traction, Field(discriminator="kind")]] = Field(min_length=1)


class Fem(StrictModel):
    problem: Annotated[Cylinder | Mesh, Field(discriminator="kind")] = Cylinder()
    md: Deep = Deep()


def test_several_problems_are_one_line_each_naming_the_source() -> None:
    with pytest.raises(SettingsError) as e:
        validate(Outer, {"name": 3, "train": {"steps": "many", "stpes": 1}}, source="r.toml")
    lines = str(e.value).splitlines()
    assert len(lines) == 3 and all(ln.startswith("r.toml: ") for ln in lines)
    assert any("key 'train.steps' = 'many'" in ln for ln in lines)
    assert any("unknown key 'train.stpes'; did you mean 'steps'?" in ln for ln in lines)


def test_unknown_key_gives_did_you_mean_and_the_allowed_keys() -> None:
    with pytest.raises(SettingsError) as e:
        validate(Outer, {"train": {"stpes": 3}}, source="r.toml")
    assert str(e.value) == ("r.toml: unknown key 'train.stpes'; did you mean 'steps'? "
                            "allowed: steps, rcut_a")
    with pytest.raises(SettingsError) as e:  # nothing close: the allowed keys only
        validate(Outer, {"train": {"zzz": 3}}, source="r.toml")
    assert str(e.value) == "r.toml: unknown key 'train.zzz'; allowed: steps, rcut_a"
    # close to a key of a table below: named with its table
    with pytest.raises(SettingsError) as e:
        validate(Fem, {"md": {"stepz": 3}}, source="r.toml")
    assert str(e.value) == ("r.toml: unknown key 'md.stepz'; did you mean 'steps' in "
                            "[md.properties]? allowed: properties, models")


def test_discriminated_union_errors_name_the_toml_key() -> None:
    with pytest.raises(SettingsError) as e:
        validate(Fem, {"problem": {"kind": "cylindr"}}, source="fem.toml")
    assert str(e.value) == ("fem.toml: key 'problem.kind' = 'cylindr' is not one of "
                            "'cylinder', 'mesh'; did you mean 'cylinder'?")
    with pytest.raises(SettingsError) as e:  # the tag ('mesh') is not part of the key
        validate(Fem, {"problem": {"kind": "mesh"}}, source="fem.toml")
    assert str(e.value).splitlines() == [
        "fem.toml: missing required key 'problem.mesh' (path)",
        "fem.toml: missing required key 'problem.bc' (one or more [[problem.bc]] tables)"]
    with pytest.raises(SettingsError) as e:
        validate(Fem, {"problem": {"kind": "mesh", "mesh": "m.msh",
                                   "bc": [{"kind": "fixed", "boundry": "a"}]}})
    assert str(e.value).splitlines() == [
        "settings: missing required key 'problem.bc[0].boundary' (str)",
        "settings: unknown key 'problem.bc[0].boundry'; did you mean 'boundary'? "
        "allowed: kind, boundary"]
    with pytest.raises(SettingsError, match=r"^settings: missing required key "
                                            r"'problem.kind' \(one of 'cylinder', 'mesh'\)$"):
        validate(Fem, {"problem": {"n_radial": 3}})
    assert validate(Fem, {"problem": {"kind": "mesh", "mesh": "m.msh", "bc": [
        {"kind": "traction", "boundary": "top", "x": 1.0}]}}).problem.bc[0].x == 1.0



class Either(StrictModel):
    x: Inner | int = 3
    models: str = "auto"


def test_a_union_member_and_a_default_value_are_not_keys() -> None:
    """pydantic names the union member it tried (``Inner``, ``int``) in the location;
    a key that equals some field's default value is still the key."""
    with pytest.raises(SettingsError) as e:
        validate(Either, {"x": {"stpes": 1}})
    assert str(e.value).splitlines() == [
        "settings: unknown key 'x.stpes'; did you mean 'steps'? allowed: steps, rcut_a",
        "settings: key 'x' = {'stpes': 1}: Input should be a valid integer"]
    with pytest.raises(SettingsError) as e:
        validate(Either, {"auto": 1})
    assert str(e.value) == "settings: unknown key 'auto'; allowed: x, models"


class Factor(StrictModel):
    k: Annotated[float, Field(gt=0)] | Literal["auto"] = "auto"
    sel: list[int] | Literal["auto"] = "auto"


def test_a_value_no_union_member_takes_is_one_line() -> None:
    """A union of a number (or a list) and a word: pydantic reports one error per member,
    named ``constrained-float``, ``literal['auto']`` in the location; the user gets one
    line at the TOML key, the members' expectations joined."""
    with pytest.raises(SettingsError) as e:
        validate(Factor, {"k": -1.0, "sel": "x"})
    assert str(e.value).splitlines() == [
        "settings: key 'k' = -1.0: Input should be greater than 0; or Input should be "
        "'auto'",
        "settings: key 'sel' = 'x': Input should be a valid list; or Input should be "
        "'auto'"]
    assert validate(Factor, {"k": 2.5, "sel": [48]}).k == 2.5


def test_constraint_violation() -> None:
    pattern = r"resources.mpi_ranks' = 0: .*greater than or equal to 1"
    with pytest.raises(SettingsError, match=pattern):
        validate(Outer, {"resources": {"mpi_ranks": 0}})


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="settings file not found"):
        load_settings(Outer, tmp_path / "absent.toml")
    with pytest.raises(SettingsError, match=r"is a directory, not a settings file"):
        load_settings(Outer, tmp_path)
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
