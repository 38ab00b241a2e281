"""``natdeck``: NAT-PMP (RFC 6886) and PCP (RFC 6887) from the shell, for people and scripts.

Usage::

    natdeck                                  open the TUI (--gateway, --local, --demo,
                                             --map tcp:8080 ..., --keep, --via)
    natdeck map PROTO PORT [--external-port N] [--lifetime S] [--hold]
    natdeck unmap PROTO PORT [--external-port N]
    natdeck unmap PROTO --all                NAT-PMP's delete-all of one protocol
    natdeck probe                            which protocols the gateway answers
    natdeck watch [--listen-host H] [--listen-port P] [--count N]

Every subcommand takes ``--gateway ADDR`` (else the default gateway is
discovered), ``--gateway-port N`` (5351), ``--local ADDR``, ``--via
auto|pcp|natpmp``, ``--timeout S`` and ``--json`` (one JSON object per line and
per result, with stable field names). Errors are one line on stderr.

Exit status (:data:`EXIT_CODES`):

====  =======================================================================
0     success (``map --hold`` and ``watch``: also when stopped by SIGINT/SIGTERM)
1     failure: the gateway refused (a result code), or another error
2     usage: bad arguments; nothing was sent
3     no answer: the gateway stayed silent until ``--timeout``
4     no gateway: none was found by discovery (pass ``--gateway``)
130   interrupted (SIGINT) in the middle of a one-shot command
====  =======================================================================

JSON output (``--json``), one object per line; fields are only ever added:

- ``map``: ``event`` ("mapped"; with ``--hold`` then "renewed", "recovered",
  "lost", "renewal_failed", "failed", "external_address_changed",
  "gateway_restarted", and "deleted" at the end), ``protocol`` (name),
  ``protocol_number``, ``internal_port``, ``external_address``,
  ``external_port``, ``lifetime`` (granted seconds), ``via`` ("pcp"/"natpmp"),
  ``gateway``, ``gateway_port``, ``local_address``, ``epoch``; events about
  trouble carry ``reason`` instead of the mapping's fields.
- ``unmap``: ``event`` ("deleted", or "deleted_all" for ``--all``),
  ``protocol``, ``protocol_number``, ``internal_port``, ``external_port``, ``via``,
  ``gateway``, ``gateway_port``, ``local_address``, ``stored_nonce``.
- ``probe``: ``gateway``, ``gateway_port``, ``local_address``, ``reachable``,
  ``pcp``, ``natpmp``, ``via``, ``external_address``, ``epoch``, ``pcp_epoch``,
  ``natpmp_epoch``, ``rtt`` (seconds), ``pcp_version``.
- ``watch``: ``event`` ("announcement"), ``kind`` ("natpmp_address" or
  "pcp_announce"), ``protocol``, ``external_address``, ``previous_address``,
  ``address_changed``, ``restarted`` (the epoch shows the gateway lost its
  state), ``repeat``, ``epoch``, ``gateway``, ``gateway_port``, ``port`` (where it
  arrived), ``time`` (UTC, ISO 8601).

PCP mappings belong to their nonce (RFC 6887 §11.1), so ``map`` keeps it in
the state file (:mod:`engine.statefile`) and ``unmap`` (another process) uses it;
running ``map`` again for the same mapping renews it with the same nonce.

This module imports neither Textual nor the TUI: the TUI is imported only when
``natdeck`` runs without a subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

from engine import timing
from engine.announce import ANNOUNCE_PORTS, Announcement, AnnouncementListener
from engine.client import DEFAULT_LIFETIME, DEFAULT_TIMEOUT, GatewayClient, PortMapping, Via
from engine.codes import PcpResult
from engine.discovery import discover
from engine.errors import (
    GatewayTimeout,
    NatDeckError,
    NoGatewayError,
    ResultCodeError,
    UnsupportedVersion,
)
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
from engine.protocols import PORTED_PROTOCOLS, Protocol, parse_protocol, protocol_name
from engine.statefile import MappingRecord, StateFile
from engine.transport import SERVER_PORT
from engine.wire import pcp
from engine.wire.addresses import IPAddress, to_address

__all__ = ["EXIT_CODES", "build_parser", "main", "main_async"]

log = logging.getLogger("tui.cli")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 3
EXIT_NO_GATEWAY = 4
EXIT_INTERRUPTED = 130

#: The exit statuses, for ``--help`` and for scripts that want names.
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (map --hold and watch: also when stopped by SIGINT/SIGTERM)",
    EXIT_FAILURE: "failure: the gateway refused (result code), or another error",
    EXIT_USAGE: "usage: bad arguments; nothing was sent",
    EXIT_TIMEOUT: "no answer: the gateway stayed silent until --timeout",
    EXIT_NO_GATEWAY: "no gateway found by discovery (pass --gateway)",
    EXIT_INTERRUPTED: "interrupted (SIGINT) during a one-shot command",
}

#: ``probe`` waits this long by default: a gateway on the link answers in milliseconds.
PROBE_TIMEOUT = 3.0
#: How long deleting the mapping may take when ``map --hold`` is stopped.
HOLD_DELETE_TIMEOUT = 5.0

_EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


# -- argument parsing --------------------------------------------------------------------


def _protocol_arg(text: str) -> int:
    try:
        return int(parse_protocol(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _port_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"port must be 0-65535, not {value}")
    return value


def _server_port_arg(text: str) -> int:
    value = _port_arg(text)
    if value == 0:
        raise argparse.ArgumentTypeError("port must be 1-65535, not 0")
    return value


def _address_arg(text: str) -> IPAddress:
    try:
        return to_address(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an IPv4 or IPv6 address: {text!r}") from None


def _lifetime_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 1 <= value <= 0xFFFFFFFF:
        raise argparse.ArgumentTypeError(
            f"lifetime must be 1-4294967295 seconds, not {value} (use 'unmap' to delete)")
    return value


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 1e9:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"timeout must be a positive number of seconds, "
                                         f"not {text}")
    return value


def _count_arg(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a count: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"count must be at least 1, not {value}")
    return value


def _map_spec_arg(text: str) -> tuple[int, int]:
    """``tcp:8080`` -> (6, 8080), for the TUI's ``--map``."""
    proto_text, sep, port_text = text.rpartition(":")
    if not sep or not proto_text:
        raise argparse.ArgumentTypeError(f"expected PROTO:PORT such as tcp:8080, not {text!r}")
    protocol = _protocol_arg(proto_text)
    port = _port_arg(port_text)
    _check_protocol_port(protocol, port)
    return protocol, port


