"""A real NAT-PMP/PCP gateway (Debian's miniupnpd) inside Linux network namespaces.

The lab is three namespaces joined by two veth pairs::

    client ns                 gateway ns                          wan ns
    lan1 198.18.0.2/24 <----> lan0 198.18.0.1/24
                              wan0 11.0.0.1/24   <---->  wan1 11.0.0.254/24
                              miniupnpd -d (NAT-PMP + PCP on 198.18.0.1:5351)

Why these addresses: miniupnpd refuses a reserved external address (private, 100.64/10,
198.18/15, TEST-NETs), so the WAN side needs a public-looking one; 11.0.0.0/24 lives only on
the two veth ends inside our namespaces, and nothing in the host namespace routes to it. The
LAN side uses the benchmarking range 198.18.0.0/15 (RFC 2544), again only inside namespaces.

Network safety: every address above exists only inside namespaces this module creates, and
every packet a lab sends is sent by a process running inside one of them. Code that runs in
the host namespace must never be handed these addresses (the host would route them to its
real default gateway); :meth:`Lab.client_namespace` exists so in-process code can create its
sockets inside the client namespace instead.

What Debian's miniupnpd 2.3.1 does here (measured; rely on nothing else):

- Epoch = seconds since start; a restart (or a WAN address change) resets it to 0.
- Startup multicasts one PCP ANNOUNCE to 224.0.0.1:5350. SIGUSR1 after a WAN change sends one
  NAT-PMP address notification to ports 5350 and 5351 (carrying the *old* epoch) and one PCP
  ANNOUNCE (epoch 0) -- not the RFC 6886 series of ten.
- With a reserved WAN address it answers public-address requests with result 3 (network
  failure) and sends only the PCP ANNOUNCE.
- With ``console="fast"`` (the default): ~1.5 ms per new mapping and ~2.3 ms per delete with
  fifty rules (a delete walks them all), ~2 ms a request on average; with ``console="slow"`` every
  log line goes to the real /dev/console, 20-180 ms a request depending on the rule count, erratic.
  Each new mapping reads /proc/net/tcp twice: the gateway namespace is built with small socket
  tables (``_GATEWAY_TCP_HASH``), without which each read walks the host's 262,144 buckets
  (~2.2 ms). A mapping for an internal port below 1024 walks all external ports before refusing
  (~2 s, result 2): use ports >= 1024.
- It lets a different PCP nonce replace or delete a mapping; current upstream refuses. Never
  rely on either.
- SIGTERM may take up to ~30 s to be noticed, so the lab stops it with SIGKILL by default.

This module is plain Python (no pytest import) so benchmarks can reuse it. It needs root,
``ip`` (iproute2), ``nft`` (nftables), ``miniupnpd`` (miniupnpd-nftables) and, for the smoke
tests, ``natpmpc``; :func:`ensure_lab_dependencies` installs them with
``.ci/install-lab-deps.sh`` when it can.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import itertools
import json
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, Self

from tests.support import loopback

__all__ = [
    "ANNOUNCEMENT_LISTENER_CODE",
    "CLIENT_ADDRESS",
    "CLIENT_ADDRESS6",
    "GATEWAY_LAN",
    "GATEWAY_LAN6",
    "INITIAL_WAN_ADDRESS",
    "NATPMP_PORT",
    "OTHER_CLIENT_ADDRESS",
    "PCP_ANNOUNCE_PORT",
    "ClientProcess",
    "Console",
    "DnatRule",
    "GatewayConfig",
    "GatewayCounters",
    "Lab",
    "LabCommandError",
    "LabError",
    "LabTimeoutError",
    "NatRule",
    "Pinhole",
    "cleanup_stale_labs",
    "ensure_lab_dependencies",
    "lab_namespaces",
    "parse_nat_rules",
    "parse_pinholes",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTALL_SCRIPT = REPO_ROOT / ".ci" / "install-lab-deps.sh"
REQUIRED_BINARIES = ("ip", "nft", "miniupnpd", "natpmpc", "upnpc")

GATEWAY_LAN = "198.18.0.1"
CLIENT_ADDRESS = "198.18.0.2"
#: "Another host" on the LAN (see :meth:`Lab.as_another_host`).
OTHER_CLIENT_ADDRESS = "198.18.0.3"
LAN_PREFIX_LENGTH = 24
INITIAL_WAN_ADDRESS = "11.0.0.1"
WAN_PREFIX_LENGTH = 24
# IPv6 (Lab.create(ipv6=True)): the documentation prefix (RFC 3849), again only inside our
# namespaces. miniupnpd serves PCP on [::]:5351 once its LAN side has a global address; a MAP
# from an IPv6 client opens a pinhole (an accept rule in its forward chain), no NAT.
LAN6_PREFIX = "2001:db8:0:1::/64"
LAN6_PREFIX_LENGTH = 64
GATEWAY_LAN6 = "2001:db8:0:1::1"
CLIENT_ADDRESS6 = "2001:db8:0:1::2"
WAN6_ADDRESS = "2001:db8:0:2::1"
WAN6_PEER_ADDRESS = "2001:db8:0:2::fe"
#: The same addresses serve :meth:`Lab.ipv6_addresses` (IPv6 for one block of a test).
GATEWAY_WAN6 = WAN6_ADDRESS

# RFC 6886 section 3.2 / RFC 6887 section 19.1: the server listens on 5351; clients listen on
# 5350 for unsolicited announcements (miniupnpd also sends NAT-PMP ones to 5351).
NATPMP_PORT = 5351
PCP_ANNOUNCE_PORT = 5350

NAMESPACE_PREFIX = "natdeck-"
_ROLES = ("gw", "cl", "wan")
# Interface names live inside private namespaces, so they never collide between labs.
GW_LAN_IF = "lan0"
CLIENT_IF = "lan1"
GW_WAN_IF = "wan0"
WAN_PEER_IF = "wan1"

# The table/chain names miniupnpd 2.3.1 (nftables backend) uses by default: upnp_table_name and
# upnp_nat_table_name both default to "filter", family inet (see /etc/miniupnpd/nft_init.sh).
MINIUPNPD_TABLE = "filter"
MINIUPNPD_FILTER_CHAIN = "miniupnpd"
MINIUPNPD_DNAT_CHAIN = "prerouting_miniupnpd"
MINIUPNPD_SNAT_CHAIN = "postrouting_miniupnpd"
MINIUPNPD_CHAINS = (MINIUPNPD_FILTER_CHAIN, MINIUPNPD_DNAT_CHAIN, MINIUPNPD_SNAT_CHAIN)
# Our own table for loss injection and packet counters; separate so flushing it never touches
# what miniupnpd owns.
LAB_TABLE = "natdeck_lab"

_READY_MARKER = f"Listening for NAT-PMP/PCP traffic on port {NATPMP_PORT}"
#: What a UPnP-only miniupnpd (``enable_natpmp=no``) logs once it serves.
_UPNP_READY_MARKER = "HTTP listening on port"
_START_MARKER = "=== natdeck lab: starting miniupnpd ==="
_CLONE_NEWNET = 0x40000000
_SILENCE_CONSOLE_AND_EXEC = (
    "mount --bind /dev/null /dev/console"
    " || echo 'natdeck lab: cannot silence /dev/console; miniupnpd will be slow' >&2;"
    ' exec "$@"'
)
_KEEP_CONSOLE_AND_EXEC = 'exec "$@"'
#: How fast miniupnpd answers (see :attr:`Lab.console`).
Console = Literal["fast", "slow"]
#: TCP/UDP socket hash sizes of the gateway namespace. miniupnpd reads /proc/net/tcp (or udp)
#: twice per new mapping to see whether the port is in use, and the kernel walks every bucket:
#: with the host's 262,144 that is ~2.2 ms a read, half of a fast gateway's service time. A
#: namespace created while its creator's tcp_child_ehash_entries is set gets a table that small.
_GATEWAY_TCP_HASH = 1024
_GATEWAY_UDP_HASH = 1024
_sequence = itertools.count()


class LabError(RuntimeError):
    """The lab could not be built, driven or torn down."""


class LabTimeoutError(LabError):
    """Something in the lab did not happen within the allowed time."""


class LabCommandError(LabError):
    """A command run for the lab exited non-zero."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = stderr.strip() or stdout.strip()
        super().__init__(f"command {' '.join(self.argv)!r} exited {returncode}: {detail}")


