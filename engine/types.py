"""The shared names of the engine, defined once.

Two different things are called "protocol" in port mapping, and they keep
different names here:

- the **transport protocol** of a mapping: TCP, UDP or any IP protocol number
  (:class:`engine.protocols.Protocol`, re-exported here);
- the **mapping protocol** that asks the gateway for it: PCP (RFC 6887),
  NAT-PMP (RFC 6886) or UPnP IGD (:data:`MappingProtocol`).

``via`` picks a mapping protocol, or ``"auto"`` to let the client negotiate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .protocols import PORTED_PROTOCOLS, Protocol, as_protocol, parse_protocol, protocol_name
from .wire.addresses import IPAddress, to_address

__all__ = [
    "PORTED_PROTOCOLS",
    "DatagramProtocol",
    "DeviceInfo",
    "IPAddress",
    "MappingProtocol",
    "Protocol",
    "ProtocolName",
    "Via",
    "as_protocol",
    "parse_protocol",
    "protocol_name",
    "shown_name",
    "to_address",
]

MappingProtocol = Literal["pcp", "natpmp", "upnp"]
"""A protocol that asks a gateway for mappings."""

DatagramProtocol = Literal["pcp", "natpmp"]
"""The mapping protocols spoken over UDP to the gateway's port 5351: they have epochs."""

ProtocolName = DatagramProtocol
"""The older name of :data:`DatagramProtocol`, kept for callers."""

Via = Literal["auto", "pcp", "natpmp", "upnp"]
"""The mapping protocol a caller asks for, or ``"auto"`` (PCP, then NAT-PMP, then UPnP IGD)."""

_SHOWN: dict[str, str] = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP IGD"}


def shown_name(protocol: str) -> str:
    """How a mapping protocol is written for people: ``PCP``, ``NAT-PMP``, ``UPnP IGD``."""
    return _SHOWN.get(protocol, protocol)


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a UPnP IGD says about itself (for a probe and the gateway panel); here, below
    every layer that carries it, so that a probe's result can name it without importing the
    UPnP stack."""

    location: str
    friendly_name: str
    manufacturer: str
    model_name: str
    model_number: str
    igd_version: int
    """1 or 2 (``InternetGatewayDevice:N``)."""
    service_type: str
    """The port-mapping service in use (``...:WANIPConnection:2``)."""
    actions: frozenset[str]
    """Actions the service declares (``AddAnyPortMapping``, ``GetListOfPortMappings``...)."""
    pinholes: bool
    """Whether the IGD offers WANIPv6FirewallControl (IPv6 pinholes)."""
