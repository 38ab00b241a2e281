"""The client's mapper for UPnP IGD: ``via="upnp"``, and the third step of ``via="auto"``.

:class:`UpnpMapper` implements :class:`~engine.dialects.base.Mapper` over
:class:`~.gateway.UpnpGateway`, which it makes on first use (so async-upnp-client and aiohttp
are imported only when a UPnP step runs: a gateway that answers PCP never costs them). What
differs from PCP and NAT-PMP, and where it is handled:

- a mapping is named at the gateway by (protocol, external port), not by a nonce: renewal
  re-adds the same external port before the lease ends (another host's by then: another
  port, through AddAnyPortMapping, as the first add), and the delete first checks that
  the gateway's entry for that port is still ours (GetSpecificPortMappingEntry), so that a
  port another host took meanwhile is never deleted;
- leases are whole seconds capped at 604800; a gateway that takes only permanent leases
  (725, or 402 on MikroTik) gets one, the grant says ``permanent`` and later adds ask for a
  permanent lease at once;
- there is no epoch: a lost mapping shows as a failed renewal or a missing entry
  (:meth:`UpnpMapper.holds`);
- every operation is bounded by the caller's ``timeout``; an IGD that stops answering HTTP
  (a reboot, another HTTP port) is searched again once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from ipaddress import IPv6Address
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

from ..errors import GatewayError
from ..wire.addresses import IPAddress

if TYPE_CHECKING:
    from ..dialects.base import Grant, Heard
    from ..negotiation import Negotiation
    from ..request import MapRequest
    from .connection import DeviceInfo
    from .gateway import UpnpGateway
    from .results import UpnpMapping

__all__ = ["REQUEST_TIMEOUT", "UpnpLink", "UpnpMapper"]

log = logging.getLogger("engine.upnp")

#: Seconds the SSDP search and each HTTP request may take (miniupnpd: ~51 ms and 1-4 ms).
REQUEST_TIMEOUT = 3.0

_T = TypeVar("_T")


class UpnpLink(Protocol):
    """What the UPnP mapper needs of its client."""

    gateway: IPAddress
    negotiation: Negotiation
    ssdp_port: int
    """Where the gateway's IGD answers SSDP searches (1900)."""

    async def local_address(self) -> IPAddress:
        """The address the gateway sees us as (the internal client of our mappings)."""


