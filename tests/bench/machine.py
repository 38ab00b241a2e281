"""What machine a benchmark ran on: CPU, cores, Python, the peers' versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

__all__ = ["describe", "load_average"]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(argv: list[str], marker: str = "") -> str:
    binary = shutil.which(argv[0], path=os.pathsep.join(
        [os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if binary is None:
        return "not installed"
    try:
        done = subprocess.run([binary, *argv[1:]], capture_output=True, text=True, timeout=5,
                              check=False, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in (done.stdout + done.stderr).splitlines():
        if marker in line and line.strip():
            return line.strip()
    return "unknown"


def _debian_version(package: str) -> str:
    if shutil.which("dpkg-query") is None:
        return "unknown"
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                          text=True, check=False, timeout=5)
    return done.stdout.strip() or "not installed"


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (other work on this machine skews the times)."""
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def describe() -> str:
    """A Markdown list describing this machine and the versions benchmarked."""
    cores = os.cpu_count() or 0
    load = load_average()
    lines = [
        f"- CPU: {cpu_model()}, {cores} core{'s' if cores != 1 else ''} "
        f"(load average at start: {load})",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python: {platform.python_implementation()} {platform.python_version()}",
        f"- miniupnpd: {_tool_version(['miniupnpd', '--version'], 'miniupnpd')}",
        f"- natpmpc (libnatpmp): Debian package {_debian_version('natpmpc')}",
        f"- py-natpmp: {_package_version('py-natpmp')}; textual: {_package_version('textual')}",
    ]
    return "\n".join(lines)
