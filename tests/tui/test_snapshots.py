"""How each screen looks: SVG snapshots (pytest-textual-snapshot) of the demo.

``snap_compare`` runs the app itself, so these are plain ``def`` tests. The app
is the demo (a simulated gateway in the process, loopback only, on a port the
kernel picks, shown as a fixed one), with a seeded random generator, a fixed
time stamp in the event log, no probe at start, and
:func:`tui.screenshots.freeze` applied after each scene: the countdowns,
round-trip time, nonces and epochs read the same on every run.

Update the snapshots after an intended change with ``pytest --snapshot-update``
and look at the report before committing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from textual.pilot import Pilot

from tui.app import NatDeckApp
from tui.screenshots import demo_app, error_scene, freeze, help_scene, main_scene, map_dialog_scene

#: The port the gateway panel shows: fixed, since it is drawn. The simulated gateway itself
#: listens on a free port the kernel picks, so that test runs side by side (other
#: worktrees, other sessions) never fight over one port.
SNAPSHOT_PORT = 25351
SIZE = (120, 34)

Scene = Callable[[Pilot[int]], Awaitable[None]]
SnapCompare = Callable[..., bool]


def frozen(scene: Scene) -> Callable[[Pilot[int]], Awaitable[None]]:
    async def run_before(pilot: Pilot[int]) -> None:
        await scene(pilot)
        app = pilot.app
        assert isinstance(app, NatDeckApp)
        freeze(app, port=SNAPSHOT_PORT)
        await pilot.pause()

    return run_before


def test_main_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(snapshot=True), terminal_size=SIZE,
                        run_before=frozen(main_scene))


def test_map_dialog_with_mistakes(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(snapshot=True), terminal_size=SIZE,
                        run_before=frozen(map_dialog_scene))


def test_help_screen(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(snapshot=True), terminal_size=SIZE,
                        run_before=frozen(help_scene))


def test_error_state(snap_compare: SnapCompare) -> None:
    assert snap_compare(demo_app(snapshot=True), terminal_size=SIZE,
                        run_before=frozen(error_scene))


async def error_scene_without_toasts(pilot: Pilot[int]) -> None:
    await frozen(error_scene)(pilot)
    pilot.app.clear_notifications()  # at 80 columns they would hide the table
    await pilot.pause()


def test_error_state_at_80x24(snap_compare: SnapCompare) -> None:
    # A failing row at 80 columns: its State cell says "failed" whole, the line under the
    # table says why.
    assert snap_compare(demo_app(snapshot=True), terminal_size=(80, 24),
                        run_before=error_scene_without_toasts)
