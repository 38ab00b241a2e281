"""``natdeck watch``: print the gateway's announcements as they come; sends nothing."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

from engine.announce import ANNOUNCE_PORTS, Announcement, AnnouncementListener
from tui.exit_codes import EXIT_OK, EXIT_TIMEOUT

from .announcement_epochs import AnnouncementEpochs, Heard
from .context import Context, Failure
from .output import address_text

__all__ = ["run_watch"]


async def run_watch(ctx: Context) -> int:
    """Listen until stopped (or ``--count``, ``--timeout``); one line per announcement."""
    args = ctx.args
    loop = asyncio.get_running_loop()
    epochs = AnnouncementEpochs()
    wanted = {"auto": ("natpmp", "pcp"), "pcp": ("pcp",), "natpmp": ("natpmp",)}[ctx.conn.via]
    counts = {"heard": 0, "printed": 0}

    def heard(announcement: Announcement) -> None:
        seen = epochs.observe(announcement, loop.time())
        if seen.protocol not in wanted:
            return
        counts["heard"] += 1
        if seen.repeat and not args.repeats:
            return
        _print_announcement(ctx, announcement, seen)
        counts["printed"] += 1
        if args.count is not None and counts["printed"] >= args.count:
            ctx.stop.set()

    listener = AnnouncementListener(
        ctx.gateway, heard,
        host=None if args.listen_host is None else str(args.listen_host),
        ports=(args.listen_port,) if args.listen_port else ANNOUNCE_PORTS,
        multicast=args.listen_host is None, local_address=ctx.local,
        source_port=ctx.conn.gateway_port)
    async with listener:
        for problem in listener.errors:
            ctx.out.warn(problem)
        if args.timeout is None:
            await ctx.stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), args.timeout)
    if args.timeout is not None and counts["heard"] == 0 and not ctx.stop.is_set():
        raise Failure(f"no announcement from gateway {ctx.gateway} in {args.timeout:g} s",
                      EXIT_TIMEOUT)
    return EXIT_OK


def _print_announcement(ctx: Context, announcement: Announcement, seen: Heard) -> None:
    now = dt.datetime.now(dt.UTC)
    fields = {
        "event": "announcement",
        "kind": announcement.kind,
        "protocol": seen.protocol,
        "external_address": address_text(announcement.external_address),
        "previous_address": address_text(seen.previous) if seen.changed else None,
        "address_changed": seen.changed,
        "restarted": seen.restarted,
        "repeat": seen.repeat,
        "epoch": announcement.epoch,
        "gateway": str(ctx.gateway),
        "gateway_port": ctx.conn.gateway_port,
        "port": announcement.port,
        "time": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    if announcement.kind == "natpmp_address":
        text = f"NAT-PMP address announcement: external {announcement.external_address}"
        if seen.changed:
            text += f" (was {seen.previous})"
    else:
        text = "PCP ANNOUNCE"
    text += f", epoch {announcement.epoch}"
    if seen.restarted:
        text += ", the gateway lost its state (mappings must be made again)"
    if seen.repeat:
        text += " (repeat)"
    ctx.out.result(fields, f"{now.astimezone().strftime('%H:%M:%S')} {text}")
