"""The manager's event streams: one queue per subscriber, bounded."""

from __future__ import annotations

import asyncio
import logging

from ..events import Event

__all__ = ["MAX_QUEUED", "EventHub", "Subscription"]

log = logging.getLogger("engine.manager")

#: Events kept for a subscriber that does not read them.
MAX_QUEUED = 10_000


class Subscription:
    """One subscriber's events, in order; ends when the manager closes."""

    def __init__(self, hub: EventHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.missed = 0

    def put(self, event: Event) -> None:
        # A consumer that stops reading must not grow memory without bound: past
        # MAX_QUEUED the oldest events go, and ``missed`` counts them.
        if self.queue.qsize() >= MAX_QUEUED:
            self.queue.get_nowait()
            self.missed += 1
        self.queue.put_nowait(event)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.queue.get()
        if event is None:
            self._hub.subscribers.discard(self)
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._hub.subscribers.discard(self)


class EventHub:
    """Hands every event to every subscription."""

    def __init__(self) -> None:
        self.subscribers: set[Subscription] = set()
        self.closed = False

    def subscribe(self) -> Subscription:
        """A new subscription to every event from now on."""
        subscription = Subscription(self)
        if self.closed:
            subscription.queue.put_nowait(None)
        self.subscribers.add(subscription)
        return subscription

    def emit(self, event: Event) -> None:
        """Deliver ``event``."""
        if log.isEnabledFor(logging.DEBUG):  # (``summary`` is built: not when it is off)
            log.debug("event: %s", event.summary)
        for subscription in self.subscribers:
            subscription.put(event)

    def close(self) -> None:
        """End every subscription (after the events already queued)."""
        self.closed = True
        for subscription in list(self.subscribers):
            subscription.queue.put_nowait(None)
