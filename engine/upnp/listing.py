"""Every mapping an IGD holds, whoever made it, pure: reading GetListOfPortMappings'
``NewPortListing`` document and GetGenericPortMappingEntry's entries into one type.

On miniupnpd NAT-PMP, PCP and UPnP share one table, so the listing shows PCP and NAT-PMP
mappings too, named ``PCP MAP <nonce hex>`` and ``NAT-PMP <port> <proto>``: ``made_by`` says
which. GetGenericPortMappingEntry walks an index over a table that changes under it (entries
come newest first, so an add shifts every index): :class:`GenericWalk` drops the duplicates a
shift causes and bounds the walk; the caller walks again until two walks agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Literal
from xml.etree.ElementTree import ParseError

from defusedxml import ElementTree as SafeElementTree
from defusedxml.common import DefusedXmlException

from ..protocols import protocol_name
from ..wire.addresses import IPAddress
from .igd import parse_port
from .soap import local_name

__all__ = [
    "MAX_ENTRIES",
    "GenericWalk",
    "MadeBy",
    "RouterMapping",
    "made_by",
    "parse_entry",
    "parse_port_listing",
    "same_table",
    "upnp_protocol",
]

MadeBy = Literal["pcp", "natpmp", "upnp"]
#: Entries read at most from one gateway (a hostile one could list forever).
MAX_ENTRIES = 4096
_PROTOCOLS = {"TCP": 6, "UDP": 17}


def upnp_protocol(protocol: int) -> str:
    """``NewProtocol`` for an IP protocol number: ``TCP`` or ``UDP`` (IGD maps nothing else).
    Raises ``ValueError`` for any other protocol."""
    for name, number in _PROTOCOLS.items():
        if number == protocol:
            return name
    raise ValueError(f"UPnP IGD maps only TCP and UDP, not protocol {protocol}")


def made_by(description: str) -> MadeBy:
    """Which protocol made a mapping, from the description miniupnpd gives it: ``pcp`` for
    ``PCP MAP <nonce hex>`` (and ``PCP PEER``), ``natpmp`` for ``NAT-PMP <port> <proto>``, else
    ``upnp`` (the description a UPnP client chose)."""
    if description.startswith("PCP "):
        return "pcp"
    if description.startswith("NAT-PMP "):
        return "natpmp"
    return "upnp"


@dataclass(frozen=True, slots=True)
class RouterMapping:
    """One mapping the gateway holds, as its UPnP listing shows it: the one type for a row of
    a gateway's table (the router view, ``natdeck list`` and the UPnP client all use it)."""

    protocol: int
    """6 (TCP) or 17 (UDP)."""
    external_port: int
    internal_client: IPAddress
    internal_port: int
    description: str
    lease_remaining: int | None
    """Seconds left; ``None`` for a permanent mapping (lease 0)."""
    enabled: bool
    remote_host: str
    """"" for any remote host."""
    made_by: MadeBy
    """Which protocol made it (see :func:`made_by`)."""

    @property
    def key(self) -> tuple[int, int, str]:
        """What identifies a mapping at an IGD: protocol, external port, remote host
        (``GetSpecificPortMappingEntry`` and ``DeletePortMapping`` take these three)."""
        return (self.protocol, self.external_port, self.remote_host)

    @property
    def permanent(self) -> bool:
        """True for a mapping without a lease (UPnP's 0)."""
        return not self.lease_remaining

    @property
    def label(self) -> str:
        """``tcp 41900`` (and ``from 203.0.113.9`` for a mapping of one remote host)."""
        text = f"{protocol_name(self.protocol)} {self.external_port}"
        return f"{text} from {self.remote_host}" if self.remote_host else text


def _text(fields: Mapping[str, str], *names: str) -> str:
    for name in names:
        if name in fields:
            return fields[name]
    return ""


