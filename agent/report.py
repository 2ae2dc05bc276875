"""Turns a plan's verdicts and the observed instances into the wire report (pure).

Reports are full snapshots. ``report_fingerprint`` leaves out what changes on every report
(sequence number, timestamps) so the daemon publishes on change and otherwise on a slow heartbeat.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from edgefleet.agent.observed import Instance
from edgefleet.agent.plan import Plan, Verdict
from edgefleet.agent.state import RestartRecord
from edgefleet.protocol.models import DeviceManifest, ModuleState, ModuleStatus, ReportedState, utcnow


def module_statuses(
    desired: DeviceManifest | None,
    plan: Plan,
    instances: list[Instance],
    restarts: Mapping[str, RestartRecord],
    step_failures: Mapping[str, str],
    since: Mapping[str, tuple[ModuleState, datetime]],
    host: str = "127.0.0.1",
) -> list[ModuleStatus]:
    """One status per desired module. ``step_failures``: module -> why its last create/start failed."""
    if desired is None:
        return []
    by_id = {i.instance_id: i for i in instances}
    out = []
    for spec in desired.modules:
        verdict = plan.verdicts.get(spec.name, Verdict(ModuleState.TRANSITIONING, "planning"))
        if spec.name in step_failures and verdict.state != ModuleState.HEALTHY:
            verdict = Verdict(ModuleState.FAILED, step_failures[spec.name], verdict.instance_id)
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
