"""Epoch checks: how a client notices that the gateway lost its mappings (pure).

RFC 6887 §8.5 (PCP) and RFC 6886 §3.6 (NAT-PMP): every answer and announcement
carries the gateway's epoch, seconds since its state began; one that went back,
or grew much slower than the client's own clock, says the mappings are gone.
Times are the caller's monotonic ``float`` seconds, passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "EPOCH_MODULUS",
    "EpochObservation",
    "EpochRule",
    "EpochState",
    "EpochVerdict",
    "natpmp_epoch_lost",
    "observe_epoch",
    "pcp_epoch_lost",
]

#: The Epoch Time / Seconds Since Start of Epoch field is an unsigned 32-bit integer
#: (RFC 6887 §7.2, RFC 6886 §3), so it wraps after 2**32 s (about 136 years).
EPOCH_MODULUS = 2**32


# --------------------------------------------------------------------------------------------
# Epoch: has the gateway lost its state?
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpochState:
    """The last epoch heard from a gateway and when (client monotonic time) it was heard."""

    server_epoch: int
    client_time: float

    def __post_init__(self) -> None:
        _check_epoch(self.server_epoch)

    def heard_again(self, now: float) -> EpochState:
        """The same epoch, heard at ``now`` (checked once already: not checked again, which
        a burst of answers would pay on every one)."""
        state = _new_state(EpochState)
        _set_epoch(state, self.server_epoch)
        _set_time(state, now)
        return state


_new_state = object.__new__
_set_epoch = vars(EpochState)["server_epoch"].__set__
_set_time = vars(EpochState)["client_time"].__set__


class EpochVerdict(StrEnum):
    """What one epoch observation says about the gateway's state."""

    FIRST_CONTACT = "first_contact"
    """Nothing to compare with: RFC 6887 §8.5 treats the first value as "necessarily valid"."""
    CONSISTENT = "consistent"
    """The gateway's clock moved in step with ours: its mappings are presumably intact."""
    LOST_STATE = "lost_state"
    """The gateway rebooted or otherwise lost its mappings: recreate them now."""


class EpochRule(StrEnum):
    """Which RFC's rule judges an epoch."""

    PCP = "pcp"
    """RFC 6887 §8.5."""
    NATPMP = "natpmp"
    """RFC 6886 §3.6."""


@dataclass(frozen=True, slots=True)
class EpochObservation:
    """The verdict on one epoch, and the state to keep for the next one."""

    verdict: EpochVerdict
    state: EpochState


def _check_epoch(server_epoch: int) -> None:
    if isinstance(server_epoch, bool) or not isinstance(server_epoch, int):
        raise TypeError(f"an epoch is an int, got {type(server_epoch).__name__}")
    if not 0 <= server_epoch < EPOCH_MODULUS:
        raise ValueError(f"an epoch is an unsigned 32-bit value, got {server_epoch}")


def _elapsed(prev: EpochState, now: float) -> float:
    elapsed = now - prev.client_time
    if not math.isfinite(elapsed) or elapsed < 0:
        raise ValueError(
            f"now ({now}) is before the previous observation ({prev.client_time}): "
            "epoch checks need a monotonic clock"
        )
    return elapsed


