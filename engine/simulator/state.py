"""What a gateway remembers: its mappings, its epoch, which external ports are taken.

Pure: every method that depends on time takes ``now`` (seconds on the caller's
monotonic clock). The protocol handlers decide *what* to do; this module only
keeps the table consistent (port index, expiry heap) while they do it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

from ..wire.addresses import IPAddress
from ..wire.pcp import Filter

__all__ = ["Endpoint", "GatewayState", "Mapping", "MappingKey", "Via", "kept_address"]

Via = Literal["natpmp", "pcp", "upnp"]

#: ``(protocol, internal address, internal port)``: what a NAT maps to one external port.
Endpoint = tuple[int, IPAddress, int]

#: A mapping's identity: the endpoint, plus the remote peer for a PCP PEER mapping (``None`` for
#: MAP and NAT-PMP mappings). RFC 6887 §11.3 and RFC 6886 §3.3 both key a mapping by internal
#: address, protocol and internal port.
MappingKey = tuple[int, IPAddress, int, tuple[IPAddress, int] | None]

EPOCH_MODULUS = 2**32


@dataclass(frozen=True, slots=True)
class Mapping:
    """One mapping the gateway holds. Immutable: a renewal replaces it."""

    internal_address: IPAddress
    """The host the mapping forwards to: the request's source, or the THIRD_PARTY address."""
    protocol: int
    internal_port: int
    external_port: int
    """0 for a PCP mapping of all protocols (protocol 0)."""
    lifetime: int
    """Seconds granted by the last request that created or renewed it."""
    expires_at: float
    via: Via
    """Which protocol created or last renewed it."""
    nonce: bytes | None = None
    """The PCP mapping nonce (RFC 6887 §11.1); ``None`` for NAT-PMP mappings."""
    filters: tuple[Filter, ...] = ()
    """FILTER options in force (RFC 6887 §13.3); empty means every remote peer is let in."""
    remote_peer: tuple[IPAddress, int] | None = None
    """For a PCP PEER mapping, the remote peer's address and port."""
    requested_by: IPAddress | None = None
    """The address the request came from; differs from ``internal_address`` with THIRD_PARTY."""
    description: str = ""
    """The UPnP ``NewPortMappingDescription`` (UPnP mappings only; the IGD lists the others the
    way miniupnpd names them, ``PCP MAP <nonce>`` / ``NAT-PMP <port> <proto>``)."""
    remote_host: str = ""
    """The UPnP ``NewRemoteHost`` ("" = any remote host)."""

    @property
    def client(self) -> str:
        """The internal address as text, the way tests usually compare it."""
        return str(self.internal_address)

    @property
    def endpoint(self) -> Endpoint:
        """``(protocol, internal address, internal port)``."""
        return (self.protocol, self.internal_address, self.internal_port)

    @property
    def key(self) -> MappingKey:
        """The key the table holds it under."""
        return (self.protocol, self.internal_address, self.internal_port, self.remote_peer)

    @property
    def is_peer(self) -> bool:
        """True for a mapping created by a PCP PEER request."""
        return self.remote_peer is not None

    def remaining(self, now: float) -> float:
        """Seconds until it expires (negative once it has)."""
        return self.expires_at - now


def kept_address(kept: IPAddress | None, parsed: IPAddress) -> IPAddress:
    """``kept`` (an address the table holds already) when it equals ``parsed``: a renewal
    stores no new address object, which would live as long as its mapping (issue 15)."""
    return kept if kept is not None and kept == parsed else parsed


@dataclass(slots=True)
class _PortUse:
    """Who holds an external port, and through how many mappings (one MAP plus its PEERs)."""

    endpoint: Endpoint
    count: int


