"""The range check of a fixed-width wire field, shared by the PCP messages and options."""

from __future__ import annotations

__all__ = ["check_bits"]


def check_bits(name: str, value: int, bits: int) -> None:
    """Raise :class:`ValueError` unless ``value`` fits in ``bits`` unsigned bits."""
    if not 0 <= value < (1 << bits):
        raise ValueError(f"{name} must be 0-{(1 << bits) - 1}, not {value}")
