"""engine.manager.records: what the manager writes to the state file (pure: a temporary
directory, no socket, no event loop)."""

from __future__ import annotations

import math
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from engine.client import PortMapping
from engine.manager.records import REFRESH_AFTER, Records
from engine.protocols import Protocol
from engine.statefile import StateFile
from tests.support.records import FullDisk

GATEWAY = IPv4Address("192.0.2.1")


def upnp_mapping(*, permanent: bool) -> PortMapping:
    return PortMapping(GATEWAY, IPv4Address("192.0.2.10"), Protocol.TCP, 8080, 8080,
                       IPv4Address("203.0.113.7"), 0 if permanent else 3600,
                       math.inf if permanent else 100.0, "upnp", 0, permanent=permanent)


def test_a_record_names_its_holder_and_a_permanent_lease(tmp_path: Path) -> None:
    state = StateFile(tmp_path)
    Records(state, pid=4242).record(upnp_mapping(permanent=True))
    record, _ = state.find(GATEWAY, 5351, 6, 8080)
    assert record is not None
    assert (record.via, record.external_port, record.nonce) == ("upnp", 8080, None)
    assert (record.pid, record.permanent) == (4242, True)
    assert record.expires() == math.inf


def test_a_record_is_stale_only_an_hour_after_it_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kept = Records(StateFile(tmp_path))
    mapping = upnp_mapping(permanent=False)
    assert not kept.stale(mapping)   # never written: the first grant writes it anyway
    now = 1_000_000.0
    monkeypatch.setattr("engine.manager.records.time.time", lambda: now)
    kept.record(mapping)
    assert not kept.stale(mapping)
    now += REFRESH_AFTER + 1
    assert kept.stale(mapping)
    kept.drop(mapping)
    assert not kept.stale(mapping)
    assert StateFile(tmp_path).load().records == []


def test_without_a_state_file_nothing_is_written(tmp_path: Path) -> None:
    none = Records(None)
    none.record(upnp_mapping(permanent=False))
    assert not none.stale(upnp_mapping(permanent=False))
    assert list(tmp_path.iterdir()) == []


def test_a_record_counts_as_written_only_once_its_write_succeeded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before, a record counted as written when its change was queued: a rewrite that failed
    # left the hour-old record on disk, believed fresh, so the next grant did not write it
    # again until another hour had passed.
    state = FullDisk(tmp_path)
    kept = Records(state)
    mapping = upnp_mapping(permanent=False)
    now = 1_000_000.0
    monkeypatch.setattr("engine.manager.records.time.time", lambda: now)
    kept.record(mapping)  # (no event loop: written at once)
    now += REFRESH_AFTER + 1
    assert kept.stale(mapping)
    state.full = True
    kept.record(mapping)  # the refresh fails: logged, kept
    assert kept.pending == 1
    now += 1
    assert kept.stale(mapping)  # what the disk holds is still the old record
    state.full = False
    kept.flush()
    assert kept.pending == 0
    assert not kept.stale(mapping)
    [record] = StateFile(tmp_path).load().records
    assert record.updated == 1_000_000.0 + REFRESH_AFTER + 1