def _check_protocol_port(protocol: int, port: int) -> None:
    if protocol == Protocol.ALL and port != 0:
        raise argparse.ArgumentTypeError(
            "protocol 'all' (0) takes port 0 (RFC 6887 §11.1)")


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Options both the TUI and every subcommand take.

    Their default is SUPPRESS so that ``natdeck --gateway X probe`` and ``natdeck
    probe --gateway X`` both work: a subparser's defaults would otherwise overwrite
    what the main parser read. :func:`_defaults` fills them in afterwards.
    """
    parser.add_argument("--gateway", type=_address_arg, default=argparse.SUPPRESS,
                        metavar="ADDR",
                        help="the gateway's address (default: discover the default gateway)")
    parser.add_argument("--gateway-port", type=_server_port_arg, default=argparse.SUPPRESS,
                        metavar="N", help=f"the gateway's UDP port (default: {SERVER_PORT})")
    parser.add_argument("--local", type=_address_arg, default=argparse.SUPPRESS,
                        metavar="ADDR",
                        help="our address as the gateway sees it (default: what the route "
                             "to the gateway uses)")
    parser.add_argument("--via", choices=("auto", "pcp", "natpmp"), default=argparse.SUPPRESS,
                        help="protocol: auto (PCP, falling back to NAT-PMP), pcp or natpmp "
                             "(default: auto)")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens on stderr (-vv: every packet)")


def _command_options(parser: argparse.ArgumentParser, *, timeout_help: str) -> None:
    _connection_options(parser)
    parser.add_argument("--timeout", type=_timeout_arg, default=None, metavar="S",
                        help=timeout_help)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line and per result")


def build_parser() -> argparse.ArgumentParser:
    """The ``natdeck`` argument parser (subcommand names and flags are a contract)."""
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers (which report their own usage errors)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="natdeck", formatter_class=formatter, epilog=_EPILOG,
        description="Map ports on a NAT gateway with NAT-PMP (RFC 6886) and PCP (RFC 6887). "
                    "Without a subcommand, open the terminal UI.")
    _connection_options(parser)
    parser.add_argument("--version", action="version", version=f"natdeck {_version()}")
    tui = parser.add_argument_group("terminal UI (without a subcommand)")
    tui.add_argument("--demo", action="store_true",
                     help="run against a built-in simulated gateway; sends nothing")
    tui.add_argument("--map", dest="maps", action="append", type=_map_spec_arg, default=None,
                     metavar="PROTO:PORT", help="map this at start (repeatable), e.g. tcp:8080")
    tui.add_argument("--keep", action="store_true",
                     help="leave the mappings at the gateway on quit (default: delete them)")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    default_timeout = (f"give up after S seconds without an answer "
                       f"(default: {DEFAULT_TIMEOUT:g})")

    map_parser = commands.add_parser(
        "map", help="ask for a mapping and print it", formatter_class=formatter,
        epilog=_EPILOG,
        description="Ask the gateway to map PROTO PORT and print the mapping. The PCP nonce is "
                    "kept in the state file, so that 'natdeck map' again renews the same "
                    "mapping and 'natdeck unmap' can delete it.")
    map_parser.add_argument("protocol", type=_protocol_arg, metavar="PROTO",
                            help="tcp, udp, or (PCP) a protocol number or name")
    map_parser.add_argument("port", type=_port_arg, metavar="PORT", help="the internal port")
    map_parser.add_argument("--external-port", type=_port_arg, default=None, metavar="N",
                            help="the external port to ask for (default: PORT)")
    map_parser.add_argument("--lifetime", type=_lifetime_arg, default=DEFAULT_LIFETIME,
                            metavar="S",
                            help=f"seconds to ask for (default: {DEFAULT_LIFETIME})")
    map_parser.add_argument("--hold", action="store_true",
                            help="stay, renewing the mapping, until SIGINT/SIGTERM; "
                                 "then delete it")
    map_parser.add_argument("--no-listen", action="store_true",
                            help="with --hold: do not listen for the gateway's announcements")
    _listen_options(map_parser, "with --hold: ")
    _command_options(map_parser, timeout_help=default_timeout)

    unmap_parser = commands.add_parser(
        "unmap", help="delete a mapping", formatter_class=formatter, epilog=_EPILOG,
        description="Delete a mapping, with the nonce 'natdeck map' stored for it.")
    unmap_parser.add_argument("protocol", type=_protocol_arg, metavar="PROTO",
                              help="tcp, udp, or (PCP) a protocol number or name")
    unmap_parser.add_argument("port", type=_port_arg, metavar="PORT", nargs="?", default=None,
                              help="the internal port (not with --all)")
    unmap_parser.add_argument("--external-port", type=_port_arg, default=None, metavar="N",
                              help="the mapping's external port (default: the stored one)")
    unmap_parser.add_argument("--all", action="store_true",
                              help="NAT-PMP: delete every mapping of PROTO (tcp or udp) made "
                                   "from this address (RFC 6886 §3.4)")
    _command_options(unmap_parser, timeout_help=default_timeout)

    probe_parser = commands.add_parser(
        "probe", help="which protocols the gateway answers", formatter_class=formatter,
        epilog=_EPILOG,
        description="Ask PCP (ANNOUNCE) and NAT-PMP (external address) at once; print which "
                    "protocols the gateway answers, its external address, epoch and round "
                    "trip. Both protocols are always asked; --via has no effect.")
    _command_options(probe_parser, timeout_help=f"seconds to wait for answers "
                                                f"(default: {PROBE_TIMEOUT:g})")

    watch_parser = commands.add_parser(
        "watch", help="print the gateway's announcements as they come",
        formatter_class=formatter, epilog=_EPILOG,
        description="Listen for the gateway's announcements (NAT-PMP address changes, PCP "
                    "ANNOUNCE) and print one line each, noting address changes and "
                    "restarts. Sends nothing. Repeats of an announcement are not printed "
                    "(--repeats prints them). --via pcp or natpmp shows only that protocol's.")
    _listen_options(watch_parser, "")
    watch_parser.add_argument("--count", type=_count_arg, default=None, metavar="N",
                              help="exit after printing N announcements")
    watch_parser.add_argument("--repeats", action="store_true",
                              help="also print repeats of an announcement")
    _command_options(watch_parser,
                     timeout_help="stop after S seconds; exit 3 if nothing was heard "
                                  "(default: watch until interrupted)")
    return parser, {"map": map_parser, "unmap": unmap_parser, "probe": probe_parser,
                    "watch": watch_parser}


def _listen_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    parser.add_argument("--listen-host", type=_address_arg, default=None, metavar="ADDR",
                        help=f"{prefix}address to listen on (default: the wildcard address, "
                             "which receives the multicast announcements)")
    parser.add_argument("--listen-port", type=_server_port_arg, default=None, metavar="P",
                        help=f"{prefix}port to listen on (default: 5350 and 5351)")


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("natdeck")
    except Exception:  # not installed (running from a checkout)
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class _Connection:
    gateway: IPAddress | None
    gateway_port: int
    local: IPAddress | None
    via: Via
    verbose: int


def _defaults(args: argparse.Namespace) -> _Connection:
    return _Connection(
        gateway=getattr(args, "gateway", None),
        gateway_port=getattr(args, "gateway_port", SERVER_PORT),
        local=getattr(args, "local", None),
        via=getattr(args, "via", "auto"),
        verbose=getattr(args, "verbose", 0) or 0)


def _check_args(main_parser: argparse.ArgumentParser,
                commands: dict[str, argparse.ArgumentParser], args: argparse.Namespace,
                conn: _Connection) -> None:
    """What argparse cannot check alone; every failure exits 2 before anything is sent."""
    parser = commands.get(args.command or "", main_parser)
    if conn.gateway is not None and conn.local is not None \
            and conn.gateway.version != conn.local.version:
        parser.error(f"--gateway {conn.gateway} and --local {conn.local} are not of one "
                     "address family")
    if conn.via == "natpmp" and conn.gateway is not None and conn.gateway.version == 6:
        parser.error("NAT-PMP speaks only IPv4 (RFC 6886); use --via pcp for an IPv6 gateway")
    command = args.command
    if command is None:
        return
    for flag, given in (("--demo", args.demo), ("--map", args.maps), ("--keep", args.keep)):
        if given:
            parser.error(f"{flag} is for the terminal UI; it does not go with '{command}'")
    if command in ("map", "unmap"):
        protocol: int = args.protocol
        port: int | None = args.port
        name = protocol_name(protocol)
        if conn.via == "natpmp" and protocol not in (Protocol.TCP, Protocol.UDP):
            parser.error(f"NAT-PMP maps only tcp and udp, not {name}; use --via pcp or auto")
        if command == "unmap" and args.all:
            if port is not None:
                parser.error("unmap --all takes no PORT: it deletes every mapping of PROTO")
            if args.external_port is not None:
                parser.error("unmap --all takes no --external-port")
            if conn.via == "pcp":
                parser.error("unmap --all is NAT-PMP's delete-all; PCP has none")
            if protocol not in (Protocol.TCP, Protocol.UDP):
                parser.error(f"unmap --all takes tcp or udp, not {name}")
            return
        if port is None:
            parser.error("PORT is required (or --all to delete every mapping of PROTO)")
        try:
            _check_protocol_port(protocol, port)
        except argparse.ArgumentTypeError as exc:
            parser.error(str(exc))
        if port == 0 and protocol in PORTED_PROTOCOLS and conn.via == "natpmp":
            parser.error("NAT-PMP needs a PORT of 1-65535 (port 0 means delete-all there)")
        if port == 0 and protocol in PORTED_PROTOCOLS and conn.via == "auto" \
                and command == "map":
            parser.error(f"PORT 0 asks PCP for every {name} port; say --via pcp to mean it")
    if command == "map" and not args.hold:
        for flag, value in (("--no-listen", args.no_listen),
                            ("--listen-host", args.listen_host),
                            ("--listen-port", args.listen_port)):
            if value:
                parser.error(f"{flag} goes with --hold")


# -- output --------------------------------------------------------------------------------


class _Output:
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
            if stream is not sys.stdout:
                return
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
        self._write(sys.stderr, f"natdeck: warning: {_one_line(message)}")

    def error(self, message: str) -> None:
        """The one-line reason for a non-zero exit."""
        self._write(sys.stderr, f"natdeck: {_one_line(message)}")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _address_text(address: IPAddress | None) -> str | None:
    return None if address is None else str(address)


def _mapping_fields(event: str, *, protocol: int, internal_port: int,
                    external_address: IPAddress | None, external_port: int | None,
                    lifetime: int, via: str | None, gateway: IPAddress, gateway_port: int,
                    local_address: IPAddress | None, epoch: int | None) -> dict[str, Any]:
    """The JSON object of a mapping. Field names are a contract; add, never rename."""
    return {
        "event": event,
        "protocol": protocol_name(protocol),
        "protocol_number": protocol,
        "internal_port": internal_port,
        "external_address": _address_text(external_address),
        "external_port": external_port,
        "lifetime": lifetime,
        "via": via,
        "gateway": str(gateway),
        "gateway_port": gateway_port,
        "local_address": _address_text(local_address),
        "epoch": epoch,
    }


def _mapping_text(verb: str, fields: dict[str, Any]) -> str:
    where = (f"{fields['external_address']}:{fields['external_port']}"
             if fields["external_address"] else f"port {fields['external_port']}")
    via = {"pcp": "PCP", "natpmp": "NAT-PMP"}.get(fields["via"] or "", "?")
    gateway = fields["gateway"]
    if fields["gateway_port"] != SERVER_PORT:
        gateway = f"{gateway}:{fields['gateway_port']}"
    return (f"{verb} {fields['protocol']} {fields['internal_port']} -> {where} "
            f"for {fields['lifetime']} s via {via} (gateway {gateway}, epoch {fields['epoch']})")


# -- the commands ----------------------------------------------------------------------------


class _Failure(Exception):
    """A failure to report as one line with an exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


