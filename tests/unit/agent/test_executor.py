"""Executor: table dispatch, per-step cool-off, skipping a failed module's later steps, reset per generation."""

from __future__ import annotations

import pytest

from edgefleet.agent.errors import ArtifactDownloadError
from edgefleet.agent.executor import Executor, cool_off
from edgefleet.agent.plan import FetchArtifact, Plan, RemoveModule, StartModule, StopModule

FETCH = FetchArtifact("sha256:" + "0" * 64, "http://h/a", 1)
STOP_A, START_A = StopModule("a", "a@1"), StartModule("a", "1")
REMOVE_B = RemoveModule("b", "b@1")


class Recorder:
    def __init__(self, failing: set[object]) -> None:
        self.calls: list[object] = []
        self.failing = failing

    def __call__(self, step: object) -> None:
        self.calls.append(step)
        if step in self.failing:
            raise ArtifactDownloadError(f"boom {step}")


def executor(rec: Recorder) -> Executor:
    table = {FetchArtifact: rec, StopModule: rec, StartModule: rec, RemoveModule: rec}
    return Executor(table, retry_base_s=1.0, retry_max_s=4.0)  # type: ignore[arg-type]


def test_failed_step_blocks_its_module_and_cools_off() -> None:
    rec = Recorder({STOP_A, FETCH})
    ex = executor(rec)
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
    ex = executor(rec)
    plan = Plan(steps=(FETCH,))
    ex.run(plan, 1, now=0.0)
    ex.run(plan, 1, now=1.0)
    ex.run(plan, 1, now=3.0)
    assert ex.failures[FETCH].failures == 3 and ex.failures[FETCH].retry_at == 7.0
    ex.run(plan, 2, now=3.5)  # new generation: tried at once
    assert rec.calls.count(FETCH) == 4 and ex.failures[FETCH].failures == 1


def test_cool_off_is_capped() -> None:
    assert [cool_off(n, 1.0, 4.0) for n in range(1, 6)] == [1, 2, 4, 4, 4]


def test_unknown_step_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match="no executor for step type StopModule"):
        Executor({}).run(Plan(steps=(STOP_A,)), 1, 0.0)
