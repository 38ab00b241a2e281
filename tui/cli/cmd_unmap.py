"""``natdeck unmap PROTO PORT`` and ``natdeck unmap PROTO --all``.

``unmap`` reports what the gateway holds afterwards, not just that it answered:

- ``deleted``: a mapping natdeck had a record of is gone (a PCP delete with its stored
  nonce, RFC 6887 §15; or a NAT-PMP delete confirmed by :mod:`tui.cli.delete_check`);
- ``not held``: natdeck had no record, and the gateway holds no such mapping now;
- ``unconfirmed`` (exit 5): the gateway accepted the delete, but whether the mapping is
  gone could not be checked (the reason is printed).

A stored record decides the protocol: a PCP mapping is deleted with PCP and its nonce
even under ``--via natpmp`` (a NAT-PMP delete cannot remove it; a warning says so); a
UPnP IGD mapping with UPnP, by the external port the record holds (DeletePortMapping,
once the gateway's entry there is checked to still be this host's). It also decides the
external port and the local address: ``--external-port`` or ``--local`` (or the detected
address) that disagree with the record are refused before anything is sent.
"""

from __future__ import annotations

from typing import Any

from engine.client import DEFAULT_TIMEOUT
from engine.protocols import protocol_name
from tui.exit_codes import EXIT_OK, EXIT_UNCONFIRMED, EXIT_USAGE

from .context import Context, Failure, live_holder
from .delete_check import check_natpmp_delete
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
    what = f"{protocol_name(protocol)} {port}"
    record = ctx.find(protocol, port)
    holder = live_holder(record)
    if holder is not None:
        raise Failure(f"{what} is held by natdeck process {holder} ('map --hold' or the "
                      "terminal UI), which would map it again; remove it there, or stop that "
                      f"process (kill -INT {holder}): it deletes its mappings as it exits")
    if record is not None and args.external_port not in (None, record.external_port):
        # The record names the mapping: deleting another port (a UPnP IGD answers "no
        # entry there" as success) would report it deleted, drop its record, and leave it.
        raise Failure(
            f"{what} is recorded (in {ctx.state.path}) with external port "
            f"{record.external_port}, not {args.external_port}: run 'natdeck unmap "
            f"{protocol_name(protocol)} {port}' without --external-port to delete the "
            f"recorded mapping (then --external-port {args.external_port} deletes one there "
            "that natdeck has no record of)", EXIT_USAGE)
    await ctx.refuse_other_local(record, "unmap")
    if record is not None and ctx.conn.via not in ("auto", record.via):
        ctx.out.warn(f"{what} was mapped with {via_name(record.via)} (stored in "
                     f"{ctx.state.path}): deleting it with {via_name(record.via)}"
                     f"{' and its nonce' if record.via == 'pcp' else ''}"
                     f"{' and its external port' if record.via == 'upnp' else ''}, as a "
                     f"{via_name(ctx.conn.via)} delete cannot remove it")
    async with ctx.client() as client:
        if record is not None:
            mapping = record.to_mapping()
            # The manager's rule: a PCP gateway's NO_RESOURCES to this delete (miniupnpd,
            # once it no longer holds the mapping) means it is gone too.
            # Imported here: the manager's package is the TUI's and `map --hold`'s, ~18 ms
            # that an unmap with no record (or a usage error) need not pay.
            from engine.manager.closing import delete_mapping

            await delete_mapping(client, mapping, timeout)
        else:
            mapping = await delete_without_record(ctx, client, protocol, port, timeout)
        doubt = None
        if mapping.via == "natpmp":
            doubt = await check_natpmp_delete(client, protocol, port, mapping.external_port,
                                              timeout)
    event = "unconfirmed" if doubt is not None else "deleted" if record else "not_held"
    if event != "unconfirmed":
        ctx.forget(protocol, port)
    fields: dict[str, Any] = {
        "event": event,
        "protocol": protocol_name(protocol),
        "protocol_number": protocol,
        "internal_port": port,
        "external_port": mapping.external_port,
        "via": mapping.via,
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(mapping.local_address),
        "stored_nonce": record is not None and record.nonce is not None,
    }
    via = via_name(mapping.via)
    if doubt is not None:
        fields["reason"] = doubt
        ctx.out.result(fields, f"unconfirmed {what} via {via}")
        ctx.out.error(f"the gateway accepted the {via} delete of {what}, but {doubt}")
        return EXIT_UNCONFIRMED
    if record is not None:
        ctx.out.result(fields, f"deleted {what} via {via}")
    else:
        how = {"pcp": "with a new nonce, as none was stored",
               "upnp": f"of external port {mapping.external_port}"}.get(
                   mapping.via, "and a re-map to check")
        ctx.out.result(fields, f"not held: {what} (no record of it; after a {via} delete "
                               f"{how}, the gateway holds no such mapping)")
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
