"""Pure derivation of a service's state from what the hub published and what devices reported.

Per device (first rule that applies):

    module not in the manifest published to the device   Transitioning  (hub has not published yet)
    no report from the device                             Transitioning  (waiting for the device)
    report names an older generation, manifest rejected   Failed         (the device's reason)
    report names an older generation                      Transitioning  (device still converging)
    module absent from a report for this generation       Transitioning, or Failed if the device says it converged
    module reported                                       the module's state
    ...and the device is offline                          Healthy becomes Unhealthy; others keep their state

Service: no targeted device -> Unschedulable; any device Transitioning -> Transitioning (the
rollout is still moving); otherwise the worst of Failed > Unhealthy > Unschedulable > Healthy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import Field

from edgefleet.hub.schemas import ApiModel, DeviceServiceState
from edgefleet.protocol.models import ModuleState, ReportedState

_SEVERITY = [ModuleState.FAILED, ModuleState.UNHEALTHY, ModuleState.UNSCHEDULABLE, ModuleState.HEALTHY]
TERMINAL = frozenset({ModuleState.HEALTHY, ModuleState.FAILED, ModuleState.UNHEALTHY, ModuleState.UNSCHEDULABLE})


@dataclass(frozen=True)
class DeviceObservation:
    device_id: str
    online: bool | None  # None: no presence message seen
    report: ReportedState | None
    published_generation: int | None
    published_modules: frozenset[str]


class ServiceStatus(ApiModel):
    state: ModuleState
    reason: str = ""
    devices: list[DeviceServiceState] = Field(default_factory=list)


def device_state(service: str, obs: DeviceObservation) -> DeviceServiceState:
    base = DeviceServiceState(
        device=obs.device_id,
        state=ModuleState.TRANSITIONING,
        desired_generation=obs.published_generation,
        online=obs.online,
        generation=obs.report.generation if obs.report else None,
    )
    report = obs.report
    if obs.published_generation is None or service not in obs.published_modules:
        return base.model_copy(update={"message": "waiting for the hub to publish the device's manifest"})
    if report is None:
        msg = (
            "device offline; waiting for its first report"
            if obs.online is False
            else "waiting for the device to report"
        )
        return base.model_copy(update={"message": msg})
    if report.generation < obs.published_generation:
        if report.rejected:
            return base.model_copy(
                update={"state": ModuleState.FAILED, "message": f"device rejected the manifest: {report.rejected}"}
            )
        msg = f"device is at generation {report.generation}, converging to {obs.published_generation}"
        return base.model_copy(update={"message": _offline(obs, msg)})
    status = next((m for m in report.modules if m.name == service or m.service == service), None)
    if status is None:
        if report.converged:
            return base.model_copy(
                update={"state": ModuleState.FAILED, "message": "device converged without running the module"}
            )
        return base.model_copy(update={"message": _offline(obs, "module not started yet")})
    state = status.state
    message = status.message
    if obs.online is False and state == ModuleState.HEALTHY:
        state, message = ModuleState.UNHEALTHY, "device offline (last reported Healthy)"
    elif obs.online is False:
        message = _offline(obs, message)
    return base.model_copy(
        update={
            "state": state,
            "message": message,
            "endpoint": status.endpoint,
            "backend": status.backend,
            "reason": status.backend_reason,
            "backend_timings_ms": dict(status.backend_timings_ms),
            "restarts": status.restarts,
            "rolled_back": status.rolled_back,
        }
    )


def _offline(obs: DeviceObservation, message: str) -> str:
    return f"device offline; {message}" if obs.online is False and message else message


def service_status(service: str, targeted: Sequence[DeviceObservation], target: str = "any device") -> ServiceStatus:
    if not targeted:
        return ServiceStatus(state=ModuleState.UNSCHEDULABLE, reason=f"no device matches the target ({target})")
    devices = [device_state(service, obs) for obs in targeted]
    by_state: dict[ModuleState, list[str]] = {}
    for d in devices:
        by_state.setdefault(d.state, []).append(d.device)
    if ModuleState.TRANSITIONING in by_state:
        state = ModuleState.TRANSITIONING
    else:
        state = next(s for s in _SEVERITY if s in by_state)
    counts = ", ".join(f"{len(by_state[s])} {s.value}" for s in ModuleState if s in by_state)
    reason = f"{counts} of {len(devices)} device(s)"
    if state != ModuleState.HEALTHY and state != ModuleState.TRANSITIONING:
        reason += f"; {state.value}: " + ", ".join(by_state[state])
    return ServiceStatus(state=state, reason=reason, devices=devices)


def module_present(service: str, report: ReportedState | None) -> bool:
    """True while a device still reports a module of ``service`` (used to wait for a delete)."""
    return report is not None and any(m.name == service or m.service == service for m in report.modules)
