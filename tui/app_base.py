"""What every part of :class:`~tui.app.NatDeckApp` builds on: its state, its life, its view.

:class:`NatDeckBase` holds what the app knows (the manager, the engine link, the main screen,
what this session asked for), starts the one engine worker on mount, and repaints: the tick
(``refresh_view``) and the coalesced flush of the table rows and log lines that events
touched. The engine's messages (:mod:`tui.app_events`), the key actions
(:mod:`tui.app_actions`), quitting (:mod:`tui.app_quit`) and the key help
(:mod:`tui.app_keys`) are the other parts, each a mixin on this base.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from textual import work
from textual.app import App
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable

from engine.events import MappingKey
from engine.manager import MappingManager

from .backend import EngineFactory, using
from .engine_link import AddMapping, Command, EngineLink
from .formatting import clock_time
from .heap import HeapSettler
from .log_bridge import EngineLogHandler, EngineLogTap
from .map_request import MapRequest, Via
from .mapping_detail import Asked, detail_lines
from .presentation import EngineNote, gateway_lines
from .safe_text import sanitize
from .screens import MainScreen

__all__ = ["FLUSH_DELAY", "NatDeckBase"]

#: Events that arrive within this many seconds are shown with one repaint of the table.
FLUSH_DELAY = 0.1


class NatDeckBase(App[int]):
    """The state, lifecycle and view of the natdeck app (see :class:`~tui.app.NatDeckApp`)."""

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
        self.force_quit = False
        """Whether a second q asked to exit without waiting for the deletes."""
        self._records_error: str | None = None
        """The state file's write error last shown (the toast is for a new one)."""
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
        records_error = self.manager.records.error if self.manager is not None else None
        self._warn_records(records_error)
        self.main.panel.show(gateway_lines(status, now, self.note,
                                           narrow=self.main.has_class("-compact"),
                                           records_error=records_error))

    def _warn_records(self, error: str | None) -> None:
        """Toast once when the state file stops being written (the panel line stays while
        it lasts): the mappings made meanwhile are unknown to 'natdeck unmap'."""
        if error is not None and self._records_error is None:
            self.notify(f"{sanitize(error, limit=120)}. 'natdeck unmap' will not know the "
                        "mappings made meanwhile; natdeck keeps trying.",
                        title="Could not write the state file", severity="warning",
                        timeout=10)
        self._records_error = error

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

    def log_line(self, wall: float, text: str, style: str = "") -> None:
        """Add a line to the event log (``text`` must be sanitized); lines are written
        with the next flush, a burst of them at once."""
        self._pending_lines.append((wall, text, style))
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

    def _leave(self, status: int) -> None:
        """Exit with ``status`` as both the app's result and its return code."""
        self.exit(status, return_code=status)
