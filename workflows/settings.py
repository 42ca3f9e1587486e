"""The run's TOML schema: ``[run]``, one section per stage, and ``[execution]``.

A run file says *what* to compute; only ``[execution]`` says *where* (engine, provider,
workers, MPI ranks, threads), and it never enters a fingerprint::

    [run]
    name = "mo"
    data = ["data/training.json"]          # DFT files, relative to this file

    [potentials]                           # the potentials stage's own settings model
    ...
    [execution]
    engine = "local"                       # or "parsl"

Each stage section is that stage's own :class:`~scalebridge.settings.StrictModel`
(imported from the stage package), so unknown keys and wrong types are reported by the
same one-line errors everywhere (``scalebridge.settings.validate``). An unknown section is
an error with a "did you mean".
"""

from __future__ import annotations

import difflib
import functools
import importlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, create_model
from scalebridge.errors import ScalebridgeError, SettingsError
from scalebridge.settings import StrictModel, load_toml, schema_doc, validate
from scalebridge.workflows.engine import ExecutionSettings


class RunSection(StrictModel):
    """The run's identity and its DFT data."""

    name: str = Field("scalebridge", description="run name (used in the report title)")
    data: list[Path] = Field(default_factory=list, description="DFT files (vasprun.xml, "
                             "OUTCAR, pymatgen/mlearn JSON, FitSNAP JSON), relative to the "
                             "settings file")
    test_data: list[Path] = Field(default_factory=list, description="DFT files that form "
                                  "the test split as they are (e.g. mlearn's test.json); "
                                  "empty: a test split is cut from `data`")
    stop_after: str | None = Field(None, description="last stage to run (e.g. 'potential'); "
                                   "none: the whole chain")
    description: str = Field("", description="free text shown in the report")


#: Stage sections: TOML section -> (module, settings model), in chain order. A stage whose
#: module cannot be imported is an error naming the stage and the failed import (never
#: silently left out: a broken installation must not shorten the chain).
STAGE_SECTIONS: dict[str, tuple[str, str]] = {
    section: (f"scalebridge.workflows.stage_{section}", "Section")
    for section in ("potentials", "md", "dd", "surrogates", "continuum")
}

#: Why a stage could not be imported (section -> the import error), as last seen.
UNAVAILABLE: dict[str, str] = {}


def import_stage(section: str, module: str) -> Any:
    """Import a stage's adapter module.

    Raises:
        ScalebridgeError: ``stage continuum: cannot import scalebridge.workflows.
            stage_continuum: ModuleNotFoundError: No module named 'dolfinx'`` (one line).
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        why = f"{type(e).__name__}: {e}"
        UNAVAILABLE[section] = why
        raise ScalebridgeError(f"stage {section}: cannot import {module}: {why} (the "
                               "installation is incomplete: rerun ./sb setup)") from None


def _load_section(section: str, module: str, attr: str) -> type[BaseModel]:
    model = getattr(import_stage(section, module), attr, None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise ScalebridgeError(f"stage {section}: {module}.{attr} is not a settings model")
    return model


@functools.cache
def available_sections() -> dict[str, type[BaseModel]]:
    """Every stage section's settings model (an error if a stage cannot be imported)."""
    return {section: _load_section(section, module, attr)
            for section, (module, attr) in STAGE_SECTIONS.items()}


@functools.cache
def run_settings_model() -> type[StrictModel]:
    """The whole run file's model: ``run``, the available stages, ``execution``."""
    fields: dict[str, Any] = {
        "run": (RunSection, Field(default_factory=RunSection, description=RunSection.__doc__)),
    }
    for section, model in available_sections().items():
        fields[section] = (model, Field(default_factory=model,
                                        description=(model.__doc__ or section).strip()
                                        .splitlines()[0]))
    fields["execution"] = (ExecutionSettings, Field(
        default_factory=ExecutionSettings,
        description="machine settings: engine, provider, workers, MPI ranks, threads "
                    "(never part of a fingerprint)"))
    return create_model("RunSettings", __base__=StrictModel,
                        __doc__="A scalebridge run file.", **fields)


def parse_run_settings(data: dict[str, Any], source: str = "settings",
                       base_dir: Path | None = None) -> Any:
    """Validate a run file's data; relative paths resolve against ``base_dir``: ``run.data``,
    ``run.test_data`` and every stage section's own (a section with ``resolve_paths``,
    e.g. ``[continuum.problem] mesh``).

    Raises:
        SettingsError: unknown section (with did-you-mean), unknown key, wrong type.
    """
    model = run_settings_model()
    known = list(model.model_fields)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known + list(STAGE_SECTIONS), n=1)
            if key in STAGE_SECTIONS:
                raise SettingsError(f"{source}: stage [{key}] is not available in this "
                                    f"installation (its package failed to import)")
            hint = f"; did you mean [{close[0]}]?" if close else f"; known: {', '.join(known)}"
            raise SettingsError(f"{source}: unknown stage or section [{key}]{hint}")
    settings = validate(model, data, source=source)
    if base_dir is not None:
        run = settings.run
        run.data = [p if p.is_absolute() else (base_dir / p).resolve() for p in run.data]
        run.test_data = [p if p.is_absolute() else (base_dir / p).resolve()
                         for p in run.test_data]
        for section in available_sections():
            stage = getattr(settings, section, None)
            if hasattr(stage, "resolve_paths"):
                setattr(settings, section, stage.resolve_paths(base_dir.resolve()))
    return settings


def load_run_settings(path: str | Path) -> Any:
    """Read and validate a run TOML file (paths in it are relative to the file)."""
    path = Path(path)
    return parse_run_settings(load_toml(path), source=str(path),
                              base_dir=path.absolute().parent)


def schema_text() -> str:
    """Every key of the run file with its default and description (``scalebridge schema``)."""
    model = run_settings_model()
    lines = ["# scalebridge run file: every key, its default and what it means.",
             "# Sections: " + ", ".join(f"[{k}]" for k in model.model_fields), ""]
    for name, f in model.model_fields.items():
        sub = f.annotation
        lines.append(f"[{name}]  # {f.description}" if f.description else f"[{name}]")
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            lines.extend(schema_doc(sub, prefix=f"{name}."))
        lines.append("")
    return "\n".join(lines)


__all__ = ["STAGE_SECTIONS", "RunSection", "available_sections", "import_stage",
           "load_run_settings",
           "parse_run_settings", "run_settings_model", "schema_text"]
