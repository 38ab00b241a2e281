"""What tests and benchmarks on loopback share: free ports, waiting, processes they start.

- :func:`free_udp_port`, :func:`port_free`, :func:`ipv6_loopback_available`: what can be bound.
- :func:`until`: wait on the running loop for something it has yet to deliver.
- :func:`python_env`: the environment a child Python needs to import this checkout.
- :func:`simulator`: a simulated gateway (``python -m engine.simulator``) in a child process,
  so that the CPU time of the process measuring is the client's alone.
- :func:`timed_process`: one command's wall time, as a shell user would run it.

Nothing here sends a packet anywhere but loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LOOPBACK", "REPO_ROOT", "Simulator", "free_udp_port", "ipv6_loopback_available",
           "port_free", "python_env", "simulator", "timed_process", "until"]

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port on ``host`` (IPv4 or IPv6) that nothing is bound to right now: also a port
    nothing answers on, for a gateway that is not there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_free(host: str, port: int) -> bool:
    """Whether UDP ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def ipv6_loopback_available() -> bool:
    """Whether a UDP socket can bind ::1 here (containers often have IPv6 off)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def until(condition: Callable[[], bool], within: float = 1.0,
                poll: float = 0.005, *, what: str = "the condition") -> None:
    """Wait (loop time) until ``condition()`` holds; ``TimeoutError`` after ``within`` s.

    In a Textual app under test, :func:`tests.support.pilot.app_until` lets the app run too.
    """
    try:
        async with asyncio.timeout(within):
            while not condition():
                await asyncio.sleep(poll)
    except TimeoutError:
        raise TimeoutError(f"timed out after {within} s waiting for {what}") from None


def python_env() -> dict[str, str]:
    """The environment for a child Python: this checkout importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class Simulator:
    """A simulated gateway running in a child process."""

    host: str
    port: int
    process: subprocess.Popen[str]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def simulator(*args: str, host: str = LOOPBACK, port: int = 0,
              code: str | None = None) -> Iterator[Simulator]:
    """A simulated gateway in a child process (loopback only), stopped on exit.

    By default ``python -m engine.simulator --host HOST --port PORT ARGS``; ``code`` runs other
    Python instead, which must print the same first line (``{"host": ..., "port": ...}``).
    """
    if code is None:
        argv = [sys.executable, "-m", "engine.simulator", "--host", host, "--port", str(port),
                *args]
    else:
        argv = [sys.executable, "-c", code, *args]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=REPO_ROOT, env=python_env(), stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"simulator did not start: {process.communicate()[1][-500:]}")
        info = json.loads(line)
        yield Simulator(info["host"], int(info["port"]), process)
    finally:
        _stop(process)


def timed_process(argv: Sequence[str], *, env: dict[str, str] | None = None,
                  timeout: float = 30.0) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` to completion; (wall seconds from start to exit, the finished process)."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False,
                          timeout=timeout, env=env, cwd=REPO_ROOT, stdin=subprocess.DEVNULL)
    return time.perf_counter() - start, done
