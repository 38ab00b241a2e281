"""engine.igd_scout: when a silent PCP request gives way to a UPnP IGD that answered, and when
it does not. Fake requests and scouts on a virtual clock: the times are exact."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from engine.errors import GatewayTimeout, SilentBesideIgd
from engine.igd_scout import unless_igd_answers
from engine.negotiation import SCOUT_AFTER, SILENT_BESIDE_IGD
from tests.support.virtual_time import now, run_virtual


class Scout:
    """Answers after ``after`` seconds: ``found``, or raises ``error``."""

    def __init__(self, after: float = 0.05, found: bool = True,
                 error: Exception | None = None) -> None:
        self.after, self.found, self.error = after, found, error
        self.asked_at: float | None = None
        self.cancelled = False

    async def scout(self) -> bool:
        self.asked_at = now()
        try:
            await asyncio.sleep(self.after)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return self.found


class Request:
    """A request answered after ``after`` seconds (``None``: never), or failing."""

    def __init__(self, after: float | None, error: Exception | None = None) -> None:
        self.after, self.error = after, error
        self.cancelled = False

    async def run(self) -> str:
        try:
            await asyncio.sleep(1e9 if self.after is None else self.after)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        if self.error is not None:
            raise self.error
        return "granted"


def race(request: Request, scout: Scout) -> Callable[[], Awaitable[tuple[str, float]]]:
    async def main() -> tuple[str, float]:
        started = now()
        try:
            result = await unless_igd_answers(request.run(), scout, clock=now,
                                              gateway="192.0.2.1", request="PCP map tcp 80")
        except GatewayTimeout as exc:
            await asyncio.sleep(0)  # let the cancelled tasks end
            return type(exc).__name__, now() - started
        return result, now() - started
    return main


def test_an_answer_before_the_scout_starts_sends_no_search() -> None:
    request, scout = Request(0.01), Scout()
    assert run_virtual(race(request, scout)) == ("granted", pytest.approx(0.01))
    assert scout.asked_at is None


def test_silence_beside_an_igd_gives_way_after_the_patience() -> None:
    request, scout = Request(None), Scout(after=0.05)
    name, elapsed = run_virtual(race(request, scout))
    assert (name, elapsed) == ("SilentBesideIgd", pytest.approx(SILENT_BESIDE_IGD))
    assert scout.asked_at == pytest.approx(1000.0 + SCOUT_AFTER)
    assert request.cancelled   # the PCP request is given up, not left running


def test_a_late_answer_within_the_patience_still_wins() -> None:
    request, scout = Request(0.6), Scout(after=0.05)
    assert run_virtual(race(request, scout)) == ("granted", pytest.approx(0.6))


def test_an_answer_while_the_search_runs_wins_and_the_search_stops() -> None:
    request, scout = Request(0.2), Scout(after=0.5)
    assert run_virtual(race(request, scout)) == ("granted", pytest.approx(0.2))
    assert scout.cancelled


@pytest.mark.parametrize("scout", [Scout(found=False), Scout(error=RuntimeError("odd"))],
                         ids=["no IGD", "search failed"])
def test_without_an_igd_the_request_keeps_its_own_deadline(scout: Scout) -> None:
    request = Request(5.0)
    assert run_virtual(race(request, scout)) == ("granted", pytest.approx(5.0))


def test_the_requests_own_error_is_raised_as_is() -> None:
    timeout = GatewayTimeout("192.0.2.1", "PCP map tcp 80", 1, 0.5, "pcp")
    request, scout = Request(0.5, error=timeout), Scout(found=False)
    assert run_virtual(race(request, scout))[0] == "GatewayTimeout"


def test_a_deadline_shorter_than_the_patience_is_silence_beside_the_igd_too() -> None:
    # natdeck map --timeout 1: PCP's share (0.5 s) ends first; NAT-PMP is skipped all the same.
    timeout = GatewayTimeout("192.0.2.1", "PCP map tcp 80", 1, 0.5, "pcp")
    request, scout = Request(0.5, error=timeout), Scout(after=0.05)
    assert run_virtual(race(request, scout)) == ("SilentBesideIgd", pytest.approx(0.5))


def test_the_error_says_what_was_silent_beside_what() -> None:
    error = SilentBesideIgd("192.0.2.1", "PCP map tcp 80", 1, 1.0, "pcp")
    assert isinstance(error, GatewayTimeout)
    assert "no answer from PCP gateway 192.0.2.1 in 1.0 s, while its UPnP IGD answered" \
        in str(error)


def test_cancelling_the_caller_cancels_the_request_and_the_search() -> None:
    request, scout = Request(None), Scout(after=10.0)

    async def main() -> bool:
        task = asyncio.ensure_future(unless_igd_answers(
            request.run(), scout, clock=now, gateway="192.0.2.1", request="PCP map tcp 80"))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return request.cancelled and scout.cancelled

    assert run_virtual(main)
