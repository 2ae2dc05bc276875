"""The whole Azure-ML-style workflow against a real fleet: hub + 3 agents + Mosquitto + the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from tests.e2e.conftest import Fleet
from tests.support.processes import wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"
DEVICES = ["dev-1", "dev-2", "dev-3"]


def _reference_predictions(images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(SAMPLE / "digits_int8.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: images})
    return np.argmax(logits, axis=1)


def _online(fleet: Fleet) -> bool:
    devices = fleet.cli_json("device", "list")
    return sum(1 for d in devices if d["deviceId"] in DEVICES and d.get("presence") == "online") == len(DEVICES)


@pytest.mark.timeout(600)
def test_register_deploy_score_delete(fleet: Fleet) -> None:
    for i, dev in enumerate(DEVICES):
        fleet.start_agent(dev, "site=e2e", f"rack={i}")
    wait_for(lambda: _online(fleet), timeout=60, what="3 agents online")

    out = fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"), "--tag", "task=digits")
    assert out.stdout.strip() == "digits:1"
    models = fleet.cli_json("model", "list")
    assert [(m["name"], m["version"], m["tags"]) for m in models] == [("digits", 1, {"task": "digits"})]

    fleet.cli(
        "model", "deploy", "-n", "digits-svc", "-m", "digits:1",
        "--ic", str(SAMPLE / "inferenceconfig.json"), "--dc", str(SAMPLE / "deploymentconfig.json"),
        timeout=300,
    )  # fmt: skip
    service = fleet.cli_json("service", "show", "digits-svc")
    assert service["state"] == "Healthy", service
    assert sorted(d["device"] for d in service["devices"]) == DEVICES

    # the agents fetched manifests' artifacts with no token; an operator with a read token sees, not changes
    viewer = fleet.cli("token", "create", "--role", "read", "--name", "viewer").stdout.strip()
    seen = json.loads(fleet.cli("-o", "json", "service", "show", "digits-svc", token=viewer).stdout)
    assert seen["state"] == "Healthy"
    refused = fleet.cli("service", "delete", "digits-svc", token=viewer, check=False)
    assert refused.returncode == 1 and "needs the deploy role; token 'viewer'" in refused.stderr
    assert all(d["state"] == "Healthy" and d["endpoint"] and d["backend"] for d in service["devices"]), service
    assert len(fleet.module_processes()) == len(DEVICES)

    test = np.load(SAMPLE / "test_set.npz")
    images = test["images"][:64]
    expected = _reference_predictions(images)
    for device in service["devices"]:
        # Azure ML face, through the entry script
        r = httpx.post(device["endpoint"] + "/score", json={"data": images.reshape(-1, 64).tolist()}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == expected.tolist()
        # Open Inference Protocol v2 with the binary tensor extension (tritonclient's default)
        client = triton.InferenceServerClient(device["endpoint"].removeprefix("http://"))
        inp = triton.InferInput("input", list(images.shape), "FP32")
        inp.set_data_from_numpy(images, binary_data=True)
        result = client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("logits", binary_data=True)])
        logits = result.as_numpy("logits")
        assert logits is not None
        assert np.array_equal(np.argmax(logits, axis=1), expected)
        client.close()

    # the CLI's own scoring path picks a Healthy device
    scored = fleet.cli(
        "service", "score", "digits-svc", "--data", json.dumps({"data": images[:2].reshape(2, 64).tolist()})
    )
    assert json.loads(scored.stdout)["predictions"] == expected[:2].tolist()

    fleet.cli("service", "delete", "digits-svc", timeout=120)
    wait_for(lambda: not fleet.module_processes(), timeout=60, what="module processes to stop on every device")
    for dev in fleet.cli_json("device", "list"):
        assert not (dev.get("lastReport") or {}).get("modules"), dev
    fleet.cli("model", "delete", "digits:1")
    assert fleet.cli_json("model", "list") == []


def test_bad_input_is_refused_with_a_clear_message(fleet: Fleet, tmp_path: Path) -> None:
    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))

    bad_dc = tmp_path / "deploymentconfig.json"
    bad_dc.write_text(json.dumps({"computeType": "edge", "containerResourceRequirements": {"memoryInGb": 1}}))
    out = fleet.cli("model", "deploy", "-n", "svc", "-m", "digits:1", "--dc", str(bad_dc), check=False)
    assert out.returncode != 0
    assert "deploymentconfig.json" in out.stderr and "memoryInGb" in out.stderr

    broken = tmp_path / "inferenceconfig.json"
    broken.write_text('{"entryScript": "score.py",')
    out = fleet.cli("model", "deploy", "-n", "svc", "-m", "digits:1", "--ic", str(broken), check=False)
    assert out.returncode != 0 and "inferenceconfig.json" in out.stderr

    out = fleet.cli("model", "deploy", "-n", "svc", "-m", "digits:9", "--no-wait", check=False)
    assert out.returncode != 0 and "digits:9" in out.stderr
    assert fleet.cli_json("service", "list") == []


def test_no_code_deployment_serves_the_model_without_an_entry_script(fleet: Fleet) -> None:
    fleet.start_agent("dev-nc", "site=e2e")
    wait_for(lambda: any(d["deviceId"] == "dev-nc" for d in fleet.cli_json("device", "list")), 60, what="agent")
    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))
    fleet.cli("model", "deploy", "-n", "digits-nocode", "-m", "digits:1", timeout=300)  # no --ic: no-code
    service = fleet.cli_json("service", "show", "digits-nocode")
    (device,) = service["devices"]
    assert service["state"] == "Healthy" and device["backend"] == "cpu", service

    images = np.load(SAMPLE / "test_set.npz")["images"][:16]
    r = httpx.post(device["endpoint"] + "/score", json={"data": images.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == _reference_predictions(images).tolist()
    bad = httpx.post(device["endpoint"] + "/score", content=b'{"data": [1, 2', timeout=60)
    assert bad.status_code == 400 and "error" in bad.json()
    wrong_shape = httpx.post(device["endpoint"] + "/score", json={"data": [[1.0, 2.0]]}, timeout=60)
    assert wrong_shape.status_code == 400 and "shape" in wrong_shape.json()["error"]
    assert httpx.get(device["endpoint"] + "/", timeout=10).text.strip('"') == "Healthy"  # still serving


@pytest.mark.timeout(400)
def test_register_bootstrap_deploy_healthy_revoke_delete(fleet: Fleet) -> None:
    """The identity path end to end: registered with the operator's labels, the agent starts from its
    bundle alone over TLS, serves, and once revoked the broker refuses it and the hub forgets it."""
    fleet.start_agent("dev-r", "site=e2e")
    wait_for(lambda: fleet.cli_json("device", "show", "dev-r")["presence"] == "online", 60, what="dev-r online")
    identity = fleet.workdir / "agents" / "dev-r" / "identity"
    assert (identity / "client.key").stat().st_mode & 0o777 == 0o600  # the bundle was installed
    assert (identity / "bootstrap.json").stat().st_mode & 0o777 == 0o600
    agent_log = fleet.workdir / "agent-dev-r.log"
    assert "PRIVATE KEY" not in agent_log.read_text()

    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))
    dc = fleet.workdir / "dc.json"
    dc.write_text(json.dumps({"computeType": "edge", "target": {"labels": {"site": "e2e"}}}))
    fleet.cli("model", "deploy", "-n", "svc-r", "-m", "digits:1", "--dc", str(dc), timeout=300)
    service = fleet.cli_json("service", "show", "svc-r")
    assert service["state"] == "Healthy" and [d["device"] for d in service["devices"]] == ["dev-r"], service

    refused_before = fleet.broker.log_file.read_text().count("certificate verify failed")
    revoked = fleet.cli("device", "revoke", "dev-r").stdout
    assert "revoked dev-r: it can no longer connect" in revoked and "broker reloaded (SIGHUP" in revoked
    assert fleet.cli_json("device", "show", "dev-r")["status"] == "revoked"
    # open connections stay until they reconnect: a broker restart makes the agent reconnect, and it is refused
    fleet.broker.restart()
    wait_for(
        lambda: fleet.broker.log_file.read_text().count("certificate verify failed") > refused_before,
        30,
        what="the broker refusing dev-r's revoked certificate",
    )
    assert agent_log.read_text().count("connected to broker") == 1  # never again after the revocation
    service = fleet.cli_json("service", "show", "svc-r")
    assert service["state"] == "Unschedulable" and service["devices"] == [], service  # out of the fleet

    deleted = fleet.cli("device", "delete", "dev-r").stdout
    assert deleted.startswith("deleted dev-r")
    assert fleet.cli_json("device", "list") == []
