"""When to send, resend, renew and recover: the timing rules of NAT-PMP and PCP, as pure functions.

Nothing here touches a socket, a clock or the global random generator. Times are plain ``float``
seconds on the caller's monotonic clock, passed in; randomness comes from an injected
:class:`random.Random` (or, for the RFC 3315 ``RAND`` factor, any callable returning a number in
[-0.1, +0.1]), so every schedule can be reproduced exactly in a test.

What is here, and where each rule comes from:

* Retransmission of a request: NAT-PMP's 250 ms doubling nine times (RFC 6886 §3.1) and PCP's
  RFC 3315-style ``IRT``/``MRT``/``RAND`` schedule (RFC 6887 §8.1.1), both bounded by an optional
  caller deadline (:class:`RetransmitSchedule`).
* Renewal times: NAT-PMP at half the lifetime (RFC 6886 §3.3), PCP at a random point between 1/2
  and 5/8 of it, then 3/4 to 3/4 + 1/16, 7/8 to 7/8 + 1/32 ... if the renewal is not answered, never
  less than 4 s apart (RFC 6887 §11.2.1).
* Epoch checks (RFC 6887 §8.5, RFC 6886 §3.6) are in :mod:`engine.epochs`, re-exported here.
* The random pause before reacting to an ANNOUNCE (RFC 6887 §14.1.3) and the gateway's own
  announcement schedule, 10 sends from 250 ms doubling (RFC 6886 §3.2.1), used by the simulator.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

# The epoch rules live in engine.epochs; their names stay importable from here.
from .epochs import (
    EPOCH_MODULUS,
    EpochObservation,
    EpochRule,
    EpochState,
    EpochVerdict,
    natpmp_epoch_lost,
    observe_epoch,
    pcp_epoch_lost,
)

__all__ = [
    "ANNOUNCE_MAX_DELAY",
    "EPOCH_MODULUS",
    "NATPMP_ANNOUNCEMENT_COUNT",
    "NATPMP_ANNOUNCEMENT_FIRST_INTERVAL",
    "NATPMP_RENEWAL_JITTER",
    "NATPMP_RETRANSMIT",
    "PCP_RAND_LIMIT",
    "PCP_RENEWAL_MIN_SPACING",
    "PCP_RETRANSMIT",
    "Attempt",
    "EpochObservation",
    "EpochRule",
    "EpochState",
    "EpochVerdict",
    "RandSource",
    "RetransmitSchedule",
    "announce_response_delay",
    "natpmp_announcement_schedule",
    "natpmp_epoch_lost",
    "natpmp_renewal_delay",
    "observe_epoch",
    "pcp_epoch_lost",
    "pcp_renewal_delay",
    "renewal_retry_at",
    "stretch",
]

#: A source of the RFC 3315 ``RAND`` factor: each call returns a number in
#: [-:data:`PCP_RAND_LIMIT`, +:data:`PCP_RAND_LIMIT`].
RandSource = Callable[[], float]

#: RFC 3315 §14 (which RFC 6887 §8.1.1 adopts): "RAND is a random number chosen with a uniform
#: distribution between -0.1 and +0.1".
PCP_RAND_LIMIT = 0.1


#: RFC 6887 §11.2.1: "renewal requests MUST NOT be sent less than four seconds apart".
PCP_RENEWAL_MIN_SPACING = 4.0

#: Our own choice, not an RFC number: NAT-PMP renewals are pulled up to 5 % earlier than the
#: half-life RFC 6886 §3.3 names, so that many mappings granted in the same instant (a manager
#: restoring 1,000 of them) do not all renew in the same instant. Earlier, never later: later would
#: eat into the time left for retries before expiry.
NATPMP_RENEWAL_JITTER = 0.05

#: RFC 6887 §14.1.3: a client that hears an ANNOUNCE waits a random 0-5 s before renewing, so the
#: clients of a rebooted gateway do not all answer at once.
ANNOUNCE_MAX_DELAY = 5.0

#: RFC 6886 §3.2.1: the gateway "SHOULD multicast 10 address notifications".
NATPMP_ANNOUNCEMENT_COUNT = 10
#: RFC 6886 §3.2.1: "The interval between the first two notifications SHOULD be 250 ms, and the
#: interval between each subsequent notification SHOULD double."
NATPMP_ANNOUNCEMENT_FIRST_INTERVAL = 0.25


def _as_rand_source(rand: random.Random | RandSource | None) -> RandSource:
    """The RFC 3315 ``RAND`` source for ``rand``: a Random draws uniformly from [-0.1, +0.1]."""
    if rand is None:
        rand = random.Random()  # seeded from the OS, never the shared module-level generator
    if isinstance(rand, random.Random):
        generator = rand
        return lambda: generator.uniform(-PCP_RAND_LIMIT, PCP_RAND_LIMIT)
    return rand


def _draw_rand(source: RandSource) -> float:
    """One ``RAND`` value, checked: a source outside [-0.1, +0.1] is a programming error."""
    value = source()
    if not -PCP_RAND_LIMIT <= value <= PCP_RAND_LIMIT:
        raise ValueError(f"RAND must lie in [-{PCP_RAND_LIMIT}, +{PCP_RAND_LIMIT}], got {value!r}")
    return value


#: The timeouts of each schedule without jitter and with a last try, once worked out, by
#: the schedule's ``id`` (the schedule kept with them, so that its id is not reused).
_FIXED: dict[int, tuple[RetransmitSchedule, tuple[float, ...]]] = {}
_FIXED_KEPT = 16


def _rng(rng: random.Random | None) -> random.Random:
    return random.Random() if rng is None else rng


def _check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")


# --------------------------------------------------------------------------------------------
# Retransmission
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One transmission of a request: send at ``send_at``, then wait ``wait`` for an answer.

    ``send_at`` is measured from the first transmission (so the first attempt has ``send_at`` 0);
    ``number`` counts from 1.
    """

    number: int
    send_at: float
    wait: float

    @property
    def ends_at(self) -> float:
        """When the wait after this transmission is over, from the first transmission."""
        return self.send_at + self.wait


