"""The in-flight window (engine.window): pure arithmetic, slow start (issue 15)."""

from __future__ import annotations

import pytest

from engine.window import DEFAULT_MAX_IN_FLIGHT, GRANULARITY, MAX_STRETCH, InFlightWindow


def test_slow_start_sends_one_until_a_round_trip_is_measured() -> None:
    window = InFlightWindow(DEFAULT_MAX_IN_FLIGHT, 0.25)
    assert window.room == 1
    window.take()
    assert window.full
    window.answered(0.0106)  # miniupnpd's ~10.6 ms per request
    # Fitted to a service time two deviations slow, and the first sample's deviation is half
    # of it (RFC 6298 §2.2): 0.25 s / (2 * (10.6 + 2 * 5.3) ms) = 5.9 requests.
    assert int(window.window) == 5
    window.give()
    assert window.room == 5
    # Steady answers shrink the deviation: 0.25 s / (2 * 10.6 ms) = 11.8.
    for _ in range(50):
        window.answered(0.0106)
    assert int(window.window) == 11


def test_a_fast_gateway_opens_gradually_up_to_the_cap() -> None:
    window = InFlightWindow(32, 0.25)
    window.answered(0.0106)
    window.answered(0.0001)  # smoothed, so one fast answer does not open it all
    assert 1 < window.window < 32
    for _ in range(100):
        window.answered(0.0001)
    assert window.window == 32


def answer_in_turn(window: InFlightWindow, sent_at: float, service: float, count: int) -> float:
    """``count`` requests sent at ``sent_at`` to a gateway serving one every ``service`` s,
    answered in turn (each first try, as the transport reports them); the last answer's time."""
    at = sent_at
    for _ in range(count):
        number = window.sent()
        at += service
        window.answered(at - sent_at, at)
        window.progress(number, at)
    return at


def test_a_queued_requests_service_time_counts_from_the_answer_before_it() -> None:
    # Ten out at once on a gateway serving one every 10 ms: the last is answered after
    # 100 ms, of which 10 ms were its own service, not a 100 ms gateway.
    window = InFlightWindow(32, 3.0)
    answer_in_turn(window, 0.0, 0.010, 10)
    assert window.srtt == pytest.approx(0.010)
    assert window.rtt_smoothed is not None
    assert window.rtt_smoothed > 0.030
    assert window.window == 32  # 3 s / (2 * 10 ms) = 150, capped
    # Sent after the answer before it: its service counts from its sending.
    window.answered(0.010, at=5.0)
    assert window.srtt == pytest.approx(0.010)


@pytest.mark.parametrize("service", [0.010, 0.050, 0.100, 0.125, 0.250])
def test_a_serial_gateway_answers_the_whole_window_inside_half_the_first_timer(
        service: float) -> None:
    # A window of w requests to a gateway serving one every s seconds is done after w * s:
    # within half the first timer, so that even without the holds nothing is sent twice --
    # but never fewer than two (one served, one queued), whose timers are fitted to that.
    for first_timeout in (0.25, 3.0):
        window = InFlightWindow(32, first_timeout)
        at = 0.0
        for _ in range(50):
            at = answer_in_turn(window, at, service, max(1, window.room))
        assert int(window.window) * service <= max(first_timeout / 2, 2 * service)
        assert window.first_timer() > 2 * service


def test_a_retransmission_halves_the_window_and_never_below_one() -> None:
    window = InFlightWindow(32, 0.25, initial=32)
    window.retransmitted()
    assert window.window == 16
    for _ in range(10):
        window.retransmitted()
    assert window.window == 1
    assert window.room == 1


def test_take_and_give_count_what_is_out() -> None:
    window = InFlightWindow(2, 3.0, initial=2)
    window.take()
    window.take()
    assert window.full
    window.give()
    assert window.room == 1
    window.give()
    window.give()  # never below zero
    assert window.in_flight == 0


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        InFlightWindow(0, 3.0)


def test_the_first_timer_is_the_rfcs_plus_the_granularity_until_a_round_trip_is_measured(
) -> None:
    assert InFlightWindow(32, 0.25).first_timer() == pytest.approx(0.25 + GRANULARITY)
    assert InFlightWindow(32, 3.0).first_timer() == pytest.approx(3.0 + GRANULARITY)


