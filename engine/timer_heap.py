"""The one timer of a :class:`~engine.transport.GatewayChannel`: a heap of due times.

aioquic's ``asyncio/protocol.py`` shape: one ``loop.call_at`` for every request out, armed for
the earliest, instead of a task or a timer handle per request. Each item armed (the channel's
``_Pending``) holds its current heap entry in ``ticket``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["COMPACT_AT", "Entry", "TimerHeap"]

#: The heap is compacted when it reaches this many entries (then twice what is live).
COMPACT_AT = 64

#: A heap entry: [due time, sequence number, the item or None once it is over]. A list, so that
#: an item answered or re-armed lets go of its entry in O(1), without a search of the heap: the
#: entry stays until its time, but holds nothing of the item.
Entry = list[Any]


class Armed(Protocol):
    """What the heap arms: anything that keeps its current entry."""

    ticket: Entry | None


A = TypeVar("A", bound=Armed)


class TimerHeap(Generic[A]):
    """One ``call_at`` for every request of a channel: a heap of due times, re-armed for the
    earliest, ringing ``fire(item, now)`` for each item due. An entry is let go of
    (:meth:`drop`), never searched for and removed."""

    __slots__ = ("_at", "_fire", "_handle", "_heap", "_limit", "_loop", "_seq")

    def __init__(self, fire: Callable[[A, float], None]) -> None:
        self._fire = fire
        self._heap: list[Entry] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limit = COMPACT_AT

    def push(self, when: float, pending: A) -> None:
        """Arm ``pending`` for ``when`` (an earlier entry of it is let go of)."""
        heap = self._heap
        if len(heap) >= self._limit:
            self._compact()
        if pending.ticket is not None:
            pending.ticket[2] = None  # re-armed: its earlier entry is stale
        pending.ticket = entry = [when, next(self._seq), pending]
        heapq.heappush(heap, entry)
        # A handle armed on a loop that no longer runs (closed: a channel may outlive its
        # loop) never fires. The loop armed on is the running one while it runs: asked only
        # when it is not (asyncio.get_running_loop() costs a getpid() system call on 3.11).
        loop = self._loop
        if self._handle is None or when < self._at or loop is None or not loop.is_running():
            if self._handle is not None:
                self._handle.cancel()
            self._rearm(asyncio.get_running_loop(), when)

    @staticmethod
    def drop(pending: A) -> None:
        """``pending`` is over: its entry no longer holds it. Answered requests used to stay
        in the heap until their timer's time (seconds: PCP's first timer is 3 s), and with
        them their exchange, future, packet and matcher: at thousands of requests a second,
        thousands of objects for the garbage collector to walk (issue 15's renewal CPU)."""
        if pending.ticket is not None:
            pending.ticket[2] = None
            pending.ticket = None

    def _compact(self) -> None:
        # Entries let go of stay until their time: drop them now and then (amortized
        # O(log n) a push).
        heap = self._heap
        heap[:] = [entry for entry in heap if entry[2] is not None]
        heapq.heapify(heap)
        self._limit = max(COMPACT_AT, 2 * len(heap))

    def _rearm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._handle = loop.call_at(when, self._run)
        self._at = when
        self._loop = loop

    def _run(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._heap
        while heap and heap[0][0] <= now:
            pending = heapq.heappop(heap)[2]
            if pending is not None:
                pending.ticket = None
                self._fire(pending, now)
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
        # A try armed while ringing armed the timer for itself: an earlier one may be left.
        if heap and (self._handle is None or heap[0][0] < self._at):
            if self._handle is not None:
                self._handle.cancel()
            self._rearm(loop, heap[0][0])
