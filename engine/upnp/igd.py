"""Decisions about an IGD, pure: which service to use, which of several IGDs, what lease to
ask, what the external address means, how to read what an add granted.

Tailscale's portmapper (net/portmapper/upnp.go) is the model: WANIPConnection:2 before :1
before WANPPPConnection:1; several IGDs ranked by Connected, has an external address, that
address is public; leases retried as permanent on 725 (and 402, MikroTik).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from ..wire.addresses import IPAddress
from .codes import PERMANENT_ONLY_CODES

__all__ = [
    "DEFAULT_LEASE",
    "MAX_LEASE",
    "PINHOLE_SERVICE",
    "SERVICE_PREFERENCE",
    "ExternalAddress",
    "IgdCandidate",
    "IgdService",
    "best_igd",
    "choose_service",
    "granted_port",
    "igd_version",
    "lease_seconds",
    "parse_port",
    "read_external_address",
    "retry_as_permanent",
]

#: Services that map ports, best first (IGDv2's WANIPConnection:2 has AddAnyPortMapping and
#: GetListOfPortMappings).
SERVICE_PREFERENCE = (
    "urn:schemas-upnp-org:service:WANIPConnection:2",
    "urn:schemas-upnp-org:service:WANIPConnection:1",
    "urn:schemas-upnp-org:service:WANPPPConnection:1",
)
PINHOLE_SERVICE = "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"
#: The longest lease IGDv2 allows (WANIPConnection:2 §2.2.21: 1 to 604800 s, 0 = "infinite",
#: which IGDv2 gateways store as 604800 s).
MAX_LEASE = 604800
#: What natdeck asks by default, as for PCP and NAT-PMP.
DEFAULT_LEASE = 7200


@dataclass(frozen=True, slots=True)
class IgdService:
    """One service of a device description: its type, its control URL, its action names."""

    service_type: str
    control_url: str
    actions: frozenset[str]

    @property
    def version(self) -> int:
        """The service version (``...:WANIPConnection:2`` -> 2)."""
        tail = self.service_type.rsplit(":", 1)[-1]
        return int(tail) if tail.isdigit() else 1


def choose_service(services: Iterable[IgdService]) -> IgdService | None:
    """The port-mapping service to use, by :data:`SERVICE_PREFERENCE`; ``None`` if none."""
    offered = {service.service_type: service for service in services}
    for wanted in SERVICE_PREFERENCE:
        if wanted in offered:
            return offered[wanted]
    return None


def igd_version(device_type: str) -> int:
    """1 or 2 from ``urn:schemas-upnp-org:device:InternetGatewayDevice:N`` (1 if unclear)."""
    tail = device_type.rsplit(":", 1)[-1]
    return 2 if tail == "2" else 1


@dataclass(frozen=True, slots=True)
class ExternalAddress:
    """What GetExternalIPAddress said, judged."""

    address: IPAddress | None
    """The address, or ``None`` when it gave none (or an unusable one)."""
    public: bool
    """True for a globally routable address; else ``warning`` says why not."""
    warning: str | None


_DOUBLE_NAT = ("another NAT above the gateway (its own WAN address is not public), so a "
               "mapping here may not be reachable from the Internet")


def read_external_address(text: str) -> ExternalAddress:
    """Judge ``NewExternalIPAddress``. An empty answer (miniupnpd with a reserved WAN address)
    or a private/shared one is the double-NAT warning; 0.0.0.0, loopback, multicast and the like
    are not addresses at all (tailscale rejects them too). Raises ``ValueError`` on text that is
    not an IP address."""
    text = text.strip()
    if not text:
        return ExternalAddress(None, False, "the gateway reports no external address: "
                               + _DOUBLE_NAT)
    address = ip_address(text)
    if (address.is_unspecified or address.is_loopback or address.is_multicast
            or address.is_link_local):
        return ExternalAddress(None, False,
                               f"the gateway reports {address} as its external address, "
                               "which is no address: it has no usable WAN connection")
    if _is_public(address):
        return ExternalAddress(address, True, None)
    return ExternalAddress(address, False, f"external address {address} is not public: "
                           + _DOUBLE_NAT)


def _is_public(address: IPv4Address | IPv6Address) -> bool:
    return address.is_global


@dataclass(frozen=True, slots=True)
class IgdCandidate:
    """An IGD that answered, with what it said about its WAN connection."""

    location: str
    connected: bool
    external: ExternalAddress


def best_igd(candidates: Iterable[IgdCandidate]) -> IgdCandidate | None:
    """The IGD to use: Connected first, then one with an external address, then a public one;
    among equals the first that answered."""
    best: IgdCandidate | None = None
    best_score = (-1, -1, -1)
    for candidate in candidates:
        score = (int(candidate.connected), int(candidate.external.address is not None),
                 int(candidate.external.public))
        if score > best_score:
            best, best_score = candidate, score
    return best


def lease_seconds(lifetime: int | None) -> int:
    """The NewLeaseDuration to send: whole seconds, ``None`` -> :data:`DEFAULT_LEASE`,
    0 = permanent, capped at :data:`MAX_LEASE`. Raises ``ValueError`` below 0."""
    if lifetime is None:
        return DEFAULT_LEASE
    if lifetime < 0:
        raise ValueError(f"a lease is 0 (permanent) or a number of seconds, not {lifetime}")
    return min(int(lifetime), MAX_LEASE)


def retry_as_permanent(code: int, lease: int) -> bool:
    """Whether an add refused with ``code`` is worth trying again with a permanent lease."""
    return lease != 0 and code in PERMANENT_ONLY_CODES


def granted_port(arguments: Mapping[str, str]) -> int:
    """The port AddAnyPortMapping reserved: ``NewReservedPort`` (the IGDv2 spec's name, and
    what miniupnpd sends) or ``NewExternalPort`` (what miniupnpd's own description declares).
    Raises ``ValueError`` when neither holds a port."""
    for name in ("NewReservedPort", "NewExternalPort"):
        text = arguments.get(name, "").strip()
        if text:
            return parse_port(text, name)
    raise ValueError("AddAnyPortMapping's reply names no port (NewReservedPort)")


def parse_port(text: str, what: str, *, allow_zero: bool = False) -> int:
    """A port number from ``text``; ``ValueError`` naming ``what`` if it is not one."""
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 5):
        raise ValueError(f"{what} is not a port number: {text[:20]!r}")
    port = int(text)
    if not (0 if allow_zero else 1) <= port <= 0xFFFF:
        raise ValueError(f"{what} is not a port number: {port}")
    return port