def test_the_first_timer_follows_the_measured_round_trip_rfc_6298() -> None:
    # Round trips of 250 ms, each mostly spent queued behind the answer 10 ms before it: RFC
    # 6298 §2.2 for the first, SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
    window = InFlightWindow(32, 0.25)

    def answer(rtt: float) -> None:
        window.progress(window.sent(), 100.0 - 0.010)
        window.answered(rtt, at=100.0)

    answer(0.250)
    assert window.first_timer() == pytest.approx(0.250 + 4 * 0.125)
    # Steady answers shrink the variance (beta 1/4), never below SRTT + G.
    for _ in range(100):
        answer(0.250)
    assert window.first_timer() == pytest.approx(0.250 + GRANULARITY)
    # §2.3: one slow answer (a queue) widens it at once.
    answer(0.450)
    assert window.first_timer() == pytest.approx(
        (0.250 + 0.200 / 8) + 4 * (0.200 / 4), rel=1e-3)


def test_the_first_timer_is_at_least_twice_the_slow_service_time() -> None:
    # miniupnpd on a slow console, one request out at a time: each request takes longer as
    # its table grows (150 -> 250 ms, steadily, so RFC 6298's variance stays small), and the
    # first delete after the last map took 516 ms (lab trace). SRTT + 4 RTTVAR and the peak
    # put the timer at ~0.27 s; twice the slow service time (S + 2 SVAR) covers it.
    window = InFlightWindow(32, 0.25)
    for n in range(50):
        window.answered(0.150 + 0.002 * n)
    assert window.rtt_smoothed is not None
    assert window.rtt_smoothed + 4 * window.rtt_variance < 0.35
    assert window.first_timer() > 0.516
    assert window.first_timer() == pytest.approx(
        2 * (window.srtt + 2 * window.service_variance))  # type: ignore[operator]


def test_the_first_timer_is_never_shorter_than_the_rfcs() -> None:
    # A fast gateway (2.5 ms): the RFC's first timer stays, so a lost packet is resent as
    # soon as the RFC says (RFC 6886 §3.1, RFC 6887 §8.1.1).
    for first_timeout in (0.25, 3.0):
        window = InFlightWindow(32, first_timeout)
        for _ in range(20):
            window.answered(0.0025)
        assert window.first_timer() == pytest.approx(first_timeout + GRANULARITY)


def test_the_round_trip_estimate_takes_the_whole_round_trip_not_the_per_request_share(
) -> None:
    # Answered 100 ms after it was sent, 10 ms after the answer before it: the window counts
    # 10 ms of service, the round trip estimate the 100 ms that request really waited.
    window = InFlightWindow(32, 0.25)
    window.progress(window.sent(), 9.990)
    window.answered(0.100, at=10.0)
    assert window.srtt == pytest.approx(0.010)
    assert window.rtt_smoothed == pytest.approx(0.100)
    assert window.first_timer() == pytest.approx(0.100 + 4 * 0.050)


def test_an_erratic_gateway_gets_a_window_fitted_to_its_slow_answers() -> None:
    # Answers of 40 ms and 180 ms: a window fitted to the mean service time (0.25 s / (2 *
    # ~78 ms), up to 3 after a run of fast ones) would put three requests behind one another,
    # 400 ms for the last; two deviations keep it at its least, two (one served, one queued).
    window = InFlightWindow(32, 0.25)
    rooms = set()
    for service in [0.040, 0.040, 0.040, 0.180, 0.040, 0.040, 0.180, 0.040, 0.040, 0.040,
                    0.180] * 10:
        window.answered(service)
        rooms.add(window.room)
    assert rooms == {2}


def test_an_answer_sooner_after_a_retransmission_than_any_round_trip_is_a_late_sample() -> None:
    window = InFlightWindow(32, 0.25)
    for _ in range(20):
        window.answered(0.050)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)
    # Resent after 0.26 s, answered 5 ms later: the answer was to the first try, whose round
    # trip was at least 0.265 s (Karn's rule alone would learn nothing from it).
    window.answered_late(0.265, 0.005)
    assert window.rtt_smoothed is not None
    assert window.rtt_smoothed > 0.050
    assert window.first_timer() > 0.265
    # Answered later after the last try than half the fastest round trip: it may answer the
    # last try, so no sample.
    before = (window.rtt_smoothed, window.rtt_variance)
    window.answered_late(0.5, 0.030)
    assert (window.rtt_smoothed, window.rtt_variance) == before


