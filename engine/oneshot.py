"""The one-shot API: ``map_port``, ``external_address``, ``peer``, ``probe``.

Each call uses a :class:`~engine.client.GatewayClient`; separate calls to one gateway
share one while any of them lives.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Iterable

from .client import GatewayClient
from .mapping import DEFAULT_TIMEOUT, MappingCall, PortMapping, ProbeResult
from .protocols import Protocol
from .request import DEFAULT_LIFETIME
from .transport import SERVER_PORT
from .types import Via
from .upnp import SSDP_PORT
from .wire import pcp
from .wire.addresses import IPAddress

__all__ = ["external_address", "map_port", "peer", "probe"]


# Separate one-shot calls to one gateway share one client while any of them (or a mapping
# it made) lives: one socket, one in-flight window (a thousand concurrent map_port calls
# queue instead of flooding a slow gateway), one negotiation.
_shared: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop,
    weakref.WeakValueDictionary[tuple[str, int, str, int], GatewayClient]] = \
    weakref.WeakKeyDictionary()


def _client_for(gateway: str | IPAddress | GatewayClient, gateway_port: int,
                local_address: str | IPAddress | None,
                ssdp_port: int = SSDP_PORT) -> GatewayClient:
    if isinstance(gateway, GatewayClient):
        return gateway
    client = GatewayClient(gateway, gateway_port, local_address=local_address,
                           ssdp_port=ssdp_port)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return client
    key = (str(client.gateway), gateway_port, str(client.explicit_local_address), ssdp_port)
    clients = _shared.setdefault(loop, weakref.WeakValueDictionary())
    return clients.setdefault(key, client)


def map_port(gateway: str | IPAddress | GatewayClient, internal_port: int,
             protocol: int = Protocol.TCP, *,
             local_address: str | IPAddress | None = None,
             external_port: int | None = None,
             external_address: str | IPAddress | None = None,
             lifetime: int = DEFAULT_LIFETIME,
             via: Via = "auto",
             gateway_port: int = SERVER_PORT,
             prefer_failure: bool = False,
             filters: Iterable[pcp.Filter] = (),
             third_party: str | IPAddress | None = None,
             nonce: bytes | None = None,
             timeout: float | None = DEFAULT_TIMEOUT,
             fallback_on_silence: bool = True,
             ssdp_port: int = SSDP_PORT) -> MappingCall:
    """Ask ``gateway`` to map ``internal_port`` of ``protocol`` to an external port.

    ``await`` the result for a :class:`PortMapping`, or use it in ``async with``
    to delete the mapping on exit. ``via="auto"`` speaks PCP, falls back to
    NAT-PMP on UNSUPP_VERSION, and to UPnP IGD when neither is spoken (at once
    on ICMP port unreachable from port 5351; for a gateway never heard from,
    also on silence when ``fallback_on_silence``). ``via="upnp"`` asks the
    gateway's IGD only (searched by SSDP on ``ssdp_port``, 1900). With no
    ``external_port`` the internal port is suggested (some gateways refuse a
    suggestion of 0). ``timeout`` bounds the whole call (``None``: the RFCs'
    own schedules).

    Raises :class:`~engine.errors.InvalidRequest` before sending anything the
    protocol cannot carry, :class:`~engine.errors.ResultCodeError` when the
    gateway refuses, :class:`~engine.errors.GatewayTimeout` on silence.
    """
    client = _client_for(gateway, gateway_port, local_address, ssdp_port)

    async def make() -> PortMapping:
        return await client.map(protocol, internal_port, external_port=external_port,
                                external_address=external_address, lifetime=lifetime, via=via,
                                prefer_failure=prefer_failure, filters=filters,
                                third_party=third_party, nonce=nonce, timeout=timeout,
                                fallback_on_silence=fallback_on_silence)

    return MappingCall(make)


async def external_address(gateway: str | IPAddress | GatewayClient, *,
                           gateway_port: int = SERVER_PORT,
                           local_address: str | IPAddress | None = None,
                           via: Via = "auto",
                           timeout: float | None = DEFAULT_TIMEOUT,
                           ssdp_port: int = SSDP_PORT) -> IPAddress:
    """The gateway's external address.

    NAT-PMP's opcode 0 where the gateway speaks it (no state is created); else
    PCP's short MAP (RFC 6887 §11.6), deleted again at once; else UPnP IGD's
    GetExternalIPAddress.
    """
    client = _client_for(gateway, gateway_port, local_address, ssdp_port)
    return await client.get_external_address(via=via, timeout=timeout)


async def peer(gateway: str | IPAddress | GatewayClient, internal_port: int,
               protocol: int, remote_address: str | IPAddress, remote_port: int, *,
               gateway_port: int = SERVER_PORT,
               local_address: str | IPAddress | None = None,
               external_port: int | None = None,
               external_address: str | IPAddress | None = None,
               lifetime: int = DEFAULT_LIFETIME,
               third_party: str | IPAddress | None = None,
               nonce: bytes | None = None,
               timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
    """PCP PEER (RFC 6887 §12): the mapping used for traffic with one remote peer."""
    client = _client_for(gateway, gateway_port, local_address)
    return await client.peer(protocol, internal_port, remote_address, remote_port,
                             external_port=external_port, external_address=external_address,
                             lifetime=lifetime, third_party=third_party, nonce=nonce,
                             timeout=timeout)


async def probe(gateway: str | IPAddress | GatewayClient, *,
                gateway_port: int = SERVER_PORT,
                local_address: str | IPAddress | None = None,
                timeout: float = 3.0, ssdp_port: int = SSDP_PORT) -> ProbeResult:
    """Which protocols the gateway answers (PCP, NAT-PMP, UPnP IGD with its name and model),
    its external address, epochs and RTT."""
    client = _client_for(gateway, gateway_port, local_address, ssdp_port)
    return await client.probe(timeout=timeout)
