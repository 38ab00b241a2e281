"""Benchmark 1: create and delete N mappings on a real miniupnpd, natdeck beside its peers.

Every client runs in the lab's client namespace (:mod:`tests.bench.lab_client`, one Python
process per run, timing itself); miniupnpd is restarted with an empty table before each run,
and the lab's packet counters say how many requests really reached it. Rounds are
interleaved: each round runs every client once, in an order rotated from round to round.
Each time is reported as a ratio to the floor of the same round (a bare UDP client sending
pre-encoded requests one at a time: the gateway's own service time).

    .venv/bin/python -m tests.bench.lab_throughput [--count 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.bench.lab_client import CLIENTS
from tests.bench.report import TIMES, Goal, Table, median, ms, spread
from tests.lab.netlab import REPO_ROOT, Console, Lab

LAB_CLIENT = REPO_ROOT / "tests" / "bench" / "lab_client.py"
FIRST_PORT = 40000

_DESCRIPTION = {
    "floor-natpmp": "floor: bare UDP, NAT-PMP",
    "floor-pcp": "floor: bare UDP, PCP",
    "natdeck-pcp-seq": "natdeck PCP, sequential",
    "natdeck-natpmp-seq": "natdeck NAT-PMP, sequential",
    "natdeck-pcp-gather": "natdeck PCP, asyncio.gather",
    "natdeck-natpmp-gather": "natdeck NAT-PMP, asyncio.gather",
    "natdeck-natpmp-gather-4": "natdeck NAT-PMP, asyncio.gather, `max_in_flight=4`",
    "natdeck-pcp-blocking": "natdeck PCP, `BlockingClient` (no event loop)",
    "natdeck-natpmp-blocking": "natdeck NAT-PMP, `BlockingClient` (no event loop)",
    "natdeck-manager": "natdeck MappingManager (PCP), gathered add/remove",
    "natpmpc": "natpmpc, one process per request",
    "py-natpmp": "py-natpmp `map_port`, sequential",
    "asyncio-natpmp": "bare asyncio UDP, NAT-PMP (no checks)",
    "asyncio-pcp": "bare asyncio UDP, PCP (no checks)",
}
#: The clients of the slow-gateway run: the floors and natdeck concurrent (issue 15's goal).
SLOW_CLIENTS = ("floor-natpmp", "floor-pcp", "natdeck-natpmp-gather", "natdeck-pcp-gather")
#: The clients of the traced fast-gateway rounds: the floors, py-natpmp, natdeck both ways, and
#: a bare asyncio client (the event loop's own share of a sequential asyncio turnaround).
TRACED_CLIENTS = ("floor-natpmp", "floor-pcp", "py-natpmp", "asyncio-natpmp", "asyncio-pcp",
                  "natdeck-natpmp-seq", "natdeck-pcp-seq", "natdeck-natpmp-blocking",
                  "natdeck-pcp-blocking", "natdeck-natpmp-gather", "natdeck-pcp-gather")
#: What each console setting stands for, for the tables' titles.
SPEED = {"fast": "fast miniupnpd (log to /dev/null)",
         "slow": "slow miniupnpd (log to the real /dev/console)"}
#: Which floor each client is compared with (the protocol it speaks).
_FLOOR = {name: "floor-pcp" if "pcp" in name or "manager" in name else "floor-natpmp"
          for name in CLIENTS}


@contextlib.contextmanager
def _on_cpus(cpus: set[int] | None) -> Iterator[None]:
    """Run the block, and the processes it starts, on ``cpus`` only (``None``: as it was)."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


#: What the heading says of a pinned run, and of one on shared cores.
PINNED = (" Pinned: miniupnpd on one CPU, each client on another -- a router is its own machine, "
          "whose CPU no client takes.")
SHARED = (" Not pinned: miniupnpd and the client share this machine's two cores (with the "
          "kernel's and the harness's work), so a client's CPU can delay the gateway.")


