"""Health memory (pure): probe records, restart records and last-known-good, input state -> expected state."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.agent.health_memory import after_probe, remember_health, restarted, track_instances
from edgefleet.agent.observed import Health, Instance
from edgefleet.agent.plan import Plan, RestartTuning, Verdict
from edgefleet.agent.state import AgentState, RestartRecord, RollbackRecord
from edgefleet.protocol import ModuleState

NOW = 10_000.0
TUNING = RestartTuning(backoff_base_s=10, backoff_max_s=300, max_restarts=5, reset_after_s=600)
H, T, F = ModuleState.HEALTHY, ModuleState.TRANSITIONING, ModuleState.FAILED
SIGNED = {"manifest": {"generation": 3}, "signature": "sig", "keyId": "k"}
OLD_SIGNED = {"manifest": {"generation": 2}, "signature": "sig", "keyId": "k"}
BASE = AgentState(generation=3, signed_manifest=SIGNED, last_known_good=2, last_known_good_manifest=OLD_SIGNED)


def state(**changes: Any) -> AgentState:
    return BASE.model_copy(update=changes)


def plan(downloading: bool = False, **states: ModuleState) -> Plan:
    return Plan(verdicts={n: Verdict(s) for n, s in states.items()}, downloading=downloading)


KNOWN_GOOD_3 = {"last_known_good": 3, "last_known_good_manifest": SIGNED}
ROLLED_BACK = RollbackRecord(from_generation=3, to_generation=2, reason="r", at=NOW - 1)

CASES = [
    # restart records
    pytest.param(
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 5)}), plan(a=H, b=T),
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 5, healthy_since=NOW)}),
        id="healthy-again-starts-the-healthy-clock",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 500, healthy_since=NOW - 100)}),
        plan(a=F),
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 500)}),
        id="not-healthy-stops-the-healthy-clock",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 900, healthy_since=NOW - 600)}),
        plan(a=H, b=T),
        state(restarts={"a": RestartRecord(count=0, last_restart_at=NOW - 900, healthy_since=NOW - 600)}),
        id="healthy-for-reset-after-the-count-is-forgotten",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 900, healthy_since=NOW - 599)}),
        plan(a=H, b=T),
        state(restarts={"a": RestartRecord(count=2, last_restart_at=NOW - 900, healthy_since=NOW - 599)}),
        id="healthy-not-quite-long-enough-nothing-changes",
    ),
    pytest.param(
        state(restarts={"gone": RestartRecord(count=1, last_restart_at=NOW - 50, healthy_since=NOW - 40)}),
        plan(a=T),
        state(restarts={"gone": RestartRecord(count=1, last_restart_at=NOW - 50)}),
        id="a-module-without-a-verdict-is-not-healthy",
    ),
    pytest.param(
        state(), plan(a=H, b=T), state(restarts={"a": RestartRecord(healthy_since=NOW)}),
        id="first-healthy-gets-a-record",
    ),
    pytest.param(state(), plan(a=T, b=F), state(), id="unhealthy-without-a-record-gets-none"),
    # last-known-good
    pytest.param(
        state(), plan(a=H),
        state(restarts={"a": RestartRecord(healthy_since=NOW)}, **KNOWN_GOOD_3),
        id="converged-and-all-healthy-becomes-last-known-good",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}), plan(a=H, b=H),
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1), "b": RestartRecord(healthy_since=NOW)}, **KNOWN_GOOD_3),
        id="every-module-healthy-each-gets-its-record",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}), plan(downloading=True, a=H),
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}),
        id="all-healthy-but-still-downloading-is-not-yet-good",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}, rollback=ROLLED_BACK), plan(a=H),
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}, rollback=ROLLED_BACK),
        id="healthy-again-on-last-known-good-does-not-make-the-failed-generation-good",
    ),
    pytest.param(
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}, **KNOWN_GOOD_3), plan(a=H),
        state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}, **KNOWN_GOOD_3),
        id="already-last-known-good-nothing-changes",
    ),
    pytest.param(AgentState(), plan(), AgentState(), id="no-manifest-ever-accepted-nothing-is-good"),
    pytest.param(
        state(last_known_good=None, last_known_good_manifest=None), plan(),
        state(**KNOWN_GOOD_3), id="an-empty-generation-converges-healthy-at-once",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("before", "seen", "expected"), CASES)
def test_remember_health(before: AgentState, seen: Plan, expected: AgentState) -> None:
    assert remember_health(before, seen, NOW, TUNING) == expected


def test_nothing_to_remember_returns_the_same_state() -> None:
    before = state(restarts={"a": RestartRecord(healthy_since=NOW - 1)}, **KNOWN_GOOD_3)
    assert remember_health(before, plan(a=H), NOW, TUNING) is before  # the loop then saves nothing


def inst(iid: str, running: bool = True) -> Instance:
    return Instance(iid, iid.split("@")[0], iid.split("@")[1], running=running)


READY = Health(started_at=NOW - 100, ready=True, last_probe_at=NOW - 1)


@pytest.mark.parametrize(
    ("health", "instances", "expected"),
    [
        ({}, [inst("a@1")], {"a@1": Health(started_at=NOW)}),  # adopted: probed as if just started
        ({"a@1": READY}, [inst("a@1")], {"a@1": READY}),
        ({"a@1": READY}, [inst("a@1", running=False)], {}),  # exited: forgotten
        ({"a@1": READY, "b@1": READY}, [inst("b@2")], {"b@2": Health(started_at=NOW)}),
    ],
    ids=["adopted", "kept", "exited", "replaced"],
)
def test_track_instances(health: dict[str, Health], instances: list[Instance], expected: dict[str, Health]) -> None:
    assert track_instances(health, instances, NOW) == expected


STARTING = Health(started_at=NOW - 3, last_probe_at=NOW - 1, last_error="refused")
FAILING_TWICE = Health(started_at=NOW - 100, ready=True, consecutive_failures=2, last_probe_at=NOW - 1, last_error="x")


@pytest.mark.parametrize(
    ("old", "ok", "error", "expected"),
    [
        (None, True, "", Health(started_at=NOW, ready=True, last_probe_at=NOW)),
        (STARTING, True, "", Health(started_at=NOW - 3, ready=True, last_probe_at=NOW)),
        (STARTING, False, "HTTP 503", Health(started_at=NOW - 3, last_probe_at=NOW, last_error="HTTP 503")),
        (READY, False, "HTTP 500", Health(NOW - 100, True, 1, NOW, "HTTP 500")),
        (FAILING_TWICE, False, "timeout", Health(NOW - 100, True, 3, NOW, "timeout")),
        (FAILING_TWICE, True, "", Health(started_at=NOW - 100, ready=True, last_probe_at=NOW)),
    ],
    ids=[
        "first-probe-ok",
        "starting-becomes-ready",
        "not-ready-yet-failures-do-not-count",
        "ready-then-failing-counts",
        "counting-on",
        "recovered-count-forgotten",
    ],
)
def test_after_probe(old: Health | None, ok: bool, error: str, expected: Health) -> None:
    assert after_probe(old, ok, error, NOW) == expected


def test_restarted_counts_and_stops_the_healthy_clock() -> None:
    assert restarted(None, NOW) == RestartRecord(count=1, last_restart_at=NOW)
    before = RestartRecord(count=2, last_restart_at=NOW - 50, healthy_since=NOW - 40)
    assert restarted(before, NOW) == RestartRecord(count=3, last_restart_at=NOW)
