"""Planner cases: desired + observed (+ the clock) -> expected steps and verdicts."""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.agent.observed import FetchFailure, Health, Instance, Observed
from edgefleet.agent.plan import (
    CreateModule,
    FetchArtifact,
    PlanContext,
    ProbeHealth,
    RemoveModule,
    RestartTuning,
    StartModule,
    StopModule,
    Verdict,
    backoff_delay,
    effective_restarts,
    plan_steps,
)
from edgefleet.agent.state import RestartRecord
from edgefleet.protocol import DeviceManifest, ModuleSpec, ModuleState
from edgefleet.protocol.module import ModuleStatusFile

NOW = 1_000_000.0
TUNING = RestartTuning(backoff_base_s=10, backoff_max_s=300, max_restarts=5, reset_after_s=600)
CTX = PlanContext(now=NOW, startup_probe_interval_s=0.1, restart=TUNING)


def digest(n: int) -> str:
    return "sha256:" + f"{n:x}".rjust(64, "0")


def spec(name: str, *arts: int, **fields: Any) -> ModuleSpec:
    artifacts = [{"path": f"model/f{a}.onnx", "digest": digest(a), "size": 1, "url": f"http://h/{a}"} for a in arts]
    return ModuleSpec.model_validate({"name": name, "service": "svc", "artifacts": artifacts, **fields})


def manifest(*specs: ModuleSpec) -> DeviceManifest:
    return DeviceManifest(device_id="dev-1", generation=1, modules=list(specs))


def inst(s: ModuleSpec, running: bool = True, **kw: Any) -> Instance:
    h = s.spec_hash()
    iid = kw.pop("instance_id", f"{s.name}@{h}")
    return Instance(instance_id=iid, module=s.name, spec_hash=h, running=running, port=kw.pop("port", 20001), **kw)


def fetch(n: int) -> FetchArtifact:
    return FetchArtifact(digest(n), f"http://h/{n}", 1)


def ready(s: ModuleSpec, **kw: Any) -> dict[str, Health]:
    return {f"{s.name}@{s.spec_hash()}": Health(started_at=NOW - 100, ready=True, last_probe_at=NOW - 1, **kw)}


def probe(s: ModuleSpec) -> ProbeHealth:
    return ProbeHealth(s.name, f"{s.name}@{s.spec_hash()}", 20001, s.health.path, s.health.timeout_s)


def cached(*ns: int) -> frozenset[str]:
    return frozenset(digest(n) for n in ns)


BAD_3 = {digest(3): FetchFailure("bad digest", retry_at=NOW, refused=True)}  # cool-off over: retried


A1 = spec("a", 1, 2)
A2 = spec("a", 1, 3)  # new version of a: shares artifact 1, adds artifact 3
B = spec("b", 2, startupOrder=1)
C = spec("c", 4)


