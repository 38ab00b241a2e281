"""natdeck's keys as the help screen and the command palette show them: read from the live
bindings (so a remapped key shows as remapped), one entry per action."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from .app_base import NatDeckBase
from .presentation import gateway_notes
from .screens import HelpScreen
from .screens.help import KeyHelp

__all__ = ["KeyHelpers"]


class KeyHelpers(NatDeckBase):
    """The help screen (?) and the command palette's entries for natdeck's keys."""

    def action_help(self) -> None:
        """Show every key (and the gateway panel's notes in full)."""
        status = self.manager.status if self.manager is not None else None
        self.push_screen(HelpScreen(self.key_help(), gateway_notes(status)))

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
