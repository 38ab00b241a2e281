"""What the manager knows about the gateway: status, announcements, epochs, probes.

The gateway tells its news three ways: the epoch in every answer (RFC 6887 §8.5,
RFC 6886 §3.6; the client judges it and calls :meth:`GatewayWatch.state_lost`),
announcements (:mod:`engine.announce`), and what a probe finds. The watch turns
them into the status, events, and one thing for the mappings: the time of the
last change (:attr:`GatewayWatch.last_change`): an answer to a request sent
before it does not show what the gateway holds now.

Announcements: every one makes every mapping be confirmed (asked for again),
after the RFC's random 0-5 s (RFC 6887 §14.1.3), coalesced into one round; the
epoch alone cannot see a restart within its slack of the last one. The epoch
says *when* the gateway's state was reset (``now - epoch``): a repetition of an
announcement (RFC 6886 §3.2.1 repeats ten times over two minutes) says nothing
newer and costs nothing; the first announcement after a quiet spell always
counts, whatever its epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from .. import timing
from ..announce import Announcement, AnnouncementListener
from ..client import GatewayClient, ProbeResult
from ..discovery import connected_source_address
from ..errors import GatewayTimeout, NatDeckError, TransportError
from ..events import (
    AnnouncementsOff,
    Event,
    ExternalAddressChanged,
    GatewayReachable,
    GatewayRestarted,
    GatewayStatus,
    GatewayUnreachable,
    LocalAddressChanged,
    MappingsConfirming,
    ProbeCompleted,
    error_words,
)
from ..transport import Message
from ..types import ProtocolName
from ..wire.addresses import IPAddress, to_address

__all__ = [
    "ANNOUNCE_QUIET",
    "FALLBACK_PROBE_INTERVAL",
    "IDLE_PROBE_INTERVAL",
    "LOCAL_ADDRESS_CHECK_INTERVAL",
    "GatewayWatch",
    "LocalRoute",
    "Round",
    "non_public_warning",
]

log = logging.getLogger("engine.manager")

#: At most this often (seconds) the route's source address is looked at again.
LOCAL_ADDRESS_CHECK_INTERVAL = 1.0
#: With no announcement listener, probe the gateway this often to notice changes.
FALLBACK_PROBE_INTERVAL = 60.0
#: Probe a gateway nothing has heard from for this long (a gateway that went away).
IDLE_PROBE_INTERVAL = 60.0
#: An epoch that goes back this soon after an announced address change is that change's
#: reset (miniupnpd sends the NAT-PMP notice, then resets, then the PCP ANNOUNCE), not a
#: restart: the rules were kept.
ADDRESS_RESET_WINDOW = 5.0
#: An announcement after this long without one counts whatever its epoch says (longer
#: than the 64 s between the last two of RFC 6886 §3.2.1's ten repetitions).
ANNOUNCE_QUIET = 128.0

_NON_PUBLIC = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.168.0.0/16", "::/128", "::1/128", "fc00::/7", "fe80::/10")]


def non_public_warning(address: IPAddress | None) -> str | None:
    """A warning when the external address cannot be reached from the internet."""
    if address is None:
        return None
    if any(address in net for net in _NON_PUBLIC if net.version == address.version):
        return (f"external address {address} is not public: there is another NAT above this "
                "gateway (carrier-grade NAT or a second router), so mappings may not be "
                "reachable from the internet")
    return None


@dataclass(frozen=True, slots=True)
class Round:
    """A change the mappings must follow: ``lost`` (recreate) or only confirm, from ``at``."""

    at: float
    """Requests sent at or before this are not proof of what the gateway holds now."""
    spread: float
    """Ask within a random 0-``spread`` s (RFC 6887 §14.1.3; 0 for an answer's epoch)."""
    lost: bool
    reason: str
    new_address: tuple[IPAddress | None, IPAddress] | None = None
    """(old, new) when the announcement carried a new external address."""


class GatewayWatch:
    """The gateway's status as the manager sees it; ``on_change`` gets each :class:`Round`."""

    def __init__(self, client: GatewayClient, status: GatewayStatus,
                 emit: Callable[[Event], None], on_change: Callable[[Round], int], *,
                 rng: random.Random, announce_delay: float = timing.ANNOUNCE_MAX_DELAY) -> None:
        self.client = client
        self.status = status
        self._emit = emit
        self._on_change = on_change
        self.rng = rng
        self.announce_delay = announce_delay
        self.last_change = float("-inf")
        self.on_reachable: Callable[[], None] = lambda: None
        """Called when the gateway answers after silence (or for the first time)."""
        self._last_announcement = float("-inf")
        self._moved_at = float("-inf")
        self._epoch: timing.EpochState | None = None
        self._heard_epoch: tuple[int, float] | None = None
        """The last answer's (epoch, loop time), newer than ``_epoch`` when set."""

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- answers ---------------------------------------------------------------------------

    def heard(self, message: Message) -> None:
        """Every accepted answer: the gateway is reachable; note epoch and RTT."""
        now = self._now()
        status, client = self.status, self.client
        status.last_contact = now
        epoch = client.last_epoch
        if epoch is not None:
            status.epoch = epoch
            # Kept as it came: an EpochState (which checks it) only if an announcement
            # needs it, not for each of 10,000 renewals.
            self._epoch = None
            self._heard_epoch = (epoch, now)
        status.rtt = client.rtt
        speaks = client.speaks
        status.speaks_pcp = speaks["pcp"]
        status.speaks_natpmp = speaks["natpmp"]
        if status.reachable is not True:
            status.reachable = True
            self._emit(GatewayReachable(now))
            self.on_reachable()

    def _last_epoch(self) -> timing.EpochState | None:
        if self._heard_epoch is not None:
            with contextlib.suppress(ValueError, TypeError):
                self._epoch = timing.EpochState(*self._heard_epoch)
            self._heard_epoch = None
        return self._epoch

    def heard_upnp(self) -> None:
        """A UPnP IGD answered (over HTTP, so not seen by :meth:`heard`)."""
        now = self._now()
        self.status.last_contact = now
        self.status.speaks_upnp = True
        if self.status.reachable is not True:
            self.status.reachable = True
            self._emit(GatewayReachable(now))
            self.on_reachable()

    def failed_request(self, exc: NatDeckError) -> None:
        """A request failed: a timeout or a network error means unreachable."""
        self.status.speaks_pcp = self.client.speaks["pcp"]
        self.status.speaks_natpmp = self.client.speaks["natpmp"]
        if isinstance(exc, GatewayTimeout | TransportError) and self.status.reachable is not False:
            answered = self.status.last_contact is not None
            self.status.reachable = False
            self._emit(GatewayUnreachable(self._now(), error_words(exc, answered_before=answered)))

    def state_lost(self, protocol: ProtocolName, epoch: int) -> None:
        """An answer's epoch went back (the client's verdict): the gateway restarted."""
        now = self._now()
        self._restarted(protocol, epoch, now)
        # The other protocol's epoch went back with this one (one table; miniupnpd
        # shares the epoch): forget it, or its next answer reports the same restart.
        self.client.forget_epochs("natpmp" if protocol == "pcp" else "pcp")
        # An answer's epoch is ours alone: no herd to spread, recreate at once. (Requests
        # sent from now on count: the answer that told was sent by the restarted gateway.)
        self._change(Round(math.nextafter(now, -math.inf), 0.0, True,
                           "the gateway restarted: its epoch went back"))

    def _restarted(self, protocol: ProtocolName, epoch: int, now: float) -> None:
        self.status.restarts += 1
        self.status.epoch = epoch
        self._emit(GatewayRestarted(now, protocol, epoch))

    def _change(self, change: Round) -> int:
        """Follow ``change``; how many mappings it made ask again (0: coalesced, or none)."""
        self.last_change = max(self.last_change, change.at)
        return self._on_change(change)

    def external_address(self, address: IPAddress, source: str) -> bool:
        """Note the gateway's external address; True (and an event) when it changed."""
        old = self.status.external_address
        self.client.external_address = address
        if old == address:
            return False
        self.status.external_address = address
        self.status.warning = non_public_warning(address)
        self._emit(ExternalAddressChanged(self._now(), old, address, source,
                                          self.status.warning))
        return True

    # -- announcements ---------------------------------------------------------------------

    async def listen(self, listener: AnnouncementListener,
                     instead: str) -> AnnouncementListener | None:
        """Start ``listener`` (its callback: :meth:`announced`); the status says how it
        went, in full: which ports could not be bound, why, and ``instead``."""
        try:
            await listener.start()
        except TransportError as exc:
            self.status.listen_error = f"{exc}; {instead}"
            # An event too: a log shows it in full where a status panel has no room.
            self._emit(AnnouncementsOff(self._now(), self.status.listen_error))
            return None
        self.status.listening = True
        if listener.errors:
            self.status.listen_error = "; ".join(listener.errors)
        return listener

    def announced(self, announcement: Announcement) -> None:
        """An announcement from the gateway: confirm (or recreate) every mapping."""
        now = self._now()
        self.status.last_contact = now
        protocol: ProtocolName = "natpmp" if announcement.kind == "natpmp_address" else "pcp"
        rule = timing.EpochRule.PCP if protocol == "pcp" else timing.EpochRule.NATPMP
        try:
            seen = timing.observe_epoch(rule, self._last_epoch(), announcement.epoch, now)
        except ValueError:
            return
        went_back = seen.verdict is timing.EpochVerdict.LOST_STATE
        self._epoch, self._heard_epoch = seen.state, None
        self.status.epoch = announcement.epoch
        # Our own epoch check decided; the client's next answer starts afresh, so the
        # same reset is not reported twice.
        self.client.forget_epochs("pcp", "natpmp")
        new = announcement.external_address
        old = self.status.external_address
        moved = new is not None and self.external_address(new, "announce")
        if moved:
            self._moved_at = now
        # An address change resets the epoch (RFC 6887 §8.5) but keeps the rules: not a
        # restart, whichever of its announcements comes first.
        address_reset = went_back and now - self._moved_at <= ADDRESS_RESET_WINDOW
        quiet = now - self._last_announcement > ANNOUNCE_QUIET
        self._last_announcement = now
        # When the gateway's state was last reset, as its epoch says (seconds since).
        since = now if (quiet or moved or went_back) else now - announcement.epoch
        if since <= self.last_change and not went_back:
            return  # a repetition: it says nothing newer than what the mappings follow
        if address_reset:
            reason = "external address changed; the gateway's epoch went back"
        elif moved:
            reason = "external address changed"
        elif went_back:
            reason = "the gateway restarted: its epoch went back"
            self._restarted(protocol, announcement.epoch, now)
        else:
            reason = ("the gateway announced a change (PCP ANNOUNCE)" if protocol == "pcp"
                      else "the gateway announced its external address")
        # RFC 6887 §14.1.3: every client of the gateway heard it; each request waits a
        # random 0-5 s.
        asked = self._change(Round(since, self.announce_delay, went_back and not address_reset,
                                   reason, (old, new) if moved and new is not None else None))
        if not (went_back and not address_reset) and (asked or moved or went_back):
            # (A repetition whose confirmations were all due already, coalesced, is no news.)
            self._emit(MappingsConfirming(now, reason))

    # -- probes ----------------------------------------------------------------------------

    async def probe(self) -> ProbeResult:
        """Probe both protocols now; updates the status and emits ProbeCompleted."""
        result = await self.client.probe()
        self.status.speaks_pcp = result.pcp
        self.status.speaks_natpmp = result.natpmp
        self.status.speaks_upnp = result.upnp
        if result.igd is not None:
            self.status.igd = result.igd
        if result.upnp:
            self.heard_upnp()
        if result.rtt is not None:
            self.status.rtt = result.rtt
        if self.status.via is None:
            self.status.via = result.via
        if result.external_address is not None:
            self.external_address(result.external_address, "probe")
        if result.warning is not None:  # the IGD reports no public address: double NAT
            self.status.warning = result.warning
        if not result.reachable and self.status.reachable is not False:
            self.status.reachable = False
            self._emit(GatewayUnreachable(self._now(),
                                          "no answer to a probe of PCP and NAT-PMP"))
        self._emit(ProbeCompleted(self._now(), result))
        return result

    async def refresh_external_address(self, timeout: float) -> IPAddress:
        """Ask the gateway for its external address now."""
        try:
            address = await self.client.get_external_address(timeout=timeout)
        except NatDeckError as exc:
            self.failed_request(exc)
            raise
        self.external_address(to_address(address), "request")
        return address

    async def probe_quietly(self) -> None:
        """A probe whose failure is only a status."""
        with contextlib.suppress(NatDeckError):
            await self.probe()

    async def probe_every(self, interval: float) -> None:
        """Probe every ``interval`` seconds (no announcements to rely on)."""
        while True:
            await asyncio.sleep(interval)
            await self.probe_quietly()

    async def probe_when_idle(self, interval: float) -> None:
        """Probe whenever nothing has been heard from the gateway for ``interval`` s.

        Without it a gateway that went away stays "reachable" while no mapping needs a
        request (none at all, or long lifetimes) and announcements say nothing.
        """
        while True:
            last = self.status.last_contact
            quiet_since = last if last is not None else self._now()
            await asyncio.sleep(max(0.0, quiet_since + interval - self._now()))
            last = self.status.last_contact
            if last is None or self._now() - last >= interval - 1e-9:
                await self.probe_quietly()
                if self.status.last_contact == last:
                    # Unanswered: try again after another interval, not at once.
                    await asyncio.sleep(interval)


class LocalRoute:
    """This host's address towards the gateway, as the kernel would pick it now."""

    def __init__(self, client: GatewayClient, status: GatewayStatus,
                 emit: Callable[[Event], None],
                 probe: Callable[[], IPAddress | None] | None = None) -> None:
        self.client = client
        self.status = status
        self._emit = emit
        self._probe = probe or (lambda: connected_source_address(client.gateway, client.port))
        self._checked_at = float("-inf")

    def moved(self, now: float) -> tuple[IPAddress, IPAddress] | None:
        """(old, new) when the address changed since the last look (at most once a second);
        the client is rebound to the new one and LocalAddressChanged emitted."""
        if now - self._checked_at < LOCAL_ADDRESS_CHECK_INTERVAL:
            return None
        self._checked_at = now
        current = self._probe()
        old = self.status.local_address
        if current is None or old is None or current == old:
            return None
        # DEBUG: the LocalAddressChanged event says it (a UI shows both otherwise).
        log.debug("local address changed from %s to %s", old, current)
        self.status.local_address = current
        self.client.rebind(current)
        self._emit(LocalAddressChanged(now, old, current))
        return old, current
