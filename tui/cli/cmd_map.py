"""``natdeck map PROTO PORT``: ask for one mapping, store its nonce, print it.

With ``--hold`` the mapping is handed to :mod:`tui.cli.hold` (imported only then: the
one-shot path needs neither the manager nor the announcement listener).
"""

from __future__ import annotations

from engine.client import DEFAULT_TIMEOUT
from engine.protocols import protocol_name
from engine.statefile import MappingRecord
from tui.exit_codes import EXIT_OK

from .context import Context, Failure, live_holder
from .output import fields_of_mapping, mapping_text

__all__ = ["run_map"]


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
    async with ctx.client() as client:
        mapping = await client.map(protocol, port, external_port=external_port,
                                   lifetime=args.lifetime, via=ctx.conn.via, nonce=nonce,
                                   timeout=args.timeout or DEFAULT_TIMEOUT)
    ctx.store(MappingRecord.from_mapping(mapping))
    fields = fields_of_mapping("mapped", mapping)
    ctx.out.result(fields, mapping_text("mapped", fields))
    return EXIT_OK
