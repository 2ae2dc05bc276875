"""Plan runner: per-step cool-off for temporary errors, no retry of a permanent one until the generation
changes, skipping a failed module's later steps, reset per generation."""

from __future__ import annotations

import pytest

from edgefleet.agent.errors import (
    AgentError,
    ArtifactCorrupt,
    ArtifactDownloadError,
    CacheFull,
    HubKeyUnavailable,
    ResourceLimitError,
    RuntimeFailure,
    RuntimeUnavailable,
    SettingsError,
    StateError,
    UnknownModule,
    is_permanent,
)
from edgefleet.agent.plan import CreateModule, FetchArtifact, Plan, RemoveModule, StartModule, StopModule
from edgefleet.agent.retry import cool_off
from edgefleet.agent.runner import PlanRunner
from edgefleet.protocol import ModuleSpec

FETCH = FetchArtifact("sha256:" + "0" * 64, "http://h/a", 1)
STOP_A, START_A = StopModule("a", "a@1"), StartModule("a", "1")
REMOVE_B = RemoveModule("b", "b@1")
CREATE_C, START_C = CreateModule("c", "1", ModuleSpec(name="c", service="s")), StartModule("c", "1")


class Recorder:
    def __init__(self, failing: dict[object, AgentError] | set[object]) -> None:
        self.calls: list[object] = []
        self.failing = (
            failing if isinstance(failing, dict) else {s: ArtifactDownloadError(f"boom {s}") for s in failing}
        )

    def __call__(self, step: object) -> None:
        self.calls.append(step)
        if step in self.failing:
            raise self.failing[step]


def runner(rec: Recorder) -> PlanRunner:
    return PlanRunner(rec, retry_base_s=1.0, retry_max_s=4.0)


def test_failed_step_blocks_its_module_and_cools_off() -> None:
    rec = Recorder({STOP_A, FETCH})
    ex = runner(rec)
    plan = Plan(steps=(FETCH, STOP_A, START_A, REMOVE_B))
    result = ex.run(plan, generation=1, now=100.0)
    assert rec.calls == [FETCH, STOP_A, REMOVE_B]  # START_A depends on STOP_A; b is independent
    assert result.failed == [FETCH, STOP_A] and result.executed == [REMOVE_B]
    assert ex.failures[STOP_A].error.startswith("boom") and ex.next_retry_at() == 101.0

    rec.calls.clear()
    result = ex.run(plan, generation=1, now=100.5)  # still cooling off
    assert rec.calls == [REMOVE_B] and result.cooling == [FETCH, STOP_A]

    rec.failing.clear()
    rec.calls.clear()
    ex.run(plan, generation=1, now=101.0)
    assert rec.calls == [FETCH, STOP_A, START_A, REMOVE_B]
    assert ex.failures == {}


def test_cool_off_doubles_and_a_new_generation_resets_it() -> None:
    rec = Recorder({FETCH})
    ex = runner(rec)
    plan = Plan(steps=(FETCH,))
    ex.run(plan, 1, now=0.0)
    ex.run(plan, 1, now=1.0)
    ex.run(plan, 1, now=3.0)
    assert ex.failures[FETCH].failures == 3 and ex.failures[FETCH].retry_at == 7.0
    ex.run(plan, 2, now=3.5)  # new generation: tried at once
    assert rec.calls.count(FETCH) == 4 and ex.failures[FETCH].failures == 1


def test_cool_off_is_capped() -> None:
    assert [cool_off(n, 1.0, 4.0) for n in range(1, 6)] == [1, 2, 4, 4, 4]


def test_temporary_error_is_retried_with_capped_exponential_back_off() -> None:
    rec = Recorder({CREATE_C: RuntimeFailure("engine busy")})
    ex = runner(rec)
    plan = Plan(steps=(CREATE_C, START_C))
    tried_at = [t / 2 for t in range(0, 40) if ex.run(plan, 1, now=t / 2).failed]  # every 0.5 s for 20 s
    assert tried_at == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 19.0]  # 1, 2, 4, then the 4 s cap
    assert rec.calls == [CREATE_C] * 7  # the module's start waits for its create every time
    attempt = ex.failures[CREATE_C]
    assert (attempt.failures, attempt.retry_at, attempt.permanent) == (7, 23.0, False)
    assert ex.next_retry_at() == 23.0


@pytest.mark.parametrize(
    "error",
    [ResourceLimitError("cgroup not writable"), RuntimeUnavailable("no Docker engine"), CacheFull("no room")],
    ids=["resource-limit", "runtime-unavailable", "cache-full"],
)
def test_permanent_error_is_not_retried_until_the_generation_changes(error: AgentError) -> None:
    rec = Recorder({CREATE_C: error})
    ex = runner(rec)
    plan = Plan(steps=(CREATE_C, START_C, REMOVE_B))
    first = ex.run(plan, 1, now=0.0)
    assert first.failed == [CREATE_C] and first.executed == [REMOVE_B]
    attempt = ex.failures[CREATE_C]
    assert (attempt.failures, attempt.retry_at, attempt.permanent, attempt.error) == (1, None, True, str(error))
    assert attempt.exception is type(error)
    assert ex.next_retry_at() is None  # nothing to wake up for: only a new generation helps

    later = [ex.run(plan, 1, now=t) for t in (1.0, 60.0, 3600.0, 10**9)]
    assert rec.calls == [CREATE_C, REMOVE_B] + [REMOVE_B] * 4  # the create is never tried again...
    assert all(r.held == [CREATE_C] and r.failed == [] and r.cooling == [] for r in later)  # ...nor its start

    rec.failing.clear()
    rec.calls.clear()
    renewed = ex.run(plan, 2, now=10**9 + 1)  # the hub published a new generation
    assert rec.calls == [CREATE_C, START_C, REMOVE_B] and renewed.executed == rec.calls
    assert ex.failures == {}


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (SettingsError("x"), True),
        (ArtifactCorrupt("x"), True),
        (CacheFull("x"), True),
        (RuntimeUnavailable("x"), True),
        (ResourceLimitError("x"), True),
        (ArtifactDownloadError("x"), False),
        (RuntimeFailure("x"), False),
        (UnknownModule("x"), False),
        (StateError("x"), False),
        (HubKeyUnavailable("x"), False),
        (AgentError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_recovery_class_of_every_error(error: Exception, permanent: bool) -> None:
    assert is_permanent(error) is permanent


def test_permanent_errors_keep_their_subject() -> None:
    """Re-parented for recovery, the runtimes' errors are still caught by what failed."""
    assert issubclass(RuntimeUnavailable, RuntimeFailure) and issubclass(ResourceLimitError, RuntimeFailure)
    assert issubclass(UnknownModule, RuntimeFailure)
