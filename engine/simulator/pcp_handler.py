"""The gateway's side of PCP (RFC 6887 §8-§15), as pure functions over :class:`GatewayState`.

Requests are parsed and answers built only through :mod:`engine.wire.pcp`.
Where the RFC leaves a choice (the order of checks, which code an option in the
wrong opcode earns), the simulator does what miniupnpd's ``pcpserver.c`` does,
and the comment says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address

from ..codes import ErrorLifetime, PcpResult, pcp_result
from ..errors import MalformedPacket
from ..protocols import PORTED_PROTOCOLS
from ..wire.addresses import IPAddress
from ..wire.pcp import (
    HEADER_SIZE,
    Filter,
    MapData,
    Opcode,
    Option,
    PeerData,
    PreferFailure,
    Request,
    RequestRejected,
    Response,
    ThirdParty,
    UnknownOption,
    decode_request,
    zero_address,
)
from .config import GatewayConfig
from .state import GatewayState, Mapping, kept_address

__all__ = ["error_lifetime", "handle_pcp", "pcp_announcement"]

# RFC 6887 §13.1-§13.3, "Valid for Opcodes".
_VALID_FOR: dict[type[Option], frozenset[int]] = {
    ThirdParty: frozenset({Opcode.MAP, Opcode.PEER}),
    PreferFailure: frozenset({Opcode.MAP}),
    Filter: frozenset({Opcode.MAP}),
}


def error_lifetime(config: GatewayConfig, code: int) -> int:
    """The Lifetime field of an error response (RFC 6887 §7.4, §15): ``error_lifetime`` for a
    short-lifetime error, ``long_error_lifetime`` for a long one. CANNOT_PROVIDE_EXTERNAL
    "depends on the reason"; here it is a port or address in use, which may free up: short.
    An unknown code counts as long."""
    member = pcp_result(code)
    if isinstance(member, PcpResult) and member.lifetime_kind in (ErrorLifetime.SHORT,
                                                                  ErrorLifetime.VARIES):
        return config.error_lifetime
    return config.long_error_lifetime


def pcp_announcement(state: GatewayState, now: float) -> bytes:
    """An unsolicited ANNOUNCE response (RFC 6887 §14.1.3): opcode 0 with the R bit, SUCCESS,
    lifetime 0, the current epoch, no opcode data."""
    return Response(Opcode.ANNOUNCE, PcpResult.SUCCESS, 0, state.epoch(now)).encode()


def handle_pcp(state: GatewayState, config: GatewayConfig, data: bytes, client: IPAddress,
               now: float) -> bytes | None:
    """Answer one datagram from ``client`` as a PCP server; ``None`` means no answer.

    RFC 6887 §8.3: a message under two octets, one with the R bit set, or a version-2 one
    shorter than the header is silently dropped.
    A version other than 2 gets UNSUPP_VERSION with version field 2 (§9), which is also how a
    PCP-only gateway answers NAT-PMP.
    """
    epoch = state.epoch(now)
    forced = config.force_pcp_result
    try:
        request = decode_request(data)
    except RequestRejected as rejected:
        code: int = rejected.result
        if forced is not None and code != PcpResult.UNSUPP_VERSION:
            code = forced
        # The request could not be parsed, so there is no opcode data to echo: header only,
        # with "the last 96 bits of the PCP Client's IP Address field" copied into the
        # reserved field (RFC 6887 §7.2), as far as the datagram has them.
        reserved = (data[12:HEADER_SIZE] + bytes(12))[:12]
        return Response(rejected.opcode & 0x7F, code, error_lifetime(config, code), epoch,
                        reserved=reserved).encode()
    except MalformedPacket:
        return None  # RFC 6887 §8.3: too short to answer, or a response: silently dropped
    if forced is not None:
        return _error(request, forced, config, epoch)
    return _process(state, config, request, client, now, epoch)


def _error(request: Request, code: int, config: GatewayConfig, epoch: int) -> bytes:
    """An error response: the request's opcode data and options echoed unchanged, as
    miniupnpd does (it rewrites the request buffer in place), with the error lifetime."""
    return Response(request.opcode, code, error_lifetime(config, code), epoch, request.data,
                    request.options).encode()


def _processed_options(request: Request) -> tuple[Option, ...]:
    """Options a success response carries: those it processed. RFC 6887 §13: each "may appear
    in response only if it appeared in the associated request"; unknown optional ones were
    ignored, not processed."""
    return tuple(o for o in request.options if not isinstance(o, UnknownOption))


def _process(state: GatewayState, config: GatewayConfig, request: Request, client: IPAddress,
             now: float, epoch: int) -> bytes:
    # decode_request has already refused repeated THIRD_PARTY or PREFER_FAILURE (§13.1, §13.2:
    # "Maximum occurrences: 1") and PREFER_FAILURE in PEER; options first, then the address
    # check, as miniupnpd's parsePCPOptions and ValidatePCPMsg do.
    for option in request.options:
        if isinstance(option, UnknownOption):
            if option.mandatory:
                # RFC 6887 §7.3: an unknown option in the mandatory range (0-127).
                return _error(request, PcpResult.UNSUPP_OPTION, config, epoch)
        elif request.opcode not in _VALID_FOR[type(option)]:
            # An option the opcode does not take: miniupnpd answers MALFORMED_REQUEST.
            return _error(request, PcpResult.MALFORMED_REQUEST, config, epoch)
    third_party = next((o for o in request.options if isinstance(o, ThirdParty)), None)
    prefer_failure = any(isinstance(o, PreferFailure) for o in request.options)
    filters = [o for o in request.options if isinstance(o, Filter)]
    if request.client_address != client:
        # RFC 6887 §8.3: the client's own idea of its address differs from the packet's source:
        # a NAT the client does not know about sits between them.
        return _error(request, PcpResult.ADDRESS_MISMATCH, config, epoch)
    internal = client
    if third_party is not None:
        if not config.allow_third_party:
            return _error(request, config.third_party_refusal, config, epoch)
        if third_party.address == client:
            # RFC 6887 §13.1: a THIRD_PARTY naming the sender itself "MUST return a
            # MALFORMED_REQUEST result code".
            return _error(request, PcpResult.MALFORMED_REQUEST, config, epoch)
        internal = third_party.address
    if request.opcode == Opcode.ANNOUNCE:
        # RFC 6887 §14.1.2: an ANNOUNCE request is answered SUCCESS, lifetime 0.
        return Response(Opcode.ANNOUNCE, PcpResult.SUCCESS, 0, epoch).encode()
    if isinstance(request.data, MapData):
        return _map(state, config, request, request.data, internal, client, prefer_failure,
                    filters, now, epoch)
    assert isinstance(request.data, PeerData)
    return _peer(state, config, request, request.data, internal, client, now, epoch)


def _nonce_refused(config: GatewayConfig, existing: Mapping | None, nonce: bytes) -> bool:
    """RFC 6887 §11.3: only the nonce that made a mapping may renew or delete it. A NAT-PMP
    mapping has none and may be taken over."""
    return (config.strict_nonce and existing is not None and existing.nonce is not None
            and existing.nonce != nonce)


def _apply_filters(current: Sequence[Filter], requested: Sequence[Filter]) -> list[Filter]:
    """RFC 6887 §13.3: each FILTER adds a permitted remote peer; prefix length 0 "will remove
    all previous filters" (and itself filters nothing)."""
    result = list(current)
    for item in requested:
        if item.prefix_length == 0:
            result = []
        elif item not in result:
            result.append(item)
    return result


