"""The demo: a simulated gateway in this process, on loopback, and a manager on it.

``natdeck --demo`` shows everything the TUI does without sending a packet off
this machine: :func:`demo_engine` starts :class:`~engine.simulator.SimulatedGateway`
on 127.0.0.1 (a free port) with a UPnP IGD over the same table
(:class:`~engine.simulator.upnp.SimulatedIgd`: SSDP on a free loopback port, searched
by unicast, HTTP on loopback), points its announcements, unicast, at the
manager's announcement listener on another free loopback port (a real
gateway multicasts them to 224.0.0.1:5350, RFC 6886 §3.2.1 and RFC 6887
§14.1.3), and pre-maps a few ports. The demo keys restart the gateway and
change its external address, cycling through documentation addresses and one
carrier-grade NAT address (RFC 6598) that shows the "not public" warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from engine.manager import MappingManager
from engine.protocols import Protocol
from engine.router_source import UpnpRouterListing
from engine.simulator import GatewayConfig, SimulatedGateway
from engine.simulator.upnp import IgdConfig, Neighbours, SimulatedIgd
from engine.upnp.ssdp import SSDP_PORT

from .backend import EngineParts
from .map_request import MapRequest, Via

__all__ = [
    "DEMO_ADDRESSES",
    "DEMO_LIFETIME",
    "DEMO_MAPS",
    "DemoOptions",
    "SimulatorControls",
    "demo_engine",
    "free_udp_port",
]

LOOPBACK = "127.0.0.1"

#: The simulated gateway's external addresses, in order (RFC 5737 documentation ranges,
#: and 100.64.0.0/10, the shared address space of carrier-grade NAT, RFC 6598).
DEMO_ADDRESSES: tuple[str, ...] = ("203.0.113.7", "198.51.100.23", "100.64.12.34",
                                   "192.0.2.45")

#: Short, so that renewals (at 1/2 to 5/8 of it, RFC 6887 §11.2.1) happen while you watch;
#: 120 s is also the shortest lifetime miniupnpd grants.
DEMO_LIFETIME = 120

#: How long the simulated gateway has been up at start (its epoch, RFC 6887 §8.5): 3d04h.
DEMO_UPTIME = 273_600

#: What the demo maps at start: a web server, WireGuard, a game server.
DEMO_MAPS: tuple[MapRequest, ...] = (
    MapRequest(Protocol.TCP, 8080),
    MapRequest(Protocol.UDP, 51820),
    MapRequest(Protocol.TCP, 25565, external_port=25570),
)


#: Where :func:`free_udp_port` looks: below the ephemeral range of Linux (32768-60999 by
#: default) and of the other systems (49152-65535), so that the port cannot be handed to
#: an outgoing socket (the manager's own, say) between choosing it and binding it.
PORT_RANGE = (20000, 32767)


def free_udp_port(host: str = LOOPBACK, *, rng: random.Random | None = None) -> int:
    """A UDP port on ``host`` that is free right now, outside the ephemeral range."""
    pick = rng if rng is not None else random.Random()
    for _ in range(100):
        port = pick.randint(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class SimulatorControls:
    """The demo keys' effect on a :class:`SimulatedGateway` (see :class:`DemoControls`)."""

    def __init__(self, gateway: SimulatedGateway,
                 addresses: Sequence[str] = DEMO_ADDRESSES, *, igd: SimulatedIgd | None = None,
                 others: Neighbours | None = None) -> None:
        self.gateway = gateway
        self.igd = igd
        """The gateway's UPnP IGD (same table), which the router view lists."""
        self.others = others
        """The other hosts of the simulated LAN."""
        current = str(gateway.external_address)
        rest = [a for a in addresses if a != current]
        self._next = itertools.cycle([*rest, current] if current in addresses else rest)

    async def restart(self) -> str:
        """Reboot the simulated gateway: it forgets every mapping and its epoch goes to 0."""
        self.gateway.restart()
        return ("simulated gateway restarted: it forgot every mapping and its epoch is 0; "
                "it announces the restart")

    async def change_external_address(self) -> str:
        """Move the simulated gateway to the next demo address (announced)."""
        address = next(self._next)
        self.gateway.change_external_address(address)
        return f"simulated gateway's external address is now {address}; it announces the change"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """How the demo engine is set up (the snapshot tests fix the port and the seed)."""

    keep: bool = False
    via: Via = "auto"
    lifetime: int = DEMO_LIFETIME
    port: int = 0
    external_address: str = DEMO_ADDRESSES[0]
    seed: int | None = None
    config: GatewayConfig | None = None
    announce_count: int = 3
    """Each announcement is sent this often (RFC 6886 §3.2.1 says 10, over about two minutes;
    a few are enough on loopback, and keep the event log readable)."""
    initial_epoch: int = DEMO_UPTIME
    """The gateway has been up this long when the demo starts."""
    timeout: float = 10.0
    """How long one request may go unanswered before it fails (the manager's ``timeout``)."""
    probe_on_start: bool = True
    """Whether the manager probes the gateway at start (the snapshot tests turn it off: a
    probe's log line carries a round-trip time)."""
    other_hosts: bool = True
    """Whether the gateway's table holds mappings of other hosts (the router view, g)."""
    churn_every: float | None = 4.0
    """Other hosts open or close a mapping this often (None: never)."""
    secure_mode: bool = False
    """The router view's deletes of another host's mapping are refused (UPnP 606, as
    miniupnpd's ``secure_mode=yes``)."""
    upnp: bool = True
    """Whether the gateway also speaks UPnP IGD (without, the router view cannot list it
    and shows natdeck's own mappings)."""


