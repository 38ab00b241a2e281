"""What a :class:`~engine.manager.MappingManager` tells its users: states, status and events.

Plain data, no I/O: the manager produces them, the TUI, the CLI and any daemon
consume them (``async for event in mgr.events()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from .client import ProbeResult
from .errors import NatDeckError
from .protocols import Protocol, protocol_name
from .types import MappingProtocol, ProtocolName
from .wire import pcp
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .types import DeviceInfo

__all__ = [
    "Event",
    "ExternalAddressChanged",
    "GatewayReachable",
    "GatewayRestarted",
    "GatewayStatus",
    "GatewayUnreachable",
    "LocalAddressChanged",
    "ManagedMapping",
    "ManagerClosed",
    "ManagerClosing",
    "MappingAdded",
    "MappingFailed",
    "MappingKey",
    "MappingLost",
    "MappingRecovered",
    "MappingRemoved",
    "MappingRenewalFailed",
    "MappingRenewed",
    "MappingState",
    "MappingsConfirming",
    "ProbeCompleted",
]



@dataclass(frozen=True, slots=True, order=True)
class MappingKey:
    """What names a mapping within one manager: protocol and internal port (and, for
    PEER, the remote peer)."""

    protocol: int
    internal_port: int
    remote: tuple[str, int] | None = None

    def __str__(self) -> str:
        base = f"{protocol_name(self.protocol)}/{self.internal_port}"
        return base if self.remote is None else f"{base}->{self.remote[0]}:{self.remote[1]}"


class MappingState(StrEnum):
    """Where a managed mapping stands."""

    REQUESTING = "requesting"  # first request in flight
    ACTIVE = "active"  # granted and not yet due for renewal
    RENEWING = "renewing"  # a renewal is in flight or being retried
    LOST = "lost"  # expired or the gateway lost it; natdeck is asking for it again
    FAILED = "failed"  # the gateway refused with a lasting error; waiting for a change
    CONFIRMING = "confirming"  # the gateway announced a change: asking for it again
    REMOVING = "removing"  # a delete is in flight
    REMOVED = "removed"  # deleted at the gateway (or dropped); no longer managed


@dataclass(slots=True)
class ManagedMapping:
    """One mapping as the manager holds it. Read it; do not change it."""

    key: MappingKey
    protocol: Protocol | int
    internal_port: int
    state: MappingState
    requested_lifetime: int
    via: MappingProtocol | None = None
    external_port: int | None = None
    external_address: IPAddress | None = None
    lifetime: int = 0
    granted_at: float | None = None
    expires_at: float | None = None
    next_renewal_at: float | None = None
    epoch: int | None = None
    nonce: bytes | None = None
    reason: str | None = None
    """Why the mapping is LOST or FAILED (or why the last renewal failed)."""
    error: NatDeckError | None = None
    renewals: int = 0
    failures: int = 0
    options: tuple[pcp.Option, ...] = ()
    permanent: bool = False
    """A UPnP lease without end (a gateway that takes only those): checked, not renewed."""

    def remaining(self, now: float) -> float | None:
        """Seconds to expiry at loop time ``now``, or None when not granted."""
        return None if self.expires_at is None else self.expires_at - now

    def until_renewal(self, now: float) -> float | None:
        """Seconds to the next scheduled renewal or retry."""
        return None if self.next_renewal_at is None else self.next_renewal_at - now


@dataclass(slots=True)
class GatewayStatus:
    """What is known about the gateway."""

    gateway: IPAddress
    port: int
    local_address: IPAddress | None = None
    via: MappingProtocol | None = None
    """The protocol in use (PCP preferred)."""
    speaks_pcp: bool | None = None
    speaks_natpmp: bool | None = None
    external_address: IPAddress | None = None
    epoch: int | None = None
    rtt: float | None = None
    last_contact: float | None = None
    """Loop time of the last valid answer or announcement."""
    reachable: bool | None = None
    listening: bool = False
    """Whether announcements (address change, ANNOUNCE) are being listened for."""
    listen_error: str | None = None
    warning: str | None = None
    """For example: the external address is not public (another NAT above this gateway)."""
    restarts: int = 0
    speaks_upnp: bool | None = None
    igd: DeviceInfo | None = None
    """The UPnP IGD's friendly name, model and version, once it answered."""


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every manager event. ``at`` is loop time, ``wall`` is ``time.time()``."""

    at: float
    wall: float = field(default_factory=time.time, kw_only=True)

    @property
    def summary(self) -> str:
        """One line for a log."""
        return type(self).__name__


@dataclass(frozen=True, slots=True)
class MappingAdded(Event):
    """A new mapping was granted."""

    key: MappingKey
    mapping: ManagedMapping

    @property
    def summary(self) -> str:
        m = self.mapping
        return (f"mapped {self.key} -> {m.external_address}:{m.external_port} via {m.via}, "
                f"{m.lifetime} s")


@dataclass(frozen=True, slots=True)
class MappingRenewed(Event):
    """A renewal succeeded."""

    key: MappingKey
    mapping: ManagedMapping
    port_changed: bool = False

    @property
    def summary(self) -> str:
        m = self.mapping
        moved = " (external port changed)" if self.port_changed else ""
        return f"renewed {self.key}: {m.lifetime} s{moved}"


@dataclass(frozen=True, slots=True)
class MappingRenewalFailed(Event):
    """A renewal got no (good) answer; ``retry_at`` says when the next try is."""

    key: MappingKey
    error: NatDeckError
    retry_at: float | None

    @property
    def summary(self) -> str:
        return f"renewal of {self.key} failed: {self.error}"


@dataclass(frozen=True, slots=True)
class MappingLost(Event):
    """A mapping expired or the gateway lost it; the manager is recovering it."""

    key: MappingKey
    reason: str

    @property
    def summary(self) -> str:
        return f"lost {self.key}: {self.reason}"


@dataclass(frozen=True, slots=True)
class MappingRecovered(Event):
    """A lost mapping was granted again."""

    key: MappingKey
    mapping: ManagedMapping
    same_port: bool

    @property
    def summary(self) -> str:
        m = self.mapping
        note = "" if self.same_port else " on a different external port"
        return f"recovered {self.key} -> {m.external_address}:{m.external_port}{note}"


@dataclass(frozen=True, slots=True)
class MappingRemoved(Event):
    """A mapping was deleted at the gateway (or dropped from the manager)."""

    key: MappingKey
    deleted_at_gateway: bool = True

    @property
    def summary(self) -> str:
        return f"removed {self.key}"


@dataclass(frozen=True, slots=True)
class MappingFailed(Event):
    """A request for a mapping failed: ``error`` says what the gateway said.

    ``recovering``: it was a request to get a lost (or unconfirmed) mapping back, not
    the first request for it."""

    key: MappingKey
    error: NatDeckError
    retry_at: float | None = None
    recovering: bool = False

    @property
    def summary(self) -> str:
        if self.recovering:
            return f"asking again for {self.key} failed: {self.error}"
        return f"{self.key} failed: {self.error}"


@dataclass(frozen=True, slots=True)
class ExternalAddressChanged(Event):
    """The gateway's external address changed (``source``: announce, response or probe)."""

    old: IPAddress | None
    new: IPAddress
    source: str

    @property
    def summary(self) -> str:
        if self.old is None:
            return f"external address {self.new} ({self.source})"
        return f"external address {self.old} -> {self.new} ({self.source})"