# --------------------------------------------------------------------------- dependencies


def _which(name: str) -> str | None:
    """Find a binary on PATH or in the sbin directories (which a non-login PATH may lack)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search)


def _missing_binaries() -> list[str]:
    return [name for name in REQUIRED_BINARIES if _which(name) is None]


def ensure_lab_dependencies() -> str | None:
    """Make sure the lab can be built; return None if so, else a reason why not.

    If binaries are missing and we are root on a machine with apt-get, runs
    ``.ci/install-lab-deps.sh`` once to install them.
    """
    if not sys.platform.startswith("linux"):
        return f"the lab needs Linux network namespaces (platform is {sys.platform})"
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables, miniupnpd)"
    missing = _missing_binaries()
    if not missing:
        return None
    if _which("apt-get") is None or not INSTALL_SCRIPT.exists():
        return f"missing {', '.join(missing)} and no apt-get/{INSTALL_SCRIPT.name} to install them"
    try:
        result = subprocess.run(
            ["bash", str(INSTALL_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"{INSTALL_SCRIPT.name} timed out installing {', '.join(missing)}"
    missing = _missing_binaries()
    if result.returncode != 0 or missing:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
        return (
            f"{INSTALL_SCRIPT.name} failed (exit {result.returncode}); "
            f"still missing {missing}: {tail}"
        )
    return None


def _binary(name: str) -> str:
    path = _which(name)
    if path is None:
        raise LabError(f"{name} not found; run .ci/install-lab-deps.sh")
    return path


# --------------------------------------------------------------------------- commands


def _run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float = 30.0,
    check: bool = True,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
            cwd=cwd,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabTimeoutError(f"command {' '.join(argv)!r} timed out after {timeout} s") from exc
    if check and result.returncode != 0:
        raise LabCommandError(argv, result.returncode, result.stdout, result.stderr)
    return result


def _ip_batch(lines: Sequence[str], *, namespace: str | None = None, force: bool = False) -> None:
    """Run several ``ip`` commands in one process (each exec costs milliseconds)."""
    argv = [_binary("ip")]
    if namespace is not None:
        argv += ["-n", namespace]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    _run(argv, input="\n".join(lines) + "\n", check=not force)


def lab_namespaces() -> list[str]:
    """Names of all network namespaces that look like they belong to a lab (any process)."""
    result = _run([_binary("ip"), "netns", "list"], check=False)
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
    return [name for name in names if name.startswith(NAMESPACE_PREFIX)]


def _namespace_pids(namespace: str) -> list[int]:
    result = _run([_binary("ip"), "netns", "pids", namespace], check=False)
    return [int(token) for token in result.stdout.split() if token.isdigit()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(namespace: str, timeout: float = 5.0) -> None:
    """SIGKILL every process living in one of *our* namespaces, and wait until they are gone."""
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in _namespace_pids(namespace) if pid != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # Reap any that are our own children so they do not linger as zombies.
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise LabTimeoutError(f"processes {pids} in {namespace} survived SIGKILL")
        time.sleep(0.01)


def cleanup_stale_labs() -> list[str]:
    """Delete lab namespaces whose owning process (the pid in their name) no longer exists.

    A test run killed with SIGKILL cannot tear its lab down; the next run calls this so such
    leftovers (and the miniupnpd inside them) do not pile up. Returns the names deleted.
    """
    removed = []
    for name in lab_namespaces():
        parts = name.split("-")
        # natdeck-<role>-<pid>-<token>
        if len(parts) != 4 or parts[1] not in _ROLES or not parts[2].isdigit():
            continue
        owner = int(parts[2])
        if owner == os.getpid() or _pid_alive(owner):
            continue
        with contextlib.suppress(LabError):
            _kill_namespace_processes(name)
        _run([_binary("ip"), "netns", "delete", name], check=False)
        removed.append(name)
    return removed


@contextlib.contextmanager
def _thread_in_namespace(namespace: str) -> Iterator[None]:
    """Switch the *calling thread* into a network namespace, and back afterwards.

    setns(2) with CLONE_NEWNET only affects the calling thread, and a socket keeps the
    namespace it was created in, so sockets created inside the block talk from that namespace.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise LabError(f"setns({namespace}) failed: {os.strerror(errno)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(original, _CLONE_NEWNET) != 0:
                # Staying in the lab namespace would silently break everything after; be loud.
                errno = ctypes.get_errno()
                raise LabError(f"could not return to the original namespace: {os.strerror(errno)}")
    finally:
        os.close(original)


# --------------------------------------------------------------------------- nftables parsing

_PROTOCOL_NAMES = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132, "udplite": 136, "dccp": 33}


@dataclass(frozen=True)
class NatRule:
    """One NAT rule from a miniupnpd chain, as the kernel holds it (fields it matches on).

    ``source_*``/``destination_*`` are what the rule matches (None: not matched); ``to_*`` is
    the dnat/snat target. Debian's miniupnpd 2.3.1 writes PCP PEER snat rules that match the
    reverse direction (daddr = internal host, dport = internal port), so read them literally.
    """

    chain: str
    handle: int
    action: Literal["dnat", "snat"]
    protocol: int | None
    to_address: str
    to_port: int | None
    input_interface: str | None = None
    source_address: str | None = None
    destination_address: str | None = None
    source_port: int | None = None
    destination_port: int | None = None


@dataclass(frozen=True)
class DnatRule:
    """A port mapping as the gateway really forwards it (from ``prerouting_miniupnpd``)."""

    protocol: int
    """IP protocol number (6 TCP, 17 UDP), comparable with ``engine.protocols.Protocol``."""
    external_port: int
    internal_address: str
    internal_port: int
    remote_address: str | None = None
    """Only packets from this remote host are forwarded (PCP FILTER / UPnP RemoteHost)."""

    @property
    def protocol_name(self) -> str:
        """Lower-case name ("tcp", "udp"), or the number as text for anything else."""
        for name, number in _PROTOCOL_NAMES.items():
            if number == self.protocol:
                return name
        return str(self.protocol)


def upnp_lease(read_back: int, asked: int) -> bool:
    """Whether a UPnP lease natdeck read back from miniupnpd is the one it asked for.

    natdeck reports the lease the gateway holds (GetSpecificPortMappingEntry after the add),
    and miniupnpd counts it in whole seconds of its clock: when a second ticks between the
    add and the read-back, 3600 asked is 3599 held. One second less is the same lease."""
    return asked - 1 <= read_back <= asked


