"""Deleting a mapping this host may hold with no record of it (:func:`delete_unrecorded`).

A mapping outlives its record when a program crashed, its state was lost, or another
program made it: a user still wants the port closed. With no stored mapping there is no
nonce and no protocol to go by, so the protocol is chosen from what the gateway answers,
as :meth:`~engine.client.GatewayClient.map` chooses it: PCP (with a fresh nonce), NAT-PMP
when the gateway does not speak PCP (UNSUPP_VERSION), UPnP IGD when nothing listens on
its port 5351 (ICMP port unreachable). A PCP mapping made under another nonce is not this
client's to delete (RFC 6887 §11.1: NOT_AUTHORIZED is raised; it expires on its own).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import PortUnreachable, UnsupportedVersion
from .mapping import DEFAULT_TIMEOUT, PortMapping
from .protocols import Protocol, as_protocol
from .request import checked_protocol, from_fields, new_nonce
from .types import MappingProtocol, Via

if TYPE_CHECKING:
    from .client import GatewayClient

__all__ = ["delete_unrecorded"]


async def delete_unrecorded(client: GatewayClient, protocol: int, internal_port: int, *,
                            external_port: int | None = None, via: Via = "auto",
                            timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
    """Delete the mapping of ``protocol`` and ``internal_port`` (its external port,
    ``internal_port`` unless ``external_port`` says, for UPnP IGD, which names a mapping by
    it) without a stored :class:`PortMapping`; see the module for the protocol chosen.

    Returns the mapping as deleted (its ``via`` says which protocol did it). A UPnP IGD
    entry is deleted only if it is still this host's (another host's is left alone).
    Raises the request's :class:`~engine.errors.InvalidRequest` before anything is sent,
    and what the last protocol tried raised: :class:`~engine.errors.ResultCodeError`
    (NOT_AUTHORIZED: a PCP mapping of another nonce), :class:`~engine.errors.GatewayTimeout`.
    """
    proto = checked_protocol(protocol)
    first: MappingProtocol = "pcp" if via == "auto" else via
    nonce = new_nonce() if first == "pcp" else None
    # The one validation every request passes, as a delete (lifetime 0).
    request = from_fields(proto, internal_port, external_port, None, 0, via, False, (), None,
                          nonce, None, None)
    request.validate(deleting=True)
    mapping = PortMapping(
        gateway=client.gateway, gateway_port=client.port,
        local_address=await client.local_address(), protocol=as_protocol(proto),
        internal_port=internal_port,
        external_port=internal_port if external_port is None else external_port,
        external_address=None, lifetime=0, expires_at=0.0, via=first, epoch=0, nonce=nonce,
        suggested_external_port=internal_port)
    # What the gateway's answer to PCP says to try next; only "auto" falls back, and only
    # for TCP and UDP, which NAT-PMP and UPnP IGD can carry.
    fallbacks = via == "auto" and proto in (Protocol.TCP, Protocol.UDP)
    try:
        await client.delete(mapping, timeout=timeout)
    except PortUnreachable:
        if not fallbacks or "upnp" not in client.mappers:
            raise
        await _delete_with(client, mapping, "upnp", timeout)
    except UnsupportedVersion:
        if not fallbacks:
            raise
        await _delete_with(client, mapping, "natpmp", timeout)
    return mapping


async def _delete_with(client: GatewayClient, mapping: PortMapping, via: MappingProtocol,
                       timeout: float | None) -> None:
    mapping.via = via
    mapping.nonce = None  # only PCP has one
    await client.delete(mapping, timeout=timeout)
