"""Prove the lab is a real, working NAT-PMP/PCP gateway -- using natpmpc and raw sockets only.

These tests exercise the lab itself (not natdeck's engine): if one fails, engine lab tests
cannot be trusted either.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from .netlab import (
    CLIENT_ADDRESS,
    GATEWAY_LAN,
    INITIAL_WAN_ADDRESS,
    NATPMP_PORT,
    ClientProcess,
    DnatRule,
    Lab,
    NatRule,
    cleanup_stale_labs,
    lab_namespaces,
    parse_nat_rules,
)

pytestmark = pytest.mark.lab

TCP = 6
UDP = 17


def natpmpc(lab: Lab, *args: str) -> str:
    """Run Debian's natpmpc in the client namespace against the lab gateway; return stdout."""
    result = lab.run_in_client(["natpmpc", "-g", lab.gateway_lan, *args], timeout=20, check=True)
    return result.stdout


def natpmpc_public_address(lab: Lab) -> tuple[str, int]:
    """(public address, epoch) as natpmpc reports them."""
    output = natpmpc(lab)
    address = re.search(r"Public IP address : (\S+)", output)
    epoch = re.search(r"epoch = (\d+)", output)
    assert address is not None, output
    assert epoch is not None, output
    return address.group(1), int(epoch.group(1))


# A NAT-PMP public address request (RFC 6886 section 3.2) sent `count` times from the client
# namespace, each waiting `timeout` s; prints how many were answered and the last answer.
RAW_ADDRESS_REQUESTS = r"""
import json, socket, sys
gateway, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
answered, last = 0, None
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(timeout)
    for _ in range(count):
        s.sendto(b"\x00\x00", (gateway, 5351))
        try:
            last = s.recv(64).hex()
            answered += 1
        except TimeoutError:
            pass
print(json.dumps({"answered": answered, "last": last}))
"""

# A PCP MAP request (RFC 6887 sections 7.1 and 11.1) for UDP `port`, lifetime 3600.
RAW_PCP_MAP = r"""
import json, os, socket, struct, sys
gateway, client, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def mapped(address):
    return socket.inet_pton(socket.AF_INET6, "::ffff:" + address)
header = struct.pack("!BBHI", 2, 1, 0, 3600) + mapped(client)
body = os.urandom(12) + struct.pack("!B3xHH", 17, port, port) + mapped("0.0.0.0")
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(2)
    s.sendto(header + body, (gateway, 5351))
    data = s.recv(1100)
version, opcode, _, result, lifetime, epoch = struct.unpack("!BBBBII", data[:12])
external_port = struct.unpack("!H", data[42:44])[0]
external = socket.inet_ntop(socket.AF_INET6, data[44:60]).removeprefix("::ffff:")
print(json.dumps({"version": version, "opcode": opcode, "result": result,
                  "lifetime": lifetime, "external": external, "external_port": external_port}))
"""

# TCP listener in the client namespace: reports the peer it accepted, echoes one message.
TCP_ECHO_SERVER = r"""
import json, socket, sys
with socket.create_server(("0.0.0.0", int(sys.argv[1]))) as server:
    print(json.dumps({"event": "ready"}), flush=True)
    connection, peer = server.accept()
    with connection:
        data = connection.recv(100)
        connection.sendall(data)
    print(json.dumps({"event": "accepted", "peer": peer[0], "data": data.decode()}), flush=True)
"""

# TCP client in the WAN namespace ("the Internet") connecting to the gateway's external address.
TCP_CONNECT = r"""
import json, socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        c.sendall(b"hello through the NAT")
        print(json.dumps({"reply": c.recv(100).decode()}))
except OSError as exc:
    print(json.dumps({"error": type(exc).__name__}))
"""


def test_natpmpc_public_address_is_the_wan_address(lab: Lab) -> None:
    address, _epoch = natpmpc_public_address(lab)

    assert address == lab.wan_address == INITIAL_WAN_ADDRESS
    assert (lab.gateway_lan, lab.client_address) == (GATEWAY_LAN, CLIENT_ADDRESS)


