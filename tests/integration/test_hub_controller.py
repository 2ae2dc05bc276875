"""The hub's MQTT side against a real Mosquitto: signed retained manifests, generations, reports, methods,
who the hub listens to (registered devices only; labels are the operator's), what it believes of
reports (no generation it never issued), and a pass that one device's bad data cannot stop.

A test paho client plays the device, so these tests depend only on the protocol package (and on the
hub's API for registering devices, as operators do); one test runs a real agent, to show that a
device that rejected garbage over its manifest ends up at the hub's generation.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.hub.configs import InferenceConfig
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.bootstrap import BootstrapBundle
from edgefleet.protocol.digests import sha256_bytes
from edgefleet.protocol.models import (
    DeviceCapabilities,
    DeviceManifest,
    DirectMethodResponse,
    MethodCall,
    ModuleState,
    ModuleStatus,
    ReportedState,
    SignedMethodCall,
)
from edgefleet.protocol.signing import request_digest, sign_manifest, verify_manifest, verify_method
from edgefleet.protocol.topics import TopicKind, topic
from tests.integration.test_agent_reconcile import RunningAgent, fast_settings
from tests.integration.test_hub_api import api_client, token_in
from tests.support.agent_harness import TestHub, kill_module_processes
from tests.support.identities import DeviceIdentity, register
from tests.support.processes import Mosquitto, free_port, wait_for

MODEL = b"\x08\x07onnx-bytes" * 100


class FakeDevice:
    """Speaks the device side of the protocol: receives desired state, publishes reports."""

    def __init__(
        self,
        broker: Mosquitto,
        device_id: str,
        labels: dict[str, str] | None = None,
        client_id: str | None = None,
        identity: DeviceIdentity | None = None,
        wait: bool = True,
        answer_methods: bool = True,
    ) -> None:
        self.device_id = device_id
        self.labels = labels or {}  # what it reports; the hub must not believe them
        self.desired: queue.Queue[bytes] = queue.Queue()
        self.answer_methods = answer_methods
        self.methods: list[MethodCall] = []  # as published by the hub, not verified here
        self.commands: list[bytes] = []
        self.connect_results: list[str] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or device_id)
        if identity is not None:  # the bundle's identity, over TLS
            self.client.tls_set(
                ca_certs=str(identity.ca_file),
                certfile=str(identity.cert_file) if identity.cert_file else None,
                keyfile=str(identity.key_file) if identity.key_file else None,
            )
            if identity.username:
                self.client.username_pw_set(identity.username, identity.password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        if wait:
            assert self._subscribed.wait(10), "fake device did not subscribe"

    def subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, *_a: Any) -> None:
        self.connect_results.append(str(reason))
        if reason.is_failure:
            return
        client.subscribe(
            [(topic(self.device_id, TopicKind.DESIRED), 1), (topic(self.device_id, TopicKind.COMMANDS), 1)]
        )

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/desired"):
            self.desired.put(bytes(msg.payload))
        else:
            self.commands.append(bytes(msg.payload))
            call = MethodCall.model_validate(SignedMethodCall.model_validate_json(msg.payload).call)
            self.methods.append(call)
            if self.answer_methods:
                request = call.request
                self.answer(
                    DirectMethodResponse(
                        correlation_id=request.correlation_id,
                        status=200,
                        payload={"method": request.method, **request.params},
                        request_digest=request_digest(msg.payload),
                    ),
                    wait=False,  # in paho's network thread: waiting for the PUBACK here would block it
                )

    def answer(self, response: DirectMethodResponse, device_id: str | None = None, wait: bool = True) -> None:
        """Publish a response on this device's responses topic (or, spoofing, on another's)."""
        target = topic(device_id or self.device_id, TopicKind.RESPONSES)
        info = self.client.publish(target, json.dumps(response.to_wire()), qos=1)
        if wait:
            info.wait_for_publish(10)

    def next_manifest(self, public_key: str, last_generation: int, timeout: float = 15) -> DeviceManifest:
        payload = self.desired.get(timeout=timeout)
        return verify_manifest(payload, public_key, device_id=self.device_id, last_generation=last_generation)

    def report(
        self,
        generation: int,
        modules: list[ModuleStatus] | None = None,
        converged: bool = True,
        device_id: str | None = None,
        rejected: str | None = None,
    ) -> None:
        """Publish a report on ``device_id``'s topic (default: its own) naming that device."""
        target = device_id or self.device_id
        state = ReportedState(
            device_id=target,
            generation=generation,
            converged=converged,
            modules=modules or [],
            capabilities=DeviceCapabilities(labels=self.labels),
            rejected=rejected,
        )
        info = self.client.publish(topic(target, TopicKind.REPORTED), json.dumps(state.to_wire()), qos=1, retain=True)
        info.wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


