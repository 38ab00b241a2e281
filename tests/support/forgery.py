"""Forged error answers for issue 14 finding 5, shared by the simulator and lab tests.

Each generator gives ``count`` errors that a genuine server would not send to ``request``
(the bytes of a PCP MAP or NAT-PMP map request): other nonces and internal ports, bare
headers and 8-byte errors with codes that cannot come bare, unknown codes (97, 59000).
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from engine.codes import NatPmpResult, PcpResult
from engine.protocols import Protocol
from engine.wire import natpmp, pcp

__all__ = ["forged_natpmp", "forged_pcp"]

#: RFC 6887 §7.2/§8.3: the only errors a server may send as a bare header.
HEADER_ONLY_ERRORS = {PcpResult.UNSUPP_VERSION, PcpResult.MALFORMED_REQUEST,
                      PcpResult.UNSUPP_OPCODE}


def forged_pcp(rng: random.Random, request: bytes, count: int) -> list[bytes]:
    """Errors a genuine PCP server would not send to this MAP request."""
    internal_port = int.from_bytes(request[40:42], "big")
    bare = [c for c in range(1, 256) if c not in HEADER_ONLY_ERRORS]
    out: list[bytes] = []
    for n in range(count):
        kind = n % 3
        if kind == 0:  # a bare header: only a parse error may come without the nonce
            out.append(pcp.Response(pcp.Opcode.MAP, rng.choice(bare), 30, 1).encode())
        else:
            nonce = rng.randbytes(12) if kind == 1 else request[24:36]
            port = internal_port if kind == 1 else (internal_port + 1 + n) % 65536 or 1
            data = pcp.MapData(nonce, Protocol.TCP, port, 0, IPv4Address(0))
            out.append(pcp.Response(pcp.Opcode.MAP, rng.choice([2, 8, 11, 97, 200]), 30, 1,
                                    data).encode())
    return out


def forged_natpmp(rng: random.Random, request: bytes, count: int) -> list[bytes]:
    """Errors a genuine NAT-PMP server would not send to this map request."""
    opcode = request[1]
    internal_port = int.from_bytes(request[4:6], "big")
    believable = {NatPmpResult.UNSUPPORTED_VERSION, NatPmpResult.UNSUPPORTED_OPCODE}
    out: list[bytes] = []
    for n in range(count):
        code = rng.choice([c for c in (2, 3, 4, 97, 59000) if c not in believable])
        if n % 2:
            out.append(natpmp.ErrorResponse(0x80 | opcode, code, 1).encode())
        else:
            port = (internal_port + 1 + n) % 65536 or 1
            out.append(natpmp.MapResponse(natpmp.protocol_for(opcode), code, 1, port, 0,
                                          0).encode())
    return out
