"""natdeck's request layer (engine.client) against a real miniupnpd 2.3.1.

Every test runs its engine calls on an event loop inside the client namespace
(:func:`~tests.lab.clients.run_in_client`) and checks the gateway's real state, the nftables
rules miniupnpd wrote (``lab.dnat_rules()``/``lab.peer_rules()``), as well as what the engine
reports. Internal ports are >= 1024: the lab's permission line refuses lower ones.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

import engine
from engine import GatewayTimeout, PcpResult, PortUnreachable, Protocol, ResultCodeError, Via
from engine.codes import ErrorLifetime, NatPmpResult

from .clients import Sniffer, run_in_client
from .netlab import CLIENT_ADDRESS, DnatRule, Lab, NatRule
from .test_lab_smoke import TCP_CONNECT, TCP_ECHO_SERVER

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)


def rule(protocol: int, external_port: int, internal_port: int) -> DnatRule:
    """The DNAT rule miniupnpd writes for a mapping of ours."""
    return DnatRule(protocol, external_port, CLIENT_ADDRESS, internal_port)


# ---------------------------------------------------------------------------- map/renew/delete


def test_pcp_map_renew_delete(lab: Lab) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> engine.PortMapping:
        mapping = await engine.map_port(lab.gateway_lan, 40000, Protocol.TCP, via="pcp",
                                        lifetime=600)
        seen["after_map"] = lab.dnat_rules()
        seen["granted"] = (mapping.lifetime, mapping.expires_at)
        # RFC 6887 §15: the server may shorten or lengthen the lifetime; miniupnpd clamps
        # to min_lifetime (120 s), and the client must report what was granted.
        await mapping.renew(lifetime=30)
        seen["after_renew"] = lab.dnat_rules()
        seen["renewed"] = (mapping.lifetime, mapping.expires_at)
        await mapping.delete()
        return mapping

    mapping = run_in_client(lab, scenario)

    assert mapping.via == "pcp"
    assert (mapping.internal_port, mapping.external_port) == (40000, 40000)
    assert str(mapping.external_address) == lab.wan_address
    assert mapping.nonce is not None
    assert len(mapping.nonce) == 12
    assert str(mapping.local_address) == CLIENT_ADDRESS
    assert seen["after_map"] == [rule(TCP, 40000, 40000)]
    assert seen["granted"][0] == 600
    # The renewal kept the one rule (same nonce, same port: RFC 6887 §11.2.1).
    assert seen["after_renew"] == [rule(TCP, 40000, 40000)]
    assert seen["renewed"][0] == 120
    assert seen["renewed"][1] == pytest.approx(seen["granted"][1] - 600 + 120, abs=1.0)
    assert mapping.deleted
    assert lab.dnat_rules() == []
    assert lab.miniupnpd_rule_count() == 0


def test_natpmp_map_renew_delete(lab: Lab) -> None:
    seen: dict[str, Any] = {}

    async def scenario() -> engine.PortMapping:
        mapping = await engine.map_port(lab.gateway_lan, 40001, Protocol.UDP, via="natpmp",
                                        lifetime=3600)
        seen["after_map"] = lab.dnat_rules()
        first_expiry = mapping.expires_at
        await asyncio.sleep(0.05)
        await mapping.renew()
        seen["moved"] = mapping.expires_at - first_expiry
        seen["after_renew"] = lab.dnat_rules()
        await mapping.delete()
        return mapping

    mapping = run_in_client(lab, scenario)

    assert mapping.via == "natpmp"
    assert mapping.nonce is None
    assert (mapping.internal_port, mapping.external_port, mapping.lifetime) == (40001, 40001, 3600)
    assert str(mapping.external_address) == lab.wan_address  # from opcode 0 (RFC 6886 §3.2)
    assert seen["after_map"] == [rule(UDP, 40001, 40001)]
    assert seen["after_renew"] == [rule(UDP, 40001, 40001)]
    assert seen["moved"] > 0.04  # the renewal restarted the lifetime
    assert mapping.deleted
    assert lab.dnat_rules() == []


def test_blocking_client_without_an_event_loop(lab: Lab) -> None:
    # engine.BlockingClient: the same requests on a blocking socket, no event loop at all.
    seen: dict[str, Any] = {}
    with lab.client_namespace(), engine.BlockingClient(lab.gateway_lan) as client:
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
        probed = client.probe()
        tcp = client.map(TCP, 40010, via="pcp", lifetime=600)
        udp = client.map(UDP, 40011, via="natpmp", lifetime=600)
        seen["after_map"] = lab.dnat_rules()
        client.renew(tcp, lifetime=300)
        seen["renewed"] = tcp.lifetime
        seen["address"] = client.get_external_address(via="natpmp")
        with pytest.raises(ResultCodeError):  # the lab's permission line: ports under 1024
            client.map(TCP, 80, via="pcp", lifetime=600)
        client.delete(tcp)
        client.delete(udp)
    assert (probed.pcp, probed.natpmp, str(probed.external_address)) == (
        True, True, lab.wan_address)
    assert (tcp.via, udp.via) == ("pcp", "natpmp")
    assert str(tcp.external_address) == str(udp.external_address) == lab.wan_address
    assert str(seen["address"]) == lab.wan_address
    assert seen["after_map"] == [rule(TCP, 40010, 40010), rule(UDP, 40011, 40011)]
    assert seen["renewed"] == 300
    assert tcp.deleted
    assert udp.deleted
    assert lab.dnat_rules() == []


def test_auto_speaks_pcp_first(lab: Lab) -> None:
    sniffer = Sniffer(lab)

    async def scenario() -> tuple[engine.PortMapping, engine.ProbeResult]:
        client = engine.GatewayClient(lab.gateway_lan)
        mapping = await engine.map_port(client, 40002, Protocol.TCP)
        probe = await client.probe()
        return mapping, probe

    mapping, probe = run_in_client(lab, scenario)
    requests = sniffer.requests()

    assert mapping.via == "pcp"
    assert lab.dnat_rules() == [rule(TCP, 40002, 40002)]
    # The very first packet was a PCP (version 2) MAP, not NAT-PMP.
    assert (requests[0]["version"], requests[0]["opcode"]) == (2, 1)
    assert all(r["version"] == 2 for r in requests if r.get("opcode") == 1)
    assert probe.pcp
    assert probe.natpmp
    assert probe.via == "pcp"
    assert str(probe.external_address) == lab.wan_address
    assert probe.rtt is not None
    assert probe.rtt < 0.5


def test_external_address_without_leaving_state(lab: Lab) -> None:
    address = run_in_client(lab, lambda: engine.external_address(lab.gateway_lan))
    pcp_address = run_in_client(lab, lambda: engine.external_address(lab.gateway_lan,
                                                                     via="pcp"))

    assert str(address) == str(pcp_address) == lab.wan_address
    # The PCP way maps a short-lived port and deletes it again (RFC 6887 §11.6).
    assert lab.dnat_rules() == []


def test_mapping_forwards_traffic_from_the_internet(lab: Lab) -> None:
    server = lab.spawn_python_in_client(TCP_ECHO_SERVER, ["40003"])
    assert server.receive() == {"event": "ready"}

    mapping = run_in_client(lab, lambda: engine.map_port(lab.gateway_lan, 40003, Protocol.TCP))
    reply = lab.run_python_in_wan(TCP_CONNECT, [str(mapping.external_address),
                                                str(mapping.external_port)])

    assert reply == {"reply": "hello through the NAT"}
    assert server.receive()["peer"] == lab.wan_peer_address


# ---------------------------------------------------------------------------- ports taken


@pytest.mark.parametrize("via", ["pcp", "natpmp"])
def test_taken_external_port_reports_the_port_granted(lab: Lab, via: Via) -> None:
    async def scenario() -> tuple[engine.PortMapping, engine.PortMapping]:
        holder = await engine.map_port(lab.gateway_lan, 40010, Protocol.TCP, via=via)
        # Another internal port asks for the external port the first one holds.
        second = await engine.map_port(lab.gateway_lan, 40011, Protocol.TCP, via=via,
                                       external_port=40010)
        return holder, second

    holder, second = run_in_client(lab, scenario)

    assert holder.external_port == 40010
    assert second.suggested_external_port == 40010
    assert second.external_port != 40010
    assert sorted(lab.dnat_rules(), key=lambda r: r.internal_port) == [
        rule(TCP, 40010, 40010),
        rule(TCP, second.external_port, 40011),
    ]


def test_prefer_failure_refuses_instead_of_another_port(lab: Lab) -> None:
    # External ports below 1024 are refused by the lab's permission line: without
    # PREFER_FAILURE miniupnpd moves up to the first allowed port; with it, RFC 6887 §13.2
    # says the server must fail with CANNOT_PROVIDE_EXTERNAL and create nothing.
    async def scenario() -> tuple[ResultCodeError, engine.PortMapping]:
        with pytest.raises(ResultCodeError) as refused:
            await engine.map_port(lab.gateway_lan, 40020, Protocol.UDP, via="pcp",
                                  external_port=1000, prefer_failure=True)
        assert lab.dnat_rules() == []
        moved = await engine.map_port(lab.gateway_lan, 40021, Protocol.UDP, via="pcp",
                                      external_port=1000)
        return refused.value, moved

    error, moved = run_in_client(lab, scenario)

    assert error.protocol == "pcp"
    assert error.code == PcpResult.CANNOT_PROVIDE_EXTERNAL
    assert error.name == "CANNOT_PROVIDE_EXTERNAL"
    assert "CANNOT_PROVIDE_EXTERNAL (11)" in str(error)
    assert error.error_lifetime is not None
    assert moved.external_port == 1024
    assert lab.dnat_rules() == [rule(UDP, 1024, 40021)]


def test_prefer_failure_is_enforced_where_debian_miniupnpd_ignores_it(lab: Lab) -> None:
    """Debian builds miniupnpd with CHECK_PORTINUSE, whose check skips a port in use *before*
    PREFER_FAILURE is looked at: the option is ignored and another port granted (an RFC 6887
    §13.2 violation on the gateway's side). natdeck sends the option, sees the other port,
    deletes that mapping and reports CANNOT_PROVIDE_EXTERNAL, as the option promises.
    """
    sniffer = Sniffer(lab)

    async def scenario() -> ResultCodeError:
        await engine.map_port(lab.gateway_lan, 40030, Protocol.TCP, via="pcp")
        with pytest.raises(ResultCodeError) as refused:
            await engine.map_port(lab.gateway_lan, 40031, Protocol.TCP, via="pcp",
                                  external_port=40030, prefer_failure=True)
        return refused.value

    error = run_in_client(lab, scenario)

    sent = [r for r in sniffer.requests() if r.get("internal_port") == 40031]
    # PREFER_FAILURE (code 2, no data, RFC 6887 §13.2) went out with the request, and the
    # unwanted mapping was deleted again (a lifetime-0 request).
    assert sent
    assert all(r["options"] == "02000000" for r in sent)
    assert any(r.get("lifetime") == 0 for r in sent)
    assert error.code == PcpResult.CANNOT_PROVIDE_EXTERNAL
    assert "despite PREFER_FAILURE" in str(error)
    assert lab.dnat_rules() == [rule(TCP, 40030, 40030)]


# ---------------------------------------------------------------------------- errors


def test_refused_internal_port_is_a_clean_result_code_error(lab: Lab) -> None:
    async def refuse(via: Via) -> tuple[ResultCodeError, float]:
        start = time.monotonic()
        with pytest.raises(ResultCodeError) as caught:
            await engine.map_port(lab.gateway_lan, 80, Protocol.TCP, via=via)
        return caught.value, time.monotonic() - start

    async def scenario() -> list[tuple[ResultCodeError, float]]:
        return list(await asyncio.gather(refuse("pcp"), refuse("natpmp")))

    (pcp_error, pcp_took), (natpmp_error, natpmp_took) = run_in_client(lab, scenario)

    # miniupnpd walks every external port before refusing (~2 s), then says NOT_AUTHORIZED.
    assert pcp_error.code == PcpResult.NOT_AUTHORIZED
    assert pcp_error.name == "NOT_AUTHORIZED"
    assert pcp_error.error_lifetime == 0  # what miniupnpd 2.3.1 sends for a long error
    assert pcp_error.lifetime_kind is ErrorLifetime.LONG
    assert re.search(r"PCP map tcp 80: PCP gateway 198\.18\.0\.1 answered NOT_AUTHORIZED \(2\)",
                     str(pcp_error))
    assert "lasts" not in str(pcp_error)  # issue 17: an error lifetime of 0 says nothing
    assert natpmp_error.code == NatPmpResult.NOT_AUTHORIZED
    assert natpmp_error.protocol == "natpmp"
    assert natpmp_error.error_lifetime is None  # NAT-PMP has no error lifetime
    assert "NOT_AUTHORIZED (2)" in str(natpmp_error)
    assert max(pcp_took, natpmp_took) < 10
    assert lab.dnat_rules() == []


#: An nftables table that drops what reaches port 5351 in the gateway: silence, no ICMP.
SILENCE = """
table inet natdeck_silence {
    chain input {
        type filter hook input priority -300; policy accept;
        udp dport 5351 drop
    }
}
"""


def test_a_stopped_gateway_refuses_at_once(lab: Lab) -> None:
    # Nothing listens on 5351: the kernel answers ICMP port unreachable, which the connected
    # socket reports; every request ends at once instead of waiting its timeout (issue 13).
    lab.stop_gateway()  # the autouse reset starts it again for the next test

    async def refused(via: Via) -> tuple[GatewayTimeout, float]:
        start = time.monotonic()
        with pytest.raises(PortUnreachable) as caught:
            await engine.map_port(lab.gateway_lan, 40040, Protocol.TCP, via=via,
                                  timeout=10.0)
        return caught.value, time.monotonic() - start

    async def scenario() -> list[tuple[GatewayTimeout, float]]:
        return list(await asyncio.gather(refused("pcp"), refused("natpmp"), refused("auto")))

    results = run_in_client(lab, scenario)
    for error, took in results:
        assert took < 1.0
        assert "ICMP port unreachable" in str(error)
    assert [error.tries for error, _ in results[:2]] == [1, 1]
    # auto goes on to UPnP IGD: SSDP to the gateway's 1900 is refused too (then a multicast
    # search, given half a second): one error for all, still a PortUnreachable.
    auto, _ = results[2]
    assert "NAT-PMP/PCP nor UPnP IGD" in str(auto)


def test_silent_gateway_times_out_within_the_timeout(lab: Lab) -> None:
    lab.run_in(lab.gateway_ns, ["nft", "-f", "-"], input=SILENCE, check=True)

    async def silent(via: Via) -> tuple[GatewayTimeout, float]:
        # A client each: one client sends one request per protocol to a gateway it has not
        # measured yet (issue 15's slow start), so three calls through one would queue.
        client = engine.GatewayClient(lab.gateway_lan)
        start = time.monotonic()
        with pytest.raises(GatewayTimeout) as caught:
            await engine.map_port(client, 40040, Protocol.TCP, via=via, timeout=2.0)
        return caught.value, time.monotonic() - start

    async def scenario() -> tuple[list[tuple[GatewayTimeout, float]], engine.ProbeResult]:
        results = await asyncio.gather(silent("pcp"), silent("natpmp"), silent("auto"))
        return list(results), await engine.probe(lab.gateway_lan, timeout=1.0)

    try:
        results, probe = run_in_client(lab, scenario)
    finally:
        lab.run_in(lab.gateway_ns, ["nft", "delete", "table", "inet", "natdeck_silence"])
    (pcp_error, _pcp_took), (natpmp_error, _natpmp_took), (auto_error, _auto_took) = results

    for error, took in results:
        assert 1.9 <= error.elapsed <= 2.3  # the deadline, plus scheduling slack
        assert took < 3.0
        assert re.search(rf"after {error.tries} tr(y|ies) over 2\.\d s", str(error)), str(error)
    # RFC 6887 §8.1.1: PCP's first wait is 3 s, so one try fits in 2 s; NAT-PMP's
    # 250 ms doubling (RFC 6886 §3.1) fits four (0, 0.25, 0.75, 1.75 s).
    assert (pcp_error.protocol, pcp_error.tries) == ("pcp", 1)
    assert (natpmp_error.protocol, natpmp_error.tries) == ("natpmp", 4)
    # auto, on a gateway never heard from, gave PCP half the budget (one try), NAT-PMP the
    # rest (three tries: 0, 0.25, 0.75 s), and counts every try in one error.
    assert auto_error.tries == 4
    assert "PCP map tcp 40040, then NAT-PMP map tcp 40040" in str(auto_error)
    assert not probe.reachable
    assert probe.via is None


# ---------------------------------------------------------------------------- PEER


def test_peer_creates_a_snat_rule(lab: Lab) -> None:
    mapping = run_in_client(lab, lambda: engine.peer(
        lab.gateway_lan, 40050, Protocol.TCP, lab.wan_peer_address, 5555, lifetime=600))

    assert mapping.opcode == "peer"
    assert mapping.via == "pcp"
    assert (str(mapping.remote_address), mapping.remote_port) == (lab.wan_peer_address, 5555)
    assert str(mapping.external_address) == lab.wan_address
    assert mapping.lifetime == 600
    # Debian's 2.3.1 writes PEER snat rules matching the reverse direction (see NatRule).
    assert lab.peer_rules() == [NatRule(
        chain="postrouting_miniupnpd", handle=lab.peer_rules()[0].handle, action="snat",
        protocol=TCP, to_address=lab.wan_address, to_port=mapping.external_port,
        source_address=lab.wan_peer_address, destination_address=CLIENT_ADDRESS,
        source_port=5555, destination_port=40050)]
    assert lab.dnat_rules() == []


def test_peer_delete_refused_by_miniupnpd_keeps_the_mapping(lab: Lab) -> None:
    """miniupnpd 2.3.1's nftables backend cannot find its own PEER rules again ("Unknown cmp")
    and answers a PEER delete with NO_RESOURCES. natdeck must raise a clean error carrying the
    gateway's error lifetime and keep the mapping usable (the delete can be retried)."""

    async def scenario() -> tuple[engine.PortMapping, ResultCodeError]:
        mapping = await engine.peer(lab.gateway_lan, 40051, Protocol.UDP,
                                    lab.wan_peer_address, 5556, lifetime=600)
        with pytest.raises(ResultCodeError) as refused:
            await mapping.delete()
        return mapping, refused.value

    mapping, error = run_in_client(lab, scenario)

    assert error.code == PcpResult.NO_RESOURCES
    assert error.error_lifetime == 30  # a short-lifetime error (RFC 6887 §7.4)
    assert error.lifetime_kind is ErrorLifetime.SHORT
    assert "PCP PEER udp 40051 to 11.0.0.254:5556" in str(error)
    assert not mapping.deleted
    assert len(lab.peer_rules()) == 1


@pytest.mark.parametrize("opcode", ["map", "peer"])
def test_third_party_request_is_refused_clearly(lab: Lab, opcode: str) -> None:
    # pcp_allow_thirdparty=no in the lab: miniupnpd treats THIRD_PARTY as an option it does
    # not support (RFC 6887 §13.1 allows UNSUPP_OPTION or NOT_AUTHORIZED here).
    async def request() -> engine.PortMapping:
        if opcode == "map":
            return await engine.map_port(lab.gateway_lan, 40060, Protocol.TCP,
                                         third_party="198.18.0.3")
        return await engine.peer(lab.gateway_lan, 40060, Protocol.TCP, lab.wan_peer_address,
                                 5557, third_party="198.18.0.3")

    async def scenario() -> ResultCodeError:
        with pytest.raises(ResultCodeError) as refused:
            await request()
        return refused.value

    error = run_in_client(lab, scenario)

    assert error.code == PcpResult.UNSUPP_OPTION
    assert error.name == "UNSUPP_OPTION"
    assert error.lifetime_kind is ErrorLifetime.LONG
    assert error.error_lifetime == 0
    assert "lasts" not in str(error)  # issue 17: not "the gateway says this lasts 0 s"
    assert lab.dnat_rules() == []
    assert lab.peer_rules() == []


# ---------------------------------------------------------------------------- a slow gateway


@pytest.mark.timeout(120)
def test_fifty_concurrent_natpmp_maps_on_a_slow_console_reach_it_once_each(lab: Lab) -> None:
    """Issue 15: miniupnpd logging to the real console takes 3-500 ms a request, growing with
    its table and stalling now and then; NAT-PMP's first timer is 250 ms (RFC 6886 §3.1).
    Fifty concurrent maps, then their deletes: each request reaches it once, plus the one
    external-address request."""
    lab.restart_gateway(console="slow")
    lab.reset_counters()  # after the start-up announcements

    async def scenario() -> tuple[int, int]:
        async with engine.GatewayClient(lab.gateway_lan, local_address=CLIENT_ADDRESS) as client:
            mappings = await asyncio.gather(*(
                client.map(Protocol.TCP, 42000 + n, lifetime=600, via="natpmp")
                for n in range(50)))
            await asyncio.gather(*(mapping.delete() for mapping in mappings))
            return len(mappings), client.channel.sent

    started = time.monotonic()
    done, sent = run_in_client(lab, scenario)
    took = time.monotonic() - started
    assert (done, sent) == (50, 101)
    assert lab.counters().requests_received == 101
    assert lab.dnat_rules() == []
    print(f"50 maps and deletes on a slow console: {took:.1f} s")


def test_an_add_whose_answers_are_lost_is_taken_back_and_its_rule_removed(lab: Lab) -> None:
    # The manager's add goes out, miniupnpd writes the DNAT rule, and every answer is
    # dropped on the way back: the add fails, and its take-back (the same request, lifetime
    # 0, same nonce) reaches miniupnpd, which removes the rule. Its answer is dropped too,
    # so the manager cannot know: close() counts the mapping as left, and the kernel's rules
    # are what is believed here.
    seen: dict[str, Any] = {}

    async def scenario() -> engine.ManagerClosed:
        manager = engine.MappingManager(lab.gateway_lan, via="pcp", lifetime=600, timeout=2.0,
                                        listen=False, probe_on_start=False)
        async with manager:
            lab.set_loss(100, direction="responses")
            with pytest.raises(GatewayTimeout):
                await manager.add(TCP, 40020)
            seen["mappings"] = dict(manager.mappings)
            closed = await manager.close(deadline=3.0)
        return closed

    closed = run_in_client(lab, scenario)
    lab.set_loss(0)

    assert seen["mappings"] == {}
    assert closed.left == (engine.MappingKey(TCP, 40020),)
    assert lab.dnat_rules() == []
    assert lab.miniupnpd_rule_count() == 0
