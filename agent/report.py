"""Turns a plan's verdicts and the observed instances into the wire report (pure).

Reports are full snapshots. ``report_fingerprint`` leaves out what changes on every report
(sequence number, timestamps) so the daemon publishes on change and otherwise on a slow heartbeat.
A step that failed overrides the plan's verdict: Unschedulable when the device lacks the runtime
(a permanent ``RuntimeUnavailable``), else Failed, with the error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from edgefleet.agent.errors import RuntimeUnavailable
from edgefleet.agent.observed import Instance
from edgefleet.agent.plan import CreateModule, Plan, StartModule, Step, Verdict
from edgefleet.agent.retry import Attempt
from edgefleet.agent.state import RestartRecord
from edgefleet.protocol.models import DeviceManifest, ModuleState, ModuleStatus, ReportedState, utcnow


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
                endpoint=f"http://{host}:{inst.port}" if inst and inst.port and inst.running else None,
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


def report_fingerprint(report: ReportedState) -> str:
    body: dict[str, Any] = report.model_dump(mode="json", exclude={"seq", "reported_at"})
    for module in body["modules"]:
        module.pop("since", None)
    return json.dumps(body, sort_keys=True)
