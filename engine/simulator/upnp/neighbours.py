"""Other hosts on the simulated LAN whose mappings come and go, so that a router view on the
demo gateway has something alive to show (issue 16). Pure: :meth:`Neighbours.tick` takes
``now`` and a seeded generator decides, so a test can predict every step."""

from __future__ import annotations

import math
import random
import secrets
from dataclasses import dataclass
from ipaddress import ip_address

from ..state import GatewayState, Mapping, Via

__all__ = ["NEIGHBOUR_APPS", "Neighbours"]


@dataclass(frozen=True, slots=True)
class _App:
    description: str
    protocol: int
    port: int
    via: Via
    lifetime: int


#: What other hosts typically open (description as their clients name them; PCP and NAT-PMP
#: ones are listed under miniupnpd's own names).
NEIGHBOUR_APPS = (
    _App("Xbox", 17, 3074, "upnp", 0),
    _App("Transmission at 51413", 6, 51413, "upnp", 3600),
    _App("Plex Media Server", 6, 32400, "upnp", 7200),
    _App("", 17, 41641, "pcp", 7200),          # tailscale over PCP
    _App("", 6, 6881, "natpmp", 3600),         # a BitTorrent client over NAT-PMP
    _App("Skype", 17, 23399, "upnp", 600),
)


class Neighbours:
    """Mappings of ``hosts`` (other addresses on the simulated LAN) in ``state``."""

    def __init__(self, state: GatewayState, hosts: tuple[str, ...] = ("127.0.0.21",
                 "127.0.0.22", "127.0.0.23"), *, seed: int = 0) -> None:
        self._state = state
        self._hosts = tuple(ip_address(host) for host in hosts)
        self._rng = random.Random(seed)

    def _held(self) -> list[Mapping]:
        hosts = set(self._hosts)
        return self._state.select(lambda m: m.internal_address in hosts)

    def tick(self, now: float) -> str | None:
        """One change at ``now``: a neighbour opens or closes a mapping. Returns what happened
        (``"198.18.0.3 opened tcp 32400 via upnp"``), or ``None`` when nothing fitted."""
        self._state.expire(now)
        held = self._held()
        if held and (len(held) >= len(NEIGHBOUR_APPS) or self._rng.random() < 0.4):
            gone = self._rng.choice(held)
            self._state.remove(gone.key)
            return f"{gone.internal_address} closed {_name(gone.protocol)} {gone.external_port}"
        host = self._rng.choice(self._hosts)
        app = self._rng.choice(NEIGHBOUR_APPS)
        endpoint = (app.protocol, host, app.port)
        if self._state.port_of(endpoint) is not None or not self._state.port_is_free(
                app.protocol, app.port, endpoint, (1, 0xFFFF)):
            return None
        self._state.put(Mapping(
            internal_address=host, protocol=app.protocol, internal_port=app.port,
            external_port=app.port, lifetime=app.lifetime,
            expires_at=now + app.lifetime if app.lifetime else math.inf, via=app.via,
            nonce=secrets.token_bytes(12) if app.via == "pcp" else None,
            requested_by=host, description=app.description))
        return f"{host} opened {_name(app.protocol)} {app.port} via {app.via}"


def _name(protocol: int) -> str:
    return {6: "tcp", 17: "udp"}.get(protocol, str(protocol))
