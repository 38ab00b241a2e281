"""Run every natdeck benchmark and print the results as Markdown (``make bench``).

    .venv/bin/python -m tests.bench.run_all            # the full run (a few minutes)
    .venv/bin/python -m tests.bench.run_all --quick    # a smoke run (well under a minute)

The machine comes first (CPU, cores, Python, the peers' versions), then one section per
benchmark. natdeck and its peers (natpmpc, py-natpmp, a bare UDP client as the floor) run
in the same run, in interleaved rounds: the ratios are what to compare across machines, the
absolute times only on this one. The lab benchmarks (a real miniupnpd in network
namespaces) need root and the lab's Debian packages; without them they are skipped, saying
why. Progress goes to stderr; stdout is the Markdown alone.

Nothing is sent anywhere but loopback and the lab's own namespaces.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from tests.bench import client_cost, fallback, lab_throughput, machine, recovery, scale
from tests.lab.netlab import Lab, LabError, ensure_lab_dependencies


@dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run."""

    lab_count: int
    lab_rounds: int
    recovery_count: int
    recovery_rounds: int
    address_changes: int
    loopback_count: int
    loopback_rounds: int
    codec_number: int
    fallback_rounds: int
    tui_ticks: int
    scale_counts: tuple[int, ...]


FULL = Plan(lab_count=100, lab_rounds=3, recovery_count=100, recovery_rounds=1,
            address_changes=2, loopback_count=300, loopback_rounds=3, codec_number=20_000,
            fallback_rounds=5, tui_ticks=20, scale_counts=(100, 1000))
QUICK = Plan(lab_count=20, lab_rounds=1, recovery_count=20, recovery_rounds=1,
             address_changes=1, loopback_count=50, loopback_rounds=1, codec_number=2_000,
             fallback_rounds=1, tui_ticks=3, scale_counts=(100,))


def progress(text: str) -> None:
    """A line on stderr (stdout is kept for the Markdown)."""
    print(text, file=sys.stderr, flush=True)


def section(name: str, run: Callable[[], str]) -> None:
    """Run one benchmark and print its Markdown; a failure is printed, not raised."""
    progress(f"-- {name} ...")
    start = time.perf_counter()
    try:
        text = run()
    except Exception as exc:
        progress(traceback.format_exc())
        text = f"({name} failed: {type(exc).__name__}: {exc})"
    progress(f"-- {name}: {time.perf_counter() - start:.1f} s")
    print(text)
    print(flush=True)


def lab_sections(plan: Plan) -> None:
    """The two benchmarks on the real miniupnpd, on one lab."""
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
        def throughput() -> str:
            results = lab_throughput.measure(lab, plan.lab_count, plan.lab_rounds)
            notes = lab_throughput.notes(results, plan.lab_count)
            return lab_throughput.render(results, plan.lab_count) + "\n\n" + "\n".join(notes)

        def recover() -> str:
            results = recovery.measure(lab, plan.recovery_count, plan.recovery_rounds,
                                       plan.address_changes)
            return recovery.render(results, plan.recovery_count)

        section("1. mapping throughput on miniupnpd", throughput)
        section("4. recovery on miniupnpd", recover)


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

    def cost() -> str:
        results, skipped = client_cost.measure(plan.loopback_count, plan.loopback_rounds)
        return (client_cost.render(results, plan.loopback_count, skipped) + "\n\n"
                + client_cost.codec_table(plan.codec_number))

    section("2. client cost on loopback", cost)
    section("3. fallback", lambda: fallback.render(
        fallback.measure(plan.fallback_rounds, 0.005)))
    section("5. TUI frame", lambda: scale.tui_frames(plan.tui_ticks))
    section("5. memory and CPU per mapping", lambda: scale.manager_scale(
        list(plan.scale_counts)))
    progress(f"all benchmarks: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
