"""tests/unit/conftest.py keeps this tier pure (tests/support/purity.py): each way out is
refused, loudly, in this very tier."""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any, cast

import pytest

from tests.support.purity import ImpureTest, refuse_async


def test_a_socket_is_refused() -> None:
    with pytest.raises(ImpureTest, match="a socket belongs in tests/sim"):
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(ImpureTest):
        socket.socketpair()


def test_an_event_loop_is_refused() -> None:
    with pytest.raises(ImpureTest, match="an event loop belongs in tests/sim"):
        asyncio.new_event_loop()

    async def nothing() -> None:
        return None

    coroutine = nothing()
    with pytest.raises(ImpureTest):
        asyncio.run(coroutine)
    coroutine.close()


def test_a_child_process_is_refused() -> None:
    with pytest.raises(ImpureTest, match="a child process belongs in tests/sim"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)
    with pytest.raises(ImpureTest):
        multiprocessing.get_context("fork").Process(target=print).start()


async def _async_test() -> None:
    return None


async def _async_fixture() -> AsyncIterator[None]:
    yield None


def _item(function: Any, **fixtures: Any) -> pytest.Item:
    definitions = {name: [SimpleNamespace(func=func)] for name, func in fixtures.items()}
    return cast(pytest.Item, SimpleNamespace(
        obj=function, name=function.__name__,
        _fixtureinfo=SimpleNamespace(name2fixturedefs=definitions)))


def test_an_async_test_or_fixture_fails_before_its_loop_is_made() -> None:
    with pytest.raises(ImpureTest, match="_async_test is async"):
        refuse_async(_item(_async_test))
    with pytest.raises(ImpureTest, match="its fixture gateway is async"):
        refuse_async(_item(test_a_socket_is_refused, gateway=_async_fixture))
    refuse_async(_item(test_a_socket_is_refused, plain=_item))  # a pure test passes
