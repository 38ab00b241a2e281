"""UPnP IGD's loss signal: a periodic look at the gateway's entry for each mapping.

UPnP has no epoch (nothing like RFC 6887 §8.5 tells a client that the gateway lost
its table): a router that rebooted or flushed its rules just stops holding the
mapping. So every ``interval`` seconds each ACTIVE UPnP mapping is looked up
(GetSpecificPortMappingEntry, :meth:`engine.upnp.UpnpMapper.holds`); one no longer
held feeds the state table's generic :attr:`~.state.Trigger.GONE`, which asks for
it again at once. A permanent lease (a gateway that takes only those) is never
renewed, so this look is all that keeps it true. An error of the look itself says
nothing about the mapping: it is only a status, and the next look asks again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ..errors import NatDeckError
from ..events import MappingState
from ..mapping import request_for
from ..upnp.mapper import UpnpMapper
from .state import Trigger

if TYPE_CHECKING:
    from .mappings import Entry, MappingTable

__all__ = ["UPNP_CHECK_INTERVAL", "check_upnp_every", "check_upnp_once"]

log = logging.getLogger("engine.manager")

#: Look up every UPnP mapping at the gateway this often (seconds).
UPNP_CHECK_INTERVAL = 60.0


def _checked(entry: Entry) -> bool:
    return (entry.mapping is not None and entry.mapping.via == "upnp"
            and entry.view.state is MappingState.ACTIVE and not entry.busy)


async def check_upnp_once(table: MappingTable, timeout: float) -> int:
    """Look up every ACTIVE UPnP mapping once; how many were found gone."""
    mapper = table.client.mappers.get("upnp")
    if not isinstance(mapper, UpnpMapper):
        return 0
    gone = 0
    # Only the UPnP ones: not a pass over every mapping each minute (10,000 PCP mappings
    # cost 600,000 checks an hour, ~60 per renewal).
    entries = table.entries
    for entry in [e for key in table.upnp if (e := entries.get(key)) is not None
                  and _checked(e)]:
        assert entry.mapping is not None
        request = request_for(entry.mapping, entry.mapping.requested_lifetime)
        try:
            held = await mapper.holds(request, timeout=timeout)
        except NatDeckError as exc:
            log.info("UPnP look-up of %s failed: %s", entry.view.key, exc)
            table.watch.failed_request(exc)
            continue
        table.watch.heard_upnp()
        # The mapping may have been renewed, removed or recreated meanwhile: only an
        # entry still ACTIVE and idle is judged by this answer.
        if held or table.entries.get(entry.view.key) is not entry or not _checked(entry):
            continue
        gone += 1
        table.fire(entry, Trigger.GONE)
        table.lost(entry, "the gateway no longer holds it (UPnP IGD has no such entry)",
                   MappingState.ACTIVE)
    return gone


async def check_upnp_every(table: MappingTable, interval: float | None, timeout: float) -> None:
    """:func:`check_upnp_once` every ``interval`` seconds, until cancelled (None: never)."""
    while interval:
        await asyncio.sleep(interval)
        await check_upnp_once(table, timeout)