def _as_ipv4(value: Any) -> str | None:
    """nft shows raw ``@nh,96,32`` matches as integers and ``ip saddr`` ones as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(ipaddress.IPv4Address(value))
    if isinstance(value, str):
        return str(ipaddress.ip_address(value))
    return None


def _as_protocol(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _PROTOCOL_NAMES.get(value.lower(), int(value) if value.isdigit() else None)
    return None


def _as_port(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _equality_matches(
    expressions: Any,
) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None, Any]]:
    """(meta, payload, value) of every ``==`` match among a rule's ``expr`` list (nft JSON)."""
    for expression in expressions if isinstance(expressions, list) else []:
        match = expression.get("match") if isinstance(expression, dict) else None
        if not isinstance(match, dict) or match.get("op", "==") != "==":
            continue
        left = match.get("left")
        if not isinstance(left, dict):
            continue
        meta, payload = left.get("meta"), left.get("payload")
        yield (meta if isinstance(meta, dict) else None,
               payload if isinstance(payload, dict) else None, match.get("right"))


def _parse_rule(chain: str, rule: dict[str, Any]) -> NatRule | None:
    matched: dict[str, Any] = {}
    target: tuple[Literal["dnat", "snat"], dict[str, Any]] | None = None
    for expression in rule.get("expr", []):
        for action in ("dnat", "snat"):
            if isinstance(expression, dict) and isinstance(expression.get(action), dict):
                target = ("dnat" if action == "dnat" else "snat", expression[action])
    for meta, payload, right in _equality_matches(rule.get("expr")):
        if meta is not None:
            key = meta.get("key")
            if key in ("iif", "iifname"):
                matched["input_interface"] = str(right)
            elif key == "l4proto":
                matched["protocol"] = _as_protocol(right)
        elif payload is not None:
            base, offset, length = payload.get("base"), payload.get("offset"), payload.get("len")
            proto, fieldname = payload.get("protocol"), payload.get("field")
            # Raw network-header offsets (bits) that miniupnpd uses: 72 = IPv4 protocol,
            # 96 = source address, 128 = destination address (RFC 791 header layout).
            if (base, offset, length) == ("nh", 72, 8) or (proto, fieldname) == ("ip", "protocol"):
                matched["protocol"] = _as_protocol(right)
            elif (base, offset, length) == ("nh", 96, 32) or (proto, fieldname) == ("ip", "saddr"):
                matched["source_address"] = _as_ipv4(right)
            elif (base, offset, length) == ("nh", 128, 32) or (proto, fieldname) == (
                "ip",
                "daddr",
            ):
                matched["destination_address"] = _as_ipv4(right)
            elif proto in ("th", "tcp", "udp") and fieldname in ("sport", "dport"):
                key = "source_port" if fieldname == "sport" else "destination_port"
                matched[key] = _as_port(right)
                if proto in ("tcp", "udp") and "protocol" not in matched:
                    matched["protocol"] = _PROTOCOL_NAMES[proto]
    if target is None:
        return None
    action, spec = target
    address = spec.get("addr")
    if not isinstance(address, str):
        return None
    return NatRule(
        chain=chain,
        handle=int(rule.get("handle", -1)),
        action=action,
        protocol=matched.get("protocol"),
        to_address=address,
        to_port=_as_port(spec.get("port")),
        input_interface=matched.get("input_interface"),
        source_address=matched.get("source_address"),
        destination_address=matched.get("destination_address"),
        source_port=matched.get("source_port"),
        destination_port=matched.get("destination_port"),
    )


def parse_nat_rules(nft_json: str, chain: str) -> list[NatRule]:
    """Parse ``nft -j list ...`` output into the NAT rules of one chain (pure function)."""
    document = json.loads(nft_json)
    rules = []
    for item in document.get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if isinstance(rule, dict) and rule.get("chain") == chain:
            parsed = _parse_rule(chain, rule)
            if parsed is not None:
                rules.append(parsed)
    return rules


def _dnat_from(rule: NatRule) -> DnatRule | None:
    if rule.action != "dnat" or rule.protocol is None or rule.destination_port is None:
        return None
    return DnatRule(
        protocol=rule.protocol,
        external_port=rule.destination_port,
        internal_address=rule.to_address,
        internal_port=rule.to_port if rule.to_port is not None else rule.destination_port,
        remote_address=rule.source_address,
    )


@dataclass(frozen=True)
class Pinhole:
    """An IPv6 pinhole as the gateway really holds it: an ``accept`` rule in miniupnpd's
    forward chain (a PCP MAP from an IPv6 client; no NAT, the external port is the internal)."""

    protocol: int
    """IP protocol number (6 TCP, 17 UDP)."""
    address: str
    """The internal host (IPv6, compressed form) the rule lets packets through to."""
    port: int
    input_interface: str | None = None


def _as_ipv6(value: Any) -> str | None:
    """nft shows a raw ``@nh,192,128`` match as a hex string, ``ip6 daddr`` as text."""
    if isinstance(value, str) and value.startswith("0x"):
        return str(ipaddress.IPv6Address(int(value, 16)))
    if isinstance(value, str) and ":" in value:
        return str(ipaddress.IPv6Address(value))
    return None


def parse_pinholes(nft_json: str, chain: str = "miniupnpd") -> list[Pinhole]:
    """The IPv6 accept rules of one chain of ``nft -j list ...`` output (pure function).

    miniupnpd 2.3.1 writes ``iif "wan0" th dport P @nh,192,128 ADDR @nh,48,8 PROTO accept``:
    raw offsets into the IPv6 header (RFC 8200 section 3: next header at bit 48, destination
    address at bit 192).
    """
    pinholes = []
    for item in json.loads(nft_json).get("nftables", []):
        rule = item.get("rule") if isinstance(item, dict) else None
        if not isinstance(rule, dict) or rule.get("chain") != chain:
            continue
        expressions = rule.get("expr", [])
        if not any(isinstance(e, dict) and "accept" in e for e in expressions):
            continue
        found: dict[str, Any] = {}
        for meta, payload, right in _equality_matches(expressions):
            if meta is not None and meta.get("key") in ("iif", "iifname"):
                found["input_interface"] = str(right)
            elif meta is not None and meta.get("key") == "l4proto":
                found["protocol"] = _as_protocol(right)
            elif payload is not None:
                place = (payload.get("base"), payload.get("offset"), payload.get("len"))
                field_of = (payload.get("protocol"), payload.get("field"))
                if place == ("nh", 192, 128) or field_of == ("ip6", "daddr"):
                    found["address"] = _as_ipv6(right)
                elif place == ("nh", 48, 8) or field_of == ("ip6", "nexthdr"):
                    found["protocol"] = _as_protocol(right)
                elif field_of[1] == "dport" and field_of[0] in ("th", "tcp", "udp"):
                    found["port"] = _as_port(right)
                    if field_of[0] in _PROTOCOL_NAMES:
                        found.setdefault("protocol", _PROTOCOL_NAMES[field_of[0]])
        if found.get("address") and found.get("port") is not None and found.get("protocol"):
            pinholes.append(Pinhole(found["protocol"], found["address"], found["port"],
                                    found.get("input_interface")))
    return pinholes


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GatewayConfig:
    """miniupnpd settings the lab writes into its config file.

    Defaults are miniupnpd's own (a stock router): PCP lifetimes clamped to 120..86400 s,
    secure mode on (a client may only map to its own address).
    """

    min_lifetime: int = 120
    max_lifetime: int = 86400
    secure_mode: bool = True
    pcp_allow_thirdparty: bool = False
    extra_lines: tuple[str, ...] = ()
    """Raw config lines appended before the permission rules."""
    enable_upnp: bool = False
    """UPnP IGD (SSDP on 1900, HTTP on ``http_port``): off in the stock lab."""
    enable_natpmp: bool = True
    """NAT-PMP and PCP on 5351; ``False`` makes a UPnP-only router (nothing on 5351)."""
    force_igd_desc_v1: bool = False
    """Announce IGDv1 (WANIPConnection:1, no AddAnyPortMapping/GetListOfPortMappings)."""
    uuid: str | None = None
    """A fixed device UUID (keeps UPnP USNs stable); ``None``: a fresh one per start."""
    http_port: int | None = None
    """A fixed UPnP HTTP port (keeps the description URL stable); ``None``: miniupnpd picks."""
    ipv6: bool = False
    """Serve IPv6 too (``ipv6_disable=no``): with :meth:`Lab.ipv6_addresses`, the IGD answers on
    its LAN IPv6 address and opens pinholes (accept rules in its filter chain)."""
    permissions: tuple[str, ...] = (
        "allow 1024-65535 198.18.0.0/15 1024-65535",
        "deny 0-65535 0.0.0.0/0 0-65535",
    )

    def render(self, *, lease_file: Path) -> str:
        """The miniupnpd.conf text for this lab."""
        lines = [
            f"ext_ifname={GW_WAN_IF}",
            f"listening_ip={GW_LAN_IF}",
            f"enable_upnp={'yes' if self.enable_upnp else 'no'}",
            f"enable_natpmp={'yes' if self.enable_natpmp else 'no'}",
            f"ipv6_disable={'no' if self.ipv6 else 'yes'}",
            f"secure_mode={'yes' if self.secure_mode else 'no'}",
            f"pcp_allow_thirdparty={'yes' if self.pcp_allow_thirdparty else 'no'}",
            "system_uptime=no",
            f"min_lifetime={self.min_lifetime}",
            f"max_lifetime={self.max_lifetime}",
            f"lease_file={lease_file}",
            f"uuid={self.uuid or uuid.uuid4()}",
            *([f"http_port={self.http_port}"] if self.http_port is not None else []),
            *(["force_igd_desc_v1=yes"] if self.force_igd_desc_v1 else []),
            *self.extra_lines,
            *self.permissions,
        ]
        return "\n".join(lines) + "\n"


