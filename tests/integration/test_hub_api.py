"""The hub's REST API over loopback: blobs, models, services, errors. The broker is not needed here.

``token_for`` and ``api_client`` are how every hub test authenticates against an in-process hub.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.auth import local_authority
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.protocol.digests import sha256_bytes
from edgefleet.protocol.signing import HubKey
from tests.support.processes import free_port

DATA = bytes(range(256)) * 40  # 10 KiB
AZUREML = Path(__file__).resolve().parents[1] / "data" / "azureml"


def token_for(server: HubServer, role: Role = Role.ADMIN, name: str | None = None) -> str:
    """A new token made straight in the running hub's store, as `edgefleet hub token create` does."""
    assert server.hub is not None
    name = name or f"test-{role.value}-{secrets.token_hex(3)}"
    return server.hub.auth.issue(TokenCreate(name=name, role=role)).token


def token_in(data_dir: Path, role: Role = Role.ADMIN, name: str = "test-admin") -> str:
    """A token made in a hub's data directory before the hub runs (the first admin token's way)."""
    authority, _url = local_authority(data_dir, must_exist=False)
    try:
        return authority.issue(TokenCreate(name=name, role=role)).token
    finally:
        authority.store.close()


def api_client(server: HubServer, role: Role = Role.ADMIN, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or token_for(server, role)}"}
    return httpx.Client(base_url=server.url + "/api/v1", timeout=20, headers=headers)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[httpx.Client]:
    # No broker listens on this port: the controller keeps retrying in the background, the API works.
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=f"mqtt://127.0.0.1:{free_port()}")
    with HubServer(settings) as server, api_client(server) as client:
        yield client


def upload(api: httpx.Client, data: bytes) -> str:
    digest = sha256_bytes(data)
    assert api.put(f"/blobs/{digest}", content=data).status_code == 201
    return digest


def register(api: httpx.Client, name: str = "digits", data: bytes = DATA) -> dict:  # type: ignore[type-arg]
    digest = upload(api, data)
    r = api.post("/models", json={"name": name, "files": [{"path": "m.onnx", "digest": digest, "size": len(data)}]})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_hub_info_publishes_the_signing_key(api: httpx.Client, tmp_path: Path) -> None:
    info = api.get("/hub").json()
    key = HubKey.load_or_create(tmp_path / "hub" / "hub_key.pem")
    assert info["publicKey"] == key.public_key_b64 and info["keyId"] == key.key_id
    assert info["keyFingerprint"] == key.fingerprint and len(key.fingerprint) == len("sha256:") + 64
    assert info["brokerUrl"].startswith("mqtt://127.0.0.1:")


def test_blob_upload_with_wrong_digest_is_refused(api: httpx.Client) -> None:
    claimed = sha256_bytes(b"something else")
    r = api.put(f"/blobs/{claimed}", content=DATA)
    assert r.status_code == 400
    assert claimed in r.json()["error"] and sha256_bytes(DATA) in r.json()["error"]
    assert api.head(f"/blobs/{claimed}").status_code == 404
    r = api.put("/blobs/md5:abc", content=b"x")
    assert r.status_code == 400 and "not a sha256 digest" in r.json()["error"]


