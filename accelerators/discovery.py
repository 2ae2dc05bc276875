"""List this device's accelerators: ``python -m edgefleet.accelerators.discovery [--json]``.

Each entry has the fields of protocol.AcceleratorInfo (camelCase in JSON). OpenCL devices of type
ACCELERATOR are FPGA candidates (kind "fpga"), the others kind "opencl"; FPGA boards (real or
simulated) come from edgefleet.accelerators.fpga when that module exists. The agent runs this as a
subprocess at start: it never hangs on or crashes over a missing driver — it prints [] and logs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import logging
import os
import sys
import threading
from typing import Any

from edgefleet.protocol.models import AcceleratorInfo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 20.0


def opencl_accelerators() -> list[AcceleratorInfo]:
    from edgefleet.accelerators.opencl import device_info, is_accelerator, list_devices

    found = []
    for platform, device in list_devices():
        try:
            found.append(device_info(platform, device, "fpga" if is_accelerator(device) else "opencl"))
        except Exception as exc:
            log.warning("skipping an OpenCL device that fails queries: %s", exc)
    return found


def fpga_boards() -> list[AcceleratorInfo]:
    """Boards the FPGA backend sees (its probe), when edgefleet.accelerators.fpga exists."""
    if importlib.util.find_spec("edgefleet.accelerators.fpga") is None:
        return []
    from edgefleet.accelerators.selection import _fpga_factory

    factory = _fpga_factory()
    return factory().probe() if factory else []


def _dedupe(infos: list[AcceleratorInfo]) -> list[AcceleratorInfo]:
    seen, out = set(), []
    for i in infos:
        key = (i.kind, i.platform, i.device, i.board)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return out


def discover() -> list[AcceleratorInfo]:
    """Every accelerator found; each source failing only drops its own entries."""
    found: list[AcceleratorInfo] = []
    for source in (opencl_accelerators, fpga_boards):
        try:
            found.extend(source())
        except Exception as exc:
            log.warning("accelerator discovery: %s failed: %s", source.__name__, exc)
    return _dedupe(found)


def format_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no accelerators found"
    cols = [
        "kind",
        "platform",
        "device",
        "deviceType",
        "computeUnits",
        "globalMemBytes",
        "board",
        "loadedBinary",
        "simulated",
    ]
    cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edgefleet.accelerators.discovery", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of AcceleratorInfo objects")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="give up on a hanging driver after this"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    found: list[AcceleratorInfo] = []
    # A wedged driver can block inside clGetPlatformIDs forever; the agent must still start.
    worker = threading.Thread(target=lambda: found.extend(discover()), daemon=True)
    worker.start()
    worker.join(args.timeout)
    hung = worker.is_alive()
    if hung:
        log.error("accelerator discovery did not finish within %.0f s (driver hang?); reporting none", args.timeout)
    rows = [] if hung else [i.to_wire() for i in found]
    sys.stdout.write((json.dumps(rows) if args.json else format_table(rows)) + "\n")
    sys.stdout.flush()
    if hung:
        os._exit(0)  # the stuck driver thread would block interpreter shutdown
    return 0


if __name__ == "__main__":
    sys.exit(main())
