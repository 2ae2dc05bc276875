"""The republish decision (republish.py): when a device that reported a rejection gets the hub's
stored manifest again, and how the per-device back-off grows, caps and starts over."""

from __future__ import annotations

from itertools import pairwise

import pytest

from edgefleet.hub.server.republish import MAX_DELAY_S, Action, Backoff, Decision, decide

R, S, N = Action.REPUBLISH, Action.SUPPRESSED, Action.NOTHING


@pytest.mark.parametrize(
    ("backoff", "desired", "reported", "rejected", "now", "expected"),
    [
        # first rejection below the current generation: republish at once, then quiet for 1 s
        (None, 5, 4, True, 100.0, Decision(R, Backoff(5, 1.0, 101.0))),
        # behind without a rejection (offline, or the manifest not delivered yet): nothing, back-off kept
        (None, 5, 4, False, 100.0, Decision(N, None)),
        (Backoff(5, 2.0, 102.0), 5, 4, False, 100.5, Decision(N, Backoff(5, 2.0, 102.0))),
        # rejected again within the quiet time: suppressed, unchanged
        (Backoff(5, 1.0, 101.0), 5, 4, True, 100.5, Decision(S, Backoff(5, 1.0, 101.0))),
        # ...and once it is over: republished, the quiet time doubles (1, 2, 4 ...)
        (Backoff(5, 1.0, 101.0), 5, 4, True, 101.0, Decision(R, Backoff(5, 2.0, 103.0))),
        (Backoff(5, 2.0, 103.0), 5, 4, True, 110.0, Decision(R, Backoff(5, 4.0, 114.0))),
        # ...up to 5 min, never more
        (Backoff(5, 256.0, 400.0), 5, 4, True, 400.0, Decision(R, Backoff(5, MAX_DELAY_S, 700.0))),
        (Backoff(5, MAX_DELAY_S, 700.0), 5, 4, True, 700.0, Decision(R, Backoff(5, MAX_DELAY_S, 1000.0))),
        # it took the current generation: forgotten, even with a stale rejection reason in the report
        (Backoff(5, 64.0, 164.0), 5, 5, False, 120.0, Decision(N, None)),
        (Backoff(5, 64.0, 164.0), 5, 5, True, 120.0, Decision(N, None)),
        (None, 5, 5, True, 120.0, Decision(N, None)),  # rejected garbage, but runs the current one: nothing to fix
        # a new generation was issued since the back-off began: it starts over for that one
        (Backoff(5, 64.0, 164.0), 6, 4, True, 120.0, Decision(R, Backoff(6, 1.0, 121.0))),
        (Backoff(5, 64.0, 164.0), 6, 4, False, 120.0, Decision(N, None)),
    ],
)
def test_republish_decision(
    backoff: Backoff | None, desired: int, reported: int, rejected: bool, now: float, expected: Decision
) -> None:
    assert decide(backoff, desired, reported, rejected, now) == expected


def test_a_device_that_keeps_rejecting_gets_exponentially_fewer_republishes() -> None:
    """Reports every 0.5 s for an hour, each rejecting: republished at 0, 1, 3, 7, 15 s ... then every 5 min."""
    backoff, times = None, []
    for tick in range(2 * 3600):
        now = tick * 0.5
        decision = decide(backoff, 5, 4, True, now)
        backoff = decision.backoff
        if decision.action is Action.REPUBLISH:
            times.append(now)
    assert times[:6] == [0.0, 1.0, 3.0, 7.0, 15.0, 31.0]
    gaps = [b - a for a, b in pairwise(times)]
    assert max(gaps) == MAX_DELAY_S and gaps[-1] == MAX_DELAY_S
    assert len(times) < 25  # not 7,200
