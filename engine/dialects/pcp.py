"""PCP (RFC 6887) as a datagram dialect: build MAP/PEER/ANNOUNCE, match, read (pure).

The matching rule (issue 14 finding 5, RFC 6887 §8.3, §11.4, §12.3): an answer
is believed only if it echoes what we sent, errors as much as successes:

- the opcode, and for MAP/PEER the nonce, the protocol and the internal port
  (and the remote peer for PEER);
- a header-only (24-byte) answer to a MAP or PEER is believable only for the
  errors a server sends when it could not parse the request:
  UNSUPP_VERSION, MALFORMED_REQUEST, UNSUPP_OPCODE;
- an 8-byte NAT-PMP error only as UNSUPPORTED_VERSION (a NAT-PMP gateway
  refusing version 2, RFC 6887 §9);
- a success with an unknown mandatory option is not believed (§7.3);
- a success answers a delete only with lifetime 0, a MAP or PEER only with more (§15): the
  late answer to the other operation on the same mapping is not this one's.

Anything else from the gateway's address is dropped by the transport, and logged.
"""

from __future__ import annotations

import logging

from ..codes import NatPmpResult, PcpResult
from ..errors import InvalidRequest, ResultCodeError, UnsupportedVersion
from ..exchange import Description, Match, Message, described
from ..request import MapRequest
from ..timing import PCP_RETRANSMIT
from ..types import DatagramProtocol
from ..wire import natpmp, pcp
from ..wire.addresses import IPAddress
from .base import Ask, Grant, Heard, grant

__all__ = ["HEADER_ONLY_ERRORS", "PcpDialect", "matcher"]

log = logging.getLogger("engine.dialects.pcp")

#: The errors a server sends with a bare header, when it could not parse the request
#: (RFC 6887 §7.2, §8.3): nothing to echo, so nothing to check but the opcode.
HEADER_ONLY_ERRORS = frozenset({PcpResult.UNSUPP_VERSION, PcpResult.MALFORMED_REQUEST,
                                PcpResult.UNSUPP_OPCODE})


def matcher(opcode: int, data: pcp.MapData | pcp.PeerData | None, *,
            deleting: bool = False) -> _Matcher:
    """The matcher of a PCP request with ``opcode`` and ``data`` (``None``: ANNOUNCE);
    ``deleting``: its lifetime is 0."""
    return _Matcher(opcode, data, deleting)


class _Matcher:
    __slots__ = ("data", "deleting", "opcode")

    def __init__(self, opcode: int, data: pcp.MapData | pcp.PeerData | None,
                 deleting: bool = False) -> None:
        self.opcode = opcode
        self.data = data
        self.deleting = deleting

    def __call__(self, message: Message) -> Match:
        if isinstance(message, natpmp.ErrorResponse):
            # A NAT-PMP gateway refusing our version 2 (RFC 6887 §9). A NAT-PMP request in
            # flight could take it too: it answers the PCP one first (Match.YES over WEAK).
            return Match.YES if message.result == NatPmpResult.UNSUPPORTED_VERSION else Match.NO
        if not isinstance(message, pcp.Response) or message.opcode != self.opcode:
            return Match.NO
        if message.version != pcp.PCP_VERSION:
            return Match.YES if message.result == PcpResult.UNSUPP_VERSION else Match.NO
        data = self.data
        got = message.data
        if got is None:
            if message.result == PcpResult.UNSUPP_VERSION:
                # A version-2 server refusing "the version" of a packet refuses a version-0
                # one: a PCP-only gateway answering the NAT-PMP request sent alongside
                # (RFC 6887 §9; its opcode 0, 1 or 2 collides with ours).
                return Match.NO
            if data is None:
                return Match.YES  # ANNOUNCE: a header alone, success or error
            return Match.YES if message.result in HEADER_ONLY_ERRORS else Match.NO
        if data is None or got.nonce != data.nonce or got.protocol != data.protocol:
            return Match.NO
        if data.protocol != 0 and got.internal_port != data.internal_port:
            return Match.NO
        if isinstance(data, pcp.PeerData) and (
                not isinstance(got, pcp.PeerData) or got.remote_port != data.remote_port
                or got.remote_address != data.remote_address):
            return Match.NO
        if message.result == PcpResult.SUCCESS and (message.lifetime == 0) != self.deleting:
            # A success whose lifetime says the other operation on the same mapping (same
            # nonce, protocol and port): the late answer to the MAP or renewal sent before a
            # delete, or to the delete sent before a new MAP. Believed, it would say a port
            # is closed that may still be open, or open that was just closed (§15: a delete
            # is answered with lifetime 0).
            return Match.NO
        if message.result == PcpResult.SUCCESS and message.options \
                and message.unknown_mandatory_options:
            # We cannot know what the gateway did with an option we do not understand:
            # the answer is not one we can believe (RFC 6887 §7.3).
            log.info("dropped an answer with unknown mandatory options %s",
                     [o.code for o in message.unknown_mandatory_options])
            return Match.NO
        return Match.YES


