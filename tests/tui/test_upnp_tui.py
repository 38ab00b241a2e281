"""UPnP IGD in the terminal UI, on the demo's simulated gateway (it speaks PCP, NAT-PMP and
UPnP IGD over one table, as miniupnpd does): the gateway panel says which answered and what
the IGD is; the map dialog offers UPnP; the table's Via column shows it; unmapping deletes it
at the gateway."""

from __future__ import annotations

from engine.events import GatewayStatus, ManagedMapping, MappingKey, MappingState
from engine.protocols import Protocol
from engine.upnp.connection import DeviceInfo
from engine.wire.addresses import to_address
from tests.support.pilot import app_until
from tui.demo import SimulatorControls
from tui.launch import build_app
from tui.presentation import gateway_lines, gateway_notes, mapping_cells
from tui.screens import MapDialog

from .conftest import logged, mapped, quit_app, started

KEY = MappingKey(Protocol.TCP, 4321)


async def test_the_demo_maps_via_upnp_from_the_dialog_shows_it_and_unmaps_it() -> None:
    app = build_app(gateway=None, local=None, demo=True, maps=[], keep=False, via="auto")
    async with app.run_test(size=(120, 40)) as pilot:
        await started(pilot)
        await app_until(pilot, lambda: "UPnP yes" in app.main.panel.plain, "the probe of UPnP")
        panel = app.main.panel.plain
        assert "PCP yes, NAT-PMP yes, UPnP yes" in panel
        assert "IGD natdeck simulated router" in panel
        assert "natdeck natdeck simulated IGD 2.3.1" in panel
        assert "IGDv2" in panel

        await pilot.press("m")
        await pilot.pause()
        assert isinstance(app.screen, MapDialog)
        await pilot.press(*"4321")
        await pilot.click("#via-upnp")
        await pilot.pause()
        assert "UPnP IGD only" in str(app.screen.query_one("#via-note").render())
        await pilot.click("#map-submit")
        await pilot.pause()
        assert not isinstance(app.screen, MapDialog)
        await mapped(pilot, app, KEY, shown=True)
        assert app.manager is not None
        assert app.manager.mappings[KEY].via == "upnp"
        # (The row's cells follow on the next refresh of the table.)
        await app_until(pilot, lambda: "UPnP" in [str(c) for c in app.main.table.get_row(str(KEY))],
                    "Via UPnP in its row")
        await app_until(pilot, lambda: logged(app, "via upnp"), "the log line")

        parts = app.link.parts
        assert parts is not None
        assert isinstance(parts.demo, SimulatorControls)
        gateway = parts.demo.gateway

        def ours() -> list[str]:
            return [m.via for m in gateway.mappings
                    if m.client == "127.0.0.1" and m.internal_port == KEY.internal_port]

        assert ours() == ["upnp"]
        while app.main.table.selected_key() != KEY:
            await pilot.press("down")
        await pilot.press("d")
        await app_until(pilot, lambda: KEY not in app.main.table.shown_keys, "the row to go")
        assert ours() == []
        await quit_app(pilot)


def test_a_permanent_mapping_shows_permanent_for_its_lifetime_expiry_and_renewal() -> None:
    mapping = ManagedMapping(KEY, Protocol.TCP, 4321, MappingState.ACTIVE, 7200, via="upnp",
                             external_port=4321, external_address=to_address("203.0.113.7"),
                             granted_at=10.0, permanent=True)
    cells = [text for text, _ in mapping_cells(mapping, 100.0)]
    assert cells[2:6] == ["UPnP", "permanent", "permanent", "permanent"]


def test_the_panel_names_the_igd_and_warns_of_a_double_nat() -> None:
    igd = DeviceInfo("http://198.18.0.1:5000/rootDesc.xml", "FRITZ!Box\x1b[31m", "AVM",
                     "FRITZ!Box 7590", "154.07.57", 2, "urn:...:WANIPConnection:2",
                     frozenset(), False)
    status = GatewayStatus(to_address("198.18.0.1"), 5351, speaks_pcp=False,
                           speaks_natpmp=False, speaks_upnp=True, via="upnp", igd=igd,
                           warning="the IGD reports no external address: double NAT")
    text = "\n".join(line.plain for line in gateway_lines(status, 0.0))
    assert "Protocol UPnP (answered: PCP no, NAT-PMP no, UPnP yes)" in text
    assert "AVM FRITZ!Box 7590 154.07.57" in text
    assert "IGDv2" in text
    assert "\x1b" not in text   # what the network says is sanitized
    # The panel keeps the first clause of a long warning (the event log has it whole).
    assert "Warning: the IGD reports no external address" in text
    assert all(len(line) <= 78 for line in text.splitlines())


def test_a_narrow_panel_fits_58_columns_and_help_has_the_model() -> None:
    igd = DeviceInfo("http://198.18.0.1:5000/rootDesc.xml", "FRITZ!Box 7590 Home", "AVM",
                     "FRITZ!Box 7590", "154.07.57", 2, "urn:...:WANIPConnection:2",
                     frozenset(), False)
    status = GatewayStatus(to_address("192.168.178.1"), 5351,
                           local_address=to_address("192.168.178.20"), speaks_pcp=True,
                           speaks_natpmp=True, speaks_upnp=True, via="pcp", igd=igd,
                           external_address=to_address("198.51.100.200"), epoch=273600,
                           rtt=0.017, last_contact=0.0, reachable=True, restarts=2,
                           listen_error="cannot listen for gateway announcements: ...")
    lines = [line.plain for line in gateway_lines(status, 200.0, narrow=True)]
    assert lines == [
        "Gateway 192.168.178.1:5351  ·  Local 192.168.178.20",
        "External 198.51.100.200  ·  RTT 17 ms",
        "Protocol PCP (answered: PCP yes, NAT-PMP yes, UPnP yes)",
        "IGD FRITZ!Box 7590 Home  ·  IGDv2",
        "Epoch 273600 (up 3d04h)  ·  Restarts 2  ·  Reachable yes",
        "Last contact 3m20s ago  ·  Announcements off (? says why)",
    ]
    # 60 columns less the panel's padding: no line wraps, 60x20's eight rows hold them all.
    assert max(len(line) for line in lines) <= 58
    assert "IGD FRITZ!Box 7590 Home: AVM FRITZ!Box 7590 154.07.57" in [
        note.plain for note in gateway_notes(status)]
