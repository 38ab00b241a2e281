"""The announcement listener (engine.announce) on loopback, and how the manager degrades.

Everything is unicast on 127.0.0.0/8 with ``multicast=False``: nothing joins a
group or leaves the machine. A "gateway" is a plain UDP socket here, or the
simulated gateway where the manager is involved.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from ipaddress import IPv4Address, ip_address

import pytest

from engine.announce import Announcement, AnnouncementListener
from engine.errors import TransportError
from engine.events import ExternalAddressChanged, GatewayRestarted, MappingRecovered
from engine.manager import FALLBACK_PROBE_INTERVAL, non_public_warning
from engine.protocols import Protocol
from engine.wire import natpmp, pcp
from tests.support.manager_rig import LOOPBACK, free_udp_port, rig, run_fast_virtual

NATPMP_NEWS = natpmp.ExternalAddressResponse(0, 1234, IPv4Address("198.51.100.9")).encode()
PCP_NEWS = pcp.Response(pcp.Opcode.ANNOUNCE, 0, 0, 77).encode()



@contextmanager
def udp(host: str = LOOPBACK, port: int = 0, *, reuse: bool = False) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        yield sock
    finally:
        sock.close()


class Heard:
    """The listener's callback: every announcement it was handed."""

    def __init__(self) -> None:
        self.announcements: list[Announcement] = []

    def __call__(self, announcement: Announcement) -> None:
        self.announcements.append(announcement)


async def settle() -> None:
    # Loopback delivery is synchronous; a few turns of the loop read what is queued.
    for _ in range(20):
        await asyncio.sleep(0)


# -- binding -------------------------------------------------------------------------------------


def test_binds_a_port_another_socket_already_holds_with_reuseport() -> None:
    """Another listener on the host (an mDNS-style daemon, a second natdeck) holding the port
    does not keep us off it: both set SO_REUSEADDR and SO_REUSEPORT."""

    async def scenario() -> None:
        with udp() as gateway, udp(reuse=True) as holder:
            port = holder.getsockname()[1]
            heard = Heard()
            listener = AnnouncementListener(LOOPBACK, heard, host=LOOPBACK, ports=(port,),
                                            multicast=False,
                                            source_port=gateway.getsockname()[1])
            await listener.start()
            try:
                assert listener.listening
                assert listener.errors == []
                holder.close()  # unicast goes to one socket of the group: now surely ours
                gateway.sendto(PCP_NEWS, (LOOPBACK, port))
                await settle()
                assert [a.kind for a in heard.announcements] == ["pcp_announce"]
            finally:
                listener.close()
            assert not listener.listening

    run_fast_virtual(scenario)


def test_cannot_bind_a_port_held_without_reuse() -> None:
    """A socket bound without SO_REUSEADDR owns its port outright (the reliable way to make
    the bind fail, root or not): start() says which port and why."""

    async def scenario() -> None:
        with udp() as owner:
            port = owner.getsockname()[1]
            listener = AnnouncementListener(LOOPBACK, Heard(), host=LOOPBACK, ports=(port,),
                                            multicast=False)
            with pytest.raises(TransportError) as failed:
                await listener.start()
            assert f"port {port}" in str(failed.value)
            assert "in use" in str(failed.value).lower()
            assert not listener.listening
            # One port of two is enough to listen; the other is reported.
            free = free_udp_port()
            partial = AnnouncementListener(LOOPBACK, Heard(), host=LOOPBACK,
                                           ports=(port, free), multicast=False)
            await partial.start()
            assert partial.listening
            assert len(partial.errors) == 1
            assert f"port {port}" in partial.errors[0]
            partial.close()

    run_fast_virtual(scenario)


# -- validation ----------------------------------------------------------------------------------


def test_only_announcements_from_the_gateway_address_and_port_are_accepted() -> None:
    async def scenario() -> None:
        with udp() as gateway, udp() as other_port, \
                udp("127.0.0.2", 0) as other_host_any_port:
            gateway_port = gateway.getsockname()[1]
            with udp("127.0.0.2", gateway_port) as other_host:
                port = free_udp_port()
                heard = Heard()
                listener = AnnouncementListener(LOOPBACK, heard, host=LOOPBACK, ports=(port,),
                                                multicast=False, source_port=gateway_port)
                await listener.start()
                target = (LOOPBACK, port)
                try:
                    for stranger in (other_port, other_host, other_host_any_port):
                        stranger.sendto(NATPMP_NEWS, target)
                        stranger.sendto(PCP_NEWS, target)
                    # From the gateway, but no announcement: a map answer, errors, junk.
                    for junk in (
                        natpmp.MapResponse(6, 0, 5, 80, 80, 60).encode(),
                        natpmp.ExternalAddressResponse(3, 5, IPv4Address(0)).encode(),
                        natpmp.ErrorResponse(128, 3, 5).encode(),
                        pcp.Response(pcp.Opcode.ANNOUNCE, 8, 30, 5).encode(),
                        pcp.Response(pcp.Opcode.MAP, 0, 60, 5, pcp.MapData(
                            bytes(12), 6, 80, 80, IPv4Address("198.51.100.9"))).encode(),
                        b"", b"\x00", b"\x02\x80" + bytes(10), bytes(range(40)),
                    ):
                        gateway.sendto(junk, target)
                    await settle()
                    assert heard.announcements == []
                    assert (listener.received, listener.dropped) == (0, 6 + 9)
                    # The genuine ones.
                    gateway.sendto(NATPMP_NEWS, target)
                    gateway.sendto(PCP_NEWS, target)
                    await settle()
                finally:
                    listener.close()
        assert heard.announcements == [
            Announcement("natpmp_address", 1234, IPv4Address("198.51.100.9"), 0, port),
            Announcement("pcp_announce", 77, None, 0, port),
        ]
        assert listener.received == 2

    run_fast_virtual(scenario)


