"""The request layer: map a port, renew it, delete it; ask the external address; PEER; probe.

``map_port()`` is the front door. It speaks PCP first and falls back to
NAT-PMP when the gateway answers UNSUPP_VERSION (one round trip: a NAT-PMP
gateway answers a version-2 packet at once), or, for a gateway not yet heard
from, when PCP stays silent. What a gateway speaks is remembered by its
:class:`GatewayClient`, which also watches the epoch of every answer
(RFC 6887 §8.5, RFC 6886 §3.6) and tells its listeners when the gateway lost
its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from types import TracebackType
from typing import Concatenate, Literal, ParamSpec, TypeVar

from . import timing
from .codes import NatPmpResult, PcpResult
from .errors import (
    GatewayError,
    GatewayTimeout,
    InvalidRequest,
    ResultCodeError,
    UnsupportedVersion,
)
from .protocols import PORTED_PROTOCOLS, Protocol, as_protocol, protocol_name
from .transport import DEFAULT_MAX_IN_FLIGHT, SERVER_PORT, Exchange, GatewayChannel, Message
from .wire import natpmp, pcp
from .wire.addresses import IPAddress, to_address

__all__ = [
    "DEFAULT_LIFETIME",
    "DEFAULT_TIMEOUT",
    "GatewayClient",
    "PortMapping",
    "ProbeResult",
    "Via",
    "external_address",
    "map_port",
    "peer",
    "probe",
]

log = logging.getLogger("engine.client")

Via = Literal["auto", "pcp", "natpmp"]
ProtocolName = Literal["pcp", "natpmp"]

DEFAULT_LIFETIME = 7200
#: Total seconds a one-shot call may take by default: the RFC schedules, cut there
#: (PCP's own schedule never ends, RFC 6887 §8.1.1). ``timeout=None`` gives the RFCs' own.
DEFAULT_TIMEOUT = 30.0
#: With ``via="auto"``, how long PCP may stay silent, on a gateway never heard from, before
#: NAT-PMP is tried: two PCP tries (3 s, then 6 s, RFC 6887 §8.1.1).
PCP_SILENCE_FALLBACK = 9.5


def _new_nonce() -> bytes:
    # RFC 6887 §11.1: the nonce is random, so that an off-path attacker cannot guess it.
    return secrets.token_bytes(pcp.NONCE_SIZE)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What a gateway answered to a probe that asks PCP and NAT-PMP at once."""

    gateway: IPAddress
    pcp: bool
    natpmp: bool
    external_address: IPAddress | None
    pcp_epoch: int | None
    natpmp_epoch: int | None
    rtt: float | None
    """Round trip of the fastest answer, seconds."""
    pcp_version: int | None = None
    """The version a PCP-speaking gateway named in an UNSUPP_VERSION answer, if any."""

    @property
    def reachable(self) -> bool:
        """Whether the gateway answered either protocol."""
        return self.pcp or self.natpmp

    @property
    def via(self) -> ProtocolName | None:
        """The protocol ``via="auto"`` would use."""
        return "pcp" if self.pcp else "natpmp" if self.natpmp else None


@dataclass(eq=False)
class PortMapping:
    """A mapping the gateway granted, kept up to date by :meth:`renew`.

    ``expires_at`` and ``granted_at`` are on the event loop's clock
    (``loop.time()``, monotonic). For a PEER mapping ``remote_address`` and
    ``remote_port`` name the peer.
    """

    gateway: IPAddress
    local_address: IPAddress
    protocol: Protocol | int
    internal_port: int
    external_port: int
    external_address: IPAddress | None
    lifetime: int
    expires_at: float
    via: ProtocolName
    epoch: int
    nonce: bytes | None = None
    requested_lifetime: int = DEFAULT_LIFETIME
    granted_at: float = 0.0
    suggested_external_port: int = 0
    suggested_external_address: IPAddress | None = None
    options: tuple[pcp.Option, ...] = ()
    remote_address: IPAddress | None = None
    remote_port: int | None = None
    gateway_port: int = SERVER_PORT
    deleted: bool = False
    client: GatewayClient | None = field(default=None, repr=False)

    @property
    def opcode(self) -> Literal["map", "peer"]:
        """``"peer"`` for a PEER mapping, else ``"map"``."""
        return "peer" if self.remote_address is not None else "map"

    @property
    def key(self) -> tuple[int, int]:
        """(protocol, internal port): what identifies the mapping at its gateway."""
        return (int(self.protocol), self.internal_port)

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the mapping expires (negative once it has)."""
        if now is None:
            now = asyncio.get_running_loop().time()
        return self.expires_at - now

    def describe(self) -> str:
        """``tcp 8080 -> 203.0.113.7:8080 (pcp)``."""
        where = f"{self.external_address}:{self.external_port}" if self.external_address \
            else f"port {self.external_port}"
        return f"{protocol_name(int(self.protocol))} {self.internal_port} -> {where} ({self.via})"

    def _client(self) -> GatewayClient:
        if self.client is None:
            self.client = GatewayClient(self.gateway, self.gateway_port,
                                        local_address=self.local_address)
        return self.client

    async def renew(self, lifetime: int | None = None, *,
                    timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """Ask the gateway to extend the mapping (the same nonce and ports); updates ``self``.

        Raises a :class:`~engine.errors.GatewayError` and leaves the mapping as it was.
        """
        await self._client().renew(self, lifetime, timeout=timeout)
        return self

    async def delete(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Delete the mapping at the gateway ("try drop").

        On failure it raises and the mapping is still usable, so the delete can be
        retried (or the mapping renewed).
        """
        await self._client().delete(self, timeout=timeout)

    async def __aenter__(self) -> PortMapping:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.deleted:
            return
        try:
            await self.delete()
        except Exception:
            if exc is None:
                raise
            log.warning("could not delete %s while leaving its context", self.describe(),
                        exc_info=True)


