"""Which gateway to talk to, and which local address it knows us by.

NAT-PMP requests go to "the client's default gateway" (RFC 6886 §3), and a PCP client by default
sends to its default router too (RFC 6887 §8.1). PCP also needs the client's own address, since
the request carries it and the server compares it with the packet's source (RFC 6887 §8.3,
ADDRESS_MISMATCH).

How :func:`discover` finds them, explicit arguments always winning:

1. The gateway: the default route of the family, from ``netifaces.gateways()`` (the
   ``netifaces-plus`` package; it reads the routing table and sends nothing). An IPv6 link-local
   gateway gets the interface as its scope (``fe80::1%eth0``), without which it is unusable.
2. The local address: first the kernel's own choice, learnt by ``connect()``-ing a UDP socket to
   the gateway's port 5351 and reading ``getsockname()``. Connecting a UDP socket only selects a
   route and a source address; it sends no packet. If that fails (no route yet, say), the address
   on the gateway's interface that shares its subnet, from ``netifaces.ifaddresses()``.

``netifaces`` can be replaced by any object with the same three functions (:class:`NetifacesLike`),
which is how the tests feed recorded tables; the route probe can be replaced or switched off.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import Any, Protocol

from .errors import NoGatewayError
from .wire.addresses import IPAddress

__all__ = [
    "SERVER_PORT",
    "Discovered",
    "NetifacesLike",
    "RouteProbe",
    "connected_source_address",
    "discover",
]

#: The port NAT-PMP (RFC 6886 §3.1) and PCP (RFC 6887 §19.1) servers listen on.
SERVER_PORT = 5351

_FAMILIES: dict[int, socket.AddressFamily] = {
    socket.AF_INET: socket.AF_INET,
    socket.AF_INET6: socket.AF_INET6,
}
_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


class NetifacesLike(Protocol):
    """The part of the ``netifaces`` module that discovery uses.

    ``netifaces`` keys its tables by address family numbers; on every platform it supports these
    equal the ``socket`` module's ``AF_INET`` and ``AF_INET6``, which is what this module looks up.
    """

    def gateways(self) -> Any:
        """``{'default': {family: (address, iface)}, family: [(address, iface, is_default)]}``."""
        ...

    def ifaddresses(self, interface: str, /) -> Any:
        """``{family: [{'addr': ..., 'netmask': ...}, ...]}`` for one interface."""
        ...

    def interfaces(self) -> Any:
        """The interface names."""
        ...


#: Finds the local address the kernel would use to reach a gateway, or ``None``.
RouteProbe = Callable[[IPAddress], IPAddress | None]


@dataclass(frozen=True, slots=True)
class Discovered:
    """A gateway and the local address to reach it from."""

    gateway: IPAddress
    """Where requests go. An IPv6 link-local gateway carries its scope (``fe80::1%eth0``)."""
    local_address: IPAddress
    """Our address as the gateway sees it: PCP's client address field (RFC 6887 §7.1)."""
    interface: str | None
    """The interface both are on, when known."""
    family: socket.AddressFamily
    """``socket.AF_INET`` or ``socket.AF_INET6``."""


