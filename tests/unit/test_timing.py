"""engine.timing: retransmission schedules, renewal times, epoch checks, announcement timing."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.timing import (
    EPOCH_MODULUS,
    NATPMP_RETRANSMIT,
    PCP_RENEWAL_MIN_SPACING,
    PCP_RETRANSMIT,
    EpochRule,
    EpochState,
    EpochVerdict,
    RetransmitSchedule,
    announce_response_delay,
    natpmp_announcement_schedule,
    natpmp_epoch_lost,
    natpmp_renewal_delay,
    observe_epoch,
    pcp_epoch_lost,
    pcp_renewal_delay,
    renewal_retry_at,
    stretch,
)


class FixedRandom(random.Random):
    """A generator whose ``random()`` is always ``value``: ``uniform(a, b)`` is then exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def scripted(values: list[float]) -> Iterator[float]:
    return iter(values)


seeds = st.integers(min_value=0, max_value=2**32)
lifetimes = st.floats(min_value=1.0, max_value=2.0**32, allow_nan=False)


# ---------------------------------------------------------------- retransmission: NAT-PMP


def test_natpmp_schedule_is_nine_tries_from_250ms_doubling() -> None:
    plan = NATPMP_RETRANSMIT.plan()
    assert [a.wait for a in plan] == [0.25, 0.5, 1, 2, 4, 8, 16, 32, 64]
    assert [a.send_at for a in plan] == [0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75, 63.75]
    assert [a.number for a in plan] == list(range(1, 10))
    assert plan[-1].ends_at == 127.75
    assert NATPMP_RETRANSMIT.total == 127.75


def test_natpmp_deadline_truncates_the_last_wait() -> None:
    plan = NATPMP_RETRANSMIT.plan(deadline=10)
    assert [a.send_at for a in plan] == [0, 0.25, 0.75, 1.75, 3.75, 7.75]
    assert [a.wait for a in plan] == [0.25, 0.5, 1, 2, 4, 2.25]
    assert plan[-1].ends_at == 10


def test_deadline_on_a_boundary_sends_nothing_at_the_deadline() -> None:
    plan = NATPMP_RETRANSMIT.plan(deadline=7.75)
    assert [a.wait for a in plan] == [0.25, 0.5, 1, 2, 4]
    assert plan[-1].ends_at == 7.75


def test_deadline_beyond_the_schedule_changes_nothing() -> None:
    assert NATPMP_RETRANSMIT.plan(deadline=1000) == NATPMP_RETRANSMIT.plan()


def test_deletion_may_try_fewer_times() -> None:
    deletion = replace(NATPMP_RETRANSMIT, max_tries=2)
    assert [a.wait for a in deletion.plan()] == [0.25, 0.5]
    assert deletion.total == 0.75


def test_natpmp_never_consults_randomness() -> None:
    def exploding() -> float:
        raise AssertionError("NAT-PMP has no RAND")

    assert [a.wait for a in NATPMP_RETRANSMIT.plan(rand=exploding)][:3] == [0.25, 0.5, 1]


# ---------------------------------------------------------------- retransmission: PCP


def test_pcp_without_randomness_doubles_from_3s_and_caps_at_1024s() -> None:
    waits = [a.wait for a in itertools.islice(PCP_RETRANSMIT.attempts(rand=lambda: 0.0), 11)]
    assert waits == [3, 6, 12, 24, 48, 96, 192, 384, 768, 1024, 1024]


def test_pcp_rand_follows_rfc3315_formulas_exactly() -> None:
    draws = scripted([0.1, -0.1, 0.05, 0.0])
    waits = list(itertools.islice(PCP_RETRANSMIT.timeouts(lambda: next(draws)), 4))
    first = 3 + 0.1 * 3  # RT = IRT + RAND*IRT
    second = 2 * first - 0.1 * first  # RT = 2*RTprev + RAND*RTprev
    third = 2 * second + 0.05 * second
    fourth = 2 * third
    assert waits == pytest.approx([first, second, third, fourth])
    assert waits[:2] == pytest.approx([3.3, 6.27])


