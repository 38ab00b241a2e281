"""The router view's engine: every mapping an IGD holds (GetListOfPortMappings, else
GetGenericPortMappingEntry walked until two walks agree; see :mod:`.listing`)."""

from __future__ import annotations

from .codes import UpnpErrorCode
from .connection import IgdConnection
from .errors import UpnpReplyError, UpnpResultError
from .listing import (
    MAX_ENTRIES,
    GenericWalk,
    RouterMapping,
    parse_entry,
    parse_port_listing,
    same_table,
)
from .results import RouterListing

__all__ = ["LIST_PAGE", "MAX_WALKS", "list_all"]

#: Walks of GetGenericPortMappingEntry at most, until two agree.
MAX_WALKS = 3
#: Entries asked per GetListOfPortMappings call (miniupnpd's own cap is 1000).
LIST_PAGE = 1000


async def list_all(connection: IgdConnection) -> RouterListing:
    """Every mapping ``connection``'s IGD holds, whoever made it."""
    if connection.has("GetListOfPortMappings"):
        try:
            return await _list_v2(connection)
        except (UpnpResultError, UpnpReplyError):
            if not connection.has("GetGenericPortMappingEntry"):
                raise
    previous: list[RouterMapping] | None = None
    walk = GenericWalk()
    for _ in range(MAX_WALKS):
        walk = await _walk(connection)
        if previous is not None and same_table(previous, walk.mappings):
            break
        previous = walk.mappings
    return RouterListing(walk.mappings, "GetGenericPortMappingEntry", walk.skipped)


async def _list_v2(connection: IgdConnection) -> RouterListing:
    seen: dict[tuple[int, int, str], RouterMapping] = {}
    skipped = 0
    for protocol in ("TCP", "UDP"):
        start = 1
        while start <= 0xFFFF and len(seen) + skipped < MAX_ENTRIES:
            try:
                reply = await connection.call(
                    "GetListOfPortMappings", "list mappings", NewStartPort=start,
                    NewEndPort=0xFFFF, NewProtocol=protocol, NewManage=True,
                    NewNumberOfPorts=LIST_PAGE)
            except UpnpResultError as exc:
                if exc.code in (UpnpErrorCode.PORT_MAPPING_NOT_FOUND,
                                UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY):
                    break
                raise
            try:
                page, bad = parse_port_listing(reply.get("NewPortListing", ""))
            except ValueError as exc:
                raise UpnpReplyError(f"list mappings: {exc}") from None
            for mapping in page:
                seen.setdefault(mapping.key, mapping)
            skipped += bad
            if len(page) + bad < LIST_PAGE or not page:
                break
            # The next page starts past this one's last port. An IGD that ignores
            # NewStartPort (answering the same page again) or pages by a port it did not
            # list would be asked forever: not believed (the generic walk may do instead).
            ports = [m.external_port for m in page]
            below = min((port for port in ports if port), default=start)
            if below < start or max(ports) < start:
                raise UpnpReplyError(
                    f"list mappings: GetListOfPortMappings from port {start} listed port "
                    f"{min(ports)}: it does not page")
            start = max(ports) + 1
    return RouterListing(list(seen.values()), "GetListOfPortMappings", skipped)


async def _walk(connection: IgdConnection) -> GenericWalk:
    walk = GenericWalk()
    while not walk.exhausted:
        try:
            reply = await connection.call("GetGenericPortMappingEntry", "list mappings",
                                          NewPortMappingIndex=walk.next_index)
        except UpnpResultError as exc:
            # 713 past the end (also at index 0 of an empty table); some IGDs say 714.
            if exc.code in (UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID,
                            UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY):
                break
            raise
        try:
            walk.add(parse_entry(reply))
        except ValueError:
            walk.skip()
    return walk


