"""What the map dialog asks for, and how its fields are checked.

Validation is pure (strings in, a :class:`MapRequest` or per-field messages
out), so the dialog only shows what :func:`parse_map_form` says and the rules
are tested without a screen. The rules are the ones the engine enforces before
sending (RFC 6887 §11.1, RFC 6886 §3.3), caught early with a sentence next to
the field instead of an error from the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from engine.protocols import PORTED_PROTOCOLS, Protocol, parse_protocol, protocol_name

__all__ = ["VIAS", "FormErrors", "MapRequest", "Via", "parse_lifetime", "parse_map_form"]

Via = Literal["auto", "pcp", "natpmp"]
VIAS: tuple[Via, ...] = get_args(Via)

#: The PCP lifetime field is 32 bits (RFC 6887 §11.1); 0 would be a delete.
MAX_LIFETIME = 0xFFFFFFFF

#: Field name -> what is wrong with it.
FormErrors = dict[str, str]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LIFETIME_RE = re.compile(r"^(\d+)\s*([smhd]?)$")


@dataclass(frozen=True, slots=True)
class MapRequest:
    """A mapping to ask for: what :meth:`MappingManager.add` takes."""

    protocol: Protocol | int
    internal_port: int
    external_port: int | None = None
    """The external port to suggest; ``None`` suggests the internal port."""
    lifetime: int | None = None
    """Seconds; ``None`` uses the manager's default."""
    via: Via | None = None
    """``None`` uses the manager's default."""

    def describe(self) -> str:
        """``tcp 8080 (suggest 8080, 7200 s, via pcp)`` for the event log."""
        parts = []
        if self.external_port is not None:
            parts.append(f"suggest {self.external_port}")
        if self.lifetime is not None:
            parts.append(f"{self.lifetime} s")
        if self.via is not None:
            parts.append(f"via {self.via}")
        extra = f" ({', '.join(parts)})" if parts else ""
        return f"{protocol_name(int(self.protocol))} {self.internal_port}{extra}"


def parse_lifetime(text: str) -> int:
    """Parse ``7200``, ``7200s``, ``30m``, ``2h`` or ``1d`` into seconds (1-4294967295).

    Raises :class:`ValueError` with a message for the user.
    """
    match = _LIFETIME_RE.match(text.strip().lower())
    if match is None:
        raise ValueError("lifetime is seconds (7200) or a number with s, m, h or d (2h)")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_LIFETIME:
        raise ValueError(f"lifetime must be 1-{MAX_LIFETIME} seconds, not {seconds}")
    return seconds


def _parse_port(text: str, what: str) -> int:
    word = text.strip()
    if not word.isdigit():
        raise ValueError(f"{what} is a number 0-65535")
    port = int(word)
    if port > 0xFFFF:
        raise ValueError(f"{what} must be 0-65535, not {port}")
    return port


def parse_map_form(protocol: str, internal_port: str, external_port: str, lifetime: str,
                   via: str) -> MapRequest | FormErrors:
    """Check the dialog's fields; return the request, or a message per bad field.

    Fields: ``protocol`` (tcp, udp, all, a number or a protocol name),
    ``internal_port`` (required), ``external_port`` (blank: suggest the internal
    port), ``lifetime`` (blank: the manager's default), ``via`` (auto, pcp, natpmp).
    """
    errors: FormErrors = {}
    proto: Protocol | int | None = None
    try:
        proto = parse_protocol(protocol)
    except ValueError as exc:
        errors["protocol"] = str(exc)

    chosen_via: Via | None = None
    for candidate in VIAS:
        if via == candidate:
            chosen_via = candidate
    if chosen_via is None:
        errors["via"] = f"via is one of {', '.join(VIAS)}"

    internal: int | None = None
    if not internal_port.strip():
        errors["internal_port"] = "internal port is required"
    else:
        try:
            internal = _parse_port(internal_port, "internal port")
        except ValueError as exc:
            errors["internal_port"] = str(exc)

    if proto is not None and internal is not None:
        # RFC 6887 §11.1: protocol 0 means all protocols and takes port 0; protocols
        # without ports take port 0; for the others port 0 would mean "all ports".
        if proto == Protocol.ALL and internal != 0:
            errors["internal_port"] = "protocol 'all' takes internal port 0 (RFC 6887 §11.1)"
        elif proto not in PORTED_PROTOCOLS and proto != Protocol.ALL and internal != 0:
            errors["internal_port"] = (f"{protocol.strip().lower()} has no ports: use internal "
                                       "port 0 (RFC 6887 §11.1)")
        elif proto in PORTED_PROTOCOLS and internal == 0:
            errors["internal_port"] = "internal port must be 1-65535"

    if proto is not None and chosen_via == "natpmp" and proto not in (Protocol.TCP,
                                                                      Protocol.UDP):
        # RFC 6886 §3.3: NAT-PMP has opcodes for UDP and TCP only.
        errors["protocol"] = "NAT-PMP maps only tcp and udp (RFC 6886 §3.3); choose via pcp"

    external: int | None = None
    if external_port.strip():
        try:
            external = _parse_port(external_port, "external port")
        except ValueError as exc:
            errors["external_port"] = str(exc)

    seconds: int | None = None
    if lifetime.strip():
        try:
            seconds = parse_lifetime(lifetime)
        except ValueError as exc:
            errors["lifetime"] = str(exc)

    if errors:
        return errors
    assert proto is not None
    assert internal is not None
    return MapRequest(proto, internal, external, seconds, chosen_via)
