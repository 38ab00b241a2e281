"""One engine call in its own process (the client side of a ``natdeck map``/``unmap`` pair).

``python oneshot.py map '{"gateway": ..., "port": 40000, "protocol": 6, "nonce": "<hex>",
"state_dir": "/tmp/x", ...}'`` maps the port with :func:`engine.map_port` (``nonce`` passed
explicitly when given), records it in the state file under ``state_dir`` and prints the
mapping. ``python oneshot.py delete '{"gateway": ..., "port": 40000, "protocol": 6,
"state_dir": ...}'`` rebuilds the mapping from that record in a fresh process, deletes it at
the gateway and prints the nonce and protocol it used. Errors are printed as JSON too; the
exit status is 0 either way so the test can read them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import engine
from engine.errors import NatDeckError, ResultCodeError
from engine.statefile import MappingRecord, StateFile

MAP_OPTIONS = ("via", "lifetime", "external_port", "prefer_failure", "timeout")


def mapping_json(mapping: engine.PortMapping) -> dict[str, Any]:
    return {
        "protocol": int(mapping.protocol),
        "internal_port": mapping.internal_port,
        "external_port": mapping.external_port,
        "external_address": str(mapping.external_address),
        "lifetime": mapping.lifetime,
        "via": mapping.via,
        "epoch": mapping.epoch,
        "nonce": None if mapping.nonce is None else mapping.nonce.hex(),
    }


async def do_map(args: dict[str, Any]) -> dict[str, Any]:
    options = {k: args[k] for k in MAP_OPTIONS if k in args}
    nonce = bytes.fromhex(args["nonce"]) if args.get("nonce") else None
    mapping = await engine.map_port(args["gateway"], int(args["port"]), int(args["protocol"]),
                                    nonce=nonce, **options)
    if args.get("state_dir"):
        StateFile(args["state_dir"]).record(MappingRecord.from_mapping(mapping))
    return {"ok": True, "mapping": mapping_json(mapping)}


async def do_delete(args: dict[str, Any]) -> dict[str, Any]:
    state = StateFile(args["state_dir"])
    record, warnings = state.find(args["gateway"], 5351, int(args["protocol"]), int(args["port"]))
    if record is None:
        return {"ok": False, "error": "NoRecord", "warnings": warnings}
    mapping = record.to_mapping()
    await mapping.delete(timeout=args.get("timeout", 10.0))
    state.remove(args["gateway"], 5351, int(args["protocol"]), int(args["port"]))
    return {"ok": True, "via": mapping.via,
            "nonce": None if mapping.nonce is None else mapping.nonce.hex(),
            "external_port": mapping.external_port}


def main() -> None:
    operation, args = sys.argv[1], json.loads(sys.argv[2])
    run = {"map": do_map, "delete": do_delete}[operation]
    try:
        result = asyncio.run(run(args))
    except NatDeckError as exc:
        result = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        if isinstance(exc, ResultCodeError):
            result.update(code=exc.code, name=exc.name)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
