"""One request's life, sans-IO (engine.exchange): tries, deadline, Karn's rule, matching.

Fed bytes and ``now`` only: no socket, no event loop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address

import pytest

from engine.errors import GatewayTimeout, PortUnreachable, TransportError
from engine.exchange import Exchange, Match, Message, State, takers
from engine.timing import NATPMP_RETRANSMIT, PCP_RETRANSMIT
from engine.wire import natpmp

PACKET = b"\x00\x00"
ANSWER = natpmp.ExternalAddressResponse(0, 7, IPv4Address("203.0.113.7"))


def yes(message: Message) -> Match:
    return Match.YES


def exchange(waits: Iterator[float] | None = None, deadline: float | None = None,
             now: float = 100.0) -> Exchange:
    return Exchange(PACKET, yes, waits if waits is not None else NATPMP_RETRANSMIT.timeouts(),
                    now=now, deadline=deadline, describe="NAT-PMP external address",
                    protocol="natpmp", gateway="192.0.2.1")


def run_to_end(ex: Exchange) -> list[float]:
    """Fire every timer; return when each datagram went out."""
    sent: list[float] = []
    now = ex.created
    ex.start(now)
    while True:
        if ex.datagrams_to_send(now):
            sent.append(round(now - ex.created, 6))
        when = ex.timer()
        if when is None:
            return sent
        now = when
        ex.on_timer(now)


def test_natpmp_follows_rfc_6886_doubling_to_nine_tries() -> None:
    ex = exchange()
    sent = run_to_end(ex)
    assert sent == [0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75, 63.75]
    assert ex.state is State.FAILED
    assert isinstance(ex.error, GatewayTimeout)
    assert (ex.error.tries, ex.error.elapsed) == (9, pytest.approx(127.75))


def fitted(first_timer: Callable[[], float], waits: Iterator[float] | None = None) -> Exchange:
    return Exchange(PACKET, yes, waits if waits is not None else NATPMP_RETRANSMIT.timeouts(),
                    now=100.0, deadline=None, describe="NAT-PMP external address",
                    protocol="natpmp", gateway="192.0.2.1", first_timer=first_timer)


def test_the_first_timer_stretches_the_whole_schedule() -> None:
    # A round trip of 0.75 s (RFC 6298's RTO after one 250 ms sample): NAT-PMP's doubling
    # starts there instead of at 250 ms, and keeps its nine tries.
    ex = fitted(lambda: 0.75)
    sent = run_to_end(ex)
    assert len(sent) == 9
    assert [b - a for a, b in itertools.pairwise(sent)] == pytest.approx(
        [0.75 * 2 ** k for k in range(8)])
    assert isinstance(ex.error, GatewayTimeout)
    assert ex.error.elapsed == pytest.approx(0.75 * (2 ** 9 - 1))


def test_the_first_timer_never_shortens_the_rfc_schedule() -> None:
    assert run_to_end(fitted(lambda: 0.01)) == [0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75,
                                                63.75]


def test_the_first_timer_is_asked_once_when_the_first_try_goes_out() -> None:
    # A request queued for the in-flight window is sent after round trips were measured:
    # the timer it gets is the one known then, not when it was queued.
    asked: list[float] = []
    measured = [0.26]

    def first_timer() -> float:
        asked.append(measured[0])
        return measured[0]

    ex = fitted(first_timer)
    measured[0] = 0.5
    assert asked == []
    ex.start(101.0)
    assert ex.timer() == pytest.approx(101.5)
    ex.on_timer(101.5)  # the second try waits twice as long, the first timer not asked again
    assert ex.timer() == pytest.approx(102.5)
    assert asked == [0.5]


def test_the_first_timer_leaves_a_single_endless_wait_alone() -> None:
    ex = fitted(lambda: 0.75, iter([math.inf]))
    ex.start(100.0)
    assert ex.timer() == math.inf


def test_the_deadline_cuts_the_schedule() -> None:
    ex = exchange(deadline=1.0)
    assert run_to_end(ex) == [0, 0.25, 0.75]
    assert isinstance(ex.error, GatewayTimeout)
    assert ex.error.tries == 3
    assert ex.error.elapsed == pytest.approx(1.0)
    assert "after 3 tries over 1.0 s" in str(ex.error)


def test_pcp_without_a_deadline_never_ends_by_itself() -> None:
    ex = Exchange(PACKET, yes, PCP_RETRANSMIT.timeouts(lambda: 0.0), now=0.0, deadline=None,
                  describe="PCP map", protocol="pcp", gateway="192.0.2.1")
    ex.start(0.0)
    for _ in range(20):
        when = ex.timer()
        assert when is not None
        ex.on_timer(when)
    assert ex.tries == 21
    assert not ex.done


def test_an_answer_to_the_first_try_gives_a_round_trip() -> None:
    ex = exchange()
    ex.start(100.0)
    assert ex.datagrams_to_send(100.0) == [PACKET]
    assert ex.match(ANSWER) is Match.YES
    ex.receive(ANSWER, 100.01)
    assert ex.done
    assert ex.timer() is None
    assert ex.outcome is not None
    assert ex.outcome.rtt == pytest.approx(0.01)
    assert ex.outcome.tries == 1


def test_karns_rule_no_sample_from_a_retransmitted_request() -> None:
    ex = exchange()
    ex.start(100.0)
    ex.on_timer(100.25)
    assert ex.datagrams_to_send(100.25) == [PACKET, PACKET]
    assert ex.retransmissions == 1
    ex.receive(ANSWER, 100.26)
    assert ex.outcome is not None
    assert (ex.outcome.tries, ex.outcome.rtt) == (2, None)
    assert ex.outcome.elapsed == pytest.approx(0.26)
    # What the window may still learn (engine.window.InFlightWindow.answered_late): the
    # answer came 10 ms after the last try and 260 ms after the one before.
    assert ex.outcome.since_last == pytest.approx(0.01)
    assert ex.outcome.since_previous == pytest.approx(0.26)


def test_the_times_since_the_last_two_tries_follow_the_last_two() -> None:
    ex = exchange()
    ex.start(100.0)
    ex.on_timer(100.25)
    ex.on_timer(100.75)
    assert ex.tries == 3
    ex.receive(ANSWER, 100.80)
    assert ex.outcome is not None
    assert ex.outcome.since_last == pytest.approx(0.05)
    assert ex.outcome.since_previous == pytest.approx(0.55)


def test_an_early_timer_changes_nothing() -> None:
    ex = exchange()
    ex.start(100.0)
    ex.datagrams_to_send(100.0)
    ex.on_timer(100.1)
    assert list(ex.datagrams_to_send(100.1)) == []
    assert ex.tries == 1


def test_a_queued_exchange_sends_nothing_and_times_out_on_its_deadline() -> None:
    ex = exchange(deadline=1.7)
    assert ex.state is State.QUEUED
    assert ex.match(ANSWER) is Match.NO  # nothing was asked yet
    assert ex.timer() == pytest.approx(101.7)
    ex.on_timer(101.7)
    assert ex.state is State.FAILED
    assert list(ex.datagrams_to_send(101.7)) == []
    assert isinstance(ex.error, GatewayTimeout)
    # Issue 17: not "after 0 tries over 1.7 s".
    assert "0 tries" not in str(ex.error)
    assert "not sent to NAT-PMP gateway 192.0.2.1 within the 1.7 s allowed" in str(ex.error)


def test_time_queued_counts_against_the_deadline() -> None:
    ex = exchange(deadline=1.0)
    ex.start(100.8)  # room in the window after 0.8 s in the queue
    assert ex.datagrams_to_send(100.8) == [PACKET]
    ex.on_timer(101.0)
    assert isinstance(ex.error, GatewayTimeout)
    assert ex.error.tries == 1


def test_started_after_the_deadline_it_fails_without_sending() -> None:
    ex = exchange(deadline=1.0)
    ex.start(101.5)
    assert list(ex.datagrams_to_send(101.5)) == []
    assert ex.state is State.FAILED


def test_icmp_port_unreachable_ends_it_at_once() -> None:
    ex = exchange()
    ex.start(100.0)
    ex.refused(100.001)
    assert isinstance(ex.error, PortUnreachable)
    assert isinstance(ex.error, GatewayTimeout)  # callers that catch silence still do
    assert "ICMP port unreachable" in str(ex.error)
    assert ex.timer() is None


def test_abort_keeps_the_transport_error() -> None:
    ex = exchange()
    ex.start(100.0)
    error = TransportError("no route")
    ex.abort(error)
    assert ex.error is error
    ex.receive(ANSWER, 100.1)  # too late: nothing changes
    assert ex.outcome is None


def test_one_try_without_retransmission() -> None:
    ex = exchange(waits=iter([float("inf")]), deadline=2.0)
    assert run_to_end(ex) == [0]
    assert isinstance(ex.error, GatewayTimeout)
    assert ex.error.tries == 1


def test_a_firm_match_wins_over_a_weak_one() -> None:
    refusal = natpmp.ErrorResponse(0x81, 1, 0)  # UNSUPPORTED_VERSION, 8 bytes

    def weak(message: Message) -> Match:
        return Match.WEAK

    def made(match: object, protocol: str) -> Exchange:
        ex = Exchange(PACKET, match, NATPMP_RETRANSMIT.timeouts(),  # type: ignore[arg-type]
                      now=0.0, deadline=None, describe="x", protocol=protocol,  # type: ignore[arg-type]
                      gateway="gw")
        ex.start(0.0)
        return ex

    pcp_request, natpmp_request = made(yes, "pcp"), made(weak, "natpmp")
    both = [pcp_request, natpmp_request]
    assert takers(both, refusal, lambda e: e) == [pcp_request]
    assert takers([natpmp_request], refusal, lambda e: e) == [natpmp_request]
    queued = exchange()
    assert takers([queued], refusal, lambda e: e) == []  # nothing asked yet


def test_postpone_holds_the_next_try_but_never_past_the_deadline_nor_sooner() -> None:
    ex = exchange(deadline=1.0)
    ex.start(100.0)
    ex.datagrams_to_send(100.0)
    assert ex.timer() == pytest.approx(100.25)
    ex.postpone(100.1)  # sooner: ignored
    assert ex.timer() == pytest.approx(100.25)
    ex.postpone(100.6)
    assert ex.timer() == pytest.approx(100.6)
    ex.on_timer(100.25)
    assert list(ex.datagrams_to_send(100.25)) == []  # held
    ex.postpone(105.0)
    assert ex.timer() == pytest.approx(101.0)  # the deadline still holds
    ex.on_timer(101.0)
    assert isinstance(ex.error, GatewayTimeout)
    assert ex.tries == 1


# -- the request's words are put together only when a log line or an error needs them ------


def _counted_description() -> tuple[Callable[[], str], list[int]]:
    said: list[int] = []

    def describe() -> str:
        said.append(1)
        return "NAT-PMP map tcp 8080"

    return describe, said


def test_an_answered_request_never_says_its_description() -> None:
    describe, said = _counted_description()
    ex = Exchange(PACKET, yes, NATPMP_RETRANSMIT.timeouts(), now=100.0, deadline=None,
                  describe=describe, protocol="natpmp", gateway="192.0.2.1")
    ex.start(100.0)
    ex.datagrams_to_send(100.0)
    ex.receive(ANSWER, 100.003)
    assert ex.outcome is not None
    assert ex.outcome.message is ANSWER
    assert said == []


def test_a_failed_request_says_its_description_once_in_its_error() -> None:
    describe, said = _counted_description()
    ex = Exchange(PACKET, yes, iter([0.25, 0.5]), now=100.0, deadline=None,
                  describe=describe, protocol="natpmp", gateway="192.0.2.1")
    assert run_to_end(ex) == [0, 0.25]  # the retransmission's log line says it first
    assert isinstance(ex.error, GatewayTimeout)
    assert "NAT-PMP map tcp 8080" in str(ex.error)
    assert ex.describe == "NAT-PMP map tcp 8080"
    assert said == [1]


def test_the_first_timer_keeps_rfc_3315s_rand_when_held_against_the_nominal_first_wait() -> None:
    # PCP's first wait is IRT 3 s with RAND in [-0.1, +0.1]. Held against the drawn wait, a
    # first timer of IRT + G (3.01 s, before any round trip) raised every draw below it to
    # 3.01 s: half of all fresh requests retransmitted in step. Against the nominal 3 s, each
    # keeps its RAND, stretched by 3.01 / 3.
    def first_wait(drawn: float) -> float:
        ex = Exchange(PACKET, yes, iter([drawn, 2 * drawn]), now=0.0, deadline=None,
                      describe="PCP map", protocol="pcp", gateway="192.0.2.1",
                      first_timer=lambda: 3.01, nominal_first=3.0)
        ex.start(0.0)
        timer = ex.timer()
        assert timer is not None
        return timer

    assert first_wait(2.7) == pytest.approx(2.7 * 3.01 / 3)
    assert first_wait(3.3) == pytest.approx(3.3 * 3.01 / 3)
    assert len({round(first_wait(2.7 + k * 0.06), 6) for k in range(11)}) == 11
    # A measured slow gateway still stretches the whole schedule, RAND and all.
    ex = Exchange(PACKET, yes, iter([2.7, 5.4]), now=0.0, deadline=None, describe="PCP map",
                  protocol="pcp", gateway="192.0.2.1", first_timer=lambda: 6.0, nominal_first=3.0)
    ex.start(0.0)
    assert ex.timer() == pytest.approx(5.4)
