"""The adaptive in-flight window of engine.transport (no sockets)."""

from __future__ import annotations

import asyncio

from engine.transport import InFlightWindow


def test_the_window_fits_the_queue_into_half_the_first_timer() -> None:
    window = InFlightWindow(32, 0.25, initial=4)
    assert window.window == 4
    window.answered(0.0106)  # miniupnpd's ~10.6 ms per request
    # 0.25 s / (2 * 10.6 ms) = 11.8 requests may wait their turn without a retransmission.
    assert int(window.window) == 11
    window.answered(0.0001)  # a fast gateway: smoothed, so it opens gradually
    assert 11 < window.window <= 32


def test_a_retransmission_halves_the_window_and_never_below_one() -> None:
    window = InFlightWindow(32, 0.25)
    window.retransmitted()
    assert window.window == 16
    for _ in range(10):
        window.retransmitted()
    assert window.window == 1


async def test_requests_beyond_the_window_wait_their_turn() -> None:
    window = InFlightWindow(2, 3.0)
    await window.acquire()
    await window.acquire()
    assert window.full
    third = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    assert not third.done()
    window.release()
    await asyncio.sleep(0)
    assert third.done()
    assert window.in_flight == 2


async def test_a_cancelled_waiter_does_not_hold_a_place() -> None:
    window = InFlightWindow(1, 3.0)
    await window.acquire()
    waiter = asyncio.ensure_future(window.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    window.release()
    assert window.in_flight == 0
    await asyncio.wait_for(window.acquire(), 1)
    assert window.in_flight == 1