def parse_entry(fields: Mapping[str, str]) -> RouterMapping:
    """A mapping from the out-arguments of GetGenericPortMappingEntry (or the elements of one
    PortMappingEntry). Raises ``ValueError`` when a field is missing or invalid."""
    protocol_text = _text(fields, "NewProtocol").strip().upper()
    if protocol_text not in _PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol_text[:10]!r}")
    lease_text = _text(fields, "NewLeaseDuration", "NewLeaseTime").strip() or "0"
    if not (lease_text.isascii() and lease_text.isdigit() and len(lease_text) <= 10):
        raise ValueError(f"lease is not a number: {lease_text[:20]!r}")
    lease = int(lease_text)
    enabled_text = _text(fields, "NewEnabled").strip().lower() or "1"
    if enabled_text not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"enabled is not a boolean: {enabled_text[:10]!r}")
    client_text = _text(fields, "NewInternalClient").strip()
    description = _text(fields, "NewPortMappingDescription", "NewDescription")[:256]
    if not description.isprintable():
        description = repr(description)
    remote = _text(fields, "NewRemoteHost").strip()[:64]
    return RouterMapping(
        protocol=_PROTOCOLS[protocol_text],
        external_port=parse_port(_text(fields, "NewExternalPort"), "NewExternalPort",
                                 allow_zero=True),
        internal_client=ip_address(client_text),
        internal_port=parse_port(_text(fields, "NewInternalPort"), "NewInternalPort",
                                 allow_zero=True),
        description=description,
        lease_remaining=lease or None,
        enabled=enabled_text in ("1", "true", "yes"),
        remote_host=remote if remote.isprintable() else repr(remote),
        made_by=made_by(description),
    )


def parse_port_listing(document: str) -> tuple[list[RouterMapping], int]:
    """The mappings in a ``NewPortListing`` document, and how many entries were unreadable
    (skipped, not fatal: one bad entry must not hide the others). Raises ``ValueError`` when
    the document itself is not XML."""
    if not document.strip():
        return [], 0
    try:
        root = SafeElementTree.fromstring(document)
    except (ParseError, DefusedXmlException) as exc:
        raise ValueError(f"NewPortListing is not XML ({exc})") from None
    mappings: list[RouterMapping] = []
    skipped = 0
    for element in root.iter():
        if local_name(element.tag) != "PortMappingEntry":
            continue
        if len(mappings) + skipped >= MAX_ENTRIES:
            break
        fields = {local_name(child.tag): child.text or "" for child in element}
        try:
            mappings.append(parse_entry(fields))
        except ValueError:
            skipped += 1
    return mappings, skipped


class GenericWalk:
    """One walk over GetGenericPortMappingEntry's indices 0, 1, 2... until 713.

    Feed each index's entry with :meth:`add` (or :meth:`skip` when it was unreadable);
    :attr:`mappings` is what the walk saw, each key once, in table order. An add at the
    gateway during the walk shifts the entries we have not read yet by one, so one is read
    twice: the second sighting is dropped. A delete shifts them back, so one may be missed:
    that is why the caller walks again until two walks agree (:func:`same_table`).
    """

    def __init__(self, limit: int = MAX_ENTRIES) -> None:
        self._limit = limit
        self._seen: dict[tuple[int, int, str], RouterMapping] = {}
        self.next_index = 0
        self.skipped = 0

    @property
    def exhausted(self) -> bool:
        """True once the walk read as many indices as it may (a hostile gateway's end)."""
        return self.next_index >= self._limit

    def add(self, mapping: RouterMapping) -> None:
        """The entry at :attr:`next_index`."""
        self._seen.setdefault(mapping.key, mapping)
        self.next_index += 1

    def skip(self) -> None:
        """The entry at :attr:`next_index` was unreadable."""
        self.skipped += 1
        self.next_index += 1

    @property
    def mappings(self) -> list[RouterMapping]:
        """What the walk saw, each mapping once."""
        return list(self._seen.values())


def same_table(first: Iterable[RouterMapping], second: Iterable[RouterMapping]) -> bool:
    """True if two listings hold the same mappings (leases count down, so they are ignored)."""
    def keys(mappings: Iterable[RouterMapping]) -> set[tuple[object, ...]]:
        return {(m.key, m.internal_client, m.internal_port) for m in mappings}

    return keys(first) == keys(second)
