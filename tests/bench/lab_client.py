"""One timed run of one client against the lab's miniupnpd: create N mappings, then delete them.

Runs *inside the lab's client namespace* (``Lab.run_python_in_client(LAB_CLIENT, [json])``),
so every packet goes to the lab gateway (198.18.0.1) and nowhere else. It does the timing itself
and prints one JSON line::

    {"client": ..., "create": s, "delete": s, "cpu": s, "child_cpu": s, "requests": n,
     "ok": n, "errors": [...]}

``requests`` is how many distinct requests the client had to send by its design (a
retransmission is not one); the runner subtracts it from what the gateway counted. ``cpu`` is
``time.process_time()`` over both phases; ``child_cpu`` the user+system time of child processes
(natpmpc).

Clients (``CLIENTS``):

- ``floor-natpmp`` / ``floor-pcp``: a bare blocking UDP socket sending pre-encoded requests one
  at a time and waiting for each answer: the gateway's own service time plus one kernel round
  trip, the least any client can take.
- ``codec-{natpmp,pcp}``: the floor's loop with natdeck's wire codec in it (each request built
  and encoded, each answer decoded and matched, every field checked), nothing else of natdeck's.
- ``natdeck-{pcp,natpmp}-seq``: one :class:`engine.GatewayClient`, ``await`` each map, then each
  delete.
- ``natdeck-{pcp,natpmp}-gather``: the same, all maps in one ``asyncio.gather`` (the transport
  bounds requests in flight, 32 by default), then all deletes; ``-gather-4``: with
  ``GatewayClient(max_in_flight=4)``.
- ``natdeck-{pcp,natpmp}-blocking``: one :class:`engine.BlockingClient` (no event loop), each
  map, then each delete: what a script without asyncio runs.
- ``natdeck-manager``: a :class:`engine.MappingManager` (no listener, no start-up probe, so
  that only mapping requests are counted), ``add`` gathered, then ``remove`` gathered.
- ``natpmpc``: libnatpmp's command-line client, one process per request, as a shell user runs
  it (each run also asks the external address first: two requests per mapping operation).
- ``py-natpmp``: the PyPI package ``py-natpmp`` (module ``natpmp``), ``map_port`` per request,
  always with ``gateway_ip`` given (it never looks the gateway up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

# Runs as a script in the namespace: the repo is on PYTHONPATH (Lab.python_env), but make
# `python tests/bench/lab_client.py` from a checkout work too.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import engine
import engine.blocking
import engine.client
import engine.manager  # imported here, before the clock starts: a run's CPU is its requests'
from engine.protocols import Protocol
from engine.transport import decode_message
from engine.wire import natpmp, pcp

NATPMP_PORT = 5351
TCP = int(Protocol.TCP)
#: How long the floor client waits before it resends (it counts each resend).
FLOOR_WAIT = 2.0

CLIENTS = (
    "floor-natpmp",
    "floor-pcp",
    "natdeck-pcp-seq",
    "natdeck-natpmp-seq",
    "natdeck-pcp-gather",
    "natdeck-natpmp-gather",
    "natdeck-natpmp-gather-4",
    "natdeck-pcp-blocking",
    "natdeck-natpmp-blocking",
    "natdeck-manager",
    "natpmpc",
    "py-natpmp",
)


class Run:
    """Timing of the two phases, and what went wrong."""

    def __init__(self, client: str) -> None:
        self.client = client
        self.phases: dict[str, float] = {}
        self.requests = 0
        self.ok = 0
        self.errors: list[str] = []
        self.resends = 0
        self.sent: int | None = None
        """Datagrams the client says it sent (None: it cannot tell)."""
        self.trace: list[tuple[float, str]] | None = None
        """With ``"trace": true`` in the config: (seconds from the start, ``">"`` for a datagram
        sent, ``"<"`` for one received, ``"R"`` for a retransmission) of every packet."""
        self._start = time.perf_counter()
        self._cpu = time.process_time()
        self._children = self._child_cpu()

    @staticmethod
    def _child_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def mark(self, what: str) -> None:
        """Record a packet event (only when tracing)."""
        if self.trace is not None:
            self.trace.append((round(time.perf_counter() - self._start, 6), what))

    def result(self) -> dict[str, Any]:
        trace = {} if self.trace is None else {"trace": self.trace}
        return {
            **trace,
            "client": self.client,
            **self.phases,
            "cpu": time.process_time() - self._cpu,
            "child_cpu": self._child_cpu() - self._children,
            "requests": self.requests,
            "ok": self.ok,
            "resends": self.resends,
            "sent": self.sent,
            "errors": self.errors[:5],
            "error_count": len(self.errors),
        }


# -- the floor: pre-encoded requests, one blocking socket --------------------------------------


def floor(run: Run, gateway: str, packets: list[list[bytes]], port: int = NATPMP_PORT) -> None:
    """Send each phase's packets one at a time; wait for an answer to each."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, port))
        sock.settimeout(FLOOR_WAIT)
        for phase, batch in zip(("create", "delete"), packets, strict=True):
            start = time.perf_counter()
            for packet in batch:
                answer = None
                while answer is None:
                    _send(run, sock, packet)
                    answer = _receive(run, sock)
                run.mark("<")
                # Result code: NAT-PMP octets 2-3, PCP octet 3.
                _count(run, int.from_bytes(answer[2:4]) if answer[0] == 0 else answer[3])
            _phase_done(run, phase, start, len(batch))


