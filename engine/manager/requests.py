"""The requests that carry out the state table's actions for one mapping: the first
request (add), renewals and requests for the same mapping again (recover, confirm).

Each feeds what happened back to the mapping's machine through its table: an answer
(``granted``), or an error with the error policy (``failed``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .. import timing
from ..errors import NatDeckError
from ..events import MappingAdded, MappingFailed, MappingRecovered, MappingRenewed, MappingState
from .closing import may_hold
from .state import Action, trigger_for_error

if TYPE_CHECKING:
    from .mappings import Entry, MappingTable

__all__ = ["first_request", "send_request"]

log = logging.getLogger("engine.manager")

#: After a bug in handling a mapping, try it again this much later (the others go on).
INTERNAL_ERROR_RETRY = 30.0


def _now() -> float:
    return asyncio.get_running_loop().time()


async def first_request(table: MappingTable, entry: Entry, timeout: float) -> None:
    """The add: ask for the mapping with the options it was added with.

    Failed, the mapping is not kept; unanswered (silence, or its caller cancelled it),
    what it may have made at the gateway is taken back (:class:`.closing.TakeBacks`).
    """
    key = entry.view.key
    try:
        # An earlier add of the key that went unanswered: its delete first, lest it take
        # away the mapping this one makes.
        if key in table.taking_back.tasks:
            await table.taking_back.wait(key)
        entry.machine.sent_at = _now()
        mapping = await table.client.map(int(entry.view.protocol), entry.view.internal_port,
                                        timeout=timeout, **entry.options)
    except BaseException as exc:
        table.entries.pop(key, None)
        table.views.pop(key, None)
        table.due.set(entry, None)
        if may_hold(exc) and entry.machine.sent_at is not None:
            table.taking_back.start(table.client, key, entry.options, table.timeout)
        if isinstance(exc, NatDeckError):
            table.answered(entry, exc, "map")
            entry.machine.fire(trigger_for_error(exc))
            answered_before = table.watch.status.last_contact is not None
            table.watch.failed_request(exc)
            table.emit(MappingFailed(_now(), key, exc, gateway_answered=answered_before))
        raise
    finally:
        _let_go(entry)
    entry.mapping = mapping
    table.granted(entry, mapping, "map")
    table.emit(MappingAdded(_now(), key, entry.view))


async def send_request(table: MappingTable, entry: Entry, action: Action, *,
                       user: bool) -> None:
    """Renew or ask again for ``entry``'s mapping; feed the outcome to its machine."""
    mapping = entry.mapping
    assert mapping is not None
    view = entry.view
    recovering = view.state is not MappingState.RENEWING
    now = _now()
    entry.machine.sent_at = now
    old_port = mapping.external_port
    try:
        if action is Action.RENEW:
            entry.planned, timeout = _renewal_plan(table, entry, now)
            granted = await table.client.renew(
                mapping, timeout=timeout, retransmit=mapping.via != "pcp" or user)
        else:
            granted = await table.client.recreate(mapping, timeout=table.timeout)
    except asyncio.CancelledError:
        entry.machine.sent_at = None
        _let_go(entry)
        raise
    except NatDeckError as exc:
        entry.machine.sent_at = None
        _let_go(entry)
        if action is Action.RECREATE:
            _relabel(exc)
        table.failed(entry, exc, renewal=action is Action.RENEW, recovering=recovering)
        if user:
            raise
        return
    except Exception:  # a bug must not stop the other mappings
        entry.machine.sent_at = None
        _let_go(entry)
        log.exception("internal error while handling %s", view.key)
        table.set_due(entry, _now() + INTERNAL_ERROR_RETRY)
        return
    _let_go(entry)
    entry.mapping = granted
    table.granted(entry, granted, "renew" if action is Action.RENEW else "recreate")
    if entry.lost_told:
        if view.state is MappingState.ACTIVE:  # (not before an answer that counts)
            entry.lost_told = False
            table.emit(MappingRecovered(_now(), view.key, view,
                                       same_port=old_port in (0, granted.external_port)))
    else:
        view.renewals += 1
        table.emit(MappingRenewed(_now(), view.key, view,
                                 port_changed=granted.external_port != old_port))

def _let_go(entry: Entry) -> None:
    # The answer is in: the entry no longer keeps its task (with 10,000 mappings, 10,000
    # done tasks, each with its coroutine and context, only load the garbage collector).
    # Not busy from here on, as once the task is done.
    if entry.task is not None and entry.task is asyncio.current_task():
        entry.task = None


def _renewal_plan(table: MappingTable, entry: Entry, now: float) -> tuple[float | None, float]:
    # RFC 6887 §11.2.1: one renewal request, then (unanswered) the next in the next
    # window of the lifetime, never less than 4 s later. So a scheduled PCP renewal is
    # not retransmitted on the 3 s RFC 3315 schedule: its answer is awaited until the
    # next window. NAT-PMP keeps its 250 ms retransmissions (RFC 6886 §3.1), and so
    # does a renewal the user asked for: a request now, like any other.
    view = entry.view
    lifetime = max(view.lifetime, 1)
    planned = timing.renewal_retry_at(
        view.granted_at if view.granted_at is not None else now, lifetime, now,
        entry.machine.attempt + 1, table.rng,
        min_spacing=min(timing.PCP_RENEWAL_MIN_SPACING, lifetime / 8))
    until = planned if planned is not None else view.expires_at
    left = (until - now) if until is not None else table.timeout
    return planned, max(1.0, min(table.timeout, left))


def _relabel(exc: NatDeckError) -> None:
    """Name a request for the same mapping again as what it is, "recreate", not "renew".

    The client names any request for a mapping it made before "renew" (issue 17: a failed
    recovery read "PCP renew ..."); the manager knows it asked for the mapping again.
    """
    request = getattr(exc, "request", None)
    if isinstance(request, str) and " renew " in request and exc.args \
            and isinstance(exc.args[0], str):
        again = request.replace(" renew ", " recreate ", 1)
        exc.request = again  # type: ignore[attr-defined]
        exc.args = (exc.args[0].replace(request, again, 1), *exc.args[1:])
