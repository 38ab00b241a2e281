"""A PCP map (the common case) does not pay for the UPnP library: async-upnp-client and aiohttp
stay unimported until a UPnP operation runs, and importing engine, engine.upnp or the simulator
loads neither."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.loopback import python_env

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


SEARCH_BYTES = """
import sys
from ipaddress import ip_address
from engine.upnp import search, ssdp
ssdp.build_search("ssdp:all", "192.168.1.1")
answer = (b"HTTP/1.1 200 OK\\r\\nST: ssdp:all\\r\\n"
          b"LOCATION: http://192.168.1.1:5000/rootDesc.xml\\r\\n\\r\\n")
assert ssdp.parse_answer(answer, ("192.168.1.1", 1900), ip_address("192.168.1.1"))
print(sorted(m for m in sys.modules if m.split('.')[0] in ('async_upnp_client', 'aiohttp')))
"""


def test_an_ssdp_search_and_its_answers_import_no_http_stack() -> None:
    # So that the search goes out first, and the HTTP stack (~100 ms) is imported while the
    # gateway takes its time to answer (engine.upnp.connection.http_stack_loading).
    result = subprocess.run([sys.executable, "-c", SEARCH_BYTES], capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


COLD_MAP = """
import asyncio, sys, threading, time
from engine.upnp import UpnpGateway, connection, search

seen = {}
load, build = connection._import_http_stack, search.build_search

def spied_load():
    seen["worker thread"] = threading.current_thread() is not threading.main_thread()
    seen["loading"] = time.monotonic()
    load()

def spied_build(*args):
    seen.setdefault("searched", time.monotonic())
    return build(*args)

connection._import_http_stack, search.build_search = spied_load, spied_build

async def main():
    async with UpnpGateway("127.0.0.1", ssdp_port=int(sys.argv[1]), multicast=False) as igd:
        mapping = await igd.map(6, 8080)
        await igd.delete(mapping)
    return igd.search_rtt

rtt = asyncio.run(main())
print(seen["worker thread"], seen["searched"] <= seen["loading"], rtt < 0.5)
"""


def test_a_first_search_imports_the_http_stack_in_a_thread_while_the_gateway_answers(
) -> None:
    # A fresh process against a simulated UPnP-only gateway in another one: the HTTP stack
    # (aiohttp, async-upnp-client) is imported in a worker thread, once the searches are
    # out, and the map goes on with it.
    sim = subprocess.Popen(
        [sys.executable, "-m", "engine.simulator", "--upnp-only", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=python_env())
    try:
        assert sim.stdout is not None
        ssdp_port = json.loads(sim.stdout.readline())["ssdp_port"]
        result = subprocess.run([sys.executable, "-c", COLD_MAP, str(ssdp_port)],
                                capture_output=True, text=True, timeout=60, check=False,
                                env=python_env())
    finally:
        sim.terminate()
        sim.communicate(timeout=10)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "True"]
