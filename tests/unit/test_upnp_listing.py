"""The router view's parsing (engine.upnp.listing): one RouterMapping type for both methods."""

from __future__ import annotations

from ipaddress import ip_address
from xml.sax.saxutils import escape

import pytest

from engine.upnp.listing import (
    MAX_ENTRIES,
    GenericWalk,
    RouterMapping,
    made_by,
    parse_entry,
    parse_port_listing,
    same_table,
    upnp_protocol,
)


def entry_xml(port: int, client: str, description: str, lease: int = 3600,
              protocol: str = "TCP") -> str:
    return ("<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost>"
            f"<p:NewExternalPort>{port}</p:NewExternalPort><p:NewProtocol>{protocol}</p:NewProtocol>"
            f"<p:NewInternalPort>{port}</p:NewInternalPort>"
            f"<p:NewInternalClient>{client}</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled>"
            f"<p:NewDescription>{escape(description)}</p:NewDescription>"
            f"<p:NewLeaseTime>{lease}</p:NewLeaseTime></p:PortMappingEntry>")


def listing(*entries: str) -> str:
    # What miniupnpd 2.3.1 sends in NewPortListing (after the SOAP layer's unescaping).
    return ('<?xml version="1.0" encoding="UTF-8"?><p:PortMappingList '
            'xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">' + "".join(entries)
            + "</p:PortMappingList>")


@pytest.mark.parametrize(("description", "who"), [
    ("PCP MAP 1a2b3c4d5e6f708192a3b4c5", "pcp"), ("NAT-PMP 5000 tcp", "natpmp"),
    ("natdeck", "upnp"), ("", "upnp"), ("Skype", "upnp"),
])
def test_made_by_from_miniupnpd_descriptions(description: str, who: str) -> None:
    assert made_by(description) == who


def test_a_listing_of_three_makers() -> None:
    mappings, skipped = parse_port_listing(listing(
        entry_xml(40000, "198.18.0.3", "upnpc"),
        entry_xml(40001, "198.18.0.2", "NAT-PMP 40001 udp", protocol="UDP"),
        entry_xml(40002, "198.18.0.2", "PCP MAP 00112233445566778899aabb", lease=0)))
    assert skipped == 0
    assert [m.made_by for m in mappings] == ["upnp", "natpmp", "pcp"]
    first = mappings[0]
    assert first == RouterMapping(6, 40000, ip_address("198.18.0.3"), 40000, "upnpc", 3600, True,
                                  "", "upnp")
    assert mappings[1].protocol == 17
    assert mappings[2].lease_remaining is None          # 0 = permanent


def test_a_bad_entry_is_skipped_not_fatal() -> None:
    mappings, skipped = parse_port_listing(listing(
        entry_xml(40000, "not-an-ip", "x"), entry_xml(40001, "198.18.0.2", "ok"),
        entry_xml(70000, "198.18.0.2", "bad port"),
        entry_xml(1, "198.18.0.2", "p", protocol="GRE")))
    assert [m.external_port for m in mappings] == [40001]
    assert skipped == 3


def test_empty_and_broken_documents() -> None:
    assert parse_port_listing("") == ([], 0)
    assert parse_port_listing(listing()) == ([], 0)
    with pytest.raises(ValueError, match="not XML"):
        parse_port_listing("<p:PortMappingList>")
    with pytest.raises(ValueError, match="not XML"):
        parse_port_listing('<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')


def test_a_huge_listing_is_cut_at_the_bound() -> None:
    mappings, _ = parse_port_listing(listing(*[entry_xml(1 + i % 65535, "10.0.0.2", "x")
                                               for i in range(MAX_ENTRIES + 10)]))
    assert len(mappings) == MAX_ENTRIES


def test_a_generic_entry_reply() -> None:
    mapping = parse_entry({"NewRemoteHost": "", "NewExternalPort": "8080", "NewProtocol": "udp",
                           "NewInternalPort": "80", "NewInternalClient": "192.168.1.20",
                           "NewEnabled": "0", "NewPortMappingDescription": "NAT-PMP 8080 udp",
                           "NewLeaseDuration": "120"})
    assert (mapping.protocol, mapping.external_port, mapping.internal_port) == (17, 8080, 80)
    assert not mapping.enabled
    assert mapping.lease_remaining == 120
    assert mapping.made_by == "natpmp"
    with pytest.raises(ValueError, match="lease"):
        parse_entry({"NewProtocol": "TCP", "NewExternalPort": "1", "NewInternalPort": "1",
                     "NewInternalClient": "10.0.0.1", "NewLeaseDuration": "-5"})


def test_control_characters_in_descriptions_are_escaped() -> None:
    mapping = parse_entry({"NewProtocol": "TCP", "NewExternalPort": "1", "NewInternalPort": "1",
                           "NewInternalClient": "10.0.0.1",
                           "NewPortMappingDescription": "evil\x1b]0;title\x07"})
    assert "\x1b" not in mapping.description


def mapping(port: int, client: str = "10.0.0.2") -> RouterMapping:
    return RouterMapping(6, port, ip_address(client), port, "x", 100, True, "", "upnp")


def test_a_walk_drops_the_duplicate_an_add_mid_walk_causes() -> None:
    # Table [c, b, a] (newest first); after reading c, d is added: [d, c, b, a].
    walk = GenericWalk()
    walk.add(mapping(3))
    walk.add(mapping(3))      # index 1 is now c again
    walk.add(mapping(2))
    walk.add(mapping(1))
    assert [m.external_port for m in walk.mappings] == [3, 2, 1]
    assert walk.next_index == 4


def test_a_walk_stops_at_its_bound_and_counts_skips() -> None:
    walk = GenericWalk(limit=3)
    walk.add(mapping(1))
    walk.skip()
    assert not walk.exhausted
    walk.add(mapping(2))
    assert walk.exhausted
    assert walk.skipped == 1


def test_same_table_ignores_leases_but_not_clients() -> None:
    a = [mapping(1), mapping(2)]
    b = [RouterMapping(6, 2, ip_address("10.0.0.2"), 2, "x", 5, True, "", "upnp"), mapping(1)]
    assert same_table(a, b)
    assert not same_table(a, [mapping(1), mapping(2, "10.0.0.3")])
    assert not same_table(a, a[:1])


def test_upnp_maps_only_tcp_and_udp() -> None:
    assert upnp_protocol(6) == "TCP"
    assert upnp_protocol(17) == "UDP"
    with pytest.raises(ValueError, match="only TCP and UDP"):
        upnp_protocol(47)
