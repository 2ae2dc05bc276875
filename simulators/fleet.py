"""``edgefleet-sim fleet``: a virtual fleet of devices on one machine.

Each simulated device is a real ``edgefleet-agent`` OS process with its own data directory,
labels, and optionally a simulated FPGA board (with injected faults) — so the hub sees exactly
what it would see from a real fleet. Runs until Ctrl-C (or ``--duration``), then stops every
agent and the modules they started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgefleet.protocol.labels import label_arg
from edgefleet.simulators.errors import SimulatorError
from edgefleet.simulators.fpga.boards import get_board
from edgefleet.simulators.fpga.commands import format_table


@dataclass(frozen=True)
class SimulatedDevice:
    device_id: str
    labels: dict[str, str]
    fpga_board: str | None
    faults: str | None

    def agent_args(self) -> list[str]:
        """Agent flags that give this device its (simulated) hardware."""
        args = ["--fpga-sim", self.fpga_board] if self.fpga_board else []
        for key, value in self.labels.items():
            args += ["--label", f"{key}={value}"]
        return args

    def env(self) -> dict[str, str]:
        """Fault injection is the simulator's own knob: the agent passes it on to discovery and modules."""
        return {"EDGEFLEET_FPGA_SIM_FAULTS": self.faults} if self.fpga_board and self.faults else {}


def plan_fleet(
    count: int, prefix: str, labels: dict[str, str], fpga_board: str | None, fpga_every: int, faults: str | None
) -> list[SimulatedDevice]:
    """Which devices to simulate: every ``fpga_every``-th device carries the board (1 = all)."""
    devices = []
    for i in range(count):
        with_fpga = fpga_board is not None and i % max(fpga_every, 1) == 0
        devices.append(
            SimulatedDevice(
                device_id=f"{prefix}{i + 1}",
                labels={**labels, "sim": "true", **({"fpga": fpga_board} if with_fpga and fpga_board else {})},
                fpga_board=fpga_board if with_fpga else None,
                faults=faults if with_fpga else None,
            )
        )
    return devices


def _agent_binary() -> str:
    beside = Path(sys.executable).with_name("edgefleet-agent")
    found = str(beside) if beside.exists() else shutil.which("edgefleet-agent")
    if not found:
        raise SimulatorError("edgefleet-agent is not installed; run `pip install -e .`")
    return found


def _run(args: argparse.Namespace) -> int:
    if args.fpga:
        get_board(args.fpga)  # unknown board: a clear error naming the known ones, before anything starts
    devices = plan_fleet(args.devices, args.prefix, dict(args.label), args.fpga, args.fpga_every, args.fpga_faults)
    workdir = Path(args.workdir)
    agent = _agent_binary()
    procs: list[subprocess.Popen[bytes]] = []
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        for dev in devices:
            data = workdir / dev.device_id
            data.mkdir(parents=True, exist_ok=True)
            cmd = [agent, "--device-id", dev.device_id, "--hub", args.hub, "--broker", args.broker,
                   "--data-dir", str(data), "--stop-modules-on-exit"]  # fmt: skip
            cmd += dev.agent_args()
            with open(data / "agent.log", "ab") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **dev.env()},
                        start_new_session=True,
                    )
                )  # fmt: skip
        if args.output == "json":
            print(json.dumps([{**dev.__dict__, "pid": p.pid} for dev, p in zip(devices, procs, strict=True)]))
        else:
            rows = [
                [d.device_id, str(p.pid), ",".join(f"{k}={v}" for k, v in d.labels.items()), d.fpga_board or "-",
                 d.faults or "-"]
                for d, p in zip(devices, procs, strict=True)
            ]  # fmt: skip
            print(format_table(["device", "pid", "labels", "fpga", "faults"], rows))
            print(f"\n{len(devices)} simulated device(s) running; logs in {workdir}/<device>/agent.log; Ctrl-C stops")
        sys.stdout.flush()
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop and (deadline is None or time.monotonic() < deadline):
            dead = [(d, p) for d, p in zip(devices, procs, strict=True) if p.poll() is not None]
            if dead:
                d, p = dead[0]
                raise SimulatorError(
                    f"agent {d.device_id} exited with code {p.returncode}; see {workdir}/{d.device_id}"
                )
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # agents stop their modules (--stop-modules-on-exit)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


def register(areas: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = areas.add_parser("fleet", help="run a virtual fleet of devices (one agent process each)")
    p.add_argument("--devices", type=int, default=3)
    p.add_argument("--prefix", default="sim-", help="device id prefix (default sim-)")
    p.add_argument("--hub", default=os.environ.get("EDGEFLEET_HUB", "http://127.0.0.1:8080"))
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument(
        "--label", action="append", type=label_arg, default=[], metavar="KEY=VALUE", help="label for every device"
    )
    p.add_argument("--fpga", metavar="BOARD", help="give devices a simulated FPGA board (see `fpga boards`)")
    p.add_argument("--fpga-every", type=int, default=1, help="every Nth device gets the board (default all)")
    p.add_argument("--fpga-faults", metavar="SPEC", help="inject faults, e.g. wrong_results or program_fail:0.5")
    p.add_argument("--workdir", default=".edgefleet/sim-fleet")
    p.add_argument("--duration", type=float, default=0, help="stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_run)
