"""Restart policies end to end: a real agent, a real broker, fake modules whose health endpoint is
toggled by a file (``FAKE_MODULE_UNHEALTHY_FILE``).

- ``on-unhealthy``: restarted after ``failureThreshold`` failed probes, the count reported; a second
  failure soon after waits out the back-off, and a module that recovers meanwhile is kept.
- ``never``: reported Unhealthy and left alone (same process when it recovers).
- a module that never becomes ready is Failed after ``startupTimeoutS`` (no last-known-good here:
  the generation never became fully Healthy, so there is nothing to roll back to).

The pure side (back-off delays, the count reset after a healthy period) is in tests/unit/agent.
"""

from __future__ import annotations

import re
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgefleet.agent.daemon import Agent
from edgefleet.agent.settings import (
    AgentSettings,
    DiscoverySettings,
    ModulesSettings,
    MqttSettings,
    ReportingSettings,
    RestartSettings,
)
from edgefleet.protocol import ModuleSpec, ReportedState
from edgefleet.protocol.models import ModuleStatus
from tests.support.agent_harness import FAKE_MODULE, TestHub, kill_module_processes, module_pids
from tests.support.artifact_server import ArtifactServer
from tests.support.processes import Mosquitto

WAIT_S = 60.0
BACKOFF_S = 30.0  # long: the test sees the back-off hold a restart, never waits it out


@pytest.fixture
def hub(mosquitto: Mosquitto) -> Iterator[TestHub]:
    hub = TestHub(mosquitto.port, f"sick-{uuid.uuid4().hex[:8]}")
    yield hub
    hub.close()
    kill_module_processes(hub.device_id)


def status(report: ReportedState, name: str) -> ModuleStatus:
    return next(m for m in report.modules if m.name == name)


def test_on_unhealthy_restarts_never_leaves_alone_and_startup_timeout_fails(
    hub: TestHub, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    settings = AgentSettings(
        device_id=hub.device_id,
        data_dir=tmp_path / "agent",
        hub_public_key=hub.key.public_key_b64,
        mqtt=MqttSettings(broker_url=mosquitto.url),
        modules=ModulesSettings(command=FAKE_MODULE, stop_grace_s=3.0),
        discovery=DiscoverySettings(command=[sys.executable, "-c", "print('[]')"]),
        restart=RestartSettings(backoff_base_s=BACKOFF_S, backoff_max_s=BACKOFF_S),
        reporting=ReportingSettings(heartbeat_s=5.0),
    )
    healer_sick, stoic_sick = tmp_path / "healer.sick", tmp_path / "stoic.sick"
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("m.onnx", b"weights" * 100)

            def spec(name: str, policy: str, env: dict[str, str], startup_s: float = 30) -> ModuleSpec:
                health = {"intervalS": 0.3, "timeoutS": 1.0, "failureThreshold": 2, "startupTimeoutS": startup_s}
                return ModuleSpec.model_validate(
                    {
                        "name": name,
                        "service": "svc",
                        "artifacts": [model.to_wire()],
                        "restartPolicy": policy,
                        "health": health,
                        "env": env,
                    }
                )

            hub.publish(
                1,
                [
                    spec("healer", "on-unhealthy", {"FAKE_MODULE_UNHEALTHY_FILE": str(healer_sick)}),
                    spec("stoic", "never", {"FAKE_MODULE_UNHEALTHY_FILE": str(stoic_sick)}),
                    spec("sleepy", "never", {"FAKE_MODULE_READY_AFTER": "3600"}, startup_s=2),
                ],
            )
            report = hub.wait_report(
                lambda r: (
                    (status(r, "healer").state.value, status(r, "stoic").state.value, status(r, "sleepy").state.value)
                    == ("Healthy", "Healthy", "Failed")
                ),
                timeout=WAIT_S,
                what="healer and stoic Healthy, sleepy Failed",
            )
            assert "not ready after 2s" in status(report, "sleepy").message
            assert report.last_known_good is None  # nothing to roll back to: sleepy is this generation's failure
            (healer_pid,), (stoic_pid,) = module_pids(hub.device_id, "healer"), module_pids(hub.device_id, "stoic")
            assert status(report, "healer").restarts == 0

            # both become unhealthy: healer is restarted, stoic only reported
            healer_sick.touch()
            stoic_sick.touch()
            report = hub.wait_report(
                lambda r: status(r, "healer").restarts == 1 and status(r, "stoic").state.value == "Unhealthy",
                timeout=WAIT_S,
                what="healer restarted once, stoic Unhealthy",
            )
            # Unhealthy from the threshold (2) on; on a loaded machine more probes may fail before the report
            failed = re.search(r"health probe failed (\d+) times", status(report, "stoic").message)
            assert failed is not None and int(failed.group(1)) >= 2, status(report, "stoic").message
            assert status(report, "stoic").restarts == 0 and module_pids(hub.device_id, "stoic") == [stoic_pid]

            healer_sick.unlink()  # the new healer instance becomes ready
            stoic_sick.unlink()  # stoic recovers by itself, in the same process
            report = hub.wait_report(
                lambda r: status(r, "healer").state.value == "Healthy" and status(r, "stoic").state.value == "Healthy",
                timeout=WAIT_S,
                what="both Healthy again",
            )
            (new_healer_pid,) = module_pids(hub.device_id, "healer")
            assert new_healer_pid != healer_pid and status(report, "healer").restarts == 1
            assert status(report, "healer").instance == str(new_healer_pid)
            assert module_pids(hub.device_id, "stoic") == [stoic_pid] and status(report, "stoic").restarts == 0

            # unhealthy again soon after: restart 2 waits out the back-off; recovering meanwhile keeps it
            healer_sick.touch()
            report = hub.wait_report(
                lambda r: status(r, "healer").state.value == "Unhealthy", timeout=WAIT_S, what="healer Unhealthy"
            )
            assert "restart 2 in" in status(report, "healer").message
            assert module_pids(hub.device_id, "healer") == [new_healer_pid]
            healer_sick.unlink()
            report = hub.wait_report(
                lambda r: status(r, "healer").state.value == "Healthy", timeout=WAIT_S, what="healer recovered"
            )
            assert status(report, "healer").restarts == 1 and module_pids(hub.device_id, "healer") == [new_healer_pid]
    finally:
        agent.request_stop()
        thread.join(20)
