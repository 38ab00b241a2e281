"""The simulated gateway over real loopback UDP sockets.

Requests are built with engine.wire's encoders and answers read with its
decoders; every send goes to 127.0.0.0/8 or ::1.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest

from engine.codes import NatPmpResult, PcpResult
from engine.simulator import AnnounceMode, GatewayConfig, SimulatedGateway
from engine.timing import natpmp_announcement_schedule
from engine.wire import natpmp, pcp
from tests.support.virtual_time import run_virtual

ROOT = Path(__file__).resolve().parents[2]
NONCE = bytes(range(12))
TCP, UDP = 6, 17


class Peer:
    """A UDP socket on loopback: a client, or a listener for announcements."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))
        self.address: tuple[str, int] = self.sock.getsockname()[:2]

    def close(self) -> None:
        self.sock.close()

    async def send(self, payload: bytes, to: tuple[str, int]) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, payload, to)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            data, addr = await loop.sock_recvfrom(self.sock, 2048)
        return data, (addr[0], addr[1])

    async def exchange(self, payload: bytes, to: tuple[str, int]) -> bytes:
        await self.send(payload, to)
        data, source = await self.recv()
        assert source == to  # answers come from the gateway's own address and port
        return data

    async def nothing(self, within: float = 0.15) -> None:
        with pytest.raises(TimeoutError):
            await self.recv(within)


@pytest.fixture
async def gateway() -> AsyncIterator[SimulatedGateway]:
    async with SimulatedGateway() as gw:
        yield gw
        assert gw.internal_errors == []


@pytest.fixture
def client() -> Any:
    peer = Peer()
    yield peer
    peer.close()


def map_request(client: str = "127.0.0.1", *, internal: int = 8080, suggested: int = 0,
                lifetime: int = 3600, nonce: bytes = NONCE, protocol: int = TCP) -> bytes:
    return pcp.Request(pcp.Opcode.MAP, lifetime, ip_address(client),
                       pcp.MapData(nonce, protocol, internal, suggested, IPv4Address(0))).encode()


async def test_binds_a_free_port_and_answers_every_opcode(gateway: SimulatedGateway,
                                                          client: Peer) -> None:
    host, port = gateway.address
    assert host == "127.0.0.1"
    assert port != 0
    address = natpmp.decode_response(
        await client.exchange(natpmp.ExternalAddressRequest().encode(), gateway.address))
    assert address == natpmp.ExternalAddressResponse(0, 0, IPv4Address("203.0.113.7"))
    for protocol in (UDP, TCP):
        mapped = natpmp.decode_response(await client.exchange(
            natpmp.MapPacket(protocol, 7000, 7001, 600).encode(), gateway.address))
        assert mapped == natpmp.MapResponse(protocol, 0, 0, 7000, 7001, 600)
    unknown = natpmp.decode_response(await client.exchange(bytes([0, 9]), gateway.address))
    assert unknown == natpmp.ErrorResponse(128 + 9, NatPmpResult.UNSUPPORTED_OPCODE, 0)
    announce = pcp.decode_response(await client.exchange(
        pcp.Request(pcp.Opcode.ANNOUNCE, 0, IPv4Address("127.0.0.1")).encode(),
        gateway.address))
    assert (announce.opcode, announce.result, announce.lifetime) == (0, 0, 0)
    mapped_pcp = pcp.decode_response(await client.exchange(map_request(), gateway.address))
    assert isinstance(mapped_pcp.data, pcp.MapData)
    assert (mapped_pcp.result, mapped_pcp.data.external_port) == (0, 8080)
    peer = pcp.Request(pcp.Opcode.PEER, 600, IPv4Address("127.0.0.1"),
                       pcp.PeerData(NONCE, UDP, 7000, 0, IPv4Address(0), 3478,
                                    IPv4Address("198.51.100.1")))
    peered = pcp.decode_response(await client.exchange(peer.encode(), gateway.address))
    assert isinstance(peered.data, pcp.PeerData)
    assert (peered.result, peered.data.external_port) == (0, 7001)  # the NAT-PMP mapping's
    counters = gateway.counters
    assert (counters.count("natpmp"), counters.count("pcp"), counters.answered) == (4, 3, 7)
    assert counters.count("pcp", pcp.Opcode.MAP) == 1
    assert {(m.via, m.protocol, m.internal_port, m.is_peer) for m in gateway.mappings} == {
        ("natpmp", UDP, 7000, False), ("natpmp", TCP, 7000, False),
        ("pcp", TCP, 8080, False), ("pcp", UDP, 7000, True)}


