"""tests/unit is pure: no socket, no event loop, no child process (issue 12).

Every test here feeds the code bytes and ``now`` and asserts on what comes back, so the whole
tier runs in seconds and means the same on any machine. This conftest enforces it rather than
trusting it:

- an ``async def`` test or fixture fails before it is set up: pytest-asyncio would run it on an
  event loop of its own (``asyncio_mode = "auto"``), made before any fixture of ours could stop
  it;
- during each test, making a socket (``socket.socket`` and everything built on it:
  ``socketpair``, ``create_connection``, asyncio's transports), an event loop (every asyncio loop
  is a ``BaseEventLoop``, and a selector loop also needs a socketpair), or a child process
  (``subprocess.Popen``, which ``run`` and asyncio's subprocesses use) raises
  :class:`~tests.support.purity.ImpureTest` saying what to do.

A test that needs any of them belongs in tests/sim (named by the behaviour it checks).
"""

from __future__ import annotations

import pytest

from tests.support.purity import forbid_impurity, refuse_async


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    refuse_async(item)


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch) -> None:
    """No socket, no event loop, no child process while a unit test runs."""
    forbid_impurity(monkeypatch)
