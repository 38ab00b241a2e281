"""The main screen: the gateway panel, the mappings table, the event log, the footer.

Its keys live here rather than on the app, so that a dialog on top does not
see them; their actions run on the app (``app.`` prefix), which owns the
engine worker.
"""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from ..formatting import clock_time
from ..widgets import EventLog, GatewayPanel, MappingsTable

__all__ = ["MAIN_BINDINGS", "MainScreen"]

MAIN_BINDINGS: list[BindingType] = [
    Binding("m", "app.map_port", "Map", id="natdeck.map",
            tooltip="Map a port: protocol, internal port, suggested external port, lifetime, "
            "PCP or NAT-PMP"),
    Binding("d", "app.unmap", "Unmap", id="natdeck.unmap",
            tooltip="Delete the selected mapping at the gateway now (no confirmation)"),
    Binding("r", "app.renew", "Renew", id="natdeck.renew",
            tooltip="Renew the selected mapping now (or request it again if lost or failed)"),
    Binding("e", "app.refresh_address", "Ext. address", id="natdeck.external_address",
            tooltip="Ask the gateway for its external address now"),
    Binding("p", "app.probe", "Probe", id="natdeck.probe",
            tooltip="Probe the gateway: which of PCP and NAT-PMP it answers, epoch, RTT"),
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


class MainScreen(Screen[None]):
    """The one screen that is always there."""

    BINDINGS = MAIN_BINDINGS

    def __init__(self, *, timestamp: Callable[[float], str] = clock_time,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(id="main")
        self.panel = GatewayPanel(id="gateway")
        self.table = MappingsTable(id="mappings", clock=clock)
        self.events = EventLog(id="events", timestamp=timestamp)

    def compose(self) -> ComposeResult:
        yield self.panel
        yield self.table
        yield self.events
        yield Footer()