@dataclass(slots=True)
class _Context:
    args: argparse.Namespace
    conn: _Connection
    out: _Output
    state: StateFile
    stop: asyncio.Event
    gateway: IPAddress
    local: IPAddress | None

    def state_warnings(self, warnings: Sequence[str]) -> None:
        for warning in warnings:
            self.out.warn(warning)

    def client(self) -> GatewayClient:
        return GatewayClient(self.gateway, self.conn.gateway_port, local_address=self.local)


def _resolve_gateway(conn: _Connection) -> tuple[IPAddress, IPAddress | None]:
    """The gateway and local address: as given, else discovered (which sends nothing)."""
    if conn.gateway is not None:
        return conn.gateway, conn.local
    found = discover(local_address=conn.local)
    return found.gateway, found.local_address


def _live_holder(record: MappingRecord | None) -> int | None:
    """The pid of a running ``natdeck map --hold`` that holds this mapping, if any."""
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
        text = cmdline.read_bytes().replace(b"\0", b" ")
        if b"natdeck" not in text and b"tui.cli" not in text:
            return None
    return record.pid


async def _cmd_map(ctx: _Context) -> int:
    args = ctx.args
    protocol: int = args.protocol
    port: int = args.port
    gateway_port = ctx.conn.gateway_port
    record, warnings = ctx.state.find(ctx.gateway, gateway_port, protocol, port)
    ctx.state_warnings(warnings)
    holder = _live_holder(record)
    if holder is not None:
        raise _Failure(f"{protocol_name(protocol)} {port} is held by natdeck process {holder} "
                       f"('map --hold'); stop it first (kill -INT {holder})")
    if args.hold:
        return await _hold(ctx, record)
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
    _store(ctx, MappingRecord.from_mapping(mapping))
    fields = _fields_of_mapping("mapped", mapping)
    ctx.out.result(fields, _mapping_text("mapped", fields))
    return EXIT_OK


