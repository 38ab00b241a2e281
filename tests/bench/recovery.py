"""Benchmark 4: recovery on a real miniupnpd -- after a restart, and after an address change.

A :class:`~engine.manager.MappingManager` runs in the lab's client namespace as a long-lived
process (``tests/lab/clients/manager_worker.py``, which prints every event with its wall-clock
time) and holds N TCP mappings. Then:

- *restart*: miniupnpd is killed, its rules and leases flushed, and started again (epoch 0, one
  PCP ANNOUNCE multicast). Timed from the moment it listens again until the manager reports
  every mapping recovered, and checked against the kernel's DNAT rules (``lab.dnat_rules()``).
- *address change*: the gateway's WAN address changes and miniupnpd is told (SIGUSR1: it
  multicasts one NAT-PMP address notification and one PCP ANNOUNCE). Timed until the manager's
  ``ExternalAddressChanged`` event, and until every mapping shows the new address.

natpmpc and py-natpmp have no counterpart: neither listens for announcements nor renews, so a
mapping a restart loses stays lost until the user runs them again.

    .venv/bin/python -m tests.bench.recovery [--count 100] [--rounds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from engine.protocols import Protocol
from tests.bench.report import Table, median
from tests.lab.clients import ManagerWorker, age_gateway
from tests.lab.netlab import CLIENT_ADDRESS, INITIAL_WAN_ADDRESS, DnatRule, Lab

TCP = int(Protocol.TCP)
FIRST_PORT = 41000
OTHER_WAN_ADDRESS = "11.0.0.9"
#: RFC 6887 §14.1.3: a client that hears an ANNOUNCE waits a random 0-5 s before it asks.
ANNOUNCE_DELAY = 5.0


def _events(worker: ManagerWorker, name: str, after: int) -> list[dict[str, Any]]:
    return [e for e in worker.events[after:] if e["event"] == name]


def _start_worker(lab: Lab, via: str, count: int) -> tuple[ManagerWorker, set[DnatRule]]:
    lab.reset(restart=True)
    worker = ManagerWorker.start(lab, lifetime=3600, probe_interval=None, via=via)
    replies = worker.ok("add_many", timeout=120,
                        items=[{"protocol": TCP, "port": FIRST_PORT + i} for i in range(count)])
    expected = {DnatRule(TCP, r["result"]["external_port"], CLIENT_ADDRESS, r["result"]
                         ["internal_port"]) for r in replies}
    if set(lab.dnat_rules()) != expected:
        raise AssertionError("the gateway does not hold the mappings the manager reports")
    return worker, expected


def _wait(worker: ManagerWorker, condition: Callable[[], bool], timeout: float) -> None:
    worker.wait_until(condition, timeout=timeout, interval=0.02)


def restart(lab: Lab, via: str, count: int) -> dict[str, Any]:
    """Restart miniupnpd under a manager holding ``count`` mappings; time the recovery."""
    worker, expected = _start_worker(lab, via, count)
    try:
        age_gateway(lab, 3)  # RFC 6887 §8.5: an epoch under 2 s going back is not a restart
        mark = len(worker.events)
        killed = time.time()
        lab.restart_gateway(keep_mappings=False)
        listening = time.time()
        lab.reset_counters()

        def recovered() -> bool:
            return len(_events(worker, "MappingRecovered", mark)) >= count

        _wait(worker, recovered, ANNOUNCE_DELAY + 30)
        rules_ok = set(lab.dnat_rules()) == expected
        requests = lab.counters().requests_received
        back = [e["wall"] for e in _events(worker, "MappingRecovered", mark)]
        noticed = _events(worker, "GatewayRestarted", mark)
        same_port = all(e["same_port"] for e in _events(worker, "MappingRecovered", mark))
        # All from the SIGKILL: the new miniupnpd multicasts its ANNOUNCE as it starts, so
        # the manager may hear it before the lab has seen the "listening" line.
        return {
            "down": listening - killed,
            "noticed": noticed[0]["wall"] - killed if noticed else float("nan"),
            "first": min(back) - killed,
            "all": max(back) - killed,
            "requests": requests,
            "rules_ok": rules_ok and same_port,
        }
    finally:
        worker.process.close(timeout=1)


def address_change(lab: Lab, via: str, count: int, changes: int) -> list[dict[str, Any]]:
    """Change the WAN address ``changes`` times (back and forth); time what the manager sees."""
    worker, expected = _start_worker(lab, via, count)
    results = []
    try:
        for number in range(changes):
            new = OTHER_WAN_ADDRESS if number % 2 == 0 else INITIAL_WAN_ADDRESS
            # miniupnpd resets its epoch on an address change: with an epoch of 2 s or more
            # before, that shows lost state (RFC 6887 §8.5), as it would on a real router.
            age_gateway(lab, 3)
            mark = len(worker.events)
            lab.reset_counters()
            changed = time.time()
            lab.change_wan_address(new)
            event = worker.wait_event(lambda e: e["event"] == "ExternalAddressChanged",
                                      timeout=10, after=mark)

            def moved(new: str = new, mark: int = mark) -> bool:
                # Every mapping granted again (or renewed) by the gateway since the change.
                confirmed = {tuple(e["key"]) for e in worker.events[mark:]
                             if e["event"] in ("MappingRecovered", "MappingRenewed")}
                return len(confirmed) >= count and all(
                    m["external_address"] == new and m["state"] == "active"
                    for m in worker.mappings())

            _wait(worker, moved, ANNOUNCE_DELAY + 30)
            settled = time.time()
            results.append({
                "event": event["wall"] - changed,
                "source": event["source"],
                "all": settled - changed,
                "requests": lab.counters().requests_received,
                "rules_ok": set(lab.dnat_rules()) == expected,
            })
            time.sleep(0.2)
    finally:
        worker.process.close(timeout=1)
        lab.reset(restart=True)
    return results


def measure(lab: Lab, count: int, rounds: int, changes: int) -> dict[str, Any]:
    """Restarts (PCP and NAT-PMP managers, alternating) and address changes."""
    restarts: dict[str, list[dict[str, Any]]] = {"pcp": [], "natpmp": []}
    for _ in range(rounds):
        for via in restarts:
            restarts[via].append(restart(lab, via, count))
    changes_by_via = {via: address_change(lab, via, count, changes) for via in ("pcp", "natpmp")}
    return {"restarts": restarts, "changes": changes_by_via}


def _ms(value: float) -> str:
    return f"{value * 1e3:,.0f} ms" if value == value else "—"


def render(results: dict[str, Any], count: int) -> str:
    """Two Markdown tables: restart recovery, address-change notice."""
    restarts: dict[str, list[dict[str, Any]]] = results["restarts"]
    rounds = len(restarts["pcp"])
    table = Table(["manager (via)", "miniupnpd listening again", "restart noticed",
                   "first mapping back", "all mappings back", "requests", "rules match"])
    for via, runs in restarts.items():
        table.add(f"MappingManager ({'PCP' if via == 'pcp' else 'NAT-PMP'})",
                  _ms(median(r["down"] for r in runs)), _ms(median(r["noticed"] for r in runs)),
                  _ms(median(r["first"] for r in runs)), _ms(median(r["all"] for r in runs)),
                  f"{median(r['requests'] for r in runs):,.0f}",
                  "yes" if all(r["rules_ok"] for r in runs) else "NO")
    table.add("natpmpc, py-natpmp", "—", "never", "never", "never", "0", "—")
    changes: dict[str, list[dict[str, Any]]] = results["changes"]
    second = Table(["manager (via)", "ExternalAddressChanged", "all mappings confirmed",
                    "requests", "rules match"])
    for via, runs in changes.items():
        second.add(f"MappingManager ({'PCP' if via == 'pcp' else 'NAT-PMP'})",
                   f"{median(r['event'] for r in runs) * 1e3:,.1f} ms",
                   _ms(median(r["all"] for r in runs)),
                   f"{median(r['requests'] for r in runs):,.0f}",
                   "yes" if all(r["rules_ok"] for r in runs) else "NO")
    second.add("natpmpc, py-natpmp", "never (no listener)", "never", "—", "—")
    change_count = len(changes["pcp"])
    return "\n".join([
        f"### Recovery: miniupnpd restarted under {count} managed mappings",
        "",
        f"Median of {rounds} restart{'s' if rounds != 1 else ''} per manager, every time "
        "from the SIGKILL; the lab then flushes miniupnpd's rules and starts it again (epoch "
        "0). *restart noticed*: the manager's `GatewayRestarted`, from the epoch of the PCP "
        "ANNOUNCE miniupnpd multicasts as it starts. Every mapping then waits a random 0-5 s "
        "before asking again (RFC 6887 §14.1.3, so that a gateway's clients do not all ask at "
        "once): *all mappings back* is bounded by that wait, not by natdeck or the gateway. "
        "*rules match*: afterwards the kernel's DNAT rules are exactly the mappings from "
        "before, same external ports. *requests*: reaching port 5351 during the recovery.",
        "",
        table.render(),
        "",
        f"### Address change under {count} managed mappings",
        "",
        f"Median of {change_count} change{'s' if change_count != 1 else ''} per manager, "
        "from the moment the WAN address "
        "changed and miniupnpd was signalled (it multicasts one NAT-PMP address notification "
        "and one PCP ANNOUNCE) -- no polling. miniupnpd also resets its epoch, which "
        "shows lost state, so each mapping is asked for again after the random 0-5 s: *all "
        "mappings confirmed* is when the gateway has granted every one again on the new "
        "address.",
        "",
        second.render(),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--changes", type=int, default=2)
    args = parser.parse_args(argv)
    with Lab.create() as lab:
        results = measure(lab, args.count, args.rounds, args.changes)
    print(render(results, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
