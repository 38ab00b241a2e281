"""engine.manager.schedule: due times in one heap, without a loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.manager.schedule import Alarm, DueTimes


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


def test_the_heap_stays_bounded_under_many_reschedules_of_one_key() -> None:
    # A renewal moves a mapping's due time later each time; the entries replaced used to
    # stay in the heap until their time came, which a later time never lets happen soon.
    due: DueTimes[str] = DueTimes()
    due.set("other", 1e9)
    for step in range(10_000):
        due.set("renewed", 100.0 + step)
        assert due.entries <= 2 * len(due) + 64, step
    assert due.next_at() == 100.0 + 9_999
    assert due.pop_due(1e9) == ["renewed", "other"]


def test_cancelled_keys_leave_no_entries_behind_for_long() -> None:
    due: DueTimes[int] = DueTimes()
    for key in range(1000):
        due.set(key, 1000.0 + key)
    for key in range(990):
        due.set(key, None)
    assert len(due) == 10
    assert due.entries <= 2 * len(due) + 64
    assert due.next_at() == 1990.0
    assert due.pop_due(float("inf")) == list(range(990, 1000))


class FakeHandle:
    def __init__(self, when: float, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        self._when, self.callback, self.args, self.cancelled = when, callback, args, False

    def when(self) -> float:
        return self._when

    def cancel(self) -> None:
        self.cancelled = True

    def run(self) -> None:
        self.cancelled = True  # (spent: armed no more)
        self.callback(*self.args)


class FakeLoop:
    """What Alarm uses of a loop (``call_at``), recorded: no event loop runs here."""

    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []

    def call_at(self, when: float, callback: Callable[..., None], *args: Any) -> FakeHandle:
        self.handles.append(FakeHandle(when, callback, args))
        return self.handles[-1]

    def armed(self) -> list[float]:
        return [h.when() for h in self.handles if not h.cancelled]


def test_the_alarm_keeps_one_timer_at_the_earliest_due_time() -> None:
    due: DueTimes[str] = DueTimes()
    rung: list[float] = []
    alarm = Alarm(due, rung.append)
    due.set("a", 30.0)
    loop = FakeLoop()
    alarm.start(loop)  # type: ignore[arg-type]
    assert loop.armed() == [30.0]
    alarm.at(40.0)     # later: the timer stays
    alarm.at(None)
    assert loop.armed() == [30.0]
    alarm.at(20.0)     # sooner: one timer, moved
    assert loop.armed() == [20.0]
    alarm.stop()
    assert loop.armed() == []
    alarm.at(10.0)     # stopped: not armed
    assert loop.armed() == []


def test_while_it_rings_nothing_is_armed_then_the_earliest_is() -> None:
    due: DueTimes[str] = DueTimes()
    loop = FakeLoop()

    def ring(when: float) -> None:
        assert due.pop_due(when) == ["a"]
        for key, at in (("c", 50.0), ("b", 25.0)):
            due.set(key, at)
            alarm.at(at)  # as the manager's set_due does: not armed one by one
        assert loop.armed() == []

    alarm = Alarm(due, ring)
    due.set("a", 10.0)
    alarm.start(loop)  # type: ignore[arg-type]
    [first] = loop.handles
    first.run()
    assert loop.armed() == [25.0]  # one timer, for the earliest set during the ring
