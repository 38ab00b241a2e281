"""The simulated gateway on a real UDP socket: asyncio plumbing around :class:`GatewayCore`.

Usage::

    async with SimulatedGateway(host="127.0.0.1", port=0) as gw:
        host, port = gw.address          # port 0 picked a free port
        ...                              # point a client at (host, port)
        gw.configure(drop_rate=0.5)      # change behaviour between requests
        gw.change_external_address("198.51.100.9")
        await gw.wait_announcements()

Everything the gateway decides is in the sans-IO core; this layer receives,
waits out the processing ``delay``, applies the ``tamper`` hook, sends, and runs
announcement schedules. It sends unsolicited packets to loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import socket
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address
from types import TracebackType
from typing import Any

from ..wire.addresses import IPAddress, to_address
from .announcer import AnnouncementKind, plan_address_change, plan_restart
from .config import AnnounceMode, GatewayConfig, check_loopback_target
from .core import Counters, GatewayCore
from .sending import AnnouncementRunner, send_from
from .state import Mapping

__all__ = ["Clock", "SimulatedGateway", "Tamper"]

logger = logging.getLogger(__name__)

#: ``tamper(request, genuine_responses) -> datagrams to send instead``, in order.
Tamper = Callable[[bytes, list[bytes]], list[bytes]]
#: Seconds on a monotonic clock.
Clock = Callable[[], float]


class _GatewayProtocol(asyncio.DatagramProtocol):
    def __init__(self, gateway: SimulatedGateway) -> None:
        self._gateway = gateway

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._gateway._received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # An ICMP error from a client that went away (port unreachable): nothing to do.
        logger.debug("simulated gateway: socket error %s", exc)


class SimulatedGateway:
    """A NAT-PMP + PCP gateway listening on ``(host, port)``; see the module docstring.

    ``external_address`` is what the gateway reports (``None``: it has none yet, and answers
    NETWORK_FAILURE). ``clock`` is the time source of epochs and lifetimes, by default the
    running loop's ``time``, so a virtual-time loop drives it. ``tamper`` rewrites what is sent
    back for each request.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 external_address: str | IPAddress | None = "203.0.113.7",
                 config: GatewayConfig | None = None, *, clock: Clock | None = None,
                 tamper: Tamper | None = None) -> None:
        self._host = host
        self._family = socket.AF_INET6 if isinstance(ip_address(host.split("%", 1)[0]),
                                                     IPv6Address) else socket.AF_INET
        self._port = port
        self._external = to_address(external_address) if external_address is not None else None
        self._config = config if config is not None else GatewayConfig()
        self._clock = clock
        self._now: Clock = lambda: 0.0
        self.tamper = tamper
        self._core: GatewayCore | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._queue: asyncio.Queue[tuple[bytes, Any]] = asyncio.Queue()
        self._busy = False
        self._generation = 0  # bumped by restart(): a request held across a reboot is lost
        self._worker: asyncio.Task[None] | None = None
        self._announcer = AnnouncementRunner(self._announcement, self._send_announcement)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._errors: list[BaseException] = []

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> SimulatedGateway:
        """Bind the socket and start answering. Returns ``self``."""
        if self._transport is not None:
            raise RuntimeError("the simulated gateway is already running")
        loop = asyncio.get_running_loop()
        self._now = self._clock if self._clock is not None else loop.time
        self._core = GatewayCore(self._config, self._external, self._now())
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _GatewayProtocol(self), local_addr=(self._host, self._port),
            family=self._family)
        self._transport = transport
        self._worker = loop.create_task(self._work(), name="simulated-gateway-worker")
        return self

    async def close(self) -> None:
        """Stop answering, cancel announcement schedules, release the socket."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self._announcer.close()
        for _, waiter in self._waiters:
            waiter.cancel()
        self._waiters.clear()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def __aenter__(self) -> SimulatedGateway:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    # --- introspection ----------------------------------------------------------------------

    @property
    def core(self) -> GatewayCore:
        """The sans-IO gateway behind the socket."""
        if self._core is None:
            raise RuntimeError("the simulated gateway is not started")
        return self._core

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` actually bound."""
        if self._transport is None:
            raise RuntimeError("the simulated gateway is not started")
        sockname = self._transport.get_extra_info("sockname")
        return (str(sockname[0]), int(sockname[1]))

    @property
    def config(self) -> GatewayConfig:
        """The behaviour in force."""
        return self._config

    def configure(self, **changes: Any) -> GatewayConfig:
        """Change behaviour now (``gw.configure(silent=True)``); returns the new config.

        Takes the fields of :class:`GatewayConfig`; an invalid value raises ``ValueError``
        and changes nothing. Requests already waiting out a ``delay`` see the new config.
        """
        self._config = dataclasses.replace(self._config, **changes)
        if self._core is not None:
            self._core.config = self._config
        return self._config

    @property
    def mappings(self) -> tuple[Mapping, ...]:
        """The mappings alive now (expired ones are dropped first)."""
        return self.core.mappings(self._now())

    @property
    def counters(self) -> Counters:
        """A snapshot of what the gateway has seen."""
        return self.core.counters.copy()

    @property
    def epoch(self) -> int:
        """The epoch a response sent now would carry."""
        return self.core.epoch(self._now())

    @property
    def external_address(self) -> IPAddress | None:
        """The external address the gateway reports."""
        return self.core.state.external_address

    @property
    def internal_errors(self) -> list[BaseException]:
        """Exceptions raised while answering (a bug in the simulator or in a ``tamper`` hook).
        They are logged and the request goes unanswered; a test fixture should assert none."""
        return list(self._errors)

    async def wait_requests(self, count: int, timeout: float | None = None) -> None:
        """Return once ``count`` datagrams in all have arrived (dropped and silenced ones count);
        raise ``TimeoutError`` after ``timeout`` seconds."""
        if self.core.counters.received >= count:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        async with asyncio.timeout(timeout):
            await waiter

    # --- events -----------------------------------------------------------------------------

    def restart(self) -> None:
        """Reboot, keeping the socket: mappings lost, epoch back to 0, requests queued behind
        the ``delay`` lost, announcement schedules in progress stopped; then announce
        (see :func:`~engine.simulator.announcer.plan_restart`)."""
        now = self._now()
        self.core.restart(now)
        self._generation += 1
        while not self._queue.empty():
            self._queue.get_nowait()
        self._announcer.stop()
        self._announcer.start(plan_restart(self._config))

    def change_external_address(self, address: str | IPAddress | None) -> None:
        """Take a new external address and announce it (``None``: lose it, announce nothing).

        The epoch restarts at 0 unless ``reset_epoch_on_address_change`` is off
        (RFC 6887 §8.5). In miniupnpd mode the NAT-PMP announcement goes out before the
        reset, with the old epoch, and the ANNOUNCE after it, in the order miniupnpd sends them.
        """
        new = to_address(address) if address is not None else None
        core, config, now = self.core, self._config, self._now()
        plan = plan_address_change(config) if new is not None else ()
        core.set_external_address(new)
        if config.announce_mode is AnnounceMode.MINIUPNPD:
            for item in plan:
                if item.kind is AnnouncementKind.NATPMP:
                    self._announcer.send_now(item)
            if config.reset_epoch_on_address_change:
                core.reset_epoch(now)
            for item in plan:
                if item.kind is AnnouncementKind.PCP:
                    self._announcer.send_now(item)
            return
        if config.reset_epoch_on_address_change:
            core.reset_epoch(now)
        self._announcer.start(plan)

    async def wait_announcements(self) -> None:
        """Return once every announcement schedule in progress has finished (or was stopped)."""
        await self._announcer.wait()

    def inject(self, raw: bytes, target: tuple[str, int], from_gateway_socket: bool = True) -> None:
        """Send arbitrary bytes to a loopback ``target``: from the gateway's own socket (the
        gateway's address and port, as a forged answer would come), or from a fresh socket
        (a stranger's port, which a client must not accept as the gateway's answer)."""
        send_from(self._transport, self._family, raw, check_loopback_target(target),
                  from_gateway_socket)

    # --- plumbing ---------------------------------------------------------------------------

    def _received(self, data: bytes, addr: Any) -> None:
        core = self.core
        if core.accept(data):
            config = self._config
            if self._queue.empty() and not self._busy and not config.delay \
                    and config.delay_max is None and not config.service_times:
                self._answer(data, addr)
            else:
                self._queue.put_nowait((data, addr))
        received = core.counters.received
        for count, waiter in self._waiters:
            if received >= count and not waiter.done():
                waiter.set_result(None)
        self._waiters = [(n, w) for n, w in self._waiters if not w.done()]

    async def _work(self) -> None:
        # One request at a time, like miniupnpd's event loop: a burst queues behind the delay.
        while True:
            data, addr = await self._queue.get()
            generation = self._generation
            self._busy = True
            try:
                service = self.core.service_time()
                if service:
                    await asyncio.sleep(service)
                if generation == self._generation:
                    self._answer(data, addr)
            finally:
                self._busy = False

    def _answer(self, data: bytes, addr: Any) -> None:
        transport = self._transport
        if transport is None:
            return
        try:
            responses = self.core.process(data, (str(addr[0]), int(addr[1])), self._now())
            if self.tamper is not None:
                responses = list(self.tamper(data, responses))
            for response in responses:
                transport.sendto(response, addr)
        except Exception as exc:
            # A simulator bug must not kill the socket; it is kept for the test to see.
            logger.exception("simulated gateway failed to answer %r", data)
            self._errors.append(exc)

    def _announcement(self, kind: AnnouncementKind) -> bytes | None:
        now = self._now()
        return (self.core.natpmp_announcement(now) if kind is AnnouncementKind.NATPMP
                else self.core.pcp_announcement(now))

    def _send_announcement(self, packet: bytes, target: tuple[str, int]) -> None:
        send_from(self._transport, self._family, packet, target, True)
