"""``natdeck unmap`` of a mapping the state file does not know: the engine's
:func:`~engine.unrecorded_delete.delete_unrecorded`, and what to tell the user when PCP
refuses it (the mapping is another nonce's)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.codes import PcpResult
from engine.errors import ResultCodeError
from engine.protocols import protocol_name
from engine.unrecorded_delete import delete_unrecorded

from .context import Context, Failure

if TYPE_CHECKING:
    from engine.client import GatewayClient, PortMapping

__all__ = ["delete_without_record"]


async def delete_without_record(ctx: Context, client: GatewayClient, protocol: int, port: int,
                                timeout: float) -> PortMapping:
    """Delete (protocol, port) with no stored nonce: PCP with a fresh nonce, else NAT-PMP,
    else UPnP IGD (external port ``port`` unless ``--external-port``, deleted only if the
    gateway's entry there is this host's). Returns the mapping as deleted (its ``via`` says
    which protocol did it)."""
    try:
        return await delete_unrecorded(client, protocol, port,
                                       external_port=ctx.args.external_port,
                                       via=ctx.conn.via, timeout=timeout)
    except ResultCodeError as exc:
        if exc.protocol == "pcp" and exc.code == PcpResult.NOT_AUTHORIZED:
            raise Failure(
                f"{exc}. No nonce is stored for {protocol_name(protocol)} {port} at "
                f"{ctx.gateway} in {ctx.state.path}, and PCP deletes only with the nonce "
                "that made the mapping: it was made by another program (if by natpmpc, try "
                "--via natpmp), or the state was lost; it will expire on its own") from None
        raise
