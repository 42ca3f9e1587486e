"""Strict settings models and TOML loading with one-line errors.

Every stage's settings are a :class:`StrictModel`: unknown keys are errors with a
"did you mean", wrong types name the key, the value and what was expected. Science
settings (what to compute) are kept apart from :class:`Resources` (where and how: MPI
ranks, threads), which never enter an artifact's fingerprint.
"""

from __future__ import annotations

import difflib
import tomllib
import types
from pathlib import Path, PurePath
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scalebridge.errors import SettingsError

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base of all settings: unknown keys forbidden, assignments validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class Resources(StrictModel):
    """Machine settings for one task: how many MPI ranks and threads per rank."""

    mpi_ranks: int = Field(1, ge=1, description="MPI ranks (mpiexec -n) for MPI programs")
    threads: int = Field(1, ge=1, description="OpenMP/torch threads per rank")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="torch device for DeePMD training (dp train): auto is the GPU "
        "where torch sees one, else the CPU (scalebridge.runtime.torch_device)")


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub)model at ``loc`` (for "did you mean")."""
    cur: Any = model
    options: list[Any] = []
    for part in loc[:-1]:
        fields = getattr(cur, "model_fields", None)
        if fields and part in fields:
            ann = fields[part].annotation
            options = [a for a in getattr(ann, "__args__", (ann,)) if hasattr(a, "model_fields")]
            cur = options[0] if options else ann
            continue
        # a discriminated union puts the tag in loc: pick the member with that tag value
        tagged = [a for a in options
                  if any(f.default == part for f in a.model_fields.values())]
        if not tagged:
            return []
        cur, options = tagged[0], []
    return list(getattr(cur, "model_fields", {}))


def format_validation_error(err: ValidationError, model: type[BaseModel],
                            source: str = "settings") -> str:
    """One line per problem: ``<source>: key a.b: <what>``; the first line leads."""
    lines = []
    for e in err.errors():
        key = _loc(e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"])
            close = difflib.get_close_matches(str(e["loc"][-1]), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; allowed: {', '.join(allowed)}" if allowed else "")
            lines.append(f"{source}: unknown key {key!r}{hint}")
        elif e["type"] == "missing":
            lines.append(f"{source}: missing required key {key!r}")
        else:
            value = e.get("input")
            lines.append(f"{source}: key {key!r} = {value!r}: {e['msg']}")
    return "; ".join(lines)


def validate(model: type[M], data: dict[str, Any], source: str = "settings") -> M:
    """``model.model_validate(data)`` with a one-line :class:`SettingsError`."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SettingsError(format_validation_error(err, model, source)) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; missing file or bad syntax -> one-line :class:`SettingsError`."""
    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"settings file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"{path}: invalid TOML: {e}") from None


def load_settings(model: type[M], path: str | Path) -> M:
    """Load and validate a TOML settings file into ``model``."""
    return validate(model, load_toml(path), source=str(path))


def schema_doc(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Documented schema with defaults, one ``key = default  # description`` per line."""
    out: list[str] = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        sub = next((a for a in getattr(ann, "__args__", (ann,))
                    if isinstance(a, type) and issubclass(a, BaseModel)), None)
        key = f"{prefix}{name}"
        if sub is not None:
            out.append(f"[{key}]" + (f"  # {f.description}" if f.description else ""))
            out.extend(schema_doc(sub, prefix=f"{key}."))
        else:
            default = (f"<required: {_type_label(ann)}>" if f.is_required()
                       else repr(f.get_default(call_default_factory=True)))
            desc = f"  # {f.description}" if f.description else ""
            out.append(f"{key} = {default}{desc}")
    return out


def _type_label(ann: Any) -> str:
    """A TOML user's name for a field's type: ``path``, ``list of float``, ``'a' | 'b'``,
    ``table`` (a nested settings model or a dict)."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _type_label(args[0])
    if origin in (Union, types.UnionType):
        return " | ".join(dict.fromkeys(_type_label(a) for a in args if a is not type(None)))
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (list, tuple, set, frozenset):
        return f"list of {_type_label(args[0])}" if args else "list"
    if origin is dict or ann is dict:
        return "table"
    if isinstance(ann, type):
        if issubclass(ann, BaseModel):
            return "table"
        return "path" if issubclass(ann, PurePath) else ann.__name__
    return str(ann).replace("typing.", "")
