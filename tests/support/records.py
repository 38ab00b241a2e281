"""Mapping records as the state file keeps them, made up for tests, and state files whose
writes fail (engine.statefile)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from ipaddress import IPv4Address

from engine.statefile import MappingRecord, RecordKey, StateFile

__all__ = ["NONCE", "FullDisk", "Unserialisable", "make_record"]

NONCE = bytes(range(12))


def make_record(port: int = 8080, *, via: str = "pcp", gateway: str = "192.0.2.1",
                gateway_port: int = 5351, updated: float | None = None,
                lifetime: int = 7200, pid: int | None = None) -> MappingRecord:
    now = time.time() if updated is None else updated
    return MappingRecord(
        gateway=IPv4Address(gateway), gateway_port=gateway_port,
        local_address=IPv4Address("192.0.2.10"), protocol=6, internal_port=port,
        external_port=port + 1, external_address=IPv4Address("203.0.113.7"),
        via=via,  # type: ignore[arg-type]
        lifetime=lifetime, epoch=42, nonce=NONCE if via == "pcp" else None,
        created=now, updated=now, requested_lifetime=lifetime, pid=pid)


class FullDisk(StateFile):
    """A state file whose writes fail as on a full disk while ``full`` is set."""

    full = False

    def apply(self, changes: Mapping[RecordKey, MappingRecord | None]) -> list[str]:
        if self.full:
            raise OSError(28, "No space left on device")
        return super().apply(changes)


class Unserialisable(StateFile):
    """A state file whose writes fail as ``json.dumps`` does on a value it cannot write
    (not an :class:`OSError`) while ``broken`` is set."""

    broken = False

    def apply(self, changes: Mapping[RecordKey, MappingRecord | None]) -> list[str]:
        if self.broken:
            raise TypeError("Object of type bytes is not JSON serializable")
        return super().apply(changes)