async def _churn(neighbours: Neighbours, every: float) -> None:
    """Other hosts open and close mappings every ``every`` seconds, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        neighbours.tick(loop.time())


@asynccontextmanager
async def demo_engine(options: DemoOptions | None = None) -> AsyncIterator[EngineParts]:
    """Start the simulated gateway and build a manager on it; stop the gateway on exit.

    The manager is not entered here: the app's engine worker enters it.
    """
    opts = options if options is not None else DemoOptions()
    announce_port = free_udp_port()
    while announce_port == opts.port:
        announce_port = free_udp_port()
    base = opts.config if opts.config is not None else GatewayConfig()
    config = dataclasses.replace(base, announce_targets=((LOOPBACK, announce_port),),
                                 announce_count=opts.announce_count,
                                 initial_epoch=opts.initial_epoch)
    async with SimulatedGateway(LOOPBACK, opts.port, opts.external_address, config) as gateway:
        host, port = gateway.address
        # The IGD shares the gateway's table, as miniupnpd's three protocols share one: the
        # manager maps over it too (SSDP unicast to its loopback port, then HTTP), and the
        # router view lists it.
        igd = SimulatedIgd(LOOPBACK, gateway=gateway,
                           config=IgdConfig(secure_mode=opts.secure_mode))
        listing: UpnpRouterListing | None = None
        if opts.upnp:
            await igd.start()
            listing = UpnpRouterListing.on(LOOPBACK, ssdp_port=igd.ssdp_port,
                                           local_address=LOOPBACK)
        manager = MappingManager(
            host, gateway_port=port, local_address=LOOPBACK, via=opts.via,
            lifetime=opts.lifetime, timeout=opts.timeout, announce_host=LOOPBACK,
            announce_ports=(announce_port,), multicast=False, keep=opts.keep,
            probe_on_start=opts.probe_on_start,
            rng=random.Random(opts.seed) if opts.seed is not None else None,
            ssdp_port=igd.ssdp_port if opts.upnp else SSDP_PORT)
        others = Neighbours(gateway.core.state, rng=random.Random(opts.seed),
                            port_range=gateway.config.port_range)
        churn: asyncio.Task[None] | None = None
        if opts.other_hosts:
            others.populate(asyncio.get_running_loop().time())
            if opts.churn_every is not None:
                churn = asyncio.create_task(_churn(others, opts.churn_every), name="demo-hosts")
        try:
            yield EngineParts(manager, SimulatorControls(gateway, igd=igd if opts.upnp else None,
                                                         others=others), router=listing)
        finally:
            if listing is not None:
                await listing.close()
            await igd.close()
            if churn is not None:
                churn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await churn
