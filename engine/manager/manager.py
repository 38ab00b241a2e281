"""MappingManager: keeps a set of mappings on one gateway true until they are removed.

The asyncio glue around the pure parts: each mapping's life is the table in
:mod:`.state`, due times are :mod:`.schedule`; :mod:`.mappings` runs the
requests, :mod:`.watch` follows the gateway (answers' epochs, announcements,
probes), :mod:`.closing` deletes. What it does:

* Renewal on the RFC schedule: PCP at a random 1/2-5/8 of the granted lifetime
  (RFC 6887 §11.2.1), NAT-PMP at half of it with a little jitter (RFC 6886 §3.3);
  unanswered renewals are retried in the RFC's later windows until expiry; then
  the mapping is reported lost and asked for again.
* An answer's epoch that went back (RFC 6887 §8.5, RFC 6886 §3.6): every mapping
  is asked for again at once, for the same external ports.
* Every announcement (see :mod:`engine.announce`): every mapping is confirmed
  (asked for again) after the RFC's random 0-5 s (RFC 6887 §14.1.3), coalesced;
  a mapping is ACTIVE only after an answer to a request sent after the last one.
* Errors: a short-lifetime error is retried when its error lifetime is over; a
  long-lifetime one leaves the mapping FAILED until something changes.
* Silence: with nothing heard from the gateway for a minute, it is probed.
* UPnP IGD (no epoch, :mod:`.presence`): re-added at about half its lease; every
  ``upnp_check_interval`` s each mapping is looked up, and one the gateway no longer
  holds (a reboot, a flush) is asked for again; a permanent lease is only looked up.
* Removing always sends the delete and cancels any request in flight first; a remove
  that ends unanswered (or cancelled) leaves the mapping managed. An add that went out
  unanswered (or cancelled) is taken back: the same request with lifetime 0.

Keywords beyond :func:`~engine.map_port`'s: ``holder_pid`` is written in every
record of the ``state_file`` (``natdeck map --hold``: another natdeck will not map or
delete them while that process runs); ``ssdp_port`` is where the gateway's UPnP IGD
answers SSDP (1900; a simulated one's own port); ``upnp_check_interval`` how often
UPnP mappings are looked up (None: never).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from .. import timing
from ..announce import ANNOUNCE_PORTS, AnnouncementListener
from ..client import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, GatewayClient, ProbeResult, Via
from ..errors import InvalidRequest, NatDeckError
from ..events import (
    Event,
    GatewayStatus,
    ManagedMapping,
    ManagerClosed,
    ManagerClosing,
    MappingKey,
    MappingState,
)
from ..protocols import PORTED_PROTOCOLS, as_protocol
from ..request import nonce_for
from ..statefile import StateFile
from ..transport import SERVER_PORT
from ..upnp.ssdp import SSDP_PORT
from ..wire import pcp
from ..wire.addresses import IPAddress
from .closing import (
    CLOSE_DEADLINE,
    CloseProgress,
    close_all,
    delete_mapping,
    hand_back,
    requests_in_flight,
    settle,
)
from .mappings import Entry, MappingTable
from .presence import UPNP_CHECK_INTERVAL, check_upnp_every
from .records import Records
from .requests import first_request
from .state import MappingMachine, Trigger
from .stream import EventHub
from .watch import FALLBACK_PROBE_INTERVAL, IDLE_PROBE_INTERVAL, GatewayWatch, LocalRoute

__all__ = ["MappingManager"]

log = logging.getLogger("engine.manager")


class MappingManager:
    """Owns mappings on one gateway and keeps each one alive until it is removed.

    Use as ``async with MappingManager(gateway) as mgr``. Leaving the block deletes
    every mapping (unless ``keep``) within ``close_deadline`` seconds (see
    :meth:`close`) and leaves no task or socket behind. With a ``state_file`` every
    mapping is recorded there (as ``natdeck map`` does), dropped once deleted, in batches
    (:mod:`.records`; ``records.error`` while a write fails); :meth:`save_state` writes at once.
    """

    def __init__(self, gateway: str | IPAddress, *, gateway_port: int = SERVER_PORT,
                 local_address: str | IPAddress | None = None, via: Via = "auto",
                 lifetime: int = DEFAULT_LIFETIME, timeout: float = DEFAULT_TIMEOUT,
                 listen: bool = True, announce_ports: Iterable[int] = ANNOUNCE_PORTS,
                 announce_host: str | None = None, multicast: bool = True,
                 keep: bool = False, rng: random.Random | None = None,
                 probe_on_start: bool = True, probe_interval: float | None = None,
                 idle_probe_interval: float | None = IDLE_PROBE_INTERVAL,
                 announce_delay: float = timing.ANNOUNCE_MAX_DELAY, ssdp_port: int = SSDP_PORT,
                 close_deadline: float = CLOSE_DEADLINE, state_file: StateFile | None = None,
                 holder_pid: int | None = None, max_in_flight: int | None = None,
                 upnp_check_interval: float | None = UPNP_CHECK_INTERVAL,
                 local_address_probe: Callable[[], IPAddress | None] | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.client = GatewayClient(gateway, gateway_port, local_address=local_address,
                                    rng=self.rng, max_in_flight=max_in_flight, ssdp_port=ssdp_port)
        self.via: Via = via
        self.lifetime, self.timeout, self.keep = lifetime, timeout, keep
        self.listen, self.announce_ports, self.multicast = listen, tuple(announce_ports), multicast
        self.announce_host, self.upnp_check_interval = announce_host, upnp_check_interval
        self.probe_on_start, self.probe_interval = probe_on_start, probe_interval
        self.idle_probe_interval, self.close_deadline = idle_probe_interval, close_deadline
        self.closing: CloseProgress | None = None
        """While :meth:`close` deletes: how far it got."""
        # With no explicit local address, the one the kernel picks for the gateway is
        # checked again before renewals: a new DHCP lease, another Wi-Fi... (no packet sent).
        self._follow_local = local_address is None
        self.status = GatewayStatus(gateway=self.client.gateway, port=gateway_port,
                                    local_address=self.client.explicit_local_address)
        self._hub = EventHub()
        self.watch = GatewayWatch(self.client, self.status, self._hub.emit,
                                  lambda change: self.table.changed(change),
                                  rng=self.rng, announce_delay=announce_delay)
        self.route = LocalRoute(self.client, self.status, self._hub.emit, local_address_probe)
        self.records = Records(state_file, pid=holder_pid)
        self.table = MappingTable(self.client, self.watch, self._hub.emit, self.records,
                                  rng=self.rng, timeout=timeout)
        self.table.before_due = self._check_local_address
        self.mappings: Mapping[MappingKey, ManagedMapping] = MappingProxyType(self.table.views)
        self.client.on_state_lost.append(self.watch.state_lost)
        self.client.channel.observers.append(self.watch.heard)
        self.watch.on_reachable = self.table.reachable_again  # lasting failures retry
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: AnnouncementListener | None = None
        self._started = self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> MappingManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the channel, start the listener and the scheduler, probe the gateway."""
        if self._started:
            return
        self._started = True
        await self.client.__aenter__()
        try:
            self.status.local_address = await self.client.local_address()
        except NatDeckError as exc:
            log.info("local address unknown: %s", exc)
        if self.listen:
            every = FALLBACK_PROBE_INTERVAL if self.probe_interval is None else self.probe_interval
            self._listener = await self.watch.listen(
                AnnouncementListener(
                    self.client.gateway, self.watch.announced, host=self.announce_host,
                    ports=self.announce_ports, multicast=self.multicast,
                    local_address=self.status.local_address, source_port=self.client.port),
                f"natdeck probes the gateway every {every:g} s instead")
        if not self.status.listening and self.probe_interval is None and self.listen:
            # Degrade: without announcements, notice changes by probing now and then.
            self.probe_interval = FALLBACK_PROBE_INTERVAL
        self._spawn(self.table.run())
        if self.probe_on_start:
            self._spawn(self.watch.probe_quietly())
        if self.probe_interval:
            self._spawn(self.watch.probe_every(self.probe_interval))
        if self.idle_probe_interval and not self.probe_interval:
            self._spawn(self.watch.probe_when_idle(self.idle_probe_interval))
        self._spawn(check_upnp_every(self.table, self.upnp_check_interval, self.timeout))

    async def close(self, *, deadline: float | None = None) -> ManagerClosed:
        """Delete every mapping (unless ``keep``), stop every task, close every socket.

        The deletes all go out at once (as fast as the gateway answers), for at most
        ``deadline`` seconds (default: the ``close_deadline`` given to the constructor).
        Returns (and emits) what was deleted and what was left at the gateway; those
        stay recorded in the state file. :attr:`closing` shows the progress meanwhile.
        """
        now = asyncio.get_running_loop().time()
        running, self._closed = self._started and not self._closed, True
        if not running:
            return ManagerClosed(now, 0, ())
        tasks = [*self._tasks, *requests_in_flight(self.table)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        wait = self.close_deadline if deadline is None else deadline
        held = await settle(self.table, now if self.keep else now + wait, give_up=not self.keep)
        try:
            if self.keep:
                result = ManagerClosed(now, 0, tuple(held), kept=True)
            else:
                self.closing = CloseProgress(len(held), now + wait)
                self._hub.emit(ManagerClosing(now, len(held), self.closing.deadline))
                result = await close_all(self.table, held, self.closing,
                                         lambda key: self.table.forget(key, deleted=True))
            result = _with_unsure(result, await self.table.taking_back.close(now + wait))
            self._hub.emit(result)
            return result
        finally:
            await _shut(self.table, self.records, self._hub, now + wait)

    def events(self) -> AsyncIterator[Event]:
        """A new subscription to every event from now on; it ends when the manager closes."""
        return self._hub.subscribe()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise InvalidRequest("the manager is not running; use 'async with MappingManager(...)'")

    def _entry(self, key: MappingKey) -> Entry:
        self._check_open()
        entry = self.table.entries.get(key)
        if entry is None:
            raise InvalidRequest(f"{key} is not mapped by this manager")
        return entry

    # -- the operations ------------------------------------------------------------------

    async def add(self, protocol: int, internal_port: int, *, external_port: int | None = None,
                  external_address: str | IPAddress | None = None,
                  lifetime: int | None = None, via: Via | None = None,
                  prefer_failure: bool = False, filters: Iterable[pcp.Filter] = (),
                  third_party: str | IPAddress | None = None, nonce: bytes | None = None,
                  timeout: float | None = None) -> ManagedMapping:
        """Map ``internal_port`` and keep it mapped. Takes :func:`~engine.map_port`'s options.

        Raises what the first request raised (the mapping is then not kept; unanswered or
        cancelled, what it may have made is deleted in the background, :mod:`.closing`) and
        emits :class:`~engine.events.MappingFailed`. Returns once its record's write is over."""
        self._check_open()
        key = MappingKey(int(as_protocol(int(protocol))), internal_port)
        if key in self.table.entries:
            raise InvalidRequest(f"{key} is already mapped by this manager")
        requested = self.lifetime if lifetime is None else lifetime
        proto = as_protocol(int(protocol))
        # What goes on the wire when no port is given: the internal one (see MapRequest).
        suggested = external_port if external_port is not None else \
            internal_port if proto in PORTED_PROTOCOLS else None
        view = ManagedMapping(key=key, protocol=proto, internal_port=internal_port,
                              state=MappingState.REQUESTING, requested_lifetime=requested,
                              suggested_external_port=suggested or None)
        # client.map's keyword arguments, for the first request; its nonce drawn here, so
        # that the delete of an unanswered add (.closing) can send it again.
        options: dict[str, Any] = dict(
            external_port=external_port, external_address=external_address, lifetime=requested,
            via=via or self.via, prefer_failure=prefer_failure, filters=tuple(filters),
            third_party=third_party, nonce=nonce or nonce_for(via or self.via))
        entry = Entry(view, MappingMachine(), options)
        self.table.entries[key], self.table.views[key] = entry, view
        entry.task = task = asyncio.ensure_future(
            first_request(self.table, entry, self.timeout if timeout is None else timeout))
        await task
        await self.records.written()  # on disk for `natdeck unmap`, or its write failed
        return view

    async def remove(self, key: MappingKey) -> None:
        """Delete the mapping at the gateway and stop managing it.

        The delete is sent whatever state the mapping is in (a delete of a mapping the
        gateway no longer holds is harmless); a request in flight for it is cancelled
        first, so nothing re-creates it. On failure it raises and the mapping stays
        managed ("try drop").
        """
        entry = self._entry(key)
        if entry.view.state is MappingState.REMOVING:
            raise InvalidRequest(f"{key} is being removed already")
        if entry.view.state is MappingState.REQUESTING and entry.task is not None:
            await asyncio.wait([entry.task])  # its first answer gives the nonce to delete
            entry = self._entry(key)
        if entry.busy and (task := entry.task) is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert entry.mapping is not None
        self.table.fire(entry, Trigger.REMOVE)
        try:
            await delete_mapping(self.client, entry.mapping, self.timeout)
        except BaseException as exc:  # (cancelled, or a bug, too: never left REMOVING)
            hand_back(self.table, self.watch, entry, exc)
            raise
        self.table.forget(key, deleted=True)
        await self.records.written()

    def save_state(self) -> None:
        """Write the state file's pending changes now (else within ``records.FLUSH_DELAY``)."""
        self.records.flush()

    async def renew(self, key: MappingKey) -> ManagedMapping:
        """Renew (or, if lost, failed or unconfirmed, ask again for) the mapping now."""
        entry = self._entry(key)
        if entry.busy or entry.view.state in (MappingState.REQUESTING, MappingState.REMOVING):
            raise InvalidRequest(f"{key} has a request in flight; try again in a moment")
        self.table.fire(entry, Trigger.USER_RENEW, user=True)
        if (task := entry.task) is not None:  # (the entry lets go of it once done)
            await asyncio.wait([task])  # (a remove() may cancel it: not our caller)
            if task.cancelled():
                raise InvalidRequest(f"{key} was removed while it was being renewed")
            task.result()  # raises what the request raised
        return entry.view

    # -- the gateway ---------------------------------------------------------------------

    def _check_local_address(self) -> None:
        """Follow this host's address towards the gateway if it changed (no packet sent)."""
        if self._follow_local and self._started \
                and (moved := self.route.moved(asyncio.get_running_loop().time())) is not None:
            self.table.local_address_changed(*moved)

    async def probe(self) -> ProbeResult:
        """Probe both protocols now; updates the status and emits ProbeCompleted."""
        self._check_local_address()
        return await self.watch.probe()

    async def refresh_external_address(self) -> IPAddress:
        """Ask the gateway for its external address now."""
        return await self.watch.refresh_external_address(self.timeout)


def _with_unsure(result: ManagerClosed, unsure: tuple[MappingKey, ...]) -> ManagerClosed:
    """``result`` with the adds whose take-back failed (:class:`.closing.TakeBacks`) among
    what is left: they may hold a mapping at the gateway, and the caller must be told."""
    extra = tuple(key for key in unsure if key not in result.left)
    if not extra:
        return result
    why = result.why or f"{extra[0]}: an unanswered add, whose delete was not answered either"
    return dataclasses.replace(result, left=result.left + extra, why=why)


async def _shut(table: MappingTable, records: Records, hub: EventHub, until: float) -> None:
    """The last of :meth:`MappingManager.close`, each step whatever the one before did:
    the deletes of unanswered adds (until loop time ``until``), the socket, the state
    file, the event streams. A state file that cannot be written is logged: the
    subscribers' streams end all the same (else they would wait forever)."""
    try:
        await table.taking_back.close(until)
    finally:
        table.client.close()
        try:
            records.close()  # the changes of the last moments (deletes) too
        except Exception:
            log.exception("could not write the state file on close")
        finally:
            hub.close()
