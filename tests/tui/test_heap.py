"""The heap is frozen after the mappings grew a lot, and not on every tick."""

from __future__ import annotations

import gc

from tui.heap import HeapSettler


def test_freezes_once_per_large_growth() -> None:
    settler = HeapSettler(minimum=200, growth=1.5)
    try:
        assert not settler.settle(10)
        assert settler.settle(200)
        assert gc.get_freeze_count() > 0
        assert not settler.settle(250)
        assert settler.settle(300)
        assert not settler.settle(300)
        assert settler.freezes == 2
    finally:
        gc.unfreeze()
