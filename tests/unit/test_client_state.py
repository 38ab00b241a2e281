"""GatewayClient's state API that the manager uses instead of its internals (no I/O: a
client opens its socket only on first use)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from engine import GatewayClient, InvalidRequest
from engine.dialects.datagram import DatagramMapper


def test_forget_epochs_and_the_state_lost_listeners() -> None:
    client = GatewayClient("192.0.2.1")
    lost: list[tuple[str, int]] = []
    client.on_state_lost.append(lambda protocol, epoch: lost.append((protocol, epoch)))
    assert not client.observe_epoch("pcp", 1000, 0.0)
    assert client.observe_epoch("pcp", 3, 10.0)
    assert lost == [("pcp", 3)]
    assert client.last_epoch == 3
    client.forget_epochs("pcp")
    assert client.epochs["pcp"] is None
    assert not client.observe_epoch("pcp", 1, 20.0)  # a fresh start, not another loss
    assert lost == [("pcp", 3)]


def test_explicit_local_address_is_read_only_and_follows_rebind() -> None:
    client = GatewayClient("192.0.2.1", local_address="192.0.2.20")
    assert client.explicit_local_address == IPv4Address("192.0.2.20")
    client.rebind(IPv4Address("192.0.2.21"))
    assert client.explicit_local_address == IPv4Address("192.0.2.21")
    assert GatewayClient("192.0.2.1").explicit_local_address is None
    with pytest.raises(AttributeError):
        client.explicit_local_address = None  # type: ignore[misc]


def test_observers_are_the_channels() -> None:
    client = GatewayClient("192.0.2.1")
    assert client.observers is client.channel.observers


def test_one_mapper_per_mapping_protocol_and_room_for_more() -> None:
    class Upnp:
        name = "upnp"

        def __init__(self, client: GatewayClient) -> None:
            self.client = client

    client = GatewayClient("192.0.2.1", mappers=[Upnp])  # type: ignore[list-item]
    assert isinstance(client.mappers["pcp"], DatagramMapper)
    assert isinstance(client.mappers["natpmp"], DatagramMapper)
    assert isinstance(client.mappers["upnp"], Upnp)
    assert client.speaks == {"pcp": None, "natpmp": None}


def test_a_bad_gateway_address_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="gateway must be an IP address"):
        GatewayClient("not-an-address")