# -- the manager without a listener --------------------------------------------------------------


def test_manager_degrades_to_periodic_probing_when_it_cannot_listen() -> None:
    """Someone else owns the announcement port: the manager says so in its status and
    probes every minute instead, which notices an address change and a reboot."""

    async def scenario() -> None:
        with udp() as owner:
            port = owner.getsockname()[1]
            async with rig(gateway=dict(announce_targets=((LOOPBACK, port),)),
                           announce_ports=(port,), lifetime=7200) as r:
                status = r.manager.status
                assert status.listening is False
                assert status.listen_error is not None
                assert f"port {port}" in status.listen_error
                assert "in use" in status.listen_error.lower()
                view = await r.manager.add(Protocol.TCP, 8080, external_port=41000)
                start = asyncio.get_running_loop().time()
                await asyncio.sleep(600)
                probes = [a.at - start for a in r.tap.arrivals
                          if a.raw[:2] == bytes([pcp.PCP_VERSION, pcp.Opcode.ANNOUNCE])]
                assert len(probes) == pytest.approx(600 / FALLBACK_PROBE_INTERVAL, abs=1)
                # The announcements go to the port's owner; the next probe tells us.
                r.gateway.change_external_address("198.51.100.9")
                # (The first address may have come from a probe too, at the start: a change is
                # from a known address.)
                changed = await r.log.wait_for(
                    ExternalAddressChanged,
                    lambda e: e.source == "probe" and e.old is not None, timeout=61)
                assert (str(changed[0].old), str(changed[0].new)) == ("203.0.113.7",
                                                                      "198.51.100.9")
                await asyncio.sleep(10)
                restarted_at = asyncio.get_running_loop().time()
                r.gateway.restart()
                assert not r.gateway.mappings
                await r.log.wait_for(GatewayRestarted, lambda e: e.at > restarted_at,
                                     timeout=61)
                await r.log.wait_for(MappingRecovered, lambda e: e.at > restarted_at,
                                     timeout=10)
                assert {m.internal_port: m.external_port for m in r.gateway.mappings} == {
                    8080: 41000}
                assert str(view.external_address) == "198.51.100.9"

    run_fast_virtual(scenario)


def test_manager_listening_on_one_of_two_ports_reports_the_other_and_probes_only_when_idle(
) -> None:
    async def scenario() -> None:
        with udp() as owner:
            taken = owner.getsockname()[1]
            async with rig(announce_ports=(taken, free_udp_port())) as r:
                assert r.manager.status.listening is True
                assert r.manager.status.listen_error is not None
                assert f"port {taken}" in r.manager.status.listen_error
                await asyncio.sleep(600)
                # The start-up probe (PCP ANNOUNCE and NAT-PMP opcode 0), then one a minute
                # while nothing else talks to the gateway (finding 8 of issue 14).
                assert [(a.at, a.raw[:2]) for a in r.tap.arrivals] == [
                    (1000.0 + 60 * i, kind) for i in range(10)
                    for kind in (bytes([pcp.PCP_VERSION, pcp.Opcode.ANNOUNCE]), bytes(2))]

    run_fast_virtual(scenario)


# -- a NAT above the gateway -----------------------------------------------------------------------


@pytest.mark.parametrize(("external", "warned"), [
    ("100.64.0.1", True),  # carrier-grade NAT (RFC 6598)
    ("192.168.1.1", True),  # a second router
    ("10.20.30.40", True),
    ("172.16.5.5", True),
    ("203.0.113.7", False),
    ("198.51.100.9", False),
])
def test_status_warns_when_the_external_address_is_not_public(external: str,
                                                              warned: bool) -> None:
    async def scenario() -> None:
        async with rig(external_address=external) as r:
            await r.manager.add(Protocol.UDP, 5000)
            status = r.manager.status
            assert str(status.external_address) == external
            if warned:
                assert status.warning is not None
                assert external in status.warning
                assert "not public" in status.warning
            else:
                assert status.warning is None

    run_fast_virtual(scenario)


def test_warning_follows_the_address_as_it_changes() -> None:
    async def scenario() -> None:
        async with rig() as r:
            await r.manager.add(Protocol.UDP, 5000)
            assert r.manager.status.warning is None
            r.gateway.change_external_address("100.64.12.34")
            await asyncio.sleep(1)
            assert r.manager.status.warning is not None
            r.gateway.change_external_address("203.0.113.8")
            await asyncio.sleep(1)
            assert r.manager.status.warning is None

    run_fast_virtual(scenario)


@pytest.mark.parametrize(("address", "warned"), [
    ("fd12:3456::1", True), ("fe80::1", True), ("::1", True), ("127.0.0.1", True),
    ("169.254.1.1", True), ("2001:db8::1", False), ("8.8.8.8", False),
])
def test_non_public_warning(address: str, warned: bool) -> None:
    assert (non_public_warning(ip_address(address)) is not None) is warned
    assert non_public_warning(None) is None
