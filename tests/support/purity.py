"""What keeps tests/unit pure (its conftest applies it): no socket, no event loop, no process.

- :func:`refuse_async`: an ``async def`` test or fixture fails before it is set up.
- :func:`forbid_impurity`: while a test runs, making a socket, an event loop or a child process
  raises :class:`ImpureTest`.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import socket
import subprocess
from typing import Any

import pytest

__all__ = ["ImpureTest", "forbid_impurity", "refuse_async"]

MOVE = "tests/unit is pure; a test that needs {} belongs in tests/sim"


class ImpureTest(AssertionError):
    """A test in tests/unit reached for a socket, an event loop or a process."""


def _forbid(what: str) -> Any:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ImpureTest(MOVE.format(what))

    return refuse


def _is_async(function: object) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)


def refuse_async(item: pytest.Item) -> None:
    """Raise :class:`ImpureTest` if ``item`` or one of its fixtures is ``async``."""
    if _is_async(getattr(item, "obj", None)):
        raise ImpureTest(MOVE.format(f"an event loop ({item.name} is async)"))
    fixture_info = getattr(item, "_fixtureinfo", None)
    definitions = fixture_info.name2fixturedefs if fixture_info is not None else {}
    for name, defs in definitions.items():
        if any(_is_async(definition.func) for definition in defs):
            raise ImpureTest(MOVE.format(f"an event loop (its fixture {name} is async)"))


def forbid_impurity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until ``monkeypatch`` is undone, no socket, event loop or child process can be made."""
    # Every asyncio loop is a BaseEventLoop; socketpair, create_connection and asyncio's
    # transports all make a socket.socket; subprocess.run and asyncio's subprocesses make a
    # Popen; multiprocessing forks (or spawns, through a Popen of its own that forks too).
    # __init__ is replaced, not __new__: CPython does not give a class its own __new__ back
    # once a patched one is deleted.
    monkeypatch.setattr(socket.socket, "__init__", _forbid("a socket"))
    monkeypatch.setattr(socket, "socketpair", _forbid("a socket"))  # before it makes the fds
    monkeypatch.setattr(asyncio.BaseEventLoop, "__init__", _refuse_loop)
    monkeypatch.setattr(subprocess.Popen, "__init__", _forbid("a child process"))
    monkeypatch.setattr(os, "fork", _forbid("a child process"))


def _refuse_loop(self: asyncio.BaseEventLoop, *args: object, **kwargs: object) -> None:
    # The refused loop counts as closed, so that its finalizer has nothing to warn about.
    self._closed = True  # type: ignore[attr-defined]
    raise ImpureTest(MOVE.format("an event loop"))