class MappingCall:
    """What :func:`map_port` returns: await it, or use it as ``async with`` (deleted on exit)."""

    def __init__(self, make: Callable[[], Awaitable[PortMapping]]) -> None:
        self._make = make
        self._mapping: PortMapping | None = None

    def __await__(self) -> Generator[object, None, PortMapping]:
        return self._run().__await__()

    async def _run(self) -> PortMapping:
        return await self._make()

    async def __aenter__(self) -> PortMapping:
        self._mapping = await self._make()
        return self._mapping

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._mapping is not None:
            await self._mapping.__aexit__(exc_type, exc, tb)


EpochListener = Callable[[ProtocolName, int], None]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _holding_channel(
    method: Callable[Concatenate[GatewayClient, _P], Awaitable[_T]],
) -> Callable[Concatenate[GatewayClient, _P], Awaitable[_T]]:
    """Keep the channel open for the whole operation (one socket, not one per step)."""

    @functools.wraps(method)
    async def holding(self: GatewayClient, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        async with self._use():
            return await method(self, *args, **kwargs)

    return holding


class GatewayClient:
    """Everything one client knows about one gateway, and the one path requests take.

    Holds the UDP channel (opened on first use; with ``async with``, kept open
    until exit, else closed after each operation), which protocols the gateway
    was heard to speak, its external address, its epochs, and the last
    round-trip time. Listeners registered in :attr:`on_state_lost` are called
    when an epoch shows the gateway lost its mappings.
    """

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.gateway: IPAddress = _address("gateway", gateway)
        self.port = port
        self._explicit_local = (_address("local address", local_address)
                               if local_address is not None else None)
        # An explicit local address is bound: the PCP client address field must be the
        # packet's source, or the gateway answers ADDRESS_MISMATCH (RFC 6887 §8.3).
        self.channel = GatewayChannel(
            self.gateway, port, local_address=self._explicit_local,
            max_in_flight=DEFAULT_MAX_IN_FLIGHT if max_in_flight is None else max_in_flight)
        self.channel.observers.append(self._observe)
        self.rng = rng if rng is not None else random.Random()
        #: None: not known yet; True/False: heard to speak it or refuse it.
        self.speaks: dict[ProtocolName, bool | None] = {"pcp": None, "natpmp": None}
        self.external_address: IPAddress | None = None
        self.epochs: dict[ProtocolName, timing.EpochState | None] = {"pcp": None, "natpmp": None}
        self.last_epoch: int | None = None
        self.rtt: float | None = None
        self.last_contact: float | None = None
        self.on_state_lost: list[EpochListener] = []
        self._users = 0
        self._address_lookup: asyncio.Future[IPAddress] | None = None
        self._held = False

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> GatewayClient:
        await self.channel.open()
        self._held = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        if not self._users:
            self.channel.close()

    def close(self) -> None:
        """Close the channel now."""
        self._held = False
        self.channel.close()

    def rebind(self, local_address: IPAddress) -> None:
        """Send from ``local_address`` from now on (the host's address changed).

        The channel is closed and reopens, bound to the new address, on next use; PCP
        requests carry it as their client address (RFC 6887 §8.1).
        """
        self._explicit_local = local_address
        self.channel.close()
        self.channel.local_address = local_address

    @contextlib.asynccontextmanager
    async def _use(self) -> AsyncIterator[None]:
        # Without ``async with`` the channel lives as long as the operations using it.
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            if not self._users and not self._held:
                self.channel.close()

    async def _exchange(self, packet: bytes, accepts: Callable[[Message], bool],
                        protocol: ProtocolName, *, timeout: float | None,
                        describe: str, retransmit: bool = True) -> Exchange:
        schedule = timing.NATPMP_RETRANSMIT if protocol == "natpmp" else timing.PCP_RETRANSMIT
        if not retransmit and timeout is not None:
            # One packet, whose answer is awaited until the deadline.
            attempts: Iterator[timing.Attempt] = iter([timing.Attempt(1, 0.0, timeout)])
        elif timeout is None and protocol == "pcp":
            attempts = schedule.attempts(None, self.rng)
        else:
            attempts = schedule.attempts(timeout, self.rng)
        async with self._use():
            exchange = await self.channel.request(
                packet, accepts, (a.wait for a in attempts), deadline=timeout,
                describe=describe, protocol=protocol)
        if exchange.rtt is not None:
            self.rtt = exchange.rtt
        return exchange

    async def local_address(self) -> IPAddress:
        """The address the gateway sees us as: explicit, else what the kernel picks.

        A UDP socket connected to the gateway tells its source address without
        sending anything (issue: learn it before falling back to netifaces).
        """
        if self._explicit_local is not None:
            return self._explicit_local
        async with self._use():
            await self.channel.open()
            endpoint = self.channel.local_endpoint()
        if endpoint is None:  # pragma: no cover - open() either succeeds or raises
            raise InvalidRequest("cannot learn the local address; pass local_address")
        self._explicit_local = to_address(endpoint[0].split("%", 1)[0])
        return self._explicit_local

    # -- epochs --------------------------------------------------------------------------

    def _observe(self, message: Message) -> None:
        now = asyncio.get_running_loop().time()
        self.last_contact = now
        if isinstance(message, pcp.Response):
            if message.version != pcp.PCP_VERSION:
                return
            self.observe_epoch("pcp", message.epoch, now)
        else:
            self.observe_epoch("natpmp", message.epoch, now)

    def observe_epoch(self, protocol: ProtocolName, epoch: int, now: float) -> bool:
        """Feed an epoch heard from the gateway (answer or announcement).

        Returns True, and tells :attr:`on_state_lost`, when it shows lost state.
        """
        rule = timing.EpochRule.PCP if protocol == "pcp" else timing.EpochRule.NATPMP
        try:
            seen = timing.observe_epoch(rule, self.epochs[protocol], epoch, now)
        except ValueError:
            return False
        self.epochs[protocol] = seen.state
        self.last_epoch = epoch
        if seen.verdict is timing.EpochVerdict.LOST_STATE:
            log.info("gateway %s lost its state (%s epoch %d)", self.gateway, protocol, epoch)
            for listener in list(self.on_state_lost):
                listener(protocol, epoch)
            return True
        return False

    # -- requests ------------------------------------------------------------------------

    @_holding_channel
    async def map(self, protocol: int, internal_port: int, *,
                  external_port: int | None = None,
                  external_address: str | IPAddress | None = None,
                  lifetime: int = DEFAULT_LIFETIME, via: Via = "auto",
                  prefer_failure: bool = False,
                  filters: Iterable[pcp.Filter] = (),
                  third_party: str | IPAddress | None = None,
                  nonce: bytes | None = None,
                  timeout: float | None = DEFAULT_TIMEOUT,
                  fallback_on_silence: bool = True) -> PortMapping:
        """Create a mapping; see :func:`map_port`."""
        proto = _checked_protocol(protocol)
        _check_port("internal port", internal_port)
        if lifetime < 1 or lifetime > 0xFFFFFFFF:
            raise InvalidRequest(f"lifetime must be 1-4294967295 seconds, not {lifetime} "
                                 "(delete a mapping with its delete())")
        if proto == Protocol.ALL and internal_port != 0:
            raise InvalidRequest("protocol 0 (all protocols) takes internal port 0 "
                                 "(RFC 6887 §11.1)")
        suggested = internal_port if external_port is None else external_port
        if proto not in PORTED_PROTOCOLS:
            suggested = 0 if external_port is None else external_port
        _check_port("external port", suggested)
        options: list[pcp.Option] = []
        if third_party is not None:
            options.append(pcp.ThirdParty(_address("third-party address", third_party)))
        if prefer_failure:
            options.append(pcp.PreferFailure())
        options.extend(filters)
        wanted_external = (_address("external address", external_address)
                           if external_address is not None else None)
        request = _MapArgs(proto, internal_port, suggested, wanted_external, lifetime,
                           tuple(options), nonce or _new_nonce())
        return await self._map_with_fallback(request, via, timeout, fallback_on_silence)

    async def _map_with_fallback(self, request: _MapArgs, via: Via, timeout: float | None,
                                 fallback_on_silence: bool) -> PortMapping:
        if via not in ("auto", "pcp", "natpmp"):
            raise InvalidRequest(f"via must be 'auto', 'pcp' or 'natpmp', not {via!r}")
        if via == "natpmp" or (via == "auto" and self.speaks["pcp"] is False):
            return await self._map_natpmp(request, timeout)
        loop = asyncio.get_running_loop()
        start = loop.time()
        pcp_budget = timeout
        silence_fallback = (via == "auto" and fallback_on_silence and self.speaks["pcp"] is None
                            and _natpmp_can_carry(request))
        if silence_fallback:
            # Leave NAT-PMP at least half of a short deadline.
            pcp_budget = PCP_SILENCE_FALLBACK if timeout is None \
                else min(timeout / 2, PCP_SILENCE_FALLBACK)
        pcp_silence: GatewayTimeout | None = None
        try:
            return await self._map_pcp(request, pcp_budget)
        except UnsupportedVersion:
            if via != "auto":
                raise
            log.info("gateway %s does not speak PCP; trying NAT-PMP", self.gateway)
        except GatewayTimeout as exc:
            if not silence_fallback:
                raise
            pcp_silence = exc
            log.info("gateway %s is silent on PCP; trying NAT-PMP", self.gateway)
        remaining = None if timeout is None else timeout - (loop.time() - start)
        if remaining is not None and remaining <= 0:
            # The whole budget went on PCP: say what was tried (PCP, its tries), not
            # "0 NAT-PMP tries".
            if pcp_silence is not None:
                raise pcp_silence
            raise GatewayTimeout(str(self.gateway), "map", 0, loop.time() - start, "natpmp")
        try:
            return await self._map_natpmp(request, remaining)
        except GatewayTimeout as exc:
            if pcp_silence is None:
                raise
            # Silent on both: one error that counts every try over the whole call.
            raise GatewayTimeout(
                exc.gateway, f"{pcp_silence.request}, then {exc.request}",
                pcp_silence.tries + exc.tries, loop.time() - start, "natpmp") from None

    async def _map_pcp(self, request: _MapArgs, timeout: float | None,
                       mapping: PortMapping | None = None, *,
                       retransmit: bool = True) -> PortMapping:
        local = await self.local_address()
        suggested_address = request.external_address or pcp.zero_address(local)
        data = pcp.MapData(request.nonce, int(request.protocol), request.internal_port,
                           request.external_port, suggested_address)
        packet = pcp.Request(pcp.Opcode.MAP, request.lifetime, local, data,
                             request.options).encode()
        what = "delete" if request.lifetime == 0 else "renew" if mapping else "map"
        describe = f"PCP {what} {protocol_name(int(request.protocol))} {request.internal_port}"
        exchange = await self._exchange(packet, _accepts_pcp(pcp.Opcode.MAP, data), "pcp",
                                        timeout=timeout, describe=describe,
                                        retransmit=retransmit)
        response = self._pcp_result(exchange.message, describe)
        assert isinstance(response.data, pcp.MapData)
        if request.lifetime == 0:
            if mapping is None:  # pragma: no cover - deletes always pass their mapping
                raise InvalidRequest("delete without a mapping")
            return mapping
        granted = self._granted(mapping, request, "pcp", local, response.data.external_port,
                                response.data.external_address, response.lifetime,
                                response.epoch, response.options)
        if mapping is None and not _honours_prefer_failure(request, granted):
            # RFC 6887 §13.2: with PREFER_FAILURE the server must not assign another port
            # or address. Some do (Debian's miniupnpd 2.3.1 when the port is in use): give
            # the caller what the option promises, and take the unwanted mapping back.
            try:
                await self.delete(granted, timeout=timeout)
            except GatewayError as exc:
                log.info("could not delete the mapping PREFER_FAILURE refused: %s", exc)
            raise ResultCodeError(
                "pcp", PcpResult.CANNOT_PROVIDE_EXTERNAL, request=describe,
                gateway=str(self.gateway), epoch=response.epoch,
                detail=f"the gateway offered {granted.external_address}:"
                       f"{granted.external_port} despite PREFER_FAILURE; it was deleted")
        return granted

    async def _map_natpmp(self, request: _MapArgs, timeout: float | None,
                          mapping: PortMapping | None = None) -> PortMapping:
        if not _natpmp_can_carry(request):
            raise InvalidRequest(_natpmp_refusal(request))
        lifetime = request.lifetime
        external = 0 if lifetime == 0 else request.external_port
        message = natpmp.MapRequest(int(request.protocol), request.internal_port, external,
                                    lifetime)
        what = "delete" if lifetime == 0 else "renew" if mapping else "map"
        describe = f"NAT-PMP {what} {protocol_name(int(request.protocol))} {request.internal_port}"
        exchange = await self._exchange(message.encode(), _accepts_natpmp_map(message), "natpmp",
                                        timeout=timeout, describe=describe)
        response = self._natpmp_result(exchange.message, describe)
        assert isinstance(response, natpmp.MapResponse)
        if lifetime == 0:
            if mapping is None:  # pragma: no cover
                raise InvalidRequest("delete without a mapping")
            return mapping
        if self.external_address is None:
            try:
                await self._shared_external_address(timeout)
            except (GatewayTimeout, ResultCodeError) as exc:
                log.info("mapped, but the external address is unknown: %s", exc)
        local = await self.local_address()
        return self._granted(mapping, request, "natpmp", local, response.external_port,
                             self.external_address, response.lifetime, response.epoch, ())

    def _granted(self, mapping: PortMapping | None, request: _MapArgs, via: ProtocolName,
                 local: IPAddress, external_port: int, external_address: IPAddress | None,
                 lifetime: int, epoch: int, options: tuple[pcp.Option, ...]) -> PortMapping:
        now = asyncio.get_running_loop().time()
        if external_address is not None and via == "pcp":
            self.external_address = external_address
        if mapping is None:
            return PortMapping(
                gateway=self.gateway, gateway_port=self.port, local_address=local,
                protocol=as_protocol(request.protocol), internal_port=request.internal_port,
                external_port=external_port, external_address=external_address,
                lifetime=lifetime, expires_at=now + lifetime, granted_at=now, via=via,
                epoch=epoch, nonce=request.nonce if via == "pcp" else None,
                requested_lifetime=request.lifetime,
                suggested_external_port=request.external_port,
                suggested_external_address=request.external_address,
                # A success means every option we sent was processed (all are mandatory,
                # RFC 6887 §7.3); a gateway that does not echo them must not make the
                # renewal and the deletion forget THIRD_PARTY or the FILTERs.
                options=options or request.options, client=self)
        mapping.external_port = external_port
        mapping.external_address = external_address
        mapping.lifetime = lifetime
        mapping.granted_at = now
        mapping.expires_at = now + lifetime
        mapping.epoch = epoch
        mapping.via = via
        mapping.options = options or mapping.options
        mapping.client = self
        return mapping

    def _pcp_result(self, message: Message, describe: str) -> pcp.Response:
        """Turn a PCP answer into a response or the error it carries."""
        gateway = str(self.gateway)
        if isinstance(message, natpmp.ErrorResponse):
            # A NAT-PMP-only gateway (or an Apple router) answering a version-2 packet.
            self.speaks["pcp"] = False
            self.speaks["natpmp"] = True
            raise UnsupportedVersion("pcp", request=describe, gateway=gateway, server_version=0,
                                     epoch=message.epoch)
        assert isinstance(message, pcp.Response)
        if message.version != pcp.PCP_VERSION or message.result == PcpResult.UNSUPP_VERSION:
            self.speaks["pcp"] = False
            raise UnsupportedVersion("pcp", request=describe, gateway=gateway,
                                     server_version=message.version,
                                     error_lifetime=message.lifetime, epoch=message.epoch)
        self.speaks["pcp"] = True
        if message.result != PcpResult.SUCCESS:
            raise ResultCodeError("pcp", message.result, request=describe, gateway=gateway,
                                  error_lifetime=message.lifetime, epoch=message.epoch)
        return message

    def _natpmp_result(self, message: Message, describe: str) -> natpmp.Response:
        gateway = str(self.gateway)
        if isinstance(message, pcp.Response):
            # A PCP-only gateway answers a version-0 packet with a PCP UNSUPP_VERSION.
            self.speaks["natpmp"] = False
            raise UnsupportedVersion("natpmp", request=describe, gateway=gateway,
                                     server_version=message.version, epoch=message.epoch)
        self.speaks["natpmp"] = True
        if message.result == NatPmpResult.UNSUPPORTED_VERSION:
            self.speaks["natpmp"] = False
            raise UnsupportedVersion("natpmp", request=describe, gateway=gateway,
                                     server_version=0, epoch=message.epoch)
        if message.result != NatPmpResult.SUCCESS:
            raise ResultCodeError("natpmp", message.result, request=describe, gateway=gateway,
                                  epoch=message.epoch)
        return message

    @_holding_channel
    async def renew(self, mapping: PortMapping, lifetime: int | None = None, *,
                    timeout: float | None = DEFAULT_TIMEOUT,
                    retransmit: bool = True) -> PortMapping:
        """Renew ``mapping`` in place: same nonce, same protocol, its assigned port.

        ``retransmit=False`` sends a PCP renewal once and waits ``timeout`` for its answer:
        RFC 6887 §11.2.1 spaces renewals at least 4 s apart and retries them in later
        windows of the lifetime, which the caller schedules (IRT, 3 s, would be too soon).
        """
        if mapping.deleted:
            raise InvalidRequest(f"{mapping.describe()} was deleted; map it again")
        lifetime = mapping.requested_lifetime if lifetime is None else lifetime
        if lifetime < 1:
            raise InvalidRequest(f"renewal lifetime must be at least 1 s, not {lifetime}")
        if mapping.opcode == "peer":
            return await self._peer_request(mapping, lifetime, timeout)
        request = self._request_for(mapping, lifetime)
        if mapping.via == "pcp":
            return await self._map_pcp(request, timeout, mapping, retransmit=retransmit)
        return await self._map_natpmp(request, timeout, mapping)

    @_holding_channel
    async def recreate(self, mapping: PortMapping, *,
                       timeout: float | None = DEFAULT_TIMEOUT, via: Via = "auto") -> PortMapping:
        """Ask again for a mapping the gateway lost, for the same external port.

        The protocol may change (a gateway that came back speaking only NAT-PMP).
        """
        request = self._request_for(mapping, mapping.requested_lifetime)
        if mapping.opcode == "peer":
            return await self._peer_request(mapping, mapping.requested_lifetime, timeout)
        if via == "auto":
            via = mapping.via
            if self.speaks[via] is False:
                via = "natpmp" if via == "pcp" else "pcp"
        if via == "pcp":
            return await self._map_pcp(request, timeout, mapping)
        return await self._map_natpmp(request, timeout, mapping)

    def _request_for(self, mapping: PortMapping, lifetime: int) -> _MapArgs:
        # Ask for the port we hold (or held): RFC 6887 §11.2.1, RFC 6886 §3.3.
        return _MapArgs(
            as_protocol(int(mapping.protocol)), mapping.internal_port,
            mapping.external_port or mapping.suggested_external_port,
            mapping.external_address if mapping.via == "pcp" else None, lifetime,
            mapping.options, mapping.nonce or _new_nonce())

    @_holding_channel
    async def delete(self, mapping: PortMapping, *,
                     timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Delete ``mapping`` (lifetime 0, same nonce). On failure the mapping is unchanged."""
        if mapping.deleted:
            return
        if mapping.opcode == "peer":
            await self._peer_request(mapping, 0, timeout)
        else:
            request = self._request_for(mapping, 0)
            if mapping.via == "pcp":
                await self._map_pcp(request, timeout, mapping)
            else:
                await self._map_natpmp(request, timeout, mapping)
        mapping.deleted = True
        mapping.expires_at = asyncio.get_running_loop().time()

    @_holding_channel
    async def delete_all(self, protocol: int, *,
                         timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """NAT-PMP's delete-all: every mapping of ``protocol`` for this client (RFC 6886 §3.4)."""
        proto = _checked_protocol(protocol)
        if proto not in (Protocol.TCP, Protocol.UDP):
            raise InvalidRequest("NAT-PMP's delete-all takes tcp or udp")
        message = natpmp.MapRequest(int(proto), 0, 0, 0)
        describe = f"NAT-PMP delete all {protocol_name(int(proto))}"
        exchange = await self._exchange(message.encode(), _accepts_natpmp_map(message), "natpmp",
                                        timeout=timeout, describe=describe)
        self._natpmp_result(exchange.message, describe)

    async def _shared_external_address(self, timeout: float | None) -> IPAddress:
        """One NAT-PMP address request for all the mappings that need it at once.

        A NAT-PMP mapping answer does not carry the external address (RFC 6886 §3.3):
        a hundred concurrent first mappings would otherwise ask a hundred times.
        """
        lookup = self._address_lookup
        if lookup is None or lookup.done():
            lookup = asyncio.ensure_future(self._natpmp_external_address(timeout))
            # Read the outcome even if every waiter was cancelled meanwhile.
            lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._address_lookup = lookup
        return await asyncio.shield(lookup)

    async def _natpmp_external_address(self, timeout: float | None) -> IPAddress:
        describe = "NAT-PMP external address"
        exchange = await self._exchange(natpmp.ExternalAddressRequest().encode(),
                                        _accepts_natpmp_address, "natpmp", timeout=timeout,
                                        describe=describe)
        response = self._natpmp_result(exchange.message, describe)
        assert isinstance(response, natpmp.ExternalAddressResponse)
        self.external_address = response.external_address
        return response.external_address

    async def _pcp_external_address(self, timeout: float | None) -> IPAddress:
        # RFC 6887 §11.6: learn the external address through a short-lived MAP, then
        # delete it. A high internal port: gateways often refuse to map low ones.
        port = self.rng.randint(49152, 65535)
        request = _MapArgs(Protocol.UDP, port, port, None, 120, (), _new_nonce())
        mapping = await self._map_pcp(request, timeout)
        try:
            await self.delete(mapping, timeout=timeout)
        except (GatewayTimeout, ResultCodeError) as exc:
            log.info("could not delete the short mapping used to learn the address: %s", exc)
        assert mapping.external_address is not None
        return mapping.external_address

    @_holding_channel
    async def get_external_address(self, *, via: Via = "auto",
                                   timeout: float | None = DEFAULT_TIMEOUT) -> IPAddress:
        """The gateway's external address; see :func:`external_address`."""
        # NAT-PMP is IPv4-only (RFC 6886 §3.2: its answer holds an IPv4 address): over IPv6,
        # "auto" asks PCP, which reports an IPv6 external address too.
        natpmp_possible = (isinstance(self.gateway, IPv4Address)
                           and self.speaks["natpmp"] is not False)
        if via == "natpmp" or (via == "auto" and natpmp_possible):
            try:
                return await self._natpmp_external_address(timeout)
            except UnsupportedVersion:
                if via != "auto":
                    raise
        return await self._pcp_external_address(timeout)

    @_holding_channel
    async def peer(self, protocol: int, internal_port: int, remote_address: str | IPAddress,
                   remote_port: int, *, external_port: int | None = None,
                   external_address: str | IPAddress | None = None,
                   lifetime: int = DEFAULT_LIFETIME, third_party: str | IPAddress | None = None,
                   nonce: bytes | None = None,
                   timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """PCP PEER (RFC 6887 §12): create or learn the mapping for one remote peer."""
        proto = _checked_protocol(protocol)
        _check_port("internal port", internal_port)
        _check_port("remote port", remote_port)
        if lifetime < 1:
            raise InvalidRequest(f"PEER lifetime must be at least 1 s, not {lifetime}")
        local = await self.local_address()
        options: tuple[pcp.Option, ...] = ()
        if third_party is not None:
            options = (pcp.ThirdParty(_address("third-party address", third_party)),)
        mapping = PortMapping(
            gateway=self.gateway, gateway_port=self.port, local_address=local,
            protocol=proto, internal_port=internal_port,
            external_port=internal_port if external_port is None else external_port,
            external_address=(_address("external address", external_address)
                              if external_address else None),
            lifetime=0, expires_at=0.0, via="pcp", epoch=0, nonce=nonce or _new_nonce(),
            requested_lifetime=lifetime, options=options,
            remote_address=_address("remote address", remote_address), remote_port=remote_port,
            client=self)
        return await self._peer_request(mapping, lifetime, timeout)

    async def _peer_request(self, mapping: PortMapping, lifetime: int,
                            timeout: float | None) -> PortMapping:
        assert mapping.remote_address is not None
        assert mapping.remote_port is not None
        assert mapping.nonce is not None
        local = await self.local_address()
        data = pcp.PeerData(mapping.nonce, int(mapping.protocol), mapping.internal_port,
                            mapping.external_port,
                            mapping.external_address or pcp.zero_address(local),
                            mapping.remote_port, mapping.remote_address)
        packet = pcp.Request(pcp.Opcode.PEER, lifetime, local, data, mapping.options).encode()
        describe = (f"PCP PEER {protocol_name(int(mapping.protocol))} {mapping.internal_port} "
                    f"to {mapping.remote_address}:{mapping.remote_port}")
        exchange = await self._exchange(packet, _accepts_pcp(pcp.Opcode.PEER, data), "pcp",
                                        timeout=timeout, describe=describe)
        response = self._pcp_result(exchange.message, describe)
        assert isinstance(response.data, pcp.PeerData)
        if lifetime:
            now = asyncio.get_running_loop().time()
            mapping.external_port = response.data.external_port
            mapping.external_address = response.data.external_address
            mapping.lifetime = response.lifetime
            mapping.granted_at = now
            mapping.expires_at = now + response.lifetime
            mapping.epoch = response.epoch
            self.external_address = response.data.external_address
        return mapping

    @_holding_channel
    async def probe(self, *, timeout: float = 3.0) -> ProbeResult:
        """Ask PCP (ANNOUNCE) and NAT-PMP (external address) at once, as tailscale does.

        Never raises for silence: a protocol that did not answer within
        ``timeout`` is reported as not spoken.
        """
        local = await self.local_address()
        loop = asyncio.get_running_loop()
        start = loop.time()
        announce = pcp.Request(pcp.Opcode.ANNOUNCE, 0, local).encode()
        pcp_task = asyncio.ensure_future(self._exchange(
            announce, _accepts_pcp(pcp.Opcode.ANNOUNCE, None), "pcp", timeout=timeout,
            describe="PCP ANNOUNCE probe"))
        natpmp_task = asyncio.ensure_future(self._exchange(
            natpmp.ExternalAddressRequest().encode(), _accepts_natpmp_address, "natpmp",
            timeout=timeout, describe="NAT-PMP external address probe"))
        await asyncio.wait((pcp_task, natpmp_task))
        speaks_pcp = speaks_natpmp = False
        pcp_epoch = natpmp_epoch = pcp_version = None
        rtts: list[float] = []
        pcp_answered = not pcp_task.cancelled() and pcp_task.exception() is None
        if pcp_answered:
            exchange = pcp_task.result()
            rtts.append(exchange.rtt if exchange.rtt is not None else exchange.elapsed)
            message = exchange.message
            if isinstance(message, pcp.Response) and message.version == pcp.PCP_VERSION \
                    and message.result != PcpResult.UNSUPP_VERSION:
                speaks_pcp = True
                pcp_epoch = message.epoch
            elif isinstance(message, pcp.Response):
                pcp_version = message.version
        if not natpmp_task.cancelled() and natpmp_task.exception() is None:
            exchange = natpmp_task.result()
            rtts.append(exchange.rtt if exchange.rtt is not None else exchange.elapsed)
            message = exchange.message
            if isinstance(message, natpmp.ExternalAddressResponse):
                speaks_natpmp = True
                natpmp_epoch = message.epoch
                if message.result == NatPmpResult.SUCCESS:
                    self.external_address = message.external_address
            elif isinstance(message, natpmp.ErrorResponse) \
                    and message.result != NatPmpResult.UNSUPPORTED_VERSION:
                speaks_natpmp = True
                natpmp_epoch = message.epoch
        if pcp_answered:  # an answer says yes or no; silence leaves what we knew
            self.speaks["pcp"] = speaks_pcp
        if speaks_natpmp:
            self.speaks["natpmp"] = True
        log.debug("probe of %s took %.3f s", self.gateway, loop.time() - start)
        return ProbeResult(self.gateway, speaks_pcp, speaks_natpmp, self.external_address,
                           pcp_epoch, natpmp_epoch, min(rtts) if rtts else None, pcp_version)

    # contract for the manager (core helper provides these)

    def forget_epochs(self, *protocols: ProtocolName) -> None:
        """Forget the last epoch heard for ``protocols``: the next one is a first contact."""
        for protocol in protocols:
            self.epochs[protocol] = None

    @property
    def explicit_local_address(self) -> IPAddress | None:
        """The local address given to the constructor, or None (the kernel picks)."""
        return self._explicit_local


@dataclass(frozen=True, slots=True)
class _MapArgs:
    protocol: Protocol | int
    internal_port: int
    external_port: int
    external_address: IPAddress | None
    lifetime: int
    options: tuple[pcp.Option, ...]
    nonce: bytes


def _checked_protocol(protocol: int) -> Protocol | int:
    try:
        return as_protocol(int(protocol))
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(str(exc)) from None


def _address(what: str, value: str | IPAddress) -> IPAddress:
    # A caller's typo is an InvalidRequest (a NatDeckError), not ipaddress's bare ValueError.
    try:
        return to_address(value)
    except ValueError:
        raise InvalidRequest(f"{what} must be an IP address, not {value!r}") from None


def _check_port(name: str, port: int) -> None:
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise InvalidRequest(f"{name} must be 0-65535, not {port!r}")


def _honours_prefer_failure(request: _MapArgs, granted: PortMapping) -> bool:
    if not any(isinstance(o, pcp.PreferFailure) for o in request.options):
        return True
    if request.external_port and granted.external_port != request.external_port:
        return False
    wanted = request.external_address
    return wanted is None or wanted.is_unspecified or granted.external_address == wanted


def _natpmp_can_carry(request: _MapArgs) -> bool:
    return (request.protocol in (Protocol.TCP, Protocol.UDP) and not request.options
            and request.internal_port != 0 and request.external_address is None)


def _natpmp_refusal(request: _MapArgs) -> str:
    if request.protocol not in (Protocol.TCP, Protocol.UDP):
        return (f"NAT-PMP can map only TCP and UDP, not {protocol_name(int(request.protocol))}; "
                "use a PCP gateway (via='pcp')")
    if request.options:
        names = ", ".join(sorted({type(o).__name__ for o in request.options}))
        return f"NAT-PMP cannot carry PCP options ({names}); use via='pcp'"
    if request.external_address is not None:
        return "NAT-PMP cannot ask for a particular external address; use via='pcp'"
    return "NAT-PMP needs an internal port of 1-65535"


def _accepts_pcp(opcode: int, data: pcp.MapData | pcp.PeerData | None) -> Callable[[Message], bool]:
    """Does a message answer our PCP request? RFC 6887 §8.3 and §11.4/§12.3 checks."""

    def accepts(message: Message) -> bool:
        if isinstance(message, natpmp.ErrorResponse):
            # A NAT-PMP gateway cannot say "unsupported version 0", so an 8-byte
            # UNSUPPORTED_VERSION can only answer a PCP request.
            return message.result == NatPmpResult.UNSUPPORTED_VERSION
        if not isinstance(message, pcp.Response) or message.opcode != opcode:
            return False
        if message.version != pcp.PCP_VERSION:
            return message.result == PcpResult.UNSUPP_VERSION
        if message.result == PcpResult.UNSUPP_VERSION and message.data is None:
            # A version-2 server that refuses "the version" of a packet, without our nonce,
            # refuses a version-0 one: a PCP-only gateway answering the NAT-PMP request sent
            # alongside (RFC 6887 §9; its opcode 0, 1 or 2 collides with ours).
            return False
        if data is None:
            return message.data is None  # ANNOUNCE: a header alone
        if message.data is None:
            # A header-only answer can only be an error about the whole request.
            return message.result != PcpResult.SUCCESS
        got = message.data
        if got.nonce != data.nonce or got.protocol != data.protocol:
            return False
        if data.protocol != 0 and got.internal_port != data.internal_port:
            return False
        if isinstance(data, pcp.PeerData):
            assert isinstance(got, pcp.PeerData)
            if got.remote_port != data.remote_port or got.remote_address != data.remote_address:
                return False
        if message.result == PcpResult.SUCCESS and message.unknown_mandatory_options:
            # We cannot know what the gateway did with an option we do not
            # understand: the answer is not one we can believe (RFC 6887 §7.3).
            log.info("dropped an answer with unknown mandatory options %s",
                     [o.code for o in message.unknown_mandatory_options])
            return False
        return True

    return accepts


def _accepts_natpmp_map(request: natpmp.MapRequest) -> Callable[[Message], bool]:
    def accepts(message: Message) -> bool:
        if isinstance(message, pcp.Response):
            return message.result == PcpResult.UNSUPP_VERSION
        if isinstance(message, natpmp.ErrorResponse):
            return (message.result != NatPmpResult.UNSUPPORTED_VERSION
                    and message.opcode in (0, natpmp.RESPONSE_BIT | request.opcode))
        return (isinstance(message, natpmp.MapResponse)
                and message.protocol == request.protocol
                and message.internal_port == request.internal_port)

    return accepts


def _accepts_natpmp_address(message: Message) -> bool:
    if isinstance(message, pcp.Response):
        return message.result == PcpResult.UNSUPP_VERSION
    if isinstance(message, natpmp.ErrorResponse):
        return (message.result != NatPmpResult.UNSUPPORTED_VERSION
                and message.opcode in (0, natpmp.RESPONSE_BIT))
    return isinstance(message, natpmp.ExternalAddressResponse)


# -- the one-shot API ---------------------------------------------------------------------


def _client_for(gateway: str | IPAddress | GatewayClient, gateway_port: int,
                local_address: str | IPAddress | None) -> GatewayClient:
    if isinstance(gateway, GatewayClient):
        return gateway
    return GatewayClient(gateway, gateway_port, local_address=local_address)


def map_port(gateway: str | IPAddress | GatewayClient, internal_port: int,
             protocol: int = Protocol.TCP, *,
             local_address: str | IPAddress | None = None,
             external_port: int | None = None,
             external_address: str | IPAddress | None = None,
             lifetime: int = DEFAULT_LIFETIME,
             via: Via = "auto",
             gateway_port: int = SERVER_PORT,
             prefer_failure: bool = False,
             filters: Iterable[pcp.Filter] = (),
             third_party: str | IPAddress | None = None,
             nonce: bytes | None = None,
             timeout: float | None = DEFAULT_TIMEOUT,
             fallback_on_silence: bool = True) -> MappingCall:
    """Ask ``gateway`` to map ``internal_port`` of ``protocol`` to an external port.

    ``await`` the result for a :class:`PortMapping`, or use it in ``async with``
    to delete the mapping on exit. ``via="auto"`` speaks PCP and falls back to
    NAT-PMP on UNSUPP_VERSION (and, for a gateway never heard from, on PCP
    silence when ``fallback_on_silence``). With no ``external_port`` the
    internal port is suggested (some gateways refuse a suggestion of 0).
    ``timeout`` bounds the whole call (``None``: the RFCs' own schedules).

    Raises :class:`~engine.errors.InvalidRequest` before sending anything the
    protocol cannot carry, :class:`~engine.errors.ResultCodeError` when the
    gateway refuses, :class:`~engine.errors.GatewayTimeout` on silence.
    """
    client = _client_for(gateway, gateway_port, local_address)

    async def make() -> PortMapping:
        return await client.map(protocol, internal_port, external_port=external_port,
                                external_address=external_address, lifetime=lifetime, via=via,
                                prefer_failure=prefer_failure, filters=filters,
                                third_party=third_party, nonce=nonce, timeout=timeout,
                                fallback_on_silence=fallback_on_silence)

    return MappingCall(make)


async def external_address(gateway: str | IPAddress | GatewayClient, *,
                           gateway_port: int = SERVER_PORT,
                           local_address: str | IPAddress | None = None,
                           via: Via = "auto",
                           timeout: float | None = DEFAULT_TIMEOUT) -> IPAddress:
    """The gateway's external address.

    NAT-PMP's opcode 0 where the gateway speaks it (no state is created); else
    PCP's short MAP (RFC 6887 §11.6), deleted again at once.
    """
    client = _client_for(gateway, gateway_port, local_address)
    return await client.get_external_address(via=via, timeout=timeout)


async def peer(gateway: str | IPAddress | GatewayClient, internal_port: int,
               protocol: int, remote_address: str | IPAddress, remote_port: int, *,
               gateway_port: int = SERVER_PORT,
               local_address: str | IPAddress | None = None,
               external_port: int | None = None,
               external_address: str | IPAddress | None = None,
               lifetime: int = DEFAULT_LIFETIME,
               third_party: str | IPAddress | None = None,
               nonce: bytes | None = None,
               timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
    """PCP PEER (RFC 6887 §12): the mapping used for traffic with one remote peer."""
    client = _client_for(gateway, gateway_port, local_address)
    return await client.peer(protocol, internal_port, remote_address, remote_port,
                             external_port=external_port, external_address=external_address,
                             lifetime=lifetime, third_party=third_party, nonce=nonce,
                             timeout=timeout)


async def probe(gateway: str | IPAddress | GatewayClient, *,
                gateway_port: int = SERVER_PORT,
                local_address: str | IPAddress | None = None,
                timeout: float = 3.0) -> ProbeResult:
    """Which protocols the gateway answers, its external address, epochs and RTT."""
    client = _client_for(gateway, gateway_port, local_address)
    return await client.probe(timeout=timeout)