async def test_two_clients_suggesting_the_same_port() -> None:
    other = Peer("127.0.0.2")
    mine = Peer()
    try:
        async with SimulatedGateway() as gw:
            first = pcp.decode_response(await mine.exchange(map_request(suggested=9000),
                                                            gw.address))
            second = pcp.decode_response(await other.exchange(
                map_request("127.0.0.2", suggested=9000), gw.address))
            assert isinstance(first.data, pcp.MapData)
            assert isinstance(second.data, pcp.MapData)
            assert (first.data.external_port, second.data.external_port) == (9000, 9001)
            assert sorted(m.client for m in gw.mappings) == ["127.0.0.1", "127.0.0.2"]
    finally:
        other.close()
        mine.close()


async def test_ipv6_loopback() -> None:
    client = Peer("::1")
    try:
        async with SimulatedGateway(host="::1", external_address="2001:db8::7") as gw:
            assert gw.address[0] == "::1"
            response = pcp.decode_response(await client.exchange(map_request("::1"), gw.address))
            assert isinstance(response.data, pcp.MapData)
            assert (response.result, response.data.external_address) == (
                0, IPv6Address("2001:db8::7"))
            assert gw.mappings[0].internal_address == IPv6Address("::1")
            # NAT-PMP carries only IPv4: no address to give.
            address = natpmp.decode_response(
                await client.exchange(natpmp.ExternalAddressRequest().encode(), gw.address))
            assert address.result == NatPmpResult.NETWORK_FAILURE
            mismatch = pcp.decode_response(
                await client.exchange(map_request("::2"), gw.address))
            assert mismatch.result == PcpResult.ADDRESS_MISMATCH
    finally:
        client.close()


async def test_expiry_follows_the_injected_clock(client: Peer) -> None:
    now = [500.0]
    config = GatewayConfig(min_lifetime=1)
    async with SimulatedGateway(config=config, clock=lambda: now[0]) as gw:
        await client.exchange(map_request(lifetime=30), gw.address)
        assert gw.epoch == 0
        now[0] += 29.5
        assert [m.expires_at for m in gw.mappings] == [530.0]
        assert gw.epoch == 29
        now[0] += 0.5
        assert gw.mappings == ()


async def test_restart_resets_epoch_loses_mappings_and_announces(client: Peer) -> None:
    listener = Peer()
    config = GatewayConfig(announce_targets=(listener.address,), announce_count=2,
                           announce_first_interval=0.02)
    now = [100.0]
    try:
        async with SimulatedGateway(config=config, clock=lambda: now[0]) as gw:
            await client.exchange(map_request(), gw.address)
            now[0] += 40
            assert gw.epoch == 40
            gw.restart()
            assert (gw.mappings, gw.epoch) == ((), 0)
            await gw.wait_announcements()
            received = [(await listener.recv())[0] for _ in range(4)]
            await listener.nothing(0.05)
            natpmp_sends = [natpmp.decode_response(r) for r in received if len(r) == 12]
            pcp_sends = [pcp.decode_response(r) for r in received if len(r) == 24]
            assert natpmp_sends == [natpmp.ExternalAddressResponse(
                0, 0, IPv4Address("203.0.113.7"))] * 2
            assert pcp_sends == [pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 0)] * 2
            # The socket survived the reboot.
            again = pcp.decode_response(await client.exchange(map_request(), gw.address))
            assert (again.result, again.epoch) == (0, 0)
    finally:
        listener.close()


async def test_address_change_announcements_in_rfc_mode(client: Peer) -> None:
    listener = Peer()
    config = GatewayConfig(announce_targets=(listener.address,), announce_count=3,
                           announce_first_interval=0.02)
    now = [100.0]
    try:
        async with SimulatedGateway(config=config, clock=lambda: now[0]) as gw:
            await client.exchange(map_request(), gw.address)
            now[0] += 60
            gw.change_external_address("198.51.100.9")
            assert (gw.external_address, gw.epoch) == (IPv4Address("198.51.100.9"), 0)
            assert len(gw.mappings) == 1  # an address change keeps the mappings
            await gw.wait_announcements()
            received = [(await listener.recv())[0] for _ in range(6)]
            assert [natpmp.decode_response(r) for r in received if len(r) == 12] == [
                natpmp.ExternalAddressResponse(0, 0, IPv4Address("198.51.100.9"))] * 3
            assert [pcp.decode_response(r) for r in received if len(r) == 24] == [
                pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 0)] * 3
            renewed = pcp.decode_response(await client.exchange(map_request(), gw.address))
            assert isinstance(renewed.data, pcp.MapData)
            assert renewed.data.external_address == IPv4Address("198.51.100.9")
    finally:
        listener.close()


