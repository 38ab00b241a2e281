"""async-upnp-client (and aiohttp) are imported only when a UPnP operation runs."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import engine, engine.upnp, engine.upnp.gateway, engine.simulator
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('async_upnp_client', 'aiohttp'))
print(heavy)
"""


def test_importing_engine_and_engine_upnp_loads_no_upnp_library() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"
