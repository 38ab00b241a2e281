"""``natdeck`` against a simulated UPnP IGD: ``map`` in auto picks UPnP on a UPnP-only router,
``unmap`` from another process removes it through the state file's record, ``probe`` reports
all three protocols and the IGD's name.

The IGD is searched by unicast on its own loopback port (``--ssdp-port``); on a UPnP-only
router nothing listens on the gateway port (a closed loopback port: ICMP port unreachable).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine.simulator import SimulatedGateway
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from engine.statefile import StateFile
from tests.support.loopback import REPO_ROOT, free_udp_port, python_env

from .conftest import run_process


class Igd:
    """A simulated IGD and the CLI arguments that point at it."""

    def __init__(self, igd: SimulatedIgd, gateway_port: int) -> None:
        self.igd = igd
        self.gateway_port = gateway_port

    @property
    def target(self) -> list[str]:
        return ["--gateway", "127.0.0.1", "--gateway-port", str(self.gateway_port),
                "--ssdp-port", str(self.igd.ssdp_port), "--local", "127.0.0.1"]

    def ports(self) -> set[tuple[int, int]]:
        return {(m.protocol, m.external_port) for m in self.igd.mappings()}


@pytest.fixture
async def make_igd() -> AsyncIterator[Any]:
    """``await make_igd(config, shared=False)``: a UPnP-only IGD, or one over a simulated
    PCP/NAT-PMP gateway's table (``shared``)."""
    started: list[Any] = []

    async def make(config: IgdConfig | None = None, *, shared: bool = False) -> Igd:
        gateway = None
        if shared:
            gateway = SimulatedGateway("127.0.0.1", 0)
            await gateway.start()
            started.append(gateway)
        igd = SimulatedIgd("127.0.0.1", config=config, gateway=gateway)
        await igd.start()
        started.append(igd)
        return Igd(igd, gateway.address[1] if gateway else free_udp_port())

    yield make
    for each in reversed(started):
        await each.close()


async def test_map_on_a_upnp_only_router_maps_via_upnp_and_unmap_elsewhere_removes_it(
        make_igd: Any, run: Any, state_dir: Path) -> None:
    igd = await make_igd()
    started = time.monotonic()
    mapped = await run("map", "tcp", "8080", "--json", *igd.target)
    elapsed = time.monotonic() - started
    assert mapped.code == 0, mapped.err
    [obj] = mapped.objects
    assert (obj["event"], obj["via"], obj["external_port"], obj["epoch"],
            obj["permanent"]) == ("mapped", "upnp", 8080, None, False)
    assert elapsed < 1.0
    assert igd.ports() == {(6, 8080)}
    [record] = StateFile(state_dir).load().records
    assert (record.via, record.external_port, record.nonce) == ("upnp", 8080, None)

    # Another process: the state file's record says UPnP, and which external port.
    removed = await run_process("unmap", "tcp", "8080", "--json", *igd.target)
    assert removed.code == 0, removed.err
    [obj] = removed.objects
    assert (obj["event"], obj["via"], obj["external_port"]) == ("deleted", "upnp", 8080)
    assert igd.ports() == set()
    assert StateFile(state_dir).load().records == []


async def test_via_upnp_on_a_gateway_that_speaks_all_three(make_igd: Any, run: Any) -> None:
    igd = await make_igd(shared=True)
    mapped = await run("map", "udp", "5000", "--via", "upnp", "--json", *igd.target)
    assert mapped.code == 0, mapped.err
    assert mapped.objects[0]["via"] == "upnp"
    assert "via UPnP" in (await run("map", "udp", "5000", "--via", "upnp",
                                    *igd.target)).out   # again: renewed in place
    auto = await run("map", "tcp", "5001", "--json", *igd.target)
    assert auto.objects[0]["via"] == "pcp"
    assert igd.igd.action_log.count("AddAnyPortMapping") == 2


