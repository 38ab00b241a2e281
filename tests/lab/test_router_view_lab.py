"""The router view and ``natdeck list`` against Debian's miniupnpd with UPnP and PCP on (issue 16).

miniupnpd keeps one table for UPnP, NAT-PMP and PCP, so its UPnP listing shows the mappings
``upnpc`` made for another LAN address, ``natpmpc``'s and natdeck's own PCP mapping. The CLI
runs as a real process in the client namespace; the TUI runs headless (``App.run_test``) on an
event loop inside the client namespace, listing through the real UPnP source
(:class:`~engine.router_source.UpnpRouterListing`), as ``natdeck`` builds it.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from engine import MappingManager, Protocol
from engine.router_source import UpnpRouterListing
from tests.support.pilot import app_until
from tui.app import NatDeckApp
from tui.backend import EngineParts
from tui.screens.confirm_delete import ConfirmDelete
from tui.screens.router import RouterScreen
from tui.widgets.router_table import row_key

from .clients import natdeck, run_in_client
from .netlab import CLIENT_ADDRESS, OTHER_CLIENT_ADDRESS, DnatRule, GatewayConfig, Lab

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)
UPNP = dict(enable_upnp=True, uuid="4e617464-6563-6b00-0000-0000000000bb", http_port=5000)
#: The router view's refresh interval in these tests (seconds).
INTERVAL = 1.0


def start(lab: Lab, **changes: Any) -> None:
    """Restart miniupnpd with UPnP (and PCP) on; the next test's reset restores it."""
    lab.restart_gateway(config=GatewayConfig(**{**UPNP, **changes}))


def upnpc_for_another_host(lab: Lab, port: int, protocol: str = "TCP",
                           lease: int = 3600) -> None:
    with lab.as_another_host() as other:
        output = lab.upnpc("-a", other, str(port), str(port), protocol, str(lease))
    assert f"is redirected to internal {other}:{port}" in output, output


def upnpc_delete_as_another_host(lab: Lab, port: int, protocol: str = "TCP") -> None:
    with lab.as_another_host():
        lab.upnpc("-d", str(port), protocol)


def test_list_json_shows_upnpc_natpmpc_and_natdecks_pcp_mappings(lab: Lab,
                                                                   tmp_path: Path) -> None:
    start(lab)
    upnpc_for_another_host(lab, 40150)
    natpmpc = lab.run_in_client(["natpmpc", "-g", lab.gateway_lan, "-a", "40151", "40151",
                                 "udp", "3600"], timeout=20, check=True).stdout
    assert "Mapped public port 40151" in natpmpc
    mapped = natdeck(lab, tmp_path, "map", "tcp", "40152", "--via", "pcp", "--lifetime", "1800",
                     "--json")
    assert mapped.returncode == 0, mapped.stderr
    pcp_port = json.loads(mapped.stdout)["external_port"]

    started = time.monotonic()
    listed = natdeck(lab, tmp_path, "list", "--json")
    took = time.monotonic() - started

    assert listed.returncode == 0, listed.stderr
    by_port = {o["external_port"]: o for o in map(json.loads, listed.stdout.splitlines())}
    assert set(by_port) == {40150, 40151, pcp_port}
    upnp, natpmp, pcp = by_port[40150], by_port[40151], by_port[pcp_port]
    assert (upnp["internal_client"], upnp["protocol"], upnp["made_by"], upnp["this_host"]) == (
        OTHER_CLIENT_ADDRESS, "tcp", "upnp", False)
    assert upnp["description"] == "libminiupnpc"
    assert (natpmp["internal_client"], natpmp["protocol"], natpmp["made_by"]) == (
        CLIENT_ADDRESS, "udp", "natpmp")
    assert (pcp["internal_client"], pcp["protocol"], pcp["internal_port"], pcp["made_by"]) == (
        CLIENT_ADDRESS, "tcp", 40152, "pcp")
    assert pcp["ours"] is True         # the state file knows natdeck's own
    assert natpmp["ours"] is False     # natpmpc's, from this host
    assert natpmp["this_host"] is True
    assert 3500 < upnp["lease"] <= 3600
    assert 3500 < natpmp["lease"] <= 3600
    assert 1700 < pcp["lease"] <= 1800
    assert took < 5.0, f"natdeck list took {took:.2f} s"

    text = natdeck(lab, tmp_path, "list")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[-1] == "3 mappings, 2 hosts, 1 of ours"


def test_list_on_a_gateway_without_upnp_is_one_line_and_exit_3(lab: Lab,
                                                               tmp_path: Path) -> None:
    # The stock lab gateway: NAT-PMP and PCP only (nothing answers SSDP).
    listed = natdeck(lab, tmp_path, "list", "--timeout", "0.5")
    assert listed.returncode == 3
    assert listed.stdout == ""
    [line] = listed.stderr.splitlines()
    assert line.startswith("natdeck: the gateway does not list its mappings:")


