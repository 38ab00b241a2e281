"""natdeck's engine: an asyncio NAT-PMP (RFC 6886) and PCP (RFC 6887) client.

::

    import engine
    mapping = await engine.map_port("192.168.1.1", 8080, engine.Protocol.TCP)
    await mapping.renew()
    await mapping.delete()

    async with engine.MappingManager("192.168.1.1") as mgr:
        await mgr.add(engine.Protocol.UDP, 5000)
        async for event in mgr.events():
            print(event.summary)

Nothing here imports Textual; the wire layer (:mod:`engine.wire`) and the
timing rules (:mod:`engine.timing`) are pure code without I/O.
"""

from .announce import Announcement, AnnouncementListener
from .client import (
    DEFAULT_LIFETIME,
    DEFAULT_TIMEOUT,
    GatewayClient,
    PortMapping,
    ProbeResult,
    Via,
    external_address,
    map_port,
    peer,
    probe,
)
from .codes import ErrorLifetime, NatPmpResult, PcpResult
from .discovery import Discovered, discover
from .errors import (
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    MalformedPacket,
    NatDeckError,
    NoGatewayError,
    ResultCodeError,
    TransportError,
    UnsupportedVersion,
)
from .events import (
    Event,
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayStatus,
    GatewayUnreachable,
    LocalAddressChanged,
    ManagedMapping,
    ManagerClosed,
    ManagerClosing,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRemoved,
    MappingRenewalFailed,
    MappingRenewed,
    MappingsConfirming,
    MappingState,
    ProbeCompleted,
)
from .manager import MappingManager
from .protocols import Protocol, parse_protocol, protocol_name
from .wire.pcp import Filter, PreferFailure, ThirdParty

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_TIMEOUT",
    "Announcement",
    "AnnouncementListener",
    "Discovered",
    "ErrorLifetime",
    "Event",
    "ExternalAddressChanged",
    "Filter",
    "GatewayClient",
    "GatewayError",
    "GatewayReachable",
    "GatewayRestarted",
    "GatewayStatus",
    "GatewayTimeout",
    "GatewayUnreachable",
    "InvalidRequest",
    "LocalAddressChanged",
    "MalformedPacket",
    "ManagedMapping",
    "ManagerClosed",
    "ManagerClosing",
    "MappingAdded",
    "MappingFailed",
    "MappingKey",
    "MappingLost",
    "MappingManager",
    "MappingRecovered",
    "MappingRemoved",
    "MappingRenewalFailed",
    "MappingRenewed",
    "MappingState",
    "MappingsConfirming",
    "NatDeckError",
    "NatPmpResult",
    "NoGatewayError",
    "PcpResult",
    "PortMapping",
    "PreferFailure",
    "ProbeCompleted",
    "ProbeResult",
    "Protocol",
    "ResultCodeError",
    "ThirdParty",
    "TransportError",
    "UnsupportedVersion",
    "Via",
    "discover",
    "external_address",
    "map_port",
    "parse_protocol",
    "peer",
    "probe",
    "protocol_name",
]
