"""Mutation fuzzer for the wire decoders (not a pytest module: run it by hand).

    .venv/bin/python tests/bench/fuzz_wire.py --count 1000000
    .venv/bin/python tests/bench/fuzz_wire.py --timeit

It takes valid NAT-PMP and PCP packets of every kind, mutates them (bit flips,
byte overwrites, 16-bit length-field overwrites, truncation, extension, byte
insertion and deletion, splicing two packets), and feeds each result to all
four decoders. A decoder may accept a packet or raise ``MalformedPacket``;
anything else escaping is a bug and makes the run fail. For every packet a
decoder accepts, the message is re-encoded and decoded again and must come back
equal (the decoders only accept canonical messages). The result is a Markdown
table of accepted and rejected counts per decoder, the time taken and the rate.

``--timeit`` measures encode and decode time per message instead.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import time
import timeit
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.codes import PcpResult
from engine.errors import MalformedPacket
from engine.protocols import Protocol
from engine.wire import natpmp, pcp

NONCE = bytes(range(1, 13))
V4 = IPv4Address("192.0.2.33")
V6 = IPv6Address("2001:db8::1")
REMOTE4 = IPv4Address("198.51.100.10")
REMOTE6 = IPv6Address("2001:db8:5::80")


def seed_messages() -> list[Any]:
    """One valid message of every kind and option, both address families."""
    map4 = pcp.MapData(NONCE, Protocol.TCP, 8080, 8080, IPv4Address(0))
    map6 = pcp.MapData(NONCE, Protocol.UDP, 53, 0, IPv6Address(0))
    peer4 = pcp.PeerData(NONCE, Protocol.TCP, 54321, 0, IPv4Address(0), 443, REMOTE4)
    peer6 = pcp.PeerData(NONCE, Protocol.UDP, 4500, 4500, V6, 4500, REMOTE6)
    options: tuple[pcp.Option, ...] = (
        pcp.ThirdParty(IPv4Address("192.0.2.99")), pcp.PreferFailure(),
        pcp.Filter(32, 80, REMOTE4), pcp.Filter(48, 443, IPv6Address("2001:db8:5::")),
        pcp.UnknownOption(200, b"abc"), pcp.UnknownOption(96, b"\x01\x02\x03\x04\x05"))
    return [
        natpmp.ExternalAddressRequest(),
        natpmp.MapRequest(Protocol.UDP, 5000, 5000, 7200),
        natpmp.MapRequest(Protocol.TCP, 0, 0, 0),
        natpmp.ExternalAddressResponse(0, 7200, IPv4Address("203.0.113.7")),
        natpmp.MapResponse(Protocol.UDP, 0, 123456, 5000, 50000, 7200),
        natpmp.MapResponse(Protocol.TCP, 2, 123457, 22, 0, 0),
        natpmp.ErrorResponse(0, 1, 42),
        natpmp.ErrorResponse(129, 5, 43),
        pcp.Request(pcp.Opcode.ANNOUNCE, 0, V6),
        pcp.Request(pcp.Opcode.MAP, 7200, V4, map4),
        pcp.Request(pcp.Opcode.MAP, 7200, V4, map4, options),
        pcp.Request(pcp.Opcode.MAP, 3600, V6, map6, (pcp.Filter(0, 0, IPv6Address(0)),)),
        pcp.Request(pcp.Opcode.PEER, 120, V4, peer4),
        pcp.Request(pcp.Opcode.PEER, 60, V6, peer6, (pcp.ThirdParty(V6),)),
        pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 0),
        pcp.Response(pcp.Opcode.MAP, 0, 7200, 300, map4, options),
        pcp.Response(pcp.Opcode.MAP, PcpResult.NO_RESOURCES, 30, 301, map6),
        pcp.Response(pcp.Opcode.MAP, PcpResult.MALFORMED_REQUEST, 1800, 302,
                     reserved=bytes(10) + b"\xff\xff"),
        pcp.Response(pcp.Opcode.PEER, 0, 120, 300, peer4),
        pcp.Response(pcp.Opcode.PEER, PcpResult.CANNOT_PROVIDE_EXTERNAL, 30, 300, peer6),
        pcp.Response(pcp.Opcode.MAP, PcpResult.UNSUPP_VERSION, 1800, 16, version=1),
        pcp.Response(5, PcpResult.UNSUPP_OPCODE, 1800, 17),
        pcp.Response(pcp.Opcode.MAP, 0, 1, 1, map4, (pcp.UnknownOption(200, bytes(1036)),)),
    ]


INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x03, 0x10, 0x14, 0x7F, 0x80, 0x81, 0x82, 0xFF)
INTERESTING_WORDS = (0, 1, 3, 4, 5, 16, 20, 0x7FFF, 0x8000, 0xFFFF)


def mutate(rng: random.Random, packet: bytes, seeds: list[bytes]) -> bytes:
    """Apply one to three random mutations to ``packet``."""
    data = bytearray(packet)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        size = len(data)
        if kind == 0 and size:  # flip one bit
            data[rng.randrange(size)] ^= 1 << rng.randrange(8)
        elif kind == 1 and size:  # overwrite a byte with a random or boundary value
            data[rng.randrange(size)] = (rng.choice(INTERESTING_BYTES) if rng.random() < 0.5
                                         else rng.randrange(256))
        elif kind == 2 and size >= 2:  # overwrite a 16-bit field (lengths, ports)
            at = rng.randrange(size - 1) & ~1
            data[at:at + 2] = rng.choice(INTERESTING_WORDS).to_bytes(2, "big")
        elif kind == 3:  # truncate
            del data[rng.randrange(size + 1):]
        elif kind == 4:  # extend with zeros (keeps 4-alignment half the time) or noise
            extra = rng.choice((4, 8, rng.randint(1, 16)))
            data += bytes(extra) if rng.random() < 0.5 else rng.randbytes(extra)
        elif kind == 5:  # insert bytes
            at = rng.randrange(size + 1)
            data[at:at] = rng.randbytes(rng.randint(1, 4))
        elif kind == 6 and size:  # delete bytes
            at = rng.randrange(size)
            del data[at:at + rng.randint(1, 4)]
        elif kind == 7:  # splice: this packet's head, another one's tail
            other = rng.choice(seeds)
            data = data[:rng.randrange(size + 1)] + other[rng.randrange(len(other) + 1):]
        elif kind == 8 and size:  # flip many bits at once
            for _ in range(rng.randint(2, 8)):
                at = rng.randrange(size)
                data[at] ^= 1 << rng.randrange(8)
    return bytes(data)


DECODERS: dict[str, Callable[[bytes], Any]] = {
    "natpmp.decode_request": natpmp.decode_request,
    "natpmp.decode_response": natpmp.decode_response,
    "pcp.decode_request": pcp.decode_request,
    "pcp.decode_response": pcp.decode_response,
}


def fuzz(count: int, seed: int, roundtrip: bool) -> int:
    """Run ``count`` mutated packets through every decoder; print a table; return failures."""
    rng = random.Random(seed)
    seeds = [message.encode() for message in seed_messages()]
    accepted = dict.fromkeys(DECODERS, 0)
    rejected = dict.fromkeys(DECODERS, 0)
    answered = 0  # pcp.decode_request rejections that carry a result code
    failures: list[str] = []
    decoders = list(DECODERS.items())
    started = time.perf_counter()
    for _ in range(count):
        packet = mutate(rng, rng.choice(seeds), seeds)
        for name, decode in decoders:
            try:
                message = decode(packet)
            except pcp.RequestRejected:
                rejected[name] += 1
                answered += 1
                continue
            except MalformedPacket:
                rejected[name] += 1
                continue
            except Exception as exc:  # anything else is the bug this script hunts
                failures.append(f"{name}({packet.hex()}) raised {exc!r}")
                continue
            accepted[name] += 1
            if roundtrip:
                try:
                    again = decode(message.encode())
                except Exception as exc:
                    failures.append(f"{name}({packet.hex()}) -> {message!r} did not re-encode: "
                                    f"{exc!r}")
                    continue
                if again != message:
                    failures.append(f"{name}({packet.hex()}) -> {message!r} re-decoded as "
                                    f"{again!r}")
    elapsed = time.perf_counter() - started

    print(f"Mutated packets: {count:,} (seed {seed}, {len(seeds)} seed packets, re-encode check "
          f"{'on' if roundtrip else 'off'}), each fed to {len(DECODERS)} decoders.\n")
    print("| decoder | accepted | rejected |")
    print("| --- | ---: | ---: |")
    for name in DECODERS:
        note = f" ({answered:,} with a result code)" if name == "pcp.decode_request" else ""
        print(f"| `{name}` | {accepted[name]:,} | {rejected[name]:,}{note} |")
    print()
    print("| packets | seconds | packets/s | decodes/s |")
    print("| ---: | ---: | ---: | ---: |")
    print(f"| {count:,} | {elapsed:.1f} | {count / elapsed:,.0f} | "
          f"{count * len(DECODERS) / elapsed:,.0f} |")
    print()
    if failures:
        print(f"**{len(failures)} failures**, the first ones:")
        for failure in failures[:20]:
            print(f"- {failure}")
    else:
        print("No exception other than MalformedPacket escaped.")
    return len(failures)


def measure(number: int) -> None:
    """Print encode and decode time per message, in microseconds."""
    map4 = pcp.MapData(NONCE, Protocol.TCP, 8080, 8080, IPv4Address(0))
    peer6 = pcp.PeerData(NONCE, Protocol.UDP, 4500, 4500, V6, 4500, REMOTE6)
    cases: list[tuple[str, Any, Callable[[bytes], Any]]] = [
        ("NAT-PMP map request", natpmp.MapRequest(Protocol.UDP, 5000, 5000, 7200),
         natpmp.decode_request),
        ("NAT-PMP map response", natpmp.MapResponse(Protocol.UDP, 0, 1, 5000, 50000, 7200),
         natpmp.decode_response),
        ("NAT-PMP address response",
         natpmp.ExternalAddressResponse(0, 1, IPv4Address("203.0.113.7")),
         natpmp.decode_response),
        ("PCP MAP request", pcp.Request(pcp.Opcode.MAP, 7200, V4, map4), pcp.decode_request),
        ("PCP MAP response", pcp.Response(pcp.Opcode.MAP, 0, 7200, 1, map4),
         pcp.decode_response),
        ("PCP MAP request + 3 options",
         pcp.Request(pcp.Opcode.MAP, 7200, V4, map4,
                     (pcp.ThirdParty(REMOTE4), pcp.PreferFailure(), pcp.Filter(32, 80, REMOTE4))),
         pcp.decode_request),
        ("PCP PEER request (IPv6)", pcp.Request(pcp.Opcode.PEER, 60, V6, peer6),
         pcp.decode_request),
        ("PCP ANNOUNCE response", pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 1),
         pcp.decode_response),
    ]
    print(f"Per message, best of 5 runs of {number:,}.\n")
    print("| message | octets | encode µs | decode µs |")
    print("| --- | ---: | ---: | ---: |")
    for label, message, decode in cases:
        packet = message.encode()
        encode_us = min(timeit.repeat(message.encode, number=number, repeat=5)) / number * 1e6
        decode_us = min(timeit.repeat(functools.partial(decode, packet), number=number,
                                      repeat=5)) / number * 1e6
        print(f"| {label} | {len(packet)} | {encode_us:.2f} | {decode_us:.2f} |")


def main(argv: list[str] | None = None) -> int:
    """Command line: ``--count N`` to fuzz, ``--timeit`` to measure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="mutated packets to try")
    parser.add_argument("--seed", type=int, default=6887, help="random seed (reproducible runs)")
    parser.add_argument("--no-roundtrip", action="store_true",
                        help="skip re-encoding what the decoders accept")
    parser.add_argument("--timeit", action="store_true",
                        help="measure encode/decode time per message instead of fuzzing")
    parser.add_argument("--number", type=int, default=20_000, help="loops per timeit run")
    args = parser.parse_args(argv)
    if args.timeit:
        measure(args.number)
        return 0
    return 1 if fuzz(args.count, args.seed, not args.no_roundtrip) else 0


if __name__ == "__main__":
    sys.exit(main())
