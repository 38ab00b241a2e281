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
  the old file or the new one, never half of one.
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
validated, and an invalid record is dropped with a warning.

Importing this module costs no event loop: the client (and with it asyncio, which
pulls ``ssl``) is imported only by :meth:`MappingRecord.to_mapping`, and the wire
layer only to check a nonce's size, so reading and writing records stays cheap.
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
from dataclasses import asdict, dataclass, field, replace
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from .wire.addresses import IPAddress, to_address

if TYPE_CHECKING:
    from .client import PortMapping

if sys.platform != "win32":
    import fcntl
else:  # pragma: no cover - natdeck's target platforms have flock
    fcntl = None

__all__ = [
    "FORMAT_VERSION",
    "STATE_DIR_ENV",
    "STATE_FILE_NAME",
    "MappingRecord",
    "StateFile",
    "StateLoad",
    "default_state_dir",
]

log = logging.getLogger("engine.statefile")

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
#: A state file bigger than this is not ours to parse (a handful of records is a few KB).
_MAX_FILE_SIZE = 4 * 1024 * 1024

Via = Literal["pcp", "natpmp"]


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


@dataclass(frozen=True, slots=True)
class MappingRecord:
    """One mapping as the state file keeps it: enough to renew or delete it later.

    ``created`` and ``updated`` are wall-clock times (``time.time()``): unlike the
    loop's clock they mean something to another process. ``nonce`` is ``None``
    for NAT-PMP mappings, which have none. ``pid`` names the process holding the
    mapping (``natdeck map --hold``), else ``None``.
    """

    gateway: IPAddress
    gateway_port: int
    local_address: IPAddress
    protocol: int
    internal_port: int
    external_port: int
    external_address: IPAddress | None
    via: Via
    lifetime: int
    epoch: int
    nonce: bytes | None
    created: float
    updated: float
    requested_lifetime: int = 0
    pid: int | None = None

    @property
    def key(self) -> tuple[str, int, int, int]:
        """(gateway, gateway port, protocol, internal port): one record per key.

        That is what names a mapping at its gateway (RFC 6887 §11.3 also uses the
        client's address, which for one host and gateway is one address).
        """
        return _key(self.gateway, self.gateway_port, self.protocol, self.internal_port)

    def expires(self) -> float:
        """Wall-clock time the mapping runs out unless renewed."""
        return self.updated + self.lifetime

    @classmethod
    def from_mapping(cls, mapping: PortMapping, *, now: float | None = None,
                     created: float | None = None, pid: int | None = None) -> MappingRecord:
        """The record of a granted :class:`~engine.client.PortMapping`."""
        wall = time.time() if now is None else now
        return cls(
            gateway=mapping.gateway, gateway_port=mapping.gateway_port,
            local_address=mapping.local_address, protocol=int(mapping.protocol),
            internal_port=mapping.internal_port, external_port=mapping.external_port,
            external_address=mapping.external_address, via=mapping.via,
            lifetime=mapping.lifetime, epoch=mapping.epoch,
            nonce=mapping.nonce if mapping.via == "pcp" else None,
            created=wall if created is None else created, updated=wall,
            requested_lifetime=mapping.requested_lifetime, pid=pid)

    def to_mapping(self) -> PortMapping:
        """A :class:`~engine.client.PortMapping` to renew or delete with the stored nonce.

        Its loop-clock times are unknown (0.0): only its identity matters here.
        """
        from .client import PortMapping
        from .protocols import as_protocol

        return PortMapping(
            gateway=self.gateway, gateway_port=self.gateway_port,
            local_address=self.local_address, protocol=as_protocol(self.protocol),
            internal_port=self.internal_port, external_port=self.external_port,
            external_address=self.external_address, lifetime=self.lifetime,
            expires_at=0.0, via=self.via, epoch=self.epoch, nonce=self.nonce,
            requested_lifetime=self.requested_lifetime or self.lifetime,
            suggested_external_port=self.external_port)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (addresses as strings, the nonce in hex)."""
        data = asdict(self)
        data["gateway"] = str(self.gateway)
        data["local_address"] = str(self.local_address)
        data["external_address"] = (None if self.external_address is None
                                    else str(self.external_address))
        data["nonce"] = None if self.nonce is None else self.nonce.hex()
        return data

    @classmethod
    def from_json(cls, data: object) -> MappingRecord:
        """Parse and validate one record; raises :class:`ValueError` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError("a record is not a JSON object")
        via = data.get("via")
        if via not in ("pcp", "natpmp"):
            raise ValueError(f"via is {via!r}, not 'pcp' or 'natpmp'")
        from .wire.pcp import NONCE_SIZE

        nonce_text = data.get("nonce")
        nonce: bytes | None
        if nonce_text is None:
            nonce = None
        elif isinstance(nonce_text, str):
            try:
                nonce = bytes.fromhex(nonce_text)
            except ValueError:
                raise ValueError("nonce is not hexadecimal") from None
            if len(nonce) != NONCE_SIZE:
                raise ValueError(f"nonce is {len(nonce)} bytes, not {NONCE_SIZE}")
        else:
            raise ValueError("nonce is not a string")
        if via == "pcp" and nonce is None:
            raise ValueError("a PCP record without a nonce")
        pid = data.get("pid")
        if pid is not None:
            pid = _int(data, "pid", 1, 2**31 - 1)
        external = data.get("external_address")
        return cls(
            gateway=_address(data, "gateway"),
            gateway_port=_int(data, "gateway_port", 1, 0xFFFF),
            local_address=_address(data, "local_address"),
            protocol=_int(data, "protocol", 0, 255),
            internal_port=_int(data, "internal_port", 0, 0xFFFF),
            external_port=_int(data, "external_port", 0, 0xFFFF),
            external_address=None if external is None else _address(data, "external_address"),
            via=via, lifetime=_int(data, "lifetime", 0, 0xFFFFFFFF),
            epoch=_int(data, "epoch", 0, 0xFFFFFFFF), nonce=nonce,
            created=_float(data, "created"), updated=_float(data, "updated"),
            requested_lifetime=_int(data, "requested_lifetime", 0, 0xFFFFFFFF, default=0),
            pid=pid)


