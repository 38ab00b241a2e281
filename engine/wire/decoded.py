"""Messages built from fields a decoder has already checked (issue 15: CPU per packet).

A wire message's constructor checks every field (``__post_init__``), as it must for what a
caller builds. A decoder has checked the same things on the way in: the ``struct`` formats
bound every integer to its field's width and the decoder refuses what the layout does not
allow, so checking again on every packet from the gateway only costs time.
:func:`decoded` builds the frozen dataclass directly; only decoders call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["decoded"]

T = TypeVar("T")

_new = object.__new__
#: Per class, the ``__set__`` of each slot's descriptor, in field order: a slot set through
#: its descriptor costs about half of ``object.__setattr__``, which looks the name up first.
_SETTERS: dict[type, tuple[Callable[[Any, Any], None], ...]] = {}


def _setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    found = _SETTERS.get(cls)
    if found is None:
        slots: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
        found = _SETTERS[cls] = tuple(cls.__dict__[name].__set__ for name in slots)
    return found


def decoded(cls: type[T], *values: Any) -> T:
    """An instance of the slotted frozen dataclass ``cls`` with ``values`` for its fields in
    order (every field given), without running ``__post_init__``."""
    setters = _setters(cls)
    if len(values) != len(setters):  # checked once: zip(strict=True) costs more per field
        raise ValueError(f"{cls.__name__} has {len(setters)} fields, not {len(values)}")
    message = _new(cls)
    for set_field, value in zip(setters, values, strict=False):  # lengths checked above
        set_field(message, value)
    return message
