"""``natdeck``'s arguments: the parser (its subcommands and flags are a contract) and its checks.

Every check here runs before anything is sent; a failure is exit status 2.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NoReturn

from engine.client import DEFAULT_LIFETIME, DEFAULT_TIMEOUT
from engine.protocols import parse_protocol
from engine.transport import SERVER_PORT
from engine.upnp import SSDP_PORT
from engine.wire.addresses import IPAddress, to_address
from tui.exit_codes import EXIT_CODES, EXIT_USAGE

from .validation import RequestError, validate_request

__all__ = ["DEFAULT_LIFETIME", "DEFAULT_TIMEOUT", "PROBE_TIMEOUT", "SERVER_PORT", "Connection",
           "build_parser", "parse"]

#: ``probe`` waits this long by default: a gateway on the link answers in milliseconds.
PROBE_TIMEOUT = 3.0

Via = Literal["auto", "pcp", "natpmp", "upnp"]

_EPILOG = "exit status:\n" + "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())


@dataclass(frozen=True, slots=True)
class Connection:
    """Where to send: the options every subcommand and the TUI share."""

    gateway: IPAddress | None
    gateway_port: int
    local: IPAddress | None
    via: Via
    verbose: int
    ssdp_port: int = SSDP_PORT
    """Where the gateway's UPnP IGD answers SSDP searches (1900; another in tests)."""


# -- argument types ----------------------------------------------------------------------


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
    """``tcp:8080`` -> (6, 8080), for the TUI's ``--map`` (checked further with --via)."""
    proto_text, sep, port_text = text.rpartition(":")
    if not sep or not proto_text:
        raise argparse.ArgumentTypeError(f"expected PROTO:PORT such as tcp:8080, not {text!r}")
    return _protocol_arg(proto_text), _port_arg(port_text)


# -- the parser ----------------------------------------------------------------------------


def _connection_options(parser: argparse.ArgumentParser) -> None:
    """Options both the TUI and every subcommand take.

    Their default is SUPPRESS so that ``natdeck --gateway X probe`` and ``natdeck
    probe --gateway X`` both work: a subparser's defaults would otherwise overwrite
    what the main parser read. :func:`_connection` fills them in afterwards.
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
    parser.add_argument("--via", choices=("auto", "pcp", "natpmp", "upnp"),
                        default=argparse.SUPPRESS,
                        help="protocol: auto (PCP, then NAT-PMP, then UPnP IGD), pcp, natpmp "
                             "or upnp (default: auto)")
    parser.add_argument("--ssdp-port", type=_server_port_arg, default=argparse.SUPPRESS,
                        metavar="N",
                        help=f"the UDP port the gateway's UPnP IGD answers SSDP searches on "
                             f"(default: {SSDP_PORT})")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens on stderr (-vv: every packet)")


def _command_options(parser: argparse.ArgumentParser, *, timeout_help: str) -> None:
    _connection_options(parser)
    parser.add_argument("--timeout", type=_timeout_arg, default=None, metavar="S",
                        help=timeout_help)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object per line and per result")


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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with a usage error as one line and a hint (issue 17), exit 2.

    argparse prints its whole usage block (5-6 lines) before the error; the one line that
    says what is wrong is easier to see alone, and ``--help`` is one word away.
    """

    def error(self, message: str) -> NoReturn:
        reason = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {reason} (see '{self.prog} --help')\n")


class _VersionAction(argparse.Action):
    """``--version``, looking the version up only when asked (importlib.metadata is slow)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        parser.exit(message=f"natdeck {_version()}\n")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """argparse's formatter with the terminal's width found once, without ``shutil``.

    argparse makes a formatter for every argument it adds, and each asks
    ``shutil.get_terminal_size`` (importing shutil, and with it bz2 and lzma): a few
    milliseconds of every ``natdeck map`` for a help text nobody asked for.
    """

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position,
                         _help_width() if width is None else width)


@functools.cache
def _help_width() -> int:
    # As shutil.get_terminal_size: $COLUMNS, else the terminal's, else 80; argparse keeps 2.
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns \
                if sys.__stdout__ is not None else 80
        except (AttributeError, ValueError, OSError):
            columns = 80
    return max(columns - 2, 11)


def build_parser() -> argparse.ArgumentParser:
    """The ``natdeck`` argument parser (subcommand names and flags are a contract)."""
    return _build()[0]


def _wanted_command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: the first word that is one, if any.

    Only that subcommand's arguments need to be built. An option's value that is also a
    command's name (``--via map``) is refused by argparse whatever is built.
    """
    return next((word for word in argv if word in _SUBCOMMANDS), None)


