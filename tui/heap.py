"""Keep the garbage collector's full passes off the one-second tick.

A full (generation 2) collection walks every object the process holds; with
1,000 mappings (their views, rows, the table's render caches) that is about
100 ms, and it lands on whatever allocates at that moment, mostly the tick:
six frames lost, once in a while. After the app has built up a set of
long-lived objects, :class:`HeapSettler` collects once and moves every
survivor to the permanent generation (:func:`gc.freeze`), so the collections
that follow walk only what is new. It does so again only when the mappings
have grown a lot since, so the cost is one pause after a large change (when
many rows were just added), not one every few seconds.
"""

from __future__ import annotations

import gc

__all__ = ["HeapSettler"]


class HeapSettler:
    """Freezes the heap when the number of mappings has grown past a threshold."""

    def __init__(self, *, minimum: int = 200, growth: float = 1.5) -> None:
        self.minimum = minimum
        """Below this many mappings a full collection is cheap: nothing is frozen."""
        self.growth = growth
        self.settled_at = 0
        """How many mappings there were at the last freeze."""
        self.freezes = 0

    def settle(self, mappings: int) -> bool:
        """Collect and freeze if ``mappings`` reached the threshold; True if it did."""
        if mappings < self.minimum or mappings < self.settled_at * self.growth:
            return False
        gc.collect()
        gc.freeze()
        self.settled_at = mappings
        self.freezes += 1
        return True
