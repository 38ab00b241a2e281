"""What a :class:`~engine.manager.MappingManager` tells its users: states, status and events.

Plain data, no I/O: the manager produces them, the TUI, the CLI and any daemon
consume them (``async for event in mgr.events()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from .client import ProbeResult
from .errors import GatewayTimeout, NatDeckError
from .protocols import Protocol, protocol_name
from .types import MappingProtocol, ProtocolName, shown_name
from .wire import pcp
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .types import DeviceInfo

__all__ = [
    "AnnouncementsOff",
    "Event",
    "ExternalAddressChanged",
    "GatewayAnswer",
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
    "error_words",
    "opcode_label",
]


#: What natdeck asked the gateway for a mapping, as :attr:`GatewayAnswer.request` names it.
RequestKind = Literal["map", "renew", "recreate", "delete"]


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


def opcode_label(via: str, protocol: int, peer: bool = False) -> str:
    """The request's opcode as the RFC names it: PCP ``MAP``/``PEER`` (RFC 6887 §19.2),
    NAT-PMP ``map TCP (opcode 2)`` / ``map UDP (opcode 1)`` (RFC 6886 §3.3)."""
    if via == "pcp":
        return "PEER" if peer else "MAP"
    if via == "natpmp":
        return "map UDP (opcode 1)" if int(protocol) == 17 else "map TCP (opcode 2)"
    if via == "upnp":
        return "AddPortMapping"
    return via


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    """The gateway's last answer about a mapping: what was asked, and what it said.

    ``code`` 0 is a success (what was granted is in the ``external_*`` and ``lifetime``
    fields); any other is the result code of an error (``result`` its name, ``description``
    what it means, ``error_lifetime`` how long the gateway says it lasts, PCP only).
    """

    at: float
    """Loop time the answer came."""
    via: str
    """The mapping protocol that answered: ``pcp``, ``natpmp`` (or ``upnp``)."""
    opcode: str
    """The request's opcode: ``MAP``, ``PEER``, ``map TCP (opcode 2)``..."""
    request: RequestKind
    """What natdeck asked: the first ``map``, a ``renew``, ``recreate`` (the same mapping
    asked for again after a restart, an announcement or a loss), or a ``delete``."""
    code: int = 0
    result: str = "SUCCESS"
    description: str | None = None
    error_lifetime: int | None = None
    external_address: IPAddress | None = None
    external_port: int | None = None
    lifetime: int | None = None

    @property
    def granted(self) -> bool:
        """Whether the answer was a success."""
        return self.code == 0

    def describe(self) -> str:
        """``PCP MAP (renew): SUCCESS, 7200 s on 203.0.113.7:8080`` or the error's words."""
        name = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP"}.get(self.via, self.via)
        head = f"{name} {self.opcode} ({self.request}): {self.result}"
        if self.granted:
            if self.request == "delete":
                return f"{head}, deleted"
            where = ("" if self.external_port is None else
                     f" on {self.external_address or '?'}:{self.external_port}")
            return f"{head}, {self.lifetime} s{where}"
        said = f" ({self.code}): {self.description}" if self.description else f" ({self.code})"
        lasting = (f"; the gateway says this lasts {self.error_lifetime} s"
                   if self.error_lifetime else "")
        return f"{head}{said}{lasting}"


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
    suggested_external_port: int | None = None
    """The external port natdeck suggested in the first request (None: none, as for a
    protocol without ports); the gateway may grant another (:meth:`other_port`)."""
    first_granted_at: float | None = None
    """Loop time of the first grant (``granted_at`` moves with every renewal)."""
    renewed_at: float | None = None
    """Loop time of the last successful renewal (None: not renewed yet)."""
    last_answer: GatewayAnswer | None = None
    """The gateway's last answer about this mapping, a grant or an error (a request that
    got no answer leaves it and sets ``error``)."""

    def other_port(self) -> int | None:
        """The suggested external port when the gateway granted another one, else None."""
        if self.suggested_external_port is None or self.external_port is None:
            return None
        return None if self.external_port == self.suggested_external_port \
            else self.suggested_external_port

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


