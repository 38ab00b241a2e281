"""engine.manager.schedule: due times in one heap, without a loop."""

from __future__ import annotations

from engine.manager.schedule import DueTimes


def test_keys_come_out_in_due_order_and_only_when_due() -> None:
    due: DueTimes[str] = DueTimes()
    assert due.set("b", 20.0)
    assert due.set("a", 10.0)
    assert not due.set("c", 30.0)
    assert due.next_at() == 10.0
    assert due.pop_due(5.0) == []
    assert due.pop_due(20.0) == ["a", "b"]
    assert len(due) == 1
    assert due.at("c") == 30.0


def test_setting_again_replaces_and_none_cancels() -> None:
    due: DueTimes[str] = DueTimes()
    due.set("a", 10.0)
    due.set("a", 50.0)
    due.set("b", 20.0)
    due.set("b", None)
    assert due.next_at() == 50.0
    assert due.pop_due(40.0) == []
    assert due.pop_due(50.0) == ["a"]
    assert due.next_at() is None
    assert due.at("a") is None


def test_a_thousand_reschedules_leave_one_entry_each() -> None:
    due: DueTimes[int] = DueTimes()
    for round_ in range(1000):
        for key in range(10):
            due.set(key, float(round_ + key))
    assert len(due) == 10
    assert due.pop_due(float("inf")) == list(range(10))
