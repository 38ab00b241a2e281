"""Where the router view's listings come from, and the poller that refreshes them.

A :class:`RouterListing` reads a gateway's whole mapping table and deletes one
entry of it; :class:`UpnpRouterListing` is the one natdeck uses, over the
gateway's UPnP IGD (``GetListOfPortMappings``, else ``GetGenericPortMappingEntry``
walked by index), on a real gateway and on the demo's simulated one alike.
:class:`RouterPoller` calls it every ``interval`` seconds while
someone iterates :meth:`RouterPoller.watch` (the router view while it is on
screen, ``natdeck list --watch``), one listing at a time, each bounded by a
timeout; a failure is a :class:`Listing` with an ``error``, never an exception
that would end the watcher. After failed listings the poller backs off
(:func:`listing_delay`): a gateway without UPnP IGD answers no SSDP search, and
searching it again every interval only adds traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .errors import GatewayError, NatDeckError
from .router_view import RouterMapping
from .upnp.errors import UpnpReplyError, UpnpResultError, UpnpTimeout, UpnpTransportError

if TYPE_CHECKING:
    from .upnp.gateway import UpnpGateway

__all__ = [
    "DEFAULT_INTERVAL",
    "MAX_BACKOFF",
    "Listing",
    "ListingUnavailable",
    "RouterListing",
    "RouterPoller",
    "SkipsUnreadable",
    "UpnpRouterListing",
    "listing_delay",
]

#: Seconds between two listings while the view is open (a listing costs ~1.4 ms on
#: miniupnpd with GetListOfPortMappings, and one SOAP call per entry without it).
DEFAULT_INTERVAL = 2.0

#: The longest wait after failed listings (each may be an SSDP search that nothing answers).
MAX_BACKOFF = 300.0


def listing_delay(interval: float, failures: int, maximum: float = MAX_BACKOFF) -> float:
    """Seconds to wait before the next listing after ``failures`` failed ones in a row (pure).

    The interval after a good listing or a first failure (it may have been a lost
    packet), then doubled at each failure, up to ``maximum`` (never below the interval).
    """
    if failures <= 1:
        return interval
    return min(interval * 2.0 ** min(failures - 1, 32), max(maximum, interval))


class RouterListing(Protocol):
    """Reads and edits the whole mapping table of a gateway (every host's mappings)."""

    async def list_mappings(self) -> list[RouterMapping]:
        """Every mapping the gateway holds now. Raises :class:`~engine.errors.NatDeckError`
        (:class:`ListingUnavailable` when the gateway does not list its mappings)."""
        ...

    async def delete_mapping(self, mapping: RouterMapping) -> None:
        """Delete ``mapping`` at the gateway. Raises a :class:`~engine.errors.NatDeckError`
        when it refuses (miniupnpd's ``secure_mode`` refuses another host's with UPnP
        error 606) or does not answer."""
        ...


@runtime_checkable
class SkipsUnreadable(Protocol):
    """A :class:`RouterListing` that counts the entries its last listing could not read.

    A gateway may list an entry natdeck cannot parse (a bad port, an unknown protocol);
    the listing goes on without it (one bad entry must not hide the others), and this
    count lets the router view and ``natdeck list`` say that entries are missing.
    """

    skipped: int
    """Entries the last good listing held but could not read (0 before any)."""


class ListingUnavailable(GatewayError):
    """The gateway does not list its mappings: it has no UPnP IGD, or refuses to list.

    NAT-PMP and PCP have no way to list a gateway's mappings; only UPnP IGD does.
    """


class UpnpRouterListing:
    """A :class:`RouterListing` over the gateway's UPnP IGD.

    Listing failures become :class:`ListingUnavailable` (no IGD answered, or it refused
    to list: the view then shows natdeck's own mappings); a refused delete is raised as
    the gateway gave it, a :class:`~engine.upnp.UpnpResultError` (606
    ``ActionNotAuthorized`` under miniupnpd's ``secure_mode``). The IGD is found once;
    after a transport failure or an unreadable answer it is searched again at the next
    listing (a rebooted router may serve on another port).
    """

    def __init__(self, igd: UpnpGateway) -> None:
        self.igd = igd
        self.skipped = 0
        """Entries the last good listing held but could not read (:class:`SkipsUnreadable`)."""

    @classmethod
    def on(cls, gateway: str, *, ssdp_port: int | None = None, local_address: str | None = None,
           timeout: float = 3.0) -> UpnpRouterListing:
        """The listing of ``gateway``'s IGD (SSDP on ``ssdp_port``, 1900 by default).
        Nothing is sent before the first listing; async-upnp-client is imported then."""
        from .upnp.gateway import UpnpGateway
        from .upnp.ssdp import SSDP_PORT

        return cls(UpnpGateway(gateway, ssdp_port=SSDP_PORT if ssdp_port is None else ssdp_port,
                               local_address=local_address, timeout=timeout))

    async def list_mappings(self) -> list[RouterMapping]:
        """Every mapping the IGD holds (and :attr:`skipped` those it could not read).
        Raises :class:`ListingUnavailable`."""
        try:
            listing = await self.igd.list_mappings()
        except UpnpTimeout as exc:
            await self.igd.close()
            raise ListingUnavailable(
                f"the gateway does not list its mappings: {exc} (NAT-PMP and PCP cannot "
                "list a gateway's table; only UPnP IGD can)") from exc
        except UpnpResultError as exc:
            raise ListingUnavailable(f"the gateway refused to list its mappings: {exc}") from exc
        except (UpnpReplyError, UpnpTransportError) as exc:
            await self.igd.close()
            raise ListingUnavailable(f"the gateway's mappings could not be read: {exc}") from exc
        self.skipped = listing.skipped
        return listing.mappings

    async def delete_mapping(self, mapping: RouterMapping) -> None:
        """Delete ``mapping`` (one already gone counts as deleted); raises the gateway's
        refusal as a :class:`~engine.upnp.UpnpResultError`."""
        await self.igd.delete_mapping(mapping.protocol, mapping.external_port,
                                      mapping.remote_host, missing_ok=True)

    async def close(self) -> None:
        """Release the IGD's HTTP connections."""
        await self.igd.close()


@dataclass(frozen=True, slots=True)
class Listing:
    """One attempt to read the table: its ``rows``, or the ``error`` that stopped it.

    ``at`` is the loop time the listing was read at (its leases count down from it),
    ``took`` how many seconds it took, ``skipped`` how many entries the gateway listed
    that could not be read (not in ``rows``; only a :class:`SkipsUnreadable` source
    counts them).
    """

    rows: tuple[RouterMapping, ...] | None
    error: NatDeckError | None
    at: float
    took: float = 0.0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """True when the gateway listed its table."""
        return self.rows is not None


class RouterPoller:
    """Lists a gateway's table every ``interval`` seconds while it is watched.

    After failed listings in a row it waits longer (:func:`listing_delay`, up to
    ``max_backoff``), until a listing succeeds, :meth:`wake` (the user asked) or
    :meth:`reset` (the gateway changed). ``source`` ``None`` means there is nothing
    to ask (no UPnP gateway known): every listing is a :class:`ListingUnavailable`
    error, at once and without I/O.
    """

    def __init__(self, source: RouterListing | None, *, interval: float = DEFAULT_INTERVAL,
                 timeout: float = 10.0, clock: Callable[[], float] | None = None,
                 max_backoff: float = MAX_BACKOFF) -> None:
        if interval <= 0:
            raise ValueError(f"the refresh interval must be positive, not {interval}")
        self.source = source
        self.interval = interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.failures = 0
        """Failed listings in a row (0 after a good one, a wake or a reset)."""
        self._clock = clock
        self._changed = asyncio.Event()
        self._woken = False
        self._ended: float | None = None
        self._due: float | None = None

    def now(self) -> float:
        """Loop time (or the injected clock's)."""
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def poll(self) -> Listing:
        """Read the table once; an error comes back in the :class:`Listing`."""
        started = self.now()
        if self.source is None:
            return Listing(None, ListingUnavailable(
                "the gateway does not list its mappings: it has no UPnP IGD "
                "(NAT-PMP and PCP cannot list a gateway's table)"), started)
        try:
            async with asyncio.timeout(self.timeout):
                rows = await self.source.list_mappings()
        except NatDeckError as error:
            return Listing(None, error, started, self.now() - started)
        except TimeoutError:
            late = ListingUnavailable(
                f"the gateway did not list its mappings within {self.timeout:g} s")
            return Listing(None, late, started, self.now() - started)
        except (OSError, ValueError) as exc:
            # A source is not meant to leak these; it must not end the watcher if it does.
            failed = ListingUnavailable(f"listing the gateway's mappings failed: {exc}")
            return Listing(None, failed, started, self.now() - started)
        skipped = self.source.skipped if isinstance(self.source, SkipsUnreadable) else 0
        return Listing(tuple(rows), None, self.now(), self.now() - started, skipped)

    def delay(self) -> float:
        """Seconds from the end of one listing to the next, after :attr:`failures`."""
        return listing_delay(self.interval, self.failures, self.max_backoff)

    def next_in(self) -> float | None:
        """Seconds (loop time) until the next listing; None while one is in flight or
        before the first."""
        if self._due is None:
            return None
        return max(self._due - asyncio.get_running_loop().time(), 0.0)

    def wake(self) -> None:
        """List again now, without waiting out the interval or the back-off (a refresh
        key)."""
        self.failures = 0
        self._woken = True
        self._changed.set()

    def reset(self) -> None:
        """End the back-off (the gateway changed): the next listing comes at most one
        interval after the last one."""
        if self.failures == 0:
            return
        self.failures = 0
        if self._ended is not None and self._due is not None:
            self._due = min(self._due, self._ended + self.interval)
        self._changed.set()

    async def watch(self) -> AsyncGenerator[Listing, None]:
        """A listing now and then one every ``interval`` seconds (longer after failures;
        at once at :meth:`wake`), for as long as the caller iterates: stop iterating and
        the polling stops."""
        loop = asyncio.get_running_loop()
        while True:
            self._woken = False
            self._due = None
            listing = await self.poll()
            self.failures = 0 if listing.ok else self.failures + 1
            self._ended = loop.time()
            # A wake during the listing asks for one more, at once.
            self._due = self._ended if self._woken else self._ended + self.delay()
            yield listing
            while not self._woken and self._due is not None and (
                    left := self._due - loop.time()) > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
