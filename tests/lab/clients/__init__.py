"""Client-side programs the lab tests run inside the client namespace, and their drivers.

- ``manager_worker.py``: a long-running MappingManager speaking JSON lines
  (:class:`ManagerWorker` drives it from a test).
- ``oneshot.py``: one engine call per process (map, or delete a mapping rebuilt from what
  another process printed), printing what it sent.
- ``sniffer.py``: runs in the *gateway* namespace and reports every NAT-PMP/PCP request that
  reaches port 5351, so a test can check what really went over the wire.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..netlab import ClientProcess, Lab, LabTimeoutError

CLIENTS = Path(__file__).resolve().parent
MANAGER_WORKER = CLIENTS / "manager_worker.py"
ONESHOT = CLIENTS / "oneshot.py"
SNIFFER = CLIENTS / "sniffer.py"

Message = dict[str, Any]


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
            if remaining <= 0:
                raise LabTimeoutError(f"no reply to {op} within {timeout} s; "
                                      f"stderr: {self.process.stderr[-3000:]}")
            self._take(remaining)
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
            try:
                self._take(interval)
            except LabTimeoutError:
                pass

    def close(self, timeout: float = 15.0) -> Message:
        """Leave the manager's ``async with`` (deleting its mappings unless ``keep``)."""
        reply = self.call("close", timeout=timeout)
        self.process.close(timeout=5)
        return reply

    def __enter__(self) -> ManagerWorker:
        return self

    def __exit__(self, *_: object) -> None:
        self.process.close(timeout=1)
