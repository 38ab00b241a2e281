"""The CLI's own fallback for deleting a mapping the state file does not know.

To be replaced by the engine: once ``core``'s client takes a delete request without a
stored mapping (one :class:`~engine.request.MapRequest` with lifetime 0, driven through
the client's own PCP-then-NAT-PMP fallback), :func:`delete_without_record` becomes one
call to it. Until then this is the only place in ``tui`` that builds a
:class:`~engine.client.PortMapping` by hand or chooses a protocol after an answer.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from engine.codes import PcpResult
from engine.errors import PortUnreachable, ResultCodeError, UnsupportedVersion
from engine.protocols import Protocol, protocol_name
from engine.wire.pcp import NONCE_SIZE

from .context import Context, Failure

if TYPE_CHECKING:
    from engine.client import GatewayClient, PortMapping

__all__ = ["delete_without_record"]


async def delete_without_record(ctx: Context, client: GatewayClient, protocol: int, port: int,
                                timeout: float) -> PortMapping:
    """Delete (protocol, port) with no stored nonce: PCP with a fresh nonce, else NAT-PMP,
    else UPnP IGD (external port ``port`` unless ``--external-port``, deleted only if the
    gateway's entry there is this host's).

    ``--via auto`` falls back to NAT-PMP when the gateway does not speak PCP, and to UPnP
    when nothing listens on its port 5351. Returns the mapping as deleted (its ``via`` says
    which protocol did it).
    """
    from engine.client import PortMapping

    local = await client.local_address()
    external_port = ctx.args.external_port
    mapping = PortMapping(
        gateway=ctx.gateway, gateway_port=ctx.conn.gateway_port, local_address=local,
        protocol=protocol, internal_port=port,
        external_port=port if external_port is None else external_port,
        external_address=None, lifetime=0, expires_at=0.0,
        via=ctx.conn.via if ctx.conn.via != "auto" else "pcp", epoch=0,
        nonce=secrets.token_bytes(NONCE_SIZE), suggested_external_port=port)
    if mapping.via != "pcp":
        mapping.nonce = None
    try:
        await client.delete(mapping, timeout=timeout)
    except PortUnreachable:
        if ctx.conn.via != "auto" or protocol not in (Protocol.TCP, Protocol.UDP) \
                or "upnp" not in client.mappers:
            raise
        mapping.via = "upnp"
        mapping.nonce = None
        await client.delete(mapping, timeout=timeout)
    except UnsupportedVersion:
        if ctx.conn.via != "auto" or protocol not in (Protocol.TCP, Protocol.UDP):
            raise
        mapping.via = "natpmp"
        mapping.nonce = None
        await client.delete(mapping, timeout=timeout)
    except ResultCodeError as exc:
        if exc.protocol == "pcp" and exc.code == PcpResult.NOT_AUTHORIZED:
            raise Failure(
                f"{exc}. No nonce is stored for {protocol_name(protocol)} {port} at "
                f"{ctx.gateway} in {ctx.state.path}, and PCP deletes only with the nonce "
                "that made the mapping: it was made by another program (if by natpmpc, try "
                "--via natpmp), or the state was lost; it will expire on its own") from None
        raise
    return mapping
