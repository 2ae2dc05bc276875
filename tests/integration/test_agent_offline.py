"""Offline safety, with the agent as a real process: the broker, the network or the hub goes away.

- broker down: modules keep serving (a client hammers one throughout); what changed meanwhile (a
  module crashed and was restarted) reaches the hub after reconnecting, as the retained report
- device cut off from a running broker: the hub publishes a manifest meanwhile; the agent applies
  the retained copy when its link returns (the subscribe path, not a live delivery)
- hub down (artifact store unreachable) while a new generation needs a download: the old version
  keeps serving, nothing is stopped; when the hub returns the new generation converges

test_agent_reconcile.py already covers a broker restart in the middle of a module's start and a
manifest published right after the broker returns; these tests do not repeat that.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.protocol import ArtifactRef, ModuleSpec, ReportedState
from tests.support.agent_harness import (
    FAKE_MODULE,
    TestHub,
    agent_env,
    kill_module_processes,
    module_pids,
    module_state,
    start_agent_process,
    stop_process,
)
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, free_port, wait_for

QUICK_DISCOVERY = [sys.executable, "-c", "print('[]')"]


class Hammer:
    """A client calling one URL back to back in a thread; counts successes and keeps every failure."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    resp.read()
                self.ok += 1
            except Exception as exc:  # every kind of failure counts
                self.failures.append(f"{time.strftime('%H:%M:%S')} {exc}")
            time.sleep(0.02)

    def stop(self) -> Hammer:
        self._stop.set()
        self._thread.join(10)
        return self


