"""The router view (key ``g``): every mapping the gateway holds, whoever made it.

While the screen is on top, a worker (group ``router-poll``) lists the gateway's
table every few seconds through a :class:`~engine.router_source.RouterListing`
and posts each :class:`~engine.router_source.Listing` as a :class:`RouterListed`
message; the screen feeds it to a :class:`~engine.router_view.RouterTable` and
shows the result. Nothing here waits on the gateway: listing and deleting run in
workers, and their answers come back as messages. When the screen is left the
worker is cancelled, so nothing is listed while nobody is watching.

Where the gateway cannot list its mappings (no UPnP IGD), the view says so and
shows what natdeck itself mapped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.widgets.data_table import RowDoesNotExist

from engine.errors import NatDeckError
from engine.events import MappingKey
from engine.manager import MappingManager
from engine.router_source import DEFAULT_INTERVAL, Listing, RouterListing, RouterPoller
from engine.router_view import (
    SORT_KEYS,
    Query,
    RouterChange,
    RouterMapping,
    RouterTable,
    SortKey,
    own_ports,
    own_rows,
    parse_query,
)

from ..presentation import short_error
from ..router_presentation import RouterStatus
from ..safe_text import sanitize
from ..widgets.router_table import RouterTableView
from .confirm_delete import ConfirmDelete
from .help import ROUTER_HELP, HelpScreen, KeyHelp
from .main import NARROW

__all__ = ["ROUTER_BINDINGS", "RouterDeleted", "RouterListed", "RouterScreen", "show_in_table"]

#: ``log(wall time, sanitized text, style)``: a line for the main event log.
LogLine = Callable[[float, str, str], None]

ROUTER_BINDINGS: list[BindingType] = [
    Binding("escape,g", "close", "Back", id="router.close",
            tooltip="Back to natdeck's own mappings"),
    Binding("s", "sort", "Sort", id="router.sort",
            tooltip="Sort by host, protocol, external port or remaining lease"),
    Binding("S", "reverse", "Reverse", id="router.reverse", key_display="S",
            tooltip="Reverse the order"),
    Binding("slash", "filter", "Filter", id="router.filter", key_display="/",
            tooltip="Filter: host:198.18.0.3, tcp, udp, a port, by:upnp, ours, others, words"),
    Binding("d", "delete", "Delete", id="router.delete",
            tooltip="Delete the selected mapping of another host (asks first)"),
    Binding("r", "refresh", "Refresh", id="router.refresh",
            tooltip="List the gateway's mappings now (after failures: the wait starts over)"),
    Binding("question_mark", "help", "Help", id="router.help", key_display="?",
            tooltip="Show the router view's keys"),
    Binding("q", "app.quit", "Quit", id="router.quit", tooltip="Quit natdeck"),
]

_CHANGE_STYLE = {"opened": "magenta", "closed": "", "changed": "yellow"}


class RouterListed(Message):
    """The router worker read the gateway's table (or failed to: ``listing.error``)."""

    def __init__(self, listing: Listing) -> None:
        super().__init__()
        self.listing = listing


class RouterDeleted(Message):
    """A delete asked from the router view finished: ``error`` is the gateway's refusal."""

    def __init__(self, mapping: RouterMapping, error: NatDeckError | None) -> None:
        super().__init__()
        self.mapping = mapping
        self.error = error


def show_in_table(table: DataTable[Text], key: MappingKey | None) -> None:
    """Put the main table's cursor on ``key``'s row (the router view's Enter on ours)."""
    if key is None:
        return
    try:
        index = table.get_row_index(str(key))
    except RowDoesNotExist:
        return
    table.move_cursor(row=index)
    table.focus()


def _gateway_identity(manager: MappingManager | None) -> tuple[object, ...] | None:
    """What, when it changes, may let a gateway that did not list its table list it now:
    its address, ours, a restart (a rebooted router), UPnP found."""
    if manager is None:
        return None
    status = manager.status
    return (status.gateway, status.local_address, status.restarts, status.speaks_upnp)


def _log_changes(log: LogLine | None, changes: list[RouterChange]) -> None:
    """Log the other hosts' comings and goings (natdeck's own are in the manager's events)."""
    if log is None:
        return
    wall = time.time()
    for change in changes:
        if change.entry.ours is None:
            log(wall, sanitize(change.sentence), _CHANGE_STYLE[change.kind])


