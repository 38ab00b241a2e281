"""The managed mappings: each one's machine (:mod:`.state`), its due time
(:mod:`.schedule`) and the one request it may have in flight.

asyncio glue only: the decisions are the state table's. One scheduler task
serves every mapping; a due mapping gets a short-lived task for its one
request; the transport bounds how many are in flight to the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import timing
from ..client import GatewayClient, PortMapping
from ..errors import NatDeckError, ResultCodeError
from ..events import (
    Event,
    GatewayAnswer,
    ManagedMapping,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRemoved,
    MappingRenewalFailed,
    MappingState,
    RequestKind,
    error_words,
    opcode_label,
)
from ..wire.addresses import IPAddress
from .closing import TakeBacks
from .records import Records
from .requests import send_request
from .schedule import Alarm, DueTimes
from .state import Action, MappingMachine, Trigger, trigger_for_error
from .watch import GatewayWatch, Round

__all__ = ["NATPMP_ERROR_RETRY", "Entry", "MappingTable"]

log = logging.getLogger("engine.manager")

#: Retry a short-lifetime error that carries no error lifetime (NAT-PMP's
#: NETWORK_FAILURE, OUT_OF_RESOURCES) after this long (our policy; PCP gateways
#: such as miniupnpd say 30 s).
NATPMP_ERROR_RETRY = 30.0

_EXPIRING = (MappingState.ACTIVE, MappingState.RENEWING, MappingState.CONFIRMING,
             MappingState.FAILED)


@dataclass(eq=False)
class Entry:
    """One managed mapping: what the user sees, its machine, and the gateway's mapping."""

    view: ManagedMapping
    machine: MappingMachine
    options: dict[str, Any]
    mapping: PortMapping | None = None
    task: asyncio.Task[None] | None = None
    """The request in flight for it (the manager's own), if any."""
    planned: float | None = None
    """The next RFC 6887 §11.2.1 renewal window, drawn when the renewal was sent."""
    expiry_told: bool = False
    lost_told: bool = False
    """MappingLost was emitted and no MappingRecovered since."""
    error_until: float = float("-inf")
    """The last short-lifetime error lasts until then: not asked again before (RFC 6887 §15)."""

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()


