"""Restart policy decisions (pure): which policy restarts what, and the count forgotten after a healthy period."""

from __future__ import annotations

import pytest

from edgefleet.agent.observed import Health, Instance, Observed
from edgefleet.agent.plan import (
    PlanContext,
    RestartTuning,
    StartModule,
    StopModule,
    Verdict,
    plan_steps,
    restart_wanted,
)
from edgefleet.agent.state import RestartRecord
from edgefleet.protocol import DeviceManifest, ModuleSpec, ModuleState, RestartPolicy

NOW = 10_000.0
TUNING = RestartTuning(backoff_base_s=10, backoff_max_s=300, max_restarts=3, reset_after_s=600)


@pytest.mark.parametrize(
    ("policy", "exited", "code", "unhealthy", "expected"),
    [
        (RestartPolicy.NEVER, True, 1, False, False),
        (RestartPolicy.NEVER, False, None, True, False),
        (RestartPolicy.ON_FAILURE, True, 1, False, True),
        (RestartPolicy.ON_FAILURE, True, 0, False, False),
        (RestartPolicy.ON_FAILURE, False, None, True, False),
        (RestartPolicy.ON_UNHEALTHY, False, None, True, True),
        (RestartPolicy.ON_UNHEALTHY, True, 1, False, True),
        (RestartPolicy.ALWAYS, True, 0, False, True),
        (RestartPolicy.ALWAYS, False, None, True, True),
    ],
)
def test_restart_wanted(policy: RestartPolicy, exited: bool, code: int | None, unhealthy: bool, expected: bool) -> None:
    assert restart_wanted(policy, exited=exited, exit_code=code, unhealthy=unhealthy) is expected


def _unhealthy_plan(record: RestartRecord, policy: str = "on-unhealthy"):  # type: ignore[no-untyped-def]
    spec = ModuleSpec.model_validate({"name": "m", "service": "svc", "restartPolicy": policy})
    iid = f"m@{spec.spec_hash()}"
    observed = Observed(
        instances=(Instance(iid, "m", spec.spec_hash(), running=True, pid=5, port=20001),),
        health={iid: Health(started_at=0, ready=True, consecutive_failures=3, last_probe_at=NOW, last_error="503")},
        restarts={"m": record},
    )
    ctx = PlanContext(now=NOW, restart=TUNING)
    return plan_steps(DeviceManifest(device_id="d", generation=1, modules=[spec]), observed, ctx), iid


@pytest.mark.parametrize(
    ("healthy_for", "restarts"),
    [(600.0, True), (599.0, False)],
    ids=["healthy-long-enough-count-reset", "healthy-too-briefly-gave-up"],
)
def test_restart_count_resets_after_the_healthy_period(healthy_for: float, restarts: bool) -> None:
    """At max_restarts the module is given up on, unless it was healthy for reset_after_s since."""
    record = RestartRecord(count=3, last_restart_at=NOW - 700, healthy_since=NOW - healthy_for)
    plan, iid = _unhealthy_plan(record)
    spec_hash = iid.split("@")[1]
    if restarts:
        assert plan.changes == (
            StopModule("m", iid, "health probe failed 3 times (503)"),
            StartModule("m", spec_hash, restart=True, reason="health probe failed 3 times (503)"),
        )
        assert plan.verdicts["m"] == Verdict(
            ModuleState.TRANSITIONING, "restarting: health probe failed 3 times (503)", iid
        )
    else:
        assert plan.changes == ()
        assert plan.verdicts["m"] == Verdict(
            ModuleState.UNHEALTHY, "health probe failed 3 times (503); gave up after 3 restarts", iid
        )


def test_never_reports_unhealthy_and_changes_nothing() -> None:
    plan, iid = _unhealthy_plan(RestartRecord(), policy="never")
    assert plan.changes == ()
    assert plan.verdicts["m"] == Verdict(ModuleState.UNHEALTHY, "health probe failed 3 times (503)", iid)