@dataclass(frozen=True, slots=True)
class LocalAddressChanged(Event):
    """This host's address towards the gateway changed; mappings are being recreated."""

    old: IPAddress | None
    new: IPAddress

    @property
    def summary(self) -> str:
        return f"local address {self.old} -> {self.new}; recreating mappings for it"


@dataclass(frozen=True, slots=True)
class GatewayRestarted(Event):
    """An epoch showed that the gateway lost its state; mappings are being recreated."""

    protocol: ProtocolName
    epoch: int

    @property
    def summary(self) -> str:
        name = "PCP" if self.protocol == "pcp" else "NAT-PMP"
        return (f"the gateway restarted (its {name} epoch went back to {self.epoch}): "
                "recreating every mapping")


@dataclass(frozen=True, slots=True)
class MappingsConfirming(Event):
    """The gateway said something changed (an announcement): every mapping is asked for
    again, after the RFC's random delay, before it counts as active (RFC 6887 §14.1.3)."""

    reason: str
    """What was seen, e.g. "external address changed; the gateway's epoch went back"."""

    @property
    def summary(self) -> str:
        return f"{self.reason}: confirming every mapping"


@dataclass(frozen=True, slots=True)
class ManagerClosing(Event):
    """The manager is leaving: ``total`` mappings to delete by ``deadline`` (loop time)."""

    total: int
    deadline: float | None

    @property
    def summary(self) -> str:
        return f"deleting {self.total} mapping(s)"


@dataclass(frozen=True, slots=True)
class ManagerClosed(Event):
    """The manager left. ``left`` are the mappings it could not delete (or kept): they stay
    at the gateway until they expire, and are in the state file when it keeps one."""

    deleted: int
    left: tuple[MappingKey, ...]
    kept: bool = False

    @property
    def summary(self) -> str:
        if self.kept:
            return f"left {len(self.left)} mapping(s) in place (keep)"
        if not self.left:
            return f"deleted {self.deleted} mapping(s)"
        return (f"deleted {self.deleted} mapping(s); could not delete {len(self.left)}: they "
                "stay at the gateway until they expire")


@dataclass(frozen=True, slots=True)
class GatewayReachable(Event):
    """The gateway answers (again)."""

    @property
    def summary(self) -> str:
        return "gateway reachable"


@dataclass(frozen=True, slots=True)
class GatewayUnreachable(Event):
    """The gateway stopped answering."""

    reason: str

    @property
    def summary(self) -> str:
        return f"gateway unreachable: {self.reason}"


@dataclass(frozen=True, slots=True)
class ProbeCompleted(Event):
    """A probe of both protocols finished."""

    result: ProbeResult

    @property
    def summary(self) -> str:
        r = self.result
        spoken = "+".join(p for p, ok in (("PCP", r.pcp), ("NAT-PMP", r.natpmp)) if ok) or "none"
        rtt = f", rtt {r.rtt * 1000:.1f} ms" if r.rtt is not None else ""
        return f"probe: speaks {spoken}, external {r.external_address}{rtt}"
