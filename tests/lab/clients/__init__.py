"""Client-side programs the lab tests run inside the client namespace, and their drivers.

- ``manager_worker.py``: a long-running MappingManager speaking JSON lines
  (:class:`ManagerWorker` drives it from a test).
- ``oneshot.py``: one engine call per process (map, or delete a mapping rebuilt from what
  another process printed), printing what it sent.
- ``sniffer.py``: runs in the *gateway* namespace and reports every NAT-PMP/PCP request that
  reaches port 5351, so a test can check what really went over the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import engine

from ..netlab import ClientProcess, Lab, LabTimeoutError

CLIENTS = Path(__file__).resolve().parent
MANAGER_WORKER = CLIENTS / "manager_worker.py"
ONESHOT = CLIENTS / "oneshot.py"
SNIFFER = CLIENTS / "sniffer.py"

Message = dict[str, Any]
T = TypeVar("T")


class ManagerWorker:
    """A test's handle on ``manager_worker.py``: commands in, replies and events out.

    Events that arrive while a reply is awaited are kept in :attr:`events` (all of them, in
    order), so :meth:`wait_event` also finds events that came before it was called.
    """

    def __init__(self, process: ClientProcess) -> None:
        self.process = process
        self.events: list[Message] = []
        self._ids = itertools.count(1)
        self._replies: dict[int, Message] = {}
        self.ready: Message = self._next_of_type("ready", timeout=10)

    @classmethod
    def start(cls, lab: Lab, **config: Any) -> ManagerWorker:
        """Spawn the worker in the client namespace; ``config`` goes to MappingManager."""
        config.setdefault("gateway", lab.gateway_lan)
        return cls(lab.spawn_python_in_client(MANAGER_WORKER, [json.dumps(config)]))

    def _take(self, timeout: float) -> Message:
        message: Message = self.process.receive(timeout=timeout)
        if message.get("type") == "event":
            self.events.append(message)
        elif message.get("type") == "reply":
            self._replies[message["id"]] = message
        return message

    def _next_of_type(self, kind: str, timeout: float) -> Message:
        deadline = time.monotonic() + timeout
        while True:
            message = self._take(max(0.0, deadline - time.monotonic()))
            if message.get("type") == kind:
                return message

    def call(self, op: str, *, timeout: float = 30.0, **arguments: Any) -> Message:
        """Send a command and return its reply (``{"ok": ..., "result": ...}``)."""
        ident = next(self._ids)
        self.process.send({"op": op, "id": ident, **arguments})
        deadline = time.monotonic() + timeout
        while ident not in self._replies:
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise LabTimeoutError("out of time")
                self._take(remaining)
            except LabTimeoutError:
                recent = [f"{e['wall']:.3f} {e['summary']}" for e in self.events[-30:]]
                raise LabTimeoutError(f"no reply to {op} within {timeout} s; last events: "
                                      f"{recent}; stderr: {self.process.stderr[-3000:]}"
                                      ) from None
        return self._replies.pop(ident)

    def ok(self, op: str, *, timeout: float = 30.0, **arguments: Any) -> Any:
        """:meth:`call`, asserting success; returns the result."""
        reply = self.call(op, timeout=timeout, **arguments)
        assert reply["ok"], f"{op} failed: {reply}\nstderr: {self.process.stderr[-3000:]}"
        return reply["result"]

    def mappings(self) -> list[Message]:
        """The manager's mappings now."""
        result: list[Message] = self.ok("mappings")
        return result

    def wait_event(self, predicate: Callable[[Message], bool], timeout: float,
                   *, after: int = 0) -> Message:
        """The first event (from index ``after`` of :attr:`events`) satisfying ``predicate``."""
        deadline = time.monotonic() + timeout
        index = after
        while True:
            while index < len(self.events):
                if predicate(self.events[index]):
                    return self.events[index]
                index += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = [e["summary"] for e in self.events[after:]]
                raise LabTimeoutError(f"no matching event within {timeout} s; saw {seen}; "
                                      f"stderr: {self.process.stderr[-3000:]}")
            self._take(remaining)

    def wait_until(self, condition: Callable[[], bool], timeout: float,
                   interval: float = 0.1) -> None:
        """Poll ``condition`` (e.g. on the gateway's rules), reading events meanwhile."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise LabTimeoutError(f"condition not met within {timeout} s; events: "
                                      f"{[e['summary'] for e in self.events]}")
            with contextlib.suppress(LabTimeoutError):
                self._take(interval)

    def close(self, timeout: float = 15.0) -> Message:
        """Leave the manager's ``async with`` (deleting its mappings unless ``keep``)."""
        reply = self.call("close", timeout=timeout)
        self.process.close(timeout=5)
        return reply

    def __enter__(self) -> ManagerWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.close(timeout=1)


