"""``natdeck unmap`` against a real miniupnpd 2.3.1: what it says is what the gateway holds.

miniupnpd answers a NAT-PMP delete SUCCESS whatever it removed, and removes only the rules
NAT-PMP made: a PCP mapping (labelled with its nonce) stays. These tests compare each
``unmap`` outcome (deleted / not held / unconfirmed) with the kernel's DNAT rules, and check
that ``unmap`` deletes a mapping another natdeck process recorded the way the terminal UI's
manager records it (``StateFile.record(MappingRecord.from_mapping(...))``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine import Protocol

from .netlab import CLIENT_ADDRESS, CLIENT_IF, DnatRule, Lab
from .test_frontends_lab import json_lines, natdeck

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
#: A second address on the client's veth stands for another host on the LAN.
OTHER_HOST = "198.18.0.3"


def rule(external_port: int, internal_port: int, address: str = CLIENT_ADDRESS) -> DnatRule:
    return DnatRule(TCP, external_port, address, internal_port)


@pytest.fixture
def other_host(lab: Lab) -> Iterator[str]:
    lab.run_in_client(["ip", "addr", "add", f"{OTHER_HOST}/24", "dev", CLIENT_IF], check=True)
    try:
        yield OTHER_HOST
    finally:
        lab.run_in_client(["ip", "addr", "del", f"{OTHER_HOST}/24", "dev", CLIENT_IF])


def test_unmap_via_natpmp_of_a_pcp_mapping_deletes_it_with_the_stored_nonce(
        lab: Lab, tmp_path: Path) -> None:
    mapped = natdeck(lab, tmp_path, "map", "tcp", "41361", "--json")
    assert mapped.returncode == 0, mapped.stderr
    assert json_lines(mapped)[0]["via"] == "pcp"
    assert lab.dnat_rules() == [rule(41361, 41361)]

    # Before: "deleted", exit 0, and the rule stayed (a NAT-PMP delete spares PCP's rules).
    result = natdeck(lab, tmp_path, "unmap", "tcp", "41361", "--via", "natpmp", "--json")

    assert result.returncode == 0, result.stderr
    [obj] = json_lines(result)
    assert (obj["event"], obj["via"], obj["stored_nonce"]) == ("deleted", "pcp", True)
    assert "a NAT-PMP delete cannot remove it" in result.stderr
    assert lab.dnat_rules() == []


def test_unmap_via_natpmp_without_a_record_says_what_the_gateway_holds(
        lab: Lab, tmp_path: Path) -> None:
    mapped = natdeck(lab, tmp_path / "mapper", "map", "tcp", "41362", "--json")
    assert mapped.returncode == 0, mapped.stderr
    assert lab.dnat_rules() == [rule(41362, 41362)]

    # Another state directory: no record, so the NAT-PMP delete alone would leave the PCP
    # rule. The re-map that checks it takes the port over (miniupnpd replaces this host's own
    # rule for the same internal port) and its delete removes it: the port is really free.
    result = natdeck(lab, tmp_path / "empty", "unmap", "tcp", "41362", "--via", "natpmp",
                     "--json")

    assert result.returncode == 0, result.stderr
    [obj] = json_lines(result)
    assert (obj["event"], obj["via"]) == ("not_held", "natpmp")
    assert lab.dnat_rules() == []


def test_unmap_when_another_host_holds_the_port_is_unconfirmed(
        lab: Lab, tmp_path: Path, other_host: str) -> None:
    theirs = natdeck(lab, tmp_path / "other", "map", "tcp", "41363", "--via", "natpmp",
                     "--local", other_host, "--json")
    assert theirs.returncode == 0, theirs.stderr
    assert lab.dnat_rules() == [rule(41363, 41363, other_host)]

    result = natdeck(lab, tmp_path / "ours", "unmap", "tcp", "41363", "--via", "natpmp",
                     "--json")

    assert result.returncode == 5, (result.stdout, result.stderr)
    [obj] = json_lines(result)
    assert obj["event"] == "unconfirmed"
    assert "external port 41363 is still mapped" in obj["reason"]
    assert len(result.stderr.strip().splitlines()) == 1
    # The other host's mapping is untouched, and the check left nothing of its own.
    assert lab.dnat_rules() == [rule(41363, 41363, other_host)]


RECORD_LIKE_THE_MANAGER = """
import asyncio, json, os, sys
from engine.client import GatewayClient
from engine.statefile import MappingRecord, StateFile

async def main():
    async with GatewayClient(sys.argv[1]) as client:
        mapping = await client.map(6, 41364, lifetime=600, via="pcp", timeout=10)
    # As the TUI's MappingManager records a mapping: this process's pid, gone once it exits.
    StateFile(sys.argv[2]).record(MappingRecord.from_mapping(mapping, pid=os.getpid()))
    print(json.dumps({"external_port": mapping.external_port, "nonce": mapping.nonce.hex()}))

asyncio.run(main())
"""


def test_unmap_deletes_a_mapping_another_process_recorded(lab: Lab, tmp_path: Path) -> None:
    made = lab.run_python_in_client(RECORD_LIKE_THE_MANAGER, [lab.gateway_lan, str(tmp_path)])
    assert lab.dnat_rules() == [rule(made["external_port"], 41364)]

    result = natdeck(lab, tmp_path, "unmap", "tcp", "41364", "--json")

    assert result.returncode == 0, result.stderr
    [obj] = json_lines(result)
    assert (obj["event"], obj["via"], obj["stored_nonce"]) == ("deleted", "pcp", True)
    assert lab.dnat_rules() == []
