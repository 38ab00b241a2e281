"""engine.manager.state: the mapping state table and the error policy, without a loop."""

from __future__ import annotations

import pytest

from engine.codes import PcpResult
from engine.errors import GatewayTimeout, ResultCodeError, TransportError
from engine.events import MappingState
from engine.manager.state import (
    FIRST_BACKOFF,
    MAX_BACKOFF,
    TABLE,
    Action,
    MappingMachine,
    Trigger,
    UnexpectedTrigger,
    trigger_for_error,
)

S = MappingState
T = Trigger
A = Action

#: Every transition, written out once more by hand: the table must say exactly this.
EXPECTED: dict[tuple[MappingState, Trigger], tuple[MappingState, Action]] = {
    (S.REQUESTING, T.GRANTED): (S.ACTIVE, A.SCHEDULE_RENEWAL),
    (S.REQUESTING, T.GRANTED_STALE): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.REQUESTING, T.NO_ANSWER): (S.REMOVED, A.DROP),
    (S.REQUESTING, T.SHORT_ERROR): (S.REMOVED, A.DROP),
    (S.REQUESTING, T.LONG_ERROR): (S.REMOVED, A.DROP),
    (S.REQUESTING, T.CHANGED): (S.REQUESTING, A.NONE),
    (S.REQUESTING, T.GONE): (S.REQUESTING, A.NONE),
    (S.REQUESTING, T.REACHABLE): (S.REQUESTING, A.NONE),
    (S.REQUESTING, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.ACTIVE, T.GRANTED): (S.ACTIVE, A.SCHEDULE_RENEWAL),
    (S.ACTIVE, T.GRANTED_STALE): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.ACTIVE, T.DUE): (S.RENEWING, A.RENEW),
    (S.ACTIVE, T.USER_RENEW): (S.RENEWING, A.RENEW),
    (S.ACTIVE, T.NO_ANSWER): (S.RENEWING, A.RETRY_WINDOW),
    (S.ACTIVE, T.SHORT_ERROR): (S.RENEWING, A.RETRY_AFTER_ERROR),
    (S.ACTIVE, T.LONG_ERROR): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.ACTIVE, T.EXPIRED): (S.LOST, A.RECREATE_NOW),
    (S.ACTIVE, T.GONE): (S.LOST, A.RECREATE_NOW),
    (S.ACTIVE, T.CHANGED): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.ACTIVE, T.REACHABLE): (S.ACTIVE, A.NONE),
    (S.ACTIVE, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.RENEWING, T.GRANTED): (S.ACTIVE, A.SCHEDULE_RENEWAL),
    (S.RENEWING, T.GRANTED_STALE): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.RENEWING, T.DUE): (S.RENEWING, A.RENEW),
    (S.RENEWING, T.USER_RENEW): (S.RENEWING, A.RENEW),
    (S.RENEWING, T.NO_ANSWER): (S.RENEWING, A.RETRY_WINDOW),
    (S.RENEWING, T.SHORT_ERROR): (S.RENEWING, A.RETRY_AFTER_ERROR),
    (S.RENEWING, T.LONG_ERROR): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.RENEWING, T.EXPIRED): (S.LOST, A.RECREATE_NOW),
    (S.RENEWING, T.GONE): (S.LOST, A.RECREATE_NOW),
    (S.RENEWING, T.CHANGED): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.RENEWING, T.REACHABLE): (S.RENEWING, A.NONE),
    (S.RENEWING, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.CONFIRMING, T.GRANTED): (S.ACTIVE, A.SCHEDULE_RENEWAL),
    (S.CONFIRMING, T.GRANTED_STALE): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.CONFIRMING, T.DUE): (S.CONFIRMING, A.RECREATE),
    (S.CONFIRMING, T.USER_RENEW): (S.CONFIRMING, A.RECREATE),
    (S.CONFIRMING, T.NO_ANSWER): (S.CONFIRMING, A.RETRY_BACKOFF),
    (S.CONFIRMING, T.SHORT_ERROR): (S.CONFIRMING, A.RETRY_AFTER_ERROR),
    (S.CONFIRMING, T.LONG_ERROR): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.CONFIRMING, T.EXPIRED): (S.LOST, A.RECREATE_NOW),
    (S.CONFIRMING, T.GONE): (S.LOST, A.RECREATE_NOW),
    (S.CONFIRMING, T.CHANGED): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.CONFIRMING, T.REACHABLE): (S.CONFIRMING, A.NONE),
    (S.CONFIRMING, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.LOST, T.GRANTED): (S.ACTIVE, A.SCHEDULE_RENEWAL),
    (S.LOST, T.GRANTED_STALE): (S.CONFIRMING, A.CONFIRM_LATER),
    (S.LOST, T.DUE): (S.LOST, A.RECREATE),
    (S.LOST, T.USER_RENEW): (S.LOST, A.RECREATE),
    (S.LOST, T.NO_ANSWER): (S.LOST, A.RETRY_BACKOFF),
    (S.LOST, T.SHORT_ERROR): (S.LOST, A.RETRY_AFTER_ERROR),
    (S.LOST, T.LONG_ERROR): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.LOST, T.EXPIRED): (S.LOST, A.RECREATE_NOW),
    (S.LOST, T.GONE): (S.LOST, A.RECREATE_NOW),
    (S.LOST, T.CHANGED): (S.LOST, A.CONFIRM_LATER),
    (S.LOST, T.REACHABLE): (S.LOST, A.NONE),
    (S.LOST, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.FAILED, T.DUE): (S.FAILED, A.NONE),
    (S.FAILED, T.USER_RENEW): (S.LOST, A.RECREATE),
    (S.FAILED, T.NO_ANSWER): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.FAILED, T.SHORT_ERROR): (S.LOST, A.RETRY_AFTER_ERROR),
    (S.FAILED, T.LONG_ERROR): (S.FAILED, A.WAIT_FOR_CHANGE),
    (S.FAILED, T.EXPIRED): (S.FAILED, A.REPORT_EXPIRED),
    (S.FAILED, T.GONE): (S.LOST, A.RECREATE_NOW),
    (S.FAILED, T.CHANGED): (S.LOST, A.CONFIRM_LATER),
    (S.FAILED, T.REACHABLE): (S.LOST, A.RECREATE_NOW),
    (S.FAILED, T.REMOVE): (S.REMOVING, A.DELETE),
    (S.REMOVING, T.DELETED): (S.REMOVED, A.DROP),
    (S.REMOVING, T.DELETE_FAILED): (S.REMOVING, A.RESUME),
    (S.REMOVING, T.CHANGED): (S.REMOVING, A.NONE),
    (S.REMOVING, T.GONE): (S.REMOVING, A.NONE),
    (S.REMOVING, T.REACHABLE): (S.REMOVING, A.NONE),
    (S.REMOVING, T.DUE): (S.REMOVING, A.NONE),
    (S.REMOVING, T.EXPIRED): (S.REMOVING, A.NONE),
    (S.REMOVING, T.REMOVE): (S.REMOVING, A.DELETE),
}