class MappingTable:
    """Entries by key, their due times, and the requests that serve them."""

    def __init__(self, client: GatewayClient, watch: GatewayWatch, emit: Callable[[Event], None],
                 records: Records, *, rng: random.Random, timeout: float) -> None:
        self.client, self.watch, self.emit, self.records = client, watch, emit, records
        self.rng, self.timeout = rng, timeout
        self.taking_back = TakeBacks()  # what unanswered adds may have made (.closing)
        self.entries: dict[MappingKey, Entry] = {}
        self.views: dict[MappingKey, ManagedMapping] = {}
        # By entry (hashed by identity), not by MappingKey (a dataclass: its hash is Python).
        self.due: DueTimes[Entry] = DueTimes()
        self.alarm = Alarm(self.due, self._ring)
        self.upnp: set[MappingKey] = set()
        """The keys whose mapping is a UPnP IGD one (looked up now and then: .presence)."""
        self.before_due: Callable[[], None] = lambda: None

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- the scheduler ---------------------------------------------------------------------

    def set_due(self, entry: Entry, at: float | None) -> None:
        """Schedule ``entry``'s next action at ``at`` (None: none), or its expiry if sooner."""
        entry.view.next_renewal_at = at
        due = at
        expires = entry.view.expires_at
        if expires is not None and not entry.expiry_told and entry.view.state in _EXPIRING:
            due = expires if due is None else min(due, expires)
        if self.due.set(entry, due):
            self.alarm.at(due)

    async def run(self) -> None:
        """The scheduler, until cancelled: the alarm (:class:`.schedule.Alarm`) rings for
        each due time; this task holds it for the manager's lifetime."""
        loop = asyncio.get_running_loop()
        self.alarm.start(loop)
        try:
            await loop.create_future()  # never done: cancelled by close()
        finally:
            self.alarm.stop()

    def _ring(self, when: float) -> None:
        now = max(self._now(), when)  # (asyncio may run a timer a clock tick early)
        due = self.due.pop_due(now)  # (an entry forgotten is no longer due: see forget())
        if due:
            # (If the local address moved, what is due asks for the new one.)
            self.before_due()
            for entry in due:
                if not entry.busy:
                    self._timer(entry, now)

    def _timer(self, entry: Entry, now: float) -> None:
        view = entry.view
        if view.state in _EXPIRING and view.expires_at is not None \
                and now >= view.expires_at and not entry.expiry_told:
            reason = expiry_reason(view)
            entry.expiry_told = True
            was = view.state
            self.fire(entry, Trigger.EXPIRED)
            if was is MappingState.FAILED:
                # RFC 6887 §15: a long-lifetime error waits for a change; say it is gone.
                view.expires_at = None
                self.emit(MappingLost(now, view.key, reason))
            else:
                self.lost(entry, reason, was)
                if entry.error_until > now:
                    # Expired while a refusal lasts: asked again when the error is over,
                    # not at once (RFC 6887 §15: the error lifetime holds, expiry or not).
                    self.set_due(entry, entry.error_until)
            return
        self.fire(entry, Trigger.DUE)

    # -- transitions -----------------------------------------------------------------------

    def fire(self, entry: Entry, trigger: Trigger, *, user: bool = False,
             error: NatDeckError | None = None) -> Action:
        """Feed ``trigger`` to the entry's machine and carry out the action."""
        action = entry.machine.fire(trigger)
        entry.view.state = entry.machine.state
        if action is Action.SCHEDULE_RENEWAL:  # (the most frequent: after every grant)
            assert entry.mapping is not None
            entry.expiry_told = False
            self.set_due(entry, renewal_time(entry.mapping, self.rng))
            return action
        if action is Action.RENEW or action is Action.RECREATE:
            # Nothing due while the request is out (a due busy entry is skipped): its
            # outcome sets the next time, and the expiry with it.
            entry.view.next_renewal_at = None
            self.due.set(entry, None)
            # The entry holds its task until the answer is in (close() cancels it there):
            # no done-callback bookkeeping, a loop turn less for each renewal.
            entry.task = asyncio.get_running_loop().create_task(
                send_request(self, entry, action, user=user))
            return action
        now = self._now()
        if action is Action.RECREATE_NOW:
            self.set_due(entry, now)
        elif action is Action.CONFIRM_LATER:
            self.set_due(entry, now + self.rng.uniform(0.0, self.watch.announce_delay))
        elif action is Action.RETRY_WINDOW:
            self.set_due(entry, None if entry.planned is None else max(entry.planned, now))
        elif action is Action.RETRY_BACKOFF:
            self.set_due(entry, now + entry.machine.next_backoff(self.rng.random()))
        elif action is Action.RETRY_AFTER_ERROR:
            entry.error_until = now + error_wait(error)
            self.set_due(entry, entry.error_until)
        elif action is Action.WAIT_FOR_CHANGE:
            self.set_due(entry, None)
        elif action is Action.DELETE:
            self.due.set(entry, None)  # nothing scheduled runs while it deletes
        elif action is Action.RESUME:
            self.set_due(entry, resume_at(entry.view, now))
        return action

    def lost(self, entry: Entry, reason: str, was: MappingState) -> None:
        """Say the mapping is lost (once), if this transition made it so."""
        if was is not MappingState.LOST and entry.view.state is MappingState.LOST:
            entry.view.reason = reason
            entry.lost_told = True
            self.emit(MappingLost(self._now(), entry.view.key, reason))

    def changed(self, change: Round) -> int:
        """The gateway restarted or announced something: every mapping follows it.
        Returns how many mappings were made to ask again (the others had asked already,
        or have a confirmation due within the round: coalesced)."""
        fired = 0
        now = self._now()
        if change.new_address is not None:
            self._follow_address(*change.new_address)
        trigger = Trigger.GONE if change.lost else Trigger.CHANGED
        for entry in self.entries.values():
            state = entry.view.state
            if state is MappingState.REMOVING:
                continue
            if entry.busy:
                sent = entry.machine.sent_at
                if sent is not None and sent > change.at:
                    continue  # its answer will show the new state
            elif entry.machine.confirmed_at > change.at:
                continue  # asked after the change already
            due = self.due.at(entry)
            if (not change.lost and state in (MappingState.CONFIRMING, MappingState.LOST)
                    and due is not None and now <= due <= now + change.spread):
                continue  # a confirmation is due within the window already: coalesced
            # (A busy one's answer is stale: the machine sees that, sent_at < last_change.)
            self.fire(entry, trigger)
            fired += 1
            self.lost(entry, change.reason, state)
            if change.lost and not entry.busy:
                self.set_due(entry, now + self.rng.uniform(0.0, change.spread))
        return fired

    def _follow_address(self, old: IPAddress | None, new: IPAddress) -> None:
        # The NAT-PMP announcement names the new address (RFC 6886 §3.2.1): show it at
        # once; a PCP mapping on another address of the gateway's pool keeps its own.
        for entry in self.entries.values():
            if entry.mapping is None or entry.view.external_address not in (old, None):
                continue
            entry.mapping.external_address = new
            entry.view.external_address = new

    def local_address_changed(self, old: IPAddress, current: IPAddress) -> None:
        """The gateway maps the old address: ask again for the same external ports, for
        the new one (the old mappings expire at the gateway)."""
        self.watch.last_change = self._now()
        for entry in self.entries.values():
            if entry.mapping is not None:
                entry.mapping.local_address = current
            if entry.view.state not in (MappingState.REQUESTING, MappingState.REMOVING):
                was = entry.view.state
                self.fire(entry, Trigger.GONE)
                self.lost(entry, f"the local address changed from {old} to {current}", was)

    def forget(self, key: MappingKey, *, deleted: bool) -> None:
        """Stop managing ``key`` (deleted at the gateway, or dropped) and say so."""
        entry = self.entries.pop(key, None)
        self.views.pop(key, None)
        self.upnp.discard(key)
        if entry is None:
            return
        self.due.set(entry, None)
        if entry.view.state is MappingState.REMOVING:
            entry.machine.fire(Trigger.DELETED)
            entry.view.state = entry.machine.state
        if deleted and entry.mapping is not None:
            self.records.drop(entry.mapping)
        self.emit(MappingRemoved(self._now(), key, deleted_at_gateway=deleted))

    def reachable_again(self) -> None:
        """The gateway answers again: give lasting failures another chance."""
        for entry in self.entries.values():
            if entry.view.state is MappingState.FAILED and not entry.busy:
                self.fire(entry, Trigger.REACHABLE)

    # -- requests --------------------------------------------------------------------------

    def answered(self, entry: Entry, answer: PortMapping | NatDeckError,
                 request: RequestKind) -> None:
        """Keep the gateway's answer to ``request`` (a grant or a result code) in the view;
        an error that is not an answer (no answer, a network error) leaves the last one."""
        peer = entry.mapping is not None and entry.mapping.opcode == "peer"
        last = last_answer(entry.view, answer, request, peer, self._now())
        if last is not None:
            entry.view.last_answer = last

    def granted(self, entry: Entry, mapping: PortMapping, request: RequestKind) -> None:
        """An answer to ``request`` granted ``mapping``: update the view, the state and the
        record."""
        view = entry.view
        self.answered(entry, mapping, request)
        trigger = entry.machine.answered(self.watch.last_change)
        moved = record_moved(view, mapping)
        show_grant(view, mapping, request)
        self.watch.status.via = mapping.via
        if mapping.via == "upnp":
            self.upnp.add(view.key)
            self.watch.heard_upnp()  # (PCP and NAT-PMP answers are heard by the channel)
        elif self.upnp:
            self.upnp.discard(view.key)
        if trigger is Trigger.GRANTED and mapping.external_address is not None:
            # (A stale answer may predate an address change: not news.)
            self.watch.external_address(mapping.external_address, "response")
        self.fire(entry, trigger)
        if moved or self.records.stale(mapping):
            # A new mapping, or a new port, nonce or protocol: what `natdeck unmap` needs.
            self.records.record(mapping)

    def failed(self, entry: Entry, exc: NatDeckError, *, renewal: bool,
               recovering: bool) -> None:
        """A request for ``entry`` failed: the error policy says what follows."""
        view = entry.view
        self.answered(entry, exc, "renew" if renewal else "recreate")
        self.watch.failed_request(exc)
        # The mapping was granted before: the gateway answered, so a timeout's "is it the
        # right gateway?" would mislead.
        view.reason = error_words(exc, answered_before=True)
        view.error = exc.with_traceback(None)  # keep the message, not the frames
        view.failures += 1
        self.fire(entry, trigger_for_error(exc), error=exc)
        retry = view.next_renewal_at
        if view.state is MappingState.LOST:
            view.expires_at = None
        if renewal:
            self.emit(MappingRenewalFailed(self._now(), view.key, exc, retry))
        else:
            self.emit(MappingFailed(self._now(), view.key, exc, retry,
                                    recovering=recovering or view.state is not
                                    MappingState.REQUESTING, gateway_answered=True))


