"""What the map dialog asks for, and how its fields are checked.

Validation is pure (strings in, a :class:`MapRequest` or per-field messages
out), so the dialog only shows what :func:`parse_map_form` says and the rules
are tested without a screen. This module only reads the text of each field;
the rules are the engine's own (:meth:`engine.request.MapRequest.problems`,
RFC 6887 §11.1, RFC 6886 §3.3), so the dialog, the CLI and the library refuse
the same requests in the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine import request as engine_request
from engine.protocols import Protocol, parse_protocol, protocol_name
from engine.types import Via

__all__ = ["VIAS", "FormErrors", "MapRequest", "Via", "parse_lifetime", "parse_map_form"]

#: What the map dialog offers: the engine's (auto, PCP, NAT-PMP, UPnP IGD).
VIAS: tuple[Via, ...] = engine_request.VIAS

#: The PCP lifetime field is 32 bits (RFC 6887 §11.1); 0 would be a delete.
MAX_LIFETIME = engine_request.MAX_LIFETIME

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
    # Only the text is read here: the range is the engine's rule (1-65535 where the
    # protocol has ports), checked with the others in parse_map_form.
    word = text.strip()
    if not word.isascii() or not word.isdigit():
        raise ValueError(f"{what} is a number 0-65535")
    return int(word)


def parse_map_form(protocol: str, internal_port: str, external_port: str, lifetime: str,
                   via: str) -> MapRequest | FormErrors:
    """Check the dialog's fields; return the request, or a message per bad field.

    Fields: ``protocol`` (tcp, udp, all, a number or a protocol name),
    ``internal_port`` (required), ``external_port`` (blank: suggest the internal
    port), ``lifetime`` (blank: the manager's default), ``via`` (auto, pcp, natpmp, upnp).
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

    if proto is not None and internal is not None and chosen_via is not None:
        # The engine's one validation, every rule at once, each next to its field.
        checked = engine_request.MapRequest(
            proto, internal, external,
            lifetime=seconds if seconds is not None else engine_request.DEFAULT_LIFETIME,
            via=chosen_via)
        for field, message in checked.problems():
            if field in ("protocol", "internal_port", "external_port", "via"):
                errors.setdefault(field, message)
    if errors:
        return errors
    assert proto is not None
    assert internal is not None
    return MapRequest(proto, internal, external, seconds, chosen_via)
