"""How the router view looks (g), at 80x24: an SVG snapshot of the demo.

The demo's other hosts do not churn here, the listing stops after the scene and the
view's clock stands at the last listing (:func:`tui.screenshots.freeze_router`), so the
leases and the highlight of the newly opened mapping read the same on every run.
Update with ``pytest --snapshot-update`` after an intended change.
"""

from __future__ import annotations

import itertools
import logging
import types
from collections.abc import Callable

import pytest
from textual.pilot import Pilot

from tui.app import NatDeckApp
from tui.demo import DemoOptions, demo_engine
from tui.screenshots import freeze, router_scene

SNAPSHOT_PORT = 25352

SnapCompare = Callable[..., bool]


def router_demo() -> NatDeckApp:
    options = DemoOptions(port=SNAPSHOT_PORT, seed=7, timeout=5.0, probe_on_start=False,
                          churn_every=None)
    return NatDeckApp(engine=lambda: demo_engine(options), demo=True,
                      timestamp=lambda _wall: "12:00:00", engine_log_level=logging.WARNING)


async def scene(pilot: Pilot[int]) -> None:
    await router_scene(pilot)
    app = pilot.app
    assert isinstance(app, NatDeckApp)
    freeze(app)
    await pilot.pause()


def test_router_view(snap_compare: SnapCompare, monkeypatch: pytest.MonkeyPatch) -> None:
    # The listing shows natdeck's PCP nonces (miniupnpd's "PCP MAP <nonce hex>"), which
    # are random: count them instead, for the snapshot only.
    counter = itertools.count(1)
    # engine.request.new_nonce draws from its module's `os.urandom`; every caller goes through it.
    counter_source = types.SimpleNamespace(urandom=lambda n: next(counter).to_bytes(n, "big"))
    monkeypatch.setattr("engine.request.os", counter_source)
    assert snap_compare(router_demo(), terminal_size=(80, 24), run_before=scene)
