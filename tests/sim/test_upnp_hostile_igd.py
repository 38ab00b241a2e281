"""An IGD whose documents or answers are broken or hostile, on loopback: each is refused with a
typed error or worked around, never a builtin exception and never an endless listing.

The simulated IGD is doctored per test: its description and SCPD texts rewritten, a SOAP
action's answer replaced, or its control made to ignore an argument.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from ipaddress import ip_address
from typing import Any

import pytest
from aiohttp import web

import engine
from engine.simulator.state import Mapping
from engine.simulator.upnp import IgdConfig, SimulatedIgd
from engine.simulator.upnp.descriptions import device_description, service_description
from engine.upnp import UpnpGateway, UpnpReplyError, router

HOST = "127.0.0.1"
OTHER = ip_address("127.0.0.2")


class DoctoredIgd(SimulatedIgd):
    """The simulated IGD with its documents rewritten by ``description`` and ``scpd`` (text in,
    text out), and the SOAP actions in ``drop`` answered by closing the connection."""

    def __init__(self, *, description: Callable[[str], str] = str,
                 scpd: Callable[[str], str] = str, drop: frozenset[str] = frozenset(),
                 **extra: Any) -> None:
        super().__init__(HOST, **extra)
        self.doctor_description = description
        self.doctor_scpd = scpd
        self.drop = drop

    async def _description(self, request: web.Request) -> web.Response:
        text = self.doctor_description(device_description(self.config))
        return web.Response(text=text, content_type="text/xml")

    def _scpd(self, kind: str) -> Any:
        async def serve(request: web.Request) -> web.Response:
            text = self.doctor_scpd(service_description(kind, self.config.igd_version))
            return web.Response(text=text, content_type="text/xml")
        return serve

    async def _soap(self, request: web.Request) -> web.Response:
        action = request.headers.get("SOAPAction", "").strip('"').rpartition("#")[2]
        if action in self.drop:
            assert request.transport is not None
            request.transport.abort()  # the connection reset, no answer
        return await super()._soap(request)


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


def _undeclared_variable(scpd: str) -> str:
    # An action argument naming a state variable the SCPD does not declare (sloppy firmware):
    # async-upnp-client's factory fails with KeyError.
    return scpd.replace("<stateVariable sendEvents=\"no\"><name>Uptime</name>"
                        "<dataType>ui4</dataType></stateVariable>", "")


def _icon_width_not_a_number(description: str) -> str:
    return description.replace("<UDN>", "<iconList><icon><mimetype>image/png</mimetype><width>"
                               "big</width><height>1</height><depth>8</depth><url>/i.png</url>"
                               "</icon></iconList><UDN>", 1)


def _an_entity(description: str) -> str:
    return description.replace('<?xml version="1.0"?>',
                               '<?xml version="1.0"?><!DOCTYPE root [<!ENTITY n "natdeck">]>')


@pytest.mark.parametrize("doctor", [
    {"scpd": _undeclared_variable},
    {"description": _icon_width_not_a_number},
    {"description": _an_entity},
], ids=["undeclared-state-variable", "icon-width-not-a-number", "xml-entity"])
async def test_a_description_the_parser_chokes_on_is_a_reply_error(
        stack: AsyncExitStack, doctor: dict[str, Callable[[str], str]]) -> None:
    igd = await stack.enter_async_context(DoctoredIgd(**doctor))
    if "scpd" in doctor:  # the doctoring found what it rewrites
        assert doctor["scpd"](service_description("ip", 2)) != service_description("ip", 2)
    async with UpnpGateway(HOST, ssdp_port=igd.ssdp_port) as upnp:
        with pytest.raises(UpnpReplyError, match="unusable"):
            await upnp.map(engine.Protocol.TCP, 8080)
    client = engine.GatewayClient(HOST, port=1, local_address=HOST, ssdp_port=igd.ssdp_port)
    async with client:
        with pytest.raises(UpnpReplyError, match="unusable"):
            await client.map(engine.Protocol.TCP, 8081, via="upnp", timeout=5)
    assert igd.mappings() == ()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


async def test_an_unreachable_candidate_does_not_hide_the_igd_after_it(
        stack: AsyncExitStack) -> None:
    igd = await stack.enter_async_context(DoctoredIgd())
    good = igd.ssdp_answer
    stale = f"http://{HOST}:{_closed_port()}/rootDesc.xml"

    def stale_then_good(data: bytes) -> bytes | None:
        # One search, two answers: a LOCATION nothing listens on (a stale announcement),
        # then the IGD itself. The responder sends what this returns; the second search
        # datagram gets the good one.
        answer = good(data)
        if answer is None:
            return None
        stale_then_good.calls += 1  # type: ignore[attr-defined]
        if stale_then_good.calls == 1:  # type: ignore[attr-defined]
            return answer.replace(igd.location.encode(), stale.encode())
        return answer

    stale_then_good.calls = 0  # type: ignore[attr-defined]
    igd.ssdp_answer = stale_then_good  # type: ignore[method-assign]
    async with UpnpGateway(HOST, ssdp_port=igd.ssdp_port) as upnp:
        mapping = await upnp.map(engine.Protocol.TCP, 8080)
    assert mapping.external_port == 8080


async def test_an_igd_that_fails_to_say_its_wan_state_ranks_last(stack: AsyncExitStack) -> None:
    mute = await stack.enter_async_context(
        DoctoredIgd(drop=frozenset({"GetStatusInfo"}), config=IgdConfig(friendly_name="mute")))
    good = await stack.enter_async_context(DoctoredIgd(config=IgdConfig(friendly_name="good")))
    answers = iter([mute.ssdp_answer, good.ssdp_answer])

    def both(data: bytes) -> bytes | None:
        # One SSDP port answering with both descriptions (two IGDs on the gateway's address).
        return next(answers, good.ssdp_answer)(data)

    mute.ssdp_answer = both  # type: ignore[method-assign]
    async with UpnpGateway(HOST, ssdp_port=mute.ssdp_port) as upnp:
        probe = await upnp.probe()
    assert probe.device.friendly_name == "good"
    assert mute.actions["GetStatusInfo"] >= 1  # asked, and the reset connection not fatal


async def test_an_igd_that_ignores_the_start_port_is_not_paged_forever(
        stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "LIST_PAGE", 3)  # full pages from a few mappings
    igd = await stack.enter_async_context(DoctoredIgd())
    for port in range(2000, 2005):
        igd.state.put(Mapping(OTHER, 6, port, port, 3600, float("inf"), "upnp",
                              description="other host"))
    handle = igd.control.handle

    def from_the_first_port(action: str, arguments: Any, *rest: Any) -> Any:
        if action == "GetListOfPortMappings":
            arguments = {**arguments, "NewStartPort": "1"}  # always the first page
        return handle(action, arguments, *rest)

    igd.control.handle = from_the_first_port  # type: ignore[method-assign]
    async with UpnpGateway(HOST, ssdp_port=igd.ssdp_port) as upnp:
        listing = await upnp.list_mappings()
    # Not believed after the second page; the generic walk lists the table instead.
    assert igd.actions["GetListOfPortMappings"] == 2
    assert listing.method == "GetGenericPortMappingEntry"
    assert sorted(m.external_port for m in listing.mappings) == list(range(2000, 2005))


async def test_a_listing_that_never_ends_stops_at_the_cap(
        stack: AsyncExitStack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "LIST_PAGE", 2)
    monkeypatch.setattr(router, "MAX_ENTRIES", 4)  # stands for 4096 entries
    igd = await stack.enter_async_context(DoctoredIgd())
    for port in range(2000, 2010):
        igd.state.put(Mapping(OTHER, 6, port, port, 3600, float("inf"), "upnp",
                              description="other host"))
    async with UpnpGateway(HOST, ssdp_port=igd.ssdp_port) as upnp:
        listing = await upnp.list_mappings()
    assert [m.external_port for m in listing.mappings] == [2000, 2001, 2002, 2003]
    assert igd.actions["GetListOfPortMappings"] == 2  # nor a UDP page past the cap
