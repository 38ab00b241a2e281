"""Fixtures for the TUI tests: the app on a simulated gateway on loopback.

Every packet goes to 127.0.0.1: the simulated gateway listens on a port the
kernel picks, and its announcements go, unicast, to the manager's listener on
another free loopback port. Nothing is ever sent anywhere else.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import textual._wait
from textual.pilot import Pilot

from engine.events import MappingKey, MappingState
from engine.manager import MappingManager
from engine.simulator import GatewayConfig, SimulatedGateway
from tests.support.loopback import free_udp_port
from tests.support.pilot import app_until
from tui.app import NatDeckApp
from tui.backend import using
from tui.demo import SimulatorControls

HOST = "127.0.0.1"

__all__ = ["DemoGateway", "app_until", "mapped", "quit_app", "started"]


#: Pilot waits after every key until the process is idle, in steps of 20 ms (Textual's
#: ``_wait.SLEEP_GRANULARITY``): 40 ms a key, most of a TUI test's time. Steps of 5 ms with the
#: same test (idle: less than 5 % of a step spent on the CPU) wait a quarter of that.
IDLE_STEP = 0.005


@pytest.fixture(autouse=True)
def _short_idle_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(textual._wait, "SLEEP_GRANULARITY", IDLE_STEP)
    monkeypatch.setattr(textual._wait, "SLEEP_IDLE", IDLE_STEP / 20)


@dataclass
class DemoGateway:
    """A simulated gateway and what is needed to build managers and apps on it."""

    gateway: SimulatedGateway
    announce_port: int

    def manager(self, **options: Any) -> MappingManager:
        """A manager on the simulated gateway (not entered: the app's worker enters it)."""
        settings: dict[str, Any] = dict(
            gateway_port=self.gateway.address[1], local_address=HOST, announce_host=HOST,
            announce_ports=(self.announce_port,), multicast=False, rng=random.Random(3),
            timeout=2.0)
        settings.update(options)
        return MappingManager(HOST, **settings)

    def app(self, manager: MappingManager | None = None, *, demo: bool = False,
            **options: Any) -> NatDeckApp:
        """The app on ``manager`` (default: a new one); ``demo`` adds the demo keys."""
        manager = manager if manager is not None else self.manager()
        controls = SimulatorControls(self.gateway) if demo else None
        return NatDeckApp(engine=using(manager, controls), demo=demo, **options)


@pytest.fixture
async def demo_gateway() -> AsyncIterator[DemoGateway]:
    """A well-behaved PCP + NAT-PMP gateway on 127.0.0.1, up for a while (epoch 100000)."""
    announce_port = free_udp_port()
    config = GatewayConfig(announce_targets=((HOST, announce_port),), announce_count=2,
                           announce_first_interval=0.05, initial_epoch=100_000)
    async with SimulatedGateway(HOST, 0, "203.0.113.7", config) as gateway:
        yield DemoGateway(gateway, announce_port)
        assert gateway.internal_errors == [], "the simulated gateway failed to answer"


def app_of(pilot: Pilot[int]) -> NatDeckApp:
    app = pilot.app
    assert isinstance(app, NatDeckApp)
    return app


async def started(pilot: Pilot[int], *, probed: bool = True) -> NatDeckApp:
    """Wait until the engine runs (and, with ``probed``, the first probe is logged)."""
    app = app_of(pilot)

    def ready() -> bool:
        if not app.engine_started or not app.engine_running:
            return False
        return not probed or logged(app, "probe:")

    await app_until(pilot, ready, "the engine to start")
    return app


async def mapped(pilot: Pilot[int], app: NatDeckApp, *keys: MappingKey,
                 shown: bool = False) -> None:
    """Wait until every mapping of ``keys`` is active (and, with ``shown``, has its row)."""
    def active() -> bool:
        manager = app.manager
        return manager is not None and all(
            k in manager.mappings and manager.mappings[k].state is MappingState.ACTIVE
            for k in keys)

    await app_until(pilot, active, f"{keys} to be mapped")
    if shown:
        await app_until(pilot, lambda: all(k in app.main.table.shown_keys for k in keys),
                        f"the rows of {keys}")


def logged(app: NatDeckApp, fragment: str) -> bool:
    """Whether a line of the event log contains ``fragment``."""
    return any(fragment in line for line in app.main.events.lines_written)


async def quit_app(pilot: Pilot[int], timeout: float = 10.0) -> None:
    """Press q and wait for the app to finish leaving (its mappings deleted)."""
    app = app_of(pilot)
    await pilot.press("q")
    await app_until(pilot, lambda: app.return_code is not None or not app.is_running,
                    "the app to exit", timeout)
