"""The gateway's side of NAT-PMP (RFC 6886 §3), as pure functions over :class:`GatewayState`.

Messages are built and parsed only through :mod:`engine.wire.natpmp`, so the
simulator and the client share one definition of the wire format. Where the RFC
leaves a choice, the simulator does what miniupnpd's ``natpmp.c`` does, and the
comment says so.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address

from ..codes import NatPmpResult
from ..errors import MalformedPacket
from ..wire.addresses import IPAddress
from ..wire.natpmp import (
    RESPONSE_BIT,
    ErrorResponse,
    ExternalAddressRequest,
    ExternalAddressResponse,
    MapRequest,
    MapResponse,
    Opcode,
    decode_request,
    protocol_for,
)
from .config import GatewayConfig
from .state import GatewayState, Mapping

__all__ = ["handle_natpmp", "natpmp_announcement", "natpmp_unsupported_version"]

_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
# Codes answered with the short 8-byte form, as a gateway that does not understand the request
# at all would (RFC 6886 §3.5); others come in the full layout of the opcode's response.
_SHORT_FORM_CODES = frozenset({NatPmpResult.UNSUPPORTED_VERSION, NatPmpResult.UNSUPPORTED_OPCODE})


def _error_opcode(config: GatewayConfig, request_opcode: int) -> int:
    """Opcode of the 8-byte error answer: RFC 6886 §3.5's text says 0, its erratum (and
    miniupnpd) 128 + the request's opcode."""
    return RESPONSE_BIT | (request_opcode & 0x7F) if config.natpmp_erratum_opcode else 0


def natpmp_unsupported_version(config: GatewayConfig, data: bytes, epoch: int) -> bytes:
    """The 8-byte UNSUPPORTED_VERSION answer to a packet of a version this gateway does not
    speak: RFC 6886 §3 ("MUST return result code 1") and what a NAT-PMP-only gateway
    answers to PCP (RFC 6887 §9)."""
    opcode = data[1] if len(data) > 1 else 0
    return ErrorResponse(_error_opcode(config, opcode), NatPmpResult.UNSUPPORTED_VERSION,
                         epoch).encode()


def natpmp_announcement(state: GatewayState, now: float) -> bytes | None:
    """The external-address announcement of RFC 6886 §3.2.1 (opcode 128, result 0), or
    ``None`` when there is no IPv4 external address to announce (miniupnpd then stays quiet)."""
    address = state.external_address
    if not isinstance(address, IPv4Address):
        return None
    return ExternalAddressResponse(NatPmpResult.SUCCESS, state.epoch(now), address).encode()


def handle_natpmp(state: GatewayState, config: GatewayConfig, data: bytes, client: IPAddress,
                  now: float) -> bytes | None:
    """Answer one version-0 datagram from ``client``; ``None`` means no answer.

    Silently ignored, as miniupnpd does: datagrams under 2 bytes, map requests of the wrong
    length (RFC 6886 gives no error for them), and packets with the response bit set (another
    gateway's answers or announcements heard on the link).
    """
    if len(data) < 2 or data[1] & RESPONSE_BIT:
        return None
    opcode = data[1]
    epoch = state.epoch(now)
    if config.force_natpmp_result is not None:
        return _forced(config, data, config.force_natpmp_result, epoch)
    if opcode not in _KNOWN_OPCODES:
        # RFC 6886 §3.5: result 5, "Unsupported opcode".
        return ErrorResponse(_error_opcode(config, opcode), NatPmpResult.UNSUPPORTED_OPCODE,
                             epoch).encode()
    try:
        request = decode_request(data)
    except MalformedPacket:
        return None
    if isinstance(request, ExternalAddressRequest):
        return _external_address(state, epoch)
    return _map(state, config, request, client, now, epoch)


def _external_address(state: GatewayState, epoch: int) -> bytes:
    address = state.external_address
    if isinstance(address, IPv4Address):
        return ExternalAddressResponse(NatPmpResult.SUCCESS, epoch, address).encode()
    # RFC 6886 §3.5 NETWORK_FAILURE: "e.g., NAT box itself has not obtained a DHCP lease";
    # §3.2: the address field "MUST be set to zero" when the result is not 0.
    return ExternalAddressResponse(NatPmpResult.NETWORK_FAILURE, epoch, IPv4Address(0)).encode()