CASES = [
    pytest.param(
        manifest(A1, B),
        Observed(),
        [fetch(1), fetch(2)],  # artifact 2 is shared by a and b: fetched once
        {"a": ModuleState.TRANSITIONING, "b": ModuleState.TRANSITIONING},
        id="fresh-device-fetches-everything-once",
    ),
    pytest.param(
        manifest(B, A1),
        Observed(cached=cached(1, 2)),
        [CreateModule("a", A1.spec_hash(), A1), StartModule("a", A1.spec_hash(), reason="new spec"),
         CreateModule("b", B.spec_hash(), B), StartModule("b", B.spec_hash(), reason="new spec")],
        {"a": ModuleState.TRANSITIONING, "b": ModuleState.TRANSITIONING},
        id="all-cached-creates-by-startup-order",
    ),
    pytest.param(
        manifest(A2),
        Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1)),
        [fetch(3)],
        {"a": ModuleState.TRANSITIONING},
        id="spec-change-fetches-while-old-keeps-serving",
    ),
    pytest.param(
        manifest(A2),
        Observed(instances=(inst(A1),), cached=cached(1, 2, 3), health=ready(A1)),
        [StopModule("a", f"a@{A1.spec_hash()}", f"replaced by spec {A2.spec_hash()}"), RemoveModule("a", f"a@{A1.spec_hash()}"),
         CreateModule("a", A2.spec_hash(), A2), StartModule("a", A2.spec_hash(), reason="new spec")],
        {"a": ModuleState.TRANSITIONING},
        id="spec-change-replaces-once-downloaded",
    ),
    pytest.param(
        manifest(A2, C),
        Observed(instances=(inst(A1),), cached=cached(1, 2, 3), health=ready(A1)),
        [fetch(4)],
        {"a": ModuleState.TRANSITIONING, "c": ModuleState.TRANSITIONING},
        id="no-stop-anywhere-while-any-artifact-of-the-generation-is-missing",
    ),
    pytest.param(
        manifest(C),
        Observed(instances=(inst(A1), inst(B, running=False)), cached=cached(4)),
        [StopModule("a", f"a@{A1.spec_hash()}", "module removed from the desired state"),
         RemoveModule("a", f"a@{A1.spec_hash()}"), RemoveModule("b", f"b@{B.spec_hash()}"),
         CreateModule("c", C.spec_hash(), C), StartModule("c", C.spec_hash(), reason="new spec")],
        {"c": ModuleState.TRANSITIONING},
        id="removed-modules-are-stopped-and-removed",
    ),
    pytest.param(
        manifest(A2),
        Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetch_failures=BAD_3),
        [fetch(3)],
        {"a": ModuleState.FAILED},
        id="corrupt-artifact-fails-the-module-old-keeps-serving",
    ),
    pytest.param(
        manifest(A1),
        Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1)),
        [],
        {"a": ModuleState.HEALTHY},
        id="healthy-and-probe-not-due-is-empty",
    ),
    pytest.param(
        manifest(A1),
        Observed(instances=(inst(A1),), cached=cached(1, 2), health={f"a@{A1.spec_hash()}": Health(started_at=NOW - 1)}),
        [probe(A1)],
        {"a": ModuleState.TRANSITIONING},
        id="starting-module-is-probed",
    ),
    pytest.param(
        manifest(A1),
        Observed(instances=(inst(A1, running=False, instance_id="a@dup"), inst(A1)), cached=cached(1, 2), health=ready(A1)),
        [RemoveModule("a", "a@dup")],
        {"a": ModuleState.HEALTHY},
        id="duplicate-instance-is-removed",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("desired", "observed", "steps", "states"), CASES)
def test_plan(desired: DeviceManifest, observed: Observed, steps: list[Any], states: dict[str, ModuleState]) -> None:
    plan = plan_steps(desired, observed, CTX)
    assert list(plan.steps) == steps
    assert {k: v.state for k, v in plan.verdicts.items()} == states


def test_corrupt_artifact_message_names_the_path_and_reason() -> None:
    plan = plan_steps(
        manifest(A2),
        Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetch_failures=BAD_3),
        CTX,
    )
    assert (
        plan.verdicts["a"].message == "artifact refused: model/f3.onnx: bad digest; the previous version keeps serving"
    )


def test_no_manifest_touches_nothing() -> None:
    plan = plan_steps(None, Observed(instances=(inst(A1),)), CTX)
    assert plan.steps == () and plan.converged


def test_stops_run_in_reverse_startup_order() -> None:
    first, second = spec("x", 1, startupOrder=0), spec("y", 1, startupOrder=5)
    plan = plan_steps(
        manifest(spec("x", 1, env={"v": "2"}), spec("y", 1, startupOrder=5, env={"v": "2"})),
        Observed(instances=(inst(first), inst(second)), cached=cached(1)),
        CTX,
    )
    assert [type(s).__name__ + ":" + s.module for s in plan.changes] == [  # type: ignore[union-attr]
        "StopModule:y", "RemoveModule:y", "StopModule:x", "RemoveModule:x",
        "CreateModule:x", "StartModule:x", "CreateModule:y", "StartModule:y",
    ]  # fmt: skip


# --- restart policy ------------------------------------------------------------------------------


def exited(s: ModuleSpec, code: int | None, status: ModuleStatusFile | None = None) -> Observed:
    return Observed(instances=(inst(s, running=False, exit_code=code, status=status),), cached=cached(1))


@pytest.mark.parametrize(
    ("policy", "code", "restart", "reason"),
    [
        ("always", 0, True, "exited with code 0"),
        ("always", 1, True, "exited with code 1"),
        ("on-failure", 1, True, "exited with code 1"),
        ("on-failure", None, True, "exited with unknown code"),  # exit code not seen (adopted process): a failure
        ("on-failure", 0, False, "exited with code 0 (restart policy on-failure)"),
        ("on-unhealthy", 1, True, "exited with code 1"),
        ("never", 1, False, "exited with code 1 (restart policy never)"),
    ],
)
def test_exit_restarts_by_policy(policy: str, code: int | None, restart: bool, reason: str) -> None:
    s = spec("m", 1, restartPolicy=policy)
    plan = plan_steps(manifest(s), exited(s, code), CTX)
    iid = f"m@{s.spec_hash()}"
    if restart:
        assert plan.steps == (StartModule("m", s.spec_hash(), restart=True, reason=reason),)
        assert plan.verdicts["m"] == Verdict(ModuleState.TRANSITIONING, "restarting: " + reason, iid)
    else:
        assert plan.steps == ()
        assert plan.verdicts["m"] == Verdict(ModuleState.FAILED, reason, iid)