def _fields_of_mapping(event: str, mapping: PortMapping) -> dict[str, Any]:
    return _mapping_fields(
        event, protocol=int(mapping.protocol), internal_port=mapping.internal_port,
        external_address=mapping.external_address, external_port=mapping.external_port,
        lifetime=mapping.lifetime, via=mapping.via, gateway=mapping.gateway,
        gateway_port=mapping.gateway_port, local_address=mapping.local_address,
        epoch=mapping.epoch)


def _store(ctx: _Context, record: MappingRecord) -> None:
    try:
        ctx.state_warnings(ctx.state.record(record))
    except OSError as exc:
        ctx.out.warn(f"could not write the state file {ctx.state.path}: {exc}; "
                     "'natdeck unmap' will not know this mapping's nonce")


def _forget(ctx: _Context, protocol: int, port: int) -> None:
    try:
        _, warnings = ctx.state.remove(ctx.gateway, ctx.conn.gateway_port, protocol, port)
    except OSError as exc:
        ctx.out.warn(f"could not update the state file {ctx.state.path}: {exc}")
        return
    ctx.state_warnings(warnings)


async def _cmd_unmap(ctx: _Context) -> int:
    args = ctx.args
    protocol: int = args.protocol
    timeout = args.timeout or DEFAULT_TIMEOUT
    if args.all:
        return await _unmap_all(ctx, protocol, timeout)
    port: int = args.port
    record, warnings = ctx.state.find(ctx.gateway, ctx.conn.gateway_port, protocol, port)
    ctx.state_warnings(warnings)
    holder = _live_holder(record)
    if holder is not None:
        raise _Failure(f"{protocol_name(protocol)} {port} is held by natdeck process {holder}, "
                       f"which would map it again; stop that process instead (kill -INT "
                       f"{holder}): it deletes the mapping as it exits")
    via = ctx.conn.via
    async with ctx.client() as client:
        if record is not None and via in ("auto", record.via):
            mapping = record.to_mapping()
            if args.external_port is not None:
                mapping.external_port = args.external_port
            await client.delete(mapping, timeout=timeout)
            stored = True
        else:
            mapping = await _delete_unknown(ctx, client, protocol, port, timeout)
            stored = False
    _forget(ctx, protocol, port)
    fields = {
        "event": "deleted",
        "protocol": protocol_name(protocol),
        "protocol_number": protocol,
        "internal_port": port,
        "external_port": mapping.external_port,
        "via": mapping.via,
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(mapping.local_address),
        "stored_nonce": stored,
    }
    via_name = "PCP" if mapping.via == "pcp" else "NAT-PMP"
    note = "" if stored or mapping.via == "natpmp" else " (no stored nonce: a new one was used)"
    ctx.out.result(fields, f"deleted {protocol_name(protocol)} {port} via {via_name}{note}")
    return EXIT_OK


