"""What one managed mapping costs: memory and CPU per mapping at 100, 1,000 and 10,000 mappings.

Not a pytest module; run it by hand::

    .venv/bin/python -m tests.bench.manager_scale
    .venv/bin/python -m tests.bench.manager_scale --counts 100 1000 --lifetime 1200

For each count, a :class:`~engine.manager.MappingManager` and a simulated gateway
run in this process on one virtual-clock loop (loopback UDP, nothing leaves
127.0.0.1): the manager adds the mappings, then an hour of renewals passes in a
few seconds. The gateway grants ``--lifetime`` seconds, so each mapping renews
about ``3600 / (0.56 * lifetime)`` times in the hour.

Two runs per count, so that tracing does not slow the timed one:

* memory: ``tracemalloc`` (10 frames) from before the manager starts; the bytes
  still held by allocations made under engine code other than the simulator
  (any frame in ``engine/`` and none in ``engine/simulator/``), after the adds and
  again after the hour;
* CPU: ``time.process_time()`` over the adds and over the hour. The simulator runs
  in the same process; the time it spends on each datagram it receives (deciding,
  encoding and sending its answer) is measured and taken off. Its socket read and
  its loop turns are not, nor the garbage collections its objects cause, so the
  manager's figure is an upper bound of what it costs with the gateway elsewhere.

It also samples the number of asyncio tasks: the manager has one scheduler task
for all its mappings (a heap of due times), not one sleeping task per mapping; a
short-lived task exists only while a mapping's request is out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import multiprocessing
import random
import selectors
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runs from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.manager import MappingManager
from engine.protocols import Protocol
from engine.simulator import GatewayConfig, SimulatedGateway
from tests.support.manager_rig import LOOPBACK, free_udp_port, run_fast_virtual

HOUR = 3600.0
#: Real seconds the timed run waits for the gateway's process before its clock jumps.
GATEWAY_GRACE = 0.002
FIRST_PORT = 10000
#: Frames kept per allocation: enough to reach the engine frame that caused it.
FRAMES = 10


@dataclass
class Result:
    count: int
    renewals: int = 0
    add_cpu: float = 0.0
    hour_cpu: float = 0.0
    hour_sim_cpu: float = 0.0
    memory_added: int = 0
    memory_hour: int = 0
    tasks_idle: int = 0
    tasks_peak: int = 0
    all_active: bool = False


class CoreTimer:
    """Accumulates the CPU time the simulated gateway spends on each datagram it receives:
    deciding, encoding and sending its answer (all of its handling but the socket read)."""

    def __init__(self, gateway: SimulatedGateway) -> None:
        self.seconds = 0.0
        self._received = gateway._received
        gateway._received = self._timed  # type: ignore[method-assign]

    def _timed(self, data: bytes, addr: Any) -> None:
        start = time.process_time()
        try:
            self._received(data, addr)
        finally:
            self.seconds += time.process_time() - start


async def add_all(manager: MappingManager, count: int) -> None:
    # In batches: the transport bounds requests in flight anyway, and a batch of 10,000
    # coroutines waiting on its semaphore only measures the semaphore.
    for start in range(0, count, 500):
        await asyncio.gather(*(manager.add(Protocol.TCP, FIRST_PORT + i)
                               for i in range(start, min(count, start + 500))))


def engine_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes held by allocations made under engine code, simulator excluded."""
    total = 0
    for stat in snapshot.statistics("traceback"):  # grouped: far fewer than the traces
        files = [frame.filename for frame in stat.traceback]
        if any("/engine/" in f for f in files) and not any("/engine/simulator/" in f
                                                          for f in files):
            total += stat.size
    return total


