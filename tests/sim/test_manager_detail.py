"""What a ManagedMapping carries for the TUI's detail line (issue 17): the suggested external
port, the first grant, the last renewal and the gateway's last answer; and the words of the
events made from them (a timeout's hint only where it helps, a recovery named "recreate")."""

from __future__ import annotations

import asyncio

import pytest

from engine.codes import PcpResult
from engine.errors import GatewayTimeout, ResultCodeError
from engine.events import (
    AnnouncementsOff,
    Event,
    ExternalAddressChanged,
    GatewayUnreachable,
    MappingAdded,
    MappingFailed,
    MappingKey,
    MappingLost,
    MappingRenewalFailed,
    MappingRenewed,
    MappingsConfirming,
    MappingState,
)
from engine.manager import MappingManager
from engine.protocols import Protocol
from engine.simulator import GatewayConfig, SimulatedGateway
from tests.support.manager_rig import rig, run_fast_virtual

TCP = Protocol.TCP
HINT = "is it the right gateway"


def now() -> float:
    return asyncio.get_running_loop().time()


def test_suggested_port_first_grant_renewal_and_last_answer_are_kept() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120, port_range=(41000, 41010)),
                       lifetime=120) as r:
            view = await r.manager.add(TCP, 8080)
            assert view.suggested_external_port == 8080
            assert view.external_port is not None
            assert 41000 <= view.external_port <= 41010
            assert view.other_port() == 8080
            [added] = r.log.of(MappingAdded)
            assert (f"the gateway gave external port {view.external_port}, not the 8080 "
                    "suggested") in added.summary
            first = view.granted_at
            assert view.first_granted_at == first
            assert view.renewed_at is None
            answer = view.last_answer
            assert answer is not None
            assert (answer.via, answer.opcode, answer.request, answer.result) == (
                "pcp", "MAP", "map", "SUCCESS")
            assert (answer.external_port, answer.lifetime) == (view.external_port, 120)
            assert answer.describe().startswith("PCP MAP (map): SUCCESS, 120 s on 203.0.113.7:")
            [renewed] = await r.log.wait_for(MappingRenewed, timeout=80)
            assert view.first_granted_at == first
            assert view.renewed_at == view.granted_at
            assert view.granted_at is not None
            assert first is not None
            assert view.granted_at > first
            assert view.last_answer is not None
            assert view.last_answer.request == "renew"
            assert view.last_answer.at == pytest.approx(renewed.at)
            # A refusal is the gateway's answer too: its code, words and error lifetime.
            r.gateway.configure(force_pcp_result=PcpResult.NOT_AUTHORIZED)
            with pytest.raises(ResultCodeError):
                await r.manager.renew(view.key)
            answer = view.last_answer
            assert (answer.request, answer.code, answer.result, answer.error_lifetime) == (
                "renew", PcpResult.NOT_AUTHORIZED, "NOT_AUTHORIZED", 1800)
            assert not answer.granted
            assert "the gateway says this lasts 1800 s" in answer.describe()
            assert view.state is MappingState.FAILED
            r.gateway.configure(force_pcp_result=None)

    run_fast_virtual(scenario)


def test_no_external_port_suggests_the_internal_one_and_natpmp_names_its_opcode() -> None:
    async def scenario() -> None:
        async with rig(via="natpmp") as r:
            view = await r.manager.add(TCP, 9000)
            assert view.suggested_external_port == 9000
            assert view.other_port() is None
            assert view.last_answer is not None
            assert view.last_answer.opcode == "map TCP (opcode 2)"
            udp = await r.manager.add(Protocol.UDP, 9001, external_port=0)
            assert udp.suggested_external_port == 9001 or udp.suggested_external_port is None
            assert udp.last_answer is not None
            assert udp.last_answer.opcode == "map UDP (opcode 1)"
            gre = await r.manager.add(47, 0, via="pcp")
            assert gre.suggested_external_port is None  # no ports: nothing suggested

    run_fast_virtual(scenario)


