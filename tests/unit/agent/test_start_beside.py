"""Start-beside (an update that loses no request), as planner cases: desired + observed -> steps.

The phases of one update of module a from A1 to A2, each a case: the new instance is created on the
old one's port and started while the old one runs; the old one is held while the new one is not
Ready (or has failed); once the new one is Ready the old one is stopped (``replaced``) and removed.
The fallbacks: a port the old instance holds alone, or a changed port, stop first as before.
"""

from __future__ import annotations

from typing import Any

import pytest

from edgefleet.agent.observed import Health, Instance, Observed
from edgefleet.agent.plan import (
    CreateModule,
    PlanContext,
    ProbeHealth,
    RemoveModule,
    StartModule,
    StopModule,
    beside_port,
    plan_steps,
)
from edgefleet.protocol import DeviceManifest, ModuleSpec, ModuleState
from edgefleet.protocol.module import ModuleRunState, ModuleStatusFile

NOW = 1_000_000.0
CTX = PlanContext(now=NOW)
PORT = 20001


def spec(**fields: Any) -> ModuleSpec:
    return ModuleSpec.model_validate({"name": "a", "service": "svc", **fields})


A1 = spec(env={"V": "1"})
A2 = spec(env={"V": "2"})
A2_MOVED = spec(env={"V": "2"}, port=20002)


def iid(s: ModuleSpec) -> str:
    return f"a@{s.spec_hash()}"


def inst(
    s: ModuleSpec,
    running: bool = True,
    port: int = PORT,
    exit_code: int | None = None,
    says: ModuleRunState | None = None,
) -> Instance:
    status = ModuleStatusFile(state=says) if says else None
    return Instance(iid(s), "a", s.spec_hash(), running=running, port=port, exit_code=exit_code, status=status)


def manifest(s: ModuleSpec) -> DeviceManifest:
    return DeviceManifest(device_id="dev-1", generation=2, modules=[s])


def health(s: ModuleSpec, ready: bool, started_ago: float = 1.0) -> dict[str, Health]:
    return {iid(s): Health(started_at=NOW - started_ago, ready=ready, last_probe_at=NOW - 10)}


def probe(s: ModuleSpec) -> ProbeHealth:
    return ProbeHealth("a", iid(s), PORT, s.health.path, s.health.timeout_s)


