"""Benchmark 3: what falling back costs -- a NAT-PMP-only gateway, and a silent one.

Simulated gateways in second processes on loopback (``python -m engine.simulator``), each
request taking ``--delay`` seconds of "processing" (default 5 ms, about miniupnpd's own service
time on an empty table) so that a round trip is visible. Every measurement uses a fresh
:class:`engine.GatewayClient` (nothing known about the gateway), and times one ``map_port``;
the mapping is then deleted, untimed. Rounds are interleaved.

- A NAT-PMP-only gateway answers PCP with NAT-PMP's 8-byte UNSUPPORTED_VERSION (RFC 6887 §9):
  ``via="auto"`` should cost one round trip more than ``via="natpmp"``.
- A silent gateway (it receives and never answers): ``map_port(timeout=T)`` gives up at the
  deadline ``T``, having spent half of it on PCP and the rest on NAT-PMP.

    .venv/bin/python -m tests.bench.fallback [--rounds 5] [--delay 0.005]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections import defaultdict
from typing import Any

import engine
from engine.protocols import Protocol
from engine.wire import natpmp
from tests.bench.report import Table, median
from tests.support.loopback import Simulator, port_free, simulator

HOST = "127.0.0.1"
LOCAL = "127.0.0.1"
#: For natpmpc, which can only talk to port 5351 (127/8 is all this machine).
PEER_HOST = "127.0.0.3"
FIRST_PORT = 30000
SILENT_TIMEOUTS = (1.0, 2.0)

_SILENT_GATEWAY = """
import asyncio, json, signal
from engine.simulator import GatewayConfig, SimulatedGateway
async def main():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with SimulatedGateway("127.0.0.1", 0, config=GatewayConfig(silent=True)) as gw:
        print(json.dumps({"host": gw.address[0], "port": gw.address[1]}), flush=True)
        await stop.wait()
