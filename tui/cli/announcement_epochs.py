"""What ``natdeck watch`` makes of each announcement: a restart? a new external address?

To be replaced by the engine: issue 12's negotiation state (``core``: what the gateway
speaks, its epochs and its address as pure state fed ``now``) and the manager's handling
of announcements (``manager``) already decide this for a :class:`MappingManager`;
:class:`AnnouncementEpochs` re-implements that decision for a listener without a
manager, with :func:`engine.timing.observe_epoch`. When the engine exposes it, this class
becomes a call to it. Pure: fed announcements and ``now``, no socket, no event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from engine import timing
from engine.wire.addresses import IPAddress

if TYPE_CHECKING:
    from engine.announce import Announcement

__all__ = ["AnnouncementEpochs", "Heard"]

Protocol = Literal["pcp", "natpmp"]


@dataclass(frozen=True, slots=True)
class Heard:
    """What one announcement says, next to what was heard before it."""

    protocol: Protocol
    restarted: bool
    """The epoch shows the gateway lost its state (RFC 6886 §3.6, RFC 6887 §8.5)."""
    previous: IPAddress | None
    """The external address announced before this one."""
    changed: bool
    """This announcement carries another external address than the previous one."""
    repeat: bool
    """The same as the last of its kind: RFC 6886 §3.2.1 and RFC 6887 §14.1.3 repeat each
    announcement up to ten times."""


@dataclass(slots=True)
class AnnouncementEpochs:
    """The epochs and external address seen in a gateway's announcements so far."""

    epochs: dict[str, timing.EpochState | None] = field(
        default_factory=lambda: {"pcp": None, "natpmp": None})
    address: IPAddress | None = None
    last: dict[str, IPAddress | None] = field(default_factory=dict)
    """The external address each kind of announcement carried last (None for ANNOUNCE)."""

    def observe(self, announcement: Announcement, now: float) -> Heard:
        """Take one announcement heard at loop time ``now``."""
        protocol: Protocol = "natpmp" if announcement.kind == "natpmp_address" else "pcp"
        rule = timing.EpochRule.PCP if protocol == "pcp" else timing.EpochRule.NATPMP
        seen = timing.observe_epoch(rule, self.epochs[protocol], announcement.epoch, now)
        self.epochs[protocol] = seen.state
        restarted = seen.verdict is timing.EpochVerdict.LOST_STATE
        previous = self.address
        changed = (announcement.external_address is not None and previous is not None
                   and announcement.external_address != previous)
        if announcement.external_address is not None:
            self.address = announcement.external_address
        # A repeat says nothing new unless its epoch shows another restart.
        repeat = (announcement.kind in self.last and not restarted and not changed
                  and self.last[announcement.kind] == announcement.external_address)
        self.last[announcement.kind] = announcement.external_address
        return Heard(protocol, restarted, previous, changed, repeat)
