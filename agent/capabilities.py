"""What this device offers, reported to the hub so deployments can target it.

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

import psutil
from pydantic import ValidationError

from edgefleet.protocol.models import AcceleratorInfo, DeviceCapabilities

log = logging.getLogger(__name__)


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
