"""The simulated IGD's SOAP actions, sans-IO: (action, arguments, requester, now) in, out-
arguments or a UPnP fault out, over the :class:`~engine.simulator.state.GatewayState` the
NAT-PMP and PCP handlers share, as miniupnpd shares one table between the three protocols.

What it does follows miniupnpd 2.3.1 as measured (issue 13): 718 for a port another host
holds while the same host overwrites its own; 716 for external port 0; a delete of a missing
mapping answers success; GetGenericPortMappingEntry lists newest first and ends with 713;
AddAnyPortMapping picks another free port near the suggestion (miniupnpd: 8079 for 8080 in
issue 13, 40501 for 40500 in the lab; the simulator looks below first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from ipaddress import IPv6Address, ip_address
from xml.sax.saxutils import escape

from ...wire.addresses import IPAddress
from ..state import GatewayState, Mapping
from .config import IgdConfig

__all__ = ["Fault", "IgdControl", "describe", "miniupnpd_nonce"]

_PROTOCOLS = {"TCP": 6, "UDP": 17}
_NAMES = {6: "TCP", 17: "UDP"}


@dataclass(frozen=True, slots=True)
class Fault:
    """A UPnP error to answer (HTTP 500 with a UPnPError body)."""

    code: int
    description: str


def describe(mapping: Mapping) -> str:
    """The description an IGD lists a mapping under (miniupnpd's names for PCP and NAT-PMP)."""
    if mapping.via == "pcp":
        return f"PCP {'PEER' if mapping.is_peer else 'MAP'} {miniupnpd_nonce(mapping.nonce or b'')}"
    if mapping.via == "natpmp":
        return f"NAT-PMP {mapping.external_port} {_NAMES.get(mapping.protocol, '?').lower()}"
    return mapping.description


def miniupnpd_nonce(nonce: bytes) -> str:
    """The nonce as miniupnpd prints it: three 32-bit words read in a little-endian host's order,
    each as ``%08x`` (so bytes 00 01 02 03 show as ``03020100``)."""
    return "".join(nonce[i:i + 4][::-1].hex() for i in range(0, len(nonce), 4))


def _lease_left(mapping: Mapping, now: float) -> int:
    return 0 if math.isinf(mapping.expires_at) else max(0, math.ceil(mapping.expires_at - now))


def _entry(mapping: Mapping, now: float) -> dict[str, str]:
    return {"NewInternalPort": str(mapping.internal_port),
            "NewInternalClient": str(mapping.internal_address), "NewEnabled": "1",
            "NewPortMappingDescription": describe(mapping),
            "NewLeaseDuration": str(_lease_left(mapping, now))}


class _Refused(Exception):
    def __init__(self, code: int, description: str) -> None:
        super().__init__(description)
        self.fault = Fault(code, description)


class IgdControl:
    """The actions of one simulated IGD over ``state``; ``config`` may be swapped any time."""

    def __init__(self, state: GatewayState, config: IgdConfig, now: float) -> None:
        self.state = state
        self.config = config
        self._started = now
        self._pinholes: dict[int, tuple[IPAddress, int, int, float]] = {}
        self._next_pinhole = 1

    def handle(self, action: str, arguments: MappingOf[str, str], requester: IPAddress,
               now: float) -> dict[str, str] | Fault:
        """Do ``action`` for ``requester`` at ``now``."""
        handler = getattr(self, f"_do_{action}", None)
        if handler is None or (action in _V2_ONLY and self.config.igd_version < 2):
            return Fault(401, "Invalid Action")
        self.state.expire(now)
        try:
            result: dict[str, str] = handler(arguments, requester, now)
        except _Refused as refused:
            return refused.fault
        return result

    # --- helpers ------------------------------------------------------------------------------

    def _holder(self, protocol: int, port: int) -> Mapping | None:
        found = self.state.select(lambda m: m.protocol == protocol and m.external_port == port
                                  and not m.is_peer)
        return found[0] if found else None

    @staticmethod
    def _protocol(arguments: MappingOf[str, str]) -> int:
        protocol = _PROTOCOLS.get(arguments.get("NewProtocol", "").upper())
        if protocol is None:
            raise _Refused(402, "Invalid Args")
        return protocol

    @staticmethod
    def _number(arguments: MappingOf[str, str], name: str, high: int = 0xFFFF) -> int:
        text = arguments.get(name, "").strip()
        if not (text.isdigit() and int(text) <= high):
            raise _Refused(402, "Invalid Args")
        return int(text)

    def _add(self, arguments: MappingOf[str, str], requester: IPAddress, now: float,
             any_port: bool) -> int:
        config = self.config
        protocol = self._protocol(arguments)
        external = self._number(arguments, "NewExternalPort")
        internal = self._number(arguments, "NewInternalPort")
        lease = self._number(arguments, "NewLeaseDuration", 0xFFFFFFFF)
        try:
            client = ip_address(arguments.get("NewInternalClient", "").strip())
        except ValueError:
            raise _Refused(402, "Invalid Args") from None
        if external == 0 and not any_port:
            raise _Refused(716, "WildCardNotPermittedInExtPort")
        if internal == 0:
            raise _Refused(402, "Invalid Args")
        if config.secure_mode and client != requester:
            raise _Refused(606, "Action not authorized")
        if config.permanent_only and lease != 0:
            raise _Refused(config.permanent_only_code, "OnlyPermanentLeasesSupported")
        if config.empty_external_address or self.state.external_address is None:
            raise _Refused(501, "Action Failed")
        port = self._port_for(protocol, external or internal, client, any_port)
        if config.lying_add:
            return port
        holder = self._holder(protocol, port)
        if holder is not None:
            self.state.remove(holder.key)  # the same host overwrites its own mapping
        if lease == 0 and config.igd_version == 2:
            lease = config.max_lease  # miniupnpd stores IGDv2's "infinite" as 604800 s
        lease = min(lease, config.max_lease)
        existing = self.state.get((protocol, client, internal, None))
        if existing is not None:
            self.state.remove(existing.key)
        self.state.put(Mapping(
            internal_address=client, protocol=protocol, internal_port=internal,
            external_port=port, lifetime=lease,
            expires_at=now + lease if lease else math.inf, via="upnp",
            requested_by=requester, description=arguments.get("NewPortMappingDescription", ""),
            remote_host=arguments.get("NewRemoteHost", "")))
        return port

    def _port_for(self, protocol: int, suggested: int, client: IPAddress, any_port: bool) -> int:
        low, high = self.config.port_range

        def free(port: int) -> bool:
            holder = self._holder(protocol, port)
            return holder is None or holder.internal_address == client

        if low <= suggested <= high and free(suggested):
            return suggested
        if not any_port:
            if not low <= suggested <= high:
                raise _Refused(606, "Action not authorized")
            raise _Refused(self.config.conflict_code, "ConflictInMappingEntry")
        # The next free port below the suggestion (miniupnpd gave 8079 for 8080), then from the
        # top of the range.
        start = min(max(suggested, low), high)
        for port in [*range(start, low - 1, -1), *range(high, start, -1)]:
            if free(port):
                return int(port)
        raise _Refused(728, "NoPortMapsAvailable")

    # --- WANIPConnection ----------------------------------------------------------------------

    def _do_GetExternalIPAddress(self, arguments: MappingOf[str, str], requester: IPAddress,
                                 now: float) -> dict[str, str]:
        address = self.state.external_address
        shown = "" if self.config.empty_external_address or address is None else str(address)
        return {"NewExternalIPAddress": shown}

    def _do_GetStatusInfo(self, arguments: MappingOf[str, str], requester: IPAddress,
                          now: float) -> dict[str, str]:
        return {"NewConnectionStatus": "Connected", "NewLastConnectionError": "ERROR_NONE",
                "NewUptime": str(int(now - self._started))}

    def _do_AddPortMapping(self, arguments: MappingOf[str, str], requester: IPAddress,
                           now: float) -> dict[str, str]:
        self._add(arguments, requester, now, any_port=False)
        return {}

    def _do_AddAnyPortMapping(self, arguments: MappingOf[str, str], requester: IPAddress,
                              now: float) -> dict[str, str]:
        return {"NewReservedPort": str(self._add(arguments, requester, now, any_port=True))}

    def _do_DeletePortMapping(self, arguments: MappingOf[str, str], requester: IPAddress,
                              now: float) -> dict[str, str]:
        holder = self._holder(self._protocol(arguments),
                              self._number(arguments, "NewExternalPort"))
        if holder is None:
            return {}  # miniupnpd answers success for a mapping it does not hold
        if self.config.secure_mode and holder.internal_address != requester:
            raise _Refused(606, "Action not authorized")
        self.state.remove(holder.key)
        return {}

    def _do_GetSpecificPortMappingEntry(self, arguments: MappingOf[str, str],
                                        requester: IPAddress, now: float) -> dict[str, str]:
        holder = self._holder(self._protocol(arguments),
                              self._number(arguments, "NewExternalPort"))
        if holder is None:
            raise _Refused(714, "NoSuchEntryInArray")
        return _entry(holder, now)

    def _listed(self) -> list[Mapping]:
        # Newest first, as miniupnpd lists its rules: indices shift when one is added.
        return [m for m in reversed(self.state.select(lambda m: not m.is_peer))
                if m.protocol in _NAMES and m.external_port]

    def _do_GetGenericPortMappingEntry(self, arguments: MappingOf[str, str],
                                       requester: IPAddress, now: float) -> dict[str, str]:
        index = self._number(arguments, "NewPortMappingIndex")
        listed = self._listed()
        if index >= len(listed):
            raise _Refused(713, "SpecifiedArrayIndexInvalid")
        mapping = listed[index]
        return {"NewRemoteHost": mapping.remote_host,
                "NewExternalPort": str(mapping.external_port),
                "NewProtocol": _NAMES[mapping.protocol], **_entry(mapping, now)}

    def _do_GetListOfPortMappings(self, arguments: MappingOf[str, str], requester: IPAddress,
                                  now: float) -> dict[str, str]:
        protocol = self._protocol(arguments)
        start = self._number(arguments, "NewStartPort")
        end = self._number(arguments, "NewEndPort")
        count = self._number(arguments, "NewNumberOfPorts") or 1000
        chosen = sorted((m for m in self._listed()
                         if m.protocol == protocol and start <= m.external_port <= end),
                        key=lambda m: m.external_port)[:count]
        if not chosen:
            raise _Refused(730, "PortMappingNotFound")
        entries = "".join(
            "<p:PortMappingEntry>"
            f"<p:NewRemoteHost>{escape(m.remote_host)}</p:NewRemoteHost>"
            f"<p:NewExternalPort>{m.external_port}</p:NewExternalPort>"
            f"<p:NewProtocol>{_NAMES[m.protocol]}</p:NewProtocol>"
            f"<p:NewInternalPort>{m.internal_port}</p:NewInternalPort>"
            f"<p:NewInternalClient>{m.internal_address}</p:NewInternalClient>"
            "<p:NewEnabled>1</p:NewEnabled>"
            f"<p:NewDescription>{escape(describe(m))}</p:NewDescription>"
            f"<p:NewLeaseTime>{_lease_left(m, now)}</p:NewLeaseTime>"
            "</p:PortMappingEntry>" for m in chosen)
        return {"NewPortListing": '<?xml version="1.0" encoding="UTF-8"?><p:PortMappingList '
                'xmlns:p="urn:schemas-upnp-org:gw:WANIPConnection">'
                f"{entries}</p:PortMappingList>"}

    # --- WANIPv6FirewallControl ---------------------------------------------------------------

    def _do_AddPinhole(self, arguments: MappingOf[str, str], requester: IPAddress,
                       now: float) -> dict[str, str]:
        try:
            client = ip_address(arguments.get("InternalClient", "").strip())
        except ValueError:
            raise _Refused(402, "Invalid Args") from None
        if not isinstance(client, IPv6Address):
            raise _Refused(402, "Invalid Args")
        if self.config.secure_mode and client != requester:
            raise _Refused(606, "Action not authorized")
        lease = self._number(arguments, "LeaseTime", 86400)
        unique_id = self._next_pinhole
        self._next_pinhole += 1
        self._pinholes[unique_id] = (client, self._number(arguments, "InternalPort"),
                                     self._number(arguments, "Protocol", 255), now + lease)
        return {"UniqueID": str(unique_id)}

    def _pinhole(self, arguments: MappingOf[str, str], now: float) -> int:
        unique_id = self._number(arguments, "UniqueID")
        held = self._pinholes.get(unique_id)
        if held is None or held[3] <= now:
            raise _Refused(704, "NoSuchEntry")
        return unique_id

    def _do_UpdatePinhole(self, arguments: MappingOf[str, str], requester: IPAddress,
                          now: float) -> dict[str, str]:
        unique_id = self._pinhole(arguments, now)
        client, port, protocol, _ = self._pinholes[unique_id]
        lease = self._number(arguments, "NewLeaseTime", 86400)
        self._pinholes[unique_id] = (client, port, protocol, now + lease)
        return {}

    def _do_DeletePinhole(self, arguments: MappingOf[str, str], requester: IPAddress,
                          now: float) -> dict[str, str]:
        del self._pinholes[self._pinhole(arguments, now)]
        return {}

    def pinholes(self, now: float) -> dict[int, tuple[IPAddress, int, int, float]]:
        """Open pinholes: UniqueID -> (client, port, protocol, expires at)."""
        return {k: v for k, v in self._pinholes.items() if v[3] > now}


_V2_ONLY = frozenset({"AddAnyPortMapping", "GetListOfPortMappings", "AddPinhole",
                      "UpdatePinhole", "DeletePinhole"})
