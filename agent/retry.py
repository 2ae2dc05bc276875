"""When to try a failed thing again: capped exponential cool-off, or not before a new generation.

Shared by the plan runner (failed steps) and the background fetcher (failed downloads), so the
cache needs neither the runner nor the planner. The error's recovery class decides
(``errors.is_permanent``): a permanent error gets no retry time at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgefleet.agent.errors import is_permanent


@dataclass(frozen=True)
class RetryTuning:
    base_s: float = 1.0
    max_s: float = 60.0


@dataclass(frozen=True)
class Attempt:
    """The last failed attempt at one thing (a step, a download)."""

    failures: int  # consecutive failures so far
    retry_at: float | None  # not before this time; None: permanent, not before the generation changes
    error: str
    exception: type[BaseException]

    @property
    def permanent(self) -> bool:
        return self.retry_at is None


def cool_off(failures: int, base_s: float, max_s: float) -> float:
    """Delay after the ``failures``-th consecutive failure: base, 2 x base, 4 x base ... up to the cap."""
    return float(min(base_s * 2 ** max(failures - 1, 0), max_s))


def failed_attempt(error: BaseException, previous: Attempt | None, now: float, tuning: RetryTuning) -> Attempt:
    """The record of one more failure: retried after a cool-off, unless the error is permanent."""
    failures = previous.failures + 1 if previous is not None else 1
    retry_at = None if is_permanent(error) else now + cool_off(failures, tuning.base_s, tuning.max_s)
    return Attempt(failures, retry_at, str(error), type(error))


def may_try(attempt: Attempt | None, now: float) -> bool:
    """Whether something whose last attempt is ``attempt`` (None: never failed) may be tried at ``now``."""
    return attempt is None or (attempt.retry_at is not None and now >= attempt.retry_at)
