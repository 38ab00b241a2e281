"""What ``natdeck watch`` makes of each announcement: a restart? a new external address?

The epochs are judged by the engine's own :class:`~engine.negotiation.Negotiation`, the
pure state a client keeps of its gateway (RFC 6886 §3.6 and RFC 6887 §8.5 through
:meth:`~engine.negotiation.Negotiation.observe_epoch`), so that ``watch`` calls a restart
what a client or a :class:`~engine.manager.MappingManager` calls one; what is
``watch``'s own is the rest: which address each announcement replaced, and which
announcements only repeat the last (each is sent up to ten times). Pure: fed
announcements and ``now``, no socket, no event loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from engine.negotiation import Negotiation
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

    negotiation: Negotiation = field(default_factory=Negotiation)
    """The gateway as a client knows it: its epochs, and the address announced last."""
    last: dict[str, IPAddress | None] = field(default_factory=dict)
    """The external address each kind of announcement carried last (None for ANNOUNCE)."""

    def observe(self, announcement: Announcement, now: float) -> Heard:
        """Take one announcement heard at loop time ``now``."""
        protocol: Protocol = "natpmp" if announcement.kind == "natpmp_address" else "pcp"
        restarted = self.negotiation.observe_epoch(protocol, announcement.epoch, now)
        previous = self.negotiation.external_address
        changed = (announcement.external_address is not None and previous is not None
                   and announcement.external_address != previous)
        if announcement.external_address is not None:
            self.negotiation.external_address = announcement.external_address
        # A repeat says nothing new unless its epoch shows another restart.
        repeat = (announcement.kind in self.last and not restarted and not changed
                  and self.last[announcement.kind] == announcement.external_address)
        self.last[announcement.kind] = announcement.external_address
        return Heard(protocol, restarted, previous, changed, repeat)