def test_pcp_cap_is_jittered_around_mrt() -> None:
    # RFC 3315 §14: "if (RT > MRT) RT = MRT + RAND*MRT", so RT may exceed MRT by up to 10 %.
    waits = list(itertools.islice(PCP_RETRANSMIT.timeouts(lambda: 0.1), 12))
    assert waits[7] == pytest.approx(3.3 * 2.1**7)  # 594.4, still under MRT
    assert waits[8:] == pytest.approx([1126.4] * 4)
    low = list(itertools.islice(PCP_RETRANSMIT.timeouts(lambda: -0.1), 12))
    assert low[-1] == pytest.approx(921.6)


def test_pcp_deadline_truncates() -> None:
    plan = PCP_RETRANSMIT.plan(deadline=30, rand=lambda: 0.0)
    assert [(a.send_at, a.wait) for a in plan] == [(0, 3), (3, 6), (9, 12), (21, 9)]


def test_pcp_is_unbounded_without_a_deadline() -> None:
    with pytest.raises(ValueError, match="unbounded"):
        PCP_RETRANSMIT.plan()
    assert PCP_RETRANSMIT.total is None
    attempts = list(itertools.islice(PCP_RETRANSMIT.attempts(rand=random.Random(1)), 200))
    assert len(attempts) == 200
    assert all(a.wait <= 1024 * 1.1 for a in attempts)


def test_rand_source_outside_the_rfc_range_is_refused() -> None:
    with pytest.raises(ValueError, match="RAND"):
        next(PCP_RETRANSMIT.timeouts(lambda: 0.5))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial_timeout": 0},
        {"initial_timeout": math.inf},
        {"initial_timeout": 1, "max_timeout": -1},
        {"initial_timeout": 1, "max_tries": 0},
        {"initial_timeout": 1, "jitter": 0.2},
    ],
)
def test_schedule_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetransmitSchedule(**kwargs)  # type: ignore[arg-type]


def test_deadline_must_be_positive() -> None:
    with pytest.raises(ValueError, match="deadline"):
        NATPMP_RETRANSMIT.plan(deadline=0)


@given(seed=seeds)
def test_pcp_random_timeouts_stay_within_rfc3315_bounds(seed: int) -> None:
    waits = list(itertools.islice(PCP_RETRANSMIT.timeouts(random.Random(seed)), 15))
    assert 2.7 <= waits[0] <= 3.3
    for previous, current in itertools.pairwise(waits):
        uncapped = 1.9 * previous <= current <= 2.1 * previous
        capped = 921.6 <= current <= 1126.4
        assert uncapped or capped


@given(seed=seeds, deadline=st.floats(min_value=0.01, max_value=5000, allow_nan=False))
def test_pcp_deadline_is_filled_exactly_and_never_exceeded(seed: int, deadline: float) -> None:
    plan = PCP_RETRANSMIT.plan(deadline=deadline, rand=random.Random(seed))
    assert plan[0].send_at == 0
    assert all(a.wait > 0 for a in plan)
    for previous, current in itertools.pairwise(plan):
        assert current.send_at == previous.ends_at
    assert math.isclose(plan[-1].ends_at, deadline, rel_tol=1e-12)
    assert plan[-1].ends_at <= deadline * (1 + 1e-12)


# ---------------------------------------------------------------- renewal


def test_natpmp_renews_at_half_life() -> None:
    assert natpmp_renewal_delay(7200, jitter=0) == 3600


def test_natpmp_jitter_only_pulls_renewal_earlier() -> None:
    assert natpmp_renewal_delay(7200, FixedRandom(0.0)) == 3600
    assert natpmp_renewal_delay(7200, FixedRandom(1.0)) == pytest.approx(3600 * 0.95)


@given(lifetime=lifetimes, seed=seeds)
def test_natpmp_renewal_window(lifetime: float, seed: int) -> None:
    delay = natpmp_renewal_delay(lifetime, random.Random(seed))
    assert lifetime / 2 * 0.95 <= delay <= lifetime / 2


