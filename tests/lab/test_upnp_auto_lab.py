"""``natdeck`` on a real miniupnpd with UPnP IGD (issue 13's acceptance): ``via="auto"`` = PCP,
then NAT-PMP, then UPnP, each as fast as the gateway allows.

On a UPnP-only miniupnpd (``enable_natpmp=no``: nothing on 5351, the kernel answers ICMP port
unreachable) ``natdeck map`` maps via UPnP at once and the DNAT rule appears; ``natdeck unmap``
from another process removes it through the state file's record; on a gateway with all three
auto still picks PCP; IGDv1 works; another host's port is the "port in use" error. Every
``natdeck`` runs as a fresh process in the client namespace (a cold start: interpreter, imports,
SSDP search, description).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine import Protocol

from .netlab import CLIENT_ADDRESS, DnatRule, GatewayConfig, Lab, upnp_lease
from .test_frontends_lab import json_lines, natdeck
from .test_upnp_lab import upnpc_map_for_another_host

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UUID = "4e617464-6563-6b00-0000-0000000000ab"
UPNP_ONLY = GatewayConfig(enable_upnp=True, enable_natpmp=False, uuid=UUID, http_port=5000)
ALL_THREE = GatewayConfig(enable_upnp=True, uuid=UUID, http_port=5000)


def start(lab: Lab, config: GatewayConfig, **changes: Any) -> Lab:
    """Restart miniupnpd with ``config`` (and ``changes``); the next test's reset restores it."""
    lab.restart_gateway(config=GatewayConfig(**{**config.__dict__, **changes}))
    return lab


def rule(external_port: int, internal_port: int) -> DnatRule:
    return DnatRule(TCP, external_port, CLIENT_ADDRESS, internal_port)


def test_auto_on_a_upnp_only_gateway_maps_via_upnp_at_once_and_unmap_elsewhere_removes_it(
        lab: Lab, tmp_path: Path) -> None:
    start(lab, UPNP_ONLY)
    started = time.monotonic()
    mapped = natdeck(lab, tmp_path, "map", "tcp", "42000", "--lifetime", "600", "--json")
    elapsed = time.monotonic() - started

    assert mapped.returncode == 0, mapped.stderr
    [line] = json_lines(mapped)
    assert (line["event"], line["via"], line["external_port"]) == ("mapped", "upnp", 42000)
    assert line["external_address"] == lab.wan_address
    assert upnp_lease(line["lifetime"], 600)
    assert lab.dnat_rules() == [rule(42000, 42000)]
    # A fresh process: interpreter, imports (the UPnP stack too), ICMP from 5351, SSDP,
    # description, three SOAP calls. Measured ~0.4 s on an idle machine.
    assert elapsed < 1.5, f"natdeck map took {elapsed:.2f} s"

    # Another process, the same state directory: the record says UPnP and which port.
    removed = natdeck(lab, tmp_path, "unmap", "tcp", "42000", "--json")
    assert removed.returncode == 0, removed.stderr
    [line] = json_lines(removed)
    assert (line["event"], line["via"], line["external_port"]) == ("deleted", "upnp", 42000)
    assert lab.dnat_rules() == []


def test_auto_on_a_router_that_drops_5351_maps_via_upnp_in_a_second(
        lab: Lab, tmp_path: Path) -> None:
    # Its firewall drops what reaches 5351 (no ICMP refusal): PCP is silent. Its IGD answers
    # the search natdeck sends once PCP has been silent 0.1 s, and UPnP is asked after a
    # second, not after PCP's 9.5 s and NAT-PMP's share (19.3 s before engine.igd_scout).
    start(lab, ALL_THREE)
    lab.set_loss(100)
    lab.reset_counters()
    started = time.monotonic()
    mapped = natdeck(lab, tmp_path, "map", "tcp", "42007", "--json")
    elapsed = time.monotonic() - started
    assert mapped.returncode == 0, mapped.stderr
    [line] = json_lines(mapped)
    assert (line["via"], line["external_port"]) == ("upnp", 42007)
    assert lab.dnat_rules() == [rule(42007, 42007)]
    assert 1.0 < elapsed < 3.0, f"natdeck map took {elapsed:.2f} s"
    counters = lab.counters()
    assert counters.requests_dropped == 1   # one PCP try; NAT-PMP was not asked
    removed = natdeck(lab, tmp_path, "unmap", "tcp", "42007", "--json")
    assert removed.returncode == 0, removed.stderr
    assert lab.dnat_rules() == []


def test_auto_on_a_gateway_that_speaks_all_three_picks_pcp(lab: Lab, tmp_path: Path) -> None:
    start(lab, ALL_THREE)
    mapped = natdeck(lab, tmp_path, "map", "tcp", "42001", "--json")
    assert mapped.returncode == 0, mapped.stderr
    assert json_lines(mapped)[0]["via"] == "pcp"
    assert lab.dnat_rules() == [rule(42001, 42001)]
    upnp = natdeck(lab, tmp_path, "map", "tcp", "42002", "--via", "upnp", "--json")
    assert upnp.returncode == 0, upnp.stderr
    assert json_lines(upnp)[0]["via"] == "upnp"
    assert sorted(r.external_port for r in lab.dnat_rules()) == [42001, 42002]
    for port in ("42001", "42002"):
        assert natdeck(lab, tmp_path, "unmap", "tcp", port).returncode == 0
    assert lab.dnat_rules() == []


