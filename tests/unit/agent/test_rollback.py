"""Automatic rollback decision (pure): desired generation's verdicts + rollout clock -> roll back or not."""

from __future__ import annotations

import pytest

from edgefleet.agent.plan import RollbackDecision, Rollout, Verdict, decide_rollback, rollback_window
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
    pytest.param(rollout(rolled_back=True), verdicts(a=F), RollbackDecision(), id="already-rolled-back-no-flapping"),
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
