"""The cyclic garbage collector paused while a program's modules load, then what they made
frozen (:func:`frozen_imports`): for the ``natdeck`` program only, never for the library.

Importing asyncio and the engine (and, for the terminal UI, Textual) allocates tens of
thousands of objects that live as long as the process. The collector, set off by their
allocation, walked them again and again while they loaded (~40 collections, ~5 ms of a
one-shot ``natdeck map``'s ~60 ms of imports), and every later full collection, the one at
exit included, walked them again: frozen (:func:`gc.freeze`), they are never walked, and a
one-shot ``natdeck map`` took 18-23 ms less from exec to exit (issue 15). The few cycles the
imports leave behind stay with the frozen objects: a few kilobytes, once.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["frozen_imports"]


@contextmanager
def frozen_imports() -> Iterator[None]:
    """Pause the collector for the block (the imports), then freeze every object tracked so
    far and set the collector back as it was, on or off, whatever the block raised."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()