def _send(run: Run, sock: socket.socket, packet: bytes) -> None:
    sock.send(packet)
    run.mark(">")
    run.sent = (run.sent or 0) + 1


def _receive(run: Run, sock: socket.socket) -> bytes | None:
    """The next datagram; ``None`` when none came within the socket's timeout (the caller
    sends again: counted as a resend)."""
    try:
        return sock.recv(1101)
    except TimeoutError:
        run.resends += 1
        run.mark("R")
        return None


def _count(run: Run, code: int) -> None:
    """One answer's result code: an error, or one more mapping operation done."""
    if code:
        run.errors.append(f"result {code}")
    else:
        run.ok += 1


def _phase_done(run: Run, phase: str, start: float, requests: int) -> None:
    run.phases[phase] = time.perf_counter() - start
    run.mark("|")
    run.requests += requests


def codec(run: Run, gateway: str, kind: str, local: str, ports: range, lifetime: int,
          port: int = NATPMP_PORT) -> None:
    """The floor's loop with natdeck's wire codec in it, and nothing else of natdeck's: each
    request built and encoded as natdeck does (every field checked), each answer decoded in
    full (every field checked) and matched to its request (NAT-PMP: protocol and internal
    port; PCP: nonce, protocol and internal port), a datagram that does not match dropped.
    What checking every field costs, without natdeck's orchestration (negotiation, in-flight
    window, epochs, retransmission schedules, typed results)."""
    address, anywhere = IPv4Address(local), IPv4Address(0)
    nonces = {number: os.urandom(pcp.NONCE_SIZE) for number in ports}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((gateway, port))
        sock.settimeout(FLOOR_WAIT)
        for phase, life in (("create", lifetime), ("delete", 0)):
            start = time.perf_counter()
            for number in ports:
                if kind == "natpmp":
                    packet = natpmp.MapPacket(TCP, number, number if life else 0, life).encode()
                else:
                    packet = pcp.encode_request(pcp.Opcode.MAP, life, address, pcp.MapData(
                        nonces[number], TCP, number, number if life else 0, anywhere))
                _count(run, _exchange(run, sock, packet, kind, number, nonces[number]).result)
            _phase_done(run, phase, start, len(ports))


