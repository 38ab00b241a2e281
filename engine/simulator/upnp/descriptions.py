"""The XML a simulated IGD serves: its device description and service descriptions (SCPD),
built from one table of actions, the way miniupnpd's are laid out."""

from __future__ import annotations

from xml.sax.saxutils import escape

from .config import IgdConfig

__all__ = ["CONTROL_PATHS", "SCPD_PATHS", "device_description", "service_description",
           "service_type"]

#: state variable -> UPnP data type
_VARIABLES = {
    "ExternalIPAddress": "string", "ConnectionStatus": "string", "Uptime": "ui4",
    "LastConnectionError": "string", "RemoteHost": "string", "ExternalPort": "ui2",
    "InternalPort": "ui2", "PortMappingProtocol": "string", "InternalClient": "string",
    "PortMappingDescription": "string", "PortMappingEnabled": "boolean",
    "PortMappingLeaseDuration": "ui4", "PortMappingNumberOfEntries": "ui2",
    "A_ARG_TYPE_PortListing": "string", "A_ARG_TYPE_Manage": "boolean",
}
_PINHOLE_VARIABLES = {
    "RemoteHost": "string", "RemotePort": "ui2", "InternalClient": "string",
    "InternalPort": "ui2", "Protocol": "ui2", "LeaseTime": "ui4", "UniqueID": "ui2",
}

_KEY = ("NewRemoteHost:RemoteHost", "NewExternalPort:ExternalPort",
        "NewProtocol:PortMappingProtocol")
_ADD = (*_KEY, "NewInternalPort:InternalPort", "NewInternalClient:InternalClient",
        "NewEnabled:PortMappingEnabled", "NewPortMappingDescription:PortMappingDescription",
        "NewLeaseDuration:PortMappingLeaseDuration")
_ENTRY = _ADD[3:]

#: action -> (in arguments, out arguments), each "Name:RelatedStateVariable"; per version.
_ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "GetExternalIPAddress": ((), ("NewExternalIPAddress:ExternalIPAddress",), 1),
    "GetStatusInfo": ((), ("NewConnectionStatus:ConnectionStatus",
                           "NewLastConnectionError:LastConnectionError", "NewUptime:Uptime"), 1),
    "AddPortMapping": (_ADD, (), 1),
    # miniupnpd's description names the out-argument NewExternalPort; it sends NewReservedPort.
    "AddAnyPortMapping": (_ADD, ("NewExternalPort:ExternalPort",), 2),
    "DeletePortMapping": (_KEY, (), 1),
    "GetSpecificPortMappingEntry": (_KEY, _ENTRY, 1),
    "GetGenericPortMappingEntry": (("NewPortMappingIndex:PortMappingNumberOfEntries",),
                                   (*_KEY, *_ENTRY), 1),
    "GetListOfPortMappings": (("NewStartPort:ExternalPort", "NewEndPort:ExternalPort",
                               "NewProtocol:PortMappingProtocol", "NewManage:A_ARG_TYPE_Manage",
                               "NewNumberOfPorts:PortMappingNumberOfEntries"),
                              ("NewPortListing:A_ARG_TYPE_PortListing",), 2),
}
_PINHOLE_ACTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "AddPinhole": (("RemoteHost:RemoteHost", "RemotePort:RemotePort",
                    "InternalClient:InternalClient", "InternalPort:InternalPort",
                    "Protocol:Protocol", "LeaseTime:LeaseTime"), ("UniqueID:UniqueID",), 2),
    "UpdatePinhole": (("UniqueID:UniqueID", "NewLeaseTime:LeaseTime"), (), 2),
    "DeletePinhole": (("UniqueID:UniqueID",), (), 2),
}

SCPD_PATHS = {"ip": "/WANIPCn.xml", "pinhole": "/WANIP6FC.xml"}
CONTROL_PATHS = {"ip": "/ctl/IPConn", "pinhole": "/ctl/IP6FCtl"}


def service_type(kind: str, version: int) -> str:
    """The service type URN of ``kind`` ("ip" or "pinhole")."""
    if kind == "pinhole":
        return "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"
    return f"urn:schemas-upnp-org:service:WANIPConnection:{version}"


def _arguments(specs: tuple[str, ...], direction: str) -> str:
    return "".join(f"<argument><name>{name}</name><direction>{direction}</direction>"
                   f"<relatedStateVariable>{variable}</relatedStateVariable></argument>"
                   for name, variable in (spec.split(":") for spec in specs))


def service_description(kind: str, version: int) -> str:
    """The SCPD of ``kind`` ("ip" or "pinhole") for IGD ``version``."""
    actions = _PINHOLE_ACTIONS if kind == "pinhole" else _ACTIONS
    variables = _PINHOLE_VARIABLES if kind == "pinhole" else _VARIABLES
    action_xml = "".join(
        f"<action><name>{name}</name><argumentList>{_arguments(ins, 'in')}"
        f"{_arguments(outs, 'out')}</argumentList></action>"
        for name, (ins, outs, since) in actions.items() if since <= version)
    variable_xml = "".join(
        f'<stateVariable sendEvents="no"><name>{name}</name><dataType>{kind_}</dataType>'
        "</stateVariable>" for name, kind_ in variables.items())
    return ('<?xml version="1.0"?><scpd xmlns="urn:schemas-upnp-org:service-1-0">'
            "<specVersion><major>1</major><minor>0</minor></specVersion>"
            f"<actionList>{action_xml}</actionList>"
            f"<serviceStateTable>{variable_xml}</serviceStateTable></scpd>")


def _service(kind: str, version: int, control_base: str) -> str:
    kind_id = "WANIP6FC1" if kind == "pinhole" else "WANIPConn1"
    return (f"<service><serviceType>{service_type(kind, version)}</serviceType>"
            f"<serviceId>urn:upnp-org:serviceId:{kind_id}</serviceId>"
            f"<controlURL>{control_base}{CONTROL_PATHS[kind]}</controlURL>"
            f"<eventSubURL>/evt/{kind}</eventSubURL><SCPDURL>{SCPD_PATHS[kind]}</SCPDURL>"
            "</service>")


def device_description(config: IgdConfig) -> str:
    """The root device description (InternetGatewayDevice:N)."""
    version = config.igd_version
    control_base = f"http://{config.control_host}" if config.control_host else ""
    services = _service("ip", version, control_base)
    if version == 2 and config.pinholes:
        services += _service("pinhole", version, control_base)
    urn = "urn:schemas-upnp-org:device"
    return (
        '<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0">'
        "<specVersion><major>1</major><minor>1</minor></specVersion><device>"
        f"<deviceType>{urn}:InternetGatewayDevice:{version}</deviceType>"
        f"<friendlyName>{escape(config.friendly_name)}</friendlyName>"
        f"<manufacturer>{escape(config.manufacturer)}</manufacturer>"
        f"<modelName>{escape(config.model_name)}</modelName>"
        f"<modelNumber>{escape(config.model_number)}</modelNumber>"
        f"<UDN>uuid:{config.uuid}</UDN><deviceList><device>"
        f"<deviceType>{urn}:WANDevice:{version}</deviceType><friendlyName>WANDevice"
        f"</friendlyName><UDN>uuid:{config.uuid[:-1]}2</UDN><deviceList><device>"
        f"<deviceType>{urn}:WANConnectionDevice:{version}</deviceType>"
        f"<friendlyName>WANConnectionDevice</friendlyName><UDN>uuid:{config.uuid[:-1]}3</UDN>"
        f"<serviceList>{services}</serviceList></device></deviceList></device></deviceList>"
        "</device></root>")