class TaskCounter:
    """Counts the loop's live tasks as they are created and finish; keeps the peak."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.live = len(asyncio.all_tasks(loop))
        self.peak = self.live
        loop.set_task_factory(self._factory)

    def _factory(self, loop: asyncio.AbstractEventLoop, coro: Any,
                 **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        self.live += 1
        self.peak = max(self.peak, self.live)
        task.add_done_callback(self._done)
        return task

    def _done(self, _: asyncio.Task[Any]) -> None:
        self.live -= 1

    def reset_peak(self) -> None:
        self.peak = self.live


class _SharedClockSelector:
    """The selector of :class:`SharedClockLoop`: jumps the clock only when idle."""

    def __init__(self, real: selectors.BaseSelector, loop: SharedClockLoop) -> None:
        self._real = real
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._real.select(0)
        if events or timeout == 0:
            return events
        # The gateway is another process: give it time to answer what is out before the
        # clock jumps ahead of it. (Waiting costs this process no CPU.)
        events = self._real.select(GATEWAY_GRACE)
        if events or timeout is None:
            return events or self._real.select(None)
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class SharedClockLoop(asyncio.SelectorEventLoop):
    """A virtual clock (see :mod:`tests.support.virtual_time`) shared with the gateway's
    process through ``clock``, so that its epochs and lifetimes follow this hour."""

    def __init__(self, clock: Any, start: float = 1000.0) -> None:
        super().__init__()
        self._clock = clock
        self._now = clock.value = start
        real: selectors.BaseSelector = self._selector  # type: ignore[has-type]
        self._selector = _SharedClockSelector(real, self)

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds
            self._clock.value = self._now


def _gateway_process(conn: Any, clock: Any, lifetime: int) -> None:
    """The simulated gateway, alone in its process, on the parent's clock."""

    class Loop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return float(clock.value)

    async def serve() -> None:
        config = GatewayConfig(max_lifetime=lifetime, min_lifetime=min(120, lifetime))
        async with SimulatedGateway(LOOPBACK, 0, "203.0.113.7", config) as gateway:
            conn.send(gateway.address[1])
            await asyncio.Event().wait()  # until killed

    loop = Loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(serve())


def run(count: int, lifetime: int, *, trace: bool, profile: cProfile.Profile | None = None,
        gateway_process: bool = False) -> Result:
    """One count, traced (memory, tasks) or timed (CPU). ``gateway_process`` (timed only):
    the gateway in another process on a shared virtual clock, so that this process's CPU is
    the manager's alone -- and each renewal waits for a real answer from another process,
    with the wake-ups and cold caches of a client whose renewals are far apart."""
    result = Result(count)
    separate: tuple[Any, int] | None = None

    async def scenario() -> None:
        config = GatewayConfig(max_lifetime=lifetime, min_lifetime=min(120, lifetime))
        # Counting tasks wraps every task's creation: only in the run that is not timed.
        tasks = TaskCounter(asyncio.get_running_loop()) if trace else None
        if trace:
            tracemalloc.start(FRAMES)
        async with contextlib.AsyncExitStack() as stack:
            core_timer: CoreTimer | None = None
            if separate is None:
                gateway = await stack.enter_async_context(
                    SimulatedGateway(LOOPBACK, 0, "203.0.113.7", config))
                core_timer = CoreTimer(gateway)
                port = gateway.address[1]
            else:
                port = separate[1]
            manager = MappingManager(LOOPBACK, gateway_port=port,
                                     announce_host=LOOPBACK, announce_ports=(free_udp_port(),),
                                     multicast=False, lifetime=lifetime,
                                     rng=random.Random(count))
            async with manager:
                start = time.process_time()
                await add_all(manager, count)
                result.add_cpu = time.process_time() - start
                await asyncio.sleep(1)
                # What the adds left for the collector is not the hour's: without this, the
                # hour paid for a full pass over the 10,000 adds' objects (~10 µs a renewal),
                # a one-off of the start, not what a running manager's renewals cost. Nothing
                # is frozen: the hour's own garbage, and the passes it causes over everything
                # alive (the simulator's objects too), are counted.
                gc.collect()
                if trace:
                    result.memory_added = engine_bytes(tracemalloc.take_snapshot())
                result.tasks_idle = len(asyncio.all_tasks())
                if tasks is not None:
                    tasks.reset_peak()
                sim_before = core_timer.seconds if core_timer is not None else 0.0
                start = time.process_time()
                if profile is not None:
                    profile.enable()
                await asyncio.sleep(HOUR)
                if profile is not None:
                    profile.disable()
                result.hour_cpu = time.process_time() - start
                if core_timer is not None:
                    result.hour_sim_cpu = core_timer.seconds - sim_before
                result.tasks_peak = tasks.peak if tasks is not None else 0
                result.renewals = sum(m.renewals for m in manager.mappings.values())
                result.all_active = all(m.state == "active" for m in manager.mappings.values())
                if trace:
                    gc.collect()
                    result.memory_hour = engine_bytes(tracemalloc.take_snapshot())
                manager.keep = True  # leaving is not what is measured
        if trace:
            tracemalloc.stop()

    gc.collect()  # what the previous count left behind is not this one's to collect
    if trace or not gateway_process:
        run_fast_virtual(scenario)
        return result
    context = multiprocessing.get_context("fork")
    clock = context.RawValue("d", 1000.0)
    parent, child = context.Pipe()
    process = context.Process(target=_gateway_process, args=(child, clock, lifetime),
                              daemon=True)
    process.start()
    try:
        if not parent.poll(30):
            raise RuntimeError("the gateway process did not start")
        separate = (process, int(parent.recv()))
        loop = SharedClockLoop(clock)
        try:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(scenario())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
    finally:
        process.kill()
        process.join(10)
    return result


