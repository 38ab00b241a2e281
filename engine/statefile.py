"""What ``natdeck map`` leaves behind for ``natdeck unmap``: the mappings state file.

A PCP mapping is owned by its nonce: every renewal and the delete must carry the
nonce that created it (RFC 6887 §11.1, §11.3: a request for an existing mapping
with another nonce is refused with NOT_AUTHORIZED, and current miniupnpd applies
that to deletes too). ``natdeck map`` and ``natdeck unmap`` are separate
processes, so the nonce, and what else is needed to renew or delete the mapping
(gateway, local address, protocol, ports, via...), is kept in a small JSON file
under the user's state directory:

- ``$NATDECK_STATE_DIR/mappings.json`` when that variable is set (tests, several
  profiles); else ``$XDG_STATE_HOME/natdeck/mappings.json`` or
  ``~/.local/state/natdeck/mappings.json`` (the XDG base directory spec), and on
  macOS ``~/Library/Application Support/natdeck``, on Windows
  ``%LOCALAPPDATA%\\natdeck``.
- Written atomically: a temporary file in the same directory, ``fsync``-ed, then
  ``os.replace``-d over the old one (and the directory fsync-ed), so a crash leaves
  the old file or the new one, never half of one. The file is rewritten whole, so
  many changes go in one write where they can (:meth:`StateFile.apply`,
  :class:`StateBatch`: the manager batches its records).
- Readable by the user only: the file is 0600 and its directory 0700; the nonce
  is what stops another local user from deleting or stealing the mapping.
- Read-modify-write happens under an exclusive ``fcntl.flock`` on a separate
  lock file (the data file's inode changes with every replace, so it cannot
  carry the lock), so two natdeck processes never lose each other's records.
- It carries a format version. A file that is missing, unreadable, corrupt or of
  another version is reported (a logged warning, and a warning string returned
  to the caller for the CLI to print) and treated as empty: never fatal. Before
  such a file is overwritten it is moved aside (``mappings.json.bad-<time>``), so
  nothing a newer natdeck wrote is silently destroyed.

The file is our own output but is still read as untrusted input: every record is
validated. An entry that is not a valid record (hand-edited, damaged, or written by a
newer natdeck) is reported with a warning and is not a record: no lookup, listing or
count sees it. But it is not dropped either: every rewrite carries it through unchanged
(after the records), so its nonce can still be recovered by hand, until it is plainly
long expired by its own ``updated`` and ``lifetime`` (see :func:`_long_expired`).

The record itself (:class:`MappingRecord`, re-exported here) lives in
:mod:`engine.mapping_record`. Importing this module costs no event loop: the client (and
with it asyncio, which pulls ``ssl``) is imported only by
:meth:`MappingRecord.to_mapping`, and the wire layer only to check a nonce's size, so
reading and writing records stays cheap.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from .mapping_record import MappingRecord, Via, read_time, record_key
from .wire.addresses import IPAddress, to_address

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - natdeck's target platforms have flock
    fcntl = None

__all__ = [
    "FORMAT_VERSION",
    "STATE_DIR_ENV",
    "STATE_FILE_NAME",
    "MappingRecord",
    "RecordKey",
    "StateBatch",
    "StateFile",
    "StateLoad",
    "Via",
    "default_state_dir",
    "record_key",
]

log = logging.getLogger("engine.statefile")

#: What names a record: (gateway, gateway port, protocol, internal port); see
#: :func:`~engine.mapping_record.record_key`.
RecordKey = tuple[str, int, int, int]

#: The ``version`` field of the file; another value is reported and ignored.
FORMAT_VERSION = 1
#: Environment variable naming the state directory (wins over the platform default).
STATE_DIR_ENV = "NATDECK_STATE_DIR"
STATE_FILE_NAME = "mappings.json"
_LOCK_FILE_NAME = "mappings.lock"
#: Records whose mapping expired more than this many seconds ago are dropped on the next
#: write: the gateway has forgotten the mapping (RFC 6887 §15, RFC 6886 §3.3), and with
#: it any use for the nonce. The grace covers clock steps and a late ``unmap``.
_EXPIRED_GRACE = 24 * 3600
#: A state file bigger than this is not ours to parse. A record is ~0.45 KB: 10,000
#: mappings (a manager can hold them) take ~4.5 MB, which the old 4 MiB bound moved aside
#: as "unusable", losing every record; this one holds ~140,000.
_MAX_FILE_SIZE = 64 * 1024 * 1024



def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The directory natdeck keeps its state in (see the module docstring).

    ``environ`` defaults to :data:`os.environ`; tests pass their own.
    """
    env = os.environ if environ is None else environ
    override = env.get(STATE_DIR_ENV)
    if override:
        return Path(override).expanduser()
    if sys.platform == "darwin":
        return Path(env.get("HOME") or Path.home()) / "Library" / "Application Support" / "natdeck"
    if sys.platform == "win32":  # pragma: no cover
        base = env.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "natdeck"
    xdg = env.get("XDG_STATE_HOME")
    # The XDG spec: a relative XDG_STATE_HOME is invalid and must be ignored.
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "natdeck"
    home = env.get("HOME")
    return (Path(home) if home else Path.home()) / ".local" / "state" / "natdeck"


