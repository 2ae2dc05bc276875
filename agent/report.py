"""Turns a plan's verdicts, the observed instances and the agent state into the wire report.

Reports are full snapshots. ``report_fingerprint`` leaves out what changes on every report
(sequence number, timestamps) so the ``Reporter`` publishes on change and otherwise on a slow
heartbeat. After a rollback the failed generation's modules are reported Failed and
``rolled_back``, with the endpoint where last-known-good serves. A step that failed permanently
overrides the plan's verdict: Unschedulable when the device lacks the runtime, else Failed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from edgefleet.agent.errors import RuntimeUnavailable
from edgefleet.agent.observed import Instance
from edgefleet.agent.plan import CreateModule, Plan, StartModule, Step, Verdict
from edgefleet.agent.retry import Attempt
from edgefleet.agent.rollout import rolled_back
from edgefleet.agent.state import AgentState, RestartRecord, RollbackRecord
from edgefleet.protocol.models import (
    DeviceCapabilities,
    DeviceManifest,
    ModuleSpec,
    ModuleState,
    ModuleStatus,
    ReportedState,
    utcnow,
)
from edgefleet.protocol.module import url_host

log = logging.getLogger(__name__)


def failed_steps(failures: Mapping[Step, Attempt]) -> dict[str, Verdict]:
    """Module -> the verdict its failed create/start calls for: Unschedulable when the device lacks
    the module's runtime (a permanent ``RuntimeUnavailable``), else Failed, with the error."""
    out = {}
    for step, attempt in failures.items():
        if isinstance(step, (CreateModule, StartModule)):
            unschedulable = attempt.permanent and issubclass(attempt.exception, RuntimeUnavailable)
            state = ModuleState.UNSCHEDULABLE if unschedulable else ModuleState.FAILED
            out[step.module] = Verdict(state, attempt.error)
    return out


def endpoint_of(spec: ModuleSpec, port: int, host: str) -> str:
    """The module's base URL: https when it serves TLS; ``host`` (the device as the report names
    it) unless the module listens on one specific address, which is then the only one that answers."""
    address = ipaddress.ip_address(spec.listen_address)
    where = host if address.is_unspecified or address.is_loopback else url_host(spec.listen_address)
    return f"{'https' if spec.tls else 'http'}://{where}:{port}"


def module_statuses(
    desired: DeviceManifest | None,
    plan: Plan,
    instances: list[Instance],
    restarts: Mapping[str, RestartRecord],
    step_failures: Mapping[str, Verdict],
    since: Mapping[str, tuple[ModuleState, datetime]],
    host: str = "127.0.0.1",
) -> list[ModuleStatus]:
    """One status per desired module. ``step_failures``: module -> verdict of its last failed create/start."""
    if desired is None:
        return []
    by_id = {i.instance_id: i for i in instances}
    out = []
    for spec in desired.modules:
        verdict = plan.verdicts.get(spec.name, Verdict(ModuleState.TRANSITIONING, "planning"))
        failed = step_failures.get(spec.name)
        if failed is not None and verdict.state != ModuleState.HEALTHY:
            verdict = Verdict(failed.state, failed.message, verdict.instance_id)
        inst = by_id.get(verdict.instance_id or "")
        status = inst.status if inst else None
        state_since = since.get(spec.name)
        out.append(
            ModuleStatus(
                name=spec.name,
                service=spec.service,
                state=verdict.state,
                message=verdict.message,
                spec_hash=inst.spec_hash if inst else None,
                endpoint=endpoint_of(spec, inst.port, host) if inst and inst.port and inst.running else None,
                backend=status.backend if status else None,
                backend_reason=status.backend_reason if status else None,
                backend_timings_ms=dict(status.backend_timings_ms) if status else {},
                restarts=restarts.get(spec.name, RestartRecord()).count,
                instance=str(inst.pid) if inst and inst.pid and inst.running else None,
                since=state_since[1] if state_since else utcnow(),
                limits=inst.limits if inst else None,
            )
        )
    return out


