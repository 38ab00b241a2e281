"""One request's life, sans-IO: tries, the RFC schedule, the caller's deadline, matching.

Driven like aioquic's connection, only through plain calls fed ``now``::

    exchange = Exchange(packet, match, waits, now=now, deadline=30.0, ...)
    exchange.start(now)                 # when the in-flight window has room
    for datagram in exchange.datagrams_to_send(now): sock.send(datagram)
    wake at exchange.timer(), then exchange.on_timer(now)
    exchange.match(message) / exchange.receive(message, now)
    exchange.refused(now)               # ICMP port unreachable from the gateway

and it ends :attr:`~Exchange.done` with an :class:`Outcome` or an error. The
``waits`` are the per-try timeouts of :mod:`engine.timing` (RFC 6886 §3.1,
RFC 6887 §8.1.1); the deadline counts from the exchange's creation, so time
spent queued for the in-flight window counts too. Karn's rule: only an answer
to a request sent once gives a round-trip sample.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeVar

from .errors import GatewayError, GatewayTimeout, PortUnreachable
from .timing import stretch
from .types import DatagramProtocol
from .wire import natpmp, pcp

__all__ = ["Description", "Exchange", "Match", "Message", "Outcome", "State", "described",
           "takers"]

log = logging.getLogger("engine.exchange")

T = TypeVar("T")

Message = natpmp.Response | pcp.Response
"""A decoded datagram from a gateway: NAT-PMP (version 0) or PCP (version >= 1)."""


class Match(IntEnum):
    """Whether a message answers a request."""

    NO = 0
    WEAK = 1
    """It may answer this request, but if a request in flight matches it firmly, it answers
    that one (an 8-byte UNSUPPORTED_VERSION: a NAT-PMP gateway refusing a PCP request, or a
    gateway refusing NAT-PMP's version 0)."""
    YES = 2


def takers(items: Iterable[T], message: Message,
           exchange_of: Callable[[T], Exchange]) -> list[T]:
    """The items whose exchange ``message`` answers: those it matches firmly, else those it
    matches weakly. The same 8 bytes (NAT-PMP UNSUPPORTED_VERSION) answer a PCP request
    refused by a NAT-PMP gateway and a NAT-PMP request refused by its version: decided by
    the request out, the PCP one first."""
    firm: list[T] = []
    weak: list[T] = []
    for item in items:
        verdict = exchange_of(item).match(message)
        if verdict is Match.YES:
            firm.append(item)
        elif verdict is Match.WEAK:
            weak.append(item)
    return firm or weak


#: What a request is, in words (``"NAT-PMP map tcp 8080"``), or a function that says it: the
#: words are put together only when a log line or an error needs them (issue 15: not for every
#: request, ~0.6 µs of a NAT-PMP one).
Description = str | Callable[[], str]


def described(description: Description) -> str:
    """The words of a :data:`Description`."""
    return description if isinstance(description, str) else description()


class State(Enum):
    """Where an exchange is in its life."""

    QUEUED = "queued"
    """Waiting for room in the in-flight window; nothing sent yet."""
    SENT = "sent"
    ANSWERED = "answered"
    FAILED = "failed"


@dataclass(slots=True)
class Outcome:
    """A request's accepted answer, with what it cost.

    Not frozen (issue 15: one per request): a frozen dataclass sets each field through
    ``object.__setattr__``, four times the cost of building this plain slotted one. Nothing
    changes an Outcome once built; it is not hashed."""

    message: Message
    tries: int
    elapsed: float
    rtt: float | None
    """Round trip of the answered try; ``None`` when the answer may belong to an
    earlier try (Karn's rule: no sample from a retransmitted request)."""
    since_last: float = 0.0
    """Seconds from the last try to the answer."""
    since_previous: float | None = None
    """Seconds from the try before the last to the answer (``None``: sent once)."""


class Exchange:
    """One request to a gateway, from queued to answered or failed; no I/O, no clock."""

    __slots__ = ("_first_timer", "_next_try_at", "_nominal", "_outbox", "_stretch", "_waits",
                 "created", "deadline_at", "description", "done", "error", "gateway", "match_fn",
                 "outcome", "packet", "previous_sent_at", "protocol", "retransmissions", "sent_at",
                 "state", "tries")

    def __init__(self, packet: bytes, match: Callable[[Message], Match],
                 waits: Iterator[float], *, now: float, deadline: float | None,
                 describe: Description, protocol: DatagramProtocol, gateway: str,
                 first_timer: Callable[[], float] | None = None,
                 nominal_first: float | None = None) -> None:
        """``waits``: how long to wait after each try (the RFC schedule). ``first_timer``: the
        first timer that fits the gateway, asked when the first try goes out (after any time
        queued, so the round trips measured by then count); every wait is then stretched by
        the factor that makes the first at least that (:func:`~engine.timing.stretch`).
        ``nominal_first``: the schedule's first wait without RFC 3315's ``RAND`` (PCP's IRT),
        which the first timer is held against instead of the drawn one, so that every wait
        keeps its ``RAND``: held against the drawn wait, each one drawn below the first timer
        would be raised to it, and half of all fresh requests would retransmit in step."""
        self.packet = packet
        self.match_fn = match
        self._waits = waits
        self._first_timer = first_timer
        self._nominal = nominal_first
        self._stretch = 1.0
        self.created = now
        self.deadline_at = None if deadline is None else now + deadline
        self.description = describe
        self.protocol: DatagramProtocol = protocol
        self.gateway = gateway
        self.state = State.QUEUED
        #: Whether the exchange has ended (answered or failed): an attribute, not a property
        #: of :attr:`state`, because the transport asks it several times per request.
        self.done = False
        self.tries = 0
        self.retransmissions = 0
        self.sent_at = now
        self.previous_sent_at: float | None = None
        self._next_try_at: float | None = None
        # None while there is nothing to send: no list held by every request in flight.
        self._outbox: list[bytes] | None = None
        self.outcome: Outcome | None = None
        self.error: GatewayError | None = None

    @property
    def describe(self) -> str:
        """What the request is, in words (its :data:`Description` said)."""
        words = self.description = described(self.description)  # said once
        return words

    def start(self, now: float) -> None:
        """Room in the window: send the first try (unless the deadline has passed)."""
        if self.state is not State.QUEUED:
            return
        self.state = State.SENT
        self._try(now)

    def _try(self, now: float) -> None:
        if self.deadline_at is not None and now >= self.deadline_at:
            self._timeout(now)
            return
        wait = next(self._waits, None)
        if wait is None:
            self._timeout(now)
            return
        if self._first_timer is not None:  # the first try: fit the schedule to the gateway
            first = wait if self._nominal is None else self._nominal
            self._stretch = stretch(first, self._first_timer())
            self._first_timer = None
        wait *= self._stretch
        if self.tries:
            self.retransmissions += 1
            log.info("%s: no answer from %s after %d %s, retransmitting", self.describe,
                     self.gateway, self.tries, "try" if self.tries == 1 else "tries")
        self.tries += 1
        if self.tries > 1:
            self.previous_sent_at = self.sent_at
        self.sent_at = now
        self._next_try_at = now + wait
        if self._outbox is None:
            self._outbox = [self.packet]
        else:  # a try due before the caller took the last one
            self._outbox.append(self.packet)

    def _timeout(self, now: float) -> None:
        self.state = State.FAILED
        self.done = True
        self._next_try_at = None
        self.error = GatewayTimeout(self.gateway, self.describe, self.tries, now - self.created,
                                    self.protocol)

    def datagrams_to_send(self, now: float) -> Sequence[bytes]:
        """What to send now (and forget)."""
        out = self._outbox
        if out is None:
            return ()
        self._outbox = None
        return out

    def timer(self) -> float | None:
        """When :meth:`on_timer` must be called next; ``None`` once done (or never)."""
        if self.done:
            return None
        if self._next_try_at is None:
            return self.deadline_at
        if self.deadline_at is None:
            return self._next_try_at
        return min(self._next_try_at, self.deadline_at)

    def postpone(self, until: float) -> None:
        """Hold the next try until ``until`` (never sooner; the deadline still holds): the
        gateway is still answering what was sent before it."""
        if self.state is State.SENT and self._next_try_at is not None \
                and until > self._next_try_at:
            self._next_try_at = until

    def on_timer(self, now: float) -> None:
        """The timer fired: retransmit, or fail on the schedule's end or the deadline."""
        if self.done:
            return
        if self.deadline_at is not None and now >= self.deadline_at:
            self._timeout(now)
        elif self._next_try_at is not None and now >= self._next_try_at:
            self._try(now)

    def match(self, message: Message) -> Match:
        """Whether ``message`` answers this request (only while it is out)."""
        if self.state is not State.SENT:
            return Match.NO
        return self.match_fn(message)

    def receive(self, message: Message, now: float) -> None:
        """Take ``message`` as the answer (the caller matched it)."""
        if self.state is not State.SENT:
            return
        self.state = State.ANSWERED
        self.done = True
        self._next_try_at = None
        since_last = now - self.sent_at
        if self.tries == 1:
            self.outcome = Outcome(message, 1, now - self.created, since_last, since_last)
        else:
            previous = None if self.previous_sent_at is None else now - self.previous_sent_at
            self.outcome = Outcome(message, self.tries, now - self.created, None, since_last,
                                   previous)

    def abort(self, error: GatewayError | None) -> None:
        """End the exchange with ``error`` (the OS refused to send; ``None``: abandoned)."""
        if self.done:
            return
        self.state = State.FAILED
        self.done = True
        self._next_try_at = None
        self.error = error

    def refused(self, now: float) -> None:
        """The gateway's port answered ICMP port unreachable: nothing listens there."""
        if self.state is not State.SENT:
            return
        self.state = State.FAILED
        self.done = True
        self._next_try_at = None
        self.error = PortUnreachable(self.gateway, self.describe, self.tries,
                                     now - self.created, self.protocol)
