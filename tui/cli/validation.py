"""The one check of a map or unmap request the command line makes before sending anything.

:func:`validate_request` is the only place the CLI says which (protocol, port, via)
combinations it refuses; the argument parser calls it for ``map``, ``unmap`` and the
TUI's ``--map``. A single mapping is checked by the engine's one validation
(``engine.request.MapRequest.problems``), so the CLI, the TUI's form and the library refuse
the same requests in the same words.
"""

from __future__ import annotations

from typing import Literal, cast

from engine.protocols import Protocol, protocol_name
from engine.request import DEFAULT_LIFETIME, MapRequest
from engine.types import Via

__all__ = ["RequestError", "validate_request"]


class RequestError(ValueError):
    """A request natdeck refuses to send; its text is the one line the user sees."""


def validate_request(*, command: Literal["map", "unmap"], protocol: int, port: int | None,
                     external_port: int | None = None, via: str = "auto",
                     delete_all: bool = False) -> None:
    """Raise :class:`RequestError` for a request the RFCs (or natdeck's CLI) forbid.

    ``port`` is ``None`` only for ``unmap --all``; ``via`` is ``auto``, ``pcp``,
    ``natpmp`` or ``upnp``. One mapping is checked by the engine's one validation
    (:meth:`engine.request.MapRequest.problems`, the same the library and the TUI's form
    use); only ``unmap --all``, which is no single mapping, has rules of its own here.
    """
    if delete_all:
        _check_delete_all(protocol, port, external_port, via)
        return
    if port is None:
        raise RequestError("PORT is required (or --all to delete every mapping of PROTO)")
    request = MapRequest(protocol, port, external_port, via=cast(Via, via),
                         lifetime=0 if command == "unmap" else DEFAULT_LIFETIME)
    problems = request.problems(deleting=command == "unmap")
    if problems:
        raise RequestError(problems[0][1])


def _check_delete_all(protocol: int, port: int | None, external_port: int | None,
                      via: str) -> None:
    name = protocol_name(protocol)
    if port is not None:
        raise RequestError("unmap --all takes no PORT: it deletes every mapping of PROTO")
    if external_port is not None:
        raise RequestError("unmap --all takes no --external-port")
    if via in ("pcp", "upnp"):
        raise RequestError(f"unmap --all is NAT-PMP's delete-all; "
                           f"{'PCP' if via == 'pcp' else 'UPnP IGD'} has none")
    if protocol not in (Protocol.TCP, Protocol.UDP):
        raise RequestError(f"unmap --all takes tcp or udp, not {name}")
