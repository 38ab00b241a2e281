"""The manager's entries in the mappings state file (:mod:`engine.statefile`).

The same file ``natdeck map`` writes, so that ``natdeck unmap`` can delete, with
the right PCP nonce, a mapping the TUI or a library user left behind (``keep``,
an exit that could not delete everything, a crash). A write that fails is
logged, never raised: the mapping itself is fine.
"""

from __future__ import annotations

import logging
import time

from ..client import PortMapping
from ..statefile import MappingRecord, StateFile

__all__ = ["Records"]

log = logging.getLogger("engine.manager")

#: A record is written again after this many seconds (wall clock) even if nothing in it
#: changed, so that the state file does not drop a mapping held for days as expired.
REFRESH_AFTER = 3600.0


class Records:
    """Record and drop mappings in ``state_file``; with None, do nothing. ``pid`` is written
    in each record: the process holding the mapping (``natdeck map --hold``), which
    another natdeck will not map or delete from under it while it runs."""

    def __init__(self, state_file: StateFile | None, *, pid: int | None = None) -> None:
        self.state_file = state_file
        self.pid = pid
        self._written: dict[tuple[int, int], float] = {}

    def stale(self, mapping: PortMapping) -> bool:
        """Whether ``mapping``'s record was written more than :data:`REFRESH_AFTER` s ago."""
        written = self._written.get(mapping.key)
        return written is not None and time.time() - written > REFRESH_AFTER

    def record(self, mapping: PortMapping) -> None:
        """Remember ``mapping`` (its nonce, ports, lifetime)."""
        if self.state_file is None:
            return
        self._written[mapping.key] = time.time()
        try:
            for warning in self.state_file.record(
                    MappingRecord.from_mapping(mapping, pid=self.pid)):
                log.warning("%s", warning)
        except OSError as exc:
            log.warning("could not record %s in %s: %s", mapping.describe(),
                        self.state_file.path, exc)

    def drop(self, mapping: PortMapping) -> None:
        """Forget ``mapping`` (it was deleted at the gateway)."""
        if self.state_file is None:
            return
        self._written.pop(mapping.key, None)
        try:
            _, warnings = self.state_file.remove(mapping.gateway, mapping.gateway_port,
                                                 int(mapping.protocol), mapping.internal_port)
        except OSError as exc:
            log.warning("could not update %s: %s", self.state_file.path, exc)
            return
        for warning in warnings:
            log.warning("%s", warning)
