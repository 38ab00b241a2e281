"""Benchmark 5: scale -- memory and CPU per managed mapping, and the TUI's frame with 1,000 rows.

*Per mapping*: runs :mod:`tests.bench.manager_scale` (a manager and a simulated gateway on one
virtual-clock loop, an hour of renewals in seconds) in its own process, and prints its table.

*TUI frame*: :class:`tui.app.NatDeckApp` under Textual's ``run_test`` (headless), driving a real
:class:`~engine.manager.MappingManager` on a simulated gateway on loopback, with 1,000
mappings. The app's clock is moved on one second per tick, so every countdown changes, and the
tick (``refresh_view``, what the app's one-second timer calls) is timed, alone and up to the
end of the repaint it causes. Beside it, on a bare Textual ``DataTable`` with the same
1,000 rows: updating both countdown cells of every row, and rebuilding the table -- what a
tick costs without natdeck's rows-in-view updates.

    .venv/bin/python -m tests.bench.scale [--counts 100 1000 10000] [--ticks 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from tests.bench.report import TIMES, Goal, Table, median
from tests.support.loopback import REPO_ROOT, python_env
from tests.support.pilot import app_until

HOST = "127.0.0.1"
ROWS = 1000
SIZE = (120, 40)


def manager_scale(counts: list[int], timeout: float = 900) -> tuple[str, list[Goal]]:
    """Run tests.bench.manager_scale for ``counts``: its Markdown output (or why not), and the
    goal of issue 15 (a managed renewal at most 100 µs) at the largest count."""
    if importlib.util.find_spec("tests.bench.manager_scale") is None:
        return "(tests/bench/manager_scale.py does not exist yet: skipped.)", []
    with tempfile.TemporaryDirectory(prefix="natdeck-bench-") as scratch:
        numbers = Path(scratch) / "renewals.json"
        argv = [sys.executable, "-m", "tests.bench.manager_scale", "--counts",
                *map(str, counts), "--json", str(numbers)]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                                  cwd=REPO_ROOT, env=python_env(), check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return f"(manager_scale did not finish within {timeout:.0f} s: skipped.)", []
        if done.returncode != 0:
            return (f"(manager_scale failed, exit {done.returncode}: "
                    f"{done.stderr.strip()[-500:]})", [])
        per_renewal = {int(k): float(v) for k, v in json.loads(numbers.read_text()).items()}
    largest = max(per_renewal)
    goal = Goal(f"managed renewal CPU at {largest:,} mappings"
                + ("" if largest >= 10_000 else " (10,000 with --with-10k)"),
                per_renewal[largest], 100e-6, "us",
                ", ".join(f"{n:,}: {v * 1e6:,.0f} µs" for n, v in sorted(per_renewal.items())))
    return "\n".join([
        "### Memory and CPU per managed mapping (tests/bench/manager_scale.py)",
        "",
        done.stdout.strip(),
    ]), [goal]


# -- the TUI ------------------------------------------------------------------------------


async def _timed(action: Callable[[], None], pilot: Any) -> tuple[float, float]:
    """(seconds in ``action``, seconds to the end of the repaint it caused).

    The repaint is what Textual's screen update timer would do next (the messages the action
    queued, then the layout and the compositor's render); it is run at once here, so the time
    has no frame-rate wait in it. Private Textual API (the same calls ``Pilot.pause`` makes),
    so that the idle detection of ``pause()``, which sleeps, is not timed.
    """
    start = time.perf_counter()
    action()
    alone = time.perf_counter() - start
    await pilot._wait_for_screen()
    pilot.app.screen._on_timer_update()
    total = time.perf_counter() - start
    await pilot.pause()
    return alone, total


async def natdeck_ticks(ticks: int) -> dict[str, list[tuple[float, float]]]:
    """Time ``ticks`` ticks of the real app with :data:`ROWS` mappings on a simulated gateway."""
    from engine.manager import MappingManager
    from engine.protocols import Protocol
    from engine.simulator import GatewayConfig, SimulatedGateway
    from tests.support.loopback import free_udp_port
    from tui.app import NatDeckApp
    from tui.backend import using

    announce_port = free_udp_port()
    config = GatewayConfig(announce_targets=((HOST, announce_port),), max_mappings=None)
    offset = [0.0]
    async with SimulatedGateway(HOST, 0, "203.0.113.7", config) as gateway:
        manager = MappingManager(HOST, gateway_port=gateway.address[1], local_address=HOST,
                                 announce_host=HOST, announce_ports=(announce_port,),
                                 multicast=False, rng=random.Random(5), lifetime=7200)
        loop = asyncio.get_running_loop()
        # tick=3600: the benchmark calls the tick itself; the app's timer stays out of the way.
        app = NatDeckApp(engine=using(manager), clock=lambda: loop.time() + offset[0],
                         tick=3600.0)
        async with app.run_test(size=SIZE) as pilot:
            await app_until(pilot, lambda: app.engine_started, "the engine", 120.0, 0.01)
            for start in range(0, ROWS, 250):
                await asyncio.gather(*(manager.add(Protocol.TCP, 20000 + i)
                                       for i in range(start, min(ROWS, start + 250))))
            await app_until(pilot, lambda: app.main.table.row_count == ROWS, "the rows", 120.0,
                            0.01)
            app.refresh_view()
            await pilot.pause()
            samples = []
            for _ in range(ticks):
                offset[0] += 1.0
                samples.append(await _timed(app.refresh_view, pilot))
            manager.keep = True  # leaving (deleting 1,000 mappings) is not what is measured
            await app.action_quit()
    return {"natdeck": samples}


async def datatable_ticks(ticks: int) -> dict[str, list[tuple[float, float]]]:
    """The same rows in a bare DataTable: every countdown cell updated, and a full rebuild."""
    from ipaddress import IPv4Address

    from rich.text import Text
    from textual.app import App, ComposeResult
    from textual.widgets import DataTable

    from engine.events import ManagedMapping, MappingKey, MappingState
    from engine.protocols import Protocol
    from tui.presentation import MAPPING_COLUMNS, mapping_cells

    mappings = []
    for i in range(ROWS):
        key = MappingKey(Protocol.TCP, 20000 + i)
        mappings.append(ManagedMapping(
            key=key, protocol=Protocol.TCP, internal_port=key.internal_port,
            state=MappingState.ACTIVE, requested_lifetime=7200, via="pcp",
            external_port=key.internal_port, external_address=IPv4Address("203.0.113.7"),
            lifetime=7200, granted_at=0.0, expires_at=7200.0 + i, next_renewal_at=3600.0 + i))
    columns = [key for key, _, _ in MAPPING_COLUMNS]
    countdowns = [columns[5], columns[6]]

    class Plain(App[None]):
        def compose(self) -> ComposeResult:
            yield DataTable()

    def cells(mapping: ManagedMapping, now: float) -> list[Text]:
        return [Text(text, style=style) for text, style in mapping_cells(mapping, now)]

    app = Plain()
    samples: dict[str, list[tuple[float, float]]] = {"update every row": [], "rebuild": []}
    async with app.run_test(size=SIZE) as pilot:
        table: DataTable[Text] = app.query_one(DataTable)
        for column, label, width in MAPPING_COLUMNS:
            table.add_column(label, key=column, width=width)
        for mapping in mappings:
            table.add_row(*cells(mapping, 0.0), key=str(mapping.key))
        await pilot.pause()
        now = 0.0

        def update_all() -> None:
            with app.batch_update():
                for mapping in mappings:
                    row = cells(mapping, now)
                    for column in countdowns:
                        table.update_cell(str(mapping.key), column, row[columns.index(column)])

        def rebuild() -> None:
            with app.batch_update():
                table.clear()
                for mapping in mappings:
                    table.add_row(*cells(mapping, now), key=str(mapping.key))

        for _ in range(ticks):
            now += 1.0
            samples["update every row"].append(await _timed(update_all, pilot))
            now += 1.0
            samples["rebuild"].append(await _timed(rebuild, pilot))
    return samples


def _run(factory: Callable[[], Awaitable[dict[str, list[tuple[float, float]]]]]
         ) -> dict[str, list[tuple[float, float]]]:
    return asyncio.run(factory())  # type: ignore[arg-type]


def tui_frames(ticks: int) -> str:
    """Markdown: the tick with 1,000 rows, natdeck's and the two bare-DataTable ways."""
    if importlib.util.find_spec("tui.app") is None:
        return "(tui.app does not exist yet: the TUI frame benchmark was skipped.)"
    samples: dict[str, list[tuple[float, float]]] = {}
    samples.update(_run(lambda: natdeck_ticks(ticks)))
    samples.update(_run(lambda: datatable_ticks(ticks)))
    table = Table(["one tick, 1,000 rows", "tick ms", "tick + repaint ms", "worst ms",
                   f"{TIMES} natdeck"])
    reference = median(total for _, total in samples["natdeck"])
    labels = {
        "natdeck": "natdeck (`refresh_view`: rows in view + 5 either side)",
        "update every row": "bare DataTable: both countdown cells of every row",
        "rebuild": "bare DataTable: clear and add every row",
    }
    for name, runs in samples.items():
        total = median(t for _, t in runs)
        table.add(labels[name], f"{median(a for a, _ in runs) * 1e3:.1f}",
                  f"{total * 1e3:.1f}", f"{max(t for _, t in runs) * 1e3:.1f}",
                  f"{total / reference:.1f}{TIMES}")
    return "\n".join([
        "### TUI: one countdown tick with 1,000 mappings",
        "",
        f"Textual `run_test` (headless), {SIZE[0]}x{SIZE[1]} terminal, median of {ticks} ticks, "
        "the clock one second on each time so every countdown changes. natdeck's app "
        "runs a real MappingManager on a simulated gateway (loopback); *tick*: the tick's own "
        "code; *+ repaint*: to the end of the screen update it causes (the messages it "
        "queued, layout, the compositor's render).",
        "",
        table.render(),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args(argv)
    print(tui_frames(args.ticks))
    print()
    print(manager_scale(args.counts)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
