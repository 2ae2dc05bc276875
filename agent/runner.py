"""Runs a plan step by step, with per-step retry decided by the error's recovery class.

A step that failed with a temporary error is skipped until its capped exponential cool-off ends
(the planner keeps proposing it; the runner decides when to try again); one that failed with a
permanent error is not tried again until the desired generation changes. Either way the remaining
steps of the same module are skipped for this run (they depend on it). All attempts are forgotten
when the generation changes: a new manifest deserves a fresh attempt. What each step does is the
executors' business (``executors.Executors``): the runner only sees a callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from edgefleet.agent.errors import AgentError
from edgefleet.agent.plan import Plan, Step, step_module
from edgefleet.agent.retry import Attempt, RetryTuning, failed_attempt, may_try

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    executed: list[Step] = field(default_factory=list)
    failed: list[Step] = field(default_factory=list)
    cooling: list[Step] = field(default_factory=list)  # skipped: a temporary failure's cool-off runs
    held: list[Step] = field(default_factory=list)  # skipped: failed permanently in this generation


class PlanRunner:
    def __init__(self, execute: Callable[[Step], None], retry_base_s: float = 1.0, retry_max_s: float = 60.0) -> None:
        self._execute = execute
        self._tuning = RetryTuning(retry_base_s, retry_max_s)
        self._attempts: dict[Step, Attempt] = {}
        self._generation: int | None = None

    @property
    def failures(self) -> Mapping[Step, Attempt]:
        """Steps whose last attempt failed (cleared on success or a new generation)."""
        return dict(self._attempts)

    def next_retry_at(self) -> float | None:
        """When the earliest cool-off ends (permanent failures wait for a generation, not a time)."""
        return min((a.retry_at for a in self._attempts.values() if a.retry_at is not None), default=None)

    def run(self, plan: Plan, generation: int, now: float) -> RunResult:
        if generation != self._generation:
            self._attempts.clear()
            self._generation = generation
        result = RunResult()
        blocked: set[str] = set()
        for step in plan.steps:
            module = step_module(step)
            if module is not None and module in blocked:
                continue
            attempt = self._attempts.get(step)
            if not may_try(attempt, now):
                assert attempt is not None
                (result.held if attempt.permanent else result.cooling).append(step)
                if module is not None:
                    blocked.add(module)
                continue
            try:
                self._execute(step)
            except AgentError as exc:
                attempt = self._attempts[step] = failed_attempt(exc, attempt, now, self._tuning)
                if attempt.retry_at is None:
                    log.warning("step %s failed permanently (not retried in generation %d): %s", step, generation, exc)
                else:
                    log.warning(
                        "step %s failed (attempt %d, next try in %.1fs): %s",
                        step,
                        attempt.failures,
                        attempt.retry_at - now,
                        exc,
                    )
                result.failed.append(step)
                if module is not None:
                    blocked.add(module)
                continue
            self._attempts.pop(step, None)
            result.executed.append(step)
        return result
