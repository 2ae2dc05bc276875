"""`edgefleet demo`: the whole system on one machine, start to finish.

Starts a private broker, the hub, and N agents as separate OS processes (each a simulated device
with its own data directory), registers the sample int8 digits model, deploys it everywhere,
shows progress until every device is Healthy, scores the held-out digits images on every device's
endpoint, prints per-device accuracy, and stops everything it started — also on Ctrl-C.

Secure as in production when Mosquitto is installed: ``edgefleet hub broker-config`` writes the
broker's locked-down configuration (TLS, client certificates from the hub's CA, ACL, CRL), each
device is registered (``device register``) and its agent starts from its bootstrap bundle alone,
and at the end one device is revoked. The hub's API is HTTPS either way (``hub serve --tls``): the
demo trusts the hub CA as an operator does (``edgefleet hub ca``), the agents through their bundles. With the embedded amqtt broker it says plainly that there is
no TLS and no identity check.

The demo drives the hub only through its REST API (HubClient), exactly as the CLI does; the hub,
the agents and the broker are processes it starts, so it imports none of them. Like an operator
on the hub machine, it first makes an admin token with ``edgefleet hub token create`` and then
calls the API with it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from edgefleet.hub.broker import LocalBroker, find_mosquitto, free_port, start_local_broker
from edgefleet.hub.cli.bootstrap import provision
from edgefleet.hub.cli.output import table
from edgefleet.hub.cli.tables import model_ref
from edgefleet.hub.cli.workflow import deploy_service, register_model, wait_for_removal, wait_for_service
from edgefleet.hub.client import HubClient, trust
from edgefleet.hub.errors import ClientError, HubError
from edgefleet.protocol.models import ModuleState

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"
SERVICE = "digits-svc"
FPGA_BOARD = "kv260"
MODEL = "digits"

Say = Callable[[str], None]


def _console_script(name: str) -> str:
    """The console script installed beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise ClientError(f"`{name}` is not installed; run `pip install -e .` (make demo does)")
    return found


@dataclass
class Stack:
    """Every process the demo started, stopped in reverse order."""

    workdir: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    broker: LocalBroker | None = None

    def spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:
            # own session: Ctrl-C reaches only the demo, which then stops everything in order
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.procs:
            if proc.poll() is not None:
                raise ClientError(
                    f"{name} exited with code {proc.returncode}; see {self.workdir / 'logs' / (name + '.log')}"
                )

    def stop(self) -> None:
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        _kill_leftover_modules(self.workdir)
        if self.broker:
            self.broker.stop()
            self.broker = None


def _kill_leftover_modules(workdir: Path) -> None:
    """Safety net: module processes live in their own sessions; none may outlive the demo."""
    import psutil

    marker = str(workdir)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "--edgefleet-device" in cmdline and any(marker in arg for arg in cmdline):
            log.warning("stopping leftover module process %d", proc.pid)
            try:
                proc.terminate()
                proc.wait(5)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.NoSuchProcess:
                pass


