"""What a probe found (:class:`ProbeResult`), exported by :mod:`engine.mapping` and
:mod:`engine.client`, which import it only when first used."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .types import MappingProtocol
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .dialects.base import Heard
    from .types import DeviceInfo

__all__ = ["ProbeResult"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a gateway answered to a probe that asks PCP, NAT-PMP and UPnP IGD at once."""

    gateway: IPAddress
    pcp: bool
    natpmp: bool
    external_address: IPAddress | None
    pcp_epoch: int | None
    natpmp_epoch: int | None
    rtt: float | None
    """Round trip of the fastest answer, seconds."""
    pcp_version: int | None = None
    """The version a PCP-speaking gateway named in an UNSUPP_VERSION answer, if any."""
    upnp: bool = False
    """Whether a UPnP IGD answered on the gateway's address."""
    igd: DeviceInfo | None = None
    """The IGD's friendly name, manufacturer, model, IGD version and service (when it answered)."""
    upnp_rtt: float | None = None
    """Seconds from the SSDP search to the IGD's first answer."""
    warning: str | None = None
    """What the user should know (the IGD reports no public external address: double NAT)."""

    @classmethod
    def of(cls, gateway: IPAddress, heard: Mapping[MappingProtocol, Heard],
           external_address: IPAddress | None) -> ProbeResult:
        """What a probe of ``gateway`` heard from each protocol (PCP and NAT-PMP always)."""
        pcp_, natpmp_, upnp = heard["pcp"], heard["natpmp"], heard.get("upnp")
        rtts = [h.rtt for h in (pcp_, natpmp_) if h.rtt is not None]
        upnp_spoken = upnp is not None and upnp.spoken is True
        upnp_rtt = upnp.rtt if upnp is not None and upnp_spoken else None
        if not rtts and upnp_rtt is not None:
            rtts.append(upnp_rtt)
        return cls(gateway, pcp_.spoken is True, natpmp_.spoken is True, external_address,
                   pcp_.epoch, natpmp_.epoch, min(rtts) if rtts else None,
                   pcp_.server_version, upnp=upnp_spoken,
                   igd=upnp.device if upnp is not None else None, upnp_rtt=upnp_rtt,
                   warning=upnp.warning if upnp is not None else None)

    @property
    def reachable(self) -> bool:
        """Whether the gateway answered any protocol."""
        return self.pcp or self.natpmp or self.upnp

    @property
    def via(self) -> MappingProtocol | None:
        """The protocol ``via="auto"`` would use (PCP, then NAT-PMP, then UPnP IGD)."""
        return "pcp" if self.pcp else "natpmp" if self.natpmp else "upnp" if self.upnp else None