async def _delete_unknown(ctx: _Context, client: GatewayClient, protocol: int, port: int,
                          timeout: float) -> PortMapping:
    """Delete a mapping the state file does not know: a fresh nonce for PCP."""
    local = await client.local_address()
    external_port = ctx.args.external_port
    mapping = PortMapping(
        gateway=ctx.gateway, gateway_port=ctx.conn.gateway_port, local_address=local,
        protocol=protocol, internal_port=port,
        external_port=port if external_port is None else external_port,
        external_address=None, lifetime=0, expires_at=0.0,
        via="natpmp" if ctx.conn.via == "natpmp" else "pcp", epoch=0,
        nonce=secrets.token_bytes(pcp.NONCE_SIZE), suggested_external_port=port)
    try:
        await client.delete(mapping, timeout=timeout)
    except UnsupportedVersion:
        if ctx.conn.via != "auto" or protocol not in (Protocol.TCP, Protocol.UDP):
            raise
        mapping.via = "natpmp"
        mapping.nonce = None
        await client.delete(mapping, timeout=timeout)
    except ResultCodeError as exc:
        if exc.protocol == "pcp" and exc.code == PcpResult.NOT_AUTHORIZED:
            raise _Failure(
                f"{exc}. No nonce is stored for {protocol_name(protocol)} {port} at "
                f"{ctx.gateway} in {ctx.state.path}, and PCP deletes only with the nonce "
                "that made the mapping: it was made by another program (if by natpmpc, try "
                "--via natpmp), or the state was lost; it will expire on its own") from None
        raise
    return mapping


