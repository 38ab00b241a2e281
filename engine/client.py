"""The client: map a port, renew it, delete it; the external address; PEER; probe.

``map_port()`` is the front door. A :class:`GatewayClient` is everything one
client knows about one gateway: its channel (:mod:`engine.transport`), what it
learnt (:class:`~engine.negotiation.Negotiation`: the protocols spoken, the
epochs of RFC 6887 §8.5 / RFC 6886 §3.6, the external address) and one mapper
per mapping protocol (:mod:`engine.dialects`). It drives the mappers without
knowing which protocol each speaks: the "PCP, else NAT-PMP" decision is the
negotiation's plan, made once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Coroutine, Iterable
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from .codes import PcpResult
from .dialects.base import Grant, Heard, Mapper, MapperFactory
from .dialects.datagram import DatagramMapper
from .dialects.natpmp import NatPmpDialect
from .dialects.pcp import PcpDialect
from .errors import (
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    ResultCodeError,
    SilentBesideIgd,
    joined_silence,
)
from .igd_scout import IgdScout, unless_igd_answers
from .link import GatewayLink, holding_channel
from .mapping import (
    DEFAULT_TIMEOUT,
    MappingCall,
    PortMapping,
    granted,
    register_client_factory,
    request_for,
)
from .negotiation import (
    ANSWERS_ONLY,
    DATAGRAM,
    PCP_SILENCE_FALLBACK,
    Step,
    falls_back,
    skips_after,
)
from .protocols import Protocol
from .request import DEFAULT_LIFETIME, MapRequest, checked_protocol, new_nonce, nonce_for
from .transport import SERVER_PORT
from .types import MappingProtocol, ProtocolName, Via
from .upnp import SSDP_PORT
from .upnp.mapper import UpnpMapper
from .wire import pcp
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .probe_result import ProbeResult as ProbeResult

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_TIMEOUT",
    "PCP_SILENCE_FALLBACK",
    "GatewayClient",
    "MappingCall",
    "PortMapping",
    "ProbeResult",
    "ProtocolName",
    "Via",
    "request_for",
]

log = logging.getLogger("engine.client")


class GatewayClient(GatewayLink):
    """Everything one client knows about one gateway, and the one path requests take.

    Holds the UDP channel (opened on first use; with ``async with``, kept open
    until exit, else closed after each operation), the :attr:`negotiation` (which
    protocols the gateway speaks, its external address and epochs), the last
    round-trip time, and one mapper per mapping protocol: PCP, NAT-PMP and UPnP IGD (on
    ``ssdp_port``; ``upnp=False`` leaves it out; factories in ``mappers`` add or replace
    one). Listeners in :attr:`on_state_lost` hear when an epoch shows lost mappings.
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int | None = None,
                 rng: random.Random | None = None,
                 mappers: Iterable[MapperFactory] = (),
                 ssdp_port: int = SSDP_PORT, upnp: bool = True) -> None:
        super().__init__(gateway, port, local_address=local_address,
                         max_in_flight=max_in_flight, rng=rng)
        name = str(self.gateway)  # as the gateway's errors name it (timeouts add the port)
        self.mappers: dict[MappingProtocol, Mapper] = {
            "pcp": DatagramMapper(PcpDialect(name), self),
            "natpmp": DatagramMapper(NatPmpDialect(name), self)}
        self.ssdp_port = ssdp_port  # where the UPnP mapper searches the IGD (on first use)
        if upnp:
            self.mappers["upnp"] = upnp_mapper = UpnpMapper(self)
            self.closers.append(upnp_mapper.close)  # its HTTP connections
        for factory in mappers:
            mapper = factory(self)
            self.mappers[mapper.name] = mapper

    # -- requests ------------------------------------------------------------------------

    @holding_channel
    def map(self, protocol: int, internal_port: int, *,
                  external_port: int | None = None,
                  external_address: str | IPAddress | None = None,
                  lifetime: int = DEFAULT_LIFETIME, via: Via = "auto",
                  prefer_failure: bool = False,
                  filters: Iterable[pcp.Filter] = (),
                  third_party: str | IPAddress | None = None,
                  nonce: bytes | None = None,
                  timeout: float | None = DEFAULT_TIMEOUT,
                  fallback_on_silence: bool = True) -> Coroutine[Any, Any, PortMapping]:
        """Create a mapping; see :func:`map_port`."""
        request = MapRequest.make(
            protocol, internal_port, external_port=external_port,
            external_address=external_address, lifetime=lifetime, via=via,
            prefer_failure=prefer_failure, filters=filters, third_party=third_party,
            nonce=nonce or nonce_for(via))
        return self._map(request, timeout, fallback_on_silence)

    @holding_channel
    async def map_request(self, request: MapRequest, *, timeout: float | None = DEFAULT_TIMEOUT,
                          fallback_on_silence: bool = True) -> PortMapping:
        """Create the mapping ``request`` asks for, negotiating the mapping protocol."""
        request.validate()
        if request.opcode == "peer":
            return await self._peer(request, timeout)
        return await self._map(request.with_nonce(), timeout, fallback_on_silence)

    async def _map(self, request: MapRequest, timeout: float | None,
                   fallback_on_silence: bool) -> PortMapping:
        via = request.via
        if via != "auto":
            # Negotiation.plan's one step for a named protocol, without the plan and its loop:
            # nothing falls back, its error is the call's (issue 15: ~2 µs a request).
            mapper = _mapper(self, via)
            if via not in DATAGRAM:  # a datagram protocol's refusal: the request's validation
                refusal = mapper.refusal(request)
                if refusal is not None:
                    raise InvalidRequest(refusal)
            grant = await mapper.map(request, timeout=timeout)
            return await _new_mapping(self, request, grant, timeout)
        start = self.channel.time()
        plan = self.negotiation.plan(
            via, natpmp_can_carry=request.natpmp_refusal() is None,
            upnp_can_carry=request.upnp_refusal() is None,
            fallback_on_silence=fallback_on_silence, timeout=timeout,
            available=_auto_protocols(self))
        silences: list[GatewayTimeout] = []
        skipped: frozenset[MappingProtocol] = frozenset()
        last: GatewayError | None = None
        steps = plan.steps
        for index, step in enumerate(steps):
            if step.protocol in skipped:
                continue
            mapper = _mapper(self, step.protocol)
            refusal = mapper.refusal(request)
            if refusal is not None:
                raise InvalidRequest(refusal)
            budget = step.budget
            if index:
                budget = None if timeout is None else timeout - (self.channel.time() - start)
                if budget is not None and budget <= 0:
                    break  # the whole budget went on earlier steps: say what was tried
                if step.silence_falls_back and step.budget is not None:
                    # A later silent step keeps its share too (NAT-PMP before UPnP).
                    budget = step.budget if budget is None else min(budget, step.budget)
                log.info("gateway %s: %s; trying %s", self.gateway, last, step.protocol)
            try:
                work = mapper.map(request, timeout=budget)
                scout = _igd_scout(self, step, steps)
                if scout is not None:
                    work = unless_igd_answers(work, scout, clock=self.channel.time,
                                              gateway=str(self.gateway),
                                              request=f"PCP map {request.describe()}")
                grant = await work
            except GatewayError as exc:
                last = exc
                if isinstance(exc, GatewayTimeout):
                    silences.append(exc)
                if index == len(steps) - 1 or not falls_back(request.via, step, exc):
                    break
                skipped |= skips_after(exc)
                continue
            if silences and silences[-1].protocol != step.protocol:
                silent = silences[-1]
                for each in DATAGRAM if isinstance(silent, SilentBesideIgd) \
                        else (silent.protocol,):
                    self.negotiation.silent_then_answered(each, step.protocol)
            return await _new_mapping(self, request, grant, timeout)
        assert last is not None
        if len(silences) > 1 and last is silences[-1]:
            # Silent on every step: one error that counts every try over the whole call.
            raise joined_silence(silences, self.channel.time() - start) from None
        raise last

    async def _granted(self, mapping: PortMapping | None, request: MapRequest,
                       grant: Grant) -> PortMapping:
        local = self._explicit_local or await self.local_address()
        return granted(self, mapping, request, grant, local, self.channel.time())

    @holding_channel
    async def renew(self, mapping: PortMapping, lifetime: int | None = None, *,
                    timeout: float | None = DEFAULT_TIMEOUT,
                    retransmit: bool = True) -> PortMapping:
        """Renew ``mapping`` in place: same nonce, same protocol, its assigned port.

        ``retransmit=False`` sends a renewal once and waits ``timeout`` for its answer:
        RFC 6887 §11.2.1 spaces renewals at least 4 s apart and retries them in later
        windows of the lifetime, which the caller schedules (IRT, 3 s, would be too soon).
        """
        if mapping.deleted:
            raise InvalidRequest(f"{mapping.describe()} was deleted; map it again")
        lifetime = mapping.requested_lifetime if lifetime is None else lifetime
        if lifetime < 1:
            raise InvalidRequest(f"renewal lifetime must be at least 1 s, not {lifetime}")
        return await self._again(mapping, request_for(mapping, lifetime), mapping.via,
                                 timeout, retransmit)

    @holding_channel
    async def recreate(self, mapping: PortMapping, *,
                       timeout: float | None = DEFAULT_TIMEOUT, via: Via = "auto") -> PortMapping:
        """Ask again for a mapping the gateway lost, for the same external port.

        The protocol may change (a gateway that came back speaking only NAT-PMP).
        """
        chosen: MappingProtocol = via if via != "auto" else \
            self.negotiation.recreate_via(mapping.via)
        if mapping.opcode == "peer":
            chosen = "pcp"
        request = request_for(mapping, mapping.requested_lifetime)
        if chosen != mapping.via:
            request = dataclasses.replace(request, via="auto", external_address=None,
                                          nonce=mapping.nonce or new_nonce())
        return await self._again(mapping, request, chosen, timeout, True)

    async def _again(self, mapping: PortMapping, request: MapRequest, via: MappingProtocol,
                     timeout: float | None, retransmit: bool) -> PortMapping:
        mapper = _mapper(self, via)
        refusal = mapper.refusal(request)
        if refusal is not None:
            raise InvalidRequest(refusal)
        grant = await mapper.renew(request, timeout=timeout, retransmit=retransmit)
        return await self._granted(mapping, request, grant)

    @holding_channel
    async def delete(self, mapping: PortMapping, *,
                     timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Delete ``mapping`` (lifetime 0, same nonce). On failure the mapping is unchanged."""
        if mapping.deleted:
            return
        await _mapper(self, mapping.via).delete(request_for(mapping, 0), timeout=timeout)
        mapping.deleted = True
        mapping.expires_at = self.channel.time()

    @holding_channel
    async def delete_all(self, protocol: int, *,
                         timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """NAT-PMP's delete-all: every mapping of ``protocol`` for this client (RFC 6886 §3.4)."""
        proto = checked_protocol(protocol)
        if proto not in (Protocol.TCP, Protocol.UDP):
            raise InvalidRequest("NAT-PMP's delete-all takes tcp or udp")
        mapper = self.mappers["natpmp"]
        assert isinstance(mapper, DatagramMapper)
        await mapper.delete_all(Protocol(proto), timeout=timeout)

    @holding_channel
    async def get_external_address(self, *, via: Via = "auto",
                                   timeout: float | None = DEFAULT_TIMEOUT) -> IPAddress:
        """The gateway's external address; see :func:`external_address`."""
        order = self.negotiation.address_order(via, ipv4=isinstance(self.gateway, IPv4Address),
                                               available=tuple(self.mappers))
        for index, protocol in enumerate(order):
            try:
                return await _mapper(self, protocol).external_address(timeout=timeout)
            except GatewayError as exc:
                if index == len(order) - 1 or not falls_back(via, ANSWERS_ONLY, exc):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @holding_channel
    async def peer(self, protocol: int, internal_port: int, remote_address: str | IPAddress,
                   remote_port: int, *, external_port: int | None = None,
                   external_address: str | IPAddress | None = None,
                   lifetime: int = DEFAULT_LIFETIME, third_party: str | IPAddress | None = None,
                   nonce: bytes | None = None,
                   timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """PCP PEER (RFC 6887 §12): create or learn the mapping for one remote peer."""
        request = MapRequest.make(
            protocol, internal_port, external_port=external_port,
            external_address=external_address, lifetime=lifetime, via="pcp",
            third_party=third_party, nonce=nonce, remote_address=remote_address,
            remote_port=remote_port)
        return await self._peer(request, timeout)

    async def _peer(self, request: MapRequest, timeout: float | None) -> PortMapping:
        request = request.with_nonce()
        grant = await self.mappers["pcp"].map(request, timeout=timeout)
        return await self._granted(None, request, grant)

    @holding_channel
    async def probe(self, *, timeout: float = 3.0) -> ProbeResult:
        """Ask PCP (ANNOUNCE), NAT-PMP (external address) and UPnP IGD (SSDP, description,
        WAN state) at once, as tailscale does. Never raises for silence: a protocol that did
        not answer within ``timeout`` is reported as not spoken.
        """
        await self.local_address()

        async def ask(protocol: MappingProtocol) -> Heard:
            # Learnt as each answers: a later address (announced meanwhile) must win.
            heard = await self.mappers[protocol].probe(timeout=timeout)
            self.negotiation.after_probe((heard,))
            return heard

        asked: list[MappingProtocol] = [p for p in ("pcp", "natpmp", "upnp") if p in self.mappers]
        heard = dict(zip(asked, await asyncio.gather(*map(ask, asked)), strict=True))
        from .probe_result import ProbeResult
        return ProbeResult.of(self.gateway, heard, self.external_address)


async def _new_mapping(client: GatewayClient, request: MapRequest, grant: Grant,
                       timeout: float | None) -> PortMapping:
    mapping = await client._granted(None, request, grant)
    if not request.honoured_by(mapping.external_port, mapping.external_address):
        # RFC 6887 §13.2: with PREFER_FAILURE the server must not assign another port
        # or address. Some do (Debian's miniupnpd 2.3.1 when the port is in use): give
        # the caller what the option promises, and take the unwanted mapping back.
        try:
            await client.delete(mapping, timeout=timeout)
        except GatewayError as exc:
            log.info("could not delete the mapping PREFER_FAILURE refused: %s", exc)
        raise ResultCodeError(
            "pcp", PcpResult.CANNOT_PROVIDE_EXTERNAL,
            request=f"PCP map {request.describe()}", gateway=str(client.gateway),
            epoch=grant.epoch,
            detail=f"the gateway offered {mapping.external_address}:"
                   f"{mapping.external_port} despite PREFER_FAILURE; it was deleted")
    return mapping


def _igd_scout(client: GatewayClient, step: Step, steps: tuple[Step, ...]) -> IgdScout | None:
    """The UPnP mapper, when ``step`` is a PCP step whose silence moves on and ``steps`` have
    a UPnP step to move on to: it then asks, while PCP is silent, whether the gateway has an
    IGD (:mod:`.igd_scout`)."""
    if not (step.silence_falls_back and step.protocol == "pcp") \
            or not any(later.protocol == "upnp" for later in steps[1:]):
        return None
    mapper = client.mappers.get("upnp")
    return mapper if isinstance(mapper, IgdScout) else None


def _mapper(client: GatewayClient, protocol: MappingProtocol) -> Mapper:
    """The client's mapper of ``protocol``; :class:`InvalidRequest` when it has none (a
    client made with ``upnp=False``, or a blocking one, asked for UPnP IGD)."""
    mapper = client.mappers.get(protocol)
    if mapper is None:
        raise InvalidRequest(f"this client does not speak {protocol}: it speaks "
                             f"{', '.join(client.mappers)}")
    return mapper


def _auto_protocols(client: GatewayClient) -> tuple[MappingProtocol, ...]:
    """The mapping protocols ``via="auto"`` may try: NAT-PMP speaks IPv4 only (RFC 6886), and
    UPnP IGD maps for IPv4 hosts only (over IPv6 it opens pinholes): PCP alone for an IPv6
    gateway."""
    if client.gateway.version == 4:
        return tuple(client.mappers)
    return tuple(p for p in client.mappers if p not in ("natpmp", "upnp"))


# A PortMapping restored without its client (the state file's) gets one of these.
register_client_factory(
    lambda gateway, port, local: GatewayClient(gateway, port, local_address=local))


def __getattr__(name: str) -> Any:
    # ProbeResult on first use (PEP 562): see engine.mapping.
    if name == "ProbeResult":
        from .probe_result import ProbeResult

        globals()[name] = ProbeResult
        return ProbeResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
