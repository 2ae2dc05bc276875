"""The client's mapping of HTTP answers back onto the hub's errors and schemas (no server: a mock transport)."""

from __future__ import annotations

import io
import json

import httpx
import pytest

from edgefleet.hub.client import RAISED_FOR_STATUS, HubClient
from edgefleet.hub.errors import (
    HTTP_STATUS,
    ClientError,
    Conflict,
    Forbidden,
    HubError,
    InvalidRequest,
    MethodTimeout,
    NotFound,
    Unauthenticated,
)
from edgefleet.hub.schemas import FileEntry
from edgefleet.protocol.digests import sha256_bytes

TOKEN = "eft_0123456789ab_" + "5" * 48


def _client(status: int, body: object, seen: list[httpx.Request] | None = None, token: str | None = TOKEN) -> HubClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=body)

    return HubClient("http://hub.test", token, transport=httpx.MockTransport(answer))


@pytest.mark.parametrize(
    ("status", "raised"),
    [(400, InvalidRequest), (401, Unauthenticated), (403, Forbidden), (404, NotFound), (409, Conflict),
     (422, InvalidRequest), (504, MethodTimeout), (416, ClientError), (500, ClientError), (502, ClientError)],
)  # fmt: skip
def test_a_failing_status_raises_the_hubs_error_with_its_message(status: int, raised: type[HubError]) -> None:
    message = "model digits:9 does not exist (known versions: 1)"
    with _client(status, {"error": message}) as client, pytest.raises(raised) as info:
        client.get_model("digits", 9)
    assert type(info.value) is raised and str(info.value) == message


def test_statuses_map_back_to_the_classes_the_api_raises_them_for() -> None:
    for cls, status in HTTP_STATUS:
        if cls in (Unauthenticated, Forbidden, NotFound, Conflict, MethodTimeout, InvalidRequest):
            assert RAISED_FOR_STATUS[status] is cls
    assert set(RAISED_FOR_STATUS) == {400, 401, 403, 404, 409, 422, 504}


def test_an_error_without_a_json_body_names_the_status() -> None:
    client = HubClient(
        "http://hub.test", TOKEN, transport=httpx.MockTransport(lambda _r: httpx.Response(502, text="bad"))
    )
    with pytest.raises(ClientError, match=r"^hub answered 502: bad$"):
        client.list_services()


def test_an_answer_that_is_not_the_schema_is_one_line_naming_the_route() -> None:
    with _client(200, [{"name": "digits"}]) as client, pytest.raises(ClientError) as info:
        client.list_models()
    message = str(info.value)
    assert "\n" not in message and "GET /models" in message and "0.version: Field required" in message


def test_request_bodies_use_the_api_names_and_leave_judging_to_the_hub() -> None:
    seen: list[httpx.Request] = []
    at = "2024-01-01T00:00:00Z"
    answers = {
        "/api/v1/models": {"name": "bad name", "version": 1, "created": at, "files": []},
        "/api/v1/services": {"name": "svc", "models": [], "created": at, "updated": at, "state": "Transitioning",
                             "target": "any device"},
    }  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=answers[request.url.path])

    with HubClient("http://hub.test", TOKEN, transport=httpx.MockTransport(answer)) as client:
        client.create_model("bad name", [FileEntry(path="m", digest="sha256:00", size=1)], {"k": "v"})
        client.deploy("svc", ["digits:1"], deployment_config={"target": {}}, overwrite=True)
    assert json.loads(seen[0].content) == {
        "name": "bad name",
        "files": [{"path": "m", "digest": "sha256:00", "size": 1}],
        "tags": {"k": "v"},
        "description": "",
    }
    assert json.loads(seen[1].content) == {
        "name": "svc",
        "models": ["digits:1"],
        "inferenceConfig": None,
        "deploymentConfig": {"target": {}},
        "sourceFiles": [],
        "overwrite": True,
    }


