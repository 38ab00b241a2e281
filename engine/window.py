"""The in-flight window: how many requests may be out to one gateway at once (pure).

A gateway serves requests one at a time (miniupnpd takes ~2 ms each, and
3-520 ms with its console on): with too many out, the last waits in its queue
past the protocol's first retransmission timer and is sent again, which only
lengthens the queue. So the window follows the measured service time, as
aioquic's ``quic/recovery.py`` does for congestion: pure arithmetic fed round
trip samples, with no futures and no clock of its own. The transport owns one
window per (channel, mapping protocol) and asks :attr:`InFlightWindow.room`.

Slow start (issue 15): one request out until a round trip has been measured
(Karn's rule: only first tries give samples), then as many as the gateway
answers in half the first retransmission timer, at least two (one served, one
queued) and at most ``limit``. A retransmission halves it, not below two. The
service time of a request is measured as a
serial gateway spends it: from its answer back to the later of its sending and
the answer before it (the gateway was busy with it since then). The window is
fitted to a service time two mean deviations slower than its smoothed value,
so that an erratic gateway's fast runs do not open it for its slow answers.

The first retransmission timer (:meth:`InFlightWindow.first_timer`) follows
the measurements as TCP's does (RFC 6298 §2): ``SRTT + max(G, 4 * RTTVAR)`` of
the round trips, no less than the slowest recent round trip (a peak that loses
1/16 a sample), and no less than twice that slow service time, ``2 * (S + 2 *
SVAR)``: miniupnpd on a slow console takes longer per request as its table
grows, and the first delete after fifty maps took 2.6 times the smoothed
service time before it (516 ms after ~200 ms), which ``SRTT + 4 RTTVAR``
misses when the service times ramp steadily. The RFC's own first timer plus
one clock granularity ``G`` is the floor, never cut (on a fast gateway a lost
packet is resent as soon as the RFC says); four times it the ceiling.

A timer that fires does not always mean a loss (:meth:`InFlightWindow.hold_until`,
after RFC 6298 §5.3, which restarts the timer on each acknowledgement): a try
waits on while the gateway, since it was sent, is still answering what was sent
before it -- an answer no request takes (a duplicate's) included -- so a
request queued behind others is timed from the answer before it, against one
service time, whatever the queue ahead of it. Only an answer to a first try
says which try the gateway answered: an answer to a request sent twice tells
only that its first try was served, and is taken as a round trip only when it
came sooner after the last try than half the fastest round trip ever measured
(:meth:`InFlightWindow.answered_late`). Until a round trip is measured, a
duplicate's answer backs the next first timer off.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "GRANULARITY", "MAX_STRETCH", "InFlightWindow"]

DEFAULT_MAX_IN_FLIGHT = 32
#: RFC 6298 §2's clock granularity ``G``, seconds: the least margin a timer keeps over a round
#: trip (and over the RFC's first timer, before any is measured).
GRANULARITY = 0.010
#: The most the first timer is stretched over the RFC's (NAT-PMP: 1 s, PCP: 12 s): enough for
#: the slowest gateway measured (miniupnpd on a slow console: 516 ms), and a bound on a bad
#: estimate.
MAX_STRETCH = 4
#: How much of the slowest recent round trip the next sample keeps: 15/16 (half of it is
#: forgotten over ~11 samples), so one slow answer holds the timer up for a while, not forever.
_PEAK_DECAY = 15 / 16


class InFlightWindow:
    """How many requests of one mapping protocol may be out to one gateway at once."""

    __slots__ = ("answered_at", "answered_try", "backoff", "first_timeout", "in_flight", "limit",
                 "matched", "rtt_min", "rtt_peak", "rtt_smoothed", "rtt_variance",
                 "service_variance", "srtt", "strays", "tries", "window")

    def __init__(self, limit: int, first_timeout: float, *, initial: int = 1) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be at least 1, not {limit}")
        self.limit = limit
        self.first_timeout = first_timeout
        self.window = float(max(1, min(initial, limit)))
        self.in_flight = 0
        self.srtt: float | None = None
        """Smoothed service time per request (see :meth:`answered`)."""
        self.service_variance = 0.0
        """The mean deviation of the service time per request (RFC 6298's RTTVAR, for it)."""
        self.answered_at: float | None = None
        """When the gateway last answered a request."""
        self.answered_try = 0
        """The number of the last try known answered (see :meth:`sent`, :meth:`progress`)."""
        self.tries = 0
        """Tries sent so far: each try's number, in the order they went out."""
        self.matched = 0
        """Answers a request took (:meth:`progress`)."""
        self.strays = 0
        """Answers no request took that were believed (:meth:`heard`): with :attr:`matched`,
        never more than :attr:`tries` -- a gateway sends one answer a try."""
        self.rtt_smoothed: float | None = None
        """RFC 6298's SRTT: the smoothed round trip itself, queueing included."""
        self.rtt_variance = 0.0
        """RFC 6298's RTTVAR."""
        self.rtt_peak = 0.0
        """The slowest recent round trip: each sample takes it, or 1/16 off it."""
        self.rtt_min: float | None = None
        """The fastest round trip measured: no answer to a try comes sooner."""
        self.backoff = 1.0
        """How much the RFC's first timer is stretched before any round trip is measured."""

    @property
    def room(self) -> int:
        """How many more requests may be sent now."""
        window = int(self.window)
        return (window if window > 1 else 1) - self.in_flight

    @property
    def full(self) -> bool:
        """Whether a new request would have to wait."""
        return self.room <= 0

    def take(self) -> None:
        """A request goes out (the caller checked :attr:`room`)."""
        self.in_flight += 1

    def give(self) -> None:
        """A request is over (answered, failed or abandoned)."""
        if self.in_flight > 0:
            self.in_flight -= 1

    def answered(self, rtt: float, at: float | None = None) -> None:
        """A first try was answered after ``rtt`` seconds, at ``at`` (Karn's rule: no other
        samples). Call it before :meth:`progress` records this answer.

        Its service time is what a gateway serving one request at a time spent on it: from
        the later of its sending (``at - rtt``) and the answer before it (:attr:`answered_at`)
        to ``at`` -- not the round trip, which counts the requests queued ahead of it too.
        RFC 6298's smoothing (gain 1/8) so that one fast answer does not open the window at
        once, and its mean deviation: the window is what the gateway answers in half the
        first timer at a service time two deviations slower than the mean, so that an erratic
        gateway (miniupnpd writing to a slow console) does not have its queue outlast the
        timers.
        """
        # _round_trip and _least written out, with the fields read once:
        # this runs for every answer (issue 15's client CPU), the same arithmetic.
        smoothed = self.rtt_smoothed
        if smoothed is None:
            self.rtt_smoothed = rtt
            self.rtt_variance = rtt / 2
        else:
            self.rtt_variance += (abs(smoothed - rtt) - self.rtt_variance) / 4
            self.rtt_smoothed = smoothed + (rtt - smoothed) / 8
        peak = self.rtt_peak * _PEAK_DECAY
        self.rtt_peak = rtt if rtt >= peak else peak
        fastest = self.rtt_min
        self.rtt_min = rtt if fastest is None or rtt < fastest else fastest
        sample = rtt
        before = self.answered_at
        if at is not None and before is not None:
            since = at - before  # sooner: another answer came after this one was sent
            if since < sample:
                sample = since if since > 0.0 else 0.0
        srtt = self.srtt
        if srtt is None:
            srtt = sample
            variance = sample / 2
        else:
            variance = self.service_variance + (abs(srtt - sample) - self.service_variance) / 4
            srtt += (sample - srtt) / 8
        self.srtt = srtt
        self.service_variance = variance
        limit = self.limit
        slow = srtt + 2 * variance
        fit = self.first_timeout / (2 * (slow if slow > 1e-4 else 1e-4))
        least = 2.0 if limit >= 2 else float(limit)
        self.window = least if fit < least else (fit if fit < limit else float(limit))

    def _least(self) -> float:
        """The smallest window: one request until a round trip is measured (slow start), then
        two -- one served, one queued behind it, so that the gateway never waits for the
        client, and so that one request waiting out the RFC's doubling timers after losses
        does not hold every other one back (the lab at 30 % loss: twenty mappings starved
        for a minute behind one)."""
        return 1.0 if self.srtt is None else float(min(2, self.limit))

    def answered_late(self, since_previous: float, since_last: float) -> None:
        """A retransmitted request was answered ``since_last`` seconds after its last try and
        ``since_previous`` after the try before it.

        Karn's rule takes no sample from it: the answer may be to either try. But one that
        comes sooner after the last try than half the fastest round trip ever measured can
        only be the answer to the try before, so ``since_previous`` is taken as a round trip:
        the timers then learn of a gateway's slow answers, which are exactly the ones
        retransmitted. Against the fastest round trip, not the smoothed one: on a lossy link
        to a fast gateway the answer to the last try comes one round trip after it, and a
        threshold that grew with each late sample took more and more of them, inflating the
        timers to their ceiling (the lab at 30 % loss).
        """
        if self.rtt_min is not None and since_last < self.rtt_min / 2:
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
        6298's ``RTO = SRTT + max(G, 4 * RTTVAR)``, no less than the slowest recent round trip
        plus ``G`` nor than twice the slow service time, never less than the RFC's first timer
        plus ``G`` nor more than :data:`MAX_STRETCH` times it (see the module)."""
        # Written out with the fields read once and no max() of four (issue 15: asked for
        # every request); the same arithmetic as the docstring's.
        first = self.first_timeout
        floor = first + GRANULARITY
        ceiling = MAX_STRETCH * first
        smoothed = self.rtt_smoothed
        if smoothed is None:
            stretched = floor * self.backoff
            return stretched if stretched < ceiling else ceiling
        spread = 4 * self.rtt_variance
        fitted = smoothed + (spread if spread > GRANULARITY else GRANULARITY)
        peak = self.rtt_peak + GRANULARITY
        if peak > fitted:
            fitted = peak
        srtt = self.srtt
        if srtt is not None:  # twice the slow service time: two deviations over the mean
            slow = 2 * (srtt + 2 * self.service_variance)
            if slow > fitted:
                fitted = slow
        if floor > fitted:
            fitted = floor
        # Never more than MAX_STRETCH times the RFC's first timer: a bad estimate must not
        # hold a lost request for seconds before its first retransmission.
        return fitted if fitted < ceiling else ceiling

    def sent(self) -> int:
        """A try goes out: its number (the order of sending, which a gateway serves in)."""
        self.tries += 1
        return self.tries

    def heard(self, now: float) -> None:
        """The gateway sent, at ``now``, an answer no request out takes: the answer to a
        retransmitted request's other try, or to an abandoned one. It was still busy with
        what it was sent, so the tries queued behind that wait on (:meth:`hold_until`):
        without this, a request sent behind a duplicate was timed against the duplicate's
        service and its own, and every request after one slow answer was sent twice.

        Before any round trip is measured it also shows a gateway slower than the first
        timer (both tries answered: the first was not lost), and every request after it would
        be sent twice, never giving a sample: the next first timers double until a round trip
        is measured (RFC 6298 §5.5 and §5.7), within :data:`MAX_STRETCH`. Not on an answer
        after a retransmission alone: on a lossy link that is the usual case, and a backed-off
        timer stretches every later try of the schedule too.

        A gateway answers each try at most once: beyond the tries not yet answered (the
        last ``limit`` of them at most: an older one is lost), such an answer is not the
        gateway's (a host spoofing its address), and shows no queue -- else a flood of
        them, one a first timer, would hold every try for ever."""
        unanswered = self.tries - self.matched - self.strays
        if unanswered > 0:
            # Only the last tries may still be answered: a try lost long ago is not one
            # (without the bound, a day of losses let a paced flood hold a try for hours).
            self.strays += 1 + max(0, unanswered - self.limit)
            self.answered_at = now
        if self.rtt_min is None:
            self.backoff = min(2 * self.backoff, float(MAX_STRETCH))

    def progress(self, number: int, now: float) -> None:
        """The gateway answered, at ``now``, a try numbered ``number`` or later: a request's
        only try, or the first of a request sent more than once (its answer may be to any of
        its tries: taking the last would call every request sent between them lost)."""
        self.matched += 1
        self.answered_at = now
        if number > self.answered_try:
            self.answered_try = number

    def hold_until(self, number: int, sent_at: float, now: float) -> float | None:
        """Until when try ``number``, sent at ``sent_at``, whose timer is due, should wait
        on: while the gateway keeps answering (since it was sent) requests within a first
        timer of each other, it is queued behind them, not lost (RFC 6298 §5.3 restarts the
        timer on each acknowledgement for the same reason). ``None``: retransmit now --
        nothing heard since it was sent, nothing heard for a first timer, or the gateway
        already answered a try sent after it (a gateway serves in order: this one was lost).

        Why: a gateway that slows down after the window opened (miniupnpd answers its first
        requests in 3 ms, then 50-500 ms once its console is busy) has a window's worth of
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
        self.window = max(self._least(), self.window / 2)
