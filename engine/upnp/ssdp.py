"""SSDP for one gateway, pure: the M-SEARCH datagrams to send, and which answers to believe.

Discovery is restricted to the gateway natdeck already knows (from the routing table): an
answer is taken only from the gateway's address, and only if its LOCATION names the gateway's
address too. Anyone on the link can answer an M-SEARCH, and a LOCATION elsewhere would make us
fetch (and later POST to) another host. We search ``ssdp:all`` and the IGD device types, because
some devices answer ``ssdp:all`` with their first descriptor only (as tailscale's portmapper
notes).

The bytes are this module's own, not async-upnp-client's: its SSDP code parses headers with
aiohttp's parser, so building a search would import all of aiohttp (~100 ms in a fresh
process). Without it the search goes out first and the HTTP stack, needed only once an answer
names a description, is imported while the gateway takes its time to answer
(:func:`~engine.upnp.connection.http_stack_loading`). An M-SEARCH is four header lines (UPnP
Device Architecture 1.1 §1.3.2), and an answer's headers are read strictly: one malformed
line and the whole answer is dropped.
"""

from __future__ import annotations

import re
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


#: A header name: an RFC 9110 §5.6.2 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: What a header value may not hold: control characters other than tab.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def build_search(search_target: str, host: str, port: int = SSDP_PORT) -> bytes:
    """The M-SEARCH datagram for ``search_target``, addressed (HOST header) to ``host:port``
    (an IPv6 ``host`` in brackets). The same bytes as async-upnp-client's."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return (f"M-SEARCH * HTTP/1.1\r\nHOST:{where}\r\nMAN:\"ssdp:discover\"\r\n"
            f"MX:{SEARCH_MX}\r\nST:{search_target}\r\n\r\n").encode()


def _headers(data: bytes) -> dict[str, str] | None:
    """The headers of an SSDP answer, names in lower case, or ``None`` if one line is not a
    header (no colon, a name that is not a token, a control character in a value, text that
    is not UTF-8) or LOCATION comes twice (which one would we believe?). Lines end in CRLF
    or LF; the headers end at the first empty line, or with the datagram."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    headers: dict[str, str] = {}
    for ending in text.split("\n")[1:]:
        line = ending.removesuffix("\r")
        if not line:
            break
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name) or _CONTROL.search(value):
            return None
        key = name.lower()
        if key in headers:
            if key == "location":
                return None
            continue  # the first one counts
        headers[key] = value.strip(" \t")
    return headers


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
    headers = _headers(data)
    if headers is None:
        return None
    location = headers.get("location", "")
    if not url_on_gateway(location, gateway):
        return None
    return SsdpAnswer(location, headers.get("st", ""), headers.get("usn", ""),
                      headers.get("server", ""))
