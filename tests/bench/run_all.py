"""Run every natdeck benchmark and print the results as Markdown (``make bench``).

    .venv/bin/python -m tests.bench.run_all            # the full run (a few minutes)
    .venv/bin/python -m tests.bench.run_all --quick    # a smoke run (well under a minute)

The machine comes first (CPU, cores, Python, the peers' versions, the load average), then
one section per benchmark, each with the goals of issue 15 it measured beside the peers of the
same rounds, and at the end every goal in one table. The lab benchmark runs against both
gateway speeds: a fast miniupnpd (its log lines to /dev/null) and a slow one (to the real
/dev/console). natdeck and its peers (natpmpc, py-natpmp, a bare UDP client as the floor) run
in the same run, in interleaved rounds: the ratios are what to compare across machines, the
absolute times only on this one. The lab benchmarks (a real miniupnpd in network
namespaces) need root and the lab's Debian packages; without them they are skipped, saying
why. Progress goes to stderr; stdout is the Markdown alone.

Nothing is sent anywhere but loopback and the lab's own namespaces.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from tests.bench import (
    client_cost,
    fallback,
    lab_throughput,
    machine,
    oneshot,
    recovery,
    scale,
    tui_tick,
    turnaround_steps,
    upnp_cold,
)
from tests.bench.report import Goal, goal_table
from tests.lab.netlab import Lab, LabError, ensure_lab_dependencies

#: What a section returns: its Markdown, and the goals of issue 15 it measured.
Outcome = str | tuple[str, list[Goal]]


@dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run."""

    lab_count: int
    lab_rounds: int
    traced_rounds: int
    slow_count: int
    slow_rounds: int
    recovery_count: int
    recovery_rounds: int
    address_changes: int
    loopback_count: int
    loopback_rounds: int
    codec_number: int
    fallback_rounds: int
    tui_ticks: int
    scale_counts: tuple[int, ...]
    oneshot_runs: int


# Issue 15 measured 50 maps then 50 deletes in 5 interleaved rounds on the fast gateway. The
# differences its goals ask about there are a few tenths of a percent, and one run's total moves
# 1-3 % with the gateway: 100 and 100 in 9 rounds narrow the median of the per-round ratios
# (about 3 minutes for both core layouts). The slow gateway serves 20-180 ms a request, so
# fewer rounds there. A one-at-a-time client's turnaround after the gateway's 3 ms moves from
# round to round by a factor of two or three (the virtual CPU's wake-up from idle: py-natpmp
# 38-110 µs a request, natdeck's BlockingClient 48-151): 9 traced rounds, not 3.
FULL = Plan(lab_count=100, lab_rounds=9, traced_rounds=9, slow_count=50, slow_rounds=3,
            recovery_count=100, recovery_rounds=1, address_changes=2, loopback_count=300,
            loopback_rounds=5, codec_number=20_000, fallback_rounds=5, tui_ticks=20,
            scale_counts=(100, 1000), oneshot_runs=10)
QUICK = Plan(lab_count=10, lab_rounds=1, traced_rounds=1, slow_count=5, slow_rounds=1,
             recovery_count=20, recovery_rounds=1, address_changes=1, loopback_count=50,
             loopback_rounds=1, codec_number=2_000, fallback_rounds=1, tui_ticks=3,
             scale_counts=(100,), oneshot_runs=2)

#: Whether the lab's throughput runs pin miniupnpd and the client to a core each: only with
#: two cores or more to pin to.
PIN = len(os.sched_getaffinity(0)) >= 2

GOALS: list[Goal] = []
"""Every goal measured in this run, for the summary table at the end."""


def progress(text: str) -> None:
    """A line on stderr (stdout is kept for the Markdown)."""
    print(text, file=sys.stderr, flush=True)


