"""Telemetry: the agent's and its modules' resource use, sampled every interval (QoS 0, best effort),
and the serving gap of each module replacement (old instance stopped -> new one ready; 0 when the
new one was ready beside the old one before it stopped). A module's use is its whole process tree:
the scoring module's worker processes are children of the process the agent started."""

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
        live: set[int] = set()
        for inst in running:
            assert inst.pid is not None
            try:
                tree = self._tree(inst.pid)
            except psutil.Error:
                self._procs.pop(inst.pid, None)
                continue
            live.update(p.pid for p in tree)
            rss, cpu = tree_usage(tree)
            usage = modules.setdefault(inst.module, {"rssBytes": 0.0, "cpuPercent": 0.0})
            usage["rssBytes"] += rss  # two instances during a start-beside update: the module's total
            usage["cpuPercent"] += cpu
            if inst.module in serving_gaps:
                modules[inst.module]["servingGapS"] = serving_gaps[inst.module]
        for pid in [p for p in self._procs if p and p not in live]:
            del self._procs[pid]
        me = self._proc(0)
        return Telemetry(
            device_id=self.device_id, rss_bytes=me.memory_info().rss, cpu_percent=me.cpu_percent(None), modules=modules
        )

    def _tree(self, pid: int) -> list[psutil.Process]:
        """The module's process and all its descendants (a scoring module's workers are children)."""
        root = self._proc(pid)
        return [root, *(self._proc(child.pid) for child in root.children(recursive=True))]

    def _proc(self, pid: int) -> psutil.Process:
        if pid not in self._procs:
            self._procs[pid] = psutil.Process(pid or None)
        return self._procs[pid]


def tree_usage(tree: Iterable[psutil.Process]) -> tuple[float, float]:
    """RSS bytes and cpu percent summed over ``tree``; a process that exits meanwhile counts 0.

    RSS counts pages that forked workers still share with their parent once per process, so the
    sum overstates memory (by the shared pre-fork pages); PSS would not, but reading it
    (smaps_rollup) costs far more per sample. The cgroup, where there is one, is the real bound.
    """
    rss = cpu = 0.0
    for proc in tree:
        try:
            rss += proc.memory_info().rss
            cpu += proc.cpu_percent(None)
        except psutil.Error:
            continue
    return rss, cpu


class ServingGaps:
    """Measures how long each module went without a ready instance while it was replaced."""

    def __init__(self, on_measured: Callable[[], None] = lambda: None) -> None:
        self.measured: dict[str, float] = {}  # module -> seconds without a ready instance, last update
        self._started: dict[str, float] = {}  # module -> when its old instance stopped serving
        self._on_measured = on_measured

    def stopped(self, module: str, now: float) -> None:
        """The old instance of an update stops serving now (a gap begins, unless one already runs)."""
        self._started.setdefault(module, now)

    def overlapped(self, module: str) -> None:
        """The old instance stops after its replacement became ready beside it: no gap."""
        if module not in self._started:
            self.measured[module] = 0.0
            log.info("module %s updated: the new instance served before the old one stopped (no gap)", module)
            self._on_measured()

    def ready(self, module: str, now: float) -> None:
        """An instance of ``module`` became ready: a running gap ends."""
        began = self._started.pop(module, None)
        if began is not None:
            self.measured[module] = now - began
            log.info("module %s updated: serving gap %.3fs", module, now - began)
            self._on_measured()