def one_run(lab: Lab, client: str, count: int, trace: bool = False,
            pin: bool = False) -> dict[str, Any]:
    """Run ``client`` once on a freshly restarted, empty gateway; add the gateway's counts.
    ``trace``: the result carries every packet's time (``lab_client.Run.trace``). ``pin``:
    miniupnpd on one CPU, the client on another, so that neither takes the other's core (what the
    client's pacing achieves, apart from what its CPU costs the gateway on a shared core)."""
    gateway_cpu, client_cpu = sorted(os.sched_getaffinity(0))[:2] if pin else (0, 0)
    with _on_cpus({gateway_cpu} if pin else None):
        lab.restart_gateway(keep_mappings=False)
    lab.reset_counters()  # after the start-up ANNOUNCE
    config = {"client": client, "gateway": lab.gateway_lan, "local": lab.client_address,
              "first_port": FIRST_PORT, "count": count, "trace": trace}
    with _on_cpus({client_cpu} if pin else None):
        result: dict[str, Any] = lab.run_python_in_client(LAB_CLIENT, [json.dumps(config)],
                                                          timeout=600)
    counters = lab.counters()
    result["gateway_requests"] = counters.requests_received
    result["rules_left"] = len(lab.dnat_rules())
    result["total"] = result["create"] + result["delete"]
    return result


def measure(lab: Lab, count: int, rounds: int, clients: tuple[str, ...] = CLIENTS,
            console: Console = "fast", trace: bool = False,
            pin: bool = False) -> dict[str, list[dict[str, Any]]]:
    """``rounds`` interleaved rounds of every client; results per client, in round order.

    ``console`` is the gateway's speed (:attr:`Lab.console`), set for every run here.
    """
    lab.console = console
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    one_run(lab, "floor-pcp", min(count, 20))  # warm up (page cache, miniupnpd, nft), untimed
    for number in range(rounds):
        shift = number % len(clients)
        for client in clients[shift:] + clients[:shift]:
            results[client].append(one_run(lab, client, count, trace, pin))
    return results


def _retransmissions(client: str, run: dict[str, Any], count: int) -> int:
    if client.startswith("natdeck"):
        return int(run["natdeck_resends"])
    if client.startswith("floor"):
        return int(run["resends"])
    if client == "natpmpc":  # cannot count its own: what the gateway saw beyond 2 per run
        return int(run["gateway_requests"]) - 4 * count
    return int(run["sent"] or 0) - int(run["requests"])


def extra_requests(run: dict[str, Any]) -> int:
    """Requests the gateway served beyond the client's design: retransmissions, counted at the
    gateway (nftables at port 5351), whatever the client says of itself."""
    return int(run["gateway_requests"]) - int(run["requests"])


def round_ratios(results: dict[str, list[dict[str, Any]]], client: str,
                 reference: str) -> list[float]:
    """``client``'s total over ``reference``'s, round by round (the same round: the gateway's
    speed drifts between rounds, less within one)."""
    pairs = zip(results.get(client, []), results.get(reference, []), strict=False)
    return [a["total"] / b["total"] for a, b in pairs]


def per_round(results: dict[str, list[dict[str, Any]]], client: str, reference: str) -> float:
    """Median over rounds of ``client``'s total over ``reference``'s in the same round."""
    return median(round_ratios(results, client, reference))


def _spread(ratios: list[float]) -> str:
    return f"rounds {min(ratios):.3f}–{max(ratios):.3f}" if ratios else "no rounds"


def _totals(results: dict[str, list[dict[str, Any]]], *clients: str) -> str:
    return ", ".join(f"{_DESCRIPTION[c].split(',')[0]} {ms(median(r['total'] for r in results[c]))}"
                     f" ms" for c in clients if c in results)


def fast_goals(results: dict[str, list[dict[str, Any]]], where: str = "") -> list[Goal]:
    """Issue 15's fast-gateway goals: concurrent natdeck at or under the sequential floor,
    sequential natdeck at or under py-natpmp, for NAT-PMP and PCP. ``where`` is said after
    "fast gateway" (how the run shared the CPUs).

    py-natpmp has no PCP, and miniupnpd serves a PCP request more slowly than a NAT-PMP one
    (the two floors differ by about as much as the clients do). So for PCP the row compares
    what each client adds to its own protocol's floor in the same round: natdeck PCP over the
    PCP floor, divided by py-natpmp over the NAT-PMP floor."""
    goals = []
    for kind, name in (("natpmp", "NAT-PMP"), ("pcp", "PCP")):
        gather, floor = f"natdeck-{kind}-gather", f"floor-{kind}"
        ratios = round_ratios(results, gather, floor)
        goals.append(Goal(f"fast gateway{where}, {name}: natdeck concurrent {TIMES} the sequential "
                          "floor", median(ratios), 1.0, "x",
                          f"{_totals(results, floor, gather)}; {_spread(ratios)}"))
    for mode, how in (("seq", "sequential"), ("blocking", "`BlockingClient` (no event loop)")):
        ours_natpmp = f"natdeck-natpmp-{mode}"
        if ours_natpmp not in results or "py-natpmp" not in results:
            continue
        ratios = round_ratios(results, ours_natpmp, "py-natpmp")
        goals.append(Goal(f"fast gateway{where}, NAT-PMP: natdeck {how} {TIMES} py-natpmp "
                          "sequential", median(ratios), 1.0, "x",
                          f"{_totals(results, 'py-natpmp', ours_natpmp)}; {_spread(ratios)}"))
        ours = round_ratios(results, f"natdeck-pcp-{mode}", "floor-pcp")
        theirs = round_ratios(results, "py-natpmp", "floor-natpmp")
        ratios = [a / b for a, b in zip(ours, theirs, strict=False)]
        goals.append(Goal(f"fast gateway{where}, PCP: natdeck {how} {TIMES} py-natpmp "
                          "sequential, each over its protocol's floor (py-natpmp has no PCP)",
                          median(ratios), 1.0, "x",
                          f"natdeck PCP {median(ours):.3f}{TIMES} the PCP floor, py-natpmp "
                          f"{median(theirs):.3f}{TIMES} the NAT-PMP floor; {_spread(ratios)}"))
    return goals