def section(name: str, run: Callable[[], Outcome]) -> None:
    """Run one benchmark and print its Markdown; a failure is printed, not raised."""
    progress(f"-- {name} ...")
    start = time.perf_counter()
    try:
        outcome = run()
    except Exception as exc:
        progress(traceback.format_exc())
        outcome = f"({name} failed: {type(exc).__name__}: {exc})"
    progress(f"-- {name}: {time.perf_counter() - start:.1f} s")
    text, goals = (outcome, []) if isinstance(outcome, str) else outcome
    GOALS.extend(goals)
    if goals:
        text += "\n\n" + goal_table(goals)
    print(text)
    print(flush=True)


def lab_sections(plan: Plan) -> None:
    """The benchmarks on the real miniupnpd, on one lab, at both gateway speeds."""
    reason = ensure_lab_dependencies()
    if reason is not None:
        print(f"(Lab benchmarks skipped: {reason}.)\n")
        return
    try:
        lab = Lab.create()
    except LabError as exc:
        print(f"(Lab benchmarks skipped: the lab could not be built: {exc}.)\n")
        return
    with lab:
        def fast() -> Outcome:
            # Pinned (miniupnpd and the client each on a core of their own, as a router is a
            # machine of its own) for the goals; then the same rounds on shared cores, which
            # is what this 2-core machine does unasked, for comparison.
            pinned = lab_throughput.measure(lab, plan.lab_count, plan.lab_rounds,
                                            console="fast", pin=PIN)
            shared = lab_throughput.measure(lab, plan.lab_count, plan.lab_rounds,
                                            console="fast")
            return ("\n\n".join([
                lab_throughput.render(pinned, plan.lab_count, "fast", pinned=PIN),
                "\n".join(lab_throughput.notes(pinned, plan.lab_count)),
                lab_throughput.render(shared, plan.lab_count, "fast"),
            ]), lab_throughput.fast_goals(pinned, " (pinned)" if PIN else "")
                + lab_throughput.fast_goals(shared, " (shared cores)"))

        def traced() -> Outcome:
            # Separate rounds: marking each packet costs the client about a microsecond,
            # which the goals' rounds are not to carry.
            results = lab_throughput.measure(lab, plan.lab_count, plan.traced_rounds,
                                             lab_throughput.TRACED_CLIENTS, console="fast",
                                             trace=True, pin=PIN)
            return (f"### Where the fast gateway's time went: {plan.lab_count} creates then "
                    f"{plan.lab_count} deletes, every packet's time taken at the client\n\n"
                    f"Median of {plan.traced_rounds} interleaved rounds"
                    f"{', pinned as above' if PIN else ''}. *busy*: time with a request out; "
                    "*idle*: time with none out, in which the gateway waited for the client; "
                    "per request sent, that is a one-at-a-time client's turnaround, from an "
                    "answer to its next request. *mean answer gap*: the gateway's service time "
                    "while it is kept busy. *most out*: requests out at once. A turnaround "
                    "moves from round to round by a factor of two or three here (the virtual "
                    "CPU waking from idle): the goals give each client's range.\n\n"
                    + lab_throughput.trace_summary(results),
                    lab_throughput.traced_goals(results))

        def steps() -> str:
            results = turnaround_steps.measure(lab, plan.lab_count, plan.traced_rounds, pin=PIN)
            return (f"### Where a sequential natdeck's turnaround goes, step by step: "
                    f"{plan.lab_count} maps, then their deletes\n\n"
                    f"Median of {plan.traced_rounds} interleaved rounds of each run's median "
                    f"turnaround{', pinned as above' if PIN else ''}: from an answer's datagram "
                    "to the end of the next request's send, each step timed where it ends "
                    "(`tests/bench/turnaround_steps.py`). *decode and check*: the datagram "
                    "checked and decoded; *match, take*: matched to its request and taken; *to "
                    "the caller*: epochs, the window's round trip, the grant read into a "
                    "mapping, back to the caller (on asyncio, the event loop's wake-up of the "
                    "caller too); *validate, build packet*: the next request validated and "
                    "encoded; *exchange, window, timers*: the exchange and its retransmission "
                    "schedule up to the socket; *socket send call*: the kernel's, which on the "
                    "lab's veth pair runs the gateway namespace's receive path (netfilter, "
                    "miniupnpd's wake-up) inside the call, as it does for every client. Each "
                    "mark is one more call on a cold path, so the total runs above the traced "
                    "table's turnaround of the same client: the steps are shares of it.\n\n"
                    + turnaround_steps.render(results))

        def recover() -> str:
            lab.restart_gateway(console="fast")
            results = recovery.measure(lab, plan.recovery_count, plan.recovery_rounds,
                                       plan.address_changes)
            return recovery.render(results, plan.recovery_count)

        def slow() -> Outcome:
            try:
                results = lab_throughput.measure(lab, plan.slow_count, plan.slow_rounds,
                                                 lab_throughput.SLOW_CLIENTS, console="slow",
                                                 pin=PIN)
            finally:
                lab.console = "fast"
            notes = lab_throughput.notes(results, plan.slow_count)
            return (lab_throughput.render(results, plan.slow_count, "slow", pinned=PIN)
                    + "\n\n"
                    + "\n".join(notes), lab_throughput.slow_goals(results))

        section("1. mapping throughput on a fast miniupnpd", fast)
        section("1. where the fast gateway's time went (traced)", traced)
        section("1. a sequential turnaround, step by step", steps)
        section("4. recovery on miniupnpd", recover)
        section("1. mapping throughput on a slow miniupnpd", slow)
        # Last: it leaves miniupnpd UPnP-only (enable_natpmp=no).
        rounds = plan.lab_rounds * 3
        section("7. UPnP cold start", lambda: "### Time to a mapping from a cold start on a "
                "UPnP-only gateway (natdeck auto vs upnpc)\n\n"
                + upnp_cold.render(upnp_cold.measure(lab, rounds), rounds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    parser.add_argument("--no-lab", action="store_true", help="skip the miniupnpd benchmarks")
    parser.add_argument("--with-10k", action="store_true",
                        help="also 10,000 managed mappings (manager_scale: ~5 more minutes, "
                        "most of it tracemalloc)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.with_10k:
        plan = dataclasses.replace(plan, scale_counts=(*plan.scale_counts, 10000))
    started = time.perf_counter()
    print("## natdeck benchmarks" + (" (quick smoke run)" if args.quick else ""))
    print()
    print(machine.describe())
    print(flush=True)
    if args.no_lab:
        print("(Lab benchmarks skipped: --no-lab.)\n")
    else:
        lab_sections(plan)

    def cost() -> Outcome:
        # One core for the goals (the client's own cost, steady); shared cores beside it.
        one, skipped = client_cost.measure(plan.loopback_count, plan.loopback_rounds, "one")
        shared, _ = client_cost.measure(plan.loopback_count, plan.loopback_rounds, "shared")
        return ("\n\n".join([
            client_cost.render(one, plan.loopback_count, skipped, "one"),
            client_cost.render(shared, plan.loopback_count, skipped, "shared"),
            client_cost.codec_table(plan.codec_number),
        ]), client_cost.goals(one, "one") + client_cost.goals(shared, "shared"))

    def one_shot() -> Outcome:
        times = oneshot.measure(plan.oneshot_runs)
        imports, interpreter = oneshot.import_seconds(plan.oneshot_runs)
        return (oneshot.render(times, imports, interpreter),
                oneshot.goals(times, imports, interpreter))

    section("2. client cost on loopback", cost)
    section("3. fallback", lambda: fallback.render(
        fallback.measure(plan.fallback_rounds, 0.005)))
    section("5. TUI frame", lambda: scale.tui_frames(plan.tui_ticks))
    section("5. TUI tick at 80x24 and 120x40 (goal ≤ 16 ms median, ≤ 33 ms worst)",
            lambda: "```\n" + tui_tick.report(1000, plan.tui_ticks)[0] + "\n```")
    section("5. memory and CPU per mapping", lambda: scale.manager_scale(
        list(plan.scale_counts)))
    section("6. one-shot process", one_shot)
    print("### The goals of issue 15, measured in this run")
    print()
    print(goal_table(GOALS) if GOALS else "(No goal was measured.)")
    print()
    print(f"Load average at the end: {machine.load_average()}.")
    print(flush=True)
    progress(f"all benchmarks: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