def test_pcp_renewal_window_ends() -> None:
    assert pcp_renewal_delay(3600, FixedRandom(0.0)) == 1800
    assert pcp_renewal_delay(3600, FixedRandom(1.0)) == 2250


@given(lifetime=lifetimes, seed=seeds)
def test_pcp_renewal_between_half_and_five_eighths(lifetime: float, seed: int) -> None:
    delay = pcp_renewal_delay(lifetime, random.Random(seed))
    assert lifetime / 2 <= delay <= lifetime * 5 / 8


def test_spread_of_1000_mappings_granted_together() -> None:
    rng = random.Random(7)
    pcp = sorted(pcp_renewal_delay(3600, rng) for _ in range(1000))
    natpmp = sorted(natpmp_renewal_delay(3600, rng) for _ in range(1000))
    for delays in (pcp, natpmp):
        assert len(set(delays)) == 1000
        assert delays[-1] - delays[0] > 80  # spread over minutes, not one instant


@pytest.mark.parametrize(
    ("attempt", "fraction", "expected"),
    [
        (1, 0.0, 1000 + 3600 * 3 / 4),
        (1, 1.0, 1000 + 3600 * (3 / 4 + 1 / 16)),
        (2, 0.0, 1000 + 3600 * 7 / 8),
        (2, 1.0, 1000 + 3600 * (7 / 8 + 1 / 32)),
        (3, 0.0, 1000 + 3600 * 15 / 16),
        (3, 1.0, 1000 + 3600 * (15 / 16 + 1 / 64)),
    ],
)
def test_failed_renewal_retry_windows(attempt: int, fraction: float, expected: float) -> None:
    at = renewal_retry_at(1000, 3600, now=2900, attempt=attempt, rng=FixedRandom(fraction))
    assert at == pytest.approx(expected)


def test_retry_is_never_sooner_than_four_seconds() -> None:
    # The 3/4 window (3700-3925) is already past: the next try is as soon as allowed.
    assert renewal_retry_at(1000, 3600, now=3950, attempt=1, rng=FixedRandom(0)) == 3954
    assert PCP_RENEWAL_MIN_SPACING == 4


def test_retry_never_at_or_past_expiry() -> None:
    assert renewal_retry_at(1000, 3600, now=4596, attempt=9, rng=FixedRandom(0)) is None
    assert renewal_retry_at(1000, 3600, now=4590, attempt=9, rng=FixedRandom(1)) == (
        pytest.approx(1000 + 3600 * (1 - 0.5**10 + 0.5**12))  # 4597.36, inside window 9
    )
    assert renewal_retry_at(1000, 3600, now=4595.5, attempt=9, rng=FixedRandom(1)) == 4599.5
    # the window is past and now + 4 s falls short of expiry by a hair: still allowed
    assert renewal_retry_at(0, 10, now=5.99, attempt=1, rng=FixedRandom(0)) == pytest.approx(9.99)
    assert renewal_retry_at(0, 10, now=6.0, attempt=1, rng=FixedRandom(0)) is None


def test_windows_shrunk_onto_expiry_give_none() -> None:
    # After ~53 failures the window start rounds to 1.0: that is the expiry instant itself.
    assert renewal_retry_at(0, 3600, now=100, attempt=60, rng=FixedRandom(0.5)) is None


def test_retry_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="attempt"):
        renewal_retry_at(0, 3600, now=1800, attempt=0)


@given(
    lifetime=st.floats(min_value=1, max_value=10**7, allow_nan=False),
    seed=seeds,
    lag=st.floats(min_value=0, max_value=30, allow_nan=False),
)
def test_renewal_sequence_never_floods(lifetime: float, seed: int, lag: float) -> None:
    """Whatever the lifetime, retries are >= 4 s apart, before expiry, and finitely many."""
    rng = random.Random(seed)
    granted_at = 100.0
    sent = [granted_at + pcp_renewal_delay(lifetime, rng)]
    attempt = 1
    while True:
        at = renewal_retry_at(granted_at, lifetime, now=sent[-1] + lag, attempt=attempt, rng=rng)
        if at is None:
            break
        sent.append(at)
        attempt += 1
        assert attempt < 100
    for previous, current in itertools.pairwise(sent):
        assert current - previous >= PCP_RENEWAL_MIN_SPACING
    assert all(t < granted_at + lifetime for t in sent[1:])