@dataclass(frozen=True, slots=True)
class RetransmitSchedule:
    """How long to wait for an answer after each transmission, in the RFC 3315 §14 terms.

    The per-try timeout ``RT`` follows RFC 3315 §14, which RFC 6887 §8.1.1 adopts for PCP::

        RT = IRT + RAND*IRT                    first transmission
        RT = 2*RTprev + RAND*RTprev            each later one
        if MRT and RT > MRT: RT = MRT + RAND*MRT

    with ``RAND`` uniform in [-``jitter``, +``jitter``]; one ``RAND`` is drawn per transmission and
    serves both lines of that step. With ``jitter`` 0 and no ``MRT`` this is plain doubling, which
    is exactly NAT-PMP's rule (RFC 6886 §3.1), so one type serves both protocols.

    ``max_tries`` is the number of transmissions in all (RFC 3315's MRC counts retransmissions
    and uses 0 for "unbounded"; here ``None`` is unbounded). A caller's deadline plays the part of
    RFC 3315's MRD: see :meth:`attempts`.
    """

    initial_timeout: float
    """IRT, seconds."""
    max_timeout: float | None = None
    """MRT, seconds; ``None`` (RFC 3315's MRT = 0) for no cap."""
    max_tries: int | None = None
    """Transmissions in all; ``None`` for no limit."""
    jitter: float = 0.0
    """The bound of ``RAND``: 0.1 for PCP (RFC 3315 §14), 0 for NAT-PMP."""

    def __post_init__(self) -> None:
        _check_positive("initial_timeout", self.initial_timeout)
        if self.max_timeout is not None:
            _check_positive("max_timeout", self.max_timeout)
        if self.max_tries is not None and self.max_tries < 1:
            raise ValueError(f"max_tries must be at least 1, got {self.max_tries}")
        if not 0 <= self.jitter <= PCP_RAND_LIMIT:
            raise ValueError(f"jitter must lie in [0, {PCP_RAND_LIMIT}], got {self.jitter}")

    def timeouts(self, rand: random.Random | RandSource | None = None) -> Iterator[float]:
        """The per-try timeouts ``RT``, lazily; endless unless ``max_tries`` is set.

        ``rand`` supplies ``RAND`` (scaled to ``jitter``): a :class:`random.Random`, a callable
        returning a number in [-0.1, +0.1], or ``None`` for a fresh OS-seeded generator. It is not
        consulted at all when ``jitter`` is 0.
        """
        if not self.jitter and self.max_tries is not None:
            # Fixed (NAT-PMP's nine doublings): worked out once, not by a generator per
            # request (issue 15).
            known = _FIXED.get(id(self))  # by identity: hashing the fields costs more
            if known is None or known[0] is not self:
                known = (self, tuple(self._drawn(None)))
                if len(_FIXED) < _FIXED_KEPT:  # a program making schedules by the thousand
                    _FIXED[id(self)] = known
            return iter(known[1])
        return self._drawn(_as_rand_source(rand) if self.jitter else None)

    def _drawn(self, source: RandSource | None) -> Iterator[float]:
        scale = self.jitter / PCP_RAND_LIMIT
        previous: float | None = None
        tries = 0
        while self.max_tries is None or tries < self.max_tries:
            factor = _draw_rand(source) * scale if source is not None else 0.0
            if previous is None:
                timeout = self.initial_timeout + factor * self.initial_timeout
            else:
                timeout = 2 * previous + factor * previous
            if self.max_timeout is not None and timeout > self.max_timeout:
                timeout = self.max_timeout + factor * self.max_timeout
            yield timeout
            previous = timeout
            tries += 1

    def attempts(
        self, deadline: float | None = None, rand: random.Random | RandSource | None = None
    ) -> Iterator[Attempt]:
        """The transmissions to make, lazily: what the transport iterates over.

        With a ``deadline`` (seconds from the first transmission) no transmission is made at or
        after it and the last wait is cut short so that ``send_at + wait`` never exceeds it, as
        RFC 3315 §14 does for MRD. Without one, and without ``max_tries``, the sequence is endless
        (PCP's MRC = MRD = 0, RFC 6887 §8.1.1): the caller stops when it is answered or gives up.
        """
        if deadline is not None:
            _check_positive("deadline", deadline)
        send_at = 0.0
        for number, timeout in enumerate(self.timeouts(rand), start=1):
            if deadline is not None:
                if send_at >= deadline:
                    return
                timeout = min(timeout, deadline - send_at)
            yield Attempt(number=number, send_at=send_at, wait=timeout)
            send_at += timeout

    def plan(
        self, deadline: float | None = None, rand: random.Random | RandSource | None = None
    ) -> list[Attempt]:
        """Every transmission up to the deadline or ``max_tries``, as a list.

        Raises :class:`ValueError` when neither bounds the schedule (the list would be endless).
        """
        if deadline is None and self.max_tries is None:
            raise ValueError("an unbounded schedule needs a deadline to be planned in full")
        return list(self.attempts(deadline, rand))

    @property
    def total(self) -> float | None:
        """The longest the whole exchange can take without a deadline, for an unjittered schedule.

        ``None`` when the schedule is endless or jittered (then it depends on the draws).
        """
        if self.max_tries is None or self.jitter:
            return None
        return sum(self.timeouts())


