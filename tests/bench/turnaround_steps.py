"""Where a sequential natdeck's turnaround goes on the lab's fast miniupnpd, step by step.

A client with one request out makes the gateway wait, after each answer, until its next
request is out (the traced rounds of :mod:`tests.bench.lab_throughput` measure that wait per
client). This cuts natdeck's into its steps, each timed where it ends, for every answer that
is followed by a request (100 maps, then their deletes, as in the throughput rounds): the
answer decoded and checked (:func:`engine.transport.accepted`), matched and taken by its
exchange, the mapping back in the caller's hands, the caller's next call, that request
validated and built into a packet (a dialect's ``map``), the exchange, its window and its
timers up to the socket, and the socket's send call itself (on the lab's veth pair the kernel
runs the gateway namespace's receive path, netfilter and miniupnpd's wake-up included, inside
that call). Each mark is one more call on a path that runs cold (after the gateway's few
milliseconds asleep): the total runs above the traced rounds' turnaround of the same client,
and the steps are to be read as shares of it.

Runs natdeck in the lab's client namespace (this file as a script: ``client JSON``), miniupnpd
restarted empty before each run and pinned as the throughput rounds are.

    .venv/bin/python -m tests.bench.turnaround_steps [--rounds 3] [--count 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.lab.netlab import Lab

#: The clients timed: (name, protocol, driven by asyncio).
CLIENTS = (("natdeck NAT-PMP, `BlockingClient`", "natpmp", False),
           ("natdeck PCP, `BlockingClient`", "pcp", False),
           ("natdeck NAT-PMP, sequential (asyncio)", "natpmp", True),
           ("natdeck PCP, sequential (asyncio)", "pcp", True))
#: Each step's mark, in the order a turnaround passes them, and what the step is.
STEPS = (("<", "datagram in"), ("a", "decode and check"), ("m", "match, take"),
         ("u", "to the caller"), ("c", "caller's next call"), ("e", "validate, build packet"),
         ("k", "exchange, window, timers"), (">", "socket send call"))
_ORDER = "".join(mark for mark, _ in STEPS)


# -- in the client namespace ---------------------------------------------------------------------


def _marked(marks: list[tuple[str, float]], function: Callable[..., Any], before: str | None,
            after: str | None) -> Callable[..., Any]:
    clock = time.perf_counter

    def marked(*args: Any, **kwargs: Any) -> Any:
        if before:
            marks.append((before, clock()))
        result = function(*args, **kwargs)
        if after:
            marks.append((after, clock()))
        return result

    return marked


def _instrument(marks: list[tuple[str, float]]) -> None:
    """Mark each step's end in natdeck's code, by wrapping the functions that end it."""
    import engine.blocking
    import engine.transport
    import engine.udp
    from engine.dialects.natpmp import NatPmpDialect
    from engine.dialects.pcp import PcpDialect
    from engine.exchange import Exchange

    accepted = _marked(marks, engine.transport.accepted, "<", "a")
    # Each channel calls it by its module's global name: the asyncio one, the blocking one.
    engine.transport.accepted = accepted
    engine.blocking.accepted = accepted  # type: ignore[attr-defined]
    Exchange.receive = _marked(marks, Exchange.receive, None, "m")  # type: ignore[method-assign]
    for dialect in (NatPmpDialect, PcpDialect):
        dialect.map = _marked(marks, dialect.map, None, "e")  # type: ignore[method-assign]
    engine.udp.ConnectedUdp.send = _marked(  # type: ignore[method-assign]
        marks, engine.udp.ConnectedUdp.send, "k", ">")


def steps(marks: list[tuple[str, float]]) -> dict[str, list[float]]:
    """Each step's seconds, for every turnaround whose marks came in :data:`STEPS`' order
    (from an answer to the next request's send; others, such as the NAT-PMP address request
    before the first map, are left out); ``"total"``: from the datagram to the send's end."""
    found: dict[str, list[float]] = {name: [] for _, name in STEPS[1:]}
    found["total"] = []
    for start, (mark, _) in enumerate(marks):
        run = marks[start:start + len(_ORDER)]
        if mark != "<" or "".join(m for m, _ in run) != _ORDER:
            continue
        for (_, began), (_, ended), (_, name) in zip(run, run[1:], STEPS[1:], strict=False):
            found[name].append(ended - began)
        found["total"].append(run[-1][1] - run[0][1])
    return found


