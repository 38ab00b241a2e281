"""The sans-IO gateway: datagrams in, datagrams out, no sockets and no clock.

:meth:`GatewayCore.handle` is the whole of a gateway's behaviour for one
request: it counts it, applies the faults that act on arrival (silence, loss),
then hands it by version byte to the NAT-PMP or PCP handler (RFC 6887 §9 says
how a server that speaks one, the other or both tells them apart). Tests can
drive it with bytes and a fake ``now``; :class:`~engine.simulator.SimulatedGateway`
is only the asyncio plumbing around it.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address

from ..wire.addresses import IPAddress
from ..wire.natpmp import NATPMP_VERSION
from ..wire.pcp import PCP_VERSION
from .config import GatewayConfig
from .natpmp_handler import handle_natpmp, natpmp_announcement, natpmp_unsupported_version
from .pcp_handler import handle_pcp, pcp_announcement
from .state import GatewayState, Mapping

__all__ = ["Counters", "GatewayCore", "client_address"]


@dataclass(slots=True)
class Counters:
    """What the gateway has seen. ``requests`` is keyed by ``(protocol, opcode)``: protocol
    ``"natpmp"`` (version 0), ``"pcp"`` (version 2) or ``"other"``, opcode without the R bit
    (``-1`` for a datagram too short to have one)."""

    received: int = 0
    """Datagrams that arrived, whatever became of them."""
    answered: int = 0
    """Datagrams that got an answer."""
    dropped: int = 0
    """Lost to ``drop_rate``."""
    silenced: int = 0
    """Swallowed by ``silent`` (or because the gateway speaks neither protocol)."""
    ignored: int = 0
    """Processed but not answerable: too short, a response, wrong length (as a real gateway)."""
    requests: Counter[tuple[str, int]] = field(default_factory=Counter)
    busy: float = 0.0
    """Seconds of processing time drawn (``delay``, ``delay_max``): what a client sending one
    request at a time would wait at least, the floor of a throughput test."""

    def count(self, protocol: str, opcode: int | None = None) -> int:
        """Requests of ``protocol`` (``"natpmp"``, ``"pcp"``, ``"other"``), of one opcode or all."""
        return sum(n for (proto, op), n in self.requests.items()
                   if proto == protocol and (opcode is None or op == opcode))

    def copy(self) -> Counters:
        """An independent snapshot."""
        return Counters(self.received, self.answered, self.dropped, self.silenced, self.ignored,
                        Counter(self.requests), self.busy)


#: Parsed source addresses kept (a bound: sources are the test's few hosts).
_CLIENTS_KEPT = 256


def client_address(host: str) -> IPAddress:
    """The address a datagram came from, as the handlers compare it: without a ``%scope``, and
    an IPv4-mapped IPv6 source (a dual-stack socket) as the IPv4 address it stands for."""
    address = ip_address(host.split("%", 1)[0])
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _protocol_of(datagram: bytes) -> tuple[str, int]:
    if not datagram:
        return ("other", -1)
    version = datagram[0]
    name = "natpmp" if version == NATPMP_VERSION else "pcp" if version == PCP_VERSION else "other"
    return (name, datagram[1] & 0x7F if len(datagram) > 1 else -1)


class GatewayCore:
    """A NAT-PMP and PCP gateway without I/O. ``now`` is seconds on any monotonic clock; the
    epoch counts from the ``now`` given to the constructor."""

    def __init__(self, config: GatewayConfig, external_address: IPAddress | None, now: float):
        self._config = config
        self._rng = random.Random(config.seed)
        self._service_rng = random.Random(f"service {config.seed}")
        self._served = 0
        self.state = GatewayState(external_address, now, config.initial_epoch)
        self.counters = Counters()
        # Each source's address parsed once (issue 15): 10,000 mappings from one host held
        # 10,000 equal address objects, each one more for the garbage collector to walk.
        self._clients: dict[str, IPAddress] = {}

    @property
    def config(self) -> GatewayConfig:
        """The behaviour in force."""
        return self._config

    @config.setter
    def config(self, config: GatewayConfig) -> None:
        if config.seed != self._config.seed:
            self._rng = random.Random(config.seed)
            self._service_rng = random.Random(f"service {config.seed}")
        self._config = config

    def service_time(self) -> float:
        """Seconds the next request takes to process: the next of ``service_times``, else
        ``delay`` or a draw from [``delay``, ``delay_max``] (see :class:`GatewayConfig`)."""
        config = self._config
        if self._served < len(config.service_times):
            service = config.service_times[self._served]
        elif config.delay_max is None:
            service = config.delay
        else:
            service = self._service_rng.uniform(config.delay, config.delay_max)
        self._served += 1
        self.counters.busy += service
        return service

    # --- requests ---------------------------------------------------------------------------

    def handle(self, datagram: bytes, source: tuple[str, int], now: float) -> list[bytes]:
        """Everything the gateway sends back to ``source`` for ``datagram`` at time ``now``."""
        if not self.accept(datagram):
            return []
        return self.process(datagram, source, now)

    def accept(self, datagram: bytes) -> bool:
        """Count an arriving datagram and decide whether it reaches the gateway at all.

        Split from :meth:`process` so that the asyncio layer can apply loss and silence on
        arrival and spend the processing ``delay`` only on what gets through.
        """
        self.counters.received += 1
        self.counters.requests[_protocol_of(datagram)] += 1
        config = self._config
        if config.silent or not (config.speak_pcp or config.speak_natpmp):
            self.counters.silenced += 1
            return False
        # Draw only when loss is on, so that a seed fixes which requests are lost.
        if config.drop_rate and self._rng.random() < config.drop_rate:
            self.counters.dropped += 1
            return False
        return True

    def process(self, datagram: bytes, source: tuple[str, int], now: float) -> list[bytes]:
        """Act on a datagram that :meth:`accept` let through; return the answers."""
        self.state.expire(now)
        host = source[0]
        client = self._clients.get(host)
        if client is None:
            if len(self._clients) >= _CLIENTS_KEPT:
                self._clients.clear()
            client = self._clients[host] = client_address(host)
        answer = self._dispatch(datagram, client, now)
        if answer is None:
            self.counters.ignored += 1
            return []
        self.counters.answered += 1
        return [answer]

    def _dispatch(self, datagram: bytes, client: IPAddress, now: float) -> bytes | None:
        if not datagram:
            return None
        config, state = self._config, self.state
        version = datagram[0]
        if version == NATPMP_VERSION and config.speak_natpmp:
            return handle_natpmp(state, config, datagram, client, now)
        if config.speak_pcp and not config.answer_pcp_with_natpmp:
            # Version 2, or a version nobody here speaks: the PCP handler answers UNSUPP_VERSION
            # with version field 2 (RFC 6887 §9), also to NAT-PMP on a PCP-only gateway.
            return handle_pcp(state, config, datagram, client, now)
        if len(datagram) < 2 or datagram[1] & 0x80:
            return None
        # A NAT-PMP-only gateway (or one with the Apple quirk) answers any other version with
        # NAT-PMP's 8-byte UNSUPPORTED_VERSION (RFC 6886 §3, RFC 6887 §9).
        return natpmp_unsupported_version(config, datagram, state.epoch(now))

    # --- events -----------------------------------------------------------------------------

    def mappings(self, now: float) -> tuple[Mapping, ...]:
        """The live mappings at ``now`` (expired ones are removed first)."""
        return self.state.mappings(now)

    def epoch(self, now: float) -> int:
        """The epoch value a response sent at ``now`` carries."""
        return self.state.epoch(now)

    def restart(self, now: float) -> None:
        """Reboot: every mapping lost, epoch back to 0. The drop generator starts over too."""
        self.state.restart(now)
        self._rng = random.Random(self._config.seed)

    def set_external_address(self, address: IPAddress | None) -> None:
        """Change the external address, keeping mappings and epoch (see :meth:`reset_epoch`)."""
        self.state.external_address = address

    def reset_epoch(self, now: float) -> None:
        """Start a new epoch at 0, keeping the mappings (RFC 6887 §8.5 on address change)."""
        self.state.reset_epoch(now)

    def natpmp_announcement(self, now: float) -> bytes | None:
        """The NAT-PMP external-address announcement to send at ``now``, if there is one."""
        if not self._config.speak_natpmp:
            return None
        return natpmp_announcement(self.state, now)

    def pcp_announcement(self, now: float) -> bytes | None:
        """The unsolicited PCP ANNOUNCE to send at ``now``, if PCP is on."""
        if not self._config.speak_pcp:
            return None
        return pcp_announcement(self.state, now)
