"""``natdeck map PROTO PORT``: ask for one mapping, store its nonce, print it.

With ``--hold`` the mapping is handed to :mod:`tui.cli.hold` (imported only then: the
one-shot path needs neither the manager nor the announcement listener).

A one-shot map leaves no mapping ``natdeck unmap`` could not delete: a request that went
unanswered (silence until ``--timeout``, or interrupted) is taken back as ``map --hold``'s
manager does it (the same request with lifetime 0 and the same nonce), and a mapping whose
record cannot be written is deleted again; both within :data:`UNDO_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from engine.client import DEFAULT_TIMEOUT
from engine.errors import GatewayTimeout, NatDeckError
from engine.protocols import protocol_name
from engine.request import nonce_for
from engine.statefile import MappingRecord
from tui.exit_codes import EXIT_OK, exit_code_for

from .context import Context, Failure, live_holder
from .output import fields_of_mapping, mapping_text

if TYPE_CHECKING:
    from engine.client import GatewayClient, PortMapping

__all__ = ["UNDO_TIMEOUT", "run_map"]

#: At most this long (and not beyond ``--timeout``) for the delete that undoes a map:
#: the user is waiting, or has pressed Ctrl-C.
UNDO_TIMEOUT = 3.0


async def run_map(ctx: Context) -> int:
    """Map ``args.protocol args.port``; renew it under the stored nonce if one is stored."""
    args = ctx.args
    protocol: int = args.protocol
    port: int = args.port
    record = ctx.find(protocol, port)
    holder = live_holder(record)
    if holder is not None:
        raise Failure(f"{protocol_name(protocol)} {port} is held by natdeck process {holder} "
                      f"('map --hold' or the terminal UI), which renews it; stop it first "
                      f"(kill -INT {holder})")
    await ctx.refuse_other_local(record, "map")
    if args.hold:
        from .hold import hold

        return await hold(ctx, record)
    nonce = None
    external_port = args.external_port
    if record is not None and ctx.conn.via in ("auto", record.via):
        # Renew the mapping we made before: its nonce (RFC 6887 §11.1, a new one would be
        # refused NOT_AUTHORIZED) and its external port (RFC 6887 §11.2.1, RFC 6886 §3.3).
        nonce = record.nonce
        if external_port is None:
            external_port = record.external_port
    # A renewal of what the record names: whatever it did, the record still deletes it.
    renewal = record is not None and nonce == record.nonce \
        and external_port == record.external_port and ctx.conn.via in ("auto", record.via)
    timeout = args.timeout or DEFAULT_TIMEOUT
    # client.map's arguments, the nonce drawn here: taking back an unanswered request
    # sends it again (a PCP mapping is deleted only with the nonce that made it).
    options: dict[str, Any] = dict(external_port=external_port, lifetime=args.lifetime,
                                   via=ctx.conn.via, nonce=nonce or nonce_for(ctx.conn.via))
    async with ctx.client() as client:
        try:
            mapping = await client.map(protocol, port, timeout=timeout, **options)
        except (GatewayTimeout, asyncio.CancelledError, KeyboardInterrupt) as exc:
            if not renewal:
                await _take_back(ctx, client, protocol, port, options, exc,
                                 min(timeout, UNDO_TIMEOUT))
            raise
        new = MappingRecord.from_mapping(mapping)
        try:
            ctx.store(new)
        except OSError as exc:
            await _unrecorded(ctx, client, mapping, record, new, exc, min(timeout, UNDO_TIMEOUT))
    fields = fields_of_mapping("mapped", mapping)
    ctx.out.result(fields, mapping_text("mapped", fields))
    return EXIT_OK


async def _take_back(ctx: Context, client: GatewayClient, protocol: int, port: int,
                     options: dict[str, Any], exc: BaseException, timeout: float) -> None:
    """Delete what the unanswered map may have made, as the manager does (``may_hold``,
    ``delete_unanswered``), and say how it went: a silence becomes a :class:`Failure` (its
    one line, the same exit status), an interruption a warning (then "interrupted")."""
    # Imported here: only this failure path needs the manager's module (see test_startup).
    from engine.events import MappingKey
    from engine.manager.closing import delete_unanswered, may_hold

    if not (may_hold(exc) or isinstance(exc, KeyboardInterrupt)):
        return  # never sent (it waited its turn): nothing to take back
    what = f"{protocol_name(protocol)} {port}"
    how = "the same request with lifetime 0" + (" and its nonce" if options["via"] in
                                                ("auto", "pcp") else "")
    outcome = f"in case the gateway made {what} all the same, natdeck asked to delete it ({how})"
    try:
        await delete_unanswered(client, MappingKey(protocol, port), options, timeout)
    except NatDeckError as undo:
        why = "no answer either" if isinstance(undo, GatewayTimeout) else str(undo)
        outcome += f": {why}; such a mapping expires within {options['lifetime']} s"
    else:
        outcome += ": done, nothing is left"
    if isinstance(exc, GatewayTimeout):
        raise Failure(f"{exc}; {outcome}", exit_code_for(exc)) from None
    ctx.out.warn(f"interrupted before the gateway answered; {outcome}")


async def _unrecorded(ctx: Context, client: GatewayClient, mapping: PortMapping,
                      record: MappingRecord | None, new: MappingRecord, exc: OSError,
                      timeout: float) -> None:
    """The gateway granted ``mapping`` but its record could not be written: delete it again
    (``natdeck unmap`` could not, without the nonce) and raise :class:`Failure`, unless the
    record on disk already names it (a renewal: same protocol, nonce, ports, address)."""
    from engine.manager.closing import delete_mapping

    what = f"{protocol_name(mapping.protocol)} {mapping.internal_port}"
    cannot = f"could not write the state file {ctx.state.path}: {exc}"
    if record is not None and (record.via, record.nonce, record.external_port,
                               record.local_address) == (new.via, new.nonce,
                                                         new.external_port, new.local_address):
        ctx.out.warn(f"{cannot}; its earlier record still names this mapping, so "
                     "'natdeck unmap' can delete it")
        return
    try:
        await delete_mapping(client, mapping, timeout)
    except NatDeckError as undo:
        raise Failure(f"{cannot}; 'natdeck unmap' could not delete {what} without its record, "
                      f"and deleting it now failed too ({undo}): it expires within "
                      f"{mapping.lifetime} s") from None
    raise Failure(f"{cannot}; {what} was deleted again, as 'natdeck unmap' could not delete "
                  f"it without its record (free space, or fix the directory's permissions, "
                  f"then map again)")
