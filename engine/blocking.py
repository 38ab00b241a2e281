"""natdeck without an event loop: :class:`BlockingClient`, for scripts, threads and REPLs.

Not a second client: the very code of :class:`~engine.client.GatewayClient` (the one
:class:`~engine.request.MapRequest` validation, "PCP, else NAT-PMP", the RFC schedules, the
matching rule, the typed errors, the epochs), driven without an event loop. Its coroutines
await nothing but their channel, and this module's channel never suspends: it sends, then
waits in ``poll()`` on a blocking socket until the request's :class:`~engine.exchange.
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
import socket
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, TypeVar

from .client import GatewayClient
from .dialects.base import Heard
from .errors import InvalidRequest, TransportError
from .exchange import Exchange, Match, Message, Outcome
from .mapping import DEFAULT_TIMEOUT, PortMapping
from .request import DEFAULT_LIFETIME
from .timing import fitted_timeouts
from .transport import (
    DEFAULT_MAX_IN_FLIGHT,
    SERVER_PORT,
    GatewayChannel,
    accepted,
    held,
    learn,
    refusal,
)
from .types import DatagramProtocol, MappingProtocol
from .udp import RECEIVE_SIZE, numeric_sockaddr
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
    """:class:`~engine.transport.GatewayChannel` on a blocking socket: one request at a time.

    Everything but the waiting is the channel's own: the exchange and its window, the
    check of each datagram's source, the decoding, the matching, the counters and the
    observers. Where the asyncio channel arms a loop timer, :meth:`request` waits in
    ``poll()`` for the exchange's next timer; ``time()`` is :func:`time.monotonic` (the
    clock ``loop.time()`` reads, so mappings' times mean the same).
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        super().__init__(gateway, port, local_address=local_address,
                         max_in_flight=max_in_flight)
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._current: Exchange | None = None  # the request exchange() drives

    @property
    def is_open(self) -> bool:
        """Whether the socket is open."""
        return self._sock is not None

    async def open(self) -> None:
        """Open the socket (never suspends: see the module)."""
        self.connect()

    def connect(self) -> socket.socket:
        """The connected UDP socket, opened now if need be. Raises :class:`TransportError`."""
        if self._sock is not None:
            return self._sock
        family = socket.AF_INET6 if self.gateway.version == 6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Non-blocking: the wait is poll()'s, with the exchange's timer as its timeout
            # (a socket timeout would cost an ioctl a request to set).
            sock.setblocking(False)
            if self.local_address is not None:
                sock.bind(numeric_sockaddr(family, str(self.local_address), 0))
            sock.connect(numeric_sockaddr(family, str(self.gateway), self.port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"cannot open a UDP socket to gateway {self.gateway}:"
                                 f"{self.port}: {exc.strerror or exc}", cause=exc) from None
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        self._sock, self._poll = sock, poll
        return sock

    def close(self) -> None:
        """Close the socket (idempotent)."""
        sock, self._sock, self._poll = self._sock, None, None
        if sock is not None:
            sock.close()

    def time(self) -> float:
        """:func:`time.monotonic`: the clock of ``loop.time()``."""
        return time.monotonic()

    def local_endpoint(self) -> tuple[str, int] | None:
        """The socket's own (address, port), once open."""
        if self._sock is None:
            return None
        name = self._sock.getsockname()
        return (str(name[0]), int(name[1]))

    async def request(self, packet: bytes, match: Callable[[Message], Match],
                      schedule: Iterable[float], *, deadline: float | None, describe: str,
                      protocol: DatagramProtocol, key: Hashable | None = None) -> Outcome:
        """:meth:`GatewayChannel.request`, which returns without suspending: see
        :meth:`exchange`."""
        return self.exchange(packet, match, schedule, deadline=deadline, describe=describe,
                             protocol=protocol, key=key)

    def exchange(self, packet: bytes, match: Callable[[Message], Match],
                 schedule: Iterable[float], *, deadline: float | None, describe: str,
                 protocol: DatagramProtocol, key: Hashable | None = None) -> Outcome:
        """Send ``packet`` and retransmit it on ``schedule`` until an answer matches, or the
        schedule or ``deadline`` ends; the same arguments and errors as
        :meth:`GatewayChannel.request`.

        One request, so none of the asyncio channel's bookkeeping of many (its futures, its
        index of the requests out, its timer heap): the exchange and its protocol's window
        are driven here directly, the same calls in the same order -- each datagram checked
        and decoded by :func:`~engine.transport.accepted`, a try held while the gateway is
        still answering (:func:`~engine.transport.held`), the window told of each try, of a
        first retransmission and of the answer (:func:`~engine.transport.learn`)."""
        sock = self.connect()
        poll = self._poll
        assert poll is not None
        now = time.monotonic()
        window = self.windows[protocol]
        exchange = Exchange(packet, match, fitted_timeouts(iter(schedule), window.first_timer),
                            now=now, deadline=deadline, describe=describe, protocol=protocol,
                            gateway=self._name)
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
                try:
                    data, addr = sock.recvfrom(RECEIVE_SIZE)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:  # ICMP port unreachable and the like
                    self._error(exc)
                    continue
                message = self._accept(data, addr)
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

    def _send(self, packet: bytes, describe: str) -> None:
        sock = self._sock
        if sock is None:
            raise TransportError(f"the socket to gateway {self.gateway} is closed")
        try:
            sock.send(packet)
        except (BlockingIOError, InterruptedError):
            return  # the socket's buffer is full: lost, as on the wire; the timer covers it
        except OSError as exc:  # an earlier datagram's ICMP error, a firewall's EPERM
            self._error(exc)
            return
        self.sent += 1


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
        return run_to_end(self.client.map(
            protocol, internal_port, external_port=external_port,
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
        run_to_end(self.client.delete(mapping, timeout=timeout))

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


def _check_via(via: str) -> None:
    if via not in ("auto", "pcp", "natpmp"):
        raise InvalidRequest(f"a blocking client speaks PCP and NAT-PMP, not {via!r}: "
                             "UPnP IGD needs GatewayClient (asyncio)")

