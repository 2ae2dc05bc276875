"""Direct methods against a real agent process over a real Mosquitto: only a genuine call runs.

The probe is restart-module: a call that ran gives the module a new process, a refused one leaves
its pid as it was. Each forged call is answered with its refusal, so the test waits for that
answer instead of for time to pass.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from edgefleet.protocol import DirectMethodRequest, HubKey, ModuleSpec, request_digest
from edgefleet.protocol.models import utcnow
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
from tests.support.processes import Mosquitto, wait_for


@pytest.fixture
def device_id() -> Iterator[str]:
    dev = f"methods-{os.getpid()}"
    yield dev
    kill_module_processes(dev)


def _tampered(payload: bytes) -> bytes:
    """A genuine ping, turned into a restart by hand: the signature no longer covers it."""
    body = json.loads(payload)
    body["call"]["request"].update(method="restart-module", params={"module": "scorer"})
    return json.dumps(body).encode()


def test_only_a_signed_fresh_call_for_this_device_runs_and_a_restart_does_not_reopen_it(
    mosquitto: Mosquitto, tmp_path: Path, device_id: str
) -> None:
    hub = TestHub(mosquitto.port, device_id)
    data_dir = tmp_path / "agent"
    args = [
        "--device-id", device_id, "--broker", mosquitto.url, "--data-dir", str(data_dir),
        "--hub", "http://127.0.0.1:9", "--hub-key", hub.key.public_key_b64,
    ]  # fmt: skip
    env = agent_env(
        modules__command=FAKE_MODULE,
        discovery__command=[sys.executable, "-c", "print('[]')"],
        reporting__heartbeat_s=5,
        modules__stop_grace_s=3,
    )
    log_path = tmp_path / "agent.log"
    agents = []
    restart = {"module": "scorer"}
    try:
        with ArtifactServer(tmp_path / "artifacts") as artifacts:
            model = artifacts.add("model.onnx", b"weights" * 300)
            spec = ModuleSpec.model_validate(
                {"name": "scorer", "service": "svc", "artifacts": [model.to_wire()], "health": {"intervalS": 0.5}}
            )
            agents.append(start_agent_process(args, env, log_path))
            hub.publish(1, [spec])
            hub.wait_report(lambda r: module_state(r, "scorer") == "Healthy", what="scorer Healthy")
            (pid,) = module_pids(device_id, "scorer")

            genuine_cid, genuine = hub.signed_call("restart-module", restart)
            _, ping = hub.signed_call("ping", {})
            forged = {
                "unsigned": (
                    "bare-1",
                    DirectMethodRequest(correlation_id="bare-1", method="restart-module", params=restart)
                    .model_dump_json(by_alias=True)
                    .encode(),
                    401,
                    "not a call signed by the hub",
                ),
                "tampered": (
                    json.loads(ping)["call"]["request"]["correlationId"],
                    _tampered(ping),
                    401,
                    "does not verify",
                ),
                "wrong key": (*hub.signed_call("restart-module", restart, key=HubKey.generate()), 401, "pins hub key"),
                "wrong device": (
                    *hub.signed_call("restart-module", restart, device_id="someone-else"),
                    403,
                    "addressed to device 'someone-else'",
                ),
                "expired": (
                    *hub.signed_call("restart-module", restart, issued_at=utcnow() - timedelta(minutes=10)),
                    403,
                    "expired",
                ),
            }
            for what, (cid, payload, status, reason) in forged.items():
                hub.send_command(payload)
                answer = hub.wait_response(cid, what=f"the refusal of the {what} call")
                assert (answer.status, answer.request_digest) == (status, request_digest(payload)), what
                assert reason in answer.payload["error"], (what, answer.payload)
                assert module_pids(device_id, "scorer") == [pid], f"the {what} call ran"

            hub.send_command(genuine)
            assert hub.wait_response(genuine_cid, what="the genuine restart").status == 200
            wait_for(lambda: module_pids(device_id, "scorer") not in ([], [pid]), 20, what="module restarted")
            (restarted,) = module_pids(device_id, "scorer")

            hub.responses.clear()
            hub.send_command(genuine)  # captured and replayed
            replay = hub.wait_response(genuine_cid, what="the refusal of the replay")
            assert replay.status == 403 and "not greater than the last one run" in replay.payload["error"]
            assert module_pids(device_id, "scorer") == [restarted]

            stop_process(agents[0], signal.SIGTERM)  # a restart of the agent does not reopen the replay
            wait_for(lambda: hub.presence[-1] == "offline", 15, what="agent stopped")
            agents.append(start_agent_process(args, env, log_path))
            # "online" is published after the subscription to commands: a command sent now is delivered
            wait_for(lambda: hub.presence[-1] == "online", 30, what="restarted agent subscribed")
            hub.responses.clear()
            hub.send_command(genuine)
            replay = hub.wait_response(genuine_cid, what="the refusal of the replay after a restart")
            assert replay.status == 403 and module_pids(device_id, "scorer") == [restarted]
            assert hub.call("ping", {}).status == 200  # and the hub's next call is run
    finally:
        for proc in agents:
            stop_process(proc, signal.SIGKILL)
        hub.close()
    log = log_path.read_text()
    assert log.count("refused a direct-method call") >= 7, log[-4000:]