def view_app(lab: Lab) -> NatDeckApp:
    """The TUI as ``natdeck`` builds it on a real gateway (its manager and UPnP listing)."""

    @asynccontextmanager
    async def engine() -> AsyncIterator[EngineParts]:
        router = UpnpRouterListing.on(lab.gateway_lan)
        try:
            yield EngineParts(MappingManager(lab.gateway_lan, timeout=10.0), router=router)
        finally:
            await router.close()

    return NatDeckApp(engine=engine)


async def open_view(pilot: Pilot[int], app: NatDeckApp) -> RouterScreen:
    await app_until(pilot, lambda: app.engine_started, "the engine")
    await pilot.press("g")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, RouterScreen)
    screen.poller.interval = INTERVAL
    await app_until(pilot, lambda: screen.listed, "the first listing")
    return screen


def shown(screen: RouterScreen) -> set[tuple[str, int]]:
    return {(str(e.mapping.internal_client), e.mapping.external_port)
            for e in screen.table.shown if e.gone_at is None}


async def within(pilot: Pilot[int], screen: RouterScreen, condition: Callable[[], bool],
                 what: str) -> tuple[float, int]:
    """Seconds until ``condition`` holds, and how many listings that took: the one in flight
    when the change was made may have missed it, the next one must see it (the test fails
    after 10 s)."""
    started, listed = time.monotonic(), screen.model.listings
    await app_until(pilot, condition, what)
    return time.monotonic() - started, screen.model.listings - listed


async def ask_to_delete(pilot: Pilot[int], screen: RouterScreen, port: int) -> None:
    """Select TCP ``port`` in the view and press d: the confirmation is on screen."""
    screen.table.move_cursor(row=screen.table.get_row_index(row_key((TCP, port, ""))))
    await pilot.press("d")
    await pilot.pause()
    assert isinstance(pilot.app.screen, ConfirmDelete)


def test_the_view_follows_other_processes_and_deletes_after_confirmation(lab: Lab) -> None:
    start(lab, secure_mode=False)
    upnpc_for_another_host(lab, 40160)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        app = view_app(lab)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            screen = await open_view(pilot, app)
            assert (OTHER_CLIENT_ADDRESS, 40160) in shown(screen)
            upnpc_for_another_host(lab, 40161, "UDP", 600)
            seen["appeared"] = await within(
                pilot, screen, lambda: (OTHER_CLIENT_ADDRESS, 40161) in shown(screen),
                "the new one")
            upnpc_delete_as_another_host(lab, 40161, "UDP")
            seen["left"] = await within(
                pilot, screen, lambda: (OTHER_CLIENT_ADDRESS, 40161) not in shown(screen),
                "the deleted one to leave")
            # Delete another host's mapping from the view: d asks, y confirms.
            await ask_to_delete(pilot, screen, 40160)
            seen["rules_while_asking"] = set(lab.dnat_rules())
            await pilot.press("y")
            await app_until(pilot, lambda: (OTHER_CLIENT_ADDRESS, 40160) not in shown(screen),
                            "the deleted row")
            seen["rules_after"] = set(lab.dnat_rules())
            seen["status"] = str(screen.status_line.render())
            await pilot.pause(0.1)
            seen["logged"] = list(app.main.events.lines_written)
            await pilot.press("q")

    run_in_client(lab, scenario)

    # Within the refresh interval: at the first listing that starts after the change.
    for seconds, listings in (seen["appeared"], seen["left"]):
        assert listings <= 2, seen
        assert seconds < 2 * INTERVAL + 1.0, seen
    assert any(f"{OTHER_CLIENT_ADDRESS} opened udp 40161 via UPnP" in line
               for line in seen["logged"])
    assert any(f"{OTHER_CLIENT_ADDRESS} closed udp 40161" in line for line in seen["logged"])
    other = DnatRule(TCP, 40160, OTHER_CLIENT_ADDRESS, 40160)
    assert other in seen["rules_while_asking"]  # nothing deleted before the confirmation
    assert other not in seen["rules_after"]
    assert "deleted tcp 40160 of 198.18.0.3" in seen["status"]


def test_secure_mode_refusal_is_shown_and_nothing_crashes(lab: Lab) -> None:
    start(lab, secure_mode=True)
    upnpc_for_another_host(lab, 40170)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        app = view_app(lab)
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            screen = await open_view(pilot, app)
            await ask_to_delete(pilot, screen, 40170)
            await pilot.press("y")
            await app_until(pilot, lambda: screen.answer is not None
                            and "refused" in screen.answer.plain, "the gateway's answer")
            seen["status"] = str(screen.status_line.render())
            # The view goes on listing after the refusal.
            listed = screen.model.listings
            await app_until(pilot, lambda: screen.model.listings > listed, "the next listing")
            seen["shown"] = shown(screen)
            seen["running"] = app.is_running
            await pilot.press("q")

    run_in_client(lab, scenario)

    assert "ActionNotAuthorized (606)" in seen["status"]
    assert (OTHER_CLIENT_ADDRESS, 40170) in seen["shown"]
    assert seen["running"]
    assert lab.dnat_rules() == [DnatRule(TCP, 40170, OTHER_CLIENT_ADDRESS, 40170)]
