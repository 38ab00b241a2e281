"""engine.upnp's UpnpGateway against Debian's miniupnpd with UPnP IGD on (issue 13, 16).

Every mapping is checked in the gateway's real nftables DNAT rules. "Another host" is a second
address of the client namespace (:meth:`Lab.as_another_host`); ``upnpc`` (miniupnpc) and
``natpmpc`` are the peers. SSDP multicast leaves only inside the lab's namespaces.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import engine
from engine.simulator.upnp import miniupnpd_nonce
from engine.upnp import UpnpGateway, UpnpResultError

from .clients import run_in_client
from .netlab import (
    CLIENT_ADDRESS,
    CLIENT_ADDRESS6,
    GATEWAY_LAN,
    GATEWAY_LAN6,
    OTHER_CLIENT_ADDRESS,
    DnatRule,
    GatewayConfig,
    Lab,
    upnp_lease,
)

pytestmark = pytest.mark.lab

T = TypeVar("T")
TCP = int(engine.Protocol.TCP)
UDP = int(engine.Protocol.UDP)
HTTP_PORT = 5000
UUID = "4e617464-6563-6b00-0000-0000000000aa"
UPNP = GatewayConfig(enable_upnp=True, uuid=UUID, http_port=HTTP_PORT)


def start(lab: Lab, **changes: Any) -> Lab:
    """Restart miniupnpd with UPnP on (and ``changes``); the next test's reset restores it."""
    lab.restart_gateway(config=GatewayConfig(**{**UPNP.__dict__, **changes}))
    return lab


def with_igd(lab: Lab, scenario: Callable[[UpnpGateway], Awaitable[T]], *,
             gateway: str = GATEWAY_LAN, **options: Any) -> T:
    """Run ``scenario(igd)`` inside the client namespace."""
    async def run() -> T:
        async with UpnpGateway(gateway, **options) as igd:
            return await scenario(igd)
    return run_in_client(lab, run)


def rule(protocol: int, external: int, internal: int, client: str = CLIENT_ADDRESS) -> DnatRule:
    return DnatRule(protocol, external, client, internal)


def upnpc_map_for_another_host(lab: Lab, port: int, protocol: str = "TCP") -> None:
    with lab.as_another_host() as other:
        output = lab.upnpc("-a", other, str(port), str(port), protocol, "3600")
    assert f"is redirected to internal {other}:{port}" in output, output


def test_map_renew_delete_in_the_real_rules(lab: Lab) -> None:
    start(lab)
    seen: dict[str, Any] = {}

    async def scenario(igd: UpnpGateway) -> None:
        started = time.monotonic()
        mapping = await igd.map(engine.Protocol.TCP, 40000, lifetime=3600)
        seen["first_map_s"] = time.monotonic() - started
        seen["mapping"] = mapping
        seen["after_map"] = lab.dnat_rules()
        seen["renewed"] = await igd.renew(mapping, 120)
        seen["entry"] = await igd.get_mapping(engine.Protocol.TCP, 40000)
        seen["after_renew"] = lab.dnat_rules()
        await igd.delete(mapping)
        seen["after_delete"] = lab.dnat_rules()
        seen["entry_after"] = await igd.get_mapping(engine.Protocol.TCP, 40000)

    with_igd(lab, scenario)
    mapping = seen["mapping"]
    assert (mapping.external_port, mapping.permanent) == (40000, False)
    assert upnp_lease(mapping.lifetime, 3600)
    assert str(mapping.external_address) == lab.wan_address
    assert seen["after_map"] == [rule(TCP, 40000, 40000)]
    assert upnp_lease(seen["renewed"].lifetime, 120)
    assert seen["entry"].lease_remaining <= 120
    assert seen["after_renew"] == [rule(TCP, 40000, 40000)]
    assert seen["after_delete"] == []
    assert seen["entry_after"] is None
    assert seen["first_map_s"] < 1.0      # SSDP + descriptions + 3 actions, well under 1 s


def test_leases_as_miniupnpd_keeps_them(lab: Lab) -> None:
    start(lab)

    async def scenario(igd: UpnpGateway) -> tuple[int, int, bool]:
        zero = await igd.map(engine.Protocol.UDP, 40010, lifetime=0)
        huge = await igd.map(engine.Protocol.UDP, 40011, lifetime=10**7)
        return zero.lifetime, huge.lifetime, zero.permanent

    # IGDv2: "0" is kept as 604800 s, and above 604800 is cut (we cap before sending anyway).
    zero, huge, permanent = with_igd(lab, scenario)
    assert upnp_lease(zero, 604800)
    assert upnp_lease(huge, 604800)
    assert not permanent


