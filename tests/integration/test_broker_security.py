"""A locked-down broker, for real: Mosquitto under the configuration `edgefleet hub broker-config` writes,
TLS, identities from the hub's CA, the generated ACL, revocation through the CRL (or the password file).

Who may do what, each tried by someone who may not: a device reads only its own desired state and
commands and writes only its own reports; anonymous clients, certificates from another CA and revoked
identities are refused; the hub never hears what a device says on another device's topic.
"""

from __future__ import annotations

import json
import queue
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgefleet.hub.server import pki
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.topics import TopicKind, topic
from tests.integration.test_hub_api import api_client
from tests.integration.test_hub_controller import FakeDevice, _deploy, _register, healthy
from tests.support.identities import DeviceIdentity, register
from tests.support.processes import Mosquitto, wait_for


@pytest.fixture
def secure_hub(tmp_path: Path, secure_mosquitto: Mosquitto) -> Iterator[HubServer]:
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=secure_mosquitto.url)
    with HubServer(settings) as server:
        assert server.hub is not None
        wait_for(server.hub.controller.connected.is_set, 15, what="hub connected over TLS with its certificate")
        yield server


@pytest.fixture
def api(secure_hub: HubServer) -> Iterator[httpx.Client]:
    with api_client(secure_hub) as client:  # an admin's
        yield client


def connects(
    broker: Mosquitto, identity: DeviceIdentity | None = None, *, ca_file: Path | None = None, **over: Any
) -> bool:
    """Whether a client with ``identity`` (None: no certificate, no password) gets a CONNACK success."""
    ok = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=over.get("client_id", "probe"))
    ca = ca_file or (identity.ca_file if identity else broker.workdir / "ca.pem")
    cert = over.get("cert_file", identity.cert_file if identity else None)
    key = over.get("key_file", identity.key_file if identity else None)
    client.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
    if over.get("username") or (identity and identity.username):
        client.username_pw_set(
            over.get("username", identity and identity.username), over.get("password", identity and identity.password)
        )
    client.on_connect = lambda _c, _u, _f, reason, _p: ok.set() if not reason.is_failure else None
    try:
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        return ok.wait(3)
    except (OSError, ssl.SSLError):
        return False
    finally:
        client.loop_stop()
        client.disconnect()


def test_a_device_reads_and_writes_only_its_own_topics(
    api: httpx.Client, secure_hub: HubServer, secure_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    a = register(secure_hub, "dev-a", tmp_path, {"site": "lab"})
    b = register(secure_hub, "dev-b", tmp_path, {"site": "lab"})
    dev_b = FakeDevice(secure_mosquitto, "dev-b", identity=b)
    key = api.get("/hub").json()["publicKey"]
    _register(api)
    _deploy(api)
    assert dev_b.next_manifest(key, 0).device_id == "dev-b"
    # dev-a with its own certificate, subscribed to dev-b's topics and asking for dev-b's client id
    spy = FakeDevice(secure_mosquitto, "dev-b", identity=a, client_id="dev-b")
    dev_a: FakeDevice | None = None
    try:
        with pytest.raises(queue.Empty):
            spy.desired.get(timeout=1.5)  # dev-b's retained manifest never reaches dev-a
        assert dev_b.client.is_connected()  # and dev-a could not take over dev-b's session by its client id
        # dev-a forges a Healthy report on dev-b's topic and writes dev-b's desired state: the broker drops both
        spy.report(1, [healthy("svc")])
        spy.client.publish(topic("dev-b", TopicKind.DESIRED), b"{}", qos=1, retain=True).wait_for_publish(5)
        spy.close()

        dev_a = FakeDevice(secure_mosquitto, "dev-a", identity=a)
        assert dev_a.next_manifest(key, 0).device_id == "dev-a"
        dev_a.report(1, [healthy("svc")])  # its own report, after the forged one, arrives
        wait_for(lambda: api.get("/devices/dev-a").json()["lastReport"], 15, what="dev-a's own report")
        assert api.get("/devices/dev-b").json()["lastReport"] is None
        with pytest.raises(queue.Empty):
            dev_b.desired.get(timeout=1.0)
        states = {d["device"]: d["state"] for d in api.get("/services/svc").json()["devices"]}
        assert states == {"dev-a": "Healthy", "dev-b": "Transitioning"}
    finally:
        for d in (spy, dev_a, dev_b):
            if d is not None:
                d.close()


def test_anonymous_unknown_ca_and_revoked_clients_are_refused(
    api: httpx.Client, secure_hub: HubServer, secure_mosquitto: Mosquitto, tmp_path: Path
) -> None:
    a = register(secure_hub, "dev-a", tmp_path)
    assert connects(secure_mosquitto, a)
    r = api.post("/devices", json={"deviceId": "dev-p", "auth": "password"})  # this broker takes certificates
    assert r.status_code == 400 and "register it with --auth certificate" in r.json()["error"]
    assert not connects(secure_mosquitto, None)  # TLS, but no client certificate

    # the same subject from a CA the broker does not know
    now = datetime.now(timezone.utc)
    other_key = pki.new_key()
    other_ca = pki.build_ca(other_key, now)
    key = pki.new_key()
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "c.pem").write_bytes(
        pki.cert_pem(pki.build_client_cert(other_ca, other_key, key.public_key(), "dev-a", now))
    )
    (forged / "c.key").write_bytes(pki.key_pem(key))
    assert not connects(secure_mosquitto, a, cert_file=forged / "c.pem", key_file=forged / "c.key")

    # revoked: the hub rewrites the CRL and reloads the broker itself (it found the broker's pid file)
    online = FakeDevice(secure_mosquitto, "dev-a", identity=a)
    try:
        r = api.post("/devices/dev-a/revoke").json()
        assert r["broker"]["reloaded"] is True and "SIGHUP" in r["broker"]["message"]
        # an already open connection stays until it reconnects: the hub ignores what it says
        online.report(0, [healthy("svc")])
        assert secure_hub.hub is not None
        wait_for(lambda: "dev-a" in secure_hub.hub.controller.ignored, 10, what="the revoked device ignored")  # type: ignore[union-attr]
        assert api.get("/devices/dev-a").json()["lastReport"] is None
    finally:
        online.close()  # before probing: a probe with dev-a's certificate would take over its session
    wait_for(lambda: not connects(secure_mosquitto, a), 10, what="the revoked certificate refused")
    # deleted and registered again: a new certificate works, the old one stays revoked
    assert api.delete("/devices/dev-a").json()["broker"]["reloaded"] is True
    fresh = register(secure_hub, "dev-a", tmp_path / "again")
    assert connects(secure_mosquitto, fresh) and not connects(secure_mosquitto, a)