def record_moved(view: ManagedMapping, mapping: PortMapping) -> bool:
    """Whether a grant changes what the mapping's record holds for `natdeck unmap`: its
    external port, its nonce or its protocol (a recreation by another one)."""
    return (view.external_port, view.nonce, view.via) \
        != (mapping.external_port, mapping.nonce, mapping.via)


def resume_at(view: ManagedMapping, now: float) -> float | None:
    """When a mapping whose delete failed is next due: when it was (at once if never). A
    FAILED one waits for a change, its expiry alone due (:meth:`MappingTable.set_due` adds
    it): "now" would be a DUE it ignores, and its expiry would never be told (MappingLost)."""
    if view.next_renewal_at is not None or view.state is MappingState.FAILED:
        return view.next_renewal_at
    return now


def renewal_time(mapping: PortMapping, rng: random.Random) -> float | None:
    """When to renew a granted mapping: RFC 6887 §11.2.1 for PCP, RFC 6886 §3.3 else (UPnP
    IGD too: re-added at about half its lease); a permanent UPnP lease never (None)."""
    if mapping.permanent:
        return None
    lifetime = max(mapping.lifetime, 1)
    if mapping.via == "pcp":
        return mapping.granted_at + timing.pcp_renewal_delay(lifetime, rng)
    return mapping.granted_at + timing.natpmp_renewal_delay(lifetime, rng)