def test_upnp_only_router_maps_and_has_nothing_on_5351(lab: Lab) -> None:
    start(lab, enable_natpmp=False)
    mapping = with_igd(lab, lambda igd: igd.map(engine.Protocol.TCP, 40020))
    assert lab.dnat_rules() == [rule(TCP, mapping.external_port, 40020)]

    def pcp_answer() -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            sock.connect((GATEWAY_LAN, 5351))
            sock.send(b"\x02\x00" + bytes(58))
            try:
                sock.recv(1100)
            except ConnectionRefusedError:
                return "refused"
            return "answered"

    with lab.client_namespace():
        assert pcp_answer() == "refused"     # ICMP port unreachable: "not spoken here", at once


def test_igdv1_maps_with_add_port_mapping_and_lists_by_walking(lab: Lab) -> None:
    start(lab, force_igd_desc_v1=True)
    upnpc_map_for_another_host(lab, 40030)

    async def scenario(igd: UpnpGateway) -> tuple[Any, ...]:
        probe = await igd.probe()
        mapping = await igd.map(engine.Protocol.TCP, 40031)
        with pytest.raises(UpnpResultError) as conflict:
            await igd.map(engine.Protocol.TCP, 40032, external_port=40030)
        return probe, mapping, conflict.value, await igd.list_mappings()

    probe, mapping, conflict, listing = with_igd(lab, scenario)
    assert probe.device.igd_version == 1
    assert probe.device.service_type.endswith("WANIPConnection:1")
    assert mapping.external_port == 40031
    assert (conflict.code, conflict.name, conflict.port_in_use) == (718, "ConflictInMappingEntry",
                                                                    True)
    assert listing.method == "GetGenericPortMappingEntry"
    assert {(m.external_port, str(m.internal_client)) for m in listing.mappings} == {
        (40030, OTHER_CLIENT_ADDRESS), (40031, CLIENT_ADDRESS)}
    assert set(lab.dnat_rules()) == {rule(TCP, 40030, 40030, OTHER_CLIENT_ADDRESS),
                                     rule(TCP, 40031, 40031)}


def test_a_port_another_host_holds_gets_another_port_on_igdv2(lab: Lab) -> None:
    start(lab)
    upnpc_map_for_another_host(lab, 40040)
    mapping = with_igd(lab, lambda igd: igd.map(engine.Protocol.TCP, 40041,
                                                external_port=40040))
    assert mapping.external_port != 40040
    assert set(lab.dnat_rules()) == {rule(TCP, 40040, 40040, OTHER_CLIENT_ADDRESS),
                                     rule(TCP, mapping.external_port, 40041)}


def test_listing_shows_upnpc_natpmpc_and_pcp_mappings(lab: Lab) -> None:
    start(lab)
    upnpc_map_for_another_host(lab, 40050)
    natpmpc = lab.run_in_client(["natpmpc", "-g", lab.gateway_lan, "-a", "40051", "40051",
                                 "udp", "3600"], timeout=20, check=True).stdout
    assert "Mapped public port 40051" in natpmpc

    async def scenario(igd: UpnpGateway) -> Any:
        pcp = await engine.map_port(lab.gateway_lan, 40052, engine.Protocol.TCP, via="pcp",
                                    lifetime=1800)
        return pcp, await igd.list_mappings()

    pcp, listing = with_igd(lab, scenario)
    by_port = {m.external_port: m for m in listing.mappings}
    assert listing.method == "GetListOfPortMappings"
    assert set(by_port) == {40050, 40051, pcp.external_port}
    other, natpmp, ours = by_port[40050], by_port[40051], by_port[pcp.external_port]
    assert (other.made_by, str(other.internal_client), other.protocol) == (
        "upnp", OTHER_CLIENT_ADDRESS, TCP)
    assert other.description == "libminiupnpc"
    assert (natpmp.made_by, str(natpmp.internal_client), natpmp.protocol) == (
        "natpmp", CLIENT_ADDRESS, UDP)
    assert (ours.made_by, str(ours.internal_client), ours.internal_port) == (
        "pcp", CLIENT_ADDRESS, 40052)
    # miniupnpd prints the nonce as three host-order (little-endian) 32-bit words.
    assert ours.description == f"PCP MAP {miniupnpd_nonce(pcp.nonce)}"
    assert 3500 < (other.lease_remaining or 0) <= 3600
    assert 1700 < (ours.lease_remaining or 0) <= 1800
    # upnpc reads the same table.
    listed = lab.upnpc("-l")
    assert re.search(rf"TCP\s+40050->{re.escape(OTHER_CLIENT_ADDRESS)}:40050", listed)


def test_deleting_another_hosts_mapping_secure_mode_refuses(lab: Lab) -> None:
    start(lab, secure_mode=True)
    upnpc_map_for_another_host(lab, 40060)

    async def scenario(igd: UpnpGateway) -> UpnpResultError:
        with pytest.raises(UpnpResultError) as refused:
            await igd.delete_mapping(engine.Protocol.TCP, 40060)
        return refused.value

    refused = with_igd(lab, scenario)
    assert (refused.code, refused.name) == (606, "ActionNotAuthorized")
    assert lab.dnat_rules() == [rule(TCP, 40060, 40060, OTHER_CLIENT_ADDRESS)]


