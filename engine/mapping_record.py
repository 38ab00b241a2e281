"""One mapping as the state file keeps it (:class:`MappingRecord`): enough to renew or
delete it from another process, and its JSON form, validated as untrusted input.

:mod:`engine.statefile` reads and writes these records (and re-exports the class); the
terminal UI's manager and ``natdeck map`` record through
``StateFile.record(MappingRecord.from_mapping(...))``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, Any, Literal

from .wire.addresses import IPAddress, to_address

if TYPE_CHECKING:
    from .client import PortMapping

__all__ = ["MappingRecord", "Via", "read_time", "record_key"]

Via = Literal["pcp", "natpmp", "upnp"]


@dataclass(frozen=True, slots=True)
class MappingRecord:
    """One mapping as the state file keeps it: enough to renew or delete it later.

    ``created`` and ``updated`` are wall-clock times (``time.time()``): unlike the
    loop's clock they mean something to another process. ``nonce`` is ``None``
    for NAT-PMP and UPnP mappings, which have none (a UPnP IGD names a mapping by
    protocol and ``external_port``). ``permanent`` marks a UPnP mapping with a lease
    without end (a gateway that takes only those): its record never expires, so that
    ``natdeck unmap`` can always remove it. ``pid`` names the process holding the
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
    permanent: bool = False

    @property
    def key(self) -> tuple[str, int, int, int]:
        """(gateway, gateway port, protocol, internal port): one record per key.

        That is what names a mapping at its gateway (RFC 6887 §11.3 also uses the
        client's address, which for one host and gateway is one address).
        """
        return record_key(self.gateway, self.gateway_port, self.protocol, self.internal_port)

    def expires(self) -> float:
        """Wall-clock time the mapping runs out unless renewed (never, if permanent)."""
        return float("inf") if self.permanent else self.updated + self.lifetime

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
            requested_lifetime=mapping.requested_lifetime, pid=pid,
            permanent=mapping.permanent)

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
            requested_lifetime=self.requested_lifetime or self.lifetime or 7200,
            suggested_external_port=self.external_port, permanent=self.permanent)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (addresses as strings, the nonce in hex)."""
        # Field by field, not dataclasses.asdict: its deep copy made writing a state file of
        # a thousand records cost more than building them (every record is one flat level).
        data = {field.name: getattr(self, field.name) for field in fields(self)}
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
        if via not in ("pcp", "natpmp", "upnp"):
            raise ValueError(f"via is {via!r}, not 'pcp', 'natpmp' or 'upnp'")
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
        permanent = data.get("permanent", False)
        if not isinstance(permanent, bool):
            raise ValueError(f"permanent is {permanent!r}, not true or false")
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
            created=read_time(data, "created"), updated=read_time(data, "updated"),
            requested_lifetime=_int(data, "requested_lifetime", 0, 0xFFFFFFFF, default=0),
            pid=pid, permanent=permanent)


def record_key(gateway: str | IPAddress, gateway_port: int, protocol: int,
         internal_port: int) -> tuple[str, int, int, int]:
    return (str(to_address(gateway)), gateway_port, int(protocol), internal_port)


def _int(data: dict[str, Any], name: str, low: int, high: int,
         default: int | None = None) -> int:
    value = data.get(name, default)
    # bool is an int subclass; true/false in the file is not a number.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"{name} is {value!r}, not an integer {low}-{high}")
    return value


def read_time(data: dict[str, Any], name: str) -> float:
    """``data[name]`` as seconds: a finite, non-negative JSON number (not a bool). Raises
    ``ValueError`` otherwise, an integer too large for a float included."""
    value = data.get(name)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{name} is {value!r}, not a time")
    try:
        time_ = float(value)
    except OverflowError:  # an integer beyond any float (10**400)
        raise ValueError(f"{name} is an integer too large for a time") from None
    # Finite only: JSON as Python reads it has NaN, Infinity and 1e400 (inf), and an
    # infinite ``updated`` is a record that never expires, so is never pruned.
    if not math.isfinite(time_) or time_ < 0:
        raise ValueError(f"{name} is {value!r}, not a time")
    return time_


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
