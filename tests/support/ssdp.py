"""The SSDP port of a gateway without UPnP IGD, on loopback: it takes every M-SEARCH and
answers none (what the router view and ``natdeck list`` back off from)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from engine.upnp.ssdp import IGD_SEARCH_TARGETS

__all__ = ["SilentSsdp", "silent_ssdp"]


class SilentSsdp(asyncio.DatagramProtocol):
    """Counts the M-SEARCH datagrams it receives; answers none."""

    def __init__(self) -> None:
        self.datagrams = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if data.startswith(b"M-SEARCH * HTTP/1.1"):
            self.datagrams += 1

    @property
    def searches(self) -> int:
        """Searches made: a search sends one M-SEARCH per IGD search target."""
        return self.datagrams // len(IGD_SEARCH_TARGETS)


@asynccontextmanager
async def silent_ssdp(host: str) -> AsyncIterator[tuple[SilentSsdp, int]]:
    """A :class:`SilentSsdp` on ``host`` (loopback) and its port, closed on exit."""
    transport, silent = await asyncio.get_running_loop().create_datagram_endpoint(
        SilentSsdp, local_addr=(host, 0))
    try:
        yield silent, int(transport.get_extra_info("sockname")[1])
    finally:
        transport.close()
