"""``natdeck list``: every mapping the gateway holds, whoever made it (its UPnP IGD's table).

NAT-PMP and PCP cannot list a gateway's mappings; UPnP IGD can, and on miniupnpd the three
protocols share one table, so the list shows the PCP and NAT-PMP mappings of every host too.
The printing is :mod:`tui.router_list`'s (the router view's columns); the source is
:class:`~engine.router_source.UpnpRouterListing`, whose UPnP stack is imported only here.
"""

from __future__ import annotations

import asyncio
import os
import sys

from engine.events import MappingKey
from engine.router_source import DEFAULT_INTERVAL, UpnpRouterListing
from tui.exit_codes import EXIT_OK
from tui.router_list import list_once, watch

from .context import Context

__all__ = ["LIST_TIMEOUT", "run_list"]

#: ``list`` waits this long for the IGD (SSDP, then each HTTP request) by default.
LIST_TIMEOUT = 3.0


async def run_list(ctx: Context) -> int:
    """List once (text or JSON lines), or with ``--watch`` print the table, then each change
    until stopped (SIGINT/SIGTERM: exit 0)."""
    args = ctx.args
    timeout = args.timeout or LIST_TIMEOUT
    local = None if ctx.local is None else str(ctx.local)
    source = UpnpRouterListing.on(str(ctx.gateway), ssdp_port=ctx.conn.ssdp_port,
                                  local_address=local, timeout=timeout)
    try:
        addresses: tuple[str, ...] = (str(source.igd.local_address),)
    except OSError:  # no route to the gateway: the listing will say so
        addresses = ()
    own = OwnMappings(ctx)
    # A whole listing: the search, the descriptions and a few SOAP calls, each bounded.
    whole = 4 * timeout
    try:
        if not args.watch:
            return await list_once(source, sys.stdout, sys.stderr, as_json=args.json,
                                   local_addresses=addresses, own=own(), timeout=whole)
        watching = asyncio.create_task(watch(
            source, sys.stdout, sys.stderr, as_json=args.json,
            local_addresses=addresses, own=own, interval=args.interval or DEFAULT_INTERVAL,
            timeout=whole))
        stopped = asyncio.create_task(ctx.stop.wait())
        try:
            await asyncio.wait({watching, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (watching, stopped):
                task.cancel()
            # Waited, not awaited: the watch's own error (a closed stdout) is the result's.
            await asyncio.wait({watching, stopped})
        return watching.result() if not watching.cancelled() else 0
    except BrokenPipeError:
        # stdout's reader went away (``natdeck list | head -1``): nothing more to say to
        # anyone, so stop (watching too), quietly and successfully, as map and probe do.
        ctx.out.stdout_closed()
        return EXIT_OK
    finally:
        await source.close()


class OwnMappings:
    """natdeck's mappings at this gateway, as the state file knows them (``map``, the TUI):
    (protocol, external port) -> key. Called before each listing of ``--watch``; the file
    is read again only when it changed (``natdeck map`` meanwhile), a stat otherwise."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._seen: tuple[int, int, int] | None = None
        self._own: dict[tuple[int, int], MappingKey] = {}
        self._read = False

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.ctx.state.path)
        except OSError:  # none yet (or unreadable: load() says why)
            return None
        # The state file is replaced whole (os.replace): a new inode even within the
        # mtime's granularity.
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def __call__(self) -> dict[tuple[int, int], MappingKey]:
        """The mappings now (the last read when the file has not changed since)."""
        stamp = self._stamp()
        if self._read and stamp == self._seen:
            return self._own
        load = self.ctx.state.load()
        self.ctx.state_warnings(load.warnings)
        self._seen, self._read = stamp, True
        self._own = {(r.protocol, r.external_port): MappingKey(r.protocol, r.internal_port)
                     for r in load.records if r.gateway == self.ctx.gateway}
        return self._own
