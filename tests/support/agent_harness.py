"""Real pieces around an agent under test (the artifact server is in artifact_server.py): a test hub that
signs and publishes manifests over a real broker and collects reports, and process helpers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.protocol import (
    DeviceManifest,
    DirectMethodRequest,
    DirectMethodResponse,
    HubKey,
    MethodCall,
    ModuleSpec,
    ReportedState,
    Telemetry,
    TopicKind,
    sign_manifest,
    sign_method,
    topic,
)
from edgefleet.protocol.models import utcnow
from tests.support.processes import wait_for

if TYPE_CHECKING:
    from edgefleet.hub.server.ca import TlsFiles

REPO = Path(__file__).resolve().parents[2]
FAKE_MODULE = [sys.executable, str(REPO / "tests" / "support" / "fake_module.py")]


class TestHub:
    """Signs manifests, publishes them retained, collects the device's reports and responses."""

    __test__ = False  # not a pytest class

    def __init__(self, broker_port: int, device_id: str, tls: TlsFiles | None = None) -> None:
        """``tls``: over mqtts://, proving itself with these files (the hub's own client certificate,
        subject edgefleet-hub: the generated ACL gives it every topic, and the broker takes the
        certificate's name as its client id)."""
        self.key = HubKey.generate()
        self.device_id = device_id
        self.reports: list[ReportedState] = []
        self.responses: dict[str, DirectMethodResponse] = {}
        self.presence: list[str] = []
        self.telemetry: list[Telemetry] = []
        self._sequence = 0
        self._lock = threading.Lock()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-hub-{os.getpid()}-{id(self)}")
        if tls is not None:
            client.tls_set(ca_certs=str(tls.ca_file), certfile=str(tls.cert_file), keyfile=str(tls.key_file))
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 2)
        client.connect_async("127.0.0.1", broker_port, keepalive=10)
        client.loop_start()
        self.client = client
        wait_for(client.is_connected, 15, what=f"test hub connected to the broker{' over TLS' if tls else ''}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(
            [
                (topic(self.device_id, TopicKind.REPORTED), 1),
                (topic(self.device_id, TopicKind.RESPONSES), 1),
                (topic(self.device_id, TopicKind.PRESENCE), 1),
                (topic(self.device_id, TopicKind.TELEMETRY), 0),
            ]
        )

    def _on_message(self, _client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            if msg.topic.endswith("/reported"):
                self.reports.append(ReportedState.model_validate_json(msg.payload))
            elif msg.topic.endswith("/responses"):
                resp = DirectMethodResponse.model_validate_json(msg.payload)
                self.responses[resp.correlation_id] = resp
            elif msg.topic.endswith("/telemetry"):
                self.telemetry.append(Telemetry.model_validate_json(msg.payload))
            elif msg.topic.endswith("/presence"):
                self.presence.append(json.loads(msg.payload)["state"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def publish_raw(self, payload: bytes) -> None:
        wait_for(self.client.is_connected, 30, what="test hub reconnected")
        self.client.publish(topic(self.device_id, TopicKind.DESIRED), payload, qos=1, retain=True).wait_for_publish(10)

    def publish(self, generation: int, modules: list[ModuleSpec], key: HubKey | None = None) -> DeviceManifest:
        manifest = DeviceManifest(device_id=self.device_id, generation=generation, modules=modules)
        signed = sign_manifest(manifest, key or self.key)
        self.publish_raw(signed.model_dump_json(by_alias=True).encode())
        return manifest

    def latest(self) -> ReportedState | None:
        with self._lock:
            return self.reports[-1] if self.reports else None

    def wait_report(
        self, predicate: Callable[[ReportedState], bool], timeout: float = 60.0, what: str = ""
    ) -> ReportedState:
        def check() -> ReportedState | None:
            r = self.latest()
            return r if r is not None and predicate(r) else None

        try:
            found = wait_for(check, timeout, interval=0.1, what=what or "a matching report")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; last report: {self.latest()}") from None
        assert found is not None
        return found

    def signed_call(
        self,
        method: str,
        params: dict[str, Any],
        *,
        key: HubKey | None = None,
        device_id: str | None = None,
        sequence: int | None = None,
        issued_at: datetime | None = None,
        lifetime_s: float = 30.0,
    ) -> tuple[str, bytes]:
        """(correlation id, command message): a direct-method call signed as the hub signs it, or
        deliberately not quite (another key, another device, an old sequence, an old issue time)."""
        cid = f"c{time.monotonic_ns()}"
        with self._lock:  # like the hub: the clock in ms, never less than one past the last
            self._sequence = max(self._sequence + 1, time.time_ns() // 1_000_000)
            next_sequence = self._sequence
        issued = issued_at or utcnow()
        call = MethodCall(
            device_id=device_id or self.device_id,
            sequence=sequence or next_sequence,
            issued_at=issued,
            expires_at=issued + timedelta(seconds=lifetime_s),
            request=DirectMethodRequest(correlation_id=cid, method=method, params=params),  # type: ignore[arg-type]
        )
        return cid, json.dumps(sign_method(call, key or self.key).to_wire()).encode()

    def send_command(self, payload: bytes) -> None:
        """Publish a raw message on this device's commands topic."""
        self.client.publish(topic(self.device_id, TopicKind.COMMANDS), payload, qos=1).wait_for_publish(10)

    def wait_response(
        self, cid: str, timeout: float = 30.0, what: str = "a direct-method response"
    ) -> DirectMethodResponse:
        response = wait_for(lambda: self.responses.get(cid), timeout, what=what)
        assert response is not None
        return response

    def call(self, method: str, params: dict[str, Any], timeout: float = 30.0) -> DirectMethodResponse:
        cid, payload = self.signed_call(method, params)
        self.send_command(payload)
        return self.wait_response(cid, timeout, what=f"response to {method}")


def module_state(report: ReportedState, name: str) -> str | None:
    m = next((m for m in report.modules if m.name == name), None)
    return m.state.value if m else None


def module_pids(device_id: str, module: str | None = None) -> list[int]:
    """Live (non-zombie) processes carrying this device's module marks."""
    pids = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE or "--edgefleet-device" not in cmd:
            continue
        if cmd[cmd.index("--edgefleet-device") + 1] != device_id:
            continue
        if module is None or ("--edgefleet-module" in cmd and cmd[cmd.index("--edgefleet-module") + 1] == module):
            pids.append(proc.pid)
    return pids


def kill_module_processes(device_id: str) -> None:
    """Cleanup: modules run in their own sessions, so they outlive agents unless killed here."""
    for pid in module_pids(device_id):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def agent_env(**settings: Any) -> dict[str, str]:
    """Environment for an agent subprocess: EDGEFLEET_AGENT_* settings (JSON for lists/dicts);
    ``restart__max_restarts=3`` is EDGEFLEET_AGENT_RESTART__MAX_RESTARTS (agent/README.md)."""
    env = dict(os.environ)
    for name, value in settings.items():
        env[f"EDGEFLEET_AGENT_{name.upper()}"] = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return env


def start_agent_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "agent", *args], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
        )


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
