"""Every mapping a gateway holds, whoever made it: the router view's model (pure).

A UPnP IGD listing (``GetListOfPortMappings``, or ``GetGenericPortMappingEntry``
walked by index) shows the mappings of every host on the LAN; on miniupnpd the
PCP and NAT-PMP mappings are in the same table, described ``PCP MAP <nonce hex>``
and ``NAT-PMP <port> <proto>``. This module turns successive listings into what
the router view and ``natdeck list --watch`` show: entries keyed by
(protocol, external port, remote host), what opened, closed or changed between
two listings (as sentences for the event log), which entries are this host's
and which natdeck itself made, a filter, a sort and a summary.

A row is :class:`engine.upnp.listing.RouterMapping` (re-exported here), the
type the UPnP listing parser builds. No I/O: every method that depends on time
takes ``now`` (loop time); a lease read at listing time ``at`` has
``lease_remaining - (now - at)`` seconds left at ``now``.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from .events import ManagedMapping, MappingKey
from .protocols import parse_protocol
from .upnp.listing import MadeBy, RouterMapping, made_by
from .wire.addresses import IPAddress

__all__ = [
    "MADE_BY_LABELS",
    "SORT_KEYS",
    "EntryKey",
    "Query",
    "RouterChange",
    "RouterEntry",
    "RouterMapping",
    "RouterSummary",
    "RouterTable",
    "SortKey",
    "made_by",
    "own_ports",
    "own_rows",
    "parse_query",
]

#: What names an entry in the gateway's table: UPnP's own key for a port mapping
#: (``GetSpecificPortMappingEntry`` takes remote host, external port and protocol).
EntryKey = tuple[int, int, str]

SortKey = Literal["host", "protocol", "port", "lease"]
#: The orders the view offers, in the order a sort key cycles through them.
SORT_KEYS: tuple[SortKey, ...] = ("host", "protocol", "port", "lease")

#: How the creating protocol is named on screen.
MADE_BY_LABELS: dict[str, str] = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP"}

#: How long a new or vanished entry stays highlighted, in seconds.
HIGHLIGHT = 3.0


@dataclass(frozen=True, slots=True)
class RouterEntry:
    """A mapping as the view holds it: when it was read and seen first, whose it is."""

    mapping: RouterMapping
    read_at: float
    """Loop time of the listing its lease was read in."""
    first_seen: float
    this_host: bool = False
    """Its internal client is one of this host's addresses."""
    ours: MappingKey | None = None
    """The main table's key when natdeck itself made it."""
    gone_at: float | None = None
    """When it vanished (it is shown, highlighted, for a moment)."""
    new: bool = True
    """False for the entries of the first listing (they were there before we looked)."""

    @property
    def key(self) -> EntryKey:
        """The mapping's key."""
        return self.mapping.key

    def remaining(self, now: float) -> float | None:
        """Seconds of lease left at ``now``; ``None`` for a permanent mapping."""
        lease = self.mapping.lease_remaining
        if not lease:
            return None
        return lease - (now - self.read_at)

    def fresh(self, now: float, highlight: float = HIGHLIGHT) -> bool:
        """Whether it appeared within the last ``highlight`` seconds."""
        return self.new and self.gone_at is None and now - self.first_seen < highlight

    @property
    def who(self) -> str:
        """``this host via PCP``, ``another host via UPnP``."""
        host = "natdeck" if self.ours is not None else (
            "this host" if self.this_host else "another host")
        return f"{host} via {MADE_BY_LABELS.get(self.mapping.made_by, self.mapping.made_by)}"