def test_rfc_mode_sends_ten_announcements_doubling_from_250_ms() -> None:
    """RFC 6886 §3.2.1's full schedule, 127.75 s long, on a virtual clock."""

    async def scenario() -> list[float]:
        listener = Peer()
        try:
            config = GatewayConfig(announce_targets=(listener.address,),
                                   speak_pcp=False)  # NAT-PMP announcements only
            async with SimulatedGateway(config=config) as gw:
                start = asyncio.get_running_loop().time()
                gw.change_external_address("198.51.100.9")
                arrivals = []
                for _ in range(10):
                    data, source = await listener.recv(timeout=200)
                    assert source == gw.address
                    assert natpmp.decode_response(data) == natpmp.ExternalAddressResponse(
                        0, int(asyncio.get_running_loop().time() - start),
                        IPv4Address("198.51.100.9"))
                    arrivals.append(asyncio.get_running_loop().time() - start)
                await gw.wait_announcements()
                await listener.nothing(1.0)
                return arrivals
        finally:
            listener.close()

    arrivals = run_virtual(scenario)
    assert arrivals == pytest.approx(natpmp_announcement_schedule(10, 0.25), abs=0.01)
    assert arrivals[-1] == pytest.approx(127.75, abs=0.01)


async def test_miniupnpd_mode_announces_once_on_its_ports_in_its_order() -> None:
    client_port, server_port = Peer(), Peer()
    try:
        config = GatewayConfig(announce_mode=AnnounceMode.MINIUPNPD,
                               announce_targets=(("127.0.0.1", 9),),  # only the host counts
                               miniupnpd_announce_ports=(client_port.address[1],
                                                         server_port.address[1]),
                               initial_epoch=5000)
        async with SimulatedGateway(config=config) as gw:
            gw.change_external_address("198.51.100.9")
            await gw.wait_announcements()
            on_client = [(await client_port.recv())[0] for _ in range(2)]
            on_server = (await server_port.recv())[0]
            await client_port.nothing(0.05)
            await server_port.nothing(0.05)
            # The NAT-PMP notification leaves first, with the epoch before the reset...
            expected = natpmp.ExternalAddressResponse(0, 5000, IPv4Address("198.51.100.9"))
            assert natpmp.decode_response(on_client[0]) == expected
            assert natpmp.decode_response(on_server) == expected
            # ... then PCPPublicAddressChanged resets the epoch and sends ANNOUNCE.
            assert pcp.decode_response(on_client[1]) == pcp.Response(0, 0, 0, 0)
            gw.restart()  # miniupnpd's start-up ANNOUNCE, client port only
            assert pcp.decode_response((await client_port.recv())[0]) == pcp.Response(0, 0, 0, 0)
            await server_port.nothing(0.05)
    finally:
        client_port.close()
        server_port.close()


async def test_drop_rate_loses_the_requests_the_seed_says(client: Peer) -> None:
    async with SimulatedGateway(config=GatewayConfig(drop_rate=0.5, seed=11)) as gw:
        for _ in range(20):
            await client.send(natpmp.ExternalAddressRequest().encode(), gw.address)
        await gw.wait_requests(20, timeout=2)
        rng = random.Random(11)
        expected = sum(rng.random() >= 0.5 for _ in range(20))
        answers = [await client.recv() for _ in range(expected)]
        await client.nothing()
        assert len(answers) == expected
        assert (gw.counters.dropped, gw.counters.answered) == (20 - expected, expected)


async def test_silent_gateway_answers_nothing_until_told_otherwise(client: Peer) -> None:
    async with SimulatedGateway(config=GatewayConfig(silent=True)) as gw:
        await client.send(map_request(), gw.address)
        await gw.wait_requests(1, timeout=2)
        await client.nothing()
        assert (gw.mappings, gw.counters.silenced) == ((), 1)
        gw.configure(silent=False)
        assert pcp.decode_response(await client.exchange(map_request(), gw.address)).result == 0


async def test_delay_processes_requests_one_at_a_time(client: Peer) -> None:
    async with SimulatedGateway(config=GatewayConfig(delay=0.1)) as gw:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await client.send(natpmp.ExternalAddressRequest().encode(), gw.address)
        await client.send(natpmp.ExternalAddressRequest().encode(), gw.address)
        await client.recv()
        first = loop.time() - start
        await client.recv()
        second = loop.time() - start
        assert 0.09 <= first < second
        assert second >= 0.19  # queued behind the first, as in miniupnpd's single loop


async def test_a_restart_loses_the_request_being_processed(client: Peer) -> None:
    async with SimulatedGateway(config=GatewayConfig(delay=0.1)) as gw:
        await client.send(map_request(), gw.address)
        await gw.wait_requests(1, timeout=2)
        gw.restart()
        await client.nothing(0.2)
        assert gw.mappings == ()
        gw.configure(delay=0)
        assert pcp.decode_response(await client.exchange(map_request(), gw.address)).result == 0


