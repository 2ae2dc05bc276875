"""Automatic rollback, as pure state transitions: the agent state and a plan in, the state out.

The rollout's clock: when every artifact of the new generation is verified (the plan no longer
downloads), replacing begins and ``applying_since`` is noted. ``decide_rollback`` then says when
the generation is overdue for Healthy, and ``check_rollout`` records the rollback in the state.
From then on the agent plans toward last-known-good (``target``) until the hub publishes a newer
generation, and ``rolled_back`` is the guard that keeps it there: a failed generation is never
retried on its own (no flapping), also not after an agent restart (the record is on disk).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgefleet.agent.plan import Plan, Verdict
from edgefleet.agent.state import AgentState, RollbackRecord
from edgefleet.protocol.models import DeviceManifest, ModuleState


@dataclass(frozen=True)
class Rollout:
    """Where the device stands with its newest accepted generation."""

    generation: int
    last_known_good: int | None  # the last generation that became fully Healthy (None: none ever did)
    applying_since: float | None  # when every artifact was verified and replacing began (None: not yet)
    window_s: float  # how long the generation has, from ``applying_since``, to become fully Healthy


@dataclass(frozen=True)
class RollbackDecision:
    to_generation: int | None = None  # roll back to this generation now (None: do not)
    reason: str = ""
    module_reasons: Mapping[str, str] = field(default_factory=dict)  # why each non-Healthy module failed
    wake_at: float | None = None  # decide again at this time (end of the window)


@dataclass(frozen=True)
class RolloutCheck:
    state: AgentState  # the state to keep: ``applying_since`` noted, a rollback recorded
    wake_at: float | None = None  # check again then (end of the window)
    rollback: RollbackRecord | None = None  # the rollback decided just now (also in ``state``)


def rolled_back(state: AgentState) -> bool:
    """The guard: the agent rolled back from its current generation and stays on last-known-good."""
    return state.rollback is not None and state.rollback.from_generation == state.generation


def target(
    state: AgentState, desired: DeviceManifest | None, last_known_good: DeviceManifest | None
) -> DeviceManifest | None:
    """What the loop converges to: the desired manifest, or last-known-good after a rollback."""
    return last_known_good if rolled_back(state) else desired


def rollback_window(manifest: DeviceManifest, window_s: float | None) -> float:
    """The agent setting when given, else the longest startup timeout among the generation's modules."""
    if window_s is not None:
        return window_s
    return max((m.health.startup_timeout_s for m in manifest.modules), default=0.0)


def check_rollout(
    state: AgentState, desired: DeviceManifest | None, plan: Plan, window_s: float | None, now: float
) -> RolloutCheck:
    """Note when the desired generation starts replacing; record a rollback when one is due.

    ``plan`` is the plan toward ``desired``; ``window_s`` the agent setting (None: from the manifest).
    """
    if desired is None or rolled_back(state):
        return RolloutCheck(state)
    if state.applying_since is None and not plan.downloading:
        state = state.model_copy(update={"applying_since": now})
    rollout = Rollout(
        generation=state.generation,
        last_known_good=state.last_known_good if state.last_known_good_manifest else None,
        applying_since=state.applying_since,
        window_s=rollback_window(desired, window_s),
    )
    decision = decide_rollback(rollout, plan.verdicts, now)
    if decision.to_generation is None:
        return RolloutCheck(state, decision.wake_at)
    record = RollbackRecord(
        from_generation=state.generation,
        to_generation=decision.to_generation,
        reason=decision.reason,
        module_reasons=dict(decision.module_reasons),
        at=now,
    )
    return RolloutCheck(state.model_copy(update={"rollback": record}), rollback=record)


def decide_rollback(rollout: Rollout, verdicts: Mapping[str, Verdict], now: float) -> RollbackDecision:
    """Roll back when the generation is not fully Healthy when its window ends.

    Never while downloading (nothing was replaced: the old version still serves), and never
    without a last-known-good to go to. (Never twice for one generation: ``check_rollout`` does not
    ask once ``rolled_back``.)
    """
    if (
        rollout.last_known_good is None
        or rollout.last_known_good == rollout.generation
        or rollout.applying_since is None
    ):
        return RollbackDecision()
    unhealthy = {name: v for name, v in sorted(verdicts.items()) if v.state != ModuleState.HEALTHY}
    if not unhealthy:
        return RollbackDecision()  # fully Healthy: health memory makes it last-known-good
    deadline = rollout.applying_since + rollout.window_s
    if now < deadline:
        return RollbackDecision(wake_at=deadline)
    module_reasons = {
        name: f"{v.state.value}" + (f": {v.message}" if v.message else "") for name, v in unhealthy.items()
    }
    reason = (
        f"generation {rollout.generation} was not Healthy within {rollout.window_s:g}s ("
        + "; ".join(f"{name} {why}" for name, why in module_reasons.items())
        + f"); rolled back to generation {rollout.last_known_good}"
    )
    return RollbackDecision(to_generation=rollout.last_known_good, reason=reason, module_reasons=module_reasons)
