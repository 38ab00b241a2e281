"""Report every UDP datagram that reaches port 5351 -- run it in the *gateway* namespace.

A raw IPv4/UDP socket receives a copy of each incoming UDP packet (the kernel still delivers
the original to miniupnpd), so a test sees the exact bytes a client sent, independently of what
the client says it sent. Prints ``{"type": "ready"}``, then one
``{"type": "request", "wall": time.time(), "source": [address, port], "data": "<hex payload>"}``
line per datagram;
exits when stdin closes.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import sys
import time

SERVER_PORT = 5351


def main() -> None:
    sniffer = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    print(json.dumps({"type": "ready"}), flush=True)
    while True:
        readable, _, _ = select.select([sniffer, sys.stdin], [], [])
        if sys.stdin in readable and not sys.stdin.readline():
            return
        if sniffer not in readable:
            continue
        packet = sniffer.recv(65535)
        wall = time.time()
        header_length = (packet[0] & 0x0F) * 4  # RFC 791: IHL in 32-bit words
        source = socket.inet_ntoa(packet[12:16])
        source_port, destination_port = struct.unpack_from("!HH", packet, header_length)
        # The gateway's own announcements to 224.0.0.1:5351 loop back here: not requests.
        if destination_port != SERVER_PORT or 224 <= packet[16] <= 239:
            continue
        payload = packet[header_length + 8:]
        print(json.dumps({"type": "request", "wall": wall, "source": [source, source_port],
                          "data": payload.hex()}), flush=True)


if __name__ == "__main__":
    main()
