"""Fixtures for the CLI tests: a simulated gateway on loopback, a private state directory.

Every command the tests run names the simulated gateway (``--gateway 127.0.0.1
--gateway-port <port>``); as a safety net, discovery is replaced for the in-process
runs by a function that refuses, so a test that forgot ``--gateway`` fails (exit 4)
instead of talking to the machine's real gateway.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.errors import NoGatewayError
from engine.simulator import GatewayConfig, SimulatedGateway
from tests.support.loopback import REPO_ROOT, python_env
from tui import cli

__all__ = ["Result", "Sim", "run_process"]


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own state directory (also for its subprocesses)."""
    directory = tmp_path / "state"
    monkeypatch.setenv("NATDECK_STATE_DIR", str(directory))
    return directory


@pytest.fixture(autouse=True)
def _no_discovery(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise NoGatewayError("tests never discover the real gateway; pass --gateway")

    monkeypatch.setattr("engine.discovery.discover", refuse)


@dataclass
class Sim:
    """A running simulated gateway and how to point the CLI at it."""

    gateway: SimulatedGateway

    @property
    def port(self) -> int:
        return self.gateway.address[1]

    @property
    def target(self) -> list[str]:
        return ["--gateway", "127.0.0.1", "--gateway-port", str(self.port)]

    def mapped(self) -> dict[tuple[int, int], Any]:
        """{(protocol, internal port): mapping} alive at the gateway."""
        return {(int(m.protocol), m.internal_port): m for m in self.gateway.mappings}


@pytest.fixture
async def make_sim() -> AsyncIterator[Any]:
    """``await make_sim(**config)``: a started SimulatedGateway on 127.0.0.1 (closed after)."""
    started: list[SimulatedGateway] = []

    async def make(**config: Any) -> Sim:
        gateway = SimulatedGateway("127.0.0.1", 0, config=GatewayConfig(**config))
        await gateway.start()
        started.append(gateway)
        return Sim(gateway)

    yield make
    for gateway in started:
        await gateway.close()
        assert gateway.internal_errors == []


@pytest.fixture
async def sim(make_sim: Any) -> Sim:
    """A simulated gateway speaking both protocols, strict about nonces (as miniupnpd)."""
    result: Sim = await make_sim()
    return result


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()

    @property
    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    """``await run(*argv, stop=None)``: the CLI in-process; returns code, stdout, stderr."""

    async def go(*argv: str, stop: asyncio.Event | None = None) -> Result:
        capsys.readouterr()
        code = await cli.main_async(list(argv), stop=stop)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return go


async def run_process(*argv: str, timeout: float = 30) -> Result:
    """Run ``python -m tui.cli ARGV`` to completion while this loop keeps serving."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tui.cli", *argv, cwd=REPO_ROOT, env=python_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())
