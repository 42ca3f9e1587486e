"""The chain: stage nodes under one run directory, with caching, status and resume.

A :class:`StageNode` names a stage, the nodes it reads, the settings that determine its
result and the function that makes its artifact (through
:func:`scalebridge.artifacts.produce`, so every write is atomic)::

    <run-dir>/
        dataset/ potential/ properties/ ...   one artifact per node (manifest.json inside)
        <node>.failed.json                    why the last attempt failed (if it did)
        <node>.failed/                        that attempt's logs (log.txt, *.out, *.log)
        .chain/<node>.json                    the chain record: fingerprint, settings, times
        report.md, report.html                the run report

Each node's *chain fingerprint* hashes its name, artifact kind, its settings (as JSON),
the contents of its input files, its code record (the source hashes of the subpackages
and modules it runs, ``StageNode.code`` plus this file, and the tool versions: see
:mod:`scalebridge.codehash`) and the chain fingerprints of its upstream nodes, so it
is known from the settings file and the installed code alone, before anything runs.
Settings enter it in full, defaults included: a new version of a stage that adds a
setting changes the stage's code, so that stage reruns (and the ones after it).
A done node whose artifact's files no longer match their recorded hashes is *damaged*
(``status`` names the file) and is rebuilt by the next run. A node whose record and
artifact match it is skipped; a changed setting changes that node's fingerprint and so
every fingerprint downstream of it, and only those nodes rerun. A run killed at any
moment (even ``kill -9``) leaves complete artifacts or none: the next run cleans the
partial directories and continues from the first node that is not done.

A dry run (``dry_run=True``) makes and records nothing: each node that can writes its
inputs into ``<run-dir>/<node>.dry_run/`` (:func:`scalebridge.artifacts.dry_run_path`;
:attr:`StageNode.dry_run`), emptied first; a cheap node whose artifact a later node reads
(the DFT dataset the training inputs point to) is built there too, never in
``<run-dir>/<node>/``. A run directory that the dry run created and left empty is removed
again; a node's ``.dry_run/`` goes once the node is made for real.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import difflib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scalebridge.artifacts import (
    Artifact,
    _jsonable,
    check_replaceable,
    clean_partials,
    clear_dry_run,
    clear_failure,
    content_digest,
    elsewhere_note,
    failure_logs_path,
    failure_record,
    failure_record_path,
    fresh_dry_run_dir,
    keep_failure_logs,
    read_artifact,
    sha256_path,
    verify_artifact,
    write_json_atomic,
)
from scalebridge.codehash import code_fingerprint, describe_change
from scalebridge.errors import (
    ArtifactError,
    Interrupted,
    ScalebridgeError,
    SettingsError,
    os_error_line,
)
from scalebridge.runtime import stop_on_signals
from scalebridge.settings import Resources
from scalebridge.workflows.engine import LocalMapper, Mapper

log = logging.getLogger("scalebridge.workflows")

RECORDS = ".chain"
#: Modules every node runs besides its own ``code`` (the chain itself).
CHAIN_CODE = ("workflows/chain.py",)
TASKS = ".tasks"
_WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS)
LOCK = ".lock"


@dataclass
class StageCall:
    """Everything a node's function gets.

    Attributes:
        node: the node being made.
        config: the whole run configuration (e.g. the validated run file).
        settings: this node's settings (``node.settings(config)``).
        inputs: upstream artifacts by node name.
        files: this node's input files by name.
        out: the artifact directory to make (``<run-dir>/<node.name>``).
        run_dir: the run directory.
        mapper: fan-out engine for independent tasks.
        resources: MPI ranks and threads per task.
        dry_run: write inputs only, do not run programs.
        fingerprint: the node's chain fingerprint (e.g. to key task caches).
        force: rebuild the artifact even if a current one exists (``--force``).
    """

    node: StageNode
    config: Any
    settings: Any
    inputs: dict[str, Artifact]
    files: dict[str, Path]
    out: Path
    run_dir: Path
    mapper: Mapper
    resources: Resources
    dry_run: bool = False
    fingerprint: str = ""
    force: bool = False


@dataclass(frozen=True)
class StageNode:
    """One stage of the chain.

    Attributes:
        name: node name, also the artifact directory (``dataset``, ``potential``, ...).
        kind: the artifact kind it makes (``DFTDataset``, ``Potential``, ...).
        inputs: names of upstream nodes whose artifacts it reads.
        make: ``make(call) -> Artifact``: builds ``call.out`` via ``produce``.
        settings: ``settings(config) -> settings object`` entering the fingerprint.
        files: ``files(config) -> {name: path}`` input files entering the fingerprint.
        dry_run: ``dry_run(call) -> list of files written``, for stages that can write
            their inputs without running; None if the stage cannot.
        section: the run-file section its settings come from (for messages).
        cheap: seconds to make (e.g. reading the DFT data): when a later node of a dry
            run reads it, the dry run builds it into ``<node>.dry_run/`` (not recorded,
            never the node's artifact), so that node can write its inputs.
        code: the subpackages and modules it runs, relative to the package root
            (``("md", "workflows/stage_md.py")``); their source hashes enter the chain
            fingerprint (:func:`scalebridge.codehash.code_fingerprint`; the root modules
            and ``workflows/chain.py`` always do).
    """

    name: str
    kind: str
    inputs: tuple[str, ...]
    make: Callable[[StageCall], Artifact]
    settings: Callable[[Any], Any] = field(default=lambda config: {})
    files: Callable[[Any], Mapping[str, Path]] = field(default=lambda config: {})
    dry_run: Callable[[StageCall], list[Path]] | None = None
    section: str = ""
    cheap: bool = False
    code: tuple[str, ...] = ()


@dataclass
class NodeStatus:
    """What ``scalebridge status`` shows for one node."""

    name: str
    state: str                  # done | stale | damaged | failed | running | pending
    reason: str = ""
    seconds: float | None = None
    fingerprint: str = ""
    artifact: Path | None = None


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): d}


def settings_diff(old: Any, new: Any, limit: int = 3) -> str:
    """``"a.b: 1 -> 2, c: x -> y"``: the keys whose values differ."""
    fo, fn = _flatten(old), _flatten(new)
    keys = sorted(k for k in set(fo) | set(fn) if fo.get(k, "<unset>") != fn.get(k, "<unset>"))
    parts = [f"{k}: {fo.get(k, '<unset>')!r} -> {fn.get(k, '<unset>')!r}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"... {len(keys) - limit} more")
    return ", ".join(parts)


class Chain:
    """An ordered list of stage nodes (each node after the nodes it reads)."""

    def __init__(self, nodes: Sequence[StageNode]) -> None:
        seen: set[str] = set()
        for n in nodes:
            if n.name in seen:
                raise ScalebridgeError(f"chain: node {n.name!r} appears twice")
            missing = [i for i in n.inputs if i not in seen]
            if missing:
                raise ScalebridgeError(
                    f"chain: node {n.name!r} reads {missing} which no earlier node makes")
            seen.add(n.name)
        self.nodes = list(nodes)
        self.by_name = {n.name: n for n in self.nodes}

    # ------------------------------------------------------------------ planning
    def plan(self, config: Any) -> dict[str, dict[str, Any]]:
        """Each node's chain record-to-be: ``fingerprint``, ``settings``, ``files``,
        ``upstream``, ``code``; computed from the configuration and the installed code."""
        plan: dict[str, dict[str, Any]] = {}
        hashes: dict[str, str] = {}
        for n in self.nodes:
            settings_json = _jsonable(n.settings(config))
            files = {k: Path(v) for k, v in n.files(config).items()}
            file_hashes = {}
            for k, p in sorted(files.items()):
                key = str(p)
                if key not in hashes:
                    if not p.exists():
                        raise ScalebridgeError(
                            f"{n.section or n.name}: input file {k!r} does not exist: {p}")
                    hashes[key] = sha256_path(p)
                file_hashes[k] = hashes[key]
            upstream = {u: plan[u]["fingerprint"] for u in n.inputs}
            code = code_fingerprint(tuple(n.code) + CHAIN_CODE)
            fp = _digest({"node": n.name, "kind": n.kind, "settings": settings_json,
                          "files": file_hashes, "upstream": upstream,
                          "code": code["digest"]})
            plan[n.name] = {"fingerprint": fp, "settings": settings_json,
                            "files": {k: str(p) for k, p in files.items()},
                            "file_hashes": file_hashes, "upstream": upstream, "code": code}
        return plan

    def selected(self, until: str | None) -> list[StageNode]:
        """Nodes up to and including ``until`` (all when None)."""
        if until is None:
            return list(self.nodes)
        if until not in self.by_name:
            raise SettingsError(f"unknown stage {until!r}{self._stage_hint(until)}")
        idx = [n.name for n in self.nodes].index(until)
        return self.nodes[: idx + 1]

    def check_request(self, until: str | None, force: Sequence[str] = ()
                      ) -> list[StageNode]:
        """The nodes a run with ``until`` makes (:meth:`selected`), once every name in
        ``until`` and ``force`` is a stage and every forced stage is among them.

        Raises:
            SettingsError: ``unknown stage 'potentials' in --force; did you mean
                'potential'? ([potentials] configures the stages dataset, potential)``;
                a forced stage after ``until``.
        """
        nodes = self.selected(until)
        names = [n.name for n in nodes]
        for name in (force,) if isinstance(force, str) else force:
            if name not in self.by_name:
                raise SettingsError(f"unknown stage {name!r} in --force"
                                    f"{self._stage_hint(name)}")
            if name not in names:
                raise SettingsError(
                    f"--force {name}: the run stops after {until} (--until or [run] "
                    f"stop_after), before {name}, so it would not be made")
        return nodes

    def _stage_hint(self, name: str) -> str:
        """``; did you mean 'potential'? ([potentials] configures the stages dataset,
        potential)`` for a name that is not a stage: the close stage name, and the
        stages a settings section of that name configures."""
        close = difflib.get_close_matches(name, list(self.by_name), n=1)
        configured = [n.name for n in self.nodes
                      if n.section and (n.section == name or name in n.section.split("."))]
        hint = f"; did you mean {close[0]!r}?" if close else ""
        if configured:
            what = "the stage" if len(configured) == 1 else "the stages"
            hint += f" ([{name}] configures {what} {', '.join(configured)})"
        elif not close:
            hint = f"; stages: {', '.join(self.by_name)}"
        return hint

    # ------------------------------------------------------------------ status
    def status(self, run_dir: Path, config: Any) -> list[NodeStatus]:
        """done / stale / failed / pending for every node, with the reason."""
        run_dir = Path(run_dir)
        plan = self.plan(config)
        out: list[NodeStatus] = []
        states: dict[str, str] = {}
        holder = lock_holder(run_dir)
        for n in self.nodes:
            st = self._node_status(run_dir, n, plan[n.name], states)
            tasks = run_dir / TASKS / n.name / plan[n.name]["fingerprint"][:16]
            kept = [p for p in tasks.glob("*") if p.is_dir() and not p.name.endswith(".partial")]
            if st.state == "pending" and kept and holder is None:
                st.reason = f"interrupted; {len(kept)} finished task(s) kept for the next run"
            if st.state in ("pending", "stale") and list(run_dir.glob(f".{n.name}.partial-*")):
                if holder is not None:
                    st.state, st.reason = "running", f"being made by pid {holder}"
                else:
                    st.reason = "interrupted (a partial build is left; the next run cleans " \
                                "it and starts this stage again)"
            states[n.name] = st.state
            out.append(st)
        return out

    def _node_status(self, run_dir: Path, n: StageNode, want: dict[str, Any],
                     states: Mapping[str, str]) -> NodeStatus:
        path = run_dir / n.name
        rec = _read_record(run_dir, n.name)
        fail = _read_json(failure_record_path(path))  # under another name beside a user's
        art_ok = (path / "manifest.json").is_file()
        st = NodeStatus(n.name, "pending", fingerprint=want["fingerprint"][:12],
                        artifact=path if art_ok else None)
        if rec is not None:
            st.seconds = rec.get("seconds")
        if fail is not None and (rec is None or fail.get("time", "") > rec.get("finished", "")):
            st.state = "failed"
            st.reason = f"{fail.get('error_type', 'Error')}: {fail.get('error', '?')}"
            return st
        if rec is None or not art_ok:
            if art_ok:
                st.state, st.reason = "stale", "artifact has no chain record"
            else:
                ups = [u for u in n.inputs if states.get(u) != "done"]
                st.reason = f"waits for {', '.join(ups)}" if ups else "not run yet"
            return st
        if rec.get("fingerprint") == want["fingerprint"]:
            try:
                art = read_artifact(path)
            except ArtifactError as e:
                st.state, st.reason = "stale", str(e)
                return st
            if art.fingerprint != rec.get("artifact_fingerprint"):
                st.state, st.reason = "stale", "artifact replaced since the chain recorded it"
                return st
            problems = verify_artifact(art)
            if problems:
                st.state, st.reason = "damaged", _problems_text(problems)
                return st
            moved = _upstream_moved(run_dir, n, rec)
            if moved:
                st.state = "stale"
                st.reason = f"upstream rebuilt with other content: {', '.join(moved)}"
                return st
            st.state = "done"
            return st
        st.state = "stale"
        reasons = []
        if rec.get("settings") != want["settings"]:
            reasons.append(f"settings changed ({settings_diff(rec.get('settings'),
                                                               want['settings'])})")
        changed_files = [k for k, h in want["file_hashes"].items()
                         if rec.get("file_hashes", {}).get(k) != h]
        if changed_files:
            reasons.append(f"input changed: {', '.join(changed_files)}")
        if rec.get("code", {}).get("digest") != want["code"]["digest"]:
            reasons.extend(describe_change(rec.get("code"), want["code"]))
        changed_up = [u for u, fp in want["upstream"].items()
                      if rec.get("upstream", {}).get(u) != fp]
        if changed_up:
            reasons.append(f"upstream changed: {', '.join(changed_up)}")
        st.reason = "; ".join(reasons) or "fingerprint changed"
        return st

    # ------------------------------------------------------------------ running
    def run(self, run_dir: Path, config: Any, *, mapper: Mapper | None = None,
            resources: Resources | None = None, until: str | None = None,
            dry_run: bool = False, force: Sequence[str] = (),
            on_node: Callable[[str, str], None] | None = None,
            on_locked: Callable[[], None] | None = None,
            on_dry_run: Callable[[str, list[Path], str], None] | None = None
            ) -> dict[str, Artifact]:
        """Make every node (up to ``until``) that is not done; return their artifacts (a
        dry run: those of the done nodes it read and of the cheap nodes it built into
        ``<node>.dry_run/``).

        Args:
            run_dir: the run directory (created).
            config: the run configuration handed to every node.
            mapper: fan-out engine (default: local, serial).
            resources: per-task MPI ranks and threads.
            until: stop after this node.
            dry_run: nodes write their inputs into ``<node>.dry_run/`` without running;
                nothing is made or recorded (see the module's docstring); nodes whose
                upstream artifacts are missing are reported and left out.
            force: node names to remake even when done (each must be a node up to
                ``until``).
            on_node: ``on_node(name, event)`` with event in skipped|started|done|failed
                (a dry run: skipped for a done node, which it reads).
            on_dry_run: a dry run calls ``on_dry_run(name, files written, what)`` for
                every node, ``what`` a short phrase (``wrote its inputs``, ``needs
                potential, which a dry run does not make``, ...).
            on_locked: called once the request is valid and the run lock is held, before
                anything else is written (``pipeline.run`` records the settings there, so
                a refused or invalid run changes nothing on disk).

        Raises:
            SettingsError: an unknown stage in ``until`` or ``force``.
            ScalebridgeError: the run directory cannot be created (one line); the first
                failing node's one-line reason (recorded in ``<node>.failed.json``;
                ``status`` shows it).
            Interrupted: SIGTERM or SIGINT arrived (main thread): the running stage's
                programs were stopped, its partial work removed and ``interrupted``
                recorded in its ``<node>.failed.json``.
        """
        run_dir = Path(run_dir).absolute()
        mapper = mapper or LocalMapper()
        resources = resources or getattr(mapper, "resources", None) or Resources()
        force = (force,) if isinstance(force, str) else tuple(force)
        nodes = self.check_request(until, force)
        plan = self.plan(config)
        notify = on_node or (lambda name, event: None)
        dry_notify = on_dry_run or (lambda name, files, what: None)
        done: dict[str, Artifact] = {}
        created = make_run_dir(run_dir)
        written = 0
        with _run_lock(run_dir), stop_on_signals():
            if on_locked is not None:
                on_locked()
            for p in clean_partials(run_dir):
                log.info("removed the partial artifact %s left by an interrupted run", p.name)
            for n in nodes:
                want = plan[n.name]
                out = run_dir / n.name
                missing = [u for u in n.inputs if u not in done]
                if missing:  # only in dry runs: an upstream could not be made
                    log.info("%s: dry run skipped (needs %s, not made yet)", n.name,
                             ", ".join(missing))
                    dry_notify(n.name, [], f"needs {', '.join(missing)}, which a dry run "
                               "does not make")
                    continue
                rec = _read_record(run_dir, n.name)
                if (not dry_run and n.name not in force and rec is not None
                        and rec.get("fingerprint") == want["fingerprint"]):
                    try:
                        art = read_artifact(out)
                        if art.fingerprint == rec.get("artifact_fingerprint"):
                            problems = verify_artifact(art)
                            moved = [u for u in n.inputs if rec.get("upstream_content", {})
                                     .get(u, content_digest(done[u]))
                                     != content_digest(done[u])]
                            if problems:
                                log.warning("%s: damaged (%s): rebuilding it", n.name,
                                            _problems_text(problems))
                            elif moved:
                                log.info("%s: %s rebuilt with other content: remaking it",
                                         n.name, ", ".join(moved))
                            else:
                                done[n.name] = art
                                log.info("%s: up to date, skipped", n.name)
                                notify(n.name, "skipped")
                                continue
                    except ArtifactError:
                        pass
                call = StageCall(node=n, config=config, settings=n.settings(config),
                                 inputs={u: done[u] for u in n.inputs},
                                 files={k: Path(v) for k, v in n.files(config).items()},
                                 out=out, run_dir=run_dir, mapper=mapper,
                                 resources=resources, dry_run=dry_run,
                                 fingerprint=want["fingerprint"], force=n.name in force)
                if dry_run:
                    read_later = any(n.name in m.inputs for m in nodes)
                    arts, files, what, read = self._dry_run_node(n, call, rec, want,
                                                                 read_later)
                    if read:  # done: its artifact is read, not rebuilt
                        notify(n.name, "skipped")
                    done.update(arts)
                    written += len(files)
                    dry_notify(n.name, files, what)
                    continue
                notify(n.name, "started")
                log.info("%s: making %s", n.name, n.kind)
                t0 = time.perf_counter()
                started = _now()
                try:
                    # a folder of the user's (or another kind of artifact) there stops
                    # the stage before it starts
                    check_replaceable(out, n.kind, remedy="move it away or choose "
                                      "another --run-dir")
                    art = n.make(call)
                except BaseException as exc:
                    kept = _clean_partial_tasks(run_dir, n.name, out, exc)
                    where = _record_failure(out, n, want, exc)
                    notify(n.name, "failed")
                    if isinstance(exc, Interrupted):
                        raise Interrupted(exc.signum, n.name) from None
                    if isinstance(exc, ScalebridgeError):
                        raise type(exc)(f"stage {n.name}: {exc}"
                                        f"{elsewhere_note(failure_record(out), where, str(exc))}"
                                        ) from None
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                        raise
                    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
                        hint = " (is the disk full?)" if exc.errno != errno.EROFS else ""
                        left = f"; {kept} finished task(s) kept for the next run" if kept \
                            else ""
                        raise ScalebridgeError(
                            f"stage {n.name}: could not write {exc.filename or 'a file'}: "
                            f"{exc.strerror}{hint}; its partial work was removed{left}, "
                            "rerun when there is space") from None
                    raise ScalebridgeError(
                        f"stage {n.name} failed: {type(exc).__name__}: {exc} "
                        f"(details: {where})") from exc
                seconds = round(time.perf_counter() - t0, 3)
                _write_record(run_dir, n.name, {
                    **want, "kind": n.kind, "artifact": str(art.path),
                    "artifact_fingerprint": art.fingerprint, "seconds": seconds,
                    "upstream_content": {u: content_digest(done[u]) for u in n.inputs},
                    "started": started, "finished": _now()})
                clear_failure(out)  # a user's file or folder by those names stays
                clear_dry_run(out)  # made: an earlier dry run's inputs are out of date
                # finished fan-out tasks are kept until the record exists (a kill between
                # the artifact and its record reuses them); now they can go
                shutil.rmtree(run_dir / TASKS / n.name, ignore_errors=True)
                done[n.name] = art
                notify(n.name, "done")
                log.info("%s: done in %.1f s", n.name, seconds)
        if dry_run and created and not written:  # a dry run that wrote nothing leaves
            with contextlib.suppress(OSError):  # no empty run directory behind
                (run_dir / LOCK).unlink()
                run_dir.rmdir()
        return done

    def _dry_run_node(self, n: StageNode, call: StageCall, rec: dict[str, Any] | None,
                      want: dict[str, Any], read_later: bool
                      ) -> tuple[dict[str, Artifact], list[Path], str, bool]:
        """Dry run of one node: ``({name: artifact} for the nodes after it, the files it
        wrote, what it did, whether it is done and was read)``. A done node is read, not
        rebuilt (unless forced: then, as the real run would remake it, it writes its
        inputs); a cheap node that a later node reads is built into ``<node>.dry_run/``
        (never recorded); any other node writes its inputs there if it can. The folder is
        emptied first: what an earlier dry run left would look current. Nothing is
        recorded."""
        if not call.force and rec is not None and rec.get("fingerprint") == want["fingerprint"]:
            with contextlib.suppress(ArtifactError):
                return ({n.name: read_artifact(call.out)}, [],
                        "up to date (its artifact is read, not rebuilt)", True)
        if n.cheap:
            if not read_later:
                return {}, [], ("nothing to write: it only reads its input files, and no "
                               "later stage of this run needs it"), False
            where = fresh_dry_run_dir(call.out)
            log.info("%s: cheap, built into %s for the stages after it", n.name, where)
            art = n.make(dataclasses.replace(call, out=where))
            files = sorted(p for p in where.rglob("*") if p.is_file())
            return {n.name: art}, files, "built for the stages after it (not recorded)", False
        if n.dry_run is None:
            log.info("%s: this stage has no dry run; nothing written", n.name)
            return {}, [], "this stage has no dry run", False
        fresh_dry_run_dir(call.out)
        written = n.dry_run(call)
        log.info("%s: dry run wrote %d file(s): %s", n.name, len(written),
                 ", ".join(str(p) for p in written[:6]))
        return {}, written, "wrote its inputs", False


# ---------------------------------------------------------------------- records
def make_run_dir(run_dir: Path) -> bool:
    """Create ``run_dir`` and its parents; True when it did not exist.

    Raises:
        ScalebridgeError: one line naming the path and the problem (``run directory
            README.md is a file, not a directory``, ``cannot create run directory
            /proc/x: No such file or directory``).
    """
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        return False
    if run_dir.is_symlink() and not run_dir.exists():
        raise ScalebridgeError(f"run directory {run_dir} is a symbolic link to "
                               f"{os.readlink(run_dir)}, which does not exist")
    if run_dir.exists():
        raise ScalebridgeError(f"run directory {run_dir} is a file, not a directory: "
                               "choose another run directory")
    try:
        run_dir.mkdir(parents=True)
    except FileExistsError:
        if run_dir.is_dir():  # made by another process a moment ago
            return False
        raise ScalebridgeError(f"run directory {run_dir} is a file, not a directory: "
                               "choose another run directory") from None
    except NotADirectoryError:
        blocker = next((p for p in reversed(run_dir.parents)
                        if p.exists() and not p.is_dir()), run_dir.parent)
        raise ScalebridgeError(f"cannot create run directory {run_dir}: {blocker} is a "
                               "file, not a directory") from None
    except OSError as e:
        raise ScalebridgeError(f"cannot create run directory {run_dir}: "
                               f"{e.strerror or e}") from None
    return True


def _problems_text(problems: Sequence[str], limit: int = 3) -> str:
    more = f", ... {len(problems) - limit} more" if len(problems) > limit else ""
    return ", ".join(problems[:limit]) + more


def _upstream_moved(run_dir: Path, n: StageNode, rec: Mapping[str, Any]) -> list[str]:
    """Upstream nodes whose artifact content differs from what ``n`` was made from
    (e.g. rebuilt after damage); unknown (older records, missing artifacts): none."""
    known = rec.get("upstream_content") or {}
    moved = []
    for u in n.inputs:
        if u not in known:
            continue
        try:
            if content_digest(read_artifact(run_dir / u)) != known[u]:
                moved.append(u)
        except ArtifactError:
            continue
    return moved


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def _read_record(run_dir: Path, name: str) -> dict[str, Any] | None:
    return _read_json(run_dir / RECORDS / f"{name}.json")


def _write_record(run_dir: Path, name: str, record: dict[str, Any]) -> None:
    (run_dir / RECORDS).mkdir(exist_ok=True)
    write_json_atomic(run_dir / RECORDS / f"{name}.json", record)


def read_records(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every node's chain record in ``run_dir`` (name -> record)."""
    out = {}
    for p in sorted((Path(run_dir) / RECORDS).glob("*.json")):
        rec = _read_json(p)
        if rec is not None:
            out[p.stem] = rec
    return out


def _clean_partial_tasks(run_dir: Path, name: str, out: Path, exc: BaseException) -> int:
    """Remove the half-made fan-out tasks of a failed node (``.tasks/<node>/*/*.partial``),
    keeping their logs in ``<node>.failed/tasks/`` (or the other name
    :func:`scalebridge.artifacts.failure_logs_path` gives, when a folder of the user's is
    called ``<node>.failed``; ``exc``'s message now points there); return how many
    finished tasks are kept for the next run."""
    kept = 0
    logs = failure_logs_path(out)  # beside a folder of the user's called <node>.failed
    for d in sorted((run_dir / TASKS / name).glob("*/*")):
        if d.name.endswith(".partial"):
            with contextlib.suppress(OSError):
                keep_failure_logs(d, logs / "tasks" / d.name.removesuffix(".partial"), exc)
            shutil.rmtree(d, ignore_errors=True)
        elif d.is_dir():
            kept += 1
    return kept


def _record_failure(out: Path, n: StageNode, want: dict[str, Any], exc: BaseException
                    ) -> Path:
    """Write ``<node>.failed.json`` (produce writes it for failures inside a build; this
    covers failures before or after it, and adds the node's name); return where it went:
    a file of the user's by that name stays, and the record takes the other name
    :func:`scalebridge.artifacts.failure_record_path` gives."""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, Interrupted):  # status: "failed  Interrupted: by SIGTERM; ..."
        reason = (f"by {exc.signame}; its partial work was removed, the next run makes "
                  "this stage again")
    where = failure_record_path(out)
    prev = _read_json(where) or {}
    # produce() recorded a failure inside the build a moment ago: keep its traceback
    record = dict(prev) if _recent(prev.get("time", "")) else {"error": reason}
    record.update({"node": n.name, "kind": n.kind, "chain_fingerprint": want["fingerprint"],
                   "error": reason, "error_type": type(exc).__name__, "time": _now()})
    try:
        write_json_atomic(where, record)
    except OSError as e:  # e.g. the disk is full: the error itself still propagates
        log.warning("could not record the failure of %s: %s", n.name, e)
    return where


def _recent(iso: str, seconds: float = 5.0) -> bool:
    try:
        t = _dt.datetime.fromisoformat(iso)
    except ValueError:
        return False
    return (_dt.datetime.now(_dt.UTC) - t).total_seconds() < seconds


def lock_holder(run_dir: Path) -> str | None:
    """The pid holding ``run_dir``'s lock (a chain running there), or None."""
    path = Path(run_dir) / LOCK
    if not path.exists():
        return None
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            return fh.read().strip() or "?"
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None


@contextlib.contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """One chain process per run directory; the lock dies with its process (kill -9)."""
    try:
        fh = open(run_dir / LOCK, "a+")
    except OSError as e:  # a read-only run directory, a full disk: one line
        raise ScalebridgeError(os_error_line(e) or str(e)) from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise ScalebridgeError(f"run directory {run_dir} is in use by pid {holder}; "
                               "wait for it or kill it") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
    except OSError as e:
        fh.close()
        e.filename = e.filename or str(run_dir / LOCK)
        raise ScalebridgeError(os_error_line(e) or str(e)) from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


__all__ = ["Chain", "NodeStatus", "StageCall", "StageNode", "make_run_dir", "read_records",
           "settings_diff"]