class CuttableLink:
    """A TCP forwarder between the agent and the broker: ``cut`` drops the connection and refuses new
    ones (a network partition: the broker stays up for everybody else), ``restore`` heals it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._lock = threading.Lock()
        self._open = True
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    client.close()
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                except OSError:
                    client.close()
                    continue
                upstream.settimeout(None)
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            self._open = False
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        with self._lock:
            self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


def module(name: str, artifacts: list[ArtifactRef], **fields: object) -> ModuleSpec:
    health = {"intervalS": 0.3, "timeoutS": 2.0, "failureThreshold": 3, "startupTimeoutS": 30}
    return ModuleSpec.model_validate(
        {"name": name, "service": f"{name}-svc", "artifacts": [a.to_wire() for a in artifacts], "health": health}
        | fields
    )


def healthy(generation: int, *names: str):  # type: ignore[no-untyped-def]
    return lambda r: r.generation == generation and all(module_state(r, n) == "Healthy" for n in names)


def status_of(report: ReportedState, name: str):  # type: ignore[no-untyped-def]
    return next(m for m in report.modules if m.name == name)


@pytest.fixture
def device_id(request: pytest.FixtureRequest) -> Iterator[str]:
    dev = f"off-{os.getpid()}-{request.node.name[5:25].strip('_')}"
    yield dev
    kill_module_processes(dev)


def start_agent(
    device_id: str, broker_url: str, hub: TestHub, tmp_path: Path, **settings: object
) -> subprocess.Popen[bytes]:
    args = ["--device-id", device_id, "--broker", broker_url, "--data-dir", str(tmp_path / "agent")]
    args += ["--hub", "http://127.0.0.1:9", "--hub-key", hub.key.public_key_b64]
    env = agent_env(
        modules__command=FAKE_MODULE,
        modules__stop_grace_s=3,
        discovery__command=QUICK_DISCOVERY,
        restart__backoff_base_s=0.2,
        restart__backoff_max_s=1.0,
        retry__base_s=0.2,
        retry__max_s=1.0,
        reporting__heartbeat_s=30,
        reporting__telemetry_interval_s=60,
        mqtt__reconnect_min_s=0.2,
        mqtt__reconnect_max_s=1.0,
        **settings,
    )
    return start_agent_process(args, env, tmp_path / "agent.log")


def test_broker_down_modules_keep_serving_and_the_latest_report_arrives_after(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    agent = start_agent(device_id, mosquitto.url, hub, tmp_path)
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("m.bin", b"weights" * 1000)
            hub.publish(1, [module("svc", [model]), module("worker", [model], restartPolicy="always")])
            before = hub.wait_report(healthy(1, "svc", "worker"), what="both modules Healthy")
            hammer = Hammer(f"{status_of(before, 'svc').endpoint}/v2/health/ready")
            wait_for(lambda: hammer.ok >= 3, 10, what="the client reaching svc")
            (worker_pid,) = module_pids(device_id, "worker")
            svc_pids = module_pids(device_id, "svc")

            mosquitto.stop()
            # while the broker is away the device lives on: a crashed module is restarted...
            os.kill(worker_pid, signal.SIGKILL)
            new_pid = wait_for(
                lambda: [p for p in module_pids(device_id, "worker") if p != worker_pid], 20, what="worker restarted"
            )[0]
            worker_url = f"{status_of(before, 'worker').endpoint}/v2/health/ready"
            wait_for(lambda: urllib.request.urlopen(worker_url, timeout=2).status == 200, 20, what="worker serving")
            ok_at_outage = hammer.ok
            wait_for(lambda: hammer.ok >= ok_at_outage + 20, 30, what="svc serving through the outage")
            mosquitto.start()

            # ...and the hub learns about it from the retained report once the agent is back: a new
            # subscriber (the hub restarted too, say) reads the latest state from the broker alone
            late_hub = TestHub(mosquitto.port, device_id)
            try:
                report = late_hub.wait_report(
                    lambda r: status_of(r, "worker").instance == str(new_pid) and healthy(1, "svc", "worker")(r),
                    what="the retained report shows the restarted worker",
                )
            finally:
                late_hub.close()
            hammer.stop()
            assert status_of(report, "worker").restarts == 1
            assert report.seq > before.seq and report.converged
            assert hammer.failures == [], f"svc failed requests during the broker outage: {hammer.failures[:5]}"
            assert module_pids(device_id, "svc") == svc_pids  # never touched
            # the first hub reconnects on its own back-off: it ends up seeing the device online
            wait_for(lambda: hub.presence[-1:] == ["online"], 20, what="the reconnected hub sees the device online")
    finally:
        stop_process(agent, signal.SIGKILL)
        hub.close()


def test_manifest_published_while_the_device_is_cut_off_is_applied_when_it_returns(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    link = CuttableLink(mosquitto.port)
    agent = start_agent(device_id, link.url, hub, tmp_path)
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            v1 = artifacts.add("v1.bin", b"version one" * 500, path="model/model.bin")
            v2 = artifacts.add("v2.bin", b"version two" * 500, path="model/model.bin")
            hub.publish(1, [module("svc", [v1])])
            first = hub.wait_report(healthy(1, "svc"), what="svc Healthy at generation 1")
            (pid,) = module_pids(device_id, "svc")
            hammer = Hammer(f"{status_of(first, 'svc').endpoint}/v2/health/ready")

            offline_seen = hub.presence.count("offline")
            link.cut()
            wait_for(lambda: hub.presence.count("offline") > offline_seen, 30, what="the broker's last will")
            gen2 = hub.publish(2, [module("svc", [v2])])  # retained; the device cannot hear it now
            ok_at_publish = hammer.ok
            wait_for(lambda: hammer.ok >= ok_at_publish + 20, 30, what="svc serving while cut off")
            assert module_pids(device_id, "svc") == [pid] and hub.latest().generation == 1  # type: ignore[union-attr]
            hammer.stop()
            assert hammer.failures == [], f"svc failed requests while the device was cut off: {hammer.failures[:5]}"

            link.restore()
            report = hub.wait_report(healthy(2, "svc"), what="generation 2 applied after the link returned")
            assert status_of(report, "svc").spec_hash == gen2.modules[0].spec_hash()
            assert len(module_pids(device_id, "svc")) == 1
            served = tmp_path / "agent" / "modules" / "svc" / gen2.modules[0].spec_hash() / "model" / "model.bin"
            assert served.read_bytes() == b"version two" * 500
            # the first hub reconnects on its own back-off: it ends up seeing the device online
            wait_for(lambda: hub.presence[-1:] == ["online"], 20, what="the reconnected hub sees the device online")
    finally:
        stop_process(agent, signal.SIGKILL)
        link.close()
        hub.close()


def test_hub_down_during_an_update_keeps_the_old_version_serving_then_converges(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    agent = start_agent(device_id, mosquitto.url, hub, tmp_path)
    log = tmp_path / "agent.log"
    try:
        artifacts = ArtifactServer(tmp_path / "artifacts").start()
        v1 = artifacts.add("v1.bin", b"version one" * 500, path="model/model.bin")
        hub.publish(1, [module("svc", [v1])])
        first = hub.wait_report(healthy(1, "svc"), what="svc Healthy at generation 1")
        (pid,) = module_pids(device_id, "svc")
        hammer = Hammer(f"{status_of(first, 'svc').endpoint}/v2/health/ready")

        artifacts.stop()  # the hub (its artifact store) is down
        v2 = artifacts.add("v2.bin", b"version two" * 500, path="model/model.bin")
        gen2 = hub.publish(2, [module("svc", [v2])])
        waiting = hub.wait_report(
            lambda r: r.generation == 2 and module_state(r, "svc") == "Transitioning",
            what="generation 2 accepted, waiting for its download",
        )
        assert "previous version keeps serving" in status_of(waiting, "svc").message and not waiting.converged

        # the agent keeps trying (with cool-off) and keeps the old version up meanwhile
        def retried() -> bool:
            return any(v2.digest in line and "(attempt 3" in line for line in log.read_text().splitlines())

        wait_for(retried, 60, what="the agent's third attempt at the download")
        hammer.stop()
        assert hammer.failures == [], f"svc failed requests while the hub was down: {hammer.failures[:5]}"
        assert hammer.ok > 0 and module_pids(device_id, "svc") == [pid]

        artifacts.start()  # back, on the same address
        report = hub.wait_report(
            lambda r: healthy(2, "svc")(r) and r.converged, what="generation 2 converged after the hub returned"
        )
        assert status_of(report, "svc").spec_hash == gen2.modules[0].spec_hash()
        assert len(module_pids(device_id, "svc")) == 1
        artifacts.stop()
    finally:
        stop_process(agent, signal.SIGKILL)
        hub.close()
