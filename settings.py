"""Strict settings models and TOML loading with one-line errors.

Every stage's settings are a :class:`StrictModel`: unknown keys are errors with a
"did you mean" and the allowed keys, wrong types name the key, the value and what was
expected; several problems are one line each. Science
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


#: Allowed keys listed in an "unknown key" message, at most (then "... N more").
ALLOWED_SHOWN = 16


def _models_in(ann: Any) -> list[type[BaseModel]]:
    """The settings models a field's annotation can hold (through ``Annotated``,
    unions, ``list[...]`` and ``dict[..., ...]``), in order."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [ann]
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _models_in(args[0])
    if origin is dict:
        return _models_in(args[-1]) if args else []
    if origin in (Union, types.UnionType, list, tuple, set, frozenset):
        return list(dict.fromkeys(m for a in args for m in _models_in(a)))
    return []


def _tag_of(model: type[BaseModel], part: Any) -> bool:
    """``part`` is how a discriminated union names ``model`` in an error's location
    (its tag, a field's literal default such as ``kind = "mesh"``, or its class name)."""
    return part == model.__name__ or any(
        f.default == part for f in model.model_fields.values()
        if get_origin(f.annotation) is Literal and isinstance(f.default, str))


def _union_members(ann: Any) -> set[str]:
    """How pydantic names the members of a union in an error's location (``int``,
    ``list[float]``)."""
    origin, args = get_origin(ann), get_args(ann)
    if origin is Annotated:
        return _union_members(args[0])
    if origin not in (Union, types.UnionType):
        return set()
    return {getattr(a, "__name__", None) if isinstance(a, type) else str(a) for a in args
            } - {None}


def _walk(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, list[type[BaseModel]]]:
    """``(key, models)``: the TOML key of an error's location (``problem.bc[0].boundary``:
    a discriminated union's tag, which pydantic puts in the location, left out) and the
    settings models that can be at that key."""
    parts: list[str] = []
    cands: list[type[BaseModel]] = [model]
    members: set[str] = set()
    for part in loc:
        if isinstance(part, str) and part.startswith("function-"):
            continue
        if isinstance(part, int):  # an item of a list of tables ([[problem.bc]])
            parts.append(f"[{part}]")
            continue
        tagged = [m for m in cands if _tag_of(m, part)]
        if tagged and (len(cands) > 1 or part not in cands[0].model_fields):
            cands = tagged[:1]  # a union: pydantic names the member before its keys
            continue
        if part in members or (members and isinstance(part, str) and part.startswith(
                ("literal[", "constrained-"))):  # a smart union names the member it
            cands, members = [], set()           # tried: int, list[float], literal['auto']
            continue
        owner = next((m for m in cands if part in m.model_fields), None)
        parts.append(str(part))
        ann = owner.model_fields[part].annotation if owner is not None else None
        cands = _models_in(ann) if owner is not None else []
        members = _union_members(ann)
    return "".join(p if p.startswith("[") else f".{p}" for p in parts).lstrip("."), cands


def _field(models: list[type[BaseModel]], name: Any) -> Any:
    return next((m.model_fields[name] for m in models if name in m.model_fields), None)


def _nested_match(models: list[type[BaseModel]], name: str, prefix: str,
                  depth: int = 3) -> tuple[str, str] | None:
    """``(key, its table)`` of a key close to ``name`` in the tables below ``models``
    (``temprature_k`` in ``[md]`` -> ``temperature_k`` in ``[md.properties]``)."""
    if depth == 0:
        return None
    subs = [(f"{prefix}.{k}".lstrip("."), sub) for m in models
            for k, f in m.model_fields.items() if (sub := _models_in(f.annotation))]
    for table, sub in subs:
        keys = list(dict.fromkeys(k for m in sub for k in m.model_fields))
        close = difflib.get_close_matches(name, keys, n=1)
        if close:
            return close[0], table
    for table, sub in subs:
        found = _nested_match(sub, name, table, depth - 1)
        if found:
            return found
    return None


def _tags(models: list[type[BaseModel]], disc: str) -> list[str]:
    return [str(m.model_fields[disc].default) for m in models
            if disc in m.model_fields and isinstance(m.model_fields[disc].default, str)]