def _key(gateway: str | IPAddress, gateway_port: int, protocol: int,
         internal_port: int) -> tuple[str, int, int, int]:
    return (str(to_address(gateway)), gateway_port, int(protocol), internal_port)


def _int(data: dict[str, Any], name: str, low: int, high: int,
         default: int | None = None) -> int:
    value = data.get(name, default)
    # bool is an int subclass; true/false in the file is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} is {value!r}, not an integer {low}-{high}")
    return value


def _float(data: dict[str, Any], name: str) -> float:
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value \
            or value < 0:
        raise ValueError(f"{name} is {value!r}, not a time")
    return float(value)


def _address(data: dict[str, Any], name: str) -> IPAddress:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} is {value!r}, not an address")
    try:
        address = to_address(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not an IP address") from None
    assert isinstance(address, IPv4Address | IPv6Address)
    return address


@dataclass(slots=True)
class StateLoad:
    """What reading the state file gave: the valid records, and warnings for the user."""

    records: list[MappingRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    damaged: bool = False
    """The file exists but could not be used as a whole (corrupt, other version)."""

    def find(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
             internal_port: int) -> MappingRecord | None:
        """The record for that mapping, if any."""
        key = _key(gateway, gateway_port, protocol, internal_port)
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

    def find(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
             internal_port: int) -> tuple[MappingRecord | None, list[str]]:
        """The record for (gateway, gateway port, protocol, internal port), and warnings."""
        loaded = self.load()
        return loaded.find(gateway, gateway_port, protocol, internal_port), loaded.warnings

    # -- writing -----------------------------------------------------------------------

    def record(self, record: MappingRecord) -> list[str]:
        """Add ``record``, or replace the one with its key (keeping its ``created``)."""

        def change(records: list[MappingRecord]) -> list[MappingRecord]:
            kept = [r for r in records if r.key != record.key]
            old = next((r for r in records if r.key == record.key), None)
            new = record if old is None else replace(record, created=old.created)
            return [*kept, new]

        return self._update(change)

    def remove(self, gateway: str | IPAddress, gateway_port: int, protocol: int,
               internal_port: int) -> tuple[MappingRecord | None, list[str]]:
        """Remove the record with that key; returns it (or ``None``) and warnings."""
        key = _key(gateway, gateway_port, protocol, internal_port)
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
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: it is not "
                                        f"valid JSON ({exc}); stored nonces are lost, so a "
                                        "PCP mapping may need to expire on its own")
        if not isinstance(document, dict):
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: "
                                        "not a JSON object")
        version = document.get("version")
        if version != FORMAT_VERSION:
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: format version "
                                        f"{version!r}, this natdeck reads {FORMAT_VERSION}")
        entries = document.get("mappings")
        if not isinstance(entries, list):
            loaded.damaged = True
            return self._warned(loaded, f"ignoring the state file {self.path}: "
                                        "'mappings' is not a list")
        seen: set[tuple[str, int, int, int]] = set()
        for index, entry in enumerate(entries):
            try:
                record = MappingRecord.from_json(entry)
            except ValueError as exc:
                self._warned(loaded, f"ignoring record {index} of the state file "
                                     f"{self.path}: {exc}")
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
            self._write(change(current))
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

    def _write(self, records: list[MappingRecord]) -> None:
        document = {"version": FORMAT_VERSION, "mappings": [r.to_json() for r in records]}
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