async def _unmap_all(ctx: _Context, protocol: int, timeout: float) -> int:
    async with ctx.client() as client:
        local = await client.local_address()
        await client.delete_all(protocol, timeout=timeout)
    try:
        _, warnings = ctx.state.remove_all(ctx.gateway, ctx.conn.gateway_port, protocol,
                                           via="natpmp")
        ctx.state_warnings(warnings)
    except OSError as exc:
        ctx.out.warn(f"could not update the state file {ctx.state.path}: {exc}")
    name = protocol_name(protocol)
    fields = {
        "event": "deleted_all",
        "protocol": name,
        "protocol_number": protocol,
        "internal_port": 0,
        "via": "natpmp",
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "local_address": str(local),
    }
    ctx.out.result(fields, f"deleted every NAT-PMP {name} mapping of {local} "
                           f"(PCP mappings are kept)")
    return EXIT_OK


async def _cmd_probe(ctx: _Context) -> int:
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
        "external_address": _address_text(result.external_address),
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
        raise _Failure(f"no answer from gateway {gateway} to PCP or NAT-PMP within "
                       f"{timeout:g} s; is it the right gateway, with NAT-PMP/PCP enabled?",
                       EXIT_TIMEOUT)
    return EXIT_OK


# -- map --hold ------------------------------------------------------------------------------


def _view_fields(event: str, view: ManagedMapping, ctx: _Context,
                 manager: MappingManager) -> dict[str, Any]:
    return _mapping_fields(
        event, protocol=int(view.protocol), internal_port=view.internal_port,
        external_address=view.external_address, external_port=view.external_port,
        lifetime=view.lifetime, via=view.via, gateway=ctx.gateway,
        gateway_port=ctx.conn.gateway_port, local_address=manager.status.local_address,
        epoch=view.epoch)


def _view_record(view: ManagedMapping, ctx: _Context, manager: MappingManager,
                 created: float | None) -> MappingRecord | None:
    local = manager.status.local_address
    if local is None or view.via is None or view.external_port is None:
        return None
    return MappingRecord(
        gateway=ctx.gateway, gateway_port=ctx.conn.gateway_port, local_address=local,
        protocol=int(view.protocol), internal_port=view.internal_port,
        external_port=view.external_port, external_address=view.external_address,
        via=view.via, lifetime=view.lifetime, epoch=view.epoch or 0,
        nonce=view.nonce if view.via == "pcp" else None,
        created=created or time.time(), updated=time.time(),
        requested_lifetime=view.requested_lifetime, pid=os.getpid())


async def _hold(ctx: _Context, record: MappingRecord | None) -> int:
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
        multicast=args.listen_host is None, keep=True, probe_on_start=False)
    key = MappingKey(protocol, port)
    async with manager:
        view = await manager.add(protocol, port, external_port=external_port, nonce=nonce)
        created = time.time()
        new = _view_record(view, ctx, manager, created)
        if new is not None:
            _store(ctx, new)
        fields = _view_fields("mapped", view, ctx, manager)
        ctx.out.result(fields, _mapping_text("mapped", fields))
        if listen and manager.status.listen_error:
            ctx.out.warn(f"not hearing the gateway's announcements: "
                         f"{manager.status.listen_error}")

        def on_event(event: Event) -> None:
            _hold_event(ctx, manager, key, event, created)

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


def _hold_event(ctx: _Context, manager: MappingManager, key: MappingKey, event: Event,
                created: float) -> None:
    view = manager.mappings.get(key)
    name = {MappingRenewed: "renewed", MappingRecovered: "recovered"}.get(type(event))
    if name is not None and view is not None:
        record = _view_record(view, ctx, manager, created)
        if record is not None:
            _store(ctx, record)
        fields = _view_fields(name, view, ctx, manager)
        ctx.out.result(fields, _mapping_text(name, fields))
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
        if view is not None and view.external_address == event.new:
            record = _view_record(view, ctx, manager, created)
            if record is not None:
                _store(ctx, record)
        ctx.out.result({"event": "external_address_changed", **base,
                        "previous_address": str(event.old), "external_address": str(event.new)},
                       f"external address changed: {event.old} -> {event.new}")
    elif isinstance(event, GatewayRestarted):
        ctx.out.result({"event": "gateway_restarted", **base, "epoch": event.epoch},
                       f"the gateway lost its state ({event.protocol} epoch {event.epoch}); "
                       f"asking for {what} again")


