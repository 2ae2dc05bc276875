"""The `edgefleet` CLI as a user runs it: a hub subprocess, a real Mosquitto, a fake device over MQTT.

The admin token is made as an operator makes the first one, with `edgefleet hub token create` in
the hub's data directory; every command then passes it in EDGEFLEET_TOKEN, and no command sees a
config file but the test's own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from edgefleet.protocol.digests import sha256_bytes
from edgefleet.protocol.models import DirectMethodResponse
from edgefleet.protocol.signing import request_digest
from tests.integration.test_hub_controller import SPOOFED, FakeDevice, healthy, spoof_then_answer
from tests.support.processes import Mosquitto, free_port, wait_for, wait_port

AZUREML = Path(__file__).resolve().parents[1] / "data" / "azureml"


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
        # the request body from a file, or from stdin (`--input-file -`), as az ml users pass it
        body = tmp_path / "request.json"
        body.write_text('{"data": [[3]]}')
        r = edgefleet(hub, "service", "score", "svc", "--input-file", str(body))
        assert r.returncode == 0 and json.loads(r.stdout)["echo"] == {"data": [[3]]}, r.stderr
        env = {"EDGEFLEET_HUB": hub.url, "EDGEFLEET_TOKEN": hub.token, "EDGEFLEET_CONFIG": str(hub.config)}
        r = run_cli("service", "score", "svc", "--input-file", "-", env=env, stdin_text='{"data": [[4]]}')
        assert r.returncode == 0 and json.loads(r.stdout)["echo"] == {"data": [[4]]}, r.stderr
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
    r = run_cli("--hub", "http://127.0.0.1:1", "model", "delete", "digits", env=env)
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


def _blob_stored(hub: Hub, data: bytes) -> bool:
    auth = {"Authorization": f"Bearer {hub.token}"}
    return httpx.head(f"{hub.url}/api/v1/blobs/{sha256_bytes(data)}", headers=auth).status_code == 200


def test_azure_ml_configs_deploy_and_update_with_warnings_and_refusals_come_before_any_upload(
    tmp_path: Path, hub: Hub
) -> None:
    for version, content in ((1, b"onnx-one"), (2, b"onnx-two")):
        (tmp_path / f"m{version}.onnx").write_bytes(content)
        r = edgefleet(hub, "model", "register", "-n", "digits", "-p", str(tmp_path / f"m{version}.onnx"))
        assert r.returncode == 0 and r.stdout.strip() == f"digits:{version}", r.stderr
    # the published files as they are, next to the source folder the inference config names
    app = tmp_path / "app"
    (app / "source_dir").mkdir(parents=True)
    score = b"def init():\n    pass\n\ndef run(raw):\n    return raw\n"
    (app / "source_dir" / "score.py").write_bytes(score)
    ic, aks, local = app / "inferenceconfig.json", app / "aks.json", app / "local.json"
    shutil.copy(AZUREML / "inferenceconfig-deploy-local.json", ic)
    shutil.copy(AZUREML / "aks-deploymentconfig.json", aks)
    shutil.copy(AZUREML / "local-deploymentconfig.json", local)
    configs = ["--ic", str(ic), "--dc", str(aks), "--no-wait"]

    # a bad service name, a model that is not registered: said before anything is uploaded
    r = edgefleet(hub, "model", "deploy", "-n", "Digits_Svc", "-m", "digits", *configs)
    assert r.returncode == 1 and "service name 'Digits_Svc': use 1-63 lowercase letters" in r.stderr
    r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "resnet", *configs)
    assert r.returncode == 1 and "model resnet is not registered" in r.stderr
    r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "digits:7", *configs)
    assert r.returncode == 1 and "model digits:7 does not exist (known versions: 1, 2)" in r.stderr
    assert "upload" not in r.stderr and not _blob_stored(hub, score)

    # accepted: the hub says, one line each, what the files ask for that does not apply on devices
    r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "digits", *configs)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ")[2] for w in warned] == [
        "environment.name", "environment.python.condaDependencies", "environment.docker.baseImage",
        "computeType", "autoScaler", "dataCollection",
    ]  # fmt: skip
    assert warned[3].startswith("warning: deploymentconfig.json: computeType: 'aks' is an Azure ML compute target")
    assert "deployed svc: models digits:2; target any device" in r.stderr  # NAME alone: the latest version
    assert _blob_stored(hub, score) and "service: svc" in r.stdout
    r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "digits", *configs)
    assert r.returncode == 1 and "already exists; give --overwrite" in r.stderr and "upload" not in r.stderr

    # an update changes only what it is given
    r = edgefleet(hub, "-o", "json", "service", "update", "svc", "-m", "digits:1", "--no-wait")
    assert r.returncode == 0, r.stderr
    updated = json.loads(r.stdout)
    assert updated["models"] == [{"name": "digits", "version": 1}] and updated["warnings"] == []
    assert updated["deploymentConfig"]["authEnabled"] is True
    assert updated["inferenceConfig"]["environment"]["environmentVariables"] == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}
    assert [f["path"] for f in updated["sourceFiles"]] == ["score.py"]
    r = edgefleet(hub, "-o", "json", "service", "update", "svc", "--dc", str(local), "--no-wait")
    assert r.returncode == 0, r.stderr
    updated = json.loads(r.stdout)
    assert updated["deploymentConfig"]["port"] == 32267 and updated["deploymentConfig"]["authEnabled"] is False
    assert updated["models"] == [{"name": "digits", "version": 1}]
    assert [w.split(": ")[1] for w in updated["warnings"]] == ["computeType"]  # in the JSON for scripts
    assert "warning: deploymentconfig.json: computeType: 'local'" in r.stderr
    other = tmp_path / "other"
    other.mkdir()
    (other / "helper.py").write_text("X = 1\n")
    r = edgefleet(hub, "service", "update", "svc", "--source-dir", str(other), "--no-wait")
    assert r.returncode == 1 and f"--source-dir {other}: the entry script 'score.py' is not in it" in r.stderr
    r = edgefleet(hub, "service", "update", "svc")
    assert (
        r.returncode == 1 and "nothing to update: give -m MODEL, --ic FILE, --dc FILE or --source-dir DIR" in r.stderr
    )
    (app / "source_dir" / "score.py").write_bytes(score + b"# changed\n")
    r = edgefleet(hub, "service", "update", "nope", "--ic", str(ic), "--no-wait")
    assert r.returncode == 1 and "service nope does not exist" in r.stderr and "upload" not in r.stderr
    assert not _blob_stored(hub, score + b"# changed\n")
    r = edgefleet(hub, "-o", "json", "service", "update", "svc", "--ic", str(ic), "--no-wait")
    assert r.returncode == 0 and "uploaded score.py" in r.stderr, r.stderr
    assert _blob_stored(hub, score + b"# changed\n") and len(json.loads(r.stdout)["warnings"]) == 3


def test_service_logs_asks_each_device_the_service_runs_on(tmp_path: Path, hub: Hub, mosquitto: Mosquitto) -> None:
    for device_id in ("dev-1", "dev-2"):
        r = edgefleet(hub, "device", "register", device_id, "--label", "site=lab", "--out", str(tmp_path / device_id))
        assert r.returncode == 0, r.stderr
    (tmp_path / "m.onnx").write_bytes(b"onnx")
    assert edgefleet(hub, "model", "register", "-n", "digits", "-p", str(tmp_path / "m.onnx")).returncode == 0
    dc = tmp_path / "dc.json"
    dc.write_text(json.dumps({"target": {"labels": {"site": "lab"}}}))
    r = edgefleet(hub, "model", "deploy", "-n", "svc", "-m", "digits", "--dc", str(dc), "--no-wait")
    assert r.returncode == 0, r.stderr
    one, two = (FakeDevice(mosquitto, d, answer_methods=False) for d in ("dev-1", "dev-2"))
    try:

        def answer_logs(device: FakeDevice, seen: int, lines: list[str]) -> None:
            wait_for(lambda: len(device.methods) > seen, 30, what=f"the hub's call to {device.device_id}")
            request = device.methods[seen].request
            assert (request.method, request.params) == ("logs", {"module": "svc", "tail": 5})
            digest = request_digest(device.commands[seen])
            device.answer(DirectMethodResponse(correlation_id=request.correlation_id, status=200,
                                               payload={"lines": lines}, request_digest=digest))  # fmt: skip

        cli = start(hub, "service", "logs", "svc", "--tail", "5", "--timeout", "3")
        answer_logs(one, 0, ["loaded digits:1", "scored 3 requests"])  # dev-2 stays silent
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 1, err  # one device did not answer: said, and the status says so
        assert out.startswith("==> dev-1 <==\nloaded digits:1\nscored 3 requests\n\n==> dev-2 <==\nerror: ")
        assert "did not answer 'logs'" in out

        cli = start(hub, "-o", "json", "service", "logs", "svc", "--device", "dev-1", "--tail", "5")
        answer_logs(one, 1, ["only dev-1"])
        out, err = cli.communicate(timeout=60)
        assert cli.returncode == 0, err
        assert json.loads(out) == [{"device": "dev-1", "lines": ["only dev-1"]}]
        assert len(two.methods) == 1  # not asked again
        r = edgefleet(hub, "service", "logs", "svc", "--device", "dev-9")
        assert r.returncode == 1 and "service svc does not run on device dev-9 (it runs on: dev-1, dev-2)" in r.stderr
    finally:
        one.close()
        two.close()


def test_model_download_writes_each_file_checked_and_refuses_to_overwrite(tmp_path: Path, hub: Hub) -> None:
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "digits.onnx").write_bytes(bytes(range(256)) * 300)
    (model / "sub" / "labels.txt").write_text("0\n1\n")
    assert edgefleet(hub, "model", "register", "-n", "digits", "-p", str(model)).returncode == 0
    (model / "digits.onnx").write_bytes(b"version two")
    assert edgefleet(hub, "model", "register", "-n", "digits", "-p", str(model)).returncode == 0

    out = tmp_path / "out"
    r = edgefleet(hub, "model", "download", "digits:1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "digits.onnx").read_bytes() == bytes(range(256)) * 300
    assert (out / "sub" / "labels.txt").read_text() == "0\n1\n"
    assert r.stdout.split() == [str(out / "digits.onnx"), str(out / "sub" / "labels.txt")]
    assert not list(out.rglob("*.part"))
    r = edgefleet(hub, "model", "download", "digits", "--out", str(out))  # the latest: digits:2
    assert r.returncode == 1 and f"{out / 'digits.onnx'} exists; give --overwrite" in r.stderr
    assert (out / "digits.onnx").read_bytes() == bytes(range(256)) * 300  # untouched
    r = edgefleet(hub, "-o", "json", "model", "download", "digits", "-t", str(out), "--overwrite")
    assert r.returncode == 0 and json.loads(r.stdout)["model"] == "digits:2", r.stderr
    assert (out / "digits.onnx").read_bytes() == b"version two"
    reader = edgefleet(hub, "token", "create", "--role", "read", "--name", "reader").stdout.strip()
    r = edgefleet(hub, "model", "download", "digits", "--out", str(tmp_path / "r"), token=reader)
    assert r.returncode == 1 and "needs the deploy role" in r.stderr
