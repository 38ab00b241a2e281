"""engine.statefile and engine.manager.records against a hostile state file: what Python's
json reads but a record or a file cannot be (times beyond a float or infinite, nesting
deeper than the recursion limit, ``true`` for a version) is reported as damaged, never
raised, and costs no other record; a write that fails for any reason is the records
layer's error, not the manager's exception (pure: a temporary directory, no event loop)."""

from __future__ import annotations

import json
import math
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from engine.client import PortMapping
from engine.manager.records import Records
from engine.protocols import Protocol
from engine.statefile import FORMAT_VERSION, MappingRecord, StateBatch, StateFile
from tests.support.records import Unserialisable, make_record


def write_raw(state: StateFile, content: str) -> None:
    state.directory.mkdir(parents=True, exist_ok=True)
    state.path.write_text(content)


def with_bad_record(field: str, raw_value: str) -> str:
    """A version-1 file: record 2000 with ``field`` set to ``raw_value`` (JSON text as
    written, so that 1e400 or Infinity reach the reader), then the good record 1000."""
    bad = json.dumps({**make_record(2000).to_json(), field: "@@"}).replace('"@@"', raw_value)
    good = json.dumps(make_record(1000).to_json())
    return f'{{"version": {FORMAT_VERSION}, "mappings": [{bad}, {good}]}}'


@pytest.mark.parametrize(("field", "raw_value", "expected"), [
    # float(10**400) raised OverflowError out of load() and every write.
    ("created", "1" + "0" * 400, "created is an integer too large"),
    ("updated", "1" + "0" * 400, "updated is an integer too large"),
    # Infinite: a record that never expires, so is never pruned.
    ("updated", "1e400", "updated is inf"),
    ("updated", "Infinity", "updated is inf"),
    ("created", "-Infinity", "created is -inf"),
    ("updated", "NaN", "updated is nan"),
    ("created", "-1", "created is -1"),
])
def test_a_time_that_is_not_a_finite_float_costs_that_record_only(
        tmp_path: Path, field: str, raw_value: str, expected: str) -> None:
    state = StateFile(tmp_path)
    write_raw(state, with_bad_record(field, raw_value))
    loaded = state.load()
    assert [r.internal_port for r in loaded.records] == [1000]
    assert all(math.isfinite(r.expires()) for r in loaded.records)
    assert not loaded.damaged
    assert any(expected in w for w in loaded.warnings), loaded.warnings
    # Writing still works and keeps the good record; the bad one is carried through (not
    # a record, still reported), not destroyed.
    warnings = state.record(make_record(3000))
    assert any(expected in w for w in warnings), warnings
    after = state.load()
    assert sorted(r.internal_port for r in after.records) == [1000, 3000]
    assert any(expected in w for w in after.warnings), after.warnings
    assert len(after.unparsed) == 1
    assert len(json.loads(state.path.read_text())["mappings"]) == 3


def test_a_time_beyond_a_float_is_a_value_error_of_the_record() -> None:
    data = {**make_record(2000).to_json(), "created": 10**400}
    with pytest.raises(ValueError, match="created is an integer too large"):
        MappingRecord.from_json(data)


@pytest.mark.parametrize(("content", "expected"), [
    # json recurses once per level: RecursionError, which load() did not catch.
    ("[" * 200_000 + "]" * 200_000, "recursion"),
    ('{"a": ' * 200_000 + "1" + "}" * 200_000, "recursion"),
    # An integer longer than sys.get_int_max_str_digits(): a plain ValueError.
    ('{"version": ' + "1" * 5000 + ', "mappings": []}', "digits"),
])
def test_a_file_the_json_reader_fails_on_is_damaged_not_raised(
        tmp_path: Path, content: str, expected: str) -> None:
    state = StateFile(tmp_path)
    write_raw(state, content)
    loaded = state.load()
    assert loaded.damaged
    assert loaded.records == []
    assert len(loaded.warnings) == 1
    assert expected in loaded.warnings[0]
    # As any damaged file: moved aside by the next write, not destroyed.
    state.record(make_record(1000))
    assert [r.internal_port for r in state.load().records] == [1000]
    [aside] = tmp_path.glob("mappings.json.bad-*")
    assert aside.read_text() == content


