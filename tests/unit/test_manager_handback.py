"""The pure parts of the manager's hand-backs (tests/sim/test_manager_handback.py runs them
against the simulated gateway): which grant rewrites a record, when a mapping whose delete
failed is due again, which failed add may have left a mapping behind."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address

from engine.codes import PcpResult
from engine.errors import GatewayTimeout, InvalidRequest, ResultCodeError, TransportError
from engine.events import ManagedMapping, MappingKey, MappingState
from engine.manager.closing import may_hold
from engine.manager.mappings import record_moved, resume_at
from engine.mapping import PortMapping
from engine.protocols import Protocol

S = MappingState
ADDRESS = IPv4Address("192.0.2.1")


def view(state: MappingState = S.ACTIVE, **fields: object) -> ManagedMapping:
    return ManagedMapping(key=MappingKey(6, 5000), protocol=Protocol.TCP, internal_port=5000,
                          state=state, requested_lifetime=600, **fields)  # type: ignore[arg-type]


def mapping(via: str, nonce: bytes | None, port: int = 5000) -> PortMapping:
    return PortMapping(ADDRESS, ADDRESS, Protocol.TCP, 5000, port, None, 600, 600.0,
                       via, 1, nonce)  # type: ignore[arg-type]


def test_a_grant_by_another_protocol_rewrites_the_record_with_the_same_port_and_nonce() -> None:
    held = view(via="natpmp", external_port=5000, nonce=None)
    assert not record_moved(held, mapping("natpmp", None))
    assert record_moved(held, mapping("upnp", None))  # the nonce (none) and port unchanged
    assert record_moved(held, mapping("pcp", b"n" * 12))
    assert record_moved(held, mapping("natpmp", None, port=5001))


def test_a_failed_delete_resumes_the_schedule_and_a_failed_mapping_only_its_expiry() -> None:
    assert resume_at(view(S.ACTIVE, next_renewal_at=300.0), 100.0) == 300.0
    assert resume_at(view(S.LOST), 100.0) == 100.0  # nothing scheduled: at once
    # FAILED waits for a change: None, so that set_due keeps only its expiry (a DUE "now"
    # would be ignored in FAILED, and its expiry never told).
    assert resume_at(view(S.FAILED, expires_at=500.0), 100.0) is None


def test_only_an_add_that_went_out_unanswered_may_have_left_a_mapping() -> None:
    assert may_hold(asyncio.CancelledError())
    assert may_hold(GatewayTimeout("192.0.2.1", "PCP map tcp 5000", 4, 9.0, "pcp"))
    # Never sent (it waited its turn), refused, invalid, not sent: nothing to take back.
    assert not may_hold(GatewayTimeout("192.0.2.1", "PCP map tcp 5000", 0, 9.0, "pcp"))
    assert not may_hold(ResultCodeError("pcp", PcpResult.NOT_AUTHORIZED, request="PCP map",
                                        gateway="192.0.2.1"))
    assert not may_hold(InvalidRequest("bad"))
    assert not may_hold(TransportError("no route"))