def test_natpmpc_mapping_is_a_real_dnat_rule_and_deletes(lab: Lab) -> None:
    output = natpmpc(lab, "-a", "40000", "40000", "tcp", "3600")
    assert "Mapped public port 40000 protocol TCP to local port 40000" in output

    assert lab.dnat_rules() == [DnatRule(TCP, 40000, CLIENT_ADDRESS, 40000)]
    assert lab.dnat_rules()[0].protocol_name == "tcp"

    natpmpc(lab, "-a", "40000", "40000", "tcp", "0")  # RFC 6886 section 3.4: lifetime 0 deletes

    assert lab.dnat_rules() == []
    assert lab.miniupnpd_rule_count() == 0


def test_mapping_forwards_wan_traffic_to_the_client(lab: Lab) -> None:
    server = lab.spawn_python_in_client(TCP_ECHO_SERVER, ["40001"])
    assert server.receive() == {"event": "ready"}
    # Without a mapping the gateway itself answers the SYN with a RST.
    assert lab.run_python_in_wan(TCP_CONNECT, [lab.wan_address, "40001"]) == {
        "error": "ConnectionRefusedError"
    }

    natpmpc(lab, "-a", "40001", "40001", "tcp", "3600")
    reply = lab.run_python_in_wan(TCP_CONNECT, [lab.wan_address, "40001"])

    assert reply == {"reply": "hello through the NAT"}
    assert server.receive() == {
        "event": "accepted",
        "peer": lab.wan_peer_address,
        "data": "hello through the NAT",
    }


def test_pcp_map_is_served(lab: Lab) -> None:
    answer = lab.run_python_in_client(RAW_PCP_MAP, [lab.gateway_lan, lab.client_address, "41000"])

    # RFC 6887 section 7.2: version 2, R bit set on opcode MAP (1), result SUCCESS.
    assert answer["version"] == 2
    assert answer["opcode"] == 0x81
    assert answer["result"] == 0
    assert answer["lifetime"] == 3600
    assert (answer["external"], answer["external_port"]) == (lab.wan_address, 41000)
    assert DnatRule(UDP, 41000, CLIENT_ADDRESS, 41000) in lab.dnat_rules()


def test_loss_rule_is_in_nftables_and_really_drops(lab: Lab) -> None:
    lab.set_loss(30)
    assert re.search(r"numgen random mod 100 < 30 .*drop", lab.loss_rules())
    assert lab.loss == (30, "requests")

    lab.set_loss(100)
    dropped = lab.run_python_in_client(RAW_ADDRESS_REQUESTS, [lab.gateway_lan, "3", "0.1"])
    counters = lab.counters()

    assert dropped == {"answered": 0, "last": None}
    assert (counters.requests_received, counters.requests_dropped) == (3, 3)
    assert counters.responses_sent == 0

    lab.clear_loss()
    assert "numgen" not in lab.loss_rules()
    answered = lab.run_python_in_client(RAW_ADDRESS_REQUESTS, [lab.gateway_lan, "2", "2"])
    assert answered["answered"] == 2
    # RFC 6886 section 3.2: version 0, opcode 128, result 0, epoch, external address.
    last = bytes.fromhex(answered["last"])
    assert last[:4] == b"\x00\x80\x00\x00"
    assert str(ipaddress.IPv4Address(last[8:12])) == lab.wan_address


def test_response_loss_drops_answers_not_requests(lab: Lab) -> None:
    lab.set_loss(100, direction="responses")

    result = lab.run_python_in_client(RAW_ADDRESS_REQUESTS, [lab.gateway_lan, "2", "0.1"])
    counters = lab.counters()

    assert result["answered"] == 0
    assert counters.requests_received == 2
    assert counters.requests_dropped == 0
    assert counters.responses_sent == counters.responses_dropped == 2


