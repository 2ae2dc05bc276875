"""The `edgefleet` CLI as a user runs it: a hub subprocess, a real Mosquitto, a fake device over MQTT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.test_hub_controller import FakeDevice, healthy
from tests.support.processes import Mosquitto, free_port, wait_for, wait_port


class _Score(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        out = json.dumps({"echo": body, "result": [42]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def scoring_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Score)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub_url(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub",
            "hub",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "hub"),
            "--broker",
            mosquitto.url,
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/api/v1/hub").json()["brokerConnected"], 20, what="hub connected")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def edgefleet(hub: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEFLEET_HUB": hub}
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=120, env=env)


def start(hub: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EDGEFLEET_HUB": hub}
    return subprocess.Popen(
        [sys.executable, "-m", "hub", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_register_deploy_score_delete(
    tmp_path: Path, hub_url: str, mosquitto: Mosquitto, scoring_endpoint: str
) -> None:
    bundle = tmp_path / "dev-1.bootstrap.json"
    r = edgefleet(hub_url, "device", "register", "dev-1", "--label", "site=lab", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    device = FakeDevice(mosquitto, "dev-1", {"site": "lab"})
    try:
        device.report(0)
        key = httpx.get(hub_url + "/api/v1/hub").json()["publicKey"]
        model_dir = tmp_path / "model"
        (model_dir / "sub").mkdir(parents=True)
        (model_dir / "digits.onnx").write_bytes(b"onnx" * 1000)
        (model_dir / "sub" / "labels.txt").write_text("0\n1\n")

        r = edgefleet(hub_url, "model", "register", "-n", "digits", "-p", str(model_dir), "--tag", "task=digits")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "digits:1"
        assert "uploaded digits.onnx" in r.stderr
        models = json.loads(edgefleet(hub_url, "-o", "json", "model", "list").stdout)
        assert [(m["name"], m["version"], m["tags"]) for m in models] == [("digits", 1, {"task": "digits"})]
        assert "sub/labels.txt" in edgefleet(hub_url, "model", "show", "digits:1").stdout

        app = tmp_path / "app"
        (app / "src").mkdir(parents=True)
        (app / "src" / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
        (app / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py", "sourceDirectory": "src"}))
        (app / "deploymentconfig.json").write_text(
            json.dumps({"computeType": "edge", "target": {"labels": {"site": "lab"}}})
        )
        bad = app / "bad.json"
        bad.write_text(json.dumps({"containerResourceRequirements": {"memoryInGb": 1}}))
        r = edgefleet(hub_url, "model", "deploy", "-n", "svc", "-m", "digits:1", "--dc", str(bad))
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"{bad}: containerResourceRequirements.memoryInGb: unknown field (did you mean memoryInGB?)" in r.stderr

        deploy = start(
            hub_url,
            "model",
            "deploy",
            "-n",
            "svc",
            "-m",
            "digits:1",
            "--ic",
            str(app / "inferenceconfig.json"),
            "--dc",
            str(app / "deploymentconfig.json"),
            "--timeout",
            "60",
        )
        manifest = device.next_manifest(key, 0, timeout=60)
        [module] = manifest.modules
        assert [a.path for a in module.artifacts] == ["model/digits.onnx", "model/sub/labels.txt", "src/score.py"]
        assert module.entry_script == "score.py"
        device.report(manifest.generation, [healthy("svc", scoring_endpoint)])
        out, err = deploy.communicate(timeout=60)
        assert deploy.returncode == 0, err
        assert "dev-1: Healthy" in err and "state:   Healthy" in out

        r = edgefleet(hub_url, "service", "score", "svc", "--data", '{"data": [[1, 2]]}')
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"echo": {"data": [[1, 2]]}, "result": [42]}
        r = edgefleet(hub_url, "service", "score", "svc", "--data", "{bad")
        assert r.returncode == 1 and "not valid JSON" in r.stderr
        r = edgefleet(hub_url, "service", "list")
        assert "svc" in r.stdout and "Healthy" in r.stdout
        assert "dev-1" in edgefleet(hub_url, "device", "list").stdout

        r = edgefleet(hub_url, "model", "delete", "digits:1")
        assert r.returncode == 1 and "used by service(s) svc" in r.stderr and "Traceback" not in r.stderr

        delete = start(hub_url, "service", "delete", "svc", "--timeout", "60")
        emptied = device.next_manifest(key, manifest.generation, timeout=60)
        assert emptied.modules == []
        device.report(emptied.generation, [])
        out, err = delete.communicate(timeout=60)
        assert delete.returncode == 0, err
        assert "removed from all devices" in err
        assert edgefleet(hub_url, "model", "delete", "digits:1").returncode == 0
    finally:
        device.close()


def test_unreachable_hub_and_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    r = edgefleet(f"http://127.0.0.1:{free_port()}", "model", "list")
    assert r.returncode == 1
    assert r.stderr.startswith("error: cannot reach the hub at") and "Traceback" not in r.stderr
    r = edgefleet("http://127.0.0.1:1", "model", "register", "-n", "m", "-p", str(tmp_path / "missing.onnx"))
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    r = edgefleet("http://127.0.0.1:1", "model", "show", "digits")
    assert r.returncode == 1 and "expected NAME:VERSION" in r.stderr


def test_hub_info_shows_the_key_fingerprint_devices_pin(hub_url: str) -> None:
    info = httpx.get(hub_url + "/api/v1/hub").json()
    r = edgefleet(hub_url, "hub", "info")
    assert r.returncode == 0, r.stderr
    assert f"(fingerprint {info['keyFingerprint']})" in r.stdout


def test_device_register_label_revoke_delete(tmp_path: Path, hub_url: str) -> None:
    bundle = tmp_path / "dev-1.bootstrap.json"
    r = edgefleet(hub_url, "device", "register", "dev-1", "--label", "site=lab", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    secret = json.loads(bundle.read_text())
    assert bundle.stat().st_mode & 0o777 == 0o600
    assert secret["deviceId"] == "dev-1" and "PRIVATE KEY" in secret["clientKey"] and secret["hubPublicKey"]
    assert f"bootstrap bundle written to {bundle} (mode 0600" in r.stdout
    assert f"edgefleet-agent --bootstrap {bundle}" in r.stdout
    assert "PRIVATE KEY" not in r.stdout + r.stderr and secret["clientKey"] not in r.stdout

    again = edgefleet(hub_url, "device", "register", "dev-1", "--out", str(bundle))  # exists: refused before asking
    assert again.returncode == 1 and "exists; choose another --out, or give --force" in again.stderr
    again = edgefleet(hub_url, "device", "register", "dev-1", "--out", str(tmp_path / "other.json"))
    assert again.returncode == 1 and "dev-1 is already registered (certificate serial" in again.stderr
    assert not (tmp_path / "other.json").exists()
    bad = edgefleet(hub_url, "device", "register", "edgefleet-hub", "--out", str(tmp_path / "hub.json"))
    assert bad.returncode == 1 and "reserved for the hub" in bad.stderr

    out = json.loads(
        edgefleet(hub_url, "-o", "json", "device", "register", "dev-2", "--auth", "password", "--out",
                  str(tmp_path / "dev-2.json")).stdout
    )  # fmt: skip
    assert out["device"]["credential"]["kind"] == "password" and out["bundleFile"] == str(tmp_path / "dev-2.json")
    assert json.loads((tmp_path / "dev-2.json").read_text())["password"] not in json.dumps(out)

    r = edgefleet(hub_url, "device", "label", "dev-1", "rack=2", "site-")
    assert r.returncode == 0, r.stderr
    assert "labels:      rack=2" in r.stdout and "identity:    certificate serial" in r.stdout
    listed = edgefleet(hub_url, "device", "list").stdout.splitlines()
    assert listed[0].split()[:3] == ["DEVICE", "STATUS", "PRESENCE"]
    assert listed[1].split()[:3] == ["dev-1", "registered", "unknown"]

    r = edgefleet(hub_url, "device", "revoke", "dev-1")
    assert r.returncode == 0, r.stderr
    # no broker configuration known to this hub (an open test broker): it says so, and what that means
    assert r.stdout.startswith("revoked dev-1: the hub no longer listens to it\nbroker: ")
    assert "knows no broker configuration" in r.stdout
    assert "revoked" in edgefleet(hub_url, "device", "show", "dev-1").stdout
    r = edgefleet(hub_url, "device", "delete", "dev-1")
    assert r.returncode == 0 and r.stdout.startswith("deleted dev-1: record, desired state and retained topics")
    r = edgefleet(hub_url, "device", "show", "dev-1")
    assert r.returncode == 1 and r.stderr.startswith("error: device dev-1 is not registered")