class PcpDialect:
    """PCP, version 2 (RFC 6887)."""

    name: DatagramProtocol = "pcp"
    schedule = PCP_RETRANSMIT

    def __init__(self, gateway: str) -> None:
        self.gateway = gateway

    def refusal(self, request: MapRequest) -> str | None:
        """PCP carries every request :meth:`MapRequest.validate` lets through."""
        return None

    def map(self, request: MapRequest, local: IPAddress, what: str) -> Ask:
        """MAP (RFC 6887 §11) or, with a remote peer, PEER (§12)."""
        if request.nonce is None:  # pragma: no cover - the client draws one
            raise InvalidRequest("a PCP request needs a nonce")
        suggested = request.external_address or pcp.zero_address(local)
        opdata: pcp.MapData | pcp.PeerData
        if request.remote_address is not None:
            assert request.remote_port is not None
            opcode = pcp.Opcode.PEER
            opdata = pcp.PeerData(request.nonce, int(request.protocol), request.internal_port,
                                  request.suggested_external_port, suggested,
                                  request.remote_port, request.remote_address)
            what = "PEER"
        else:
            opcode = pcp.Opcode.MAP
            opdata = pcp.MapData(request.nonce, int(request.protocol), request.internal_port,
                                 request.suggested_external_port, suggested)
        packet = pcp.encode_request(opcode, request.lifetime, local, opdata, request.options)
        return Ask("pcp", packet, f"PCP {what}", _Matcher(opcode, opdata, request.lifetime == 0),
                   self.read, ("pcp", request.nonce), request)

    def address(self) -> Ask | None:
        """PCP has no such request: the client maps briefly instead (RFC 6887 §11.6)."""
        return None

    def probe(self, local: IPAddress) -> Ask:
        """ANNOUNCE (RFC 6887 §14.1): a header, answered by a header."""
        packet = pcp.Request(pcp.Opcode.ANNOUNCE, 0, local).encode()
        return Ask("pcp", packet, "PCP ANNOUNCE probe", _Matcher(pcp.Opcode.ANNOUNCE, None),
                   self.read)

    def heard(self, message: Message, rtt: float | None) -> Heard:
        """Spoken if answered in version 2 by anything but UNSUPP_VERSION."""
        if isinstance(message, pcp.Response) and message.version == pcp.PCP_VERSION \
                and message.result != PcpResult.UNSUPP_VERSION:
            return Heard("pcp", True, message.epoch, rtt)
        version = message.version if isinstance(message, pcp.Response) else 0
        return Heard("pcp", False, None, rtt, server_version=version)

    def read(self, message: Message, describe: Description) -> Grant:
        """A matched answer as a :class:`Grant`, or the error it carries."""
        if isinstance(message, natpmp.ErrorResponse):
            # A NAT-PMP-only gateway (or an Apple router) answering a version-2 packet.
            raise UnsupportedVersion("pcp", request=described(describe), gateway=self.gateway,
                                     server_version=0, epoch=message.epoch)
        assert isinstance(message, pcp.Response)
        if message.version != pcp.PCP_VERSION or message.result == PcpResult.UNSUPP_VERSION:
            raise UnsupportedVersion("pcp", request=described(describe), gateway=self.gateway,
                                     server_version=message.version,
                                     error_lifetime=message.lifetime, epoch=message.epoch)
        if message.result != PcpResult.SUCCESS:
            raise ResultCodeError("pcp", message.result, request=described(describe),
                                  gateway=self.gateway, error_lifetime=message.lifetime,
                                  epoch=message.epoch)
        data = message.data
        if data is None:
            return Grant("pcp", message.epoch)
        return grant("pcp", message.epoch, data.external_port, data.external_address,
                     message.lifetime, message.options)

