"""What this device offers, reported to the hub so deployments can target it (and admission judges).

Accelerators come from ``<python> -m edgefleet.accelerators.discovery --json`` run once as a subprocess:
the agent does not import accelerator code (it would pull numpy/OpenCL into a process that must
stay small). If discovery is missing or fails, the device reports no accelerators.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
from pydantic import ValidationError

from edgefleet.agent.admission import DeviceOffer
from edgefleet.protocol.models import AcceleratorInfo, DeviceCapabilities

log = logging.getLogger(__name__)


def simulate_fpga(boards: str, data_dir: Path) -> None:
    """Give this device simulated FPGA board(s): the driver plugin reads the environment, and
    discovery and modules inherit ours; one state dir lets discovery see which binary a module loaded."""
    os.environ["EDGEFLEET_FPGA_SIM"] = boards
    os.environ.setdefault("EDGEFLEET_FPGA_SIM_STATE_DIR", str(data_dir / "fpga-sim"))


def discover_accelerators(command: list[str], timeout_s: float) -> list[AcceleratorInfo]:
    """Run discovery; every failure is logged and yields an empty list."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("accelerator discovery %s failed: %s; reporting no accelerators", command, exc)
        return []
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        log.warning(
            "accelerator discovery exited with code %d (%s); reporting no accelerators", done.returncode, err[0]
        )
        return []
    try:
        raw = json.loads(done.stdout)
        if not isinstance(raw, list):
            raise ValueError("expected a JSON list")
        return [AcceleratorInfo.model_validate(item) for item in raw]
    except (ValueError, ValidationError) as exc:
        log.warning("accelerator discovery printed unusable output (%s); reporting no accelerators", exc)
        return []


def device_capabilities(
    labels: dict[str, str], accelerators: list[AcceleratorInfo], runtimes: list[str]
) -> DeviceCapabilities:
    return DeviceCapabilities(
        labels=dict(labels),
        accelerators=accelerators,
        runtimes=runtimes,
        cpu_count=os.cpu_count() or 0,
        memory_bytes=psutil.virtual_memory().total,
        arch=platform.machine(),
        hostname=socket.gethostname(),
    )


class Discovery:
    """The device's capabilities: at once without accelerators, then with what discovery found
    (on its own thread: OpenCL platforms may take seconds, which must not hold up the agent)."""

    def __init__(
        self, labels: dict[str, str], command: list[str], timeout_s: float, runtimes: Callable[[], list[str]]
    ) -> None:
        self._labels, self._command, self._timeout_s, self._runtimes = labels, command, timeout_s, runtimes
        self.capabilities = DeviceCapabilities(labels=dict(labels))
        self.discovered = False  # discovery finished: admission may judge required accelerators

    def start(self, on_done: Callable[[], None]) -> None:
        self.capabilities = device_capabilities(self._labels, [], self._runtimes())
        threading.Thread(target=self._discover, args=(on_done,), daemon=True, name="discovery").start()

    def _discover(self, on_done: Callable[[], None]) -> None:
        found = discover_accelerators(self._command, self._timeout_s)
        self.capabilities = device_capabilities(self._labels, found, self._runtimes())  # one atomic rebind
        self.discovered = True  # after the rebind: whoever sees True also sees the discovered list
        on_done()

    def offer(self) -> DeviceOffer:
        discovered = self.discovered  # read before the capabilities it vouches for
        return DeviceOffer.from_capabilities(self.capabilities, discovered=discovered)
