"""engine.discovery: finding the gateway and the local address, sending nothing.

The netifaces tables below are recorded shapes of ``netifaces.gateways()`` and
``netifaces.ifaddresses()`` (netifaces-plus 0.12 on Linux); the route probe is a stub. The
kernel's own answers (the connect() probe, this machine's tables) are tested in
tests/sim/test_local_address_probe.py.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

import pytest

from engine.discovery import Discovered, discover
from engine.errors import NoGatewayError
from engine.wire.addresses import IPAddress

AF_INET, AF_INET6, AF_PACKET = socket.AF_INET, socket.AF_INET6, 17


@dataclass
class RecordedNetifaces:
    """netifaces' three functions, answering from recorded tables."""

    gateway_table: dict[Any, Any]
    addresses: dict[str, dict[int, list[dict[str, str]]]] = field(default_factory=dict)

    def gateways(self) -> dict[Any, Any]:
        return self.gateway_table

    def ifaddresses(self, interface: str, /) -> dict[int, list[dict[str, str]]]:
        if interface not in self.addresses:
            raise ValueError("You must specify a valid interface name.")  # what netifaces says
        return self.addresses[interface]

    def interfaces(self) -> list[str]:
        return list(self.addresses)


class UnusedNetifaces:
    """Stands in where the tables must not be consulted at all."""

    def gateways(self) -> Any:
        raise AssertionError("gateways() consulted")

    def ifaddresses(self, interface: str, /) -> Any:
        raise AssertionError("ifaddresses() consulted")

    def interfaces(self) -> Any:
        raise AssertionError("interfaces() consulted")


LOOPBACK = {
    AF_PACKET: [{"addr": "00:00:00:00:00:00", "peer": "00:00:00:00:00:00"}],
    AF_INET: [{"addr": "127.0.0.1", "netmask": "255.0.0.0", "peer": "127.0.0.1"}],
    AF_INET6: [{"addr": "::1", "netmask": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}],
}

HOME_IPV4 = RecordedNetifaces(
    gateway_table={
        "default": {AF_INET: ("192.168.1.1", "eth0")},
        AF_INET: [("192.168.1.1", "eth0", True)],
    },
    addresses={
        "lo": LOOPBACK,
        "eth0": {
            AF_PACKET: [{"addr": "02:42:ac:11:00:02", "broadcast": "ff:ff:ff:ff:ff:ff"}],
            AF_INET: [
                {"addr": "192.168.1.23", "netmask": "255.255.255.0", "broadcast": "192.168.1.255"}
            ],
            AF_INET6: [
                {"addr": "fe80::1c2b:3cff:fe4d:5e6f%eth0", "netmask": "ffff:ffff:ffff:ffff::/64"}
            ],
        },
    },
)

IPV6_LINK_LOCAL = RecordedNetifaces(
    gateway_table={
        "default": {AF_INET6: ("fe80::1", "wlan0")},
        AF_INET6: [("fe80::1", "wlan0", True)],
    },
    addresses={
        "lo": LOOPBACK,
        "wlan0": {
            AF_INET6: [
                {"addr": "2001:db8:0:1::23", "netmask": "ffff:ffff:ffff:ffff::/64"},
                {"addr": "fe80::aa:bbff:fecc:ddee%wlan0", "netmask": "ffff:ffff:ffff:ffff::/64"},
            ],
        },
    },
)

DUAL_STACK = RecordedNetifaces(
    gateway_table={
        "default": {AF_INET: ("192.0.2.1", "eth0"), AF_INET6: ("fd00::1", "eth0")},
        AF_INET: [("192.0.2.1", "eth0", True)],
        AF_INET6: [("fd00::1", "eth0", True)],
    },
    addresses={
        "lo": LOOPBACK,
        "eth0": {
            AF_INET: [{"addr": "192.0.2.2", "netmask": "255.255.255.0"}],
            AF_INET6: [
                {"addr": "fd00::2", "netmask": "ffff:ffff:ffff:ffff::/64"},
                {"addr": "fe80::fc:ff:fe00:1%eth0", "netmask": "ffff:ffff:ffff:ffff::/64"},
            ],
        },
    },
)

MANY_INTERFACES = RecordedNetifaces(
    gateway_table={
        "default": {AF_INET: ("192.168.50.1", "wlan0")},
        AF_INET: [("192.168.50.1", "wlan0", True), ("10.0.0.1", "eth0", False)],
    },
    addresses={
        "lo": LOOPBACK,
        "docker0": {AF_INET: [{"addr": "172.17.0.1", "netmask": "255.255.0.0"}]},
        "eth0": {AF_INET: [{"addr": "10.0.0.5", "netmask": "255.255.255.0"}]},
        "wlan0": {
            AF_INET: [
                {"addr": "169.254.7.7", "netmask": "255.255.0.0"},
                {"addr": "192.168.50.77", "netmask": "255.255.255.0"},
            ]
        },
    },
)

NO_DEFAULT = RecordedNetifaces(gateway_table={"default": {}}, addresses={"lo": LOOPBACK})


def no_probe(gateway: IPAddress) -> IPAddress | None:
    """A route probe for recorded tables: the kernel here knows none of their routes."""
    return None


# ---------------------------------------------------------------- from the tables


def test_ipv4_default_gateway_and_subnet_address() -> None:
    found = discover(netifaces=HOME_IPV4, route_probe=no_probe)
    assert found == Discovered(
        gateway=IPv4Address("192.168.1.1"),
        local_address=IPv4Address("192.168.1.23"),
        interface="eth0",
        family=socket.AF_INET,
    )