def _map_error(request: MapRequest, result: NatPmpResult, epoch: int) -> bytes:
    return MapResponse(request.protocol, result, epoch, request.internal_port, 0, 0).encode()


def _map(state: GatewayState, config: GatewayConfig, request: MapRequest, client: IPAddress,
         now: float, epoch: int) -> bytes:
    protocol = request.protocol
    if protocol in config.unsupported_protocols:
        # NAT-PMP has no "unsupported protocol" code: mapping this protocol is an opcode the
        # gateway does not support.
        return ErrorResponse(_error_opcode(config, request.opcode),
                             NatPmpResult.UNSUPPORTED_OPCODE, epoch).encode()
    if request.lifetime == 0:
        return _delete(state, config, request, client, epoch)
    if request.internal_port == 0:
        # Internal port 0 only means "all" in a deletion (RFC 6886 §3.4); miniupnpd refuses.
        return _map_error(request, NatPmpResult.NOT_AUTHORIZED, epoch)
    if not isinstance(state.external_address, IPv4Address):
        return _map_error(request, NatPmpResult.NETWORK_FAILURE, epoch)
    key = (protocol, client, request.internal_port, None)
    existing = state.get(key)
    if existing is not None and existing.nonce is not None and config.strict_nonce:
        # A PCP mapping is guarded by its nonce, which a NAT-PMP request cannot show.
        return _map_error(request, NatPmpResult.NOT_AUTHORIZED, epoch)
    if existing is None and not state.has_room(config.max_mappings):
        return _map_error(request, NatPmpResult.OUT_OF_RESOURCES, epoch)
    # RFC 6886 §3.3: asking again for an existing mapping renews it with the same external port
    # (the endpoint already holds it); a new one gets the suggestion if free, else another.
    port = state.allocate_port((protocol, client, request.internal_port),
                               request.external_port, config.port_range)
    if port is None:
        return _map_error(request, NatPmpResult.OUT_OF_RESOURCES, epoch)
    lifetime = config.granted_lifetime(request.lifetime)
    if existing is not None:
        client = existing.internal_address  # (the key's: equal)
    state.put(Mapping(internal_address=client, protocol=protocol,
                      internal_port=request.internal_port, external_port=port,
                      lifetime=lifetime, expires_at=now + lifetime, via="natpmp",
                      requested_by=client))
    return MapResponse(protocol, NatPmpResult.SUCCESS, epoch, request.internal_port, port,
                       lifetime).encode()


def _delete(state: GatewayState, config: GatewayConfig, request: MapRequest, client: IPAddress,
            epoch: int) -> bytes:
    """RFC 6886 §3.4: lifetime 0 deletes; internal port 0 as well deletes all of the client's
    mappings of that protocol. The answer is SUCCESS with external port and lifetime 0, also
    when there was nothing to delete. Like miniupnpd, "all" means all made through NAT-PMP:
    PCP mappings keep their nonce protection."""
    protocol = request.protocol
    if request.internal_port == 0:
        for mapping in state.select(lambda m: m.via == "natpmp" and m.remote_peer is None
                                    and m.internal_address == client
                                    and m.protocol == protocol):
            state.remove(mapping.key)
    else:
        key = (protocol, client, request.internal_port, None)
        existing = state.get(key)
        if existing is not None:
            if existing.nonce is not None and config.natpmp_delete_spares_pcp:
                pass  # miniupnpd: SUCCESS below, and the PCP mapping stays
            elif existing.nonce is not None and config.strict_nonce:
                return _map_error(request, NatPmpResult.NOT_AUTHORIZED, epoch)
            else:
                state.remove(key)
    return MapResponse(protocol, NatPmpResult.SUCCESS, epoch, request.internal_port, 0,
                       0).encode()


def _forced(config: GatewayConfig, data: bytes, code: int, epoch: int) -> bytes:
    """``code`` in the layout a gateway would use for an error to this request."""
    opcode = data[1]
    if code in _SHORT_FORM_CODES or opcode not in _KNOWN_OPCODES:
        return ErrorResponse(_error_opcode(config, opcode), code, epoch).encode()
    if opcode == Opcode.EXTERNAL_ADDRESS:
        return ExternalAddressResponse(code, epoch, IPv4Address(0)).encode()
    internal_port = struct.unpack_from("!H", data, 4)[0] if len(data) >= 6 else 0
    return MapResponse(protocol_for(opcode), code, epoch, internal_port, 0, 0).encode()
