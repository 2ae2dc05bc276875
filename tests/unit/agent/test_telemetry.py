"""Telemetry of a module is its whole process tree; an update started beside measures no gap."""

from __future__ import annotations

import subprocess
import sys

import psutil

from edgefleet.agent.observed import Instance
from edgefleet.agent.telemetry import ServingGaps, TelemetrySampler


def test_a_modules_use_sums_its_process_tree() -> None:
    # a parent that forks a child which holds ~64 MB: the child's memory must count for the module
    code = (
        "import os,sys,time\n"
        "if os.fork()==0:\n"
        "    b=bytearray(64<<20)\n"
        "    for i in range(0,len(b),4096): b[i]=1\n"
        "    print('ok',flush=True); time.sleep(60); os._exit(0)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None and parent.stdout.readline().strip() == "ok"
        sample = TelemetrySampler("d", 0).sample([Instance("m@h", "m", "h", running=True, pid=parent.pid)], {})
        assert sample is not None
        assert sample.modules["m"]["rssBytes"] > 64 << 20
    finally:
        for child in psutil.Process(parent.pid).children():
            child.kill()
        parent.kill()
        parent.wait()


def test_stopping_an_old_instance_after_its_replacement_is_ready_measures_no_gap() -> None:
    calls: list[None] = []
    gaps = ServingGaps(lambda: calls.append(None))
    gaps.ready("m", 10.0)  # the new one ready beside the old one: no gap was running
    gaps.overlapped("m")
    assert gaps.measured == {"m": 0.0} and len(calls) == 1
    gaps.stopped("m", 20.0)  # stop-then-start: the gap runs until the new one is ready
    gaps.overlapped("m")  # (a gap that runs is not overwritten)
    gaps.ready("m", 20.5)
    assert gaps.measured == {"m": 0.5}
