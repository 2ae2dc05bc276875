"""Observe (I/O): what the device holds now, as the plain data the planner reads.

The runtime's instances (adopted ones included), the cache's blobs, downloads in flight and
failed, and the agent's own records: probe records (kept in step with the running instances,
``health_memory.track_instances``) and restart records.
"""

from __future__ import annotations

from edgefleet.agent.context import AgentContext
from edgefleet.agent.health_memory import track_instances
from edgefleet.agent.observed import Observed


def observe(ctx: AgentContext, now: float) -> Observed:
    instances = ctx.runtime.list_instances()
    ctx.health = track_instances(ctx.health, instances, now)
    fetching = ctx.fetcher.fetching()  # before the cache listing: a finished fetch is then seen cached
    return Observed(
        instances=tuple(instances),
        cached=ctx.cache.digests(),
        health=dict(ctx.health),
        restarts=ctx.saved.current.restarts,
        fetching=fetching,
        fetch_failures=ctx.fetcher.failures(),
    )
