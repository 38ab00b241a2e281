"""The entry point the ``natdeck`` command calls to open the terminal UI.

:func:`run_app` resolves the gateway (``--demo``: a simulated one in this
process; else discovery, explicit ``--gateway``/``--local`` winning), builds
the app and runs it. Problems found before the UI starts (no gateway, a bad
address) are printed as one sentence, not a traceback; everything after that
is shown in the UI.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from engine.discovery import discover
from engine.errors import NoGatewayError
from engine.manager import MappingManager
from engine.protocols import as_protocol
from engine.statefile import StateFile
from engine.upnp import SSDP_PORT

from .backend import EngineFactory, EngineParts
from .exit_codes import EXIT_NO_GATEWAY, EXIT_OK, EXIT_USAGE
from .map_request import VIAS, MapRequest, Via
from .safe_text import sanitize

if TYPE_CHECKING:
    from .app import NatDeckApp

__all__ = ["EXIT_NO_GATEWAY", "EXIT_USAGE", "build_app", "left_open", "run_app", "still_open_note"]

#: How long quitting may spend deleting the mappings (a second q stops sooner).
QUIT_DEADLINE = 60.0


def _requests(maps: Sequence[tuple[int, int]]) -> list[MapRequest]:
    return [MapRequest(as_protocol(protocol), port) for protocol, port in maps]


def _checked_via(via: str) -> Via:
    for candidate in VIAS:
        if via == candidate:
            return candidate
    raise ValueError(f"via must be one of {', '.join(VIAS)}, not {via!r}")


def _real_engine(gateway: str, local: str, gateway_port: int, via: Via,
                 keep: bool, ssdp_port: int = SSDP_PORT) -> EngineFactory:
    @asynccontextmanager
    async def factory() -> AsyncIterator[EngineParts]:
        # Built on the worker's loop: the manager's sockets belong to it. The router view
        # lists the gateway's UPnP IGD (nothing is sent before the view opens).
        # Mappings are recorded in the state file `natdeck map` uses, so that `natdeck
        # unmap` can delete (with the PCP nonce) what --keep or an interrupted quit left
        # open. On q the deletes may take up to QUIT_DEADLINE; a second q stops waiting.
        from engine.router_source import UpnpRouterListing

        # Both search the gateway's IGD on ssdp_port (--ssdp-port: a simulated IGD's).
        router = UpnpRouterListing.on(gateway, ssdp_port=ssdp_port, local_address=local)
        try:
            yield EngineParts(MappingManager(gateway, gateway_port=gateway_port,
                                             local_address=local, via=via, keep=keep,
                                             state_file=StateFile(),
                                             close_deadline=QUIT_DEADLINE,
                                             ssdp_port=ssdp_port),
                              router=router)
        finally:
            await router.close()

    return factory


def build_app(*, gateway: str | None, local: str | None, gateway_port: int = 5351,
              demo: bool, maps: Sequence[tuple[int, int]] = (), keep: bool = False,
              via: str = "auto", ssdp_port: int = SSDP_PORT) -> NatDeckApp:
    """The app :func:`run_app` would run (``NatDeckApp``), without running it.

    ``ssdp_port`` is where the gateway's UPnP IGD answers SSDP searches (``--ssdp-port``;
    the demo's simulated IGD has its own).

    Raises :class:`~engine.errors.NoGatewayError` when discovery finds no gateway and
    ``ValueError`` for a bad address or ``via``.
    """
    from .app import NatDeckApp  # Textual is imported only when the UI is wanted

    chosen = _checked_via(via)
    requests = _requests(maps)
    if demo:
        from .demo import DEMO_MAPS, DemoOptions, demo_engine

        wanted = {(int(r.protocol), r.internal_port) for r in requests}
        initial = [r for r in DEMO_MAPS if (int(r.protocol), r.internal_port) not in wanted]
        options = DemoOptions(keep=keep, via=chosen)
        return NatDeckApp(engine=lambda: demo_engine(options), demo=True,
                          initial_maps=[*initial, *requests], via=chosen)
    found = discover(gateway=gateway, local_address=local)
    return NatDeckApp(engine=_real_engine(str(found.gateway), str(found.local_address),
                                          gateway_port, chosen, keep, ssdp_port),
                      initial_maps=requests, via=chosen)


def left_open(app: NatDeckApp) -> int:
    """How many mappings quitting left open (not kept on purpose): a second q stopped the
    deletes, or the gateway did not answer them by the deadline."""
    closed = app.link.closed
    if closed is not None and not closed.kept:
        return len(closed.left)
    return app.left_behind


def run_app(*, gateway: str | None, local: str | None, gateway_port: int = 5351,
            demo: bool, maps: Sequence[tuple[int, int]] = (), keep: bool = False,
            via: str = "auto", ssdp_port: int = SSDP_PORT) -> int:
    """Open the terminal UI; return the exit status (0 after a normal quit).

    ``maps`` are (IP protocol number, internal port) pairs mapped at start;
    ``keep`` leaves the mappings at the gateway on quit; ``via`` is auto, pcp, natpmp or
    upnp; ``ssdp_port`` is where the gateway's UPnP IGD answers SSDP searches. With
    ``demo`` the gateway is simulated in this process and nothing leaves the machine.
    """
    try:
        app = build_app(gateway=gateway, local=local, gateway_port=gateway_port, demo=demo,
                        maps=maps, keep=keep, via=via, ssdp_port=ssdp_port)
    except NoGatewayError as exc:
        print(f"natdeck: {exc}", file=sys.stderr)
        return EXIT_NO_GATEWAY
    except ValueError as exc:
        print(f"natdeck: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = app.run()
    if app.engine_error is not None:
        print(f"natdeck: {app.engine_error}", file=sys.stderr)
    note = still_open_note(app)
    if note is not None:
        print(f"natdeck: {note}", file=sys.stderr)
    return EXIT_OK if status is None else int(status)


def still_open_note(app: NatDeckApp) -> str | None:
    """What the exit says of the mappings quitting left open (None: it left none).

    'natdeck unmap' finds only what the state file holds: it is offered only if the
    records' last write succeeded (``manager.records.error``), else the error is said.
    """
    left = left_open(app)
    if not left:
        return None
    head = f"{left} mapping(s) are still open at the gateway until they expire; "
    error = app.manager.records.error if app.manager is not None else None
    if error is None:
        return head + "'natdeck unmap' can delete them (they are in its state file)"
    return head + (f"their records could not be written to the state file "
                   f"({sanitize(error)}), so 'natdeck unmap' may not know them")
