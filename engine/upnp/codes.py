"""UPnP IGD error codes (UPnP Device Architecture §3.2.2, WANIPConnection:2 §2.5,
WANIPv6FirewallControl:1 §2.5): each code's name, a sentence a user can act on, and what it
means in PCP's terms, so a front end treats "port in use" the same whichever protocol said it.
"""

from __future__ import annotations

from enum import IntEnum

from ..codes import PcpResult

__all__ = ["PERMANENT_ONLY_CODES", "PORT_IN_USE_CODES", "UpnpErrorCode", "upnp_error_name"]


class UpnpErrorCode(IntEnum):
    """SOAP ``errorCode`` values of the IGD services."""

    INVALID_ACTION = 401
    INVALID_ARGS = 402
    ACTION_FAILED = 501
    ARGUMENT_VALUE_INVALID = 600
    ARGUMENT_VALUE_OUT_OF_RANGE = 601
    OPTIONAL_ACTION_NOT_IMPLEMENTED = 602
    ACTION_NOT_AUTHORIZED = 606
    PINHOLE_SPACE_EXHAUSTED = 701
    FIREWALL_DISABLED = 702
    INBOUND_PINHOLE_NOT_ALLOWED = 703
    NO_SUCH_ENTRY = 704
    PROTOCOL_NOT_SUPPORTED = 705
    INTERNAL_PORT_WILDCARDING_NOT_ALLOWED = 706
    PROTOCOL_WILDCARDING_NOT_ALLOWED = 707
    WILDCARD_NOT_PERMITTED_IN_SRC_IP = 708
    NO_TRAFFIC_RECEIVED = 709
    SPECIFIED_ARRAY_INDEX_INVALID = 713
    NO_SUCH_ENTRY_IN_ARRAY = 714
    WILD_CARD_NOT_PERMITTED_IN_SRC_IP = 715
    WILD_CARD_NOT_PERMITTED_IN_EXT_PORT = 716
    CONFLICT_IN_MAPPING_ENTRY = 718
    SAME_PORT_VALUES_REQUIRED = 724
    ONLY_PERMANENT_LEASES_SUPPORTED = 725
    REMOTE_HOST_ONLY_SUPPORTS_WILDCARD = 726
    EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD = 727
    NO_PORT_MAPS_AVAILABLE = 728
    CONFLICT_WITH_OTHER_MECHANISMS = 729
    PORT_MAPPING_NOT_FOUND = 730
    WILD_CARD_NOT_PERMITTED_IN_INT_PORT = 732
    INCONSISTENT_PARAMETERS = 733

    @property
    def upnp_name(self) -> str:
        """The name the UPnP specification gives the code (``ConflictInMappingEntry``)."""
        return _NAMES[self]

    @property
    def description(self) -> str:
        """What the code means, as a sentence."""
        return _TEXT.get(self, "the gateway refused the request")

    @property
    def pcp_equivalent(self) -> PcpResult | None:
        """The PCP result with the same meaning, for front ends that speak in PCP's terms."""
        return _PCP.get(self)


_NAMES: dict[UpnpErrorCode, str] = {
    UpnpErrorCode.INVALID_ACTION: "InvalidAction",
    UpnpErrorCode.INVALID_ARGS: "InvalidArgs",
    UpnpErrorCode.ACTION_FAILED: "ActionFailed",
    UpnpErrorCode.ARGUMENT_VALUE_INVALID: "ArgumentValueInvalid",
    UpnpErrorCode.ARGUMENT_VALUE_OUT_OF_RANGE: "ArgumentValueOutOfRange",
    UpnpErrorCode.OPTIONAL_ACTION_NOT_IMPLEMENTED: "OptionalActionNotImplemented",
    UpnpErrorCode.ACTION_NOT_AUTHORIZED: "ActionNotAuthorized",
    UpnpErrorCode.PINHOLE_SPACE_EXHAUSTED: "PinholeSpaceExhausted",
    UpnpErrorCode.FIREWALL_DISABLED: "FirewallDisabled",
    UpnpErrorCode.INBOUND_PINHOLE_NOT_ALLOWED: "InboundPinholeNotAllowed",
    UpnpErrorCode.NO_SUCH_ENTRY: "NoSuchEntry",
    UpnpErrorCode.PROTOCOL_NOT_SUPPORTED: "ProtocolNotSupported",
    UpnpErrorCode.INTERNAL_PORT_WILDCARDING_NOT_ALLOWED: "InternalPortWildcardingNotAllowed",
    UpnpErrorCode.PROTOCOL_WILDCARDING_NOT_ALLOWED: "ProtocolWildcardingNotAllowed",
    UpnpErrorCode.WILDCARD_NOT_PERMITTED_IN_SRC_IP: "WildcardNotPermittedInSrcIP",
    UpnpErrorCode.NO_TRAFFIC_RECEIVED: "NoTrafficReceived",
    UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID: "SpecifiedArrayIndexInvalid",
    UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY: "NoSuchEntryInArray",
    UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_SRC_IP: "WildCardNotPermittedInSrcIP",
    UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_EXT_PORT: "WildCardNotPermittedInExtPort",
    UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY: "ConflictInMappingEntry",
    UpnpErrorCode.SAME_PORT_VALUES_REQUIRED: "SamePortValuesRequired",
    UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED: "OnlyPermanentLeasesSupported",
    UpnpErrorCode.REMOTE_HOST_ONLY_SUPPORTS_WILDCARD: "RemoteHostOnlySupportsWildcard",
    UpnpErrorCode.EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD: "ExternalPortOnlySupportsWildcard",
    UpnpErrorCode.NO_PORT_MAPS_AVAILABLE: "NoPortMapsAvailable",
    UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS: "ConflictWithOtherMechanisms",
    UpnpErrorCode.PORT_MAPPING_NOT_FOUND: "PortMappingNotFound",
    UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_INT_PORT: "WildCardNotPermittedInIntPort",
    UpnpErrorCode.INCONSISTENT_PARAMETERS: "InconsistentParameters",
}

