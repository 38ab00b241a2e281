"""The main screen's widgets: the gateway panel, the mappings table and the selected
mapping's details, the event log, and the map dialog's input field."""

from .event_log import EventLog
from .form_input import FormInput
from .gateway_panel import GatewayPanel
from .mapping_detail import MappingDetail
from .mappings_table import MappingsTable

__all__ = ["EventLog", "FormInput", "GatewayPanel", "MappingDetail", "MappingsTable"]
