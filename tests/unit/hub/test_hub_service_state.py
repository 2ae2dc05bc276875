from __future__ import annotations

import pytest

from edgefleet.hub.server.service_state import DeviceObservation, device_state, module_present, service_status
from edgefleet.protocol.models import ModuleState, ModuleStatus, ReportedState

S = "svc"
H, T, F, U, X = (
    ModuleState.HEALTHY,
    ModuleState.TRANSITIONING,
    ModuleState.FAILED,
    ModuleState.UNHEALTHY,
    ModuleState.UNSCHEDULABLE,
)


def report(
    gen: int, *modules: tuple[str, ModuleState], converged: bool = False, rejected: str | None = None
) -> ReportedState:
    return ReportedState(
        device_id="dev-1",
        generation=gen,
        converged=converged,
        rejected=rejected,
        modules=[
            ModuleStatus(name=n, service=n, state=s, message=f"{n} is {s.value}", endpoint="http://127.0.0.1:9000")
            for n, s in modules
        ],
    )


def obs(
    rep: ReportedState | None, published: int | None = 2, modules: tuple[str, ...] = (S,), online: bool | None = True
) -> DeviceObservation:
    return DeviceObservation("dev-1", online, rep, published, frozenset(modules))


@pytest.mark.parametrize(
    ("observation", "state", "message"),
    [
        (obs(report(2, (S, H)), published=None, modules=()), T, "waiting for the hub to publish"),
        (obs(report(2, (S, H)), modules=("other",)), T, "waiting for the hub to publish"),
        (obs(None), T, "waiting for the device to report"),
        (obs(None, online=False), T, "device offline; waiting for its first report"),
        (obs(report(1, (S, H))), T, "device is at generation 1, converging to 2"),
        (obs(report(1, (S, H)), online=False), T, "device offline; device is at generation 1"),
        (obs(report(1, rejected="signature does not verify")), F, "device rejected the manifest: signature"),
        (obs(report(2)), T, "module not started yet"),
        (obs(report(2, converged=True)), F, "device converged without running the module"),
        (obs(report(2, (S, T))), T, "svc is Transitioning"),
        (obs(report(2, (S, H))), H, "svc is Healthy"),
        (obs(report(3, (S, H))), H, "svc is Healthy"),
        (obs(report(2, (S, F))), F, "svc is Failed"),
        (obs(report(2, (S, X))), X, "svc is Unschedulable"),
        (obs(report(2, (S, U))), U, "svc is Unhealthy"),
        (obs(report(2, (S, H)), online=False), U, "device offline (last reported Healthy)"),
        (obs(report(2, (S, F)), online=False), F, "device offline; svc is Failed"),
        (obs(report(2, (S, H)), online=None), H, "svc is Healthy"),
    ],
)
def test_device_state(observation: DeviceObservation, state: ModuleState, message: str) -> None:
    result = device_state(S, observation)
    assert result.state is state
    assert message in result.message


def test_healthy_device_state_carries_endpoint_and_generations() -> None:
    result = device_state(S, obs(report(2, (S, H))))
    assert result.endpoint == "http://127.0.0.1:9000"
    assert (result.generation, result.desired_generation) == (2, 2)


def _with(state: ModuleState, device_id: str) -> DeviceObservation:
    return DeviceObservation(device_id, True, report(2, (S, state)), 2, frozenset({S}))


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([H, H, H], H),
        ([H, T, H], T),
        ([F, T], T),  # still rolling out: not final yet
        ([H, F], F),
        ([H, U], U),
        ([F, U, X], F),
        ([H, X], X),
        ([X, X], X),
        ([U, X], U),
    ],
)
def test_service_state_aggregates_devices(states: list[ModuleState], expected: ModuleState) -> None:
    status = service_status(S, [_with(s, f"dev-{i}") for i, s in enumerate(states)])
    assert status.state is expected
    assert len(status.devices) == len(states)


def test_service_without_devices_is_unschedulable_with_reason() -> None:
    status = service_status(S, [], "labels site=a")
    assert status.state is X
    assert status.reason == "no device matches the target (labels site=a)"


def test_reason_names_the_devices_in_the_worst_state() -> None:
    status = service_status(S, [_with(H, "dev-a"), _with(F, "dev-b")])
    assert "Failed: dev-b" in status.reason


def test_module_present() -> None:
    assert module_present(S, report(2, (S, H)))
    assert not module_present(S, report(2, ("other", H)))
    assert not module_present(S, None)