SPOOFED = ["spoofed log line"]


def spoof_then_answer(spy: FakeDevice, device: FakeDevice, genuine: dict[str, Any] | None, seen: int = 0) -> None:
    """Wait for the hub's call (``spy`` listens on the device's commands topic), answer it each wrong
    way, then (with a ``genuine`` payload) as the device itself. Each spoof is acknowledged by the
    broker before the next is sent, so the hub receives all of them before the genuine answer."""
    wait_for(lambda: len(spy.commands) > seen, 20, what="the hub's call")
    raw = spy.commands[seen]
    cid, digest = spy.methods[seen].request.correlation_id, request_digest(raw)

    def spoof(digest: str | None) -> DirectMethodResponse:
        return DirectMethodResponse(correlation_id=cid, status=200, payload={"lines": SPOOFED}, request_digest=digest)

    spy.answer(spoof(digest), device_id="dev-2")  # the right answer, on another device's topic
    spy.answer(spoof(request_digest(b'{"another": "call"}')))  # on this device's topic, answering another call
    spy.answer(spoof(None))  # answering no call in particular
    malformed = json.dumps({"correlationId": cid, "status": "ok", "payload": {"lines": SPOOFED}})
    spy.client.publish(topic(spy.device_id, TopicKind.RESPONSES), malformed, qos=1).wait_for_publish(10)
    if genuine is not None:
        device.answer(DirectMethodResponse(correlation_id=cid, status=200, payload=genuine, request_digest=digest))


def healthy(name: str, endpoint: str = "http://127.0.0.1:9") -> ModuleStatus:
    return ModuleStatus(name=name, service=name, state=ModuleState.HEALTHY, endpoint=endpoint, backend="cpu")


@pytest.fixture
def hub_server(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[HubServer]:
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=mosquitto.url)
    with HubServer(settings) as server:
        assert server.hub is not None
        wait_for(server.hub.controller.connected.is_set, 15, what="hub connected to the broker")
        yield server


@pytest.fixture
def api(hub_server: HubServer) -> Iterator[httpx.Client]:
    with api_client(hub_server) as client:
        yield client


@pytest.fixture
def device(mosquitto: Mosquitto, hub_server: HubServer, tmp_path: Path) -> Iterator[FakeDevice]:
    register(hub_server, "dev-1", tmp_path, {"site": "lab"})
    dev = FakeDevice(mosquitto, "dev-1", {"site": "lab"})
    yield dev
    dev.close()


def _register(api: httpx.Client) -> None:
    digest = sha256_bytes(MODEL)
    api.put(f"/blobs/{digest}", content=MODEL).raise_for_status()
    files = [{"path": "digits.onnx", "digest": digest, "size": len(MODEL)}]
    api.post("/models", json={"name": "digits", "files": files}).raise_for_status()


