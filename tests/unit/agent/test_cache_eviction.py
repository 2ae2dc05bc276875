"""Cache eviction decision (pure): least recently used unreferenced blobs go first, referenced never."""

from __future__ import annotations

import pytest

from edgefleet.agent.eviction import Blob, Eviction, plan_eviction


def d(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


# four blobs of 100 bytes, used at times 4, 1, 3, 2: LRU order is 2, 4, 3, 1
BLOBS = [Blob(d(1), 100, 4.0), Blob(d(2), 100, 1.0), Blob(d(3), 100, 3.0), Blob(d(4), 100, 2.0)]

CASES = [
    pytest.param(frozenset(), 100, 500, Eviction(), id="fits-without-evicting"),
    pytest.param(frozenset(), 100, 400, Eviction(remove=(d(2),)), id="least-recently-used-first"),
    pytest.param(frozenset(), 250, 400, Eviction(remove=(d(2), d(4), d(3))), id="as-many-as-needed-in-lru-order"),
    pytest.param(frozenset({d(2)}), 100, 400, Eviction(remove=(d(4),)), id="referenced-blob-is-skipped"),
    pytest.param(
        frozenset({d(1), d(3)}), 300, 400, Eviction(shortfall=100), id="cannot-fit-evicts-nothing-and-says-how-short"
    ),
    pytest.param(frozenset({d(1), d(2), d(3), d(4)}), 1, 400, Eviction(shortfall=1), id="all-referenced"),
]


@pytest.mark.parametrize(("referenced", "need", "budget", "expected"), CASES)
def test_plan_eviction(referenced: frozenset[str], need: int, budget: int, expected: Eviction) -> None:
    assert plan_eviction(BLOBS, referenced, need, budget) == expected


def test_equal_last_use_breaks_ties_by_digest() -> None:
    blobs = [Blob(d(9), 10, 1.0), Blob(d(5), 10, 1.0)]
    assert plan_eviction(blobs, frozenset(), need=10, budget=20).remove == (d(5),)
