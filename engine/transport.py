"""asyncio UDP to one gateway: send, retransmit, validate, match, bound.

A thin layer over the wire code: it moves bytes and waits. One connected UDP
socket per :class:`GatewayChannel` carries every request to that gateway; each
datagram that arrives is checked against the gateway's address and port,
decoded once, and offered to the requests in flight, each of which says whether
the message answers it (``accepts``). A packet nobody accepts is dropped and
logged; the requests keep waiting for the genuine answer.

The number of requests in flight to one gateway is bounded (per event loop and
gateway), so a thousand concurrent ``map_port`` calls queue here instead of
flooding a slow gateway.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Literal

from .errors import GatewayTimeout, MalformedPacket, TransportError
from .wire import natpmp, pcp
from .wire.addresses import IPAddress, to_address

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "SERVER_PORT",
    "Exchange",
    "GatewayChannel",
    "InFlightWindow",
    "Message",
    "decode_message",
    "is_gateway_address",
]

log = logging.getLogger("engine.transport")
packet_log = logging.getLogger("engine.packets")

SERVER_PORT = 5351
DEFAULT_MAX_IN_FLIGHT = 32

Message = natpmp.Response | pcp.Response
"""A decoded datagram from a gateway: NAT-PMP (version 0) or PCP (version >= 1)."""


def decode_message(data: bytes) -> Message:
    """Decode a datagram from a gateway by its version octet.

    Version 0 is NAT-PMP; anything else is read as PCP (PCP's UNSUPP_VERSION
    answers may carry version 1). Raises :class:`MalformedPacket`.
    """
    if not data:
        raise MalformedPacket("empty datagram")
    if data[0] == natpmp.NATPMP_VERSION:
        return natpmp.decode_response(data)
    return pcp.decode_response(data)


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request's accepted answer, with what it cost."""

    message: Message
    tries: int
    elapsed: float
    rtt: float | None
    """Round trip of the answered try; ``None`` when the answer may belong to an
    earlier try (Karn's rule: no sample from a retransmitted request)."""


Accepts = Callable[[Message], bool]
ProtocolName = Literal["pcp", "natpmp"]


class _Pending:
    __slots__ = ("accepts", "future")

    def __init__(self, accepts: Accepts, future: asyncio.Future[Message]) -> None:
        self.accepts = accepts
        self.future = future


class InFlightWindow:
    """How many requests of one protocol may be out to one gateway at once.

    A gateway serves requests one at a time (miniupnpd takes ~10 ms each): with too
    many out, the last waits in its queue past the protocol's first retransmission
    timer (250 ms for NAT-PMP) and is sent again, which only lengthens the queue.
    So the window follows the smoothed round trip: at most as many requests as the
    gateway can answer in half the first timer, between 1 and ``limit``; a
    retransmission halves it. PCP's 3 s timer leaves it at ``limit`` in practice.
    """

    def __init__(self, limit: int, first_timeout: float, *, initial: int | None = None) -> None:
        self.limit = limit
        self.first_timeout = first_timeout
        self.window = float(limit if initial is None else min(initial, limit))
        self.in_flight = 0
        self.srtt: float | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def full(self) -> bool:
        """Whether a new request would have to wait."""
        return self.in_flight >= max(1, int(self.window))

    async def acquire(self) -> None:
        """Wait for room in the window, then take it."""
        while self.full:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.in_flight += 1

    def release(self) -> None:
        """Give the room back and wake as many waiters as now fit."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        room = max(1, int(self.window)) - self.in_flight
        for waiter in list(self._waiters):
            if room <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def answered(self, rtt: float) -> None:
        """A first try was answered after ``rtt`` seconds (Karn's rule: no other samples)."""
        self.srtt = rtt if self.srtt is None else self.srtt + (rtt - self.srtt) / 8
        fit = self.first_timeout / (2 * max(self.srtt, 1e-4))
        self.window = max(1.0, min(float(self.limit), fit))
        self._wake()

    def retransmitted(self) -> None:
        """A request had to be sent again: halve the window."""
        self.window = max(1.0, self.window / 2)


# One window per (event loop, gateway, port, protocol): shared by every channel, so
# separate map_port() calls to one gateway queue behind each other too.
_windows: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, int, str], InFlightWindow]
] = weakref.WeakKeyDictionary()

