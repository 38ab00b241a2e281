"""``natdeck list``: the gateway's whole mapping table as text, JSON lines, or live changes.

The command line (``tui.cli``) parses the arguments and builds the
:class:`~engine.router_source.RouterListing`; this module lists and prints:
:func:`render_table` (the same columns as the router view), :func:`json_lines`
(one JSON object per mapping), :func:`list_once` (one listing, exit status) and
:func:`watch` (``--watch``: the table, then every change as it happens). No
Textual here: the plain-text cells come from the same
:func:`~tui.router_presentation.router_cells` as the view's, so the two agree.
Everything a gateway sent is sanitized before it reaches the terminal.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import TextIO

from engine.errors import GatewayTimeout, NatDeckError
from engine.events import MappingKey
from engine.protocols import protocol_name
from engine.router_source import DEFAULT_INTERVAL, Listing, RouterListing, RouterPoller
from engine.router_view import RouterChange, RouterEntry, RouterTable

from .exit_codes import EXIT_FAILURE, EXIT_OK, EXIT_TIMEOUT
from .formatting import clock_time
from .router_presentation import ROUTER_COLUMNS, router_cells, skipped_text
from .safe_text import sanitize

__all__ = ["OwnNow", "entry_json", "failure_status", "json_lines", "list_once", "render_table",
           "watch"]

#: natdeck's own mappings as they are now, (protocol, external port) -> key: ``list
#: --watch`` asks before each listing, since ``natdeck map`` or the app may add some.
OwnNow = Callable[[], Mapping[tuple[int, int], MappingKey]]

#: Longest description printed in the table (JSON has it whole).
DESCRIPTION_WIDTH = 40


def render_table(rows: Iterable[RouterEntry], now: float, skipped: int = 0) -> str:
    """The entries as an aligned text table at loop time ``now``, and the summary line
    (which also counts the ``skipped`` entries the gateway listed but natdeck could not
    read: they are not in the table)."""
    entries = list(rows)
    header = [label.upper() for _, label, _ in ROUTER_COLUMNS]
    lines = [[text for text, _ in router_cells(entry, now)] for entry in entries]
    for line in lines:
        line[-1] = sanitize(line[-1], limit=DESCRIPTION_WIDTH)
    widths = [max([len(header[i]), *(len(line[i]) for line in lines)])
              for i in range(len(header))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
           .rstrip() for row in (header, *lines)]
    hosts = {e.mapping.internal_client for e in entries if e.gone_at is None}
    ours = sum(1 for e in entries if e.ours is not None and e.gone_at is None)
    count = sum(1 for e in entries if e.gone_at is None)
    summary = (f"{count} mapping{'' if count == 1 else 's'}, {len(hosts)} "
               f"host{'' if len(hosts) == 1 else 's'}, {ours} of ours")
    out.append(f"{summary}; {skipped_text(skipped)}" if skipped else summary)
    return "\n".join(out)


def entry_json(entry: RouterEntry, now: float | None = None) -> dict[str, object]:
    """One mapping as a JSON object; ``lease`` is the seconds left at ``now`` (default:
    when it was read), null for a permanent mapping."""
    m = entry.mapping
    remaining = entry.remaining(entry.read_at if now is None else now)
    return {
        "protocol": protocol_name(m.protocol),
        "protocol_number": m.protocol,
        "external_port": m.external_port,
        "internal_client": str(m.internal_client),
        "internal_port": m.internal_port,
        "description": m.description,
        "lease": None if remaining is None else max(round(remaining), 0),
        "permanent": m.permanent,
        "enabled": m.enabled,
        "remote_host": m.remote_host,
        "made_by": m.made_by,
        "this_host": entry.this_host,
        "ours": entry.ours is not None,
    }


def json_lines(rows: Iterable[RouterEntry], now: float | None = None,
               skipped: int = 0) -> Iterator[str]:
    """One JSON object per mapping (``ensure_ascii``: no control character reaches the
    terminal); each also says, as ``skipped``, how many entries of the same listing could
    not be read."""
    for entry in rows:
        yield json.dumps({**entry_json(entry, now), "skipped": skipped}, sort_keys=False)


def _table(local_addresses: Collection[str],
           own: Mapping[tuple[int, int], MappingKey] | None) -> RouterTable:
    table = RouterTable()
    table.set_ours(local_addresses, own or {})
    return table


def failure_status(error: NatDeckError | None) -> int:
    """The exit status of a listing that failed: 3 when no UPnP IGD answered in time (the
    gateway does not speak UPnP, or it is off), else 1 (it refused, or answered nonsense)."""
    cause = error.__cause__ if error is not None else None
    return EXIT_TIMEOUT if isinstance(error, GatewayTimeout) or isinstance(
        cause, GatewayTimeout) else EXIT_FAILURE


async def list_once(source: RouterListing | None, out: TextIO, err: TextIO, *,
                    as_json: bool = False, local_addresses: Collection[str] = (),
                    own: Mapping[tuple[int, int], MappingKey] | None = None,
                    timeout: float = 10.0) -> int:
    """``natdeck list [--json]``: list once and print; the exit status (a sentence on
    ``err`` and :func:`failure_status` when the gateway does not list its mappings).
    ``own`` marks natdeck's mappings: (protocol, external port) -> its key."""
    listing = await RouterPoller(source, timeout=timeout).poll()
    if listing.rows is None:
        print(f"natdeck: {sanitize(str(listing.error))}", file=err)
        return failure_status(listing.error)
    table = _table(local_addresses, own)
    table.update(listing.rows, listing.at)
    entries = table.view(listing.at, sort="host")
    if as_json:
        _warn_skipped(err, listing.skipped)
        for line in json_lines(entries, listing.at, listing.skipped):
            print(line, file=out)
    else:
        print(render_table(entries, listing.at, listing.skipped), file=out)
    # Now, not at exit: a reader that went away (``| head -1``) is the caller's to handle.
    out.flush()
    return EXIT_OK