@dataclass(frozen=True, slots=True)
class RouterChange:
    """What changed in the gateway's table between two listings."""

    kind: Literal["opened", "closed", "changed"]
    entry: RouterEntry
    before: RouterMapping | None = None
    """For ``changed``: the mapping as the previous listing read it."""

    @property
    def sentence(self) -> str:
        """``198.18.0.3 opened tcp 41900 via UPnP`` (for the event log)."""
        m = self.entry.mapping
        via = MADE_BY_LABELS.get(m.made_by, m.made_by)
        if self.kind == "opened":
            lease = "permanent" if m.permanent else f"lease {m.lease_remaining} s"
            return (f"{m.internal_client} opened {m.label} via {via} "
                    f"(to port {m.internal_port}, {lease})")
        if self.kind == "closed":
            return f"{m.internal_client} closed {m.label} ({via})"
        old = self.before
        what: list[str] = []
        if old is not None:
            if (old.internal_client, old.internal_port) != (m.internal_client, m.internal_port):
                what.append(f"now to {m.internal_client}:{m.internal_port}")
            if old.enabled != m.enabled:
                what.append("enabled" if m.enabled else "disabled")
            if old.description != m.description:
                what.append("new description")
        detail = ", ".join(what) if what else "changed"
        return f"{m.internal_client} changed {m.label} via {via}: {detail}"


@dataclass(frozen=True, slots=True)
class RouterSummary:
    """How many mappings, on how many hosts, and how many natdeck made."""

    mappings: int
    hosts: int
    ours: int

    def __str__(self) -> str:
        def count(n: int, word: str) -> str:
            return f"{n} {word}" if n == 1 else f"{n} {word}s"

        mappings, hosts = count(self.mappings, "mapping"), count(self.hosts, "host")
        return f"{mappings}, {hosts}, {self.ours} of ours"


@dataclass(frozen=True, slots=True)
class Query:
    """A filter: every given part must match (see :func:`parse_query`)."""

    hosts: tuple[str, ...] = ()
    protocols: tuple[int, ...] = ()
    ports: tuple[int, ...] = ()
    made_by: tuple[MadeBy, ...] = ()
    words: tuple[str, ...] = ()
    ours: bool = False
    others: bool = False

    @property
    def empty(self) -> bool:
        """True when it lets everything through."""
        return self == Query()

    def matches(self, entry: RouterEntry) -> bool:
        """Whether ``entry`` passes the filter."""
        m = entry.mapping
        client = str(m.internal_client)
        if self.hosts and not any(_host_matches(client, h) for h in self.hosts):
            return False
        if self.protocols and m.protocol not in self.protocols:
            return False
        if self.ports and m.external_port not in self.ports and m.internal_port not in self.ports:
            return False
        if self.made_by and m.made_by not in self.made_by:
            return False
        if self.ours and entry.ours is None:
            return False
        if self.others and entry.this_host:
            return False
        text = m.description.lower()
        return all(word in text for word in self.words)


def _host_matches(client: str, wanted: str) -> bool:
    # "198.18.0.3" is one host (not 198.18.0.30 too); "198.18.0." or "198.18.*" a range.
    if wanted.endswith("*"):
        return client.startswith(wanted[:-1])
    if wanted.endswith((".", ":")):
        return client.startswith(wanted)
    return client == wanted


_BY_WORDS: dict[str, MadeBy] = {"pcp": "pcp", "natpmp": "natpmp", "nat-pmp": "natpmp",
                                "upnp": "upnp"}


def parse_query(text: str) -> Query:
    """Parse a filter such as ``host:198.18.0.3 tcp 8080``.

    Words: ``host:ADDRESS`` (the internal client; ``host:198.18.0.`` or
    ``host:198.18.*`` for every address that starts so), a protocol
    (``tcp``, ``udp``, ``proto:47``), a port (``8080`` or ``port:8080``, external
    or internal), ``by:pcp|natpmp|upnp``, ``ours`` (natdeck's), ``others`` (other
    hosts'), and any other word, which the description must contain. Raises
    ``ValueError`` with a sentence for a word it cannot read.
    """
    hosts: list[str] = []
    protocols: list[int] = []
    ports: list[int] = []
    by: list[MadeBy] = []
    words: list[str] = []
    ours = others = False
    for word in text.split():
        name, colon, value = word.partition(":")
        lower = name.lower()
        if colon and lower == "host":
            if not value:
                raise ValueError("host: needs an address or its start, as in host:198.18.0.")
            hosts.append(value)
        elif colon and lower in ("proto", "protocol"):
            protocols.append(int(parse_protocol(value)))
        elif (colon and lower == "port") or (not colon and word.isascii() and word.isdigit()):
            ports.append(_port(value if colon else word))
        elif colon and lower == "by":
            if value.lower() not in _BY_WORDS:
                raise ValueError(f"by: takes pcp, natpmp or upnp, not {value!r}")
            by.append(_BY_WORDS[value.lower()])
        elif colon:
            raise ValueError(f"unknown filter {name!r}:; use host:, port:, proto: or by:")
        elif lower in ("tcp", "udp"):
            protocols.append(int(parse_protocol(lower)))
        elif lower in ("ours", "mine"):
            ours = True
        elif lower == "others":
            others = True
        else:
            words.append(lower)
    return Query(tuple(hosts), tuple(protocols), tuple(ports), tuple(by), tuple(words),
                 ours, others)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise ValueError(f"a port is a number 0-65535, not {text!r}")
    return int(text)


