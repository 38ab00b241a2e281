"""The router poller: one listing at a time, every interval while watched, errors as values."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address

import pytest

from engine.errors import NatDeckError
from engine.router_source import ListingUnavailable, RouterPoller
from engine.router_view import RouterMapping

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
