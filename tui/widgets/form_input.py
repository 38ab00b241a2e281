"""An input field that applies every key in the order it arrives, however fast keys come.

Textual's :class:`~textual.widgets.Input` inserts a printable key as soon as the
key reaches it, but its editing keys (backspace, delete, home, ctrl+u, …) are
bindings, which Textual resolves only once the key has bubbled from the input
through each of its ancestors' message queues back to the app. Keys that
arrive in one read from the terminal (``tmux send-keys BSpace 70000``, a fast
typist, a paste without bracketed paste) are forwarded to the input before
that round trip ends, so printable keys overtake the editing key before them:
a field holding ``0`` became ``07000`` (the backspace ran last) and tcp 7000
was mapped. :class:`FormInput` runs its own bindings when the key reaches it,
in its own queue, so every key applies in order.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input

__all__ = ["FormInput"]


class FormInput(Input):
    """An :class:`~textual.widgets.Input` whose editing keys apply in arrival order."""

    async def _on_key(self, event: events.Key) -> None:
        if not event.is_printable:
            for binding in self._bindings.key_to_bindings.get(event.key, ()):
                if not binding.priority and await self.app.run_action(binding.action, self):
                    event.stop()
                    event.prevent_default()
                    return
        # Printable keys: Input._on_key (called next by Textual's dispatch) inserts them.
