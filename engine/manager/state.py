"""The life of one managed mapping: every state, trigger and transition in one table.

Pure: no I/O, no clock, no event loop (h11's ``_state.py`` is the model). The
manager (:mod:`engine.manager.manager`) feeds each mapping's machine what
happened — an answer, no answer, an error, a timer, an announcement, the user —
and carries out the :class:`Action` it gets back. Nothing here knows which
mapping protocol made the mapping: a protocol's own loss signal (a PCP or
NAT-PMP epoch that went back, a UPnP check that no longer finds the mapping)
arrives as :attr:`Trigger.GONE`.

The error policy (RFC 6887 §15, RFC 6886 §3.5) is :func:`trigger_for_error`:
no answer is retried on the renewal schedule; a short-lifetime error after its
error lifetime; a long-lifetime error leaves the mapping FAILED until something
changes (the gateway restarts or announces, it answers again after silence, or
the user renews).

"Confirmed": an answer counts (ACTIVE) only if its request was sent after the
last restart or announcement the manager heard (:meth:`MappingMachine.answered`);
an older answer may describe a table the gateway no longer has, so the mapping
is CONFIRMING and is asked for again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..codes import ErrorLifetime
from ..errors import NatDeckError, ResultCodeError
from ..events import MappingState

__all__ = [
    "TABLE",
    "Action",
    "MappingMachine",
    "Trigger",
    "UnexpectedTrigger",
    "trigger_for_error",
]

S = MappingState


class Trigger(StrEnum):
    """What happened to a mapping."""

    GRANTED = "granted"  # an answer, sent after the last gateway change
    GRANTED_STALE = "granted_stale"  # an answer to a request sent before the last change
    DUE = "due"  # its timer fired (renewal, retry, confirmation)
    NO_ANSWER = "no_answer"  # timeout or transport error
    SHORT_ERROR = "short_error"  # an error with a short lifetime (retry after it)
    LONG_ERROR = "long_error"  # an error with a long lifetime (wait for a change)
    EXPIRED = "expired"  # its lifetime ran out
    GONE = "gone"  # the gateway lost it (epoch went back, local address changed, not found)
    CHANGED = "changed"  # the gateway announced something: confirm after the RFC's delay
    REACHABLE = "reachable"  # the gateway answers again after silence
    USER_RENEW = "user_renew"
    REMOVE = "remove"
    DELETED = "deleted"
    DELETE_FAILED = "delete_failed"


class Action(StrEnum):
    """What the manager does next for the mapping."""

    NONE = "none"
    SCHEDULE_RENEWAL = "schedule_renewal"  # next renewal on the RFC schedule
    RENEW = "renew"  # send a renewal now
    RECREATE = "recreate"  # ask for the same mapping again now
    RECREATE_NOW = "recreate_now"  # schedule a recreation at once
    CONFIRM_LATER = "confirm_later"  # schedule a recreation at the announcement round
    RETRY_WINDOW = "retry_window"  # retry the renewal in the next RFC window
    RETRY_BACKOFF = "retry_backoff"  # retry after a growing back-off
    RETRY_AFTER_ERROR = "retry_after_error"  # retry when the error lifetime is over
    WAIT_FOR_CHANGE = "wait_for_change"  # nothing until something changes (expiry still told)
    REPORT_EXPIRED = "report_expired"  # FAILED and now gone at the gateway: say so
    DELETE = "delete"  # send the delete now
    DROP = "drop"  # forget the mapping
    RESUME = "resume"  # a delete failed: back to where it was


_KEPT = (S.ACTIVE, S.RENEWING, S.CONFIRMING)
_RECOVERING = (S.LOST, S.CONFIRMING)

#: (state, trigger) -> (next state, action). A pair that is not here is a bug in the caller.
TABLE: dict[tuple[MappingState, Trigger], tuple[MappingState, Action]] = {
    # The first request (add): success makes it ACTIVE; a failure drops it (add raises).
    (S.REQUESTING, Trigger.GRANTED): (S.ACTIVE, Action.SCHEDULE_RENEWAL),
    (S.REQUESTING, Trigger.GRANTED_STALE): (S.CONFIRMING, Action.CONFIRM_LATER),
    (S.REQUESTING, Trigger.NO_ANSWER): (S.REMOVED, Action.DROP),
    (S.REQUESTING, Trigger.SHORT_ERROR): (S.REMOVED, Action.DROP),
    (S.REQUESTING, Trigger.LONG_ERROR): (S.REMOVED, Action.DROP),
    (S.REQUESTING, Trigger.CHANGED): (S.REQUESTING, Action.NONE),
    (S.REQUESTING, Trigger.GONE): (S.REQUESTING, Action.NONE),
    (S.REQUESTING, Trigger.REACHABLE): (S.REQUESTING, Action.NONE),
    # Granted: renew on the RFC schedule (RFC 6887 §11.2.1, RFC 6886 §3.3).
    (S.ACTIVE, Trigger.DUE): (S.RENEWING, Action.RENEW),
    (S.ACTIVE, Trigger.USER_RENEW): (S.RENEWING, Action.RENEW),
    (S.RENEWING, Trigger.DUE): (S.RENEWING, Action.RENEW),
    (S.RENEWING, Trigger.USER_RENEW): (S.RENEWING, Action.RENEW),
    (S.RENEWING, Trigger.NO_ANSWER): (S.RENEWING, Action.RETRY_WINDOW),
    (S.RENEWING, Trigger.SHORT_ERROR): (S.RENEWING, Action.RETRY_AFTER_ERROR),
    (S.RENEWING, Trigger.LONG_ERROR): (S.FAILED, Action.WAIT_FOR_CHANGE),
    # Confirming (after an announcement) and lost: ask for the same mapping again.
    (S.CONFIRMING, Trigger.DUE): (S.CONFIRMING, Action.RECREATE),
    (S.CONFIRMING, Trigger.USER_RENEW): (S.CONFIRMING, Action.RECREATE),
    (S.LOST, Trigger.DUE): (S.LOST, Action.RECREATE),
    (S.LOST, Trigger.USER_RENEW): (S.LOST, Action.RECREATE),
    (S.FAILED, Trigger.USER_RENEW): (S.LOST, Action.RECREATE),
    (S.FAILED, Trigger.DUE): (S.FAILED, Action.NONE),
    (S.FAILED, Trigger.NO_ANSWER): (S.FAILED, Action.WAIT_FOR_CHANGE),
    (S.FAILED, Trigger.SHORT_ERROR): (S.LOST, Action.RETRY_AFTER_ERROR),
    (S.FAILED, Trigger.LONG_ERROR): (S.FAILED, Action.WAIT_FOR_CHANGE),
    (S.FAILED, Trigger.EXPIRED): (S.FAILED, Action.REPORT_EXPIRED),
    (S.FAILED, Trigger.GONE): (S.LOST, Action.RECREATE_NOW),
    # Something changed: give a lasting failure another chance (RFC 6887 §15).
    (S.FAILED, Trigger.CHANGED): (S.LOST, Action.CONFIRM_LATER),
    (S.FAILED, Trigger.REACHABLE): (S.LOST, Action.RECREATE_NOW),
    # Leaving: always send the delete, whatever natdeck believes (a delete of a missing
    # mapping is harmless); report it removed only once it is answered.
    (S.REMOVING, Trigger.DELETED): (S.REMOVED, Action.DROP),
    (S.REMOVING, Trigger.DELETE_FAILED): (S.REMOVING, Action.RESUME),
    (S.REMOVING, Trigger.CHANGED): (S.REMOVING, Action.NONE),
    (S.REMOVING, Trigger.GONE): (S.REMOVING, Action.NONE),
    (S.REMOVING, Trigger.REACHABLE): (S.REMOVING, Action.NONE),
    (S.REMOVING, Trigger.DUE): (S.REMOVING, Action.NONE),
    (S.REMOVING, Trigger.EXPIRED): (S.REMOVING, Action.NONE),
}
for _state in (*_KEPT, S.LOST):
    TABLE[(_state, Trigger.GRANTED)] = (S.ACTIVE, Action.SCHEDULE_RENEWAL)
    TABLE[(_state, Trigger.GRANTED_STALE)] = (S.CONFIRMING, Action.CONFIRM_LATER)
    TABLE[(_state, Trigger.CHANGED)] = (
        (S.LOST if _state is S.LOST else S.CONFIRMING), Action.CONFIRM_LATER)
    TABLE[(_state, Trigger.REACHABLE)] = (_state, Action.NONE)
    if _state is not S.ACTIVE:
        TABLE[(_state, Trigger.LONG_ERROR)] = (S.FAILED, Action.WAIT_FOR_CHANGE)
for _state in (*_KEPT, S.LOST):
    TABLE[(_state, Trigger.GONE)] = (S.LOST, Action.RECREATE_NOW)
    TABLE[(_state, Trigger.EXPIRED)] = (S.LOST, Action.RECREATE_NOW)
for _state in _RECOVERING:
    TABLE[(_state, Trigger.NO_ANSWER)] = (_state, Action.RETRY_BACKOFF)
    TABLE[(_state, Trigger.SHORT_ERROR)] = (_state, Action.RETRY_AFTER_ERROR)
for _state in (S.REQUESTING, *_KEPT, S.LOST, S.FAILED, S.REMOVING):
    TABLE[(_state, Trigger.REMOVE)] = (S.REMOVING, Action.DELETE)
TABLE[(S.ACTIVE, Trigger.NO_ANSWER)] = (S.RENEWING, Action.RETRY_WINDOW)
TABLE[(S.ACTIVE, Trigger.SHORT_ERROR)] = (S.RENEWING, Action.RETRY_AFTER_ERROR)
TABLE[(S.ACTIVE, Trigger.LONG_ERROR)] = (S.FAILED, Action.WAIT_FOR_CHANGE)


class UnexpectedTrigger(NatDeckError):
    """A trigger that makes no sense in the mapping's state (a bug in the caller)."""


