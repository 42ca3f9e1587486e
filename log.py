"""Console logging and progress bars (rich), shared by every stage."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


def setup_logging(verbose: int = 0) -> None:
    """Log ``scalebridge.*`` to the console (rich when on a terminal).

    Each artifact additionally gets everything in its ``log.txt`` (see ``produce``).
    """
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logger = logging.getLogger("scalebridge")
    logger.setLevel(level)
    if any(getattr(h, "_scalebridge_console", False) for h in logger.handlers):
        return
    try:
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, rich_tracebacks=False,
                                               markup=False)
        handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    except ImportError:  # pragma: no cover
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler._scalebridge_console = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


def _progress_enabled() -> bool:
    return sys.stderr.isatty() and not os.environ.get("SCALEBRIDGE_NO_PROGRESS")


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[callable]:
    """Context manager yielding ``advance(n=1)``; draws a rich bar on a terminal.

    Example::

        with progress("training", total=steps) as advance:
            for line in output: ...; advance(100)
    """
    if not _progress_enabled():
        yield lambda n=1: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.completed:.0f}/{task.total}"), TimeElapsedColumn(),
                  transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (plain iteration when not on a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(description, total) as advance:
        for item in items:
            yield item
            advance(1)