SHARED = frozenset({PORT})
CASES = [
    pytest.param(
        A2,
        Observed(instances=(inst(A1),), health=health(A1, True), shared_ports=SHARED),
        [CreateModule("a", A2.spec_hash(), A2, port=PORT), StartModule("a", A2.spec_hash(), reason="new spec")],
        ModuleState.TRANSITIONING,
        id="update-with-a-shared-port-starts-the-new-one-beside-the-old-on-its-port",
    ),
    pytest.param(
        A2,
        Observed(instances=(inst(A1), inst(A2)), health={**health(A1, True), **health(A2, False)}, shared_ports=SHARED),
        [],  # no probe: on the shared port it could reach the old one
        ModuleState.TRANSITIONING,
        id="new-one-not-ready-yet-old-one-keeps-serving",
    ),
    pytest.param(
        A2,
        Observed(
            instances=(inst(A1), inst(A2, says=ModuleRunState.READY)),
            health={**health(A1, True), **health(A2, False)},
            shared_ports=SHARED,
        ),
        [
            StopModule("a", iid(A1), f"replaced by spec {A2.spec_hash()}, which is ready", replaced=True),
            RemoveModule("a", iid(A1)),
        ],
        ModuleState.TRANSITIONING,  # Healthy once a probe (which then reaches it alone) says so
        id="new-one-says-ready-old-one-stops-and-drains",
    ),
    pytest.param(
        A2,
        Observed(instances=(inst(A2),), health=health(A2, False), shared_ports=SHARED),
        [probe(A2)],
        ModuleState.TRANSITIONING,
        id="old-one-gone-the-new-one-is-probed-again",
    ),
    pytest.param(
        A2,
        Observed(
            instances=(inst(A1), inst(A2, running=False, exit_code=1)),
            health=health(A1, True),
            shared_ports=SHARED,
        ),
        [StartModule("a", A2.spec_hash(), restart=True, reason="exited with code 1")],
        ModuleState.TRANSITIONING,
        id="new-one-exited-old-one-keeps-serving-while-it-restarts",
    ),
    pytest.param(
        A2,
        Observed(
            instances=(inst(A1), inst(A2)),
            health={**health(A1, True), **health(A2, False, started_ago=1000)},
            shared_ports=SHARED,
        ),
        [
            StopModule("a", iid(A2), "not ready after 120s"),
            StartModule("a", A2.spec_hash(), restart=True, reason="not ready after 120s"),
        ],
        ModuleState.TRANSITIONING,
        id="new-one-never-ready-is-restarted-old-one-untouched",
    ),
    pytest.param(
        A1,
        Observed(instances=(inst(A1), inst(A2)), health={**health(A1, True), **health(A2, False)}, shared_ports=SHARED),
        [
            StopModule("a", iid(A2), f"replaced by spec {A1.spec_hash()}, which is ready", replaced=True),
            RemoveModule("a", iid(A2)),
        ],
        ModuleState.HEALTHY,
        id="rolled-back-the-old-one-is-current-and-the-new-one-goes",
    ),
    pytest.param(
        A2,
        Observed(instances=(inst(A1),), health=health(A1, True)),
        [
            StopModule("a", iid(A1), f"replaced by spec {A2.spec_hash()}"),
            RemoveModule("a", iid(A1)),
            CreateModule("a", A2.spec_hash(), A2),
            StartModule("a", A2.spec_hash(), reason="new spec"),
        ],
        ModuleState.TRANSITIONING,
        id="port-held-alone-falls-back-to-stop-then-start",
    ),
    pytest.param(
        A2_MOVED,
        Observed(instances=(inst(A1),), health=health(A1, True), shared_ports=SHARED),
        [
            StopModule("a", iid(A1), f"replaced by spec {A2_MOVED.spec_hash()}"),
            RemoveModule("a", iid(A1)),
            CreateModule("a", A2_MOVED.spec_hash(), A2_MOVED),
            StartModule("a", A2_MOVED.spec_hash(), reason="new spec"),
        ],
        ModuleState.TRANSITIONING,
        id="changed-port-falls-back-to-stop-then-start",
    ),
    pytest.param(
        A2,
        Observed(instances=(inst(A1, running=False, exit_code=1),), shared_ports=SHARED),
        [
            RemoveModule("a", iid(A1)),
            CreateModule("a", A2.spec_hash(), A2),
            StartModule("a", A2.spec_hash(), reason="new spec"),
        ],
        ModuleState.TRANSITIONING,
        id="old-one-not-running-nothing-to-start-beside",
    ),
]


@pytest.mark.parametrize(("desired", "observed", "steps", "state"), CASES)
def test_start_beside_phases(desired: ModuleSpec, observed: Observed, steps: list[Any], state: ModuleState) -> None:
    plan = plan_steps(manifest(desired), observed, CTX)
    assert list(plan.steps) == steps
    assert plan.verdicts["a"].state == state


@pytest.mark.parametrize(
    ("others", "shared", "port"),
    [
        ([inst(A1)], SHARED, PORT),
        ([inst(A1)], frozenset(), None),
        ([inst(A1, running=False)], SHARED, None),
        ([inst(A1), Instance("a@x", "a", "x", running=True, port=PORT)], SHARED, None),  # which one drains?
    ],
)
def test_beside_port(others: list[Instance], shared: frozenset[int], port: int | None) -> None:
    assert beside_port(A2, others, shared) == port


def test_while_not_probed_the_plan_looks_at_the_status_file_again_soon() -> None:
    observed = Observed(
        instances=(inst(A1), inst(A2)), health={**health(A1, True), **health(A2, False)}, shared_ports=SHARED
    )
    plan = plan_steps(manifest(A2), observed, CTX)
    assert plan.wake_at == NOW + CTX.startup_probe_interval_s
    assert plan.verdicts["a"].message == "waiting for the module to be ready"
