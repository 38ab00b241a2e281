"""One IGD's description and SOAP control: async-upnp-client's factory builds the device and
its action objects (which validate and encode the arguments); the replies are read by
:mod:`.soap`, and every failure becomes one of :mod:`.errors`' classes.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import GatewayError
from ..types import DeviceInfo
from ..wire.addresses import IPAddress
from .errors import UpnpInvalidRequest, UpnpReplyError, UpnpResultError
from .igd import PINHOLE_SERVICE, IgdService, choose_service, igd_version
from .soap import SoapFault, parse_reply
from .ssdp import url_on_gateway

if TYPE_CHECKING:
    from async_upnp_client.client import UpnpDevice, UpnpService

    from .http import BoundedRequester

__all__ = ["DeviceInfo", "IgdConnection", "http_stack_loading"]

#: What a UPnP operation imports on its first use: this package's HTTP client (aiohttp, whose
#: connector loads the system's CA certificates twice as it is imported) and async-upnp-client's
#: description factory. About 100 ms in a fresh process: as long as the whole rest of a cold
#: ``natdeck map``.
_HTTP_STACK = (f"{__package__}.http", "async_upnp_client.client_factory")


def http_stack_loading() -> asyncio.Future[None] | None:
    """Import the HTTP stack in a worker thread, or ``None`` when it is loaded already.

    For a first discovery: the gateway takes its time to answer the SSDP search (miniupnpd
    ~51 ms), and the import runs meanwhile instead of before it; the caller awaits the
    future before it describes the IGD (an :class:`ImportError` is raised there)."""
    if all(name in sys.modules for name in _HTTP_STACK):
        return None
    return asyncio.ensure_future(asyncio.to_thread(_import_http_stack))


def _import_http_stack() -> None:
    for name in _HTTP_STACK:
        importlib.import_module(name)


def _printable(text: str | None, limit: int = 128) -> str:
    text = (text or "")[:limit]
    return text if text.isprintable() else repr(text)


class IgdConnection:
    """A described IGD: its chosen port-mapping service (and pinhole service, if any)."""

    def __init__(self, requester: BoundedRequester, device: UpnpDevice, service: UpnpService,
                 pinhole: UpnpService | None) -> None:
        self._requester = requester
        self.device = device
        self.service = service
        self.pinhole = pinhole
        root = device.root_device
        self.info = DeviceInfo(
            location=device.device_url,
            friendly_name=_printable(root.friendly_name),
            manufacturer=_printable(root.manufacturer),
            model_name=_printable(root.model_name),
            model_number=_printable(root.model_number),
            igd_version=igd_version(root.device_type),
            service_type=service.service_type,
            actions=frozenset(service.actions),
            pinholes=pinhole is not None,
        )

    @classmethod
    async def open(cls, requester: BoundedRequester, location: str) -> IgdConnection:
        """Fetch and check the description at ``location`` (on the gateway). Raises
        :class:`UpnpReplyError` when it is not an IGD with a port-mapping service there."""
        from async_upnp_client.client_factory import UpnpFactory
        from async_upnp_client.exceptions import UpnpError

        gateway = requester.gateway
        if not url_on_gateway(location, gateway):
            raise UpnpReplyError(f"refused description {location[:100]!r}: not on {gateway}")
        try:
            # Non-strict: the factory skips (rather than fails on) a service whose URLs are on
            # another host than the description, and tolerates sloppy SCPDs; the control URLs
            # are checked again below, against the gateway's address.
            device = await UpnpFactory(requester, non_strict=True).async_create_device(location)
        except GatewayError:
            raise  # the requester's own: refused, timed out, a body over its bounds
        except UpnpError as exc:
            raise UpnpReplyError(f"the IGD description at {location} is unusable: {exc}") from None
        except Exception as exc:
            # The factory trusts the documents more than we do: a sloppy or hostile one fails
            # in it with a builtin error (an argument naming a state variable the SCPD does not
            # declare: KeyError; an icon's width not a number: ValueError; an XML entity:
            # defusedxml's EntitiesForbidden). Still the gateway's answer, not believed.
            raise UpnpReplyError(f"the IGD description at {location} is unusable: "
                                 f"{type(exc).__name__}: {str(exc)[:100]}") from None
        services: dict[str, UpnpService] = {}
        for each in device.all_devices:
            for service in each.services.values():
                if url_on_gateway(service.control_url, gateway):
                    services.setdefault(service.service_type, service)
        chosen = choose_service(IgdService(t, s.control_url, frozenset(s.actions))
                                for t, s in services.items())
        if chosen is None:
            raise UpnpReplyError(f"{location} offers no WANIPConnection or WANPPPConnection "
                                 "service with a control URL on the gateway")
        return cls(requester, device, services[chosen.service_type],
                   services.get(PINHOLE_SERVICE))

    def has(self, action: str) -> bool:
        """Whether the port-mapping service declares ``action``."""
        return self.service.has_action(action)

    async def call(self, action: str, request: str, *, pinhole: bool = False,
                   **arguments: Any) -> Mapping[str, str]:
        """Call ``action`` with ``arguments``; its out-arguments as text. ``request`` says what
        natdeck was doing, for the error message. Raises :class:`UpnpResultError` on a UPnP
        fault, :class:`UpnpInvalidRequest` when the arguments do not fit the description."""
        from async_upnp_client.exceptions import UpnpError

        service = self.pinhole if pinhole else self.service
        if service is None or not service.has_action(action):
            raise UpnpReplyError(f"{request}: the gateway's IGD has no {action} action")
        try:
            http_request = service.action(action).create_request(**arguments)
        except (UpnpError, ValueError) as exc:
            raise UpnpInvalidRequest(
                f"{request}: {action} cannot carry these values ({exc})") from None
        response = await self._requester.async_http_request(http_request)
        try:
            reply = parse_reply(response.body or "", action, response.status_code)
        except ValueError as exc:
            raise UpnpReplyError(f"{request}: {exc}") from None
        if isinstance(reply, SoapFault):
            raise UpnpResultError(reply.code, request=request,
                                  gateway=str(self._requester.gateway), action=action,
                                  detail=reply.description or None)
        return reply.arguments

    @property
    def gateway(self) -> IPAddress:
        """The gateway's address."""
        return self._requester.gateway
