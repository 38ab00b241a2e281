"""tui.log_bridge: the engine's log records as event-log lines, a flood of them bounded."""

from __future__ import annotations

import logging

from textual.message import Message

from tui.log_bridge import BURST, EngineLogHandler
from tui.messages import LogLine


def _record(created: float, port: int) -> logging.LogRecord:
    record = logging.LogRecord("engine.transport", logging.INFO, __file__, 1,
                               "dropped an unmatched answer from gateway %s: %r",
                               ("192.0.2.1", port), None)
    record.created = created
    return record


def test_a_flood_of_one_kind_of_record_costs_a_few_lines_a_second() -> None:
    # A host spoofing the gateway's address sends thousands of answers a second: each was
    # dropped and logged, and each log record became a line of the event log -- the UI
    # spent its time writing them. A few a second are shown, then how many more there were.
    posted: list[Message] = []
    handler = EngineLogHandler(posted.append)
    for n in range(5000):
        handler.emit(_record(100.0 + n / 5000, n))
    assert len(posted) == BURST
    handler.emit(_record(101.5, 1))  # a second later: the count of the rest, then this one
    lines = [m.text for m in posted if isinstance(m, LogLine)]
    assert len(lines) == BURST + 2
    assert f"{5000 - BURST} more like it" in lines[BURST]
    assert "dropped an unmatched answer" in lines[-1]


def test_other_records_are_not_held_back_by_a_flood_of_one_kind() -> None:
    posted: list[Message] = []
    handler = EngineLogHandler(posted.append)
    for n in range(100):
        handler.emit(_record(100.0, n))
    other = logging.LogRecord("engine.transport", logging.INFO, __file__, 1,
                              "retransmitting %s", ("map",), None)
    other.created = 100.0
    handler.emit(other)
    assert isinstance(posted[-1], LogLine)
    assert "retransmitting map" in posted[-1].text


def test_a_record_whose_message_is_not_a_string_is_still_shown() -> None:
    posted: list[Message] = []
    handler = EngineLogHandler(posted.append)
    record = logging.LogRecord("engine.manager", logging.INFO, __file__, 1,
                               {"unhashable": 1}, None, None)
    handler.emit(record)
    assert isinstance(posted[0], LogLine)
    assert "unhashable" in posted[0].text
