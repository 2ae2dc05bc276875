"""The hub's MQTT side against a real Mosquitto: signed retained manifests, generations, reports, methods,
and who the hub listens to (registered devices only; labels are the operator's).

A test paho client plays the device, so these tests depend only on the protocol package (and on the
hub's API for registering devices, as operators do).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

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
from edgefleet.protocol.signing import request_digest, verify_manifest, verify_method
from edgefleet.protocol.topics import TopicKind, topic
from tests.integration.test_hub_api import api_client, token_in
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
    ) -> None:
        """Publish a report on ``device_id``'s topic (default: its own) naming that device."""
        target = device_id or self.device_id
        state = ReportedState(
            device_id=target,
            generation=generation,
            converged=converged,
            modules=modules or [],
            capabilities=DeviceCapabilities(labels=self.labels),
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


def _last_published(server: HubServer, device_id: str) -> dict[str, Any]:
    assert server.hub is not None
    record = server.hub.store.get_desired(device_id)
    assert record is not None
    return dict(json.loads(record.payload))


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
