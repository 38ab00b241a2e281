"""One map/peer request type, and its one validation used by every front end.

:class:`MapRequest` is what the library (``map_port``, ``GatewayClient.map``,
``peer``), the manager, the CLI and the TUI's map dialog ask for. Its
:meth:`MapRequest.validate` refuses, before anything is sent, what the RFCs
forbid, with one wording per rule (issue 14 finding 6): internal port 0 for a
protocol with ports, a nonzero port for a protocol without (RFC 6887 §11.1),
a protocol other than TCP/UDP or a PCP option over NAT-PMP (RFC 6886 §3.3), a
lifetime out of range.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from .errors import InvalidRequest
from .protocols import PORTED_PROTOCOLS, Protocol, as_protocol, protocol_name
from .types import Via
from .wire import pcp
from .wire.addresses import IPAddress, to_address

__all__ = [
    "DEFAULT_LIFETIME",
    "MAX_LIFETIME",
    "VIAS",
    "MapRequest",
    "check_address",
    "check_port",
    "checked_protocol",
    "from_fields",
    "new_nonce",
    "nonce_for",
]

DEFAULT_LIFETIME = 7200
#: The lifetime fields are 32 bits (RFC 6887 §11.1, RFC 6886 §3.3); 0 is a delete.
MAX_LIFETIME = 0xFFFFFFFF
VIAS: tuple[Via, ...] = ("auto", "pcp", "natpmp", "upnp")


def new_nonce() -> bytes:
    """A fresh mapping nonce (RFC 6887 §11.1: random, so an off-path attacker cannot guess it)."""
    # os.urandom is what secrets.token_bytes returns (the kernel's CSPRNG), without the
    # import of secrets (hmac, hashlib and OpenSSL's bindings) in every one-shot process.
    return os.urandom(pcp.NONCE_SIZE)


def nonce_for(via: str) -> bytes | None:
    """A fresh nonce for a request that may go by PCP (``via`` ``"pcp"`` or ``"auto"``);
    ``None`` for NAT-PMP and UPnP IGD, which send none (no draw on their every request)."""
    return None if via == "natpmp" or via == "upnp" else new_nonce()


def checked_protocol(protocol: object) -> Protocol | int:
    """A transport protocol number, 0-255, or :class:`InvalidRequest`."""
    try:
        return as_protocol(int(protocol))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise InvalidRequest(f"protocol must be a number 0-255 or a name, not {protocol!r}") \
            from None


def check_port(what: str, port: object, *, low: int = 0) -> int:
    """``port`` as an int in ``low``-65535, or :class:`InvalidRequest` with the one wording."""
    if isinstance(port, bool) or not isinstance(port, int) or not low <= port <= 0xFFFF:
        raise InvalidRequest(f"{what} must be {low}-65535, not {port!r}")
    return port


def check_address(what: str, value: str | IPAddress) -> IPAddress:
    """An IP address, or :class:`InvalidRequest` (not ipaddress's bare ValueError)."""
    try:
        return to_address(value)
    except ValueError:
        raise InvalidRequest(f"{what} must be an IP address, not {value!r}") from None


@dataclass(frozen=True, slots=True)
class MapRequest:
    """A mapping to ask for (MAP), or, with ``remote_address``/``remote_port``, a PEER.

    ``protocol`` is the transport protocol (TCP, UDP or a number); ``via`` the
    mapping protocol to ask with, or ``"auto"``. ``external_port=None``
    suggests the internal port (some gateways refuse a suggestion of 0).
    Build one with :meth:`make` from loose input; check it with :meth:`validate`.
    """

    protocol: Protocol | int
    internal_port: int
    external_port: int | None = None
    external_address: IPAddress | None = None
    lifetime: int = DEFAULT_LIFETIME
    via: Via = "auto"
    prefer_failure: bool = False
    filters: tuple[pcp.Filter, ...] = ()
    third_party: IPAddress | None = None
    nonce: bytes | None = None
    remote_address: IPAddress | None = None
    remote_port: int | None = None
    extra_options: tuple[pcp.Option, ...] = field(default=(), compare=False)
    """Options carried over from a granted mapping (renewal, deletion)."""

    @classmethod
    def make(cls, protocol: object, internal_port: int, *,
             external_port: int | None = None,
             external_address: str | IPAddress | None = None,
             lifetime: int = DEFAULT_LIFETIME, via: Via = "auto",
             prefer_failure: bool = False, filters: Iterable[pcp.Filter] = (),
             third_party: str | IPAddress | None = None, nonce: bytes | None = None,
             remote_address: str | IPAddress | None = None,
             remote_port: int | None = None) -> MapRequest:
        """Build a request from loose input (strings for addresses) and validate it."""
        request = (from_fields if cls is MapRequest else cls)(
            checked_protocol(protocol), internal_port, external_port,
            check_address("external address", external_address) if external_address else None,
            lifetime, via, prefer_failure, tuple(filters),
            check_address("third-party address", third_party) if third_party is not None
            else None, nonce,
            check_address("remote address", remote_address) if remote_address is not None
            else None, remote_port)
        request.validate()
        return request

    @property
    def opcode(self) -> Literal["map", "peer"]:
        """``"peer"`` when a remote peer is named, else ``"map"``."""
        return "peer" if self.remote_address is not None else "map"

    @property
    def has_ports(self) -> bool:
        """Whether the transport protocol has ports (RFC 6887 §11.1)."""
        return self.protocol in PORTED_PROTOCOLS

    @property
    def suggested_external_port(self) -> int:
        """The external port to put on the wire: asked for, else the internal port."""
        if self.external_port is not None:
            return self.external_port
        return self.internal_port if self.has_ports else 0

    @property
    def options(self) -> tuple[pcp.Option, ...]:
        """The PCP options the request carries (RFC 6887 §13)."""
        if self.extra_options:
            return self.extra_options
        if self.third_party is None and not self.prefer_failure and not self.filters:
            return ()  # the common request, asked on every one
        options: list[pcp.Option] = []
        if self.third_party is not None:
            options.append(pcp.ThirdParty(self.third_party))
        if self.prefer_failure:
            options.append(pcp.PreferFailure())
        options.extend(self.filters)
        return tuple(options)

    def with_nonce(self) -> MapRequest:
        """This request with a nonce drawn when it has none."""
        return self if self.nonce is not None else replace(self, nonce=new_nonce())

    def honoured_by(self, external_port: int, external_address: IPAddress | None) -> bool:
        """Whether a grant keeps PREFER_FAILURE's promise (RFC 6887 §13.2): the port and
        address asked for, or none."""
        if not self.prefer_failure:
            return True
        # The port the request suggested on the wire: the internal port when the caller
        # named none (PREFER_FAILURE holds the server to it all the same).
        suggested = self.suggested_external_port
        if suggested and external_port != suggested:
            return False
        wanted = self.external_address
        return wanted is None or wanted.is_unspecified or external_address == wanted

    def describe(self) -> str:
        """``tcp 8080`` (``udp 5000 to 198.51.100.20:6000`` for a PEER)."""
        text = f"{protocol_name(int(self.protocol))} {self.internal_port}"
        if self.remote_address is not None:
            text += f" to {self.remote_address}:{self.remote_port}"
        return text

    def validate(self, *, deleting: bool = False) -> None:
        """Raise :class:`InvalidRequest` for what the RFCs forbid; nothing is sent before.

        ``deleting`` allows lifetime 0. The error's ``field`` names the field at fault.
        """
        if self._plainly_valid(deleting):
            return
        for field_name, message in self.problems(deleting=deleting):
            raise InvalidRequest(message, field=field_name)

    def _plainly_valid(self, deleting: bool) -> bool:
        """The common request, checked in one expression (issue 15: CPU per request): a TCP
        or UDP mapping of one port, no peer. True only where :meth:`problems` finds nothing;
        anything else is left to it, so every rule keeps its one wording."""
        protocol, port, external, lifetime = (self.protocol, self.internal_port,
                                              self.external_port, self.lifetime)
        via = self.via
        return ((protocol is Protocol.TCP or protocol is Protocol.UDP)
                and type(port) is int and 0 < port <= 0xFFFF
                and (external is None or (type(external) is int and 0 <= external <= 0xFFFF))
                and type(lifetime) is int and (0 if deleting else 1) <= lifetime <= MAX_LIFETIME
                and (self.nonce is None or len(self.nonce) == pcp.NONCE_SIZE)
                and self.remote_address is None
                and (via == "auto" or via == "pcp"
                     # What natpmp_refusal() finds nothing in, given the checks above: no
                     # option, no external address asked for (one call less, issue 15).
                     or (via == "natpmp" and self.external_address is None
                         and self.third_party is None and not self.prefer_failure
                         and not self.filters and not self.extra_options)))

    def problems(self, *, deleting: bool = False) -> list[tuple[str, str]]:
        """Every rule the request breaks, as (field, message): what a form shows at once."""
        found: list[tuple[str, str]] = []

        def check(field_name: str, test: Callable[[], object]) -> None:
            try:
                test()
            except InvalidRequest as exc:
                found.append((field_name, str(exc)))

        check("protocol", lambda: checked_protocol(self.protocol))
        if found:
            return found
        if self.via not in VIAS:
            found.append(("via", f"via is one of {', '.join(VIAS)}, not {self.via!r}"))
        name = protocol_name(int(self.protocol))
        if self.protocol == Protocol.ALL:
            # RFC 6887 §11.1: protocol 0 means all protocols, with both ports 0.
            check("internal_port", lambda: check_port("internal port", self.internal_port))
            if not found and self.internal_port != 0:
                found.append(("internal_port",
                              "protocol 'all' takes internal port 0 (RFC 6887 §11.1)"))
        elif self.has_ports:
            # Port 0 ("all ports") is legal in a delete (RFC 6887 §11.1), never in a map.
            check("internal_port",
                  lambda: check_port("internal port", self.internal_port,
                                     low=0 if deleting else 1))
        else:
            check("internal_port", lambda: check_port("internal port", self.internal_port))
            if self.internal_port != 0 and not any(f == "internal_port" for f, _ in found):
                found.append(("internal_port",
                              f"{name} has no ports: use internal port 0 (RFC 6887 §11.1)"))
        if self.external_port is not None:
            check("external_port", lambda: check_port("external port", self.external_port))
            if not self.has_ports and self.external_port != 0 \
                    and not any(f == "external_port" for f, _ in found):
                found.append(("external_port",
                              f"{name} has no ports: use external port 0 (RFC 6887 §11.1)"))
        low = 0 if deleting else 1
        if isinstance(self.lifetime, bool) or not isinstance(self.lifetime, int) \
                or not low <= self.lifetime <= MAX_LIFETIME:
            found.append(("lifetime", f"lifetime must be {low}-{MAX_LIFETIME} seconds, "
                                      f"not {self.lifetime!r}"))
        if self.nonce is not None and len(self.nonce) != pcp.NONCE_SIZE:
            found.append(("nonce", f"nonce must be {pcp.NONCE_SIZE} bytes, "
                                   f"not {len(self.nonce)}"))
        if self.opcode == "peer":
            check("remote_port", lambda: check_port("remote port", self.remote_port))
        if self.via in ("natpmp", "upnp") and not found:
            refusal = self.natpmp_refusal() if self.via == "natpmp" else self.upnp_refusal()
            if refusal is not None:
                found.append(("protocol" if " can map only " in refusal else "via", refusal))
        return found

    def upnp_refusal(self) -> str | None:
        """Why UPnP IGD cannot carry this request, or ``None`` when it can: AddPortMapping
        takes TCP or UDP, one internal port, no peer, no PCP option, no external address
        (WANIPConnection:2 §2.4.16)."""
        return self._datagram_less_refusal("UPnP IGD", "")

    def natpmp_refusal(self) -> str | None:
        """Why NAT-PMP cannot carry this request, or ``None`` when it can (RFC 6886 §3.3)."""
        return self._datagram_less_refusal("NAT-PMP", " (RFC 6886 §3.3)")

    def _datagram_less_refusal(self, name: str, cite: str) -> str | None:
        # One wording for both protocols that can carry less than PCP.
        if self.protocol not in (Protocol.TCP, Protocol.UDP):
            return (f"{name} can map only TCP and UDP, not {protocol_name(int(self.protocol))}"
                    f"{cite}; use via='pcp'")
        if self.opcode == "peer":
            return "PEER is a PCP request (RFC 6887 §12); use via='pcp'"
        options = self.options
        if options:
            names = ", ".join(sorted({type(o).__name__ for o in options}))
            return f"{name} cannot carry PCP options ({names}); use via='pcp'"
        if self.external_address is not None:
            return f"{name} cannot ask for a particular external address; use via='pcp'"
        if self.internal_port == 0 and self.lifetime != 0:
            return "internal port must be 1-65535"
        return None


_new = object.__new__
(_set_protocol, _set_internal_port, _set_external_port, _set_external_address, _set_lifetime,
 _set_via, _set_prefer_failure, _set_filters, _set_third_party, _set_nonce, _set_remote_address,
 _set_remote_port, _set_extra_options) = (MapRequest.__dict__[name].__set__
                                          for name in MapRequest.__slots__)


def from_fields(protocol: Protocol | int, internal_port: int, external_port: int | None,
                external_address: IPAddress | None, lifetime: int, via: Via,
                prefer_failure: bool, filters: tuple[pcp.Filter, ...],
                third_party: IPAddress | None, nonce: bytes | None,
                remote_address: IPAddress | None, remote_port: int | None,
                extra_options: tuple[pcp.Option, ...] = ()) -> MapRequest:
    """``MapRequest(...)`` with every field given, built at about half its cost (issue 15:
    one per request): each slot set through its descriptor, not through the frozen
    dataclass's ``object.__setattr__`` by name. Checked by the caller, as the constructor
    leaves it to :meth:`MapRequest.validate`."""
    made: MapRequest = _new(MapRequest)
    _set_protocol(made, protocol)
    _set_internal_port(made, internal_port)
    _set_external_port(made, external_port)
    _set_external_address(made, external_address)
    _set_lifetime(made, lifetime)
    _set_via(made, via)
    _set_prefer_failure(made, prefer_failure)
    _set_filters(made, filters)
    _set_third_party(made, third_party)
    _set_nonce(made, nonce)
    _set_remote_address(made, remote_address)
    _set_remote_port(made, remote_port)
    _set_extra_options(made, extra_options)
    return made
