"""natdeck without an event loop: :class:`BlockingClient`, for scripts, threads and REPLs.

Not a second client: the very code of :class:`~engine.client.GatewayClient` (the one
:class:`~engine.request.MapRequest` validation, "PCP, else NAT-PMP", the RFC schedules, the
matching rule, the typed errors, the epochs), driven without an event loop. Its coroutines
await nothing but their channel, and this module's channel never suspends: it sends, then
waits in ``poll()`` on its socket until the request's :class:`~engine.exchange.
Exchange` has its answer or its timer is due. So each coroutine runs to its end in one
``send(None)`` (:func:`run_to_end`), as h11 lets a blocking server and an asyncio one share
a protocol.

What that saves a script is the event loop itself: no future, no loop timer, no wakeup of
a selector per answer (issue 15's client CPU: on loopback asyncio alone costs more than
twice a bare blocking client). What it cannot do: UPnP IGD (its HTTP client is asyncio's;
use :class:`~engine.client.GatewayClient`), and requests at once (one at a time, as
py-natpmp and natpmpc ask).

    with BlockingClient("192.168.1.1") as client:
        mapping = client.map(Protocol.TCP, 8080, lifetime=3600)
        ...
        client.delete(mapping)
"""

from __future__ import annotations

import math
import random
import select
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

from .client import GatewayClient
from .dialects.base import Heard
from .errors import InvalidRequest
from .exchange import Description, Exchange, Match, Message, Outcome
from .mapping import DEFAULT_TIMEOUT, PortMapping
from .request import DEFAULT_LIFETIME
from .transport import (
    DEFAULT_MAX_IN_FLIGHT,
    SERVER_PORT,
    GatewayChannel,
    accepted,
    held,
    learn,
    open_socket,
    refusal,
)
from .types import DatagramProtocol, MappingProtocol
from .udp import ConnectedUdp
from .wire import pcp
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .probe_result import ProbeResult

__all__ = ["BlockingChannel", "BlockingClient", "BlockingVia", "run_to_end"]

T = TypeVar("T")

#: The mapping protocols a blocking client speaks (UPnP IGD's HTTP client is asyncio's).
BlockingVia = Literal["auto", "pcp", "natpmp"]


def run_to_end(awaitable: Awaitable[T]) -> T:
    """Run a coroutine that never suspends to its end, without an event loop: its result,
    or what it raised. A coroutine that does suspend is closed and :class:`RuntimeError`
    raised (it awaited something only an event loop can give)."""
    steps = awaitable.__await__()
    try:
        steps.send(None)
    except StopIteration as end:
        result: T = end.value
        return result
    steps.close()
    raise RuntimeError("a blocking request awaited the event loop")


