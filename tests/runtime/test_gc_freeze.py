"""runtime.gc_freeze: what a process loaded leaves the collector's passes, its garbage does not."""

from __future__ import annotations

import gc
import weakref


class _Node:
    def __init__(self):
        self.other = None


def _cycle() -> weakref.ref:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # only the cycle collector frees it
    return weakref.ref(a)


def test_loaded_objects_freeze_and_garbage_is_collected_first():
    gc.collect()
    kept = [_Node() for _ in range(100)]
    garbage = _cycle()
    from planner_runtime.gc_freeze import freeze_loaded

    try:
        frozen = freeze_loaded()
        assert garbage() is None  # collected before the freeze, not kept forever
        assert frozen == gc.get_freeze_count() >= len(kept)
        tracked = {id(o) for o in gc.get_objects()}
        assert not any(id(o) in tracked for o in kept)  # no pass walks them any more
        later = _Node()
        assert id(later) in {id(o) for o in gc.get_objects()}  # what requests allocate is collected as before
        new_garbage = _cycle()
        gc.collect()
        assert new_garbage() is None
    finally:
        gc.unfreeze()