def _exchange(run: Run, sock: socket.socket, packet: bytes, kind: str, number: int,
              nonce: bytes) -> natpmp.Response | pcp.Response:
    """Send ``packet`` until an answer to it comes (:func:`codec`)."""
    while True:
        _send(run, sock, packet)
        while (answer := _receive(run, sock)) is not None:
            try:
                message = decode_message(answer)
            except engine.MalformedPacket:
                continue
            if kind == "natpmp":
                if isinstance(message, natpmp.MapResponse) and message.protocol == TCP \
                        and message.internal_port == number:
                    run.mark("<")
                    return message
            elif isinstance(message, pcp.Response) and message.data is not None \
                    and message.data.nonce == nonce and message.data.protocol == TCP \
                    and message.data.internal_port == number:
                run.mark("<")
                return message


def floor_packets(kind: str, local: str, ports: range, lifetime: int) -> list[list[bytes]]:
    if kind == "natpmp":
        return [[natpmp.MapRequest(TCP, p, p, lifetime).encode() for p in ports],
                [natpmp.MapRequest(TCP, p, 0, 0).encode() for p in ports]]
    address = IPv4Address(local)
    nonces = {p: secrets.token_bytes(pcp.NONCE_SIZE) for p in ports}

    def request(port: int, life: int) -> bytes:
        data = pcp.MapData(nonces[port], TCP, port, port, IPv4Address(0))
        return pcp.Request(pcp.Opcode.MAP, life, address, data).encode()

    return [[request(p, lifetime) for p in ports], [request(p, 0) for p in ports]]


class _Answer(asyncio.DatagramProtocol):
    """The asyncio floor's protocol: hands each datagram to the one future waiting (marked in
    the run's trace where it comes in, as natdeck's channel is: :func:`_trace_channel`)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.waiting: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.run.mark("<")
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(data)


async def asyncio_floor(run: Run, gateway: str, local: str, packets: list[list[bytes]],
                        port: int = NATPMP_PORT) -> None:
    """The least an asyncio client can cost: pre-encoded requests one at a time on a
    connected datagram endpoint, a future per answer, nothing checked (no validation, no
    retransmission). Context for natdeck's CPU: the event loop's own share of it."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Answer(run), local_addr=(local, 0), remote_addr=(gateway, port))
    try:
        for phase, batch in zip(("create", "delete"), packets, strict=True):
            start = time.perf_counter()
            for packet in batch:
                protocol.waiting = loop.create_future()
                transport.sendto(packet)
                run.mark(">")
                answer = await asyncio.wait_for(protocol.waiting, FLOOR_WAIT)
                code = int.from_bytes(answer[2:4]) if answer[0] == 0 else answer[3]
                if code:
                    run.errors.append(f"result {code}")
                else:
                    run.ok += 1
            _phase_done(run, phase, start, len(batch))
    finally:
        transport.close()


# -- natdeck -------------------------------------------------------------------------------------


class _Retransmissions(logging.Handler):
    """Counts the exchanges' "retransmitting" log records (one per resend); with tracing on,
    marks them in the run's trace (the packets are marked by :func:`_trace_channel`)."""

    def __init__(self, run: Run) -> None:
        super().__init__(logging.INFO)
        self.count = 0
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        if "retransmitting" in record.getMessage():
            self.count += 1
            self.run.mark("R")


def _trace_channel(run: Run, channel: Any) -> None:
    """Mark every datagram the channel sends and receives in the run's trace, by wrapping its
    two I/O methods before it opens its socket: about a microsecond a packet, where a DEBUG
    packet log (what the trace used before) cost natdeck tens of microseconds a request, which
    the trace then showed as the gateway waiting for natdeck. A blocking channel receives
    through ``_accept``, the asyncio one through ``_received``."""
    send = channel._send

    def traced_send(packet: bytes, describe: str) -> None:
        send(packet, describe)
        run.mark(">")

    channel._send = traced_send
    name = "_accept" if isinstance(channel, engine.blocking.BlockingChannel) else "_received"
    received = getattr(channel, name)

    def traced_received(data: bytes, addr: tuple[Any, ...]) -> Any:
        run.mark("<")
        return received(data, addr)

    setattr(channel, name, traced_received)