def _host_order(client: IPAddress) -> tuple[int, int]:
    return (client.version, int(client))


def _sort_value(entry: RouterEntry, by: SortKey, now: float) -> tuple[object, ...]:
    m = entry.mapping
    port = (m.external_port, m.protocol, m.remote_host)
    if by == "host":
        return (_host_order(m.internal_client), m.internal_port, *port)
    if by == "protocol":
        return (m.protocol, m.external_port, m.remote_host)
    if by == "port":
        return port
    remaining = entry.remaining(now)
    # Permanent mappings last: they never run out.
    return (remaining is None, remaining if remaining is not None else 0.0, *port)


@dataclass(slots=True)
class RouterTable:
    """Successive listings of a gateway's table, and what changed between them.

    ``local_addresses`` are this host's addresses towards the gateway; ``own``
    maps natdeck's own mappings, (protocol, external port), to the main table's
    keys. A listing walked by index can read an entry twice while the table
    shifts (the later read wins) or miss one: with ``grace`` above 1 an entry
    must be missing from that many listings in a row before it counts as closed
    (an entry whose lease has run out is closed at once).
    """

    local_addresses: frozenset[str] = frozenset()
    own: Mapping[tuple[int, int], MappingKey] = field(default_factory=dict)
    grace: int = 1
    highlight: float = HIGHLIGHT
    entries: dict[EntryKey, RouterEntry] = field(default_factory=dict)
    """The entries of the last listing, in the order it read them."""
    vanished: dict[EntryKey, RouterEntry] = field(default_factory=dict)
    """Entries that closed within the last ``highlight`` seconds."""
    listings: int = 0
    _missing: dict[EntryKey, int] = field(default_factory=dict)
    _was_ours: dict[EntryKey, MappingKey] = field(default_factory=dict)
    """Entries natdeck made: when natdeck unmaps one, the manager forgets it before the
    next listing drops it, and its close is still natdeck's."""

    def set_ours(self, local_addresses: Iterable[str],
                 own: Mapping[tuple[int, int], MappingKey]) -> bool:
        """Say which addresses are this host's and which mappings natdeck made;
        returns True if any entry's marking changed."""
        self.local_addresses = frozenset(_canonical(a) for a in local_addresses)
        self.own = dict(own)
        changed = False
        for key, entry in self.entries.items():
            marked = self._marked(entry)
            if marked != entry:
                self.entries[key] = marked
                changed = True
        return changed

    def _marked(self, entry: RouterEntry) -> RouterEntry:
        m = entry.mapping
        this_host = str(m.internal_client) in self.local_addresses
        ours = self.own.get((m.protocol, m.external_port)) if this_host else None
        if ours is not None:
            self._was_ours[entry.key] = ours
        if (this_host, ours) == (entry.this_host, entry.ours):
            return entry
        return replace(entry, this_host=this_host, ours=ours)

    def update(self, rows: Iterable[RouterMapping], now: float) -> list[RouterChange]:
        """Take a listing read at ``now``; return what opened, closed or changed.

        The first listing returns nothing: its entries were there before we looked.
        """
        first = self.listings == 0
        self.listings += 1
        latest: dict[EntryKey, RouterMapping] = {}
        for row in rows:
            latest.pop(row.key, None)  # a duplicate read: keep the later one, in its place
            latest[row.key] = row
        changes: list[RouterChange] = []
        entries: dict[EntryKey, RouterEntry] = {}
        for key, row in latest.items():
            old = self.entries.get(key)
            self._missing.pop(key, None)
            if old is None:
                entry = self._marked(RouterEntry(row, now, now, new=not first))
                self.vanished.pop(key, None)
                if not first:
                    changes.append(RouterChange("opened", entry))
            else:
                entry = self._marked(replace(old, mapping=row, read_at=now))
                if _differs(old.mapping, row):
                    changes.append(RouterChange("changed", entry, old.mapping))
            entries[key] = entry
        for key, old in self.entries.items():
            if key in entries:
                continue
            misses = self._missing.get(key, 0) + 1
            remaining = old.remaining(now)
            if misses < self.grace and (remaining is None or remaining > 0):
                self._missing[key] = misses
                entries[key] = old
                continue
            self._missing.pop(key, None)
            gone = self._gone(old, now)
            self.vanished[key] = gone
            changes.append(RouterChange("closed", gone))
        self.entries = entries
        self._drop_vanished(now)
        return changes

    def forget(self, key: EntryKey, now: float) -> RouterChange | None:
        """Drop an entry at once (it was deleted from here); the change, if it was there."""
        old = self.entries.pop(key, None)
        if old is None:
            return None
        self._missing.pop(key, None)
        gone = self._gone(old, now)
        self.vanished[key] = gone
        return RouterChange("closed", gone)

    def _gone(self, entry: RouterEntry, now: float) -> RouterEntry:
        was_ours = self._was_ours.pop(entry.key, None)
        return replace(entry, gone_at=now, ours=entry.ours or was_ours)

    def _drop_vanished(self, now: float) -> None:
        for key in [k for k, e in self.vanished.items()
                    if e.gone_at is not None and now - e.gone_at >= self.highlight]:
            del self.vanished[key]

    def view(self, now: float, query: Query | None = None, sort: SortKey = "host",
             reverse: bool = False) -> list[RouterEntry]:
        """The entries to show at ``now``: those of the last listing and those that
        vanished within ``highlight`` seconds, filtered and sorted."""
        self._drop_vanished(now)
        shown = [*self.entries.values(),
                 *(e for k, e in self.vanished.items() if k not in self.entries)]
        if query is not None and not query.empty:
            shown = [e for e in shown if query.matches(e)]
        shown.sort(key=lambda e: _sort_value(e, sort, now), reverse=reverse)
        return shown

    def summary(self) -> RouterSummary:
        """N mappings, M hosts, K of ours (of the last listing)."""
        entries = self.entries.values()
        hosts = {e.mapping.internal_client for e in entries}
        ours = sum(1 for e in entries if e.ours is not None)
        return RouterSummary(len(self.entries), len(hosts), ours)


