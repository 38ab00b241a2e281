"""How a simulated gateway behaves: one frozen dataclass of knobs.

Every knob has the default of a well-behaved gateway that speaks both
protocols the way current upstream miniupnpd does; a test turns on the
faults and quirks it needs. The running gateway swaps the whole object
(:meth:`SimulatedGateway.configure`), so a test can change behaviour between
two requests without reaching into the state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import ip_address

from ..codes import PcpResult

__all__ = ["AnnounceMode", "GatewayConfig", "check_loopback_target"]


class AnnounceMode(StrEnum):
    """How the gateway announces an address change or a restart."""

    RFC = "rfc"
    """RFC 6886 §3.2.1: each announcement sent ``announce_count`` times (10), 250 ms apart at
    first and doubling, to every configured target (a real gateway multicasts to 224.0.0.1)."""
    MINIUPNPD = "miniupnpd"
    """What miniupnpd does: once, the NAT-PMP announcement to the client port and the server port
    (5350 and 5351, the 2008 and 2006 drafts), the PCP ANNOUNCE to the client port only."""


def check_loopback_target(target: tuple[str, int]) -> tuple[str, int]:
    """Return ``target`` if it is a loopback address and a valid port; raise ``ValueError`` if not.

    The simulator sends unsolicited packets only to loopback: it is a test fixture, and what a
    real gateway multicasts to the whole link must never leave this machine.
    """
    host, port = target
    try:
        address = ip_address(host.split("%", 1)[0])
    except ValueError:
        raise ValueError(f"announcement target {host!r} is not an IP address") from None
    if not address.is_loopback:
        raise ValueError(f"the simulator sends only to loopback, not to {host}")
    if not 1 <= port <= 0xFFFF:
        raise ValueError(f"announcement target port must be 1-65535, not {port}")
    return host, port


def _check_u32(name: str, value: int) -> None:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{name} must be 0-4294967295, not {value}")


def _check_forced(name: str, value: int | None, limit: int) -> None:
    # 0 would be "success without doing anything", which no gateway does; the field is for
    # error codes, known or not (an unknown code tests how a client copes with it).
    if value is not None and not 1 <= value <= limit:
        raise ValueError(f"{name} must be an error code 1-{limit} or None, not {value}")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The behaviour of a :class:`~engine.simulator.SimulatedGateway` (or a bare
    :class:`~engine.simulator.GatewayCore`). Invalid values raise ``ValueError``."""

    # --- which protocols ------------------------------------------------------------------
    speak_pcp: bool = True
    """Answer PCP (version 2). When off, a PCP request gets NAT-PMP's 8-byte UNSUPPORTED_VERSION,
    as from a NAT-PMP-only gateway (RFC 6887 §9)."""
    speak_natpmp: bool = True
    """Answer NAT-PMP (version 0). When off, a NAT-PMP request gets a PCP UNSUPP_VERSION response
    whose version field says 2 (RFC 6887 §9)."""

    # --- faults ---------------------------------------------------------------------------
    silent: bool = False
    """Receive and count requests but answer none (a firewalled or absent gateway)."""
    drop_rate: float = 0.0
    """Fraction of requests lost on the way in, drawn from a ``random.Random(seed)``: the same
    seed and the same traffic lose the same requests. A lost request changes no state."""
    seed: int = 0
    """Seed of the drop generator; changing it at run time restarts the generator."""
    delay: float = 0.0
    """Seconds each request takes to process. Requests are processed one at a time, as by
    miniupnpd's single-threaded loop, so a burst queues up behind the first."""
    delay_max: float | None = None
    """An erratic gateway (miniupnpd logging to a slow console: 60-180 ms a request, more now
    and then): each request's processing time is drawn uniformly from [``delay``,
    ``delay_max``] by a generator of its own seeded from ``seed`` (the drops stay as they
    were). ``None``: always ``delay``."""
    service_times: tuple[float, ...] = ()
    """Processing times of the first requests, in turn (a profile recorded on a real gateway:
    miniupnpd's grow with its table and stall on its console); later ones take ``delay``."""
    force_pcp_result: int | None = None
    """Answer every PCP request with this error code (1-255), changing nothing."""
    force_natpmp_result: int | None = None
    """Answer every NAT-PMP request with this error code (1-65535), changing nothing."""

    # --- lifetimes ------------------------------------------------------------------------
    min_lifetime: int = 120
    """Shortest lifetime granted; a shorter request gets this (miniupnpd's default 120 s)."""
    max_lifetime: int = 86400
    """Longest lifetime granted (miniupnpd's default 86400 s). ``min_lifetime=max_lifetime=60``
    emulates VPN gateways that grant 60 s whatever is asked."""
    error_lifetime: int = 30
    """Lifetime field of a short-lifetime PCP error (RFC 6887 §7.4, §15): miniupnpd's 30 s."""
    long_error_lifetime: int = 1800
    """Lifetime field of a long-lifetime PCP error: how long the condition is said to last."""

    # --- policy ---------------------------------------------------------------------------
    allow_third_party: bool = False
    """Honour PCP THIRD_PARTY (RFC 6887 §13.1); when off, such a request is refused."""
    third_party_refusal: PcpResult = PcpResult.NOT_AUTHORIZED
    """The code a refused THIRD_PARTY gets; miniupnpd answers UNSUPP_OPTION."""
    strict_nonce: bool = True
    """A PCP renewal or deletion whose nonce is not the mapping's is refused NOT_AUTHORIZED, as
    current miniupnpd does (RFC 6887 §11.3); NAT-PMP, which has no nonce, may then not touch a
    PCP mapping. When off, any request from the client takes the mapping over."""
    unsupported_protocols: frozenset[int] = frozenset()
    """IP protocol numbers refused: PCP UNSUPP_PROTOCOL, NAT-PMP UNSUPPORTED_OPCODE."""
    max_mappings: int | None = None
    """Mappings the gateway holds at most; a new one beyond gets NO_RESOURCES / OUT_OF_RESOURCES."""
    max_filters: int | None = None
    """FILTERs a mapping may hold at most; more gets EXCESSIVE_REMOTE_PEERS (RFC 6887 §13.3)."""
    port_range: tuple[int, int] = (1, 0xFFFF)
    """External ports the gateway may assign, inclusive."""
    missing_delete_result: PcpResult = PcpResult.SUCCESS
    """The answer to a PCP delete of a mapping that does not exist. RFC 6887 §15 makes deletion
    idempotent (SUCCESS); miniupnpd answers NO_RESOURCES."""

    # --- quirks of real gateways ----------------------------------------------------------
    refuse_zero_suggested_port: bool = False
    """MikroTik: a PCP MAP with suggested external port 0 is refused with ``zero_port_result``."""
    zero_port_result: PcpResult = PcpResult.MALFORMED_REQUEST
    """The code ``refuse_zero_suggested_port`` answers with."""
    answer_pcp_with_natpmp: bool = False
    """Some Apple routers: a PCP request gets NAT-PMP's 8-byte UNSUPPORTED_VERSION even though
    PCP is on."""
    natpmp_erratum_opcode: bool = True
    """Opcode of NAT-PMP's 8-byte error answer: 128 + the request's opcode, as erratum 5406 and
    miniupnpd have it (True), or 0 as RFC 6886 §3.5's text has it (False)."""
    natpmp_delete_spares_pcp: bool = False
    """miniupnpd: a NAT-PMP delete removes only the rules NAT-PMP made (labelled "NAT-PMP"), so
    a delete for a port a PCP mapping holds answers SUCCESS and leaves that mapping in place.
    When off, such a delete is refused NOT_AUTHORIZED (``strict_nonce``) or removes it."""
    reset_epoch_on_address_change: bool = True
    """RFC 6887 §8.5: a change of external address resets the epoch. miniupnpd shares the epoch
    between both protocols, so NAT-PMP's resets too."""
    initial_epoch: int = 0
    """Epoch at start, to exercise the 32-bit wrap; a restart always starts again at 0."""

    # --- announcements --------------------------------------------------------------------
    announce_mode: AnnounceMode = AnnounceMode.RFC
    """See :class:`AnnounceMode`."""
    announce_targets: tuple[tuple[str, int], ...] = ()
    """Loopback ``(host, port)`` pairs that stand in for the multicast group. In miniupnpd mode
    only the hosts are used, with ``miniupnpd_announce_ports``."""
    announce_count: int = 10
    """Sends per announcement in RFC mode (RFC 6886 §3.2.1: 10)."""
    announce_first_interval: float = 0.25
    """First interval in RFC mode (RFC 6886 §3.2.1: 250 ms); later ones double."""
    miniupnpd_announce_ports: tuple[int, int] = (5350, 5351)
    """(client port, server port) of miniupnpd mode; tests point them at free ports."""

    def granted_lifetime(self, requested: int) -> int:
        """The lifetime granted for ``requested`` (not 0): clamped to [min, max] (RFC 6887
        §15 and RFC 6886 §3.3 let a gateway shorten or lengthen it; miniupnpd clamps)."""
        return min(max(requested, self.min_lifetime), self.max_lifetime)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.drop_rate) and 0.0 <= self.drop_rate <= 1.0):
            raise ValueError(f"drop_rate must lie in [0, 1], not {self.drop_rate}")
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be a non-negative number of seconds, not {self.delay}")
        if self.delay_max is not None and not (math.isfinite(self.delay_max)
                                               and self.delay_max >= self.delay):
            raise ValueError(f"delay_max must be a number of seconds >= delay ({self.delay}), "
                             f"not {self.delay_max}")
        object.__setattr__(self, "service_times", tuple(map(float, self.service_times)))
        if not all(math.isfinite(t) and t >= 0 for t in self.service_times):
            raise ValueError("service_times must be non-negative numbers of seconds")
        _check_forced("force_pcp_result", self.force_pcp_result, 0xFF)  # an 8-bit field
        _check_forced("force_natpmp_result", self.force_natpmp_result, 0xFFFF)  # 16 bits
        for name in ("min_lifetime", "max_lifetime", "error_lifetime", "long_error_lifetime",
                     "initial_epoch"):
            _check_u32(name, getattr(self, name))
        if not 1 <= self.min_lifetime <= self.max_lifetime:
            raise ValueError(f"need 1 <= min_lifetime <= max_lifetime, not {self.min_lifetime} "
                             f"and {self.max_lifetime}")
        low, high = self.port_range
        if not 1 <= low <= high <= 0xFFFF:
            raise ValueError(f"port_range must be 1 <= low <= high <= 65535, not {self.port_range}")
        for protocol in self.unsupported_protocols:
            if not 0 <= protocol <= 0xFF:
                raise ValueError(f"IP protocol number must be 0-255, not {protocol}")
        if self.max_mappings is not None and self.max_mappings < 0:
            raise ValueError(f"max_mappings must be >= 0, not {self.max_mappings}")
        if self.max_filters is not None and self.max_filters < 0:
            raise ValueError(f"max_filters must be >= 0, not {self.max_filters}")
        if self.announce_count < 1:
            raise ValueError(f"announce_count must be at least 1, not {self.announce_count}")
        if not (math.isfinite(self.announce_first_interval) and self.announce_first_interval > 0):
            raise ValueError("announce_first_interval must be a positive number of seconds")
        for target in self.announce_targets:
            check_loopback_target(target)
        for port in self.miniupnpd_announce_ports:
            if not 1 <= port <= 0xFFFF:
                raise ValueError(f"miniupnpd_announce_ports must be 1-65535, not {port}")
        # Accept plain ints where the type says PcpResult, the way a CLI or test passes them.
        for name in ("third_party_refusal", "zero_port_result", "missing_delete_result"):
            object.__setattr__(self, name, PcpResult(getattr(self, name)))
        object.__setattr__(self, "announce_mode", AnnounceMode(self.announce_mode))
        object.__setattr__(self, "unsupported_protocols", frozenset(self.unsupported_protocols))
        object.__setattr__(self, "announce_targets",
                           tuple((str(h), int(p)) for h, p in self.announce_targets))
