"""What every command runs with: its arguments, output, state file and stop event.

Also the state file's side of a command: storing and forgetting records, and telling
whether a running ``natdeck map --hold`` (or the terminal UI) holds a mapping.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.protocols import protocol_name
from engine.statefile import MappingRecord, StateFile
from engine.wire.addresses import IPAddress
from tui.exit_codes import EXIT_FAILURE

from .args import Connection
from .output import Output

if TYPE_CHECKING:
    from engine.client import GatewayClient

__all__ = ["Context", "Failure", "live_holder", "resolve_gateway"]


class Failure(Exception):
    """A failure to report as one line with an exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class Context:
    """One command's run: parsed arguments, where to send, output, state file, stop."""

    args: argparse.Namespace
    conn: Connection
    out: Output
    state: StateFile
    stop: asyncio.Event
    gateway: IPAddress
    local: IPAddress | None

    def state_warnings(self, warnings: Sequence[str]) -> None:
        """Print the state file's warnings (never fatal)."""
        for warning in warnings:
            self.out.warn(warning)

    def client(self) -> GatewayClient:
        """A client for the gateway (use it as ``async with``)."""
        from engine.client import GatewayClient

        return GatewayClient(self.gateway, self.conn.gateway_port, local_address=self.local,
                             ssdp_port=self.conn.ssdp_port)

    def find(self, protocol: int, port: int) -> MappingRecord | None:
        """The stored record of (protocol, port) at this gateway, warnings printed."""
        record, warnings = self.state.find(self.gateway, self.conn.gateway_port, protocol, port)
        self.state_warnings(warnings)
        return record

    def store(self, record: MappingRecord) -> None:
        """Record a mapping. Raises :class:`OSError` when the state file cannot be written:
        the caller decides what becomes of a mapping ``natdeck unmap`` would not know."""
        self.state_warnings(self.state.record(record))

    async def refuse_other_local(self, record: MappingRecord | None, command: str) -> None:
        """Raise :class:`Failure` if ``record`` was made from another local address than
        this command's (``--local``, else the one the kernel picks: nothing is sent).

        The state file keeps one record per (gateway, protocol, internal port), without
        the local address: mapping from another address would overwrite the record (and
        strand the first mapping), unmapping would delete another address's mapping.
        """
        if record is None:
            return
        local = self.local
        if local is None:
            async with self.client() as client:
                local = await client.local_address()
        if local == record.local_address:
            return
        what = f"{protocol_name(record.protocol)} {record.internal_port}"
        unmap = f"natdeck unmap {protocol_name(record.protocol)} {record.internal_port}"
        raise Failure(
            f"{what} at {self.gateway} is recorded (in {self.state.path}) as mapped from "
            f"{record.local_address}, not from {local}, and natdeck keeps one record per "
            f"port: {'delete that mapping first' if command == 'map' else 'delete it'} "
            f"with '{unmap} --local {record.local_address}' (if that address is gone, the "
            "mapping expires on its own)")

    def forget(self, protocol: int, port: int) -> None:
        """Drop the record of (protocol, port) at this gateway, if any."""
        try:
            _, warnings = self.state.remove(self.gateway, self.conn.gateway_port, protocol,
                                            port)
        except OSError as exc:
            self.out.warn(f"could not update the state file {self.state.path}: {exc}")
            return
        self.state_warnings(warnings)


def resolve_gateway(conn: Connection) -> tuple[IPAddress, IPAddress | None]:
    """The gateway and local address: as given, else discovered (which sends nothing)."""
    if conn.gateway is not None:
        return conn.gateway, conn.local
    from engine import discovery

    found = discovery.discover(local_address=conn.local)
    return found.gateway, found.local_address


def live_holder(record: MappingRecord | None) -> int | None:
    """The pid of a running natdeck (``map --hold``, the TUI) that holds this mapping, if any.

    A record whose process is gone (or whose pid now names another program) is free to
    use: that is how ``unmap`` deletes what a killed holder or a closed TUI left.
    """
    if record is None or record.pid is None or record.pid == os.getpid():
        return None
    try:
        os.kill(record.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, someone else's
    cmdline = Path(f"/proc/{record.pid}/cmdline")
    with contextlib.suppress(OSError):
        # Where /proc tells, make sure the pid was not reused by another program.
        words = cmdline.read_bytes().split(b"\0")
        if not any(b"natdeck" in word or b"tui.cli" in word or word == b"tui"
                   for word in words):
            return None
    return record.pid
