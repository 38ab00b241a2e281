"""The simulated gateway's unsolicited sends: announcement plans run on the loop's clock.

:mod:`~engine.simulator.announcer` plans when and where an announcement goes (pure); this
runs a plan as an asyncio task and builds each packet when it leaves, so that a late
repetition carries the epoch of that moment (RFC 6886 §3.6). It sends to loopback only:
the targets are the plan's, checked by the gateway's configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from .announcer import AnnouncementKind, PlannedSend

__all__ = ["AnnouncementRunner", "send_from"]

logger = logging.getLogger("engine.simulator.gateway")


def send_from(transport: asyncio.DatagramTransport | None, family: socket.AddressFamily,
              packet: bytes, target: tuple[str, int], from_gateway_socket: bool) -> None:
    """Send ``packet`` to ``target`` from the gateway's socket (``transport``, when it is open
    and of the target's family) or from a fresh one, a stranger's port; a failure is logged."""
    target_family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    try:
        if from_gateway_socket and target_family == family and transport is not None:
            transport.sendto(packet, target)
            return
        with socket.socket(target_family, socket.SOCK_DGRAM) as stranger:
            stranger.setblocking(False)
            stranger.sendto(packet, target)
    except OSError as exc:
        logger.warning("simulated gateway could not send to %s: %s", target, exc)


class AnnouncementRunner:
    """Runs announcement plans, each as a task; ``packet(kind)`` builds an announcement now
    (``None``: the gateway has nothing to say), ``send(packet, target)`` sends it."""

    def __init__(self, packet: Callable[[AnnouncementKind], bytes | None],
                 send: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._packet = packet
        self._send = send
        self._tasks: set[asyncio.Task[None]] = set()

    def send_now(self, item: PlannedSend) -> None:
        """Send one planned announcement at once, whatever its offset."""
        packet = self._packet(item.kind)
        if packet is not None:
            self._send(packet, item.target)

    def start(self, plan: tuple[PlannedSend, ...]) -> None:
        """Run ``plan`` from now on, beside any plan already running."""
        if not plan:
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(plan, loop.time()), name="simulated-gateway-announcer")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def stop(self) -> None:
        """Stop every plan in progress (a reboot forgets them)."""
        for task in self._tasks:
            task.cancel()

    async def close(self) -> None:
        """Stop every plan and wait until their tasks have ended."""
        tasks = list(self._tasks)
        self.stop()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self) -> None:
        """Return once every plan in progress has finished (or was stopped)."""
        while pending := {task for task in self._tasks if not task.done()}:
            await asyncio.wait(pending)

    async def _run(self, plan: tuple[PlannedSend, ...], start: float) -> None:
        # The schedule runs on the loop's clock (these are real sends); the packets carry the
        # gateway clock's epoch at the moment each one leaves.
        loop = asyncio.get_running_loop()
        for item in sorted(plan, key=lambda send: send.at):
            wait = start + item.at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.send_now(item)