def _nft_base_ruleset() -> str:
    """The chains miniupnpd expects, plus a stock-router NAT, plus our loss/counter table."""
    return f"""
table inet {MINIUPNPD_TABLE} {{
    chain {MINIUPNPD_FILTER_CHAIN} {{
    }}
    chain {MINIUPNPD_DNAT_CHAIN} {{
    }}
    chain {MINIUPNPD_SNAT_CHAIN} {{
    }}
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        iifname "{GW_LAN_IF}" accept
        jump {MINIUPNPD_FILTER_CHAIN}
    }}
    chain prerouting {{
        type nat hook prerouting priority -100; policy accept;
        jump {MINIUPNPD_DNAT_CHAIN}
    }}
    chain postrouting {{
        type nat hook postrouting priority 100; policy accept;
        jump {MINIUPNPD_SNAT_CHAIN}
        oifname "{GW_WAN_IF}" masquerade
    }}
}}
table inet {LAB_TABLE} {{
    counter requests_received {{
    }}
    counter requests_dropped {{
    }}
    counter responses_sent {{
    }}
    counter responses_dropped {{
    }}
    chain loss_in {{
    }}
    chain loss_out {{
    }}
    chain input {{
        type filter hook input priority -10; policy accept;
        udp dport {NATPMP_PORT} counter name requests_received
        udp dport {NATPMP_PORT} jump loss_in
    }}
    chain output {{
        type filter hook output priority -10; policy accept;
        udp sport {NATPMP_PORT} counter name responses_sent
        udp sport {NATPMP_PORT} jump loss_out
    }}
}}
"""


@dataclass(frozen=True)
class GatewayCounters:
    """Packet counts at the gateway's port 5351 (since the last reset).

    ``requests_received`` counts every datagram arriving for port 5351, including those the loss
    rule then drops; ``responses_sent`` counts every datagram miniupnpd sends from port 5351
    (answers *and* multicast announcements), including those the loss rule then drops.
    """

    requests_received: int
    requests_dropped: int
    responses_sent: int
    responses_dropped: int


# --------------------------------------------------------------------------- client processes

_EOF = object()