def test_password_identities_for_brokers_without_client_certificates(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", hub_data_dir=tmp_path / "hub", auth="password")
    broker.start()
    try:
        settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=broker.url)
        with HubServer(settings) as server, api_client(server) as api:
            assert server.hub is not None
            wait_for(server.hub.controller.connected.is_set, 15, what="hub connected with its password")
            a = register(server, "dev-a", tmp_path, {"site": "lab"}, auth="password")
            assert a.username == "dev-a" and a.password
            assert "dev-a:$7$" in (broker.workdir / "passwd").read_text()
            assert a.password not in (broker.workdir / "passwd").read_text()
            wait_for(lambda: connects(broker, a), 10, what="the new password accepted after the reload")
            assert not connects(broker, a, password="wrong")
            assert not connects(broker, a, username="dev-b")  # no such user
            dev = FakeDevice(broker, "dev-a", identity=a)
            try:
                dev.report(0)
                wait_for(lambda: api.get("/devices/dev-a").json()["lastSeen"], 15, what="report over TLS + password")
            finally:
                dev.close()
            assert api.post("/devices/dev-a/revoke").json()["broker"]["reloaded"] is True
            assert "dev-a:" not in (broker.workdir / "passwd").read_text()
            wait_for(lambda: not connects(broker, a), 10, what="the revoked password refused")
    finally:
        broker.stop()


def test_broker_config_command_writes_the_files_and_says_what_to_run(tmp_path: Path) -> None:
    out = tmp_path / "broker"
    r = subprocess.run(
        [sys.executable, "-m", "hub", "hub", "broker-config", "--data-dir", str(tmp_path / "hub"), "--out", str(out),
         "--port", "18883", "--server-name", "broker.lan", "--server-name", "10.0.0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"start the broker: mosquitto -c {out}/mosquitto.conf" in r.stdout
    assert "--broker mqtts://broker.lan:18883" in r.stdout and "server.key (0600)" in r.stdout
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    cert = pki.load_cert((out / "server.pem").read_bytes())
    assert cert.extensions.get_extension_for_class(pki.x509.SubjectAlternativeName).value.get_values_for_type(
        pki.x509.DNSName
    ) == ["broker.lan"]
    assert json.loads((tmp_path / "hub" / "broker-config.json").read_text())["dir"] == str(out)