class BlockingChannel(GatewayChannel):
    """:class:`~engine.transport.GatewayChannel` without an event loop: one request at a time.

    Everything but the waiting is the channel's own: the exchange and its window, the
    check of each datagram's source, the decoding, the matching, the counters, the observers
    and the socket (:meth:`~engine.udp.ConnectedUdp.unwatched`: the same one, read by no
    loop). Where the asyncio channel arms a loop timer, :meth:`exchange` waits in ``poll()``
    for an answer until the exchange's next timer; ``time()`` is :func:`time.monotonic` (the
    clock ``loop.time()`` reads, so mappings' times mean the same).
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        super().__init__(gateway, port, local_address=local_address,
                         max_in_flight=max_in_flight)
        self._poll: select.poll | None = None  # waits on the socket, which no loop reads
        self._current: Exchange | None = None  # the request exchange() drives

    async def open(self) -> None:
        """Open the socket (never suspends: see the module)."""
        self.connect()

    def connect(self) -> ConnectedUdp:
        """The connected UDP socket, opened now if need be. Raises :class:`TransportError`."""
        transport = self._transport
        if transport is None or transport.is_closing:
            transport = self._transport = open_socket(self, on_loop=False)
            self._poll = select.poll()
            self._poll.register(transport.fileno(), select.POLLIN)
        return transport

    def time(self) -> float:
        """:func:`time.monotonic`: the clock of ``loop.time()``."""
        return time.monotonic()

    async def request(self, packet: bytes, match: Callable[[Message], Match],
                      schedule: Iterable[float], *, deadline: float | None, describe: Description,
                      protocol: DatagramProtocol, key: Hashable | None = None) -> Outcome:
        """:meth:`GatewayChannel.request`, which returns without suspending: see
        :meth:`exchange`."""
        return self.exchange(packet, match, schedule, deadline=deadline, describe=describe,
                             protocol=protocol)

    def exchange(self, packet: bytes, match: Callable[[Message], Match],
                 schedule: Iterable[float], *, deadline: float | None, describe: Description,
                 protocol: DatagramProtocol) -> Outcome:
        """Send ``packet`` and retransmit it on ``schedule`` until an answer matches, or the
        schedule or ``deadline`` ends; the same arguments and errors as
        :meth:`GatewayChannel.request` (no ``key``: with one request out, every answer is
        offered to it).

        One request, so none of the asyncio channel's bookkeeping of many (its futures, its
        index of the requests out, its timer heap): the exchange and its protocol's window
        are driven here directly, the same calls in the same order -- each datagram checked
        and decoded by :func:`~engine.transport.accepted`, a try held while the gateway is
        still answering (:func:`~engine.transport.held`), the window told of each try, of a
        first retransmission and of the answer (:func:`~engine.transport.learn`)."""
        transport = self.connect()
        poll = self._poll
        assert poll is not None
        now = time.monotonic()
        window = self.windows[protocol]
        exchange = Exchange(packet, match, iter(schedule), now=now, deadline=deadline,
                            describe=describe, protocol=protocol, gateway=self._name,
                            first_timer=window.first_timer,
                            nominal_first=window.first_timeout)
        first = number = 0
        window.take()
        self._current = exchange
        try:
            exchange.start(now)
            while True:
                for datagram in exchange.datagrams_to_send(now):
                    number = window.sent()
                    first = first or number
                    self._send(datagram, describe)
                if exchange.done:
                    break
                when = exchange.timer()
                # poll() counts whole milliseconds: rounded up, never woken before the timer.
                wait = -1 if when is None else math.ceil((when - time.monotonic()) * 1000)
                if (when is not None and wait <= 0) or not poll.poll(wait):
                    now = time.monotonic()  # a try, or the end, is due
                    if not held(exchange, window, number, now):
                        exchange.on_timer(now)
                        if exchange.retransmissions == 1 and exchange.tries == 2:
                            window.retransmitted()  # once per request
                    continue
                datagram_from = transport.receive()  # an error is told to _error
                if datagram_from is None:
                    continue
                message = self._accept(*datagram_from)
                if message is None:
                    continue
                now = time.monotonic()
                if exchange.match(message) is Match.NO:
                    self._unmatched(message, now)
                    continue
                exchange.receive(message, now)
                for observer in self.observers:
                    observer(message)
        finally:
            self._current = None
            window.give()
            if not exchange.done:  # interrupted (KeyboardInterrupt)
                exchange.abort(None)
        outcome = exchange.outcome
        if outcome is None:
            assert exchange.error is not None
            raise exchange.error
        learn(window, first, outcome, now)
        return outcome

    def _accept(self, data: bytes, addr: tuple[str | object, ...]) -> Message | None:
        # What the asyncio channel's _received does first, as a method of its own here, where
        # each datagram comes in: the place a trace of the packets hooks (tests/bench).
        return accepted(self, data, addr)

    def _error(self, exc: Exception) -> None:
        # The request out, if any, is the one exchange() drives.
        if refusal(self, exc) and self._current is not None:
            self._current.refused(time.monotonic())


class _LooplessClient(GatewayClient):
    """A :class:`GatewayClient` on a :class:`BlockingChannel`, kept open between requests
    (``BlockingClient.close`` closes it): its coroutines never suspend."""

    channel_type = BlockingChannel
    concurrent = False

    def __init__(self, gateway: str | IPAddress, port: int, *,
                 local_address: str | IPAddress | None, rng: random.Random | None) -> None:
        # The window's limit as the asyncio client's: one request is out at a time here
        # anyway, and the window's estimates take the limit as how many tries may still be
        # answered (a limit of 1 took a retransmitted request's first try for lost).
        super().__init__(gateway, port, local_address=local_address, rng=rng, upnp=False)
        self._held = True  # one socket for the client's life, not one per request


class BlockingClient:
    """A port-mapping client without an event loop (see the module): PCP, else NAT-PMP.

    The same requests, answers and errors as :class:`~engine.client.GatewayClient`: a
    :class:`~engine.mapping.PortMapping` from :meth:`map`, a
    :class:`~engine.errors.GatewayError` (a result code and its error lifetime, a timeout,
    an unreachable port) when the gateway says no or nothing. One request at a time: one
    client per thread. Mappings are not kept alive: renew them (or use
    :class:`~engine.manager.MappingManager`, which does).
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 rng: random.Random | None = None) -> None:
        self.client = _LooplessClient(gateway, port, local_address=local_address, rng=rng)
        """The client the requests run through: what it learnt (``negotiation``,
        ``epochs``, ``external_address``) and its ``channel``'s counters."""

    @property
    def gateway(self) -> IPAddress:
        """The gateway's address."""
        return self.client.gateway

    def map(self, protocol: int, internal_port: int, *,
            external_port: int | None = None,
            external_address: str | IPAddress | None = None,
            lifetime: int = DEFAULT_LIFETIME, via: BlockingVia = "auto",
            prefer_failure: bool = False, filters: Iterable[pcp.Filter] = (),
            third_party: str | IPAddress | None = None, nonce: bytes | None = None,
            timeout: float | None = DEFAULT_TIMEOUT,
            fallback_on_silence: bool = True) -> PortMapping:
        """Create a mapping: the arguments of :func:`~engine.oneshot.map_port` (``via``
        without ``"upnp"``). Raises :class:`~engine.errors.InvalidRequest` for a request no
        protocol can carry, a :class:`~engine.errors.GatewayError` for the gateway's no."""
        _check_via(via)
        return run_to_end(_MAP(
            self.client, protocol, internal_port, external_port=external_port,
            external_address=external_address, lifetime=lifetime, via=via,
            prefer_failure=prefer_failure, filters=filters, third_party=third_party,
            nonce=nonce, timeout=timeout, fallback_on_silence=fallback_on_silence))

    def peer(self, protocol: int, internal_port: int, remote_address: str | IPAddress,
             remote_port: int, *, external_port: int | None = None,
             external_address: str | IPAddress | None = None,
             lifetime: int = DEFAULT_LIFETIME, third_party: str | IPAddress | None = None,
             nonce: bytes | None = None,
             timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """PCP PEER (RFC 6887 §12): create or learn the mapping for one remote peer."""
        return run_to_end(self.client.peer(
            protocol, internal_port, remote_address, remote_port, external_port=external_port,
            external_address=external_address, lifetime=lifetime, third_party=third_party,
            nonce=nonce, timeout=timeout))

    def renew(self, mapping: PortMapping, lifetime: int | None = None, *,
              timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """Renew ``mapping`` in place (same nonce, its port); on failure it is unchanged."""
        return run_to_end(self.client.renew(mapping, lifetime, timeout=timeout))

    def delete(self, mapping: PortMapping, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Delete ``mapping`` ("try drop": on failure it is unchanged and can be retried)."""
        run_to_end(_DELETE(self.client, mapping, timeout=timeout))

    def delete_all(self, protocol: int, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """NAT-PMP's delete-all: every mapping of ``protocol`` for this host (RFC 6886 §3.4)."""
        run_to_end(self.client.delete_all(protocol, timeout=timeout))

    def get_external_address(self, *, via: BlockingVia = "auto",
                             timeout: float | None = DEFAULT_TIMEOUT) -> IPAddress:
        """The gateway's external address (NAT-PMP's own request, else a short PCP MAP)."""
        _check_via(via)
        return run_to_end(self.client.get_external_address(via=via, timeout=timeout))

    def probe(self, *, timeout: float = 3.0) -> ProbeResult:
        """Whether the gateway speaks PCP (an ANNOUNCE) and NAT-PMP (the external address
        request), asked one after the other, each within half of ``timeout``; never raises
        for silence (a protocol that did not answer is reported as not spoken). What it hears
        is learnt: ``via="auto"`` then goes straight to a protocol the gateway speaks."""
        client = self.client
        heard: dict[MappingProtocol, Heard] = {}
        for protocol in ("pcp", "natpmp"):
            heard[protocol] = run_to_end(client.mappers[protocol].probe(timeout=timeout / 2))
            client.negotiation.after_probe((heard[protocol],))
        from .probe_result import ProbeResult  # as GatewayClient.probe: on first use

        return ProbeResult.of(client.gateway, heard, client.external_address)

    def close(self) -> None:
        """Close the socket (idempotent); the next request opens another."""
        self.client.channel.close()

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _unheld(method: Callable[..., T]) -> Callable[..., T]:
    """``method`` without its :func:`~engine.link.holding_channel` wrapper: a blocking
    client holds its channel for its whole life and runs one request at a time, so the
    wrapper would only count users (a coroutine and the arguments packed again, ~0.8 µs a
    request: issue 15)."""
    body: Callable[..., T] = method.__wrapped__  # type: ignore[attr-defined]
    return body


_MAP = _unheld(GatewayClient.map)
_DELETE = _unheld(GatewayClient.delete)


def _check_via(via: str) -> None:
    if via not in ("auto", "pcp", "natpmp"):
        raise InvalidRequest(f"a blocking client speaks PCP and NAT-PMP, not {via!r}: "
                             "UPnP IGD needs GatewayClient (asyncio)")