@dataclass(slots=True)
class StateLoad:
    """What reading the state file gave: the valid records, and warnings for the user."""

    records: list[MappingRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: bool = False
    """The file exists but could not be used as a whole (corrupt, other version)."""
    unparsed: list[object] = field(default_factory=list)
    """The entries of ``mappings`` that are not valid records, as read (JSON values).

    Not records, never a mapping: only there for a rewrite to carry them through."""

    def find(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
             internal_port: int) -> MappingRecord | None:
        """The record for that mapping, if any."""
        key = record_key(gateway, gateway_port, protocol, internal_port)
        return next((r for r in self.records if r.key == key), None)


class StateFile:
    """The mappings state file in ``directory`` (default: :func:`default_state_dir`).

    Every method returns the warnings it met, for the caller to show; none raises
    for a missing or damaged file. Writes may raise :class:`OSError` (a disk that
    is full or read-only); callers that can carry on without the record should
    catch it.
    """

    def __init__(self, directory: str | os.PathLike[str] | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.directory = Path(directory) if directory is not None else default_state_dir()
        self.path = self.directory / STATE_FILE_NAME
        self.lock_path = self.directory / _LOCK_FILE_NAME
        self._clock = clock

    # -- reading -----------------------------------------------------------------------

    def load(self) -> StateLoad:
        """Read every valid record, under a shared lock. Never raises."""
        if not self.path.exists():
            return StateLoad()
        try:
            with self._locked(exclusive=False, create=False):
                return self._read()
        except OSError as exc:
            return self._warned(StateLoad(damaged=True),
                                f"cannot read the state file {self.path}: {exc}")
        except Exception as exc:  # a file _read does not foresee: still never fatal (a bug)
            log.debug("reading %s failed", self.path, exc_info=True)
            return self._warned(StateLoad(damaged=True),
                                f"cannot read the state file {self.path}: "
                                f"{type(exc).__name__}: {exc}")

    def find(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
             internal_port: int) -> tuple[MappingRecord | None, list[str]]:
        """The record for (gateway, gateway port, protocol, internal port), and warnings."""
        loaded = self.load()
        return loaded.find(gateway, gateway_port, protocol, internal_port), loaded.warnings

    # -- writing -----------------------------------------------------------------------

    def record(self, record: MappingRecord) -> list[str]:
        """Add ``record``, or replace the one with its key (keeping its ``created``)."""
        return self.apply({record.key: record})

    def apply(self, changes: Mapping[RecordKey, MappingRecord | None]) -> list[str]:
        """Make many changes in one read-modify-write (one lock, one atomic replace): each
        key's record is added or replaced (keeping its ``created``), or removed (None).

        What :class:`StateBatch` writes: the file is rewritten whole, so n changes one by
        one cost n rewrites of every record, and batched, one.
        """

        def change(records: list[MappingRecord]) -> list[MappingRecord]:
            if not changes:
                return records
            created = {r.key: r.created for r in records}
            kept = [r for r in records if r.key not in changes]
            for key, record in changes.items():
                if record is not None:
                    old = created.get(key)
                    kept.append(record if old is None else replace(record, created=old))
            return kept

        return self._update(change)

    def remove(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
               internal_port: int) -> tuple[MappingRecord | None, list[str]]:
        """Remove the record with that key; returns it (or ``None``) and warnings."""
        key = record_key(gateway, gateway_port, protocol, internal_port)
        removed: list[MappingRecord] = []

        def change(records: list[MappingRecord]) -> list[MappingRecord]:
            removed.extend(r for r in records if r.key == key)
            return [r for r in records if r.key != key]

        warnings = self._update(change)
        return (removed[0] if removed else None), warnings

    def remove_all(self, gateway: str | IPAddress, gateway_port: int,
                   protocol: int, *, via: Via | None = None) -> tuple[list[MappingRecord],
                                                                       list[str]]:
        """Remove every record of ``protocol`` at the gateway (after a delete-all)."""
        where = str(to_address(gateway))
        removed: list[MappingRecord] = []

        def matches(r: MappingRecord) -> bool:
            return (str(r.gateway) == where and r.gateway_port == gateway_port
                    and r.protocol == protocol and (via is None or r.via == via))

        def change(records: list[MappingRecord]) -> list[MappingRecord]:
            removed.extend(r for r in records if matches(r))
            return [r for r in records if not matches(r)]

        warnings = self._update(change)
        return removed, warnings

    # -- the machinery -------------------------------------------------------------------

    def _warned(self, loaded: StateLoad, message: str) -> StateLoad:
        log.warning("%s", message)
        loaded.warnings.append(message)
        return loaded

    def _read(self) -> StateLoad:
        loaded = StateLoad()
        try:
            with self.path.open("rb") as handle:
                raw = handle.read(_MAX_FILE_SIZE + 1)
        except FileNotFoundError:
            return loaded
        if len(raw) > _MAX_FILE_SIZE:
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: it is larger "
                                        f"than {_MAX_FILE_SIZE} bytes")
        try:
            document = json.loads(raw.decode("utf-8"))
        # ValueError: also an integer of more than sys.get_int_max_str_digits() digits;
        # RecursionError: arrays or objects nested too deep ("[" * 200000).
        except (ValueError, RecursionError) as exc:
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: it is not "
                                        f"valid JSON ({exc}); stored nonces are lost, so a "
                                        "PCP mapping may need to expire on its own")
        if not isinstance(document, dict):
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: "
                                        "not a JSON object")
        version = document.get("version")
        # `type is int`: true and 1.0 are equal to 1 in Python, and are not version 1.
        if type(version) is not int or version != FORMAT_VERSION:
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: format version "
                                        f"{version!r}, this natdeck reads {FORMAT_VERSION}")
        entries = document.get("mappings")
        if not isinstance(entries, list):
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: "
                                        "'mappings' is not a list")
        seen: set[RecordKey] = set()
        for index, entry in enumerate(entries):
            try:
                record = MappingRecord.from_json(entry)
            except ValueError as exc:
                self._warned(loaded, f"ignoring record {index} of the state file "
                                     f"{self.path}: {exc} (kept in the file as it is)")
                loaded.unparsed.append(entry)
                continue
            if record.key in seen:
                continue
            seen.add(record.key)
            loaded.records.append(record)
        return loaded

    def _update(self, change: Callable[[list[MappingRecord]], list[MappingRecord]]
                ) -> list[str]:
        """Read, ``change(records) -> records``, write back: all under the exclusive lock."""
        self._ensure_directory()
        with self._locked(exclusive=True, create=True):
            loaded = self._read()
            if loaded.damaged and self.path.exists():
                self._move_aside()
            now = self._clock()
            current = [r for r in loaded.records if r.expires() + _EXPIRED_GRACE >= now]
            # Entries that are not records are carried through unchanged (nothing a newer
            # natdeck or a hand wrote is lost), unless they are plainly long gone.
            carried = [e for e in loaded.unparsed if not _long_expired(e, now)]
            self._write(change(current), carried)
            return loaded.warnings

    def _move_aside(self) -> None:
        aside = self.path.with_name(f"{STATE_FILE_NAME}.bad-{int(self._clock())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:  # pragma: no cover - the write below will then replace it
            log.warning("could not move the damaged state file aside: %s", exc)
            return
        log.warning("moved the unusable state file to %s", aside)

    def _ensure_directory(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = self.directory.stat()
        # Tighten a directory we own that others can read: the nonces are what let
        # us (and only us) delete our mappings.
        if hasattr(os, "getuid") and info.st_uid == os.getuid() \
                and stat.S_IMODE(info.st_mode) & 0o077:
            try:
                self.directory.chmod(0o700)
            except OSError as exc:  # pragma: no cover
                log.warning("could not make %s private: %s", self.directory, exc)

    def _write(self, records: list[MappingRecord], carried: list[object]) -> None:
        document = {"version": FORMAT_VERSION,
                    "mappings": [r.to_json() for r in records] + carried}
        payload = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
        fd, temp = _create_temporary(self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        _fsync_directory(self.directory)

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool, create: bool) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        try:
            fd = os.open(self.lock_path, flags, 0o600)
        except FileNotFoundError:
            if create:
                raise
            # Nobody ever wrote here with this natdeck: read without a lock.
            yield
            return
        except PermissionError:
            if create:
                raise
            yield
            return
        handle: IO[bytes] = os.fdopen(fd, "r+b")
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class StateBatch:
    """Changes to a :class:`StateFile` held until :meth:`flush` writes them all at once.

    The last change to a mapping wins (a record then a removal is a removal). Pure: when
    to flush is the caller's (the manager: within ``engine.manager.records.FLUSH_DELAY``
    of a change, on demand, and on close). A failed write keeps the changes that were
    not superseded meanwhile, for the next flush.
    """

    def __init__(self, state_file: StateFile) -> None:
        self.state_file = state_file
        self._pending: dict[RecordKey, MappingRecord | None] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def record(self, record: MappingRecord) -> None:
        """Add or replace ``record`` at the next flush."""
        self._pending[record.key] = record

    def remove(self, key: RecordKey) -> None:
        """Remove the record with ``key`` (see :func:`record_key`) at the next flush."""
        self._pending[key] = None

    def flush(self) -> list[str]:
        """Write every pending change in one read-modify-write; the warnings met.

        Raises :class:`OSError` as :meth:`StateFile.apply` does; the changes stay pending.
        """
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        try:
            return self.state_file.apply(pending)
        except BaseException:
            for key, record in pending.items():
                self._pending.setdefault(key, record)  # (a newer change wins)
            raise


def _long_expired(entry: object, now: float) -> bool:
    """Whether an entry that is not a valid record is still plainly a mapping that expired
    more than :data:`_EXPIRED_GRACE` ago, so pruned as a record would be.

    Only when its own ``updated`` and ``lifetime`` read as times (:func:`~engine.
    mapping_record.read_time`: finite, non-negative numbers) and ``permanent`` is absent or
    false: anything else (a field this natdeck does not understand) keeps the entry.
    """
    if not isinstance(entry, dict) or entry.get("permanent", False) is not False:
        return False
    try:
        updated, lifetime = read_time(entry, "updated"), read_time(entry, "lifetime")
    except ValueError:
        return False
    return updated + lifetime + _EXPIRED_GRACE < now


def _create_temporary(directory: Path) -> tuple[int, Path]:
    """A new file for writing, 0600 and created exclusively (``O_EXCL``), in ``directory``.

    In the same directory as the state file, so that ``os.replace`` is a rename within one
    file system (atomic, POSIX rename(2)). What ``tempfile.mkstemp`` does, without importing
    ``tempfile`` (with ``shutil``, ``bz2`` and ``lzma``) into every ``natdeck map``.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) \
        | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = directory / f".mappings-{os.urandom(6).hex()}.tmp"
        try:
            return os.open(path, flags, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {directory}")  # pragma: no cover


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX: fsync the directory)."""
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

