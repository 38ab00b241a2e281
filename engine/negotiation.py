"""What one gateway speaks, its epochs and its address; the fallback plan (pure).

Everything the client learns from answers lives in :class:`Negotiation`, and
every decision it makes from them is a function of that state and ``now``:

- :meth:`Negotiation.plan`: which mapping protocols to try, in order, with what
  share of the caller's deadline ("PCP, then NAT-PMP", and UPnP IGD as a third
  step once a mapper for it is offered: the plan takes the protocols available);
- :func:`falls_back`: whether an error from one step moves on to the next;
- :meth:`Negotiation.observe_epoch`: the epoch rules (RFC 6887 §8.5,
  RFC 6886 §3.6) that tell a gateway lost its mappings;
- :meth:`Negotiation.learn`: what an answer, a refusal or silence says about what
  the gateway speaks.

Fallback is as fast as the gateway allows: UNSUPP_VERSION moves on at once
(one round trip); ICMP port unreachable from port 5351 means neither PCP nor
NAT-PMP is spoken there, at once; only silence costs time, and only on a
gateway never heard from (two PCP tries, 9.5 s, then NAT-PMP).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import timing
from .errors import (
    GatewayError,
    GatewayTimeout,
    PortUnreachable,
    SilentBesideIgd,
    UnsupportedVersion,
)
from .types import DatagramProtocol, MappingProtocol, Via
from .wire.addresses import IPAddress

if TYPE_CHECKING:
    from .dialects.base import Heard

__all__ = ["PCP_SILENCE_FALLBACK", "SCOUT_AFTER", "SILENT_BESIDE_IGD", "Negotiation", "Plan",
           "Step", "falls_back"]

#: With ``via="auto"``, how long PCP may stay silent, on a gateway never heard from, before
#: NAT-PMP is tried: two PCP tries (3 s, then 6 s, RFC 6887 §8.1.1).
PCP_SILENCE_FALLBACK = 9.5

#: With ``via="auto"``, how long PCP may stay silent, on a gateway never heard from, before an
#: SSDP search asks whether it has a UPnP IGD (:mod:`engine.igd_scout`). A gateway answers PCP
#: within milliseconds on a LAN: one that answers within this is sent nothing more.
SCOUT_AFTER = 0.1
#: How long PCP may stay silent, once the gateway's IGD has answered, before UPnP is asked
#: instead of waiting out :data:`PCP_SILENCE_FALLBACK` and NAT-PMP's share (NAT-PMP is served
#: on PCP's port: a gateway silent on one is silent on the other).
SILENT_BESIDE_IGD = 1.0

#: The order ``via="auto"`` tries (iroh's and tailscale's too: UPnP last, "the most unreliable").
AUTO_ORDER: tuple[MappingProtocol, ...] = ("pcp", "natpmp", "upnp")
#: The mapping protocols served on the gateway's UDP port 5351.
DATAGRAM: frozenset[MappingProtocol] = frozenset({"pcp", "natpmp"})


@dataclass(frozen=True, slots=True)
class Step:
    """One mapping protocol to try."""

    protocol: MappingProtocol
    budget: float | None
    """Seconds this step may take (``None``: what is left of the caller's deadline)."""
    silence_falls_back: bool = False
    """Whether silence (a timeout) moves on to the next step."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The steps of one request, in order."""

    steps: tuple[Step, ...]


@functools.lru_cache(maxsize=64)
def _one_step(via: MappingProtocol, timeout: float | None) -> Plan:
    """The plan of a request that names its protocol: that one, for the whole deadline. The
    same few (protocol, deadline) pairs request after request: built once each (issue 15)."""
    return Plan((Step(via, timeout),))


#: A step whose silence does not fall back: only answers (UNSUPP_VERSION, ICMP) do.
ANSWERS_ONLY = Step("pcp", None)


def falls_back(via: Via, step: Step, error: GatewayError) -> bool:
    """Whether ``error`` from ``step`` moves on to the next step of the plan."""
    if via != "auto":
        return False
    if isinstance(error, UnsupportedVersion | PortUnreachable):
        return True
    return isinstance(error, GatewayTimeout) and step.silence_falls_back


def skips_after(error: GatewayError) -> frozenset[MappingProtocol]:
    """Protocols the rest of the plan skips after ``error``: ICMP port unreachable from
    port 5351 says that no datagram protocol is served there, and so does silence there
    while the gateway's UPnP IGD answers."""
    return DATAGRAM if isinstance(error, PortUnreachable | SilentBesideIgd) else frozenset()


class Negotiation:
    """Everything learnt about one gateway's protocols, pure and fed ``now``."""

    __slots__ = ("epochs", "external_address", "last_contact", "last_epoch", "speaks")

    def __init__(self) -> None:
        #: None: not known yet; True/False: heard to speak it or refuse it.
        self.speaks: dict[MappingProtocol, bool | None] = {"pcp": None, "natpmp": None}
        self.epochs: dict[DatagramProtocol, timing.EpochState | None] = {"pcp": None,
                                                                        "natpmp": None}
        self.external_address: IPAddress | None = None
        self.last_epoch: int | None = None
        self.last_contact: float | None = None

    # -- what the gateway speaks -------------------------------------------------------

    def learn(self, protocol: MappingProtocol, error: BaseException | None = None) -> None:
        """An answer to ``protocol`` arrived (``error`` is what it raised, if anything).

        An answer says the protocol is spoken, UNSUPP_VERSION that it is not (and a
        NAT-PMP-style version-0 refusal of PCP that NAT-PMP is); silence says nothing.
        """
        if error is None:
            self.speaks[protocol] = True
        elif isinstance(error, UnsupportedVersion):
            self.speaks[protocol] = False
            if protocol == "pcp" and error.server_version == 0:
                self.speaks["natpmp"] = True
        elif not isinstance(error, GatewayTimeout):
            self.speaks[protocol] = True  # a refusal in the protocol is the protocol spoken

    def silent_then_answered(self, silent: MappingProtocol, answered: MappingProtocol) -> None:
        """``silent`` timed out and the next step, ``answered``, was answered: a gateway
        never heard to speak ``silent`` that answers another protocol does not speak it, so
        the next request goes straight to ``answered`` instead of spending the silence
        budget again (100 mappings would otherwise wait 9.5 s each)."""
        if self.speaks.get(silent) is None and silent != answered:
            self.speaks[silent] = False

    def plan(self, via: Via, *, natpmp_can_carry: bool, fallback_on_silence: bool,
             timeout: float | None,
             available: Sequence[MappingProtocol] = ("pcp", "natpmp"),
             upnp_can_carry: bool = True) -> Plan:
        """The steps for a map request.

        ``available``: the mapping protocols the client has a mapper for, in any order;
        ``"auto"`` tries them in :data:`AUTO_ORDER`, skipping what the gateway refused.
        A silent step moves on (within its share of the deadline) only to a protocol that
        can carry the request (``natpmp_can_carry``, ``upnp_can_carry``).
        """
        if via != "auto":
            return _one_step(via, timeout)
        carries: dict[MappingProtocol, bool] = {"pcp": True, "natpmp": natpmp_can_carry,
                                                "upnp": upnp_can_carry}
        order = [p for p in AUTO_ORDER if p in available]
        known = [p for p in order if self.speaks.get(p) is not False]
        if not known:
            known = order[:1]  # everything refused once: ask again, the gateway may be back
        steps: list[Step] = []
        for index, protocol in enumerate(known):
            following = known[index + 1] if index + 1 < len(known) else None
            # Silence moves on only to a protocol that can carry the request; an answer
            # (UNSUPP_VERSION) always does, so that its refusal says why it cannot.
            silent_fallback = (following is not None and fallback_on_silence
                               and self.speaks.get(protocol) is None
                               and carries[following])
            budget = timeout
            if silent_fallback:
                # Leave the next step at least half of a short deadline.
                budget = PCP_SILENCE_FALLBACK if timeout is None \
                    else min(timeout / 2, PCP_SILENCE_FALLBACK)
            steps.append(Step(protocol, budget, silent_fallback))
        return Plan(tuple(steps))

    def after_probe(self, heard: Iterable[Heard]) -> None:
        """What a probe heard: an answer says yes or no; silence leaves what we knew.

        A NAT-PMP answer is recorded only as a yes (an 8-byte refusal of PCP's version
        proves the gateway speaks it, a PCP refusal of version 0 does not prove it cannot
        later).
        """
        for each in heard:
            if each.spoken is None or (each.mapping_protocol == "natpmp" and not each.spoken):
                continue
            self.speaks[each.mapping_protocol] = each.spoken
            if each.external_address is not None:
                self.external_address = each.external_address

    def address_order(self, via: Via, *, ipv4: bool,
                      available: Sequence[MappingProtocol] = ("pcp", "natpmp"),
                      ) -> tuple[MappingProtocol, ...]:
        """Which protocol to ask the external address, in order.

        NAT-PMP's opcode 0 creates no state, so first where it may be spoken; it is IPv4
        only (RFC 6886 §3.2), so over IPv6 PCP's short MAP (RFC 6887 §11.6). UPnP IGD's
        GetExternalIPAddress last (when a mapper for it is ``available``), and first on a
        gateway heard to speak neither datagram protocol.
        """
        if via != "auto":
            return (via,)
        order: tuple[MappingProtocol, ...] = ("pcp",)
        if ipv4 and self.speaks["natpmp"] is not False:
            order = ("natpmp", "pcp")
        if "upnp" not in available:
            return order
        if self.speaks.get("upnp") and all(self.speaks.get(p) is False for p in DATAGRAM):
            return ("upnp",)
        return (*order, "upnp")

    def recreate_via(self, held: MappingProtocol) -> MappingProtocol:
        """The protocol to ask again for a lost mapping: the one it had, unless refused since."""
        if self.speaks.get(held) is False and held in DATAGRAM:
            return "natpmp" if held == "pcp" else "pcp"
        return held

    # -- epochs --------------------------------------------------------------------------

    def observe_epoch(self, protocol: DatagramProtocol, epoch: int, now: float) -> bool:
        """Feed an epoch heard from the gateway; True when it shows lost state."""
        prev = self.epochs[protocol]
        if prev is not None and epoch == prev.server_epoch \
                and 0 <= now - prev.client_time < 1.0:
            # The common case, answers in a burst: the same epoch within a second is
            # consistent under both rules (RFC 6887 §8.5's deltas are at most 1 and 0;
            # RFC 6886 §3.6 needs 16/7 s to pass). Recorded as the full rule would.
            # The epoch is the one already checked: only the time is new.
            self.epochs[protocol] = prev.heard_again(now)
            self.last_epoch = epoch
            return False
        rule = timing.EpochRule.PCP if protocol == "pcp" else timing.EpochRule.NATPMP
        try:
            seen = timing.observe_epoch(rule, self.epochs[protocol], epoch, now)
        except ValueError:
            return False
        self.epochs[protocol] = seen.state
        self.last_epoch = epoch
        return seen.verdict is timing.EpochVerdict.LOST_STATE

    def forget_epochs(self, *protocols: DatagramProtocol) -> None:
        """Forget the epochs of ``protocols`` (all when none is named): the next one heard
        starts afresh (after a rebind or a restart the manager handles itself)."""
        for protocol in protocols or ("pcp", "natpmp"):
            self.epochs[protocol] = None