async def test_permanent_only_router_is_recorded_permanent(make_igd: Any, run: Any,
                                                         state_dir: Path) -> None:
    igd = await make_igd(IgdConfig(igd_version=1, permanent_only=True))
    mapped = await run("map", "tcp", "8080", *igd.target)
    assert mapped.code == 0, mapped.err
    assert "permanently via UPnP" in mapped.out
    [record] = StateFile(state_dir).load().records
    assert record.permanent
    removed = await run("unmap", "tcp", "8080", *igd.target)
    assert removed.code == 0, removed.err
    assert igd.ports() == set()


async def test_port_in_use_on_an_igdv1_router(make_igd: Any, run: Any, state_dir: Path,
                                              tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    igd = await make_igd(IgdConfig(igd_version=1, secure_mode=False))
    # Another host (127.0.0.2), with a state file of its own.
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path / "other-host"))
    other = await run("map", "tcp", "8080", "--gateway", "127.0.0.1", "--gateway-port",
                      str(igd.gateway_port), "--ssdp-port", str(igd.igd.ssdp_port),
                      "--local", "127.0.0.2")
    assert other.code == 0, other.err
    monkeypatch.setenv("NATDECK_STATE_DIR", str(state_dir))
    mine = await run("map", "tcp", "8080", *igd.target)
    assert mine.code == 1
    assert "ConflictInMappingEntry (718)" in mine.err
    assert "try another port" in mine.err


async def test_probe_reports_all_three_and_the_igds_name(make_igd: Any, run: Any) -> None:
    igd = await make_igd(shared=True)
    probed = await run("probe", "--json", *igd.target)
    assert probed.code == 0, probed.err
    [obj] = probed.objects
    assert (obj["pcp"], obj["natpmp"], obj["upnp"], obj["via"]) == (True, True, True, "pcp")
    assert obj["igd"]["friendly_name"] == "natdeck simulated router"
    assert obj["igd"]["igd_version"] == 2
    text = await run("probe", *igd.target)
    assert "UPnP IGD          yes: natdeck simulated router (natdeck natdeck simulated IGD " \
           "2.3.1, IGDv2)" in text.out


async def test_probe_of_a_upnp_only_router(make_igd: Any, run: Any) -> None:
    igd = await make_igd()
    probed = await run("probe", "--json", *igd.target)
    assert probed.code == 0, probed.err
    [obj] = probed.objects
    assert (obj["pcp"], obj["natpmp"], obj["upnp"], obj["via"]) == (False, False, True, "upnp")
    assert obj["external_address"] == "203.0.113.7"


@pytest.mark.parametrize(("argv", "said"), [
    (["map", "gre", "0", "--via", "upnp"], "UPnP IGD"),
    # Port 0 is no mapping in any protocol: the one rule says so, whatever the via.
    (["map", "tcp", "0", "--via", "upnp"], "internal port must be 1-65535"),
    (["unmap", "tcp", "--all", "--via", "upnp"], "UPnP IGD"),
])
async def test_what_upnp_cannot_carry_is_a_usage_error(make_igd: Any, run: Any,
                                                       argv: list[str], said: str) -> None:
    igd = await make_igd()
    result = await run(*argv, *igd.target)
    assert result.code == 2
    assert said in result.err
    assert igd.igd.searches == 0


def test_the_json_of_a_pcp_mapping_keeps_its_epoch_and_adds_permanent() -> None:
    from ipaddress import ip_address

    from tui.cli.output import mapping_fields, mapping_text

    fields = mapping_fields("mapped", protocol=6, internal_port=80, external_address=None,
                            external_port=80, lifetime=60, via="pcp",
                            gateway=ip_address("192.0.2.1"), gateway_port=5351,
                            local_address=None, epoch=7)
    assert (fields["epoch"], fields["permanent"]) == (7, False)
    assert json.loads(json.dumps(fields)) == fields
    assert mapping_text("mapped", fields).endswith("for 60 s via PCP (gateway 192.0.2.1, epoch 7)")


