"""What a one-shot ``natdeck map`` imports: only what it uses (issue 15).

A behaviour test, not a timing test: ``natdeck map`` against the simulated gateway in a
fresh interpreter, then a look at ``sys.modules``. Textual is the TUI's; the manager, its
events and the announcement listener are ``map --hold``'s and ``watch``'s; discovery is not
needed with ``--gateway``; ``tempfile``/``shutil`` and ``importlib.metadata`` are what the state
file's writer and ``--version`` used to pull into every run. ``ssl`` comes with asyncio
(``asyncio.base_events`` imports it), so it is checked where asyncio is not needed: reading
and writing the state file.
"""

from __future__ import annotations

import asyncio
import json
import sys

from tests.support.loopback import REPO_ROOT, python_env

from .conftest import Sim

MAP_PATH = """
import json, sys
from tui.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""

NO_LOOP = """
import json, sys
from engine.statefile import MappingRecord, StateFile
state = StateFile(sys.argv[1])
record = MappingRecord.from_json({
    "gateway": "127.0.0.1", "gateway_port": 5351, "local_address": "127.0.0.1",
    "protocol": 6, "internal_port": 8080, "external_port": 8080,
    "external_address": None, "via": "natpmp", "lifetime": 60, "epoch": 1, "nonce": None,
    "created": 1.0, "updated": 2.0})
state.record(record)
assert state.load().records == [record]
print(json.dumps({"modules": sorted(sys.modules)}))
"""

NOT_FOR_MAP = ("textual", "engine.manager", "engine.events", "engine.announce",
               "engine.discovery", "tui.cli.hold", "tui.cli.cmd_watch", "tui.cli.cmd_unmap",
               "tempfile", "shutil", "importlib.metadata")


async def _python(code: str, *argv: str) -> dict[str, object]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *argv, cwd=REPO_ROOT, env=python_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err.decode()
    result: dict[str, object] = json.loads(out.decode().splitlines()[-1])
    return result


async def test_map_imports_only_what_it_uses(sim: Sim) -> None:
    result = await _python(MAP_PATH, "map", "tcp", "8080", *sim.target)
    assert result["status"] == 0
    modules = result["modules"]
    assert isinstance(modules, list)
    loaded = [name for name in NOT_FOR_MAP
              if name in modules or any(m.startswith(f"{name}.") for m in modules)]
    assert loaded == []
    assert (6, 8080) in sim.mapped()  # it did map: the modules above were not needed


async def test_the_state_file_needs_no_event_loop(tmp_path: object) -> None:
    # Before, engine.statefile imported the client, and with it asyncio and ssl.
    result = await _python(NO_LOOP, str(tmp_path))
    modules = result["modules"]
    assert isinstance(modules, list)
    assert [name for name in ("asyncio", "ssl", "textual", "engine.client", "tempfile")
            if name in modules] == []


COLLECTOR = """
import gc, json, sys
if sys.argv[1] == "off":
    gc.disable()
import tui.cli
from tui.frozen_imports import frozen_imports
enabled = gc.isenabled()
try:
    with frozen_imports():  # as the TUI's launch: an import that fails
        raise ImportError("no Textual")
except ImportError:
    pass
print(json.dumps({"enabled": enabled, "after_failure": gc.isenabled(),
                  "frozen": gc.get_freeze_count()}))
"""


async def test_the_collector_is_paused_for_the_imports_and_set_back() -> None:
    # The command line's modules are frozen (never walked again: issue 15's one-shot), and
    # the collector is left as the importer had it, on or off.
    on = await _python(COLLECTOR, "on")
    assert on["enabled"] is True
    assert isinstance(on["frozen"], int)
    assert on["frozen"] > 10_000
    assert on["after_failure"] is True
    off = await _python(COLLECTOR, "off")
    assert off["enabled"] is False
    assert off["after_failure"] is False