class ClientProcess:
    """A long-running process in a lab namespace that speaks line-delimited JSON.

    Each line the process prints on stdout is parsed as JSON and queued; :meth:`send` writes one
    JSON line to its stdin. Non-JSON stdout lines are kept in :attr:`stray_output`.
    """

    def __init__(self, popen: subprocess.Popen[str], description: str) -> None:
        self._popen = popen
        self.description = description
        self._messages: queue.Queue[object] = queue.Queue()
        self._stderr: list[str] = []
        self.stray_output: list[str] = []
        if popen.stdout is None or popen.stderr is None:
            raise LabError("ClientProcess needs stdout and stderr pipes")
        self._threads = [
            threading.Thread(target=self._read_stdout, args=(popen.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(popen.stderr,), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def pid(self) -> int:
        """The process id (of the program itself: ``ip netns exec`` execs, it does not fork)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status, or None while running."""
        return self._popen.poll()

    @property
    def stderr(self) -> str:
        """Everything the process wrote to stderr so far."""
        return "".join(self._stderr)

    def _read_stdout(self, stream: IO[str]) -> None:
        for line in stream:
            text = line.strip()
            if not text:
                continue
            try:
                self._messages.put(json.loads(text))
            except json.JSONDecodeError:
                self.stray_output.append(line)
        self._messages.put(_EOF)

    def _read_stderr(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    def send(self, message: Any) -> None:
        """Write one JSON line to the process's stdin."""
        stdin = self._popen.stdin
        if stdin is None or stdin.closed:
            raise LabError(f"{self.description}: stdin is closed")
        try:
            stdin.write(json.dumps(message) + "\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:
            raise LabError(f"{self.description} is gone: {self.stderr[-2000:]}") from exc

    def receive(self, timeout: float = 5.0) -> Any:
        """The next JSON message, waiting up to *timeout* seconds."""
        try:
            message = self._messages.get(timeout=timeout)
        except queue.Empty:
            raise LabTimeoutError(
                f"{self.description}: no message within {timeout} s; stderr: {self.stderr[-2000:]}"
            ) from None
        if message is _EOF:
            self._messages.put(_EOF)  # later calls see the end too
            self._popen.wait(timeout=5)
            raise LabError(
                f"{self.description} exited ({self._popen.returncode}); "
                f"stderr: {self.stderr[-2000:]}"
            )
        return message

    def receive_until(self, predicate: Callable[[Any], bool], timeout: float = 5.0) -> list[Any]:
        """Collect messages until one satisfies *predicate* (included); all of them, in order."""
        deadline = time.monotonic() + timeout
        collected: list[Any] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabTimeoutError(
                    f"{self.description}: condition not met within {timeout} s; got {collected!r}"
                )
            message = self.receive(timeout=remaining)
            collected.append(message)
            if predicate(message):
                return collected

    def drain(self) -> list[Any]:
        """Messages already received and not yet read (does not wait)."""
        drained: list[Any] = []
        while True:
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return drained
            if message is _EOF:
                self._messages.put(_EOF)
                return drained
            drained.append(message)

    def close(self, timeout: float = 2.0) -> int:
        """Close stdin (the polite "please exit"), then kill if needed; return the exit status."""
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(OSError, ValueError):
                self._popen.stdin.close()
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait(timeout=5)
        for thread in self._threads:
            thread.join(timeout=1)
        return self._popen.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# A client-namespace process that reports every datagram arriving on 5350 and 5351 for the
# all-hosts group 224.0.0.1 (RFC 6886 section 3.2.1, RFC 6887 section 14.1.1). Prints
# {"event": "ready"} once joined, then one {"port", "source", "data"} line per datagram; exits
# when stdin closes.
ANNOUNCEMENT_LISTENER_CODE = r"""
import json, select, socket, struct, sys
interface_address = sys.argv[1]
sockets = []
for port in (5350, 5351):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    membership = struct.pack(
        "4s4s", socket.inet_aton("224.0.0.1"), socket.inet_aton(interface_address))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    sockets.append(s)
print(json.dumps({"event": "ready"}), flush=True)
while True:
    readable, _, _ = select.select(sockets + [sys.stdin], [], [])
    for r in readable:
        if r is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
            continue
        data, source = r.recvfrom(2048)
        print(json.dumps({"event": "datagram", "port": r.getsockname()[1],
                          "source": list(source), "data": data.hex()}), flush=True)
"""


# --------------------------------------------------------------------------- the lab


@dataclass
class Lab:
    """A miniupnpd gateway, a client and a WAN peer in three fresh network namespaces.

    Build with :meth:`create` (or use as a context manager); always :meth:`destroy`.
    """

    gateway_ns: str
    client_ns: str
    wan_ns: str
    workdir: Path
    config: GatewayConfig = field(default_factory=GatewayConfig)
    gateway_lan: str = GATEWAY_LAN
    client_address: str = CLIENT_ADDRESS
    wan_address: str = INITIAL_WAN_ADDRESS
    """The gateway's current external address (changes with :meth:`change_wan_address`)."""
    wan_peer_address: str = "11.0.0.254"
    """An address of the WAN namespace on the gateway's external subnet (a host "on the
    Internet" that can reach mapped ports)."""
    ipv6: bool = False
    """Whether the LAN has global IPv6 addresses and miniupnpd serves PCP over IPv6 (fixed at
    :meth:`create`)."""
    console: Console = "fast"
    """``"fast"``: miniupnpd's log lines go to /dev/null (~2.5 ms a request on this machine);
    ``"slow"``: to the real /dev/console, a serial port here (60-180 ms a request, erratic), as a
    router that logs to a slow flash or console does. Takes effect at the next (re)start."""
    _base_config: GatewayConfig = field(init=False, repr=False)
    _base_console: Console = field(init=False, repr=False)
    _gateway: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workers: list[ClientProcess] = field(default_factory=list, init=False, repr=False)
    _loss: tuple[int, str] = field(default=(0, "requests"), init=False, repr=False)
    _destroyed: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        # What reset() returns to after a test ran the gateway with another config.
        self._base_config = self.config
        self._base_console = self.console

    # ---- building and tearing down

    @classmethod
    def create(cls, config: GatewayConfig | None = None, *, console: Console = "fast",
               ipv6: bool = False) -> Lab:
        """Build the namespaces, veths, nftables state, and start miniupnpd.

        ``console`` sets how fast miniupnpd answers (:attr:`console`); ``ipv6`` gives the LAN
        global IPv6 addresses (:data:`GATEWAY_LAN6`, :data:`CLIENT_ADDRESS6`) and lets
        miniupnpd serve PCP on [::]:5351 too. Raises :class:`LabError` (after cleaning up
        whatever it built) if anything fails.
        """
        reason = ensure_lab_dependencies()
        if reason is not None:
            raise LabError(reason)
        cleanup_stale_labs()
        token = f"{os.getpid()}-{next(_sequence)}{secrets.token_hex(2)}"
        lab = cls(
            gateway_ns=f"{NAMESPACE_PREFIX}gw-{token}",
            client_ns=f"{NAMESPACE_PREFIX}cl-{token}",
            wan_ns=f"{NAMESPACE_PREFIX}wan-{token}",
            workdir=Path(tempfile.mkdtemp(prefix="natdeck-lab-")),
            config=config or GatewayConfig(),
            console=console,
            ipv6=ipv6,
        )
        atexit.register(lab.destroy)
        try:
            lab._build()
            lab.start_gateway()
        except BaseException:
            lab.destroy()
            raise
        return lab

    def _build(self) -> None:
        gw, cl, wan = self.gateway_ns, self.client_ns, self.wan_ns
        # One ip process creates the client and WAN namespaces; the gateway's is created from
        # inside the WAN one (a child process inherits its thread's namespace), whose
        # tcp_child_ehash_entries then sizes the gateway's socket tables (_GATEWAY_TCP_HASH).
        _ip_batch([f"netns add {cl}", f"netns add {wan}"])
        self.run_in_wan(["sysctl", "-qw", f"net.ipv4.tcp_child_ehash_entries={_GATEWAY_TCP_HASH}",
                         f"net.ipv4.udp_child_hash_entries={_GATEWAY_UDP_HASH}"], check=True)
        with _thread_in_namespace(wan):
            _ip_batch([f"netns add {gw}"])
        # Each veth end created directly inside its namespace (the host never sees them).
        _ip_batch(
            [
                f"link add {GW_LAN_IF} netns {gw} type veth peer name {CLIENT_IF} netns {cl}",
                f"link add {GW_WAN_IF} netns {gw} type veth peer name {WAN_PEER_IF} netns {wan}",
            ]
        )
        # nodad: the addresses are usable at once (duplicate detection would hold them ~1 s).
        v6 = self.ipv6
        _ip_batch(
            [
                "link set lo up",
                f"addr add {self.gateway_lan}/{LAN_PREFIX_LENGTH} dev {GW_LAN_IF}",
                f"addr add {self.wan_address}/{WAN_PREFIX_LENGTH} dev {GW_WAN_IF}",
                *([f"addr add {GATEWAY_LAN6}/{LAN6_PREFIX_LENGTH} dev {GW_LAN_IF} nodad",
                   f"addr add {WAN6_ADDRESS}/{LAN6_PREFIX_LENGTH} dev {GW_WAN_IF} nodad"]
                  if v6 else []),
                f"link set {GW_LAN_IF} up",
                f"link set {GW_WAN_IF} up",
            ],
            namespace=gw,
        )
        _ip_batch(
            [
                "link set lo up",
                f"addr add {self.client_address}/{LAN_PREFIX_LENGTH} dev {CLIENT_IF}",
                *([f"addr add {CLIENT_ADDRESS6}/{LAN6_PREFIX_LENGTH} dev {CLIENT_IF} nodad"]
                  if v6 else []),
                f"link set {CLIENT_IF} up",
                f"route add default via {self.gateway_lan}",
                *([f"route add ::/0 via {GATEWAY_LAN6}"] if v6 else []),
            ],
            namespace=cl,
        )
        _ip_batch(
            [
                "link set lo up",
                f"addr add {self.wan_peer_address}/{WAN_PREFIX_LENGTH} dev {WAN_PEER_IF}",
                *([f"addr add {WAN6_PEER_ADDRESS}/{LAN6_PREFIX_LENGTH} dev {WAN_PEER_IF} nodad"]
                  if v6 else []),
                f"link set {WAN_PEER_IF} up",
                *([f"route add {LAN6_PREFIX} via {WAN6_ADDRESS}"] if v6 else []),
            ],
            namespace=wan,
        )
        self.run_in_gateway(["sysctl", "-qw", "net.ipv4.ip_forward=1",
                             *(["net.ipv6.conf.all.forwarding=1"] if v6 else [])], check=True)
        self.nft("-f", "-", input=_nft_base_ruleset())

    def destroy(self) -> None:
        """Stop every process, delete the namespaces (and so the veths) and the temp dir.

        Safe to call more than once and on a half-built lab. Raises :class:`LabError` at the end
        if something could not be removed.
        """
        if self._destroyed:
            return
        self._destroyed = True
        atexit.unregister(self.destroy)
        problems: list[str] = []
        for worker in self._workers:
            with contextlib.suppress(Exception):
                worker.close(timeout=0.5)
        self._workers.clear()
        try:
            self.stop_gateway()
        except Exception as exc:
            problems.append(f"stopping miniupnpd: {exc}")
        existing = set(lab_namespaces())
        mine = [ns for ns in (self.gateway_ns, self.client_ns, self.wan_ns) if ns in existing]
        for namespace in mine:
            try:
                _kill_namespace_processes(namespace)
            except LabError as exc:
                problems.append(str(exc))
        if mine:
            _ip_batch([f"netns delete {ns}" for ns in mine], force=True)
        left = set(lab_namespaces()) & set(mine)
        if left:
            problems.append(f"namespaces left behind: {sorted(left)}")
        shutil.rmtree(self.workdir, ignore_errors=True)
        if self.workdir.exists():
            problems.append(f"could not remove {self.workdir}")
        if problems:
            raise LabError("lab teardown incomplete: " + "; ".join(problems))

    @property
    def namespaces(self) -> tuple[str, str, str]:
        """(gateway, client, wan) namespace names."""
        return (self.gateway_ns, self.client_ns, self.wan_ns)

    @property
    def destroyed(self) -> bool:
        """True once :meth:`destroy` ran."""
        return self._destroyed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    # ---- running things in namespaces

    def run_in(
        self,
        namespace: str,
        argv: Sequence[str],
        *,
        timeout: float = 30.0,
        check: bool = False,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run *argv* inside one of this lab's namespaces (``ip netns exec``), capturing text."""
        if namespace not in self.namespaces:
            raise LabError(f"{namespace} is not a namespace of this lab")
        return _run(
            [_binary("ip"), "netns", "exec", namespace, *argv],
            timeout=timeout,
            check=check,
            input=input,
            env=env,
            cwd=REPO_ROOT,
        )

    def run_in_client(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the client namespace (``natpmpc -g 198.18.0.1 ...``)."""
        return self.run_in(self.client_ns, argv, timeout=timeout, check=check)

    def run_in_gateway(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the gateway namespace."""
        return self.run_in(self.gateway_ns, argv, timeout=timeout, check=check)

    def run_in_wan(
        self, argv: Sequence[str], *, timeout: float = 30.0, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the WAN namespace (a host outside the NAT)."""
        return self.run_in(self.wan_ns, argv, timeout=timeout, check=check)

    @staticmethod
    def python_env() -> dict[str, str]:
        """Environment for the repo's Python: the venv interpreter with the repo importable."""
        return loopback.python_env()

    @staticmethod
    def _python_argv(code: str | Path, args: Sequence[str]) -> list[str]:
        # A Path is a script file; a str is source code.
        if isinstance(code, Path):
            return [sys.executable, str(code), *args]
        return [sys.executable, "-c", code, *args]

    def run_python(
        self,
        namespace: str,
        code: str | Path,
        args: Sequence[str] = (),
        *,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> Any:
        """Run Python (source text, or a script ``Path``) in *namespace*; return its JSON result.

        The interpreter is ``sys.executable`` with the repo on PYTHONPATH, so ``import engine``
        works. The last non-empty stdout line must be JSON (earlier lines are ignored). A
        non-zero exit raises :class:`LabCommandError` with stderr.
        """
        result = self.run_in(
            namespace,
            self._python_argv(code, args),
            timeout=timeout,
            check=True,
            input=input,
            env=self.python_env(),
        )
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        if not lines:
            raise LabError(f"python in {namespace} printed nothing; stderr: {result.stderr}")
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError as exc:
            raise LabError(
                f"python in {namespace} did not end with a JSON line: {lines[-1]!r}"
            ) from exc

    def run_python_in_client(
        self,
        code: str | Path,
        args: Sequence[str] = (),
        *,
        timeout: float = 30.0,
        input: str | None = None,
    ) -> Any:
        """:meth:`run_python` in the client namespace: how tests run natdeck's client code."""
        return self.run_python(self.client_ns, code, args, timeout=timeout, input=input)

    def run_python_in_wan(
        self, code: str | Path, args: Sequence[str] = (), *, timeout: float = 30.0
    ) -> Any:
        """:meth:`run_python` in the WAN namespace (e.g. connect to a mapped external port)."""
        return self.run_python(self.wan_ns, code, args, timeout=timeout)

    def spawn_python(
        self, namespace: str, code: str | Path, args: Sequence[str] = ()
    ) -> ClientProcess:
        """Start a long-running Python process in *namespace* with line-JSON stdin/stdout.

        The lab kills it at :meth:`reset`/:meth:`destroy` if the caller has not closed it.
        """
        if namespace not in self.namespaces:
            raise LabError(f"{namespace} is not a namespace of this lab")
        argv = [_binary("ip"), "netns", "exec", namespace, *self._python_argv(code, args)]
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env=self.python_env(),
            cwd=REPO_ROOT,
        )
        worker = ClientProcess(popen, f"python in {namespace} (pid {popen.pid})")
        self._workers.append(worker)
        return worker

    def spawn_python_in_client(self, code: str | Path, args: Sequence[str] = ()) -> ClientProcess:
        """:meth:`spawn_python` in the client namespace (a live natdeck worker)."""
        return self.spawn_python(self.client_ns, code, args)

    def start_announcement_listener(self, timeout: float = 5.0) -> ClientProcess:
        """Start :data:`ANNOUNCEMENT_LISTENER_CODE` in the client ns; return once it joined."""
        listener = self.spawn_python_in_client(ANNOUNCEMENT_LISTENER_CODE, [self.client_address])
        ready = listener.receive(timeout=timeout)
        if ready != {"event": "ready"}:
            listener.close()
            raise LabError(f"announcement listener said {ready!r}")
        return listener

    @contextlib.contextmanager
    def client_namespace(self) -> Iterator[None]:
        """Run the calling thread inside the client namespace for the ``with`` block.

        Sockets created in the block (e.g. by an asyncio endpoint) stay in the client namespace
        for their whole life, so in-process code can talk to the gateway. Anything created
        *outside* the block lives in the host namespace: never give it lab addresses.
        """
        if self._destroyed:
            raise LabError("lab destroyed")
        with _thread_in_namespace(self.client_ns):
            yield

    # ---- the gateway process

    @property
    def _config_path(self) -> Path:
        return self.workdir / "miniupnpd.conf"

    @property
    def _lease_path(self) -> Path:
        return self.workdir / "miniupnpd.leases"

    @property
    def _pid_path(self) -> Path:
        return self.workdir / "miniupnpd.pid"

    @property
    def log_path(self) -> Path:
        """File receiving miniupnpd's output (all its runs, appended)."""
        return self.workdir / "miniupnpd.log"

    @property
    def gateway_pid(self) -> int | None:
        """miniupnpd's pid while it runs, else None."""
        if self._gateway is None or self._gateway.poll() is not None:
            return None
        return self._gateway.pid

    @property
    def gateway_running(self) -> bool:
        """True while miniupnpd runs."""
        return self.gateway_pid is not None

    def start_gateway(self, config: GatewayConfig | None = None, timeout: float = 10.0, *,
                      console: Console | None = None) -> None:
        """Start miniupnpd (fresh epoch) and wait until it listens on port 5351.

        ``config`` and ``console`` replace the lab's (:meth:`reset` brings back the first ones).
        """
        if self._destroyed:
            raise LabError("lab destroyed")
        if self.gateway_running:
            raise LabError("miniupnpd already running")
        if config is not None:
            self.config = config
        if console is not None:
            self.console = console
        text = self.config.render(lease_file=self._lease_path)
        if self.ipv6:
            # miniupnpd only ever sets its "IPv6 off" flag, so the line itself must change.
            text = text.replace("ipv6_disable=yes\n", "ipv6_disable=no\n")
        self._config_path.write_text(text)
        # A pid file naming a live (reused) pid would make miniupnpd refuse to start.
        self._pid_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"{_START_MARKER}\n".encode())
            start_offset = log.tell()
            # ip netns exec setns()es and execs sh, which execs miniupnpd: the Popen pid is
            # miniupnpd's. miniupnpd logs with LOG_CONS: with no syslog daemon (/dev/log) glibc
            # writes every message to /dev/console -- on a VM a serial port, ~1 ms a line and
            # miniupnpd logs a few lines per existing rule per request. ip netns exec runs us
            # in a private mount namespace, so binding /dev/null there only silences our copy.
            self._gateway = subprocess.Popen(
                [
                    _binary("ip"),
                    "netns",
                    "exec",
                    self.gateway_ns,
                    "/bin/sh",
                    "-c",
                    _SILENCE_CONSOLE_AND_EXEC if self.console == "fast" else _KEEP_CONSOLE_AND_EXEC,
                    "sh",
                    _binary("miniupnpd"),
                    "-f",
                    str(self._config_path),
                    "-d",
                    "-P",
                    str(self._pid_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            output = self.gateway_log(since=start_offset)
            marker = _READY_MARKER if self.config.enable_natpmp else _UPNP_READY_MARKER
            if marker in output:
                return
            if self._gateway.poll() is not None:
                raise LabError(f"miniupnpd exited ({self._gateway.returncode}) at start:\n{output}")
            if time.monotonic() > deadline:
                self.stop_gateway()
                raise LabTimeoutError(f"miniupnpd not listening after {timeout} s:\n{output}")
            time.sleep(0.002)

    def stop_gateway(self, *, graceful: bool = False, timeout: float = 40.0) -> None:
        """Stop miniupnpd and wait until it has exited.

        Default is SIGKILL, like a power cut: instant and deterministic. ``graceful=True`` sends
        SIGTERM, which miniupnpd 2.3.1 may only notice when its select() times out (up to ~30 s).
        Its nftables rules and lease file stay either way (see :meth:`clear_mappings`).
        """
        process = self._gateway
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._gateway = None

    def clear_mappings(self) -> None:
        """Flush miniupnpd's chains and delete its lease file (only while it is stopped).

        miniupnpd caches its rules, so flushing under a running daemon would desynchronise it.
        """
        if self.gateway_running:
            raise LabError("stop the gateway before clearing its mappings")
        self._lease_path.unlink(missing_ok=True)
        self.nft(
            "-f",
            "-",
            input="".join(
                f"flush chain inet {MINIUPNPD_TABLE} {chain}\n" for chain in MINIUPNPD_CHAINS
            ),
        )

    def restart_gateway(
        self, *, keep_mappings: bool = False, config: GatewayConfig | None = None,
        console: Console | None = None,
    ) -> None:
        """Kill miniupnpd, wait for it to exit, start it again: the epoch restarts at 0.

        ``keep_mappings=False`` (a reboot that lost state, RFC 6886 section 3.7 / RFC 6887
        section 8.5) clears rules and leases; ``True`` lets miniupnpd reload its lease file.
        """
        self.stop_gateway()
        if not keep_mappings:
            self.clear_mappings()
        self.start_gateway(config=config, console=console)

    def gateway_log(self, since: int = 0) -> str:
        """miniupnpd's output from byte offset *since* (see :meth:`gateway_log_size`)."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(since)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def gateway_log_size(self) -> int:
        """Current size of the log, to later read only what one test produced."""
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    # ---- nftables state

    def nft(self, *args: str, input: str | None = None) -> str:
        """Run ``nft`` in the gateway namespace; return stdout (raises on failure)."""
        return self.run_in(self.gateway_ns, [_binary("nft"), *args], check=True, input=input).stdout

    def ruleset(self) -> str:
        """The gateway's whole nftables ruleset, as text (for assertions and debugging)."""
        return self.nft("list", "ruleset")

    def nat_rules(self) -> list[NatRule]:
        """Every NAT rule in miniupnpd's dnat and snat chains, parsed."""
        text = self.nft("-j", "list", "table", "inet", MINIUPNPD_TABLE)
        return parse_nat_rules(text, MINIUPNPD_DNAT_CHAIN) + parse_nat_rules(
            text, MINIUPNPD_SNAT_CHAIN
        )

    def dnat_rules(self) -> list[DnatRule]:
        """The port mappings the gateway really forwards, read from the kernel's nftables."""
        text = self.nft("-j", "list", "chain", "inet", MINIUPNPD_TABLE, MINIUPNPD_DNAT_CHAIN)
        rules = (_dnat_from(rule) for rule in parse_nat_rules(text, MINIUPNPD_DNAT_CHAIN))
        return [rule for rule in rules if rule is not None]

    def pinholes(self) -> list[Pinhole]:
        """The IPv6 pinholes miniupnpd holds (accept rules in its forward chain)."""
        text = self.nft("-j", "list", "chain", "inet", MINIUPNPD_TABLE, MINIUPNPD_FILTER_CHAIN)
        return parse_pinholes(text, MINIUPNPD_FILTER_CHAIN)

    def peer_rules(self) -> list[NatRule]:
        """miniupnpd's snat rules (PCP PEER), parsed literally (see :class:`NatRule`)."""
        text = self.nft("-j", "list", "chain", "inet", MINIUPNPD_TABLE, MINIUPNPD_SNAT_CHAIN)
        return parse_nat_rules(text, MINIUPNPD_SNAT_CHAIN)

    def miniupnpd_rule_count(self) -> int:
        """How many rules miniupnpd has in its three chains (0 = no mapping state)."""
        document = json.loads(self.nft("-j", "list", "table", "inet", MINIUPNPD_TABLE))
        return sum(
            1
            for item in document.get("nftables", [])
            if "rule" in item and item["rule"].get("chain") in MINIUPNPD_CHAINS
        )

    def set_loss(
        self,
        percent: int,
        *,
        direction: Literal["requests", "responses", "both"] = "requests",
    ) -> None:
        """Drop *percent* % of datagrams to (requests) and/or from (responses) port 5351.

        Random per datagram (nftables ``numgen random``), in the gateway namespace. Responses
        include miniupnpd's multicast announcements. Replaces any previous loss setting.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be 0..100, got {percent}")
        if direction not in ("requests", "responses", "both"):
            raise ValueError(f"direction must be requests, responses or both, got {direction!r}")
        commands = [
            f"flush chain inet {LAB_TABLE} loss_in",
            f"flush chain inet {LAB_TABLE} loss_out",
        ]
        if percent:
            # numgen's range is 0..99, so "< 100" is rejected: 100 % is an unconditional drop.
            rule = "" if percent == 100 else f"numgen random mod 100 < {percent}"
            if direction in ("requests", "both"):
                commands.append(
                    f"add rule inet {LAB_TABLE} loss_in {rule} counter name requests_dropped drop"
                )
            if direction in ("responses", "both"):
                commands.append(
                    f"add rule inet {LAB_TABLE} loss_out {rule} counter name responses_dropped drop"
                )
        self.nft("-f", "-", input="\n".join(commands) + "\n")
        self._loss = (percent, direction)

    def clear_loss(self) -> None:
        """Stop dropping datagrams."""
        self.set_loss(0)

    @property
    def loss(self) -> tuple[int, str]:
        """(percent, direction) currently set."""
        return self._loss

    def loss_rules(self) -> str:
        """The loss chains as nft prints them (shows the ``numgen`` drop rules)."""
        return self.nft("list", "chain", "inet", LAB_TABLE, "loss_in") + self.nft(
            "list", "chain", "inet", LAB_TABLE, "loss_out"
        )

    def counters(self) -> GatewayCounters:
        """Packet counters at port 5351 since the last :meth:`reset_counters`."""
        document = json.loads(self.nft("-j", "list", "counters", "table", "inet", LAB_TABLE))
        values = {
            item["counter"]["name"]: int(item["counter"]["packets"])
            for item in document.get("nftables", [])
            if "counter" in item
        }
        return GatewayCounters(
            requests_received=values.get("requests_received", 0),
            requests_dropped=values.get("requests_dropped", 0),
            responses_sent=values.get("responses_sent", 0),
            responses_dropped=values.get("responses_dropped", 0),
        )

    def reset_counters(self) -> None:
        """Zero the port-5351 packet counters."""
        self.nft("reset", "counters", "table", "inet", LAB_TABLE)

    # ---- the WAN side

    def change_wan_address(self, new: str, *, notify: bool = True) -> None:
        """Re-address the gateway's WAN veth, then SIGUSR1 miniupnpd (if *notify*).

        On SIGUSR1 miniupnpd re-reads the address and multicasts a NAT-PMP address change
        (RFC 6886 section 3.2.1) to 224.0.0.1 ports 5350/5351 and a PCP ANNOUNCE (RFC 6887
        section 14.1.1) to port 5350 -- once each. The WAN namespace gets an address on the new
        subnet too, so it can still reach mapped ports.
        """
        address = ipaddress.IPv4Address(new)
        interface = ipaddress.IPv4Interface(f"{address}/{WAN_PREFIX_LENGTH}")
        hosts = list(interface.network.hosts())
        peer = hosts[-1] if hosts[-1] != address else hosts[-2]
        _ip_batch(
            [f"addr flush dev {GW_WAN_IF}", f"addr add {interface} dev {GW_WAN_IF}"],
            namespace=self.gateway_ns,
        )
        peer_addresses = self.run_in_wan(
            [_binary("ip"), "-4", "-o", "addr", "show", "dev", WAN_PEER_IF], check=True
        ).stdout
        if f" {peer}/" not in peer_addresses:
            _ip_batch(
                [f"addr add {peer}/{WAN_PREFIX_LENGTH} dev {WAN_PEER_IF}"], namespace=self.wan_ns
            )
        self.wan_address = str(address)
        self.wan_peer_address = str(peer)
        if notify and self.gateway_pid is not None:
            os.kill(self.gateway_pid, signal.SIGUSR1)

    # ---- another host on the LAN, and UPnP peers

    @contextlib.contextmanager
    def as_another_host(self, address: str = OTHER_CLIENT_ADDRESS) -> Iterator[str]:
        """Inside the block the client namespace talks to the gateway from *address* (a second
        address on its veth and a host route to the gateway with that source), so the gateway
        sees "another host" on the LAN; both are removed afterwards. Yields *address*."""
        _ip_batch([f"addr add {address}/{LAN_PREFIX_LENGTH} dev {CLIENT_IF}",
                   f"route add {self.gateway_lan}/32 dev {CLIENT_IF} src {address}"],
                  namespace=self.client_ns)
        try:
            yield address
        finally:
            _ip_batch([f"route del {self.gateway_lan}/32",
                       f"addr del {address}/{LAN_PREFIX_LENGTH} dev {CLIENT_IF}"],
                      namespace=self.client_ns, force=True)

    @contextlib.contextmanager
    def extra_client_address(self, address: str = OTHER_CLIENT_ADDRESS) -> Iterator[str]:
        """A second address on the client's veth for the block (e.g. a hostile host to bind),
        without changing which address the client uses to reach the gateway."""
        _ip_batch([f"addr add {address}/{LAN_PREFIX_LENGTH} dev {CLIENT_IF}"],
                  namespace=self.client_ns)
        try:
            yield address
        finally:
            _ip_batch([f"addr del {address}/{LAN_PREFIX_LENGTH} dev {CLIENT_IF}"],
                      namespace=self.client_ns, force=True)

    @contextlib.contextmanager
    def ipv6_addresses(self) -> Iterator[None]:
        """IPv6 on the LAN (gateway :data:`GATEWAY_LAN6`, client :data:`CLIENT_ADDRESS6`, the
        client's default route through the gateway) and the WAN veth, for the block. Start the
        gateway with ``GatewayConfig(ipv6=True)`` inside it."""
        lan, wan = f"{GATEWAY_LAN6}/64", f"{GATEWAY_WAN6}/64"
        _ip_batch([f"addr add {lan} dev {GW_LAN_IF} nodad",
                   f"addr add {wan} dev {GW_WAN_IF} nodad"], namespace=self.gateway_ns)
        _ip_batch([f"addr add {CLIENT_ADDRESS6}/64 dev {CLIENT_IF} nodad",
                   f"route add ::/0 via {GATEWAY_LAN6}"], namespace=self.client_ns)
        try:
            yield
        finally:
            _ip_batch([f"route del ::/0 via {GATEWAY_LAN6}",
                       f"addr del {CLIENT_ADDRESS6}/64 dev {CLIENT_IF}"],
                      namespace=self.client_ns, force=True)
            _ip_batch([f"addr del {lan} dev {GW_LAN_IF}", f"addr del {wan} dev {GW_WAN_IF}"],
                      namespace=self.gateway_ns, force=True)

    def pinhole_rules(self) -> list[str]:
        """The accept rules in miniupnpd's filter chain (IPv6 pinholes), as ``nft`` prints them."""
        chain = self.nft("list", "chain", "inet", MINIUPNPD_TABLE, MINIUPNPD_FILTER_CHAIN)
        return [line.strip() for line in chain.splitlines() if line.strip().endswith("accept")]

    @property
    def upnp_location(self) -> str:
        """The IGD description URL (needs ``enable_upnp`` and a fixed ``http_port``)."""
        if self.config.http_port is None:
            raise LabError("the lab's UPnP HTTP port is not fixed (GatewayConfig.http_port)")
        return f"http://{self.gateway_lan}:{self.config.http_port}/rootDesc.xml"

    def upnpc(self, *args: str, timeout: float = 20.0) -> str:
        """Run Debian's ``upnpc`` (miniupnpc) in the client namespace against the lab's IGD
        (``-u``: no discovery); its stdout. ``upnpc`` exits 0 even when the IGD refused."""
        return self.run_in_client(["upnpc", "-u", self.upnp_location, *args], timeout=timeout,
                                  check=True).stdout

    # ---- between tests

    def reset(self, *, restart: bool = False) -> None:
        """Bring the lab back to its just-built state, as cheaply as possible.

        Closes spawned processes, clears loss and counters; restarts miniupnpd (clean, new
        epoch) only if *restart*, if it is not running, if it holds any rule, or if the WAN
        address was changed. A clean lab costs two nft calls.
        """
        if self._destroyed:
            raise LabError("lab destroyed")
        for worker in self._workers:
            worker.close(timeout=0.5)
        self._workers.clear()
        if self._loss[0]:
            self.clear_loss()
        if self.wan_address != INITIAL_WAN_ADDRESS:
            self.change_wan_address(INITIAL_WAN_ADDRESS, notify=False)
            restart = True
        if self.config != self._base_config or self.console != self._base_console:
            restart = True
        if restart or not self.gateway_running or self.miniupnpd_rule_count():
            self.restart_gateway(keep_mappings=False, config=self._base_config,
                                 console=self._base_console)
        # Last, so the PCP ANNOUNCE a (re)started miniupnpd multicasts is not counted.
        self.reset_counters()
