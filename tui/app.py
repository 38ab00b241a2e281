"""NatDeckApp: watch a gateway and its mappings, map and unmap ports with one key.

The app owns one long-lived engine worker (:meth:`NatDeckApp.run_engine`, an
async worker in the ``engine`` group) that runs the
:class:`~engine.manager.MappingManager` and talks to the network; key actions
put commands on its queue and its findings come back as messages
(:mod:`tui.messages`). The UI only reads the manager's in-memory state: one
``set_interval`` tick a second repaints the countdowns, updating only the
cells that changed.

The class is put together from its parts, one module each: :mod:`tui.app_base` (state,
lifecycle, the view and its coalesced flush), :mod:`tui.app_events` (the engine worker's
messages), :mod:`tui.app_actions` (the keys' actions), :mod:`tui.app_quit` (q, a second q,
the wait on close) and :mod:`tui.app_keys` (the help screen and the command palette).
"""

from __future__ import annotations

from .app_actions import KeyActions
from .app_base import FLUSH_DELAY
from .app_events import EngineMessages
from .app_keys import KeyHelpers
from .app_quit import CLOSE_WAIT, Quitting

__all__ = ["CLOSE_WAIT", "FLUSH_DELAY", "NatDeckApp"]


class NatDeckApp(EngineMessages, KeyActions, Quitting, KeyHelpers):
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
