"""The UPnP IGD of one gateway: map, renew, delete, external address, probe, list, pinholes.

Usage::

    async with UpnpGateway("192.168.1.1") as igd:
        mapping = await igd.map(Protocol.TCP, 8080, lifetime=7200)
        await igd.renew(mapping)
        await igd.delete(mapping)
        for entry in (await igd.list_mappings()).mappings: ...

The IGD is found once (SSDP restricted to the gateway, see :mod:`.search`) and its
description kept. Every add is checked with GetSpecificPortMappingEntry: a router that says
yes and holds nothing is an error, not a mapping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from ipaddress import IPv4Address, IPv6Address
from types import TracebackType
from typing import TYPE_CHECKING

from ..errors import GatewayError
from ..wire.addresses import IPAddress, to_address
from . import pinholes, portmap, router
from .codes import UpnpErrorCode
from .connection import DeviceInfo, IgdConnection, http_stack_loading
from .errors import (
    UpnpInvalidRequest,
    UpnpReplyError,
    UpnpResultError,
    UpnpTimeout,
    UpnpTransportError,
)
from .igd import (
    DEFAULT_LEASE,
    ExternalAddress,
    IgdCandidate,
    best_igd,
    lease_seconds,
    read_external_address,
)
from .listing import RouterMapping, upnp_protocol
from .portmap import AddRequest
from .results import RouterListing, UpnpMapping, UpnpProbe
from .search import search_gateway
from .ssdp import SSDP_PORT, SsdpAnswer

if TYPE_CHECKING:
    from .http import BoundedRequester

__all__ = ["DEFAULT_DESCRIPTION", "RouterListing", "UpnpGateway", "UpnpMapping", "UpnpProbe"]

log = logging.getLogger("engine.upnp")

DEFAULT_DESCRIPTION = "natdeck"
#: IGDs described at most when several answer (each costs a description fetch).
MAX_CANDIDATES = 3


def _local_address_for(gateway: IPAddress, port: int) -> IPAddress:
    # A connected UDP socket's own address is the one the kernel routes from; nothing is sent.
    family = socket.AF_INET if isinstance(gateway, IPv4Address) else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((str(gateway), port))
        return to_address(str(probe.getsockname()[0]))


class UpnpGateway:
    """The UPnP IGD on ``gateway``. ``ssdp_port`` is where it answers M-SEARCH (1900; the
    simulator's own port in tests); ``multicast`` allows the multicast search after a silent
    unicast one (``None``: unless the gateway is loopback). ``timeout`` bounds the search and
    each HTTP request, ``max_body`` each HTTP body (bytes). ``local_address`` is the internal
    client (else the routed address). ``location`` skips SSDP (a description URL known from
    before; it must be on the gateway)."""

    def __init__(self, gateway: str | IPAddress, *, ssdp_port: int = SSDP_PORT,
                 local_address: str | IPAddress | None = None, multicast: bool | None = None,
                 timeout: float = 3.0, location: str | None = None,
                 max_body: int | None = None) -> None:
        self.gateway = to_address(gateway)
        self.ssdp_port = ssdp_port
        self._local = to_address(local_address) if local_address is not None else None
        self.multicast = (not self.gateway.is_loopback) if multicast is None else multicast
        self.timeout = timeout
        self._location = location
        self._max_body = max_body
        self._connection: IgdConnection | None = None
        self._requester: BoundedRequester | None = None
        self._lock = asyncio.Lock()
        self._found: str | None = None
        self._scouted: list[SsdpAnswer] | None = None  # answers scout() heard, not yet read
        self._loading: asyncio.Future[None] | None = None
        self.search_rtt = 0.0

    async def __aenter__(self) -> UpnpGateway:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the HTTP connections. The IGD's description is read again on next use,
        from the location found before (no new SSDP search unless the IGD moved)."""
        requester, self._requester, self._connection = self._requester, None, None
        if requester is not None:
            await requester.close()

    @property
    def connected(self) -> bool:
        """Whether the IGD is found and described (its HTTP connections may be open)."""
        return self._connection is not None

    @property
    def device(self) -> DeviceInfo | None:
        """What the IGD found says about itself (``None`` before :meth:`connect`)."""
        return None if self._connection is None else self._connection.info

    @property
    def local_address(self) -> IPAddress:
        """The internal client mappings point to."""
        if self._local is None:
            self._local = _local_address_for(self.gateway, self.ssdp_port)
        return self._local

    # --- finding the IGD --------------------------------------------------------------------

    async def connect(self) -> IgdConnection:
        """Find and describe the IGD (once; later calls return it). Raises
        :class:`UpnpTimeout` when no IGD answers, :class:`UpnpReplyError` when none is usable."""
        async with self._lock:
            if self._connection is None:
                self._connection = await self._discover()
            return self._connection

    async def scout(self) -> bool:
        """Whether an IGD answers an SSDP search (:mod:`engine.igd_scout`); never raises for
        silence. The answers are kept for the discovery next, and the HTTP stack loads."""
        if self._connection is not None or self._location is not None \
                or self._found is not None:
            return True
        try:
            # The HTTP stack only once an IGD answered: PCP may still answer meanwhile.
            self._scouted = await self._search(load_meanwhile=False)
        except (UpnpTimeout, UpnpTransportError):
            return False
        self._load_http_stack()
        return True

    async def _discover(self) -> IgdConnection:
        # What is known may be stale (answers scout() heard a while ago, the IGD found
        # before: a reboot onto another HTTP port): searched again once if it fails.
        answers, self._scouted = self._scouted, None
        searched = answers is None and self._location is None and self._found is None
        if searched:
            answers = await self._search()  # the HTTP stack loads meanwhile: _load_http_stack
        if self._loading is not None:
            loading, self._loading = self._loading, None
            await loading
        from .http import BoundedRequester

        await self.close()  # a failed discovery before may have left its connections
        requester = BoundedRequester(self.gateway, timeout=self.timeout)
        if self._max_body is not None:
            requester.max_body = self._max_body
        self._requester = requester
        if self._location is not None:
            return await IgdConnection.open(requester, self._location)
        try:
            if answers is not None:
                connection = await _described(requester, answers)
            else:
                assert self._found is not None  # else searched above
                connection = await IgdConnection.open(requester, self._found)
        except (UpnpReplyError, UpnpTimeout, UpnpTransportError):
            if searched:
                raise
            connection = await _described(requester, await self._search())
        self._found = connection.info.location
        return connection

    async def _search(self, *, load_meanwhile: bool = True) -> list[SsdpAnswer]:
        answers, self.search_rtt = await search_gateway(
            self.gateway, port=self.ssdp_port, local_address=self._local,
            multicast=self.multicast, timeout=self.timeout,
            searched=self._load_http_stack if load_meanwhile else None)
        return answers

    def _load_http_stack(self) -> None:
        # The first search of a process imports the HTTP stack (~100 ms) in a thread, from
        # when the searches are out, while the gateway takes its time to answer (miniupnpd
        # ~51 ms): a cold ``natdeck map`` on a UPnP router waits for the longer of the two,
        # not for both. _discover awaits it; a search that fails does not wait for it.
        if self._loading is None:
            self._loading = http_stack_loading()
            if self._loading is not None:
                # Read even if nothing awaits it (the search failed, or PCP answered after
                # the scout); a failed import is raised where _discover awaits it.
                self._loading.add_done_callback(lambda f: f.cancelled() or f.exception())

    # --- what the gateway is ----------------------------------------------------------------

    async def probe(self) -> UpnpProbe:
        """Find the IGD and ask its WAN state: name, model, IGD version, service, address."""
        connection = await self.connect()
        external = await _external(connection, "probe")
        connected = await _connected(connection, "probe")
        return UpnpProbe(connection.info, external, connected, self.search_rtt)

    async def external_address(self) -> ExternalAddress:
        """The IGD's external address, judged: ``address`` ``None`` or ``public`` False come
        with the double-NAT ``warning`` (an empty answer is not an error)."""
        return await _external(await self.connect(), "external address")

    # --- mappings ---------------------------------------------------------------------------

    async def map(self, protocol: int, internal_port: int, *, external_port: int = 0,
                  lifetime: int | None = DEFAULT_LEASE,
                  description: str = DEFAULT_DESCRIPTION) -> UpnpMapping:
        """Map ``protocol`` (6/17) ``internal_port`` of this host, suggesting ``external_port``
        (0: the internal port). ``lifetime`` in seconds (capped at 604800; 0 = permanent); a
        gateway that takes only permanent leases (725, or 402) gets a permanent one.
        AddAnyPortMapping lets the IGD pick another port when the suggestion is taken;
        without it (IGDv1) a taken port is :class:`UpnpResultError` 718 (``port_in_use``)."""
        name = _check_request(protocol, internal_port, external_port)
        request = f"map {name} {internal_port}"
        lease = _checked_lease(lifetime)
        connection = await self.connect()
        # Asked before adding, as tailscale does: a failing query must not leak a rule a try.
        external = await _external(connection, request)
        asked = AddRequest(protocol, external_port or internal_port, self.local_address,
                           internal_port, lease, description,
                           connection.has("AddAnyPortMapping"))
        return await portmap.add_and_verify(connection, request, asked, external)

    async def renew(self, mapping: UpnpMapping, lifetime: int | None = None, *,
                    move_if_taken: bool = False) -> UpnpMapping:
        """Add ``mapping`` again (same external port) before its lease ends; the renewed
        mapping. A 718 (or 729) means another host took the port meanwhile (our lease ran out,
        or the router lost its table): raised, unless ``move_if_taken`` and the IGD has
        AddAnyPortMapping: then the mapping is added anew the way :meth:`map` adds it, the
        held port suggested, and the IGD grants another free port (the result says which),
        as a PCP gateway may on a renewal (RFC 6887 §11.2.1). An IGDv1 has only
        AddPortMapping, which would be refused the same port again: 718 is raised there."""
        lease = 0 if mapping.permanent else _checked_lease(
            mapping.requested_lifetime if lifetime is None else lifetime)
        name = upnp_protocol(mapping.protocol)
        request = f"renew {name} {mapping.internal_port}"
        connection = await self.connect()
        external = await _external(connection, request)
        asked = AddRequest(mapping.protocol, mapping.external_port, self.local_address,
                           mapping.internal_port, lease, mapping.description, False)
        try:
            return await portmap.add_and_verify(connection, request, asked, external)
        except UpnpResultError as exc:
            if not (move_if_taken and exc.port_in_use and connection.has("AddAnyPortMapping")):
                raise
            log.info("UPnP gateway %s: external port %d was taken meanwhile (%s); asking for "
                     "another", self.gateway, mapping.external_port, exc.name)
        return await portmap.add_and_verify(connection, request,
                                            dataclasses.replace(asked, use_any=True), external)

    async def delete(self, mapping: UpnpMapping) -> None:
        """Delete our mapping. One already gone (714) counts as deleted."""
        await self.delete_mapping(mapping.protocol, mapping.external_port, mapping.remote_host,
                                  missing_ok=True)

    async def delete_mapping(self, protocol: int, external_port: int, remote_host: str = "", *,
                             missing_ok: bool = False) -> None:
        """Delete any mapping, also another host's (the router view). The gateway's refusal is
        raised as it gave it: 606 ActionNotAuthorized under miniupnpd's secure_mode, 714 when
        there is no such mapping (unless ``missing_ok``)."""
        name = _check_request(protocol, 1, external_port)
        request = f"delete {name} {external_port}"
        try:
            await (await self.connect()).call(
                "DeletePortMapping", request, NewRemoteHost=remote_host,
                NewExternalPort=external_port, NewProtocol=name)
        except UpnpResultError as exc:
            if not (missing_ok and exc.code == UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY):
                raise

    async def get_mapping(self, protocol: int, external_port: int,
                          remote_host: str = "") -> RouterMapping | None:
        """The gateway's entry for ``external_port`` (GetSpecificPortMappingEntry), or ``None``
        (714): what the manager asks to see whether a mapping is still there."""
        return await portmap.entry(await self.connect(), f"look up {external_port}",
                                   protocol, external_port, remote_host)

    async def list_mappings(self) -> RouterListing:
        """Every mapping the gateway holds, whoever made it (PCP and NAT-PMP ones too on
        miniupnpd): GetListOfPortMappings where the IGD has it, else GetGenericPortMappingEntry
        walked until two walks agree."""
        return await router.list_all(await self.connect())

    # --- IPv6 pinholes (WANIPv6FirewallControl:1) ---------------------------------------------

    async def add_pinhole(self, protocol: int, internal_port: int, *,
                          internal_client: str | IPv6Address | None = None,
                          remote_host: str = "", remote_port: int = 0,
                          lifetime: int = DEFAULT_LEASE) -> int:
        """Open an IPv6 pinhole to ``internal_client`` (default: this host); its UniqueID."""
        client = to_address(internal_client) if internal_client is not None else self.local_address
        _check_request(protocol, internal_port, remote_port)
        return await pinholes.add(await self.connect(), client, protocol, internal_port,
                                  remote_host, remote_port, lifetime)

    async def update_pinhole(self, unique_id: int, lifetime: int = DEFAULT_LEASE) -> None:
        """Extend pinhole ``unique_id``."""
        await pinholes.update(await self.connect(), unique_id, lifetime)

    async def delete_pinhole(self, unique_id: int) -> None:
        """Close pinhole ``unique_id``."""
        await pinholes.delete(await self.connect(), unique_id)


def _check_request(protocol: int, internal_port: int, external_port: int) -> str:
    try:
        name = upnp_protocol(int(protocol))
    except ValueError as exc:
        raise UpnpInvalidRequest(str(exc)) from None
    if not 1 <= internal_port <= 0xFFFF:
        raise UpnpInvalidRequest(f"internal port must be 1-65535 for UPnP, not {internal_port}")
    if not 0 <= external_port <= 0xFFFF:
        raise UpnpInvalidRequest(f"external port must be 0-65535, not {external_port}")
    return name


def _checked_lease(lifetime: int | None) -> int:
    try:
        return lease_seconds(lifetime)
    except ValueError as exc:
        raise UpnpInvalidRequest(str(exc)) from None


async def _described(requester: BoundedRequester, answers: list[SsdpAnswer]) -> IgdConnection:
    """The IGD of the first answers (:data:`MAX_CANDIDATES`), described; of several, the
    best by their WAN state (connected, a public address)."""
    connections: list[IgdConnection] = []
    failure: Exception | None = None
    for answer in answers[:MAX_CANDIDATES]:
        try:
            connections.append(await IgdConnection.open(requester, answer.location))
        except GatewayError as exc:  # unusable, silent or unreachable: the next one may do
            failure = exc
    if not connections:
        assert failure is not None
        raise failure
    if len(connections) == 1:
        return connections[0]
    by_location = {c.info.location: c for c in connections}
    ranked = [IgdCandidate(c.info.location, *await _wan_state(c)) for c in connections]
    best = best_igd(ranked)
    assert best is not None
    return by_location[best.location]


async def _wan_state(connection: IgdConnection) -> tuple[bool, ExternalAddress]:
    """Whether the IGD says its WAN is connected, and its external address: to rank it among
    others. One that fails to say (an error, silence, a dropped connection) ranks last, and
    the others are still ranked."""
    try:
        connected = await _connected(connection, "rank IGDs")
    except GatewayError:
        return False, ExternalAddress(None, False, None)
    try:
        external = await _external(connection, "rank IGDs")
    except GatewayError:
        external = ExternalAddress(None, False, None)
    return bool(connected), external


async def _connected(connection: IgdConnection, request: str) -> bool | None:
    if not connection.has("GetStatusInfo"):
        return None
    try:
        status = await connection.call("GetStatusInfo", request)
    except (UpnpResultError, UpnpReplyError):
        return False
    return status.get("NewConnectionStatus", "") == "Connected"


async def _external(connection: IgdConnection, request: str) -> ExternalAddress:
    reply = await connection.call("GetExternalIPAddress", request)
    try:
        return read_external_address(reply.get("NewExternalIPAddress", ""))
    except ValueError:
        raise UpnpReplyError(f"{request}: GetExternalIPAddress answered "
                             f"{reply.get('NewExternalIPAddress', '')[:40]!r}, "
                             "not an address") from None
