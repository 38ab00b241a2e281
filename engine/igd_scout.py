"""``via="auto"`` on a gateway that is silent on PCP but has a UPnP IGD: UPnP in a second.

"PCP, then NAT-PMP, then UPnP IGD" gives a silent PCP two tries (9.5 s) and NAT-PMP its share
before UPnP is asked: nearly 20 s for ``natdeck map`` on a router whose firewall drops what
reaches port 5351 instead of refusing it (the lab measured 19.3 s), and 3 s whenever the
kernel's ICMP rate limit swallows the refusal of a router that does refuse it (scripts mapping
one port after another). A PCP request left unanswered for :data:`~engine.negotiation.
SCOUT_AFTER` sends an SSDP search (stateless: it asks, it creates nothing); if the gateway's
IGD answers and PCP still has not after :data:`~engine.negotiation.SILENT_BESIDE_IGD`, the
PCP request is given up and UPnP asked. A gateway that answers PCP in time is sent nothing
more, so the preference order holds wherever PCP works; one whose first PCP answer is lost on
the way gets its mapping through UPnP rather than PCP's retransmission 3 s later. The second of
patience is hundreds of LAN round trips: an answer later than that, which would leave a PCP
mapping natdeck does not hold, is as unlikely as one after PCP's own 9.5 s budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar, runtime_checkable

from .errors import GatewayTimeout, SilentBesideIgd
from .negotiation import SCOUT_AFTER, SILENT_BESIDE_IGD

__all__ = ["IgdScout", "unless_igd_answers"]

T = TypeVar("T")


@runtime_checkable
class IgdScout(Protocol):
    """A mapper that can tell, without mapping, whether the gateway has an IGD."""

    async def scout(self) -> bool:
        """Whether the gateway's IGD answers a search (never raises for silence)."""


async def unless_igd_answers(work: Coroutine[Any, Any, T], scout: IgdScout, *,
                             clock: Callable[[], float], gateway: str, request: str) -> T:
    """The result of ``work`` (a PCP request's first step), unless it is still unanswered
    :data:`~engine.negotiation.SILENT_BESIDE_IGD` seconds in while ``scout`` found the
    gateway's IGD: then ``work`` is cancelled and :class:`~engine.errors.SilentBesideIgd`
    raised (also when ``work`` timed out sooner, on its own deadline, with the IGD found).
    ``scout`` is asked only once ``work`` has been silent for
    :data:`~engine.negotiation.SCOUT_AFTER`; without an IGD (or if the search fails),
    ``work`` keeps its own deadline."""
    started = clock()
    task = asyncio.ensure_future(work)
    searching: asyncio.Future[bool] | None = None
    try:
        await asyncio.wait({task}, timeout=SCOUT_AFTER)
        if task.done():
            return task.result()
        searching = asyncio.ensure_future(scout.scout())
        await asyncio.wait({task, searching}, return_when=asyncio.FIRST_COMPLETED)
        if task.done() or not _found(searching):
            return await task
        await asyncio.wait({task}, timeout=max(0.0, SILENT_BESIDE_IGD - (clock() - started)))
        if not task.done():
            # PCP's first timer is 3 s (RFC 6887 §8.1.1), longer than the patience: one try.
            raise SilentBesideIgd(gateway, request, 1, clock() - started, "pcp")
        silence = task.exception()
        if type(silence) is GatewayTimeout:
            # Its own deadline (a short timeout) came first: silent beside the IGD all the
            # same, and NAT-PMP, on the same port, is not worth the rest of the deadline.
            raise SilentBesideIgd(gateway, request, silence.tries, silence.elapsed, "pcp")
        return task.result()
    finally:
        # Cancelled, not awaited: the request's own cleanup (its exchange is abandoned) runs
        # as the task ends, and a cancellation of the caller is never swallowed here.
        for pending in (task, searching):
            if pending is not None and not pending.done():
                pending.cancel()


def _found(searching: asyncio.Future[bool]) -> bool:
    # A search that failed in a way scout() does not expect says nothing either way.
    return searching.done() and not searching.cancelled() \
        and searching.exception() is None and searching.result()
