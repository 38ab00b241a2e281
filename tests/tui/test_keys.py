"""Every key of the main screen, driven with Pilot against a simulated gateway on loopback."""

from __future__ import annotations

import asyncio

from engine.events import MappingKey
from engine.protocols import Protocol
from tui.engine_link import AddMapping
from tui.launch import left_open
from tui.map_request import MapRequest
from tui.screens import HelpScreen, MapDialog

from .conftest import DemoGateway, app_until, logged, mapped, quit_app, started

TCP_8080 = MappingKey(Protocol.TCP, 8080)
UDP_5000 = MappingKey(Protocol.UDP, 5000)
TWO_MAPS = [MapRequest(Protocol.TCP, 8080), MapRequest(Protocol.UDP, 5000)]


def gateway_ports(demo_gateway: DemoGateway) -> set[tuple[int, int]]:
    return {(m.protocol, m.internal_port) for m in demo_gateway.gateway.mappings}


async def test_starts_and_shows_the_gateway(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test() as pilot:
        await started(pilot)
        await pilot.pause()
        panel = app.main.panel.plain
        assert f"Gateway 127.0.0.1:{demo_gateway.gateway.address[1]}" in panel
        assert "PCP yes, NAT-PMP yes" in panel
        assert "External 203.0.113.7" in panel
        assert "Reachable yes" in panel
        assert "Announcements listening" in panel
        assert "Epoch 100000" in panel


async def test_initial_maps_appear_as_rows(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        await pilot.pause()
        assert app.main.table.shown_keys == [TCP_8080, UDP_5000]
        assert gateway_ports(demo_gateway) == {(6, 8080), (17, 5000)}
        await app_until(pilot, lambda: logged(app, "mapped tcp/8080 -> 203.0.113.7:8080 via pcp"),
                        "the log line")


async def test_m_maps_a_port_through_the_dialog(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot)
        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MapDialog)
        await pilot.press(*"3000", "tab", *"3300", "tab", "ctrl+u", *"10m", "enter")
        await pilot.pause()
        assert not isinstance(app.screen, MapDialog)
        key = MappingKey(Protocol.TCP, 3000)
        await mapped(pilot, app, key)
        assert app.manager is not None
        mapping = app.manager.mappings[key]
        assert mapping.external_port == 3300
        assert mapping.requested_lifetime == 600
        assert (6, 3000) in gateway_ports(demo_gateway)
        await app_until(
            pilot, lambda: logged(app, "→ map tcp 3000 (suggest 3300, 600 s, via auto)"),
            "the log line")


async def test_d_unmaps_the_selected_row_at_once(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        await pilot.pause()
        await pilot.press("down", "d")
        await app_until(pilot, lambda: app.main.table.shown_keys == [TCP_8080], "the row to go")
        assert gateway_ports(demo_gateway) == {(6, 8080)}
        await app_until(pilot, lambda: logged(app, "removed udp/5000"),
                        "the log line")


async def test_r_renews_the_selected_row(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        assert app.manager is not None
        await pilot.press("r")
        await app_until(pilot, lambda: app.manager is not None
                        and app.manager.mappings[TCP_8080].renewals == 1, "the renewal")
        assert app.manager.mappings[UDP_5000].renewals == 0
        await app_until(pilot, lambda: logged(app, "renewed tcp/8080"), "the log line")


async def test_d_and_r_without_a_row_say_so(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(notifications=True) as pilot:
        await started(pilot)
        await pilot.press("d", "r")
        await pilot.pause()
        messages = [n.message for n in app._notifications]
        assert "No mapping selected to unmap; press m to map a port." in messages
        assert "No mapping selected to renew; press m to map a port." in messages


async def test_e_asks_for_the_external_address(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test() as pilot:
        await started(pilot)
        await pilot.press("e")
        await app_until(pilot, lambda: logged(app, "external address is 203.0.113.7"),
                        "the answer")


async def test_p_probes_the_gateway(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(manager=demo_gateway.manager(probe_on_start=False))
    async with app.run_test() as pilot:
        await started(pilot, probed=False)
        assert not logged(app, "probe:")
        await pilot.press("p")
        await app_until(pilot, lambda: logged(app, "probe: speaks PCP+NAT-PMP"), "the probe")


async def test_question_mark_shows_every_key(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(demo=True)
    async with app.run_test(size=(110, 40)) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        described = {description for _, description, _ in app.key_help()}
        assert {"Map", "Unmap", "Renew", "Address", "Probe", "Restart GW", "New address",
                "Help", "Quit"} <= described
        keys = dict((d, k) for k, d, _ in app.key_help())
        assert keys["Quit"] == "q / ^q"
        assert keys["Help"] == "?"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits_and_deletes_the_mappings(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        await quit_app(pilot)
    assert app.return_code == 0
    assert gateway_ports(demo_gateway) == set()


async def test_q_with_keep_leaves_the_mappings(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(demo_gateway.manager(keep=True), initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        await quit_app(pilot)
    assert app.return_code == 0
    assert gateway_ports(demo_gateway) == {(6, 8080), (17, 5000)}


async def test_q_lets_the_adds_in_flight_finish_and_deletes_them(
        demo_gateway: DemoGateway) -> None:
    """Review defect 1: quitting cancelled the adds in flight, each becoming a take-back in
    the background that the exit neither counted nor reported. Now close() waits for their
    answers and deletes their mappings with the rest."""
    app = demo_gateway.app(demo_gateway.manager(close_deadline=10.0), initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        demo_gateway.gateway.configure(delay=0.1)  # each request answered 0.1 s late
        for port in range(9000, 9004):
            app.send(AddMapping(MapRequest(Protocol.TCP, port)))
        await pilot.pause(0.05)
        await pilot.press("q")
        await app_until(pilot, lambda: app.return_code is not None or not app.is_running,
                        "the app to exit", 10.0)
        assert gateway_ports(demo_gateway) == set()
    closed = app.link.closed
    assert closed is not None
    assert (closed.deleted, closed.left) == (6, ()), closed
    assert left_open(app) == 0


async def test_closing_the_app_any_other_way_still_deletes(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        app.exit()
    assert gateway_ports(demo_gateway) == set()


async def test_q_twice_does_not_wait_for_a_silent_gateway(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        demo_gateway.gateway.configure(silent=True)
        await pilot.press("q")
        await pilot.pause(0.2)
        assert app.is_running, "the first q waits for the deletes"
        assert "Quitting: deleted 0/2 mapping(s)" in app.main.panel.plain
        loop_time = asyncio.get_running_loop().time
        before = loop_time()
        await pilot.press("q")
        await app_until(pilot, lambda: app.return_code is not None, "the second q", 2.0)
        assert loop_time() - before < 1.0
        assert app.left_behind == 2  # said on the way out (launch.left_open)


async def test_q_shows_the_deletes_progress_and_a_second_q_leaves_the_rest(
        demo_gateway: DemoGateway) -> None:
    """Issue 14 finding 7: 300 mappings on a gateway that takes 10 ms a request."""
    app = demo_gateway.app(demo_gateway.manager(close_deadline=60.0))
    async with app.run_test() as pilot:
        await started(pilot)
        manager = app.manager
        assert manager is not None
        for first in range(0, 300, 50):
            await asyncio.gather(*(manager.add(6, 30000 + i) for i in range(first, first + 50)))
        demo_gateway.gateway.configure(delay=0.01)
        await pilot.press("q")

        def some_deleted() -> bool:
            progress = manager.closing
            return progress is not None and 20 <= progress.deleted < 250

        await app_until(pilot, some_deleted, "some deletes", 5.0)
        await pilot.pause(0.3)
        assert manager.closing is not None
        shown = app.main.panel.plain
        assert "/300 mapping(s)" in shown, shown
        assert "Quitting: deleted " in shown
        assert "q again to quit now" in shown
        await pilot.press("q")
        await app_until(pilot, lambda: app.return_code is not None, "the second q", 2.0)
    assert 0 < app.left_behind < 300
    # (less the deletes in flight when it was cut)
    assert len(demo_gateway.gateway.mappings) >= app.left_behind - 32


async def test_demo_R_restarts_the_gateway_and_mappings_come_back(
        demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(demo=True, initial_maps=TWO_MAPS)
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080, UDP_5000)
        await pilot.press("R")
        await app_until(pilot, lambda: logged(app, "the gateway restarted"), "the restart")
        await app_until(pilot, lambda: logged(app, "recovered udp/5000"), "the recovery")
        await mapped(pilot, app, TCP_8080, UDP_5000)
        assert gateway_ports(demo_gateway) == {(6, 8080), (17, 5000)}
        assert app.manager is not None
        assert app.manager.status.restarts == 1


async def test_demo_A_changes_the_external_address_live(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(demo=True)
    async with app.run_test() as pilot:
        await started(pilot)
        await pilot.press("A")
        await app_until(pilot, lambda: "External 198.51.100.23" in app.main.panel.plain,
                        "the announced address in the panel")
        change = "external address 203.0.113.7 -> 198.51.100.23 (announce)"
        await app_until(pilot, lambda: logged(app, change), "the log line")


async def test_demo_keys_exist_only_in_demo_mode(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=[TWO_MAPS[0]])
    async with app.run_test() as pilot:
        await started(pilot)
        await mapped(pilot, app, TCP_8080)
        assert "R" not in app.main.active_bindings
        assert "A" not in app.main.active_bindings
        described = {description for _, description, _ in app.key_help()}
        assert "Restart GW" not in described
        epoch = demo_gateway.gateway.epoch
        await pilot.press("R", "A")
        await pilot.pause(0.3)
        assert demo_gateway.gateway.epoch >= epoch
        assert demo_gateway.gateway.external_address is not None
        assert str(demo_gateway.gateway.external_address) == "203.0.113.7"
        assert not logged(app, "demo:")


def test_the_footer_and_palette_carry_every_key() -> None:
    # The palette's commands come from the same live bindings as the help screen.
    from tui.screens.main import MAIN_BINDINGS

    ids = {b.id for b in MAIN_BINDINGS if not isinstance(b, tuple)}
    assert ids == {"natdeck.map", "natdeck.unmap", "natdeck.renew",
                   "natdeck.external_address", "natdeck.probe", "natdeck.router",
                   "natdeck.demo_restart",
                   "natdeck.demo_address", "natdeck.help", "natdeck.quit"}
    for binding in MAIN_BINDINGS:
        assert not isinstance(binding, tuple)
        assert binding.description
        assert binding.tooltip


async def test_command_palette_offers_the_keys(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(demo=True)
    async with app.run_test() as pilot:
        await started(pilot)
        titles = {command.title for command in app.get_system_commands(app.main)}
        assert {"Map", "Unmap", "Renew", "Address", "Probe", "Restart GW", "New address",
                "Help", "Quit"} <= titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Probe")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await app_until(pilot, lambda: logged(app, "→ probe the gateway"), "the palette's probe")


async def test_one_async_engine_worker_does_the_network_work(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test() as pilot:
        await started(pilot)
        engine_workers = [w for w in app.workers if w.group == "engine"]
        assert len(engine_workers) == 1
        assert not engine_workers[0]._thread_worker
        assert engine_workers[0].is_running
