"""What the app runs: a MappingManager (and, in demo mode, the simulated gateway).

The app is given an :data:`EngineFactory`: an async context manager, entered
by the app's one engine worker, that yields the parts to run. Entering it may
start things (the demo starts the simulated gateway there, on the worker's
event loop); leaving it stops them. The worker itself enters the manager, so
that it can subscribe to the manager's events before the first one happens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from engine.manager import MappingManager
from engine.router_source import RouterListing

__all__ = ["DemoControls", "EngineFactory", "EngineParts", "using"]


class DemoControls(Protocol):
    """What the demo keys can do to a simulated gateway. Each returns a line for the log."""

    async def restart(self) -> str:
        """Make the gateway lose its state, as a reboot does."""
        ...

    async def change_external_address(self) -> str:
        """Give the gateway a new external address (it announces the change)."""
        ...


@dataclass(frozen=True, slots=True)
class EngineParts:
    """A manager, not yet entered, and the demo gateway's controls when there is one;
    ``router`` lists the gateway's whole table for the router view (None: it cannot)."""

    manager: MappingManager
    demo: DemoControls | None = None
    router: RouterListing | None = None


EngineFactory = Callable[[], AbstractAsyncContextManager[EngineParts]]


def using(manager: MappingManager, demo: DemoControls | None = None) -> EngineFactory:
    """A factory that yields ``manager`` (and ``demo``) as they are: for a manager built
    by the caller, on a loop the caller runs (tests, or :func:`tui.launch.run_app`)."""

    @asynccontextmanager
    async def factory() -> AsyncIterator[EngineParts]:
        yield EngineParts(manager, demo)

    return factory
