"""``natdeck probe``: which protocols the gateway answers (PCP, NAT-PMP, UPnP IGD with its
name and model), its address, epoch and round trip."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.transport import SERVER_PORT
from tui.exit_codes import EXIT_OK, EXIT_TIMEOUT

from .args import PROBE_TIMEOUT
from .context import Context, Failure
from .output import address_text, via_name

if TYPE_CHECKING:
    from engine.mapping import ProbeResult

__all__ = ["run_probe"]


def _igd_fields(result: ProbeResult) -> dict[str, Any] | None:
    igd = result.igd
    if igd is None:
        return None
    return {"friendly_name": igd.friendly_name, "manufacturer": igd.manufacturer,
            "model_name": igd.model_name, "model_number": igd.model_number,
            "igd_version": igd.igd_version, "service_type": igd.service_type,
            "location": igd.location}


def _upnp_text(result: ProbeResult) -> str:
    igd = result.igd
    if not result.upnp or igd is None:
        return "no"
    model = " ".join(part for part in (igd.manufacturer, igd.model_name, igd.model_number)
                     if part)
    return f"yes: {igd.friendly_name or 'IGD'} ({model}, IGDv{igd.igd_version})"


async def run_probe(ctx: Context) -> int:
    """Ask PCP, NAT-PMP and UPnP IGD at once; print a table (or one JSON object)."""
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
        "upnp": result.upnp,
        "igd": _igd_fields(result),
        "upnp_rtt": result.upnp_rtt,
        "warning": result.warning,
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
        ("UPnP IGD", _upnp_text(result)),
        ("external address", str(result.external_address or "unknown")),
        ("round trip", "-" if result.rtt is None else f"{result.rtt * 1000:.1f} ms"),
        ("would use", via_name(result.via) if result.via else "nothing"),
    ]
    if result.warning:
        rows.append(("warning", result.warning))
    width = max(len(name) for name, _ in rows)
    ctx.out.result(fields, "\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    if not result.reachable:
        raise Failure(f"no answer from gateway {gateway} to PCP, NAT-PMP or UPnP IGD within "
                      f"{timeout:g} s; is it the right gateway, with NAT-PMP/PCP or UPnP "
                      "enabled?", EXIT_TIMEOUT)
    return EXIT_OK
