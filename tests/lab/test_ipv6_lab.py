"""PCP over IPv6 against a real miniupnpd 2.3.1: map, renew, delete, restart (issue 14, "Also").

The lab here is built with ``Lab.create(ipv6=True)``: the LAN carries the documentation prefix
(2001:db8:0:1::/64, RFC 3849) and miniupnpd, with a global address on its LAN side, serves PCP
on [::]:5351 too. Over IPv6 there is no NAT: a MAP opens a *pinhole*, an ``accept`` rule in
miniupnpd's forward chain for the client's address, protocol and port (``lab.pinholes()``),
and the external address granted is the client's own (RFC 6887 §11.1, the IPv6 firewall case).

Every engine call runs on an event loop inside the client namespace
(:func:`~tests.lab.clients.run_in_client`); every test checks the kernel's rules, not only what
natdeck reports. What Debian's 2.3.1 does over IPv6 (seen by hand with ``nft list ruleset``):

- the pinhole is ``iif "wan0" th dport P @nh,192,128 <client> @nh,48,8 <proto> accept``;
- NAT-PMP is not answered over IPv6 (RFC 6886 is IPv4 only);
- at start it multicasts its PCP ANNOUNCE to ff02::1 from its *link-local* address.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

import engine
from engine import Protocol
from engine.events import GatewayRestarted, MappingKey, MappingRecovered
from engine.manager import MappingManager
from tests.support.manager_rig import EventLog

from .clients import age_gateway, run_in_client
from .conftest import built_lab
from .netlab import (
    CLIENT_ADDRESS6,
    GATEWAY_LAN6,
    Lab,
    Pinhole,
    parse_pinholes,
)

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)
#: RFC 6887 §14.1.3: after an ANNOUNCE a client waits a random 0-5 s before renewing.
ANNOUNCE_DELAY = 5.0


def pinhole(protocol: int, port: int) -> Pinhole:
    """The rule miniupnpd writes for a MAP of ours over IPv6."""
    return Pinhole(protocol, CLIENT_ADDRESS6, port, "wan0")


@pytest.fixture(scope="module")
def lab6_shared() -> Iterator[Lab]:
    """One IPv6 lab for this module (the session's ``lab`` stays IPv4 only)."""
    yield from built_lab(ipv6=True)


@pytest.fixture
def lab6(lab6_shared: Lab) -> Lab:
    """The IPv6 lab, back to its just-built state (no rule left, miniupnpd running)."""
    lab6_shared.reset()
    assert lab6_shared.pinholes() == []
    return lab6_shared


def manager(**options: Any) -> MappingManager:
    """A PCP manager on the gateway's IPv6 address, from the client's."""
    options.setdefault("rng", random.Random(6))
    return MappingManager(GATEWAY_LAN6, local_address=CLIENT_ADDRESS6, via="pcp",
                          lifetime=3600, **options)


# What ``nft -j list chain inet filter miniupnpd`` printed for a PCP MAP of TCP 41000 over IPv6,
# beside a rule that is not a pinhole (no accept).
_NFT_JSON = (
    '{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},'
    ' {"chain": {"family": "inet", "table": "filter", "name": "miniupnpd", "handle": 1}},'
    ' {"rule": {"family": "inet", "table": "filter", "chain": "miniupnpd", "handle": 13,'
    ' "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "wan0"}},'
    ' {"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},'
    ' "right": 41000}}, {"match": {"op": "==", "left": {"payload": {"base": "nh",'
    ' "offset": 192, "len": 128}}, "right": "0x20010db8000000010000000000000002"}},'
    ' {"match": {"op": "==", "left": {"payload": {"base": "nh", "offset": 48, "len": 8}},'
    ' "right": 6}}, {"accept": null}]}},'
    ' {"rule": {"family": "inet", "table": "filter", "chain": "miniupnpd", "handle": 14,'
    ' "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}},'
    ' "right": 41001}}, {"drop": null}]}}]}'
)


def test_parse_pinholes_reads_miniupnpd_raw_matches() -> None:
    assert parse_pinholes(_NFT_JSON) == [Pinhole(TCP, "2001:db8:0:1::2", 41000, "wan0")]
    assert parse_pinholes(_NFT_JSON, "forward") == []


# ---------------------------------------------------------------------------- map/renew/delete


@pytest.mark.parametrize("protocol", [TCP, UDP])
def test_pcp_map_and_delete_over_ipv6(lab6: Lab, protocol: int) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> engine.PortMapping:
        mapping = await engine.map_port(GATEWAY_LAN6, 41000, protocol, via="pcp", lifetime=600,
                                        local_address=CLIENT_ADDRESS6)
        seen["after_map"] = lab6.pinholes()
        await mapping.delete()
        return mapping

    mapping = run_in_client(lab6, scenario)

    assert mapping.via == "pcp"
    assert (mapping.internal_port, mapping.external_port) == (41000, 41000)
    # No NAT over IPv6: the "external" address is the client's own.
    assert str(mapping.external_address) == CLIENT_ADDRESS6
    assert str(mapping.local_address) == CLIENT_ADDRESS6
    assert mapping.lifetime == 600
    assert seen["after_map"] == [pinhole(protocol, 41000)]
    assert mapping.deleted
    assert lab6.pinholes() == []
    # Nothing on the IPv4 side: no DNAT rule for a pinhole.
    assert lab6.dnat_rules() == []


def test_pcp_renew_over_ipv6_then_the_gateway_refuses_the_delete(lab6: Lab) -> None:
    """Debian's 2.3.1 forgets a pinhole's nonce when it renews it ("updating pinhole"), so a
    delete after a renewal is refused NOT_AUTHORIZED and the pinhole stays until it expires.
    natdeck must say so, never report it deleted."""
    seen: dict[str, Any] = {}

    async def scenario() -> engine.PortMapping:
        mapping = await engine.map_port(GATEWAY_LAN6, 41001, TCP, via="pcp", lifetime=600,
                                        local_address=CLIENT_ADDRESS6)
        await mapping.renew(lifetime=30)
        seen["after_renew"] = lab6.pinholes()
        seen["renewed"] = mapping.lifetime
        with pytest.raises(engine.ResultCodeError) as refused:
            await mapping.delete()
        seen["refused"] = refused.value.code
        return mapping

    mapping = run_in_client(lab6, scenario)

    # The renewal (same nonce, RFC 6887 §11.2.1) kept the one rule; miniupnpd clamps to 120 s.
    assert seen["after_renew"] == [pinhole(TCP, 41001)]
    assert seen["renewed"] == 120
    assert seen["refused"] == engine.PcpResult.NOT_AUTHORIZED
    assert not mapping.deleted
    assert lab6.pinholes() == [pinhole(TCP, 41001)]


def test_pinhole_lets_the_internet_reach_the_client(lab6: Lab) -> None:
    """The rule is real: before the MAP the WAN host cannot reach the port, after it can."""
    server = lab6.spawn_python_in_client(
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        f"s.bind(('{CLIENT_ADDRESS6}', 41005))\n"
        "print(json.dumps({'ready': True}), flush=True)\n"
        "while True:\n"
        "    data, peer = s.recvfrom(100)\n"
        "    print(json.dumps({'got': data.decode()}), flush=True)\n")
    assert server.receive(timeout=5) == {"ready": True}
    send = ("import json, socket, sys\n"
            "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
            f"s.sendto(sys.argv[1].encode(), ('{CLIENT_ADDRESS6}', 41005))\n"
            "print(json.dumps({'sent': True}))\n")

    lab6.run_python_in_wan(send, ["before"])

    async def scenario() -> engine.PortMapping:
        return await engine.map_port(GATEWAY_LAN6, 41005, UDP, via="pcp", lifetime=600,
                                     local_address=CLIENT_ADDRESS6)

    mapping = run_in_client(lab6, scenario)
    lab6.run_python_in_wan(send, ["after"])
    assert server.receive(timeout=5) == {"got": "after"}  # "before" was dropped
    run_in_client(lab6, mapping.delete)
    assert lab6.pinholes() == []
    server.close()


# ---------------------------------------------------------------------------- the manager


def test_manager_maps_and_removes_over_ipv6(lab6: Lab) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with manager(probe_on_start=False) as mgr:
            tcp = await mgr.add(Protocol.TCP, 41010)
            udp = await mgr.add(Protocol.UDP, 41011)
            seen["added"] = set(lab6.pinholes())
            seen["mapped"] = {(m.external_port, str(m.external_address), m.state)
                              for m in (tcp, udp)}
            await mgr.remove(tcp.key)
            seen["removed"] = lab6.pinholes()
        seen["closed"] = lab6.pinholes()

    run_in_client(lab6, scenario)

    assert seen["added"] == {pinhole(TCP, 41010), pinhole(UDP, 41011)}
    assert seen["mapped"] == {(41010, CLIENT_ADDRESS6, "active"),
                              (41011, CLIENT_ADDRESS6, "active")}
    assert seen["removed"] == [pinhole(UDP, 41011)]
    assert seen["closed"] == []  # leaving the manager deleted the last one


def test_manager_renews_over_ipv6(lab6: Lab) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        # The timeout turns that hang into a failure (a second cancellation gets through).
        async with asyncio.timeout(10):
            # keep: leaving does not delete (a renewed pinhole cannot be, see above).
            async with manager(probe_on_start=False, keep=True) as mgr:
                added = await mgr.add(Protocol.TCP, 41012)
                renewed = await mgr.renew(added.key)
                seen["renewed"] = (renewed.state, renewed.renewals, renewed.nonce == added.nonce)
                seen["rules"] = lab6.pinholes()

    run_in_client(lab6, scenario)

    assert seen["renewed"] == ("active", 1, True)
    assert seen["rules"] == [pinhole(TCP, 41012)]


# ---------------------------------------------------------------------------- restart


def test_restart_is_seen_in_the_next_answer_and_the_pinhole_comes_back(lab6: Lab) -> None:
    """A renewal after a restart: its epoch shows the lost state, and the MAP re-opens it."""
    age_gateway(lab6, 3)  # RFC 6887 §8.5's slack: a restart shows once the epoch was >= 2
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with engine.GatewayClient(GATEWAY_LAN6, local_address=CLIENT_ADDRESS6) as client:
            lost: list[tuple[str, int]] = []
            client.on_state_lost.append(lambda protocol, epoch: lost.append((protocol, epoch)))
            mapping = await client.map(TCP, 41020, lifetime=600, via="pcp")
            await asyncio.to_thread(lab6.restart_gateway)  # SIGKILL, rules flushed, epoch 0
            seen["after_restart"] = lab6.pinholes()
            await mapping.renew()
            seen["lost"] = lost
            seen["after_renew"] = lab6.pinholes()
            await mapping.delete()
        seen["end"] = lab6.pinholes()

    run_in_client(lab6, scenario)

    assert seen["after_restart"] == []
    assert [protocol for protocol, _ in seen["lost"]] == ["pcp"]
    assert seen["after_renew"] == [pinhole(TCP, 41020)]
    assert seen["end"] == []


def test_manager_recreates_its_pinholes_after_a_restart_when_asked(lab6: Lab) -> None:
    age_gateway(lab6, 3)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with manager(probe_on_start=False, listen=False) as mgr:
            log = EventLog(mgr)
            for port in (41030, 41031):
                await mgr.add(Protocol.TCP, port)
            await asyncio.to_thread(lab6.restart_gateway)
            await mgr.renew(MappingKey(TCP, 41030))
            # The other mapping is recreated after RFC 6887's random 0-5 s.
            await log.wait_for(MappingRecovered, lambda e: e.key.internal_port == 41031,
                               timeout=ANNOUNCE_DELAY + 2)
            # The restart makes the manager confirm every mapping (issue 14, finding 2): the
            # renewed one too, since its answer revealed the restart. Wait for both.
            settle = time.monotonic() + ANNOUNCE_DELAY + 2
            while any(m.state != "active" for m in mgr.mappings.values()) \
                    and time.monotonic() < settle:
                await asyncio.sleep(0.05)
            seen["restarts"] = len(log.of(GatewayRestarted))
            seen["rules"] = set(lab6.pinholes())
            seen["states"] = {m.state for m in mgr.mappings.values()}
            closed = await mgr.close()
            seen["left"] = {key.internal_port for key in closed.left}
        seen["end"] = lab6.pinholes()

    run_in_client(lab6, scenario)

    assert seen["restarts"] == 1
    assert seen["rules"] == {pinhole(TCP, 41030), pinhole(TCP, 41031)}
    assert seen["states"] == {"active"}
    # What natdeck says it could not delete is exactly what stays: Debian's miniupnpd refuses
    # to delete a pinhole it has renewed (see above), and the confirmation after the restart
    # renews the one whose renewal revealed it.
    assert {p.port for p in seen["end"]} == seen["left"]
    assert seen["left"] <= {41030}


def test_manager_notices_a_restart_from_the_ipv6_announce(lab6: Lab) -> None:
    """miniupnpd multicasts a PCP ANNOUNCE to ff02::1 as it starts; the manager should
    recreate its pinholes from it, without any call, after the random 0-5 s."""
    age_gateway(lab6, 3)
    seen: dict[str, Any] = {}

    async def scenario() -> None:
        async with manager(probe_on_start=False) as mgr:
            await mgr.add(Protocol.TCP, 41040)
            restarted = time.monotonic()
            await asyncio.to_thread(lab6.restart_gateway)
            while not lab6.pinholes() and time.monotonic() - restarted < ANNOUNCE_DELAY + 2:
                await asyncio.sleep(0.1)
            seen["rules"] = lab6.pinholes()

    run_in_client(lab6, scenario)

    assert seen["rules"] == [pinhole(TCP, 41040)]


def _gateway_link_local(lab: Lab) -> str:
    """The gateway's link-local address on its LAN veth (what it sends ANNOUNCE from)."""
    shown = lab.run_in_gateway(["ip", "-6", "-o", "addr", "show", "dev", "lan0", "scope", "link"],
                               check=True).stdout
    return shown.split()[3].split("/")[0]


def test_pcp_map_and_delete_to_the_gateways_link_local_address(lab6: Lab) -> None:
    # The channel's connected socket with a %scope (engine/udp.py resolves it to the
    # interface's index): the answers come from the link-local address and are taken.
    gateway = f"{_gateway_link_local(lab6)}%lan1"
    seen: dict[str, Any] = {}

    async def scenario() -> engine.PortMapping:
        mapping = await engine.map_port(gateway, 41010, TCP, via="pcp", lifetime=600,
                                        local_address=CLIENT_ADDRESS6, timeout=10.0)
        seen["after_map"] = lab6.pinholes()
        await mapping.delete(timeout=10.0)
        return mapping

    mapping = run_in_client(lab6, scenario)
    assert (mapping.via, mapping.external_port) == ("pcp", 41010)
    assert seen["after_map"] == [pinhole(TCP, 41010)]
    assert lab6.pinholes() == []