def test_deleting_another_hosts_mapping_without_secure_mode(lab: Lab) -> None:
    start(lab, secure_mode=False)
    upnpc_map_for_another_host(lab, 40070)
    with_igd(lab, lambda igd: igd.delete_mapping(engine.Protocol.TCP, 40070))
    assert lab.dnat_rules() == []


def test_a_pcp_mapping_deleted_through_upnp(lab: Lab) -> None:
    start(lab)

    async def scenario(igd: UpnpGateway) -> None:
        pcp = await engine.map_port(lab.gateway_lan, 40080, engine.Protocol.TCP, via="pcp")
        assert lab.dnat_rules() == [rule(TCP, pcp.external_port, 40080)]
        await igd.delete_mapping(engine.Protocol.TCP, pcp.external_port)

    with_igd(lab, scenario)
    assert lab.dnat_rules() == []


HOSTILE_SSDP = r"""
import json, select, socket, struct, sys
bind_host, port, source, location, group, serve = sys.argv[1:7]
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((bind_host, int(port)))
if group != "-":
    server.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                      socket.inet_aton(group) + socket.inet_aton(source))
sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sender.bind((source, 0))
web = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
web.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if serve == "web":  # the host its LOCATION names: count who comes to fetch it
    web.bind((source, 5000))
    web.listen()
print(json.dumps({"ready": True}), flush=True)
answered = fetched = 0
while True:
    readable, _, _ = select.select([server, sys.stdin] + ([web] if serve == "web" else []),
                                   [], [])
    if server in readable:
        data, addr = server.recvfrom(2048)
        if data.startswith(b"M-SEARCH"):
            answer = ("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2"
                      "\r\nUSN: uuid:evil\r\nLOCATION: " + location + "\r\n\r\n").encode()
            sender.sendto(answer, addr)
            answered += 1
    if web in readable:
        connection, _ = web.accept()
        fetched += 1
        connection.close()
    if sys.stdin in readable:
        sys.stdin.readline()
        print(json.dumps({"answered": answered, "fetched": fetched}), flush=True)
        break
"""


def test_hostile_ssdp_answers_are_ignored_and_the_gateways_is_used(lab: Lab) -> None:
    start(lab)
    with lab.extra_client_address() as other:
        evil = f"http://{other}:5000/rootDesc.xml"
        # On the gateway's own address (port 1901, where we search first): a LOCATION on
        # another host. On the LAN: another host answering the multicast search, twice over.
        from_gateway = lab.spawn_python(lab.gateway_ns, HOSTILE_SSDP,
                                        [GATEWAY_LAN, "1901", GATEWAY_LAN, evil, "-", "-"])
        on_lan = lab.spawn_python_in_client(
            HOSTILE_SSDP, ["0.0.0.0", "1900", other, evil, "239.255.255.250", "web"])
        assert from_gateway.receive(timeout=10) == {"ready": True}
        assert on_lan.receive(timeout=10) == {"ready": True}

        probe = with_igd(lab, lambda igd: igd.probe(), ssdp_port=1901, multicast=True)

        reports = []
        for process in (from_gateway, on_lan):
            process.send("report")
            reports.append(process.receive(timeout=10))
    assert probe.device.location == lab.upnp_location
    assert probe.device.friendly_name
    assert reports[0]["answered"] >= 1
    assert reports[1]["answered"] >= 1
    assert reports[0]["fetched"] == reports[1]["fetched"] == 0


def test_ipv6_pinhole_add_update_delete_in_the_filter_chain(lab: Lab) -> None:
    seen: dict[str, Any] = {}
    with lab.ipv6_addresses():
        start(lab, ipv6=True)

        async def scenario(igd: UpnpGateway) -> None:
            seen["probe"] = await igd.probe()
            unique_id = await igd.add_pinhole(engine.Protocol.TCP, 40090, lifetime=600)
            seen["after_add"] = lab.pinhole_rules()
            await igd.update_pinhole(unique_id, 1200)
            seen["after_update"] = lab.pinhole_rules()
            await igd.delete_pinhole(unique_id)
            seen["after_delete"] = lab.pinhole_rules()

        # Over IPv6, to the gateway's LAN address: SSDP by unicast, then HTTP on [::].
        with_igd(lab, scenario, gateway=GATEWAY_LAN6)
    assert seen["probe"].device.location == f"http://[{GATEWAY_LAN6}]:{HTTP_PORT}/rootDesc.xml"
    assert seen["probe"].device.pinholes
    [added] = seen["after_add"]
    assert "dport 40090" in added
    # miniupnpd matches the destination as raw network-header bits: 2001:db8:1::2.
    assert f"@nh,192,128 0x{ipaddress.ip_address(CLIENT_ADDRESS6).packed.hex()}" in added
    assert len(seen["after_update"]) == 1
    assert seen["after_delete"] == []
