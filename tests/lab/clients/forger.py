"""Forge error answers from the gateway's own address -- run it in the *gateway* namespace.

Usage: ``forger.py <gateway address> <pcp|natpmp> <count> <nft table>``. Prints
``{"type": "ready"}``, waits for the first map request of that protocol to reach port 5351
(an AF_PACKET socket on the LAN interface sees it before nftables, which the test set to
drop it, so miniupnpd has not answered yet), sends ``count`` forged errors to the request's
source from the gateway's address and port 5351 (a raw socket: miniupnpd holds the port), in
bursts of 50, then deletes the nftables table so the client's retransmission reaches
miniupnpd, and prints ``{"type": "sent", "count": n, "to": [address, port]}``.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import sys
import time

from tests.support.forgery import forged_natpmp, forged_pcp

SERVER_PORT = 5351
ETH_P_IP = 0x0800
LAN_IF = "lan0"


def wait_for_request(version: int) -> tuple[str, int, bytes]:
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    sniffer.bind((LAN_IF, ETH_P_IP))
    while True:
        packet = sniffer.recv(65535)
        if packet[9] != socket.IPPROTO_UDP:
            continue
        header_length = (packet[0] & 0x0F) * 4
        source_port, destination_port = struct.unpack_from("!HH", packet, header_length)
        payload = packet[header_length + 8:]
        if destination_port == SERVER_PORT and payload[:1] == bytes([version]) \
                and payload[1:2] in (b"\x01", b"\x02"):
            return socket.inet_ntoa(packet[12:16]), source_port, payload


def main() -> None:
    gateway, protocol, count, table = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    print(json.dumps({"type": "ready"}), flush=True)
    address, port, request = wait_for_request(2 if protocol == "pcp" else 0)
    rng = random.Random(14)
    forged = (forged_pcp if protocol == "pcp" else forged_natpmp)(rng, request, count)
    sender = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    sender.bind((gateway, 0))
    for start in range(0, len(forged), 50):
        for payload in forged[start:start + 50]:
            # UDP checksum 0: none (RFC 768), valid over IPv4.
            header = struct.pack("!HHHH", SERVER_PORT, port, 8 + len(payload), 0)
            sender.sendto(header + payload, (address, 0))
        time.sleep(0.002)
    subprocess.run(["nft", "delete", "table", "inet", table], check=True)
    print(json.dumps({"type": "sent", "count": len(forged), "to": [address, port]}), flush=True)


if __name__ == "__main__":
    main()
