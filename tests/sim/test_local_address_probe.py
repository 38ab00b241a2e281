"""The local address natdeck uses, as the kernel and this machine's tables give it.

engine.discovery asks the kernel which source address a route to the gateway takes by
connect()ing a UDP socket (nothing is sent), and reads netifaces' tables. Only loopback is
probed. The same logic fed recorded tables is tests/unit/test_discovery.py.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import netifaces as real_netifaces
import pytest

from engine.discovery import connected_source_address, discover
from engine.errors import NoGatewayError

# ---------------------------------------------------------------- the connect() probe, loopback


def test_connect_probe_on_loopback_ipv4() -> None:
    assert connected_source_address(IPv4Address("127.0.0.1")) == IPv4Address("127.0.0.1")


def test_connect_probe_on_loopback_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this kernel")
    assert connected_source_address(IPv6Address("::1")) == IPv6Address("::1")


def test_connect_probe_sends_nothing() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        assert connected_source_address(IPv4Address("127.0.0.1"), port) == IPv4Address("127.0.0.1")
        with pytest.raises(BlockingIOError):
            listener.recv(64)
        # the listener works: a real datagram does arrive
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"x", ("127.0.0.1", port))
        listener.settimeout(2)
        assert listener.recv(64) == b"x"


def test_connect_probe_unknown_scope_gives_none() -> None:
    assert connected_source_address(IPv6Address("fe80::1%nosuchif9")) is None


def test_discover_explicit_loopback_gateway_with_real_probe_and_tables() -> None:
    found = discover(gateway="127.0.0.1")
    assert found.local_address == IPv4Address("127.0.0.1")
    assert found.interface is not None  # "lo" on Linux, "lo0" elsewhere


# ---------------------------------------------------------------- this machine, shape only


def test_real_netifaces_shape() -> None:
    """Reads this machine's tables (no probe, nothing sent) and checks only the shape."""
    if not real_netifaces.gateways().get("default"):
        with pytest.raises(NoGatewayError):
            discover(netifaces=real_netifaces, route_probe=None)
        return
    found = discover(netifaces=real_netifaces, route_probe=None)
    assert found.family in (socket.AF_INET, socket.AF_INET6)
    assert isinstance(found.gateway, IPv4Address | IPv6Address)
    assert type(found.local_address) is type(found.gateway)
    assert found.local_address != found.gateway
    assert isinstance(found.interface, str)
    assert found.interface in real_netifaces.interfaces()
