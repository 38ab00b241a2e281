"""A package's public names, each imported from its module on first use (PEP 562).

``import engine`` (or ``engine.upnp``) then costs nothing for what a caller does not use: a
one-shot ``natdeck map`` does not load the manager, and a PCP user never loads the UPnP stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, where: Mapping[str, str], namespace: dict[str, Any],
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``where`` maps each public name to
    its module (relative to ``package``); a name, once imported, is kept in ``namespace`` (the
    package's ``globals()``) so that the next lookup does not come here."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def dir_() -> list[str]:
        return sorted({*namespace, *where})

    return getattr_, dir_