def test_late_samples_do_not_feed_on_themselves_on_a_lossy_link() -> None:
    # A fast gateway (2 ms a request) with 32 out: round trips of 2-64 ms, smoothed ~30 ms.
    # At 30 % loss the answer to a retransmission comes ~4 ms after it, under half the
    # smoothed round trip: taking every such answer as a late sample of 0.26 s (as the
    # smoothed threshold did) inflated the first timer to its ceiling (the lab, 30 % loss).
    window = InFlightWindow(32, 0.25)
    at = 0.0
    for _ in range(10):
        at = answer_in_turn(window, at, 0.002, 32)
    assert window.rtt_smoothed is not None
    assert window.rtt_smoothed > 0.010
    for _ in range(50):
        window.answered_late(0.26 + 0.004, 0.004)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)


def test_before_any_round_trip_a_duplicates_answer_backs_the_next_first_timer_off() -> None:
    # The first request to a gateway slower than the RFC's first timer (300 ms) is answered
    # after its retransmission: no sample (Karn), and each next request would be sent twice
    # too, never giving one. The answer to the duplicate shows it was no loss: RFC 6298 §5.5
    # and §5.7, back off until a round trip is measured.
    window = InFlightWindow(32, 0.25)
    window.answered_late(0.300, 0.040)  # alone: a loss as likely (a lossy link)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)
    window.heard(0.600)
    assert window.first_timer() == pytest.approx(2 * (0.25 + GRANULARITY))
    window.heard(1.2)
    window.heard(2.4)
    assert window.first_timer() == pytest.approx(MAX_STRETCH * 0.25)  # bounded
    # A measured round trip takes over.
    window.answered(0.002)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)
    window.heard(3.0)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)


def test_the_first_timer_is_never_shorter_than_the_slowest_recent_round_trip() -> None:
    # miniupnpd on a slow console: mostly ~110 ms, one answer in 20 took 365 ms. RFC 6298's
    # RTO forgets such a tail within a few samples; the peak holds the timer above it.
    window = InFlightWindow(32, 0.25)
    for _ in range(10):
        window.answered(0.110)
    window.answered(0.365)
    for _ in range(5):
        window.answered(0.110)
    assert window.first_timer() > 0.365 * (15 / 16) ** 5
    rto = window.rtt_smoothed + 4 * window.rtt_variance  # type: ignore[operator]
    assert rto < 0.33  # what RFC 6298 alone would give by now
    # ... and it is forgotten, not kept forever.
    for _ in range(100):
        window.answered(0.110)
    assert window.first_timer() == pytest.approx(0.25 + GRANULARITY)


def test_a_retransmission_does_not_back_the_next_requests_first_timer_off() -> None:
    # Each request doubles its own timer (RFC 6886 §3.1, RFC 6887 §8.1.1); a back-off shared
    # across requests would hold every request queued behind a lost one for seconds on a
    # lossy link (30 % loss in the lab starved twenty mappings for a minute).
    window = InFlightWindow(32, 0.25)
    for _ in range(20):
        window.answered(0.110)
    timer = window.first_timer()
    for _ in range(5):
        window.retransmitted()
    assert window.first_timer() == pytest.approx(timer)
    assert window.window == 2  # its least once a round trip is measured: one served, one queued


def test_a_late_answer_after_a_fast_gateways_lost_packet_is_no_sample() -> None:
    # A fast gateway (2 ms) lost the first try; the second was answered in its usual 2 ms:
    # nothing suggests the first try's round trip was 252 ms.
    window = InFlightWindow(32, 0.25)
    for _ in range(20):
        window.answered(0.002)
    before = (window.rtt_smoothed, window.rtt_variance, window.rtt_peak)
    window.answered_late(0.252, 0.002)
    assert (window.rtt_smoothed, window.rtt_variance, window.rtt_peak) == before


def test_an_answer_from_before_the_try_was_sent_is_no_reason_to_wait() -> None:
    # A lossy link with one request out (slow start, or a window halved by losses): the last
    # answer came before this try was sent, so nothing shows a queue ahead of it. Holding it
    # starved twenty mappings for a minute at 30 % loss in the lab.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    [first, second] = [window.sent(), window.sent()]
    window.progress(first, now=10.0)
    assert window.hold_until(second, sent_at=10.0, now=10.27) is None
    assert window.hold_until(second, sent_at=10.001, now=10.27) is None


