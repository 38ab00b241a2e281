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

from typing import TYPE_CHECKING, Any, Literal

from .protocols import PORTED_PROTOCOLS, Protocol, as_protocol, parse_protocol, protocol_name
from .wire.addresses import IPAddress, to_address

if TYPE_CHECKING:
    from .device_info import DeviceInfo as DeviceInfo

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


def __getattr__(name: str) -> Any:
    # DeviceInfo on first use (PEP 562): only a UPnP probe makes one, and a one-shot
    # ``natdeck map`` need not build its dataclass at import (issue 15).
    if name == "DeviceInfo":
        from .device_info import DeviceInfo

        globals()[name] = DeviceInfo
        return DeviceInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