def slow_goals(results: dict[str, list[dict[str, Any]]]) -> list[Goal]:
    """Issue 15's slow-gateway goals for concurrent natdeck: no retransmission, and at most
    1.05 times the floor."""
    goals = []
    for kind, name in (("natpmp", "NAT-PMP"), ("pcp", "PCP")):
        gather, floor = f"natdeck-{kind}-gather", f"floor-{kind}"
        runs = results.get(gather, [])
        extra = max((extra_requests(r) for r in runs), default=float("nan"))
        own = max((int(r["natdeck_resends"]) for r in runs), default=0)
        goals.append(Goal(f"slow gateway, {name}: natdeck concurrent, retransmissions (most in "
                          "a round, counted at the gateway)", extra, 0, "",
                          f"natdeck's own count {own}; floor "
                          f"{max((extra_requests(r) for r in results.get(floor, [])), default=0)}"))
        goals.append(Goal(f"slow gateway, {name}: natdeck concurrent {TIMES} the sequential "
                          "floor", per_round(results, gather, floor), 1.05, "x",
                          _totals(results, floor, gather)))
    return goals


def trace_gaps(trace: list[tuple[float, str]]) -> dict[str, float]:
    """Where a traced run's time went, phase by phase, from the client's side of a gateway that
    serves one request at a time: ``busy`` (something out), ``idle`` (nothing out: the gateway
    waited for the client), ``lead`` (from the phase's start to its first send), the most out at
    once, and the mean gap between answers (the gateway's service time when it is kept busy).
    """
    summary: dict[str, float] = defaultdict(float)
    phase, out, since, last_answer, started = 0, 0, 0.0, None, 0.0
    for at, what in trace:
        name = ("create", "delete")[min(phase, 1)]
        if what == "|":
            phase += 1
            started, last_answer = at, None
            continue
        if what == "R":
            summary[f"{name} resent"] += 1
            continue
        if what == ">" and f"{name} lead" not in summary:
            summary[f"{name} lead"] = at - started
            since = at
        if out == 0:
            summary[f"{name} idle"] += at - since
        else:
            summary[f"{name} busy"] += at - since
        since = at
        if what == ">":
            out += 1
            summary[f"{name} sent"] += 1
            summary[f"{name} most out"] = max(summary[f"{name} most out"], out)
        else:
            out = max(0, out - 1)
            if last_answer is not None:
                summary[f"{name} answers"] += 1
                summary[f"{name} answer gaps"] += at - last_answer
            last_answer = at
    return dict(summary)


def trace_summary(results: dict[str, list[dict[str, Any]]]) -> str:
    """A table of :func:`trace_gaps` per client (medians over rounds), in milliseconds; and
    the idle time per request sent, in microseconds: for a client with one request out at a
    time, how long it takes from an answer to its next request (its turnaround)."""
    table = Table(["client", "phase", "lead ms", "busy ms", "idle ms", "idle µs / request",
                   "mean answer gap ms", "most out", "resent"])
    for client, runs in results.items():
        gaps = [trace_gaps(r.get("trace") or []) for r in runs]
        for phase in ("create", "delete"):
            def med(key: str, gaps: list[dict[str, float]] = gaps, phase: str = phase) -> float:
                return median(g.get(f"{phase} {key}", 0.0) for g in gaps)
            mean_gap = median(g.get(f"{phase} answer gaps", 0.0)
                              / max(1.0, g.get(f"{phase} answers", 0.0)) for g in gaps)
            per_request = median(g.get(f"{phase} idle", 0.0) / max(1.0, g.get(f"{phase} sent", 0.0))
                                 for g in gaps)
            table.add(_DESCRIPTION.get(client, client), phase, f"{med('lead') * 1e3:.2f}",
                      f"{med('busy') * 1e3:.1f}", f"{med('idle') * 1e3:.2f}",
                      f"{per_request * 1e6:.0f}", f"{mean_gap * 1e3:.3f}",
                      f"{med('most out'):.0f}", f"{med('resent'):.0f}")
    return table.render()


