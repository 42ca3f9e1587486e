"""What code made an artifact: hashes of the stage's source files and the tool versions.

A stage's result depends on the code it runs, not only on its settings and inputs. A
*code record* names that code::

    {"digest": "…",                                  hash of everything below
     "files": {"md/lammps.py": "…", "artifacts.py": "…", ...},   per-file source hashes
     "versions": {"scalebridge": "0.1.0", "torch": "2.11.0", ...}}

``files`` covers the stage's subpackages (every ``*.py`` under e.g. ``md/``), any single
modules named (``workflows/stage_md.py``), the shared root modules (:data:`ROOT_MODULES`),
and, transitively, every subpackage or root module those import (md loads models with
potentials, continuum runs surrogates; ``workflows`` is never added whole). A file's hash
is that of its syntax tree with docstrings removed (``ast.dump``), so comment, blank-line
and docstring edits do not count; any change of behaviour does. ``versions`` are those of
:data:`VERSIONED` that are installed.

Hashes are cached per file by (size, mtime), so a record costs a ``stat`` per file after
the first call. ``SCALEBRIDGE_CODE_ROOT`` (or :func:`set_code_root`) points the hashing at
another copy of the package sources (tests edit a temporary copy).

Example::

    rec = code_fingerprint(("md",))
    rec["files"]["md/lammps.py"]
    changed_files(old_rec, rec)       # ["md/lammps.py"]
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

#: Root modules every stage runs.
ROOT_MODULES = ("__init__.py", "artifacts.py", "settings.py", "errors.py", "runtime.py",
                "log.py")

#: Stage subpackages (an entry of ``packages`` that is one of these is a folder).
STAGE_PACKAGES = ("potentials", "md", "dd_coupling", "surrogates", "continuum", "workflows")

#: Distributions whose versions enter every code record (absent ones are left out).
VERSIONED = ("scalebridge", "deepmd-kit", "lammps", "dolfinx-solver-real", "petsc4py",
             "torch")

ENV_ROOT = "SCALEBRIDGE_CODE_ROOT"

_root_override: Path | None = None
_lock = threading.Lock()
_file_cache: dict[tuple[str, int, int], tuple[str, frozenset[str]]] = {}


def set_code_root(path: str | os.PathLike[str] | None) -> None:
    """Hash the sources under ``path`` instead of the installed package (None: reset)."""
    global _root_override
    _root_override = Path(path) if path is not None else None


def code_root() -> Path:
    """The folder holding the package sources: :func:`set_code_root`, else
    ``$SCALEBRIDGE_CODE_ROOT``, else the installed ``scalebridge`` package."""
    if _root_override is not None:
        return _root_override
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env)
    import scalebridge

    return Path(scalebridge.__file__).parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _imported_packages(tree: ast.AST) -> frozenset[str]:
    """First-level ``scalebridge`` names a module imports anywhere in it (``md`` for
    ``scalebridge.md.lammps``, ``modelfiles`` for ``scalebridge.modelfiles``)."""
    out = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "scalebridge":
                out.add(parts[1])
    return frozenset(out)


def source_hash(path: Path) -> tuple[str, frozenset[str]]:
    """(hash of the module's docstring-free syntax tree, stage packages it imports).
    A file that does not parse is hashed by its bytes."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _lock:
        hit = _file_cache.get(key)
    if hit is not None:
        return hit
    data = path.read_bytes()
    try:
        tree = ast.parse(data, filename=str(path))
    except (SyntaxError, ValueError):
        result = ("bytes:" + hashlib.sha256(data).hexdigest(), frozenset())
    else:
        imports = _imported_packages(tree)
        dump = ast.dump(_strip_docstrings(tree), include_attributes=False)
        result = (hashlib.sha256(dump.encode()).hexdigest(), imports)
    with _lock:
        _file_cache[key] = result
    return result


def clear_cache() -> None:
    """Forget the per-file hashes (they are revalidated by size and mtime anyway)."""
    with _lock:
        _file_cache.clear()


def _package_files(root: Path, package: str) -> list[Path]:
    folder = root / package
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def tool_versions() -> dict[str, str]:
    """Installed versions of :data:`VERSIONED`."""
    out: dict[str, str] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "scalebridge":  # not installed (sources on sys.path)
                try:
                    import scalebridge
                except ImportError:
                    continue
                out[name] = getattr(scalebridge, "__version__", "unknown")
    return out


def code_fingerprint(packages: Sequence[str] = ()) -> dict[str, Any]:
    """The code record of a stage that runs ``packages``.

    Args:
        packages: stage subpackages (``"md"``) and/or single modules relative to the
            package root (``"workflows/stage_md.py"``). The subpackages and root modules
            that these import (statically, anywhere in a module) are added, transitively,
            except ``workflows`` (name its modules one by one).

    Returns:
        ``{"digest", "packages", "files": {relpath: hash}, "versions": {...}}``.
    """
    root = code_root()
    files: dict[str, str] = {}
    seen_pkgs: set[str] = set()

    def add(p: Path) -> frozenset[str]:
        rel = p.relative_to(root).as_posix()
        if rel in files:
            return frozenset()
        h, imports = source_hash(p)
        files[rel] = h
        return imports

    def follow(names: frozenset[str]) -> None:
        for name in sorted(names):
            if name in STAGE_PACKAGES:
                if name not in seen_pkgs and name != "workflows":
                    todo.append(name)
            elif (root / f"{name}.py").is_file() and f"{name}.py" not in files:
                todo.append(f"{name}.py")

    todo = list(ROOT_MODULES) + list(packages)
    while todo:
        entry = todo.pop(0)
        if entry.endswith(".py"):
            p = root / entry
            if not p.is_file():
                if entry not in ROOT_MODULES:
                    files[entry] = "missing"
                continue
            follow(add(p))
        elif entry not in seen_pkgs:
            seen_pkgs.add(entry)
            for p in _package_files(root, entry):
                follow(add(p))
    files = dict(sorted(files.items()))
    versions = tool_versions()
    digest = hashlib.sha256(json.dumps({"files": files, "versions": versions},
                                       sort_keys=True).encode()).hexdigest()
    return {"digest": digest, "packages": sorted(seen_pkgs | set(packages)),
            "files": files, "versions": versions}


def changed_files(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Files (relative to the package root) whose hash differs, appeared or vanished."""
    a = dict((old or {}).get("files") or {})
    b = dict(new.get("files") or {})
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def changed_versions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """``["torch 2.11.0 -> 2.12.0", ...]`` for the tool versions that differ."""
    a = dict((old or {}).get("versions") or {})
    b = dict(new.get("versions") or {})
    return [f"{k} {a.get(k, 'absent')} -> {b.get(k, 'absent')}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def describe_change(old: Mapping[str, Any] | None, new: Mapping[str, Any],
                    limit: int = 4) -> list[str]:
    """Status reasons: ``code changed (md/lammps.py, ...)``, ``versions changed (...)``."""
    out = []
    if old is None or "files" not in old:
        return ["code unknown (made before code was recorded)"]
    files = changed_files(old, new)
    if files:
        more = f", ... {len(files) - limit} more" if len(files) > limit else ""
        out.append(f"code changed ({', '.join(files[:limit])}{more})")
    vers = changed_versions(old, new)
    if vers:
        out.append(f"versions changed ({', '.join(vers)})")
    return out


__all__ = ["ENV_ROOT", "ROOT_MODULES", "STAGE_PACKAGES", "VERSIONED", "changed_files",
           "changed_versions", "clear_cache", "code_fingerprint", "code_root",
           "describe_change", "set_code_root", "source_hash", "tool_versions"]
