"""The main screen: the gateway panel, the mappings table, the event log, the footer.

Its keys live here rather than on the app, so that a dialog on top does not
see them; their actions run on the app (``app.`` prefix), which owns the
engine worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from engine.events import MappingKey

from ..formatting import clock_time
from ..mapping_detail import Asked
from ..widgets import EventLog, GatewayPanel, MappingDetail, MappingsTable

__all__ = ["MAIN_BINDINGS", "MainScreen"]

MAIN_BINDINGS: list[BindingType] = [
    Binding("m", "app.map_port", "Map", id="natdeck.map",
            tooltip="Map a port: protocol, internal port, suggested external port, lifetime, "
            "auto, PCP, NAT-PMP or UPnP"),
    Binding("d", "app.unmap", "Unmap", id="natdeck.unmap",
            tooltip="Delete the selected mapping at the gateway now (no confirmation)"),
    Binding("r", "app.renew", "Renew", id="natdeck.renew",
            tooltip="Renew the selected mapping now (or ask for it again if lost, confirming or "
            "failed)"),
    Binding("e", "app.refresh_address", "Address", id="natdeck.external_address",
            tooltip="Ask the gateway for its external address now"),
    Binding("p", "app.probe", "Probe", id="natdeck.probe",
            tooltip="Probe the gateway: which of PCP, NAT-PMP, UPnP answer; epoch, RTT"),
    Binding("g", "app.router", "Router", id="natdeck.router",
            tooltip="Every mapping on the gateway, whoever made it (listed by UPnP)"),
    Binding("R", "app.demo_restart", "Restart GW", id="natdeck.demo_restart", key_display="R",
            tooltip="Demo: make the simulated gateway reboot and lose its mappings"),
    Binding("A", "app.demo_address", "New address", id="natdeck.demo_address",
            key_display="A",
            tooltip="Demo: give the simulated gateway a new external address (it announces it)"),
    Binding("question_mark", "app.help", "Help", id="natdeck.help", key_display="?",
            tooltip="Show every key and what the mapping states mean"),
    Binding("q", "app.quit", "Quit", id="natdeck.quit",
            tooltip="Quit now, deleting this session's mappings (unless started with --keep); "
            "press again to quit without waiting"),
]


#: Bindings shown in the footer only from this many columns on (they work at every width,
#: and stay in help and the palette). The demo's two keys from 112: every key then takes
#: 100 columns, and from NARROW on the palette's key (12) is docked at the right end, where
#: it would cover Help and Quit.
_SHOWN_FROM = {"natdeck.demo_restart": 112, "natdeck.demo_address": 112,
               "natdeck.external_address": 70}

#: Below this many columns the footer drops the palette key and the demo keys (they stay
#: in help and the palette), and below COMPACT its padding, so every key shown fits; the
#: gateway panel, which wraps there, drops its border and the detail line is cut to two
#: lines, so the table keeps room for rows. Below NARROW the State column says each state
#: in a word (the detail line has the reason), so that a failing row fits 80 columns.
NARROW = 100
COMPACT = 70


class MainScreen(Screen[None]):
    """The one screen that is always there.

    ``asked`` is what this session knows of each mapping beyond the engine's view (the
    app fills it); the table and the detail line read it.
    """

    BINDINGS = MAIN_BINDINGS

    def __init__(self, *, timestamp: Callable[[float], str] = clock_time,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(id="main")
        self.asked: dict[MappingKey, Asked] = {}
        self.panel = GatewayPanel(id="gateway")
        self.table = MappingsTable(id="mappings", clock=clock, asked=self.asked)
        self.detail = MappingDetail(id="detail")
        self.events = EventLog(id="events", timestamp=timestamp)
        self.footer = Footer()

    def compose(self) -> ComposeResult:
        yield self.panel
        yield self.table
        yield self.detail
        yield self.events
        yield self.footer

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW
        compact = event.size.width < COMPACT
        self.footer.compact = compact
        self.footer.show_command_palette = not narrow
        self.set_class(narrow, "-narrow")
        self.set_class(compact, "-compact")
        self.table.set_brief_states(narrow)
        bindings = self._bindings.key_to_bindings
        for key, entries in bindings.items():
            bindings[key] = [replace(b, show=event.size.width >= _SHOWN_FROM[b.id])
                             if b.id in _SHOWN_FROM else b for b in entries]
        self.refresh_bindings()