def rolled_back_statuses(
    desired: DeviceManifest, rollback: RollbackRecord, serving: list[ModuleStatus]
) -> list[ModuleStatus]:
    """The failed generation's modules, each Failed with why and rolled_back; where last-known-good
    has the module, its endpoint (that version serves there now)."""
    by_name = {m.name: m for m in serving}
    since = datetime.fromtimestamp(rollback.at, timezone.utc)
    out = []
    for spec in desired.modules:
        why = rollback.module_reasons.get(spec.name)
        message = (
            f"generation {rollback.from_generation} not Healthy in time ({why}); "
            f"rolled back to generation {rollback.to_generation}"
            if why
            else f"rolled back with generation {rollback.from_generation} to generation {rollback.to_generation}"
        )
        old = by_name.get(spec.name)
        out.append(
            ModuleStatus(
                name=spec.name,
                service=spec.service,
                state=ModuleState.FAILED,
                message=message,
                spec_hash=old.spec_hash if old else None,
                endpoint=old.endpoint if old else None,
                backend=old.backend if old else None,
                restarts=old.restarts if old else 0,
                instance=old.instance if old else None,
                since=since,
                rolled_back=True,
            )
        )
    return out


def report_fingerprint(report: ReportedState) -> str:
    body: dict[str, Any] = report.model_dump(mode="json", exclude={"seq", "reported_at"})
    for module in body["modules"]:
        module.pop("since", None)
    return json.dumps(body, sort_keys=True)


class Reporter:
    """Builds the device's reports and says which to publish: on change, else every heartbeat."""

    def __init__(
        self, device_id: str, heartbeat_s: float, agent_version: str, publish: Callable[[bytes], None]
    ) -> None:
        self.device_id = device_id
        self.publish = publish
        self.heartbeat_s = heartbeat_s
        self.agent_version = agent_version
        self.seq = 0
        self.last_at = 0.0  # when the last report was published
        self._last_fingerprint: str | None = None
        self._since: dict[str, tuple[ModuleState, datetime]] = {}  # module -> state and since when

    @property
    def next_at(self) -> float:
        return self.last_at + self.heartbeat_s

    def build(
        self,
        plan: Plan,
        state: AgentState,
        *,
        desired: DeviceManifest | None,
        target: DeviceManifest | None,
        instances: list[Instance],
        failures: Mapping[Step, Attempt],
        capabilities: DeviceCapabilities,
        rejected: str | None,
    ) -> ReportedState:
        now = utcnow()
        step_failures = failed_steps(failures)
        for name, verdict in plan.verdicts.items():
            if self._since.get(name, (None,))[0] != verdict.state:
                self._since[name] = (verdict.state, now)
        modules = module_statuses(target, plan, instances, state.restarts, step_failures, self._since)
        rollback = state.rollback if rolled_back(state) else None
        if rollback is not None and desired is not None:
            modules = rolled_back_statuses(desired, rollback, modules)
        return ReportedState(
            device_id=self.device_id,
            generation=state.generation,
            converged=plan.converged and not step_failures,
            last_known_good=state.last_known_good,
            rolled_back_from=rollback.from_generation if rollback else None,
            modules=modules,
            capabilities=capabilities,
            rejected=rejected,
            agent_version=self.agent_version,
            seq=self.seq,
            reported_at=now,
        )

    def due(self, report: ReportedState, now: float) -> ReportedState | None:
        """The report to publish now, numbered (None: unchanged and the heartbeat is not due)."""
        fingerprint = report_fingerprint(report)
        if fingerprint == self._last_fingerprint and now < self.next_at:
            return None
        self.seq += 1
        self._last_fingerprint = fingerprint
        self.last_at = now
        return report.model_copy(update={"seq": self.seq})

    def report(self, report: ReportedState, now: float) -> None:
        """Publish ``report`` when due."""
        due = self.due(report, now)
        if due is not None:
            self.publish(due.model_dump_json(by_alias=True).encode())
            summary = ", ".join(f"{m.name}={m.state.value}" for m in due.modules) or "no modules"
            log.debug("reported generation %d: %s", due.generation, summary)
