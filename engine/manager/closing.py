"""Deleting mappings at the gateway: one mapping (``remove``) or all of them on exit.

A delete is sent whatever natdeck believes of the mapping (lost, failed,
unconfirmed): "lost" is a guess from an epoch, and a delete of a missing mapping
is harmless. On exit every delete is started at once; the client's in-flight
window lets them out as fast as the gateway answers, until the caller's deadline.

An add that went out but got no answer (silence, or its caller cancelled it) may
have made a mapping the manager does not keep: it is taken back, the same request
with lifetime 0 (same nonce and ports, "try drop"), in the background
(:class:`TakeBacks`); the manager's close waits for those deletes too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..client import GatewayClient, PortMapping
from ..codes import PcpResult
from ..errors import GatewayTimeout, NatDeckError, ResultCodeError
from ..events import ManagerClosed, MappingKey, MappingState
from ..request import MapRequest
from ..unrecorded_delete import delete_unrecorded
from .state import Trigger

if TYPE_CHECKING:
    from .mappings import Entry, MappingTable
    from .watch import GatewayWatch

__all__ = ["CLOSE_DEADLINE", "CloseProgress", "TakeBacks", "delete_many", "delete_mapping",
           "delete_unanswered", "hand_back", "may_hold", "requests_in_flight", "take_back"]

log = logging.getLogger("engine.manager")

#: How long leaving the ``async with`` may spend deleting mappings, by default.
CLOSE_DEADLINE = 5.0


@dataclass(slots=True)
class CloseProgress:
    """How leaving is going: read it while :meth:`MappingManager.close` runs."""

    total: int
    deadline: float
    """Loop time after which the deletes still out are abandoned."""
    deleted: int = 0
    failed: list[tuple[MappingKey, str]] = field(default_factory=list)
    """Mappings whose delete failed, with why."""
    done: bool = False

    @property
    def pending(self) -> int:
        """Deletes not yet answered."""
        return self.total - self.deleted - len(self.failed)


async def delete_mapping(client: GatewayClient, mapping: PortMapping, timeout: float) -> None:
    """Delete ``mapping`` at the gateway; a gateway that says it has no such mapping is fine.

    miniupnpd answers a PCP delete of a mapping it does not hold with NO_RESOURCES (RFC 6887
    §15 would have SUCCESS): either way nothing is mapped any more.
    """
    try:
        await client.delete(mapping, timeout=timeout)
    except ResultCodeError as exc:
        if not _nothing_to_delete(exc):
            raise
        mapping.deleted = True


def _nothing_to_delete(exc: ResultCodeError) -> bool:
    """Whether a refused delete says only that the gateway holds no such mapping (miniupnpd's
    NO_RESOURCES to a PCP delete; see :func:`delete_mapping`)."""
    return exc.protocol == "pcp" and exc.code == PcpResult.NO_RESOURCES


async def delete_many(client: GatewayClient, mappings: dict[MappingKey, PortMapping],
                      progress: CloseProgress, on_deleted: Callable[[MappingKey], None]) -> None:
    """Delete every mapping at once, until ``progress.deadline``; fill in ``progress``."""
    loop = asyncio.get_running_loop()

    async def drop(key: MappingKey, mapping: PortMapping) -> None:
        try:
            await delete_mapping(client, mapping, max(0.1, progress.deadline - loop.time()))
        except NatDeckError as exc:
            progress.failed.append((key, str(exc)))
            return
        progress.deleted += 1
        on_deleted(key)

    tasks = [asyncio.ensure_future(drop(k, m)) for k, m in mappings.items()]
    try:
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, progress.deadline - loop.time()) + 0.5)
    finally:
        # Also when close() itself is cancelled (the user stopped waiting): no delete
        # outlives it.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        progress.done = True


async def close_all(table: MappingTable, held: dict[MappingKey, PortMapping],
                    progress: CloseProgress,
                    forget: Callable[[MappingKey], None]) -> ManagerClosed:
    """Delete every held mapping on exit (each REMOVING meanwhile); what was left."""
    for key in held:
        entry = table.entries[key]
        entry.machine.fire(Trigger.REMOVE)
        entry.view.state = entry.machine.state
    await delete_many(table.client, held, progress, forget)
    why = None
    if progress.failed:  # one line, not one per mapping (there may be thousands)
        key, reason = progress.failed[0]
        why = f"{key}: {reason}"
        # DEBUG: the ManagerClosed event says it (a UI shows both otherwise).
        log.debug("could not delete %d mapping(s) on exit; %s", len(progress.failed), why)
    left = tuple(k for k in held if k in table.entries)
    return ManagerClosed(asyncio.get_running_loop().time(), progress.deleted, left, why=why)


def requests_in_flight(table: MappingTable) -> list[asyncio.Task[None]]:
    """The renewals and recreations out (their entries hold them; :func:`settle` waits for
    the adds)."""
    return [e.task for e in table.entries.values()
            if e.task is not None and not e.task.done()
            and e.view.state is not MappingState.REQUESTING]


async def settle(table: MappingTable, until: float, *,
                 give_up: bool = False) -> dict[MappingKey, PortMapping]:
    """What natdeck holds at the gateway, once the adds in flight have been answered (until
    loop time ``until``): an add answered after the exit would leave a mapping nobody
    deletes. ``give_up``: the adds still unanswered then are cancelled, which takes back
    what each may have made (:class:`TakeBacks`; reported left if that is not answered)."""
    loop = asyncio.get_running_loop()
    adding = [e.task for e in table.entries.values()
              if e.view.state is MappingState.REQUESTING and e.task is not None]
    if adding and until > loop.time():
        await asyncio.wait(adding, timeout=until - loop.time())
    if give_up:
        unanswered = [task for task in adding if not task.done()]
        for task in unanswered:
            task.cancel()
        await asyncio.gather(*unanswered, return_exceptions=True)
    return {e.view.key: e.mapping for e in table.entries.values()
            if e.mapping is not None and not e.mapping.deleted}


def hand_back(table: MappingTable, watch: GatewayWatch, entry: Entry,
              exc: BaseException) -> None:
    """A ``remove`` ended without its delete answered (refused, silent, a bug, or its
    caller cancelled it): the mapping goes back where it was, renewed and removable again,
    not left REMOVING for good."""
    if table.entries.get(entry.view.key) is not entry \
            or entry.view.state is not MappingState.REMOVING:
        return  # forgotten meanwhile (close() deleted it): nothing to hand back
    if isinstance(exc, NatDeckError):
        entry.view.reason = f"delete failed: {exc}"
        table.answered(entry, exc, "delete")
        watch.failed_request(exc)
    elif isinstance(exc, Exception):
        log.error("internal error while deleting %s", entry.view.key, exc_info=exc)
        entry.view.reason = f"delete failed: {exc!r}"
    table.fire(entry, Trigger.DELETE_FAILED)


def may_hold(exc: BaseException) -> bool:
    """Whether an add that ended with ``exc`` may have left a mapping at the gateway: it
    went out and no answer came (silence, or the caller stopped waiting). An answer (a
    result code), or a request refused or never sent (no try: it waited its turn), made
    none."""
    if isinstance(exc, GatewayTimeout):
        return exc.tries > 0
    return isinstance(exc, asyncio.CancelledError)


async def take_back(client: GatewayClient, key: MappingKey, options: dict[str, Any],
                    timeout: float) -> bool:
    """Delete the mapping an unanswered add (``client.map``'s ``options``) may have made:
    the same request with lifetime 0 (its nonce, ports and PCP options), by the protocol
    it went by (``"auto"``: as :func:`~engine.unrecorded_delete.delete_unrecorded` chooses).
    Whether the gateway answered it (nothing is left). Never raises a :class:`NatDeckError`:
    a failure is logged (the mapping, if any, expires on its own)."""
    try:
        await delete_unanswered(client, key, options, timeout)
    except NatDeckError as exc:
        log.info("could not take back the unanswered add of %s: %s", key, exc)
        return False
    return True


async def delete_unanswered(client: GatewayClient, key: MappingKey, options: dict[str, Any],
                            timeout: float) -> None:
    """:func:`take_back`'s delete, for a caller that tells the user how it went (the one-shot
    ``natdeck map``): raises what :func:`~engine.unrecorded_delete.delete_unrecorded` raises,
    but not a PCP gateway's "no such mapping" (NO_RESOURCES, see :func:`delete_mapping`):
    nothing is left either way."""
    request = MapRequest.make(key.protocol, key.internal_port, **options)
    try:
        await delete_unrecorded(client, request.protocol, request.internal_port,
                                external_port=request.suggested_external_port,
                                via=request.via, nonce=request.nonce, options=request.options,
                                timeout=timeout)
    except ResultCodeError as exc:
        if not _nothing_to_delete(exc):
            raise


class TakeBacks:
    """The deletes of what unanswered adds may have made (:func:`take_back`), one per key,
    until :meth:`close`: a new add of the key waits for its delete (:meth:`wait`), which
    would else delete the new mapping (NAT-PMP and UPnP IGD name it by its ports only)."""

    def __init__(self) -> None:
        self.tasks: dict[MappingKey, asyncio.Task[bool]] = {}
        self.closed = False
        #: The keys whose take-back failed or was cut short: what they may have left at the
        #: gateway (:meth:`close` returns them, for the manager's ``ManagerClosed.left``).
        self.unsure: list[MappingKey] = []

    def start(self, client: GatewayClient, key: MappingKey, options: dict[str, Any],
              timeout: float) -> None:
        """Take back what the add of ``key`` may have made, in the background (not once
        closed: nothing outlives :meth:`close`)."""
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(take_back(client, key, options, timeout))
        self.tasks[key] = task
        task.add_done_callback(lambda done: self._done(key, done))

    def _done(self, key: MappingKey, task: asyncio.Task[bool]) -> None:
        if self.tasks.get(key) is task:
            del self.tasks[key]
        if (task.cancelled() or task.exception() is not None or not task.result()) \
                and key not in self.unsure:
            self.unsure.append(key)

    async def wait(self, key: MappingKey) -> None:
        """Until the delete of what an earlier add of ``key`` may have made is over."""
        task = self.tasks.get(key)
        if task is not None:
            await asyncio.wait([task])

    async def close(self, until: float) -> tuple[MappingKey, ...]:
        """Start no more; let those out finish until loop time ``until``, cancel the rest.
        The keys whose take-back failed or did not finish: what may be left at the gateway."""
        if self.closed and not self.tasks:  # closed before (MappingManager.close, then _shut)
            return tuple(self.unsure)
        self.closed = True
        tasks = list(self.tasks.values())
        try:
            if tasks:
                loop = asyncio.get_running_loop()
                await asyncio.wait(tasks, timeout=max(0.0, until - loop.time()))
        finally:
            # Also when close() itself is cancelled: no delete outlives it.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.unsure:
            log.warning("%d add(s) that went unanswered may have left a mapping at the gateway "
                        "(their delete was not answered): %s", len(self.unsure),
                        ", ".join(str(key) for key in self.unsure[:5]))
        return tuple(self.unsure)
