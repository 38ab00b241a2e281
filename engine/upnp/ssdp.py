"""SSDP for one gateway, pure: the M-SEARCH datagrams to send, and which answers to believe.

Discovery is restricted to the gateway natdeck already knows (from the routing table): an
answer is taken only from the gateway's address, and only if its LOCATION names the gateway's
address too. Anyone on the link can answer an M-SEARCH, and a LOCATION elsewhere would make us
fetch (and later POST to) another host. We search ``ssdp:all`` and the IGD device types, because
some devices answer ``ssdp:all`` with their first descriptor only (as tailscale's portmapper
notes). The byte work is async-upnp-client's, imported when a search is built or read.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

from ..wire.addresses import IPAddress
from . import SSDP_PORT

__all__ = [
    "IGD_SEARCH_TARGETS",
    "MULTICAST_V4",
    "SSDP_PORT",
    "SsdpAnswer",
    "build_search",
    "parse_answer",
    "url_on_gateway",
]

MULTICAST_V4 = "239.255.255.250"
#: What we search, in order: every device, then the IGD device types (v2, v1).
IGD_SEARCH_TARGETS = (
    "ssdp:all",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
    "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
)
#: Answers longer than this are not SSDP answers a gateway sends (~300 bytes on miniupnpd).
MAX_ANSWER = 2048
#: Seconds the device may wait before answering (the MX header). 1: the gateway is one hop away.
SEARCH_MX = 1


@dataclass(frozen=True, slots=True)
class SsdpAnswer:
    """A believed answer to our M-SEARCH."""

    location: str
    """The device description URL, on the gateway's address."""
    search_target: str
    usn: str
    server: str


def build_search(search_target: str, host: str, port: int = SSDP_PORT) -> bytes:
    """The M-SEARCH datagram for ``search_target``, addressed (HOST header) to ``host:port``."""
    from async_upnp_client.ssdp import build_ssdp_search_packet

    return build_ssdp_search_packet((host, port), SEARCH_MX, search_target)


def url_on_gateway(url: str, gateway: IPAddress) -> bool:
    """True if ``url`` is an http URL whose host is the gateway's address (literally: no names,
    which would need a resolver we do not trust)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return False
    if parts.scheme != "http" or not host:
        return False
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address == gateway


def parse_answer(data: bytes, source: tuple[str, int], gateway: IPAddress) -> SsdpAnswer | None:
    """The answer in ``data`` from ``source``, or ``None`` if it is not one we believe: not
    from the gateway's address, not an ``HTTP/1.1 200 OK`` search answer, or with a LOCATION
    that is not on the gateway. Never raises on hostile bytes."""
    try:
        if ip_address(source[0].split("%", 1)[0]) != gateway:
            return None
    except ValueError:
        return None
    if len(data) > MAX_ANSWER or not data.startswith(b"HTTP/1.1 200"):
        return None
    from async_upnp_client.ssdp import decode_ssdp_packet

    try:
        _, headers = decode_ssdp_packet(data, None, source)
        location = str(headers.get("location", "")).strip()
        search_target = str(headers.get("st", ""))
        usn = str(headers.get("usn", ""))
        server = str(headers.get("server", ""))
    except Exception:  # hostile bytes: aiohttp's header parser raises its own classes
        return None
    if not url_on_gateway(location, gateway):
        return None
    return SsdpAnswer(location, search_target, usn, server)
