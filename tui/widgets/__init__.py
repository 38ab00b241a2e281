"""The main screen's widgets: the gateway panel, the mappings table, the event log."""

from .event_log import EventLog
from .gateway_panel import GatewayPanel
from .mappings_table import MappingsTable

__all__ = ["EventLog", "GatewayPanel", "MappingsTable"]
