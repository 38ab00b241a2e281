"""Whether a NAT-PMP delete removed anything: ask the gateway again with a short re-map.

A NAT-PMP delete is answered SUCCESS whether or not it removed anything (RFC 6886 §3.4:
"as if the deletion were successful"), and miniupnpd removes only the rules NAT-PMP made:
a delete for a port that a PCP mapping holds is answered SUCCESS and the rule stays (the
PCP mapping belongs to its nonce, RFC 6887 §11.1). So after a NAT-PMP delete,
:func:`check_natpmp_delete` maps the same internal port again, asking for the same
external port with a short lifetime, and deletes what that gave:

- the external port it asked for: nothing else holds it (on miniupnpd, a rule of this
  host for that port is replaced by the re-map, and the delete then removes it);
- another external port: the port is still forwarded, by a PCP mapping of this host
  that NAT-PMP cannot touch, or by another host: natdeck cannot tell which;
- a refusal: a strict gateway refuses NAT-PMP for a port a PCP mapping holds.

To move into the engine: when ``core``'s client can report what a delete achieved (one
delete path for every dialect), ``unmap`` asks it instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.errors import NatDeckError, ResultCodeError

if TYPE_CHECKING:
    from engine.client import GatewayClient

__all__ = ["CHECK_LIFETIME", "check_natpmp_delete"]

#: The re-map's lifetime: if its own delete is lost, it is gone again this soon.
CHECK_LIFETIME = 10


async def check_natpmp_delete(client: GatewayClient, protocol: int, internal_port: int,
                              external_port: int, timeout: float) -> str | None:
    """``None`` when the gateway shows it holds nothing for the port after a NAT-PMP delete;
    else why that could not be confirmed (a phrase to follow "but")."""
    try:
        probe = await client.map(protocol, internal_port, external_port=external_port,
                                 lifetime=CHECK_LIFETIME, via="natpmp", timeout=timeout)
    except ResultCodeError as exc:
        return (f"a NAT-PMP map of the same port, to check, was refused ({exc.name}): "
                "a PCP mapping (which only its nonce can delete) may still hold it")
    except NatDeckError as exc:
        return f"checking with a NAT-PMP map of the same port failed: {exc}"
    try:
        await client.delete(probe, timeout=timeout)
    except NatDeckError as exc:
        return (f"the check's own NAT-PMP mapping could not be deleted ({exc}); it expires "
                f"in {probe.lifetime} s")
    if probe.external_port != external_port:
        return (f"external port {external_port} is still mapped (a re-map to check was given "
                f"{probe.external_port} instead): by a PCP mapping of this host, which a "
                "NAT-PMP delete cannot remove, or by another host")
    return None