async def test_forced_results_per_protocol(client: Peer) -> None:
    config = GatewayConfig(force_pcp_result=PcpResult.USER_EX_QUOTA,
                           force_natpmp_result=NatPmpResult.NOT_AUTHORIZED)
    async with SimulatedGateway(config=config) as gw:
        forced = pcp.decode_response(await client.exchange(map_request(), gw.address))
        assert (forced.result, forced.lifetime) == (PcpResult.USER_EX_QUOTA, 30)
        refused = natpmp.decode_response(await client.exchange(
            natpmp.MapPacket(TCP, 1, 1, 60).encode(), gw.address))
        assert refused.result == NatPmpResult.NOT_AUTHORIZED
        gw.configure(force_pcp_result=None, error_lifetime=5)
        assert pcp.decode_response(await client.exchange(map_request(), gw.address)).result == 0
        assert gw.mappings[0].via == "pcp"


async def test_tamper_sends_a_wrong_nonce_answer_before_the_genuine_one(client: Peer) -> None:
    def forge_first(request: bytes, genuine: list[bytes]) -> list[bytes]:
        response = pcp.decode_response(genuine[0])
        assert isinstance(response.data, pcp.MapData)
        forged = replace(response, data=replace(response.data, nonce=bytes(12)))
        return [forged.encode(), *genuine]

    async with SimulatedGateway(tamper=forge_first) as gw:
        await client.send(map_request(), gw.address)
        first = pcp.decode_response((await client.recv())[0])
        second = pcp.decode_response((await client.recv())[0])
        assert isinstance(first.data, pcp.MapData)
        assert isinstance(second.data, pcp.MapData)
        assert (first.data.nonce, second.data.nonce) == (bytes(12), NONCE)
        gw.tamper = None
        await client.exchange(map_request(), gw.address)
        await client.nothing(0.05)


async def test_a_failing_tamper_hook_is_recorded_not_fatal(client: Peer) -> None:
    def broken(request: bytes, genuine: list[bytes]) -> list[bytes]:
        raise RuntimeError("tamper bug")

    async with SimulatedGateway(tamper=broken) as gw:
        await client.send(map_request(), gw.address)
        await gw.wait_requests(1, timeout=2)
        await client.nothing(0.05)
        assert [str(e) for e in gw.internal_errors] == ["tamper bug"]
        gw.tamper = None
        assert pcp.decode_response(await client.exchange(map_request(), gw.address)).result == 0


async def test_inject_from_the_gateway_socket_or_a_stranger(gateway: SimulatedGateway,
                                                            client: Peer) -> None:
    gateway.inject(b"forged", client.address)
    data, source = await client.recv()
    assert (data, source) == (b"forged", gateway.address)
    gateway.inject(b"stranger", client.address, from_gateway_socket=False)
    data, source = await client.recv()
    assert data == b"stranger"
    assert source != gateway.address
    with pytest.raises(ValueError, match="loopback"):
        gateway.inject(b"no", ("192.0.2.1", 5350))


async def test_wait_requests_times_out_when_nothing_comes(gateway: SimulatedGateway) -> None:
    with pytest.raises(TimeoutError):
        await gateway.wait_requests(1, timeout=0.05)


async def test_configure_rejects_invalid_values_and_keeps_the_old(
        gateway: SimulatedGateway) -> None:
    with pytest.raises(ValueError, match="drop_rate"):
        gateway.configure(drop_rate=2.0)
    assert gateway.config.drop_rate == 0.0
    assert gateway.configure(min_lifetime=60, max_lifetime=60).max_lifetime == 60
    assert gateway.core.config is gateway.config


async def test_command_line_gateway_in_its_own_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.simulator", "--port", "0", "--pcp-only",
        "--external", "198.51.100.4", stdout=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
    assert process.stdout is not None
    client = Peer()
    try:
        async with asyncio.timeout(10):
            line = await process.stdout.readline()
        info = json.loads(line)
        assert (info["host"], info["pcp"], info["natpmp"], info["external"]) == (
            "127.0.0.1", True, False, "198.51.100.4")
        target = (info["host"], info["port"])
        answer = pcp.decode_response(await client.exchange(map_request(), target))
        assert isinstance(answer.data, pcp.MapData)
        assert answer.data.external_address == IPv4Address("198.51.100.4")
        refused = pcp.decode_response(await client.exchange(
            natpmp.ExternalAddressRequest().encode(), target))
        assert refused.result == PcpResult.UNSUPP_VERSION
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await process.wait() == 0
    finally:
        client.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