# ---------------------------------------------------------------- epoch: PCP (RFC 6887 §8.5)


def test_first_epoch_is_necessarily_valid() -> None:
    assert not pcp_epoch_lost(None, 0, 5.0)
    observation = observe_epoch(EpochRule.PCP, None, 1234, 5.0)
    assert observation.verdict is EpochVerdict.FIRST_CONTACT
    assert observation.state == EpochState(1234, 5.0)


def test_pcp_epoch_in_step() -> None:
    assert not pcp_epoch_lost(EpochState(1000, 50.0), 1100, 150.0)


@pytest.mark.parametrize(("epoch", "lost"), [(1000, False), (999, False), (998, True)])
def test_pcp_epoch_may_go_back_one_second_but_not_two(epoch: int, lost: bool) -> None:
    assert pcp_epoch_lost(EpochState(1000, 50.0), epoch, 50.0) is lost


@pytest.mark.parametrize(
    ("server_delta", "lost"),
    [
        # client_delta = 100: invalid if 102 < s - s/16, i.e. from s = 109 on
        (108, False),
        (109, True),
        # invalid if s + 2 < 100 - 100/16 = 94, i.e. below s = 92
        (92, False),
        (91, True),
    ],
)
def test_pcp_epoch_thresholds(server_delta: int, lost: bool) -> None:
    assert pcp_epoch_lost(EpochState(5000, 0.0), 5000 + server_delta, 100.0) is lost


def test_pcp_client_delta_is_whole_seconds_of_the_readings() -> None:
    # 99.2 s elapsed, but the readings are 0.x and 100.x: an integer clock says 100.
    assert not pcp_epoch_lost(EpochState(5000, 0.9), 5000 + 108, 100.1)
    assert pcp_epoch_lost(EpochState(5000, 0.9), 5000 + 109, 100.1)


def test_pcp_epoch_reboot() -> None:
    assert pcp_epoch_lost(EpochState(1_000_000, 0.0), 50, 100.0)


def test_pcp_epoch_wraps_through_2_32() -> None:
    prev = EpochState(EPOCH_MODULUS - 10, 0.0)
    assert not pcp_epoch_lost(prev, 10, 20.0)  # 20 s on both clocks, through the wrap
    assert pcp_epoch_lost(prev, 3, 20.0)  # rebooted 3 s ago, not a wrap


@pytest.mark.parametrize("rule", list(EpochRule))
def test_epoch_field_is_checked(rule: EpochRule) -> None:
    with pytest.raises(ValueError, match="32-bit"):
        observe_epoch(rule, None, EPOCH_MODULUS, 0.0)
    with pytest.raises(ValueError, match="32-bit"):
        observe_epoch(rule, EpochState(1, 0.0), -1, 1.0)
    with pytest.raises(TypeError):
        observe_epoch(rule, None, True, 0.0)
    with pytest.raises(ValueError, match="monotonic"):
        observe_epoch(rule, EpochState(1, 10.0), 1, 9.0)


# ---------------------------------------------------------------- epoch: NAT-PMP (RFC 6886 §3.6)


@pytest.mark.parametrize(
    ("epoch", "lost"),
    [
        (1068, False),  # estimate 1000 + 7/8 * 80 = 1070; exactly 2 s short is fine
        (1067, True),  # more than 2 s short: the gateway lost state
        (1080, False),
        (10**6, False),  # NAT-PMP sets no upper bound
        (5, True),
    ],
)
def test_natpmp_epoch_seven_eighths_rule(epoch: int, lost: bool) -> None:
    assert natpmp_epoch_lost(EpochState(1000, 20.0), epoch, 100.0) is lost


