"""MappingManager: keeps a set of mappings on one gateway true until they are removed.

One scheduler task serves every mapping: a heap of due times (renewal, expiry,
retry), so 10,000 mappings cost 10,000 heap entries, not 10,000 sleeping tasks.
A due mapping gets a short-lived task for its one request; the transport bounds
how many are in flight to the gateway.

What it reacts to:

* Renewal on the RFC schedule: PCP at a random 1/2-5/8 of the granted lifetime
  (RFC 6887 §11.2.1), NAT-PMP at half of it with a little jitter (RFC 6886 §3.3);
  unanswered renewals are retried in the RFC's later windows until expiry; then
  the mapping is reported lost and recovered.
* Epochs: every answer and announcement is checked (RFC 6887 §8.5, RFC 6886 §3.6);
  a gateway that lost its state gets every mapping back, asking for the same
  external ports, with no user action.
* Announcements (see :mod:`engine.announce`): a NAT-PMP address change updates
  every mapping and the status at once (and PCP mappings are renewed to confirm
  it); an announcement whose epoch shows lost state gets every mapping back. Both
  after the RFC's random 0-5 s delay (RFC 6887 §14.1.3), once per change: the
  repetitions of an announcement (ten, RFC 6886 §3.2.1) or a flood of them add
  no requests.
* Errors: a short-lifetime error is retried when the gateway's error lifetime is
  over; a long-lifetime one leaves the mapping FAILED until something changes
  (the gateway restarts, its address changes, or the user renews).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import logging
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from . import timing
from .announce import ANNOUNCE_PORTS, Announcement, AnnouncementListener
from .client import (
    DEFAULT_LIFETIME,
    DEFAULT_TIMEOUT,
    GatewayClient,
    PortMapping,
    ProbeResult,
    Via,
)
from .codes import ErrorLifetime
from .discovery import connected_source_address
from .errors import (
    GatewayTimeout,
    InvalidRequest,
    NatDeckError,
    ResultCodeError,
    TransportError,
)
from .events import (
    Event,
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayStatus,
    GatewayUnreachable,
    LocalAddressChanged,
    ManagedMapping,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRemoved,
    MappingRenewalFailed,
    MappingRenewed,
    MappingState,
    ProbeCompleted,
    ProtocolName,
)
from .protocols import as_protocol
from .transport import SERVER_PORT, Message
from .wire import pcp
from .wire.addresses import IPAddress, to_address

__all__ = ["MappingManager", "non_public_warning"]

log = logging.getLogger("engine.manager")

#: Retry a short-lifetime NAT-PMP error (NETWORK_FAILURE, OUT_OF_RESOURCES) after this long:
#: NAT-PMP has no error lifetime (our policy; PCP gateways such as miniupnpd say 30 s).
NATPMP_ERROR_RETRY = 30.0
#: Recovery of a lost mapping on silence: 5 s doubling to at most this.
MAX_RECOVERY_BACKOFF = 60.0
#: How long leaving the ``async with`` may spend deleting mappings.
CLOSE_DEADLINE = 5.0
#: At most this often (seconds) the route's source address is looked at again.
LOCAL_ADDRESS_CHECK_INTERVAL = 1.0
#: Events kept for a subscriber that does not read them.
MAX_QUEUED = 10_000
#: With no announcement listener, probe the gateway this often to notice changes.
FALLBACK_PROBE_INTERVAL = 60.0

_NON_PUBLIC = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10")]


def non_public_warning(address: IPAddress | None) -> str | None:
    """A warning when the external address cannot be reached from the internet."""
    if address is None:
        return None
    if any(address in net for net in _NON_PUBLIC if net.version == address.version):
        return (f"external address {address} is not public: there is another NAT above this "
                "gateway (carrier-grade NAT or a second router), so mappings may not be "
                "reachable from the internet")
    return None


@dataclass(eq=False)
class _Entry:
    view: ManagedMapping
    options: dict[str, Any]
    mapping: PortMapping | None = None
    generation: int = 0
    busy: bool = False
    attempt: int = 0
    """Unanswered renewals since the last grant (selects the RFC 6887 §11.2.1 window)."""
    backoff: float = 5.0
    long_failure: bool = False
    pending_ops: set[asyncio.Task[None]] = field(default_factory=set)
    recheck: bool = False
    """The gateway lost its state (or changed address) while a request was in flight:
    its answer may predate that, or the request died with the gateway's queue."""


