"""Automatic rollback (pure): the decision (verdicts + rollout clock -> roll back or not) and the state
transitions around it (noting ``applying_since``, recording the rollback, the ``rolled_back`` guard)."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.agent.intake import Accepted
from edgefleet.agent.plan import Plan, Verdict
from edgefleet.agent.rollout import (
    RollbackDecision,
    Rollout,
    RolloutCheck,
    check_rollout,
    decide_rollback,
    rollback_window,
    rolled_back,
    target,
)
from edgefleet.agent.state import AgentState, RollbackRecord
from edgefleet.protocol import DeviceManifest, ModuleSpec, ModuleState

NOW = 5_000.0
H, T, F, U = ModuleState.HEALTHY, ModuleState.TRANSITIONING, ModuleState.FAILED, ModuleState.UNHEALTHY


def rollout(**kw: object) -> Rollout:
    base: dict[str, object] = {"generation": 3, "last_known_good": 2, "applying_since": NOW - 30, "window_s": 20.0}
    return Rollout(**{**base, **kw})  # type: ignore[arg-type]


def verdicts(**states: ModuleState) -> dict[str, Verdict]:
    return {name: Verdict(state, f"{name} says {state.value.lower()}") for name, state in states.items()}


CASES = [
    pytest.param(rollout(), verdicts(a=H, b=H), RollbackDecision(), id="fully-healthy-stays"),
    pytest.param(
        rollout(applying_since=NOW - 5), verdicts(a=H, b=T), RollbackDecision(wake_at=NOW + 15),
        id="within-window-waits-and-wakes-at-its-end",
    ),
    pytest.param(
        rollout(),
        verdicts(a=H, b=T),
        RollbackDecision(
            to_generation=2,
            reason="generation 3 was not Healthy within 20s (b Transitioning: b says transitioning); "
            "rolled back to generation 2",
            module_reasons={"b": "Transitioning: b says transitioning"},
        ),
        id="window-over-rolls-back-naming-the-modules",
    ),
    pytest.param(
        rollout(applying_since=NOW - 20), verdicts(a=F, b=U), RollbackDecision(
            to_generation=2,
            reason="generation 3 was not Healthy within 20s (a Failed: a says failed; b Unhealthy: b says unhealthy); "
            "rolled back to generation 2",
            module_reasons={"a": "Failed: a says failed", "b": "Unhealthy: b says unhealthy"},
        ),
        id="window-ends-exactly-now",
    ),
    pytest.param(rollout(last_known_good=None), verdicts(a=F), RollbackDecision(), id="nothing-to-go-back-to"),
    pytest.param(rollout(last_known_good=3), verdicts(a=F), RollbackDecision(), id="generation-is-last-known-good"),
    pytest.param(
        rollout(applying_since=None), verdicts(a=F), RollbackDecision(), id="still-downloading-old-serves-anyway"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("state", "seen", "expected"), CASES)
def test_decide_rollback(state: Rollout, seen: dict[str, Verdict], expected: RollbackDecision) -> None:
    assert decide_rollback(state, seen, NOW) == expected


def test_window_is_the_setting_or_the_longest_startup_timeout() -> None:
    def mod(name: str, timeout: float) -> ModuleSpec:
        return ModuleSpec.model_validate({"name": name, "service": "s", "health": {"startupTimeoutS": timeout}})

    manifest = DeviceManifest(device_id="d", generation=1, modules=[mod("a", 30), mod("b", 90)])
    assert rollback_window(manifest, None) == 90
    assert rollback_window(manifest, 12.5) == 12.5
    assert rollback_window(DeviceManifest(device_id="d", generation=1), None) == 0


# --- the state transitions around the decision ---------------------------------------------------


def manifest(generation: int, startup_timeout_s: float = 40.0) -> DeviceManifest:
    module = {"name": "a", "service": "s", "health": {"startupTimeoutS": startup_timeout_s}}
    return DeviceManifest(device_id="d", generation=generation, modules=[ModuleSpec.model_validate(module)])


def signed(m: DeviceManifest) -> dict[str, Any]:
    return {"manifest": m.model_dump(mode="json", by_alias=True), "signature": "sig", "keyId": "k"}


DESIRED, KNOWN_GOOD = manifest(3), manifest(2)
APPLYING = AgentState(  # generation 3 replacing since NOW - 30, generation 2 known good
    generation=3,
    signed_manifest=signed(DESIRED),
    last_known_good=2,
    last_known_good_manifest=signed(KNOWN_GOOD),
    applying_since=NOW - 30,
)
RECORD = RollbackRecord(
    from_generation=3,
    to_generation=2,
    reason="generation 3 was not Healthy within 20s (a Failed: a says failed); rolled back to generation 2",
    module_reasons={"a": "Failed: a says failed"},
    at=NOW,
)
RECORD_4 = RollbackRecord(
    from_generation=4,
    to_generation=2,
    reason="generation 4 was not Healthy within 20s (a Failed: a says failed); rolled back to generation 2",
    module_reasons={"a": "Failed: a says failed"},
    at=NOW,
)
ROLLED_BACK = APPLYING.model_copy(update={"rollback": RECORD})
FAILING = Plan(verdicts=verdicts(a=F))


def state(**changes: Any) -> AgentState:
    return APPLYING.model_copy(update=changes)


CHECKS = [
    pytest.param(AgentState(), None, FAILING, 20.0, RolloutCheck(AgentState()), id="no-desired-state-nothing-to-do"),
    pytest.param(
        state(applying_since=None), DESIRED, Plan(verdicts=verdicts(a=T), downloading=True), 20.0,
        RolloutCheck(state(applying_since=None)),
        id="downloading-the-clock-has-not-started",
    ),
    pytest.param(
        state(applying_since=None), DESIRED, Plan(verdicts=verdicts(a=T)), 20.0,
        RolloutCheck(state(applying_since=NOW), wake_at=NOW + 20),
        id="downloaded-applying-since-is-noted-and-the-window-end-awaited",
    ),
    pytest.param(
        state(applying_since=None), DESIRED, Plan(verdicts=verdicts(a=T)), None,
        RolloutCheck(state(applying_since=NOW), wake_at=NOW + 40),
        id="no-window-setting-the-longest-startup-timeout",
    ),
    pytest.param(
        state(applying_since=NOW - 10), DESIRED, FAILING, 20.0, RolloutCheck(state(applying_since=NOW - 10), NOW + 10),
        id="within-the-window-waits",
    ),
    pytest.param(APPLYING, DESIRED, FAILING, 20.0, RolloutCheck(ROLLED_BACK, rollback=RECORD), id="overdue-rolls-back"),
    pytest.param(
        ROLLED_BACK, DESIRED, FAILING, 20.0, RolloutCheck(ROLLED_BACK), id="already-rolled-back-no-flapping"
    ),
    pytest.param(
        ROLLED_BACK, DESIRED, Plan(verdicts=verdicts(a=T)), 20.0, RolloutCheck(ROLLED_BACK),
        id="rolled-back-does-not-even-wait-for-a-window",
    ),
    pytest.param(
        state(generation=4, rollback=RECORD), manifest(4), FAILING, 20.0,
        RolloutCheck(state(generation=4, rollback=RECORD_4), rollback=RECORD_4),
        id="a-rollback-of-an-older-generation-does-not-guard-a-newer-one",
    ),
    pytest.param(
        state(last_known_good_manifest=None), DESIRED, FAILING, 20.0, RolloutCheck(state(last_known_good_manifest=None)),
        id="known-good-generation-without-its-manifest-cannot-be-gone-back-to",
    ),
    pytest.param(APPLYING, DESIRED, Plan(verdicts=verdicts(a=H)), 20.0, RolloutCheck(APPLYING), id="healthy-stays"),
]  # fmt: skip


@pytest.mark.parametrize(("before", "desired", "plan", "window_s", "expected"), CHECKS)
def test_check_rollout(
    before: AgentState, desired: DeviceManifest | None, plan: Plan, window_s: float | None, expected: RolloutCheck
) -> None:
    assert check_rollout(before, desired, plan, window_s, NOW) == expected


def test_the_guard_holds_until_the_hub_publishes_a_newer_generation() -> None:
    """The real guard end to end: rolled back once, never again for that generation (however long it
    keeps failing), and a newer generation gets its own window and its own rollback."""
    check = check_rollout(APPLYING, DESIRED, FAILING, 20.0, NOW)
    assert check.rollback == RECORD and rolled_back(check.state)
    assert target(check.state, DESIRED, KNOWN_GOOD) == KNOWN_GOOD
    for later in (NOW + 1, NOW + 20, NOW + 3600):
        again = check_rollout(check.state, DESIRED, FAILING, 20.0, later)
        assert again == RolloutCheck(check.state)  # no second rollback, no wake-up, nothing saved

    newer = manifest(4)
    accepted = Accepted(newer, signed(newer)).applied_to(check.state)
    assert accepted == check.state.model_copy(
        update={"generation": 4, "signed_manifest": signed(newer), "applying_since": None, "rollback": None}
    )
    assert not rolled_back(accepted) and target(accepted, newer, KNOWN_GOOD) == newer
    noted = check_rollout(accepted, newer, FAILING, 20.0, NOW + 4000)
    assert noted == RolloutCheck(accepted.model_copy(update={"applying_since": NOW + 4000}), wake_at=NOW + 4020)
    assert check_rollout(noted.state, newer, FAILING, 20.0, NOW + 4020).rollback == RECORD_4.model_copy(
        update={"at": NOW + 4020}
    )


@pytest.mark.parametrize(
    ("agent_state", "expected"),
    [
        (AgentState(), False),
        (APPLYING, False),
        (ROLLED_BACK, True),
        (ROLLED_BACK.model_copy(update={"generation": 4}), False),
    ],
    ids=["fresh", "applying", "rolled-back-from-this-generation", "rolled-back-from-an-older-one"],
)
def test_rolled_back_guard(agent_state: AgentState, expected: bool) -> None:
    assert rolled_back(agent_state) is expected
    assert target(agent_state, DESIRED, KNOWN_GOOD) == (KNOWN_GOOD if expected else DESIRED)