def test_the_table_is_exactly_the_documented_transitions() -> None:
    assert dict(TABLE) == EXPECTED


@pytest.mark.parametrize(("start", "trigger"), sorted(EXPECTED))
def test_every_transition(start: MappingState, trigger: Trigger) -> None:
    machine = MappingMachine(state=start, before_remove=S.ACTIVE)
    action = machine.fire(trigger)
    state, expected_action = EXPECTED[(start, trigger)]
    assert action is expected_action
    if expected_action is A.RESUME:
        assert machine.state is S.ACTIVE  # back where it was before the delete
    else:
        assert machine.state is state


@pytest.mark.parametrize("trigger", [t for t in Trigger if (S.REMOVED, t) not in EXPECTED])
def test_a_removed_mapping_takes_no_trigger(trigger: Trigger) -> None:
    with pytest.raises(UnexpectedTrigger):
        MappingMachine(state=S.REMOVED).fire(trigger)


def test_a_removal_always_sends_the_delete_whatever_the_mapping_is_believed_to_be() -> None:
    """Issue 14 finding 1: "lost" is a guess; the delete goes out from every live state."""
    for state in S:
        if state is S.REMOVED:
            continue
        assert TABLE[(state, T.REMOVE)] == (S.REMOVING, A.DELETE)