@pytest.mark.parametrize("version", ["true", "1.0"])
def test_a_version_equal_to_1_but_not_the_integer_1_is_another_version(
        tmp_path: Path, version: str) -> None:
    # True == 1 and 1.0 == 1 in Python; neither is what this natdeck writes.
    state = StateFile(tmp_path)
    good = json.dumps(make_record(1000).to_json())
    write_raw(state, f'{{"version": {version}, "mappings": [{good}]}}')
    loaded = state.load()
    assert loaded.damaged
    assert loaded.records == []
    assert f"format version {json.loads(version)!r}" in loaded.warnings[0]


def test_load_never_raises_even_for_a_failure_it_does_not_foresee(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    state.record(make_record(1000))

    def broken(self: StateFile) -> None:
        raise RuntimeError("unforeseen")  # an Exception, not an OSError

    monkeypatch.setattr(StateFile, "_read", broken)
    loaded = state.load()
    assert loaded.damaged
    assert "RuntimeError: unforeseen" in loaded.warnings[0]


# -- the manager's records -------------------------------------------------------------------


def mapping(port: int) -> PortMapping:
    return PortMapping(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.10"), Protocol.TCP,
                       port, port, IPv4Address("203.0.113.7"), 3600, 100.0, "natpmp", 0)


def test_a_write_that_fails_with_other_than_oserror_is_the_records_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # It escaped Records._write (which caught only OSError) into MappingManager.add(),
    # which then raised while the manager and the gateway both held the mapping, and
    # records.error stayed None.
    state = Unserialisable(tmp_path)
    state.broken = True
    kept = Records(state)
    kept.record(mapping(1))  # (no event loop: written at once) must not raise
    assert kept.error == "TypeError: Object of type bytes is not JSON serializable"
    assert kept.pending == 1  # kept for the next try
    assert "not JSON serializable" in caplog.text
    kept.flush()  # tried again: fails again, still not raised
    assert kept.pending == 1
    state.broken = False
    kept.flush()
    assert (kept.pending, kept.error) == (0, None)
    assert [r.internal_port for r in state.load().records] == [1]


def test_close_does_not_raise_when_its_write_fails(tmp_path: Path) -> None:
    state = Unserialisable(tmp_path)
    kept = Records(state)
    kept.record(mapping(1))
    state.broken = True
    kept.drop(mapping(1))
    kept.close()
    assert kept.error is not None
    assert kept.pending == 1
    assert [r.internal_port for r in state.load().records] == [1]


def test_a_record_beyond_a_float_in_the_file_costs_no_write_of_the_manager(
        tmp_path: Path) -> None:
    # The reviewer's case: the manager's first write read a record with created 10**400.
    state = StateFile(tmp_path)
    write_raw(state, with_bad_record("created", "1" + "0" * 400))
    kept = Records(state)
    kept.record(mapping(1))
    assert (kept.pending, kept.error) == (0, None)
    assert sorted(r.internal_port for r in state.load().records) == [1, 1000]


# -- an invalid record is carried through every rewrite, not erased ----------------------------


def three_with_bad_middle(state: StateFile, **bad: object) -> dict[str, object]:
    """Records 8080, 8081 and 8082, 8081 made invalid with ``bad``; returns its entry."""
    entries = [make_record(port).to_json() for port in (8080, 8081, 8082)]
    entries[1] = {**entries[1], **bad}
    write_raw(state, json.dumps({"version": FORMAT_VERSION, "mappings": entries}))
    return entries[1]


def file_entries(state: StateFile) -> list[object]:
    mappings = json.loads(state.path.read_text())["mappings"]
    assert isinstance(mappings, list)
    return mappings


@pytest.mark.parametrize("write", ["record", "apply", "batch", "remove", "remove_all",
                                   "manager"])
def test_an_invalid_record_survives_every_kind_of_write_unchanged(
        tmp_path: Path, write: str) -> None:
    # The reviewer's case: one record's epoch set to -1, then `natdeck map tcp 8083`: the
    # rewrite dropped the record (nonce included), with no .bad-* copy, so `natdeck unmap
    # tcp 8081` could never delete the mapping the gateway still held.
    state = StateFile(tmp_path)
    bad = three_with_bad_middle(state, epoch=-1)
    if write == "record":
        state.record(make_record(8083))
    elif write == "apply":
        state.apply({make_record(8083).key: make_record(8083), make_record(8080).key: None})
    elif write == "batch":
        batch = StateBatch(state)
        batch.record(make_record(8083))
        batch.flush()
    elif write == "remove":
        state.remove("192.0.2.1", 5351, 6, 8080)
    elif write == "remove_all":
        state.remove_all("192.0.2.1", 5351, 6)
    else:
        kept = Records(state)
        kept.record(mapping(1))
        assert (kept.pending, kept.error) == (0, None)
    assert bad in file_entries(state)  # as it was, nonce and all
    assert not list(tmp_path.glob("mappings.json.bad-*"))
    loaded = state.load()
    assert loaded.unparsed == [bad]
    assert any("epoch is -1" in w for w in loaded.warnings), loaded.warnings
    # Never a record: no lookup or listing sees it.
    assert 8081 not in {r.internal_port for r in loaded.records}
    assert state.find("192.0.2.1", 5351, 6, 8081)[0] is None


def test_an_invalid_record_repaired_by_hand_is_usable_again_with_its_nonce(
        tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    three_with_bad_middle(state, epoch=-1)
    state.record(make_record(8083))
    state.record(make_record(8084))
    document = json.loads(state.path.read_text())
    for entry in document["mappings"]:
        if entry["epoch"] == -1:
            entry["epoch"] = 42
    state.path.write_text(json.dumps(document))
    loaded = state.load()
    assert (loaded.unparsed, loaded.warnings) == ([], [])
    assert sorted(r.internal_port for r in loaded.records) == [8080, 8081, 8082, 8083, 8084]
    found = loaded.find("192.0.2.1", 5351, 6, 8081)
    assert found is not None
    assert found.nonce == make_record(8081).nonce


def test_entries_that_are_not_objects_are_carried_through_too(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    good = make_record(1000).to_json()
    write_raw(state, json.dumps({"version": FORMAT_VERSION,
                                 "mappings": ["x", good, 5, None, [1, 2]]}))
    state.record(make_record(2000))
    loaded = state.load()
    assert sorted(r.internal_port for r in loaded.records) == [1000, 2000]
    assert loaded.unparsed == ["x", 5, None, [1, 2]]
    assert len(loaded.warnings) == 4


def test_legitimate_pruning_still_happens_beside_a_carried_entry(tmp_path: Path) -> None:
    now = 2_000_000.0
    state = StateFile(tmp_path, clock=lambda: now)
    gone = make_record(1000, updated=now - 3 * 86400, lifetime=60).to_json()
    bad = {**make_record(2000, updated=now).to_json(), "epoch": -1}
    live = make_record(3000, updated=now).to_json()
    write_raw(state, json.dumps({"version": FORMAT_VERSION, "mappings": [gone, bad, live]}))
    state.record(make_record(4000, updated=now))  # the long-expired 1000 is pruned
    state.remove("192.0.2.1", 5351, 6, 3000)  # a deleted record goes
    loaded = state.load()
    assert [r.internal_port for r in loaded.records] == [4000]
    assert loaded.unparsed == [bad]
    assert file_entries(state) == [make_record(4000, updated=now).to_json(), bad]


@pytest.mark.parametrize(("bad", "pruned"), [
    # Plainly long expired by its own times: pruned as a record would be.
    ({"epoch": -1}, True),
    ({"via": "future-protocol"}, True),
    ({"updated": 1000, "lifetime": 60, "nonce": "zz"}, True),
    # Anything this natdeck cannot judge keeps it.
    ({"epoch": -1, "permanent": True}, False),
    ({"epoch": -1, "permanent": "until-reboot"}, False),
    ({"updated": "yesterday"}, False),
    ({"lifetime": None}, False),
    ({"lifetime": True}, False),
    ({"lifetime": -5}, False),
    ({"updated": 10**400}, False),
])
def test_a_carried_entry_is_pruned_only_when_plainly_long_expired(
        tmp_path: Path, bad: dict[str, object], pruned: bool) -> None:
    now = 2_000_000.0
    state = StateFile(tmp_path, clock=lambda: now)
    entry = {**make_record(2000, updated=now - 3 * 86400, lifetime=60).to_json(), **bad}
    write_raw(state, json.dumps({"version": FORMAT_VERSION, "mappings": [entry]}))
    assert len(state.load().unparsed) == 1
    state.record(make_record(4000, updated=now))
    assert state.load().unparsed == ([] if pruned else [entry])


def test_a_recent_invalid_entry_is_not_pruned(tmp_path: Path) -> None:
    now = 2_000_000.0
    state = StateFile(tmp_path, clock=lambda: now)
    # Expired an hour ago: within the grace, as a record would be kept.
    entry = {**make_record(2000, updated=now - 3600 - 60, lifetime=60).to_json(), "epoch": -1}
    write_raw(state, json.dumps({"version": FORMAT_VERSION, "mappings": [entry]}))
    state.record(make_record(4000, updated=now))
    assert state.load().unparsed == [entry]
