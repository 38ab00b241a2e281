"""The ``natdeck`` CLI and the Textual TUI against a real miniupnpd 2.3.1.

The CLI runs as a real process in the client namespace (``python -m tui.cli``), its state file
in a temporary directory (``NATDECK_STATE_DIR``). The TUI runs headless (``App.run_test``) on an
event loop inside the client namespace, pressing the keys a user would. Both are checked against
the rules miniupnpd really holds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from engine import MappingKey, MappingManager, MappingState, Protocol
from tests.support.pilot import app_until
from tui.app import NatDeckApp
from tui.backend import using
from tui.map_request import MapRequest
from tui.screens import MapDialog

from .clients import Sniffer, age_gateway, natdeck, run_in_client
from .netlab import CLIENT_ADDRESS, DnatRule, Lab

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)
ANNOUNCE_DELAY = 5.0  # RFC 6887 §14.1.3


def rule(protocol: int, external_port: int, internal_port: int) -> DnatRule:
    return DnatRule(protocol, external_port, CLIENT_ADDRESS, internal_port)


def json_lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- CLI


def test_cli_map_then_unmap_in_another_process_with_the_stored_nonce(
        lab: Lab, tmp_path: Path) -> None:
    sniffer = Sniffer(lab)

    mapped = natdeck(lab, tmp_path, "map", "tcp", "40500", "--lifetime", "600", "--json")

    assert mapped.returncode == 0, mapped.stderr
    [line] = json_lines(mapped)
    assert line["event"] == "mapped"
    assert (line["protocol"], line["internal_port"], line["via"]) == ("tcp", 40500, "pcp")
    assert line["external_address"] == lab.wan_address
    assert lab.dnat_rules() == [rule(TCP, line["external_port"], 40500)]

    unmapped = natdeck(lab, tmp_path, "unmap", "tcp", "40500", "--json")

    assert unmapped.returncode == 0, unmapped.stderr
    [gone] = json_lines(unmapped)
    assert gone["event"] == "deleted"
    assert gone["stored_nonce"] is True
    assert lab.dnat_rules() == []
    # The unmap process sent the nonce the map process made (checked on the wire: Debian's
    # miniupnpd would also have accepted another one).
    maps = [r for r in sniffer.requests() if r["version"] == 2 and r["opcode"] == 1]
    assert [r["lifetime"] for r in maps] == [600, 0]
    assert maps[0]["nonce"] == maps[1]["nonce"]


def test_cli_probe_reports_both_protocols(lab: Lab, tmp_path: Path) -> None:
    result = natdeck(lab, tmp_path, "probe", "--json")

    assert result.returncode == 0, result.stderr
    [probe] = json_lines(result)
    assert probe["reachable"] is True
    assert (probe["pcp"], probe["natpmp"], probe["via"]) == (True, True, "pcp")
    assert probe["external_address"] == lab.wan_address
    assert probe["local_address"] == CLIENT_ADDRESS
    assert lab.dnat_rules() == []


def test_cli_refusal_and_silence_have_their_exit_status(lab: Lab, tmp_path: Path) -> None:
    refused = natdeck(lab, tmp_path, "map", "tcp", "80", "--via", "pcp")

    assert refused.returncode == 1
    assert "NOT_AUTHORIZED" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1  # one line, no traceback

    lab.stop_gateway()
    started = time.monotonic()
    silent = natdeck(lab, tmp_path, "map", "udp", "40501", "--via", "natpmp", "--timeout", "1")

    assert silent.returncode == 3
    # A stopped miniupnpd leaves nothing on 5351: ICMP port unreachable, known at once.
    assert "ICMP port unreachable" in silent.stderr
    assert time.monotonic() - started < 6  # Python starting up, not the timeout


def test_cli_map_hold_with_a_state_file_it_cannot_write_maps_at_once_and_deletes(
        lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file where the state directory should be: the record cannot be written. The mapping
    # is said at once (not after the request timeout, waiting for a retry), with a warning;
    # the gateway's rules are what natdeck says, and SIGINT still deletes it.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("NATDECK_STATE_DIR", str(blocker / "state"))
    started = time.monotonic()
    holder = lab.spawn_python_in_client(
        "import sys; from tui.cli import main; sys.exit(main(sys.argv[1:]))",
        ["map", "udp", "40503", "--hold", "--json", "--gateway", lab.gateway_lan])
    mapped = holder.receive(timeout=15)
    assert mapped["event"] == "mapped"
    assert time.monotonic() - started < 10  # the request timeout is 30 s
    assert lab.dnat_rules() == [rule(UDP, mapped["external_port"], 40503)]

    os.kill(holder.pid, signal.SIGINT)

    assert holder.receive(timeout=10)["event"] == "deleted"
    assert holder.close(timeout=10) == 0
    assert "could not write the state file" in holder.stderr
    assert lab.dnat_rules() == []


def test_cli_map_hold_recovers_after_a_restart_and_deletes_on_sigint(
        lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    age_gateway(lab, 3)  # so that the restart's epoch 0 is recognisably a reboot
    monkeypatch.setenv("NATDECK_STATE_DIR", str(tmp_path))
    holder = lab.spawn_python_in_client(
        "import sys; from tui.cli import main; sys.exit(main(sys.argv[1:]))",
        ["map", "udp", "40502", "--hold", "--json", "--gateway", lab.gateway_lan])
    mapped = holder.receive(timeout=15)
    assert mapped["event"] == "mapped"
    assert lab.dnat_rules() == [rule(UDP, mapped["external_port"], 40502)]

    lab.restart_gateway()

    events = holder.receive_until(lambda m: m["event"] == "recovered",
                                  timeout=ANNOUNCE_DELAY + 3)
    assert "gateway_restarted" in [m["event"] for m in events]
    assert events[-1]["external_port"] == mapped["external_port"]
    assert lab.dnat_rules() == [rule(UDP, mapped["external_port"], 40502)]

    os.kill(holder.pid, signal.SIGINT)

    assert holder.receive(timeout=10)["event"] == "deleted"
    assert holder.close(timeout=10) == 0
    assert lab.dnat_rules() == []


# ---------------------------------------------------------------------------- TUI


def test_tui_maps_with_m_unmaps_with_d_and_deletes_on_q(lab: Lab) -> None:
    tcp_key = MappingKey(TCP, 40600)
    udp_key = MappingKey(UDP, 40601)
    seen: dict[str, Any] = {}

    async def scenario() -> NatDeckApp:
        manager = MappingManager(lab.gateway_lan, timeout=10.0)
        app = NatDeckApp(engine=using(manager), initial_maps=[MapRequest(Protocol.UDP, 40601)])

        def active(*keys: MappingKey) -> bool:
            return all(k in manager.mappings
                       and manager.mappings[k].state is MappingState.ACTIVE for k in keys)

        async with app.run_test(size=(100, 40)) as pilot:
            await app_until(pilot, lambda: app.engine_started and active(udp_key),
                            "the initial mapping")
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, MapDialog)
            await pilot.press(*"40600", "tab", *"41600", "enter")
            await app_until(pilot, lambda: active(tcp_key), "the m mapping")
            seen["both"] = set(lab.dnat_rules())
            seen["panel"] = app.main.panel.plain
            await app_until(pilot, lambda: app.main.table.shown_keys == [udp_key, tcp_key],
                            "both rows")
            await pilot.press("d")  # the selected row: the first one
            await app_until(pilot, lambda: app.main.table.shown_keys == [tcp_key], "the row to go")
            seen["after_d"] = set(lab.dnat_rules())
            await pilot.press("q")
            await app_until(pilot, lambda: app.return_code is not None or not app.is_running,
                            "the app to quit")
        return app

    app = run_in_client(lab, scenario)

    assert seen["both"] == {rule(UDP, 40601, 40601), rule(TCP, 41600, 40600)}
    assert f"External {lab.wan_address}" in seen["panel"]
    assert "PCP yes, NAT-PMP yes" in seen["panel"]
    assert seen["after_d"] == {rule(TCP, 41600, 40600)}
    assert app.return_code == 0
    assert lab.dnat_rules() == []


def test_tui_on_a_upnp_only_gateway_maps_shows_and_unmaps_via_upnp(lab: Lab) -> None:
    # Issue 13's acceptance: on a UPnP-only miniupnpd (nothing on 5351) the TUI maps in auto
    # via UPnP IGD, shows it (the panel names the IGD; Via says UPnP) and unmaps it.
    from .test_upnp_auto_lab import UPNP_ONLY, start

    start(lab, UPNP_ONLY)
    key = MappingKey(TCP, 40700)
    seen: dict[str, Any] = {}

    async def scenario() -> NatDeckApp:
        manager = MappingManager(lab.gateway_lan, timeout=10.0)
        app = NatDeckApp(engine=using(manager))

        def active() -> bool:
            return key in manager.mappings and manager.mappings[key].state is MappingState.ACTIVE

        async with app.run_test(size=(100, 40)) as pilot:
            await app_until(pilot, lambda: app.engine_started and "IGD " in app.main.panel.plain,
                            "the probe to find the IGD")
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, MapDialog)
            await pilot.press(*"40700", "enter")   # via auto
            await app_until(pilot, active, "the m mapping")
            await app_until(pilot, lambda: app.main.table.shown_keys == [key], "its row")
            await app_until(pilot,
                            lambda: "UPnP" in [str(c) for c in app.main.table.get_row(str(key))],
                            "Via UPnP in its row")
            seen["rules"] = set(lab.dnat_rules())
            seen["via"] = manager.mappings[key].via
            seen["row"] = [str(cell) for cell in app.main.table.get_row(str(key))]
            seen["panel"] = app.main.panel.plain
            await pilot.press("d")
            await app_until(pilot, lambda: app.main.table.shown_keys == [], "the row to go")
            seen["after_d"] = set(lab.dnat_rules())
            await pilot.press("q")
            await app_until(pilot, lambda: app.return_code is not None or not app.is_running,
                        "the app to quit")
        return app

    app = run_in_client(lab, scenario)

    assert seen["rules"] == {rule(TCP, 40700, 40700)}
    assert seen["via"] == "upnp"
    assert "UPnP" in seen["row"]
    assert "PCP no, NAT-PMP no, UPnP yes" in seen["panel"]
    assert "IGDv2" in seen["panel"]
    assert f"External {lab.wan_address}" in seen["panel"]
    assert seen["after_d"] == set()
    assert app.return_code == 0
    assert lab.dnat_rules() == []