def _family_of(address: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if isinstance(address, IPv4Address) else socket.AF_INET6


def _parse_address(value: str | IPAddress, what: str) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    try:
        return ip_address(value)
    except ValueError:
        raise ValueError(f"{what} {value!r} is not an IPv4 or IPv6 address") from None


def _with_scope(address: str, interface: str | None) -> IPAddress:
    """Parse a netifaces address; an IPv6 link-local one gets ``interface`` as its scope."""
    bare, _, scope = address.partition("%")
    parsed = ip_address(bare)
    if isinstance(parsed, IPv6Address) and parsed.is_link_local:
        scope = scope or (interface or "")
        if scope:
            return IPv6Address(f"{bare}%{scope}")
    return parsed


def _sockaddr(gateway: IPAddress, port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    if isinstance(gateway, IPv4Address):
        return (str(gateway), port)
    scope = gateway.scope_id
    scope_index = 0
    if scope:
        scope_index = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
    bare = str(gateway).partition("%")[0]
    return (bare, port, 0, scope_index)


def connected_source_address(gateway: IPAddress, port: int = SERVER_PORT) -> IPAddress | None:
    """The source address the kernel picks for ``gateway``, learnt without sending anything.

    ``connect()`` on a UDP socket fixes its peer and lets the kernel choose the route and source
    address, but puts nothing on the wire; ``getsockname()`` then reads the choice. Returns
    ``None`` when the kernel has no route (or the address is unusable, e.g. a link-local IPv6
    address without a scope).
    """
    family = _family_of(gateway)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(_sockaddr(gateway, port))
            local = probe.getsockname()[0]
    except OSError:
        return None
    if not isinstance(local, str):
        return None
    try:
        source = _with_scope(local, None)
    except ValueError:
        return None
    if source.is_unspecified:
        return None
    return source


def _load_netifaces() -> NetifacesLike:
    import netifaces  # imported late: tests inject tables and never need the real module

    module: NetifacesLike = netifaces
    return module


def _default_gateway(
    netifaces: NetifacesLike, family: socket.AddressFamily
) -> tuple[IPAddress, str | None] | None:
    """The default gateway of ``family`` in the routing table, with its interface."""
    table = netifaces.gateways()
    if not isinstance(table, Mapping):
        return None
    defaults = table.get("default")
    entry = defaults.get(family) if isinstance(defaults, Mapping) else None
    if entry is None:
        # Some platforms leave 'default' empty but flag the default route in the family list.
        routes = table.get(family)
        if isinstance(routes, list | tuple):
            entry = next(
                (r for r in routes if isinstance(r, list | tuple) and len(r) >= 3 and r[2]),
                None,
            )
    if not isinstance(entry, list | tuple) or len(entry) < 2:
        return None
    address, interface = entry[0], entry[1]
    if not isinstance(address, str) or not isinstance(interface, str | None):
        return None
    try:
        gateway = _with_scope(address, interface)
    except ValueError:
        return None
    if _family_of(gateway) != family:
        return None
    return gateway, interface


@dataclass(frozen=True, slots=True)
class _Assigned:
    """One address on an interface, with its network (``IPv6Interface`` would drop the scope)."""

    address: IPAddress
    network: IPv4Network | IPv6Network


def _interface_addresses(
    netifaces: NetifacesLike, interface: str, family: socket.AddressFamily
) -> list[_Assigned]:
    """The addresses of ``family`` on ``interface``; link-local IPv6 ones carry the scope."""
    try:
        table = netifaces.ifaddresses(interface)
    except (ValueError, OSError):
        return []
    entries = table.get(family) if isinstance(table, Mapping) else None
    found: list[_Assigned] = []
    for entry in entries if isinstance(entries, list | tuple) else ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("addr"), str):
            continue
        try:
            address = _with_scope(entry["addr"], interface)
            prefix = _prefix_length(entry.get("netmask"), address)
            network = ip_network(f"{_bare(address)}/{prefix}", strict=False)
        except ValueError:
            continue
        if _family_of(address) == family:
            found.append(_Assigned(address, network))
    return found


def _bare(address: IPAddress) -> str:
    """The address without any ``%scope``."""
    return str(address).partition("%")[0]


def _prefix_length(netmask: object, address: IPAddress) -> int:
    """The prefix length of a netifaces netmask: dotted IPv4, ``ffff::/64``, or a bare mask."""
    if not isinstance(netmask, str) or not netmask:
        return address.max_prefixlen
    mask, slash, length = netmask.partition("/")
    if slash:
        return int(length)
    return bin(int(ip_address(mask))).count("1")


def _pick_local(candidates: list[_Assigned], gateway: IPAddress) -> IPAddress | None:
    """The candidate in the gateway's subnet; else, for IPv6, one as link-local as the gateway."""
    gateway_bare = ip_address(_bare(gateway))
    for candidate in candidates:
        if gateway_bare in candidate.network and ip_address(_bare(candidate.address)) != (
            gateway_bare
        ):
            return candidate.address
    if isinstance(gateway, IPv6Address):
        for candidate in candidates:
            if candidate.address.is_link_local == gateway.is_link_local:
                return candidate.address
    return None


def _interface_names(netifaces: NetifacesLike) -> list[str]:
    names = netifaces.interfaces()
    if not isinstance(names, list | tuple):
        return []
    return [name for name in names if isinstance(name, str)]


def _interface_holding(netifaces: NetifacesLike, address: IPAddress) -> str | None:
    """The interface that has ``address``, if any."""
    bare = ip_address(_bare(address))
    for name in _interface_names(netifaces):
        assigned = _interface_addresses(netifaces, name, _family_of(address))
        if any(ip_address(_bare(a.address)) == bare for a in assigned):
            return name
    return None


def _subnet_local(
    netifaces: NetifacesLike, gateway: IPAddress, interface: str | None
) -> tuple[IPAddress, str] | None:
    """A local address for the gateway: on ``interface`` if known, else on any interface."""
    family = _family_of(gateway)
    names = [interface] if interface else _interface_names(netifaces)
    for name in names:
        local = _pick_local(_interface_addresses(netifaces, name, family), gateway)
        if local is not None:
            return local, name
    return None


def discover(
    family: int | None = None,
    *,
    gateway: str | IPAddress | None = None,
    local_address: str | IPAddress | None = None,
    netifaces: NetifacesLike | None = None,
    route_probe: RouteProbe | None = connected_source_address,
) -> Discovered:
    """Find the gateway and the local address to use, sending nothing.

    ``family`` is ``socket.AF_INET``, ``socket.AF_INET6`` or ``None`` (IPv4's default route if
    there is one, else IPv6's: NAT-PMP only speaks IPv4, and home NATs are IPv4 devices). Given
    ``gateway`` or ``local_address``, that value is used as is and decides the family.
    ``netifaces`` defaults to the real module; ``route_probe`` (by default
    :func:`connected_source_address`) may be ``None`` to rely on the interface tables alone.

    Raises :class:`~engine.errors.NoGatewayError` when there is no default route (pass
    ``gateway=``) or no local address for the gateway (pass ``local_address=``), and
    :class:`ValueError` for an argument that is not an address or disagrees with ``family``.
    """
    if family is not None and family not in _FAMILIES:
        raise ValueError(f"family must be socket.AF_INET, socket.AF_INET6 or None, not {family}")
    explicit_gateway = None if gateway is None else _parse_address(gateway, "gateway")
    explicit_local = (
        None if local_address is None else _parse_address(local_address, "local_address")
    )
    families = {_family_of(a) for a in (explicit_gateway, explicit_local) if a is not None}
    if family is not None:
        families.add(_FAMILIES[family])
    if len(families) > 1:
        raise ValueError(
            f"gateway {explicit_gateway}, local_address {explicit_local} and family {family} "
            "are not all of one address family"
        )
    wanted = next(iter(families)) if families else None

    table: NetifacesLike | None = netifaces

    def tables() -> NetifacesLike:
        nonlocal table
        if table is None:
            table = _load_netifaces()
        return table

    interface: str | None = None
    if explicit_gateway is not None:
        found_gateway = explicit_gateway
        if isinstance(found_gateway, IPv6Address) and found_gateway.scope_id:
            scope = found_gateway.scope_id
            interface = None if scope.isdigit() else scope
    else:
        order = [wanted] if wanted is not None else [socket.AF_INET, socket.AF_INET6]
        default = None
        for candidate in order:
            default = _default_gateway(tables(), candidate)
            if default is not None:
                break
        if default is None:
            which = " or ".join(_FAMILY_NAMES[f] for f in order)
            raise NoGatewayError(
                f"No default {which} gateway found in the routing table: is the network up? "
                "Pass the gateway's address explicitly (gateway=...) to use another."
            )
        found_gateway, interface = default

    local = explicit_local
    if local is None and route_probe is not None:
        local = route_probe(found_gateway)
    if local is None:
        subnet = _subnet_local(tables(), found_gateway, interface)
        if subnet is None:
            where = f" on {interface}" if interface else ""
            raise NoGatewayError(
                f"Found gateway {found_gateway}{where} but no local "
                f"{_FAMILY_NAMES[_family_of(found_gateway)]} address to reach it from: "
                "pass local_address=... explicitly."
            )
        local, interface = subnet
    if interface is None and (explicit_gateway is None or explicit_local is None):
        interface = _interface_holding(tables(), local)
    return Discovered(
        gateway=found_gateway,
        local_address=local,
        interface=interface,
        family=_family_of(found_gateway),
    )