def test_blob_download_with_range_and_etag(api: httpx.Client) -> None:
    digest = upload(api, DATA)
    assert api.put(f"/blobs/{digest}", content=DATA).json()["created"] is False  # idempotent
    head = api.head(f"/blobs/{digest}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(DATA))
    full = api.get(f"/blobs/{digest}")
    assert full.content == DATA and full.headers["etag"] == f'"{digest}"'
    part = api.get(f"/blobs/{digest}", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == DATA[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(DATA)}"
    assert part.headers["content-length"] == "100"
    tail = api.get(f"/blobs/{digest}", headers={"Range": f"bytes={len(DATA) - 10}-"})
    assert tail.status_code == 206 and tail.content == DATA[-10:]
    assert api.get(f"/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'}).status_code == 304
    bad = api.get(f"/blobs/{digest}", headers={"Range": f"bytes={len(DATA)}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{len(DATA)}"
    missing = api.get(f"/blobs/{sha256_bytes(b'nope')}")
    assert missing.status_code == 404 and "upload it first" in missing.json()["error"]


def test_model_register_list_show_delete(api: httpx.Client) -> None:
    assert register(api)["version"] == 1
    assert register(api, data=b"v2")["version"] == 2
    assert [m["version"] for m in api.get("/models", params={"name": "digits"}).json()] == [1, 2]
    assert api.get("/models/digits/versions/2").json()["files"][0]["size"] == 2
    assert api.delete("/models/digits/versions/1").status_code == 204
    r = api.get("/models/digits/versions/1")
    assert r.status_code == 404 and "known versions: 2" in r.json()["error"]


def test_model_with_unuploaded_blob_or_bad_name_is_refused(api: httpx.Client) -> None:
    digest = sha256_bytes(b"never uploaded")
    r = api.post("/models", json={"name": "m", "files": [{"path": "a.onnx", "digest": digest, "size": 1}]})
    assert r.status_code == 400 and "is not uploaded" in r.json()["error"]
    digest = upload(api, b"abc")
    r = api.post("/models", json={"name": "m", "files": [{"path": "../a.onnx", "digest": digest, "size": 3}]})
    assert r.status_code == 400 and "without '.' or '..'" in r.json()["error"]
    r = api.post("/models", json={"name": "m", "files": [{"path": "a.onnx", "digest": digest, "size": 4}]})
    assert r.status_code == 400 and "size 4 given" in r.json()["error"]
    r = api.post("/models", json={"name": "bad name", "files": []})
    assert r.status_code == 422 and r.json()["error"].startswith("invalid request: name:")


def test_services_validate_configs_models_and_names(api: httpx.Client) -> None:
    register(api)
    r = api.post("/services", json={"name": "svc", "models": ["digits:1"], "deploymentConfig": {"prot": 1}})
    assert r.status_code == 400
    assert r.json()["error"] == "deploymentconfig.json: prot: unknown field (did you mean port?)"
    r = api.post("/services", json={"name": "svc", "models": ["digits:7"]})
    assert r.status_code == 404 and "digits:7" in r.json()["error"]
    r = api.post("/services", json={"name": "svc", "models": ["digits:one"]})
    assert r.status_code == 400 and "expected NAME or NAME:VERSION" in r.json()["error"]
    r = api.post("/services", json={"name": "svc", "models": ["resnet"]})
    assert r.status_code == 404 and r.json()["error"].startswith("model resnet is not registered")
    r = api.post("/services", json={"name": "svc", "models": ["digits", "digits:1"]})
    assert r.status_code == 400 and "digits:1 listed twice" in r.json()["error"]
    r = api.post("/services", json={"name": "Svc_1", "models": ["digits:1"]})
    assert r.status_code == 400 and "lowercase" in r.json()["error"]
    r = api.post("/services", json={"name": "svc", "models": ["digits:1"], "inferenceConfig": {"entryScript": "s.py"}})
    assert r.status_code == 400 and "not among the uploaded source files" in r.json()["error"]


def test_service_lifecycle_and_model_in_use(api: httpx.Client) -> None:
    register(api)
    r = api.post("/services", json={"name": "svc", "models": ["digits:1"]})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["state"] == "Unschedulable" and "no device matches the target (any device)" in body["reason"]
    assert api.post("/services", json={"name": "svc", "models": ["digits:1"]}).status_code == 409
    assert api.post("/services", json={"name": "svc", "models": ["digits:1"], "overwrite": True}).status_code == 201
    assert [s["name"] for s in api.get("/services").json()] == ["svc"]
    r = api.delete("/models/digits/versions/1")
    assert r.status_code == 409 and "used by service(s) svc" in r.json()["error"]
    assert api.delete("/services/svc").status_code == 204
    assert api.get("/services/svc").status_code == 404
    assert api.delete("/models/digits/versions/1").status_code == 204


def test_unknown_routes_and_devices_answer_json_errors(api: httpx.Client) -> None:
    r = api.get("/devices/dev-x")
    assert r.status_code == 404 and "`edgefleet device register dev-x`" in r.json()["error"]
    assert api.get("/nope").json() == {"error": "Not Found"}
    r = api.post("/models", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()


def test_openapi_documents_the_api(api: httpx.Client) -> None:
    spec = httpx.get(str(api.base_url).removesuffix("/api/v1/") + "/openapi.json").json()
    assert "/api/v1/services/{name}" in spec["paths"]
    assert {t["name"] for t in spec["tags"]} >= {"blobs", "models", "services", "devices", "tokens"}
    # the API says which role each operation needs, and that the open ones need none
    assert spec["components"]["securitySchemes"]["operatorToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an operator token (eft_<id>_<secret>) whose role includes the one the operation names",
    }
    deploy = spec["paths"]["/api/v1/services"]["post"]
    assert deploy["security"] == [{"operatorToken": []}] and "**deploy** role" in deploy["description"]
    assert {"401", "403"} <= set(deploy["responses"])
    assert "security" not in spec["paths"]["/api/v1/hub"]["get"]
    download = spec["paths"]["/api/v1/blobs/{digest}"]["get"]
    assert download["security"] == [{"operatorToken": []}] and "`device` and `grant` query" in download["description"]


def test_every_json_answer_is_an_api_schema_not_a_store_record(api: httpx.Client) -> None:
    spec = httpx.get(str(api.base_url).removesuffix("/api/v1/") + "/openapi.json").json()
    answers = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            if path.endswith("/blobs/{digest}") and method in ("get", "head"):
                continue  # the blob's bytes
            for status in ("200", "201"):
                schema = op["responses"].get(status, {}).get("content", {}).get("application/json", {}).get("schema")
                if schema is not None:
                    ref = schema.get("$ref") or schema.get("items", {}).get("$ref", "")
                    answers[f"{method.upper()} {path}"] = ref.rsplit("/", 1)[-1]
    assert answers == {
        "GET /api/v1/health": "Health",
        "GET /api/v1/hub": "HubInfo",
        "GET /api/v1/hub/key/rotation": "KeyRotationView",
        "POST /api/v1/hub/key/rotation": "KeyRotationView",
        "POST /api/v1/hub/key/rotation/finish": "KeyRotationView",
        "PUT /api/v1/blobs/{digest}": "BlobStored",
        "POST /api/v1/models": "ModelView",
        "GET /api/v1/models": "ModelView",
        "GET /api/v1/models/{name}/versions/{version}": "ModelView",
        "POST /api/v1/services": "ServiceDeployed",
        "GET /api/v1/services": "ServiceView",
        "GET /api/v1/services/{name}": "ServiceView",
        "PATCH /api/v1/services/{name}": "ServiceDeployed",
        "GET /api/v1/services/{name}/keys": "ServiceKeys",
        "POST /api/v1/services/{name}/keys/regenerate": "ServiceKeys",
        "GET /api/v1/devices": "DeviceView",
        "GET /api/v1/devices/{device_id}": "DeviceView",
        "POST /api/v1/devices": "DeviceRegistration",
        "PATCH /api/v1/devices/{device_id}/labels": "DeviceView",
        "POST /api/v1/devices/{device_id}/revoke": "DeviceRevoked",
        "DELETE /api/v1/devices/{device_id}": "DeviceDeleted",
        "POST /api/v1/devices/{device_id}/methods/{method}": "DirectMethodResponse",
        "GET /api/v1/whoami": "TokenView",
        "GET /api/v1/tokens": "TokenView",
        "POST /api/v1/tokens": "TokenCreated",
        "DELETE /api/v1/tokens/{token_id}": "TokenView",
    }
    assert not [name for name in spec["components"]["schemas"] if name.endswith("Record")]


def test_registration_checks_the_request_and_keeps_no_secret(api: httpx.Client, tmp_path: Path) -> None:
    from edgefleet.hub.cli.bootstrap import new_key_and_csr

    _, csr = new_key_and_csr("dev-1")
    r = api.post("/devices", json={"deviceId": "dev-1"})
    assert r.status_code == 400 and "needs a certificate signing request" in r.json()["error"]
    r = api.post("/devices", json={"deviceId": "dev-2", "csr": csr})
    assert r.status_code == 400 and "names ['dev-1'], not 'dev-2'" in r.json()["error"]
    r = api.post("/devices", json={"deviceId": "bad/id", "csr": csr})
    assert r.status_code == 400 and "invalid device id" in r.json()["error"]
    r = api.post("/devices", json={"deviceId": "dev-1", "csr": csr, "labels": {"site": "lab"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["bundle"]["clientKey"] is None and "BEGIN CERTIFICATE" in body["bundle"]["clientCertificate"]
    assert body["device"]["labels"] == {"site": "lab"} and body["device"]["lastSeen"] is None
    r = api.post("/devices", json={"deviceId": "dev-3", "auth": "password"})
    password = r.json()["bundle"]["password"]
    assert r.status_code == 201 and password
    stored = (tmp_path / "hub" / "hub.db").read_bytes() + b"".join(
        p.read_bytes() for p in (tmp_path / "hub").glob("hub.db*")
    )
    assert password.encode() not in stored  # only its hash
    assert api.get("/devices/dev-3").json()["credential"]["kind"] == "password"


def test_scoring_keys_are_issued_kept_shown_only_on_their_route_and_rotated_one_at_a_time(
    api: httpx.Client, tmp_path: Path
) -> None:
    register(api)
    r = api.post("/services", json={"name": "open", "models": ["digits:1"]})
    assert r.status_code == 201
    r = api.get("/services/open/keys")
    assert r.status_code == 409 and '"authEnabled": true' in r.json()["error"]
    assert api.get("/services/nope/keys").status_code == 404

    keyed = {"name": "svc", "models": ["digits:1"], "deploymentConfig": {"authEnabled": True}}
    assert api.post("/services", json=keyed).status_code == 201
    r = api.get("/services/svc/keys")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    keys = r.json()
    primary, secondary = keys["primaryKey"], keys["secondaryKey"]
    assert len(primary) >= 43 and len(secondary) >= 43 and primary != secondary
    # shown only through the keys route: not in the service, nor in the list
    assert primary not in api.get("/services/svc").text and primary not in api.get("/services").text
    # deploying again keeps the keys clients already use
    assert api.post("/services", json={**keyed, "overwrite": True}).status_code == 201
    assert api.get("/services/svc/keys").json() == keys

    r = api.post("/services/svc/keys/regenerate", json={"key": "primary"})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    rotated = r.json()
    assert rotated["primaryKey"] not in (primary, secondary) and rotated["secondaryKey"] == secondary
    assert api.get("/services/svc/keys").json() == rotated
    r = api.post("/services/svc/keys/regenerate", json={"key": "tertiary"})
    assert r.status_code == 422
    assert api.post("/services/open/keys/regenerate", json={"key": "primary"}).status_code == 409

    # switching auth off drops the keys; the hub log never shows one
    off = {**keyed, "deploymentConfig": {"authEnabled": False}, "overwrite": True}
    assert api.post("/services", json=off).status_code == 201
    assert api.get("/services/svc/keys").status_code == 409
    for log in (tmp_path / "hub").rglob("*.log"):
        assert rotated["primaryKey"] not in log.read_text()


def test_azure_ml_configs_deploy_with_warnings_and_name_alone_is_the_latest_version(api: httpx.Client) -> None:
    register(api)
    register(api, data=DATA[::-1])  # digits:2
    aks = json.loads((AZUREML / "aks-deploymentconfig.json").read_text())
    r = api.post("/services", json={"name": "svc", "models": ["digits"], "deploymentConfig": aks})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["models"] == [{"name": "digits", "version": 2}]
    assert [w.split(": ")[1] for w in body["warnings"]] == ["computeType", "autoScaler", "dataCollection"]
    dc = body["deploymentConfig"]
    assert (dc["computeType"], dc["authEnabled"], dc["containerResourceRequirements"]) == (
        "edge", True, {"cpu": 0.5, "memoryInGB": 1.0}
    )  # fmt: skip
    assert "autoScaler" not in dc and "warnings" not in api.get("/services/svc").json()  # said once, when deployed


def test_update_changes_only_what_it_is_given(api: httpx.Client) -> None:
    register(api)
    register(api, data=DATA[::-1])
    keys = {"primaryKey": "p" * 32, "secondaryKey": "s" * 32}
    dc = {"computeType": "aks", "keys": keys, "scoringTimeoutMs": 5000, "target": {"labels": {"site": "lab"}}}
    r = api.post("/services", json={"name": "svc", "models": ["digits:1"], "deploymentConfig": dc})
    assert r.status_code == 201, r.text
    assert api.get("/services/svc/keys").json() == keys  # Azure ML's keys are the service's keys
    assert "p" * 32 not in api.get("/services/svc").text
    created = r.json()["created"]

    r = api.patch("/services/svc", json={"models": ["digits"]})  # the latest: digits:2
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["models"] == [{"name": "digits", "version": 2}] and body["warnings"] == []
    assert body["deploymentConfig"]["target"] == {"labels": {"site": "lab"}, "devices": [], "accelerators": []}
    assert body["deploymentConfig"]["scoringTimeoutMs"] == 5000 and body["created"] == created
    assert api.get("/services/svc/keys").json() == keys  # kept: the clients' keys still work

    r = api.patch("/services/svc", json={"deploymentConfig": {"computeType": "aci", "cpu_cores": 1}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["models"] == [{"name": "digits", "version": 2}]  # untouched
    assert body["deploymentConfig"]["containerResourceRequirements"]["cpu"] == 1
    assert body["deploymentConfig"]["target"]["labels"] == {}  # a config file given replaces the service's
    assert [w.split(": ")[1] for w in body["warnings"]] == ["computeType"]
    assert api.get("/services/svc/keys").status_code == 409  # ACI: no authEnabled, no keys

    r = api.patch("/services/svc", json={})
    assert r.status_code == 400 and "nothing to update for service svc" in r.json()["error"]
    r = api.patch("/services/nope", json={"models": ["digits"]})
    assert r.status_code == 404 and "service nope does not exist" in r.json()["error"]
    r = api.patch("/services/svc", json={"inferenceConfig": {"entryScript": "score.py"}})
    assert r.status_code == 400 and "not among the uploaded source files (0 file(s))" in r.json()["error"]
    r = api.patch("/services/svc", json={"deploymentConfig": {"autoscaler": {}}})
    assert r.status_code == 400
    assert r.json()["error"] == "deploymentconfig.json: autoscaler: unknown field (did you mean autoScaler?)"