#: NAT-PMP starts with few requests out, until a round trip has been measured.
NATPMP_INITIAL_WINDOW = 4


def in_flight_window(gateway: IPAddress, port: int, protocol: ProtocolName,
                     limit: int) -> InFlightWindow:
    """The shared window for requests of ``protocol`` to ``gateway``:``port``."""
    loop = asyncio.get_running_loop()
    per_loop = _windows.setdefault(loop, {})
    key = (str(gateway), port, protocol)
    window = per_loop.get(key)
    if window is None:
        if protocol == "natpmp":
            window = InFlightWindow(limit, 0.25, initial=NATPMP_INITIAL_WINDOW)
        else:
            window = InFlightWindow(limit, 3.0)
        per_loop[key] = window
    return window


def is_gateway_address(reported: str, gateway: IPAddress) -> bool:
    """Whether a datagram's source address (as the socket reports it) is the gateway's.

    Scope suffixes and IPv4-mapped IPv6 forms are compared as the address they name.
    """
    try:
        peer = to_address(reported.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(peer, IPv6Address) and peer.ipv4_mapped is not None:
        peer = peer.ipv4_mapped
    target: IPAddress = gateway
    if isinstance(target, IPv6Address):
        target = IPv6Address(str(target).split("%", 1)[0])
    return peer == target


class _ChannelProtocol(asyncio.DatagramProtocol):
    def __init__(self, channel: GatewayChannel) -> None:
        self._channel = channel

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._channel._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable...) on a connected socket: the request is
        # retransmitted on schedule; the gateway may just be starting.
        log.debug("gateway %s: socket error %s", self._channel.gateway, exc)


