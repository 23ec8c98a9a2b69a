"""The member's garbage-collector settings: start-up objects frozen, young
collections far apart, older thresholds kept."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from p2pledger.node.gctune import YOUNG_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_freezes_startup_objects_and_spaces_young_collections(
    restored_gc: tuple[int, int, int],
) -> None:
    gc.unfreeze()
    survivor = [object() for _ in range(100)]  # alive at start-up: frozen with the rest
    tune_gc()
    assert gc.get_freeze_count() >= len(survivor)
    young, older, oldest = gc.get_threshold()
    assert young == YOUNG_THRESHOLD > restored_gc[0]
    assert (older, oldest) == restored_gc[1:]


def test_cyclic_garbage_is_still_collected_by_itself_after_tuning(
    restored_gc: tuple[int, int, int],
) -> None:
    tune_gc()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: reference counting alone never frees it
    gone = [False]
    weakref.finalize(a, gone.__setitem__, 0, True)
    del a, b
    assert not gone[0]
    keep = [[] for _ in range(2 * YOUNG_THRESHOLD)]  # enough allocations for a pass
    assert gone[0], "no young collection ran after 2 x the threshold of allocations"
    assert len(keep) == 2 * YOUNG_THRESHOLD
