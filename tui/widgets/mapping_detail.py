"""The detail line under the mappings table: all that is known about the selected mapping."""

from __future__ import annotations

from rich.text import Text

from .text_panel import TextPanel

__all__ = ["MappingDetail"]


class MappingDetail(TextPanel):
    """Shows the lines :func:`tui.mapping_detail.detail_lines` computes; long lines wrap."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(Text(""), id=id)