def stretch(first: float, first_timer: float) -> float:
    """The factor by which every wait of a schedule whose first wait is ``first`` is stretched,
    so that the first is at least ``first_timer`` (the in-flight window's, :meth:`engine.window.
    InFlightWindow.first_timer`) and the schedule keeps its RFC shape (doubling, RFC 3315's
    ``RAND``) from there; never below 1 (a wait is never shortened), and 1 for an endless
    first wait (a request sent once, waiting out its deadline)."""
    if first > 0 and math.isfinite(first) and first_timer > first:
        return first_timer / first
    return 1.0


#: RFC 6886 §3.1: wait 250 ms, then 500 ms, "the interval between attempts doubling each time";
#: after "its ninth attempt (and then waiting for 64 seconds)" the gateway does not support
#: NAT-PMP. Nine tries, 127.75 s in all. Deletions may stop sooner (same section): pass a smaller
#: ``max_tries`` via :func:`dataclasses.replace`.
NATPMP_RETRANSMIT = RetransmitSchedule(initial_timeout=0.25, max_tries=9)

#: RFC 6887 §8.1.1: IRT = 3 s, MRT = 1024 s, MRC = 0 and MRD = 0 (both unbounded), with RFC 3315's
#: ``RAND`` in [-0.1, +0.1]. Give :meth:`RetransmitSchedule.attempts` a deadline to bound it.
PCP_RETRANSMIT = RetransmitSchedule(initial_timeout=3.0, max_timeout=1024.0, jitter=PCP_RAND_LIMIT)


# --------------------------------------------------------------------------------------------
# Renewal
# --------------------------------------------------------------------------------------------


def natpmp_renewal_delay(
    lifetime: float, rng: random.Random | None = None, *, jitter: float = NATPMP_RENEWAL_JITTER
) -> float:
    """Seconds after the grant at which to renew a NAT-PMP mapping.

    RFC 6886 §3.3: "The client SHOULD begin trying to renew the mapping halfway to expiry time,
    like DHCP." The result is ``lifetime / 2`` pulled earlier by a uniform random fraction of up
    to ``jitter`` (5 % by default, see :data:`NATPMP_RENEWAL_JITTER`); ``jitter=0`` gives exactly
    half. ``rng`` defaults to a fresh OS-seeded generator.
    """
    _check_positive("lifetime", lifetime)
    if not 0 <= jitter < 1:
        raise ValueError(f"jitter must lie in [0, 1), got {jitter}")
    half = lifetime / 2
    if not jitter:
        return half
    return half * (1 - jitter * _rng(rng).random())


