"""``natdeck unmap PROTO PORT`` and ``natdeck unmap PROTO --all``."""

from __future__ import annotations

from engine.client import DEFAULT_TIMEOUT
from engine.protocols import protocol_name
from tui.exit_codes import EXIT_OK

from .context import Context, Failure, live_holder
from .delete_without_record import delete_without_record
from .output import via_name

__all__ = ["run_unmap"]


async def run_unmap(ctx: Context) -> int:
    """Delete one mapping (with its stored nonce when there is one), or NAT-PMP's all."""
    args = ctx.args
    protocol: int = args.protocol
    timeout = args.timeout or DEFAULT_TIMEOUT
    if args.all:
        return await _unmap_all(ctx, protocol, timeout)
    port: int = args.port
    record = ctx.find(protocol, port)
    holder = live_holder(record)
    if holder is not None:
        raise Failure(f"{protocol_name(protocol)} {port} is held by natdeck process {holder}, "
                      f"which would map it again; stop that process instead (kill -INT "
                      f"{holder}): it deletes the mapping as it exits")
    via = ctx.conn.via
    async with ctx.client() as client:
        if record is not None and via in ("auto", record.via):
            mapping = record.to_mapping()
            if args.external_port is not None:
                mapping.external_port = args.external_port
            await client.delete(mapping, timeout=timeout)
            stored = True
        else:
            mapping = await delete_without_record(ctx, client, protocol, port, timeout)
            stored = False
    ctx.forget(protocol, port)
    fields = {
        "event": "deleted",
        "protocol": protocol_name(protocol),
        "protocol_number": protocol,
        "internal_port": port,
        "external_port": mapping.external_port,
        "via": mapping.via,
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(mapping.local_address),
        "stored_nonce": stored,
    }
    note = "" if stored or mapping.via == "natpmp" else " (no stored nonce: a new one was used)"
    ctx.out.result(fields, f"deleted {protocol_name(protocol)} {port} via "
                           f"{via_name(mapping.via)}{note}")
    return EXIT_OK


async def _unmap_all(ctx: Context, protocol: int, timeout: float) -> int:
    async with ctx.client() as client:
        local = await client.local_address()
        await client.delete_all(protocol, timeout=timeout)
    try:
        _, warnings = ctx.state.remove_all(ctx.gateway, ctx.conn.gateway_port, protocol,
                                           via="natpmp")
        ctx.state_warnings(warnings)
    except OSError as exc:
        ctx.out.warn(f"could not update the state file {ctx.state.path}: {exc}")
    name = protocol_name(protocol)
    fields = {
        "event": "deleted_all",
        "protocol": name,
        "protocol_number": protocol,
        "internal_port": 0,
        "via": "natpmp",
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(local),
    }
    ctx.out.result(fields, f"deleted every NAT-PMP {name} mapping of {local} "
                           f"(PCP mappings are kept)")
    return EXIT_OK