def _wait_for_epoch(lab: Lab, at_least: int) -> int:
    """miniupnpd's epoch counts seconds since start; wait until it reaches *at_least*."""
    _address, epoch = natpmpc_public_address(lab)
    if epoch < at_least:
        time.sleep(at_least - epoch + 0.05)
        _address, epoch = natpmpc_public_address(lab)
    return epoch


def test_restart_gateway_resets_epoch_and_mappings_and_announces(lab: Lab) -> None:
    natpmpc(lab, "-a", "40002", "40002", "udp", "3600")
    epoch_before = _wait_for_epoch(lab, at_least=1)
    pid_before = lab.gateway_pid
    listener = lab.start_announcement_listener()

    started = time.monotonic()
    lab.restart_gateway()
    elapsed = time.monotonic() - started

    assert elapsed < 1.0
    assert lab.gateway_pid not in (None, pid_before)
    assert lab.dnat_rules() == []
    _address, epoch_after = natpmpc_public_address(lab)
    assert epoch_after < epoch_before
    # RFC 6887 section 14.1.1: a restarted server multicasts an ANNOUNCE (opcode 0, R bit).
    announce = listener.receive(timeout=3)
    assert announce["port"] == 5350
    assert announce["source"] == [lab.gateway_lan, NATPMP_PORT]
    assert bytes.fromhex(announce["data"])[:4] == b"\x02\x80\x00\x00"


def test_restart_gateway_can_keep_mappings(lab: Lab) -> None:
    natpmpc(lab, "-a", "40003", "40003", "tcp", "3600")

    lab.restart_gateway(keep_mappings=True)

    assert lab.dnat_rules() == [DnatRule(TCP, 40003, CLIENT_ADDRESS, 40003)]
    # miniupnpd reloaded it from its lease file, so it can also delete it.
    natpmpc(lab, "-a", "40003", "40003", "tcp", "0")
    assert lab.dnat_rules() == []


