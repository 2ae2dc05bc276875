"""Composite runtime: one ``Runtime`` for the daemon, dispatching by ``spec.runtime`` ("process" | "docker").

Instances of every runtime are merged in ``list_instances()``; operations on an instance go to the
runtime that owns it. Runtimes that cost something to run (Docker: a connection and an event
thread) are ``LazyRuntime``s, made only when a module needs them or when a cheap presence check
says their engine is there (so containers are adopted after an agent restart). A device without
Docker never connects to anything. A runtime that cannot be made is left out of
``available_kinds()``, so admission (``edgefleet.agent.admission``) finds the module Unschedulable
with the reason; a ``create`` for it raises ``RuntimeUnavailable`` saying why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgefleet.agent.errors import RuntimeFailure, RuntimeUnavailable, UnknownModule
from edgefleet.agent.observed import Instance
from edgefleet.agent.runtime.base import Runtime
from edgefleet.agent.runtime.engine import default_docker_url, engine_present
from edgefleet.protocol.models import ModuleSpec

log = logging.getLogger(__name__)

LAZY_RETRY_S = 30.0  # how long an absent engine is believed absent when no module needs it


@dataclass(frozen=True)
class LazyRuntime:
    """A runtime made on first need. ``present`` must be cheap (no connection); ``make`` may raise
    ``RuntimeUnavailable``."""

    kind: str
    make: Callable[[], Runtime]
    present: Callable[[], bool]


class CompositeRuntime(Runtime):
    kind = "composite"

    def __init__(
        self,
        runtimes: Sequence[Runtime],
        lazy: Sequence[LazyRuntime] = (),
        *,
        retry_s: float = LAZY_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._active: dict[str, Runtime] = {r.kind: r for r in runtimes}
        self._lazy: dict[str, LazyRuntime] = {z.kind: z for z in lazy if z.kind not in self._active}
        self._unavailable: dict[str, tuple[str, float]] = {}  # kind -> (why, when we last tried)
        self._owner: dict[str, Runtime] = {}  # instance id -> runtime
        self._listener: Callable[[str], None] | None = None
        self._lock = threading.RLock()
        self._retry_s = retry_s
        self._clock = clock

    # --- runtime selection -----------------------------------------------------------------------

    @property
    def kinds(self) -> list[str]:
        """Every runtime kind this composite knows, made or not."""
        return sorted({*self._active, *self._lazy})

    def active(self) -> list[Runtime]:
        with self._lock:
            return list(self._active.values())

    def runtime_for(self, kind: str, *, needed: bool = True) -> Runtime | None:
        """The runtime of ``kind``, made now if need be.

        ``needed``: a module asks for it, so it is tried whatever the presence check or an earlier
        failure says, and ``RuntimeUnavailable`` is raised when it cannot be had. Otherwise (merely
        looking for instances to adopt) absence is quiet and retried at most every ``retry_s``.
        """
        with self._lock:
            runtime = self._active.get(kind)
            if runtime is not None:
                return runtime
            lazy = self._lazy.get(kind)
            if lazy is None:
                if needed:
                    raise RuntimeUnavailable(
                        f"runtime {kind!r} is not supported by this agent (it has: {', '.join(self.kinds)})"
                    )
                return None
            if not needed:
                last = self._unavailable.get(kind)
                if not lazy.present() or (last is not None and self._clock() - last[1] < self._retry_s):
                    return None
            try:
                runtime = lazy.make()
            except RuntimeUnavailable as exc:
                self._unavailable[kind] = (str(exc), self._clock())
                log.log(logging.WARNING if needed else logging.DEBUG, "runtime %s unavailable: %s", kind, exc)
                if needed:
                    raise
                return None
            self._unavailable.pop(kind, None)
            self._active[kind] = runtime
            if self._listener is not None:
                runtime.set_exit_listener(self._listener)
            log.info("runtime %s is available", kind)
            return runtime

    def available_kinds(self) -> list[str]:
        """Runtimes usable now (for the device's capabilities); makes present lazy ones."""
        for kind in list(self._lazy):
            self.runtime_for(kind, needed=False)
        with self._lock:
            return sorted(self._active)

    # --- Runtime interface -----------------------------------------------------------------------

    def list_instances(self) -> list[Instance]:
        for kind in list(self._lazy):
            self.runtime_for(kind, needed=False)  # an engine that is there may hold modules to adopt
        result: list[Instance] = []
        owners: dict[str, Runtime] = {}
        for runtime in self.active():
            try:
                found = runtime.list_instances()
            except RuntimeFailure as exc:
                # its modules are unseen this pass: nothing of theirs is stopped, their creates fail
                # with the reason, and the others carry on
                log.warning("cannot list the %s runtime's instances: %s", runtime.kind, exc)
                continue
            for inst in found:
                owners[inst.instance_id] = runtime
            result.extend(found)
        with self._lock:
            self._owner.update(owners)
        return result

    def create(self, spec: ModuleSpec, spec_hash: str, port: int, workdir: Path) -> str:
        runtime = self.runtime_for(spec.runtime, needed=True)
        assert runtime is not None  # needed=True raises instead of returning None
        iid = runtime.create(spec, spec_hash, port, workdir)
        with self._lock:
            self._owner[iid] = runtime
        return iid

    def start(self, instance_id: str) -> None:
        self._owning(instance_id).start(instance_id)

    def stop(self, instance_id: str, grace_s: float) -> None:
        self._owning(instance_id).stop(instance_id, grace_s)

    def remove(self, instance_id: str) -> None:
        try:
            runtime = self._owning(instance_id)
        except UnknownModule:
            return  # removing what is not there is done
        runtime.remove(instance_id)
        with self._lock:
            self._owner.pop(instance_id, None)

    def logs(self, module: str, tail: int) -> list[str]:
        candidates = [i for i in self.list_instances() if i.module == module]
        if not candidates:
            raise UnknownModule(f"no instance of module {module!r} on this device")
        candidates.sort(key=lambda i: (not i.running, i.instance_id))
        return self._owning(candidates[0].instance_id).logs(module, tail)

    def set_exit_listener(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._listener = listener
            for runtime in self._active.values():
                runtime.set_exit_listener(listener)

    def close(self) -> None:
        """Release what the runtimes hold (connections, watcher threads); modules keep running."""
        for runtime in self.active():
            close = getattr(runtime, "close", None)
            if callable(close):
                close()

    # --- helpers ---------------------------------------------------------------------------------

    def _owning(self, instance_id: str) -> Runtime:
        with self._lock:
            runtime = self._owner.get(instance_id)
        if runtime is None:
            self.list_instances()  # adopted since the last look, or made by an earlier agent run
            with self._lock:
                runtime = self._owner.get(instance_id)
        if runtime is None:
            raise UnknownModule(f"no module instance {instance_id} on this device")
        return runtime


def docker_lazy(
    device_id: str,
    base_url: str | None = None,
    *,
    command: list[str] | None = None,
    generation_of: Callable[[], int | None] | None = None,
) -> LazyRuntime:
    """The Docker runtime as a ``LazyRuntime``: present when its engine's socket exists.

    The docker SDK is imported only when the runtime is made: a device without Docker never loads it.
    """
    url = base_url or default_docker_url()

    def make() -> Runtime:
        from edgefleet.agent.runtime.docker import DockerRuntime

        return DockerRuntime(device_id, url, command=command, generation_of=generation_of)

    return LazyRuntime(kind="docker", make=make, present=lambda: engine_present(url))