def _idle(results: dict[str, list[dict[str, Any]]], client: str) -> tuple[float, list[float]]:
    """Median over ``client``'s traced rounds of the gateway's wait for it, seconds a run; and
    each round's wait per request sent, seconds (a one-at-a-time client's turnaround). NaN
    and no rounds: not traced."""
    runs = [trace_gaps(r.get("trace") or []) for r in results.get(client, [])]
    if not runs:
        return float("nan"), []
    idle = [g.get("create idle", 0.0) + g.get("delete idle", 0.0) for g in runs]
    sent = [max(1.0, g.get("create sent", 0.0) + g.get("delete sent", 0.0)) for g in runs]
    return median(idle), [i / n for i, n in zip(idle, sent, strict=True)]


def _turnaround(rounds: list[float]) -> str:
    """A client's turnaround: the median of its rounds, and their range, in µs."""
    if not rounds:
        return "not traced"
    return (f"{median(rounds) * 1e6:.0f} µs a request (rounds {min(rounds) * 1e6:.0f}–"
            f"{max(rounds) * 1e6:.0f})")


def traced_goals(results: dict[str, list[dict[str, Any]]]) -> list[Goal]:
    """The fast-gateway goals by what a client controls, from the traced rounds: the time the
    gateway waits for it. A client cannot shorten the gateway's service time (the mean answer
    gap is the same for every client), so a concurrent client is ahead of the sequential
    floor by the floor's wait, and one sequential client ahead of another by the difference
    of their turnarounds -- differences of a fraction of a percent of a run, which the ratio
    rows cannot resolve from 9 rounds on this machine, and these measure outright."""
    goals = []
    for kind, name in (("natpmp", "NAT-PMP"), ("pcp", "PCP")):
        ours, _ = _idle(results, f"natdeck-{kind}-gather")
        floor, _ = _idle(results, f"floor-{kind}")
        goals.append(Goal(f"fast gateway (traced), {name}: the gateway's wait for natdeck "
                          f"concurrent {TIMES} its wait for the sequential floor, a run",
                          ours / floor if floor > 0 else float("nan"), 1.0, "x",
                          f"natdeck {ours * 1e3:.2f} ms, floor {floor * 1e3:.2f} ms"))
    _, peer_rounds = _idle(results, "py-natpmp")
    peer = median(peer_rounds) if peer_rounds else float("nan")
    # Beside each, the bare client that waits the same way (nothing checked): what the
    # event loop, or the blocking socket, takes of the turnaround before natdeck's code.
    for mode, how, bare, bare_name in (("seq", "sequential", "asyncio", "bare asyncio"),
                                       ("blocking", "`BlockingClient`", "floor", "bare blocking")):
        for kind, name in (("natpmp", "NAT-PMP"), ("pcp", "PCP")):
            _, rounds = _idle(results, f"natdeck-{kind}-{mode}")
            _, bare_rounds = _idle(results, f"{bare}-{kind}")
            turnaround = median(rounds) if rounds else float("nan")
            goals.append(Goal(f"fast gateway (traced), {name}: natdeck {how} turnaround "
                              f"{TIMES} py-natpmp's (NAT-PMP)",
                              turnaround / peer if peer > 0 else float("nan"), 1.0, "x",
                              f"natdeck {_turnaround(rounds)}, py-natpmp "
                              f"{_turnaround(peer_rounds)}, {bare_name} {name} "
                              f"{_turnaround(bare_rounds)}"))
    return goals


