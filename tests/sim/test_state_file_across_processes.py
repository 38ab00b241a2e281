"""The state file shared by processes: natdeck map --hold, the TUI and natdeck unmap each read
and rewrite it, under one lock (engine.statefile), and lose no one's record."""

from __future__ import annotations

import multiprocessing
import sys
from pathlib import Path

import pytest

from engine.statefile import StateFile
from tests.support.records import make_record


def _add_records(directory: str, first: int, count: int) -> None:
    state = StateFile(directory)
    for port in range(first, first + count):
        state.record(make_record(port))


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl.flock")
def test_concurrent_processes_lose_no_records(tmp_path: Path) -> None:
    # Each write is read-modify-write of the whole file: without the lock, two processes
    # read the same old list and the second replace drops the first one's record.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_records, args=(str(tmp_path), 1000 * (i + 1), 8))
               for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    ports = {r.internal_port for r in StateFile(tmp_path).load().records}
    assert ports == {1000 * (i + 1) + j for i in range(4) for j in range(8)}
