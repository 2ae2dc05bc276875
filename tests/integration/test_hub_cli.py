"""The `edgefleet` CLI as a user runs it: a hub subprocess, a real Mosquitto, a fake device over MQTT.

The admin token is made as an operator makes the first one, with `edgefleet hub token create` in
the hub's data directory; every command then passes it in EDGEFLEET_TOKEN, and no command sees a
config file but the test's own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.integration.test_hub_controller import SPOOFED, FakeDevice, healthy, spoof_then_answer
from tests.support.processes import Mosquitto, free_port, wait_for, wait_port


class _Score(BaseHTTPRequestHandler):
    authorization: list[str | None] = []  # what each scoring request carried: an operator token must not leak here

    def do_POST(self) -> None:
        _Score.authorization.append(self.headers.get("Authorization"))
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


@dataclass
class Hub:
    url: str
    data_dir: Path
    token: str  # admin
    log: Path  # what the hub wrote to stderr (at debug level)
    config: Path  # the CLI's config file (EDGEFLEET_CONFIG), absent unless a test logs in


def run_cli(
    *args: str, env: dict[str, str | None] | None = None, stdin_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("EDGEFLEET_")}
    full.update({k: v for k, v in (env or {}).items() if v is not None})
    return subprocess.run(
        [sys.executable, "-m", "hub", *args], capture_output=True, text=True, timeout=120, env=full, input=stdin_text
    )


@pytest.fixture
def hub(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Hub]:
    port, data_dir, log = free_port(), tmp_path / "hub", tmp_path / "hub.log"
    made = run_cli(
        "-o", "json", "hub", "token", "create", "--role", "admin", "--name", "root", "--data-dir", str(data_dir)
    )
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["token"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", "hub", "serve", "--port", str(port), "--data-dir", str(data_dir),
             "--broker", mosquitto.url, "--log-level", "debug"],
            stdout=subprocess.DEVNULL, stderr=out,
        )  # fmt: skip
    try:
        wait_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(url + "/api/v1/hub").json()["brokerConnected"], 20, what="hub connected")
        yield Hub(url, data_dir, token, log, tmp_path / "cli-config.toml")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def edgefleet(hub: Hub, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {"EDGEFLEET_HUB": hub.url, "EDGEFLEET_TOKEN": token or hub.token, "EDGEFLEET_CONFIG": str(hub.config)}
    return run_cli(*args, env=env)


def start(hub: Hub, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "EDGEFLEET_HUB": hub.url, "EDGEFLEET_TOKEN": hub.token, "EDGEFLEET_CONFIG": str(hub.config)}
    return subprocess.Popen(
        [sys.executable, "-m", "hub", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_register_deploy_score_delete(tmp_path: Path, hub: Hub, mosquitto: Mosquitto, scoring_endpoint: str) -> None:
    bundle = tmp_path / "dev-1.bootstrap.json"
    r = edgefleet(hub, "device", "register", "dev-1", "--label", "site=lab", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    device = FakeDevice(mosquitto, "dev-1", {"site": "lab"})
    try:
        device.report(0)
        key = httpx.get(hub.url + "/api/v1/hub").json()["publicKey"]
        model_dir = tmp_path / "model"
        (model_dir / "sub").mkdir(parents=True)
        (model_dir / "digits.onnx").write_bytes(b"onnx" * 1000)
        (model_dir / "sub" / "labels.txt").write_text("0\n1\n")

        r = edgefleet(hub, "model", "register", "-n", "digits", "-p", str(model_dir), "--tag", "task=digits")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "digits:1"
        assert "uploaded digits.onnx" in r.stderr
        models = json.loads(edgefleet(hub, "-o", "json", "model", "list").stdout)
        assert [(m["name"], m["version"], m["tags"]) for m in models] == [("digits", 1, {"task": "digits"})]
        assert "sub/labels.txt" in edgefleet(hub, "model", "show", "digits:1").stdout

        app = tmp_path / "app"
        (app / "src").mkdir(parents=True)
        (app / "src" / "score.py").write_text("def init():\n    pass\n\ndef run(raw):\n    return raw\n")
        (app / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py", "sourceDirectory": "src"}))
        (app / "deploymentconfig.json").write_text(
            json.dumps({"computeType": "edge", "target": {"labels": {"site": "lab"}}})
        )
        bad = app / "bad.json"
        bad.write_text(json.dumps({"containerResourceRequirements": {"memoryInGb": 1}}))
        r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "digits:1", "--dc", str(bad))
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert f"{bad}: containerResourceRequirements.memoryInGb: unknown field (did you mean memoryInGB?)" in r.stderr

        deploy = start(
            hub,
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

        _Score.authorization.clear()
        r = edgefleet(hub, "service", "score", "svc", "--data", '{"data": [[1, 2]]}')
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == {"echo": {"data": [[1, 2]]}, "result": [42]}
        assert _Score.authorization == [None]  # the operator token goes to the hub only, never to a device
        r = edgefleet(hub, "service", "score", "svc", "--data", "{bad")
        assert r.returncode == 1 and "not valid JSON" in r.stderr
        r = edgefleet(hub, "service", "list")
        assert "svc" in r.stdout and "Healthy" in r.stdout
        assert "dev-1" in edgefleet(hub, "device", "list").stdout

        r = edgefleet(hub, "model", "delete", "digits:1")
        assert r.returncode == 1 and "used by service(s) svc" in r.stderr and "Traceback" not in r.stderr

        delete = start(hub, "service", "delete", "svc", "--timeout", "60")
        emptied = device.next_manifest(key, manifest.generation, timeout=60)
        assert emptied.modules == []
        device.report(emptied.generation, [])
        out, err = delete.communicate(timeout=60)
        assert delete.returncode == 0, err
        assert "removed from all devices" in err
        assert edgefleet(hub, "model", "delete", "digits:1").returncode == 0
    finally:
        device.close()


def test_unreachable_hub_and_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    env = {"EDGEFLEET_TOKEN": "eft_0123456789ab_" + "0" * 48, "EDGEFLEET_CONFIG": str(tmp_path / "none.toml")}
    r = run_cli("--hub", f"http://127.0.0.1:{free_port()}", "model", "list", env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("error: cannot reach the hub at") and "Traceback" not in r.stderr
    r = run_cli(
        "--hub", "http://127.0.0.1:1", "model", "register", "-n", "m", "-p", str(tmp_path / "missing.onnx"), env=env
    )
    assert r.returncode == 1 and "no such file or folder" in r.stderr
    r = run_cli("--hub", "http://127.0.0.1:1", "model", "show", "digits", env=env)
    assert r.returncode == 1 and "expected NAME:VERSION" in r.stderr


def test_hub_info_shows_the_key_fingerprint_devices_pin(hub: Hub) -> None:
    info = httpx.get(hub.url + "/api/v1/hub").json()
    r = edgefleet(hub, "hub", "info")
    assert r.returncode == 0, r.stderr
    assert f"(fingerprint {info['keyFingerprint']})" in r.stdout


def test_device_register_label_revoke_delete(tmp_path: Path, hub: Hub) -> None:
    bundle = tmp_path / "dev-1.bootstrap.json"
    r = edgefleet(hub, "device", "register", "dev-1", "--label", "site=lab", "--out", str(bundle))
    assert r.returncode == 0, r.stderr
    secret = json.loads(bundle.read_text())
    assert bundle.stat().st_mode & 0o777 == 0o600
    assert secret["deviceId"] == "dev-1" and "PRIVATE KEY" in secret["clientKey"] and secret["hubPublicKey"]
    assert f"bootstrap bundle written to {bundle} (mode 0600" in r.stdout
    assert f"edgefleet-agent --bootstrap {bundle}" in r.stdout
    assert "PRIVATE KEY" not in r.stdout + r.stderr and secret["clientKey"] not in r.stdout

    again = edgefleet(hub, "device", "register", "dev-1", "--out", str(bundle))  # exists: refused before asking
    assert again.returncode == 1 and "exists; choose another --out, or give --force" in again.stderr
    again = edgefleet(hub, "device", "register", "dev-1", "--out", str(tmp_path / "other.json"))
    assert again.returncode == 1 and "dev-1 is already registered (certificate serial" in again.stderr
    assert not (tmp_path / "other.json").exists()
    bad = edgefleet(hub, "device", "register", "edgefleet-hub", "--out", str(tmp_path / "hub.json"))
    assert bad.returncode == 1 and "reserved for the hub" in bad.stderr
    # who may: admin; a deploy token may not register, relabel, revoke or delete, and gets no bundle
    deployer = edgefleet(hub, "token", "create", "--role", "deploy", "--name", "ci").stdout.strip()
    for args in (["register", "dev-9", "--out", str(tmp_path / "dev-9.json")], ["label", "dev-1", "a=b"],
                 ["revoke", "dev-1"], ["delete", "dev-1"]):  # fmt: skip
        r = edgefleet(hub, "device", *args, token=deployer)
        assert r.returncode == 1 and "needs the admin role; token 'ci'" in r.stderr, r.stderr
    assert not (tmp_path / "dev-9.json").exists()

    out = json.loads(
        edgefleet(hub, "-o", "json", "device", "register", "dev-2", "--auth", "password", "--out",
                  str(tmp_path / "dev-2.json")).stdout
    )  # fmt: skip
    assert out["device"]["credential"]["kind"] == "password" and out["bundleFile"] == str(tmp_path / "dev-2.json")
    assert json.loads((tmp_path / "dev-2.json").read_text())["password"] not in json.dumps(out)

    r = edgefleet(hub, "device", "label", "dev-1", "rack=2", "site-")
    assert r.returncode == 0, r.stderr
    assert "labels:      rack=2" in r.stdout and "identity:    certificate serial" in r.stdout
    listed = edgefleet(hub, "device", "list").stdout.splitlines()
    assert listed[0].split()[:3] == ["DEVICE", "STATUS", "PRESENCE"]
    assert listed[1].split()[:3] == ["dev-1", "registered", "unknown"]

    r = edgefleet(hub, "device", "revoke", "dev-1")
    assert r.returncode == 0, r.stderr
    # no broker configuration known to this hub (an open test broker): it says so, and what that means
    assert r.stdout.startswith("revoked dev-1: the hub no longer listens to it\nbroker: ")
    assert "knows no broker configuration" in r.stdout
    assert "revoked" in edgefleet(hub, "device", "show", "dev-1").stdout
    r = edgefleet(hub, "device", "delete", "dev-1")
    assert r.returncode == 0 and r.stdout.startswith("deleted dev-1: record, desired state and retained topics")
    r = edgefleet(hub, "device", "show", "dev-1")
    assert r.returncode == 1 and r.stderr.startswith("error: device dev-1 is not registered")
    r = run_cli("--hub", "http://127.0.0.1:1", "model", "list", env={"EDGEFLEET_CONFIG": str(tmp_path / "none.toml")})
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(
        "error: no token for the hub at http://127.0.0.1:1: give --token TOKEN, set EDGEFLEET_TOKEN"
    )


def test_tokens_from_bootstrap_to_login_to_revocation(hub: Hub) -> None:
    anon = {"EDGEFLEET_HUB": hub.url, "EDGEFLEET_CONFIG": str(hub.config)}

    # the admin's first token was made in the hub's database; list it there too, and through the API
    r = run_cli("hub", "token", "list", "--data-dir", str(hub.data_dir))
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == [
        "ID", "NAME", "ROLE", "STATE", "CREATED", "EXPIRES", "LAST", "USED",
    ]  # fmt: skip
    assert " root " in r.stdout and hub.token not in r.stdout
    r = run_cli("hub", "token", "list", "--data-dir", str(hub.data_dir / "typo"))
    assert r.returncode == 1 and "there is no hub database at" in r.stderr

    # an admin makes a read token through the API; it is printed once, alone on stdout
    r = edgefleet(hub, "token", "create", "--role", "read", "--name", "ci-reader", "--expires-in", "30")
    assert r.returncode == 0, r.stderr
    reader = r.stdout.strip()
    assert reader.startswith("eft_") and "\n" not in reader
    assert "created read token 'ci-reader'" in r.stderr and "only time the token is shown" in r.stderr

    # login checks the token and keeps it in the config file, owner-only; later commands need no flag
    r = run_cli("login", env=anon, stdin_text=reader + "\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(f"logged in to {hub.url} with read token 'ci-reader'")
    assert oct(hub.config.stat().st_mode & 0o777) == "0o600" and reader in hub.config.read_text()
    r = run_cli("-o", "json", "whoami", env=anon)
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "ci-reader" and reader not in r.stdout
    assert run_cli("model", "list", env=anon).returncode == 0

    # a read token cannot deploy nor make tokens: one line naming the role needed and the one it has
    r = run_cli("model", "register", "-n", "m", "-p", str(hub.log), env=anon)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "needs the deploy role; token 'ci-reader'" in r.stderr and ") has read;" in r.stderr
    r = run_cli("token", "create", "--role", "admin", "--name", "me", env=anon)
    assert r.returncode == 1 and "needs the admin role" in r.stderr

    # listings show ids and names, never a token
    r = edgefleet(hub, "-o", "json", "token", "list")
    assert [t["name"] for t in json.loads(r.stdout)] == ["root", "ci-reader"]
    assert reader not in r.stdout and hub.token not in r.stdout

    # revoked on the hub machine: refused from the next command on
    r = run_cli("hub", "token", "revoke", "ci-reader", "--data-dir", str(hub.data_dir))
    assert r.returncode == 0 and "revoked read token 'ci-reader'" in r.stdout
    r = run_cli("model", "list", env=anon)
    assert r.returncode == 1 and "token 'ci-reader'" in r.stderr and "was revoked at" in r.stderr

    # a bad token, or none: one line saying what to do
    r = edgefleet(hub, "model", "list", token="eft_0123456789ab_" + "0" * 48)
    assert r.returncode == 1 and "is not valid on this hub" in r.stderr
    hub.config.unlink()
    r = run_cli("device", "list", env=anon)
    assert r.returncode == 1 and "give --token TOKEN, set EDGEFLEET_TOKEN, or run `edgefleet login" in r.stderr

    # nothing the hub logged holds a token
    log = hub.log.read_text()
    assert "refused GET /api/v1/models" in log
    assert hub.token not in log and reader not in log and reader.split("_")[2] not in log


def test_device_logs_shows_the_devices_answer_never_a_spoofed_one(
    tmp_path: Path, hub: Hub, mosquitto: Mosquitto
) -> None:
    registered = edgefleet(hub, "device", "register", "dev-1", "--out", str(tmp_path / "dev-1.json"))
    assert registered.returncode == 0, registered.stderr
    device = FakeDevice(mosquitto, "dev-1", answer_methods=False)
    spy = FakeDevice(mosquitto, "dev-1", client_id="dev-1-spy", answer_methods=False)
    try:
        device.report(0)
        auth = {"Authorization": f"Bearer {hub.token}"}
        wait_for(
            lambda: httpx.get(hub.url + "/api/v1/devices/dev-1", headers=auth).json().get("lastReport"),
            30,
            what="dev-1's report stored by the hub",
        )
        cli = start(hub, "device", "logs", "dev-1", "svc", "--timeout", "30")
        spoof_then_answer(spy, device, {"lines": ["genuine line"]})
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        assert out.strip() == "genuine line" and SPOOFED[0] not in out

        cli = start(hub, "device", "logs", "dev-1", "svc", "--timeout", "3")
        spoof_then_answer(spy, device, None, seen=1)  # spoofs only
        out, err = cli.communicate(timeout=60)
        assert cli.returncode != 0 and "did not answer 'logs'" in err and SPOOFED[0] not in out + err
    finally:
        spy.close()
        device.close()
