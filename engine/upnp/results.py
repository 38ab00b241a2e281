"""What UPnP operations return: plain frozen dataclasses a front end turns into its own types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..wire.addresses import IPAddress
from .connection import DeviceInfo
from .igd import ExternalAddress
from .listing import RouterMapping

__all__ = ["RouterListing", "UpnpMapping", "UpnpProbe"]


@dataclass(frozen=True, slots=True)
class UpnpMapping:
    """A mapping the IGD holds for us, as checked after the add."""

    gateway: IPAddress
    protocol: int
    """6 (TCP) or 17 (UDP)."""
    internal_client: IPAddress
    internal_port: int
    external_port: int
    external_address: IPAddress | None
    """``None`` when the IGD reports none (double NAT): see :meth:`UpnpGateway.external_address`."""
    lifetime: int
    """Seconds the IGD says the lease has left (0 for a permanent mapping)."""
    permanent: bool
    """A permanent lease (asked, or forced by a 725/402 gateway): delete it on exit."""
    requested_lifetime: int
    description: str
    remote_host: str = ""
    granted_at: float = 0.0
    """When granted, on the event loop's clock (``loop.time()``, as ``PortMapping``'s)."""

    @property
    def expires_at(self) -> float | None:
        """Monotonic time the lease ends; ``None`` for a permanent mapping."""
        return None if self.permanent else self.granted_at + self.lifetime


@dataclass(frozen=True, slots=True)
class UpnpProbe:
    """What a probe learnt: the IGD and its WAN side."""

    device: DeviceInfo
    external: ExternalAddress
    connected: bool | None
    """GetStatusInfo's ``Connected`` (``None``: the service has no such action)."""
    rtt: float
    """Seconds from the SSDP search to its first believed answer (0 when ``location`` was
    given)."""


@dataclass(frozen=True, slots=True)
class RouterListing:
    """Every mapping the gateway holds, and how it was read."""

    mappings: list[RouterMapping]
    method: Literal["GetListOfPortMappings", "GetGenericPortMappingEntry"]
    skipped: int
    """Entries the gateway sent that could not be read (left out)."""