class GatewayChannel:
    """The UDP conversation with one gateway (``gateway``:``port``).

    Use ``async with GatewayChannel(gw) as ch`` or :meth:`open`/:meth:`close`.
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        self.gateway: IPAddress = to_address(gateway)
        self.port = port
        self.local_address = to_address(local_address) if local_address is not None else None
        self.max_in_flight = max_in_flight
        self._gateway_text = str(self.gateway)
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: list[_Pending] = []
        self._opening: asyncio.Lock | None = None
        #: Called with every accepted message (epoch tracking, last contact).
        self.observers: list[Callable[[Message], None]] = []
        self.dropped = 0
        self.sent = 0

    @property
    def is_open(self) -> bool:
        """Whether the socket is open."""
        return self._transport is not None and not self._transport.is_closing()

    async def open(self) -> None:
        """Open the connected UDP socket (idempotent). Raises :class:`TransportError`."""
        if self.is_open:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.is_open:
                return
            loop = asyncio.get_running_loop()
            family = socket.AF_INET if isinstance(self.gateway, IPv4Address) else socket.AF_INET6
            local = (str(self.local_address), 0) if self.local_address is not None else None
            try:
                # connect(): the kernel then delivers only datagrams from the gateway's
                # address and port; we check again in _received all the same.
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _ChannelProtocol(self), family=family, local_addr=local,
                    remote_addr=(str(self.gateway), self.port))
            except OSError as exc:
                raise TransportError(
                    f"cannot open a UDP socket to gateway {self.gateway}:{self.port}: "
                    f"{exc.strerror or exc}", cause=exc) from None
            self._transport = transport

    def close(self) -> None:
        """Close the socket; requests still waiting fail with a timeout."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> GatewayChannel:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def local_endpoint(self) -> tuple[str, int] | None:
        """The socket's own (address, port), once open."""
        if self._transport is None:
            return None
        name = self._transport.get_extra_info("sockname")
        return (str(name[0]), int(name[1])) if name else None

    def _received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = str(addr[0]), addr[1]
        # The common case is the exact text of our own gateway: skip parsing it.
        if port != self.port or (host != self._gateway_text
                                 and not is_gateway_address(host, self.gateway)):
            self.dropped += 1
            log.info("dropped a datagram from %s:%s: not gateway %s:%s", host, port,
                     self.gateway, self.port)
            return
        try:
            message = decode_message(data)
        except MalformedPacket as exc:
            self.dropped += 1
            log.info("dropped a malformed datagram from gateway %s: %s", self.gateway, exc)
            return
        packet_log.debug("<- %s %r", self.gateway, message)
        taken = False
        for pending in list(self._pending):
            if not pending.future.done() and pending.accepts(message):
                pending.future.set_result(message)
                taken = True
        if not taken:
            self.dropped += 1
            log.info("dropped an unmatched answer from gateway %s: %r", self.gateway, message)
            return
        for observer in self.observers:
            observer(message)

    def _send(self, packet: bytes) -> None:
        if self._transport is None:
            raise TransportError(f"the socket to gateway {self.gateway} is closed")
        try:
            self._transport.sendto(packet)
        except OSError as exc:
            raise TransportError(f"cannot send to gateway {self.gateway}: {exc}",
                                 cause=exc) from None
        self.sent += 1

    async def request(self, packet: bytes, accepts: Accepts, schedule: Iterable[float], *,
                      deadline: float | None, describe: str,
                      protocol: ProtocolName) -> Exchange:
        """Send ``packet`` and retransmit it on ``schedule`` until an answer is accepted.

        ``schedule`` yields how long to wait after each try (the RFC timers, from
        :mod:`engine.timing`); ``deadline`` caps the total seconds (``None``: the
        schedule alone decides). Raises :class:`GatewayTimeout` when the schedule or
        the deadline runs out, :class:`TransportError` when the OS refuses.
        """
        await self.open()
        loop = asyncio.get_running_loop()
        bound = in_flight_window(self.gateway, self.port, protocol, self.max_in_flight)
        start = loop.time()
        # The deadline covers the wait for room too: a caller queued behind a slow
        # gateway is not kept longer than it asked. Room is taken at once when there is
        # some: wait_for would wrap acquire() in a task, a quarter of a request's CPU.
        if bound.full:
            try:
                await asyncio.wait_for(bound.acquire(), deadline)
            except TimeoutError:
                raise GatewayTimeout(self._name(), describe, 0, loop.time() - start,
                                     protocol) from None
        else:
            await bound.acquire()
        try:
            future: asyncio.Future[Message] = loop.create_future()
            pending = _Pending(accepts, future)
            self._pending.append(pending)
            tries = 0
            sent_at = start
            try:
                for wait in schedule:
                    now = loop.time()
                    remaining = None if deadline is None else deadline - (now - start)
                    if remaining is not None and remaining <= 0:
                        break
                    if tries:
                        log.info("%s: no answer from %s after %d %s, retransmitting", describe,
                                 self.gateway, tries, "try" if tries == 1 else "tries")
                        if tries == 1:
                            bound.retransmitted()
                    packet_log.debug("-> %s %s (%d bytes)", self.gateway, describe, len(packet))
                    self._send(packet)
                    sent_at = now
                    tries += 1
                    timeout = wait if remaining is None else min(wait, remaining)
                    done, _ = await asyncio.wait((future,), timeout=timeout)
                    if done:
                        end = loop.time()
                        rtt = end - sent_at if tries == 1 else None
                        if rtt is not None:
                            bound.answered(rtt)
                        return Exchange(future.result(), tries, end - start, rtt)
                raise GatewayTimeout(self._name(), describe, tries, loop.time() - start,
                                     protocol)
            finally:
                self._pending.remove(pending)
                if not future.done():
                    future.cancel()
        finally:
            bound.release()

    def _name(self) -> str:
        return f"{self.gateway}:{self.port}" if self.port != SERVER_PORT else str(self.gateway)