def error_words(error: NatDeckError, *, answered_before: bool) -> str:
    """``str(error)``, without the "is it the right gateway…?" hint of a timeout once the
    gateway has answered before (issue 17: after minutes of working fine the hint misleads;
    it helps only a first contact that never got an answer)."""
    if type(error) is GatewayTimeout and answered_before and error.tries:
        return (f"{error.request}: no answer from {shown_name(error.protocol)} gateway "
                f"{error.gateway} after {error.tries} {'try' if error.tries == 1 else 'tries'} "
                f"over {error.elapsed:.1f} s")
    return str(error)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every manager event. ``at`` is loop time, ``wall`` is ``time.time()``."""

    at: float
    wall: float = field(default_factory=time.time, kw_only=True)

    @property
    def summary(self) -> str:
        """One line for a log."""
        return type(self).__name__


def _other_port_note(m: ManagedMapping) -> str:
    other = m.other_port()
    if other is None:
        return ""
    return f" (the gateway gave external port {m.external_port}, not the {other} suggested)"


@dataclass(frozen=True, slots=True)
class MappingAdded(Event):
    """A new mapping was granted."""

    key: MappingKey
    mapping: ManagedMapping

    @property
    def summary(self) -> str:
        m = self.mapping
        return (f"mapped {self.key} -> {m.external_address}:{m.external_port} via {m.via}, "
                f"{m.lifetime} s{_other_port_note(m)}")


@dataclass(frozen=True, slots=True)
class MappingRenewed(Event):
    """A renewal succeeded."""

    key: MappingKey
    mapping: ManagedMapping
    port_changed: bool = False

    @property
    def summary(self) -> str:
        m = self.mapping
        moved = (f" (the gateway moved it to external port {m.external_port})"
                 if self.port_changed else "")
        return f"renewed {self.key}: {m.lifetime} s{moved}"


@dataclass(frozen=True, slots=True)
class MappingRenewalFailed(Event):
    """A renewal got no (good) answer; ``retry_at`` says when the next try is."""

    key: MappingKey
    error: NatDeckError
    retry_at: float | None

    @property
    def summary(self) -> str:
        # A renewal follows a grant: the gateway answered before.
        return f"renewal of {self.key} failed: {error_words(self.error, answered_before=True)}"


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
    gateway_answered: bool = False
    """Whether the gateway had answered natdeck before (then a timeout is not a sign of the
    wrong gateway, and its message does not ask)."""

    @property
    def summary(self) -> str:
        said = error_words(self.error, answered_before=self.recovering or self.gateway_answered)
        if self.recovering:
            return f"asking again for {self.key} failed: {said}"
        return f"{self.key} failed: {said}"


@dataclass(frozen=True, slots=True)
class ExternalAddressChanged(Event):
    """The gateway's external address changed (``source``: announce, response or probe)."""

    old: IPAddress | None
    new: IPAddress
    source: str
    warning: str | None = None
    """What is wrong with the new address (not public: another NAT above), if anything."""

    @property
    def summary(self) -> str:
        if self.old is None:
            text = f"external address {self.new} ({self.source})"
        else:
            text = f"external address {self.old} -> {self.new} ({self.source})"
        return text if self.warning is None else f"{text}. Warning: {self.warning}"


@dataclass(frozen=True, slots=True)
class AnnouncementsOff(Event):
    """The gateway's announcements cannot be heard (the ports are taken, or no multicast):
    ``reason`` says why, and what natdeck does instead (it probes)."""

    reason: str

    @property
    def summary(self) -> str:
        return f"announcements off: {self.reason}"


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
    why: str | None = None
    """Why the first delete that failed failed (``key: error``), if one did."""

    @property
    def summary(self) -> str:
        if self.kept:
            return f"left {len(self.left)} mapping(s) in place (keep)"
        if not self.left:
            return f"deleted {self.deleted} mapping(s)"
        why = f" ({self.why})" if self.why else " (no answer before the deadline)"
        return (f"deleted {self.deleted} mapping(s); could not delete {len(self.left)}{why}: "
                "they stay at the gateway until they expire")


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
