"""The hot path's builders (issue 15: CPU per request) give what the constructors give."""

from __future__ import annotations

import dataclasses
import re
import types
from ipaddress import IPv4Address
from typing import Any, cast

import pytest

from engine.dialects.base import Grant, grant
from engine.mapping import PortMapping, granted, request_for
from engine.protocols import Protocol
from engine.request import MapRequest, from_fields
from engine.timing import NATPMP_RETRANSMIT, PCP_RETRANSMIT, RetransmitSchedule
from engine.wire import pcp

GATEWAY = IPv4Address("192.0.2.1")
LOCAL = IPv4Address("192.0.2.10")
EXTERNAL = IPv4Address("203.0.113.7")


def test_grant_builder_equals_the_constructor() -> None:
    options = (pcp.PreferFailure(),)
    built = grant("pcp", 7, 8080, EXTERNAL, 3600, options, True)
    assert built == Grant("pcp", 7, 8080, EXTERNAL, 3600, options, True)
    assert type(built) is Grant
    assert grant("natpmp", 1) == Grant("natpmp", 1)
    assert hash(built) == hash(Grant("pcp", 7, 8080, EXTERNAL, 3600, options, True))


def test_request_builder_equals_the_constructor() -> None:
    values: list[Any] = [Protocol.UDP, 5000, 6000, EXTERNAL, 120, "pcp", True,
                         (pcp.Filter(24, 0, EXTERNAL),), LOCAL, b"n" * 12, GATEWAY, 7000,
                         (pcp.PreferFailure(),)]
    built = from_fields(*values)
    expected = MapRequest(*values)
    assert type(built) is MapRequest
    assert [getattr(built, f.name) for f in dataclasses.fields(MapRequest)] == values
    assert built == expected
    assert MapRequest.make(6, 80, lifetime=60, via="natpmp") \
        == MapRequest(Protocol.TCP, 80, lifetime=60, via="natpmp")


def test_granted_sets_every_field_of_a_new_mapping_from_its_source() -> None:
    # granted() passes PortMapping's fields by position: a field moved in the class must
    # not land in another's place.
    client = cast(Any, types.SimpleNamespace(gateway=GATEWAY, port=5351))
    request = MapRequest.make(Protocol.UDP, 5000, external_port=6000, lifetime=120,
                              via="pcp", nonce=b"n" * 12, prefer_failure=True)
    answer = Grant("pcp", 9, 6001, EXTERNAL, 100, (pcp.PreferFailure(),), False)
    mapping = granted(client, None, request, answer, LOCAL, 50.0)
    assert mapping == mapping  # eq=False: identity
    assert {f.name: getattr(mapping, f.name) for f in dataclasses.fields(PortMapping)} == {
        "gateway": GATEWAY, "local_address": LOCAL, "protocol": Protocol.UDP,
        "internal_port": 5000, "external_port": 6001, "external_address": EXTERNAL,
        "lifetime": 100, "expires_at": 150.0, "via": "pcp", "epoch": 9, "nonce": b"n" * 12,
        "requested_lifetime": 120, "granted_at": 50.0, "suggested_external_port": 6000,
        "suggested_external_address": None, "options": (pcp.PreferFailure(),),
        "remote_address": None, "remote_port": None, "gateway_port": 5351,
        "deleted": False, "permanent": False, "client": client}
    again = request_for(mapping, 0)
    assert again == MapRequest(Protocol.UDP, 5000, 6001, EXTERNAL, 0, via="pcp",
                               nonce=b"n" * 12, extra_options=(pcp.PreferFailure(),))
    assert again.extra_options == (pcp.PreferFailure(),)


def test_granted_in_place_keeps_the_nonce_of_the_request_that_moved_the_mapping() -> None:
    """A NAT-PMP mapping recreated by PCP (a fresh nonce) renews and deletes with that
    nonce; moved back to NAT-PMP it has none."""
    client = cast(Any, types.SimpleNamespace(gateway=GATEWAY, port=5351))
    first = MapRequest.make(Protocol.TCP, 5000, via="natpmp")
    mapping = granted(client, None, first, Grant("natpmp", 1, 5000, EXTERNAL, 100), LOCAL, 0.0)
    assert mapping.nonce is None
    by_pcp = dataclasses.replace(request_for(mapping, 100), via="auto", nonce=b"p" * 12)
    again = granted(client, mapping, by_pcp, Grant("pcp", 2, 5000, EXTERNAL, 100), LOCAL, 1.0)
    assert again is mapping
    assert (mapping.via, mapping.nonce) == ("pcp", b"p" * 12)
    assert request_for(mapping, 0).nonce == b"p" * 12  # the delete the gateway accepts
    back = dataclasses.replace(request_for(mapping, 100), via="auto", nonce=None)
    granted(client, mapping, back, Grant("natpmp", 3, 5000, EXTERNAL, 100), LOCAL, 2.0)
    assert (mapping.via, mapping.nonce) == ("natpmp", None)


def test_a_fixed_schedule_is_the_same_every_time_and_a_jittered_one_draws() -> None:
    assert list(NATPMP_RETRANSMIT.timeouts()) == [0.25 * 2 ** n for n in range(9)]
    assert list(NATPMP_RETRANSMIT.timeouts()) == list(NATPMP_RETRANSMIT.timeouts())
    replaced = dataclasses.replace(NATPMP_RETRANSMIT, max_tries=2)
    assert list(replaced.timeouts()) == [0.25, 0.5]
    assert list(RetransmitSchedule(1.0, max_tries=3).timeouts()) == [1.0, 2.0, 4.0]
    draws = iter([0.1, -0.1])
    pcp_waits = PCP_RETRANSMIT.timeouts(lambda: next(draws))
    assert [next(pcp_waits), next(pcp_waits)] == pytest.approx([3.3, 2 * 3.3 - 0.1 * 3.3])


def test_a_pcp_request_encodes_the_same_without_its_dataclass() -> None:
    data = pcp.MapData(b"n" * 12, 6, 80, 8080, IPv4Address("0.0.0.0"))
    for args in ((pcp.Opcode.MAP, 3600, LOCAL, data, ()),
                 (pcp.Opcode.MAP, 0, LOCAL, data, (pcp.PreferFailure(),)),
                 (pcp.Opcode.ANNOUNCE, 0, LOCAL, None, ())):
        assert pcp.encode_request(*args) == pcp.Request(*args).encode()
    for bad in ((pcp.Opcode.MAP, 1 << 32, LOCAL, data, ()),
                (pcp.Opcode.PEER, 60, LOCAL, data, ()),
                (200, 60, LOCAL, None, ())):
        with pytest.raises(ValueError) as expected:
            pcp.Request(*bad)
        with pytest.raises(ValueError, match=re.escape(str(expected.value))):
            pcp.encode_request(*bad)