asyncio.run(main())
"""


def silent_gateway() -> contextlib.AbstractContextManager[Simulator]:
    """A simulated gateway that receives every request and answers none."""
    return simulator(code=_SILENT_GATEWAY)


def floor_rtt(sim: Simulator, count: int = 20) -> float:
    """Median round trip of a bare NAT-PMP external-address request (no client code)."""
    samples = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((sim.host, sim.port))
        sock.settimeout(2.0)
        for _ in range(count):
            start = time.perf_counter()
            sock.send(natpmp.ExternalAddressRequest().encode())
            sock.recv(64)
            samples.append(time.perf_counter() - start)
    return median(samples)


async def time_map(sim: Simulator, port: int, via: engine.Via,
                   timeout: float | None = 30.0) -> dict[str, Any]:
    """One ``map_port`` from a client that knows nothing; deletes what it got (untimed)."""
    loop = asyncio.get_running_loop()
    async with engine.GatewayClient(sim.host, sim.port, local_address=LOCAL) as client:
        start = loop.time()
        try:
            mapping = await client.map(Protocol.TCP, port, via=via, timeout=timeout)
        except engine.GatewayTimeout as exc:
            return {"time": loop.time() - start, "via": None, "tries": exc.tries,
                    "sent": client.channel.sent}
        took = loop.time() - start
        sent = client.channel.sent
        await mapping.delete()
        return {"time": took, "via": mapping.via, "tries": None, "sent": sent}


def natpmpc_map(sim: Simulator, port: int) -> dict[str, Any]:
    """natpmpc's time to a mapping (a process, its address request, its mapping)."""
    argv = ["natpmpc", "-g", sim.host, "-a", str(port), str(port), "tcp"]
    start = time.perf_counter()
    done = subprocess.run([*argv, "3600"], capture_output=True, text=True, check=False,
                          timeout=150, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - start
    subprocess.run([*argv, "0"], capture_output=True, check=False, timeout=150,
                   stdin=subprocess.DEVNULL)
    ok = done.returncode == 0 and "Mapped public port" in done.stdout
    return {"time": took, "via": "natpmp" if ok else None, "tries": None, "sent": 2}


def measure(rounds: int, delay: float) -> dict[str, Any]:
    """Interleaved rounds over every case; returns samples per case and the floor RTT."""
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    delay_arg = ("--delay", str(delay))
    peers = port_free(PEER_HOST, 5351)
    with contextlib.ExitStack() as stack:
        both = stack.enter_context(simulator(*delay_arg, host=HOST, port=0))
        only = stack.enter_context(simulator("--natpmp-only", *delay_arg, host=HOST, port=0))
        peer_only = (stack.enter_context(simulator("--natpmp-only", *delay_arg, host=PEER_HOST))
                     if peers else None)
        silent = stack.enter_context(silent_gateway())
        rtt = floor_rtt(only)
        port = FIRST_PORT
        cases: list[tuple[str, Any]] = [
            ("pcp-direct", lambda p: asyncio.run(time_map(both, p, "pcp"))),
            ("auto-both", lambda p: asyncio.run(time_map(both, p, "auto"))),
            ("natpmp-direct", lambda p: asyncio.run(time_map(only, p, "natpmp"))),
            ("auto-natpmp-only", lambda p: asyncio.run(time_map(only, p, "auto"))),
        ]
        if peer_only is not None:
            cases.append(("natpmpc", lambda p: natpmpc_map(peer_only, p)))
        for number in range(rounds):
            shift = number % len(cases)
            for name, run in cases[shift:] + cases[:shift]:
                port += 1
                samples[name].append(run(port))
        # The silent gateway takes its deadline every time: one run of each is enough.
        for timeout in SILENT_TIMEOUTS:
            vias: tuple[engine.Via, ...] = ("auto", "pcp", "natpmp")
            for via in vias:
                port += 1
                samples[f"silent-{via}-{timeout:g}"].append(
                    asyncio.run(time_map(silent, port, via, timeout)))
    return {"samples": samples, "rtt": rtt, "delay": delay, "rounds": rounds}


_LABELS = {
    "pcp-direct": ("both protocols", 'natdeck `via="pcp"`'),
    "auto-both": ("both protocols", 'natdeck `via="auto"`'),
    "natpmp-direct": ("NAT-PMP only", 'natdeck `via="natpmp"`'),
    "auto-natpmp-only": ("NAT-PMP only", 'natdeck `via="auto"` (falls back)'),
    "natpmpc": ("NAT-PMP only", "natpmpc (a process: address + mapping)"),
}


def render(results: dict[str, Any]) -> str:
    """Two Markdown tables: the NAT-PMP-only fallback, and the silent gateway's deadline."""
    samples: dict[str, list[dict[str, Any]]] = results["samples"]
    rtt: float = results["rtt"]
    table = Table(["gateway", "client", "time to a mapping", "round trips", "datagrams sent",
                   "mapped via"], "llrrrl")
    direct = median(r["time"] for r in samples["natpmp-direct"])
    for name, (gateway, client) in _LABELS.items():
        if name not in samples:
            continue
        runs = samples[name]
        took = median(r["time"] for r in runs)
        extra = ""
        if name == "auto-natpmp-only":
            extra = f" (+{(took - direct) / rtt:.1f} vs direct)"
        vias = {r["via"] for r in runs}
        table.add(gateway, client, f"{took * 1e3:.1f} ms", f"{took / rtt:.1f}{extra}",
                  f"{median(r['sent'] for r in runs):.0f}",
                  ", ".join(sorted(str(v) for v in vias)))
    silent = Table(["deadline (`timeout=`)", "via", "gave up after", "tries sent (PCP + NAT-PMP)"],
                   "rlrr")
    for timeout in SILENT_TIMEOUTS:
        for via in ("auto", "pcp", "natpmp"):
            runs = samples[f"silent-{via}-{timeout:g}"]
            silent.add(f"{timeout:g} s", via, f"{median(r['time'] for r in runs):.3f} s",
                       f"{median(r['sent'] for r in runs):.0f}")
    silent.add("—", "py-natpmp / natpmpc", "127.75 s (their schedule, not run)", "9")
    return "\n".join([
        "### Fallback: time to a mapping from a client that knows nothing about the gateway",
        "",
        f"Simulated gateways in other processes on loopback, {results['delay'] * 1e3:g} ms of "
        f"processing per request; median of {results['rounds']} interleaved round(s). *round "
        f"trips*: the time over one bare NAT-PMP round trip to the same gateway "
        f"({rtt * 1e3:.2f} ms). A NAT-PMP mapping also needs the external address (a second "
        "request: NAT-PMP's mapping answer does not carry it), for natdeck and natpmpc alike.",
        "",
        table.render(),
        "",
        "### A silent gateway: the deadline, not minutes",
        "",
        "`map_port(timeout=T)` against a gateway that never answers: it gives up at `T` "
        "(`via=\"auto\"` spends half on PCP, then NAT-PMP). py-natpmp and natpmpc follow RFC "
        "6886's nine tries, 0.25 s doubling: 127.75 s; natdeck with `timeout=None` does the "
        "same for NAT-PMP (PCP's own schedule never ends, RFC 6887 §8.1.1).",
        "",
        silent.render(),
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--delay", type=float, default=0.005)
    args = parser.parse_args(argv)
    print(render(measure(args.rounds, args.delay)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
