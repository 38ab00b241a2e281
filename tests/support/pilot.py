"""Waiting in a Textual app under test (``App.run_test()``): the app runs while a test waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = ["app_until"]


async def app_until(pilot: Any, predicate: Callable[[], bool], what: str = "the app",
                    timeout: float = 10.0, poll: float = 0.02) -> None:
    """Let the app run (``pilot.pause``) until ``predicate()`` holds; ``TimeoutError`` naming
    ``what`` after ``timeout`` seconds of loop time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await pilot.pause(poll)
