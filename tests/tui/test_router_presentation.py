"""What the router view shows for an entry and above the table (pure)."""

from __future__ import annotations

from ipaddress import ip_address as A

from rich.text import Text

from engine.events import MappingKey
from engine.router_source import ListingUnavailable
from engine.router_view import RouterEntry, RouterMapping, RouterSummary
from tui.router_presentation import ROUTER_COLUMNS, RouterStatus, router_cells


def entry(**changes: object) -> RouterEntry:
    mapping = RouterMapping(6, 41900, A("198.18.0.3"), 41900, "Transmission", 100, True, "",
                            "upnp")
    fields: dict[str, object] = {"mapping": mapping, "read_at": 0.0, "first_seen": 0.0,
                                 "new": False}
    fields.update(changes)
    return RouterEntry(**fields)  # type: ignore[arg-type]


def texts(e: RouterEntry, now: float) -> dict[str, str]:
    return {key: text for (key, _, _), (text, _) in zip(ROUTER_COLUMNS, router_cells(e, now),
                                                        strict=True)}


def test_cells_of_another_hosts_mapping() -> None:
    assert texts(entry(), 10.0) == {
        "protocol": "tcp", "external": "41900", "internal": "198.18.0.3:41900",
        "lease": "1:30", "enabled": "yes", "who": "other UPnP", "description": "Transmission"}


def test_new_entries_are_highlighted_for_a_moment_vanished_ones_struck() -> None:
    fresh = entry(new=True, first_seen=5.0)
    assert all(style == "bold green" for _, style in router_cells(fresh, 6.0))
    assert not any("green" in style for _, style in router_cells(fresh, 9.0))
    gone = entry(gone_at=6.0)
    assert all(style == "strike red" for _, style in router_cells(gone, 7.0))


def test_leases_permanent_short_and_expired() -> None:
    permanent = entry(mapping=RouterMapping(17, 3074, A("198.18.0.7"), 3074, "Xbox Live", None,
                                            True, "", "upnp"))
    assert texts(permanent, 1e6)["lease"] == "perm."
    cells = dict(zip([k for k, _, _ in ROUTER_COLUMNS], router_cells(entry(), 50.0),
                     strict=True))
    assert cells["lease"] == ("0:50", "yellow")
    assert texts(entry(), 200.0)["lease"] == "expired"


def test_ours_this_host_disabled_and_remote_host() -> None:
    assert texts(entry(ours=MappingKey(6, 41900), this_host=True), 0.0)["who"] == "ours UPnP"
    assert texts(entry(this_host=True), 0.0)["who"] == "this UPnP"
    disabled = entry(mapping=RouterMapping(6, 1, A("198.18.0.3"), 1, "x", 100, False, "", "pcp"))
    assert texts(disabled, 0.0)["enabled"] == "no"
    remote = entry(mapping=RouterMapping(6, 1, A("198.18.0.3"), 1, "x", 100, True, "203.0.113.9",
                                         "upnp"))
    assert texts(remote, 0.0)["external"] == "1 ←203.0.113.9"


def test_text_from_the_gateway_is_sanitized() -> None:
    # The internal client is an address the parser validated; the rest is the gateway's text.
    evil = entry(mapping=RouterMapping(6, 1, A("198.18.0.3"), 1, "a\x1b]0;x\x07b", 100,
                                       True, "\x1b[1m", "upnp"))
    for text, _ in router_cells(evil, 0.0):
        assert "\x1b" not in text
        assert "\x07" not in text


def status(**changes: object) -> str:
    fields: dict[str, object] = dict(
        summary=RouterSummary(8, 6, 1), sort_by="host", reverse=False, filter_text=None,
        shown=8, listed=True, unavailable=None, answer=None, interval=2.0)
    fields.update(changes)
    return RouterStatus(**fields).text().plain  # type: ignore[arg-type]


def test_status_lines() -> None:
    assert status().splitlines() == [
        "8 mappings, 6 hosts, 1 of ours  ·  sorted by host",
        "Listed every 2 s · d deletes another host's · Enter on ours shows it"]
    assert "sorted by lease ↑  ·  filter tcp: 3 shown" in status(
        sort_by="lease", reverse=True, filter_text="tcp", shown=3)
    assert status(listed=False).splitlines()[1] == "Listing the gateway's mappings…"
    no_upnp = status(listed=False, unavailable=ListingUnavailable("no UPnP here"))
    assert no_upnp.splitlines()[1] == "no UPnP here. Showing natdeck's own mappings."
    assert status(unavailable=ListingUnavailable("timeout")).splitlines()[1] == (
        "The last listing failed: timeout")
    assert status(answer=Text("Gateway's answer: OK")).splitlines()[1] == "Gateway's answer: OK"


def test_the_status_says_when_a_failed_listing_is_tried_again() -> None:
    off = ListingUnavailable("no UPnP here")
    waiting = status(listed=False, unavailable=off, retry_in=31.2).splitlines()
    assert waiting[0] == ("8 mappings, 6 hosts, 1 of ours  ·  sorted by host  ·  "
                          "retry in 0:32 (r: now)")
    assert len(waiting[0]) <= 78  # the status line of an 80-column view
    assert status(listed=False, unavailable=off, retry_in=0.0).splitlines()[0].endswith(
        "·  asking again…")
    assert "retry" not in status()