def natdeck(lab: Lab, state_dir: Path, *args: str,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``natdeck ARGS --gateway 198.18.0.1`` (``python -m tui.cli``) in the client
    namespace, its state file in ``state_dir``."""
    env = {**lab.python_env(), "NATDECK_STATE_DIR": str(state_dir)}
    return lab.run_in(lab.client_ns, [sys.executable, "-m", "tui.cli", *args,
                                      "--gateway", lab.gateway_lan],
                      timeout=timeout, env=env)


def run_in_client(lab: Lab, factory: Callable[[], Awaitable[T]]) -> T:
    """Run ``factory()`` on a fresh event loop in *this* thread, inside the client namespace.

    Every socket the coroutine opens is created inside the namespace (see
    :meth:`Lab.client_namespace`), so lab addresses never reach the host's network.
    """

    async def run() -> T:
        return await factory()

    with lab.client_namespace():
        return asyncio.run(run())


class Sniffer:
    """``sniffer.py`` in the gateway namespace: what really reached port 5351."""

    def __init__(self, lab: Lab) -> None:
        self.process = lab.spawn_python(lab.gateway_ns, SNIFFER)
        ready = self.process.receive(timeout=10)
        assert ready == {"type": "ready"}, ready
        self.seen: list[Message] = []

    def requests(self, settle: float = 0.2) -> list[Message]:
        """Every request seen so far, decoded (waits ``settle`` s for stragglers first)."""
        time.sleep(settle)
        for message in self.process.drain():
            decoded = decode_request(bytes.fromhex(message["data"]))
            self.seen.append({**message, **decoded})
        return list(self.seen)

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.close(timeout=1)


def decode_request(data: bytes) -> Message:
    """The fields of a NAT-PMP (RFC 6886 §3.3) or PCP MAP/PEER (RFC 6887 §7.1, §11.1) request."""
    if data[:1] == b"\x00" and len(data) == 12:
        _, opcode, _, internal, external, lifetime = struct.unpack("!BBHHHI", data)
        return {"version": 0, "opcode": opcode, "internal_port": internal,
                "external_port": external, "lifetime": lifetime}
    if data[:1] == b"\x00":
        return {"version": 0, "opcode": data[1] if len(data) > 1 else None}
    version, opcode, _, lifetime = struct.unpack_from("!BBHI", data)
    message: Message = {"version": version, "opcode": opcode, "lifetime": lifetime}
    if opcode in (1, 2) and len(data) >= 60:
        protocol, internal, external = struct.unpack_from("!B3xHH", data, 36)
        message.update(nonce=data[24:36].hex(), protocol=protocol, internal_port=internal,
                       external_port=external, options=data[60 + (20 if opcode == 2 else 0):].hex())
    return message


def gateway_epoch(lab: Lab) -> int:
    """miniupnpd's PCP epoch now (seconds since it started), asked from the client namespace."""
    probe = run_in_client(lab, lambda: engine.probe(lab.gateway_lan))
    assert probe.pcp_epoch is not None
    return probe.pcp_epoch


def age_gateway(lab: Lab, seconds: int) -> None:
    """Wait until miniupnpd's epoch is at least ``seconds``.

    RFC 6887 §8.5 tolerates an epoch going back by one second, so a restart is only
    recognisable once the epoch a client last saw is 2 or more.
    """
    epoch = gateway_epoch(lab)
    if epoch < seconds:
        time.sleep(seconds - epoch + 0.1)
