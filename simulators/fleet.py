"""``edgefleet-sim fleet``: a virtual fleet of devices on one machine.

Each simulated device is a real ``edgefleet-agent`` OS process with its own data directory,
labels, and optionally a simulated FPGA board (with injected faults) — so the hub sees exactly
what it would see from a real fleet. Like a real device it is registered first: through the
``edgefleet device register`` command (a subprocess: the simulators import no hub code), which
gives it its labels and writes its bootstrap bundle, and its agent starts from that bundle. A
device whose data directory already holds an installed bundle (an earlier run) is not registered
again. Runs until Ctrl-C (or ``--duration``), then stops every agent and the modules they started.
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
        return ["--fpga-sim", self.fpga_board] if self.fpga_board else []

    def register_args(self, bundle: Path) -> list[str]:
        """``edgefleet`` arguments that register it with its labels (the operator's, not the device's)."""
        args = ["device", "register", self.device_id, "--out", str(bundle), "--force"]
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


def _binary(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SimulatorError(f"{name} is not installed; run `pip install -e .`")
    return found


def _identity_args(dev: SimulatedDevice, data: Path, hub: str, edgefleet: str) -> list[str]:
    """The agent's identity: the bundle installed by an earlier run, else a fresh registration."""
    if (data / "identity" / "bootstrap.json").exists():
        return ["--device-id", dev.device_id]
    bundle = data / "bootstrap.json"
    done = subprocess.run(
        [edgefleet, "--hub", hub, *dev.register_args(bundle)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1].removeprefix("error: ")
        raise SimulatorError(f"registering {dev.device_id} at {hub} failed: {reason}")
    return ["--bootstrap", str(bundle)]


def _run(args: argparse.Namespace) -> int:
    if args.fpga:
        get_board(args.fpga)  # unknown board: a clear error naming the known ones, before anything starts
    devices = plan_fleet(args.devices, args.prefix, dict(args.label), args.fpga, args.fpga_every, args.fpga_faults)
    workdir = Path(args.workdir)
    agent, edgefleet = _binary("edgefleet-agent"), _binary("edgefleet")
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
            cmd = [agent, *_identity_args(dev, data, args.hub, edgefleet), "--data-dir", str(data),
                   "--stop-modules-on-exit"]  # fmt: skip
            cmd += ["--broker", args.broker] if args.broker else []  # else the bundle's
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
    p.add_argument("--broker", help="broker URL for the agents (default: the one in their bootstrap bundles)")
    p.add_argument(
        "--label",
        action="append",
        type=label_arg,
        default=[],
        metavar="KEY=VALUE",
        help="label every device is registered with",
    )
    p.add_argument("--fpga", metavar="BOARD", help="give devices a simulated FPGA board (see `fpga boards`)")
    p.add_argument("--fpga-every", type=int, default=1, help="every Nth device gets the board (default all)")
    p.add_argument("--fpga-faults", metavar="SPEC", help="inject faults, e.g. wrong_results or program_fail:0.5")
    p.add_argument("--workdir", default=".edgefleet/sim-fleet")
    p.add_argument("--duration", type=float, default=0, help="stop after N seconds (default: until Ctrl-C)")
    p.add_argument("--output", choices=["table", "json"], default="table")
    p.set_defaults(func=_run)