async def test_the_simulator_process_serves_upnp_only(run: Any) -> None:
    # ``python -m engine.simulator --upnp-only``: what benches and people start by hand.
    import asyncio
    import sys


    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.simulator", "--port", "0", "--upnp-only", cwd=REPO_ROOT,
        env=python_env(), stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        line = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert (line["pcp"], line["natpmp"], line["upnp"]) == (False, False, True)
        target = ["--gateway", "127.0.0.1", "--gateway-port", str(line["port"]),
                  "--ssdp-port", str(line["ssdp_port"]), "--local", "127.0.0.1"]
        mapped = await run("map", "tcp", "8080", "--json", *target)
        assert mapped.code == 0, mapped.err
        assert mapped.objects[0]["via"] == "upnp"
        removed = await run("unmap", "tcp", "8080", *target)
        assert removed.code == 0, removed.err
    finally:
        process.terminate()
        await process.wait()


async def test_map_hold_keeps_a_upnp_mapping_past_its_lease_then_deletes_it(
        make_igd: Any, run: Any) -> None:
    import asyncio

    igd = await make_igd(IgdConfig(max_lease=2))
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(3.5, stop.set)
    held = await run("map", "tcp", "8080", "--hold", "--no-listen", "--lifetime", "2", "--json",
                     *igd.target, stop=stop)
    assert held.code == 0, held.err
    events = [obj["event"] for obj in held.objects]
    assert events[0] == "mapped"
    assert events.count("renewed") >= 2     # re-added before each 2 s lease ended
    assert events[-1] == "deleted"
    assert {obj["via"] for obj in held.objects} == {"upnp"}
    assert igd.ports() == set()


async def test_a_killed_hold_of_a_permanent_lease_is_recorded_and_unmap_elsewhere_removes_it(
        make_igd: Any, state_dir: Path) -> None:
    # The manager of ``map --hold`` writes the record itself: permanent (a lease without end
    # never expires from the state file) and naming the holding process.
    import asyncio
    import sys


    igd = await make_igd(IgdConfig(igd_version=1, permanent_only=True))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", "map", "tcp", "8080", "--hold", "--no-listen",
        "--json", *igd.target, cwd=REPO_ROOT, env=python_env(), stdout=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        mapped = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
        assert (mapped["event"], mapped["via"], mapped["permanent"]) == ("mapped", "upnp", True)
        [record] = StateFile(state_dir).load().records
        assert (record.via, record.permanent, record.pid) == ("upnp", True, process.pid)
        process.kill()   # a holder that cannot delete: the gateway keeps it without end
        await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert igd.ports() == {(6, 8080)}
    removed = await run_process("unmap", "tcp", "8080", "--json", *igd.target)
    assert removed.code == 0, removed.err
    assert json.loads(removed.out)["event"] == "deleted"
    assert igd.ports() == set()
    assert StateFile(state_dir).load().records == []


async def test_unmap_with_another_external_port_than_the_record_is_refused(
        make_igd: Any, run: Any, state_dir: Path) -> None:
    # An IGD answers the delete of a port it has no entry at as success: before, unmap said
    # "deleted", dropped the record and left the recorded mapping open.
    igd = await make_igd()
    assert (await run("map", "tcp", "8080", *igd.target)).code == 0
    refused = await run("unmap", "tcp", "8080", "--external-port", "9999", *igd.target)
    assert refused.code == 2
    assert refused.out == ""
    [line] = refused.err_lines
    assert "with external port 8080, not 9999" in line
    assert "DeletePortMapping" not in igd.igd.action_log  # nothing was sent
    assert igd.ports() == {(6, 8080)}
    assert StateFile(state_dir).load().records != []
    # The recorded port, given or not, deletes it.
    deleted = await run("unmap", "tcp", "8080", "--external-port", "8080", *igd.target)
    assert deleted.code == 0, deleted.err
    assert igd.ports() == set()
    assert StateFile(state_dir).load().records == []
