"""The in-flight window: how many requests may be out to one gateway at once (pure).

A gateway serves requests one at a time (miniupnpd takes ~2.5-10 ms each, and
60-180 ms with its console on): with too many out, the last waits in its
queue past the protocol's first retransmission timer and is sent again, which
only lengthens the queue. So the window follows the smoothed round trip, as
aioquic's ``quic/recovery.py`` does for congestion: pure arithmetic fed round
trip samples, with no futures and no clock of its own. The transport owns one
window per (channel, mapping protocol) and asks :attr:`InFlightWindow.room`.

Slow start (issue 15): one request out until a round trip has been measured
(Karn's rule: only first tries give samples), then at most as many as the
gateway answers in half the first retransmission timer, capped at ``limit``.
A retransmission halves it. With a gateway of service time ``s`` and window
``w = IRT / (2 s)``, the last of ``w`` requests is answered after ``w * s =
IRT / 2``: no retransmission while the gateway answers everything, for ``s``
up to ``IRT / 2`` (125 ms for NAT-PMP's 250 ms; beyond it one at a time). ``s``
is taken two mean deviations slower than its smoothed value, so that an erratic
gateway's fast runs do not open the window for its slow answers to overrun.

The first retransmission timer (:meth:`InFlightWindow.first_timer`) follows the
measured round trip as TCP's does (RFC 6298 §2): ``RTO = SRTT + max(G, 4 *
RTTVAR)``, never shorter than the RFC's own first timer plus one clock
granularity ``G``. Why: a gateway serving one request at a time in 250 ms
answers exactly as NAT-PMP's 250 ms first timer (RFC 6886 §3.1) fires, and a
queue of round trips that vary goes past it; every duplicate costs the gateway
one more service time, and every request queued behind it as much. A gateway
with a long tail (miniupnpd on a slow console, measured: 3-365 ms, median
113 ms) answers slower than ``SRTT + 4 RTTVAR`` now and then, so the timer is
also never shorter than the slowest recent round trip (a peak that loses 1/16 a
sample), an answer that is far likelier to an earlier try still teaches the
timer (:meth:`InFlightWindow.answered_late`), and a due try
waits on while the gateway is still answering what was sent before it
(:meth:`InFlightWindow.hold_until`, after RFC 6298 §5.3). The RFC's timer is a floor, never
cut: on a fast gateway a lost packet is resent as soon as the RFC says. ``G``
(10 ms) keeps a timer from firing in a tie with an answer due at the same
instant (RFC 6298 §2.4's granularity term).
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "GRANULARITY", "MAX_STRETCH", "InFlightWindow"]

DEFAULT_MAX_IN_FLIGHT = 32
#: RFC 6298 §2's clock granularity ``G``, seconds: the least margin a timer keeps over a round
#: trip (and over the RFC's first timer, before any is measured).
GRANULARITY = 0.010
#: The most the first timer is stretched over the RFC's (NAT-PMP: 1 s, PCP: 12 s): enough for
#: the slowest gateway measured (miniupnpd on a slow console: 365 ms), and a bound on a bad
#: estimate.
MAX_STRETCH = 4
#: How much of the slowest recent round trip the next sample keeps: 15/16 (half of it is
#: forgotten over ~11 samples), so one slow answer holds the timer up for a while, not forever.
_PEAK_DECAY = 15 / 16


class InFlightWindow:
    """How many requests of one mapping protocol may be out to one gateway at once."""

    __slots__ = ("answered_at", "answered_try", "first_timeout", "in_flight", "limit",
                 "rtt_peak", "rtt_smoothed", "rtt_variance", "service_variance", "srtt", "tries",
                 "window")

    def __init__(self, limit: int, first_timeout: float, *, initial: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, not {limit}")
        self.limit = limit
        self.first_timeout = first_timeout
        self.window = float(max(1, min(initial, limit)))
        self.in_flight = 0
        self.srtt: float | None = None
        """Smoothed service time per request (a round trip over the requests it queued behind)."""
        self.service_variance = 0.0
        """The mean deviation of the service time per request (RFC 6298's RTTVAR, for it)."""
        self.answered_at: float | None = None
        """When the gateway last answered a request."""
        self.answered_try = 0
        """The number of that request's last try (see :meth:`sent`)."""
        self.tries = 0
        """Tries sent so far: each try's number, in the order they went out."""
        self.rtt_smoothed: float | None = None
        """RFC 6298's SRTT: the smoothed round trip itself, queueing included."""
        self.rtt_variance = 0.0
        """RFC 6298's RTTVAR."""
        self.rtt_peak = 0.0
        """The slowest recent round trip: each sample takes it, or 1/16 off it."""

    @property
    def room(self) -> int:
        """How many more requests may be sent now."""
        return max(1, int(self.window)) - self.in_flight

    @property
    def full(self) -> bool:
        """Whether a new request would have to wait."""
        return self.room <= 0

    def take(self) -> None:
        """A request goes out (the caller checked :attr:`room`)."""
        self.in_flight += 1

    def give(self) -> None:
        """A request is over (answered, failed or abandoned)."""
        self.in_flight = max(0, self.in_flight - 1)

    def answered(self, rtt: float, sent_with: int = 1) -> None:
        """A first try was answered after ``rtt`` seconds (Karn's rule: no other samples).

        ``sent_with``: how many requests were out when it was sent, itself included. A
        gateway serving one at a time answered them all in ``rtt``, so ``rtt / sent_with``
        is the time it takes for one: the window is what it answers in half the first
        timer, not the square root of that a queue-inflated round trip would give.
        RFC 6298's smoothing (gain 1/8) so that one fast answer does not open it all, and
        its mean deviation: the window is fitted to a service time two deviations slower
        than the mean, so that an erratic gateway (miniupnpd writing to a slow console:
        60-180 ms a request) does not have its queue outlast the timers.
        """
        self._round_trip(rtt)
        sample = rtt / max(1, sent_with)
        if self.srtt is None:
            self.srtt = sample
            self.service_variance = sample / 2
        else:
            self.service_variance += (abs(self.srtt - sample) - self.service_variance) / 4
            self.srtt += (sample - self.srtt) / 8
        slow = self.srtt + 2 * self.service_variance
        fit = self.first_timeout / (2 * max(slow, 1e-4))
        self.window = max(1.0, min(float(self.limit), fit))

    def answered_late(self, since_previous: float, since_last: float) -> None:
        """A retransmitted request was answered ``since_last`` seconds after its last try and
        ``since_previous`` after the try before it.

        Karn's rule takes no sample from it: the answer may be to either try. But one that
        comes in under half the usual round trip after the last try is far likelier the
        answer to the try before, so ``since_previous`` is taken as a round trip. Without
        this the timers never learn of a gateway's slow answers -- those are exactly the
        ones retransmitted -- and a gateway with a long tail gets duplicates again and
        again. If it was the answer to the last try after all (the one before was lost),
        the sample is too long, never too short: it errs towards fewer retransmissions.
        """
        if self.rtt_smoothed is not None and since_last < self.rtt_smoothed / 2:
            self._round_trip(since_previous)

    def _round_trip(self, rtt: float) -> None:
        # RFC 6298 §2.2 (first sample) and §2.3 (alpha 1/8, beta 1/4).
        if self.rtt_smoothed is None:
            self.rtt_smoothed = rtt
            self.rtt_variance = rtt / 2
        else:
            self.rtt_variance += (abs(self.rtt_smoothed - rtt) - self.rtt_variance) / 4
            self.rtt_smoothed += (rtt - self.rtt_smoothed) / 8
        self.rtt_peak = max(rtt, self.rtt_peak * _PEAK_DECAY)

    def first_timer(self) -> float:
        """How long a request waits for its answer before the first retransmission: RFC
        6298's ``RTO = SRTT + max(G, 4 * RTTVAR)``, and no less than the slowest recent
        round trip plus ``G``, never less than the RFC's first timer plus ``G`` (see the
        module)."""
        floor = self.first_timeout + GRANULARITY
        if self.rtt_smoothed is None:
            return floor
        fitted = max(floor, self.rtt_peak + GRANULARITY,
                     self.rtt_smoothed + max(GRANULARITY, 4 * self.rtt_variance))
        # Never more than MAX_STRETCH times the RFC's first timer: on a lossy link a sample
        # taken from a late answer can be seconds long, and every request then waits that long
        # before its first retransmission (measured in the lab at 30 % loss: 12 s timers).
        return min(fitted, MAX_STRETCH * self.first_timeout)

    def sent(self) -> int:
        """A try goes out: its number (the order of sending, which a gateway serves in)."""
        self.tries += 1
        return self.tries

    def progress(self, number: int, now: float) -> None:
        """The gateway answered, at ``now``, a request whose last try was ``number``."""
        self.answered_at = now
        self.answered_try = number

    def hold_until(self, number: int, sent_at: float, now: float) -> float | None:
        """Until when try ``number``, sent at ``sent_at``, whose timer is due, should wait
        on: while the gateway keeps answering (since it was sent) tries sent before it,
        within a first timer of each other, it is queued behind them, not lost (RFC 6298
        §5.3 restarts the timer on each acknowledgement for the same reason). ``None``:
        retransmit now -- nothing heard since it was sent, nothing heard for a first timer,
        or the gateway already answered a try sent after it (a gateway serves in order:
        this one was lost).

        Why: a gateway that slows down after the window opened (miniupnpd answers its first
        requests in 3 ms, then 50-350 ms once its console is busy) has a window's worth of
        requests queued, each with a timer fitted to the fast answers.
        """
        if self.answered_at is None or self.answered_try > number or self.answered_at <= sent_at:
            # Nothing answered since this try went out is no sign of a queue ahead of it (a
            # lossy link with one request out: the answer before it came before it was sent).
            return None
        until = self.answered_at + self.first_timer()
        return until if until > now else None

    def retransmitted(self) -> None:
        """A request had to be sent again: halve the window (a duplicate costs the gateway a
        service time). The first timer is not backed off across requests as RFC 6298 §5.5
        does for one TCP connection: each request already doubles its own timer (RFC 6886
        §3.1, RFC 6887 §8.1.1), and on a lossy link a backed-off timer would hold every
        request queued behind a lost one for seconds (measured in the lab at 30 % loss:
        twenty mappings starved for a minute)."""
        self.window = max(1.0, self.window / 2)