def _decode_announcements(messages: list[dict[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for message in messages:
        data = bytes.fromhex(message["data"])
        if data[:2] == b"\x00\x80" and len(data) == 12:
            # RFC 6886 section 3.2.1: unsolicited public address response.
            seen[f"natpmp:{message['port']}"] = str(ipaddress.IPv4Address(data[8:12]))
        elif data[:2] == b"\x02\x80" and len(data) >= 24:
            seen[f"pcp:{message['port']}"] = data[3]  # ANNOUNCE result code
    return seen


def test_wan_address_change_is_multicast_to_the_client(lab: Lab) -> None:
    listener = lab.start_announcement_listener()

    lab.change_wan_address("11.0.0.9")

    expected = {"natpmp:5350": "11.0.0.9", "natpmp:5351": "11.0.0.9", "pcp:5350": 0}
    messages = _collect_until(listener, expected)
    assert _decode_announcements(messages) == expected
    assert all(message["source"] == [lab.gateway_lan, NATPMP_PORT] for message in messages)
    assert lab.wan_address == "11.0.0.9"
    assert natpmpc_public_address(lab)[0] == "11.0.0.9"


def _collect_until(
    listener: ClientProcess, expected: dict[str, Any], timeout: float = 5.0
) -> list[Any]:
    """Read announcements until exactly *expected* has been seen."""
    messages: list[Any] = []

    def complete(message: Any) -> bool:
        messages.append(message)
        return _decode_announcements(messages) == expected

    listener.receive_until(complete, timeout=timeout)
    return messages


def test_reset_restores_the_wan_address(lab: Lab) -> None:
    # Tests change the address; reset() must put it back without a restart of the test run.
    lab.change_wan_address("11.0.0.77", notify=False)
    lab.reset()

    assert lab.wan_address == INITIAL_WAN_ADDRESS
    assert natpmpc_public_address(lab)[0] == INITIAL_WAN_ADDRESS


def _console_mounted(lab: Lab) -> bool:
    """Whether something is bound over /dev/console in miniupnpd's mount namespace."""
    pid = lab.gateway_pid
    assert pid is not None
    mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return any(line.split()[4] == "/dev/console" for line in mounts)


def test_console_sets_the_gateway_speed_and_reset_brings_back_fast(lab: Lab) -> None:
    # fast: /dev/null over /dev/console (miniupnpd's LOG_CONS lines cost nothing); slow: the
    # real console, as a router logging to a slow flash or serial console.
    assert (lab.console, _console_mounted(lab)) == ("fast", True)
    lab.restart_gateway(console="slow")
    assert (lab.console, _console_mounted(lab)) == ("slow", False)
    assert natpmpc_public_address(lab)[0] == lab.wan_address  # still answers, slowly
    lab.reset()
    assert (lab.console, _console_mounted(lab)) == ("fast", True)


def test_gateway_namespace_has_small_socket_tables(lab: Lab) -> None:
    # miniupnpd reads /proc/net/tcp twice per new mapping; the kernel walks every bucket.
    result = lab.run_in_gateway(["sysctl", "-n", "net.ipv4.tcp_ehash_entries"], check=True)
    assert int(result.stdout) <= 1024


def test_python_runs_in_the_client_namespace_with_the_repo_importable(lab: Lab) -> None:
    code = (
        "import json, socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.connect((sys.argv[1], 5351))\n"  # connect() on UDP sends nothing; picks the source
        "import tests.lab.netlab\n"
        "print('noise before the result')\n"
        "print(json.dumps({'source': s.getsockname()[0], 'executable': sys.executable}))\n"
    )

    result = lab.run_python_in_client(code, [lab.gateway_lan])

    assert result["source"] == lab.client_address
    assert Path(result["executable"]) == Path(sys.executable)


def test_in_process_socket_made_in_the_client_namespace(lab: Lab) -> None:
    own_namespace = os.readlink("/proc/thread-self/ns/net")
    with lab.client_namespace():
        inside = os.readlink("/proc/thread-self/ns/net")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert os.readlink("/proc/thread-self/ns/net") == own_namespace != inside

    with sock:
        sock.settimeout(2)
        sock.sendto(b"\x00\x00", (lab.gateway_lan, NATPMP_PORT))
        data, source = sock.recvfrom(64)

    assert source == (lab.gateway_lan, NATPMP_PORT)
    assert data[:4] == b"\x00\x80\x00\x00"
    assert socket.inet_ntoa(data[8:12]) == lab.wan_address


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def test_destroy_leaves_nothing_behind(lab: Lab) -> None:
    # A second lab alongside the session one: same addresses, separate namespaces.
    other = Lab.create()
    worker = other.spawn_python_in_client(
        'import sys; print(\'{"event": "ready"}\', flush=True); sys.stdin.read()'
    )
    assert worker.receive() == {"event": "ready"}
    names, workdir = other.namespaces, other.workdir
    pids = [other.gateway_pid, worker.pid]
    assert None not in pids
    assert set(names) <= set(lab_namespaces())
    assert natpmpc_public_address(lab)[0] == lab.wan_address  # the session lab is unaffected

    started = time.monotonic()
    other.destroy()
    elapsed = time.monotonic() - started

    assert elapsed < 2.0
    assert not set(names) & set(lab_namespaces())
    assert all(_gone(pid) for pid in pids if pid is not None)
    assert not workdir.exists()
    other.destroy()  # idempotent


def _fail_inside_a_lab(seen: dict[str, Any]) -> None:
    with Lab.create() as other:
        seen.update(names=other.namespaces, workdir=other.workdir, pid=other.gateway_pid)
        raise RuntimeError("test failure")


def test_context_manager_cleans_up_after_a_failure(lab: Lab) -> None:
    seen: dict[str, Any] = {}

    with pytest.raises(RuntimeError, match="test failure"):
        _fail_inside_a_lab(seen)

    assert not set(seen["names"]) & set(lab_namespaces())
    assert seen["pid"] is not None
    assert _gone(seen["pid"])
    assert not seen["workdir"].exists()


# nft -j output captured from miniupnpd 2.3.1: a NAT-PMP mapping and a PCP PEER snat rule.
_NFT_JSON = json.dumps(
    {
        "nftables": [
            {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"chain": {"family": "inet", "table": "filter", "name": "prerouting_miniupnpd"}},
            {
                "rule": {
                    "family": "inet",
                    "table": "filter",
                    "chain": "prerouting_miniupnpd",
                    "handle": 10,
                    "expr": [
                        {"match": {"op": "==", "left": {"meta": {"key": "iif"}}, "right": "wan0"}},
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"base": "nh", "offset": 72, "len": 8}},
                                "right": 6,
                            }
                        },
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"protocol": "th", "field": "dport"}},
                                "right": 40000,
                            }
                        },
                        {"dnat": {"family": "ip", "addr": "198.18.0.2", "port": 40001}},
                    ],
                }
            },
            {
                "rule": {
                    "family": "inet",
                    "table": "filter",
                    "chain": "postrouting_miniupnpd",
                    "handle": 16,
                    "expr": [
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"base": "nh", "offset": 128, "len": 32}},
                                "right": 3323068418,
                            }
                        },
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"base": "nh", "offset": 96, "len": 32}},
                                "right": 184549378,
                            }
                        },
                        {
                            "match": {
                                "op": "==",
                                "left": {"payload": {"protocol": "th", "field": "sport"}},
                                "right": 8080,
                            }
                        },
                        {"snat": {"family": "ip", "addr": "11.0.0.7", "port": 42000}},
                    ],
                }
            },
        ]
    }
)


