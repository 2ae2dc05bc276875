"""A whole fleet for end-to-end tests: real Mosquitto, the hub and N agents as OS processes.

The broker is locked down as in production: the configuration `edgefleet hub broker-config` writes
for the hub's data dir (TLS, client certificates from the hub's CA, the generated ACL and CRL). Each
agent is registered first with `edgefleet device register` and starts from its bootstrap bundle.
The fleet's admin token is made as an operator makes the first one (`edgefleet hub token create`
in the hub's data directory) and every CLI call passes it in EDGEFLEET_TOKEN. Agents need none.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.processes import Mosquitto, free_port, wait_for

BIN = Path(sys.executable).parent


@dataclass
class Fleet:
    workdir: Path
    broker: Mosquitto
    hub_url: str = ""
    token: str = ""  # admin
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=full_env)
        self.procs[name] = proc
        return proc

    def start_hub(self) -> None:
        port = free_port()
        self.hub_url = f"http://127.0.0.1:{port}"
        made = subprocess.run(
            [str(BIN / "edgefleet"), "-o", "json", "hub", "token", "create", "--role", "admin", "--name", "e2e",
             "--data-dir", str(self.workdir / "hub")],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        self.token = json.loads(made.stdout)["token"]
        self.spawn(
            "hub",
            [str(BIN / "edgefleet"), "hub", "serve", "--port", str(port), "--broker", self.broker.url,
             "--data-dir", str(self.workdir / "hub")],
        )  # fmt: skip
        wait_for(lambda: self.cli_ok("device", "list"), timeout=30, what="hub API")

    def register(self, device_id: str, *labels: str) -> Path:
        """`edgefleet device register`: the device joins the fleet; returns its bootstrap bundle."""
        bundles = self.workdir / "bundles"
        bundles.mkdir(exist_ok=True)
        bundle = bundles / f"{device_id}.json"
        args = ["device", "register", device_id, "--out", str(bundle)]
        for label in labels:
            args += ["--label", label]
        self.cli(*args)
        return bundle

    def start_agent(self, device_id: str, *labels: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Register the device with ``labels`` (KEY=VALUE), then start its agent from the bundle."""
        bundle = self.register(device_id, *labels)
        cmd = [str(BIN / "edgefleet-agent"), "--bootstrap", str(bundle),
               "--data-dir", str(self.workdir / "agents" / device_id), "--stop-modules-on-exit"]  # fmt: skip
        return self.spawn(f"agent-{device_id}", cmd, env)

    def cli(
        self, *args: str, check: bool = True, timeout: float = 120, token: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "EDGEFLEET_TOKEN": token or self.token, "EDGEFLEET_CONFIG": str(self.workdir / "cli.toml")}
        result = subprocess.run(
            [str(BIN / "edgefleet"), "--hub", self.hub_url, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"edgefleet {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def cli_ok(self, *args: str) -> bool:
        return self.cli(*args, check=False, timeout=10).returncode == 0

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--output", "json").stdout)

    def module_processes(self) -> list[psutil.Process]:
        """Scoring-module processes started for this fleet's devices."""
        marker = str(self.workdir)
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info.get("cmdline") or []
            if "--edgefleet-device" in cmdline and any(marker in a for a in cmdline):
                found.append(proc)
        return found

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for proc in self.module_processes():
            proc.kill()


@pytest.fixture
def fleet(tmp_path: Path, secure_mosquitto: Mosquitto) -> Iterator[Fleet]:
    for name in ("EDGEFLEET_HUB", "EDGEFLEET_TOKEN", "EDGEFLEET_CONFIG"):
        os.environ.pop(name, None)
    f = Fleet(tmp_path, secure_mosquitto)
    try:
        f.start_hub()
        yield f
    finally:
        f.stop()
