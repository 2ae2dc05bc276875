"""Observe (I/O): what the device holds now, as the plain data the planner reads.

The runtime's instances (adopted ones included), the cache's blobs, downloads in flight and
failed, the agent's own records: probe records (kept in step with the running instances,
``health_memory.track_instances``) and restart records, and which ports of outdated running
instances a new instance could share (``port_shared``, for start-beside).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from edgefleet.agent.context import AgentContext
from edgefleet.agent.health_memory import track_instances
from edgefleet.agent.observed import Instance, Observed
from edgefleet.protocol.models import DeviceManifest


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
        shared_ports=frozenset(p for p in outdated_ports(instances, ctx.target()) if port_shared(p)),
    )


def outdated_ports(instances: Iterable[Instance], target: DeviceManifest | None) -> set[int]:
    """Ports of running instances whose module the target runs with another spec: only those are
    tested (a test bind could make a module that is just binding without SO_REUSEPORT fail)."""
    if target is None:
        return set()
    want = {m.name: m.spec_hash() for m in target.modules}
    return {i.port for i in instances if i.running and i.port and i.module in want and want[i.module] != i.spec_hash}


def port_shared(port: int) -> bool:
    """Whether a socket with SO_REUSEPORT may bind ``port`` now: Linux allows it only when every
    socket already bound there set SO_REUSEPORT too (and belongs to the same user), so True means
    the module's listeners do and a new instance can bind beside them. The socket is bound to the
    IPv4 wildcard (it overlaps every IPv4 and dual-stack listener) and never listens: the kernel
    hands connections to listening sockets only."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True