def render(results: dict[str, list[dict[str, Any]]], count: int,
           console: Console = "fast", pinned: bool = False) -> str:
    """The Markdown table (medians over rounds) and its notes."""
    rounds = len(next(iter(results.values())))
    table = Table(["client", "create ms", "delete ms", "total ms", "rounds' range ms",
                   f"{TIMES} floor", "requests at gateway", "retransmitted", "client CPU ms"])
    for client in results:
        runs = results[client]
        floor_runs = results.get(_FLOOR[client], [])
        # The ratio is taken within each round, against the same round's floor.
        ratios = [run["total"] / floor["total"] for run, floor in zip(runs, floor_runs,
                                                                       strict=False)]
        requests = median(r["gateway_requests"] for r in runs)
        retransmitted = median(_retransmissions(client, r, count) for r in runs)
        cpu = median(r["cpu"] + r["child_cpu"] for r in runs)
        failures = sum(r["error_count"] for r in runs) + sum(r["rules_left"] for r in runs)
        name = _DESCRIPTION.get(client, client) + (f" ({failures} failures!)" if failures else "")
        table.add(name, ms(median(r["create"] for r in runs)),
                  ms(median(r["delete"] for r in runs)), ms(median(r["total"] for r in runs)),
                  spread(r["total"] for r in runs),
                  f"{median(ratios):.2f}{TIMES}" if ratios else "—",
                  f"{requests:,.0f}", f"{retransmitted:,.0f}", ms(cpu))
    return "\n".join([
        f"### Mapping throughput on a {SPEED[console]}: create {count} TCP mappings, then "
        "delete them",
        "",
        f"Median of {rounds} interleaved round{'s' if rounds != 1 else ''}; miniupnpd "
        f"restarted empty before every run. *{TIMES} floor*: total time over the same round's "
        "bare UDP client of the same protocol (pre-encoded requests, one at a time), i.e. over the "
        "gateway's own service time. *requests at gateway*: counted by nftables at port 5351 "
        f"(the least is {2 * count}: one per create, one per delete). *client CPU*: "
        "`time.process_time()` of the client process, plus its children's for natpmpc."
        + (PINNED if pinned else SHARED),
        "",
        table.render(),
    ])


def notes(results: dict[str, list[dict[str, Any]]], count: int) -> list[str]:
    """Sentences about what the numbers show (extra requests, who bounds whom)."""
    lines = []
    for client, runs in results.items():
        extra = median(r["gateway_requests"] for r in runs) - 2 * count
        resent = median(_retransmissions(client, r, count) for r in runs)
        if client == "natpmpc":
            lines.append(f"- natpmpc asks the external address before every request: "
                         f"{2 * count} of its {2 * count + extra:,.0f} requests, by design.")
        elif client.startswith("natdeck") and "natpmp" in client and extra - resent > 1:
            lines.append(f"- {_DESCRIPTION[client]}: {extra - resent:,.0f} external-address "
                         "requests where one would do (NAT-PMP's mapping answer does not carry "
                         "the address, and each concurrent first mapping asks for it while none "
                         "is known).")
        elif extra - resent > 1:
            lines.append(f"- {_DESCRIPTION[client]}: {extra - resent:,.0f} requests beyond one "
                         "per operation that were not retransmissions.")
        if resent > 0:
            lines.append(f"- {_DESCRIPTION[client]}: {resent:,.0f} retransmissions, each one "
                         "more request the gateway had to serve.")
    for kind in ("pcp", "natpmp"):
        floor = median(r["total"] for r in results.get(f"floor-{kind}", []))
        if floor == floor:
            per_request = floor / (2 * count) * 1e3
            lines.append(f"- The gateway's own service time (the {kind.upper()} floor) is "
                         f"{per_request:.1f} ms per request on average.")
            break
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", nargs="+", default=list(CLIENTS), choices=CLIENTS)
    parser.add_argument("--console", choices=("fast", "slow"), default="fast",
                        help="the gateway's speed (see Lab.console)")
    parser.add_argument("--trace", metavar="FILE", type=Path,
                        help="also write every run's packet times there (JSON), with the "
                             "gaps in which the gateway waited for the client")
    parser.add_argument("--pin", action="store_true",
                        help="miniupnpd on one CPU and each client on another (needs 2 cores): the "
                             "pacing alone, without the client's CPU taking the gateway's core")
    args = parser.parse_args(argv)
    with Lab.create() as lab:
        results = measure(lab, args.count, args.rounds, tuple(args.clients), args.console,
                          trace=args.trace is not None, pin=args.pin)
    if args.trace is not None:
        args.trace.write_text(json.dumps(results))
        print(trace_summary(results))
        print()
    print(render(results, args.count, args.console, pinned=args.pin))
    print()
    print("\n".join(notes(results, args.count)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
