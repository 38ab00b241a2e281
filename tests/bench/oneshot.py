"""Benchmark 6: ``natdeck map`` as a one-shot process, beside natpmpc, and what its imports cost.

A script that maps ten ports runs ten processes: what counts is the process's wall time from
exec to exit. The simulated gateway runs in a child process on loopback at 127.0.0.2:5351
(natpmpc can only talk to port 5351; every 127/8 address is this machine). natdeck and natpmpc
take turns, each run mapping a new port; the medians are compared. natpmpc asks the external
address first, then maps (two requests); ``natdeck map`` (``via=auto``) maps with one PCP
request, whose answer carries the address.

Imports: the seconds ``import tui.cli`` takes in a fresh interpreter (what ``natdeck map``
pays before it sends anything), beside the interpreter's own start.

Measured as an installed natdeck runs: with its bytecode compiled. ``pip install`` compiles
every module of a package it installs; a checkout run with ``PYTHONDONTWRITEBYTECODE=1`` (as
this development environment sets) never writes it and recompiles every module of natdeck on
every start, about 40 ms more. So :func:`compile_bytecode` compiles ``engine`` and ``tui``
first (``compileall``, as pip does), whatever the environment says.

    .venv/bin/python -m tests.bench.oneshot [--runs 10]
"""

from __future__ import annotations

import argparse
import compileall
import shutil
import sys
import tempfile
from pathlib import Path

from tests.bench.report import Goal, Table, median, ms
from tests.support.loopback import REPO_ROOT, port_free, python_env, simulator, timed_process

HOST = "127.0.0.2"
FIRST_PORT = 45000
_IMPORT = ("import time; start = time.perf_counter(); import tui.cli; "
           "print(time.perf_counter() - start)")


def natdeck_command() -> list[str]:
    """How a user runs natdeck: the installed console script, else ``python -m tui.cli``."""
    script = Path(sys.executable).parent / "natdeck"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tui.cli"]


def compile_bytecode() -> None:
    """Compile natdeck's modules, as ``pip install`` does (see the module)."""
    for package in ("engine", "tui"):
        if not compileall.compile_dir(str(REPO_ROOT / package), quiet=1):
            raise RuntimeError(f"compiling {package} failed")


def import_seconds(runs: int) -> tuple[float, float]:
    """(median seconds of ``import tui.cli`` in a fresh interpreter, of the interpreter's start
    and exit alone)."""
    compile_bytecode()
    imports, bare = [], []
    for _ in range(runs):
        _, done = timed_process([sys.executable, "-c", _IMPORT], env=python_env())
        if done.returncode != 0:
            raise RuntimeError(f"import tui.cli failed: {done.stderr[-500:]}")
        imports.append(float(done.stdout.strip().splitlines()[-1]))
        took, _ = timed_process([sys.executable, "-c", "pass"], env=python_env())
        bare.append(took)
    return median(imports), median(bare)


def measure(runs: int) -> dict[str, list[float]]:
    """Wall seconds per run: ``natdeck map`` and (if it can run) natpmpc, interleaved."""
    times: dict[str, list[float]] = {"natdeck map": [], "natpmpc": []}
    natpmpc = shutil.which("natpmpc")
    if not port_free(HOST, 5351):
        raise RuntimeError(f"{HOST}:5351 is taken")
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="natdeck-bench-") as state, \
            simulator(host=HOST, port=5351) as sim:
        env = python_env()
        env["NATDECK_STATE_DIR"] = state
        natdeck = natdeck_command()
        for run in range(runs + 1):  # the first, untimed, warms the page cache
            port = FIRST_PORT + 2 * run
            took, done = timed_process([*natdeck, "map", "tcp", str(port), "--gateway",
                                        sim.host, "--local", "127.0.0.1"], env=env)
            if done.returncode != 0:
                raise RuntimeError(f"natdeck map exited {done.returncode}: {done.stderr[-500:]}")
            if run:
                times["natdeck map"].append(took)
            if natpmpc is not None:
                took, done = timed_process([natpmpc, "-g", sim.host, "-a", str(port + 1),
                                            str(port + 1), "tcp", "3600"])
                if done.returncode != 0:
                    raise RuntimeError(f"natpmpc exited {done.returncode}: {done.stdout[-300:]}")
                if run:
                    times["natpmpc"].append(took)
    return times


def render(times: dict[str, list[float]], imports: float, interpreter: float) -> str:
    """Markdown: wall time per process, and the import cost."""
    runs = len(times["natdeck map"])
    table = Table(["one-shot process", "median wall ms", "fastest ms", "slowest ms"])
    for name, samples in times.items():
        if samples:
            table.add(name, ms(median(samples), 1), ms(min(samples), 1), ms(max(samples), 1))
    table.add("`import tui.cli` (inside a fresh interpreter)", ms(imports, 1), "—", "—")
    table.add("the interpreter alone (`python -c pass`)", ms(interpreter, 1), "—", "—")
    return "\n".join([
        "### `natdeck map` as a one-shot process, beside natpmpc",
        "",
        f"Median of {runs} interleaved run{'s' if runs != 1 else ''} against a simulated "
        "gateway in a child process on loopback, each run a new port; exec to exit. "
        "natpmpc: external address then mapping (two requests); natdeck: one PCP MAP. "
        "natdeck runs as installed: its bytecode compiled first (`compileall`, as `pip "
        "install` does), since this environment sets `PYTHONDONTWRITEBYTECODE=1`, with "
        "which every start would recompile every natdeck module.",
        "",
        table.render(),
    ])


def goals(times: dict[str, list[float]], imports: float, interpreter: float) -> list[Goal]:
    """Issue 15: a one-shot ``natdeck map`` within 100 ms, its imports within 60 ms."""
    natpmpc = times.get("natpmpc") or []
    peer = f"natpmpc {ms(median(natpmpc), 1)} ms" if natpmpc else "natpmpc not run"
    return [
        Goal("`natdeck map` one-shot process, wall", median(times["natdeck map"]), 0.100, "ms",
             peer),
        Goal("`natdeck map`: `import tui.cli`", imports, 0.060, "ms",
             f"the interpreter alone {ms(interpreter, 1)} ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    times = measure(args.runs)
    imports, interpreter = import_seconds(args.runs)
    print(render(times, imports, interpreter))
    return 0


if __name__ == "__main__":
    sys.exit(main())
