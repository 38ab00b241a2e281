"""natdeck next to other clients of the same miniupnpd: natpmpc, and natdeck in another process.

natpmpc (libnatpmp's client, Debian package ``natpmp-utils``) runs in the client namespace like
natdeck, so the gateway sees both as 198.18.0.2. Rules are always checked in the gateway's
nftables (``lab.dnat_rules()``); what went over the wire is checked with a sniffer in the
gateway namespace where a client's own word is not proof enough (nonces).
"""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest

import engine
from engine import Protocol, Via
from engine.statefile import StateFile

from .clients import ONESHOT, Sniffer, run_in_client
from .netlab import CLIENT_ADDRESS, DnatRule, Lab

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)


def natpmpc_map(lab: Lab, public: int, private: int, protocol: str, lifetime: int) -> int:
    """Map with natpmpc in the client namespace; return the public port it reports."""
    output = lab.run_in_client(["natpmpc", "-g", lab.gateway_lan, "-a", str(public),
                                str(private), protocol, str(lifetime)],
                               timeout=20, check=True).stdout
    found = re.search(rf"Mapped public port (\d+) protocol {protocol.upper()} to local port "
                      rf"{private}", output)
    assert found is not None, output
    return int(found.group(1))


def rule(protocol: int, external_port: int, internal_port: int) -> DnatRule:
    return DnatRule(protocol, external_port, CLIENT_ADDRESS, internal_port)


def test_natpmpc_and_natdeck_mappings_coexist_and_natdeck_deletes_only_its_own(
        lab: Lab) -> None:
    natpmpc_port = natpmpc_map(lab, 40100, 40100, "tcp", 3600)
    natpmpc_rule = rule(TCP, natpmpc_port, 40100)
    seen: dict[str, list[DnatRule]] = {}

    async def scenario() -> None:
        pcp = await engine.map_port(lab.gateway_lan, 40000, Protocol.TCP, via="pcp")
        natpmp = await engine.map_port(lab.gateway_lan, 40001, Protocol.TCP, via="natpmp")
        seen["all"] = lab.dnat_rules()
        await pcp.delete()
        seen["after_pcp_delete"] = lab.dnat_rules()
        await natpmp.delete()
        seen["after_natpmp_delete"] = lab.dnat_rules()

    run_in_client(lab, scenario)

    assert natpmpc_port == 40100
    assert set(seen["all"]) == {natpmpc_rule, rule(TCP, 40000, 40000), rule(TCP, 40001, 40001)}
    assert set(seen["after_pcp_delete"]) == {natpmpc_rule, rule(TCP, 40001, 40001)}
    assert seen["after_natpmp_delete"] == [natpmpc_rule]
    # natpmpc still owns its mapping and can delete it (RFC 6886 §3.4: lifetime 0).
    natpmpc_map(lab, 40100, 40100, "tcp", 0)
    assert lab.dnat_rules() == []


@pytest.mark.parametrize("via", ["pcp", "natpmp"])
def test_port_held_by_natpmpc_gets_natdeck_another_one(lab: Lab, via: Via) -> None:
    # natpmpc maps external 40200 to internal 40300; natdeck then asks for external 40200
    # for its own internal port.
    assert natpmpc_map(lab, 40200, 40300, "udp", 3600) == 40200

    mapping = run_in_client(lab, lambda: engine.map_port(
        lab.gateway_lan, 40201, Protocol.UDP, via=via, external_port=40200))

    assert mapping.external_port != 40200
    assert set(lab.dnat_rules()) == {rule(UDP, 40200, 40300),
                                     rule(UDP, mapping.external_port, 40201)}


def test_nonce_survives_from_the_mapping_process_to_the_unmapping_one(
        lab: Lab, tmp_path: Path) -> None:
    """``natdeck map`` and ``natdeck unmap`` are separate processes: the delete must carry the
    nonce that created the mapping (RFC 6887 §11.1, §15). Debian's miniupnpd 2.3.1 would
    accept another nonce, so the nonce is checked on the wire, not by the gateway's answer.
    """
    nonce = secrets.token_bytes(12)
    state_dir = tmp_path / "state"
    sniffer = Sniffer(lab)

    mapped = lab.run_python_in_client(ONESHOT, ["map", json.dumps({
        "gateway": lab.gateway_lan, "port": 40400, "protocol": TCP, "via": "pcp",
        "lifetime": 3600, "nonce": nonce.hex(), "state_dir": str(state_dir)})])
    assert mapped["ok"], mapped
    assert lab.dnat_rules() == [rule(TCP, mapped["mapping"]["external_port"], 40400)]
    record, _ = StateFile(state_dir).find(lab.gateway_lan, 5351, TCP, 40400)
    assert record is not None
    assert record.nonce == nonce

    unmapped = lab.run_python_in_client(ONESHOT, ["delete", json.dumps({
        "gateway": lab.gateway_lan, "port": 40400, "protocol": TCP,
        "state_dir": str(state_dir)})])

    assert unmapped["ok"], unmapped
    assert lab.dnat_rules() == []
    assert StateFile(state_dir).find(lab.gateway_lan, 5351, TCP, 40400)[0] is None
    # Both processes say they used the nonce, and the gateway received exactly that.
    assert mapped["mapping"]["nonce"] == unmapped["nonce"] == nonce.hex()
    maps = [r for r in sniffer.requests() if r["version"] == 2 and r["opcode"] == 1]
    assert [(r["lifetime"] > 0, r["nonce"], r["internal_port"]) for r in maps] == [
        (True, nonce.hex(), 40400), (False, nonce.hex(), 40400)]
    # The delete names the port it held (RFC 6887 §15 asks for the internal port; the
    # assigned external port goes along as the suggestion).
    assert maps[1]["external_port"] == mapped["mapping"]["external_port"]
