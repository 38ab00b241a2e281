"""The manager's entries in the mappings state file (:mod:`engine.statefile`).

The same file ``natdeck map`` writes, so that ``natdeck unmap`` can delete, with
the right PCP nonce, a mapping the TUI or a library user left behind (``keep``,
an exit that could not delete everything, a crash). A write that fails is
logged, never raised: the mapping itself is fine; its changes are kept and written
again every :data:`RETRY_DELAY` seconds until a write succeeds (:attr:`Records.error`
says why meanwhile). A record counts as written (for :data:`REFRESH_AFTER`, and for
:meth:`Records.written`) only once a write that carried it succeeded.

Writes are batched: the file is rewritten whole, so writing each change at once
cost n rewrites of n records for n mappings added (10,000 adds: 10,000 rewrites of
up to 10,000 records). A change is written on the next loop turn when nothing was
written for :data:`FLUSH_DELAY` seconds, else with the others made meanwhile, at
most :data:`FLUSH_DELAY` after the last write: a granted mapping is on disk within
that delay (plus the write itself), so a process that dies later leaves its record
for ``natdeck unmap``. :meth:`~engine.manager.MappingManager.add` and ``remove``
return once their change is written, or once a write of it failed (the disk is full, the
directory read-only: the mapping is fine, its record is tried again, and
:attr:`Records.error` says why, for the front end to warn that ``natdeck unmap`` would not
know it yet -- waiting for the retry held ``natdeck map --hold`` silent for its whole
timeout); :meth:`Records.flush` writes at once (on demand, and when the manager closes).
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..client import PortMapping
from ..statefile import MappingRecord, StateBatch, StateFile, record_key

__all__ = ["FLUSH_DELAY", "REFRESH_AFTER", "RETRY_DELAY", "Records"]

log = logging.getLogger("engine.manager")

#: A record is written again after this many seconds (wall clock) even if nothing in it
#: changed, so that the state file does not drop a mapping held for days as expired.
REFRESH_AFTER = 3600.0
#: Changes are written at most this long (seconds, loop time) after they are made; writes
#: are at least this far apart, so a burst of changes costs one write per delay.
FLUSH_DELAY = 0.25
#: A write that failed (disk full, a directory made read-only) is tried again this long
#: (seconds, loop time) after, until one succeeds: its changes must not wait for the next
#: one (a renewal writes only hourly) to reach the disk.
RETRY_DELAY = 5.0


class Records:
    """Record and drop mappings in ``state_file``; with None, do nothing. ``pid`` is written
    in each record: the process holding the mapping (``natdeck map --hold``), which
    another natdeck will not map or delete from under it while it runs.

    Changes are batched (see the module docstring); without a running event loop (a
    script, a test) each is written at once.
    """

    def __init__(self, state_file: StateFile | None, *, pid: int | None = None,
                 delay: float = FLUSH_DELAY) -> None:
        self.state_file = state_file
        self.pid = pid
        self.delay = delay
        self.writes = 0
        """How many times the file was written (each write: every change pending)."""
        self._batch = StateBatch(state_file) if state_file is not None else None
        # When the content on disk for each mapping was recorded (its record's `updated`),
        # and that of the changes not yet on disk: moved over when a write succeeds.
        self._written: dict[tuple[int, int], float] = {}
        self._queued: dict[tuple[int, int], float] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._last_write = float("-inf")
        self._waiters: list[asyncio.Future[bool]] = []
        self.error: str | None = None
        """Why the last write failed, while the changes it carried wait for a retry; None
        once a write succeeds."""
        self._retrying = False  # the timer is a retry's (a new change is written sooner)
        self._closed = False  # nothing writes after close(): waiting is pointless

    @property
    def pending(self) -> int:
        """Changes made and not yet written."""
        return len(self._batch) if self._batch is not None else 0

    def stale(self, mapping: PortMapping) -> bool:
        """Whether ``mapping``'s record on disk was recorded more than :data:`REFRESH_AFTER`
        s ago (a newer one whose write failed does not count)."""
        if not self._written:
            return False
        written = self._written.get(mapping.key)
        return written is not None and time.time() - written > REFRESH_AFTER

    def record(self, mapping: PortMapping) -> None:
        """Remember ``mapping`` (its nonce, ports, lifetime)."""
        if self._batch is None:
            return
        record = MappingRecord.from_mapping(mapping, pid=self.pid)
        self._queued[mapping.key] = record.updated
        self._batch.record(record)
        self._schedule()

    def drop(self, mapping: PortMapping) -> None:
        """Forget ``mapping`` (it was deleted at the gateway)."""
        if self._batch is None:
            return
        self._written.pop(mapping.key, None)
        self._queued.pop(mapping.key, None)
        self._batch.remove(record_key(mapping.gateway, mapping.gateway_port,
                                      int(mapping.protocol), mapping.internal_port))
        self._schedule()

    async def written(self) -> bool:
        """Whether every change made so far reached the disk: True once a write carried
        them; False as soon as a write of them fails (they stay pending, logged and tried
        again every :data:`RETRY_DELAY` s; :attr:`error` says why), or when :meth:`close`'s
        one write failed. A write is at most :data:`FLUSH_DELAY` away, so this never waits
        longer."""
        if self._closed or not self.pending:
            return not self.pending
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._schedule()  # (changes a failed write left pending have no write scheduled)
        return await waiter

    def flush(self) -> None:
        """Write every pending change now (one read-modify-write of the file); if that
        fails, it is tried again in :data:`RETRY_DELAY` s, and :meth:`written` says False."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._retrying = False
        # Never raises: a write that fails, for whatever reason, is said by _write.
        done = self._batch is None or not len(self._batch) or self._write(self._batch)
        self._release(written=done)

    def close(self) -> None:
        """Write every pending change now, once: no retry is left behind if it fails, and
        :meth:`written` returns (nothing will write the changes now). Never raises: a
        failed write is logged and kept in :attr:`error`."""
        self._closed = True
        try:
            self.flush()
        finally:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._release(written=not self.pending)

    def _release(self, *, written: bool = True) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(written)

    def _write(self, batch: StateBatch) -> bool:
        """Write ``batch``; whether it reached the disk (else it is kept and retried).

        Never raises :class:`Exception`: a failed write is said and kept in :attr:`error`.
        """
        assert self.state_file is not None
        self.writes += 1
        try:
            warnings = batch.flush()
        except Exception as exc:
            # Not only OSError (a full disk, a read-only directory): a record that cannot be
            # serialised, or a state file the reader fails on, is a failed write too. Raised,
            # it reached MappingManager.add() after the gateway granted the mapping: add()
            # failed while the manager and the gateway both held it, and `error` said nothing.
            # Said once a spell of failures (retried every RETRY_DELAY s), not each time; the
            # traceback of an unexpected one, which is a bug to report.
            first = self.error is None
            log.log(logging.WARNING if first else logging.DEBUG,
                    "could not update %s: %s (%d changes kept, tried again every %g s)",
                    self.state_file.path, exc, len(batch), RETRY_DELAY,
                    exc_info=first and not isinstance(exc, OSError))
            self.error = (exc.strerror or str(exc)) if isinstance(exc, OSError) \
                else f"{type(exc).__name__}: {exc}"
            if not self._closed:
                self._retry()
            return False
        finally:
            self._last_write = _loop_time()
        # The write is synchronous: every change queued is in it.
        self._written.update(self._queued)
        self._queued.clear()
        if self.error is not None:
            self.error = None
            log.warning("updated %s again", self.state_file.path)
        for warning in warnings:
            log.warning("%s", warning)
        return True

    def _retry(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: the next change (or flush) tries again
            return
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + RETRY_DELAY, self.flush)
            self._retrying = True

    def _schedule(self) -> None:
        if self._timer is not None:
            if not self._retrying:
                return
            self._timer.cancel()  # a change made: tried as any other, not after the retry's wait
            self._timer = None
        self._retrying = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing will flush later, so write now
            self.flush()
            return
        self._timer = loop.call_at(max(loop.time(), self._last_write + self.delay), self.flush)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return float("-inf")
