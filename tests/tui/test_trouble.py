"""What the app shows when things go wrong, and that it stays usable meanwhile."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from engine.codes import PcpResult
from engine.errors import NoGatewayError
from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.statefile import StateFile
from tui.app import NatDeckApp
from tui.backend import EngineParts
from tui.engine_link import AddMapping
from tui.launch import still_open_note
from tui.log_bridge import EngineLogHandler
from tui.map_request import MapRequest
from tui.screens import HelpScreen

from .conftest import DemoGateway, app_until, logged, quit_app, started


async def test_a_refused_port_is_a_sentence_not_a_crash(demo_gateway: DemoGateway) -> None:
    demo_gateway.gateway.configure(unsupported_protocols=frozenset({Protocol.UDP}))
    app = demo_gateway.app()
    async with app.run_test(notifications=True) as pilot:
        await started(pilot)
        app.send(AddMapping(MapRequest(Protocol.UDP, 5000, via="pcp")))
        failed = "udp/5000 failed"
        await app_until(pilot, lambda: logged(app, failed), "the refusal")
        line = next(x for x in app.main.events.lines_written if failed in x)
        # The RFC's name for the code and the error lifetime the gateway gave (RFC 6887 §7.4).
        assert "UNSUPP_PROTOCOL (9)" in line
        assert "the gateway says this lasts 1800 s" in line
        assert any(n.title == "Could not map udp 5000 (via pcp)" for n in app._notifications)
        assert app.is_running
        assert app.manager is not None
        assert MappingKey(Protocol.UDP, 5000) not in app.manager.mappings


async def test_on_a_narrow_screen_a_failure_toast_is_a_few_words_not_the_sentence(
        demo_gateway: DemoGateway) -> None:
    # At 80x24 a toast is 40 columns wide: the whole sentence took 7 rows a toast, and three
    # failures hid the table. Narrow, the toast says the code (and its error lifetime); the
    # event log keeps the sentence. Wide, the toast has room for the sentence.
    demo_gateway.gateway.configure(unsupported_protocols=frozenset({Protocol.UDP}))
    for size, short in (((80, 24), True), ((120, 34), False)):
        app = demo_gateway.app()
        async with app.run_test(size=size, notifications=True) as pilot:
            await started(pilot)
            app.send(AddMapping(MapRequest(Protocol.UDP, 5000 + size[0], via="pcp")))
            await app_until(pilot, lambda app=app: any(  # type: ignore[misc]
                n.title.startswith("Could not map udp") for n in app._notifications),
                "the toast")
            [toast] = [n for n in app._notifications if n.title.startswith("Could not map")]
            await app_until(pilot, lambda app=app: logged(  # type: ignore[misc]
                app, "the gateway says this lasts 1800 s"), "the whole sentence in the log")
            if short:
                assert toast.message == "UNSUPP_PROTOCOL for 30m00s"
            else:
                assert "the gateway says this lasts 1800 s" in toast.message


async def test_a_refused_renewal_leaves_the_row_failed_with_the_reason(
        demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app(initial_maps=[MapRequest(Protocol.TCP, 8080)])
    key = MappingKey(Protocol.TCP, 8080)
    async with app.run_test(size=(120, 24)) as pilot:
        await started(pilot)
        await app_until(pilot, lambda: app.manager is not None and key in app.manager.mappings
                        and app.manager.mappings[key].state is MappingState.ACTIVE, "the mapping")
        demo_gateway.gateway.configure(force_pcp_result=PcpResult.NOT_AUTHORIZED)
        await pilot.press("r")
        await app_until(pilot, lambda: app.manager is not None
                        and app.manager.mappings[key].state is MappingState.FAILED, "the refusal")
        await app_until(pilot, lambda: str(app.main.table.get_row(str(key))[-1])
                        == "failed: NOT_AUTHORIZED for 30m00s", "the row to show the refusal")
        await app_until(pilot, lambda: logged(app, "renewal of tcp/8080 failed"), "the log line")


async def test_a_silent_gateway_never_freezes_the_ui(demo_gateway: DemoGateway) -> None:
    # A tick of a tenth of a second: the panel's repaint is what the end waits for.
    # A 1 s request timeout: NAT-PMP's tries at 0, 0.25 and 0.75 s (RFC 6886 §3.1), then no
    # answer.
    app = demo_gateway.app(demo_gateway.manager(timeout=1.0, probe_on_start=False), via="natpmp",
                           tick=0.1)
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot, probed=False)
        demo_gateway.gateway.configure(silent=True)
        loop = asyncio.get_running_loop()
        await pilot.press("m", *"3000", "enter")
        await app_until(pilot, lambda: logged(app, "→ map tcp 3000 (via natpmp)"),
                        "the request")
        # While the request waits for an answer, the keys still work at once.
        asked = loop.time()
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        assert loop.time() - asked < 1.0
        await pilot.press("escape")
        failed = "tcp/3000 failed"
        await app_until(pilot, lambda: logged(app, failed), "the timeout", 15)
        line = next(x for x in app.main.events.lines_written if failed in x)
        assert "map tcp 3000: no answer from" in line
        # Said once: the manager's event, not also the command's failure.
        assert not logged(app, "map tcp 3000 (via natpmp) failed")
        # The engine's INFO records show the retransmissions (RFC 6886 §3.1: 250 ms,
        # doubling).
        assert logged(app, "retransmitting")
        await pilot.pause(0.15)
        assert "Reachable NO" in app.main.panel.plain


async def test_text_from_the_network_is_shown_escaped(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(120, 30)) as pilot:
        await started(pilot)
        logging.getLogger("engine.test").info("evil [bold red]markup[/] \x1b[2J\x07 %s",
                                              "\u202eend")
        await app_until(pilot, lambda: logged(app, "evil"), "the record")
        line = next(x for x in app.main.events.lines_written if "evil" in x)
        assert "[test] evil [bold red]markup[/] \\x1b[2J\\x07 \\u202eend" in line
        await pilot.pause()
        rendered = "\n".join(strip.text for strip in app.main.events.lines)
        assert "\x1b" not in rendered
        assert "[bold red]markup[/]" in rendered


async def test_the_log_handler_goes_when_the_app_does(demo_gateway: DemoGateway) -> None:
    engine_logger = logging.getLogger("engine")
    before = engine_logger.level
    app = demo_gateway.app()
    async with app.run_test() as pilot:
        await started(pilot)
        assert any(isinstance(h, EngineLogHandler) for h in engine_logger.handlers)
        assert engine_logger.getEffectiveLevel() <= logging.INFO
        await quit_app(pilot)
    assert not any(isinstance(h, EngineLogHandler) for h in engine_logger.handlers)
    assert engine_logger.level == before


async def test_an_engine_that_cannot_start_is_shown_and_q_still_quits() -> None:
    @asynccontextmanager
    async def no_gateway() -> AsyncIterator[EngineParts]:
        raise NoGatewayError("No default IPv4 gateway found in the routing table")
        yield  # pragma: no cover - makes this a generator

    app = NatDeckApp(engine=no_gateway)
    async with app.run_test(notifications=True) as pilot:
        await app_until(pilot, lambda: not app.engine_running, "the engine to stop")
        await pilot.pause()
        assert ("Engine stopped: No default IPv4 gateway found in the routing table"
                in app.main.panel.plain)
        assert any(n.title == "The engine stopped" for n in app._notifications)
        await pilot.press("m")
        await pilot.pause()
        await pilot.press(*"8080", "enter")
        await pilot.pause()
        await pilot.press("q")
        await app_until(pilot, lambda: app.return_code is not None, "the quit")
    assert app.return_code == 1


async def test_a_state_file_that_cannot_be_written_is_said(
        demo_gateway: DemoGateway, tmp_path: Path) -> None:
    """Review defect 2: the records' write error was shown nowhere, and the exit offered
    'natdeck unmap' for mappings it could not know."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the state directory's parent is a file: every write fails
    manager = demo_gateway.manager(state_file=StateFile(blocker / "natdeck"))
    app = demo_gateway.app(manager, initial_maps=[MapRequest(Protocol.TCP, 8080)])
    title = "Could not write the state file"
    async with app.run_test(notifications=True) as pilot:
        await started(pilot)
        await app_until(pilot, lambda: "State file not written: Not a directory"
                        in app.main.panel.plain, "the panel's line")
        manager.records.flush()  # fails again: no second toast
        app.refresh_view()
        await pilot.pause()
        assert [n.title for n in app._notifications].count(title) == 1
        blocker.unlink()  # writable again: the next write clears the line
        manager.records.flush()
        assert manager.records.error is None
        app.refresh_view()
        await pilot.pause()
        assert "State file" not in app.main.panel.plain
        shutil.rmtree(blocker)
        blocker.write_text("")  # unwritable again: a new spell of failures, a new toast
        app.send(AddMapping(MapRequest(Protocol.TCP, 9090)))
        await app_until(pilot, lambda: "State file not written" in app.main.panel.plain,
                        "the line again")
        assert [n.title for n in app._notifications].count(title) == 2
        demo_gateway.gateway.configure(silent=True)
        await pilot.press("q")
        await pilot.pause(0.2)
        await pilot.press("q")  # leave the mappings open
        await app_until(pilot, lambda: app.return_code is not None, "the exit")
    note = still_open_note(app)
    assert note is not None
    assert note.startswith("2 mapping(s) are still open"), note
    assert "natdeck unmap' can delete" not in note
    assert "could not be written to the state file" in note
