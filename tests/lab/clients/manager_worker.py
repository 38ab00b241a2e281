"""A MappingManager living in the lab's client namespace, driven over JSON lines.

Run by the lab tests with ``Lab.spawn_python_in_client(MANAGER_WORKER, [config_json])``.
``config_json`` holds MappingManager keyword arguments (``gateway`` is required; ``rng_seed``
seeds its random generator). The worker prints one JSON object per line on stdout:

- ``{"type": "ready", "status": {...}}`` once the manager has started;
- ``{"type": "event", "event": "MappingAdded", "wall": ..., ...}`` for every manager event, as
  it happens (``wall`` is ``time.time()`` when the manager emitted it);
- ``{"type": "reply", "id": n, "ok": true, "result": ...}`` (or ``"ok": false`` with
  ``"error"``/``"message"``/``"code"``/``"name"``) for every command.

Commands, one JSON object per stdin line, each with an ``id``:
``add`` (protocol, port, and any MappingManager.add keyword), ``add_many`` (``items``: a list of
add commands, run concurrently, each replied in ``result`` in order), ``remove``/``renew``
(protocol, port), ``mappings``, ``status``, ``probe``, ``close`` (leave the ``async with``:
deletes every mapping unless ``keep``). End of stdin closes the manager too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import ipaddress
import json
import logging
import random
import sys
import time
from typing import Any

import engine
from engine.errors import NatDeckError, ResultCodeError
from engine.events import Event, ManagedMapping, MappingKey


def jsonable(value: Any) -> Any:
    """Events, mappings and errors as plain JSON values."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, MappingKey):
        return [value.protocol, value.internal_port]
    if isinstance(value, ManagedMapping):
        return mapping_json(value)
    if isinstance(value, NatDeckError):
        return error_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def mapping_json(mapping: ManagedMapping) -> dict[str, Any]:
    return {
        "key": [mapping.key.protocol, mapping.key.internal_port],
        "protocol": int(mapping.protocol),
        "internal_port": mapping.internal_port,
        "state": mapping.state.value,
        "via": mapping.via,
        "external_port": mapping.external_port,
        "external_address": jsonable(mapping.external_address),
        "lifetime": mapping.lifetime,
        "epoch": mapping.epoch,
        "nonce": jsonable(mapping.nonce),
        "renewals": mapping.renewals,
        "failures": mapping.failures,
        "reason": mapping.reason,
    }


def error_json(exc: BaseException) -> dict[str, Any]:
    data: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ResultCodeError):
        data.update(code=exc.code, name=exc.name, error_lifetime=exc.error_lifetime)
    for name in ("tries", "elapsed"):
        if hasattr(exc, name):
            data[name] = getattr(exc, name)
    return data


def event_json(event: Event) -> dict[str, Any]:
    data = {f.name: jsonable(getattr(event, f.name)) for f in dataclasses.fields(event)}
    data.update(type="event", event=type(event).__name__, summary=event.summary)
    return data


def emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def key_of(command: dict[str, Any]) -> MappingKey:
    return MappingKey(int(command["protocol"]), int(command["port"]))


async def add(mgr: engine.MappingManager, command: dict[str, Any]) -> dict[str, Any]:
    options = {k: v for k, v in command.items() if k not in ("op", "id", "protocol", "port")}
    try:
        mapping = await mgr.add(int(command["protocol"]), int(command["port"]), **options)
    except NatDeckError as exc:
        return {"ok": False, **error_json(exc)}
    return {"ok": True, "result": mapping_json(mapping)}


async def handle(mgr: engine.MappingManager, command: dict[str, Any]) -> dict[str, Any]:
    op = command["op"]
    try:
        if op == "add":
            return await add(mgr, command)
        if op == "add_many":
            replies = await asyncio.gather(*(add(mgr, item) for item in command["items"]))
            return {"ok": all(r["ok"] for r in replies), "result": replies}
        if op == "remove":
            await mgr.remove(key_of(command))
            return {"ok": True, "result": None}
        if op == "renew":
            return {"ok": True, "result": mapping_json(await mgr.renew(key_of(command)))}
        if op == "mappings":
            return {"ok": True, "result": [mapping_json(m) for m in mgr.mappings.values()]}
        if op == "status":
            return {"ok": True, "result": jsonable(mgr.status)}
        if op == "probe":
            return {"ok": True, "result": jsonable(await mgr.probe())}
    except NatDeckError as exc:
        return {"ok": False, **error_json(exc)}
    return {"ok": False, "error": "UnknownCommand", "message": op}


async def forward_events(events: Any) -> None:
    async for event in events:
        emit(event_json(event))


async def main() -> None:
    config: dict[str, Any] = json.loads(sys.argv[1])
    seed = config.pop("rng_seed", None)
    if seed is not None:
        config["rng"] = random.Random(seed)
    gateway = config.pop("gateway")
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    manager = engine.MappingManager(gateway, **config)
    # Subscribe before start(): the first probe's events count too.
    forwarder = asyncio.create_task(forward_events(manager.events()))
    closing_id = None
    async with manager as mgr:
        emit({"type": "ready", "wall": time.time(), "status": jsonable(mgr.status)})
        while line := await reader.readline():
            command = json.loads(line)
            if command["op"] == "close":
                closing_id = command.get("id")
                break
            reply = await handle(mgr, command)
            emit({"type": "reply", "id": command.get("id"), **reply})
    await asyncio.wait_for(forwarder, 5)  # every event, up to MappingRemoved on close
    emit({"type": "reply", "id": closing_id, "ok": True, "result": "closed"})


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    asyncio.run(main())
