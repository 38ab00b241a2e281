"""An asyncio event loop on a virtual clock, for tests of timers that run for hours.

Real sockets still work: before the loop would sleep, it polls them without
waiting; only when nothing is ready does the clock jump to the next timer.
Loopback UDP is delivered inside ``sendto``, so a simulated gateway on
127.0.0.1 answers "instantly" and a one-hour run takes a fraction of a second.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

# The UPnP stack, imported now: its first import in a process runs in a worker thread
# (engine.upnp.connection.http_stack_loading), in real time, which a virtual clock does not
# wait for (a probe's UPnP step would then end at a virtual time that depends on the machine).
import async_upnp_client.client_factory  # noqa: F401

import engine.upnp.http  # noqa: F401

T = TypeVar("T")


class _VirtualSelector:
    def __init__(self, real: selectors.BaseSelector, loop: VirtualTimeLoop, *,
                 eager: bool = False) -> None:
        self._real = real
        self._loop = loop
        self._eager = eager

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        if not self._eager:
            # A short real wait lets a worker thread (or another process) finish what it
            # was doing before the virtual clock jumps ahead of it. Code with neither
            # (``eager``) skips it: it costs a millisecond per idle point.
            events = self._real.select(0.0005)
            if events:
                return events
        if timeout is None:
            return self._real.select(None)
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """``loop.time()`` is virtual: it jumps to the next timer whenever the loop is idle."""

    def __init__(self, start: float = 1000.0, *, eager: bool = False) -> None:
        super().__init__()
        self._now = start
        real: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _VirtualSelector(real, self, eager=eager)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds > 0:
            self._now += seconds


def now() -> float:
    """The running loop's clock: virtual under :func:`run_virtual`."""
    return asyncio.get_running_loop().time()


def run_virtual(main: Callable[[], Coroutine[Any, Any, T]], *, start: float = 1000.0,
                eager: bool = False) -> T:
    """Run ``main()`` to completion on a fresh :class:`VirtualTimeLoop`.

    ``eager``: the clock jumps as soon as no socket is ready, for code with no threads
    or other processes (loopback UDP is delivered inside ``sendto``).
    """
    loop = VirtualTimeLoop(start, eager=eager)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
