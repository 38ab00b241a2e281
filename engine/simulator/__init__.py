"""A simulated NAT-PMP (RFC 6886) and PCP (RFC 6887) gateway for tests, benchmarks and demos.

:class:`SimulatedGateway` answers on a loopback UDP socket; :class:`GatewayCore`
is the same gateway without I/O (bytes and a ``now`` in, bytes out), over a
:class:`GatewayState` that holds the mappings and the epoch. Behaviour, faults
and quirks of real gateways are the fields of :class:`GatewayConfig`.
``python -m engine.simulator`` runs one in its own process.
"""

from __future__ import annotations

from .announcer import AnnouncementKind, PlannedSend, plan_address_change, plan_restart
from .config import AnnounceMode, GatewayConfig
from .core import Counters, GatewayCore
from .gateway import Clock, SimulatedGateway, Tamper
from .state import GatewayState, Mapping

__all__ = [
    "AnnounceMode",
    "AnnouncementKind",
    "Clock",
    "Counters",
    "GatewayConfig",
    "GatewayCore",
    "GatewayState",
    "Mapping",
    "PlannedSend",
    "SimulatedGateway",
    "Tamper",
    "plan_address_change",
    "plan_restart",
]