def test_parse_nat_rules_reads_miniupnpd_raw_matches() -> None:
    assert parse_nat_rules(_NFT_JSON, "prerouting_miniupnpd") == [
        NatRule(
            chain="prerouting_miniupnpd",
            handle=10,
            action="dnat",
            protocol=TCP,
            to_address="198.18.0.2",
            to_port=40001,
            input_interface="wan0",
            destination_port=40000,
        )
    ]
    assert parse_nat_rules(_NFT_JSON, "postrouting_miniupnpd") == [
        NatRule(
            chain="postrouting_miniupnpd",
            handle=16,
            action="snat",
            protocol=None,
            to_address="11.0.0.7",
            to_port=42000,
            source_address="11.0.0.2",
            destination_address="198.18.0.2",
            source_port=8080,
        )
    ]


def test_fresh_lab_restarts_the_gateway(lab: Lab, request: pytest.FixtureRequest) -> None:
    pid_before = lab.gateway_pid

    fresh: Lab = request.getfixturevalue("fresh_lab")

    assert fresh is lab
    assert lab.gateway_pid not in (None, pid_before)
    assert natpmpc_public_address(lab)[1] <= 1  # RFC 6886 section 3.6: seconds since start


def test_stale_labs_of_dead_runs_are_swept(lab: Lab) -> None:
    dead_pid = _a_dead_pid()
    name = f"natdeck-gw-{dead_pid}-stale"
    subprocess.run(["ip", "netns", "add", name], check=True)
    leftover = subprocess.Popen(["ip", "netns", "exec", name, "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while not subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.strip():
            assert time.monotonic() < deadline, "sleep never entered the namespace"
            time.sleep(0.01)

        cleanup_stale_labs()  # (a concurrent test run may sweep it first: same outcome)

        assert name not in lab_namespaces()
        assert leftover.wait(timeout=5) == -signal.SIGKILL
        assert lab.gateway_ns in lab_namespaces()  # a live run's lab is left alone
    finally:
        leftover.kill()
        leftover.wait()
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def _a_dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid
