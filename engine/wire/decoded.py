"""Messages built from fields a decoder has already checked (issue 15: CPU per packet).

A wire message's constructor checks every field (``__post_init__``), as it must for what a
caller builds. A decoder has checked the same things on the way in: the ``struct`` formats
bound every integer to its field's width and the decoder refuses what the layout does not
allow, so checking again on every packet from the gateway only costs time.
:func:`decoded` builds the frozen dataclass directly; only decoders call it.
"""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["decoded"]

T = TypeVar("T")

_new = object.__new__
_set = object.__setattr__


def decoded(cls: type[T], *values: Any) -> T:
    """An instance of the slotted frozen dataclass ``cls`` with ``values`` for its fields in
    order (every field given), without running ``__post_init__``."""
    message = _new(cls)
    for name, value in zip(cls.__slots__, values, strict=True):  # type: ignore[attr-defined]
        _set(message, name, value)
    return message