async def natdeck(run: Run, gateway: str, local: str, ports: range, lifetime: int,
                  via: engine.Via, concurrent: bool, port: int = NATPMP_PORT,
                  max_in_flight: int | None = None) -> None:
    loop = asyncio.get_running_loop()
    client = engine.GatewayClient(gateway, port, local_address=local, max_in_flight=max_in_flight)
    if run.trace is not None:
        _trace_channel(run, client.channel)
    async with client:
        mappings: list[engine.PortMapping] = []

        async def create(port: int) -> None:
            try:
                mappings.append(await client.map(TCP, port, lifetime=lifetime, via=via))
            except engine.NatDeckError as exc:
                run.errors.append(str(exc))

        async def delete(mapping: engine.PortMapping) -> None:
            try:
                await mapping.delete()
                run.ok += 1
            except engine.NatDeckError as exc:
                run.errors.append(str(exc))

        start = loop.time()
        if concurrent:
            await asyncio.gather(*(create(p) for p in ports))
        else:
            for port in ports:
                await create(port)
        run.phases["create"] = loop.time() - start
        run.mark("|")
        start = loop.time()
        if concurrent:
            await asyncio.gather(*(delete(m) for m in mappings))
        else:
            for mapping in mappings:
                await delete(mapping)
        run.phases["delete"] = loop.time() - start
        run.sent = client.channel.sent
    # NAT-PMP learns the external address once, with its first mapping.
    run.requests = 2 * len(ports) + (1 if via == "natpmp" else 0)


def blocking(run: Run, gateway: str, local: str, ports: range, lifetime: int,
             via: engine.blocking.BlockingVia, port: int = NATPMP_PORT) -> None:
    """natdeck without an event loop: one BlockingClient, each map, then each delete."""
    client = engine.BlockingClient(gateway, port, local_address=local)
    if run.trace is not None:
        _trace_channel(run, client.client.channel)
    with client:
        mappings: dict[int, engine.PortMapping] = {}

        def create(number: int) -> None:
            mappings[number] = client.map(TCP, number, lifetime=lifetime, via=via)

        def delete(number: int) -> None:
            client.delete(mappings.pop(number))

        timed_phases(run, create, delete, ports)
        run.sent = client.client.channel.sent
    run.requests = 2 * len(ports) + (1 if via == "natpmp" else 0)


async def manager(run: Run, gateway: str, local: str, ports: range, lifetime: int,
                  port: int = NATPMP_PORT) -> None:
    loop = asyncio.get_running_loop()
    mgr = engine.MappingManager(gateway, gateway_port=port, local_address=local, via="pcp",
                                lifetime=lifetime, listen=False, probe_on_start=False, keep=True)
    if run.trace is not None:
        _trace_channel(run, mgr.client.channel)
    async with mgr:
        start = loop.time()
        results = await asyncio.gather(*(mgr.add(TCP, p) for p in ports),
                                       return_exceptions=True)
        run.phases["create"] = loop.time() - start
        run.mark("|")
        run.errors += [str(r) for r in results if isinstance(r, BaseException)]
        start = loop.time()
        removed = await asyncio.gather(*(mgr.remove(key) for key in list(mgr.mappings)),
                                       return_exceptions=True)
        run.phases["delete"] = loop.time() - start
        run.errors += [str(r) for r in removed if isinstance(r, BaseException)]
        run.ok = sum(1 for r in removed if not isinstance(r, BaseException))
        run.sent = mgr.client.channel.sent
    run.requests = 2 * len(ports)


# -- the peers -------------------------------------------------------------------------------------


def timed_phases(run: Run, create: Callable[[int], None], delete: Callable[[int], None],
                 ports: range) -> None:
    for phase, action in (("create", create), ("delete", delete)):
        start = time.perf_counter()
        for port in ports:
            try:
                action(port)
            except Exception as exc:
                run.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                if phase == "delete":
                    run.ok += 1
        run.phases[phase] = time.perf_counter() - start
        run.mark("|")


