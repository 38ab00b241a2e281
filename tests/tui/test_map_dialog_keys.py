"""Keys reach the map dialog's fields in order, however fast they come.

A terminal hands the app every byte it has in one read: ``tmux send-keys BSpace
70000 Enter`` or a fast typist arrive as one burst. Pilot waits after each key, so
these tests post the keys to the app as its driver does, all at once, and check
that what is mapped is exactly what the fields show.
"""

from __future__ import annotations

from textual import events

from engine.events import MappingKey
from engine.protocols import Protocol
from tui.app import NatDeckApp
from tui.screens import MapDialog
from tui.widgets import FormInput

from .conftest import DemoGateway, app_until, started

KEYS = {"\x7f": "backspace", "\t": "tab", "\r": "enter", "\x15": "ctrl+u"}


def burst(app: NatDeckApp, text: str) -> None:
    """Post the keys of ``text`` to the app at once, as the driver does with one read."""
    for char in text:
        key = KEYS.get(char, char)
        app.post_message(events.Key(key, char))


async def dialog_with(pilot: object, app: NatDeckApp, internal_port: str) -> MapDialog:
    await pilot.press("m")  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    dialog = app.screen
    assert isinstance(dialog, MapDialog)
    await pilot.press(*internal_port)  # type: ignore[attr-defined]
    await pilot.pause()  # type: ignore[attr-defined]
    return dialog


async def test_a_burst_into_a_field_holding_zero_is_applied_in_order(
        demo_gateway: DemoGateway) -> None:
    # The tmux report: BSpace 70000 Enter into a field holding "0" gave "07000", and
    # tcp 7000 was mapped.
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await dialog_with(pilot, app, "0")
        field = dialog.query_one("#internal_port", FormInput)
        assert field.value == "0"
        burst(app, "\x7f70000\r")
        await pilot.pause(0.2)
        assert field.value == "70000"
        assert app.screen is dialog, "70000 is not a port: nothing is mapped"
        assert "must be 1-65535, not 70000" in dialog.errors["internal_port"]
        assert app.manager is not None
        assert not app.manager.mappings
        assert demo_gateway.gateway.mappings == ()


async def test_a_burst_across_fields_maps_what_the_fields_show(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await dialog_with(pilot, app, "")
        burst(app, "3000\t3300\t\x15600\r")
        await app_until(pilot, lambda: app.screen is not dialog, "the dialog to close")
        key = MappingKey(Protocol.TCP, 3000)
        await app_until(pilot, lambda: app.manager is not None and key in app.manager.mappings
                        and app.manager.mappings[key].external_port is not None, "the grant")
        assert app.manager is not None
        mapping = app.manager.mappings[key]
        assert mapping.external_port == 3300
        assert mapping.requested_lifetime == 600


async def test_editing_keys_in_a_burst_keep_their_place(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await dialog_with(pilot, app, "999")
        field = dialog.query_one("#internal_port", FormInput)
        burst(app, "\x1512\x7f3")  # ctrl+u, 1, 2, backspace, 3
        await pilot.pause(0.2)
        assert field.value == "13"


async def test_a_paste_replaces_the_selected_text_and_maps_it(demo_gateway: DemoGateway) -> None:
    app = demo_gateway.app()
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        dialog = await dialog_with(pilot, app, "0")
        # Tab away and back: the field's text is selected on focus, so a paste replaces it.
        await pilot.press("tab", "shift+tab")
        await pilot.pause()
        app.post_message(events.Paste("8080"))
        app.post_message(events.Key("enter", "\r"))
        await app_until(pilot, lambda: app.screen is not dialog, "the dialog to close")
        key = MappingKey(Protocol.TCP, 8080)
        await app_until(pilot, lambda: app.manager is not None and key in app.manager.mappings,
                        "the mapping")