_TEXT: dict[UpnpErrorCode, str] = {
    UpnpErrorCode.INVALID_ACTION: "the gateway does not know this action",
    UpnpErrorCode.INVALID_ARGS: "the gateway refused the arguments (some routers take only "
    "permanent leases this way)",
    UpnpErrorCode.ACTION_FAILED: "the gateway could not do it (often: it has no usable external "
    "address, for example behind a second NAT)",
    UpnpErrorCode.ARGUMENT_VALUE_INVALID: "an argument value is invalid",
    UpnpErrorCode.ARGUMENT_VALUE_OUT_OF_RANGE: "an argument value is out of range",
    UpnpErrorCode.OPTIONAL_ACTION_NOT_IMPLEMENTED: "the gateway does not implement this action",
    UpnpErrorCode.ACTION_NOT_AUTHORIZED: "the gateway's policy refuses this (a port outside its "
    "allow rules, or another host's mapping under secure mode)",
    UpnpErrorCode.PINHOLE_SPACE_EXHAUSTED: "the gateway cannot open more IPv6 pinholes",
    UpnpErrorCode.FIREWALL_DISABLED: "the gateway's IPv6 firewall is off (nothing to open)",
    UpnpErrorCode.INBOUND_PINHOLE_NOT_ALLOWED: "the gateway does not allow inbound pinholes",
    UpnpErrorCode.NO_SUCH_ENTRY: "the gateway holds no such pinhole",
    UpnpErrorCode.PROTOCOL_NOT_SUPPORTED: "the gateway does not support this protocol",
    UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID: "no mapping at this index (end of the table)",
    UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY: "the gateway holds no such mapping",
    UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_EXT_PORT: "the gateway needs a specific external "
    "port (not 0)",
    UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY: "the external port is in use by another host's "
    "mapping; try another port",
    UpnpErrorCode.SAME_PORT_VALUES_REQUIRED: "the gateway needs the internal and external port "
    "to be the same",
    UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED: "the gateway takes only permanent leases",
    UpnpErrorCode.REMOTE_HOST_ONLY_SUPPORTS_WILDCARD: "the gateway takes no remote host filter",
    UpnpErrorCode.EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD: "the gateway chooses the external port "
    "itself",
    UpnpErrorCode.NO_PORT_MAPS_AVAILABLE: "the gateway has no free external port (or mapping "
    "slot) left",
    UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS: "the external port is in use by the gateway "
    "itself or another mechanism; try another port",
    UpnpErrorCode.PORT_MAPPING_NOT_FOUND: "the gateway holds no mapping in that range",
}

_PCP: dict[UpnpErrorCode, PcpResult] = {
    UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_EXT_PORT: PcpResult.CANNOT_PROVIDE_EXTERNAL,
    UpnpErrorCode.ACTION_NOT_AUTHORIZED: PcpResult.NOT_AUTHORIZED,
    UpnpErrorCode.INBOUND_PINHOLE_NOT_ALLOWED: PcpResult.NOT_AUTHORIZED,
    UpnpErrorCode.ACTION_FAILED: PcpResult.NETWORK_FAILURE,
    UpnpErrorCode.NO_PORT_MAPS_AVAILABLE: PcpResult.NO_RESOURCES,
    UpnpErrorCode.PINHOLE_SPACE_EXHAUSTED: PcpResult.NO_RESOURCES,
    UpnpErrorCode.PROTOCOL_NOT_SUPPORTED: PcpResult.UNSUPP_PROTOCOL,
}

#: Codes that mean "the external port is someone else's": the same as PCP's
#: CANNOT_PROVIDE_EXTERNAL and a NAT-PMP answer granting another port.
PORT_IN_USE_CODES = frozenset({UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY,
                               UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS})

#: Codes after which an add is tried again with a permanent lease (tailscale's portmapper does
#: the same: MikroTik refuses any finite lease with 402, the IGD spec says 725).
PERMANENT_ONLY_CODES = frozenset({UpnpErrorCode.ONLY_PERMANENT_LEASES_SUPPORTED,
                                  UpnpErrorCode.INVALID_ARGS})


def upnp_error_name(code: int) -> str:
    """The UPnP name of ``code`` (``ConflictInMappingEntry``), or ``UPnPError(code)``."""
    try:
        return UpnpErrorCode(code).upnp_name
    except ValueError:
        return f"UPnPError({code})"
