"""The router poller: one listing at a time, every interval while watched, errors as values."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from ipaddress import ip_address

import pytest

from engine.errors import NatDeckError
from engine.router_source import (
    MAX_BACKOFF,
    Listing,
    ListingUnavailable,
    RouterPoller,
    UpnpRouterListing,
)
from engine.router_view import RouterMapping
from tests.support.ssdp import silent_ssdp

from .conftest import on_virtual_clock

ROW = RouterMapping(6, 8080, ip_address("198.18.0.3"), 8080, "web", 60, True, "", "upnp")


class CountingListing:
    """A test double: answers with ``ROW`` (or raises ``error``), after ``delay``."""

    def __init__(self, *, delay: float = 0.0, error: BaseException | None = None) -> None:
        self.calls = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.delay = delay
        self.error = error

    async def list_mappings(self) -> list[RouterMapping]:
        self.calls += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            if self.error is not None:
                raise self.error
            return [ROW]
        finally:
            self.in_flight -= 1

    async def delete_mapping(self, mapping: RouterMapping) -> None:
        raise AssertionError("not used")


async def test_no_source_means_unavailable_without_io() -> None:
    listing = await RouterPoller(None).poll()
    assert not listing.ok
    assert isinstance(listing.error, ListingUnavailable)
    assert "no UPnP IGD" in str(listing.error)


async def test_a_listing_carries_rows_and_its_time() -> None:
    source = CountingListing()
    poller = RouterPoller(source, clock=lambda: 42.0)
    listing = await poller.poll()
    assert listing.rows == (ROW,)
    assert listing.at == 42.0
    assert listing.error is None


@pytest.mark.parametrize("error", [NatDeckError("refused"), OSError("network down"),
                                   ValueError("bad XML")])
async def test_errors_come_back_as_values(error: BaseException) -> None:
    listing = await RouterPoller(CountingListing(error=error)).poll()
    assert listing.rows is None
    assert isinstance(listing.error, NatDeckError)


async def test_a_listing_that_hangs_is_cut_at_the_timeout() -> None:
    listing = await RouterPoller(CountingListing(delay=5.0), timeout=0.05).poll()
    assert isinstance(listing.error, ListingUnavailable)
    assert "within 0.05 s" in str(listing.error)


async def test_watch_polls_every_interval_only_while_iterated() -> None:
    source = CountingListing(delay=0.01)
    poller = RouterPoller(source, interval=0.05)
    seen = 0
    async for listing in poller.watch():
        assert listing.ok
        seen += 1
        if seen == 3:
            break
    assert source.calls == 3
    assert source.most_in_flight == 1
    await asyncio.sleep(0.2)
    assert source.calls == 3  # nobody watches: no more listings


async def test_wake_lists_again_at_once() -> None:
    source = CountingListing()
    poller = RouterPoller(source, interval=60.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    seen = 0
    async for _ in poller.watch():
        seen += 1
        if seen == 2:
            break
        loop.call_later(0.02, poller.wake)
    assert loop.time() - started < 5.0
    assert source.calls == 2


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        RouterPoller(None, interval=0)


async def watch_for(poller: RouterPoller, seconds: float) -> list[Listing]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + seconds
    seen: list[Listing] = []
    async with contextlib.aclosing(poller.watch()) as every:
        async for listing in every:
            seen.append(listing)
            left = poller.next_in()
            if left is None or loop.time() + left >= ends:
                break
    return seen


def test_a_gateway_without_upnp_is_searched_ever_less_often() -> None:
    # Ten minutes with the view open on a gateway that has no UPnP IGD: without the
    # back-off that was a 3 s search every 2 s + 3 s, 120 of them.
    async def scenario(_: object) -> None:
        loop = asyncio.get_running_loop()
        async with silent_ssdp("127.0.0.1") as (silent, port):
            source = UpnpRouterListing.on("127.0.0.1", ssdp_port=port,
                                          local_address="127.0.0.1", timeout=3.0)
            try:
                poller = RouterPoller(source, interval=2.0)
                started = loop.time()
                seen = await watch_for(poller, 600.0)
                assert all(isinstance(listing.error, ListingUnavailable) for listing in seen)
                searches = silent.searches
                assert searches == len(seen)
                # Waits of 2, 4, 8, ... 256 s, then 300 s: 9 searches in ten minutes.
                assert 8 <= searches <= 10, searches
                assert poller.failures == len(seen)
                assert poller.delay() == MAX_BACKOFF
                gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
                assert gaps == sorted(gaps)
                assert loop.time() - started < 600.0 + MAX_BACKOFF
            finally:
                await source.close()

    on_virtual_clock(scenario)


def test_wake_and_reset_end_the_back_off() -> None:
    async def scenario(_: object) -> None:
        loop = asyncio.get_running_loop()
        source = CountingListing(error=NatDeckError("no IGD"))
        poller = RouterPoller(source, interval=2.0)
        async with contextlib.aclosing(poller.watch()) as every:
            async for _listing in every:
                if source.calls == 6:
                    break
            assert poller.failures == 6
            assert poller.next_in() == 64.0
            # The gateway changed: the next listing comes one interval after the last.
            poller.reset()
            assert poller.failures == 0
            before = loop.time()
            await anext(every)
            assert loop.time() - before == pytest.approx(2.0)
            assert source.calls == 7
            await anext(every)  # 2 s again: one failure is not yet a back-off
            await anext(every)  # 4 s
            assert poller.next_in() == 8.0
            loop.call_later(1.0, poller.wake)  # the user pressed r
            before = loop.time()
            await anext(every)
            assert loop.time() - before == pytest.approx(1.0)
            assert poller.failures == 1

    on_virtual_clock(scenario)