def _problem_line(e: Any, model: type[BaseModel]) -> str:
    """One validation problem in words (without the source)."""
    loc = tuple(e["loc"])
    key, _ = _walk(model, loc)
    key = key or "(top level)"
    if e["type"] == "extra_forbidden":
        parent_key, parents = _walk(model, loc[:-1])
        allowed = list(dict.fromkeys(k for m in parents for k in m.model_fields))
        name = str(loc[-1])
        close = difflib.get_close_matches(name, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if not close and (deep := _nested_match(parents, name, parent_key)):
            hint = f"; did you mean {deep[0]!r} in [{deep[1]}]?"
        if allowed:
            shown = allowed[:ALLOWED_SHOWN]
            more = f", ... {len(allowed) - len(shown)} more" if len(allowed) > len(shown) \
                else ""
            hint += f"{' ' if close or hint else '; '}allowed: {', '.join(shown)}{more}"
        return f"unknown key {key!r}{hint}"
    ctx = e.get("ctx") or {}
    disc = str(ctx.get("discriminator", "")).strip("'")
    if e["type"] in ("union_tag_invalid", "union_tag_not_found") and disc.isidentifier():
        _, members = _walk(model, loc)
        tags = _tags(members, disc) or [t.strip(" '") for t in
                                        str(ctx.get("expected_tags", "")).split(",") if t]
        choices = ", ".join(repr(t) for t in tags)
        full = f"{key}.{disc}" if key != "(top level)" else disc
        if e["type"] == "union_tag_not_found":
            return f"missing required key {full!r} (one of {choices})"
        tag = str(ctx.get("tag", ""))
        close = difflib.get_close_matches(tag, tags, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"key {full!r} = {tag!r} is not one of {choices}{hint}"
    if e["type"] == "missing":
        _, parents = _walk(model, loc[:-1])
        f = _field(parents, loc[-1])
        what = ""
        if f is not None:
            ann = f.annotation
            if _models_in(ann) and get_origin(ann) in (list, tuple):
                what = f" (one or more [[{key}]] tables)"
            elif _models_in(ann):
                what = f" (a [{key}] table)"
            else:
                what = f" ({_type_label(ann)})"
        return f"missing required key {key!r}{what}"
    return _value_head(key, e) + e["msg"]


def _value_head(key: str, e: Any) -> str:
    """``key 'a.b' = 'x': ``, the start of a problem with a value (its message follows)."""
    return f"key {key!r} = {e.get('input')!r}: "


def format_validation_error(err: ValidationError, model: type[BaseModel],
                            source: str = "settings") -> str:
    """One line per problem, each ``<source>: <problem>``, joined by newlines: ``unknown
    key 'md.temprature_k'; did you mean 'temperature_k' in [md.properties]? allowed: ...``,
    ``key 'problem.kind' = 'cylindr' is not one of 'cylinder', ...; did you mean
    'cylinder'?``, ``missing required key 'problem.bc' (one or more [[problem.bc]]
    tables)``, ``key 'a.b' = 'x': <pydantic's message>``. The key is the TOML key (a
    discriminated union's tag left out, a list item as ``[i]``)."""
    lines: list[str] = []
    for e in err.errors():
        line = _problem_line(e, model)
        # a value no member of a union takes: one error per member, at the same key
        # (``= 'two': Input should be a valid number``, ``= 'two': Input should be
        # 'auto'``): one line, the members' messages joined
        head = _value_head(_walk(model, tuple(e["loc"]))[0] or "(top level)", e)
        same = next((i for i, x in enumerate(lines) if x.startswith(head)), None)
        if same is not None and line.startswith(head):
            lines[same] += "; or " + line[len(head):]
        else:
            lines.append(line)
    return "\n".join(f"{source}: {x}" for x in lines)


def validate(model: type[M], data: dict[str, Any], source: str = "settings") -> M:
    """``model.model_validate(data)``; invalid data raises :class:`SettingsError` with
    one line per problem (:func:`format_validation_error`)."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SettingsError(format_validation_error(err, model, source)) from None


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a missing file, a directory or bad syntax -> one-line
    :class:`SettingsError`."""
    path = Path(path)
    if path.is_dir():
        raise SettingsError(f"{path} is a directory, not a settings file: give the TOML file")
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