def test_natpmp_fractional_elapsed() -> None:
    # 7/8 * 10.5 = 9.1875: estimate 1009.1875, threshold 1007.1875
    assert not natpmp_epoch_lost(EpochState(1000, 0.0), 1008, 10.5)
    assert natpmp_epoch_lost(EpochState(1000, 0.0), 1007, 10.5)


def test_natpmp_epoch_wraps_through_2_32() -> None:
    prev = EpochState(EPOCH_MODULUS - 10, 0.0)
    assert not natpmp_epoch_lost(prev, 10, 20.0)
    assert natpmp_epoch_lost(prev, 3, 100.0)  # 13 s forward in 100 s: rebooted
    assert natpmp_epoch_lost(EpochState(10**6, 0.0), 5, 100.0)  # no wrap from mid-range


def test_observe_keeps_the_newest_values_whatever_the_verdict() -> None:
    prev = EpochState(1000, 0.0)
    lost = observe_epoch(EpochRule.NATPMP, prev, 3, 100.0)
    assert lost.verdict is EpochVerdict.LOST_STATE
    assert lost.state == EpochState(3, 100.0)
    fine = observe_epoch(EpochRule.PCP, lost.state, 53, 150.0)
    assert fine.verdict is EpochVerdict.CONSISTENT
    assert fine.state == EpochState(53, 150.0)


@given(
    start=st.integers(min_value=0, max_value=EPOCH_MODULUS - 1),
    elapsed=st.integers(min_value=0, max_value=10**6),
    drift=st.floats(min_value=-0.05, max_value=0.05),
)
def test_a_steady_gateway_is_never_flagged(start: int, elapsed: int, drift: float) -> None:
    """A gateway whose clock runs within 5 % of ours passes both rules, wrap included."""
    served = (start + round(elapsed * (1 + drift))) % EPOCH_MODULUS
    prev = EpochState(start, 10.0)
    assert not pcp_epoch_lost(prev, served, 10.0 + elapsed)
    assert not natpmp_epoch_lost(prev, served, 10.0 + elapsed)


# ---------------------------------------------------------------- announcements


def test_natpmp_announcements_ten_from_250ms_doubling() -> None:
    offsets = natpmp_announcement_schedule()
    assert offsets == (0, 0.25, 0.75, 1.75, 3.75, 7.75, 15.75, 31.75, 63.75, 127.75)
    intervals = [b - a for a, b in itertools.pairwise(offsets)]
    assert intervals == [0.25 * 2**i for i in range(9)]


def test_announcement_schedule_can_be_scaled_for_tests() -> None:
    assert natpmp_announcement_schedule(count=3, first_interval=0.01) == (0, 0.01, 0.03)
    with pytest.raises(ValueError, match="count"):
        natpmp_announcement_schedule(count=0)


def test_announce_delay_is_zero_to_five_seconds() -> None:
    assert announce_response_delay(FixedRandom(0.0)) == 0
    assert announce_response_delay(FixedRandom(1.0)) == 5


@given(seed=seeds)
def test_announce_delay_range(seed: int) -> None:
    assert 0 <= announce_response_delay(random.Random(seed)) <= 5


def test_the_stretch_makes_the_first_wait_the_first_timer_and_never_shortens() -> None:
    assert stretch(0.25, 0.75) == pytest.approx(3.0)
    assert stretch(0.25, 0.01) == 1.0
    assert stretch(3.0, 3.0) == 1.0
    assert stretch(math.inf, 0.75) == 1.0  # a request sent once waits out its deadline
    assert stretch(0.0, 0.75) == 1.0


def test_an_epoch_heard_again_is_the_same_state_at_the_new_time() -> None:
    from engine.epochs import EpochState

    first = EpochState(server_epoch=1234, client_time=10.0)
    again = first.heard_again(10.5)
    assert again == EpochState(server_epoch=1234, client_time=10.5)
    assert hash(again) == hash(EpochState(server_epoch=1234, client_time=10.5))
    assert first.client_time == 10.0  # a new state: the old one is unchanged (frozen)
    with pytest.raises(AttributeError):
        again.client_time = 11.0  # type: ignore[misc]
