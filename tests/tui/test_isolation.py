"""The layering: the engine never imports Textual (the TUI sits on top of it, not in it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHECK = """
import sys
import engine, engine.client, engine.manager, engine.events, engine.discovery
import engine.simulator, engine.announce
import tui.map_request, tui.formatting, tui.safe_text, tui.presentation
loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(",".join(loaded))
"""


def test_the_engine_does_not_import_textual() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""


def test_nothing_in_engine_mentions_textual() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in (ROOT / "engine").rglob("*.py")
                 if "textual" in path.read_text(encoding="utf-8")]
    assert offenders == []


def test_the_app_builds_no_packets() -> None:
    # The app talks to the manager only: messages and sockets are the engine's business.
    # (tui/cli/, the command line, is another front end with its own tests.)
    layers = ("engine.wire", "engine.transport", "engine.client", "import socket")
    offenders = [
        f"{path.relative_to(ROOT)}: {layer}"
        for path in (ROOT / "tui").rglob("*.py") if (ROOT / "tui" / "cli") not in path.parents
        for layer in layers if layer in path.read_text(encoding="utf-8")
    ]
    # The demo asks the OS for a free port (bind, read, close; nothing is sent).
    assert offenders == ["tui/demo.py: import socket"]