def _admin_token(hub_dir: Path) -> str:
    """An admin token for the demo's hub, made as an operator makes the first one: in the hub's database."""
    done = subprocess.run(
        [_console_script("edgefleet"), "-o", "json", "hub", "token", "create", "--role", "admin", "--name", "demo",
         "--data-dir", str(hub_dir)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if done.returncode != 0:
        raise ClientError(f"`edgefleet hub token create` failed: {done.stderr.strip()}")
    return str(json.loads(done.stdout)["token"])


def _hub_ca(hub_dir: Path, out: Path, stack: Stack, timeout: float = 30.0) -> Path:
    """The hub CA's certificate, written as an operator gets it on the hub machine (`edgefleet hub ca`),
    once the starting hub has made it."""
    deadline = time.monotonic() + timeout
    while True:
        stack.check_alive()
        done = subprocess.run(
            [_console_script("edgefleet"), "hub", "ca", "--data-dir", str(hub_dir), "--out", str(out)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode == 0:
            return out
        if time.monotonic() > deadline:
            raise ClientError(f"`edgefleet hub ca` failed: {done.stderr.strip()}")
        time.sleep(0.2)


def _wait_http(url: str, stack: Stack, timeout: float = 30.0, ca_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    verify = trust(ca_file) if ca_file else True
    while time.monotonic() < deadline:
        stack.check_alive()
        try:
            if httpx.get(url, timeout=1.0, verify=verify).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise ClientError(f"{url} did not answer within {timeout:.0f}s")


def _wait_devices(client: HubClient, ids: list[str], stack: Stack, say: Say, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    seen: set[str] = set()
    while time.monotonic() < deadline:
        stack.check_alive()
        online = {d.device_id for d in client.list_devices() if d.presence == "online"}
        for dev in sorted((online & set(ids)) - seen):
            say(f"  {dev}: online")
        seen |= online & set(ids)
        if seen >= set(ids):
            return
        time.sleep(0.2)
    raise ClientError(f"devices {sorted(set(ids) - seen)} did not come online within {timeout:.0f}s")


def score_accuracy(endpoint: str, images: np.ndarray, labels: np.ndarray, batch: int = 64) -> tuple[float, float]:
    """Score every image through POST /score; returns (accuracy, seconds)."""
    correct = 0
    started = time.perf_counter()
    with httpx.Client(timeout=60) as http:
        for i in range(0, len(images), batch):
            body = json.dumps({"data": images[i : i + batch].reshape(-1, 64).tolist()})
            response = http.post(endpoint.rstrip("/") + "/score", content=body)
            if response.status_code != 200:
                raise ClientError(f"{endpoint}/score answered {response.status_code}: {response.text[:200]}")
            predictions = np.asarray(response.json()["predictions"])
            correct += int((predictions == labels[i : i + batch]).sum())
    return correct / len(images), time.perf_counter() - started


def run_demo(
    workdir: Path,
    devices: int = 3,
    broker: str = "auto",
    timeout: float = 120.0,
    say: Say = print,
    fpga_devices: int = 1,
) -> dict[str, Any]:
    """Run the demo; returns a summary (per-device state, backend and accuracy)."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    stack = Stack(workdir)
    summary: dict[str, Any] = {"devices": []}
    try:
        stack.broker = _start_broker(workdir, broker)
        if stack.broker.tls:
            say(f"broker   mosquitto on {stack.broker.url} (TLS, client certificates from the hub CA, ACL, CRL:")
            say(f"         edgefleet hub broker-config --data-dir {workdir / 'hub'} --out {workdir / 'broker'})")
        else:
            say(f"broker   {stack.broker.kind} on {stack.broker.url} — NO TLS and no identities: any local client can")
            say("         read every manifest and forge reports (install mosquitto for the locked-down broker)")

        hub_port = free_port()
        hub_url = f"https://127.0.0.1:{hub_port}"
        token = _admin_token(workdir / "hub")
        stack.spawn(
            "hub",
            [_console_script("edgefleet"), "hub", "serve", "--tls", "--port", str(hub_port),
             "--broker", stack.broker.url, "--data-dir", str(workdir / "hub")],
        )  # fmt: skip
        ca_file = _hub_ca(workdir / "hub", workdir / "hub-ca.pem", stack)
        _wait_http(hub_url + "/api/v1/health", stack, ca_file=ca_file)
        say(f"hub      {hub_url} (SQLite + artifact store in {workdir / 'hub'})")
        say(
            f"         HTTPS, certificate from the hub CA; the CLI trusts it with --ca-file {ca_file} (edgefleet hub ca)"
        )
        say("token    admin token 'demo', made in the hub's database (edgefleet hub token create)")

        ids = [f"dev-{i + 1}" for i in range(devices)]
        fpga_ids = ids[len(ids) - fpga_devices :] if fpga_devices else []
        bundles = workdir / "bundles"
        bundles.mkdir()
        with HubClient(hub_url, token, ca_file=ca_file) as client:
            for i, dev in enumerate(ids):
                provision(client, dev, {"site": "demo", "rack": str(i % 2)}, bundles / f"{dev}.json")
            say(f"register {', '.join(ids)}: a client certificate each; bootstrap bundles (0600) in {bundles}")
            for dev in ids:
                board = ["--fpga-sim", FPGA_BOARD] if dev in fpga_ids else []
                stack.spawn(
                    f"agent-{dev}",
                    [_console_script("edgefleet-agent"), "--bootstrap", str(bundles / f"{dev}.json"),
                     "--data-dir", str(workdir / "agents" / dev), "--stop-modules-on-exit", *board],
                )  # fmt: skip
            say(f"agents   {', '.join(ids)} (one OS process each, started from their bundles)")
            if fpga_ids:
                say(
                    f"         {', '.join(fpga_ids)} with a simulated {FPGA_BOARD} FPGA board (edgefleet-sim fpga boards)"
                )
            _wait_devices(client, ids, stack, say)

            model = register_model(client, SAMPLE_DIR / "digits_int8.onnx", MODEL, {"task": "digits"},
                                   "small CNN on scikit-learn digits, int8 QOperator", say)  # fmt: skip
            say(f"model    registered {model_ref(model)}")
            deploy_service(
                client,
                SERVICE,
                [model_ref(model)],
                SAMPLE_DIR / "inferenceconfig.json",
                SAMPLE_DIR / "deploymentconfig.json",
                say,
            )
            say(f"deploy   {SERVICE} -> {devices} device(s)")
            service = wait_for_service(client, SERVICE, timeout, say, on_poll=stack.check_alive)
            if service.state != ModuleState.HEALTHY:
                raise ClientError(f"service {SERVICE} ended {service.state.value}: {service.reason}")

            test = np.load(SAMPLE_DIR / "test_set.npz")
            images, labels = test["images"], test["labels"]
            say(f"score    {len(images)} held-out digits images on every device")
            rows = []
            scored = sorted(service.devices, key=lambda d: d.device)
            for d in scored:
                endpoint = d.endpoint or ""  # Healthy devices report one
                accuracy, seconds = score_accuracy(endpoint, images, labels)
                rows.append([d.device, d.state.value, d.backend or "-", f"{accuracy:.2%}",
                             f"{len(images) / seconds:.0f}/s", endpoint])  # fmt: skip
                summary["devices"].append({**d.model_dump(mode="json", by_alias=True), "accuracy": accuracy})
            say(table(["DEVICE", "STATE", "BACKEND", "ACCURACY", "THROUGHPUT", "ENDPOINT"], rows))
            say("backend choice, verified and measured on each device when the module loaded:")
            for d in scored:
                say(f"  {d.device}: {d.reason or d.backend or '-'}")
            client.delete_service(SERVICE)
            say(f"delete   {SERVICE}")
            wait_for_removal(client, SERVICE, 60, say)
            revoked = client.revoke_device(ids[0])
            effect = "it can no longer connect" if revoked.broker.reloaded else "the hub no longer listens to it"
            say(f"revoke   {ids[0]}: {effect}; {revoked.broker.message}")
    finally:
        say("stopping agents, hub and broker")
        stack.stop()
    say("done: every process the demo started has exited")
    return summary


def _start_broker(workdir: Path, prefer: str) -> LocalBroker:
    """Mosquitto with the configuration `edgefleet hub broker-config` writes; amqtt without either."""
    if prefer == "amqtt" or find_mosquitto() is None:
        return start_local_broker(workdir / "broker", prefer=prefer)
    port = free_port()
    out = workdir / "broker"
    done = subprocess.run(
        [_console_script("edgefleet"), "hub", "broker-config", "--data-dir", str(workdir / "hub"),
         "--out", str(out), "--port", str(port)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if done.returncode != 0:
        raise ClientError(f"edgefleet hub broker-config failed: {done.stderr.strip()}")
    return start_local_broker(out, port=port, prefer="mosquitto", config=out / "mosquitto.conf")


def main_demo(workdir: Path, devices: int, broker: str, timeout: float, fpga_devices: int = 1) -> int:
    logging.basicConfig(level=os.environ.get("EDGEFLEET_LOG_LEVEL", "WARNING"))
    try:
        run_demo(workdir, devices, broker, timeout, fpga_devices=fpga_devices)
    except KeyboardInterrupt:
        print("interrupted: everything the demo started has been stopped", file=sys.stderr)
        return 130
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