def test_a_failed_delete_goes_back_where_it_was() -> None:
    machine = MappingMachine(state=S.LOST)
    assert machine.fire(T.REMOVE) is A.DELETE
    assert machine.fire(T.DELETE_FAILED) is A.RESUME
    assert machine.state is S.LOST


def test_an_answer_to_a_request_sent_before_the_last_change_does_not_count() -> None:
    """Issue 14 finding 2: ACTIVE only after an answer that postdates the last restart."""
    machine = MappingMachine(state=S.RENEWING)
    machine.sent_at = 10.0
    assert machine.answered(last_change=10.5) is T.GRANTED_STALE
    assert machine.confirmed_at == float("-inf")
    machine.sent_at = 11.0
    assert machine.answered(last_change=10.5) is T.GRANTED
    assert machine.confirmed_at == 11.0
    assert machine.sent_at is None


def test_renewal_attempts_count_up_and_reset_on_a_grant() -> None:
    machine = MappingMachine(state=S.ACTIVE)
    machine.fire(T.DUE)
    machine.fire(T.NO_ANSWER)
    machine.fire(T.DUE)
    machine.fire(T.NO_ANSWER)
    assert machine.attempt == 2
    machine.fire(T.GRANTED)
    assert machine.attempt == 0


def test_recovery_backoff_doubles_to_a_ceiling_and_a_change_resets_it() -> None:
    machine = MappingMachine(state=S.LOST)
    waits = [machine.next_backoff(0.5) for _ in range(8)]
    assert waits[0] == pytest.approx(FIRST_BACKOFF)
    assert waits[1] == pytest.approx(2 * FIRST_BACKOFF)
    assert max(waits) == pytest.approx(MAX_BACKOFF)
    machine.fire(T.CHANGED)
    assert machine.next_backoff(0.0) == pytest.approx(0.9 * FIRST_BACKOFF)


def _pcp(code: int, lifetime: int = 30) -> ResultCodeError:
    return ResultCodeError("pcp", code, request="PCP map tcp 1", gateway="192.0.2.1",
                           error_lifetime=lifetime)


@pytest.mark.parametrize(("error", "trigger"), [
    (GatewayTimeout("192.0.2.1", "PCP map tcp 1", 9, 30.0, "pcp"), T.NO_ANSWER),
    (TransportError("network unreachable"), T.NO_ANSWER),
    (_pcp(PcpResult.NO_RESOURCES), T.SHORT_ERROR),
    (_pcp(PcpResult.NETWORK_FAILURE), T.SHORT_ERROR),
    (_pcp(PcpResult.NOT_AUTHORIZED, 1800), T.LONG_ERROR),
    (_pcp(PcpResult.UNSUPP_PROTOCOL, 1800), T.LONG_ERROR),
    (_pcp(97), T.LONG_ERROR),  # unknown: not retried until something changes
    (ResultCodeError("natpmp", 3, request="NAT-PMP map", gateway="192.0.2.1"), T.SHORT_ERROR),
    (ResultCodeError("natpmp", 4, request="NAT-PMP map", gateway="192.0.2.1"), T.SHORT_ERROR),
    (ResultCodeError("natpmp", 2, request="NAT-PMP map", gateway="192.0.2.1"), T.LONG_ERROR),
])
def test_the_error_policy(error: Exception, trigger: Trigger) -> None:
    assert trigger_for_error(error) is trigger  # type: ignore[arg-type]