def _canonical(address: str) -> str:
    # "::0001" and "::1" are one host; text that is no address stays as given (it matches none).
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return address


def own_rows(mappings: Iterable[ManagedMapping], local_address: str,
             now: float) -> list[RouterMapping]:
    """natdeck's own granted mappings as rows, for a gateway that does not list its
    table: what natdeck knows when the gateway will not say."""
    client = ipaddress.ip_address(local_address)
    rows: list[RouterMapping] = []
    for m in mappings:
        if m.external_port is None or m.via is None:
            continue
        remaining = m.remaining(now)
        lease = None if remaining is None else max(math.ceil(remaining), 1)
        rows.append(RouterMapping(
            protocol=int(m.protocol), external_port=m.external_port,
            internal_client=client, internal_port=m.internal_port,
            description=f"natdeck {MADE_BY_LABELS.get(m.via, m.via)}", lease_remaining=lease,
            enabled=True, remote_host="", made_by=m.via))
    return rows


def own_ports(mappings: Iterable[ManagedMapping]) -> dict[tuple[int, int], MappingKey]:
    """natdeck's mappings as (protocol, external port) -> main table key."""
    return {(int(m.protocol), m.external_port): m.key for m in mappings
            if m.external_port is not None}


def _differs(old: RouterMapping, new: RouterMapping) -> bool:
    # A lease that counts down is not a change; a new target, state or description is.
    return (old.internal_client, old.internal_port, old.enabled, old.description) != (
        new.internal_client, new.internal_port, new.enabled, new.description)
