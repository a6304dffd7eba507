"""Garbage collection of a service process (service_process_gc)."""

from __future__ import annotations

import gc

from lindung_runtime.service import service_process_gc


def test_a_service_process_sets_its_startup_heap_aside_from_the_collector() -> None:
    threshold = gc.get_threshold()
    try:
        service_process_gc(young_threshold=12_345)
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (12_345, *threshold[1:])
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