def _map(state: GatewayState, config: GatewayConfig, request: Request, data: MapData,
         internal: IPAddress, client: IPAddress, prefer_failure: bool, filters: list[Filter],
         now: float, epoch: int) -> bytes:
    protocol, internal_port = data.protocol, data.internal_port
    # RFC 6887 §11.1: protocol 0 means all protocols, and then the internal port must be 0.
    # Internal port 0 is also how a protocol without ports (GRE, ESP...) is mapped; for one
    # with ports it means "all ports", which the simulator accepts only in a deletion.
    if protocol == 0 and internal_port != 0:
        return _error(request, PcpResult.MALFORMED_REQUEST, config, epoch)
    if internal_port == 0 and protocol in PORTED_PROTOCOLS and request.lifetime != 0:
        return _error(request, PcpResult.MALFORMED_REQUEST, config, epoch)
    if protocol in config.unsupported_protocols:
        return _error(request, PcpResult.UNSUPP_PROTOCOL, config, epoch)
    if request.lifetime == 0:
        return _map_delete(state, config, request, data, internal, epoch)
    external = state.external_address
    if external is None:
        return _error(request, PcpResult.NETWORK_FAILURE, config, epoch)
    suggested_address = data.external_address
    no_address_hint = int(suggested_address) == 0
    if prefer_failure and no_address_hint and data.external_port == 0:
        # PREFER_FAILURE with nothing suggested is meaningless: miniupnpd MALFORMED_OPTION.
        return _error(request, PcpResult.MALFORMED_OPTION, config, epoch)
    if prefer_failure and not no_address_hint and suggested_address != external:
        # RFC 6887 §13.2: with PREFER_FAILURE, no other address than the suggested one.
        return _error(request, PcpResult.CANNOT_PROVIDE_EXTERNAL, config, epoch)
    if protocol != 0 and data.external_port == 0 and config.refuse_zero_suggested_port:
        return _error(request, config.zero_port_result, config, epoch)
    key = (protocol, internal, internal_port, None)
    existing = state.get(key)
    if _nonce_refused(config, existing, data.nonce):
        return _error(request, PcpResult.NOT_AUTHORIZED, config, epoch)
    if existing is None and not state.has_room(config.max_mappings):
        return _error(request, PcpResult.NO_RESOURCES, config, epoch)
    endpoint = (protocol, internal, internal_port)
    port: int | None
    if internal_port == 0:
        # All of a protocol (or of every protocol, 0) for the internal host: one such mapping
        # per external address, and no external port to assign.
        if state.select(lambda m: m.protocol == protocol and m.internal_port == 0
                        and m.internal_address != internal):
            return _error(request, PcpResult.NO_RESOURCES, config, epoch)
        port = 0
    elif prefer_failure and data.external_port:
        # RFC 6887 §13.2: the suggested port or nothing (a renewal keeps the port it has).
        port = data.external_port
        held = state.port_of(endpoint)
        available = (held == port if held is not None
                     else state.port_is_free(protocol, port, endpoint, config.port_range))
        if not available:
            return _error(request, PcpResult.CANNOT_PROVIDE_EXTERNAL, config, epoch)
    else:
        # RFC 6887 §11.3: an existing mapping keeps its port; a new one gets the suggestion
        # if free, else another port.
        port = state.allocate_port(endpoint, data.external_port, config.port_range)
        if port is None:
            return _error(request, PcpResult.NO_RESOURCES, config, epoch)
    kept = _apply_filters(existing.filters if existing is not None else (), filters)
    if config.max_filters is not None and len(kept) > config.max_filters:
        return _error(request, PcpResult.EXCESSIVE_REMOTE_PEERS, config, epoch)
    lifetime = config.granted_lifetime(request.lifetime)
    if existing is not None:
        internal = existing.internal_address  # (the key's: equal)
        client = kept_address(existing.requested_by, client)
    state.put(Mapping(internal_address=internal, protocol=protocol, internal_port=internal_port,
                      external_port=port, lifetime=lifetime, expires_at=now + lifetime,
                      via="pcp", nonce=data.nonce, filters=tuple(kept), requested_by=client))
    return Response(Opcode.MAP, PcpResult.SUCCESS, lifetime, epoch,
                    MapData(data.nonce, protocol, internal_port, port, external),
                    _processed_options(request)).encode()


