"""NAT-PMP (RFC 6886) as a datagram dialect: build, match, read (pure).

The matching rule (issue 14 finding 5): an answer is believed only if it
echoes what we sent, errors as much as successes:

- a 16-byte map answer must echo the protocol (its opcode) and the internal
  port, whatever its result code (RFC 6886 §3.3), and a success must be of the
  same kind: lifetime 0 for a delete (§3.4), more for a mapping;
- an 8-byte error (§3.5) only with its opcode 0 or 128 + ours (erratum 5406)
  and only as UNSUPPORTED_OPCODE, or as UNSUPPORTED_VERSION, which answers a
  NAT-PMP request only when no PCP request in flight takes it (a NAT-PMP
  gateway refusing our PCP packet sends the very same 8 bytes): the transport
  gives a :data:`~engine.exchange.Match.WEAK` match to a request only when
  nothing matches firmly;
- a PCP header-only UNSUPP_VERSION: a PCP-only gateway refusing version 0.
"""

from __future__ import annotations

from ..codes import NatPmpResult, PcpResult
from ..errors import ResultCodeError, UnsupportedVersion
from ..exchange import Description, Match, Message, described
from ..protocols import Protocol
from ..request import MapRequest
from ..timing import NATPMP_RETRANSMIT
from ..types import DatagramProtocol
from ..wire import natpmp, pcp
from ..wire.addresses import IPAddress
from .base import Ask, Grant, Heard, grant

__all__ = ["NatPmpDialect", "address_matcher", "map_matcher"]


def _short_error(message: natpmp.ErrorResponse, opcode: int) -> Match:
    if message.opcode not in (0, natpmp.RESPONSE_BIT | opcode):
        return Match.NO
    if message.result == NatPmpResult.UNSUPPORTED_OPCODE:
        return Match.YES
    if message.result == NatPmpResult.UNSUPPORTED_VERSION:
        return Match.WEAK
    return Match.NO


def _pcp_refusal(message: pcp.Response) -> Match:
    # A PCP-only gateway answers a version-0 packet with a PCP UNSUPP_VERSION header.
    if message.result == PcpResult.UNSUPP_VERSION and message.data is None:
        return Match.YES
    return Match.NO


def map_matcher(packet: natpmp.MapPacket) -> _MapMatcher:
    """The matcher of a NAT-PMP map (or delete) request."""
    return _MapMatcher(packet)


class _MapMatcher:
    __slots__ = ("deleting", "internal_port", "opcode", "packet", "protocol")

    def __init__(self, packet: natpmp.MapPacket) -> None:
        self.packet = packet
        self.opcode = int(packet.opcode)
        # Read once, compared for every answer offered.
        self.protocol = packet.protocol
        self.internal_port = packet.internal_port
        self.deleting = packet.lifetime == 0

    def __call__(self, message: Message) -> Match:
        if isinstance(message, natpmp.MapResponse):
            if message.protocol != self.protocol or message.internal_port != self.internal_port:
                return Match.NO
            if message.result == NatPmpResult.SUCCESS \
                    and (message.lifetime == 0) != self.deleting:
                # The late answer to the other operation on the same port (the map before a
                # delete, the delete before a map): a delete is answered with lifetime 0
                # (§3.4), a mapping with more. Believed, it would say the port closed or open.
                return Match.NO
            return Match.YES
        if isinstance(message, natpmp.ErrorResponse):
            return _short_error(message, self.opcode)
        if isinstance(message, pcp.Response):
            return _pcp_refusal(message)
        return Match.NO


def address_matcher(message: Message) -> Match:
    """Whether ``message`` answers a NAT-PMP external address request (opcode 0)."""
    if isinstance(message, natpmp.ExternalAddressResponse):
        return Match.YES
    if isinstance(message, natpmp.ErrorResponse):
        return _short_error(message, 0)
    if isinstance(message, pcp.Response):
        return _pcp_refusal(message)
    return Match.NO


class NatPmpDialect:
    """NAT-PMP (RFC 6886): TCP and UDP mappings and the external address, IPv4 only."""

    name: DatagramProtocol = "natpmp"
    schedule = NATPMP_RETRANSMIT

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    def refusal(self, request: MapRequest) -> str | None:
        """RFC 6886 §3.3: TCP and UDP only, no options, no chosen external address."""
        return request.natpmp_refusal()

    def map(self, request: MapRequest, local: IPAddress, what: str) -> Ask:
        """Opcode 1 or 2; lifetime 0 deletes (external port 0, §3.4)."""
        external = 0 if request.lifetime == 0 else request.suggested_external_port
        packet = natpmp.MapPacket(int(request.protocol), request.internal_port, external,
                                  request.lifetime)
        return Ask("natpmp", packet.encode(), f"NAT-PMP {what}", _MapMatcher(packet), self.read,
                   ("natpmp", packet.protocol, packet.internal_port), request)

    def delete_all(self, protocol: Protocol) -> Ask:
        """Every mapping of ``protocol`` for this client (§3.4): internal port 0, lifetime 0."""
        packet = natpmp.MapPacket(int(protocol), 0, 0, 0)
        return Ask("natpmp", packet.encode(), f"NAT-PMP delete all {protocol.name.lower()}",
                   _MapMatcher(packet), self.read, ("natpmp", packet.protocol, 0))

    def address(self) -> Ask | None:
        """Opcode 0 (§3.2): creates no state."""
        return Ask("natpmp", natpmp.ExternalAddressRequest().encode(), "NAT-PMP external address",
                   address_matcher, self.read)

    def probe(self, local: IPAddress) -> Ask:
        """The external address request, as tailscale probes."""
        return Ask("natpmp", natpmp.ExternalAddressRequest().encode(),
                   "NAT-PMP external address probe", address_matcher, self.read)

    def heard(self, message: Message, rtt: float | None) -> Heard:
        """Spoken if answered in version 0 by anything but UNSUPPORTED_VERSION."""
        if isinstance(message, natpmp.ExternalAddressResponse):
            address = message.external_address if message.result == NatPmpResult.SUCCESS \
                else None
            return Heard("natpmp", True, message.epoch, rtt, address)
        if isinstance(message, natpmp.ErrorResponse) \
                and message.result != NatPmpResult.UNSUPPORTED_VERSION:
            return Heard("natpmp", True, message.epoch, rtt)
        return Heard("natpmp", False, None, rtt)

    def read(self, message: Message, describe: Description) -> Grant:
        """A matched answer as a :class:`Grant`, or the error it carries."""
        if isinstance(message, pcp.Response):
            raise UnsupportedVersion("natpmp", request=described(describe), gateway=self.gateway,
                                     server_version=message.version, epoch=message.epoch)
        if message.result == NatPmpResult.UNSUPPORTED_VERSION:
            raise UnsupportedVersion("natpmp", request=described(describe), gateway=self.gateway,
                                     server_version=0, epoch=message.epoch)
        if message.result != NatPmpResult.SUCCESS:
            raise ResultCodeError("natpmp", message.result, request=described(describe),
                                  gateway=self.gateway, epoch=message.epoch)
        if isinstance(message, natpmp.MapResponse):
            return grant("natpmp", message.epoch, message.external_port, None, message.lifetime)
        if isinstance(message, natpmp.ExternalAddressResponse):
            return Grant("natpmp", message.epoch, external_address=message.external_address)
        return Grant("natpmp", message.epoch)  # pragma: no cover - errors have a result code
