"""SSDP search for the IGD on one gateway: the thin asyncio layer around :mod:`.ssdp`.

Unicast M-SEARCH to the gateway's SSDP port first (miniupnpd answers in ~51 ms), multicast to
239.255.255.250:1900 only if that stays silent and the caller allows it (never on loopback:
the simulated gateway is searched by unicast). Answers count only from the gateway's address
with a LOCATION on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from ..wire.addresses import IPAddress
from .errors import UpnpPortUnreachable, UpnpTimeout, UpnpTransportError
from .ssdp import (
    IGD_SEARCH_TARGETS,
    MAX_ANSWER,
    MULTICAST_V4,
    SSDP_PORT,
    SsdpAnswer,
    build_search,
    parse_answer,
)

__all__ = ["UNICAST_WAIT", "search_gateway"]

#: How long unicast may stay silent before multicast is tried.
UNICAST_WAIT = 0.3
#: After an ICMP port unreachable from the gateway's SSDP port, how long multicast may take.
AFTER_REFUSAL = 0.5
#: After the first answer, how long to wait for the others (other IGDs on the gateway; miniupnpd
#: answers our three searches within a millisecond or two of each other).
GATHER = 0.01


class _Answers(asyncio.DatagramProtocol):
    def __init__(self, gateway: IPAddress) -> None:
        self.gateway = gateway
        self.first_answer: float | None = None
        self.answers: list[SsdpAnswer] = []
        self.ignored = 0
        self.refused = False
        self.arrived = asyncio.Event()

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        answer = parse_answer(data[:MAX_ANSWER + 1], (str(addr[0]), int(addr[1])), self.gateway)
        if answer is None:
            self.ignored += 1
            return
        if all(answer.location != seen.location for seen in self.answers):
            self.answers.append(answer)
        if self.first_answer is None:
            self.first_answer = time.monotonic()
        self.arrived.set()

    def error_received(self, exc: Exception) -> None:
        # An ICMP port unreachable (reported through IP_RECVERR): nothing listens on the
        # gateway's SSDP port. Said at once rather than after the whole search.
        self.ignored += 1
        if isinstance(exc, ConnectionRefusedError) and not self.refused:
            self.refused = True
            self.arrived.set()


def _report_icmp_errors(sock: socket.socket, family: int) -> None:
    """Ask Linux to report ICMP errors on this unconnected socket (IP_RECVERR, ip(7)): an
    unconnected UDP socket hears of a port unreachable only so, and the search must not be
    connected (a gateway may answer from another port than the one searched)."""
    if not sys.platform.startswith("linux"):
        return
    level, option = ((socket.IPPROTO_IP, _IP_RECVERR) if family == socket.AF_INET
                     else (socket.IPPROTO_IPV6, _IPV6_RECVERR))
    with contextlib.suppress(OSError):
        sock.setsockopt(level, option, 1)


#: linux/in.h and linux/in6.h (not exported by the socket module).
_IP_RECVERR = 11
_IPV6_RECVERR = 25


async def search_gateway(gateway: IPAddress, *, port: int = SSDP_PORT,
                         local_address: IPAddress | None = None, multicast: bool = False,
                         timeout: float = 2.0,
                         searched: Callable[[], object] | None = None,
                         ) -> tuple[list[SsdpAnswer], float]:
    """The IGD descriptions the gateway announces (distinct LOCATIONs, first answer first), and
    the seconds to the first believed answer.

    ``searched`` is called once the unicast searches are out: work to do while the gateway
    takes its time to answer. Raises :class:`UpnpTimeout` when nothing believable came
    within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    family = socket.AF_INET if isinstance(gateway, IPv4Address) else socket.AF_INET6
    try:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        _report_icmp_errors(sock, family)
        if local_address is not None:
            sock.bind((str(local_address), 0))
        if multicast and family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 2)
            if local_address is not None:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local_address.packed)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: _Answers(gateway), sock=sock)
    except OSError as exc:
        raise UpnpTransportError(f"SSDP search for {gateway}: {exc}", cause=exc) from exc
    started = time.monotonic()
    tries = 0
    try:
        for target in IGD_SEARCH_TARGETS:
            transport.sendto(build_search(target, str(gateway), port), (str(gateway), port))
            tries += 1
        if searched is not None:
            searched()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(protocol.arrived.wait(), min(UNICAST_WAIT, timeout))
        if protocol.refused and not protocol.answers and not multicast:
            raise UpnpPortUnreachable(str(gateway), "SSDP search", tries,
                                      time.monotonic() - started)
        protocol.arrived.clear()
        if protocol.answers:
            protocol.arrived.set()
        if not protocol.answers and multicast and family == socket.AF_INET:
            for target in IGD_SEARCH_TARGETS:
                transport.sendto(build_search(target, MULTICAST_V4, SSDP_PORT),
                                 (MULTICAST_V4, SSDP_PORT))
                tries += 1
        left = timeout - (time.monotonic() - started)
        if protocol.refused:
            # The gateway's own SSDP port is closed: an IGD bound to the multicast group only
            # would still answer, within moments; most likely there is none (a stopped
            # gateway, UPnP off), which must not cost the whole search.
            left = min(left, AFTER_REFUSAL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(protocol.arrived.wait(), max(left, 0))
        if protocol.refused and not protocol.answers:
            raise UpnpPortUnreachable(str(gateway), "SSDP search", tries,
                                      time.monotonic() - started)
        if protocol.answers:
            await asyncio.sleep(GATHER)
    except OSError as exc:
        raise UpnpTransportError(f"SSDP search for {gateway}: {exc}", cause=exc) from exc
    finally:
        transport.close()
    if not protocol.answers or protocol.first_answer is None:
        raise UpnpTimeout(str(gateway), "SSDP search", tries, time.monotonic() - started,
                          "no IGD answer" + (f" ({protocol.ignored} answers ignored)"
                                             if protocol.ignored else ""))
    return list(protocol.answers), protocol.first_answer - started
