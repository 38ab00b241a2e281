"""The client's link to one gateway: its channel, what it learnt, its lifecycle.

:class:`GatewayLink` is what the datagram mappers need of a client
(:class:`~engine.dialects.datagram.DatagramLink`): ``run`` an
:class:`~engine.dialects.base.Ask` on its RFC schedule through the channel, the
``local_address``, the ``negotiation`` and the ``rng``. It also feeds every
validated message's epoch to the negotiation and tells :attr:`on_state_lost`.
:class:`~engine.client.GatewayClient` adds the requests on top.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import ClassVar, Concatenate, ParamSpec, Self, TypeVar

from . import timing
from .dialects.base import Ask
from .errors import InvalidRequest
from .exchange import Outcome
from .negotiation import Negotiation
from .request import check_address
from .transport import SERVER_PORT, GatewayChannel, Message
from .types import DatagramProtocol, MappingProtocol, ProtocolName
from .window import DEFAULT_MAX_IN_FLIGHT
from .wire import pcp
from .wire.addresses import IPAddress, to_address

__all__ = ["EpochListener", "GatewayLink", "holding_channel"]

log = logging.getLogger("engine.client")

EpochListener = Callable[[ProtocolName, int], None]

_P = ParamSpec("_P")
_T = TypeVar("_T")
_L = TypeVar("_L", bound="GatewayLink")


def holding_channel(
    method: Callable[Concatenate[_L, _P], Awaitable[_T]],
) -> Callable[Concatenate[_L, _P], Awaitable[_T]]:
    """Keep the channel open for the whole operation (one socket, not one per step)."""

    @functools.wraps(method)
    async def holding(self: _L, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        # The counter inline, not ``async with self._use()``: an async context manager
        # costs a generator and two awaits on every request (issue 15's client CPU).
        self._users += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            if self._done_using() and self.closers:
                await self._release()

    return holding


class GatewayLink:
    """One client's channel to one gateway and what it learnt (see the module)."""

    #: The channel's class: :class:`~engine.blocking.BlockingChannel` for a client driven
    #: without an event loop (:class:`~engine.blocking.BlockingClient`).
    channel_type: ClassVar[type[GatewayChannel]] = GatewayChannel
    #: Whether requests may be out at once (an event loop runs them); ``False``: one at a
    #: time, so a lookup several would share has nobody to share it with.
    concurrent: ClassVar[bool] = True

    def __init__(self, gateway: str | IPAddress, port: int = SERVER_PORT, *,
                 local_address: str | IPAddress | None = None,
                 max_in_flight: int | None = None,
                 rng: random.Random | None = None) -> None:
        self.gateway: IPAddress = check_address("gateway", gateway)
        self.port = port
        self._explicit_local = (check_address("local address", local_address)
                                if local_address is not None else None)
        # An explicit local address is bound: the PCP client address field must be the
        # packet's source, or the gateway answers ADDRESS_MISMATCH (RFC 6887 §8.3).
        self.channel = self.channel_type(
            self.gateway, port, local_address=self._explicit_local,
            max_in_flight=DEFAULT_MAX_IN_FLIGHT if max_in_flight is None else max_in_flight)
        self.channel.observers.append(self._observe)
        self.rng = rng if rng is not None else random.Random()
        self.negotiation = Negotiation()
        self.rtt: float | None = None
        self.on_state_lost: list[EpochListener] = []
        self._users = 0
        self._held = False
        self._releasing: set[asyncio.Task[None]] = set()
        self.closers: list[Callable[[], Awaitable[None]]] = []
        """Released with the channel: what else the client holds (a UPnP IGD's HTTP)."""

    # -- what the negotiation knows, by its older names ----------------------------------

    @property
    def speaks(self) -> dict[MappingProtocol, bool | None]:
        """Per mapping protocol: None not known yet, True/False heard to speak or refuse it."""
        return self.negotiation.speaks

    @property
    def epochs(self) -> dict[DatagramProtocol, timing.EpochState | None]:
        """The last epoch state of each datagram protocol (read-only use)."""
        return self.negotiation.epochs

    @property
    def external_address(self) -> IPAddress | None:
        """The gateway's external address, as last heard."""
        return self.negotiation.external_address

    @external_address.setter
    def external_address(self, value: IPAddress | None) -> None:
        self.negotiation.external_address = value

    @property
    def last_epoch(self) -> int | None:
        """The last epoch heard, either protocol."""
        return self.negotiation.last_epoch

    @property
    def last_contact(self) -> float | None:
        """When the gateway was last heard (``loop.time()``)."""
        return self.negotiation.last_contact

    @property
    def observers(self) -> list[Callable[[Message], None]]:
        """Called with every validated message (the same list as ``channel.observers``)."""
        return self.channel.observers

    @property
    def explicit_local_address(self) -> IPAddress | None:
        """The local address given or learnt, if any (what a rebind last set)."""
        return self._explicit_local

    def forget_epochs(self, *protocols: ProtocolName) -> None:
        """Forget the epochs of ``protocols`` (all when none is named)."""
        self.negotiation.forget_epochs(*protocols)

    # -- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.channel.open()
        self._held = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        if not self._users:
            self.channel.close()
            await self._release()

    async def _release(self) -> None:
        """Release what lives as long as the channel besides it (:attr:`closers`)."""
        for close in self.closers:
            await close()

    def close(self) -> None:
        """Close the channel now (what else the client holds is released in the background
        when an event loop runs; ``async with`` releases it before leaving)."""
        self._held = False
        self.channel.close()
        if not self.closers:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._release())
        self._releasing.add(task)  # held until done (the loop keeps only a weak reference)
        task.add_done_callback(self._released)

    def _released(self, task: asyncio.Task[None]) -> None:
        self._releasing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.info("releasing the client's connections failed: %s", task.exception())

    def rebind(self, local_address: IPAddress) -> None:
        """Send from ``local_address`` from now on (the host's address changed).

        The channel is closed and reopens, bound to the new address, on next use; PCP
        requests carry it as their client address (RFC 6887 §8.1).
        """
        self._explicit_local = local_address
        self.channel.close()
        self.channel.local_address = local_address

    def _done_using(self) -> bool:
        """One operation is over; ``True`` when it was the last and the channel closed, so
        that the caller awaits :meth:`_release` (when there are :attr:`closers`) before it
        returns: a next operation must not race a release still under way."""
        # Without ``async with`` the channel lives as long as the operations using it.
        self._users -= 1
        if self._users or self._held:
            return False
        self.channel.close()
        return True

    async def run(self, ask: Ask, *, timeout: float | None, retransmit: bool = True) -> Outcome:
        """Send a dialect's request on its RFC schedule until answered (the mappers' I/O).

        ``retransmit=False`` sends once and waits ``timeout`` for the answer.
        """
        schedule = timing.NATPMP_RETRANSMIT if ask.protocol == "natpmp" \
            else timing.PCP_RETRANSMIT
        waits: Iterable[float] = (
            [float("inf")] if not retransmit and timeout is not None
            else schedule.timeouts(self.rng))
        self._users += 1
        try:
            outcome = await self.channel.request(ask.packet, ask.match, waits, deadline=timeout,
                                                 describe=ask.description, protocol=ask.protocol,
                                                 key=ask.key)
        finally:
            if self._done_using() and self.closers:
                await self._release()
        if outcome.rtt is not None:
            self.rtt = outcome.rtt
        return outcome

    async def local_address(self) -> IPAddress:
        """The address the gateway sees us as: explicit, else what the kernel picks.

        A UDP socket connected to the gateway tells its source address without sending.
        """
        if self._explicit_local is not None:
            return self._explicit_local
        self._users += 1
        try:
            await self.channel.open()
            endpoint = self.channel.local_endpoint()
        finally:
            if self._done_using() and self.closers:
                await self._release()
        if endpoint is None:  # pragma: no cover - open() either succeeds or raises
            raise InvalidRequest("cannot learn the local address; pass local_address")
        self._explicit_local = to_address(endpoint[0].split("%", 1)[0])
        return self._explicit_local

    # -- epochs --------------------------------------------------------------------------

    def _observe(self, message: Message) -> None:
        now = self.channel.time()
        self.negotiation.last_contact = now
        if isinstance(message, pcp.Response):
            if message.version == pcp.PCP_VERSION:
                self.observe_epoch("pcp", message.epoch, now)
        else:
            self.observe_epoch("natpmp", message.epoch, now)

    def observe_epoch(self, protocol: ProtocolName, epoch: int, now: float) -> bool:
        """Feed an epoch heard from the gateway (answer or announcement).

        Returns True, and tells :attr:`on_state_lost`, when it shows lost state.
        """
        if not self.negotiation.observe_epoch(protocol, epoch, now):
            return False
        # DEBUG: the manager says it as a GatewayRestarted event; INFO would say it twice.
        log.debug("gateway %s lost its state (%s epoch %d)", self.gateway, protocol, epoch)
        for listener in list(self.on_state_lost):
            listener(protocol, epoch)
        return True