def test_ipv6_link_local_gateway_gets_its_scope() -> None:
    found = discover(netifaces=IPV6_LINK_LOCAL, route_probe=no_probe)
    assert found.family == socket.AF_INET6
    assert found.gateway == IPv6Address("fe80::1%wlan0")
    assert isinstance(found.gateway, IPv6Address)
    assert found.gateway.scope_id == "wlan0"
    assert found.local_address == IPv6Address("fe80::aa:bbff:fecc:ddee%wlan0")
    assert found.interface == "wlan0"


def test_family_none_prefers_ipv4_then_falls_back_to_ipv6() -> None:
    assert discover(netifaces=DUAL_STACK, route_probe=no_probe).family == socket.AF_INET
    assert discover(netifaces=IPV6_LINK_LOCAL, route_probe=no_probe).family == socket.AF_INET6


def test_family_ipv6_asked_for() -> None:
    found = discover(socket.AF_INET6, netifaces=DUAL_STACK, route_probe=no_probe)
    assert found.gateway == ip_address("fd00::1")
    assert found.local_address == ip_address("fd00::2")  # same /64, not the link-local one


def test_no_default_route_is_a_typed_error() -> None:
    with pytest.raises(NoGatewayError, match=r"No default IPv4 or IPv6 gateway.*gateway="):
        discover(netifaces=NO_DEFAULT, route_probe=no_probe)
    with pytest.raises(NoGatewayError, match="No default IPv4 gateway"):
        discover(socket.AF_INET, netifaces=IPV6_LINK_LOCAL, route_probe=no_probe)


def test_many_interfaces_picks_the_gateways_subnet() -> None:
    found = discover(netifaces=MANY_INTERFACES, route_probe=no_probe)
    assert (found.gateway, found.local_address, found.interface) == (
        ip_address("192.168.50.1"),
        ip_address("192.168.50.77"),
        "wlan0",
    )


def test_explicit_gateway_finds_the_interface_in_its_subnet() -> None:
    found = discover(gateway="10.0.0.1", netifaces=MANY_INTERFACES, route_probe=no_probe)
    assert (found.local_address, found.interface) == (ip_address("10.0.0.5"), "eth0")


def test_default_route_flagged_only_in_the_family_list() -> None:
    table = RecordedNetifaces(
        gateway_table={"default": {}, AF_INET: [("192.168.1.1", "eth0", True)]},
        addresses=HOME_IPV4.addresses,
    )
    assert discover(netifaces=table, route_probe=no_probe).gateway == ip_address("192.168.1.1")


def test_gateway_without_an_address_on_its_interface() -> None:
    table = RecordedNetifaces(
        gateway_table={"default": {AF_INET: ("192.168.9.1", "ppp0")}},
        addresses={"lo": LOOPBACK, "ppp0": {AF_PACKET: []}},
    )
    with pytest.raises(NoGatewayError, match=r"192\.168\.9\.1 on ppp0 .*local_address="):
        discover(netifaces=table, route_probe=no_probe)


def test_garbage_in_the_tables_is_skipped() -> None:
    table = RecordedNetifaces(
        gateway_table={"default": {AF_INET: ("192.168.1.1", "eth0")}},
        addresses={
            "eth0": {
                AF_INET: [
                    {"netmask": "255.255.255.0"},  # no address
                    {"addr": "not an address", "netmask": "255.255.255.0"},
                    {"addr": "192.168.1.40", "netmask": "nonsense"},
                    {"addr": "192.168.1.41"},  # no netmask: a /32, not the gateway's subnet
                    {"addr": "192.168.1.42", "netmask": "255.255.255.0"},
                ]
            }
        },
    )
    assert discover(netifaces=table, route_probe=no_probe).local_address == ip_address(
        "192.168.1.42"
    )
    broken = RecordedNetifaces(gateway_table={"default": {AF_INET: ("gateway!", "eth0")}})
    with pytest.raises(NoGatewayError):
        discover(netifaces=broken, route_probe=no_probe)


# ---------------------------------------------------------------- what wins


def test_explicit_values_win_without_consulting_anything() -> None:
    def probe(gateway: IPAddress) -> IPAddress | None:
        raise AssertionError("probed")

    found = discover(
        gateway="192.168.1.254",
        local_address="192.168.1.99",
        netifaces=UnusedNetifaces(),
        route_probe=probe,
    )
    assert found == Discovered(
        gateway=ip_address("192.168.1.254"),
        local_address=ip_address("192.168.1.99"),
        interface=None,
        family=socket.AF_INET,
    )


def test_explicit_link_local_gateway_scope_is_the_interface() -> None:
    found = discover(
        gateway="fe80::1%eth3", local_address="fe80::2%eth3", netifaces=UnusedNetifaces()
    )
    assert found.interface == "eth3"
    assert found.family == socket.AF_INET6


def test_explicit_local_address_with_discovered_gateway() -> None:
    found = discover(local_address="192.168.1.200", netifaces=HOME_IPV4, route_probe=no_probe)
    assert (found.gateway, found.local_address) == (
        ip_address("192.168.1.1"),
        ip_address("192.168.1.200"),
    )


def test_the_kernels_choice_wins_over_the_tables() -> None:
    asked: list[IPAddress] = []

    def probe(gateway: IPAddress) -> IPAddress | None:
        asked.append(gateway)
        return ip_address("192.168.1.77")

    found = discover(netifaces=HOME_IPV4, route_probe=probe)
    assert asked == [ip_address("192.168.1.1")]
    assert (found.local_address, found.interface) == (ip_address("192.168.1.77"), "eth0")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"family": socket.AF_INET6, "gateway": "192.168.1.1"},
        {"gateway": "192.168.1.1", "local_address": "fd00::2"},
        {"family": 99},
        {"gateway": "router.local"},
    ],
)
def test_contradictory_or_malformed_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        discover(**kwargs, netifaces=UnusedNetifaces(), route_probe=no_probe)