def trigger_for_error(error: NatDeckError) -> Trigger:
    """The error policy: which trigger a failed request is (RFC 6887 §15, RFC 6886 §3.5).

    A result code with a long error lifetime waits for a change; any other result code is
    retried after its error lifetime; everything else (timeout, network) is "no answer".
    """
    if isinstance(error, ResultCodeError):
        if error.lifetime_kind is ErrorLifetime.LONG:
            return Trigger.LONG_ERROR
        return Trigger.SHORT_ERROR
    return Trigger.NO_ANSWER


#: Recovery back-off after no answer: this, doubling to MAX_BACKOFF.
FIRST_BACKOFF = 5.0
MAX_BACKOFF = 60.0


@dataclass(slots=True)
class MappingMachine:
    """One mapping's state and the counters the policy needs. Fed triggers, returns actions."""

    state: MappingState = S.REQUESTING
    attempt: int = 0
    """Unanswered renewals since the last grant (selects the RFC 6887 §11.2.1 window)."""
    backoff: float = FIRST_BACKOFF
    before_remove: MappingState | None = None
    """Where it was when the delete was sent (a failed delete goes back there)."""
    sent_at: float | None = None
    """When the request now in flight was sent (loop time), or None."""
    confirmed_at: float = float("-inf")
    """When the request behind the last answer that counted (GRANTED) was sent."""

    def fire(self, trigger: Trigger) -> Action:
        """Apply ``trigger``; return what to do. Raises :class:`UnexpectedTrigger`."""
        try:
            state, action = TABLE[(self.state, trigger)]
        except KeyError:
            raise UnexpectedTrigger(f"{trigger} in state {self.state}") from None
        if action is Action.RESUME:
            state = self.before_remove or S.LOST
            self.before_remove = None
        elif state is S.REMOVING and self.state is not S.REMOVING:
            self.before_remove = self.state
        if trigger is Trigger.GRANTED:
            self.attempt = 0
            self.backoff = FIRST_BACKOFF
        elif action is Action.RETRY_WINDOW:
            self.attempt += 1
        elif trigger in (Trigger.CHANGED, Trigger.REACHABLE, Trigger.GONE):
            self.backoff = FIRST_BACKOFF
        self.state = state
        return action

    def next_backoff(self, jitter: float) -> float:
        """The wait before the next recovery after no answer (``jitter`` in [0, 1)), doubling."""
        wait = self.backoff * (0.9 + 0.2 * jitter)
        self.backoff = min(self.backoff * 2, MAX_BACKOFF)
        return wait

    def answered(self, last_change: float) -> Trigger:
        """The trigger for a success: GRANTED if the request was sent after ``last_change``."""
        sent, self.sent_at = self.sent_at, None
        if sent is not None and sent <= last_change:
            return Trigger.GRANTED_STALE
        if sent is not None:
            self.confirmed_at = sent
        return Trigger.GRANTED
