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

Without an event loop (a script, a thread), :class:`~engine.blocking.BlockingClient`
runs the same requests on a blocking socket::

    with engine.BlockingClient("192.168.1.1") as client:
        mapping = client.map(engine.Protocol.TCP, 8080)
        client.delete(mapping)

Nothing here imports Textual; the wire layer (:mod:`engine.wire`) and the
timing rules (:mod:`engine.timing`) are pure code without I/O.

The names below are imported on first use (PEP 562), so that ``import engine.client``
(or a one-shot ``natdeck map``) does not pay for the manager, the events and the
announcement listener it does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .announce import (
        Announcement,
        AnnouncementListener,
    )
    from .blocking import BlockingClient
    from .client import (
        DEFAULT_LIFETIME,
        DEFAULT_TIMEOUT,
        GatewayClient,
        PortMapping,
        ProbeResult,
        Via,
    )
    from .codes import (
        ErrorLifetime,
        NatPmpResult,
        PcpResult,
    )
    from .discovery import (
        Discovered,
        discover,
    )
    from .errors import (
        GatewayError,
        GatewayTimeout,
        InvalidRequest,
        MalformedPacket,
        NatDeckError,
        NoGatewayError,
        PortUnreachable,
        ResultCodeError,
        SilentBesideIgd,
        TransportError,
        UnsupportedVersion,
    )
    from .events import (
        AnnouncementsOff,
        Event,
        ExternalAddressChanged,
        GatewayAnswer,
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
    from .manager import (
        MappingManager,
    )
    from .oneshot import (
        external_address,
        map_port,
        peer,
        probe,
    )
    from .protocols import (
        Protocol,
        parse_protocol,
        protocol_name,
    )
    from .request import (
        MapRequest,
    )
    from .types import (
        MappingProtocol,
    )
    from .unrecorded_delete import (
        delete_unrecorded,
    )
    from .wire.pcp import (
        Filter,
        PreferFailure,
        ThirdParty,
    )

#: Each public name and the module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    "Announcement": ".announce",
    "AnnouncementListener": ".announce",
    "BlockingClient": ".blocking",
    "DEFAULT_LIFETIME": ".client",
    "DEFAULT_TIMEOUT": ".client",
    "GatewayClient": ".client",
    "PortMapping": ".client",
    "ProbeResult": ".client",
    "Via": ".client",
    "external_address": ".oneshot",
    "map_port": ".oneshot",
    "peer": ".oneshot",
    "probe": ".oneshot",
    "ErrorLifetime": ".codes",
    "NatPmpResult": ".codes",
    "PcpResult": ".codes",
    "Discovered": ".discovery",
    "discover": ".discovery",
    "GatewayError": ".errors",
    "GatewayTimeout": ".errors",
    "InvalidRequest": ".errors",
    "MalformedPacket": ".errors",
    "NatDeckError": ".errors",
    "NoGatewayError": ".errors",
    "PortUnreachable": ".errors",
    "ResultCodeError": ".errors",
    "SilentBesideIgd": ".errors",
    "TransportError": ".errors",
    "UnsupportedVersion": ".errors",
    "AnnouncementsOff": ".events",
    "Event": ".events",
    "GatewayAnswer": ".events",
    "ExternalAddressChanged": ".events",
    "GatewayReachable": ".events",
    "GatewayRestarted": ".events",
    "GatewayStatus": ".events",
    "GatewayUnreachable": ".events",
    "LocalAddressChanged": ".events",
    "ManagedMapping": ".events",
    "ManagerClosed": ".events",
    "ManagerClosing": ".events",
    "MappingsConfirming": ".events",
    "MappingAdded": ".events",
    "MappingFailed": ".events",
    "MappingKey": ".events",
    "MappingLost": ".events",
    "MappingRecovered": ".events",
    "MappingRemoved": ".events",
    "MappingRenewalFailed": ".events",
    "MappingRenewed": ".events",
    "MappingState": ".events",
    "ProbeCompleted": ".events",
    "MappingManager": ".manager",
    "Protocol": ".protocols",
    "parse_protocol": ".protocols",
    "protocol_name": ".protocols",
    "MapRequest": ".request",
    "MappingProtocol": ".types",
    "delete_unrecorded": ".unrecorded_delete",
    "Filter": ".wire.pcp",
    "PreferFailure": ".wire.pcp",
    "ThirdParty": ".wire.pcp",
}

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_TIMEOUT",
    "Announcement",
    "AnnouncementListener",
    "AnnouncementsOff",
    "BlockingClient",
    "Discovered",
    "ErrorLifetime",
    "Event",
    "ExternalAddressChanged",
    "Filter",
    "GatewayAnswer",
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
    "MapRequest",
    "MappingAdded",
    "MappingFailed",
    "MappingKey",
    "MappingLost",
    "MappingManager",
    "MappingProtocol",
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
    "PortUnreachable",
    "PreferFailure",
    "ProbeCompleted",
    "ProbeResult",
    "Protocol",
    "ResultCodeError",
    "SilentBesideIgd",
    "ThirdParty",
    "TransportError",
    "UnsupportedVersion",
    "Via",
    "delete_unrecorded",
    "discover",
    "external_address",
    "map_port",
    "parse_protocol",
    "peer",
    "probe",
    "protocol_name",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
