"""Adding a port mapping and checking it took: AddPortMapping / AddAnyPortMapping with the
lease policy (a permanent lease where only those are taken), then GetSpecificPortMappingEntry,
because routers lie."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

from ..wire.addresses import IPAddress
from .codes import UpnpErrorCode
from .connection import IgdConnection
from .errors import UpnpReplyError, UpnpResultError
from .igd import ExternalAddress, granted_port, retry_as_permanent
from .listing import RouterMapping, parse_entry, upnp_protocol
from .results import UpnpMapping

__all__ = ["AddRequest", "add", "add_and_verify", "entry"]


@dataclass(frozen=True, slots=True)
class AddRequest:
    """What an add asks for."""

    protocol: int
    external_port: int
    """The port asked for (AddPortMapping) or suggested (AddAnyPortMapping)."""
    internal_client: IPAddress
    internal_port: int
    lease: int
    """Seconds, 0 = permanent."""
    description: str
    use_any: bool
    """AddAnyPortMapping (the IGD may grant another port) rather than AddPortMapping."""


async def add(connection: IgdConnection, request: str, asked: AddRequest) -> int:
    """One add; the external port granted."""
    arguments: dict[str, Any] = {
        "NewRemoteHost": "", "NewExternalPort": asked.external_port,
        "NewProtocol": upnp_protocol(asked.protocol), "NewInternalPort": asked.internal_port,
        "NewInternalClient": str(asked.internal_client), "NewEnabled": True,
        "NewPortMappingDescription": asked.description, "NewLeaseDuration": asked.lease}
    if not asked.use_any:
        await connection.call("AddPortMapping", request, **arguments)
        return asked.external_port
    reply = await connection.call("AddAnyPortMapping", request, **arguments)
    try:
        return granted_port(reply)
    except ValueError as exc:
        raise UpnpReplyError(f"{request}: {exc}") from None


async def add_and_verify(connection: IgdConnection, request: str, asked: AddRequest,
                         external: ExternalAddress) -> UpnpMapping:
    """Add (again as permanent after a 725/402), then check the gateway holds it."""
    try:
        port = await add(connection, request, asked)
    except UpnpResultError as exc:
        if not retry_as_permanent(exc.code, asked.lease):
            raise
        asked = replace(asked, lease=0)
        port = await add(connection, request, asked)
    held = await entry(connection, request, asked.protocol, port, "")
    client, internal_port = asked.internal_client, asked.internal_port
    if held is None or held.internal_client != client or held.internal_port != internal_port:
        what = "nothing" if held is None else f"{held.internal_client}:{held.internal_port}"
        raise UpnpReplyError(f"{request}: the gateway said it mapped external port {port} to "
                             f"{client}:{internal_port}, but it holds {what} there")
    # The gateway's word on the lease, not ours: IGDv2 keeps "0" as 604800 s (finite, so it is
    # renewed), and a cap shortens what we asked.
    return UpnpMapping(connection.gateway, asked.protocol, client, internal_port, port,
                       external.address, held.lease_remaining or 0,
                       held.lease_remaining is None, asked.lease, asked.description,
                       granted_at=asyncio.get_running_loop().time())


async def entry(connection: IgdConnection, request: str, protocol: int, port: int,
                remote_host: str) -> RouterMapping | None:
    """GetSpecificPortMappingEntry: the gateway's mapping of ``port``, ``None`` for 714."""
    name = upnp_protocol(protocol)
    try:
        reply = await connection.call("GetSpecificPortMappingEntry", request,
                                      NewRemoteHost=remote_host, NewExternalPort=port,
                                      NewProtocol=name)
    except UpnpResultError as exc:
        if exc.code == UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY:
            return None
        raise
    try:
        return parse_entry({**reply, "NewProtocol": name, "NewExternalPort": str(port),
                            "NewRemoteHost": remote_host})
    except ValueError as exc:
        raise UpnpReplyError(f"{request}: GetSpecificPortMappingEntry: {exc}") from None
