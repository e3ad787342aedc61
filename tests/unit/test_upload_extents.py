"""Extents: the written ranges of an upload session, whose gaps must read as zeros at the end."""

from __future__ import annotations

import random
from itertools import pairwise

from vdisk.dataplane.upload import Extents


def test_extents_cover_exactly_what_was_written_in_any_order() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        e = Extents()
        cover: set[int] = set()
        for _ in range(rng.randint(0, 12)):
            a = rng.randint(0, 60)
            b = a + rng.randint(0, 10)
            e.add(a, b)
            cover |= set(range(a, b))
        assert e.ranges == sorted(e.ranges)
        assert all(x[1] < y[0] for x, y in pairwise(e.ranges)), e.ranges  # disjoint, not touching
        assert {i for a, b in e.ranges for i in range(a, b)} == cover
        assert {i for a, b in e.gaps(70) for i in range(a, b)} == set(range(70)) - cover


def test_in_order_ranges_stay_one_extent_per_run() -> None:
    e = Extents()
    for i in range(0, 100, 10):
        e.add(i, i + 10)
    assert e.ranges == [(0, 100)] and e.gaps(120) == [(100, 120)]
