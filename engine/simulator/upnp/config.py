"""How a simulated IGD behaves: one frozen dataclass of knobs, defaults as miniupnpd 2.3.1
with UPnP on (IGDv2, leases capped at 604800 s, secure mode)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IgdConfig"]


@dataclass(frozen=True, slots=True)
class IgdConfig:
    """The behaviour of a :class:`~engine.simulator.upnp.SimulatedIgd`. Invalid values raise
    ``ValueError``."""

    igd_version: int = 2
    """2: WANIPConnection:2 (AddAnyPortMapping, GetListOfPortMappings) and
    WANIPv6FirewallControl:1; 1: WANIPConnection:1 only (miniupnpd's force_igd_desc_v1)."""
    max_lease: int = 604800
    """Longest lease kept; longer ones are cut without an error, and on IGDv2 a lease of 0 is
    stored as this (miniupnpd)."""
    permanent_only: bool = False
    """Refuse any finite lease with 725 OnlyPermanentLeasesSupported (some routers)."""
    permanent_only_code: int = 725
    """The code ``permanent_only`` answers with (MikroTik: 402)."""
    conflict_code: int = 718
    """The answer to an add for an external port another host holds (718 ConflictInMappingEntry)."""
    empty_external_address: bool = False
    """GetExternalIPAddress answers "" and adds fail with 501 (a reserved WAN address)."""
    lying_add: bool = False
    """Adds answer success and keep nothing (a router that lies)."""
    secure_mode: bool = True
    """A host may add and delete only mappings to itself; else 606 ActionNotAuthorized."""
    port_range: tuple[int, int] = (1024, 65535)
    """External ports allowed; outside, 606 (miniupnpd's allow rules)."""
    pinholes: bool = True
    """Offer WANIPv6FirewallControl:1 (IGDv2 only)."""
    advertised_host: str | None = None
    """The host the SSDP answer's LOCATION names (a hostile or broken IGD: another host)."""
    control_host: str | None = None
    """Put the control URLs on this other host (absolute URLs), as a hostile description."""
    http_delay: float = 0.0
    """Seconds each HTTP request waits before its answer (a slow or hung IGD)."""
    friendly_name: str = "natdeck simulated router"
    manufacturer: str = "natdeck"
    model_name: str = "natdeck simulated IGD"
    model_number: str = "2.3.1"
    uuid: str = "4e617464-6563-6b00-0000-000000000001"

    def __post_init__(self) -> None:
        if self.igd_version not in (1, 2):
            raise ValueError(f"igd_version must be 1 or 2, not {self.igd_version}")
        if not 1 <= self.max_lease <= 0xFFFFFFFF:
            raise ValueError(f"max_lease must be 1-4294967295, not {self.max_lease}")
        low, high = self.port_range
        if not 1 <= low <= high <= 0xFFFF:
            raise ValueError(f"port_range must be 1 <= low <= high <= 65535, not {self.port_range}")
        if not self.http_delay >= 0:
            raise ValueError(f"http_delay must be >= 0 seconds, not {self.http_delay}")
        for name in ("conflict_code", "permanent_only_code"):
            if not 400 <= getattr(self, name) <= 999:
                raise ValueError(f"{name} must be a UPnP error code (400-999)")