class GatewayState:
    """The mapping table, the epoch and the external address of one gateway.

    ``external_address`` is ``None`` for a gateway that has none yet (it then answers
    NETWORK_FAILURE, as RFC 6886 §3.5 and RFC 6887 §7.4 describe).
    """

    def __init__(self, external_address: IPAddress | None, now: float, initial_epoch: int = 0):
        self.external_address = external_address
        self._epoch_origin = now
        self._epoch_base = initial_epoch
        self._table: dict[MappingKey, Mapping] = {}
        self._ports: dict[tuple[int, int], _PortUse] = {}
        self._endpoint_ports: dict[Endpoint, int] = {}
        # (expires_at, sequence): lazy expiry. A renewal pushes a new entry; the old one's
        # sequence is forgotten, so it is skipped when popped. Pairs of a float and an int,
        # which the garbage collector stops tracking (issue 15: a tuple holding the key was
        # one more long-lived object per renewal, whose collection the benchmark charged to
        # the client); the current sequence of each mapping finds it.
        self._expiry: list[tuple[float, int]] = []
        self._expiring: dict[int, Mapping] = {}
        self._sequence_of: dict[MappingKey, int] = {}
        self._sequence = 0

    # --- epoch ------------------------------------------------------------------------------

    def epoch(self, now: float) -> int:
        """Seconds since the start of the epoch, as the 32-bit field carries it.

        RFC 6886 §3 ("Seconds Since Start of Epoch") and RFC 6887 §8.5 ("Epoch Time"):
        whole seconds since the mapping table was initialised, wrapping at 2**32.
        """
        elapsed = max(0, math.floor(now - self._epoch_origin))
        return (self._epoch_base + elapsed) % EPOCH_MODULUS

    def reset_epoch(self, now: float) -> None:
        """Start a new epoch at 0 (RFC 6887 §8.5), keeping the mappings."""
        self._epoch_origin = now
        self._epoch_base = 0

    def restart(self, now: float) -> None:
        """Lose every mapping and start a new epoch at 0: what a reboot does (RFC 6887 §8.5)."""
        self._table.clear()
        self._ports.clear()
        self._endpoint_ports.clear()
        self._expiry.clear()
        self._expiring.clear()
        self._sequence_of.clear()
        self.reset_epoch(now)

    # --- the table --------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self) -> Iterator[Mapping]:
        return iter(tuple(self._table.values()))

    def has_room(self, limit: int | None) -> bool:
        """True if one more mapping fits under ``limit`` (``None``: no limit)."""
        return limit is None or len(self._table) < limit

    def get(self, key: MappingKey) -> Mapping | None:
        """The mapping held under ``key``, expired or not (call :meth:`expire` first)."""
        return self._table.get(key)

    def mappings(self, now: float) -> tuple[Mapping, ...]:
        """The mappings still alive at ``now``, oldest first."""
        self.expire(now)
        return tuple(self._table.values())

    def select(self, predicate: Callable[[Mapping], bool]) -> list[Mapping]:
        """The mappings for which ``predicate`` holds."""
        return [mapping for mapping in self._table.values() if predicate(mapping)]

    def put(self, mapping: Mapping) -> None:
        """Add or replace a mapping; its endpoint must own its external port (or it has none)."""
        key = mapping.key
        old = self._table.get(key)
        # A renewal keeps its port: its port records stay as they are (releasing and claiming
        # again made two new long-lived objects a renewal).
        same_port = (old is not None and old.external_port == mapping.external_port
                     and old.protocol == mapping.protocol)
        if old is not None and not same_port:
            self._release_port(old)
        self._table[key] = mapping
        if not same_port:
            self._claim_port(mapping)
        old_sequence = self._sequence_of.get(key)
        if old_sequence is not None:
            del self._expiring[old_sequence]
        self._sequence = sequence = self._sequence + 1
        self._sequence_of[key] = sequence  # (an existing entry keeps its key object)
        self._expiring[sequence] = mapping
        heapq.heappush(self._expiry, (mapping.expires_at, sequence))
        if len(self._expiry) > 4 * len(self._table) + 64:
            self._compact_expiry()

    def remove(self, key: MappingKey) -> Mapping | None:
        """Remove and return the mapping under ``key`` (``None`` if there was none)."""
        mapping = self._table.pop(key, None)
        if mapping is not None:
            self._release_port(mapping)
            sequence = self._sequence_of.pop(key, None)
            if sequence is not None:
                del self._expiring[sequence]
        return mapping

    def expire(self, now: float) -> list[Mapping]:
        """Remove the mappings whose lifetime has run out at ``now``; return them."""
        gone: list[Mapping] = []
        expiry, expiring = self._expiry, self._expiring
        while expiry and expiry[0][0] <= now:
            mapping = expiring.get(heapq.heappop(expiry)[1])
            if mapping is not None:  # (else replaced or removed since: skipped)
                self.remove(mapping.key)
                gone.append(mapping)
        return gone

    # --- external ports ---------------------------------------------------------------------

    def port_of(self, endpoint: Endpoint) -> int | None:
        """The external port ``endpoint`` already holds through any mapping, if any.

        A NAT maps one internal endpoint to one external port whatever the remote peer
        (endpoint-independent mapping): a PEER and a MAP for the same endpoint share it.
        """
        return self._endpoint_ports.get(endpoint)

    def port_is_free(self, protocol: int, port: int, endpoint: Endpoint,
                     port_range: tuple[int, int]) -> bool:
        """True if ``endpoint`` may have external ``port``: in range and not another's."""
        low, high = port_range
        if not low <= port <= high:
            return False
        use = self._ports.get((protocol, port))
        return use is None or use.endpoint == endpoint

    def allocate_port(self, endpoint: Endpoint, suggested: int,
                      port_range: tuple[int, int]) -> int | None:
        """An external port for ``endpoint``: the one it holds, else the suggested one if free,
        else the next free port above it (wrapping within ``port_range``); ``None`` if all are
        taken.

        A suggestion of 0 starts from the internal port, as miniupnpd does (so a client that
        does not care usually gets its own port number). Deterministic, so tests can predict it.
        """
        held = self.port_of(endpoint)
        if held is not None:
            return held
        protocol, _, internal_port = endpoint
        low, high = port_range
        start = suggested or internal_port or low
        start = min(max(start, low), high)
        span = high - low + 1
        for step in range(span):
            port = low + (start - low + step) % span
            if self.port_is_free(protocol, port, endpoint, port_range):
                return port
        return None

    def _claim_port(self, mapping: Mapping) -> None:
        if mapping.external_port == 0:
            return
        slot = (mapping.protocol, mapping.external_port)
        use = self._ports.get(slot)
        if use is None:
            endpoint = mapping.endpoint  # (one tuple for both: a property makes a new one)
            self._ports[slot] = _PortUse(endpoint, 1)
            self._endpoint_ports[endpoint] = mapping.external_port
        elif use.endpoint == mapping.endpoint:
            use.count += 1
        else:
            raise ValueError(f"external port {mapping.external_port} is held by {use.endpoint}")

    def _release_port(self, mapping: Mapping) -> None:
        if mapping.external_port == 0:
            return
        slot = (mapping.protocol, mapping.external_port)
        use = self._ports[slot]
        use.count -= 1
        if use.count == 0:
            del self._ports[slot]
            del self._endpoint_ports[use.endpoint]

    def _compact_expiry(self) -> None:
        entries = [(mapping.expires_at, sequence) for sequence, mapping in self._expiring.items()]
        heapq.heapify(entries)
        self._expiry = entries
