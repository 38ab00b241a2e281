"""A MappingManager wired to a SimulatedGateway on loopback, for tests and benchmarks.

Both run on the same event loop; under :func:`tests.support.virtual_time.run_virtual`
they share its virtual clock, so hours of renewals take a moment. Announcements go
unicast from the simulator to a free loopback port the manager listens on (the
stand-in for 224.0.0.1:5350); nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from engine.errors import MalformedPacket
from engine.events import Event, MappingKey
from engine.manager import MappingManager
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.wire import natpmp, pcp
from tests.support.loopback import LOOPBACK, free_udp_port
from tests.support.virtual_time import run_virtual

E = TypeVar("E", bound=Event)
T = TypeVar("T")

__all__ = ["LOOPBACK", "Arrival", "EventLog", "Rig", "Tap", "free_udp_port", "open_fds",
           "other_tasks", "rig", "run_fast_virtual"]


def run_fast_virtual(main: Callable[[], Coroutine[Any, Any, T]], *,
                     start: float = 1000.0) -> T:
    """Like :func:`~tests.support.virtual_time.run_virtual`, for code that uses no threads."""
    return run_virtual(main, start=start, eager=True)


def open_fds() -> int:
    """File descriptors this process holds (Linux)."""
    return len(os.listdir("/proc/self/fd"))


def other_tasks() -> set[asyncio.Task[Any]]:
    """Every task on the running loop but the caller's."""
    return asyncio.all_tasks() - {asyncio.current_task()}


@dataclass(frozen=True, slots=True)
class Arrival:
    """One datagram that reached the simulated gateway, classified once on arrival."""

    at: float
    raw: bytes
    kind: str
    """"pcp_map", "natpmp_map" or "other"."""
    internal_port: int | None

    @classmethod
    def of(cls, at: float, raw: bytes) -> Arrival:
        """Classify ``raw``: a MAP of either protocol (with its internal port), or other."""
        try:
            if raw[:1] == bytes([pcp.PCP_VERSION]) and len(raw) > 1 \
                    and raw[1] & 0x7F == pcp.Opcode.MAP:
                request = pcp.decode_request(raw)
                assert isinstance(request.data, pcp.MapData)
                return cls(at, raw, "pcp_map", request.data.internal_port)
            if raw[:1] == b"\x00" and len(raw) == 12:
                legacy = natpmp.decode_request(raw)
                if isinstance(legacy, natpmp.MapPacket):
                    return cls(at, raw, "natpmp_map", legacy.internal_port)
        except MalformedPacket:
            pass
        return cls(at, raw, "other", None)

    @property
    def pcp_map(self) -> pcp.Request | None:
        """The PCP MAP request it carries, if it is one."""
        return pcp.decode_request(self.raw) if self.kind == "pcp_map" else None

    @property
    def natpmp_map(self) -> natpmp.MapPacket | None:
        """The NAT-PMP map request it carries, if it is one."""
        if self.kind != "natpmp_map":
            return None
        request = natpmp.decode_request(self.raw)
        assert isinstance(request, natpmp.MapPacket)
        return request

    def maps(self, internal_port: int | None = None) -> bool:
        """Whether it is a MAP (PCP or NAT-PMP) for ``internal_port`` (any, if None)."""
        return self.kind != "other" and internal_port in (None, self.internal_port)


class Tap:
    """Records every datagram that reaches the gateway (before loss or silence apply).

    It wraps :meth:`GatewayCore.accept`, the gateway's own arrival counter, so
    that requests a silent or lossy gateway swallows are recorded too.
    """

    def __init__(self, gateway: SimulatedGateway, *, record: bool = True) -> None:
        self.arrivals: list[Arrival] = []
        self.record = record
        """Keep each arrival (else only count them: a long run stays flat in memory)."""
        self.count = 0
        core = gateway.core
        accept = core.accept
        loop = asyncio.get_running_loop()

        def tapped(datagram: bytes) -> bool:
            self.count += 1
            if self.record:
                self.arrivals.append(Arrival.of(loop.time(), datagram))
            return accept(datagram)

        core.accept = tapped  # type: ignore[method-assign]

    def maps(self, internal_port: int | None = None, *, since: float = float("-inf"),
             until: float = float("inf")) -> list[Arrival]:
        """MAP requests (either protocol) for ``internal_port``, in order of arrival."""
        return [a for a in self.arrivals
                if since <= a.at <= until and a.maps(internal_port)]


class EventLog:
    """Collects every event of a manager, from subscription until it closes."""

    def __init__(self, manager: MappingManager,
                 keep: tuple[type[Event], ...] = (Event,)) -> None:
        self.events: list[Event] = []
        self.keep = keep
        """The event types kept (the others are only counted)."""
        self.count = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._collect(manager.events()))

    async def _collect(self, events: Any) -> None:
        async for event in events:
            self.count += 1
            if isinstance(event, self.keep):
                self.events.append(event)
            self._changed.set()

    def of(self, kind: type[E], key: MappingKey | None = None) -> list[E]:
        """The events of one type (and, for mapping events, one key)."""
        return [e for e in self.events if isinstance(e, kind)
                and (key is None or getattr(e, "key", None) == key)]

    async def wait_for(self, kind: type[E], predicate: Callable[[E], bool] = lambda _: True,
                       *, timeout: float = 600.0, count: int = 1) -> list[E]:
        """Wait (loop time) until ``count`` events of ``kind`` match; return them."""
        async with asyncio.timeout(timeout):
            while True:
                found = [e for e in self.of(kind) if predicate(e)]
                if len(found) >= count:
                    return found
                self._changed.clear()
                await self._changed.wait()

    async def finished(self) -> None:
        """Wait for the subscription to end (the manager closed)."""
        await asyncio.wait_for(self._task, 10)


@dataclass
class Rig:
    """A running gateway and manager, the announcement port, a tap and an event log."""

    gateway: SimulatedGateway
    manager: MappingManager
    log: EventLog
    tap: Tap
    announce_port: int
    extra: dict[str, Any] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def rig(*, gateway: dict[str, Any] | None = None, announce: bool = True,
              external_address: str = "203.0.113.7", seed: int = 1, record: bool = True,
              keep_events: tuple[type[Event], ...] = (Event,),
              **manager_options: Any) -> AsyncIterator[Rig]:
    """Start a simulated gateway and a manager pointed at it; close both on exit.

    ``gateway`` holds :class:`GatewayConfig` fields; with ``announce`` the gateway
    announces to the manager's listening port (miniupnpd mode sends its NAT-PMP
    copy to a second free port too, as to 5351). ``record`` and ``keep_events`` say what the
    tap and the event log hold on to (see :class:`Tap`, :class:`EventLog`).
    """
    import random

    announce_port = free_udp_port()
    options = dict(gateway or {})
    if announce:
        options.setdefault("announce_targets", ((LOOPBACK, announce_port),))
        options.setdefault("miniupnpd_announce_ports", (announce_port, free_udp_port()))
    async with SimulatedGateway(LOOPBACK, 0, external_address,
                                GatewayConfig(**options)) as gw:
        tap = Tap(gw, record=record)
        manager_options.setdefault("rng", random.Random(seed))
        manager_options.setdefault("announce_ports", (announce_port,))
        manager = MappingManager(LOOPBACK, gateway_port=gw.address[1],
                                 announce_host=LOOPBACK, multicast=False, **manager_options)
        async with manager:
            log = EventLog(manager, keep_events)
            yield Rig(gw, manager, log, tap, announce_port)
        await log.finished()
        assert gw.internal_errors == []
