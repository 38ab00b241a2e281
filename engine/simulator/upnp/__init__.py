"""A simulated UPnP IGD (SSDP + descriptions + SOAP control) for tests and the demo, sharing
the simulated NAT-PMP/PCP gateway's table the way miniupnpd shares one between the three.

:class:`IgdControl` is the sans-IO IGD; :class:`SimulatedIgd` its sockets (aiohttp, imported
only when one starts); :class:`IgdConfig` the quirks.
"""

from __future__ import annotations

from .config import IgdConfig
from .control import Fault, IgdControl, describe, miniupnpd_nonce
from .neighbours import DEMO_CHURN, DEMO_LAN, Neighbour, Neighbours
from .server import SimulatedIgd

__all__ = ["DEMO_CHURN", "DEMO_LAN", "Fault", "IgdConfig", "IgdControl", "Neighbour",
           "Neighbours", "SimulatedIgd", "describe", "miniupnpd_nonce"]
