"""Pure decision: publish a device's current manifest again, after it reported rejecting one?

A device reports ``rejected`` when it refused the last desired-state message it got. When it also
reports a generation below the hub's, it never took the current manifest: e.g. an attacker left
garbage retained on its desired topic while it was offline, over the hub's manifest. Publishing the
stored manifest again (retained) gives it back. But a device that refuses the real manifest too (it
pinned another hub key) would go on refusing it, so republishes back off per device: 1 s, 2 s, 4 s …
at most 5 min apart, starting over when the device reports the current generation or the hub issues
a new one. The clock is the caller's (``now``), so the table can be tested without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

FIRST_DELAY_S = 1.0
MAX_DELAY_S = 300.0


@dataclass(frozen=True)
class Backoff:
    """One device's republishing so far, of one generation."""

    generation: int  # the manifest republished
    delay_s: float  # the quiet time after the last republish; doubled by the next one
    quiet_until: float  # no republish before this time (the caller's clock)


class Action(Enum):
    NOTHING = "nothing"  # the device took the current generation, or did not reject anything
    REPUBLISH = "republish"
    SUPPRESSED = "suppressed"  # a republish is called for, but the back-off holds it


@dataclass(frozen=True)
class Decision:
    action: Action
    backoff: Backoff | None  # what to keep for the device from now on (None: nothing)


def decide(
    backoff: Backoff | None, desired_generation: int, reported_generation: int, rejected: bool, now: float
) -> Decision:
    """What to do about one believed report of a device whose current manifest is ``desired_generation``."""
    if reported_generation >= desired_generation:
        return Decision(Action.NOTHING, None)  # it runs the current manifest: start over
    if backoff is not None and backoff.generation != desired_generation:
        backoff = None  # a new generation was issued since: a fresh start for it
    if not rejected:
        return Decision(Action.NOTHING, backoff)  # still on its way (offline, or not yet delivered)
    if backoff is not None and now < backoff.quiet_until:
        return Decision(Action.SUPPRESSED, backoff)
    delay = FIRST_DELAY_S if backoff is None else min(backoff.delay_s * 2, MAX_DELAY_S)
    return Decision(Action.REPUBLISH, Backoff(desired_generation, delay, now + delay))
