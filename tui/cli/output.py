"""What the command line prints: results on stdout (text or ``--json``), reasons on stderr.

JSON field names are a contract: add, never rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from engine.protocols import protocol_name
from engine.transport import SERVER_PORT
from engine.wire.addresses import IPAddress

if TYPE_CHECKING:
    from engine.client import PortMapping

__all__ = ["Output", "address_text", "fields_of_mapping", "mapping_fields", "mapping_text",
           "one_line", "via_name"]


class Output:
    """Lines on stdout (text or JSON), warnings and errors on stderr.

    Looks ``sys.stdout`` up at each write (pytest's capsys swaps it) and flushes
    every line: a script reading a pipe sees each result as it happens. A closed
    pipe (``natdeck watch | head -1``) is remembered and ``on_closed`` called.
    """

    def __init__(self, as_json: bool) -> None:
        self.json = as_json
        self.closed = False
        self.on_closed: Callable[[], None] | None = None

    def _write(self, stream: TextIO, line: str) -> None:
        if self.closed and stream is sys.stdout:
            return
        try:
            stream.write(line + "\n")
            stream.flush()
        except BrokenPipeError:
            if stream is sys.stdout:
                self.stdout_closed()

    def stdout_closed(self) -> None:
        """stdout's reader went away (a write raised ``BrokenPipeError``): remember it,
        send later output to /dev/null and call ``on_closed``. For writers that print to
        stdout themselves (``natdeck list``)."""
        self.closed = True
        # Later writes (and the interpreter's final flush) must not fail again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        if self.on_closed is not None:
            self.on_closed()

    def result(self, data: dict[str, Any], text: str) -> None:
        """One result: a JSON object with ``--json``, else ``text``."""
        self._write(sys.stdout, json.dumps(data, separators=(", ", ": ")) if self.json
                    else text)

    def warn(self, message: str) -> None:
        """A warning on stderr (never fatal)."""
        self._write(sys.stderr, f"natdeck: warning: {one_line(message)}")

    def error(self, message: str) -> None:
        """The one-line reason for a non-zero exit."""
        self._write(sys.stderr, f"natdeck: {one_line(message)}")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines too) made one space."""
    return " ".join(str(text).split())


def address_text(address: IPAddress | None) -> str | None:
    """An address for JSON: its text, or null."""
    return None if address is None else str(address)


def via_name(via: str | None) -> str:
    """``pcp`` -> ``PCP``, ``natpmp`` -> ``NAT-PMP``, ``upnp`` -> ``UPnP``, for text lines."""
    return {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP"}.get(via or "", "?")


def mapping_fields(event: str, *, protocol: int, internal_port: int,
                   external_address: IPAddress | None, external_port: int | None,
                   lifetime: int, via: str | None, gateway: IPAddress, gateway_port: int,
                   local_address: IPAddress | None, epoch: int | None,
                   permanent: bool = False) -> dict[str, Any]:
    """The JSON object of a mapping. Field names are a contract; add, never rename.

    A UPnP IGD mapping has no epoch (``null``); ``permanent`` is true for a lease without
    end (``lifetime`` 0), which a gateway that takes only those gave.
    """
    return {
        "event": event,
        "protocol": protocol_name(protocol),
        "protocol_number": protocol,
        "internal_port": internal_port,
        "external_address": address_text(external_address),
        "external_port": external_port,
        "lifetime": lifetime,
        "via": via,
        "gateway": str(gateway),
        "gateway_port": gateway_port,
        "local_address": address_text(local_address),
        "epoch": None if via == "upnp" else epoch,
        "permanent": permanent,
    }


def fields_of_mapping(event: str, mapping: PortMapping) -> dict[str, Any]:
    """:func:`mapping_fields` of a granted :class:`~engine.client.PortMapping`."""
    return mapping_fields(
        event, protocol=int(mapping.protocol), internal_port=mapping.internal_port,
        external_address=mapping.external_address, external_port=mapping.external_port,
        lifetime=mapping.lifetime, via=mapping.via, gateway=mapping.gateway,
        gateway_port=mapping.gateway_port, local_address=mapping.local_address,
        epoch=mapping.epoch, permanent=mapping.permanent)


def mapping_text(verb: str, fields: dict[str, Any]) -> str:
    """One line for a mapping: ``mapped tcp 8080 -> 203.0.113.7:8080 for 7200 s via PCP ...``."""
    where = (f"{fields['external_address']}:{fields['external_port']}"
             if fields["external_address"] else f"port {fields['external_port']}")
    gateway = fields["gateway"]
    if fields["gateway_port"] != SERVER_PORT:
        gateway = f"{gateway}:{fields['gateway_port']}"
    lease = "permanently" if fields.get("permanent") else f"for {fields['lifetime']} s"
    about = f"gateway {gateway}" if fields["epoch"] is None \
        else f"gateway {gateway}, epoch {fields['epoch']}"
    return (f"{verb} {fields['protocol']} {fields['internal_port']} -> {where} "
            f"{lease} via {via_name(fields['via'])} ({about})")
