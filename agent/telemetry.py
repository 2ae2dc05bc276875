"""Telemetry: the agent's and its modules' resource use, sampled every interval (QoS 0, best effort)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import psutil

from edgefleet.agent.observed import Instance
from edgefleet.protocol.models import Telemetry


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
