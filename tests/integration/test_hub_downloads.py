"""Artifact downloads against a real hub: a device fetches exactly what its current manifest names.

The URLs come from the manifest the hub signed for the device (its stored desired state, what the
device reads from its desired topic). Anyone else — no grant, another device's grant, a grant for
another blob, an operator with only the read role — is refused, and so is the device itself once
the blob leaves its desired state or the device is revoked.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.digests import sha256_bytes
from tests.support.identities import register
from tests.support.processes import free_port, wait_for

MODEL = b"model bytes for the download test"
SCORE = b"def init():\n    pass\n\ndef run(data):\n    return data\n"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=f"mqtt://127.0.0.1:{free_port()}")
    with HubServer(settings) as server:
        yield server


def _token(hub: HubServer, role: Role) -> str:
    assert hub.hub is not None
    return hub.hub.auth.issue(TokenCreate(name=f"dl-{role.value}-{secrets.token_hex(3)}", role=role)).token


def _api(hub: HubServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=hub.url + "/api/v1", timeout=20, headers={"Authorization": f"Bearer {token}"})


def _artifact_urls(hub: HubServer, device_id: str) -> dict[str, str]:
    """{path in the module: URL} of the manifest the hub last signed for ``device_id``."""
    assert hub.hub is not None
    store = hub.hub.store
    record = wait_for(lambda: store.get_desired(device_id), what=f"a manifest for {device_id}")
    modules = json.loads(record.payload)["manifest"]["modules"]
    return {a["path"]: a["url"] for m in modules for a in m["artifacts"]}


def _deploy(api: httpx.Client, name: str, target: list[str]) -> None:
    for data in (MODEL, SCORE):
        assert api.put(f"/blobs/{sha256_bytes(data)}", content=data).status_code in (200, 201)
    model = {"name": "m", "files": [{"path": "m.onnx", "digest": sha256_bytes(MODEL), "size": len(MODEL)}]}
    if api.get("/models").json() == []:
        assert api.post("/models", json=model).status_code == 201
    body = {
        "name": name,
        "models": ["m:1"],
        "sourceFiles": [{"path": "score.py", "digest": sha256_bytes(SCORE), "size": len(SCORE)}],
        "inferenceConfig": {"entryScript": "score.py"},
        "deploymentConfig": {"target": {"devices": target}},
    }
    r = api.post("/services", json=body)
    assert r.status_code == 201, r.text


def _with(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    query = {k: v for k, v in query.items() if v}
    return parts._replace(query="&".join(f"{k}={v}" for k, v in query.items())).geturl()


def test_a_device_downloads_what_its_manifest_names_and_nobody_else_does(hub: HubServer, tmp_path: Path) -> None:
    register(hub, "dev-a", tmp_path)
    register(hub, "dev-b", tmp_path)
    with _api(hub, _token(hub, Role.ADMIN)) as admin:
        _deploy(admin, "only-a", ["dev-a"])
        _deploy(admin, "both", ["dev-a", "dev-b"])
    a_urls = _artifact_urls(hub, "dev-a")
    model_url = next(url for path, url in a_urls.items() if path.startswith("model/"))
    score_url = next(url for path, url in a_urls.items() if path == "src/score.py")
    assert parse_qs(urlsplit(model_url).query)["device"] == ["dev-a"]

    with httpx.Client(timeout=20) as anyone:
        # the device, with the URL as given: the bytes, Range and HEAD included
        r = anyone.get(model_url)
        assert r.status_code == 200 and r.content == MODEL
        assert anyone.get(model_url, headers={"Range": "bytes=0-4"}).content == MODEL[:5]
        assert anyone.head(score_url).headers["content-length"] == str(len(SCORE))

        # nobody else: no grant, a grant that is not the hub's, another device's id on A's grant,
        # A's grant for another blob
        digest = sha256_bytes(MODEL)
        bare = f"{hub.url}/api/v1/blobs/{digest}"
        assert anyone.get(bare).status_code == 401
        assert anyone.head(bare).status_code == 401
        r = anyone.get(_with(model_url, grant="A" * 43))
        assert r.status_code == 401 and "not one this hub issued" in r.json()["error"]
        assert anyone.get(_with(model_url, device="dev-b")).status_code == 401
        assert anyone.get(_with(model_url, device="")).status_code == 401
        other = score_url.replace(sha256_bytes(SCORE), digest)
        assert anyone.get(other).status_code == 401
        r = anyone.get(_with(model_url, grant=""))  # an empty grant is a wrong one, not an operator call
        assert r.status_code == 401

    # an operator: deploy may download (it may upload anything anyway), read may not
    with _api(hub, _token(hub, Role.READ)) as reader, _api(hub, _token(hub, Role.DEPLOY)) as deployer:
        assert "needs the deploy role" in reader.get(f"/blobs/{digest}").json()["error"]
        assert deployer.get(f"/blobs/{digest}").content == MODEL

        # the blob leaves A's desired state: A's old URL stops working with it
        assert deployer.delete("/services/only-a").status_code == 204
        assert deployer.delete("/services/both").status_code == 204
        wait_for(lambda: _artifact_urls(hub, "dev-a") == {}, what="dev-a's empty manifest")
        r = httpx.get(model_url, timeout=20)
        assert r.status_code == 403 and "not in the desired state of device dev-a" in r.json()["error"]

        # revoked: B's URLs, valid a moment ago, are refused
        _deploy(deployer, "both", ["dev-a", "dev-b"])
        b_urls = wait_for(lambda: _artifact_urls(hub, "dev-b") or None, what="dev-b's manifest")
        b_model = next(url for path, url in b_urls.items() if path.startswith("model/"))
        assert httpx.get(b_model, timeout=20).status_code == 200
    with _api(hub, _token(hub, Role.ADMIN)) as admin:
        assert admin.post("/devices/dev-b/revoke").status_code == 200
    r = httpx.get(b_model, timeout=20)
    assert r.status_code == 403 and "device dev-b is revoked" in r.json()["error"]
