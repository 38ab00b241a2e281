"""natdeck's MappingManager against a real miniupnpd 2.3.1: announcements, restarts, loss.

Each manager runs as a long-lived process in the client namespace (``clients/manager_worker.py``,
driven through :class:`~tests.lab.clients.ManagerWorker`) and prints its events as JSON lines,
so a test sees what a user of the manager would see, and checks it against the gateway's real
state (``lab.dnat_rules()``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from engine import Protocol

from .clients import ManagerWorker, Sniffer, age_gateway
from .netlab import CLIENT_ADDRESS, INITIAL_WAN_ADDRESS, DnatRule, Lab

pytestmark = pytest.mark.lab

TCP = int(Protocol.TCP)
UDP = int(Protocol.UDP)
NEW_WAN_ADDRESS = "11.0.0.9"
#: RFC 6887 §14.1.3: after an ANNOUNCE a client waits a random 0-5 s before renewing.
ANNOUNCE_DELAY = 5.0


def items(ports: range, protocols: tuple[int, ...] = (TCP, UDP)) -> list[dict[str, int]]:
    """``add`` commands for every (protocol, port)."""
    return [{"protocol": p, "port": port} for p in protocols for port in ports]


def rules_of(results: list[dict[str, Any]]) -> set[DnatRule]:
    """The DNAT rules the gateway must hold for these mappings (as the manager reports them)."""
    return {DnatRule(m["protocol"], m["external_port"], CLIENT_ADDRESS, m["internal_port"])
            for m in results}


def added(worker: ManagerWorker, commands: list[dict[str, int]],
          timeout: float = 30.0) -> list[dict[str, Any]]:
    """Add every mapping through the worker's manager, asserting each succeeded; return them
    once none is being confirmed.

    miniupnpd multicasts an ANNOUNCE as it starts; one that reaches the manager after its
    first requests (late under load) makes it confirm every mapping (issue 14, finding 2),
    which takes the RFC's random 0-5 s.
    """
    replies = worker.ok("add_many", items=commands, timeout=timeout)
    keys = {tuple(reply["result"]["key"]) for reply in replies}
    settle = time.monotonic() + 8.0
    while True:
        now = [m for m in worker.ok("mappings") if tuple(m["key"]) in keys]
        if all(m["state"] != "confirming" for m in now) or time.monotonic() > settle:
            return sorted(now, key=lambda m: [r["result"]["key"] for r in replies].index(m["key"]))
        time.sleep(0.1)


def recovered_event(key: tuple[int, int]) -> Callable[[dict[str, Any]], bool]:
    """Matches the MappingRecovered event of ``key`` (protocol, internal port)."""
    return lambda e: e["event"] == "MappingRecovered" and tuple(e["key"]) == key


def confirmed_event(key: tuple[int, int]) -> Callable[[dict[str, Any]], bool]:
    """Matches a MappingRenewed or MappingRecovered event of ``key``."""
    return lambda e: (e["event"] in ("MappingRenewed", "MappingRecovered")
                      and tuple(e["key"]) == key)


def of_type(worker: ManagerWorker, name: str, after: int = 0) -> list[dict[str, Any]]:
    return [e for e in worker.events[after:] if e["event"] == name]


@pytest.fixture
def workers(lab: Lab) -> Iterator[list[ManagerWorker]]:
    """Collects workers a test starts, and kills any it did not close."""
    started: list[ManagerWorker] = []
    yield started
    for worker in started:
        worker.process.close(timeout=1)


def test_manager_maps_renews_removes_and_deletes_on_close(
        lab: Lab, workers: list[ManagerWorker]) -> None:
    worker = ManagerWorker.start(lab, lifetime=3600, probe_interval=None)
    workers.append(worker)

    mappings = added(worker, items(range(40000, 40003)))

    assert {m["via"] for m in mappings} == {"pcp"}
    assert {m["state"] for m in mappings} == {"active"}
    assert {m["external_address"] for m in mappings} == {lab.wan_address}
    assert set(lab.dnat_rules()) == rules_of(mappings)
    assert len(of_type(worker, "MappingAdded")) == 6

    renewed = worker.ok("renew", protocol=TCP, port=40000)
    assert renewed["renewals"] == 1
    assert renewed["nonce"] == mappings[0]["nonce"]  # renewals keep the nonce (§11.2.1)
    assert set(lab.dnat_rules()) == rules_of(mappings)

    worker.ok("remove", protocol=UDP, port=40001)
    assert set(lab.dnat_rules()) == rules_of(
        [m for m in mappings if (m["protocol"], m["internal_port"]) != (UDP, 40001)])

    worker.close()

    assert lab.dnat_rules() == []
    assert lab.miniupnpd_rule_count() == 0
    assert len(of_type(worker, "MappingRemoved")) == 6


def test_address_change_is_announced_and_updates_mappings_without_polling(
        lab: Lab, workers: list[ManagerWorker]) -> None:
    # One manager speaking PCP, one NAT-PMP only: each listens on 5350 and 5351 (default
    # ports, multicast) and never polls (probe_interval None).
    pcp = ManagerWorker.start(lab, lifetime=3600, probe_interval=None, listen=True)
    natpmp = ManagerWorker.start(lab, lifetime=3600, probe_interval=None, via="natpmp")
    workers.extend([pcp, natpmp])
    assert pcp.ready["status"]["listening"]
    assert natpmp.ready["status"]["listening"]
    before = added(pcp, items(range(40000, 40002))) + added(natpmp, items(range(40010, 40012)))
    assert set(lab.dnat_rules()) == rules_of(before)
    marks = {id(w): len(w.events) for w in (pcp, natpmp)}
    sniffer = Sniffer(lab)

    changed_at = time.time()
    lab.change_wan_address(NEW_WAN_ADDRESS)  # re-address wan0, SIGUSR1 miniupnpd

    events = {}
    for worker in (pcp, natpmp):
        events[id(worker)] = worker.wait_event(
            lambda e: e["event"] == "ExternalAddressChanged", timeout=3.0,
            after=marks[id(worker)])
    for event in events.values():
        assert event["new"] == NEW_WAN_ADDRESS
        assert event["old"] == INITIAL_WAN_ADDRESS
        assert event["source"] == "announce"
        assert event["wall"] - changed_at < 2.0
    # Heard, not asked: no request of either manager reached the gateway before it knew.
    # (Each speaks only its protocol: no probes, and renewals go the mapping's way.)
    requests = sniffer.requests(settle=0.0)
    for worker, version in ((pcp, 2), (natpmp, 0)):
        sent = [r["wall"] for r in requests if r["version"] == version]
        assert min(sent, default=float("inf")) > events[id(worker)]["wall"]

    # Every mapping shows the new address, and the PCP ones are confirmed by the gateway: a
    # renewal (or, when the epoch reset reads as lost state, a recovery) after the RFC's
    # random 0-5 s (RFC 6887 §14.1.3), on the same port.
    def all_moved() -> bool:
        return all(m["external_address"] == NEW_WAN_ADDRESS and m["state"] == "active"
                   for w in (pcp, natpmp) for m in w.mappings())

    pcp.wait_until(all_moved, timeout=ANNOUNCE_DELAY + 2.0)
    for m in before[:4]:
        key = (m["protocol"], m["internal_port"])
        confirmed = pcp.wait_event(confirmed_event(key), timeout=ANNOUNCE_DELAY + 2.0,
                                   after=marks[id(pcp)])
        assert confirmed["mapping"]["external_address"] == NEW_WAN_ADDRESS
        assert confirmed["mapping"]["external_port"] == m["external_port"]
        assert confirmed["wall"] - changed_at < ANNOUNCE_DELAY + 2.0
    for worker in (pcp, natpmp):
        assert worker.ok("status")["external_address"] == NEW_WAN_ADDRESS
        assert worker.ok("status")["restarts"] <= 1  # one WAN change, at most one "reboot"
    # Same ports, same rules: only the address changed.
    assert set(lab.dnat_rules()) == rules_of(before)
    for worker in (pcp, natpmp):
        worker.close()
    assert lab.dnat_rules() == []


def test_restarted_gateway_gets_every_mapping_back(
        lab: Lab, workers: list[ManagerWorker]) -> None:
    age_gateway(lab, 3)
    pcp = ManagerWorker.start(lab, lifetime=3600, probe_interval=None)
    natpmp = ManagerWorker.start(lab, lifetime=3600, probe_interval=None, via="natpmp")
    workers.extend([pcp, natpmp])
    before = added(pcp, items(range(40000, 40005))) + added(natpmp, items(range(40010, 40015)))
    assert {m["via"] for m in before[:10]} == {"pcp"}
    assert {m["via"] for m in before[10:]} == {"natpmp"}
    expected = rules_of(before)
    assert set(lab.dnat_rules()) == expected
    assert len(expected) == 20
    marks = {id(w): len(w.events) for w in (pcp, natpmp)}

    restarted_at = time.monotonic()
    lab.restart_gateway()  # SIGKILL, rules and leases flushed, epoch back to 0

    # Every mapping is asked for again after a random 0-5 s (RFC 6887 §14.1.3: all clients
    # heard the ANNOUNCE, so they must not all ask at once).
    pcp.wait_until(lambda: set(lab.dnat_rules()) == expected, timeout=ANNOUNCE_DELAY + 2.0)
    took = time.monotonic() - restarted_at
    assert took < ANNOUNCE_DELAY + 2.0
    for worker, ports in ((pcp, range(40000, 40005)), (natpmp, range(40010, 40015))):
        worker.wait_event(lambda e: e["event"] == "GatewayRestarted", timeout=1.0,
                          after=marks[id(worker)])
        keys = {(p, port) for p in (TCP, UDP) for port in ports}
        for key in keys:
            worker.wait_event(recovered_event(key), timeout=2.0, after=marks[id(worker)])
        recovered = of_type(worker, "MappingRecovered", after=marks[id(worker)])
        assert all(e["same_port"] for e in recovered)
        now = worker.mappings()
        assert {m["state"] for m in now} == {"active"}
        assert rules_of(now) <= expected
        # Granted by the new incarnation: its epoch counts from the restart (the old one's
        # would be 3 s more at least).
        assert all(m["epoch"] <= time.monotonic() - restarted_at + 1 for m in now)
    # The epoch went backwards: the manager knew the state was lost (RFC 6887 §8.5).
    assert pcp.ok("status")["restarts"] == 1
    for worker in (pcp, natpmp):
        worker.close()
    assert lab.dnat_rules() == []


@pytest.mark.timeout(300)
def test_twenty_mappings_through_thirty_percent_loss(
        lab: Lab, workers: list[ManagerWorker]) -> None:
    """30 % of requests *and* 30 % of answers dropped: each try succeeds with p = 0.49.

    NAT-PMP's schedule (RFC 6886 §3.1: 0.25 s doubling, nine tries, 127.75 s) keeps this
    quick; PCP's (RFC 6887 §8.1.1: 3 s doubling) would take minutes for twenty mappings. A
    64 s timeout allows eight tries (the last sent at 31.75 s), which all fail with
    p = 0.51**8 = 0.46 %: for twenty mappings ~9 % of runs. That is the RFC's give-up rule,
    not a bug, so a mapping that timed out is asked for again once, as a user would, with the
    whole nine-try schedule (both attempts fail with p ~ 1e-5 per mapping). Typical run:
    2-16 s; the first pass never takes more than 64 s.
    """
    lab.set_loss(30, direction="both")
    lab.reset_counters()
    worker = ManagerWorker.start(lab, lifetime=3600, probe_interval=None, via="natpmp",
                                 timeout=64.0)
    workers.append(worker)
    commands = items(range(41000, 41010))

    started = time.monotonic()
    # call, not ok: add_many's reply is not ok when any mapping timed out; those are retried.
    replies = worker.call("add_many", items=commands, timeout=75)["result"]
    retried = [c for c, r in zip(commands, replies, strict=True) if not r["ok"]]
    assert all(r["error"] == "GatewayTimeout" for r in replies if not r["ok"]), replies
    if retried:
        retry = [{**c, "timeout": 130.0} for c in retried]
        replies = [r for r in replies if r["ok"]] + worker.ok("add_many", items=retry,
                                                               timeout=140)
    took = time.monotonic() - started
    counters = lab.counters()
    lab.clear_loss()

    assert all(r["ok"] for r in replies), replies
    mappings = [r["result"] for r in replies]
    assert len(mappings) == 20
    assert set(lab.dnat_rules()) == rules_of(mappings)
    assert {(m["protocol"], m["internal_port"]) for m in mappings} == {
        (c["protocol"], c["port"]) for c in commands}
    # Retransmissions happened and made up for both kinds of loss.
    assert counters.requests_dropped > 0
    assert counters.responses_dropped > 0
    # Requests reached miniupnpd more often than there were mappings: answers were lost and
    # the requests sent again.
    assert counters.requests_received - counters.requests_dropped > 20
    print(f"20 mappings through 30 % loss: {took:.1f} s, {counters}, retried {len(retried)}")
    worker.close()
    assert lab.dnat_rules() == []
