"""``natdeck probe``: which protocols the gateway answers, its address, epoch and round trip."""

from __future__ import annotations

from typing import Any

from engine.transport import SERVER_PORT
from tui.exit_codes import EXIT_OK, EXIT_TIMEOUT

from .args import PROBE_TIMEOUT
from .context import Context, Failure
from .output import address_text

__all__ = ["run_probe"]


async def run_probe(ctx: Context) -> int:
    """Ask PCP and NAT-PMP at once; print a table (or one JSON object)."""
    timeout = ctx.args.timeout or PROBE_TIMEOUT
    async with ctx.client() as client:
        local = await client.local_address()
        result = await client.probe(timeout=timeout)
    epoch = result.pcp_epoch if result.pcp_epoch is not None else result.natpmp_epoch
    fields: dict[str, Any] = {
        "gateway": str(result.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(local),
        "reachable": result.reachable,
        "pcp": result.pcp,
        "natpmp": result.natpmp,
        "via": result.via,
        "external_address": address_text(result.external_address),
        "epoch": epoch,
        "pcp_epoch": result.pcp_epoch,
        "natpmp_epoch": result.natpmp_epoch,
        "rtt": result.rtt,
        "pcp_version": result.pcp_version,
    }

    def spoken(ok: bool, epoch: int | None) -> str:
        return f"yes (epoch {epoch})" if ok else "no"

    gateway = str(result.gateway)
    if ctx.conn.gateway_port != SERVER_PORT:
        gateway = f"{gateway}:{ctx.conn.gateway_port}"
    rows = [
        ("gateway", gateway),
        ("local address", str(local)),
        ("PCP", spoken(result.pcp, result.pcp_epoch)
         + (f" (speaks version {result.pcp_version} only)"
            if result.pcp_version is not None else "")),
        ("NAT-PMP", spoken(result.natpmp, result.natpmp_epoch)),
        ("external address", str(result.external_address or "unknown")),
        ("round trip", "-" if result.rtt is None else f"{result.rtt * 1000:.1f} ms"),
        ("would use", {"pcp": "PCP", "natpmp": "NAT-PMP"}.get(result.via or "", "nothing")),
    ]
    width = max(len(name) for name, _ in rows)
    ctx.out.result(fields, "\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if not result.reachable:
        raise Failure(f"no answer from gateway {gateway} to PCP or NAT-PMP within "
                      f"{timeout:g} s; is it the right gateway, with NAT-PMP/PCP enabled?",
                      EXIT_TIMEOUT)
    return EXIT_OK
