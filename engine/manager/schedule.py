"""Due times of many mappings in one heap, pure (fed ``now``, no clock, no loop), and
the one loop timer that rings at the earliest of them (:class:`Alarm`, the asyncio side).

One timer serves every mapping: 10,000 mappings cost 10,000 heap entries, not
10,000 sleeping tasks. Setting a key's due time again replaces the old one (the
old heap entry is left behind and skipped when it comes up).
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["Alarm", "DueTimes"]

K = TypeVar("K", bound=Hashable)


class DueTimes(Generic[K]):
    """When each key is next due; :meth:`pop_due` hands out the keys whose time came."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, tuple[float, int]] = {}
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: K, at: float | None) -> bool:
        """Make ``key`` due at ``at`` (None: not due). True when it is now the earliest."""
        if at is None:
            self._due.pop(key, None)
            return False
        self._sequence += 1
        self._due[key] = (at, self._sequence)
        heapq.heappush(self._heap, (at, self._sequence, key))
        return self._heap[0][1] == self._sequence

    def at(self, key: K) -> float | None:
        """When ``key`` is due, or None."""
        due = self._due.get(key)
        return None if due is None else due[0]

    def next_at(self) -> float | None:
        """The earliest due time, or None when nothing is due."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Every key due at or before ``now``, earliest first; they are no longer due."""
        keys: list[K] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now:
            at, sequence, key = heapq.heappop(heap)
            if due.get(key) == (at, sequence):  # (else left behind by a later set: skipped)
                del due[key]
                keys.append(key)
        return keys

    def _drop_stale(self) -> None:
        while self._heap:
            at, sequence, key = self._heap[0]
            if self._due.get(key) == (at, sequence):
                return
            heapq.heappop(self._heap)


class Alarm:
    """One loop timer (``loop.call_at``) at the earliest due time; rings ``ring(when)``.

    A callback, not a task that sleeps on an event with a timeout: a wake-up costs one
    timer handle, where the task cost a step, the event's future and the timeout's handle
    (at 10,000 mappings a wake-up is due every few tens of milliseconds). Idle (nothing
    set) until :meth:`start`; :meth:`stop` cancels it.
    """

    def __init__(self, ring: Callable[[float], None]) -> None:
        self._ring = ring
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ring on ``loop`` from now on."""
        self._loop = loop

    def stop(self) -> None:
        """Ring no more."""
        self._loop = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def at(self, when: float | None) -> None:
        """Ring at ``when`` (None: nothing new), unless already set to ring sooner.

        A ring set too early is harmless: the one rung finds nothing due and sets the next.
        """
        if self._loop is None or when is None:
            return
        handle = self._handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._handle = self._loop.call_at(when, self._rang, when)

    def _rang(self, when: float) -> None:
        self._handle = None
        self._ring(when)