def _warn_skipped(err: TextIO, skipped: int) -> None:
    # JSON has the count in every object, and there is none when no entry could be read.
    if skipped:
        print(f"natdeck: warning: {skipped_text(skipped)}", file=err, flush=True)


def _change_json(change: RouterChange, wall: float, skipped: int) -> str:
    record: dict[str, object] = {"event": change.kind, "time": round(wall, 3)}
    record.update(entry_json(change.entry))
    record["skipped"] = skipped
    return json.dumps(record)


async def watch(source: RouterListing | None, out: TextIO, err: TextIO, *,
                as_json: bool = False, local_addresses: Collection[str] = (),
                own: Mapping[tuple[int, int], MappingKey] | OwnNow | None = None,
                interval: float = DEFAULT_INTERVAL, timeout: float = 10.0,
                listings: int | None = None,
                wall: Callable[[], float] = time.time,
                stamp: Callable[[float], str] = clock_time) -> int:
    """``natdeck list --watch``: print the table, then every change as it happens
    (``--json``: one object per mapping, then one per change with an ``event`` field).

    Runs until cancelled (Ctrl-C), or for ``listings`` listings. A failed listing is
    said once on ``err`` (and again only when the reason changes); the watch goes on.
    ``own`` may be an :data:`OwnNow`, asked before each listing is shown. A change in
    how many entries could not be read is said too (text: a line; JSON: ``skipped``).
    """
    fixed = own if own is None or isinstance(own, Mapping) else None
    printer = _ChangePrinter(out, err, as_json, _table(local_addresses, fixed), wall, stamp)
    if own is not None and not isinstance(own, Mapping):
        printer.own_now = own
        printer.local_addresses = local_addresses
    poller = RouterPoller(source, interval=interval, timeout=timeout)
    seen = 0
    async with contextlib.aclosing(poller.watch()) as every:
        async for listing in every:
            printer.show(listing)
            seen += 1
            if listings is not None and seen >= listings:
                break
    return EXIT_OK


class _ChangePrinter:
    """Prints the first listing whole, then what each next one changed."""

    def __init__(self, out: TextIO, err: TextIO, as_json: bool, table: RouterTable,
                 wall: Callable[[], float], stamp: Callable[[float], str]) -> None:
        self.out, self.err, self.as_json = out, err, as_json
        self.table = table
        self.wall, self.stamp = wall, stamp
        self.last_error = ""
        self.own_now: OwnNow | None = None
        """Asked before each listing: natdeck's mappings now (None: fixed at the start)."""
        self.local_addresses: Collection[str] = ()
        self.skipped = 0
        """How many unreadable entries were said last."""

    def show(self, listing: Listing) -> None:
        if listing.rows is None:
            reason = sanitize(str(listing.error))
            if reason != self.last_error:
                print(f"natdeck: {reason}", file=self.err, flush=True)
                self.last_error = reason
            return
        self.last_error = ""
        if self.own_now is not None:
            # Before the update, so that a mapping natdeck made since the last listing
            # opens as ours.
            self.table.set_ours(self.local_addresses, self.own_now())
        first = self.table.listings == 0
        changes = self.table.update(listing.rows, listing.at)
        skipped = listing.skipped
        now = self.wall()
        if first:
            entries = self.table.view(listing.at, sort="host")
            if self.as_json:
                _warn_skipped(self.err, skipped)
                for line in json_lines(entries, listing.at, skipped):
                    print(line, file=self.out)
            else:
                print(render_table(entries, listing.at, skipped), file=self.out)
        elif skipped != self.skipped:
            if self.as_json:
                _warn_skipped(self.err, skipped)
            else:
                said = skipped_text(skipped) if skipped else "every entry could be read again"
                print(f"{self.stamp(now)} {said}", file=self.out)
        self.skipped = skipped
        for change in changes:
            if self.as_json:
                print(_change_json(change, now, skipped), file=self.out)
            else:
                print(f"{self.stamp(now)} {sanitize(change.sentence)}", file=self.out)
        self.out.flush()
