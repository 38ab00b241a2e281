"""The gateway panel: where the gateway is, what it speaks, what it said last."""

from __future__ import annotations

from rich.text import Text

from .text_panel import TextPanel

__all__ = ["GatewayPanel"]


class GatewayPanel(TextPanel):
    """Shows the lines :func:`tui.presentation.gateway_lines` computes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text("Starting…", style="dim"), id=id)
        self.border_title = "Gateway"