def natpmpc(run: Run, gateway: str, ports: range, lifetime: int) -> None:
    binary = "/usr/bin/natpmpc"

    def call(public: int, private: int, life: int) -> None:
        done = subprocess.run([binary, "-g", gateway, "-a", str(public), str(private), "tcp",
                               str(life)], capture_output=True, text=True, check=False,
                              stdin=subprocess.DEVNULL, timeout=150)
        if done.returncode != 0 or "Mapped public port" not in done.stdout:
            raise RuntimeError(f"natpmpc exited {done.returncode}: {done.stdout[-200:]}")

    timed_phases(run, lambda p: call(p, p, lifetime), lambda p: call(p, p, 0), ports)
    run.requests = 4 * len(ports)  # external address + mapping, per process


def py_natpmp(run: Run, gateway: str, ports: range, lifetime: int) -> None:
    from natpmp import NATPMP as peer  # the PyPI package py-natpmp

    send = peer.send_request

    read = peer.read_response

    def counted(sock: socket.socket, request: Any) -> None:
        # Its retry loop resends through this module global: count every datagram.
        run.sent = (run.sent or 0) + 1
        send(sock, request)
        run.mark(">")

    def traced(sock: socket.socket, timeout: float, response_size: int = 16) -> Any:
        answer = read(sock, timeout, response_size)
        run.mark("<" if answer[0] else "R")  # nothing by the timeout: it sends again
        return answer

    peer.send_request = counted
    if run.trace is not None:  # its receive, through the module global too
        peer.read_response = traced

    def call(public: int, private: int, life: int) -> None:
        peer.map_port(peer.NATPMP_PROTOCOL_TCP, public, private, life, gateway_ip=gateway)

    timed_phases(run, lambda p: call(p, p, lifetime), lambda p: call(0, p, 0), ports)
    run.requests = 2 * len(ports)


def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    client: str = config["client"]
    gateway: str = config["gateway"]
    local: str = config["local"]
    ports = range(config["first_port"], config["first_port"] + config["count"])
    lifetime: int = config.get("lifetime", 3600)
    run = Run(client)
    if config.get("trace"):
        run.trace = []
    retransmissions = _Retransmissions(run)
    logging.getLogger("engine").addHandler(retransmissions)  # engine.exchange logs them
    logging.getLogger("engine").setLevel(logging.INFO)
    logging.getLogger("engine").propagate = False
    if client.startswith("floor-"):
        kind = client.removeprefix("floor-")
        floor(run, gateway, floor_packets(kind, local, ports, lifetime))
    elif client.startswith("codec-"):
        codec(run, gateway, client.removeprefix("codec-"), local, ports, lifetime)
    elif client.startswith("asyncio-"):
        kind = client.removeprefix("asyncio-")
        asyncio.run(asyncio_floor(run, gateway, local, floor_packets(kind, local, ports,
                                                                      lifetime)))
    elif client == "natdeck-manager":
        asyncio.run(manager(run, gateway, local, ports, lifetime))
    elif client.endswith("-blocking"):
        blocking(run, gateway, local, ports, lifetime,
                 client.split("-")[1])  # type: ignore[arg-type]
    elif client.startswith("natdeck-"):
        _, via, mode, *bound = client.split("-")
        in_flight = int(bound[0]) if bound else config.get("max_in_flight")
        asyncio.run(natdeck(run, gateway, local, ports, lifetime, via,  # type: ignore[arg-type]
                            concurrent=mode == "gather", max_in_flight=in_flight))
    elif client == "natpmpc":
        natpmpc(run, gateway, ports, lifetime)
    elif client == "py-natpmp":
        py_natpmp(run, gateway, ports, lifetime)
    else:
        raise SystemExit(f"unknown client {client!r}; one of {', '.join(CLIENTS)}")
    result = run.result()
    result["natdeck_resends"] = retransmissions.count
    result["pid"] = os.getpid()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
