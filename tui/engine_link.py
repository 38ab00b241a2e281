"""The body of the app's one engine worker, and the commands the keys send it.

Everything that touches the network happens here, on the app's event loop but
outside the UI's message handlers: the worker enters the manager, forwards
each of its events as a Textual message, and runs the commands the keys put
on its queue. Each command runs as its own task, so a gateway that stays
silent for 30 s delays only the command that asked it, never the UI or the
other commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from textual.message import Message

from engine.errors import InvalidRequest, NatDeckError
from engine.events import Event, ManagerClosed, MappingKey
from engine.manager import MappingManager

from .backend import DemoControls, EngineFactory, EngineParts
from .map_request import MapRequest
from .messages import (
    CommandDone,
    CommandFailed,
    EngineEvent,
    EngineStarted,
    EngineStopped,
    LogLine,
)
from .safe_text import sanitize

__all__ = [
    "AddMapping",
    "ChangeExternalAddress",
    "Command",
    "EngineLink",
    "ProbeGateway",
    "Quit",
    "RefreshExternalAddress",
    "RemoveMapping",
    "RenewMapping",
    "RestartGateway",
]

log = logging.getLogger(__name__)


class Command:
    """Something the UI asks the engine worker to do."""

    def describe(self) -> str:
        """What is being asked, for the event log."""
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class AddMapping(Command):
    """Map a port (``MappingManager.add``)."""

    request: MapRequest

    def describe(self) -> str:
        return f"map {self.request.describe()}"


@dataclass(frozen=True, slots=True)
class RemoveMapping(Command):
    """Delete a mapping at the gateway (``MappingManager.remove``)."""

    key: MappingKey

    def describe(self) -> str:
        return f"unmap {self.key}"


@dataclass(frozen=True, slots=True)
class RenewMapping(Command):
    """Renew a mapping now (``MappingManager.renew``)."""

    key: MappingKey

    def describe(self) -> str:
        return f"renew {self.key}"


@dataclass(frozen=True, slots=True)
class RefreshExternalAddress(Command):
    """Ask the gateway for its external address."""

    def describe(self) -> str:
        return "ask for the external address"


@dataclass(frozen=True, slots=True)
class ProbeGateway(Command):
    """Probe PCP, NAT-PMP and UPnP IGD at once."""

    def describe(self) -> str:
        return "probe the gateway (PCP, NAT-PMP and UPnP IGD)"


@dataclass(frozen=True, slots=True)
class RestartGateway(Command):
    """Demo: make the simulated gateway lose its state."""

    def describe(self) -> str:
        return "demo: restart the simulated gateway"


@dataclass(frozen=True, slots=True)
class ChangeExternalAddress(Command):
    """Demo: give the simulated gateway a new external address."""

    def describe(self) -> str:
        return "demo: change the simulated gateway's external address"


@dataclass(frozen=True, slots=True)
class Quit(Command):
    """Leave the manager (deleting its mappings unless it keeps them) and stop."""

    def describe(self) -> str:
        return "quit"


Post = Callable[[Message], object]


class EngineLink:
    """Runs the engine for the app: :meth:`run` is the engine worker's whole body.

    ``post`` delivers messages to the app. :meth:`send` queues a command; it may
    be called before :meth:`run` starts (the commands wait for the manager).
    """

    def __init__(self, factory: EngineFactory, post: Post, *,
                 initial: Sequence[MapRequest] = ()) -> None:
        self._factory = factory
        self._post = post
        self._commands: asyncio.Queue[Command] = asyncio.Queue()
        self.initial = tuple(initial)
        """The mappings requested at start."""
        for request in self.initial:
            self._commands.put_nowait(AddMapping(request))
        self._running: dict[asyncio.Task[None], Command] = {}
        self.parts: EngineParts | None = None
        self.quitting = False
        self.closed: ManagerClosed | None = None
        """What leaving the manager deleted and left (once it has left)."""
        self.finished = asyncio.Event()
        """Set when :meth:`run` has returned (or was cancelled and has cleaned up)."""

    def send(self, command: Command) -> None:
        """Queue ``command`` for the worker."""
        if isinstance(command, Quit):
            self.quitting = True
        self._commands.put_nowait(command)

    def _note(self, text: str, style: str = "") -> None:
        self._post(LogLine(time.time(), sanitize(text), style))

    async def run(self) -> None:
        """Enter the engine, serve commands until :class:`Quit`, then leave it.

        Never raises (except cancellation): a failure is posted as
        :class:`EngineStopped` with the error, for the app to show. Cancelled
        (the app is closing some other way than a quit), it still leaves the
        manager, so the mappings are deleted all the same.
        """
        try:
            await self._run()
        finally:
            self.finished.set()

    async def _run(self) -> None:
        error: BaseException | None = None
        try:
            async with self._factory() as parts:
                self.parts = parts
                manager = parts.manager
                # Subscribe before entering, so that nothing the manager does at
                # start (its first probe) is missed.
                events = manager.events()
                async with manager:
                    self._post(EngineStarted(parts))
                    pump = asyncio.create_task(self._pump(events), name="natdeck-events")
                    try:
                        await self._serve(manager, parts.demo)
                    finally:
                        await self._cancel_running(keep_adds=True)
                        if manager.keep:
                            self._note(f"leaving {len(manager.mappings)} mapping(s) in place "
                                       "(keep)", "dim")
                        elif manager.mappings:
                            self._note(f"deleting {len(manager.mappings)} mapping(s)…", "dim")
                        # Leave here (not only in __aexit__) to keep what it reports.
                        try:
                            self.closed = await manager.close()
                        finally:
                            # close() has answered or given up on the adds it settled;
                            # none may outlive the worker.
                            await self._cancel_running()
                        if self.closed.left and not self.closed.kept:
                            self._note(self.closed.summary, "bold red")
                # The manager has closed: its event stream ends after the last event.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(pump, 1.0)
                pump.cancel()
        except asyncio.CancelledError:
            raise
        except (NatDeckError, OSError, ValueError) as exc:
            error = exc
        except Exception as exc:  # a bug: show it rather than lose the terminal to a traceback
            log.exception("engine worker failed")
            error = exc
        self._post(EngineStopped(error, quitting=self.quitting and error is None))

    async def _pump(self, events: AsyncIterator[Event]) -> None:
        async for event in events:
            self._post(EngineEvent(event))

    async def _serve(self, manager: MappingManager, demo: DemoControls | None) -> None:
        while True:
            command = await self._commands.get()
            if isinstance(command, Quit):
                return
            task = asyncio.create_task(self._execute(manager, demo, command))
            self._running[task] = command
            task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)

    async def _cancel_running(self, *, keep_adds: bool = False) -> None:
        """Cancel the commands still running and wait for them.

        With ``keep_adds`` the adds are left running: ``manager.close()`` waits for
        their answers and deletes what they made with the rest, whereas a cancelled
        add only becomes a take-back in the background that the exit may not see.
        """
        tasks = [task for task, command in self._running.items()
                 if not (keep_adds and isinstance(command, AddMapping))]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _execute(self, manager: MappingManager, demo: DemoControls | None,
                       command: Command) -> None:
        what = command.describe()
        self._note(f"→ {what}", "cyan")
        try:
            text = await self._perform(manager, demo, command)
        except asyncio.CancelledError:
            raise
        except (NatDeckError, OSError, ValueError) as exc:
            # A map or renewal the gateway refused or left unanswered is also a manager
            # event (MappingFailed, MappingRenewalFailed); a request refused before it
            # was sent (InvalidRequest: already mapped, busy) is not.
            in_events = (isinstance(command, AddMapping | RenewMapping)
                         and isinstance(exc, NatDeckError)
                         and not isinstance(exc, InvalidRequest))
            self._post(CommandFailed(what, exc, in_events=in_events))
            return
        if text:
            self._post(CommandDone(what, text))

    async def _perform(self, manager: MappingManager, demo: DemoControls | None,
                       command: Command) -> str | None:
        # Success of the manager's own operations is reported by its events; only
        # the answers that make no event are turned into text here.
        if isinstance(command, AddMapping):
            r = command.request
            await manager.add(r.protocol, r.internal_port, external_port=r.external_port,
                              lifetime=r.lifetime, via=r.via)
            return None
        if isinstance(command, RemoveMapping):
            await manager.remove(command.key)
            return None
        if isinstance(command, RenewMapping):
            await manager.renew(command.key)
            return None
        if isinstance(command, RefreshExternalAddress):
            address = await manager.refresh_external_address()
            return f"external address is {address}"
        if isinstance(command, ProbeGateway):
            await manager.probe()
            return None
        if isinstance(command, RestartGateway | ChangeExternalAddress):
            if demo is None:
                raise ValueError("there is no simulated gateway to control (start with --demo)")
            if isinstance(command, RestartGateway):
                return await demo.restart()
            return await demo.change_external_address()
        raise ValueError(f"unknown command {command!r}")