def _deploy(api: httpx.Client, env: dict[str, str] | None = None, overwrite: bool = False) -> dict[str, Any]:
    body = {
        "name": "svc",
        "models": ["digits:1"],
        "inferenceConfig": {"environment": {"environmentVariables": env or {}}},
        "deploymentConfig": {"target": {"labels": {"site": "lab"}}},
        "overwrite": overwrite,
    }
    r = api.post("/services", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _state(api: httpx.Client) -> str:
    return str(api.get("/services/svc").json()["state"])


def test_deploy_publishes_signed_manifest_and_report_makes_it_healthy(
    api: httpx.Client, hub_server: HubServer, device: FakeDevice
) -> None:
    key = api.get("/hub").json()["publicKey"]
    device.report(0, converged=True)
    wait_for(lambda: api.get("/devices/dev-1").json()["lastSeen"], 15, what="the device's first report")
    _register(api)
    assert _deploy(api)["state"] == "Transitioning"

    manifest = device.next_manifest(key, last_generation=0)
    assert manifest.generation == 1
    [module] = manifest.modules
    assert module.name == "svc" and module.models[0].name == "digits"
    [artifact] = module.artifacts
    assert artifact.path == "model/digits.onnx"
    # the artifact URL in the signed manifest really serves the bytes
    assert httpx.get(artifact.url).content == MODEL

    # an identical re-render publishes nothing and keeps the generation
    assert hub_server.hub is not None
    assert hub_server.hub.controller.reconcile() == {}
    device.report(0, converged=False)  # same capabilities: no re-render
    with pytest.raises(queue.Empty):
        device.desired.get(timeout=1.0)
    assert api.get("/devices/dev-1").json()["desiredGeneration"] == 1

    # a real change bumps the generation
    _deploy(api, env={"MODE": "fast"}, overwrite=True)
    manifest = device.next_manifest(key, last_generation=1)
    assert manifest.generation == 2 and manifest.modules[0].env == {"MODE": "fast"}

    device.report(1, [healthy("svc")])  # a report for an older generation is not Healthy yet
    wait_for(lambda: api.get("/devices/dev-1").json()["lastReport"]["generation"] == 1, 15, what="report ingested")
    assert _state(api) == "Transitioning"
    device.report(2, [healthy("svc", "http://127.0.0.1:9999")])
    wait_for(lambda: _state(api) == "Healthy", 15, what="service Healthy")
    [dev_state] = api.get("/services/svc").json()["devices"]
    assert dev_state["endpoint"] == "http://127.0.0.1:9999" and dev_state["backend"] == "cpu"

    # delete publishes a manifest without the module
    assert api.delete("/services/svc").status_code == 204
    manifest = device.next_manifest(key, last_generation=2)
    assert manifest.generation == 3 and manifest.modules == []


def test_generation_survives_hub_restart_and_broker_restart(tmp_path: Path, mosquitto: Mosquitto) -> None:
    # a fixed port: artifact URLs name it, so a new port would (rightly) be a new manifest
    settings = HubSettings(data_dir=tmp_path / "hub", port=free_port(), broker_url=mosquitto.url)
    token = token_in(settings.data_dir)
    with HubServer(settings) as server, api_client(server, token=token) as api:
        register(server, "dev-1", tmp_path, {"site": "lab"})
        device = FakeDevice(mosquitto, "dev-1", {"site": "lab"})
        device.report(0)
        key = api.get("/hub").json()["publicKey"]
        wait_for(lambda: api.get("/devices/dev-1").json()["lastSeen"], 15, what="device seen")
        _register(api)
        _deploy(api)
        assert device.next_manifest(key, 0).generation == 1

    with HubServer(settings) as server, api_client(server, token=token) as api:
        assert api.get("/hub").json()["publicKey"] == key  # same key after restart (and the same token works)
        # the broker loses the retained manifest; the hub republishes it when it reconnects
        device.client.publish(topic("dev-1", TopicKind.DESIRED), b"", qos=1, retain=True).wait_for_publish(10)
        mosquitto.restart()
        assert server.hub is not None
        wait_for(server.hub.controller.connected.is_set, 20, what="hub reconnected after the broker restart")
        wait_for(lambda: device.client.is_connected(), 20, what="device reconnected")
        late = FakeDevice(mosquitto, "dev-1", client_id="dev-1-observer")
        try:
            assert late.next_manifest(key, 0).generation == 1
        finally:
            late.close()
        while True:  # drain what the device saw meanwhile
            try:
                device.desired.get(timeout=1.0)
            except queue.Empty:
                break
        _deploy(api, env={"X": "1"}, overwrite=True)
        assert device.next_manifest(key, 1).generation == 2
        # the hub still ingests reports after the broker restart (resubscribed)
        device.report(2, [healthy("svc")])
        wait_for(lambda: _state(api) == "Healthy", 15, what="service Healthy after broker restart")
    device.close()


def test_device_missing_from_target_makes_service_unschedulable(api: httpx.Client, device: FakeDevice) -> None:
    device.report(0)
    wait_for(lambda: api.get("/devices/dev-1").json()["lastSeen"], 15, what="device seen")
    _register(api)
    body = {"name": "svc", "models": ["digits:1"], "deploymentConfig": {"target": {"accelerators": ["fpga"]}}}
    r = api.post("/services", json=body).json()
    assert r["state"] == "Unschedulable" and "accelerators fpga" in r["reason"]


def test_direct_methods_round_trip_and_time_out(api: httpx.Client, device: FakeDevice) -> None:
    device.report(0)
    wait_for(lambda: api.get("/devices/dev-1").json()["lastSeen"], 15, what="device seen")
    r = api.post("/devices/dev-1/methods/restart-module", json={"params": {"module": "svc"}})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == 200 and r.json()["payload"] == {"method": "restart-module", "module": "svc"}
    r = api.post("/devices/dev-1/methods/reboot")
    assert r.status_code == 400 and "unknown direct method 'reboot'" in r.json()["error"]
    device.answer_methods = False
    r = api.post("/devices/dev-1/methods/ping", json={"timeoutS": 0.5})
    assert r.status_code == 504 and "did not answer 'ping'" in r.json()["error"]


def test_an_unregistered_device_is_not_listened_to(
    api: httpx.Client, hub_server: HubServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    stranger = FakeDevice(mosquitto, "dev-x", {"site": "lab"})
    try:
        stranger.report(0)
        stranger.client.publish(topic("dev-x", TopicKind.PRESENCE), b"online", qos=1, retain=True).wait_for_publish(5)
        assert hub_server.hub is not None
        wait_for(lambda: "dev-x" in hub_server.hub.controller.ignored, 15, what="the stranger's report ignored")  # type: ignore[union-attr]
        _register(api)
        assert _deploy(api)["state"] == "Unschedulable"  # no device: the stranger is not part of the fleet
        assert api.get("/devices").json() == []
        assert api.get("/devices/dev-x").status_code == 404
        with pytest.raises(queue.Empty):
            stranger.desired.get(timeout=1.0)
        # registered, it becomes part of the fleet, and the hub reads what it left retained at once
        register(hub_server, "dev-x", tmp_path, {"site": "lab"})
        wait_for(lambda: api.get("/devices/dev-x").json()["presence"] == "online", 15, what="retained presence read")
        assert api.get("/devices/dev-x").json()["lastReport"]["generation"] == 0
        assert stranger.next_manifest(api.get("/hub").json()["publicKey"], 0).generation == 1
    finally:
        stranger.close()


def test_labels_come_from_the_operator_never_from_reports(
    api: httpx.Client, hub_server: HubServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    register(hub_server, "dev-1", tmp_path, {"site": "lab"})
    forger = FakeDevice(mosquitto, "dev-1", {"site": "prod", "tier": "gold"})  # reports labels it does not have
    try:
        forger.report(0)
        wait_for(lambda: api.get("/devices/dev-1").json()["lastSeen"], 15, what="report ingested")
        assert api.get("/devices/dev-1").json()["labels"] == {"site": "lab"}
        _register(api)
        body = {"name": "prod", "models": ["digits:1"], "deploymentConfig": {"target": {"labels": {"site": "prod"}}}}
        assert api.post("/services", json=body).json()["state"] == "Unschedulable"
        with pytest.raises(queue.Empty):
            forger.desired.get(timeout=1.0)
        # the operator relabels it: now it is targeted
        r = api.patch("/devices/dev-1/labels", json={"set": {"site": "prod"}, "remove": ["nope"]})
        assert r.status_code == 200 and r.json()["labels"] == {"site": "prod"}
        key = api.get("/hub").json()["publicKey"]
        assert [m.name for m in forger.next_manifest(key, 0).modules] == ["prod"]
    finally:
        forger.close()


def test_a_revoked_device_is_ignored_and_its_desired_state_cleared(
    api: httpx.Client, hub_server: HubServer, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    register(hub_server, "dev-1", tmp_path, {"site": "lab"})
    dev = FakeDevice(mosquitto, "dev-1")
    try:
        _register(api)
        _deploy(api)
        key = api.get("/hub").json()["publicKey"]
        assert dev.next_manifest(key, 0).generation == 1
        r = api.post("/devices/dev-1/revoke")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["device"]["status"] == "revoked" and body["device"]["credential"]["revokedAt"]
        assert body["broker"]["reloaded"] is False and "knows no broker configuration" in body["broker"]["message"]
        assert dev.desired.get(timeout=10) == b""  # the retained manifest is cleared
        dev.report(1, [healthy("svc")])  # still connected (an open broker): ignored
        assert hub_server.hub is not None
        wait_for(lambda: "dev-1" in hub_server.hub.controller.ignored, 15, what="the revoked device's report ignored")  # type: ignore[union-attr]
        assert api.get("/services/svc").json()["state"] == "Unschedulable"
        assert api.get("/devices/dev-1").json()["lastReport"] is None
        r = api.post("/devices/dev-1/methods/ping")
        assert r.status_code == 409 and "revoked" in r.json()["error"]
        r = api.post("/devices", json={"deviceId": "dev-1", "auth": "password"})
        assert r.status_code == 409 and "delete it" in r.json()["error"]
        assert api.delete("/devices/dev-1").status_code == 200
        assert api.get("/devices/dev-1").status_code == 404
        assert api.delete("/devices/dev-1").status_code == 404
    finally:
        dev.close()


def test_key_rotation_announces_under_the_old_key_then_signs_with_the_new(
    api: httpx.Client, hub_server: HubServer, device: FakeDevice, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    old_key = api.get("/hub").json()["publicKey"]
    _register(api)
    _deploy(api)
    assert device.next_manifest(old_key, 0).generation == 1
    r = api.post("/hub/key/rotation/finish")
    assert r.status_code == 409 and "no hub key rotation runs" in r.json()["error"]

    status = api.post("/hub/key/rotation").json()
    new_key = json.loads(device.desired.get(timeout=15))["manifest"]["nextHubKey"]
    assert status["nextKeyId"] and status["complete"] is False
    assert api.get("/hub").json()["nextKeyId"] == status["nextKeyId"]
    # ...a new generation, same modules, signed with the old key and announcing the new one
    announcing = verify_manifest(
        json.dumps(_last_published(hub_server, "dev-1")), old_key, device_id="dev-1", last_generation=1
    )
    assert announcing.generation == 2 and announcing.next_hub_key == new_key
    r = api.post("/hub/key/rotation/finish")
    assert r.status_code == 409 and "dev-1 have not acknowledged" in r.json()["error"]
    device.report(2)
    wait_for(lambda: api.get("/hub/key/rotation").json()["complete"], 15, what="dev-1 acknowledged the next key")

    done = api.post("/hub/key/rotation/finish").json()
    assert done["nextKeyId"] is None and api.get("/hub").json()["publicKey"] == new_key
    switched = device.next_manifest(new_key, 2)
    assert switched.generation == 3 and switched.next_hub_key is None and [m.name for m in switched.modules] == ["svc"]
    # bundles issued now carry the new key
    late = register(hub_server, "dev-2", tmp_path)
    assert BootstrapBundle.model_validate_json(late.bundle_file.read_text()).hub_public_key == new_key


def _stored(server: HubServer, device_id: str = "dev-1") -> str:
    """The signed manifest the hub stored for the device, exactly as it published it."""
    assert server.hub is not None
    record = server.hub.store.get_desired(device_id)
    assert record is not None
    return record.payload


def _last_published(server: HubServer, device_id: str) -> dict[str, Any]:
    return dict(json.loads(_stored(server, device_id)))


def test_calls_are_signed_and_only_the_called_devices_answer_to_that_call_counts(
    api: httpx.Client, mosquitto: Mosquitto, device: FakeDevice
) -> None:
    key = api.get("/hub").json()["publicKey"]
    device.report(0)
    wait_for(lambda: api.get("/devices/dev-1").status_code == 200, 15, what="device registered")
    spy = FakeDevice(mosquitto, "dev-1", client_id="dev-1-spy", answer_methods=False)
    try:
        for _ in range(2):
            assert api.post("/devices/dev-1/methods/ping").json()["status"] == 200
        first, second = (verify_method(c, key, device_id="dev-1", last_sequence=0) for c in device.commands)
        assert first.sequence < second.sequence  # what a device checks: signed for it, in order, in time
        assert (first.expires_at - first.issued_at).total_seconds() == 10  # the hub's default method timeout

        device.answer_methods = False
        spoofing = threading.Thread(target=spoof_then_answer, args=(spy, device, {"lines": ["genuine"]}, 2))
        spoofing.start()
        r = api.post("/devices/dev-1/methods/logs", json={"params": {"module": "svc"}, "timeoutS": 20})
        spoofing.join(20)
        assert r.status_code == 200 and r.json()["payload"] == {"lines": ["genuine"]}, r.text

        spoofing = threading.Thread(target=spoof_then_answer, args=(spy, device, None, 3))
        spoofing.start()
        r = api.post("/devices/dev-1/methods/logs", json={"params": {"module": "svc"}, "timeoutS": 3})
        spoofing.join(20)
        assert r.status_code == 504 and "did not answer 'logs'" in r.json()["error"]  # the spoofs are no answer
    finally:
        spy.close()


def _last_report(api: httpx.Client, device_id: str = "dev-1") -> dict[str, Any]:
    """The hub's last stored report of the device ({} when none)."""
    return dict(api.get(f"/devices/{device_id}").json()["lastReport"] or {})


def _logged(caplog: pytest.LogCaptureFixture, words: str, level: int = logging.DEBUG) -> list[str]:
    """The controller's messages (at ``level`` or above) containing ``words``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == CONTROLLER_LOG and r.levelno >= level and words in r.getMessage()
    ]


def _next_where(messages: queue.Queue[bytes], wanted: Callable[[bytes], bool], timeout: float = 15) -> bytes:
    """The next message that is ``wanted``, skipping the others."""
    deadline = time.monotonic() + timeout
    while not wanted(payload := messages.get(timeout=max(deadline - time.monotonic(), 0.01))):
        pass
    return payload


CONTROLLER_LOG = "edgefleet.hub.server.controller"
FORGED = 10**12


def test_a_report_of_a_generation_the_hub_never_issued_is_refused_and_logged_once(
    api: httpx.Client, device: FakeDevice, mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=CONTROLLER_LOG)
    key = api.get("/hub").json()["publicKey"]
    device.report(0)
    wait_for(lambda: _last_report(api), 15, what="the device's first report")
    _register(api)
    _deploy(api)
    assert device.next_manifest(key, 0).generation == 1
    device.report(1, [healthy("svc")])
    wait_for(lambda: _state(api) == "Healthy", 15, what="service Healthy")

    # anyone on a broker without ACLs, twice (a retained forgery comes back whenever the hub reconnects)
    forger = FakeDevice(mosquitto, "dev-1", client_id="dev-1-forger")
    try:
        for _ in range(2):
            forger.report(FORGED, converged=False)
        wait_for(lambda: _logged(caplog, "report refused"), 15, what="the refusal logged")
        assert _last_report(api)["converged"] is True  # still the device's own report
        forger.report(1, [healthy("svc")], converged=False)  # after both forgeries, on the same topic
        wait_for(lambda: _last_report(api)["converged"] is False, 15, what="the report after the forgeries")
    finally:
        forger.close()
    [refusal] = _logged(caplog, "report refused", logging.WARNING)
    assert f"reports generation {FORGED}, but the hub issued it only up to generation 1" in refusal
    assert "forged" in refusal and "older backup" in refusal and "edgefleet device delete dev-1" in refusal

    # the next deploy signs one past what the hub issued, not past the forged claim
    _deploy(api, env={"MODE": "fast"}, overwrite=True)
    assert device.next_manifest(key, 1).generation == 2
    assert api.get("/devices/dev-1").json()["desiredGeneration"] == 2


def test_a_device_first_heard_ahead_of_a_manifest_issued_blind_is_caught_up(
    api: httpx.Client, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    """Registered while a service targets it, a device is issued generation 1 before it reports; if it
    ran under another hub (or this one before it lost its database) it is ahead: caught up, not refused."""
    caplog.set_level(logging.INFO, logger=CONTROLLER_LOG)
    key = api.get("/hub").json()["publicKey"]
    _register(api)
    _deploy(api)
    assert device.next_manifest(key, 0).generation == 1  # the device has not reported yet
    device.report(7)
    assert device.next_manifest(key, 7).generation == 8
    device.report(8)
    wait_for(lambda: _last_report(api).get("generation") == 8, 15, what="generation 8 reported")
    assert not _logged(caplog, "report refused")
    device.report(9)  # heard from now: a claim past what was issued is refused
    wait_for(lambda: _logged(caplog, "report refused", logging.WARNING), 15, what="the refusal logged")
    assert _last_report(api)["generation"] == 8


class StoppedClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_device_that_rejects_its_manifest_gets_it_again_with_a_back_off(
    api: httpx.Client, hub_server: HubServer, device: FakeDevice, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=CONTROLLER_LOG)
    assert hub_server.hub is not None
    clock = hub_server.hub.controller.clock = StoppedClock()
    key = api.get("/hub").json()["publicKey"]
    _register(api)
    _deploy(api)
    published = device.desired.get(timeout=15)
    assert verify_manifest(published, key, device_id="dev-1", last_generation=0).generation == 1
    fences = 0

    def rejecting(times: int) -> None:
        """Reports that it rejected a manifest and runs nothing; then a report the hub is waited for
        (once it stored that one, it has handled the others)."""
        nonlocal fences
        for _ in range(times):
            device.report(0, converged=False, rejected="signature does not verify with the pinned hub key")
        fences += 1
        device.report(0, [healthy(f"fence-{fences}")], converged=False)
        wait_for(lambda: _last_report(api)["modules"][0]["name"] == f"fence-{fences}", 15, what="reports handled")

    rejecting(3)  # at once: republished after the first; the back-off holds the other two
    clock.t += 1.0  # the first quiet second is over: republished
    rejecting(1)
    clock.t += 1.0  # the next quiet time is 2 s: held
    rejecting(1)
    _deploy(api, env={"MODE": "fast"}, overwrite=True)  # published after every republish: a fence
    seen = []
    while (payload := device.desired.get(timeout=15)) == published:
        seen.append(payload)
    assert json.loads(payload)["manifest"]["generation"] == 2
    assert len(seen) == 2  # the very bytes the hub signed for generation 1, twice: not five times, nor never
    assert len(_logged(caplog, "republished generation 1", logging.INFO)) == 2
    assert len(_logged(caplog, "not republished yet")) == 3


NO_ACCELERATORS = [sys.executable, "-c", "print('[]')"]


def test_garbage_left_retained_while_a_device_was_offline_is_replaced_once_the_device_rejects_it(
    api: httpx.Client, hub_server: HubServer, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real agent takes generation 1 and goes offline; the hub publishes generation 2, which an attacker
    overwrites on the broker with a manifest of its own. Back, the agent rejects that, and the hub
    publishes generation 2 again: the device takes it, and the broker keeps it for the next start."""
    caplog.set_level(logging.INFO, logger=CONTROLLER_LOG)
    register(hub_server, "dev-1", tmp_path, {"site": "lab"})
    _register(api)
    _deploy(api)
    key = api.get("/hub").json()["publicKey"]
    settings = fast_settings("dev-1", mosquitto, tmp_path / "agent", key, discovery={"command": NO_ACCELERATORS})
    attacker = TestHub(mosquitto.port, "dev-1")  # signs with a key of its own; collects the device's reports
    garbage = sign_manifest(DeviceManifest(device_id="dev-1", generation=99, modules=[]), attacker.key)
    garbage_bytes = json.dumps(garbage.to_wire()).encode()
    observer = FakeDevice(mosquitto, "dev-1", client_id="dev-1-observer")  # sees what the broker holds
    agent = RunningAgent(settings)
    try:
        wait_for(lambda: _last_report(api).get("generation") == 1, 30, what="the agent took generation 1")
        agent.stop()
        _deploy(api, env={"MODE": "fast"}, overwrite=True)
        _next_where(observer.desired, lambda p: p == _stored(hub_server).encode())  # generation 2 on the broker
        attacker.publish_raw(garbage_bytes)
        _next_where(observer.desired, lambda p: p == garbage_bytes)  # ...overwritten

        agent = RunningAgent(settings)  # back online: the broker hands it the attacker's manifest
        wait_for(lambda: _last_report(api).get("generation") == 2, 30, what="the agent took generation 2")
        rejected = [r for r in attacker.reports if r.rejected]
        assert rejected and rejected[0].generation == 1  # it did reject the garbage first
        assert _logged(caplog, "republished generation 2", logging.INFO)
    finally:
        agent.stop()
        kill_module_processes("dev-1")
        attacker.close()
        observer.close()
    late = FakeDevice(mosquitto, "dev-1", client_id="dev-1-late")
    try:  # republished retained: what a device starting now is handed
        assert late.desired.get(timeout=15) == _stored(hub_server).encode()
    finally:
        late.close()


def test_one_devices_bad_data_does_not_stop_the_pass_for_the_others(
    api: httpx.Client, hub_server: HubServer, mosquitto: Mosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert hub_server.hub is not None
    controller, store = hub_server.hub.controller, hub_server.hub.store
    key = api.get("/hub").json()["publicKey"]
    ids = ["dev-a", "dev-b", "dev-c"]  # reconciled in this order: the broken one first
    devices = {}
    for device_id in ids:
        register(hub_server, device_id, tmp_path, {"site": "lab"})
        devices[device_id] = FakeDevice(mosquitto, device_id)
    try:
        _register(api)
        _deploy(api)
        for device_id in ids:
            assert devices[device_id].next_manifest(key, 0).generation == 1
        # dev-a's stored manifest is damaged (a torn write, a bad restore): reading it fails
        with closing(sqlite3.connect(hub_server.settings.data_dir / "hub.db")) as db, db:
            db.execute("""UPDATE desired SET modules = '[{"name": "sv' WHERE device_id = 'dev-a'""")
        with pytest.raises(ValueError):
            store.get_desired("dev-a")
        service = store.get_service("svc")
        assert service is not None
        changed = InferenceConfig.model_validate({"environment": {"environmentVariables": {"MODE": "fast"}}})
        store.put_service(service.model_copy(update={"inference_config": changed}))

        caplog.set_level(logging.ERROR, logger=CONTROLLER_LOG)
        assert controller.reconcile() == {"dev-b": 2, "dev-c": 2}
        for device_id in ("dev-b", "dev-c"):
            manifest = devices[device_id].next_manifest(key, 1)
            assert manifest.generation == 2 and manifest.modules[0].env == {"MODE": "fast"}
        [failure] = [r for r in caplog.records if r.name == CONTROLLER_LOG and r.levelno >= logging.ERROR]
        assert "device dev-a: reconcile failed" in failure.getMessage() and failure.exc_info is not None
    finally:
        for dev in devices.values():
            dev.close()
