"""The fast paths of the wire codec (issue 15) give what the plain ones give."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import pytest

from engine.request import nonce_for
from engine.wire import addresses, natpmp, pcp
from engine.wire.decoded import decoded


def test_decoded_builds_the_same_message_as_the_constructor() -> None:
    built = natpmp.MapResponse(6, 0, 100, 5000, 50000, 7200)
    fast = decoded(natpmp.MapResponse, 6, 0, 100, 5000, 50000, 7200)
    assert fast == built
    assert hash(fast) == hash(built)
    assert repr(fast) == repr(built)
    with pytest.raises(AttributeError):  # frozen, as ever (FrozenInstanceError)
        fast.epoch = 1  # type: ignore[misc]


def test_decoded_wants_every_field() -> None:
    with pytest.raises(ValueError, match="MapResponse has 6 fields, not 3"):
        decoded(natpmp.MapResponse, 6, 0, 100)


def test_an_address_encodes_the_same_from_the_recent_cache_and_without_it() -> None:
    for text in ("192.0.2.1", "0.0.0.0", "2001:db8::1", "::", "192.0.2.1"):
        address = IPv6Address(text) if ":" in text else IPv4Address(text)
        expected = (bytes(10) + b"\xff\xff" + address.packed
                    if isinstance(address, IPv4Address) else address.packed)
        assert addresses.encode_address(address) == expected
        assert addresses.encode_address(address) == expected  # a second time: by identity
        # An equal but distinct object too.
        twin = type(address)(text)
        assert addresses.encode_address(twin) == expected


def test_the_recent_cache_is_bounded() -> None:
    for number in range(20):
        addresses.encode_address(IPv4Address(f"198.51.100.{number}"))
    assert len(addresses._RECENT) <= addresses._RECENT_MAX


@pytest.mark.parametrize("fields", [(6, 5000, 5000, 7200), (17, 0, 0, 0), (6, 65535, 65535,
                                                                        0xFFFFFFFF)])
def test_a_valid_nat_pmp_map_packet_encodes_as_before(fields: tuple[int, int, int, int]) -> None:
    protocol, internal, external, lifetime = fields
    packet = natpmp.MapPacket(protocol, internal, external, lifetime)
    opcode = 1 if protocol == 17 else 2
    assert packet.encode() == bytes([0, opcode, 0, 0]) + internal.to_bytes(2, "big") \
        + external.to_bytes(2, "big") + lifetime.to_bytes(4, "big")
    assert packet.opcode == opcode


@pytest.mark.parametrize(("fields", "message"), [
    ((47, 1, 1, 1), "TCP and UDP"), ((6, -1, 1, 1), "internal port"),
    ((6, 1, 65536, 1), "suggested external port"), ((6, 1, 1, 2**32), "lifetime")])
def test_an_invalid_nat_pmp_map_packet_still_says_which_field(
        fields: tuple[int, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        natpmp.MapPacket(*fields)


@pytest.mark.parametrize(("fields", "message"), [
    ((bytes(11), 6, 1, 1), "nonce"), ((bytes(12), 256, 1, 1), "protocol"),
    ((bytes(12), 6, 65536, 1), "internal port"), ((bytes(12), 6, 1, -1), "external port")])
def test_an_invalid_pcp_map_data_still_says_which_field(
        fields: tuple[bytes, int, int, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pcp.MapData(*fields, IPv4Address(0))


@pytest.mark.parametrize(("fields", "message"), [
    ((1, -1), "lifetime"), ((128, 1), "opcode")])
def test_an_invalid_pcp_request_still_says_which_field(fields: tuple[int, int],
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pcp.Request(fields[0], fields[1], IPv4Address("192.0.2.1"))


def test_a_nonce_is_drawn_only_for_what_may_go_by_pcp() -> None:
    assert nonce_for("natpmp") is None
    assert nonce_for("upnp") is None
    for via in ("pcp", "auto"):
        nonce = nonce_for(via)
        assert nonce is not None
        assert len(nonce) == pcp.NONCE_SIZE
    assert nonce_for("pcp") != nonce_for("pcp")
