"""Listening for what a gateway says unasked: NAT-PMP address changes and PCP ANNOUNCE.

RFC 6886 §3.2.1: on an external address change (and at boot) a NAT-PMP gateway
multicasts an external-address response to 224.0.0.1:5350 (miniupnpd sends one
to port 5350 and one to 5351, once). RFC 6887 §14.1.3: a PCP server that lost
its state (or whose address changed) multicasts an ANNOUNCE response to
224.0.0.1:5350 or [ff02::1]:5350. Both come from the gateway's port 5351.

The listener binds each port with SO_REUSEADDR/SO_REUSEPORT so that it shares
them with other listeners on the host, joins the all-hosts group, accepts only
datagrams whose source is the configured gateway and port 5351, decodes them
with the wire code, and hands typed :class:`Announcement` objects to a callback.
It never sends anything.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from .errors import MalformedPacket, TransportError
from .transport import SERVER_PORT, decode_message, is_gateway_address
from .wire import natpmp, pcp
from .wire.addresses import IPAddress, to_address

__all__ = ["ANNOUNCE_PORTS", "Announcement", "AnnouncementListener"]

log = logging.getLogger("engine.announce")

#: RFC 6886 §3.2.1 and RFC 6887 §14.1.3 name 5350; miniupnpd also sends NAT-PMP to 5351.
ANNOUNCE_PORTS: tuple[int, ...] = (5350, 5351)
ALL_HOSTS_V4 = "224.0.0.1"
ALL_NODES_V6 = "ff02::1"


@dataclass(frozen=True, slots=True)
class Announcement:
    """One unsolicited message from the gateway."""

    kind: Literal["natpmp_address", "pcp_announce"]
    epoch: int
    external_address: IPAddress | None
    """NAT-PMP announcements carry the new external address; ANNOUNCE does not."""
    result: int
    port: int
    """The local port it arrived on."""


class _ListenerProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: AnnouncementListener, port: int) -> None:
        self._listener = listener
        self._port = port

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._listener._received(data, str(addr[0]), int(str(addr[1])), self._port)


class AnnouncementListener:
    """Listen on ``ports`` for announcements from ``gateway``.

    ``host`` is where to bind: by default the wildcard address of the gateway's
    family, which receives the multicast; tests on loopback pass "127.0.0.1"
    and a free port and have the simulated gateway send unicast there.
    """

    def __init__(self, gateway: str | IPAddress,
                 on_announcement: Callable[[Announcement], None], *,
                 host: str | None = None, ports: Sequence[int] = ANNOUNCE_PORTS,
                 multicast: bool = True, local_address: str | IPAddress | None = None,
                 source_port: int = SERVER_PORT) -> None:
        self.gateway = to_address(gateway)
        self.on_announcement = on_announcement
        self.family = socket.AF_INET if isinstance(self.gateway, IPv4Address) else socket.AF_INET6
        self.host = host if host is not None else (
            "0.0.0.0" if self.family == socket.AF_INET else "::")  # noqa: S104 - receive only
        self.ports = tuple(ports)
        self.multicast = multicast
        self.local_address = to_address(local_address) if local_address is not None else None
        self.source_port = source_port
        self.errors: list[str] = []
        self.received = 0
        self.dropped = 0
        self._transports: list[asyncio.DatagramTransport] = []

    @property
    def listening(self) -> bool:
        """Whether at least one port is bound."""
        return bool(self._transports)

    def _socket(self, port: int) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, port))
            if self.multicast:
                self._join(sock)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def _join(self, sock: socket.socket) -> None:
        # Membership of the all-hosts group is implicit on most systems; joining
        # explicitly costs nothing and helps where it is not.
        try:
            if self.family == socket.AF_INET:
                interface = (self.local_address.packed
                             if isinstance(self.local_address, IPv4Address) else bytes(4))
                membership = socket.inet_aton(ALL_HOSTS_V4) + interface
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            else:
                index = 0
                if isinstance(self.gateway, IPv6Address) and self.gateway.scope_id:
                    scope = self.gateway.scope_id
                    index = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
                membership = socket.inet_pton(socket.AF_INET6, ALL_NODES_V6) + struct.pack(
                    "@I", index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
        except OSError as exc:
            log.debug("could not join the all-hosts group: %s", exc)

    async def start(self) -> None:
        """Bind every port it can. Raises :class:`TransportError` if it can bind none."""
        loop = asyncio.get_running_loop()
        for port in self.ports:
            try:
                sock = self._socket(port)
                transport, _ = await loop.create_datagram_endpoint(
                    lambda p=port: _ListenerProtocol(self, p), sock=sock)  # type: ignore[misc]
            except OSError as exc:
                self.errors.append(f"cannot listen on {self.host} port {port}: "
                                   f"{exc.strerror or exc}")
                log.info("announcements: %s", self.errors[-1])
                continue
            self._transports.append(transport)
        if not self._transports:
            raise TransportError("cannot listen for gateway announcements: "
                                 + "; ".join(self.errors))

    def close(self) -> None:
        """Stop listening."""
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    async def __aenter__(self) -> AnnouncementListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def _received(self, data: bytes, host: str, port: int, local_port: int) -> None:
        from_gateway = is_gateway_address(host, self.gateway)
        if port != self.source_port or not (from_gateway or self._link_local_peer(host)):
            self._ignore_stranger(host, port)
            return
        try:
            message = decode_message(data)
        except MalformedPacket as exc:
            self.dropped += 1
            log.info("ignored a malformed announcement from %s: %s", host, exc)
            return
        if not from_gateway and not (isinstance(message, pcp.Response)
                                     and message.opcode == pcp.Opcode.ANNOUNCE):
            # Only an ANNOUNCE is taken from the gateway's link-local address: it carries no
            # address, it only makes natdeck ask the gateway itself again (after the random
            # delay, coalesced), so a forged one costs a few requests, never a mapping.
            self._ignore_stranger(host, port)
            return
        announcement: Announcement | None = None
        if isinstance(message, natpmp.ExternalAddressResponse) and message.result == 0:
            announcement = Announcement("natpmp_address", message.epoch,
                                        message.external_address, message.result, local_port)
        elif (isinstance(message, pcp.Response) and message.opcode == pcp.Opcode.ANNOUNCE
              and message.version == pcp.PCP_VERSION and message.result == 0):
            announcement = Announcement("pcp_announce", message.epoch, None, message.result,
                                        local_port)
        if announcement is None:
            self.dropped += 1
            log.info("ignored a message from %s that is not an announcement: %r", host, message)
            return
        self.received += 1
        self.on_announcement(announcement)

    def _ignore_stranger(self, host: str, port: int) -> None:
        self.dropped += 1
        log.info("ignored an announcement from %s:%d, not gateway %s", host, port, self.gateway)

    def _link_local_peer(self, host: str) -> bool:
        """Whether ``host`` is an IPv6 link-local address while the gateway is a global IPv6
        address: RFC 6887 §14.1.3 multicasts ANNOUNCE to ff02::1, and a server such as
        miniupnpd sends it from its link-local address, not from the one clients ask."""
        if not isinstance(self.gateway, IPv6Address) or self.gateway.is_link_local:
            return False
        try:
            peer = IPv6Address(host.split("%", 1)[0])
        except ValueError:
            return False
        return peer.is_link_local
