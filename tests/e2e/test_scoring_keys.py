"""Scoring keys end to end (Azure ML's authEnabled) on an HTTPS endpoint open to other hosts: the hub
issues and rotates the keys, the agent hands them to the real scoring module by environment, and
only a client with a key scores."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from pathlib import Path

import httpx
import numpy as np

from tests.e2e.conftest import Fleet
from tests.integration.test_scoring_server import _self_signed, raw_exchange
from tests.support.processes import wait_for

SAMPLE = Path(__file__).resolve().parents[2] / "modules" / "samples" / "digits"
DEVICE = "dev-keys"


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_only_a_client_with_a_key_scores_and_a_regenerated_key_rolls_out(fleet: Fleet, tmp_path: Path) -> None:
    tls_dir = fleet.workdir / "agents" / DEVICE / "tls"  # provisioned by the device's owner
    tls_dir.mkdir(parents=True)
    cert, key = _self_signed(tls_dir)
    trusted = ssl.create_default_context(cafile=str(cert))
    fleet.start_agent(DEVICE, "site=keys")
    wait_for(lambda: any(d["deviceId"] == DEVICE for d in fleet.cli_json("device", "list")), 60, what="agent")
    fleet.cli("model", "register", "-n", "digits", "-p", str(SAMPLE / "digits_int8.onnx"))
    dc = tmp_path / "deploymentconfig.json"
    dc.write_text(
        json.dumps(
            {
                "computeType": "edge",
                "authEnabled": True,
                "listenAddress": "0.0.0.0",
                "tls": {"certificate": cert.name, "key": key.name},
                "containerResourceRequirements": {"memoryInGB": 0.5},
            }
        )
    )
    fleet.cli(
        "model", "deploy", "-n", "keyed", "-m", "digits:1", "--ic", str(SAMPLE / "inferenceconfig.json"),
        "--dc", str(dc), timeout=300,
    )  # fmt: skip
    service = fleet.cli_json("service", "show", "keyed")
    (device,) = service["devices"]
    assert service["state"] == "Healthy" and device["endpoint"].startswith("https://"), service
    endpoint = device["endpoint"]
    keys = fleet.cli_json("service", "keys", "keyed")
    primary, secondary = keys["primaryKey"], keys["secondaryKey"]

    images = np.load(SAMPLE / "test_set.npz")["images"][:8]
    body = {"data": images.reshape(-1, 64).tolist()}

    def score(key: str | None) -> int:
        headers = _bearer(key) if key else {}
        return httpx.post(endpoint + "/score", json=body, headers=headers, verify=trusted, timeout=30).status_code

    def answered(key: str) -> int | None:
        try:
            return score(key)
        except httpx.TransportError:
            return None  # the serving gap while the module restarts with its new spec

    assert score(None) == 401 and score("not-the-key-0123456789abcdef") == 401
    assert score(primary) == 200 and score(secondary) == 200
    assert httpx.get(endpoint + "/", verify=trusted, timeout=10).text == "Healthy"  # the probes' route stays open
    # a 413 from the announced length alone (no body sent): the memory limit of 0.5 GB allows 32 MiB
    port = int(endpoint.rsplit(":", 1)[1])
    request = f"POST /score HTTP/1.1\r\nHost: d\r\nAuthorization: Bearer {primary}\r\nContent-Length: {(32 << 20) + 1}\r\n\r\n"
    answer = raw_exchange(port, request.encode(), context=trusted)
    assert answer.startswith(b"HTTP/1.1 413") and b"exceeds the limit of 33554432 bytes" in answer, answer[:300]
    scored = fleet.cli(
        "service", "score", "keyed", "--data", json.dumps({"data": body["data"][:2]}), "--cacert", str(cert)
    )
    assert len(json.loads(scored.stdout)["predictions"]) == 2  # the CLI fetched and sent the primary key

    # rotate the primary key: the secondary keeps working on every answer throughout the rollout
    answers: list[int] = []
    stop = threading.Event()

    def keep_scoring() -> None:
        while not stop.is_set():
            status = answered(secondary)
            if status is not None:
                answers.append(status)

    worker = threading.Thread(target=keep_scoring, daemon=True)
    worker.start()
    try:
        rotated = fleet.cli_json("service", "keys", "keyed", "--regenerate", "primary")
        assert rotated["secondaryKey"] == secondary and rotated["primaryKey"] not in (primary, secondary)
        wait_for(lambda: answered(primary) == 401, timeout=120, interval=0.2, what="the old primary key refused")
        wait_for(lambda: answered(rotated["primaryKey"]) == 200, timeout=60, interval=0.2, what="the new one accepted")
    finally:
        stop.set()
        worker.join(60)
    # never refused: 200, or 503 while the new instance loads its model (the serving gap)
    assert 200 in answers and set(answers) <= {200, 503}, answers
    assert score(secondary) == 200

    # no key on any command line, nor in any log of the hub, the agent or the module
    every_key = (primary, secondary, rotated["primaryKey"])
    ps = subprocess.run(["ps", "-eww", "-o", "args="], capture_output=True, text=True).stdout
    assert "edgefleet.modules.scoring" in ps
    assert not [k for k in every_key if k in ps]
    logs = [p for p in fleet.workdir.rglob("*.log")]
    assert any(p.name == "module.log" for p in logs) and any(p.name == "hub.log" for p in logs)
    for log in logs:
        text = log.read_text(errors="replace")
        assert not [k for k in every_key if k in text], log