def _map_delete(state: GatewayState, config: GatewayConfig, request: Request, data: MapData,
                internal: IPAddress, epoch: int) -> bytes:
    """RFC 6887 §15: lifetime 0 deletes. The answer is SUCCESS with lifetime 0, external port 0
    and the all-zeros address of the family (§15.1 and erratum 3621), also when nothing was
    there (deletion is idempotent; ``missing_delete_result`` emulates miniupnpd's NO_RESOURCES).
    Internal port 0 deletes every MAP mapping of the host for that protocol (or all protocols)
    that the nonce may touch."""
    protocol, internal_port = data.protocol, data.internal_port
    family = state.external_address if state.external_address is not None else IPv4Address(0)
    deleted = Response(Opcode.MAP, PcpResult.SUCCESS, 0, epoch,
                       MapData(data.nonce, protocol, internal_port, 0, zero_address(family)),
                       _processed_options(request)).encode()
    if internal_port == 0:
        for mapping in state.select(lambda m: not m.is_peer and m.internal_address == internal
                                    and protocol in (0, m.protocol)
                                    and not _nonce_refused(config, m, data.nonce)):
            state.remove(mapping.key)
        return deleted
    key = (protocol, internal, internal_port, None)
    existing = state.get(key)
    if existing is None:
        if config.missing_delete_result != PcpResult.SUCCESS:
            return _error(request, config.missing_delete_result, config, epoch)
        return deleted
    if _nonce_refused(config, existing, data.nonce):
        return _error(request, PcpResult.NOT_AUTHORIZED, config, epoch)
    state.remove(key)
    return deleted


