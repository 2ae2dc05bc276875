"""Agent against a real Mosquitto, a real HTTP artifact server and real module processes.

The agent runs in a thread of the test process here (these tests are about reconciling, not
about the agent's own process); modules are real child processes in their own sessions.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgefleet.agent.daemon import Agent
from edgefleet.agent.settings import AgentSettings
from edgefleet.protocol import HubKey, ModuleSpec, ReportedState
from tests.support.agent_harness import (
    FAKE_MODULE,
    TestHub,
    kill_module_processes,
    module_pids,
    module_state,
)
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto, wait_for

# stands in for `python -m edgefleet.accelerators.discovery --json` (same output contract, no OpenCL start-up cost)
QUICK_DISCOVERY = [sys.executable, "-c", 'print(\'[{"kind": "fpga", "board": "sim-edge", "simulated": true}]\')']


def fast_settings(device_id: str, broker: Mosquitto, data_dir: Path, hub_key: str, **extra: Any) -> AgentSettings:
    """Settings for a quick agent; ``extra`` adds top-level settings or, group by group, to the groups."""
    settings: dict[str, Any] = {
        "device_id": device_id,
        "hub_url": "http://127.0.0.1:9",  # never asked: the key is given
        "data_dir": data_dir,
        "hub_public_key": hub_key,
        "mqtt": {"broker_url": broker.url, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        "modules": {"command": FAKE_MODULE, "stop_grace_s": 3.0},
        "discovery": {"command": QUICK_DISCOVERY},
        "restart": {"backoff_base_s": 0.2, "backoff_max_s": 1.0},
        "retry": {"base_s": 0.2, "max_s": 1.0},
        "reporting": {"heartbeat_s": 5.0, "telemetry_interval_s": 1.0},
    }
    for key, value in extra.items():
        settings[key] = {**settings[key], **value} if isinstance(settings.get(key), dict) else value
    return AgentSettings(**settings)


class RunningAgent:
    def __init__(self, settings: AgentSettings) -> None:
        self.agent = Agent(settings)
        self.thread = threading.Thread(target=self.agent.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.agent.request_stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "agent thread did not stop"


@pytest.fixture
def env(
    mosquitto: Mosquitto, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[TestHub, ArtifactServer]]:
    device_id = f"dev-{request.node.name[-20:].strip('_').replace('[', '-').replace(']', '')}"
    hub = TestHub(mosquitto.port, device_id)
    with ArtifactServer(tmp_path / "artifacts") as artifacts:
        yield hub, artifacts
    hub.close()
    kill_module_processes(device_id)


def spec(name: str, artifacts: list, **fields: object) -> ModuleSpec:
    health = {"intervalS": 0.3, "timeoutS": 1.0, "failureThreshold": 2, "startupTimeoutS": 20}
    return ModuleSpec.model_validate(
        {
            "name": name,
            "service": f"{name}-svc",
            "artifacts": [a.to_wire() for a in artifacts],
            "health": health,
            **fields,
        }
    )


def healthy(name: str, generation: int):  # type: ignore[no-untyped-def]
    return lambda r: r.generation == generation and module_state(r, name) == "Healthy"


def get_json(url: str) -> dict:  # type: ignore[type-arg]
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def test_deploy_verify_refuse_corrupt_reject_forged_and_remove(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    model = artifacts.add("digits.onnx", b"onnx-model-bytes" * 1000)
    settings = fast_settings(
        hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64, labels={"site": "lab"}
    )
    running = RunningAgent(settings)
    try:
        hub.publish(1, [spec("m1", [model], env={"EXTRA": "1"})])
        report = hub.wait_report(healthy("m1", 1), what="m1 Healthy at generation 1")
        m1 = next(m for m in report.modules if m.name == "m1")
        assert m1.endpoint and m1.backend == "cpu" and m1.backend_timings_ms == {"cpu": 0.1}
        info = get_json(m1.endpoint + "/info")
        assert info["modelFiles"] == ["digits.onnx"]
        assert info["args"]["edgefleet_module"] == "m1" and info["args"]["host"] == "127.0.0.1"
        assert info["azuremlModelDir"].endswith("/model")
        report = hub.wait_report(lambda r: r.converged and bool(r.capabilities.accelerators), what="converged")
        (fpga,) = report.capabilities.accelerators
        assert (fpga.kind, fpga.board, fpga.simulated) == ("fpga", "sim-edge", True)
        assert report.capabilities.labels == {"site": "lab"} and report.capabilities.cpu_count >= 1
        assert hub.latest().last_known_good == 1  # type: ignore[union-attr]
        (pid,) = module_pids(hub.device_id, "m1")

        # a corrupted artifact: refused, reported as m2's Failed reason, never run; m1 untouched
        good = b"the real weights" * 100
        corrupt = artifacts.add("bad.onnx", good, serve=b"tampered weights" * 100)
        hub.publish(2, [spec("m1", [model], env={"EXTRA": "1"}), spec("m2", [corrupt])])
        report = hub.wait_report(
            lambda r: r.generation == 2 and module_state(r, "m2") == "Failed", what="m2 Failed for its artifact"
        )
        m2 = next(m for m in report.modules if m.name == "m2")
        assert "does not match" in m2.message and corrupt.digest in m2.message
        assert module_state(report, "m1") == "Healthy" and not report.converged
        assert module_pids(hub.device_id, "m2") == []
        blobs = tmp_path / "agent" / "cache" / "blobs"
        assert not (blobs / corrupt.digest.split(":")[1]).exists()
        assert (blobs / model.digest.split(":")[1]).exists()

        # a manifest signed by another key is rejected and reported; nothing running is disturbed
        hub.publish(3, [], key=HubKey.generate())
        report = hub.wait_report(lambda r: bool(r.rejected), what="rejection reported")
        assert "signed with key" in (report.rejected or "") and report.generation == 2
        assert module_pids(hub.device_id, "m1") == [pid]

        # dropping m2 (and fixing nothing else) leaves m1 alone; generation 3 converges
        hub.publish(3, [spec("m1", [model], env={"EXTRA": "1"})])
        hub.wait_report(lambda r: r.generation == 3 and r.converged and r.rejected is None, what="gen 3 converged")
        assert module_pids(hub.device_id, "m1") == [pid]

        # removing the module from the manifest stops it
        hub.publish(4, [])
        hub.wait_report(lambda r: r.generation == 4 and r.converged and r.modules == [], what="empty gen 4")
        wait_for(lambda: module_pids(hub.device_id) == [], 15, what="m1 process gone")
        assert not (tmp_path / "agent" / "modules" / "m1").exists()
    finally:
        running.stop()


def test_spec_change_replaces_module_after_download_and_restart_policies(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    v1 = artifacts.add("v1.onnx", b"version one" * 100, path="model/model.onnx")
    v2 = artifacts.add("v2.onnx", b"version two" * 100, path="model/model.onnx")
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64))
    try:
        hub.publish(1, [spec("web", [v1])])
        first = hub.wait_report(healthy("web", 1))
        old_hash = next(m for m in first.modules if m.name == "web").spec_hash
        hub.publish(2, [spec("web", [v2])])
        second = hub.wait_report(healthy("web", 2), what="web replaced by v2")
        web = next(m for m in second.modules if m.name == "web")
        assert web.spec_hash != old_hash
        assert len(module_pids(hub.device_id, "web")) == 1
        # the v2 bytes reached the module directory through the cache
        served = tmp_path / "agent" / "modules" / "web" / (web.spec_hash or "") / "model" / "model.onnx"
        assert served.read_bytes() == b"version two" * 100
        # the port is kept across the replacement, so the endpoint stays the same
        assert web.endpoint == next(m for m in first.modules if m.name == "web").endpoint

        # exit code 78: Unschedulable, never restarted; exit 1 with on-failure: restarted with back-off
        hub.publish(
            3,
            [
                spec("nope", [v1], env={"FAKE_MODULE_EXIT": "78"}),
                spec("crashy", [v1], env={"FAKE_MODULE_EXIT": "1"}, restartPolicy="on-failure"),
                spec("once", [v1], env={"FAKE_MODULE_EXIT": "1"}, restartPolicy="never"),
            ],
        )

        def settled(r: ReportedState) -> bool:
            crashy = next((m for m in r.modules if m.name == "crashy"), None)
            return (
                r.generation == 3
                and module_state(r, "nope") == "Unschedulable"
                and module_state(r, "once") == "Failed"
                and crashy is not None
                and crashy.restarts >= 2
            )

        report = hub.wait_report(settled, what="restart policies applied")
        by_name = {m.name: m for m in report.modules}
        assert "exit with 78" in by_name["nope"].message and by_name["nope"].restarts == 0
        assert "restart policy never" in by_name["once"].message and by_name["once"].restarts == 0
        assert wait_for(lambda: module_pids(hub.device_id, "web") == [], 15, what="web removed")
    finally:
        running.stop()


def test_broker_restart_mid_rollout_converges_and_direct_methods(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    model = artifacts.add("m.onnx", b"model" * 500)
    running = RunningAgent(fast_settings(hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64))
    try:
        hub.publish(1, [spec("svc", [model], env={"FAKE_MODULE_READY_AFTER": "1.0"})])
        hub.wait_report(lambda r: r.generation == 1, what="generation 1 accepted")
        mosquitto.restart(down_for=1.0)  # while the module is still starting
        hub.wait_report(healthy("svc", 1), what="Healthy after the broker came back")
        assert running.agent.link.connected

        # a manifest published while the agent is cut off is applied when the broker returns
        mosquitto.stop()
        wait_for(lambda: not running.agent.link.connected, 20, what="agent noticed the broker is gone")
        mosquitto.start()
        hub.publish(2, [spec("svc", [model], env={"V": "2"})])
        hub.wait_report(healthy("svc", 2), what="generation 2 applied after reconnect")
        assert len(module_pids(hub.device_id, "svc")) == 1
        assert hub.presence[-1] == "online"

        telemetry = wait_for(lambda: [t for t in hub.telemetry if "svc" in t.modules], 20, what="module telemetry")
        assert telemetry[-1].rss_bytes > 0 and telemetry[-1].modules["svc"]["rssBytes"] > 0
        assert hub.call("ping", {}).payload["generation"] == 2
        (pid,) = module_pids(hub.device_id, "svc")
        resp = hub.call("restart-module", {"module": "svc"})
        assert resp.status == 200
        new_pids = module_pids(hub.device_id, "svc")
        assert len(new_pids) == 1 and new_pids != [pid]
        logs = hub.call("logs", {"module": "svc", "tail": 5})
        assert logs.status == 200 and any("serving on" in line for line in logs.payload["lines"])
        assert hub.call("logs", {"module": "ghost"}).status == 404
        assert hub.call("restart-module", {}).status == 400
    finally:
        running.stop()


DIGITS_INT8 = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits" / "digits_int8.onnx"
ZERO = [0, 0, 5, 13, 9, 1, 0, 0, 0, 0, 13, 15, 10, 15, 5, 0, 0, 3, 15, 2, 0, 11, 8, 0, 0, 4, 12, 0, 0, 8, 8, 0,
        0, 5, 8, 0, 0, 9, 8, 0, 0, 4, 11, 0, 1, 12, 7, 0, 0, 2, 14, 5, 10, 12, 0, 0, 0, 0, 6, 13, 10, 0, 0, 0]  # fmt: skip


@pytest.mark.skipif(not DIGITS_INT8.exists(), reason="the digits sample model is not built")
def test_real_scoring_module_serves_the_digits_model(
    env: tuple[TestHub, ArtifactServer], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    hub, artifacts = env
    model = artifacts.add("digits_int8.onnx", DIGITS_INT8.read_bytes(), path="model/digits_int8.onnx")
    settings = fast_settings(hub.device_id, mosquitto, tmp_path / "agent", hub.key.public_key_b64)
    scoring = [sys.executable, "-m", "edgefleet.modules.scoring"]
    settings = settings.model_copy(update={"modules": settings.modules.model_copy(update={"command": scoring})})
    running = RunningAgent(settings)
    try:
        digits = spec("digits", [model], models=[{"name": "digits", "version": 1}])
        hub.publish(
            1, [digits.model_copy(update={"health": digits.health.model_copy(update={"startup_timeout_s": 90})})]
        )
        report = hub.wait_report(
            lambda r: healthy("digits", 1)(r) and r.modules[0].backend is not None,
            timeout=120,
            what="real scoring module Healthy, with its backend choice from the status file",
        )
        status = report.modules[0]
        assert status.backend == "cpu" and status.backend_reason
        request = urllib.request.Request(
            f"{status.endpoint}/score", data=json.dumps({"data": [ZERO]}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert json.loads(resp.read())["predictions"] == [0]
    finally:
        running.stop()