def test_an_unreachable_hub_is_one_line_saying_what_to_do() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client = HubClient("http://hub.test/", TOKEN, transport=httpx.MockTransport(refuse))
    with pytest.raises(ClientError, match=r"^cannot reach the hub at http://hub.test; is `edgefleet hub serve`"):
        client.list_devices()


def test_the_token_goes_in_every_request_and_nowhere_else() -> None:
    seen: list[httpx.Request] = []
    at = "2024-01-01T00:00:00Z"
    view = {"id": "0123456789ab", "name": "ci", "role": "read", "state": "active", "createdAt": at}
    with _client(200, view, seen) as client:
        client.whoami()
        client.blob_exists("sha256:" + "0" * 64)
        assert TOKEN not in repr(client) and client.base_url == "http://hub.test"
    assert [r.headers["authorization"] for r in seen] == [f"Bearer {TOKEN}"] * 2
    assert all(TOKEN not in str(r.url) for r in seen)
    seen.clear()
    with _client(200, {"status": "ok", "version": "0.1.0"}, seen, token=None) as client:
        assert client.health().status == "ok"
    assert "authorization" not in seen[0].headers


def test_token_requests_use_the_api_names() -> None:
    seen: list[httpx.Request] = []
    at = "2024-01-01T00:00:00Z"
    created = {"id": "0123456789ab", "name": "ci", "role": "deploy", "state": "active", "createdAt": at,
               "token": TOKEN}  # fmt: skip
    with _client(201, created, seen) as client:
        answer = client.create_token("ci", "deploy", expires_in_days=7)
        client.create_token("ci", "superuser")  # judged by the hub, not here
    assert answer.token == TOKEN and answer.role.value == "deploy"
    assert json.loads(seen[0].content) == {"name": "ci", "role": "deploy", "expiresInDays": 7}
    assert json.loads(seen[1].content) == {"name": "ci", "role": "superuser", "expiresInDays": None}


def test_a_download_is_checked_against_its_digest_as_it_is_written() -> None:
    data = bytes(range(256)) * 1000
    served = {"body": data}

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/missing"):
            return httpx.Response(404, json={"error": "blob sha256:missing is not stored"})
        return httpx.Response(200, content=served["body"], headers={"Content-Length": str(len(served["body"]))})

    seen: list[tuple[int, int]] = []
    with HubClient("http://hub.test", TOKEN, transport=httpx.MockTransport(answer)) as client:
        out = io.BytesIO()
        assert client.download_blob(sha256_bytes(data), out, lambda got, total: seen.append((got, total))) == len(data)
        assert out.getvalue() == data and seen[-1] == (len(data), len(data))
        served["body"] = data[:-1] + b"x"  # a hub (or a proxy) sending other bytes
        with pytest.raises(ClientError, match=r"sent 256000 bytes whose digest is sha256:[0-9a-f]{64}; discarded"):
            client.download_blob(sha256_bytes(data), io.BytesIO())
        with pytest.raises(NotFound, match="is not stored"):
            client.download_blob("missing", io.BytesIO())


def test_an_update_sends_only_what_it_changes() -> None:
    seen: list[httpx.Request] = []
    at = "2024-01-01T00:00:00Z"
    answer = {"name": "svc", "models": [], "created": at, "updated": at, "state": "Transitioning",
              "target": "any device", "warnings": ["deploymentconfig.json: autoScaler: not applied: ..."]}  # fmt: skip
    with _client(200, answer, seen) as client:
        updated = client.update_service("svc", models=["digits"])
    assert seen[0].method == "PATCH" and seen[0].url.path == "/api/v1/services/svc"
    assert json.loads(seen[0].content) == {
        "models": ["digits"],
        "inferenceConfig": None,
        "deploymentConfig": None,
        "sourceFiles": None,
    }
    assert updated.warnings == ["deploymentconfig.json: autoScaler: not applied: ..."]