def client(config: dict[str, Any]) -> dict[str, float]:
    """Map ``count`` ports one at a time, then delete them, as the throughput rounds do (so
    that the gateway's table, and with it its time a request and the client's sleep between
    answers, grows as theirs does); each step's median, in seconds."""
    import engine
    import engine.blocking
    from engine.protocols import Protocol

    marks: list[tuple[str, float]] = []
    _instrument(marks)
    clock, mark = time.perf_counter, marks.append
    gateway, local, via = config["gateway"], config["local"], config["via"]
    ports = range(config["first_port"], config["first_port"] + config["count"])
    if not config["asyncio"]:
        with engine.BlockingClient(gateway, local_address=local) as blocking:
            mappings = []
            for port in ports:
                mark(("c", clock()))
                mappings.append(blocking.map(Protocol.TCP, port, lifetime=3600, via=via))
                mark(("u", clock()))
            for mapping in mappings:
                mark(("c", clock()))
                blocking.delete(mapping)
                mark(("u", clock()))
    else:
        async def run() -> None:
            async with engine.GatewayClient(gateway, local_address=local) as gateway_client:
                mappings = []
                for port in ports:
                    mark(("c", clock()))
                    mappings.append(await gateway_client.map(Protocol.TCP, port,
                                                             lifetime=3600, via=via))
                    mark(("u", clock()))
                for mapping in mappings:
                    mark(("c", clock()))
                    await gateway_client.delete(mapping)
                    mark(("u", clock()))

        asyncio.run(run())
    return {name: statistics.median(times) if times else float("nan")
            for name, times in steps(marks).items()}


# -- the runner ----------------------------------------------------------------------------------


def measure(lab: Lab, count: int, rounds: int,
            pin: bool = False) -> dict[str, list[dict[str, float]]]:
    """``rounds`` interleaved rounds of every client; each run's step medians, per client."""
    from tests.bench.lab_throughput import FIRST_PORT, _on_cpus

    lab.console = "fast"
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in CLIENTS}
    gateway_cpu, client_cpu = sorted(os.sched_getaffinity(0))[:2] if pin else (0, 0)
    for number in range(rounds):
        shift = number % len(CLIENTS)
        for name, via, on_loop in CLIENTS[shift:] + CLIENTS[:shift]:
            with _on_cpus({gateway_cpu} if pin else None):
                lab.restart_gateway(keep_mappings=False)
            config = {"gateway": lab.gateway_lan, "local": lab.client_address, "via": via,
                      "asyncio": on_loop, "first_port": FIRST_PORT, "count": count}
            with _on_cpus({client_cpu} if pin else None):
                results[name].append(lab.run_python_in_client(
                    Path(__file__), ["client", json.dumps(config)], timeout=300))
    return results


def render(results: dict[str, list[dict[str, float]]]) -> str:
    """One row per client: each step's median over the rounds, in µs."""
    from tests.bench.report import Table, median

    names = [name for _, name in STEPS[1:]] + ["total"]
    table = Table(["client"] + [f"{name} µs" for name in names])
    for client_name, runs in results.items():
        table.add(client_name, *(f"{median(run[name] for run in runs) * 1e6:.1f}"
                                 for name in names))
    return table.render()


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["client"]:  # in the lab's client namespace
        print(json.dumps(client(json.loads(arguments[1]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", action="store_true",
                        help="miniupnpd on one CPU and the client on another (needs 2 cores)")
    args = parser.parse_args(arguments)
    from tests.lab.netlab import Lab

    with Lab.create() as lab:
        print(render(measure(lab, args.count, args.rounds, args.pin)))
    return 0


if __name__ == "__main__":
    # As a script in the namespace: the repo is on PYTHONPATH (Lab.python_env); a checkout too.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    raise SystemExit(main())
