"""UPnP IGD (Internet Gateway Device) on the gateway natdeck already knows.

The pure parts (:mod:`.ssdp`, :mod:`.soap`, :mod:`.igd`, :mod:`.listing`, :mod:`.codes`) decide;
:class:`UpnpGateway` moves bytes. async-upnp-client (and aiohttp) are imported only once a UPnP
operation runs: importing this package costs nothing to a user whose gateway speaks PCP.
"""

from __future__ import annotations

from .codes import PORT_IN_USE_CODES, UpnpErrorCode, upnp_error_name
from .connection import DeviceInfo
from .errors import (
    UpnpInvalidRequest,
    UpnpReplyError,
    UpnpResultError,
    UpnpTimeout,
    UpnpTransportError,
)
from .gateway import RouterListing, UpnpGateway, UpnpMapping, UpnpProbe
from .igd import MAX_LEASE, ExternalAddress
from .listing import MadeBy, RouterMapping, made_by

__all__ = [
    "MAX_LEASE",
    "PORT_IN_USE_CODES",
    "DeviceInfo",
    "ExternalAddress",
    "MadeBy",
    "RouterListing",
    "RouterMapping",
    "UpnpErrorCode",
    "UpnpGateway",
    "UpnpInvalidRequest",
    "UpnpMapping",
    "UpnpProbe",
    "UpnpReplyError",
    "UpnpResultError",
    "UpnpTimeout",
    "UpnpTransportError",
    "made_by",
    "upnp_error_name",
]
