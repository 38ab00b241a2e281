"""A PCP map (the common case) does not pay for the UPnP library: async-upnp-client and aiohttp
stay unimported until a UPnP operation runs, and importing engine, engine.upnp or the simulator
loads neither."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import asyncio, sys
import engine
from engine.simulator import SimulatedGateway

async def main():
    async with SimulatedGateway("127.0.0.1", 0) as gw:
        mapping = await engine.map_port("127.0.0.1", 8080, engine.Protocol.TCP,
                                        gateway_port=gw.address[1], local_address="127.0.0.1")
        assert mapping.via == "pcp"
        await mapping.delete()

asyncio.run(main())
import engine.upnp
print(sorted(m for m in sys.modules if m.split(".")[0] in ("async_upnp_client", "aiohttp")))
"""


def test_a_pcp_map_imports_no_upnp_library() -> None:
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


IMPORT_ONLY = """
import sys
import engine, engine.upnp, engine.upnp.gateway, engine.simulator
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('async_upnp_client', 'aiohttp'))
print(heavy)
"""


def test_importing_engine_and_engine_upnp_loads_no_upnp_library() -> None:
    result = subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"
