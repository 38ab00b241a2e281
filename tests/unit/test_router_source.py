"""The router poller's back-off after failed listings (pure arithmetic)."""

from __future__ import annotations

from engine.router_source import MAX_BACKOFF, listing_delay


def test_a_good_listing_or_one_failure_waits_the_interval() -> None:
    assert listing_delay(2.0, 0) == 2.0
    assert listing_delay(2.0, 1) == 2.0


def test_failures_in_a_row_double_the_wait_up_to_the_cap() -> None:
    waits = [listing_delay(2.0, n) for n in range(1, 12)]
    assert waits[:8] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]
    assert waits[8:] == [MAX_BACKOFF] * 3
    assert listing_delay(2.0, 10_000) == MAX_BACKOFF  # no overflow


def test_the_cap_never_shortens_a_long_interval() -> None:
    assert listing_delay(600.0, 5) == 600.0
    assert listing_delay(1.0, 4, maximum=5.0) == 5.0
