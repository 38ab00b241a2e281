"""The simulated IGD on real sockets: an SSDP responder (UDP, loopback, unicast answers only)
and an HTTP server (aiohttp) serving the descriptions and SOAP control over :class:`IgdControl`.

Usage::

    async with SimulatedGateway() as gw, SimulatedIgd(gateway=gw) as igd:
        UpnpGateway("127.0.0.1", ssdp_port=igd.ssdp_port)   # PCP and UPnP share one table

    async with SimulatedIgd() as igd: ...                   # UPnP only: nothing on 5351
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import Counter
from ipaddress import ip_address
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from defusedxml import ElementTree as SafeElementTree

from ...wire.addresses import IPAddress, to_address
from ..config import check_loopback_target
from ..core import client_address
from ..state import GatewayState, Mapping
from .config import IgdConfig
from .control import Fault, IgdControl
from .descriptions import CONTROL_PATHS, SCPD_PATHS, device_description, service_description

if TYPE_CHECKING:
    from aiohttp import web

    from ..gateway import Clock, SimulatedGateway

__all__ = ["SimulatedIgd"]

logger = logging.getLogger(__name__)

_ENVELOPE = ('<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"'
             ' s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>{}</s:Body>'
             "</s:Envelope>")
_MAX_REQUEST = 64 * 1024


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _SsdpResponder(asyncio.DatagramProtocol):
    def __init__(self, igd: SimulatedIgd) -> None:
        self._igd = igd
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._igd.searches += 1
        answer = self._igd.ssdp_answer(data)
        if answer is None or self.transport is None:
            return
        try:
            # Unicast to the searcher, and only on loopback (the simulator's rule).
            self.transport.sendto(answer, check_loopback_target((str(addr[0]), int(addr[1]))))
        except ValueError:
            logger.warning("simulated IGD: not answering %s (not loopback)", addr)


class SimulatedIgd:
    """A UPnP IGD on ``host`` (loopback): SSDP on ``ssdp_port``, HTTP on ``http_port`` (0: any
    free port). With ``gateway`` it shares that simulated NAT-PMP/PCP gateway's table and
    clock; without, it has its own table (a UPnP-only router: nothing listens on 5351)."""

    def __init__(self, host: str = "127.0.0.1", *, ssdp_port: int = 0, http_port: int = 0,
                 config: IgdConfig | None = None, gateway: SimulatedGateway | None = None,
                 external_address: str | IPAddress | None = "203.0.113.7",
                 clock: Clock | None = None) -> None:
        if not ip_address(host).is_loopback:
            raise ValueError(f"the simulated IGD serves only loopback, not {host}")
        self.host = host
        self._ssdp_port = ssdp_port
        self._http_port = http_port
        self.config = config if config is not None else IgdConfig()
        self._gateway = gateway
        self._external = to_address(external_address) if external_address is not None else None
        self._clock = clock
        self._control: IgdControl | None = None
        self._runner: web.AppRunner | None = None
        self._ssdp: asyncio.DatagramTransport | None = None
        self.actions: Counter[str] = Counter()
        """SOAP actions received, by name."""
        self.action_log: list[str] = []
        """SOAP actions received, in order."""
        self.searches = 0
        """M-SEARCH datagrams received."""

    # --- life cycle ---------------------------------------------------------------------------

    async def start(self) -> SimulatedIgd:
        """Bind both sockets and start answering."""
        from aiohttp import web

        loop = asyncio.get_running_loop()
        if self._clock is None:
            self._clock = loop.time
        state = (self._gateway.core.state if self._gateway is not None
                 else GatewayState(self._external, self._clock()))
        self._control = IgdControl(state, self.config, self._clock())
        app = web.Application(client_max_size=_MAX_REQUEST)
        app.router.add_get("/rootDesc.xml", self._description)
        for kind, path in SCPD_PATHS.items():
            app.router.add_get(path, self._scpd(kind))
            app.router.add_post(CONTROL_PATHS[kind], self._soap)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._http_port)
        await site.start()
        self._http_port = int(self._runner.addresses[0][1])
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SsdpResponder(self), local_addr=(self.host, self._ssdp_port))
        self._ssdp = transport
        self._ssdp_port = int(transport.get_extra_info("sockname")[1])
        return self

    async def close(self) -> None:
        """Stop answering; release both sockets."""
        if self._ssdp is not None:
            self._ssdp.close()
            self._ssdp = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SimulatedIgd:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    # --- introspection ------------------------------------------------------------------------

    @property
    def ssdp_port(self) -> int:
        """The UDP port answering M-SEARCH."""
        return self._ssdp_port

    @property
    def http_port(self) -> int:
        """The TCP port of the descriptions and control."""
        return self._http_port

    @property
    def location(self) -> str:
        """The device description URL."""
        host = self.config.advertised_host or self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._http_port}/rootDesc.xml"

    @property
    def control(self) -> IgdControl:
        """The sans-IO IGD behind the sockets."""
        if self._control is None:
            raise RuntimeError("the simulated IGD is not started")
        return self._control

    @property
    def state(self) -> GatewayState:
        """The mapping table (shared with the NAT-PMP/PCP gateway, if one was given)."""
        return self.control.state

    def mappings(self) -> tuple[Mapping, ...]:
        """The live mappings (of every protocol)."""
        assert self._clock is not None
        return self.state.mappings(self._clock())

    def configure(self, **changes: Any) -> IgdConfig:
        """Change behaviour now (``igd.configure(lying_add=True)``); returns the new config."""
        self.config = dataclasses.replace(self.config, **changes)
        if self._control is not None:
            self._control.config = self.config
        return self.config

    # --- SSDP ---------------------------------------------------------------------------------

    def ssdp_answer(self, data: bytes) -> bytes | None:
        """The answer to an M-SEARCH datagram (``None``: not one we answer)."""
        text = data[:2048].decode("latin-1")
        if not text.startswith("M-SEARCH * HTTP/1.1"):
            return None
        headers = {}
        for line in text.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        target = headers.get("st", "")
        igd = f"urn:schemas-upnp-org:device:InternetGatewayDevice:{self.config.igd_version}"
        if target == "ssdp:all":
            target = "upnp:rootdevice"  # like many devices: only the first descriptor
        elif target not in ("upnp:rootdevice", igd):
            return None
        return (f"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: {target}\r\n"
                f"USN: uuid:{self.config.uuid}::{target}\r\nEXT:\r\n"
                "SERVER: natdeck-simulator UPnP/1.1 MiniUPnPd/2.3.1\r\n"
                f"LOCATION: {self.location}\r\n\r\n").encode()

    # --- HTTP ---------------------------------------------------------------------------------

    async def _description(self, request: web.Request) -> web.Response:
        from aiohttp import web

        if self.config.http_delay:
            await asyncio.sleep(self.config.http_delay)
        return web.Response(text=device_description(self.config), content_type="text/xml")

    def _scpd(self, kind: str) -> Any:
        async def serve(request: web.Request) -> web.Response:
            from aiohttp import web

            return web.Response(text=service_description(kind, self.config.igd_version),
                                content_type="text/xml")
        return serve

    async def _soap(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body = await request.text()
        try:
            root = SafeElementTree.fromstring(body)
            call = next(child for element in root if _local(element.tag) == "Body"
                        for child in element)
        except Exception:  # a broken request is the client's bug: answer 402 like miniupnpd
            return self._fault(Fault(402, "Invalid Args"))
        action = _local(call.tag)
        arguments = {_local(child.tag): (child.text or "") for child in call}
        self.actions[action] += 1
        self.action_log.append(action)
        if self.config.http_delay:
            await asyncio.sleep(self.config.http_delay)
        requester = client_address(str(request.remote or "::"))
        assert self._clock is not None
        result = self.control.handle(action, arguments, requester, self._clock())
        if isinstance(result, Fault):
            return self._fault(result)
        service = request.headers.get("SOAPAction", "").strip('"').split("#", 1)[0]
        out = "".join(f"<{name}>{_escape(value)}</{name}>" for name, value in result.items())
        return web.Response(
            text=_ENVELOPE.format(f'<u:{action}Response xmlns:u="{_escape(service)}">{out}'
                                  f"</u:{action}Response>"),
            content_type="text/xml")

    @staticmethod
    def _fault(fault: Fault) -> web.Response:
        from aiohttp import web

        body = _ENVELOPE.format(
            "<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring>"
            '<detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0">'
            f"<errorCode>{fault.code}</errorCode>"
            f"<errorDescription>{_escape(fault.description)}</errorDescription>"
            "</UPnPError></detail></s:Fault>")
        return web.Response(status=500, text=body, content_type="text/xml")


def _escape(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text, {'"': "&quot;"})