def test_a_timeout_after_working_fine_does_not_ask_if_it_is_the_right_gateway() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(max_lifetime=120), lifetime=120, timeout=5) as r:
            view = await r.manager.add(TCP, 20000)
            granted = view.last_answer
            r.gateway.configure(silent=True)
            [failed, *_] = await r.log.wait_for(MappingRenewalFailed, timeout=80)
            assert isinstance(failed.error, GatewayTimeout)
            assert HINT in str(failed.error)  # the error itself is the client's
            assert HINT not in failed.summary
            assert "no answer from PCP gateway" in failed.summary
            assert HINT not in (view.reason or "")
            assert view.last_answer == granted  # no answer is not an answer
            await r.log.wait_for(MappingLost, timeout=200)
            [again, *_] = await r.log.wait_for(MappingFailed, timeout=60)
            assert HINT not in again.summary
            # A recovery is named for what it is in the error the user sees.
            assert "PCP recreate tcp 20000" in again.summary, again.summary
            assert view.state is MappingState.LOST

    run_fast_virtual(scenario)


def test_a_first_contact_that_never_answered_keeps_the_hint() -> None:
    async def scenario() -> None:
        async with rig(gateway=dict(silent=True), probe_on_start=False) as r:
            with pytest.raises(GatewayTimeout):
                await r.manager.add(TCP, 8081, timeout=3)
            [failed] = await r.log.wait_for(MappingFailed, timeout=0.1)
            assert not failed.gateway_answered
            assert HINT in failed.summary

    run_fast_virtual(scenario)


def test_announcements_off_and_a_non_public_address_are_events_in_full() -> None:
    """The gateway panel has a few rows (60x20): the event log has both notes in full."""

    async def scenario() -> None:
        import socket
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as owner:
            owner.bind(("127.0.0.1", 0))
            taken = owner.getsockname()[1]
            async with SimulatedGateway("127.0.0.1", 0, "100.64.1.2", GatewayConfig()) as gw:
                manager = MappingManager("127.0.0.1", gateway_port=gw.address[1],
                                         announce_host="127.0.0.1", multicast=False,
                                         announce_ports=(taken,))
                seen: list[Event] = []
                stream = manager.events()  # subscribed before start, as the TUI does

                async def follow() -> None:
                    async for event in stream:
                        seen.append(event)

                async with manager:
                    reader = asyncio.ensure_future(follow())
                    await manager.refresh_external_address()
                await reader
        [off] = [e for e in seen if isinstance(e, AnnouncementsOff)]
        assert off.reason == manager.status.listen_error
        assert off.summary.endswith("natdeck probes the gateway every 60 s instead")
        [changed] = [e for e in seen if isinstance(e, ExternalAddressChanged)]
        assert changed.warning is not None
        assert changed.warning == manager.status.warning
        assert changed.summary.endswith(f"Warning: {changed.warning}"), changed.summary
        assert "may not be reachable from the internet" in changed.summary

    run_fast_virtual(scenario)


def test_an_announcement_repeated_is_one_confirmation_line_not_ten() -> None:
    """RFC 6886 §3.2.1 repeats an announcement ten times: the confirmations coalesce, and
    so do the lines that say so (the demo's log showed six "confirming every mapping")."""

    async def scenario() -> None:
        async with rig(lifetime=7200) as r:
            for port in (20000, 20001, 20002):
                await r.manager.add(TCP, port)
            await asyncio.sleep(30)
            r.gateway.restart()
            await asyncio.sleep(150)
            r.gateway.change_external_address("198.51.100.9")
            await asyncio.sleep(150)
            confirming = r.log.of(MappingsConfirming)
            assert 1 <= len(confirming) <= 3, [e.summary for e in confirming]
            assert all(v.state is MappingState.ACTIVE for v in r.manager.mappings.values())

    run_fast_virtual(scenario)


def test_unreachable_after_working_fine_does_not_ask_if_it_is_the_right_gateway() -> None:
    async def scenario() -> None:
        async with rig(timeout=5) as r:
            await r.manager.add(TCP, 20000)
            r.gateway.configure(silent=True)
            with pytest.raises(GatewayTimeout):
                await r.manager.renew(MappingKey(TCP, 20000))
            [gone] = await r.log.wait_for(GatewayUnreachable, timeout=1)
            assert HINT not in gone.summary
            assert "no answer from PCP gateway" in gone.summary

    run_fast_virtual(scenario)
