"""UPnP IGD (Internet Gateway Device) on the gateway natdeck already knows.

The pure parts (:mod:`.ssdp`, :mod:`.soap`, :mod:`.igd`, :mod:`.listing`, :mod:`.codes`) decide;
:class:`UpnpGateway` moves bytes; :class:`~.mapper.UpnpMapper` is the client's mapper over it
(``via="upnp"``). async-upnp-client (and aiohttp) are imported only once a UPnP operation runs
(the first search's, in a thread while the gateway answers: :mod:`.ssdp`'s bytes need neither),
and the names below only on first use (PEP 562): the client holds a UPnP mapper by default, and
a user whose gateway speaks PCP pays neither for the library nor for the XML parsers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy_exports import lazy_exports

if TYPE_CHECKING:
    from .codes import PORT_IN_USE_CODES, UpnpErrorCode, upnp_error_name
    from .connection import DeviceInfo
    from .errors import (
        UpnpInvalidRequest,
        UpnpPortUnreachable,
        UpnpReplyError,
        UpnpResultError,
        UpnpTimeout,
        UpnpTransportError,
    )
    from .gateway import RouterListing, UpnpGateway, UpnpMapping, UpnpProbe
    from .igd import MAX_LEASE, ExternalAddress
    from .listing import MadeBy, RouterMapping, made_by
    from .mapper import UpnpMapper

#: SSDP's port (UPnP Device Architecture §1.1.2), here and not only in :mod:`.ssdp` so that
#: naming the default costs no import of the SSDP code (a client whose gateway speaks PCP).
SSDP_PORT = 1900

_WHERE: dict[str, str] = {
    "PORT_IN_USE_CODES": ".codes", "UpnpErrorCode": ".codes", "upnp_error_name": ".codes",
    "DeviceInfo": ".connection",
    "UpnpInvalidRequest": ".errors", "UpnpPortUnreachable": ".errors",
    "UpnpReplyError": ".errors", "UpnpResultError": ".errors", "UpnpTimeout": ".errors",
    "UpnpTransportError": ".errors",
    "RouterListing": ".gateway", "UpnpGateway": ".gateway", "UpnpMapping": ".gateway",
    "UpnpProbe": ".gateway",
    "MAX_LEASE": ".igd", "ExternalAddress": ".igd",
    "MadeBy": ".listing", "RouterMapping": ".listing", "made_by": ".listing",
    "UpnpMapper": ".mapper",
}

__all__ = [
    "MAX_LEASE",
    "PORT_IN_USE_CODES",
    "SSDP_PORT",
    "DeviceInfo",
    "ExternalAddress",
    "MadeBy",
    "RouterListing",
    "RouterMapping",
    "UpnpErrorCode",
    "UpnpGateway",
    "UpnpInvalidRequest",
    "UpnpMapper",
    "UpnpMapping",
    "UpnpPortUnreachable",
    "UpnpProbe",
    "UpnpReplyError",
    "UpnpResultError",
    "UpnpTimeout",
    "UpnpTransportError",
    "made_by",
    "upnp_error_name",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())
