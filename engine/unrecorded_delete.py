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

from .errors import GatewayError
from .mapping import DEFAULT_TIMEOUT, PortMapping
from .negotiation import ANSWERS_ONLY, AUTO_ORDER, falls_back, skips_after
from .protocols import as_protocol
from .request import checked_protocol, from_fields, new_nonce
from .types import MappingProtocol, Via
from .wire import pcp

if TYPE_CHECKING:
    from .client import GatewayClient

__all__ = ["delete_unrecorded"]


async def delete_unrecorded(client: GatewayClient, protocol: int, internal_port: int, *,
                            external_port: int | None = None, via: Via = "auto",
                            nonce: bytes | None = None, options: tuple[pcp.Option, ...] = (),
                            timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
    """Delete the mapping of ``protocol`` and ``internal_port`` (its external port,
    ``internal_port`` unless ``external_port`` says, for UPnP IGD, which names a mapping by
    it) without a stored :class:`PortMapping`; see the module for the protocol chosen.
    ``nonce`` and ``options`` are those of a PCP request this client sent but got no answer
    to (the manager's unanswered add): its mapping is deleted with them (RFC 6887 §11.1, §13).

    Returns the mapping as deleted (its ``via`` says which protocol did it). A UPnP IGD
    entry is deleted only if it is still this host's (another host's is left alone).
    Raises the request's :class:`~engine.errors.InvalidRequest` before anything is sent,
    and what the last protocol tried raised: :class:`~engine.errors.ResultCodeError`
    (NOT_AUTHORIZED: a PCP mapping of another nonce), :class:`~engine.errors.GatewayTimeout`.
    """
    proto = checked_protocol(protocol)
    first: MappingProtocol = "pcp" if via == "auto" else via
    nonce = (nonce or new_nonce()) if first == "pcp" else None
    # The one validation every request passes, as a delete (lifetime 0).
    request = from_fields(proto, internal_port, external_port, None, 0, via, False, (), None,
                          nonce, None, None, options)
    request.validate(deleting=True)
    # With "auto", map's order and the protocols that can carry the request (NAT-PMP and
    # UPnP IGD: TCP and UDP; UPnP IGD: an IPv4 gateway); only answers move on, as for the
    # external address (silence is not a refusal).
    order = (first,) if via != "auto" else tuple(
        p for p in AUTO_ORDER if p in client.mappers and client.mappers[p].refusal(request) is None)
    mapping = PortMapping(
        gateway=client.gateway, gateway_port=client.port,
        local_address=await client.local_address(), protocol=as_protocol(proto),
        internal_port=internal_port,
        external_port=internal_port if external_port is None else external_port,
        external_address=None, lifetime=0, expires_at=0.0, via=first, epoch=0, nonce=nonce,
        suggested_external_port=internal_port, options=options)
    skipped: frozenset[MappingProtocol] = frozenset()
    for index, step in enumerate(order):
        if step in skipped:
            continue
        mapping.via = step
        mapping.nonce = nonce if step == "pcp" else None  # only PCP has one
        try:
            await client.delete(mapping, timeout=timeout)
        except GatewayError as exc:
            skipped |= skips_after(exc)
            if not falls_back(via, ANSWERS_ONLY, exc) \
                    or all(later in skipped for later in order[index + 1:]):
                raise
            continue
        return mapping
    raise AssertionError("unreachable")  # pragma: no cover - the last step returns or raises