def test_exit_reason_carries_what_the_module_said() -> None:
    s = spec("m", 1, restartPolicy="on-failure")
    status = ModuleStatusFile(state="Failed", message="model file missing")
    plan = plan_steps(manifest(s), exited(s, 1, status), CTX)
    reason = "exited with code 1: model file missing"
    assert plan.steps == (StartModule("m", s.spec_hash(), restart=True, reason=reason),)


def test_exit_78_is_unschedulable_and_never_restarted() -> None:
    s = spec("m", 1, restartPolicy="always")
    status = ModuleStatusFile(state="Unschedulable", message="no FPGA and required")
    plan = plan_steps(manifest(s), exited(s, 78, status), CTX)
    assert plan.steps == ()
    assert (
        plan.verdicts["m"].state == ModuleState.UNSCHEDULABLE and plan.verdicts["m"].message == "no FPGA and required"
    )


def test_restart_waits_out_the_backoff_and_wakes_when_it_ends() -> None:
    s = spec("m", 1)
    observed = exited(s, 1)
    record = RestartRecord(count=2, last_restart_at=NOW - 5)  # third restart: 20 s after the second
    waiting = plan_steps(manifest(s), Observed(**{**observed.__dict__, "restarts": {"m": record}}), CTX)
    assert waiting.steps == ()
    assert waiting.verdicts["m"] == Verdict(
        ModuleState.FAILED, "exited with code 1; restart 3 in 15.0s", f"m@{s.spec_hash()}"
    )
    assert waiting.wake_at == NOW + 15
    later = PlanContext(now=NOW + 15, restart=TUNING)
    assert plan_steps(manifest(s), Observed(**{**observed.__dict__, "restarts": {"m": record}}), later).steps == (
        StartModule("m", s.spec_hash(), restart=True, reason="exited with code 1"),
    )


def test_gives_up_after_max_restarts() -> None:
    s = spec("m", 1)
    record = RestartRecord(count=5, last_restart_at=NOW - 10_000)
    plan = plan_steps(manifest(s), Observed(**{**exited(s, 1).__dict__, "restarts": {"m": record}}), CTX)
    assert plan.steps == ()
    assert plan.verdicts["m"] == Verdict(
        ModuleState.FAILED, "exited with code 1; gave up after 5 restarts", f"m@{s.spec_hash()}"
    )


@pytest.mark.parametrize(("policy", "restarts"), [("on-unhealthy", True), ("always", True), ("on-failure", False)])
def test_unhealthy_restarts_only_for_health_policies(policy: str, restarts: bool) -> None:
    s = spec("m", 1, restartPolicy=policy)
    health = ready(s, consecutive_failures=3, last_error="HTTP 500")
    plan = plan_steps(manifest(s), Observed(instances=(inst(s),), cached=cached(1), health=health), CTX)
    iid = f"m@{s.spec_hash()}"
    if restarts:
        assert plan.steps == (
            StopModule("m", iid, "health probe failed 3 times (HTTP 500)"),
            StartModule("m", s.spec_hash(), restart=True, reason="health probe failed 3 times (HTTP 500)"),
        )
    else:
        assert plan.verdicts["m"].state == ModuleState.UNHEALTHY
        assert plan.steps == ()  # still probed on its interval: it may recover
        assert plan.wake_at == NOW - 1 + s.health.interval_s


def test_startup_timeout_fails_and_restarts() -> None:
    s = spec("m", 1, health={"startupTimeoutS": 30})
    health = {f"m@{s.spec_hash()}": Health(started_at=NOW - 31, last_error="connection refused")}
    plan = plan_steps(manifest(s), Observed(instances=(inst(s),), cached=cached(1), health=health), CTX)
    iid, reason = f"m@{s.spec_hash()}", "not ready after 30s (connection refused)"
    assert plan.steps == (
        StopModule("m", iid, reason),
        StartModule("m", s.spec_hash(), restart=True, reason=reason),
    )
    assert plan.verdicts["m"] == Verdict(ModuleState.TRANSITIONING, f"restarting: {reason}", iid)


