"""The demo's other hosts: mappings of a LAN that come and go, in the simulated gateway.

A real gateway's table holds the mappings of every host on the LAN: a game
console's UPnP ports, a torrent client's NAT-PMP port, a phone's PCP mapping.
:class:`OtherHosts` puts such mappings into the simulated gateway's own table
(so their external ports are taken, as on a real gateway) and, while the demo
runs, opens and closes some now and then. The demo's simulated IGD shares that
table, so the router view lists them over UPnP as it would on miniupnpd (with
its descriptions ``PCP MAP <nonce hex>`` and ``NAT-PMP <port> <proto>`` for the
mappings made by those protocols). Every address is in 198.18.0.0/15
(RFC 2544's benchmarking range): nothing here is ever sent.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from ipaddress import ip_address

from engine.simulator import Mapping, SimulatedGateway
from engine.simulator.state import Via

__all__ = ["DEMO_OTHERS", "OtherHost", "OtherHosts"]

TCP, UDP = 6, 17


@dataclass(frozen=True, slots=True)
class OtherHost:
    """One mapping another host holds: made by ``made_by`` with ``description``
    (for UPnP; PCP and NAT-PMP ones are described as miniupnpd does), ``lifetime``
    seconds (0: permanent)."""

    client: str
    protocol: int
    internal_port: int
    external_port: int
    lifetime: int
    made_by: Via
    description: str = ""


#: The LAN at the start of the demo.
DEMO_OTHERS: tuple[OtherHost, ...] = (
    OtherHost("198.18.0.3", TCP, 51413, 51413, 3600, "upnp", "Transmission at 51413"),
    OtherHost("198.18.0.3", UDP, 51413, 51413, 3600, "upnp", "Transmission at 51413"),
    OtherHost("198.18.0.7", UDP, 3074, 3074, 0, "upnp", "Xbox Live"),
    OtherHost("198.18.0.7", TCP, 3074, 3074, 0, "upnp", "Xbox Live"),
    OtherHost("198.18.0.12", TCP, 32400, 32400, 7200, "upnp", "Plex Media Server"),
    OtherHost("198.18.0.21", UDP, 41641, 41641, 7200, "pcp"),
    OtherHost("198.18.0.30", TCP, 22000, 22000, 3600, "natpmp"),
)

#: What comes and goes while the demo runs (short leases: they also expire by themselves).
_CHURN: tuple[OtherHost, ...] = (
    OtherHost("198.18.0.44", UDP, 9987, 9987, 90, "upnp", "TeamSpeak"),
    OtherHost("198.18.0.45", TCP, 25565, 25566, 60, "upnp", "Minecraft LAN world"),
    OtherHost("198.18.0.46", UDP, 27015, 27015, 75, "natpmp"),
    OtherHost("198.18.0.47", UDP, 60000, 60000, 45, "pcp"),
    OtherHost("198.18.0.48", TCP, 6881, 6881, 120, "upnp", "qBittorrent/4.6 6881 TCP"),
    OtherHost("198.18.0.49", UDP, 5060, 5060, 80, "upnp", "VoIP phone SIP"),
)


class OtherHosts:
    """Puts :data:`DEMO_OTHERS` into ``gateway``'s table; :meth:`run` makes hosts open
    and close mappings every ``every`` seconds (a seeded ``rng`` repeats the story)."""

    def __init__(self, gateway: SimulatedGateway, *, rng: random.Random | None = None,
                 hosts: tuple[OtherHost, ...] = DEMO_OTHERS) -> None:
        self.gateway = gateway
        self.rng = rng if rng is not None else random.Random()
        self.hosts = hosts

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def populate(self) -> None:
        """Add the starting LAN's mappings."""
        for host in self.hosts:
            self.open(host)

    def open(self, host: OtherHost) -> bool:
        """Add ``host``'s mapping (False if its external port is taken)."""
        state = self.gateway.core.state
        client = ip_address(host.client)
        endpoint = (host.protocol, client, host.internal_port)
        if not state.port_is_free(host.protocol, host.external_port, endpoint,
                                  self.gateway.config.port_range):
            return False
        nonce = self.rng.randbytes(12) if host.made_by == "pcp" else None
        expires = math.inf if host.lifetime == 0 else self._now() + host.lifetime
        state.put(Mapping(client, host.protocol, host.internal_port, host.external_port,
                          host.lifetime, expires, host.made_by, nonce=nonce,
                          requested_by=client, description=host.description))
        return True

    def step(self) -> str | None:
        """Open or close one mapping of the churning hosts; what happened, for tests."""
        state = self.gateway.core.state
        held = {(m.protocol, m.external_port) for m in state.mappings(self._now())}
        lost = [h for h in self.hosts if (h.protocol, h.external_port) not in held]
        if lost:
            # After a gateway restart (R), the LAN's programs map their ports again.
            host = lost[0]
            return f"reopened {host.client}" if self.open(host) else None
        churners = {h.client for h in _CHURN}
        alive = [m for m in state.mappings(self._now()) if m.client in churners]
        if alive and (len(alive) >= 3 or self.rng.random() < 0.4):
            gone = self.rng.choice(alive)
            state.remove(gone.key)
            return f"closed {gone.client}"
        candidates = [h for h in _CHURN if h.client not in {m.client for m in alive}]
        if not candidates:
            return None
        host = self.rng.choice(candidates)
        return f"opened {host.client}" if self.open(host) else None

    async def run(self, every: float) -> None:
        """Open and close mappings every ``every`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(every)
            self.step()
