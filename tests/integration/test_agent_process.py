"""The agent as a real OS process: SIGKILL and restart adopts the running module, SIGTERM leaves it
running, trust-on-first-use pins the hub key so a later start needs no hub."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgefleet.protocol import ModuleSpec
from tests.support.agent_harness import (
    FAKE_MODULE,
    REPO,
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


class HubInfoServer:
    """Answers GET /api/v1/hub like the hub does, and counts how often it was asked."""

    def __init__(self, public_key: str, key_id: str) -> None:
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps({"publicKey": public_key, "keyId": key_id}).encode()
                self.send_response(200 if self.path == "/api/v1/hub" else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def device_id() -> Iterator[str]:
    dev = f"proc-{os.getpid()}"
    yield dev
    kill_module_processes(dev)


def test_sigkill_restart_adopts_module_and_sigterm_leaves_it_running(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    info = HubInfoServer(hub.key.public_key_b64, hub.key.key_id)
    data_dir = tmp_path / "agent"
    # trust on first use, against the fingerprint the operator gave
    args = ["--device-id", device_id, "--broker", mosquitto.url, "--data-dir", str(data_dir),
            "--hub-key-fingerprint", hub.key.fingerprint]  # fmt: skip
    env = agent_env(
        modules__command=FAKE_MODULE,
        discovery__command=[sys.executable, "-c", "print('[]')"],
        reporting__heartbeat_s=5,
        modules__stop_grace_s=3,
    )
    log_path = tmp_path / "agent.log"
    agents = []
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("model.onnx", b"weights" * 300)
            spec = ModuleSpec.model_validate(
                {
                    "name": "scorer",
                    "service": "scorer-svc",
                    "artifacts": [model.to_wire()],
                    "health": {"intervalS": 0.5, "startupTimeoutS": 30},
                }
            )
            agents.append(start_agent_process([*args, "--hub", f"http://127.0.0.1:{info.port}"], env, log_path))
            hub.publish(1, [spec])
            hub.wait_report(lambda r: module_state(r, "scorer") == "Healthy", what="scorer Healthy")
            assert info.hits == 1  # trust on first use (the fingerprint matched): asked once, then pinned
            assert json.loads((data_dir / "hub-key.json").read_text())["publicKey"] == hub.key.public_key_b64
            info.close()  # from now on the hub is unreachable: the pinned key must do
            (pid,) = module_pids(device_id, "scorer")

            agents[0].send_signal(signal.SIGKILL)
            agents[0].wait(10)
            wait_for(lambda: hub.presence and hub.presence[-1] == "offline", 15, what="last will: offline")
            assert module_pids(device_id, "scorer") == [pid]  # the module outlives its agent

            hub.reports.clear()
            agents.append(start_agent_process([*args, "--hub", f"http://127.0.0.1:{info.port}"], env, log_path))
            report = hub.wait_report(
                lambda r: r.seq >= 1 and module_state(r, "scorer") == "Healthy" and r.converged,
                what="restarted agent reports the adopted module Healthy",
            )
            assert module_pids(device_id, "scorer") == [pid]  # adopted, not duplicated
            assert report.modules[0].instance == str(pid)
            assert hub.presence[-1] == "online"

            stop_process(agents[1], signal.SIGTERM)
            assert agents[1].returncode == 0
            wait_for(lambda: hub.presence[-1] == "offline", 15, what="graceful offline presence")
            assert module_pids(device_id, "scorer") == [pid]  # graceful exit leaves modules serving

            agents.append(
                start_agent_process([*args, "--hub", "http://127.0.0.1:9", "--stop-modules-on-exit"], env, log_path)
            )
            hub.reports.clear()
            hub.wait_report(lambda r: module_state(r, "scorer") == "Healthy", what="adopted again")
            stop_process(agents[2], signal.SIGTERM)
            assert module_pids(device_id, "scorer") == []
    finally:
        for proc in agents:
            stop_process(proc, signal.SIGKILL)
        hub.close()
        info.close()
    assert "adopted running module scorer" in log_path.read_text()


def test_adoption_is_scoped_to_the_agents_own_directory(tmp_path: Path, device_id: str) -> None:
    """Simulated fleets and parallel test runs reuse device ids on one host: never take over another's module."""
    from edgefleet.agent.runtime import ProcessRuntime

    spec = ModuleSpec(name="solo", service="s", port=free_port())
    first = ProcessRuntime(tmp_path / "a", device_id, FAKE_MODULE)
    workdir = tmp_path / "a" / "solo" / spec.spec_hash()
    (workdir / "model").mkdir(parents=True)
    iid = first.create(spec, spec.spec_hash(), spec.port or 0, workdir)
    first.start(iid)

    def ready() -> bool:
        status = first.list_instances()[0].status
        return status is not None and status.state == "Ready"

    wait_for(ready, 20, what="module Ready")
    (pid,) = module_pids(device_id, "solo")

    other = ProcessRuntime(tmp_path / "b", device_id, FAKE_MODULE)  # same device id, other agent directory
    assert other.list_instances() == [] and module_pids(device_id, "solo") == [pid]

    again = ProcessRuntime(tmp_path / "a", device_id, FAKE_MODULE)  # the same agent, restarted
    (inst,) = again.list_instances()
    assert inst.running and inst.pid == pid
    again.stop(iid, grace_s=3)
    assert module_pids(device_id, "solo") == []
    again.remove(iid)
    assert not (tmp_path / "a" / "solo").exists()


def test_a_hub_key_is_pinned_only_against_the_fingerprint_given(tmp_path: Path, device_id: str) -> None:
    from edgefleet.protocol import HubKey

    impostor = HubKey.generate()
    info = HubInfoServer(impostor.public_key_b64, impostor.key_id)
    base = [sys.executable, "-m", "agent", "--device-id", device_id, "--broker", f"mqtt://127.0.0.1:{free_port()}",
            "--hub", f"http://127.0.0.1:{info.port}", "--data-dir", str(tmp_path / "agent")]  # fmt: skip
    env = agent_env(discovery__command=[sys.executable, "-c", "print('[]')"])
    try:
        wanted = HubKey.generate().fingerprint  # the operator's hub, not the one answering
        out = subprocess.run([*base, "--hub-key-fingerprint", wanted], env=env, capture_output=True, text=True,
                             timeout=60, cwd=REPO)  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert f"offers a hub key with fingerprint {impostor.fingerprint}, not the {wanted} given" in out.stderr
        assert not (tmp_path / "agent" / "hub-key.json").exists()
        out = subprocess.run(base, env=env, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert out.returncode == 2 and "no hub key: start the agent with --bootstrap FILE" in out.stderr
        assert info.hits == 1  # without a fingerprint the hub is not even asked
    finally:
        info.close()