class _Subscription:
    def __init__(self, manager: MappingManager) -> None:
        self._manager = manager
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.missed = 0

    def put(self, event: Event) -> None:
        # A consumer that stops reading must not grow memory without bound: past
        # MAX_QUEUED the oldest events go, and ``missed`` counts them.
        if self.queue.qsize() >= MAX_QUEUED:
            self.queue.get_nowait()
            self.missed += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> _Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.queue.get()
        if event is None:
            self._manager._subscribers.discard(self)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._manager._subscribers.discard(self)


class MappingManager:
    """Owns mappings on one gateway and keeps each one alive until it is removed.

    Use as ``async with MappingManager(gateway) as mgr``. Leaving the block
    deletes every mapping (unless ``keep``), within :data:`CLOSE_DEADLINE`
    seconds, and leaves no task or socket behind.
    """

    def __init__(self, gateway: str | IPAddress, *, gateway_port: int = SERVER_PORT,
                 local_address: str | IPAddress | None = None, via: Via = "auto",
                 lifetime: int = DEFAULT_LIFETIME, timeout: float = DEFAULT_TIMEOUT,
                 listen: bool = True, announce_ports: Iterable[int] = ANNOUNCE_PORTS,
                 announce_host: str | None = None, multicast: bool = True,
                 keep: bool = False, rng: random.Random | None = None,
                 probe_on_start: bool = True,
                 probe_interval: float | None = None,
                 max_in_flight: int | None = None,
                 local_address_probe: Callable[[], IPAddress | None] | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.client = GatewayClient(gateway, gateway_port, local_address=local_address,
                                    rng=self.rng, max_in_flight=max_in_flight)
        self.client.on_state_lost.append(self._state_lost)
        self.client.channel.observers.append(self._heard)
        self.via: Via = via
        self.lifetime = lifetime
        self.timeout = timeout
        self.keep = keep
        self.listen = listen
        self.announce_ports = tuple(announce_ports)
        self.announce_host = announce_host
        self.multicast = multicast
        self.probe_on_start = probe_on_start
        self.probe_interval = probe_interval
        # With no explicit local address, the one the kernel picks for the gateway is
        # checked again before renewals: a new DHCP lease, another Wi-Fi... (no packet sent).
        self._follow_local = local_address is None
        self._local_probe = local_address_probe or (
            lambda: connected_source_address(self.client.gateway, self.client.port))
        self._local_checked_at = float("-inf")
        self.status = GatewayStatus(gateway=self.client.gateway, port=gateway_port,
                                    local_address=self.client._explicit_local)
        self._entries: dict[MappingKey, _Entry] = {}
        self._views: dict[MappingKey, ManagedMapping] = {}
        self.mappings: Mapping[MappingKey, ManagedMapping] = MappingProxyType(self._views)
        self._subscribers: set[_Subscription] = set()
        self._heap: list[tuple[float, int, MappingKey, int]] = []
        self._sequence = 0
        self._wakeup: asyncio.Event | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listener: AnnouncementListener | None = None
        self._loss_announced = False
        self._started = False
        self._closed = False

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
        self._wakeup = asyncio.Event()
        await self.client.__aenter__()
        try:
            self.status.local_address = await self.client.local_address()
        except NatDeckError as exc:
            log.info("local address unknown: %s", exc)
        if self.listen:
            self._listener = AnnouncementListener(
                self.client.gateway, self._announced, host=self.announce_host,
                ports=self.announce_ports, multicast=self.multicast,
                local_address=self.status.local_address, source_port=self.client.port)
            try:
                await self._listener.start()
            except TransportError as exc:
                self.status.listen_error = str(exc)
                self._listener = None
            else:
                self.status.listening = True
                if self._listener.errors:
                    self.status.listen_error = "; ".join(self._listener.errors)
        if not self.status.listening and self.probe_interval is None and self.listen:
            # Degrade: without announcements, notice changes by probing now and then.
            self.probe_interval = FALLBACK_PROBE_INTERVAL
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="natdeck-scheduler")
        if self.probe_on_start:
            self._spawn(self._probe_quietly())
        if self.probe_interval:
            self._spawn(self._probe_periodically(self.probe_interval))

    async def close(self) -> None:
        """Delete every mapping (unless ``keep``), stop every task, close every socket."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._listener is not None:
            self._listener.close()
        if not self.keep:
            await self._delete_all_on_close()
        self.client.close()
        for subscription in list(self._subscribers):
            subscription.queue.put_nowait(None)

    async def _delete_all_on_close(self) -> None:
        entries = [e for e in self._entries.values()
                   if e.mapping is not None and not e.mapping.deleted]
        if not entries:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_DEADLINE

        async def drop(entry: _Entry) -> None:
            assert entry.mapping is not None
            remaining = max(0.1, deadline - loop.time())
            try:
                await self.client.delete(entry.mapping, timeout=remaining)
            except NatDeckError as exc:
                log.warning("could not delete %s on exit: %s", entry.view.key, exc)
                return
            self._forget(entry.view.key, deleted=True)

        tasks = [asyncio.create_task(drop(e)) for e in entries]
        try:
            await asyncio.wait(tasks, timeout=CLOSE_DEADLINE + 0.5)
        finally:
            # Also when close() itself is cancelled: no delete task outlives it.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def events(self) -> AsyncIterator[Event]:
        """A new subscription to every event from now on; it ends when the manager closes."""
        subscription = _Subscription(self)
        if self._closed:
            subscription.queue.put_nowait(None)
        self._subscribers.add(subscription)
        return subscription

    def _emit(self, event: Event) -> None:
        log.debug("event: %s", event.summary)
        for subscription in self._subscribers:
            subscription.put(event)

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the scheduler -------------------------------------------------------------------

    def _schedule(self, entry: _Entry, at: float | None) -> None:
        """(Re)schedule ``entry``'s next action at loop time ``at`` (None: nothing due)."""
        entry.generation += 1
        entry.view.next_renewal_at = at
        due = at
        if entry.view.expires_at is not None and entry.view.state in (
                MappingState.ACTIVE, MappingState.RENEWING, MappingState.FAILED):
            due = entry.view.expires_at if due is None else min(due, entry.view.expires_at)
        if due is None:
            return
        self._sequence += 1
        heapq.heappush(self._heap, (due, self._sequence, entry.view.key, entry.generation))
        if self._wakeup is not None and self._heap[0][1] == self._sequence:
            self._wakeup.set()

    async def _schedule_loop(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            if self._heap and self._heap[0][0] <= now:
                self._check_local_address()
            while self._heap and self._heap[0][0] <= now:
                _, _, key, generation = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is None or entry.generation != generation or entry.busy:
                    continue
                self._run(entry, self._due(entry))
            self._wakeup.clear()
            delay = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def _run(self, entry: _Entry, coro: Coroutine[object, object, None]) -> None:
        entry.busy = True

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not stop the other mappings
                log.exception("internal error while handling %s", entry.view.key)
            finally:
                entry.busy = False
                self._after_request(entry)

        self._spawn(guarded())

    async def _due(self, entry: _Entry) -> None:
        view = entry.view
        now = self._now()
        if view.state in (MappingState.ACTIVE, MappingState.RENEWING, MappingState.FAILED) \
                and view.expires_at is not None and now >= view.expires_at:
            if entry.long_failure:
                # RFC 6887 §15: a long-lifetime error is not retried until something
                # changes. The mapping is gone at the gateway now: say so, stay FAILED.
                view.expires_at = None
                self._schedule(entry, None)
                self._emit(MappingLost(now, view.key, f"expired: {view.reason}"))
                return
            self._lose(entry, "its lifetime ran out before a renewal succeeded"
                       if view.reason is None else f"expired: {view.reason}")
        if view.state is MappingState.LOST or (view.state is MappingState.FAILED
                                               and not entry.long_failure):
            await self._recover(entry)
        elif view.state in (MappingState.ACTIVE, MappingState.RENEWING):
            await self._renew(entry)

    # -- the operations ------------------------------------------------------------------

    def _update_view(self, entry: _Entry, mapping: PortMapping) -> None:
        view = entry.view
        view.via = mapping.via
        view.external_port = mapping.external_port
        view.external_address = mapping.external_address
        view.lifetime = mapping.lifetime
        view.granted_at = mapping.granted_at
        view.expires_at = mapping.expires_at
        view.epoch = mapping.epoch
        view.nonce = mapping.nonce
        view.options = mapping.options
        view.reason = None
        view.error = None
        view.state = MappingState.ACTIVE
        entry.attempt = 0
        entry.backoff = 5.0
        entry.long_failure = False
        if mapping.external_address is not None and not entry.recheck:
            # (With recheck set the answer may predate an address change: not news.)
            self._external_address(mapping.external_address, "response")
        self.status.via = mapping.via
        self._schedule(entry, self._renewal_time(mapping))

    def _renewal_time(self, mapping: PortMapping) -> float:
        lifetime = max(mapping.lifetime, 1)
        if mapping.via == "pcp":
            delay = timing.pcp_renewal_delay(lifetime, self.rng)
        else:
            delay = timing.natpmp_renewal_delay(lifetime, self.rng)
        return mapping.granted_at + delay

    async def add(self, protocol: int, internal_port: int, *,
                  external_port: int | None = None,
                  external_address: str | IPAddress | None = None,
                  lifetime: int | None = None, via: Via | None = None,
                  prefer_failure: bool = False, filters: Iterable[pcp.Filter] = (),
                  third_party: str | IPAddress | None = None,
                  nonce: bytes | None = None,
                  timeout: float | None = None) -> ManagedMapping:
        """Map ``internal_port`` and keep it mapped. Takes :func:`~engine.map_port`'s options.

        Raises what the first request raised (the mapping is then not kept) and
        emits :class:`~engine.events.MappingFailed`.
        """
        self._check_open()
        key = MappingKey(int(as_protocol(int(protocol))), internal_port)
        if key in self._entries:
            raise InvalidRequest(f"{key} is already mapped by this manager")
        requested = self.lifetime if lifetime is None else lifetime
        view = ManagedMapping(key=key, protocol=as_protocol(int(protocol)),
                              internal_port=internal_port, state=MappingState.REQUESTING,
                              requested_lifetime=requested)
        # client.map's keyword arguments, kept to ask again if the first request failed.
        options: dict[str, Any] = dict(
            external_port=external_port, external_address=external_address,
            lifetime=requested, via=via or self.via, prefer_failure=prefer_failure,
            filters=tuple(filters), third_party=third_party, nonce=nonce)
        entry = _Entry(view, options, busy=True)
        self._entries[key] = entry
        self._views[key] = view
        try:
            mapping = await self._map_new(entry, self.timeout if timeout is None else timeout)
        except NatDeckError as exc:
            self._entries.pop(key, None)
            self._views.pop(key, None)
            self._failed_request(exc)
            self._emit(MappingFailed(self._now(), key, exc))
            raise
        finally:
            entry.busy = False
        entry.mapping = mapping
        self._update_view(entry, mapping)
        self._emit(MappingAdded(self._now(), key, view))
        self._after_request(entry)
        return view

    async def _map_new(self, entry: _Entry, timeout: float | None) -> PortMapping:
        """Ask for ``entry``'s mapping with the options it was added with."""
        return await self.client.map(int(entry.view.protocol), entry.view.internal_port,
                                     timeout=timeout, **entry.options)

    async def remove(self, key: MappingKey) -> None:
        """Delete the mapping at the gateway and stop managing it.

        On failure it raises and the mapping stays managed ("try drop").
        """
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            raise InvalidRequest(f"{key} is not mapped by this manager")
        if entry.mapping is None or entry.mapping.deleted or entry.view.state in (
                MappingState.LOST,) or (entry.view.expires_at is not None
                                         and entry.view.expires_at <= self._now()):
            self._forget(key, deleted=False)
            return
        previous = entry.view.state
        entry.view.state = MappingState.REMOVING
        entry.generation += 1  # nothing scheduled runs while we delete
        try:
            await self.client.delete(entry.mapping, timeout=self.timeout)
        except NatDeckError as exc:
            entry.view.state = previous
            entry.view.reason = f"delete failed: {exc}"
            self._failed_request(exc)
            self._schedule(entry, entry.view.next_renewal_at)
            raise
        self._forget(key, deleted=True)

    def _forget(self, key: MappingKey, *, deleted: bool) -> None:
        entry = self._entries.pop(key, None)
        self._views.pop(key, None)
        if entry is not None:
            entry.generation += 1
            self._emit(MappingRemoved(self._now(), key, deleted_at_gateway=deleted))

    async def renew(self, key: MappingKey) -> ManagedMapping:
        """Renew (or, if lost or failed, recreate) the mapping now."""
        self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            raise InvalidRequest(f"{key} is not mapped by this manager")
        if entry.busy:
            raise InvalidRequest(f"{key} has a request in flight; try again in a moment")
        entry.busy = True
        try:
            if entry.view.state in (MappingState.LOST, MappingState.FAILED):
                entry.long_failure = False
                await self._recover(entry, raise_errors=True)
            else:
                await self._renew(entry, raise_errors=True)
        finally:
            entry.busy = False
            self._after_request(entry)
        return entry.view

    async def _renew(self, entry: _Entry, *, raise_errors: bool = False) -> None:
        assert entry.mapping is not None
        view = entry.view
        view.state = MappingState.RENEWING
        now = self._now()
        old_port = entry.mapping.external_port
        # RFC 6887 §11.2.1: one renewal request, then (unanswered) the next in the next
        # window of the lifetime, never less than 4 s later. So a scheduled PCP renewal is
        # not retransmitted on the 3 s RFC 3315 schedule: its answer is awaited until the
        # next window. NAT-PMP keeps its 250 ms retransmissions (RFC 6886 §3.1), and so
        # does a renewal the user asked for (raise_errors): a request now, like any other.
        lifetime = max(view.lifetime, 1)
        planned = timing.renewal_retry_at(
            view.granted_at if view.granted_at is not None else now, lifetime, now,
            entry.attempt + 1, self.rng,
            min_spacing=min(timing.PCP_RENEWAL_MIN_SPACING, lifetime / 8))
        until = planned if planned is not None else view.expires_at
        left = (until - now) if until is not None else self.timeout
        try:
            await self.client.renew(entry.mapping, timeout=max(1.0, min(self.timeout, left)),
                                    retransmit=entry.mapping.via != "pcp" or raise_errors)
        except NatDeckError as exc:
            self._failed_request(exc)
            view.reason = str(exc)
            view.error = exc.with_traceback(None)  # keep the message, not the frames
            view.failures += 1
            entry.attempt += 1
            retry = self._retry_after_error(entry, exc, planned)
            self._emit(MappingRenewalFailed(self._now(), view.key, exc, retry))
            if raise_errors:
                raise
            return
        view.renewals += 1
        self._update_view(entry, entry.mapping)
        self._emit(MappingRenewed(self._now(), view.key, view,
                                  port_changed=entry.mapping.external_port != old_port))

    def _retry_after_error(self, entry: _Entry, exc: NatDeckError,
                           planned: float | None) -> float | None:
        """Decide (and schedule) what follows a failed renewal; returns the retry time.

        ``planned`` is the next renewal window's time, drawn when the request was sent.
        """
        view = entry.view
        now = self._now()
        if isinstance(exc, ResultCodeError):
            if exc.lifetime_kind is ErrorLifetime.LONG:
                view.state = MappingState.FAILED
                entry.long_failure = True
                self._schedule(entry, None)  # expiry still reported
                return None
            wait = self._error_wait(exc)
            view.state = MappingState.RENEWING
            self._schedule(entry, now + wait)
            return now + wait
        retry = None if planned is None else max(planned, now)
        view.state = MappingState.RENEWING
        self._schedule(entry, retry)
        return retry

    def _error_wait(self, exc: ResultCodeError) -> float:
        if exc.error_lifetime is not None:
            return float(min(max(exc.error_lifetime, 1), 3600))
        return NATPMP_ERROR_RETRY

    def _lose(self, entry: _Entry, reason: str) -> None:
        view = entry.view
        if view.state is MappingState.LOST:
            return
        view.state = MappingState.LOST
        view.reason = reason
        entry.long_failure = False
        self._emit(MappingLost(self._now(), view.key, reason))

    async def _recover(self, entry: _Entry, *, raise_errors: bool = False) -> None:
        view = entry.view
        old_port = view.external_port
        try:
            if entry.mapping is None:
                entry.mapping = await self._map_new(entry, self.timeout)
            else:
                await self.client.recreate(entry.mapping, timeout=self.timeout)
        except NatDeckError as exc:
            self._failed_request(exc)
            view.error = exc.with_traceback(None)  # keep the message, not the frames
            view.reason = str(exc)
            view.failures += 1
            now = self._now()
            retry: float | None
            if isinstance(exc, ResultCodeError) and exc.lifetime_kind is ErrorLifetime.LONG:
                view.state = MappingState.FAILED
                entry.long_failure = True
                retry = None
            elif isinstance(exc, ResultCodeError):
                view.state = MappingState.LOST
                retry = now + self._error_wait(exc)
            else:
                view.state = MappingState.LOST
                retry = now + entry.backoff * (0.9 + 0.2 * self.rng.random())
                entry.backoff = min(entry.backoff * 2, MAX_RECOVERY_BACKOFF)
            view.expires_at = None
            self._schedule(entry, retry)
            self._emit(MappingFailed(now, view.key, exc, retry))
            if raise_errors:
                raise
            return
        self._update_view(entry, entry.mapping)
        self._emit(MappingRecovered(self._now(), view.key, view,
                                    same_port=old_port in (None, entry.mapping.external_port)))

    def _after_request(self, entry: _Entry) -> None:
        """Check ``entry`` again soon if its gateway changed while its request was out."""
        if not entry.recheck or self._closed:
            return
        entry.recheck = False
        if self._entries.get(entry.view.key) is entry and entry.view.state in (
                MappingState.ACTIVE, MappingState.RENEWING, MappingState.LOST):
            # A renewal (or recovery) re-creates the mapping if the gateway lost it,
            # after the same random 0-5 s as the others (RFC 6887 §14.1.3).
            self._schedule(entry, self._now() + timing.announce_response_delay(self.rng))

    def _check_open(self) -> None:
        if not self._started or self._closed:
            raise InvalidRequest("the manager is not running; use 'async with MappingManager(...)'")

    # -- what the gateway says -----------------------------------------------------------

    def _heard(self, message: Message) -> None:
        """Every accepted answer: the gateway is reachable; note epoch and RTT."""
        self.status.last_contact = self._now()
        self.status.epoch = self.client.last_epoch
        self.status.rtt = self.client.rtt
        self.status.speaks_pcp = self.client.speaks["pcp"]
        self.status.speaks_natpmp = self.client.speaks["natpmp"]
        if self.status.reachable is not True:
            self.status.reachable = True
            self._emit(GatewayReachable(self._now()))
            # Something changed: give lasting failures another chance.
            self._retry_failed()

    def _failed_request(self, exc: NatDeckError) -> None:
        self.status.speaks_pcp = self.client.speaks["pcp"]
        self.status.speaks_natpmp = self.client.speaks["natpmp"]
        if isinstance(exc, GatewayTimeout | TransportError) and self.status.reachable is not False:
            self.status.reachable = False
            self._emit(GatewayUnreachable(self._now(), str(exc)))

    def _retry_failed(self) -> None:
        for entry in self._entries.values():
            if entry.view.state is MappingState.FAILED and entry.long_failure and not entry.busy:
                entry.long_failure = False
                entry.view.state = MappingState.LOST
                self._schedule(entry, self._now())

    def _state_lost(self, protocol: ProtocolName, epoch: int) -> None:
        """The gateway lost its mappings (an epoch said so): get every one back."""
        self.status.restarts += 1
        self.status.epoch = epoch
        self._emit(GatewayRestarted(self._now(), protocol, epoch))
        # The other protocol's epoch went back with this one (one table, and miniupnpd
        # shares the epoch): forget it, or its next answer reports the same reboot again.
        self.client.epochs["natpmp" if protocol == "pcp" else "pcp"] = None
        now = self._now()
        for entry in self._entries.values():
            if entry.busy or entry.mapping is None:
                entry.recheck = True
                continue
            self._lose(entry, "the gateway lost its state (restart or reboot)")
            # RFC 6887 §14.1.3: after an announcement every client of the gateway hears
            # it, so each request waits a random 0-5 s; an answer's epoch is ours alone.
            delay = timing.announce_response_delay(self.rng) if self._loss_announced else 0.0
            self._schedule(entry, now + delay)

    def _external_address(self, address: IPAddress, source: str) -> None:
        old = self.status.external_address
        self.client.external_address = address
        if old == address:
            return
        self.status.external_address = address
        self.status.warning = non_public_warning(address)
        self._emit(ExternalAddressChanged(self._now(), old, address, source))

    def _announced(self, announcement: Announcement) -> None:
        now = self._now()
        self.status.last_contact = now
        protocol: ProtocolName = "natpmp" if announcement.kind == "natpmp_address" else "pcp"
        # RFC 6887 §14.1.3 and §8.5: the epoch says whether the gateway lost its state; if
        # it did, _state_lost gets every mapping back. An announcement that says nothing
        # new (the nine repetitions of RFC 6886 §3.2.1, a flood) costs no request.
        self._loss_announced = True
        try:
            self.client.observe_epoch(protocol, announcement.epoch, now)
        finally:
            self._loss_announced = False
        self.status.epoch = announcement.epoch
        new = announcement.external_address
        old = self.status.external_address
        if new is None or new == old:
            return
        self._external_address(new, "announce")
        for entry in self._entries.values():
            mapping = entry.mapping
            if mapping is None or entry.busy:
                entry.recheck = True  # its answer may still carry the old address
            if mapping is None or entry.view.external_address not in (old, None):
                continue  # a PCP mapping on another address of the gateway's pool
            mapping.external_address = new
            entry.view.external_address = new
            # A PCP mapping learns its address from the gateway: confirm it, after the
            # random 0-5 s of RFC 6887 §14.1.3 (one renewal each, however many
            # announcements). Lost ones are being recovered already.
            if (mapping.via == "pcp" and not entry.busy
                    and entry.view.state in (MappingState.ACTIVE, MappingState.RENEWING)):
                self._schedule(entry, now + timing.announce_response_delay(self.rng))

    # -- probing ---------------------------------------------------------------------------

    def _check_local_address(self) -> None:
        """Notice that this host's address towards the gateway changed, and follow it."""
        if not self._follow_local or not self._started:
            return
        now = self._now()
        if now - self._local_checked_at < LOCAL_ADDRESS_CHECK_INTERVAL:
            return
        self._local_checked_at = now
        current = self._local_probe()
        old = self.status.local_address
        if current is None or old is None or current == old:
            return
        log.info("local address changed from %s to %s", old, current)
        self.status.local_address = current
        self.client.rebind(current)
        self._emit(LocalAddressChanged(now, old, current))
        # The gateway maps the old address; ask again for the same external ports, for
        # the new one (the old mappings expire at the gateway).
        for entry in self._entries.values():
            if entry.mapping is None:
                continue
            entry.mapping.local_address = current
            if entry.busy:
                continue
            self._lose(entry, f"the local address changed from {old} to {current}")
            self._schedule(entry, now)

    async def probe(self) -> ProbeResult:
        """Probe both protocols now; updates the status and emits ProbeCompleted."""
        self._check_local_address()
        result = await self.client.probe()
        self.status.speaks_pcp = result.pcp
        self.status.speaks_natpmp = result.natpmp
        if result.rtt is not None:
            self.status.rtt = result.rtt
        if self.status.via is None:
            self.status.via = result.via
        if result.external_address is not None:
            self._external_address(result.external_address, "probe")
        if not result.reachable and self.status.reachable is not False:
            self.status.reachable = False
            self._emit(GatewayUnreachable(self._now(), "no answer to a probe of PCP and NAT-PMP"))
        self._emit(ProbeCompleted(self._now(), result))
        return result

    async def refresh_external_address(self) -> IPAddress:
        """Ask the gateway for its external address now."""
        try:
            address = await self.client.get_external_address(timeout=self.timeout)
        except NatDeckError as exc:
            self._failed_request(exc)
            raise
        self._external_address(to_address(address), "request")
        return address

    async def _probe_quietly(self) -> None:
        with contextlib.suppress(NatDeckError):
            await self.probe()

    async def _probe_periodically(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(NatDeckError):
                await self.probe()