def test_a_due_try_waits_while_the_gateway_answers_what_was_sent_before_it() -> None:
    # miniupnpd answers its first requests in 3 ms, then, its console busy, 55 ms each: the
    # window opened on the fast answers and twenty requests are queued at the gateway.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    numbers = [window.sent() for _ in range(20)]
    window.progress(numbers[4], now=100.20)  # the fifth answered at 100.20
    # The twelfth's timer is due at 100.26: the gateway is still on requests before it.
    until = window.hold_until(numbers[11], sent_at=100.0, now=100.26)
    assert until == pytest.approx(100.20 + window.first_timer())
    # Nothing heard for a first timer: the gateway stopped, retransmit.
    assert window.hold_until(numbers[11], sent_at=100.0,
                             now=100.20 + window.first_timer() + 0.001) is None
    # A request sent after it was answered: it was lost (a gateway serves in order).
    window.progress(numbers[15], now=100.30)
    assert window.hold_until(numbers[11], sent_at=100.0, now=100.31) is None
    # Nothing answered yet: nothing to wait for.
    assert InFlightWindow(32, 0.25).hold_until(1, sent_at=4.0, now=5.0) is None


def test_an_answer_to_a_request_sent_twice_counts_as_an_answer_to_its_first_try() -> None:
    # Request A (try 1) was resent as try 4 after tries 2 and 3 of other requests: its
    # answer may be to try 1, with 2 and 3 queued behind it. Taking it as try 4 called them
    # lost and sent them twice too, one spurious retransmission leading to the next.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    tries = [window.sent() for _ in range(4)]
    window.progress(tries[0], now=10.5)  # A's first try number, not its last
    assert window.answered_try == tries[0]
    assert window.hold_until(tries[1], sent_at=10.0, now=10.6) == pytest.approx(
        10.5 + window.first_timer())
    window.progress(tries[2], now=10.6)
    window.progress(tries[1], now=10.7)  # never goes back
    assert window.answered_try == tries[2]


def test_an_answer_no_request_takes_still_shows_the_gateway_busy() -> None:
    # The answer to a duplicate (a request retransmitted and already answered): the gateway
    # spent a service time on it, and the request sent behind it is queued, not lost.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    behind = window.sent()
    assert window.hold_until(behind, sent_at=10.0, now=10.26) is None
    window.heard(10.2)
    assert window.hold_until(behind, sent_at=10.0, now=10.26) == pytest.approx(
        10.2 + window.first_timer())
    assert window.answered_try == 0


def test_the_first_timer_is_never_stretched_past_four_times_the_rfcs() -> None:
    # A late answer on a lossy link can make a sample seconds long; the timer stays bounded.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    window.answered_late(12.0, 0.0001)
    assert window.first_timer() == pytest.approx(4 * 0.25)


def test_a_flood_of_answers_no_request_takes_cannot_hold_a_try_for_ever() -> None:
    # A host spoofing the gateway's address sends valid-looking answers that match nothing,
    # one every 100 ms. Each used to count as the gateway still busy (heard), so a due try
    # was held a first timer past the latest: never retransmitted, and without a deadline
    # never failed. A gateway sends at most one answer a try: beyond the tries not yet
    # answered, such an answer is no sign of a queue.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    number = window.sent()
    sent_at = 10.0
    now = sent_at + window.first_timer()
    held = 0
    flood = sent_at
    while True:
        while flood < now:
            flood += 0.1
            window.heard(flood)
        until = window.hold_until(number, sent_at, now)
        if until is None:
            break
        held += 1
        assert held < 100, "the flood holds the try for ever"
        now = until
    # One stray was possible (the try's own answer, to a try sent before): one hold at most.
    assert now <= sent_at + 3 * window.first_timer()


def test_answers_no_request_takes_count_once_for_each_try_not_answered() -> None:
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    first = window.sent()
    second = window.sent()
    window.progress(first, now=10.1)  # the first try's answer: one stray possible, not more
    window.heard(10.2)
    assert window.hold_until(second, sent_at=10.0, now=10.26) == pytest.approx(
        10.2 + window.first_timer())
    window.heard(10.4)  # no try is left to answer: not the gateway
    assert window.hold_until(second, sent_at=10.0, now=10.47) is None


def test_tries_lost_long_ago_give_a_flood_no_more_hold() -> None:
    # A day on a lossy link: a thousand tries never answered. An answer to one of them can
    # no longer come, so they cannot let a paced flood (one answer a first timer) hold a
    # new try a thousand first timers: at most a window's worth of answers counts.
    window = InFlightWindow(32, 0.25)
    window.answered(0.003)
    for _ in range(1000):
        window.sent()
    number = window.sent()
    sent_at = 10.0
    now = sent_at + window.first_timer()
    holds = 0
    while (until := window.hold_until(number, sent_at, now)) is not None or holds == 0:
        if until is not None:
            now = until
            holds += 1
        window.heard(now - 0.001)  # just before the try is due again
        assert holds <= 1000
    assert holds <= window.limit + 1
