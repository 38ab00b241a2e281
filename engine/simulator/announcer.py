"""When and where a gateway sends its unsolicited announcements: pure planning.

Two events make a gateway speak unasked:

* its external address changes: RFC 6886 §3.2.1's NAT-PMP announcement (the
  external-address response, opcode 128) and, for PCP clients, an ANNOUNCE
  (RFC 6887 §14.1.3; the epoch reset of §8.5 tells them to check their mappings);
* it restarts and has lost its state: RFC 6887 §14.1.3's unsolicited ANNOUNCE, which
  miniupnpd sends on start-up.

A plan lists the sends by offset from the event; the packets themselves are built
at send time, so that a late repetition carries the epoch of that moment (a client
checks it against the time elapsed, RFC 6886 §3.6). The targets stand in for
224.0.0.1 and ff02::1: the simulator never multicasts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..timing import natpmp_announcement_schedule
from .config import AnnounceMode, GatewayConfig

__all__ = ["AnnouncementKind", "PlannedSend", "plan_address_change", "plan_restart"]


class AnnouncementKind(StrEnum):
    """Which announcement a send carries."""

    NATPMP = "natpmp"
    PCP = "pcp"


@dataclass(frozen=True, slots=True)
class PlannedSend:
    """One announcement: ``at`` seconds after the event, ``kind``, to ``target``."""

    at: float
    kind: AnnouncementKind
    target: tuple[str, int]


def _plan(config: GatewayConfig, kinds: tuple[AnnouncementKind, ...]) -> tuple[PlannedSend, ...]:
    kinds = tuple(k for k in kinds
                  if (config.speak_natpmp if k is AnnouncementKind.NATPMP else config.speak_pcp))
    if config.announce_mode is AnnounceMode.MINIUPNPD:
        # miniupnpd sends once: NAT-PMP to the client port and to the server port (the 2008 and
        # 2006 drafts disagreed), PCP's ANNOUNCE to the client port (pcpserver.c).
        client_port, server_port = config.miniupnpd_announce_ports
        hosts = dict.fromkeys(host for host, _ in config.announce_targets)
        sends = []
        for kind in kinds:
            ports = (client_port, server_port) if kind is AnnouncementKind.NATPMP else (
                client_port,)
            sends += [PlannedSend(0.0, kind, (host, port)) for host in hosts for port in ports]
        return tuple(sends)
    # RFC 6886 §3.2.1: "SHOULD multicast 10 address notifications", 250 ms apart at first, the
    # interval doubling. RFC 6887 §14.1.3 names no count for ANNOUNCE; the same schedule serves.
    offsets = natpmp_announcement_schedule(config.announce_count, config.announce_first_interval)
    return tuple(PlannedSend(at, kind, target) for at in offsets for kind in kinds
                 for target in config.announce_targets)


def plan_address_change(config: GatewayConfig) -> tuple[PlannedSend, ...]:
    """The sends after the external address changed: both announcements, in both modes."""
    return _plan(config, (AnnouncementKind.NATPMP, AnnouncementKind.PCP))


def plan_restart(config: GatewayConfig) -> tuple[PlannedSend, ...]:
    """The sends after a restart (state lost, epoch 0).

    miniupnpd sends only PCP's start-up ANNOUNCE. RFC mode also repeats the NAT-PMP
    announcement, so that a NAT-PMP client, which has no ANNOUNCE, sees the epoch go back
    to 0 at once instead of at its next renewal (RFC 6886 §3.6).
    """
    if config.announce_mode is AnnounceMode.MINIUPNPD:
        return _plan(config, (AnnouncementKind.PCP,))
    return _plan(config, (AnnouncementKind.NATPMP, AnnouncementKind.PCP))
