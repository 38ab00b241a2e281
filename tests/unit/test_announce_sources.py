"""Which sources an announcement is believed from (pure: the listener's handler, no socket).

RFC 6887 §14.1.3 multicasts ANNOUNCE to ff02::1, and miniupnpd sends it from its link-local
address rather than the global one clients ask: an ANNOUNCE (which carries no address and
only makes natdeck ask the gateway itself again) is taken from a link-local source when the
gateway is a global IPv6 address; everything else still has to come from the gateway.
"""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine.announce import Announcement, AnnouncementListener
from engine.wire import natpmp, pcp

NATPMP_NEWS = natpmp.ExternalAddressResponse(0, 1234, IPv4Address("198.51.100.9")).encode()
PCP_NEWS = pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 77).encode()


def heard_from(gateway: str, source: str, data: bytes, port: int = 5351) -> list[Announcement]:
    heard: list[Announcement] = []
    listener = AnnouncementListener(gateway, heard.append, ports=(5350,))
    listener._received(data, source, port, 5350)
    return heard


def test_an_announce_from_the_link_local_address_of_a_global_ipv6_gateway_counts() -> None:
    assert heard_from("2001:db8:0:1::1", "fe80::1%lan1", PCP_NEWS) == [
        Announcement("pcp_announce", 77, None, 0, 5350)]


@pytest.mark.parametrize(("gateway", "source", "data", "port"), [
    # A NAT-PMP notice carries an address: only from the gateway itself.
    ("2001:db8:0:1::1", "fe80::1%lan1", NATPMP_NEWS, 5351),
    # Not from the server port.
    ("2001:db8:0:1::1", "fe80::1%lan1", PCP_NEWS, 5350),
    # Another global address.
    ("2001:db8:0:1::1", "2001:db8:0:1::99", PCP_NEWS, 5351),
    # A link-local gateway is compared exactly.
    ("fe80::1", "fe80::2%lan1", PCP_NEWS, 5351),
    # An IPv4 gateway takes nothing from IPv6 link-local addresses.
    ("198.18.0.1", "fe80::1%lan1", PCP_NEWS, 5351),
])
def test_everything_else_still_has_to_come_from_the_gateway(gateway: str, source: str,
                                                            data: bytes, port: int) -> None:
    assert heard_from(gateway, source, data, port) == []


def test_the_gateway_itself_is_heard_as_before() -> None:
    assert heard_from("2001:db8:0:1::1", "2001:db8:0:1::1", NATPMP_NEWS) == [
        Announcement("natpmp_address", 1234, IPv4Address("198.51.100.9"), 0, 5350)]