def _own_keys(screen: RouterScreen) -> list[KeyHelp]:
    """The router view's keys, one line per action with every key bound to it: only
    ROUTER_BINDINGS (ids ``router.``). Screen's own (tab, shift+tab, ctrl+c) are Textual's,
    the same on every screen, and not what the view's help is about."""
    keys: dict[str, tuple[list[str], Binding]] = {}
    for entry in screen.active_bindings.values():
        if entry.node is screen and (entry.binding.id or "").startswith("router."):
            shown, _ = keys.setdefault(entry.binding.action, ([], entry.binding))
            shown.append(screen.app.get_key_display(entry.binding))
    return [(" / ".join(shown), b.description, b.tooltip) for shown, b in keys.values()]


class RouterScreen(Screen[MappingKey | None]):
    """Every mapping on the gateway. Dismisses with the main table's key of one of
    natdeck's own mappings (Enter on it), or None (back)."""

    BINDINGS = ROUTER_BINDINGS

    def __init__(self, source: RouterListing | None, *,
                 manager: Callable[[], MappingManager | None],
                 clock: Callable[[], float], log: LogLine | None = None,
                 interval: float = DEFAULT_INTERVAL, grace: int = 1) -> None:
        super().__init__(id="router")
        self.source = source
        self.poller = RouterPoller(source, interval=interval, clock=clock)
        self._manager = manager
        self.clock = clock
        self._log = log
        self.model = RouterTable(grace=grace)
        """The gateway's table as the last listing read it."""
        self.fallback = RouterTable()
        """natdeck's own mappings, shown while the gateway does not list its table."""
        self.unavailable: NatDeckError | None = None
        """Why the last listing failed (None after a good one)."""
        self.listed = False
        """Whether the gateway has listed its table at least once."""
        self.skipped = 0
        """Entries the last good listing held but could not read (not in the table)."""
        self._gateway_seen: tuple[object, ...] | None = None
        self.sort_by: SortKey = "host"
        self.reverse = False
        self.filter_query = Query()
        self.answer: Text | None = None
        """The gateway's answer to the last delete."""
        self.status_line = Static(id="router-status")
        self.table = RouterTableView(id="router-table", clock=clock)
        self.filter_input = Input(
            placeholder="/ filter: host:198.18.0.3 tcp 8080 · by:upnp · ours",
            id="router-filter", select_on_focus=False)

    def compose(self) -> ComposeResult:
        yield self.status_line
        yield self.table
        yield self.filter_input
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        # As on the main screen: the palette's key, docked at the footer's right end, only
        # where the keys leave it room (it covered Quit at 80 columns); ctrl+p still works.
        self.query_one(Footer).show_command_palette = event.size.width >= NARROW

    def on_mount(self) -> None:
        self.table.focus()
        self.set_interval(1.0, self.repaint, name="router-tick")
        self.repaint()

    def on_screen_resume(self) -> None:
        self.poll()

    def on_screen_suspend(self) -> None:
        self.workers.cancel_group(self, "router-poll")

    @work(exclusive=True, group="router-poll", exit_on_error=False, name="router-poll",
          description="lists the gateway's mappings while the router view is open")
    async def poll(self) -> None:
        """The listing worker: one listing every interval, each posted as a message."""
        async for listing in self.poller.watch():
            self.post_message(RouterListed(listing))

    # -- what the worker found -------------------------------------------------------------

    def _mark_ours(self) -> RouterTable:
        manager = self._manager()
        seen = _gateway_identity(manager)
        if seen != self._gateway_seen:
            if self._gateway_seen is not None:
                self.poller.reset()  # it may list now: end the back-off
            self._gateway_seen = seen
        mappings = list(manager.mappings.values()) if manager is not None else []
        local = manager.status.local_address if manager is not None else None
        addresses = {str(local)} if local is not None else set()
        own = own_ports(mappings)
        self.model.set_ours(addresses, own)
        self.fallback.set_ours(addresses, own)
        if self.listed:
            return self.model
        now = self.clock()
        self.fallback.update(own_rows(mappings, str(local) if local else "?", now), now)
        return self.fallback

    def on_router_listed(self, message: RouterListed) -> None:
        listing = message.listing
        if listing.rows is None:
            self.unavailable = listing.error
        else:
            self.unavailable = None
            self.listed = True
            self.skipped = listing.skipped
            self._mark_ours()
            changes = self.model.update(listing.rows, listing.at)
            _log_changes(self._log, changes)
        self.repaint()

    # -- the view --------------------------------------------------------------------------

    def repaint(self) -> None:
        """Show the table as it is now (the tick, and after each listing)."""
        table = self._mark_ours()
        now = self.clock()
        entries = table.view(now, self.filter_query, self.sort_by, self.reverse)
        status = RouterStatus(
            table.summary(), self.sort_by, self.reverse,
            None if self.filter_query.empty else self.filter_input.value, len(entries),
            self.listed, self.unavailable, self.answer, self.poller.interval,
            None if self.source is None or self.unavailable is None
            else self.poller.next_in() or 0.0, self.skipped)
        with self.app.batch_update():
            self.table.sync(entries, now)
            self.status_line.update(status.text())

    # -- keys ------------------------------------------------------------------------------

    def action_close(self) -> None:
        """Back to the main screen (from the filter: back to the table)."""
        if self.filter_input.has_focus:
            self.table.focus()
            return
        self.dismiss(None)

    def action_help(self) -> None:
        """Show this view's keys and what the view shows."""
        self.app.push_screen(HelpScreen(_own_keys(self), body=ROUTER_HELP))

    def action_sort(self) -> None:
        """Sort by the next key."""
        self.sort_by = SORT_KEYS[(SORT_KEYS.index(self.sort_by) + 1) % len(SORT_KEYS)]
        self.repaint()

    def action_reverse(self) -> None:
        """Reverse the order."""
        self.reverse = not self.reverse
        self.repaint()

    def action_filter(self) -> None:
        """Type a filter."""
        self.filter_input.focus()

    def action_refresh(self) -> None:
        """List now."""
        self.poller.wake()

    @on(Input.Changed, "#router-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        try:
            self.filter_query = parse_query(event.value)
        except ValueError as error:
            self.filter_input.set_class(True, "-invalid")
            self.notify(sanitize(str(error)), title="Filter", severity="warning", timeout=4)
            return
        self.filter_input.set_class(False, "-invalid")
        self.repaint()

    @on(Input.Submitted, "#router-filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    @on(DataTable.RowSelected, "#router-table")
    def _row_selected(self) -> None:
        entry = self.table.selected()
        if entry is None:
            return
        if entry.ours is None:
            self.notify("Not one of natdeck's mappings: only those are in the main table.",
                        severity="information", timeout=4)
            return
        self.dismiss(entry.ours)

    def action_delete(self) -> None:
        """Delete the selected mapping, after a confirmation."""
        entry = self.table.selected()
        if entry is None:
            self.notify("No mapping selected.", severity="warning")
            return
        if not self.listed or self.source is None:
            self.notify("This gateway does not list its mappings, so natdeck cannot delete "
                        "another host's; unmap natdeck's own in the main table (d).",
                        severity="warning", timeout=6)
            return
        if entry.ours is not None:
            self.notify(f"{entry.ours} is natdeck's own: unmap it in the main table (d), "
                        "or natdeck would map it again.", severity="warning", timeout=6)
            return
        if entry.gone_at is not None:
            self.notify("That mapping is gone already.", severity="warning")
            return
        mapping = entry.mapping

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.answer = Text(f"Deleting {sanitize(mapping.label)} of "
                                   f"{sanitize(str(mapping.internal_client))}…", style="dim")
                self.repaint()
                self.delete(mapping)

        self.app.push_screen(ConfirmDelete(entry), confirmed)

    @work(group="router-delete", exit_on_error=False, name="router-delete",
          description="asks the gateway to delete one mapping")
    async def delete(self, mapping: RouterMapping) -> None:
        """Ask the gateway to delete ``mapping``; its answer comes back as a message."""
        source = self.source
        if source is None:
            return
        error: NatDeckError | None = None
        try:
            async with asyncio.timeout(self.poller.timeout):
                await source.delete_mapping(mapping)
        except NatDeckError as refused:
            error = refused
        except (TimeoutError, OSError, ValueError) as exc:
            error = NatDeckError(f"delete {mapping.label} of {mapping.internal_client}: "
                                 f"{exc or 'no answer in time'}")
        self.post_message(RouterDeleted(mapping, error))

    def on_router_deleted(self, message: RouterDeleted) -> None:
        m = message.mapping
        what = f"{sanitize(m.label)} of {sanitize(str(m.internal_client))}"
        if message.error is None:
            text = f"deleted {what}: the gateway said OK"
            self.answer = Text(f"Gateway's answer: deleted {what}.", style="green")
            self.model.forget(m.key, self.clock())
            self.poller.wake()
            style = "green"
        else:
            error = sanitize(str(message.error))
            text = f"could not delete {what}: {error}"
            self.answer = Text(f"Gateway's answer: {error}", style="bold red")
            # As the main screen's failures: a toast is half the screen wide, and the whole
            # sentence covered the table below NARROW; the line above the table keeps it.
            toast = short_error(message.error) if self.app.size.width < NARROW else error
            self.notify(toast, title="The gateway refused", severity="error", timeout=8)
            style = "bold red"
        if self._log is not None:
            self._log(time.time(), text, style)
        self.repaint()
