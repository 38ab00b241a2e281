"""The router view on a gateway without UPnP IGD: it searches ever less often, says when it
searches next, and searches at once when asked (r) or when the gateway changed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.router_source import UpnpRouterListing
from tests.support.ssdp import silent_ssdp
from tui.app import NatDeckApp
from tui.backend import EngineParts
from tui.map_request import MapRequest
from tui.screens.router import RouterScreen

from .conftest import HOST, DemoGateway, app_until


def status(screen: RouterScreen) -> str:
    return str(screen.status_line.render())


async def test_no_upnp_backs_off_says_when_and_r_searches_now(
        demo_gateway: DemoGateway) -> None:
    async with silent_ssdp(HOST) as (silent, port):
        source = UpnpRouterListing.on(HOST, ssdp_port=port, local_address=HOST, timeout=0.1)

        @asynccontextmanager
        async def engine() -> AsyncIterator[EngineParts]:
            yield EngineParts(demo_gateway.manager(), router=source)
            await source.close()

        app = NatDeckApp(engine=engine, initial_maps=[MapRequest(Protocol.TCP, 8080)])
        async with app.run_test(size=(80, 24)) as pilot:
            def mapped() -> bool:
                m = app.manager.mappings.get(MappingKey(Protocol.TCP, 8080)) if (
                    app.manager is not None) else None
                return m is not None and m.state is MappingState.ACTIVE

            await app_until(pilot, mapped, "natdeck's mapping")
            screen = RouterScreen(source, manager=lambda: app.manager, clock=app.now,
                                  log=app.log_line, interval=0.05)
            await app.push_screen(screen)
            await pilot.pause()
            # Searches at 0, +0.05, +0.1, +0.2, +0.4 s (each 0.1 s long) ...
            await app_until(pilot, lambda: screen.poller.failures >= 5, "five searches")
            assert silent.searches == screen.poller.failures
            assert screen.poller.delay() == 0.8
            # ... so 1.5 s more hold two, not the ten of a search every interval.
            searched = silent.searches
            await pilot.pause(1.5)
            assert silent.searches - searched <= 2
            screen.repaint()
            text = status(screen)
            assert "does not list its mappings" in text
            assert ("retry in 0:0" in text and "(r: now)" in text) or "asking again" in text
            # r: a search at once, and the back-off starts over.
            await app_until(pilot, lambda: (screen.poller.next_in() or 0) > 0.5, "a long wait")
            searched = silent.searches
            await pilot.press("r")
            await app_until(pilot, lambda: silent.searches > searched, "the search r asked for",
                            timeout=0.4)
            await app_until(pilot, lambda: screen.poller.failures == 1, "the back-off reset")
            # The gateway restarts (a rebooted router may have UPnP now): the view notices
            # and ends the back-off.
            await app_until(pilot, lambda: screen.poller.failures >= 5, "the back-off again")
            restarts = app.manager.status.restarts if app.manager is not None else 0
            demo_gateway.gateway.restart()
            await app_until(pilot, lambda: app.manager is not None
                            and app.manager.status.restarts > restarts, "the restart")
            await app_until(pilot, lambda: screen.poller.failures < 5, "the back-off ended",
                            timeout=2.0)