def per_renewal(timed: Result) -> float:
    """The manager's CPU seconds per renewal over the hour (the simulator's share taken off)."""
    manager_hour = timed.hour_cpu - timed.hour_sim_cpu
    return manager_hour / timed.renewals if timed.renewals else float("nan")


def table(results: list[tuple[Result, Result]], lifetime: int) -> str:
    lines = [
        f"Granted lifetime {lifetime} s; one simulated hour of renewals per row.",
        "",
        "| mappings | memory / mapping after add | after 1 h | CPU / add | "
        "renewals in 1 h | CPU / renewal | CPU / mapping-hour | simulator (taken off) | "
        "tasks idle / peak |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for timed, traced in results:
        n = timed.count
        manager_hour = timed.hour_cpu - timed.hour_sim_cpu
        per_renewal = manager_hour / timed.renewals if timed.renewals else float("nan")
        lines.append(
            f"| {n:,} | {traced.memory_added / n / 1024:.2f} KiB | "
            f"{traced.memory_hour / n / 1024:.2f} KiB | {timed.add_cpu / n * 1e6:.0f} µs | "
            f"{timed.renewals:,} | {per_renewal * 1e6:.0f} µs | "
            f"{manager_hour / n * 1e6:.0f} µs | {timed.hour_sim_cpu:.2f} s of "
            f"{timed.hour_cpu:.2f} s | {traced.tasks_idle} / {traced.tasks_peak} |")
    lines += [
        "",
        "Tasks counted on the whole loop (in the traced run: counting wraps every task's "
        "creation). Idle: the manager's scheduler (one task holding one loop timer, "
        "`call_at`, for the earliest due time), its probes, the simulator's worker and the "
        "benchmark itself. The peak adds the short-lived task of each mapping "
        "whose request is out (loopback answers at once, so few overlap). Not one task per "
        "mapping: a heap of due times serves them all.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--lifetime", type=int, default=3600,
                        help="lifetime the gateway grants, seconds (default 3600)")
    parser.add_argument("--gateway-process", action="store_true",
                        help="time with the gateway in another process (see run())")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write CPU per renewal (s) by count to this JSON file")
    args = parser.parse_args(argv)
    results = []
    for count in args.counts:
        wall = time.perf_counter()
        timed = run(count, args.lifetime, trace=False, gateway_process=args.gateway_process)
        traced = run(count, args.lifetime, trace=True)
        if not (timed.all_active and traced.all_active):
            print(f"{count}: not every mapping was active at the end", file=sys.stderr)
            return 1
        print(f"{count:,} mappings: {time.perf_counter() - wall:.1f} s", file=sys.stderr)
        results.append((timed, traced))
    print(table(results, args.lifetime))
    if args.json is not None:
        args.json.write_text(json.dumps({str(timed.count): per_renewal(timed)
                                         for timed, _ in results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
