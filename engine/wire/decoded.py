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
#: Per class, the function that builds it from its fields in order (:func:`_builder`).
_BUILDERS: dict[type, Callable[..., Any]] = {}


def _builder(cls: type) -> Callable[..., Any]:
    """A function of the class's fields, in order, building an instance of the slotted
    dataclass ``cls`` with each slot set through its descriptor's ``__set__`` (about half the
    cost of ``object.__setattr__``, which looks the name up first), one statement a field:
    generated once per class, as :mod:`dataclasses` generates ``__init__``, since a loop over
    the fields cost twice the sets themselves. Only the number of fields goes into the code."""
    slots: tuple[str, ...] = cls.__slots__  # type: ignore[attr-defined]
    setters = {f"set{i}": cls.__dict__[name].__set__ for i, name in enumerate(slots)}
    values = [f"value{i}" for i in range(len(slots))]
    source = "\n".join([f"def build({', '.join(values)}):", "    made = new(cls)",
                        *(f"    set{i}(made, {value})" for i, value in enumerate(values)),
                        "    return made"])
    namespace: dict[str, Any] = {"new": _new, "cls": cls, **setters}
    exec(source, namespace)  # noqa: S102 - names and counts of our own, no input
    build: Callable[..., Any] = namespace["build"]
    return build


def decoded(cls: type[T], *values: Any) -> T:
    """An instance of the slotted frozen dataclass ``cls`` with ``values`` for its fields in
    order (every field given), without running ``__post_init__``."""
    build = _BUILDERS.get(cls)
    if build is None:
        build = _BUILDERS[cls] = _builder(cls)
    try:
        made: T = build(*values)
    except TypeError:  # the count is checked only when it is wrong: free otherwise
        fields = len(cls.__slots__)  # type: ignore[attr-defined]
        if len(values) == fields:
            raise
        raise ValueError(f"{cls.__name__} has {fields} fields, not {len(values)}") from None
    return made
