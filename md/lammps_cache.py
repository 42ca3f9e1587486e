"""Finished LAMMPS runs kept by their exact inputs, so changed analysis code re-reads them.

A glide or Peierls run is hours of MD; the analysis of its output (DXA, the velocity fit,
the classification of a point) is seconds. Keying a finished run by the code that
produced it re-runs the MD whenever any of that code changes, analysis included. Keyed
here by what LAMMPS actually saw, a run is reused only when the new code writes the same
input: :func:`inputs_digest` hashes ``in.lmp``, every work-directory file it reads
(``read_data``, ``include``, ``read_restart``, ``read_dump``, ``molecule``), the content
of every absolute file path it names (the potential's model files), the LAMMPS and
DeePMD-kit versions and the ranks and threads (they change the floating-point order).
Anything else (a new seed, another relaxation, another potential) is another key.

:func:`run_lammps <scalebridge.md.lammps.run_lammps>` looks the digest up in the
directory named by ``$SCALEBRIDGE_LAMMPS_CACHE`` (unset: no cache) before it launches,
copies a hit's outputs into the work directory instead of running, and stores the
outputs of a run it did launch. :func:`seed_from_run` adds a finished run directory made
without the cache (its ``in.lmp`` beside its outputs and a complete ``log.lammps``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

#: Environment variable naming the cache directory.
CACHE_ENV = "SCALEBRIDGE_LAMMPS_CACHE"

#: LAMMPS commands whose first file argument is an input (``molecule``: the second).
_READS = {"read_data": 1, "include": 1, "read_restart": 1, "read_dump": 1, "molecule": 2}

#: Files of a run directory that LAMMPS writes whatever the input says.
_ALWAYS = ("log.lammps", "lmp.out")


def cache_dir() -> Path | None:
    """The cache directory from ``$SCALEBRIDGE_LAMMPS_CACHE``, or None."""
    v = os.environ.get(CACHE_ENV)
    return Path(v) if v else None


@functools.cache
def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("lammps", "deepmd-kit"):
        try:
            out.append(f"{pkg}={version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg}=none")
    return ";".join(out)


@functools.cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tokens(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            try:
                rows.append(shlex.split(line))
            except ValueError:
                rows.append(line.split())
    return rows


def input_files(workdir: Path) -> tuple[list[str], list[str]]:
    """(work-directory files ``in.lmp`` reads, absolute files it names) of ``workdir``."""
    rows = _tokens((workdir / "in.lmp").read_text())
    local, absolute = [], []
    for row in rows:
        k = _READS.get(row[0])
        if k is not None and len(row) > k and (workdir / row[k]).is_file():
            local.append(row[k])
        for tok in row[1:]:
            if tok.startswith("/") and Path(tok).is_file():
                absolute.append(tok)
    return sorted(set(local)), sorted(set(absolute))


def inputs_digest(workdir: Path, mpi_ranks: int = 1, threads: int = 1) -> str:
    """sha256 of everything that decides what LAMMPS computes in ``workdir`` (see the
    module docstring)."""
    workdir = Path(workdir)
    local, absolute = input_files(workdir)
    h = hashlib.sha256()
    h.update(f"{_versions()};ranks={mpi_ranks};threads={threads}\n".encode())
    h.update((workdir / "in.lmp").read_bytes())
    for name in local:
        h.update(f"\n{name}\n".encode())
        h.update((workdir / name).read_bytes())
    for p in absolute:
        st = os.stat(p)
        h.update(f"\n{p} {_file_digest(p, st.st_size, st.st_mtime_ns)}\n".encode())
    return h.hexdigest()


def _entry(cache: Path, digest: str) -> Path:
    return cache / digest[:2] / digest


def restore(cache: Path, digest: str, workdir: Path) -> bool:
    """Copy a cached run's outputs into ``workdir``; False when there is none."""
    entry = _entry(cache, digest)
    if not (entry / "outputs.json").is_file():
        return False
    for name in json.loads((entry / "outputs.json").read_text()):
        shutil.copy2(entry / name, Path(workdir) / name)
    return True


def store(cache: Path, digest: str, workdir: Path, outputs: list[str]) -> None:
    """Keep ``outputs`` (names in ``workdir``) under ``digest``, atomically (a finished
    entry is never half written)."""
    entry = _entry(cache, digest)
    if (entry / "outputs.json").is_file():
        return
    tmp = entry.with_name(f"{digest}.partial.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in outputs:
        shutil.copy2(Path(workdir) / name, tmp / name)
    (tmp / "outputs.json").write_text(json.dumps(sorted(outputs)))
    try:
        tmp.rename(entry)
    except OSError:             # another process stored the same run first
        shutil.rmtree(tmp, ignore_errors=True)


def seed_from_run(cache: Path, run_dir: Path, mpi_ranks: int = 1, threads: int = 1) -> bool:
    """Add a finished run directory made without the cache: its inputs as
    :func:`inputs_digest` sees them, its outputs the files LAMMPS writes anyway
    (``log.lammps``, ``lmp.out``) and every other file whose name ``in.lmp`` mentions.
    Only a run whose ``log.lammps`` ends with its total wall time counts as finished."""
    run_dir = Path(run_dir)
    log = run_dir / "log.lammps"
    if not ((run_dir / "in.lmp").is_file() and log.is_file()
            and "Total wall time" in log.read_text(errors="replace")[-400:]):
        return False
    local, _ = input_files(run_dir)
    named = {t for row in _tokens((run_dir / "in.lmp").read_text()) for t in row}
    outputs = [f.name for f in run_dir.iterdir() if f.is_file()
               and f.name not in local and f.name != "in.lmp"
               and (f.name in _ALWAYS or f.name in named)]
    store(cache, inputs_digest(run_dir, mpi_ranks, threads), run_dir, outputs)
    return True


__all__ = ["CACHE_ENV", "cache_dir", "input_files", "inputs_digest", "restore",
           "seed_from_run", "store"]
