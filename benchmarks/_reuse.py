"""Benchmarks that reuse an artifact say so (imported by the scripts beside it).

``produce`` returns an artifact it found current with ``reused=True``; its build time was
measured when it was made, by the code recorded in its manifest, not now. A benchmark
reports such a time as ``null`` beside the reuse record, never as a measurement::

    t0 = time.perf_counter()
    art = settings.make(data, work / "surrogate")
    rec["fit_wall_s"], rec["reused"] = measured(art, time.perf_counter() - t0)
    # reused: {"reused": true, "artifact": ".../surrogate", "made": "2026-11-22T04:12:09+00:00",
    #          "code": "3f9c…", "wall_seconds_when_made": 53.6}
"""

from __future__ import annotations

from typing import Any


def reuse_record(art: Any) -> dict[str, Any] | None:
    """What a benchmark JSON says about an artifact it did not build (None if it did):
    :func:`made_record`."""
    return made_record(art) if getattr(art, "reused", False) else None


def made_record(art: Any) -> dict[str, Any]:
    """The reuse record of an artifact a benchmark only read (``read_artifact``, never
    ``produce``): which artifact, when it was made, by which code (the code record's
    digest), and how long it took then."""
    m = art.manifest
    return {"reused": True, "artifact": str(art.path), "made": m.get("started"),
            "code": (m.get("code") or {}).get("digest"),
            "wall_seconds_when_made": m.get("wall_seconds")}


def measured(art: Any, seconds: float, ndigits: int = 1
             ) -> tuple[float | None, dict[str, Any] | None]:
    """(seconds measured now, or None when ``art`` was reused; its reuse record)."""
    rec = reuse_record(art)
    return (None if rec else round(seconds, ndigits)), rec


def record_reuse(rec: dict[str, Any], since: str) -> dict[str, Any] | None:
    """The reuse record of a chain node (its ``.chain/<node>.json`` record ``rec``) if
    the node was finished before ``since`` (ISO time the benchmark started): a stage
    the run skipped, whose seconds are not this run's."""
    finished = rec.get("finished") or ""
    if not finished or finished >= since:
        return None
    return {"reused": True, "artifact": rec.get("artifact"), "made": rec.get("started"),
            "code": (rec.get("code") or {}).get("digest"),
            "wall_seconds_when_made": rec.get("seconds")}
