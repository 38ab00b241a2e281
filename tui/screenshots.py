"""Screenshots of the demo: ``python -m tui.screenshots [DIR]`` writes SVGs (and PNGs).

The app runs headless with ``run_test()`` against the in-process simulated
gateway (loopback only) and is driven through the scenes below; each scene
ends in a state worth showing, and ``save_screenshot()`` writes the real SVG
that Textual renders. PNGs are made with ``cairosvg`` when it is installed.

The scenes are also what the snapshot tests (``tests/tui/test_snapshots.py``)
drive: :func:`freeze` fixes what depends on timing (the clock the countdowns
are computed from, the round-trip time, the epoch) so that two runs draw the
same screen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Input

from engine.codes import PcpResult
from engine.events import MappingKey, MappingState
from engine.protocols import Protocol
from engine.simulator import SimulatedGateway
from engine.simulator.upnp import Neighbour

from .app import NatDeckApp
from .demo import DEMO_MAPS, DEMO_UPTIME, DemoOptions, SimulatorControls, demo_engine
from .engine_link import AddMapping, ProbeGateway, RefreshExternalAddress, RenewMapping
from .map_request import MapRequest
from .screens import MapDialog
from .screens.router import RouterScreen

__all__ = [
    "SCENES",
    "demo_app",
    "error_scene",
    "freeze",
    "help_scene",
    "main_scene",
    "map_dialog_scene",
    "router_scene",
    "silent_scene",
    "until",
]

Scene = Callable[[Pilot[int]], Awaitable[None]]

#: The address the simulated gateway moves to in the error scene (RFC 6598 shared space:
#: a carrier-grade NAT above the gateway, so the mappings are not reachable from outside).
CGN_ADDRESS = "100.64.12.34"


def demo_app(*, port: int = 0, seed: int = 7, snapshot: bool = False) -> NatDeckApp:
    """The demo app with nothing pre-mapped (the scenes map, one at a time, in order).

    ``snapshot`` makes what the app draws independent of timing: a fixed time stamp
    in the event log, no probe at start and no engine INFO records (both would log
    round-trip times and retransmissions whose number depends on the machine's speed).
    """
    if not snapshot:
        options = DemoOptions(port=port, seed=seed, timeout=5.0)
        return NatDeckApp(engine=lambda: demo_engine(options), demo=True)
    options = DemoOptions(port=port, seed=seed, timeout=5.0, probe_on_start=False)
    return NatDeckApp(engine=lambda: demo_engine(options), demo=True,
                      timestamp=lambda _wall: "12:00:00", engine_log_level=logging.WARNING)


def _app(pilot: Pilot[int]) -> NatDeckApp:
    app = pilot.app
    assert isinstance(app, NatDeckApp)
    return app


async def until(pilot: Pilot[int], predicate: Callable[[], bool], what: str,
                timeout: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds; raise ``TimeoutError`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(0.02)


def _logged(app: NatDeckApp, fragment: str) -> bool:
    return any(fragment in line for line in app.main.events.lines_written)


async def _started(pilot: Pilot[int]) -> None:
    app = _app(pilot)
    await until(pilot, lambda: app.engine_started, "the engine to start")


async def _map(pilot: Pilot[int], request: MapRequest) -> None:
    app = _app(pilot)
    key = MappingKey(int(request.protocol), request.internal_port)
    app.send(AddMapping(request))

    def granted() -> bool:
        mapping = app.manager.mappings.get(key) if app.manager is not None else None
        return mapping is not None and mapping.state is MappingState.ACTIVE

    await until(pilot, granted, f"{key} to be granted")
    await until(pilot, lambda: key in app.main.table.shown_keys, f"{key} to be shown")


def _controls(app: NatDeckApp) -> SimulatorControls:
    parts = app.link.parts
    assert parts is not None
    assert isinstance(parts.demo, SimulatorControls)
    return parts.demo


async def main_scene(pilot: Pilot[int]) -> None:
    """The demo's three mappings, active, the second one selected."""
    await _started(pilot)
    for request in DEMO_MAPS:
        await _map(pilot, request)
    app = _app(pilot)
    app.main.table.focus()
    app.main.table.move_cursor(row=1)
    await pilot.pause()


async def map_dialog_scene(pilot: Pilot[int]) -> None:
    """The map dialog, filled in, with two mistakes pointed out."""
    await main_scene(pilot)
    await pilot.press("m")
    await pilot.pause()
    await pilot.press(*"3000", "tab", *"70000", "tab", "ctrl+u", *"2x")
    await pilot.press("enter")
    await pilot.pause()
    app = _app(pilot)
    assert isinstance(app.screen, MapDialog)


async def help_scene(pilot: Pilot[int]) -> None:
    """The help screen over the main screen."""
    await main_scene(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


async def error_scene(pilot: Pilot[int]) -> None:
    """What trouble looks like: a non-public external address, then a renewal and a new
    mapping refused (NOT_AUTHORIZED, with PCP's error lifetime)."""
    app = _app(pilot)
    await _started(pilot)
    for request in DEMO_MAPS[:2]:
        await _map(pilot, request)
    gateway = _controls(app).gateway
    manager = app.manager
    assert manager is not None
    # The new address is asked for (no announcement, no epoch reset), so the scene
    # does not depend on when the renewals an announcement schedules happen.
    gateway.configure(announce_targets=(), reset_epoch_on_address_change=False)
    gateway.change_external_address(CGN_ADDRESS)
    app.send(RefreshExternalAddress())
    await until(pilot, lambda: manager.status.warning is not None, "the non-public warning")
    gateway.configure(force_pcp_result=PcpResult.NOT_AUTHORIZED, force_natpmp_result=2)
    failing = MappingKey(Protocol.UDP, 51820)
    app.send(RenewMapping(failing))
    await until(pilot, lambda: manager.mappings[failing].state is MappingState.FAILED,
                "the renewal to be refused")
    app.send(AddMapping(MapRequest(Protocol.TCP, 3000)))
    await until(pilot, lambda: _logged(app, "tcp/3000 failed"),
                "the new mapping to be refused")
    app.main.table.focus()
    app.main.table.move_cursor(row=1)
    await pilot.pause()


async def silent_scene(pilot: Pilot[int]) -> None:
    """The error scene, then the gateway goes silent and a probe finds it unreachable
    (with the retransmissions in the event log)."""
    await error_scene(pilot)
    app = _app(pilot)
    manager = app.manager
    assert manager is not None
    controls = _controls(app)
    controls.gateway.configure(silent=True)
    if controls.igd is not None:  # the demo gateway speaks UPnP too: silence all of it
        await controls.igd.close()
    app.send(ProbeGateway())
    await until(pilot, lambda: manager.status.reachable is False, "the probe to time out")
    await pilot.pause()


def freeze(app: NatDeckApp, *, port: int | None = None) -> None:
    """Fix what depends on timing, for a screen that is the same on every run.

    The clock stops at the last grant or contact ("last contact" reads "just
    now"), and every mapping's times are shifted as if it had been granted at
    that moment, so each countdown reads its lifetime, and its renewal delay
    (drawn from the seeded generator), whatever the milliseconds between the
    grants were (the first grants the app noted, too). The round-trip time, the
    nonces and the epoch (which the simulated gateway counts in whole seconds
    since its start) are set to fixed values, and so is the gateway's port when
    ``port`` is given (the gateway then listens wherever the kernel put it, so
    that two runs at once never fight over one port). Only what
    is displayed changes: the manager schedules from its own heap.
    """
    manager = app.manager
    assert manager is not None
    moments = [m.granted_at for m in manager.mappings.values() if m.granted_at is not None]
    if manager.status.last_contact is not None:
        moments.append(manager.status.last_contact)
    frozen = max(moments, default=0.0)
    for mapping in manager.mappings.values():
        if mapping.nonce is not None:
            # Random per mapping (RFC 6887 §11.1); the detail line shows it.
            mapping.nonce = mapping.internal_port.to_bytes(12, "big")
        if mapping.epoch is not None:
            mapping.epoch = DEMO_UPTIME
        if mapping.last_answer is not None:
            mapping.last_answer = dataclasses.replace(mapping.last_answer, at=frozen)
        if mapping.granted_at is None:
            continue
        shift = frozen - mapping.granted_at
        mapping.granted_at = frozen
        mapping.first_granted_at = frozen
        if mapping.renewed_at is not None:
            mapping.renewed_at = frozen
        if mapping.expires_at is not None:
            mapping.expires_at += shift
        if mapping.next_renewal_at is not None:
            mapping.next_renewal_at += shift
    for asked in app.main.asked.values():
        if asked.first_granted_at is not None:
            asked.first_granted_at = frozen
    app.clock = lambda: frozen
    for field in app.screen.query(Input):
        field.cursor_blink = False  # a blinking cursor is drawn or not, by chance
    manager.status.rtt = 0.0004
    if port is not None:
        manager.status.port = port
    if manager.status.epoch is not None:
        manager.status.epoch = DEMO_UPTIME
    app.refresh_view()


async def router_scene(pilot: Pilot[int]) -> None:
    """The router view (g): natdeck's three mappings among the other hosts' (UPnP, PCP,
    NAT-PMP), one of them just opened and highlighted, the next one selected. The
    listing stops and the view's clock stands at the last listing (:func:`freeze_router`),
    so the leases read what the gateway said."""
    await main_scene(pilot)
    app = _app(pilot)
    await pilot.press("g")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, RouterScreen)
    await until(pilot, lambda: screen.listed and screen.table.row_count > 0, "the listing")
    parts = app.link.parts
    assert parts is not None
    controls = parts.demo
    assert isinstance(controls, SimulatorControls)
    assert controls.others is not None
    controls.others.open(Neighbour("198.18.0.44", 17, 9987, 9987, 90, "upnp", "TeamSpeak"),
                         asyncio.get_running_loop().time())
    listed = screen.model.listings
    screen.poller.wake()
    await until(pilot, lambda: screen.model.listings > listed, "the next listing")
    freeze_router(screen, controls.gateway)
    screen.table.move_cursor(row=4)
    await pilot.pause()


def freeze_router(screen: RouterScreen, gateway: SimulatedGateway) -> None:
    """Stop the router view's listing and its clock at the last listing's time, and show
    every lease as the gateway granted it (as if read the moment it was granted, whatever
    the milliseconds between the grants and the listing were), as :func:`freeze` does."""
    screen.workers.cancel_group(screen, "router-poll")
    at = max((e.read_at for e in screen.model.entries.values()), default=0.0)
    granted = {(m.protocol, m.external_port): m.lifetime for m in gateway.mappings}
    for key, entry in screen.model.entries.items():
        lease = granted.get((entry.mapping.protocol, entry.mapping.external_port))
        if entry.mapping.lease_remaining and lease:
            mapping = dataclasses.replace(entry.mapping, lease_remaining=lease)
            screen.model.entries[key] = dataclasses.replace(entry, read_at=at, mapping=mapping)
    screen.clock = lambda: at
    screen.table.clock = screen.clock
    screen.repaint()


SCENES: dict[str, Scene] = {
    "main": main_scene,
    "map-dialog": map_dialog_scene,
    "help": help_scene,
    "error": silent_scene,
    "router": router_scene,
}


def _png(svg: Path) -> Path | None:
    try:
        import cairosvg  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        return None
    png = svg.with_suffix(".png")
    cairosvg.svg2png(url=str(svg), write_to=str(png), output_width=1600)
    return png


async def _shoot(name: str, scene: Scene, out: Path, size: tuple[int, int]) -> list[Path]:
    app = demo_app()
    async with app.run_test(size=size, notifications=True) as pilot:
        await scene(pilot)
        await pilot.pause(0.3)
        svg = Path(app.save_screenshot(filename=f"{name}.svg", path=str(out)))
        await pilot.press("q")
        await pilot.pause()
        if app.is_running:
            await pilot.press("q")
    png = _png(svg)
    return [svg] if png is None else [svg, png]


async def _main(out: Path, size: tuple[int, int]) -> int:
    for name, scene in SCENES.items():
        for path in await _shoot(name, scene, out, size):
            print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write the screenshots; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tui.screenshots", description=__doc__)
    parser.add_argument("out", nargs="?", type=Path,
                        default=Path(__file__).resolve().parent.parent / "screenshots",
                        help="where to write them (default: screenshots/ of the repository)")
    parser.add_argument("--size", default="120x34", help="terminal size, COLSxROWS")
    args = parser.parse_args(argv)
    cols, _, rows = str(args.size).partition("x")
    args.out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_main(args.out, (int(cols), int(rows))))


if __name__ == "__main__":
    sys.exit(main())
