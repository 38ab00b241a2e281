"""The mapper of a datagram dialect: PCP and NAT-PMP behind the one client interface.

One class for both protocols (no more twins): it builds an :class:`~.base.Ask`
with the dialect, runs it through the client's channel (its ``run``), reads the
answer with the dialect, and records what it learnt in the client's
:class:`~engine.negotiation.Negotiation`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Coroutine
from typing import Any, Protocol

from ..errors import GatewayError, GatewayTimeout, ResultCodeError
from ..exchange import Outcome
from ..negotiation import Negotiation
from ..protocols import Protocol as TransportProtocol
from ..request import MapRequest, new_nonce
from ..types import DatagramProtocol
from ..wire.addresses import IPAddress
from .base import Ask, DatagramDialect, Grant, Heard
from .base import grant as make_grant
from .natpmp import NatPmpDialect

__all__ = ["DatagramLink", "DatagramMapper", "address_budget"]

log = logging.getLogger("engine.dialects")


def address_budget(timeout: float | None, spent: float) -> float | None:
    """Seconds NAT-PMP's external address request may take after the map it follows: what
    is left of the caller's ``timeout`` after the map's ``spent`` seconds (``None``: no
    deadline), so that the call as a whole keeps to its timeout. Not a shorter cap: the
    request may wait its turn behind many maps on a gateway that serves one at a time."""
    return None if timeout is None else max(0.0, timeout - spent)


class DatagramLink(Protocol):
    """What a datagram mapper needs of its client: the I/O and the shared state."""

    negotiation: Negotiation
    rng: random.Random

    @property
    def concurrent(self) -> bool:
        """Whether requests may be out at once; ``False`` (no event loop): one at a time."""

    async def run(self, ask: Ask, *, timeout: float | None,
                  retransmit: bool = True) -> Outcome:
        """Send ``ask`` on the RFC schedule until answered or ``timeout``."""

    async def local_address(self) -> IPAddress:
        """The address the gateway sees us as."""

    @property
    def explicit_local_address(self) -> IPAddress | None:
        """That address when already known (no coroutine to learn it)."""


class DatagramMapper:
    """The :class:`~engine.dialects.base.Mapper` of PCP or NAT-PMP."""

    def __init__(self, dialect: DatagramDialect, link: DatagramLink) -> None:
        self.dialect = dialect
        self.name: DatagramProtocol = dialect.name
        self.link = link
        self._address_lookup: asyncio.Future[IPAddress] | None = None
        #: Whether the dialect has a request for the address alone (NAT-PMP): asked once,
        #: not by building that request after every mapping.
        self._asks_address = dialect.address() is not None

    def refusal(self, request: MapRequest) -> str | None:
        """Why the dialect cannot carry ``request``."""
        return self.dialect.refusal(request)

    async def _ask(self, ask: Ask, timeout: float | None, retransmit: bool = True) -> Grant:
        outcome = await self.link.run(ask, timeout=timeout, retransmit=retransmit)
        return self._read(ask, outcome)

    def _read(self, ask: Ask, outcome: Outcome) -> Grant:
        try:
            grant = ask.read(outcome.message)
        except GatewayError as exc:
            self.link.negotiation.learn(self.name, exc)
            raise
        self.link.negotiation.learn(self.name)
        return grant

    async def _request(self, request: MapRequest, what: str, timeout: float | None,
                       retransmit: bool = True) -> Grant:
        link = self.link
        local = link.explicit_local_address or await link.local_address()
        ask = self.dialect.map(request, local, what)
        # link.run awaited here, not through _ask: one coroutine less on every request.
        outcome = await link.run(ask, timeout=timeout, retransmit=retransmit)
        grant = self._read(ask, outcome)
        negotiation = link.negotiation
        if request.lifetime == 0:
            return grant
        if grant.external_address is not None:
            negotiation.external_address = grant.external_address
        elif self._asks_address:
            # A NAT-PMP mapping answer does not carry the external address (RFC 6886 §3.3).
            budget = address_budget(timeout, outcome.elapsed)
            if negotiation.external_address is None and (budget is None or budget > 0):
                try:
                    await self._shared_address(budget)
                except (GatewayTimeout, ResultCodeError) as exc:
                    log.info("mapped, but the external address is unknown: %s", exc)
            # Built, not dataclasses.replace(): this runs for every NAT-PMP mapping.
            grant = make_grant(grant.mapping_protocol, grant.epoch, grant.external_port,
                          negotiation.external_address, grant.lifetime, grant.options)
        return grant

    # map and renew return _request's coroutine (awaitable as the Mapper's async methods),
    # not a coroutine of their own awaiting it: one frame less on every request (issue 15).
    def map(self, request: MapRequest, *, timeout: float | None) -> Coroutine[Any, Any, Grant]:
        """Create the mapping ``request`` asks for."""
        return self._request(request, "map", timeout)

    def renew(self, request: MapRequest, *, timeout: float | None,
              retransmit: bool = True) -> Coroutine[Any, Any, Grant]:
        """Ask again for a granted mapping (RFC 6887 §11.2.1, RFC 6886 §3.3)."""
        return self._request(request, "renew", timeout, retransmit)

    async def delete(self, request: MapRequest, *, timeout: float | None) -> None:
        """Lifetime 0 (RFC 6887 §15, RFC 6886 §3.4)."""
        if request.lifetime:
            request = dataclasses.replace(request, lifetime=0)
        await self._request(request, "delete", timeout)

    async def delete_all(self, protocol: TransportProtocol, *, timeout: float | None) -> None:
        """NAT-PMP's delete-all for ``protocol`` (RFC 6886 §3.4)."""
        if not isinstance(self.dialect, NatPmpDialect):  # pragma: no cover - client checks
            raise TypeError("delete-all is NAT-PMP's")
        await self._ask(self.dialect.delete_all(protocol), timeout)

    async def external_address(self, *, timeout: float | None) -> IPAddress:
        """The dialect's own request where it has one, else a short MAP (RFC 6887 §11.6)."""
        ask = self.dialect.address()
        if ask is not None:
            grant = await self._ask(ask, timeout)
            assert grant.external_address is not None
            self.link.negotiation.external_address = grant.external_address
            return grant.external_address
        # A high internal port: gateways often refuse to map low ones.
        port = self.link.rng.randint(49152, 65535)
        request = MapRequest(TransportProtocol.UDP, port, port, lifetime=120, via=self.name,
                             nonce=new_nonce())
        grant = await self.map(request, timeout=timeout)
        try:
            await self.delete(request, timeout=timeout)
        except (GatewayTimeout, ResultCodeError) as exc:
            log.info("could not delete the short mapping used to learn the address: %s", exc)
        assert grant.external_address is not None
        return grant.external_address

    async def _shared_address(self, timeout: float | None) -> IPAddress:
        """One address request for all the mappings that need it at once (a hundred
        concurrent first NAT-PMP mappings would otherwise ask a hundred times)."""
        if not self.link.concurrent:
            # Driven without an event loop (engine.blocking): nothing runs beside this
            # request, and a future could not be made.
            return await self.external_address(timeout=timeout)
        lookup = self._address_lookup
        if lookup is None or lookup.done():
            lookup = asyncio.ensure_future(self.external_address(timeout=timeout))
            # Read the outcome even if every waiter was cancelled meanwhile.
            lookup.add_done_callback(lambda f: f.cancelled() or f.exception())
            self._address_lookup = lookup
        return await asyncio.shield(lookup)

    async def probe(self, *, timeout: float) -> Heard:
        """The dialect's probe; silence (or a refused port) is ``spoken=None``."""
        local = await self.link.local_address()
        ask = self.dialect.probe(local)
        try:
            outcome = await self.link.run(ask, timeout=timeout)
        except GatewayError:
            return Heard(self.name, None)
        rtt = outcome.rtt if outcome.rtt is not None else outcome.elapsed
        return self.dialect.heard(outcome.message, rtt)
