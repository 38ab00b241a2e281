"""Other hosts on the simulated LAN whose mappings come and go, so that a router view on the
demo gateway has something alive to show (issue 16).

A real gateway's table holds the mappings of every host on the LAN: a game console's UPnP
ports, a torrent client's NAT-PMP port, a phone's PCP mapping. :class:`Neighbours` puts such
mappings into a simulated gateway's table (so their external ports are taken, as on a real
gateway; the simulated IGD lists them under miniupnpd's names, ``PCP MAP <nonce>`` and
``NAT-PMP <port> <proto>``) and, at each :meth:`Neighbours.tick`, opens or closes one. Pure:
every method takes ``now`` and a seeded generator decides, so a test can predict every step.
Every default address is in 198.18.0.0/15 (RFC 2544's benchmarking range): nothing is sent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from ipaddress import ip_address

from ..state import GatewayState, Mapping, Via

__all__ = ["DEMO_CHURN", "DEMO_LAN", "Neighbour", "Neighbours"]

TCP, UDP = 6, 17


@dataclass(frozen=True, slots=True)
class Neighbour:
    """One mapping another host holds: made ``via`` a protocol, with ``description`` (UPnP's;
    the IGD names PCP and NAT-PMP ones itself), for ``lifetime`` seconds (0: permanent)."""

    client: str
    protocol: int
    internal_port: int
    external_port: int
    lifetime: int
    via: Via
    description: str = ""


#: The LAN when the demo starts: there before natdeck looked.
DEMO_LAN: tuple[Neighbour, ...] = (
    Neighbour("198.18.0.3", TCP, 51413, 51413, 3600, "upnp", "Transmission at 51413"),
    Neighbour("198.18.0.3", UDP, 51413, 51413, 3600, "upnp", "Transmission at 51413"),
    Neighbour("198.18.0.7", UDP, 3074, 3074, 0, "upnp", "Xbox Live"),
    Neighbour("198.18.0.7", TCP, 3074, 3074, 0, "upnp", "Xbox Live"),
    Neighbour("198.18.0.12", TCP, 32400, 32400, 7200, "upnp", "Plex Media Server"),
    Neighbour("198.18.0.21", UDP, 41641, 41641, 7200, "pcp"),     # tailscale over PCP
    Neighbour("198.18.0.30", TCP, 22000, 22000, 3600, "natpmp"),  # Syncthing over NAT-PMP
)

#: What comes and goes (short leases: they also expire by themselves).
DEMO_CHURN: tuple[Neighbour, ...] = (
    Neighbour("198.18.0.44", UDP, 9987, 9987, 90, "upnp", "TeamSpeak"),
    Neighbour("198.18.0.45", TCP, 25565, 25566, 60, "upnp", "Minecraft LAN world"),
    Neighbour("198.18.0.46", UDP, 27015, 27015, 75, "natpmp"),
    Neighbour("198.18.0.47", UDP, 60000, 60000, 45, "pcp"),
    Neighbour("198.18.0.48", TCP, 6881, 6881, 120, "upnp", "qBittorrent/4.6 6881 TCP"),
    Neighbour("198.18.0.49", UDP, 5060, 5060, 80, "upnp", "VoIP phone SIP"),
)


class Neighbours:
    """The mappings of other hosts in ``state``: the ``lan`` ones stay (and are made again
    after a gateway restart), the ``churn`` ones come and go, at most ``most`` at a time.
    ``seed`` (or ``rng``) fixes the story, nonces included."""

    def __init__(self, state: GatewayState, *, lan: tuple[Neighbour, ...] = DEMO_LAN,
                 churn: tuple[Neighbour, ...] = DEMO_CHURN, seed: int | None = 0,
                 rng: random.Random | None = None, most: int = 3,
                 port_range: tuple[int, int] = (1, 0xFFFF)) -> None:
        self.state = state
        self.lan = lan
        self.churn = churn
        self.rng = rng if rng is not None else random.Random(seed)
        self.most = most
        self.port_range = port_range

    def populate(self, now: float) -> None:
        """Add the LAN's mappings."""
        for host in self.lan:
            self.open(host, now)

    def open(self, host: Neighbour, now: float) -> bool:
        """Add ``host``'s mapping (False if its external port is taken)."""
        client = ip_address(host.client)
        endpoint = (host.protocol, client, host.internal_port)
        if not self.state.port_is_free(host.protocol, host.external_port, endpoint,
                                       self.port_range):
            return False
        nonce = self.rng.randbytes(12) if host.via == "pcp" else None
        expires = math.inf if host.lifetime == 0 else now + host.lifetime
        self.state.put(Mapping(client, host.protocol, host.internal_port, host.external_port,
                               host.lifetime, expires, host.via, nonce=nonce,
                               requested_by=client, description=host.description))
        return True

    def tick(self, now: float) -> str | None:
        """One change at ``now``: a lost LAN mapping made again (after a restart, the LAN's
        programs map their ports again), else a churning host opens or closes one. What
        happened (``"198.18.0.44 opened udp 9987 via upnp"``), or ``None``."""
        self.state.expire(now)
        held = {(m.protocol, m.external_port) for m in self.state.mappings(now)}
        lost = [h for h in self.lan if (h.protocol, h.external_port) not in held]
        if lost:
            host = lost[0]
            return f"{host.client} reopened {_label(host)}" if self.open(host, now) else None
        churners = {h.client for h in self.churn}
        alive = [m for m in self.state.mappings(now) if m.client in churners]
        if alive and (len(alive) >= self.most or self.rng.random() < 0.4):
            gone = self.rng.choice(alive)
            self.state.remove(gone.key)
            return f"{gone.client} closed {_name(gone.protocol)} {gone.external_port}"
        candidates = [h for h in self.churn if h.client not in {m.client for m in alive}]
        if not candidates:
            return None
        host = self.rng.choice(candidates)
        return f"{host.client} opened {_label(host)} via {host.via}" if self.open(
            host, now) else None


def _label(host: Neighbour) -> str:
    return f"{_name(host.protocol)} {host.external_port}"


def _name(protocol: int) -> str:
    return {TCP: "tcp", UDP: "udp"}.get(protocol, str(protocol))
