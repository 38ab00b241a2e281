"""What a UPnP IGD says about itself (:class:`DeviceInfo`), exported by :mod:`engine.types`,
where it is imported only when first used: only a UPnP probe makes one."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DeviceInfo"]


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
