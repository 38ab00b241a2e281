"""asyncio UDP to one gateway: the thin layer that sends, receives and re-arms one timer.

Every decision is made by pure code: :class:`~engine.exchange.Exchange` (tries,
deadline, Karn's rule, matching), :class:`~engine.window.InFlightWindow` (how
many requests may be out). A :class:`GatewayChannel` holds one connected UDP
socket to the gateway, one in-flight window per mapping protocol, the requests
out and queued, and one ``call_at`` timer for all of them (aioquic's
``asyncio/protocol.py`` shape): no task and no ``asyncio.wait`` per try.

Each datagram that arrives is checked against the gateway's address and port,
decoded once, and offered to the requests out; a firm match
(:data:`~engine.exchange.Match.YES`) wins over a weak one. A packet nobody takes
is dropped and logged; the requests keep waiting for the genuine answer. An ICMP
port unreachable (``ConnectionRefusedError`` on the connected socket) ends the
requests out at once: nothing listens there.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
from collections.abc import Callable, Hashable, Iterable
from ipaddress import IPv6Address

from .dialects.base import answer_key
from .errors import MalformedPacket, TransportError
from .exchange import Description, Exchange, Match, Message, Outcome, described, takers
from .timer_heap import Entry, TimerHeap
from .timing import NATPMP_RETRANSMIT, PCP_RETRANSMIT
from .types import DatagramProtocol, ProtocolName
from .udp import ConnectedUdp
from .window import DEFAULT_MAX_IN_FLIGHT, InFlightWindow
from .wire import natpmp, pcp
from .wire.addresses import IPAddress, to_address

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "SERVER_PORT",
    "Exchange",
    "GatewayChannel",
    "InFlightWindow",
    "Message",
    "Outcome",
    "ProtocolName",
    "accepted",
    "decode_message",
    "held",
    "is_gateway_address",
    "learn",
    "open_socket",
    "refusal",
]

log = logging.getLogger("engine.transport")
packet_log = logging.getLogger("engine.packets")

SERVER_PORT = 5351
_NONE: list[_Pending] = []

#: The first retransmission timer of each protocol: the window fits the queue in half of it.
_FIRST_TIMEOUT: dict[DatagramProtocol, float] = {
    "natpmp": NATPMP_RETRANSMIT.initial_timeout, "pcp": PCP_RETRANSMIT.initial_timeout}


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
        # A gateway named in its IPv4-mapped form (::ffff:a.b.c.d) is the IPv4 address the
        # peer was turned into above.
        target = target.ipv4_mapped or target
    return peer == target


class _Pending:
    """An exchange with its future and what the channel counts for it."""

    __slots__ = ("exchange", "first", "future", "key", "number", "started", "ticket", "window")

    def __init__(self, exchange: Exchange, future: asyncio.Future[Outcome],
                 window: InFlightWindow, key: Hashable | None) -> None:
        self.exchange = exchange
        self.future = future
        self.window = window
        self.key = key
        self.started = False
        self.first = 0  # the number of its first try (InFlightWindow.sent)
        self.number = 0  # of its last try
        self.ticket: Entry | None = None  # its entry in the channel's timer heap


_exchange_of: Callable[[_Pending], Exchange] = operator.attrgetter("exchange")


class _Out:
    """The requests out, in the order sent, indexed by the key of the answers they can match
    by their data (:func:`~engine.dialects.base.answer_key`): an answer is offered to those,
    and to the requests without a key, instead of to every request out."""

    __slots__ = ("all", "keyed", "unkeyed")

    def __init__(self) -> None:
        self.all: dict[_Pending, None] = {}  # a dict: O(1) to remove
        self.keyed: dict[Hashable, list[_Pending]] = {}
        self.unkeyed: list[_Pending] = []

    def add(self, pending: _Pending) -> None:
        self.all[pending] = None
        key = pending.key
        if key is None:
            self.unkeyed.append(pending)
        elif (same := self.keyed.get(key)) is None:
            self.keyed[key] = [pending]
        else:
            same.append(pending)

    def remove(self, pending: _Pending) -> None:
        del self.all[pending]
        key = pending.key
        if key is None:
            self.unkeyed.remove(pending)
        elif len(same := self.keyed[key]) == 1:  # this request alone
            del self.keyed[key]
        else:
            same.remove(pending)

    def offered(self, key: Hashable | None) -> Iterable[_Pending]:
        """The requests out that an answer with ``key`` may answer."""
        if key is None:
            return self.all
        same = self.keyed.get(key, _NONE)
        return [*same, *self.unkeyed] if self.unkeyed else same


def held(exchange: Exchange, window: InFlightWindow, number: int, now: float) -> bool:
    """Whether a try of ``exchange`` that is due (its last, try ``number`` of ``window``)
    waits on instead, because the gateway is still answering the requests sent before it
    (:meth:`InFlightWindow.hold_until`); it is then postponed."""
    if exchange.deadline_at is not None and now >= exchange.deadline_at:
        return False
    until = window.hold_until(number, exchange.sent_at, now)
    if until is None:
        return False
    exchange.postpone(until)
    return True


def learn(window: InFlightWindow, first: int, outcome: Outcome, now: float) -> None:
    """What the window learns from an answer to a request whose first try was try ``first``:
    a round trip (Karn's rule: a first try's), perhaps a late one, and how far the gateway
    has got."""
    if outcome.rtt is not None:
        window.answered(outcome.rtt, now)
    elif outcome.since_previous is not None:
        window.answered_late(outcome.since_previous, outcome.since_last)
    window.progress(first, now)


def open_socket(channel: GatewayChannel, *, on_loop: bool = True) -> ConnectedUdp:
    """A UDP socket connected to the channel's gateway, read on the running loop (``on_loop``)
    or by the channel itself (:mod:`engine.blocking`). Raises :class:`TransportError`."""
    gateway = channel.gateway
    remote = (str(gateway), channel.port)
    local = str(channel.local_address) if channel.local_address is not None else None
    try:
        # connect(): the kernel then delivers only datagrams from the gateway's address and
        # port, and reports its ICMP errors; accepted() checks again.
        if on_loop:
            return ConnectedUdp.open(remote, local, channel._received, channel._error)
        return ConnectedUdp.unwatched(remote, local, channel._error)
    except OSError as exc:
        raise TransportError(f"cannot open a UDP socket to gateway {gateway}:{channel.port}: "
                             f"{exc.strerror or exc}", cause=exc) from None


def accepted(channel: GatewayChannel, data: bytes,
             addr: tuple[str | object, ...]) -> Message | None:
    """The message a datagram carries, if it comes from the channel's gateway (its address
    and port) and decodes; else ``None``, counted and logged as dropped."""
    host, port = str(addr[0]), addr[1]
    # The common case is the exact text of our own gateway: skip parsing it.
    if port != channel.port or (host != channel._gateway_text
                                and not is_gateway_address(host, channel.gateway)):
        channel.dropped += 1
        log.info("dropped a datagram from %s:%s: not gateway %s:%s", host, port,
                 channel.gateway, channel.port)
        return None
    try:
        message = decode_message(data)
    except MalformedPacket as exc:
        channel.dropped += 1
        log.info("dropped a malformed datagram from gateway %s: %s", channel.gateway, exc)
        return None
    if packet_log.isEnabledFor(logging.DEBUG):
        packet_log.debug("<- %s %r", channel.gateway, message)
    return message


def refusal(channel: GatewayChannel, exc: Exception) -> bool:
    """Whether a socket error is an ICMP port unreachable: nothing listens on the gateway's
    port. Said at once rather than the schedule waited out (issue 13; the lab's
    enable_natpmp=no). Other errors are logged; the socket is read on."""
    if not isinstance(exc, ConnectionRefusedError):
        log.debug("gateway %s: socket error %s", channel.gateway, exc)
        return False
    log.info("gateway %s: ICMP port unreachable on port %s", channel.gateway, channel.port)
    return True


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
        self._name = f"{self.gateway}:{port}" if port != SERVER_PORT else str(self.gateway)
        self._transport: ConnectedUdp | None = None
        self._opening: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the one the socket reads on
        self._out = _Out()
        self._queued: dict[DatagramProtocol, collections.deque[_Pending]] = {
            "pcp": collections.deque(), "natpmp": collections.deque()}
        #: One in-flight window per mapping protocol (issue 15's slow start in each).
        self.windows: dict[DatagramProtocol, InFlightWindow] = {
            p: InFlightWindow(max_in_flight, _FIRST_TIMEOUT[p]) for p in ("pcp", "natpmp")}
        self._timer: TimerHeap[_Pending] = TimerHeap(self._fire)
        #: Called with every accepted message (epoch tracking, last contact).
        self.observers: list[Callable[[Message], None]] = []
        self.dropped = 0
        self.sent = 0

    @property
    def is_open(self) -> bool:
        """Whether the socket is open."""
        return self._transport is not None and not self._transport.is_closing

    async def open(self) -> None:
        """Open the connected UDP socket (idempotent). Raises :class:`TransportError`."""
        if self.is_open:
            return
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self.is_open:
                return
            self._transport = open_socket(self)
            self._loop = asyncio.get_running_loop()

    def close(self) -> None:
        """Close the socket; requests still out fail at their next try."""
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> GatewayChannel:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def time(self) -> float:
        """The running loop's clock (``loop.time()``)."""
        loop = self._loop  # as _running(), inline: asked several times a request
        if loop is None or not loop.is_running():
            loop = asyncio.get_running_loop()
        return loop.time()

    def _running(self) -> asyncio.AbstractEventLoop:
        # The loop the socket was opened on, while it runs: asyncio.get_running_loop() asks
        # the OS for its pid each time on 3.11 (a system call, several a request).
        loop = self._loop
        return loop if loop is not None and loop.is_running() else asyncio.get_running_loop()

    def local_endpoint(self) -> tuple[str, int] | None:
        """The socket's own (address, port), once open."""
        if self._transport is None:
            return None
        name = self._transport.sockname()
        return (str(name[0]), int(name[1])) if name else None

    # -- requests ------------------------------------------------------------------------

    async def request(self, packet: bytes, match: Callable[[Message], Match],
                      schedule: Iterable[float], *, deadline: float | None, describe: Description,
                      protocol: DatagramProtocol, key: Hashable | None = None) -> Outcome:
        """Send ``packet`` and retransmit it on ``schedule`` until an answer matches.

        ``schedule`` yields how long to wait after each try (the RFC timers, from
        :mod:`engine.timing`); ``deadline`` caps the total seconds, time queued for the
        in-flight window included (``None``: the schedule alone decides). Raises
        :class:`~engine.errors.GatewayTimeout` (:class:`~engine.errors.PortUnreachable`
        on ICMP port unreachable), :class:`TransportError` when the OS refuses. ``key``:
        the :func:`~engine.dialects.base.answer_key` of the answers it can match by their
        data (``None``: it is offered every answer).
        """
        if self._transport is None or self._transport.is_closing:
            await self.open()
        loop = self._running()
        now = loop.time()
        window = self.windows[protocol]
        # The first timer follows the round trip measured by the time the request goes out.
        exchange = Exchange(packet, match, iter(schedule), now=now, deadline=deadline,
                            describe=describe, protocol=protocol, gateway=self._name,
                            first_timer=window.first_timer,
                            nominal_first=window.first_timeout)
        pending = _Pending(exchange, loop.create_future(), window, key)
        queue = self._queued[protocol]
        if pending.window.room > 0 and not queue:
            self._start(pending, now)
        else:
            queue.append(pending)
            self._arm(pending)
        try:
            return await pending.future
        finally:
            if not exchange.done:  # cancelled by the caller
                exchange.abort(None)
                self._finish(pending, loop.time())

    def _start(self, pending: _Pending, now: float) -> None:
        pending.started = True
        pending.window.take()
        self._out.add(pending)
        pending.exchange.start(now)
        self._step(pending, now)

    def _step(self, pending: _Pending, now: float) -> None:
        """Send what the exchange has to send; finish it or re-arm its timer."""
        exchange = pending.exchange
        datagrams = exchange.datagrams_to_send(now)
        if exchange.retransmissions == 1 and exchange.tries == 2:
            pending.window.retransmitted()  # once per request, on its first retransmission
        if exchange.done:
            self._finish(pending, now)
            return
        self._arm(pending)  # before the send, which wakes the gateway: less left to preempt
        for datagram in datagrams:
            pending.number = pending.window.sent()
            pending.first = pending.first or pending.number
            try:
                self._send(datagram, exchange.description)
            except TransportError as exc:
                exchange.abort(exc)
                self._finish(pending, now)
                return

    def _finish(self, pending: _Pending, now: float) -> None:
        exchange = pending.exchange
        self._timer.drop(pending)
        if pending.started:
            pending.started = False
            pending.window.give()
            self._out.remove(pending)
        if not pending.future.done():
            outcome = exchange.outcome
            if outcome is not None:
                learn(pending.window, pending.first, outcome, now)
                pending.future.set_result(outcome)
            elif exchange.error is not None:
                pending.future.set_exception(exchange.error)
        if self._queued[exchange.protocol]:
            self._admit(exchange.protocol, now)

    def _admit(self, protocol: DatagramProtocol, now: float) -> None:
        queue = self._queued[protocol]
        window = self.windows[protocol]
        while queue and window.room > 0:
            pending = queue.popleft()
            if not pending.exchange.done:
                self._start(pending, now)

    # -- the one timer -------------------------------------------------------------------

    def _arm(self, pending: _Pending) -> None:
        when = pending.exchange.timer()
        if when is not None:
            self._timer.push(when, pending)

    def _fire(self, pending: _Pending, now: float) -> None:
        # Only a request's live entry rings: answered or re-armed, it let go of the old one
        # (TimerHeap.drop, TimerHeap.push).
        exchange = pending.exchange
        if pending.started and held(exchange, pending.window, pending.number, now):
            self._arm(pending)
            return
        exchange.on_timer(now)
        if pending.started:
            self._step(pending, now)
        elif exchange.done:  # the deadline passed while queued
            self._queued[exchange.protocol].remove(pending)
            self._finish(pending, now)

    # -- I/O -----------------------------------------------------------------------------

    def _received(self, data: bytes, addr: tuple[str | object, ...]) -> bool:
        message = accepted(self, data, addr)
        if message is not None:
            taken = takers(self._out.offered(answer_key(message)), message, _exchange_of)
            now = self.time()
            if not taken:
                self._unmatched(message, now)
            else:
                for pending in taken:
                    pending.exchange.receive(message, now)
                    self._finish(pending, now)
                for observer in self.observers:
                    observer(message)
        return bool(self._out.all)  # whether to read on: more answers are expected

    def _unmatched(self, message: Message, now: float) -> None:
        """A valid message from the gateway that no request out takes: dropped, and heard by
        the window of its protocol (often a duplicate's answer: the gateway is still busy)."""
        self.dropped += 1
        log.info("dropped an unmatched answer from gateway %s: %r", self.gateway, message)
        self.windows["pcp" if isinstance(message, pcp.Response) else "natpmp"].heard(now)

    def _error(self, exc: Exception) -> None:
        if not refusal(self, exc):
            return
        now = self.time()
        for pending in list(self._out.all):
            pending.exchange.refused(now)
            self._finish(pending, now)

    def _send(self, packet: bytes, describe: Description) -> None:
        if self._transport is None:
            raise TransportError(f"the socket to gateway {self.gateway} is closed")
        if packet_log.isEnabledFor(logging.DEBUG):
            packet_log.debug("-> %s %s (%d bytes)", self.gateway, described(describe),
                             len(packet))
        try:
            self._transport.send(packet)  # not sent: lost, or an error told to _error
        except OSError as exc:  # closed
            raise TransportError(f"cannot send to gateway {self.gateway}: {exc}",
                                 cause=exc) from None
        self.sent += 1
