"""How numbers and addresses read on screen: durations, countdowns, endpoints.

Pure functions of their arguments (the current time is always passed in), so
the screen is deterministic for a given clock and the snapshot tests can freeze
it.
"""

from __future__ import annotations

import math
import time
from ipaddress import IPv4Address, IPv6Address

__all__ = [
    "PROTOCOL_LABELS",
    "clock_time",
    "countdown",
    "duration",
    "endpoint",
    "rtt",
    "since",
]

#: How the two protocols are named on screen.
PROTOCOL_LABELS = {"pcp": "PCP", "natpmp": "NAT-PMP", "upnp": "UPnP"}


def duration(seconds: float) -> str:
    """A compact duration: ``45s``, ``12m05s``, ``2h00m``, ``3d04h``."""
    whole = max(int(seconds), 0)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def countdown(seconds: float | None) -> str:
    """A ticking countdown: ``1:59:59``, ``4:05``, ``0:00``; ``—`` when unknown.

    Rounded up, so that a mapping granted for 7200 s shows ``2:00:00`` at the
    moment it is granted and reaches ``0:00`` only when it has expired.
    """
    if seconds is None:
        return "—"
    whole = max(math.ceil(seconds - 1e-6), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def since(seconds: float | None) -> str:
    """How long ago something happened: ``just now``, ``5 s ago``, ``3m20s ago``; ``never``."""
    if seconds is None:
        return "never"
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    return f"{duration(seconds)} ago"


def rtt(seconds: float | None) -> str:
    """A round-trip time in milliseconds: ``0.4 ms``, ``23 ms``; ``—`` when unknown."""
    if seconds is None:
        return "—"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def endpoint(address: IPv4Address | IPv6Address | str | None, port: int | None) -> str:
    """``203.0.113.7:8080`` or ``[2001:db8::1]:8080``; missing parts read ``?``."""
    host = "?" if address is None else str(address)
    if isinstance(address, IPv6Address) or (isinstance(address, str) and ":" in address):
        host = f"[{host}]"
    return f"{host}:{'?' if port is None else port}"


def clock_time(wall: float) -> str:
    """A wall-clock time stamp for the event log: ``14:03:27`` (local time)."""
    return time.strftime("%H:%M:%S", time.localtime(wall))
