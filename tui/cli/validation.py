"""The one check of a map or unmap request the command line makes before sending anything.

:func:`validate_request` is the only place the CLI says which (protocol, port, via)
combinations it refuses; the argument parser calls it for ``map``, ``unmap`` and the
TUI's ``--map``. When ``engine.request.MapRequest.validate()`` lands (issue 12: one
request type with one validation for every front end), this function becomes a thin
call to it, and its messages become the engine's.
"""

from __future__ import annotations

from typing import Literal

from engine.protocols import PORTED_PROTOCOLS, Protocol, protocol_name

__all__ = ["RequestError", "validate_request"]


class RequestError(ValueError):
    """A request natdeck refuses to send; its text is the one line the user sees."""


def validate_request(*, command: Literal["map", "unmap"], protocol: int, port: int | None,
                     external_port: int | None = None, via: str = "auto",
                     delete_all: bool = False) -> None:
    """Raise :class:`RequestError` for a request the RFCs (or natdeck's CLI) forbid.

    ``port`` is ``None`` only for ``unmap --all``; ``via`` is ``auto``, ``pcp``,
    ``natpmp`` or ``upnp``.
    """
    name = protocol_name(protocol)
    if via == "natpmp" and protocol not in (Protocol.TCP, Protocol.UDP):
        raise RequestError(f"NAT-PMP maps only tcp and udp, not {name}; use --via pcp or auto")
    if via == "upnp" and protocol not in (Protocol.TCP, Protocol.UDP):
        raise RequestError(f"UPnP IGD maps only tcp and udp, not {name}; use --via pcp or auto")
    if delete_all:
        if port is not None:
            raise RequestError("unmap --all takes no PORT: it deletes every mapping of PROTO")
        if external_port is not None:
            raise RequestError("unmap --all takes no --external-port")
        if via in ("pcp", "upnp"):
            raise RequestError(f"unmap --all is NAT-PMP's delete-all; "
                               f"{'PCP' if via == 'pcp' else 'UPnP IGD'} has none")
        if protocol not in (Protocol.TCP, Protocol.UDP):
            raise RequestError(f"unmap --all takes tcp or udp, not {name}")
        return
    if port is None:
        raise RequestError("PORT is required (or --all to delete every mapping of PROTO)")
    if protocol == Protocol.ALL and port != 0:
        raise RequestError("protocol 'all' (0) takes port 0 (RFC 6887 §11.1)")
    if port == 0 and protocol in PORTED_PROTOCOLS and via == "natpmp":
        raise RequestError("NAT-PMP needs a PORT of 1-65535 (port 0 means delete-all there)")
    if port == 0 and protocol in PORTED_PROTOCOLS and via == "upnp":
        raise RequestError("UPnP IGD needs a PORT of 1-65535")
    if port == 0 and protocol in PORTED_PROTOCOLS and via == "auto" and command == "map":
        raise RequestError(f"PORT 0 asks PCP for every {name} port; say --via pcp to mean it")
