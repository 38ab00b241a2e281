"""engine.statefile: where it lives, atomic private writes, locking, damaged files."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import sys
import threading
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import pytest

from engine.client import PortMapping
from engine.protocols import Protocol
from engine.statefile import (
    FORMAT_VERSION,
    STATE_DIR_ENV,
    MappingRecord,
    StateFile,
    default_state_dir,
)
from tests.support.records import NONCE, make_record


def write_raw(state: StateFile, content: str | bytes) -> None:
    state.directory.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    state.path.write_bytes(data)


# -- where ---------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform in ("darwin", "win32"), reason="XDG layout is for Linux & co")
class TestDefaultStateDir:
    def test_env_override_wins(self, tmp_path: Path) -> None:
        env = {STATE_DIR_ENV: str(tmp_path / "s"), "XDG_STATE_HOME": "/x", "HOME": "/h"}
        assert default_state_dir(env) == tmp_path / "s"

    def test_xdg_state_home(self) -> None:
        assert default_state_dir({"XDG_STATE_HOME": "/x/state", "HOME": "/h"}) == Path(
            "/x/state/natdeck")

    def test_relative_xdg_is_ignored(self) -> None:
        # XDG base directory spec: relative paths are invalid and must be ignored.
        assert default_state_dir({"XDG_STATE_HOME": "rel", "HOME": "/h"}) == Path(
            "/h/.local/state/natdeck")

    def test_home_fallback(self) -> None:
        assert default_state_dir({"HOME": "/h"}) == Path("/h/.local/state/natdeck")

    def test_state_file_defaults_to_env(self, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "envdir"))
        assert StateFile().path == tmp_path / "envdir" / "mappings.json"


# -- round trips ---------------------------------------------------------------------------


def test_record_find_remove(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "state")
    assert state.load().records == []
    assert state.record(make_record(8080)) == []
    assert state.record(make_record(9090, via="natpmp")) == []
    found, warnings = state.find("192.0.2.1", 5351, 6, 8080)
    assert warnings == []
    assert found is not None
    assert found.nonce == NONCE
    assert found.via == "pcp"
    other, _ = state.find("192.0.2.1", 5351, 6, 9090)
    assert other is not None
    assert other.nonce is None
    # The key includes gateway and gateway port: same protocol/port elsewhere is another record.
    assert state.find("192.0.2.2", 5351, 6, 8080)[0] is None
    assert state.find("192.0.2.1", 5352, 6, 8080)[0] is None
    removed, _ = state.remove("192.0.2.1", 5351, 6, 8080)
    assert removed == found
    assert state.find("192.0.2.1", 5351, 6, 8080)[0] is None
    assert [r.internal_port for r in state.load().records] == [9090]


def test_record_replaces_and_keeps_created(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    first = make_record(updated=1_000_000.0 + time.time())
    state.record(first)
    later = replace(first, created=first.created + 500, updated=first.updated + 500, epoch=99)
    state.record(later)
    records = state.load().records
    assert len(records) == 1
    assert records[0].epoch == 99
    assert records[0].created == first.created
    assert records[0].updated == later.updated


def test_json_round_trip_ipv6_and_no_external_address(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    record = replace(make_record(), gateway=IPv6Address("2001:db8::1"),
                     local_address=IPv6Address("2001:db8::10"), external_address=None, pid=1234)
    state.record(record)
    assert state.load().records == [record]


def test_remove_all_only_that_protocol_and_via(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    state.record(make_record(1000, via="natpmp"))
    state.record(make_record(1001, via="natpmp"))
    state.record(make_record(1002, via="pcp"))
    state.record(replace(make_record(1003, via="natpmp"), protocol=17))
    removed, _ = state.remove_all("192.0.2.1", 5351, 6, via="natpmp")
    assert sorted(r.internal_port for r in removed) == [1000, 1001]
    assert sorted(r.internal_port for r in state.load().records) == [1002, 1003]


def test_mapping_round_trip() -> None:
    mapping = PortMapping(
        gateway=IPv4Address("192.0.2.1"), local_address=IPv4Address("192.0.2.10"),
        protocol=Protocol.UDP, internal_port=5000, external_port=6000,
        external_address=IPv4Address("203.0.113.7"), lifetime=3600, expires_at=123.0,
        via="pcp", epoch=7, nonce=NONCE, requested_lifetime=7200, gateway_port=40000)
    record = MappingRecord.from_mapping(mapping, now=1000.0, pid=77)
    assert (record.protocol, record.internal_port, record.external_port) == (17, 5000, 6000)
    assert (record.created, record.updated, record.pid) == (1000.0, 1000.0, 77)
    back = record.to_mapping()
    assert back.nonce == NONCE
    assert back.via == "pcp"
    assert back.gateway_port == 40000
    assert (back.protocol, back.internal_port, back.external_port) == (Protocol.UDP, 5000, 6000)
    assert back.requested_lifetime == 7200
    # NAT-PMP has no nonce, whatever the mapping object carries.
    natpmp = replace(mapping, via="natpmp")
    assert MappingRecord.from_mapping(natpmp).nonce is None


# -- privacy and atomicity -----------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "natdeck"
    state = StateFile(directory)
    state.record(make_record())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.lock_path.stat().st_mode) == 0o600


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_existing_open_directory_is_tightened(tmp_path: Path) -> None:
    directory = tmp_path / "open"
    directory.mkdir()
    directory.chmod(0o755)
    StateFile(directory).record(make_record())
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700


def test_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = StateFile(tmp_path)
    state.record(make_record(1000))
    before = state.path.read_bytes()

    def broken_replace(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("engine.statefile.os.replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        state.record(make_record(2000))
    monkeypatch.undo()
    assert state.path.read_bytes() == before
    # No temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mappings.json", "mappings.lock"]


def test_written_file_is_versioned_json(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    state.record(make_record())
    document = json.loads(state.path.read_text())
    assert document["version"] == FORMAT_VERSION
    assert document["mappings"][0]["nonce"] == NONCE.hex()
    assert document["mappings"][0]["gateway"] == "192.0.2.1"


def test_expired_records_are_pruned_on_write(tmp_path: Path) -> None:
    now = 2_000_000.0
    state = StateFile(tmp_path, clock=lambda: now)
    state.record(make_record(1000, updated=now - 3 * 86400, lifetime=60))  # long gone
    state.record(make_record(1001, updated=now - 60, lifetime=30))  # just expired: kept
    state.record(make_record(1002, updated=now))
    ports = sorted(r.internal_port for r in state.load().records)
    assert ports == [1001, 1002]


# -- damaged files ---------------------------------------------------------------------------


def test_missing_file_is_empty_without_warning(tmp_path: Path) -> None:
    state = StateFile(tmp_path / "never-created")
    loaded = state.load()
    assert (loaded.records, loaded.warnings, loaded.damaged) == ([], [], False)
    assert state.find("192.0.2.1", 5351, 6, 80) == (None, [])
    assert not (tmp_path / "never-created").exists()  # reading creates nothing


@pytest.mark.parametrize(("content", "expected"), [
    ("{not json", "not valid JSON"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    (json.dumps({"version": 99, "mappings": []}), "format version 99"),
    (json.dumps({"mappings": []}), "format version None"),
    (json.dumps({"version": FORMAT_VERSION, "mappings": {}}), "'mappings' is not a list"),
])
def test_damaged_file_is_reported_and_ignored(tmp_path: Path, content: str | bytes,
                                              expected: str,
                                              caplog: pytest.LogCaptureFixture) -> None:
    state = StateFile(tmp_path)
    write_raw(state, content)
    loaded = state.load()
    assert loaded.records == []
    assert loaded.damaged
    assert len(loaded.warnings) == 1
    assert expected in loaded.warnings[0]
    assert expected in caplog.text  # also logged
    # Writing still works: the damaged file is moved aside, not destroyed.
    warnings = state.record(make_record())
    assert warnings
    assert expected in warnings[0]
    assert [r.internal_port for r in state.load().records] == [8080]
    aside = list(tmp_path.glob("mappings.json.bad-*"))
    assert len(aside) == 1
    raw = content.encode() if isinstance(content, str) else content
    assert aside[0].read_bytes() == raw


def test_oversized_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("engine.statefile._MAX_FILE_SIZE", 4096)
    state = StateFile(tmp_path)
    write_raw(state, " " * (4096 + 10))
    loaded = state.load()
    assert loaded.damaged
    assert "larger than" in loaded.warnings[0]


@pytest.mark.parametrize(("change", "expected"), [
    ({"nonce": "zz" * 12}, "not hexadecimal"),
    ({"nonce": "00" * 11}, "11 bytes"),
    ({"nonce": None}, "without a nonce"),
    ({"nonce": 5}, "not a string"),
    ({"via": "igd"}, "via is 'igd'"),
    ({"permanent": 1}, "permanent is 1"),
    ({"internal_port": 70000}, "internal_port"),
    ({"internal_port": True}, "internal_port"),
    ({"protocol": -1}, "protocol"),
    ({"gateway": "not-an-address"}, "not an IP address"),
    ({"gateway": None}, "not an address"),
    ({"created": "yesterday"}, "created"),
    ({"pid": 0}, "pid"),
])
def test_invalid_record_is_dropped_others_kept(tmp_path: Path, change: dict[str, object],
                                               expected: str) -> None:
    state = StateFile(tmp_path)
    good = make_record(1000).to_json()
    bad = {**make_record(2000).to_json(), **change}
    write_raw(state, json.dumps({"version": FORMAT_VERSION, "mappings": [bad, good, "x"]}))
    loaded = state.load()
    assert [r.internal_port for r in loaded.records] == [1000]
    assert not loaded.damaged
    assert any(expected in w for w in loaded.warnings), loaded.warnings
    assert any("not a JSON object" in w for w in loaded.warnings)


# -- locking ---------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl.flock")
def test_writer_waits_for_the_lock(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    state.record(make_record(1))
    done = threading.Event()

    def write() -> None:
        StateFile(tmp_path).record(make_record(2))
        done.set()

    with state.lock_path.open("r+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # as another natdeck process would
        thread = threading.Thread(target=write)
        thread.start()
        assert not done.wait(0.3), "the write did not wait for the lock"
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    thread.join(5)
    assert done.is_set()
    assert {r.internal_port for r in state.load().records} == {1, 2}
