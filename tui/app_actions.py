"""The key actions of :class:`~tui.app.NatDeckApp` on its main screen: each sends one
command to the engine worker, or opens a screen (the map dialog, the router view)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from .app_base import NatDeckBase
from .engine_link import (
    AddMapping,
    ChangeExternalAddress,
    ProbeGateway,
    RefreshExternalAddress,
    RemoveMapping,
    RenewMapping,
    RestartGateway,
)
from .map_request import MapRequest
from .screens import MapDialog
from .screens.router import RouterScreen, show_in_table

if TYPE_CHECKING:
    from engine.events import MappingKey

__all__ = ["KeyActions"]

_DEMO_ACTIONS = frozenset({"demo_restart", "demo_address"})


class KeyActions(NatDeckBase):
    """``action_*`` for natdeck's keys (the bindings are the main screen's)."""

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
        key = self._selected("unmap")
        if key is not None:
            self.send(RemoveMapping(key))

    def action_renew(self) -> None:
        """Renew the selected mapping now."""
        key = self._selected("renew")
        if key is not None:
            self.send(RenewMapping(key))

    def _selected(self, verb: str) -> MappingKey | None:
        """The mapping under the cursor; with none, a warning saying what could not be done."""
        key = self.main.table.selected_key()
        if key is None:
            self.notify(f"No mapping selected to {verb}; press m to map a port.",
                        severity="warning")
        return key

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
