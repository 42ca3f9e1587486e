"""Console logging and progress bars (rich), shared by every stage."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
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


#: Not on a terminal: a plain progress line at most this often (seconds), and only for
#: work that has run at least this long (short runs stay silent).
PLAIN_EVERY_S = 15.0


class _PlainProgress:
    """Progress as log lines (``training models: 40% (1200/3000), 62 s``) where no bar
    can be drawn: at each 10% step reached at least :data:`PLAIN_EVERY_S` after the
    previous line, and at the end if a line was written before."""

    def __init__(self, description: str, total: float | None,
                 every_s: float | None = None) -> None:
        self.description, self.total = description, total
        self.every_s = PLAIN_EVERY_S if every_s is None else every_s
        self.done = 0.0
        self.t0 = self.last = time.monotonic()
        self.decile = 0
        self.lines = 0
        self.log = logging.getLogger("scalebridge.progress")

    def _line(self, now: float) -> None:
        if self.total:
            pct = 100.0 * self.done / self.total
            msg = (f"{self.description}: {pct:.0f}% ({self.done:.0f}/{self.total:.0f}), "
                   f"{now - self.t0:.0f} s")
        else:
            msg = f"{self.description}: {self.done:.0f} done, {now - self.t0:.0f} s"
        self.log.info(msg)
        self.last = now
        self.lines += 1

    def advance(self, n: float = 1) -> None:
        # callers count what the program reports (e.g. LAMMPS minimiser iterations on
        # the step counter), which can run past the planned total: never show > 100%
        self.done = min(self.done + n, self.total) if self.total else self.done + n
        now = time.monotonic()
        if now - self.last < self.every_s:
            return
        if self.total:
            decile = int(10 * min(self.done / self.total, 1.0))
            if decile <= self.decile:
                return
            self.decile = decile
        self._line(now)

    def close(self) -> None:
        if self.lines and (not self.total or self.done < self.total or self.decile < 10):
            self._line(time.monotonic())


@contextmanager
def progress(description: str, total: float | None = None) -> Iterator[Callable[..., None]]:
    """Context manager yielding ``advance(n=1)``: a rich bar on a terminal, plain log
    lines (``scalebridge.progress``, at most every :data:`PLAIN_EVERY_S` s, at 10% steps)
    when not on one or with ``SCALEBRIDGE_NO_PROGRESS`` set.

    Example::

        with progress("training", total=steps) as advance:
            for line in output: ...; advance(100)
    """
    if not _progress_enabled():
        plain = _PlainProgress(description, total)
        try:
            yield plain.advance
        finally:
            plain.close()
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
