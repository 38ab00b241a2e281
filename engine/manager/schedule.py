"""Due times of many mappings in one heap, pure (fed ``now``, no clock, no loop), and
the one loop timer that rings at the earliest of them (:class:`Alarm`, the asyncio side).

One timer serves every mapping: 10,000 mappings cost 10,000 heap entries, not
10,000 sleeping tasks. Setting a key's due time again replaces the old one (the
old heap entry is left behind and skipped when it comes up); once the entries left
behind outnumber the live ones (and :data:`COMPACT_FLOOR`), the heap is rebuilt from
the live ones, so that a key moved later again and again (a renewal) does not grow it.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["COMPACT_FLOOR", "Alarm", "DueTimes"]

#: Entries left behind that never cause a rebuild, however few keys are due: a rebuild
#: costs the live entries, so it waits until at least as many were left behind as there
#: are live ones, plus these (amortised, each set() pays for one entry of a rebuild).
COMPACT_FLOOR = 64

K = TypeVar("K", bound=Hashable)


class DueTimes(Generic[K]):
    """When each key is next due; :meth:`pop_due` hands out the keys whose time came."""

    def __init__(self) -> None:
        # The heap holds (time, sequence) pairs, the keys are found by sequence: a pair of a
        # float and an int is no work for the garbage collector (it stops tracking it),
        # a tuple holding a key is, for as long as the mapping waits for its renewal.
        self._heap: list[tuple[float, int]] = []
        self._keys: dict[int, K] = {}
        self._due: dict[K, tuple[float, int]] = {}
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._due)

    @property
    def entries(self) -> int:
        """Entries in the heap, those left behind by a later :meth:`set` included."""
        return len(self._heap)

    def set(self, key: K, at: float | None) -> bool:
        """Make ``key`` due at ``at`` (None: not due). True when it is now the earliest."""
        old = self._due.pop(key, None)
        if old is not None:
            del self._keys[old[1]]
            if len(self._heap) > 2 * len(self._due) + COMPACT_FLOOR:
                self._compact()
        if at is None:
            return False
        self._sequence = sequence = self._sequence + 1
        self._due[key] = (at, sequence)
        self._keys[sequence] = key
        heapq.heappush(self._heap, (at, sequence))
        return self._heap[0][1] == sequence

    def _compact(self) -> None:
        """Keep only the live entries (the same pairs, so the order is unchanged)."""
        self._heap = list(self._due.values())
        heapq.heapify(self._heap)

    def at(self, key: K) -> float | None:
        """When ``key`` is due, or None."""
        due = self._due.get(key)
        return None if due is None else due[0]

    def next_at(self) -> float | None:
        """The earliest due time, or None when nothing is due."""
        heap, keys = self._heap, self._keys
        while heap and heap[0][1] not in keys:  # left behind by a later set: skipped
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[K]:
        """Every key due at or before ``now``, earliest first; they are no longer due."""
        due: list[K] = []
        heap, keys = self._heap, self._keys
        while heap and heap[0][0] <= now:
            key = keys.pop(heapq.heappop(heap)[1], None)
            if key is not None:  # (else left behind by a later set: skipped)
                del self._due[key]
                due.append(key)
        return due


class Alarm(Generic[K]):
    """One loop timer (``loop.call_at``) at the earliest of ``due``; rings ``ring(when)``.

    A callback, not a task that sleeps on an event with a timeout: a wake-up costs one
    timer handle, where the task cost a step, the event's future and the timeout's handle
    (at 10,000 mappings a wake-up is due every few tens of milliseconds). While it rings,
    the due times set are not armed one by one: it is set once, after, for the earliest.
    Idle (nothing set) until :meth:`start`; :meth:`stop` cancels it.
    """

    def __init__(self, due: DueTimes[K], ring: Callable[[float], None]) -> None:
        self._due = due
        self._ring = ring
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._ringing = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Ring on ``loop`` from now on, first at the earliest due time."""
        self._loop = loop
        self.at(self._due.next_at())

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
        if self._loop is None or when is None or self._ringing:
            return
        handle = self._handle
        if handle is not None:
            if handle.when() <= when:
                return
            handle.cancel()
        self._handle = self._loop.call_at(when, self._rang, when)

    def _rang(self, when: float) -> None:
        self._handle = None
        self._ringing = True
        try:
            self._ring(when)
        finally:
            self._ringing = False
            self.at(self._due.next_at())
