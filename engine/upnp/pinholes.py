"""IPv6 pinholes through WANIPv6FirewallControl:1 (AddPinhole / UpdatePinhole / DeletePinhole):
what an IGD offers instead of a NAT mapping for an IPv6 host, as a PCP MAP over IPv6 is."""

from __future__ import annotations

from ipaddress import IPv6Address

from ..wire.addresses import IPAddress
from .connection import IgdConnection
from .errors import UpnpInvalidRequest, UpnpReplyError
from .igd import parse_port

__all__ = ["add", "delete", "pinhole_lease", "update"]


def pinhole_lease(lifetime: int) -> int:
    """WANIPv6FirewallControl:1 §2.3.6: a pinhole's LeaseTime is 1-86400 s."""
    return min(max(int(lifetime), 1), 86400)


def _service(connection: IgdConnection) -> IgdConnection:
    if connection.pinhole is None:
        raise UpnpReplyError(f"the IGD on {connection.gateway} offers no "
                             "WANIPv6FirewallControl (no IPv6 pinholes)")
    return connection


async def add(connection: IgdConnection, client: IPAddress, protocol: int, internal_port: int,
              remote_host: str, remote_port: int, lifetime: int) -> int:
    """Open a pinhole to ``client``; its UniqueID."""
    if not isinstance(client, IPv6Address):
        raise UpnpInvalidRequest(f"a pinhole is for an IPv6 address, not {client}")
    reply = await _service(connection).call(
        "AddPinhole", f"pinhole {internal_port}", pinhole=True, RemoteHost=remote_host,
        RemotePort=remote_port, InternalClient=str(client), InternalPort=internal_port,
        Protocol=protocol, LeaseTime=pinhole_lease(lifetime))
    try:
        return parse_port(reply.get("UniqueID", ""), "UniqueID", allow_zero=True)
    except ValueError as exc:
        raise UpnpReplyError(f"AddPinhole: {exc}") from None


async def update(connection: IgdConnection, unique_id: int, lifetime: int) -> None:
    """Extend pinhole ``unique_id``."""
    await _service(connection).call("UpdatePinhole", f"renew pinhole {unique_id}", pinhole=True,
                                    UniqueID=unique_id, NewLeaseTime=pinhole_lease(lifetime))


async def delete(connection: IgdConnection, unique_id: int) -> None:
    """Close pinhole ``unique_id``."""
    await _service(connection).call("DeletePinhole", f"delete pinhole {unique_id}", pinhole=True,
                                    UniqueID=unique_id)
