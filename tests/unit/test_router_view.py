"""The router view's model: listings in, changes, marks, filter, sort and summary out (pure)."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_address

import pytest

from engine.events import ManagedMapping, MappingKey, MappingState
from engine.protocols import Protocol
from engine.router_view import (
    RouterMapping,
    RouterTable,
    made_by,
    own_ports,
    own_rows,
    parse_query,
)

TCP, UDP = 6, 17


def row(port: int, client: str = "198.18.0.3", *, protocol: int = TCP, lease: int | None = 3600,
        description: str = "Transmission", internal_port: int | None = None,
        enabled: bool = True, remote: str = "") -> RouterMapping:
    return RouterMapping(protocol, port, ip_address(client), internal_port or port, description,
                         lease, enabled, remote, made_by(description))


def test_made_by_reads_miniupnpd_descriptions() -> None:
    assert made_by("PCP MAP 0a1b2c3d4e5f60718293a4b5") == "pcp"
    assert made_by("NAT-PMP 41900 tcp") == "natpmp"
    assert made_by("Plex Media Server") == "upnp"
    assert made_by("") == "upnp"


def test_first_listing_is_the_baseline_then_changes_are_sentences() -> None:
    table = RouterTable()
    assert table.update([row(41900), row(8080, "198.18.0.4")], now=10.0) == []
    assert [e.new for e in table.entries.values()] == [False, False]
    changes = table.update([row(8080, "198.18.0.4"), row(51413, description="NAT-PMP 51413 udp",
                                                         protocol=UDP)], now=12.0)
    assert [(c.kind, c.sentence) for c in changes] == [
        ("opened", "198.18.0.3 opened udp 51413 via NAT-PMP (to port 51413, lease 3600 s)"),
        ("closed", "198.18.0.3 closed tcp 41900 (UPnP)"),
    ]
    opened = table.entries[(UDP, 51413, "")]
    assert opened.fresh(13.0)
    assert not opened.fresh(15.0)


def test_a_changed_target_is_a_change_a_lease_counting_down_is_not() -> None:
    table = RouterTable()
    table.update([row(8080, lease=100)], now=0.0)
    assert table.update([row(8080, lease=90)], now=10.0) == []
    changes = table.update([row(8080, "198.18.0.9", lease=80, enabled=False)], now=20.0)
    assert [c.sentence for c in changes] == [
        "198.18.0.9 changed tcp 8080 via UPnP: now to 198.18.0.9:8080, disabled"]
    assert changes[0].before == row(8080, lease=90)


def test_lease_counts_down_from_the_listing_time() -> None:
    table = RouterTable()
    table.update([row(8080, lease=100), row(9090, lease=0), row(7070, lease=None)], now=50.0)
    entries = table.entries
    assert entries[(TCP, 8080, "")].remaining(62.5) == pytest.approx(87.5)
    assert entries[(TCP, 9090, "")].remaining(62.5) is None
    assert entries[(TCP, 7070, "")].remaining(1e6) is None


def test_duplicates_in_one_listing_count_once_and_the_later_read_wins() -> None:
    # An index walk while the table shifts reads an entry twice.
    table = RouterTable()
    table.update([row(8080, lease=100), row(9090), row(8080, lease=99)], now=0.0)
    assert list(table.entries) == [(TCP, 9090, ""), (TCP, 8080, "")]
    assert table.entries[(TCP, 8080, "")].mapping.lease_remaining == 99
    assert table.summary().mappings == 2
    assert table.update([row(9090), row(9090), row(8080, lease=98), row(8080, lease=97)],
                        now=1.0) == []


def test_entries_are_keyed_by_protocol_external_port_and_remote_host() -> None:
    table = RouterTable()
    table.update([row(8080), row(8080, protocol=UDP), row(8080, remote="203.0.113.9")], now=0.0)
    assert len(table.entries) == 3
    assert table.entries[(TCP, 8080, "203.0.113.9")].mapping.label == "tcp 8080 from 203.0.113.9"


def test_with_grace_a_missed_read_is_not_a_close() -> None:
    table = RouterTable(grace=2)
    table.update([row(8080), row(9090)], now=0.0)
    assert table.update([row(9090)], now=1.0) == []  # missed once: kept
    assert (TCP, 8080, "") in table.entries
    assert table.update([row(8080), row(9090)], now=2.0) == []  # back: nothing happened
    table.update([row(9090)], now=3.0)
    changes = table.update([row(9090)], now=4.0)
    assert [c.kind for c in changes] == ["closed"]


def test_with_grace_an_expired_lease_closes_at_once() -> None:
    table = RouterTable(grace=3)
    table.update([row(8080, lease=5), row(9090)], now=0.0)
    assert [c.kind for c in table.update([row(9090)], now=6.0)] == ["closed"]


def test_vanished_entries_are_shown_for_a_moment() -> None:
    table = RouterTable(highlight=3.0)
    table.update([row(8080), row(9090)], now=0.0)
    table.update([row(9090)], now=1.0)
    shown = table.view(2.0)
    assert [e.mapping.external_port for e in shown] == [8080, 9090]
    assert shown[0].gone_at == 1.0
    assert not shown[0].fresh(2.0)
    assert [e.mapping.external_port for e in table.view(4.5)] == [9090]
    assert table.summary().mappings == 1


def test_an_entry_that_comes_back_is_no_longer_vanished() -> None:
    table = RouterTable()
    table.update([row(8080)], now=0.0)
    table.update([], now=1.0)
    changes = table.update([row(8080)], now=2.0)
    assert [c.kind for c in changes] == ["opened"]
    assert [e.gone_at for e in table.view(2.0)] == [None]


def test_ours_and_this_host_marks() -> None:
    key = MappingKey(TCP, 8080)
    table = RouterTable(local_addresses=frozenset({"192.168.1.20"}), own={(TCP, 8080): key})
    table.update([row(8080, "192.168.1.20", description="PCP MAP 00ff"),
                  row(9090, "192.168.1.20"), row(8080, "198.18.0.3", protocol=UDP)], now=0.0)
    entries = table.entries
    assert entries[(TCP, 8080, "")].ours == key
    assert entries[(TCP, 8080, "")].who == "natdeck via PCP"
    assert entries[(TCP, 9090, "")].ours is None
    assert entries[(TCP, 9090, "")].this_host
    assert entries[(TCP, 9090, "")].who == "this host via UPnP"
    assert entries[(UDP, 8080, "")].who == "another host via UPnP"
    assert str(table.summary()) == "3 mappings, 2 hosts, 1 of ours"
    # natdeck unmaps it: the mark goes, at once.
    assert table.set_ours({"192.168.1.20"}, {})
    assert table.entries[(TCP, 8080, "")].ours is None
    assert not table.set_ours({"192.168.1.20"}, {})


def test_a_mapping_natdeck_unmapped_closes_as_ours() -> None:
    # The manager forgets it before the next listing drops it; the close is natdeck's.
    key = MappingKey(TCP, 8080)
    table = RouterTable(local_addresses=frozenset({"192.168.1.20"}), own={(TCP, 8080): key})
    table.update([row(8080, "192.168.1.20")], now=0.0)
    table.set_ours({"192.168.1.20"}, {})
    (change,) = table.update([], now=1.0)
    assert change.kind == "closed"
    assert change.entry.ours == key
    # Mapped again later by another program of this host: not ours.
    table.update([row(8080, "192.168.1.20")], now=2.0)
    (change,) = table.update([], now=3.0)
    assert change.entry.ours is None


def test_another_host_on_our_port_number_is_not_ours() -> None:
    table = RouterTable(local_addresses=frozenset({"192.168.1.20"}),
                        own={(TCP, 8080): MappingKey(TCP, 8080)})
    table.update([row(8080, "192.168.1.99")], now=0.0)
    assert table.entries[(TCP, 8080, "")].ours is None


def test_summary_words() -> None:
    table = RouterTable()
    assert str(table.summary()) == "0 mappings, 0 hosts, 0 of ours"
    table.update([row(1)], now=0.0)
    assert str(table.summary()) == "1 mapping, 1 host, 0 of ours"


def test_filter_by_host_protocol_port_and_words() -> None:
    table = RouterTable(local_addresses=frozenset({"192.168.1.20"}),
                        own={(UDP, 51820): MappingKey(UDP, 51820)})
    table.update([
        row(8080, "198.18.0.3"), row(8080, "198.18.0.3", protocol=UDP),
        row(41900, "198.18.0.30", internal_port=8080, description="NAT-PMP 8080 tcp"),
        row(3074, "198.18.0.7", description="Xbox Live", protocol=UDP),
        row(51820, "192.168.1.20", protocol=UDP, description="PCP MAP 00"),
    ], now=0.0)

    def ports(text: str) -> list[tuple[str, int]]:
        return [(str(e.mapping.internal_client), e.mapping.external_port)
                for e in table.view(0.0, parse_query(text), "port")]

    assert ports("host:198.18.0.3 tcp 8080") == [("198.18.0.3", 8080)]
    assert ports("host:198.18.0.3") == [("198.18.0.3", 8080), ("198.18.0.3", 8080)]
    assert ports("host:198.18.0.3*") == [("198.18.0.3", 8080), ("198.18.0.3", 8080),
                                         ("198.18.0.30", 41900)]
    assert len(ports("host:198.18.0.")) == 4
    assert ports("8080 tcp") == [("198.18.0.3", 8080), ("198.18.0.30", 41900)]
    assert ports("udp") == [("198.18.0.7", 3074), ("198.18.0.3", 8080), ("192.168.1.20", 51820)]
    assert ports("xbox") == [("198.18.0.7", 3074)]
    assert ports("by:nat-pmp") == [("198.18.0.30", 41900)]
    assert ports("ours") == [("192.168.1.20", 51820)]
    assert len(ports("others")) == 4
    assert len(ports("")) == 5
    assert ports("proto:17 port:3074") == [("198.18.0.7", 3074)]


@pytest.mark.parametrize("text", ["port:70000", "by:carrier-pigeon", "colour:red", "host:",
                                  "proto:nonsense"])
def test_bad_filters_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError):
        parse_query(text)


def test_sort_orders() -> None:
    table = RouterTable()
    table.update([row(9000, "198.18.0.10", lease=50), row(8000, "198.18.0.9", protocol=UDP,
                                                          lease=None),
                  row(7000, "2001:db8::5", lease=10), row(6000, "198.18.0.9", lease=500)],
                 now=0.0)

    def order(by: str, reverse: bool = False) -> list[int]:
        return [e.mapping.external_port
                for e in table.view(0.0, sort=by, reverse=reverse)]  # type: ignore[arg-type]

    # Hosts in numeric order (.9 before .10), IPv4 before IPv6.
    assert order("host") == [6000, 8000, 9000, 7000]
    assert order("protocol") == [6000, 7000, 9000, 8000]
    assert order("port") == [6000, 7000, 8000, 9000]
    assert order("lease") == [7000, 9000, 6000, 8000]  # permanent last
    assert order("port", reverse=True) == [9000, 8000, 7000, 6000]


def test_forget_drops_an_entry_deleted_from_here() -> None:
    table = RouterTable()
    table.update([row(8080)], now=0.0)
    change = table.forget((TCP, 8080, ""), now=1.0)
    assert change is not None
    assert change.kind == "closed"
    assert table.entries == {}
    assert table.forget((TCP, 8080, ""), now=1.0) is None
    assert table.update([], now=2.0) == []


def _managed(port: int, external: int | None, via: str | None = "pcp") -> ManagedMapping:
    return ManagedMapping(MappingKey(TCP, port), Protocol.TCP, port, MappingState.ACTIVE, 120,
                          via=via, external_port=external,  # type: ignore[arg-type]
                          lifetime=120, granted_at=0.0, expires_at=120.0)


def test_own_rows_stand_in_for_a_gateway_that_does_not_list() -> None:
    managed = [_managed(8080, 8080), _managed(25565, 25570, "natpmp"),
               dataclasses.replace(_managed(3000, None), state=MappingState.REQUESTING)]
    rows = own_rows(managed, "127.0.0.1", now=20.5)
    assert rows == [
        RouterMapping(TCP, 8080, ip_address("127.0.0.1"), 8080, "natdeck PCP", 100, True, "",
                      "pcp"),
        RouterMapping(TCP, 25570, ip_address("127.0.0.1"), 25565, "natdeck NAT-PMP", 100, True, "",
                      "natpmp"),
    ]
    own = own_ports(managed)
    assert own == {(TCP, 8080): MappingKey(TCP, 8080), (TCP, 25570): MappingKey(TCP, 25565)}
    table = RouterTable(local_addresses=frozenset({"127.0.0.1"}), own=own)
    table.update(rows, now=20.5)
    assert table.summary().ours == 2
