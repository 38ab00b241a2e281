"""NatDeckApp: watch a gateway and its mappings, map and unmap ports with one key.

The app owns one long-lived engine worker (:meth:`NatDeckApp.run_engine`, an
async worker in the ``engine`` group) that runs the
:class:`~engine.manager.MappingManager` and talks to the network; key actions
put commands on its queue and its findings come back as messages
(:mod:`tui.messages`). The UI only reads the manager's in-memory state: one
``set_interval`` tick a second repaints the countdowns, updating only the
cells that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable

from engine.errors import NatDeckError
from engine.events import (
    Event,
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayUnreachable,
    ManagedMapping,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRemoved,
    MappingRenewalFailed,
)
from engine.manager import CLOSE_DEADLINE, MappingManager

from .backend import EngineFactory, using
from .engine_link import (
    AddMapping,
    ChangeExternalAddress,
    Command,
    EngineLink,
    ProbeGateway,
    Quit,
    RefreshExternalAddress,
    RemoveMapping,
    RenewMapping,
    RestartGateway,
)
from .formatting import clock_time, countdown
from .heap import HeapSettler
from .log_bridge import EngineLogHandler, EngineLogTap
from .map_request import MapRequest, Via
from .mapping_detail import Asked, detail_lines
from .messages import (
    CommandDone,
    CommandFailed,
    EngineEvent,
    EngineStarted,
    EngineStopped,
    LogLine,
)
from .presentation import EngineNote, gateway_lines, other_port
from .safe_text import sanitize
from .screens import HelpScreen, MainScreen, MapDialog
from .screens.help import KeyHelp
from .screens.router import RouterScreen, show_in_table

__all__ = ["NatDeckApp"]

#: Events that arrive within this many seconds are shown with one repaint of the table.
FLUSH_DELAY = 0.1

#: How long closing the app waits for the engine worker to leave the manager: the
#: manager's own deadline for deleting the mappings, and a little more.
CLOSE_WAIT = CLOSE_DEADLINE + 1.0

_DEMO_ACTIONS = frozenset({"demo_restart", "demo_address"})

_EVENT_STYLE: dict[type[Event], str] = {
    MappingAdded: "green",
    MappingRecovered: "green",
    MappingRemoved: "",
    MappingLost: "bold red",
    MappingFailed: "bold red",
    MappingRenewalFailed: "yellow",
    ExternalAddressChanged: "bold cyan",
    GatewayRestarted: "bold yellow",
    GatewayUnreachable: "bold red",
    GatewayReachable: "green",
}


class NatDeckApp(App[int]):
    """The natdeck terminal UI.

    Give it a :class:`~engine.manager.MappingManager` that is not yet entered
    (the engine worker enters it, and leaving it on quit deletes the mappings
    unless the manager keeps them), or an ``engine`` factory that builds one
    (the demo's, which also starts the simulated gateway on the app's loop).

    ``initial_maps`` are requested once the manager runs. ``clock`` returns the
    manager's time (``loop.time()`` by default) and ``timestamp`` formats the
    event log's wall-clock stamps; tests fix both for stable snapshots. Records
    of the ``engine`` logger at ``engine_log_level`` and above (by default INFO:
    retransmissions, dropped packets) are shown in the event log.
    """

    CSS_PATH = "natdeck.tcss"
    TITLE = "natdeck"

    def __init__(self, manager: MappingManager | None = None, *,
                 engine: EngineFactory | None = None, demo: bool = False,
                 initial_maps: Sequence[MapRequest] = (), via: Via = "auto",
                 clock: Callable[[], float] | None = None,
                 timestamp: Callable[[float], str] = clock_time,
                 tick: float = 1.0, engine_log_level: int = logging.INFO) -> None:
        super().__init__()
        if engine is None:
            if manager is None:
                raise ValueError("give NatDeckApp a MappingManager or an engine factory")
            engine = using(manager)
        self.manager: MappingManager | None = manager
        self.demo = demo
        self.via: Via = via
        self.clock = clock
        self.tick_interval = tick
        self.link = EngineLink(engine, self.post_message, initial=initial_maps)
        self.main = MainScreen(timestamp=timestamp, clock=self.now)
        for request in initial_maps:
            self._remember(request)
        self.note: EngineNote | None = EngineNote("Starting the engine…", "dim")
        self.engine_running = False
        """Whether the engine worker is running (from mount until it stops)."""
        self.engine_started = False
        """Whether the manager has been entered (the gateway panel shows its status)."""
        self.engine_error: BaseException | None = None
        self._force_quit = False
        self.left_behind = 0
        """Mappings left open at the gateway when a second q stopped the deletes."""
        self._dirty: dict[MappingKey, None] = {}
        """Mappings that had an event since the last repaint, in the order of the events
        (a new row goes where its first event puts it)."""
        self._pending_lines: list[tuple[float, str, str]] = []
        self._flush_timer: Timer | None = None
        self.heap = HeapSettler()
        self._log_tap = EngineLogTap(EngineLogHandler(self.post_message, engine_log_level),
                                     engine_log_level)
        if demo:
            self.sub_title = "demo"
            self.main.panel.border_subtitle = "demo: a simulated gateway on loopback"

    # -- lifecycle -------------------------------------------------------------------------

    def get_default_screen(self) -> Screen[None]:
        return self.main

    def on_mount(self) -> None:
        self._log_tap.attach()
        self.set_interval(self.tick_interval, self.refresh_view, name="natdeck-tick")
        self.engine_running = True
        self.run_engine()
        self.refresh_view()

    async def on_unmount(self) -> None:
        # Textual cancels the workers when the app closes but does not wait for them.
        # Give the engine worker the time its manager takes to delete the mappings
        # (the app may be closing by another way than q: the palette, app.exit(), a
        # test ending), unless the user already asked to quit without waiting.
        if self.engine_running and not self._force_quit:
            wait = CLOSE_WAIT if self.manager is None else self.manager.close_deadline + 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.link.finished.wait(), wait)
        self._log_tap.detach()

    @work(exclusive=True, group="engine", exit_on_error=False, name="engine",
          description="runs the MappingManager and every network request")
    async def run_engine(self) -> None:
        """The engine worker: all network work happens in here."""
        await self.link.run()

    def now(self) -> float:
        """The manager's clock (loop time), or the injected one."""
        return self.clock() if self.clock is not None else asyncio.get_running_loop().time()

    def send(self, command: Command) -> bool:
        """Queue ``command`` for the engine worker; False (and a message) if it is not running."""
        if not self.engine_running:
            self.notify("Nothing was sent: natdeck's engine has stopped (the event log says "
                        "why). Press q to quit.", severity="error")
            return False
        if isinstance(command, AddMapping):
            self._remember(command.request)
        self.link.send(command)
        return True

    # -- the view --------------------------------------------------------------------------

    def refresh_view(self) -> None:
        """The tick: repaint countdowns and the gateway panel (changed cells only)."""
        now = self.now()
        with self.batch_update():
            if self.manager is not None:
                self.heap.settle(len(self.manager.mappings))
                self.main.table.sync(self.manager.mappings, now)
                self._flush_dirty(now)
            self._show_gateway(now)
            self._show_detail(now)
            self._flush_lines()

    def _show_gateway(self, now: float) -> None:
        status = self.manager.status if self.manager is not None else None
        self.main.panel.show(gateway_lines(status, now, self.note))

    def _show_detail(self, now: float) -> None:
        key = self.main.table.selected_key()
        mapping = None
        if key is not None and self.manager is not None:
            mapping = self.manager.mappings.get(key)
        asked = None if key is None else self.main.asked.get(key)
        self.main.detail.show(detail_lines(mapping, now, asked))

    def on_data_table_row_highlighted(self, message: DataTable.RowHighlighted) -> None:
        self._show_detail(self.now())

    def _remember(self, request: MapRequest) -> None:
        """Keep what this session asked for a mapping (the engine's view does not carry
        the suggested external port)."""
        key = MappingKey(int(request.protocol), request.internal_port)
        # What the engine suggests when no external port is given: the internal one.
        suggested = request.internal_port if request.external_port is None \
            else request.external_port
        self.main.asked[key] = Asked(suggested or None)

    def _note_event(self, event: Event, key: MappingKey | None) -> str:
        """Keep what an event tells about a mapping that its view does not; return what to
        add to its log line (a grant on another external port than the one suggested)."""
        if key is None:
            return ""
        if isinstance(event, MappingRemoved) or (
                isinstance(event, MappingFailed) and self.manager is not None
                and key not in self.manager.mappings):
            self.main.asked.pop(key, None)  # gone, or never granted
            return ""
        mapping = getattr(event, "mapping", None)
        if not isinstance(mapping, ManagedMapping):
            return ""
        asked = self.main.asked.setdefault(key, Asked())
        if isinstance(event, MappingAdded) and asked.first_granted_at is None:
            asked.first_granted_at = event.at
        other = other_port(mapping, asked.suggested)
        if other is None:
            return ""
        return (f" (the gateway gave external port {mapping.external_port}, "
                f"not the {other} suggested)")

    def log_line(self, wall: float, text: str, style: str = "") -> None:
        """Add a line to the event log (``text`` must be sanitized); lines are written
        with the next flush, a burst of them at once."""
        self._pending_lines.append((wall, text, style))
        self._schedule_flush()

    # -- messages from the engine worker ---------------------------------------------------

    def on_engine_started(self, message: EngineStarted) -> None:
        self.manager = message.parts.manager
        self.engine_started = True
        self.note = None
        if self.manager.keep:
            self.note = EngineNote("Mappings are kept when natdeck quits (--keep).", "dim")
        self.refresh_view()

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        text = sanitize(event.summary)
        retry_at = getattr(event, "retry_at", None)
        if isinstance(retry_at, float):
            text += f" (next try in {countdown(retry_at - event.at)})"
        key = getattr(event, "key", None)
        key = key if isinstance(key, MappingKey) else None
        text += self._note_event(event, key)
        self.log_line(event.wall, text, _EVENT_STYLE.get(type(event), ""))
        if key is not None:
            self._dirty[key] = None
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        # Any change to the table makes it repaint all its visible cells, and a line
        # added to the log makes the screen lay out again; so a burst of events (a
        # gateway restart with 1,000 mappings makes 2,000) is coalesced into one
        # repaint per FLUSH_DELAY instead of one per frame.
        if self._flush_timer is None:
            self._flush_timer = self.set_timer(FLUSH_DELAY, self._flush_view,
                                              name="natdeck-flush")

    def _flush_view(self) -> None:
        self._flush_timer = None
        now = self.now()
        with self.batch_update():
            self._flush_dirty(now)
            self._show_gateway(now)
            self._show_detail(now)
            self._flush_lines()

    def _flush_lines(self) -> None:
        lines, self._pending_lines = self._pending_lines, []
        for wall, text, style in lines:
            self.main.events.add(wall, text, style)

    def _flush_dirty(self, now: float) -> None:
        if self.manager is None:
            return
        for key in self._dirty:
            self.main.table.show_mapping(key, self.manager.mappings.get(key), now)
        self._dirty.clear()

    def on_command_done(self, message: CommandDone) -> None:
        self.log_line(time.time(), sanitize(message.text), "green")

    def on_command_failed(self, message: CommandFailed) -> None:
        error = sanitize(str(message.error))
        if not message.in_events:
            self.log_line(time.time(), f"{sanitize(message.what)} failed: {error}", "bold red")
        self.notify(error, title=f"Could not {sanitize(message.what, limit=60)}",
                    severity="error", timeout=8)

    def on_log_line(self, message: LogLine) -> None:
        self.log_line(message.wall, message.text, message.style)

    def on_engine_stopped(self, message: EngineStopped) -> None:
        self.engine_running = False
        if message.quitting:
            self._leave(0)
            return
        error = message.error
        self.engine_error = error
        if isinstance(error, NatDeckError):
            text = str(error)
        elif error is None:
            text = "the engine stopped"
        else:
            text = f"{type(error).__name__}: {error}"
        self.note = EngineNote(f"Engine stopped: {text} (press q to quit)", "bold red")
        self.log_line(time.time(), sanitize(f"engine stopped: {text}"), "bold red")
        self.notify(sanitize(text), title="The engine stopped", severity="error", timeout=10)
        self.refresh_view()

    def _leave(self, status: int) -> None:
        """Exit with ``status`` as both the app's result and its return code."""
        self.exit(status, return_code=status)

    # -- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in _DEMO_ACTIONS:
            return self.demo
        return True

    def action_map_port(self) -> None:
        """Open the map dialog; a valid form is sent to the engine."""
        lifetime = self.manager.lifetime if self.manager is not None else None

        def mapped(request: MapRequest | None) -> None:
            if request is not None:
                self.send(AddMapping(request))

        self.push_screen(MapDialog(via=self.via, lifetime=lifetime), mapped)

    def action_unmap(self) -> None:
        """Delete the selected mapping at once."""
        key = self.main.table.selected_key()
        if key is None:
            self.notify("No mapping selected to unmap; press m to map a port.",
                        severity="warning")
            return
        self.send(RemoveMapping(key))

    def action_renew(self) -> None:
        """Renew the selected mapping now."""
        key = self.main.table.selected_key()
        if key is None:
            self.notify("No mapping selected to renew; press m to map a port.",
                        severity="warning")
            return
        self.send(RenewMapping(key))

    def action_refresh_address(self) -> None:
        """Ask the gateway for its external address."""
        self.send(RefreshExternalAddress())

    def action_probe(self) -> None:
        """Probe the gateway."""
        self.send(ProbeGateway())

    def action_demo_restart(self) -> None:
        """Demo: restart the simulated gateway."""
        self.send(RestartGateway())

    def action_demo_address(self) -> None:
        """Demo: change the simulated gateway's external address."""
        self.send(ChangeExternalAddress())

    def action_router(self) -> None:
        """Open the router view: every mapping on the gateway (Enter on ours comes back
        with it selected)."""
        parts = self.link.parts
        if self.screen is not self.main or parts is None:
            return
        self.push_screen(RouterScreen(parts.router, manager=lambda: self.manager,
                                      clock=self.now, log=self.log_line),
                         partial(show_in_table, self.main.table))

    def action_help(self) -> None:
        """Show every key."""
        self.push_screen(HelpScreen(self.key_help()))

    async def action_quit(self) -> None:
        """Quit at once; the worker deletes the mappings first (unless kept).

        A second quit while that runs exits without waiting.
        """
        if not self.engine_running or self.link.quitting:
            self._force_quit = self.engine_running
            if self.engine_running:
                self.left_behind = self._not_yet_deleted()
            self._leave(1 if self.engine_error is not None else 0)
            return
        if self.manager is not None and self.manager.keep:
            self.note = EngineNote("Quitting (keeping the mappings)…", "bold")
        else:
            self._show_quit_progress()
            self.set_interval(0.2, self._show_quit_progress, name="natdeck-quit-progress")
        self.link.send(Quit())
        self.refresh_view()

    def _not_yet_deleted(self) -> int:
        """Mappings still open at the gateway as far as natdeck knows (for the exit line)."""
        if self.manager is None or self.manager.keep:
            return 0
        progress = self.manager.closing
        if progress is None:
            return len(self.manager.mappings)
        return progress.total - progress.deleted

    def _show_quit_progress(self) -> None:
        """While quitting: how many of the mappings are deleted, and how to stop waiting."""
        progress = self.manager.closing if self.manager is not None else None
        if progress is None:
            count = len(self.manager.mappings) if self.manager is not None else 0
            text = f"Quitting: deleting {count} mapping(s)…"
        else:
            text = f"Quitting: deleted {progress.deleted}/{progress.total} mapping(s)…"
        self.note = EngineNote(f"{text} (q again to quit now and leave the rest open "
                               "until they expire)", "bold")
        self.refresh_view()

    # -- keys for the help screen and the command palette ----------------------------------

    def main_keys(self) -> list[tuple[str, Binding]]:
        """natdeck's keys on the main screen (as the keymap has them now), then the app's
        own (^q, the command palette): one entry per action, with every key bound to it."""
        keys: dict[str, list[str]] = {}
        first: dict[str, Binding] = {}

        def add(action: str, binding: Binding) -> None:
            first.setdefault(action, binding)
            display = self.get_key_display(binding)
            if display not in keys.setdefault(action, []):
                keys[action].append(display)

        active = list(self.main.active_bindings.values())
        for entry in active:
            binding = entry.binding
            if entry.node is self.main and (binding.id or "").startswith("natdeck."):
                add(binding.action.removeprefix("app."), binding)
        for entry in active:
            binding = entry.binding
            if entry.node is self and binding.description and not binding.system:
                add(binding.action.removeprefix("app."), binding)
        return [(" / ".join(keys[action]), binding) for action, binding in first.items()]

    def key_help(self) -> list[KeyHelp]:
        """(keys, description, tooltip) for the help screen."""
        return [(keys, b.description, b.tooltip) for keys, b in self.main_keys()]

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if screen is not self.main:
            return
        for keys, binding in self.main_keys():
            if binding.action in ("app.quit", "quit", "command_palette"):
                continue  # Textual's own "Quit" command already calls action_quit
            yield SystemCommand(binding.description, f"{binding.tooltip} (key: {keys})",
                                partial(self.run_action, binding.action))