async def _release(ctx: _Context, manager: MappingManager, key: MappingKey,
                   timeout: float) -> None:
    """Delete the held mapping as ``map --hold`` ends; keep its record if that fails."""
    if key not in manager.mappings:
        return
    manager.timeout = min(timeout, HOLD_DELETE_TIMEOUT)
    view = manager.mappings[key]
    try:
        await manager.remove(key)
    except NatDeckError as exc:
        # The record stays (no longer held) so that 'natdeck unmap' can try again.
        record = _view_record(view, ctx, manager, None)
        if record is not None:
            _store(ctx, replace(record, pid=None))
        raise _Failure(f"could not delete {key} at the gateway: {exc}; "
                       f"'natdeck unmap {protocol_name(key.protocol)} {key.internal_port}' "
                       "can try again", _exit_code(exc)) from None
    _forget(ctx, key.protocol, key.internal_port)
    fields = _view_fields("deleted", view, ctx, manager)
    ctx.out.result(fields, f"deleted {protocol_name(key.protocol)} {key.internal_port}")


# -- watch -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _WatchState:
    epochs: dict[str, timing.EpochState | None]
    address: IPAddress | None = None
    last: dict[str, IPAddress | None] = field(default_factory=dict)
    """The external address each kind of announcement carried last (None for ANNOUNCE)."""
    printed: int = 0
    heard: int = 0


async def _cmd_watch(ctx: _Context) -> int:
    args = ctx.args
    loop = asyncio.get_running_loop()
    state = _WatchState(epochs={"pcp": None, "natpmp": None})
    wanted = {"auto": ("natpmp", "pcp"), "pcp": ("pcp",), "natpmp": ("natpmp",)}[ctx.conn.via]

    def heard(announcement: Announcement) -> None:
        protocol = "natpmp" if announcement.kind == "natpmp_address" else "pcp"
        now = loop.time()
        rule = timing.EpochRule.PCP if protocol == "pcp" else timing.EpochRule.NATPMP
        seen = timing.observe_epoch(rule, state.epochs[protocol], announcement.epoch, now)
        state.epochs[protocol] = seen.state
        restarted = seen.verdict is timing.EpochVerdict.LOST_STATE
        previous = state.address
        changed = (announcement.external_address is not None and previous is not None
                   and announcement.external_address != previous)
        if announcement.external_address is not None:
            state.address = announcement.external_address
        if protocol not in wanted:
            return
        state.heard += 1
        # RFC 6886 §3.2.1 and RFC 6887 §14.1.3 repeat each announcement (up to ten
        # times); a repeat says nothing new unless its epoch shows another restart.
        repeat = (announcement.kind in state.last and not restarted and not changed
                  and state.last[announcement.kind] == announcement.external_address)
        state.last[announcement.kind] = announcement.external_address
        if repeat and not args.repeats:
            return
        _print_announcement(ctx, announcement, protocol, previous, changed, restarted, repeat)
        state.printed += 1
        if args.count is not None and state.printed >= args.count:
            ctx.stop.set()

    listener = AnnouncementListener(
        ctx.gateway, heard,
        host=None if args.listen_host is None else str(args.listen_host),
        ports=(args.listen_port,) if args.listen_port else ANNOUNCE_PORTS,
        multicast=args.listen_host is None, local_address=ctx.local,
        source_port=ctx.conn.gateway_port)
    async with listener:
        for problem in listener.errors:
            ctx.out.warn(problem)
        if args.timeout is None:
            await ctx.stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), args.timeout)
    if args.timeout is not None and state.heard == 0 and not ctx.stop.is_set():
        raise _Failure(f"no announcement from gateway {ctx.gateway} in {args.timeout:g} s",
                       EXIT_TIMEOUT)
    return EXIT_OK


