"""The entry point the ``natdeck`` command calls: the demo, and problems before the UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.events import MappingKey, MappingState
from engine.manager import MappingManager
from engine.protocols import Protocol
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from tui.app import NatDeckApp
from tui.demo import DEMO_MAPS, SimulatorControls
from tui.launch import EXIT_USAGE, build_app, run_app
from tui.screens.router import RouterScreen

from .conftest import HOST, DemoGateway, app_until, logged, mapped, quit_app, started


def test_a_bad_gateway_address_is_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    # Refused while parsing the address: nothing is discovered, nothing is sent.
    status = run_app(gateway="not-an-address", local=None, demo=False, maps=[], keep=False,
                     via="auto")
    assert status == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("natdeck: ")
    assert "not-an-address" in err
    assert "Traceback" not in err


def test_a_bad_via_is_a_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    status = run_app(gateway=None, local=None, demo=True, maps=[], keep=False, via="smtp")
    assert status == EXIT_USAGE
    assert "via must be one of auto, pcp, natpmp, upnp, not 'smtp'" in capsys.readouterr().err


def test_the_demo_app_premaps_and_adds_the_requested_ports() -> None:
    app = build_app(gateway=None, local=None, demo=True, maps=[(6, 8080), (17, 9999)],
                    keep=False, via="auto")
    assert isinstance(app, NatDeckApp)
    assert app.demo
    wanted = [(int(r.protocol), r.internal_port) for r in app.link.initial]
    # tcp 8080 is asked for by the user, so the demo's own request for it is dropped.
    assert wanted == [(17, 51820), (6, 25565), (6, 8080), (17, 9999)]
    assert {(int(r.protocol), r.internal_port) for r in DEMO_MAPS} <= set(wanted)


async def test_the_demo_runs_on_its_own_simulated_gateway() -> None:
    app = build_app(gateway=None, local=None, demo=True, maps=[(17, 9999)], keep=False,
                    via="auto")
    async with app.run_test(size=(120, 34)) as pilot:
        await started(pilot)
        keys = [MappingKey(int(r.protocol), r.internal_port) for r in DEMO_MAPS]
        keys.append(MappingKey(Protocol.UDP, 9999))
        await app_until(pilot, lambda: app.manager is not None and all(
            k in app.manager.mappings and app.manager.mappings[k].state is MappingState.ACTIVE
            for k in keys), "the demo's mappings")
        parts = app.link.parts
        assert parts is not None
        assert isinstance(parts.demo, SimulatorControls)
        gateway = parts.demo.gateway
        host, _ = gateway.address
        assert host == "127.0.0.1"
        # The other hosts of the demo's LAN hold mappings there too (the router view, g).
        assert len([m for m in gateway.mappings if m.client == "127.0.0.1"]) == 4
        # The demo's announcements reach the manager: a new address shows at once.
        await pilot.press("A")
        await app_until(pilot, lambda: "External 198.51.100.23" in app.main.panel.plain,
                        "the announced address")
        await app_until(pilot, lambda: logged(app, "(announce)"), "the log line")
        await quit_app(pilot)
    assert [m for m in gateway.mappings if m.client == "127.0.0.1"] == []


async def test_the_app_asks_the_igd_on_the_given_ssdp_port(
        demo_gateway: DemoGateway, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    # `natdeck --gateway ... --ssdp-port N --via upnp`: both the manager (mapping via UPnP)
    # and the router view (listing) must search the IGD on N, not on 1900.
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path))
    given: list[dict[str, Any]] = []

    def loopback_manager(*args: Any, **kwargs: Any) -> MappingManager:
        given.append(dict(kwargs))
        # Announcements by unicast on loopback: no multicast group is joined.
        kwargs.update(multicast=False, announce_host=HOST,
                      announce_ports=(demo_gateway.announce_port,))
        return MappingManager(*args, **kwargs)

    monkeypatch.setattr("tui.launch.MappingManager", loopback_manager)
    gateway = demo_gateway.gateway
    async with SimulatedIgd(gateway=gateway, config=IgdConfig(secure_mode=False)) as igd:
        app = build_app(gateway=HOST, local=HOST, gateway_port=gateway.address[1], demo=False,
                        maps=[(6, 3456)], via="upnp", ssdp_port=igd.ssdp_port)
        async with app.run_test(size=(80, 24)) as pilot:
            await started(pilot, probed=False)
            await mapped(pilot, app, MappingKey(Protocol.TCP, 3456))
            assert [kwargs.get("ssdp_port") for kwargs in given] == [igd.ssdp_port]
            assert [m.via for m in gateway.mappings if m.internal_port == 3456] == ["upnp"]
            await pilot.press("g")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RouterScreen)
            await app_until(pilot, lambda: screen.listed, "the listing")
            assert (6, 3456, "") in screen.model.entries
            await quit_app(pilot)
        assert igd.searches >= 2