def expiry_reason(view: ManagedMapping) -> str:
    """Why a mapping whose lifetime ran out is lost: the last refusal, if one was heard."""
    return ("its lifetime ran out before a renewal succeeded" if view.reason is None
            else f"expired: {view.reason}")


def error_wait(error: NatDeckError | None) -> float:
    """How long a short-lifetime error lasts: its error lifetime (1 s-1 h), else our 30 s."""
    if isinstance(error, ResultCodeError) and error.error_lifetime is not None:
        return float(min(max(error.error_lifetime, 1), 3600))
    return NATPMP_ERROR_RETRY


def last_answer(view: ManagedMapping, answer: PortMapping | NatDeckError, request: RequestKind,
                peer: bool, now: float) -> GatewayAnswer | None:
    """The gateway's answer to ``request`` as the view keeps it: a grant or a result code;
    ``None`` for an error that is no answer (no answer at all, a network error)."""
    if isinstance(answer, ResultCodeError):
        return GatewayAnswer(
            now, answer.protocol, opcode_label(answer.protocol, int(view.protocol), peer),
            request, answer.code, answer.name, answer.description, answer.error_lifetime)
    if isinstance(answer, PortMapping):
        return GatewayAnswer(
            now, answer.via, opcode_label(answer.via, int(view.protocol), peer), request,
            external_address=answer.external_address, external_port=answer.external_port,
            lifetime=answer.lifetime)
    return None


def show_grant(view: ManagedMapping, mapping: PortMapping, request: RequestKind) -> None:
    """What a grant (of ``request``) tells the view: ports, lifetime, times, epoch, nonce."""
    view.via = mapping.via
    view.external_port = mapping.external_port
    view.external_address = mapping.external_address
    view.lifetime = mapping.lifetime
    view.granted_at = mapping.granted_at
    if view.first_granted_at is None:
        view.first_granted_at = mapping.granted_at
    if request == "renew":
        view.renewed_at = mapping.granted_at
    view.expires_at = mapping.expires_at
    view.epoch = mapping.epoch
    view.nonce = mapping.nonce
    view.options = mapping.options
    view.permanent = mapping.permanent
    if mapping.permanent:
        view.expires_at = None  # no end: looked up now and then (.presence), not renewed
    view.reason = None
    view.error = None
