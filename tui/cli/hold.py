"""``natdeck map --hold``: keep one mapping with a :class:`~engine.manager.MappingManager`.

The manager renews it, hears the gateway's announcements and recovers it after a
restart, and keeps the state file's record current (with this process's pid, so that
another natdeck does not map or delete it from under us); this module prints each of
its events as one line (or JSON object), and deletes the mapping when stopped.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from engine.announce import ANNOUNCE_PORTS
from engine.client import DEFAULT_TIMEOUT
from engine.errors import NatDeckError
from engine.events import (
    Event,
    ExternalAddressChanged,
    GatewayRestarted,
    ManagedMapping,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRecovered,
    MappingRenewalFailed,
    MappingRenewed,
)
from engine.manager import MappingManager
from engine.manager.records import RETRY_DELAY
from engine.protocols import protocol_name
from engine.statefile import MappingRecord
from tui.exit_codes import EXIT_OK, exit_code_for

from .context import Context, Failure
from .output import mapping_fields, mapping_text

__all__ = ["HOLD_DELETE_TIMEOUT", "hold"]

#: How long deleting the mapping may take when ``map --hold`` is stopped.
HOLD_DELETE_TIMEOUT = 5.0


def _view_fields(event: str, view: ManagedMapping, ctx: Context,
                 manager: MappingManager) -> dict[str, Any]:
    return mapping_fields(
        event, protocol=int(view.protocol), internal_port=view.internal_port,
        external_address=view.external_address, external_port=view.external_port,
        lifetime=view.lifetime, via=view.via, gateway=ctx.gateway,
        gateway_port=ctx.conn.gateway_port, local_address=manager.status.local_address,
        epoch=view.epoch, permanent=view.permanent)


async def hold(ctx: Context, record: MappingRecord | None) -> int:
    """Map, then renew until ``ctx.stop`` is set (SIGINT/SIGTERM); then delete."""
    args = ctx.args
    protocol: int = args.protocol
    port: int = args.port
    timeout = args.timeout or DEFAULT_TIMEOUT
    external_port = args.external_port
    nonce: bytes | None = None
    if record is not None and ctx.conn.via in ("auto", record.via):
        if external_port is None:
            external_port = record.external_port
        # Hold the mapping we made before under its own nonce: a new one would be refused
        # for a mapping that exists under the stored one (RFC 6887 §11.1).
        nonce = record.nonce
    listen = not args.no_listen
    manager = MappingManager(
        ctx.gateway, gateway_port=ctx.conn.gateway_port, local_address=ctx.local,
        via=ctx.conn.via, lifetime=args.lifetime, timeout=timeout, listen=listen,
        announce_ports=(args.listen_port,) if args.listen_port else ANNOUNCE_PORTS,
        announce_host=None if args.listen_host is None else str(args.listen_host),
        multicast=args.listen_host is None, keep=True, probe_on_start=False,
        ssdp_port=ctx.conn.ssdp_port, state_file=ctx.state, holder_pid=os.getpid())
    key = MappingKey(protocol, port)
    async with manager:
        view = await manager.add(protocol, port, external_port=external_port, nonce=nonce)
        fields = _view_fields("mapped", view, ctx, manager)
        ctx.out.result(fields, mapping_text("mapped", fields))
        if manager.records.error is not None and ctx.state is not None:
            # Said, not only logged (the engine's log line is not shown by default); the
            # mapping is kept, unlike a one-shot map's: this process deletes it as it ends.
            ctx.out.warn(f"could not write the state file {ctx.state.path}: "
                         f"{manager.records.error}; 'natdeck unmap' will not know this "
                         f"mapping until a retry succeeds (every {RETRY_DELAY:g} s)")
        if listen and manager.status.listen_error:
            ctx.out.warn(f"not hearing the gateway's announcements: "
                         f"{manager.status.listen_error}")

        def on_event(event: Event) -> None:
            _print_event(ctx, manager, key, event)

        watcher = asyncio.ensure_future(_consume(manager, on_event))
        try:
            await ctx.stop.wait()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await _release(ctx, manager, key, timeout)
    return EXIT_OK


async def _consume(manager: MappingManager, handle: Callable[[Event], None]) -> None:
    async for event in manager.events():
        handle(event)


def _print_event(ctx: Context, manager: MappingManager, key: MappingKey,
                 event: Event) -> None:
    view = manager.mappings.get(key)
    name = {MappingRenewed: "renewed", MappingRecovered: "recovered"}.get(type(event))
    if name is not None and view is not None:
        fields = _view_fields(name, view, ctx, manager)
        ctx.out.result(fields, mapping_text(name, fields))
        return
    what = f"{protocol_name(key.protocol)} {key.internal_port}"
    base: dict[str, Any] = {"protocol": protocol_name(key.protocol),
                            "protocol_number": key.protocol, "internal_port": key.internal_port,
                            "gateway": str(ctx.gateway), "gateway_port": ctx.conn.gateway_port}
    if isinstance(event, MappingLost):
        ctx.out.result({"event": "lost", **base, "reason": event.reason},
                       f"lost {what}: {event.reason}; asking for it again")
    elif isinstance(event, MappingRenewalFailed):
        ctx.out.result({"event": "renewal_failed", **base, "reason": str(event.error)},
                       f"renewal of {what} failed: {event.error}")
    elif isinstance(event, MappingFailed):
        ctx.out.result({"event": "failed", **base, "reason": str(event.error)},
                       f"{what} failed: {event.error}")
    elif isinstance(event, ExternalAddressChanged) and event.old is not None:
        ctx.out.result({"event": "external_address_changed", **base,
                        "previous_address": str(event.old), "external_address": str(event.new)},
                       f"external address changed: {event.old} -> {event.new}")
    elif isinstance(event, GatewayRestarted):
        ctx.out.result({"event": "gateway_restarted", **base, "epoch": event.epoch},
                       f"the gateway lost its state ({event.protocol} epoch {event.epoch}); "
                       f"asking for {what} again")


async def _release(ctx: Context, manager: MappingManager, key: MappingKey,
                   timeout: float) -> None:
    """Delete the held mapping as ``map --hold`` ends (the manager drops its record); the
    record stays if that fails, and names this process, which exits now."""
    if key not in manager.mappings:
        return
    manager.timeout = min(timeout, HOLD_DELETE_TIMEOUT)
    view = manager.mappings[key]
    try:
        await manager.remove(key)
    except NatDeckError as exc:
        raise Failure(f"could not delete {key} at the gateway: {exc}; "
                      f"'natdeck unmap {protocol_name(key.protocol)} {key.internal_port}' "
                      "can try again", exit_code_for(exc)) from None
    fields = _view_fields("deleted", view, ctx, manager)
    ctx.out.result(fields, f"deleted {protocol_name(key.protocol)} {key.internal_port}")
