"""What the agent observes about the device: runtime instances, what each module says of itself,
health-probe records and download failures. Plain data, produced by the runtimes, the cache and the
daemon, consumed by the pure planner (``plan.plan_steps``); none of them needs the planner for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgefleet.agent.state import RestartRecord
from edgefleet.protocol.module import ModuleStatusFile


@dataclass(frozen=True)
class Instance:
    """One instance the runtime has of a module (a process or a container), running or exited."""

    instance_id: str
    module: str
    spec_hash: str
    running: bool
    pid: int | None = None
    exit_code: int | None = None  # None: still running, or exited without the agent seeing the code
    port: int | None = None
    status: ModuleStatusFile | None = None  # the module's own word (its status file); None: none yet
    limits: str | None = None  # resource limits the runtime applied, e.g. "cgroup-v1: cpu 0.5 cores"


@dataclass(frozen=True)
class Health:
    """Health-probe record of one running instance, kept by the daemon from ProbeHealth results."""

    started_at: float  # when the agent started (or adopted) the instance
    ready: bool = False  # a probe succeeded since start
    consecutive_failures: int = 0
    last_probe_at: float | None = None
    last_error: str = ""


@dataclass(frozen=True)
class FetchFailure:
    """The last failed download of one artifact (kept by the daemon's background fetcher)."""

    error: str
    retry_at: float | None  # no new attempt before this (cool-off); None: not in this generation
    refused: bool = False  # a permanent error (wrong bytes, no room): the module is Failed, not just waiting


@dataclass(frozen=True)
class Observed:
    instances: tuple[Instance, ...] = ()
    cached: frozenset[str] = frozenset()
    health: Mapping[str, Health] = field(default_factory=dict)  # by instance id
    restarts: Mapping[str, RestartRecord] = field(default_factory=dict)  # by module name
    fetching: frozenset[str] = frozenset()  # digests being downloaded right now (background)
    fetch_failures: Mapping[str, FetchFailure] = field(default_factory=dict)  # by digest
    # ports of running instances that another process may bind too (SO_REUSEPORT): start-beside
    shared_ports: frozenset[int] = frozenset()
