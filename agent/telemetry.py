"""Telemetry: the agent's and its modules' resource use, sampled every interval (QoS 0, best effort),
and the serving gap of each module replacement (old instance stopped -> new one ready)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping

import psutil

from edgefleet.agent.observed import Instance
from edgefleet.protocol.models import Telemetry

log = logging.getLogger(__name__)


class TelemetrySampler:
    def __init__(self, device_id: str, interval_s: float) -> None:
        self.device_id = device_id
        self.interval_s = interval_s
        self.next_at = 0.0
        # one Process object per pid, kept: cpu_percent measures since the previous call on it
        self._procs: dict[int, psutil.Process] = {}

    def due_now(self) -> None:
        """Sample at the next chance (e.g. a serving gap was just measured and a watcher waits for it)."""
        self.next_at = time.time()

    def sample(self, instances: Iterable[Instance], serving_gaps: Mapping[str, float]) -> Telemetry | None:
        """A sample when the interval has passed, else None."""
        now = time.time()
        if now < self.next_at:
            return None
        self.next_at = now + self.interval_s
        running = [i for i in instances if i.running and i.pid]
        modules: dict[str, dict[str, float]] = {}
        for inst in running:
            assert inst.pid is not None
            try:
                proc = self._proc(inst.pid)
                modules[inst.module] = {"rssBytes": float(proc.memory_info().rss), "cpuPercent": proc.cpu_percent(None)}
            except psutil.Error:
                self._procs.pop(inst.pid, None)
                continue
            if inst.module in serving_gaps:
                modules[inst.module]["servingGapS"] = serving_gaps[inst.module]
        live = {i.pid for i in running}
        for pid in [p for p in self._procs if p and p not in live]:
            del self._procs[pid]
        me = self._proc(0)
        return Telemetry(
            device_id=self.device_id, rss_bytes=me.memory_info().rss, cpu_percent=me.cpu_percent(None), modules=modules
        )

    def _proc(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid or None)
        return self._procs[pid]


class ServingGaps:
    """Measures how long each module went without a ready instance while it was replaced."""

    def __init__(self, on_measured: Callable[[], None] = lambda: None) -> None:
        self.measured: dict[str, float] = {}  # module -> seconds without a ready instance, last update
        self._started: dict[str, float] = {}  # module -> when its old instance stopped serving
        self._on_measured = on_measured

    def stopped(self, module: str, now: float) -> None:
        """The old instance of an update stops serving now (a gap begins, unless one already runs)."""
        self._started.setdefault(module, now)

    def ready(self, module: str, now: float) -> None:
        """An instance of ``module`` became ready: a running gap ends."""
        began = self._started.pop(module, None)
        if began is not None:
            self.measured[module] = now - began
            log.info("module %s updated: serving gap %.3fs", module, now - began)
            self._on_measured()