def test_startup_timeout_with_policy_never_is_failed_without_restart() -> None:
    s = spec("m", 1, restartPolicy="never", health={"startupTimeoutS": 30})
    health = {f"m@{s.spec_hash()}": Health(started_at=NOW - 31)}
    plan = plan_steps(manifest(s), Observed(instances=(inst(s),), cached=cached(1), health=health), CTX)
    assert plan.steps == ()
    assert plan.verdicts["m"] == Verdict(ModuleState.FAILED, "not ready after 30s", f"m@{s.spec_hash()}")


def test_backoff_delay_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, TUNING) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]


def test_restart_count_is_forgotten_after_healthy_long_enough() -> None:
    rec = RestartRecord(count=4, last_restart_at=NOW - 1000, healthy_since=NOW - 600)
    assert effective_restarts(rec, NOW, TUNING).count == 0
    assert effective_restarts(rec, NOW - 1, TUNING).count == 4
    assert effective_restarts(RestartRecord(count=4, last_restart_at=NOW), NOW, TUNING).count == 4


def test_converged_needs_no_changes_and_no_transitioning_module() -> None:
    healthy = plan_steps(manifest(A1), Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1)), CTX)
    assert healthy.converged
    starting = plan_steps(manifest(A1), Observed(cached=cached(1, 2)), CTX)
    assert not starting.converged


def test_module_for_a_runtime_the_device_lacks_is_unschedulable_and_disturbs_nothing() -> None:
    docker = ModuleSpec.model_validate({"name": "a", "service": "svc", "runtime": "docker", "image": "x:1"})
    plan = plan_steps(manifest(docker), Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1)), CTX)
    assert plan.steps == ()
    assert (
        plan.verdicts["a"].state == ModuleState.UNSCHEDULABLE
        and "'docker' is not available" in plan.verdicts["a"].message
    )


# --- background downloads ------------------------------------------------------------------------


def test_download_in_progress_is_not_fetched_again_and_nothing_is_stopped() -> None:
    plan = plan_steps(
        manifest(A2), Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetching=cached(3)), CTX
    )
    assert plan.steps == ()  # the fetch is running; A1 keeps serving and is not even probed yet (not due)
    assert plan.downloading and not plan.converged
    assert plan.verdicts["a"] == Verdict(
        ModuleState.TRANSITIONING, "downloading 1 artifact(s); the previous version keeps serving"
    )


def test_failed_download_cools_off_and_says_why() -> None:
    failure = FetchFailure("HTTP 503 Service Unavailable", retry_at=NOW + 4)
    observed = Observed(
        instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetch_failures={digest(3): failure}
    )
    plan = plan_steps(manifest(A2), observed, CTX)
    assert plan.steps == () and plan.wake_at == NOW + 4
    assert plan.verdicts["a"].state == ModuleState.TRANSITIONING
    assert "retrying after: model/f3.onnx: HTTP 503" in plan.verdicts["a"].message
    later = plan_steps(manifest(A2), observed, PlanContext(now=NOW + 4, restart=TUNING))
    assert later.steps == (fetch(3),)


def test_refused_download_is_not_fetched_again_in_this_generation() -> None:
    refused = FetchFailure("does not match the signed manifest", retry_at=None, refused=True)
    observed = Observed(
        instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetch_failures={digest(3): refused}
    )
    for now in (NOW, NOW + 3600):
        plan = plan_steps(manifest(A2), observed, PlanContext(now=now, restart=TUNING))
        assert plan.steps == () and plan.wake_at is None  # nothing to wake up for: only a new generation helps
        assert plan.verdicts["a"] == Verdict(
            ModuleState.FAILED,
            "artifact refused: model/f3.onnx: does not match the signed manifest; the previous version keeps serving",
        )


def test_cache_full_keeps_the_old_version_and_fails_the_module() -> None:
    full = FetchFailure("no room for artifact", retry_at=NOW + 60, refused=True)
    observed = Observed(instances=(inst(A1),), cached=cached(1, 2), health=ready(A1), fetch_failures={digest(3): full})
    plan = plan_steps(manifest(A2), observed, CTX)
    assert plan.changes == ()
    assert plan.verdicts["a"] == Verdict(
        ModuleState.FAILED, "artifact refused: model/f3.onnx: no room for artifact; the previous version keeps serving"
    )
