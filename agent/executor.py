"""Carries out a plan: a table from step type to the function that performs it.

Per-step retry with capped exponential cool-off: a step that failed is skipped until its cool-off
ends (the planner keeps proposing it; this table decides when to try again), and the remaining
steps of the same module are skipped for this run (they depend on it). All cool-offs are
forgotten when the desired generation changes: a new manifest deserves a fresh attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgefleet.agent.errors import AgentError
from edgefleet.agent.plan import Plan, Step, step_module

log = logging.getLogger(__name__)

Handler = Callable[[Any], None]


@dataclass(frozen=True)
class Attempt:
    failures: int
    retry_at: float
    error: str
    exception: type[BaseException]


@dataclass
class RunResult:
    executed: list[Step] = field(default_factory=list)
    failed: list[Step] = field(default_factory=list)
    cooling: list[Step] = field(default_factory=list)


def cool_off(failures: int, base_s: float, max_s: float) -> float:
    return float(min(base_s * 2 ** max(failures - 1, 0), max_s))


class Executor:
    def __init__(self, handlers: Mapping[type, Handler], retry_base_s: float = 1.0, retry_max_s: float = 60.0) -> None:
        self._handlers = dict(handlers)
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._attempts: dict[Step, Attempt] = {}
        self._generation: int | None = None

    @property
    def failures(self) -> Mapping[Step, Attempt]:
        """Steps whose last attempt failed (cleared on success or a new generation)."""
        return dict(self._attempts)

    def next_retry_at(self) -> float | None:
        return min((a.retry_at for a in self._attempts.values()), default=None)

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
            if attempt is not None and now < attempt.retry_at:
                result.cooling.append(step)
                if module is not None:
                    blocked.add(module)
                continue
            handler = self._handlers.get(type(step))
            if handler is None:
                raise TypeError(f"no executor for step type {type(step).__name__}")
            try:
                handler(step)
            except AgentError as exc:
                failures = attempt.failures + 1 if attempt else 1
                delay = cool_off(failures, self._retry_base_s, self._retry_max_s)
                self._attempts[step] = Attempt(failures, now + delay, str(exc), type(exc))
                log.warning("step %s failed (attempt %d, next try in %.1fs): %s", step, failures, delay, exc)
                result.failed.append(step)
                if module is not None:
                    blocked.add(module)
                continue
            self._attempts.pop(step, None)
            result.executed.append(step)
        return result
