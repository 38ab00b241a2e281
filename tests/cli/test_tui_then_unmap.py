"""A mapping the TUI made (``natdeck --keep --map tcp:PORT``, then ``q``) can be deleted by
``natdeck unmap``: the TUI records its mappings, with their PCP nonces, in the state file
(issue 14 finding 3). The gateway is strict about nonces, as miniupnpd is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.statefile import StateFile
from tests.cli.conftest import Sim
from tests.support.loopback import until
from tui.launch import build_app, left_open


async def test_keep_map_quit_then_unmap_deletes_the_tui_mapping(
        sim: Sim, run: Any, state_dir: Path) -> None:
    app = build_app(gateway="127.0.0.1", local="127.0.0.1", gateway_port=sim.port,
                    demo=False, maps=[(6, 41361)], keep=True)
    async with app.run_test() as pilot:
        await until(lambda: (6, 41361) in sim.mapped(), 5.0, 0.02)
        await pilot.press("q")
        await until(lambda: app.return_code is not None, 5.0, 0.02)
    assert left_open(app) == 0  # kept on purpose: nothing to warn about
    record, _ = StateFile(state_dir).find("127.0.0.1", sim.port, 6, 41361)
    assert record is not None
    assert record.nonce == sim.mapped()[(6, 41361)].nonce
    result = await run("unmap", "tcp", "41361", *sim.target)
    assert result.code == 0, result.err
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []


async def test_quitting_without_keep_deletes_and_drops_the_record(
        sim: Sim, state_dir: Path) -> None:
    app = build_app(gateway="127.0.0.1", local="127.0.0.1", gateway_port=sim.port,
                    demo=False, maps=[(6, 41362)])
    async with app.run_test() as pilot:
        await until(lambda: (6, 41362) in sim.mapped(), 5.0, 0.02)
        # Recorded when the client reads the answer, which may be a loop turn or a repaint
        # after the gateway made the mapping: wait for it, not for the gateway alone.
        await until(lambda: StateFile(state_dir).find("127.0.0.1", sim.port, 6, 41362)[0]
                    is not None, 5.0, 0.02, what="the mapping's record")
        await pilot.press("q")
        await until(lambda: app.return_code is not None, 5.0, 0.02)
    assert sim.mapped() == {}
    assert StateFile(state_dir).load().records == []