def _peer(state: GatewayState, config: GatewayConfig, request: Request, data: PeerData,
          internal: IPAddress, client: IPAddress, now: float, epoch: int) -> bytes:
    """RFC 6887 §12: PEER creates or refreshes the implicit mapping of one flow and reports the
    external address and port the remote peer sees. The flow's internal endpoint shares its
    external port with a MAP of the same endpoint (one endpoint, one external port)."""
    protocol, internal_port = data.protocol, data.internal_port
    if protocol == 0 or internal_port == 0:
        # A PEER mapping is one flow: "all protocols" or "all ports" has no meaning here.
        return _error(request, PcpResult.MALFORMED_REQUEST, config, epoch)
    if protocol in config.unsupported_protocols:
        return _error(request, PcpResult.UNSUPP_PROTOCOL, config, epoch)
    remote = (data.remote_address, data.remote_port)
    key = (protocol, internal, internal_port, remote)
    existing = state.get(key)
    if _nonce_refused(config, existing, data.nonce):
        return _error(request, PcpResult.NOT_AUTHORIZED, config, epoch)
    if request.lifetime == 0:
        state.remove(key)
        family = state.external_address if state.external_address is not None else remote[0]
        return Response(Opcode.PEER, PcpResult.SUCCESS, 0, epoch,
                        PeerData(data.nonce, protocol, internal_port, 0, zero_address(family),
                                 data.remote_port, data.remote_address),
                        _processed_options(request)).encode()
    external = state.external_address
    if external is None:
        return _error(request, PcpResult.NETWORK_FAILURE, config, epoch)
    if existing is None and not state.has_room(config.max_mappings):
        return _error(request, PcpResult.NO_RESOURCES, config, epoch)
    port = state.allocate_port((protocol, internal, internal_port), data.external_port,
                               config.port_range)
    if port is None:
        return _error(request, PcpResult.NO_RESOURCES, config, epoch)
    lifetime = config.granted_lifetime(request.lifetime)
    state.put(Mapping(internal_address=internal, protocol=protocol, internal_port=internal_port,
                      external_port=port, lifetime=lifetime, expires_at=now + lifetime,
                      via="pcp", nonce=data.nonce, remote_peer=remote, requested_by=client))
    return Response(Opcode.PEER, PcpResult.SUCCESS, lifetime, epoch,
                    PeerData(data.nonce, protocol, internal_port, port, external,
                             data.remote_port, data.remote_address),
                    _processed_options(request)).encode()
