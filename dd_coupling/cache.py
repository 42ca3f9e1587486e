"""A small bounded cache for values the DD recomputes from the same inputs every step.

The engine's mesh factors (:mod:`.field`) and the neural law's coefficients
(:mod:`.neural`) depend on inputs that repeat from step to step (the dislocation count,
the temperature); both keep the last few in a :class:`BoundedCache`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any


class BoundedCache:
    """At most ``entries`` values of total ``size`` at most ``limit`` (in the caller's unit,
    e.g. bytes or numbers), the oldest dropped first; a value larger than ``limit`` alone
    is not kept."""

    def __init__(self, entries: int, limit: int) -> None:
        self.entries, self.limit = entries, limit
        self._items: dict[Hashable, tuple[Any, int]] = {}

    def get(self, key: Hashable) -> Any:
        """The value kept for ``key``, or None."""
        hit = self._items.get(key)
        return None if hit is None else hit[0]

    def put(self, key: Hashable, value: Any, size: int) -> None:
        """Keep ``value`` (of ``size``) for ``key``, dropping the oldest to make room."""
        items = self._items
        items.pop(key, None)
        while items and (len(items) >= self.entries
                         or size + sum(s for _, s in items.values()) > self.limit):
            items.pop(next(iter(items)))
        if size <= self.limit:
            items[key] = (value, size)
