"""Health memory, as pure state transitions: what the agent remembers of module health between passes.

Per running instance, a probe record (``Health``): kept from probe results, forgotten when the
instance stops, started fresh for an instance the agent adopts. Per module, a restart record
(``RestartRecord``): counted on each restart, forgotten after ``reset_after_s`` healthy. Per
generation, last-known-good: the desired generation becomes it the first time its plan converges
with every module Healthy (not while rolled back: Healthy again on last-known-good does not make
the failed generation good). The planner reads these records; the executors and the loop write
them through the functions here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgefleet.agent.observed import Health, Instance
from edgefleet.agent.plan import Plan, RestartTuning, effective_restarts
from edgefleet.agent.rollout import rolled_back
from edgefleet.agent.state import AgentState, RestartRecord
from edgefleet.protocol.models import ModuleState


def track_instances(health: Mapping[str, Health], instances: Iterable[Instance], now: float) -> dict[str, Health]:
    """Probe records of the running instances: stopped ones forgotten, adopted ones probed as if just started."""
    running = sorted(i.instance_id for i in instances if i.running)
    return {iid: health[iid] if iid in health else Health(started_at=now) for iid in running}


def after_probe(old: Health | None, ok: bool, error: str, now: float) -> Health:
    """The record after one probe: ready on success; failures count only once the instance was ready
    (before that, the startup deadline decides)."""
    old = old or Health(started_at=now)
    if ok:
        return Health(started_at=old.started_at, ready=True, last_probe_at=now)
    return Health(
        started_at=old.started_at,
        ready=old.ready,
        consecutive_failures=old.consecutive_failures + 1 if old.ready else 0,
        last_probe_at=now,
        last_error=error,
    )


def restarted(record: RestartRecord | None, now: float) -> RestartRecord:
    """The restart record after one more restart (not healthy since)."""
    return RestartRecord(count=(record.count if record else 0) + 1, last_restart_at=now)


def remember_health(state: AgentState, plan: Plan, now: float, tuning: RestartTuning) -> AgentState:
    """Restart records and last-known-good in step with what ``plan`` (toward the target) saw."""
    restarts = dict(state.restarts)
    for name, record in state.restarts.items():
        verdict = plan.verdicts.get(name)
        healthy = verdict is not None and verdict.state == ModuleState.HEALTHY
        new = effective_restarts(record, now, tuning)
        if healthy and new.healthy_since is None:
            new = new.model_copy(update={"healthy_since": now})
        elif not healthy and new.healthy_since is not None:
            new = new.model_copy(update={"healthy_since": None})
        restarts[name] = new
    for name, verdict in plan.verdicts.items():
        if name not in restarts and verdict.state == ModuleState.HEALTHY:
            restarts[name] = RestartRecord(healthy_since=now)
    update: dict[str, object] = {}
    if restarts != state.restarts:
        update["restarts"] = restarts
    if (
        state.signed_manifest is not None  # a desired state was accepted
        and not rolled_back(state)
        and plan.converged
        and all(v.state == ModuleState.HEALTHY for v in plan.verdicts.values())
        and state.last_known_good != state.generation
    ):
        update["last_known_good"] = state.generation
        update["last_known_good_manifest"] = state.signed_manifest
    return state.model_copy(update=update) if update else state
