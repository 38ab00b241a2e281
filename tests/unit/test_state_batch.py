"""engine.statefile.StateBatch and StateFile.apply: many changes, one rewrite of the file
(pure: a temporary directory, no socket, no event loop)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from engine.statefile import StateBatch, StateFile
from tests.support.records import make_record


def count_replaces(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every atomic replace of the state file (one per write), recorded."""
    done: list[str] = []
    real = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        done.append(str(dst))
        real(src, dst)

    monkeypatch.setattr("engine.statefile.os.replace", replace)
    return done


def ports(state: StateFile) -> set[int]:
    return {r.internal_port for r in state.load().records}


def test_a_batch_writes_many_changes_in_one_replace(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    state.record(make_record(1))
    writes = count_replaces(monkeypatch)
    batch = StateBatch(state)
    for port in range(100, 150):
        batch.record(make_record(port))
    batch.remove(make_record(1).key)
    assert len(batch) == 51
    assert ports(state) == {1}  # nothing written before the flush
    assert batch.flush() == []
    assert len(writes) == 1
    assert ports(state) == set(range(100, 150))
    assert len(batch) == 0
    assert batch.flush() == []
    assert len(writes) == 1  # nothing pending: no write


def test_the_last_change_to_a_mapping_wins_and_created_is_kept(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    then = time.time() - 60
    state.record(make_record(7, updated=then))
    batch = StateBatch(state)
    batch.record(make_record(8))
    batch.remove(make_record(8).key)      # recorded then removed: removed
    batch.remove(make_record(7).key)
    batch.record(make_record(7, updated=then + 30))  # removed then recorded: recorded
    batch.flush()
    [record] = state.load().records
    assert record.internal_port == 7
    assert (record.created, record.updated) == (then, then + 30)


def test_a_failed_write_keeps_the_changes_for_the_next_flush(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    batch = StateBatch(state)
    batch.record(make_record(1))
    batch.record(make_record(2))

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.statefile.os.replace", full)
    with pytest.raises(OSError):
        batch.flush()
    assert len(batch) == 2
    assert ports(state) == set()
    batch.remove(make_record(2).key)  # a change made since: it wins over the kept one
    monkeypatch.undo()
    batch.flush()
    assert ports(state) == {1}
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_apply_adds_replaces_and_removes_under_one_lock(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    state.apply({make_record(port).key: make_record(port) for port in (1, 2, 3)})
    state.apply({make_record(1).key: None, make_record(4).key: make_record(4),
                 make_record(9).key: None})  # removing what is not there is no error
    assert ports(state) == {2, 3, 4}


def test_ten_thousand_records_fit_in_the_file(tmp_path: Path) -> None:
    # What a manager holding 10,000 mappings writes (~4.5 MB): the old 4 MiB bound moved
    # such a file aside as unusable, and every record with it.
    state = StateFile(tmp_path)
    batch = StateBatch(state)
    for port in range(10_000):
        batch.record(make_record(port + 1))
    assert batch.flush() == []
    assert (tmp_path / "mappings.json").stat().st_size > 4 * 1024 * 1024
    loaded = state.load()
    assert (loaded.damaged, loaded.warnings) == (False, [])
    assert len(loaded.records) == 10_000
