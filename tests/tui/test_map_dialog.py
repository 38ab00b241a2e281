"""The map dialog: what it accepts, what it refuses and how it says so."""

from __future__ import annotations

import pytest

from engine.protocols import Protocol
from tui.map_request import MapRequest, parse_lifetime, parse_map_form
from tui.screens import MapDialog

from .conftest import DemoGateway, started


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (("tcp", "8080", "", "", "auto"), MapRequest(Protocol.TCP, 8080, None, None, "auto")),
        ((" UDP ", "51820", "51821", "2h", "pcp"),
         MapRequest(Protocol.UDP, 51820, 51821, 7200, "pcp")),
        (("gre", "0", "", "90", "pcp"), MapRequest(47, 0, None, 90, "pcp")),
        (("all", "0", "", "1d", "auto"), MapRequest(Protocol.ALL, 0, None, 86400, "auto")),
        (("6", "22", "2222", "30m", "natpmp"), MapRequest(Protocol.TCP, 22, 2222, 1800, "natpmp")),
        (("udp", "51820", "", "2h", "upnp"), MapRequest(Protocol.UDP, 51820, None, 7200, "upnp")),
    ],
)
def test_valid_forms(fields: tuple[str, str, str, str, str], expected: MapRequest) -> None:
    assert parse_map_form(*fields) == expected


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (("", "80", "", "", "auto"), "protocol", "empty protocol"),
        (("tcpp", "80", "", "", "auto"), "protocol", "unknown protocol 'tcpp'"),
        (("300", "80", "", "", "auto"), "protocol", "must be 0-255"),
        (("tcp", "", "", "", "auto"), "internal_port", "internal port is required"),
        (("tcp", "http", "", "", "auto"), "internal_port", "internal port is a number"),
        (("tcp", "70000", "", "", "auto"), "internal_port", "must be 1-65535, not 70000"),
        (("tcp", "80", "70000", "", "auto"), "external_port", "must be 0-65535, not 70000"),
        (("gre", "0", "5000", "", "pcp"), "external_port", "gre has no ports"),
        (("tcp", "0", "", "", "auto"), "internal_port", "must be 1-65535"),
        (("all", "80", "", "", "auto"), "internal_port", "takes internal port 0"),
        (("gre", "80", "", "", "pcp"), "internal_port", "gre has no ports"),
        (("tcp", "80", "-1", "", "auto"), "external_port", "external port is a number"),
        (("tcp", "80", "", "0", "auto"), "lifetime", "lifetime must be 1-4294967295"),
        (("tcp", "80", "", "2x", "auto"), "lifetime", "a number with s, m, h or d"),
        (("tcp", "80", "", "99999999999", "auto"), "lifetime", "1-4294967295"),
        (("gre", "0", "", "", "natpmp"), "protocol", "NAT-PMP can map only TCP and UDP"),
        (("tcp", "80", "", "", "smtp"), "via", "via is one of auto, pcp, natpmp, upnp"),
        (("gre", "0", "", "", "upnp"), "protocol", "UPnP IGD can map only TCP and UDP"),
    ],
)
def test_invalid_forms_name_the_field(fields: tuple[str, str, str, str, str], field: str,
                                      message: str) -> None:
    result = parse_map_form(*fields)
    assert isinstance(result, dict)
    assert message in result[field]


def test_every_bad_field_is_reported_at_once() -> None:
    result = parse_map_form("nope", "x", "y", "z", "auto")
    assert isinstance(result, dict)
    assert set(result) == {"protocol", "internal_port", "external_port", "lifetime"}


@pytest.mark.parametrize(("text", "seconds"), [("7200", 7200), ("45s", 45), ("10 m", 600),
                                               ("2H", 7200), ("1d", 86400)])
def test_lifetimes(text: str, seconds: int) -> None:
    assert parse_lifetime(text) == seconds


async def test_the_dialog_shows_errors_and_stays_open(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot)
        await pilot.press("m")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, MapDialog)
        await pilot.press(*"70000", "tab", *"abc", "enter")
        await pilot.pause()
        assert app.screen is dialog
        assert set(dialog.errors) == {"internal_port", "external_port"}
        note = dialog.query_one("#internal_port-note")
        assert note.has_class("-error")
        assert "must be 1-65535, not 70000" in str(note.render())
        assert dialog.query_one("#internal_port").has_class("-invalid")
        assert dialog.focused is not None
        assert dialog.focused.id == "internal_port"
        # Editing a field clears its message; the other stays until the next submit.
        await pilot.press("ctrl+u", *"8080")
        await pilot.pause()
        assert set(dialog.errors) == {"external_port"}
        assert not dialog.query_one("#internal_port-note").has_class("-error")
        assert app.manager is not None
        assert not app.manager.mappings, "nothing is sent while the form is invalid"


async def test_via_natpmp_refuses_a_protocol_without_opcode(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot)
        await pilot.press("m")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, MapDialog)
        await pilot.click("#via-natpmp")
        await pilot.click("#protocol")
        await pilot.press("end", "ctrl+u", *"gre", "tab", *"0")
        await pilot.click("#map-submit")
        await pilot.pause()
        assert app.screen is dialog
        assert "NAT-PMP can map only TCP and UDP" in dialog.errors["protocol"]


async def test_escape_and_cancel_send_nothing(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot)
        for close in ("escape", "cancel"):
            await pilot.press("m")
            await pilot.pause()
            assert isinstance(app.screen, MapDialog)
            await pilot.press(*"8080")
            if close == "escape":
                await pilot.press("escape")
            else:
                await pilot.click("#map-cancel")
            await pilot.pause()
            assert not isinstance(app.screen, MapDialog)
        await pilot.pause(0.2)
        assert app.manager is not None
        assert not app.manager.mappings
        assert demo_gateway.gateway.mappings == ()


async def test_typing_q_in_the_dialog_does_not_quit(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(100, 40)) as pilot:
        await started(pilot)
        await pilot.press("m")
        await pilot.pause()
        await pilot.press("q", "d", "r")
        await pilot.pause()
        assert isinstance(app.screen, MapDialog)
        assert app.screen.query_one("#internal_port").value == "qdr"  # type: ignore[attr-defined]
        assert app.return_code is None