def test_probe_reports_all_three_and_the_igd(lab: Lab, tmp_path: Path) -> None:
    start(lab, ALL_THREE)
    probed = natdeck(lab, tmp_path, "probe", "--json")
    assert probed.returncode == 0, probed.stderr
    [line] = json_lines(probed)
    assert (line["pcp"], line["natpmp"], line["upnp"], line["via"]) == (True, True, True, "pcp")
    assert line["igd"]["igd_version"] == 2
    assert line["igd"]["service_type"].endswith("WANIPConnection:2")


def test_igdv1_upnp_only(lab: Lab, tmp_path: Path) -> None:
    start(lab, UPNP_ONLY, force_igd_desc_v1=True)
    mapped = natdeck(lab, tmp_path, "map", "udp", "42003", "--json")
    assert mapped.returncode == 0, mapped.stderr
    [line] = json_lines(mapped)
    assert (line["via"], line["external_port"]) == ("upnp", 42003)
    assert [(r.protocol, r.external_port) for r in lab.dnat_rules()] == [(17, 42003)]
    assert natdeck(lab, tmp_path, "unmap", "udp", "42003").returncode == 0
    assert lab.dnat_rules() == []


def test_unmap_without_a_record_on_a_upnp_only_gateway_removes_only_our_rule(
        lab: Lab, tmp_path: Path) -> None:
    # A state directory that knows nothing (another machine's, a lost one): PCP meets ICMP
    # port unreachable, UPnP IGD deletes our entry and leaves another host's alone, and the
    # kernel's rules are what natdeck reports.
    start(lab, UPNP_ONLY)
    mapped = natdeck(lab, tmp_path / "made", "map", "tcp", "42008", "--json")
    assert mapped.returncode == 0, mapped.stderr
    upnpc_map_for_another_host(lab, 42009)
    theirs = [r for r in lab.dnat_rules() if r.external_port == 42009]
    assert len(theirs) == 1
    assert rule(42008, 42008) in lab.dnat_rules()
    removed = natdeck(lab, tmp_path / "unknown", "unmap", "tcp", "42008", "--json")
    assert removed.returncode == 0, removed.stderr
    [line] = json_lines(removed)
    assert (line["event"], line["via"], line["external_port"]) == ("not_held", "upnp", 42008)
    assert lab.dnat_rules() == theirs
    left = natdeck(lab, tmp_path / "unknown", "unmap", "tcp", "42009", "--json")
    assert left.returncode == 0, left.stderr
    assert lab.dnat_rules() == theirs  # another host's entry on that port: not ours to delete


def test_another_hosts_port_is_the_port_in_use_error(lab: Lab, tmp_path: Path) -> None:
    start(lab, UPNP_ONLY, force_igd_desc_v1=True)   # no AddAnyPortMapping: no other port
    upnpc_map_for_another_host(lab, 42004)
    held = lab.dnat_rules()
    mapped = natdeck(lab, tmp_path, "map", "tcp", "42004", "--json")
    assert mapped.returncode == 1
    assert "ConflictInMappingEntry (718)" in mapped.stderr
    assert "try another port" in mapped.stderr
    assert lab.dnat_rules() == held


def test_another_hosts_port_gets_another_port_on_igdv2(lab: Lab, tmp_path: Path) -> None:
    start(lab, UPNP_ONLY)
    upnpc_map_for_another_host(lab, 42005)
    mapped = natdeck(lab, tmp_path, "map", "tcp", "42005", "--json")
    assert mapped.returncode == 0, mapped.stderr
    [line] = json_lines(mapped)
    assert line["via"] == "upnp"
    assert line["external_port"] != 42005   # AddAnyPortMapping chose a free one, as PCP would
    assert rule(line["external_port"], 42005) in lab.dnat_rules()


def test_map_hold_keeps_a_upnp_mapping_past_its_lease(lab: Lab, tmp_path: Path) -> None:
    # natdeck map --hold runs a MappingManager: it re-adds the port before each 3 s lease ends
    # (miniupnpd keeps the UPnP lease asked), and deletes it when interrupted.
    start(lab, UPNP_ONLY)
    env = {**lab.python_env(), "NATDECK_STATE_DIR": str(tmp_path)}
    held = lab.run_in(lab.client_ns, [
        "timeout", "-s", "INT", "7", sys.executable, "-m", "tui.cli", "map", "tcp", "42006",
        "--hold", "--no-listen", "--lifetime", "3", "--json", "--gateway", lab.gateway_lan],
        timeout=30.0, env=env)
    events = [line["event"] for line in json_lines(held)]
    assert events[0] == "mapped", held.stderr
    assert events.count("renewed") >= 2, events
    assert events[-1] == "deleted", held.stderr
    assert {line["via"] for line in json_lines(held)} == {"upnp"}
    assert lab.dnat_rules() == []