def _div16(value: int) -> int:
    """``value/16`` in the RFC's "integer arithmetic": truncation toward zero, as in C."""
    return -(-value // 16) if value < 0 else value // 16


def _pcp_deltas_valid(client_delta: int, server_delta: int) -> bool:
    """RFC 6887 §8.5: "If client_delta+2 < server_delta - server_delta/16 or server_delta+2 <
    client_delta - client_delta/16, then the client treats the Epoch Time value as invalid"."""
    return not (
        client_delta + 2 < server_delta - _div16(server_delta)
        or server_delta + 2 < client_delta - _div16(client_delta)
    )


def pcp_epoch_lost(prev: EpochState | None, server_epoch: int, now: float) -> bool:
    """True when a PCP Epoch Time says the server lost its state (RFC 6887 §8.5).

    The RFC's procedure, "using integer arithmetic": the first value is necessarily valid; a
    value less than the previous one "by more than one second" is invalid; otherwise, with
    ``client_delta`` the seconds elapsed on our clock and ``server_delta`` those on the server's,
    the value is invalid when ``client_delta+2 < server_delta - server_delta/16`` or
    ``server_delta+2 < client_delta - client_delta/16`` (the 2 absorbs both clocks' one-second
    granularity, the 1/16 a 6.25 % drift).
    Our clock is a float; ``client_delta`` is the difference of the two readings in whole seconds
    (each floored), as an integer-second clock would read them.

    Wrap: the field is 32 bits. A value that went "backwards" is accepted after all when, counted
    forward through 2**32, it passes the same delta test; a genuine reboot lands near zero and only
    passes if the old value was within seconds of 2**32, where the two cannot be told apart.
    """
    _check_epoch(server_epoch)
    if prev is None:
        return False
    _elapsed(prev, now)
    client_delta = math.floor(now) - math.floor(prev.client_time)
    if server_epoch < prev.server_epoch - 1:
        wrapped_delta = server_epoch + EPOCH_MODULUS - prev.server_epoch
        return not _pcp_deltas_valid(client_delta, wrapped_delta)
    return not _pcp_deltas_valid(client_delta, server_epoch - prev.server_epoch)


def natpmp_epoch_lost(prev: EpochState | None, server_epoch: int, now: float) -> bool:
    """True when a NAT-PMP SSSoE says the gateway lost its state (RFC 6886 §3.6).

    The client's "conservative estimate of the expected SSSoE" is the previous value plus 7/8 of
    the time elapsed on the client's clock; "If the SSSoE in the newly received packet is less than
    the client's conservative estimate by more than 2 seconds", the gateway lost its mappings.
    Exactly 2 seconds short is still fine. (Computed as ``8*delta < 7*elapsed - 16`` so no rounding
    of 7/8 can move the boundary.) Unlike PCP, NAT-PMP has no upper bound: a value far ahead is
    accepted.

    Wrap: a value below the previous one is accepted after all when its forward distance through
    2**32 is at least the estimate and at most what our clock allows (``elapsed + 2 +
    elapsed/16``, PCP's tolerance, since NAT-PMP names none); without that ceiling every reboot
    would look like a wrap.
    """
    _check_epoch(server_epoch)
    if prev is None:
        return False
    elapsed = _elapsed(prev, now)
    delta = server_epoch - prev.server_epoch
    if not 8 * delta < 7 * elapsed - 16:
        return False
    if server_epoch < prev.server_epoch:
        wrapped_delta = delta + EPOCH_MODULUS
        plausible = wrapped_delta <= elapsed + 2 + elapsed / 16
        if plausible and not 8 * wrapped_delta < 7 * elapsed - 16:
            return False
    return True


def observe_epoch(
    rule: EpochRule, prev: EpochState | None, server_epoch: int, now: float
) -> EpochObservation:
    """Judge ``server_epoch``, heard at ``now``, against ``prev``; return the verdict and new state.

    The new state is always the value just heard: RFC 6887 §8.5 "The client records the current
    time values for use in its next comparison" whatever the verdict, and RFC 6886 §3.6 compares
    with "the SSSoE value in the last packet it received".
    """
    lost = pcp_epoch_lost if rule is EpochRule.PCP else natpmp_epoch_lost
    state = EpochState(server_epoch=server_epoch, client_time=now)
    if prev is None:
        return EpochObservation(EpochVerdict.FIRST_CONTACT, state)
    verdict = EpochVerdict.LOST_STATE if lost(prev, server_epoch, now) else EpochVerdict.CONSISTENT
    return EpochObservation(verdict, state)


# --------------------------------------------------------------------------------------------
# Announcements