def _print_announcement(ctx: _Context, announcement: Announcement, protocol: str,
                        previous: IPAddress | None, changed: bool, restarted: bool,
                        repeat: bool) -> None:
    now = dt.datetime.now(dt.UTC)
    fields = {
        "event": "announcement",
        "kind": announcement.kind,
        "protocol": protocol,
        "external_address": _address_text(announcement.external_address),
        "previous_address": _address_text(previous) if changed else None,
        "address_changed": changed,
        "restarted": restarted,
        "repeat": repeat,
        "epoch": announcement.epoch,
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "port": announcement.port,
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if announcement.kind == "natpmp_address":
        text = f"NAT-PMP address announcement: external {announcement.external_address}"
        if changed:
            text += f" (was {previous})"
    else:
        text = "PCP ANNOUNCE"
    text += f", epoch {announcement.epoch}"
    if restarted:
        text += ", the gateway lost its state (mappings must be made again)"
    if repeat:
        text += " (repeat)"
    ctx.out.result(fields, f"{now.astimezone().strftime('%H:%M:%S')} {text}")


# -- running ---------------------------------------------------------------------------------


_COMMANDS = {"map": _cmd_map, "unmap": _cmd_unmap, "probe": _cmd_probe, "watch": _cmd_watch}


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, GatewayTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, NoGatewayError):
        return EXIT_NO_GATEWAY
    return EXIT_FAILURE


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, task: asyncio.Task[Any] | None) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (a second one cancels ``task``); restored on exit."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []

    def handler() -> None:
        if stop.is_set() and task is not None:
            task.cancel()
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signals here: Ctrl-C raises instead
        installed.append((signum, previous))
    try:
        yield
    finally:
        for signum, previous in installed:
            loop.remove_signal_handler(signum)
            with contextlib.suppress(TypeError, ValueError, OSError):
                signal.signal(signum, previous)


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, _Connection] | int:
    parser, commands = _build()
    try:
        args = parser.parse_args(argv)
        conn = _defaults(args)
        _check_args(parser, commands, args, conn)
    except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return args, conn


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Engine logs on stderr: errors only, ``-v`` info, ``-vv`` debug (every packet).

    Undone on exit, so that :func:`main` called in-process leaves logging as it was.
    """
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.ERROR
    root = logging.getLogger()
    statefile_log = logging.getLogger("engine.statefile")
    saved = (root.level, statefile_log.level)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("natdeck: %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # The CLI prints the state file's warnings itself; do not print them twice.
    statefile_log.setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        statefile_log.setLevel(saved[1])


async def main_async(argv: Sequence[str] | None = None, *,
                     state_dir: str | os.PathLike[str] | None = None,
                     stop: asyncio.Event | None = None) -> int:
    """Run a subcommand in the running event loop; returns the exit status.

    ``state_dir`` overrides where the state file lives (else ``$NATDECK_STATE_DIR``
    or the platform's default); setting ``stop`` ends ``map --hold`` and ``watch``
    as SIGINT does. Without a subcommand (the TUI) it returns 2: use :func:`main`.
    """
    parsed = _parse(argv)
    if isinstance(parsed, int):
        return parsed
    args, conn = parsed
    if args.command is None:
        _Output(False).error("the terminal UI runs from main(), not main_async()")
        return EXIT_USAGE
    return await _run(args, conn, state_dir=state_dir, stop=stop)


async def _run(args: argparse.Namespace, conn: _Connection, *,
               state_dir: str | os.PathLike[str] | None, stop: asyncio.Event | None) -> int:
    out = _Output(getattr(args, "json", False))
    stop = stop if stop is not None else asyncio.Event()
    out.on_closed = stop.set
    try:
        gateway, local = _resolve_gateway(conn)
    except NoGatewayError as exc:
        out.error(str(exc))
        return EXIT_NO_GATEWAY
    except ValueError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    ctx = _Context(args, conn, out, StateFile(state_dir), stop, gateway, local)
    command = _COMMANDS[args.command]
    try:
        if args.command == "watch" or (args.command == "map" and args.hold):
            with _stop_on_signals(stop, asyncio.current_task()):
                return await command(ctx)
        return await command(ctx)
    except _Failure as exc:
        out.error(str(exc))
        return exc.code
    except NatDeckError as exc:
        out.error(str(exc))
        return _exit_code(exc)


def _run_tui(args: argparse.Namespace, conn: _Connection) -> int:
    try:
        from tui.launch import run_app
    except ImportError as exc:
        _Output(False).error(f"the terminal UI is not available: {exc}")
        return EXIT_FAILURE
    return int(run_app(gateway=None if conn.gateway is None else str(conn.gateway),
                       local=None if conn.local is None else str(conn.local),
                       gateway_port=conn.gateway_port, demo=args.demo,
                       maps=list(args.maps or ()), keep=args.keep, via=conn.via))


def main(argv: Sequence[str] | None = None, *,
         state_dir: str | os.PathLike[str] | None = None) -> int:
    """The ``natdeck`` console script: parse ``argv``, run, return the exit status."""
    parsed = _parse(argv)
    if isinstance(parsed, int):
        return parsed
    args, conn = parsed
    if args.command is None:
        return _run_tui(args, conn)
    with _logging(conn.verbose):
        try:
            return asyncio.run(_run(args, conn, state_dir=state_dir, stop=None))
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C in a one-shot command, or a second one while --hold deletes.
            _Output(False).error("interrupted")
            return EXIT_INTERRUPTED


def _console() -> None:  # pragma: no cover - the module as a script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _console()