class UpnpMapper:
    """The :class:`~engine.dialects.base.Mapper` of UPnP IGD for one client.

    The IGD is searched on ``link.ssdp_port`` (1900; a simulated IGD's own port in tests and
    the demo), read when the mapper first runs. ``request_timeout`` bounds the search and
    each HTTP request.
    """

    def __init__(self, link: UpnpLink, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.link = link
        self.request_timeout = request_timeout
        self.permanent_only = False
        """Whether the gateway was seen to take only permanent leases."""
        self._igd: UpnpGateway | None = None

    @property
    def name(self) -> Literal["upnp"]:
        """``"upnp"``."""
        return "upnp"

    @property
    def device(self) -> DeviceInfo | None:
        """What the IGD said about itself, once found."""
        return None if self._igd is None else self._igd.device

    def refusal(self, request: MapRequest) -> str | None:
        """Why UPnP IGD cannot carry ``request`` (the request's one wording); over IPv6 an
        IGD opens pinholes (WANIPv6FirewallControl), not port mappings."""
        if isinstance(self.link.gateway, IPv6Address):
            return ("UPnP IGD maps ports for IPv4 hosts; for an IPv6 gateway use via='pcp' "
                    "(or UpnpGateway.add_pinhole)")
        return request.upnp_refusal()

    async def scout(self) -> bool:
        """Whether the gateway's IGD answers an SSDP search (nothing described yet): see
        :meth:`~.gateway.UpnpGateway.scout`."""
        return await (await self._gateway()).scout()

    async def close(self) -> None:
        """Release the HTTP connections (the IGD's location is kept for next time)."""
        if self._igd is not None:
            await self._igd.close()

    async def _gateway(self) -> UpnpGateway:
        if self._igd is None:
            from .gateway import UpnpGateway  # the UPnP stack, on first use only

            self._igd = UpnpGateway(self.link.gateway, ssdp_port=self.link.ssdp_port,
                                    local_address=await self.link.local_address(),
                                    timeout=self.request_timeout)
        return self._igd

    async def _run(self, what: str, timeout: float | None,
                   operation: Callable[[UpnpGateway], Awaitable[_T]]) -> _T:
        """``operation`` within ``timeout``; what it shows is recorded in the negotiation."""
        from .errors import UpnpTimeout, UpnpTransportError  # the UPnP stack, on first use

        igd = await self._gateway()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                try:
                    result = await operation(igd)
                except UpnpTransportError:
                    if not igd.connected:
                        raise
                    # The IGD we knew stopped answering HTTP (a reboot, another port): find
                    # it again, once.
                    log.info("UPnP gateway %s: HTTP failed; looking for its IGD again",
                             self.link.gateway)
                    await igd.close()
                    result = await operation(igd)
        except TimeoutError:
            error = UpnpTimeout(str(self.link.gateway), what, 1, loop.time() - started,
                                "no complete answer")
            self.link.negotiation.learn("upnp", error)
            raise error from None
        except GatewayError as exc:
            self.link.negotiation.learn("upnp", exc)
            raise
        self.link.negotiation.learn("upnp")
        return result

    def _grant(self, mapping: UpnpMapping) -> Grant:
        from ..dialects.base import Grant

        if mapping.external_address is not None:
            self.link.negotiation.external_address = mapping.external_address
        return Grant("upnp", None, mapping.external_port, mapping.external_address,
                     mapping.lifetime, permanent=mapping.permanent)

    def _lease(self, request: MapRequest) -> int:
        return 0 if self.permanent_only else request.lifetime

    def _learn_lease(self, asked: int, mapping: UpnpMapping) -> None:
        # An add retried as permanent (725, 402) shows in what it finally asked; an IGDv2
        # gateway then holds it for 604800 s (finite: renewed), an IGDv1 one without end.
        if asked and mapping.requested_lifetime == 0:
            log.info("UPnP gateway %s takes only permanent leases", self.link.gateway)
            self.permanent_only = True

    async def map(self, request: MapRequest, *, timeout: float | None) -> Grant:
        """AddAnyPortMapping (or AddPortMapping on IGDv1) for the suggested port, checked."""
        lease = self._lease(request)

        async def add(igd: UpnpGateway) -> UpnpMapping:
            return await igd.map(int(request.protocol), request.internal_port,
                                 external_port=request.suggested_external_port, lifetime=lease)

        mapping = await self._run(f"UPnP map {request.describe()}", timeout, add)
        self._learn_lease(lease, mapping)
        return self._grant(mapping)

    async def renew(self, request: MapRequest, *, timeout: float | None,
                    retransmit: bool = True) -> Grant:
        """AddPortMapping again for the external port held (WANIPConnection §2.4.16: the same
        host's add for its own port replaces it with the new lease). A port another host took
        meanwhile (718) is not the end of the mapping: it is added anew where the IGD picks
        the port (AddAnyPortMapping, as :meth:`map` does), and the grant carries the new port,
        as a PCP gateway's may."""
        from .results import UpnpMapping

        lease = self._lease(request)

        async def add(igd: UpnpGateway) -> UpnpMapping:
            held = UpnpMapping(self.link.gateway, int(request.protocol), igd.local_address,
                               request.internal_port, request.suggested_external_port, None,
                               0, lease == 0, lease, "natdeck")
            return await igd.renew(held, lease or None, move_if_taken=True)

        mapping = await self._run(f"UPnP renew {request.describe()}", timeout, add)
        self._learn_lease(lease, mapping)
        return self._grant(mapping)

    async def delete(self, request: MapRequest, *, timeout: float | None) -> None:
        """DeletePortMapping of the external port, if the gateway's entry there is still ours
        (one already gone, or taken by another host since, is left alone)."""
        protocol, port = int(request.protocol), request.suggested_external_port

        async def delete(igd: UpnpGateway) -> None:
            entry = await igd.get_mapping(protocol, port)
            if entry is None:
                return
            if entry.internal_client != igd.local_address \
                    or entry.internal_port != request.internal_port:
                log.info("UPnP gateway %s: external port %d now maps to %s:%d, not ours; "
                         "not deleting it", self.link.gateway, port, entry.internal_client,
                         entry.internal_port)
                return
            await igd.delete_mapping(protocol, port, missing_ok=True)

        await self._run(f"UPnP delete {request.describe()}", timeout, delete)

    async def holds(self, request: MapRequest, *, timeout: float | None) -> bool:
        """Whether the gateway still holds our mapping of ``request``'s external port
        (GetSpecificPortMappingEntry): UPnP has no epoch, so this is how a lost mapping shows."""
        protocol, port = int(request.protocol), request.suggested_external_port

        async def look(igd: UpnpGateway) -> bool:
            entry = await igd.get_mapping(protocol, port)
            return (entry is not None and entry.internal_client == igd.local_address
                    and entry.internal_port == request.internal_port)

        return await self._run(f"UPnP look up {request.describe()}", timeout, look)

    async def external_address(self, *, timeout: float | None) -> IPAddress:
        """GetExternalIPAddress. An IGD that reports none (a second NAT above it) raises
        :class:`~.errors.UpnpReplyError` with the double-NAT explanation."""
        external = await self._run("UPnP external address", timeout,
                                   lambda igd: igd.external_address())
        if external.address is None:
            from .errors import UpnpReplyError

            raise UpnpReplyError(f"external address: {external.warning}")
        self.link.negotiation.external_address = external.address
        return external.address

    async def probe(self, *, timeout: float) -> Heard:
        """Find the IGD and ask its WAN state; silence or a refusal is ``spoken=None``."""
        from ..dialects.base import Heard

        try:
            found = await self._run("UPnP probe", timeout, lambda igd: igd.probe())
        except GatewayError as exc:
            log.info("UPnP probe of %s: %s", self.link.gateway, exc)
            return Heard("upnp", None)
        return Heard("upnp", True, rtt=found.rtt, external_address=found.external.address,
                     device=found.device, warning=found.external.warning)
