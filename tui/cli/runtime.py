"""Running a ``natdeck`` command: logging, signals, the event loop, exit statuses.

Each command's module is imported only when that command runs, so that ``natdeck map``
does not pay for the manager, the announcement listener or Textual.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from engine.errors import NatDeckError, NoGatewayError
from engine.statefile import StateFile
from tui.exit_codes import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_NO_GATEWAY,
    EXIT_USAGE,
    exit_code_for,
)
from tui.frozen_imports import frozen_imports

from .args import Connection, parse
from .context import Context, Failure, resolve_gateway
from .output import Output

__all__ = ["main", "main_async"]

#: A second SIGINT/SIGTERM this many seconds after the first abandons what ``--hold`` or
#: ``watch`` does on the way out (the delete); one sooner is taken as the same signal.
SECOND_SIGNAL_AFTER = 0.5

#: Each subcommand's module and function (imported when the command runs).
_COMMANDS: dict[str, tuple[str, str]] = {
    "map": ("tui.cli.cmd_map", "run_map"),
    "unmap": ("tui.cli.cmd_unmap", "run_unmap"),
    "probe": ("tui.cli.cmd_probe", "run_probe"),
    "watch": ("tui.cli.cmd_watch", "run_watch"),
    "list": ("tui.cli.cmd_list", "run_list"),
}


def _command(name: str) -> Callable[[Context], Awaitable[int]]:
    module, function = _COMMANDS[name]
    found: Callable[[Context], Awaitable[int]] = getattr(importlib.import_module(module),
                                                         function)
    return found


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event, task: asyncio.Task[Any] | None) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop`` (a second one, from SECOND_SIGNAL_AFTER on, cancels
    ``task``); restored on exit."""
    loop = asyncio.get_running_loop()
    installed: list[tuple[signal.Signals, Any]] = []
    first: list[float] = []

    def handler() -> None:
        # A signal within a moment of the first is the same request delivered twice (GNU
        # timeout and a terminal's process group both send one), not a user's second
        # Ctrl-C: cancelling on it would skip the delete and leave the port open.
        if stop.is_set() and task is not None and first \
                and loop.time() - first[0] >= SECOND_SIGNAL_AFTER:
            task.cancel()
        if not first:
            first.append(loop.time())
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(signum)
        try:
            loop.add_signal_handler(signum, handler)
        except (NotImplementedError, RuntimeError, ValueError):
            continue  # not the main thread, or no signals here: Ctrl-C raises instead
        installed.append((signum, previous))
    try:
        yield
    finally:
        for signum, previous in installed:
            loop.remove_signal_handler(signum)
            with contextlib.suppress(TypeError, ValueError, OSError):
                signal.signal(signum, previous)


@contextlib.contextmanager
def _logging(verbose: int) -> Iterator[None]:
    """Engine logs on stderr: errors only, ``-v`` info, ``-vv`` debug (every packet).

    Undone on exit, so that :func:`main` called in-process leaves logging as it was.
    """
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.ERROR
    root = logging.getLogger()
    statefile_log = logging.getLogger("engine.statefile")
    saved = (root.level, statefile_log.level)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("natdeck: %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    # The CLI prints the state file's warnings itself; do not print them twice.
    statefile_log.setLevel(logging.DEBUG if verbose >= 2 else logging.ERROR)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        statefile_log.setLevel(saved[1])


async def main_async(argv: Sequence[str] | None = None, *,
                     state_dir: str | os.PathLike[str] | None = None,
                     stop: asyncio.Event | None = None) -> int:
    """Run a subcommand in the running event loop; returns the exit status.

    ``state_dir`` overrides where the state file lives (else ``$NATDECK_STATE_DIR``
    or the platform's default); setting ``stop`` ends ``map --hold`` and ``watch``
    as SIGINT does. Without a subcommand (the TUI) it returns 2: use :func:`main`.
    """
    parsed = parse(argv)
    if isinstance(parsed, int):
        return parsed
    args, conn = parsed
    if args.command is None:
        Output(False).error("the terminal UI runs from main(), not main_async()")
        return EXIT_USAGE
    return await _run(args, conn, state_dir=state_dir, stop=stop)


async def _run(args: argparse.Namespace, conn: Connection, *,
               state_dir: str | os.PathLike[str] | None, stop: asyncio.Event | None) -> int:
    out = Output(getattr(args, "json", False))
    stop = stop if stop is not None else asyncio.Event()
    out.on_closed = stop.set
    try:
        gateway, local = resolve_gateway(conn)
    except NoGatewayError as exc:
        out.error(str(exc))
        return EXIT_NO_GATEWAY
    except ValueError as exc:
        out.error(str(exc))
        return EXIT_USAGE
    ctx = Context(args, conn, out, StateFile(state_dir), stop, gateway, local)
    command = _command(args.command)
    try:
        if args.command == "watch" or (args.command == "map" and args.hold) or (
                args.command == "list" and args.watch):
            with _stop_on_signals(stop, asyncio.current_task()):
                return await command(ctx)
        return await command(ctx)
    except Failure as exc:
        out.error(str(exc))
        return exc.code
    except NatDeckError as exc:
        out.error(str(exc))
        return exit_code_for(exc)


def _run_tui(args: argparse.Namespace, conn: Connection) -> int:
    try:
        with frozen_imports():  # Textual's modules too, which build_app would import
            from tui.launch import run_app
            importlib.import_module("tui.app")
    except ImportError as exc:
        Output(False).error(f"the terminal UI is not available: {exc}")
        return EXIT_FAILURE
    return int(run_app(gateway=None if conn.gateway is None else str(conn.gateway),
                       local=None if conn.local is None else str(conn.local),
                       gateway_port=conn.gateway_port, demo=args.demo,
                       maps=list(args.maps or ()), keep=args.keep, via=conn.via,
                       ssdp_port=conn.ssdp_port))


def main(argv: Sequence[str] | None = None, *,
         state_dir: str | os.PathLike[str] | None = None) -> int:
    """The ``natdeck`` console script: parse ``argv``, run, return the exit status."""
    parsed = parse(argv)
    if isinstance(parsed, int):
        return parsed
    args, conn = parsed
    if args.command is None:
        return _run_tui(args, conn)
    with _logging(conn.verbose):
        try:
            return asyncio.run(_run(args, conn, state_dir=state_dir, stop=None))
        except (KeyboardInterrupt, asyncio.CancelledError):
            # Ctrl-C in a one-shot command, or a second one while --hold deletes.
            Output(False).error("interrupted")
            return EXIT_INTERRUPTED
