"""What a granted mapping is (:class:`PortMapping`), what a probe found (:class:`ProbeResult`,
from :mod:`engine.probe_result` on first use: a one-shot ``natdeck map`` does not probe).

The results of the client layer, and the one-shot handle :func:`~engine.client.map_port`
returns. Imports only below it; a mapping reaches its :class:`~engine.client.GatewayClient`
through ``mapping.client`` (made on first use).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from .errors import InvalidRequest
from .protocols import Protocol, as_protocol, protocol_name
from .request import DEFAULT_LIFETIME, MapRequest, from_fields, new_nonce
from .transport import SERVER_PORT
from .types import MappingProtocol
from .wire import pcp
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .client import GatewayClient
    from .dialects.base import Grant
    from .probe_result import ProbeResult as ProbeResult

__all__ = [
    "DEFAULT_TIMEOUT", "MappingCall", "PortMapping", "ProbeResult", "granted", "request_for",
]

#: Makes a client for a mapping that has none (gateway, gateway port, local address); set by
#: :mod:`engine.client` when it loads (:func:`register_client_factory`).
_client_factory: Callable[[IPAddress, int, IPAddress | None], GatewayClient] | None = None


def register_client_factory(
        factory: Callable[[IPAddress, int, IPAddress | None], GatewayClient]) -> None:
    """How a mapping without a client gets one (engine.client registers itself)."""
    global _client_factory
    _client_factory = factory

log = logging.getLogger("engine.client")

#: Total seconds a one-shot call may take by default: the RFC schedules, cut there
#: (PCP's own schedule never ends, RFC 6887 §8.1.1). ``timeout=None`` gives the RFCs' own.
DEFAULT_TIMEOUT = 30.0


@dataclass(eq=False)
class PortMapping:
    """A mapping the gateway granted, kept up to date by :meth:`renew`.

    ``expires_at`` and ``granted_at`` are on the event loop's clock
    (``loop.time()``, monotonic). For a PEER mapping ``remote_address`` and
    ``remote_port`` name the peer. A UPnP IGD mapping (``via == "upnp"``) is named at
    its gateway by ``protocol`` and ``external_port``; ``permanent`` says its lease has
    no end (a gateway that takes only those): ``lifetime`` 0, ``expires_at`` infinite,
    and it must be deleted when no longer wanted.
    """

    gateway: IPAddress
    local_address: IPAddress
    protocol: Protocol | int
    internal_port: int
    external_port: int
    external_address: IPAddress | None
    lifetime: int
    expires_at: float
    via: MappingProtocol
    epoch: int
    nonce: bytes | None = None
    requested_lifetime: int = DEFAULT_LIFETIME
    granted_at: float = 0.0
    suggested_external_port: int = 0
    suggested_external_address: IPAddress | None = None
    options: tuple[pcp.Option, ...] = ()
    remote_address: IPAddress | None = None
    remote_port: int | None = None
    gateway_port: int = SERVER_PORT
    deleted: bool = False
    permanent: bool = False
    client: GatewayClient | None = field(default=None, repr=False)

    @property
    def opcode(self) -> Literal["map", "peer"]:
        """``"peer"`` for a PEER mapping, else ``"map"``."""
        return "peer" if self.remote_address is not None else "map"

    @property
    def key(self) -> tuple[int, int]:
        """(protocol, internal port): what identifies the mapping at its gateway."""
        return (int(self.protocol), self.internal_port)

    def remaining(self, now: float | None = None) -> float:
        """Seconds until the mapping expires (negative once it has); ``now`` on the loop's
        clock, by default the running loop's time, or :func:`time.monotonic` (the clock
        asyncio's loops read) without one (a :class:`~engine.blocking.BlockingClient`'s)."""
        if now is None:
            try:
                now = asyncio.get_running_loop().time()
            except RuntimeError:
                now = time.monotonic()
        return self.expires_at - now

    def describe(self) -> str:
        """``tcp 8080 -> 203.0.113.7:8080 (pcp)``."""
        where = f"{self.external_address}:{self.external_port}" if self.external_address \
            else f"port {self.external_port}"
        return f"{protocol_name(int(self.protocol))} {self.internal_port} -> {where} ({self.via})"

    def _client(self) -> GatewayClient:
        if self.client is None:
            # A mapping restored without its client (from the state file) makes one through
            # the factory engine.client registers as it loads: the layer above is never
            # imported from here.
            if _client_factory is None:
                raise InvalidRequest("this mapping has no client: import engine.client first")
            self.client = _client_factory(self.gateway, self.gateway_port, self.local_address)
        return self.client

    async def renew(self, lifetime: int | None = None, *,
                    timeout: float | None = DEFAULT_TIMEOUT) -> PortMapping:
        """Ask the gateway to extend the mapping (the same nonce and ports); updates ``self``.

        Raises a :class:`~engine.errors.GatewayError` and leaves the mapping as it was.
        """
        await self._client().renew(self, lifetime, timeout=timeout)
        return self

    async def delete(self, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        """Delete the mapping at the gateway ("try drop").

        On failure it raises and the mapping is still usable, so the delete can be
        retried (or the mapping renewed).
        """
        await self._client().delete(self, timeout=timeout)

    async def __aenter__(self) -> PortMapping:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.deleted:
            return
        try:
            await self.delete()
        except Exception:
            if exc is None:
                raise
            log.warning("could not delete %s while leaving its context", self.describe(),
                        exc_info=True)


class MappingCall:
    """What :func:`map_port` returns: await it, or use it as ``async with`` (deleted on exit)."""

    def __init__(self, make: Callable[[], Awaitable[PortMapping]]) -> None:
        self._make = make
        self._mapping: PortMapping | None = None

    def __await__(self) -> Generator[object, None, PortMapping]:
        return self._run().__await__()

    async def _run(self) -> PortMapping:
        return await self._make()

    async def __aenter__(self) -> PortMapping:
        self._mapping = await self._make()
        return self._mapping

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._mapping is not None:
            await self._mapping.__aexit__(exc_type, exc, tb)


def request_for(mapping: PortMapping, lifetime: int) -> MapRequest:
    """The request that renews (or, with lifetime 0, deletes) ``mapping``: the same nonce,
    the port held (RFC 6887 §11.2.1, RFC 6886 §3.3), the options sent."""
    via = mapping.via
    return from_fields(
        as_protocol(int(mapping.protocol)), mapping.internal_port,
        mapping.external_port or mapping.suggested_external_port,
        mapping.external_address if via == "pcp" else None, lifetime, via, False, (), None,
        # Only PCP sends a nonce: no draw for a NAT-PMP or UPnP mapping's every renewal.
        mapping.nonce or (new_nonce() if via == "pcp" else None),
        mapping.remote_address, mapping.remote_port, mapping.options)


def granted(client: GatewayClient, mapping: PortMapping | None, request: MapRequest,
            grant: Grant, local: IPAddress, now: float) -> PortMapping:
    """The mapping a :class:`~engine.dialects.base.Grant` gives: a new one, or ``mapping``
    updated in place (a renewal or a recreation), at ``now`` on the loop's clock."""
    via = grant.mapping_protocol
    epoch = grant.epoch or 0
    expires_at = math.inf if grant.permanent else now + grant.lifetime
    if mapping is None:
        # Every field, in the class's order: positionally, a third of the cost of by name
        # (issue 15: one per mapping); tests/unit/test_mapping_fields.py pins the order.
        return PortMapping(
            client.gateway,  # gateway
            local,  # local_address
            as_protocol(int(request.protocol)),  # protocol
            request.internal_port,  # internal_port
            grant.external_port,  # external_port
            grant.external_address,  # external_address
            grant.lifetime,  # lifetime
            expires_at,  # expires_at
            via,  # via
            epoch,  # epoch
            request.nonce if via == "pcp" else None,  # nonce
            request.lifetime,  # requested_lifetime
            now,  # granted_at
            request.suggested_external_port,  # suggested_external_port
            request.external_address,  # suggested_external_address
            # What we sent, which renewals and the delete send again: a success means
            # every option of ours was processed (all are mandatory, RFC 6887 §7.3). Not
            # the answer's: one that echoes a vendor option and not THIRD_PARTY would
            # have the renewal map this host instead, and the third party's lapse.
            request.options,  # options
            request.remote_address,  # remote_address
            request.remote_port,  # remote_port
            client.port,  # gateway_port
            False,  # deleted
            grant.permanent,  # permanent
            client)  # client
    mapping.external_port = grant.external_port
    mapping.external_address = grant.external_address
    mapping.lifetime = grant.lifetime
    mapping.granted_at = now
    mapping.expires_at = expires_at
    mapping.permanent = grant.permanent
    mapping.epoch = epoch
    mapping.via = via
    # The request's nonce is the mapping's from now on: a recreation by another protocol
    # (NAT-PMP, then PCP) drew a new one, which its renewals and delete must send again
    # (RFC 6887 §11.1: another nonce is NOT_AUTHORIZED); NAT-PMP and UPnP IGD send none.
    mapping.nonce = request.nonce if via == "pcp" else None
    mapping.options = request.options  # what was sent (above): never the answer's
    mapping.client = client
    return mapping


def __getattr__(name: str) -> Any:
    # ProbeResult on first use (PEP 562): issue 15's one-shot import builds no dataclass it
    # does not use.
    if name == "ProbeResult":
        from .probe_result import ProbeResult

        globals()[name] = ProbeResult
        return ProbeResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