def _build(only: str | None = None, *, every: bool = True
           ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers (which report their own usage errors).

    With ``every=False`` only the subcommand ``only`` gets its arguments (the others keep
    their name and help line, for ``natdeck --help``).
    """
    parser = _Parser(
        prog="natdeck", formatter_class=_Formatter, epilog=_EPILOG,
        description="Map ports on a NAT gateway with NAT-PMP (RFC 6886) and PCP (RFC 6887). "
                    "Without a subcommand, open the terminal UI.")
    _connection_options(parser)
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    tui = parser.add_argument_group("terminal UI (without a subcommand)")
    tui.add_argument("--demo", action="store_true",
                     help="run against a built-in simulated gateway; sends nothing")
    tui.add_argument("--map", dest="maps", action="append", type=_map_spec_arg, default=None,
                     metavar="PROTO:PORT", help="map this at start (repeatable), e.g. tcp:8080")
    tui.add_argument("--keep", action="store_true",
                     help="leave the mappings at the gateway on quit (default: delete them)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    parsers: dict[str, argparse.ArgumentParser] = {}
    for name, (summary, description, add_arguments) in _SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=description,
                                  formatter_class=_Formatter, epilog=_EPILOG)
        if every or only == name:
            add_arguments(sub)
        parsers[name] = sub
    return parser, parsers


_DEFAULT_TIMEOUT_HELP = f"give up after S seconds without an answer (default: {DEFAULT_TIMEOUT:g})"


def _map_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", type=_protocol_arg, metavar="PROTO",
                        help="tcp, udp, or (PCP) a protocol number or name")
    parser.add_argument("port", type=_port_arg, metavar="PORT", help="the internal port")
    parser.add_argument("--external-port", type=_port_arg, default=None, metavar="N",
                        help="the external port to ask for (default: PORT)")
    parser.add_argument("--lifetime", type=_lifetime_arg, default=DEFAULT_LIFETIME,
                        metavar="S", help=f"seconds to ask for (default: {DEFAULT_LIFETIME})")
    parser.add_argument("--hold", action="store_true",
                        help="stay, renewing the mapping, until SIGINT/SIGTERM; then delete it")
    parser.add_argument("--no-listen", action="store_true",
                        help="with --hold: do not listen for the gateway's announcements")
    _listen_options(parser, "with --hold: ")
    _command_options(parser, timeout_help=_DEFAULT_TIMEOUT_HELP)


def _unmap_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("protocol", type=_protocol_arg, metavar="PROTO",
                        help="tcp, udp, or (PCP) a protocol number or name")
    parser.add_argument("port", type=_port_arg, metavar="PORT", nargs="?", default=None,
                        help="the internal port (not with --all)")
    parser.add_argument("--external-port", type=_port_arg, default=None, metavar="N",
                        help="the mapping's external port (default: the stored one; "
                             "another than the stored one is refused)")
    parser.add_argument("--all", action="store_true",
                        help="NAT-PMP: delete every mapping of PROTO (tcp or udp) made "
                             "from this address (RFC 6886 §3.4; IPv4 gateways only)")
    _command_options(parser, timeout_help=_DEFAULT_TIMEOUT_HELP)


def _probe_arguments(parser: argparse.ArgumentParser) -> None:
    _command_options(parser, timeout_help=f"seconds to wait for answers "
                                          f"(default: {PROBE_TIMEOUT:g})")


def _watch_arguments(parser: argparse.ArgumentParser) -> None:
    _listen_options(parser, "")
    parser.add_argument("--count", type=_count_arg, default=None, metavar="N",
                        help="exit after printing N announcements")
    parser.add_argument("--repeats", action="store_true",
                        help="also print repeats of an announcement")
    _command_options(parser, timeout_help="stop after S seconds; exit 3 if nothing was heard "
                                          "(default: watch until interrupted)")


def _interval_arg(text: str) -> float:
    value = _timeout_arg(text)
    if value < 0.1:
        raise argparse.ArgumentTypeError(f"the interval must be at least 0.1 s, not {text}")
    return value


def _list_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--watch", action="store_true",
                        help="print the table, then every mapping that opens, closes or "
                             "changes, until SIGINT/SIGTERM")
    parser.add_argument("--interval", type=_interval_arg, default=None, metavar="S",
                        help="with --watch: seconds between two listings (default: 2)")
    # (--ssdp-port is a connection option of every command.)
    _command_options(parser, timeout_help="seconds to wait for the UPnP IGD's answers "
                                          "(default: 3)")


#: Each subcommand: its help line, its description, and what adds its arguments.
_SUBCOMMANDS: dict[str, tuple[str, str, Callable[[argparse.ArgumentParser], None]]] = {
    "map": (
        "ask for a mapping and print it",
        "Ask the gateway to map PROTO PORT and print the mapping. What renews and deletes it "
        "(the PCP nonce, the UPnP external port) is kept in the state file, so that "
        "'natdeck map' again renews the same mapping and 'natdeck unmap' can delete it.",
        _map_arguments),
    "unmap": (
        "delete a mapping",
        "Delete a mapping, with the nonce 'natdeck map' (or the terminal UI) stored for it, "
        "and report what the gateway holds afterwards: deleted, not held, or unconfirmed "
        "(exit 5) where the gateway cannot be asked.",
        _unmap_arguments),
    "probe": (
        "which protocols the gateway answers",
        "Ask PCP (ANNOUNCE), NAT-PMP (external address) and UPnP IGD (SSDP search, "
        "description, WAN state) at once; print which protocols the gateway answers, the "
        "IGD's name and model, its external address, epoch and round trip. All three are "
        "always asked; --via has no effect.",
        _probe_arguments),
    "watch": (
        "print the gateway's announcements as they come",
        "Listen for the gateway's announcements (NAT-PMP address changes, PCP ANNOUNCE) and "
        "print one line each, noting address changes and restarts. Sends nothing. Repeats "
        "of an announcement are not printed (--repeats prints them). --via pcp or natpmp "
        "shows only that protocol's (UPnP IGD sends none: --via upnp is refused).",
        _watch_arguments),
    "list": (
        "every mapping the gateway holds, whoever made it",
        "List the gateway's whole mapping table through its UPnP IGD (NAT-PMP and PCP "
        "cannot list one; on miniupnpd the three share one table, so PCP and NAT-PMP "
        "mappings of every host are listed too): protocol, ports, internal client, lease, "
        "who made it. --json prints one object per mapping; --watch then prints each "
        "change. A gateway without UPnP IGD is exit 3, one that refuses to list exit 1. "
        "--via and --gateway-port (NAT-PMP/PCP's) have no effect.",
        _list_arguments),
}

def _connection(args: argparse.Namespace) -> Connection:
    return Connection(
        gateway=getattr(args, "gateway", None),
        gateway_port=getattr(args, "gateway_port", SERVER_PORT),
        local=getattr(args, "local", None),
        via=getattr(args, "via", "auto"),
        verbose=getattr(args, "verbose", 0) or 0,
        ssdp_port=getattr(args, "ssdp_port", SSDP_PORT))


def _check(main_parser: argparse.ArgumentParser,
           commands: dict[str, argparse.ArgumentParser], args: argparse.Namespace,
           conn: Connection) -> None:
    """What argparse cannot check alone; every failure exits 2 before anything is sent."""
    parser = commands.get(args.command or "", main_parser)
    if conn.gateway is not None and conn.local is not None \
            and conn.gateway.version != conn.local.version:
        parser.error(f"--gateway {conn.gateway} and --local {conn.local} are not of one "
                     "address family")
    command = args.command
    if conn.gateway is not None and conn.gateway.version == 6:
        _check_ipv6(parser, args, conn)
    if command == "watch" and conn.via == "upnp":
        parser.error("UPnP IGD sends no announcements; watch takes --via auto, pcp or natpmp")
    if command is None:
        for protocol, port in args.maps or ():
            try:
                validate_request(command="map", protocol=protocol, port=port, via=conn.via)
            except RequestError as exc:
                parser.error(f"argument --map: {exc}")
        return
    for flag, given in (("--demo", args.demo), ("--map", args.maps), ("--keep", args.keep)):
        if given:
            parser.error(f"{flag} is for the terminal UI; it does not go with '{command}'")
    if command in ("map", "unmap"):
        try:
            validate_request(command=command, protocol=args.protocol, port=args.port,
                             external_port=args.external_port, via=conn.via,
                             delete_all=command == "unmap" and args.all)
        except RequestError as exc:
            parser.error(str(exc))
    if command == "list" and not args.watch and args.interval is not None:
        parser.error("--interval goes with --watch")
    if command == "map" and not args.hold:
        for flag, value in (("--no-listen", args.no_listen),
                            ("--listen-host", args.listen_host),
                            ("--listen-port", args.listen_port)):
            if value:
                parser.error(f"{flag} goes with --hold")


def _check_ipv6(parser: argparse.ArgumentParser, args: argparse.Namespace,
                conn: Connection) -> None:
    """Refuse, before sending, what an IPv6 gateway cannot do: NAT-PMP (and so ``unmap
    --all``, its delete-all) is IPv4 only, and a UPnP IGD maps ports only for IPv4 hosts
    (the engine would refuse each mapping after the usage checks passed)."""
    if conn.via == "natpmp":
        parser.error("NAT-PMP speaks only IPv4 (RFC 6886); use --via pcp for an IPv6 gateway")
    if args.command == "unmap" and args.all:
        parser.error("unmap --all is NAT-PMP's delete-all, which speaks only IPv4 (RFC 6886); "
                     "an IPv6 gateway has none: unmap each PORT")
    if args.command in ("map", "unmap") and conn.via == "upnp":
        parser.error("UPnP IGD maps ports only for IPv4 hosts; use --via pcp for an IPv6 "
                     "gateway")


def parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Connection] | int:
    """The parsed arguments, or the exit status (2 for a usage error, 0 for --help)."""
    words = sys.argv[1:] if argv is None else list(argv)
    parser, commands = _build(_wanted_command(words), every=False)
    try:
        args, extras = parser.parse_known_args(words)
        if extras:  # said by the subcommand, whose --help lists what it takes
            commands.get(args.command or "", parser).error(
                f"unrecognized arguments: {' '.join(extras)}")
        conn = _connection(args)
        _check(parser, commands, args, conn)
    except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    return args, conn
