"""Result codes of NAT-PMP (RFC 6886 §3.5) and PCP (RFC 6887 §7.4).

Each code knows its RFC name, a sentence a user can act on, and, for PCP,
whether the RFC calls it a short- or long-lifetime error: a short one is worth
retrying once the error lifetime the gateway gave has passed, a long one is
not, until something changes.
"""

from __future__ import annotations

from enum import Enum, IntEnum

__all__ = ["ErrorLifetime", "NatPmpResult", "PcpResult", "natpmp_result", "pcp_result"]


class ErrorLifetime(Enum):
    """How long the RFC says an error condition lasts."""

    NONE = "none"  # success
    SHORT = "short"  # transient: retry after the error lifetime (RFC 6887 §7.4)
    LONG = "long"  # lasting: do not retry until the configuration changes
    VARIES = "varies"  # CANNOT_PROVIDE_EXTERNAL: "depends on the reason for the failure"


class NatPmpResult(IntEnum):
    """NAT-PMP result codes (RFC 6886 §3.5)."""

    SUCCESS = 0
    UNSUPPORTED_VERSION = 1
    NOT_AUTHORIZED = 2
    NETWORK_FAILURE = 3
    OUT_OF_RESOURCES = 4
    UNSUPPORTED_OPCODE = 5

    @property
    def description(self) -> str:
        """What the code means, as a sentence."""
        return _NATPMP_TEXT[self]


_NATPMP_TEXT: dict[NatPmpResult, str] = {
    NatPmpResult.SUCCESS: "success",
    NatPmpResult.UNSUPPORTED_VERSION: "the gateway does not speak this protocol version",
    NatPmpResult.NOT_AUTHORIZED: "the gateway refused (mapping disabled or not allowed for "
    "this client/port)",
    NatPmpResult.NETWORK_FAILURE: "the gateway has a network failure (for example no "
    "external address yet)",
    NatPmpResult.OUT_OF_RESOURCES: "the gateway cannot create more mappings now",
    NatPmpResult.UNSUPPORTED_OPCODE: "the gateway does not support this request",
}


class PcpResult(IntEnum):
    """PCP result codes (RFC 6887 §7.4)."""

    SUCCESS = 0
    UNSUPP_VERSION = 1
    NOT_AUTHORIZED = 2
    MALFORMED_REQUEST = 3
    UNSUPP_OPCODE = 4
    UNSUPP_OPTION = 5
    MALFORMED_OPTION = 6
    NETWORK_FAILURE = 7
    NO_RESOURCES = 8
    UNSUPP_PROTOCOL = 9
    USER_EX_QUOTA = 10
    CANNOT_PROVIDE_EXTERNAL = 11
    ADDRESS_MISMATCH = 12
    EXCESSIVE_REMOTE_PEERS = 13

    @property
    def description(self) -> str:
        """What the code means, as a sentence."""
        return _PCP_TEXT[self]

    @property
    def lifetime_kind(self) -> ErrorLifetime:
        """Short- or long-lifetime error, as RFC 6887 §7.4 classifies it."""
        if self is PcpResult.SUCCESS:
            return ErrorLifetime.NONE
        if self in _PCP_SHORT:
            return ErrorLifetime.SHORT
        if self is PcpResult.CANNOT_PROVIDE_EXTERNAL:
            return ErrorLifetime.VARIES
        return ErrorLifetime.LONG


# RFC 6887 §7.4 calls exactly these three "short lifetime"; every other error
# code is "long lifetime" except CANNOT_PROVIDE_EXTERNAL, whose lifetime
# "depends on the reason for the failure".
_PCP_SHORT = frozenset({PcpResult.NETWORK_FAILURE, PcpResult.NO_RESOURCES,
                        PcpResult.USER_EX_QUOTA})

_PCP_TEXT: dict[PcpResult, str] = {
    PcpResult.SUCCESS: "success",
    PcpResult.UNSUPP_VERSION: "the gateway does not speak PCP version 2",
    PcpResult.NOT_AUTHORIZED: "the gateway's policy refuses this request",
    PcpResult.MALFORMED_REQUEST: "the gateway could not parse the request",
    PcpResult.UNSUPP_OPCODE: "the gateway does not support this opcode",
    PcpResult.UNSUPP_OPTION: "the gateway does not support a mandatory option in the request",
    PcpResult.MALFORMED_OPTION: "an option in the request is malformed",
    PcpResult.NETWORK_FAILURE: "the gateway has a network failure (for example no external "
    "address yet)",
    PcpResult.NO_RESOURCES: "the gateway cannot create more mappings now",
    PcpResult.UNSUPP_PROTOCOL: "the gateway does not support this IP protocol",
    PcpResult.USER_EX_QUOTA: "this client has used up its mapping quota",
    PcpResult.CANNOT_PROVIDE_EXTERNAL: "the suggested external port or address cannot be "
    "provided",
    PcpResult.ADDRESS_MISMATCH: "the client address in the request is not the packet's "
    "source address (a NAT between client and gateway?)",
    PcpResult.EXCESSIVE_REMOTE_PEERS: "the gateway could not create the filters in the "
    "request (too many remote peers in the FILTER options)",
}


def natpmp_result(code: int) -> NatPmpResult | int:
    """The enum member for a NAT-PMP result code, or the bare int when unknown."""
    try:
        return NatPmpResult(code)
    except ValueError:
        return code


def pcp_result(code: int) -> PcpResult | int:
    """The enum member for a PCP result code, or the bare int when unknown."""
    try:
        return PcpResult(code)
    except ValueError:
        return code


def result_name(code: int, *, pcp: bool) -> str:
    """The RFC name of a result code (``NO_RESOURCES``), or ``UNKNOWN(200)``."""
    member = pcp_result(code) if pcp else natpmp_result(code)
    return member.name if isinstance(member, Enum) else f"UNKNOWN({code})"


def result_description(code: int, *, pcp: bool) -> str:
    """The sentence for a result code; unknown codes say so."""
    member = pcp_result(code) if pcp else natpmp_result(code)
    if isinstance(member, (PcpResult, NatPmpResult)):
        return member.description
    return f"the gateway answered with result code {code}, which this client does not know"