def pcp_renewal_delay(lifetime: float, rng: random.Random | None = None) -> float:
    """Seconds after the grant at which to send the first renewal of a PCP mapping.

    RFC 6887 §11.2.1: "It is RECOMMENDED that PCP clients send a single renewal request packet at
    a time chosen with uniform random distribution in the range 1/2 to 5/8 of expiration time."
    The random window is also what spreads out the renewals of many mappings granted together.
    """
    _check_positive("lifetime", lifetime)
    return _rng(rng).uniform(lifetime / 2, lifetime * 5 / 8)


def _renewal_window(attempt: int) -> tuple[float, float]:
    """Fractions of the lifetime bounding renewal ``attempt`` (0 = the first renewal).

    RFC 6887 §11.2.1: 1/2 to 5/8, then "3/4 to 3/4 + 1/16 to expiration, and then another 7/8 to
    7/8 + 1/32 to expiration, and so on": window k starts at 1 - 2**-(k+1) and is 2**-(k+3) wide.
    """
    start = 1 - 0.5 ** (attempt + 1)
    return start, start + 0.5 ** (attempt + 3)


def renewal_retry_at(
    granted_at: float,
    lifetime: float,
    now: float,
    attempt: int,
    rng: random.Random | None = None,
    *,
    min_spacing: float = PCP_RENEWAL_MIN_SPACING,
) -> float | None:
    """When to send the next renewal after ``attempt`` renewals went unanswered; ``None`` if never.

    RFC 6887 §11.2.1: if the renewal sent at 1/2-5/8 of the lifetime gets no SUCCESS, "the next
    renewal request should be sent 3/4 to 3/4 + 1/16 to expiration, and then another 7/8 to 7/8 +
    1/32 to expiration, and so on, subject to the constraint that renewal requests MUST NOT be sent
    less than four seconds apart". ``attempt`` (at least 1) selects the window; the time is drawn
    uniformly inside it, measured from ``granted_at``.

    ``now`` is the current time, no earlier than the previous renewal was sent, so the result is
    never before ``now + min_spacing``: a short lifetime cannot turn into a busy loop, and a window
    already past (the previous attempt took long) moves to the earliest allowed time instead. Once
    that time is at or past expiry (``granted_at + lifetime``), there is nothing left to renew and
    the answer is ``None``: the mapping will expire and must be requested again.

    RFC 6886 (NAT-PMP) gives no rule beyond "begin trying to renew ... halfway to expiry" (§3.3);
    the same windows serve it well and are used for both protocols.
    """
    _check_positive("lifetime", lifetime)
    _check_positive("min_spacing", min_spacing)
    if attempt < 1:
        raise ValueError(f"attempt counts the renewals already sent, so is at least 1: {attempt}")
    expires_at = granted_at + lifetime
    earliest = now + min_spacing
    if earliest >= expires_at:
        return None
    low, high = _renewal_window(attempt)
    at = granted_at + lifetime * _rng(rng).uniform(low, high)
    at = max(at, earliest)
    return at if at < expires_at else None


# --------------------------------------------------------------------------------------------


def announce_response_delay(rng: random.Random | None = None) -> float:
    """Seconds to wait, after hearing an ANNOUNCE that shows lost state, before renewing.

    RFC 6887 §14.1.3: a random delay of 0 to 5 seconds, so that every client of a rebooted gateway
    does not send its renewals in the same instant. Also used for NAT-PMP address-change
    announcements (RFC 6886 §3.2.1 asks for prompt renewal but the same herd forms).
    """
    return _rng(rng).uniform(0.0, ANNOUNCE_MAX_DELAY)


def natpmp_announcement_schedule(
    count: int = NATPMP_ANNOUNCEMENT_COUNT,
    first_interval: float = NATPMP_ANNOUNCEMENT_FIRST_INTERVAL,
) -> tuple[float, ...]:
    """When a gateway sends its announcements, in seconds from the first (RFC 6886 §3.2.1).

    Ten sends, 250 ms between the first two, each later interval doubled: 0, 0.25, 0.75, 1.75 ...
    127.75. The simulator schedules its announcements with this (a smaller ``first_interval``
    speeds a test up while keeping the shape).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    _check_positive("first_interval", first_interval)
    offsets = [0.0]
    interval = first_interval
    for _ in range(count - 1):
        offsets.append(offsets[-1] + interval)
        interval *= 2
    return tuple(offsets)
