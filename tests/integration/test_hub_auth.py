"""Operator tokens against a real hub over loopback: every route of the app, walked.

Every route is declared (open, or with the role it needs); each protected one refuses a missing,
malformed, mistyped, revoked or expired token with 401 and too small a role with 403, as JSON that
says what is wrong and what to do; open ones answer without a token. Then the security properties
end to end: a read token cannot deploy, a deploy token cannot make tokens, a revocation bites at
once, no token ever reaches a log line or a listing, and bad headers never take the hub down.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from edgefleet.hub.errors import HubError
from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.access import OPEN_ROUTES, ROUTE_ROLES, Route
from edgefleet.hub.server.api import create_app
from edgefleet.hub.server.guard import check_routes, served_routes
from edgefleet.hub.server.runner import HubServer
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.tokens import hash_token
from edgefleet.protocol.digests import sha256_bytes
from edgefleet.protocol.models import utcnow
from tests.support.processes import free_port

SAMPLE = {
    "digest": "sha256:" + "0" * 64,
    "name": "x",
    "version": "1",
    "device_id": "dev-x",
    "method": "ping",
    "token_id": "000000000000",
}
ROLES = [Role.READ, Role.DEPLOY, Role.ADMIN]


@dataclass
class Tokens:
    by_role: dict[Role, str]
    names: dict[Role, str]
    revoked: str
    expired: str
    mistyped: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubServer]:
    data = tmp_path_factory.mktemp("hub")
    settings = HubSettings(data_dir=data, port=0, broker_url=f"mqtt://127.0.0.1:{free_port()}")
    with HubServer(settings) as running:
        yield running


@pytest.fixture(scope="module")
def tokens(server: HubServer) -> Tokens:
    assert server.hub is not None
    auth = server.hub.auth
    by_role = {role: auth.issue(TokenCreate(name=f"walk-{role.value}", role=role)).token for role in ROLES}
    revoked = auth.issue(TokenCreate(name="walk-revoked", role=Role.ADMIN))
    auth.revoke(revoked.id)
    expired = auth.issue(TokenCreate(name="walk-expired", role=Role.ADMIN), expires_at=utcnow() - timedelta(seconds=1))
    admin = by_role[Role.ADMIN]
    mistyped = admin[:-1] + ("0" if admin[-1] != "0" else "1")
    return Tokens(by_role, {r: f"walk-{r.value}" for r in ROLES}, revoked.token, expired.token, mistyped)


@pytest.fixture
def http(server: HubServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        yield client


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE[m.group(1)], path)


def _call(http: httpx.Client, route: Route, token: str | None = None, raw: str | None = None) -> httpx.Response:
    method, path = route
    headers = {"Authorization": raw if raw is not None else f"Bearer {token}"} if (token or raw) else {}
    body: dict[str, object] = {"json": {}} if method == "POST" else {"content": b"x"} if method == "PUT" else {}
    return http.request(method, _url(path), headers=headers, **body)  # type: ignore[arg-type]


def _refused(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and body["error"] and "\n" not in body["error"]
    return str(body["error"])


def _hub_app(server: HubServer) -> FastAPI:
    assert server.hub is not None
    return create_app(server.hub)


def test_every_route_the_app_serves_is_declared_and_every_protected_one_guarded(server: HubServer) -> None:
    served = served_routes(_hub_app(server))
    assert set(served) == set(OPEN_ROUTES) | set(ROUTE_ROLES)  # none undeclared, none stale
    assert all(served[route] for route in ROUTE_ROLES)  # each runs through the guard


@pytest.mark.parametrize(
    ("route", "need"), sorted(ROUTE_ROLES.items()), ids=lambda v: f"{v[0]} {v[1]}" if isinstance(v, tuple) else v.value
)
def test_each_protected_route_refuses_a_missing_bad_or_too_small_token(
    http: httpx.Client, tokens: Tokens, route: Route, need: Role
) -> None:
    method, path = route

    def refused(r: httpx.Response, status: int, says: str) -> None:
        if method == "HEAD":  # no body: the status and the header; the GET of the route checks the words
            assert r.status_code == status and r.headers["content-type"] == "application/json", r.text
        else:
            assert says in _refused(r, status), says

    r = _call(http, route)
    refused(r, 401, f"needs a token with the {need.value} role and none was sent")
    refused(r, 401, "--token, EDGEFLEET_TOKEN or `edgefleet login`")
    assert r.headers["www-authenticate"] == 'Bearer realm="edgefleet"'

    for raw, says in [
        ("Bearer not-a-token", "not an edgefleet token"),
        ("Basic dXNlcjpwYXNz", "is not `Bearer <token>`"),
        (f"Bearer {tokens.mistyped}", "is not valid on this hub"),
        (f"Bearer {tokens.revoked}", "'walk-revoked' (id "),
        (f"Bearer {tokens.expired}", "'walk-expired' (id "),
    ]:
        r = _call(http, route, raw=raw)
        refused(r, 401, says)
        assert r.headers["www-authenticate"] == 'Bearer realm="edgefleet", error="invalid_token"'
    refused(_call(http, route, tokens.revoked), 401, "was revoked at")
    refused(_call(http, route, tokens.expired), 401, "expired at")

    for role in ROLES:
        r = _call(http, route, tokens.by_role[role])
        if role.includes(need):
            assert r.status_code not in (401, 403), r.text
            continue
        refused(r, 403, f"{method} {path} needs the {need.value} role; token '{tokens.names[role]}' (id ")
        refused(r, 403, f") has {role.value}; use a token with the {need.value} role")
        assert r.headers["www-authenticate"] == 'Bearer realm="edgefleet", error="insufficient_scope"'


@pytest.mark.parametrize("route", sorted(OPEN_ROUTES), ids=lambda v: f"{v[0]} {v[1]}")
def test_open_routes_answer_without_a_token(http: httpx.Client, tokens: Tokens, route: Route) -> None:
    for raw in (None, "Bearer not-a-token", f"Bearer {tokens.revoked}"):
        r = _call(http, route, raw=raw)
        assert r.status_code not in (401, 403, 500), (raw, r.text)


def test_a_route_added_without_a_role_is_refused_not_served(server: HubServer) -> None:
    app = _hub_app(server)

    @app.get("/api/v1/secrets")
    def secrets() -> dict[str, str]:
        return {"leaked": "yes"}

    with pytest.raises(
        HubError, match=r"GET /api/v1/secrets declares no role \(add it to ROUTE_ROLES or OPEN_ROUTES\)"
    ):
        check_routes(app)

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://hub"
        ) as client:
            return await client.get("/api/v1/secrets")

    r = asyncio.run(get())
    assert r.status_code == 500 and "GET /api/v1/secrets declares no role" in r.json()["error"]


def _upload_and_register(api: httpx.Client) -> None:
    data = b"model bytes"
    digest = sha256_bytes(data)
    assert api.put(f"/blobs/{digest}", content=data).status_code == 201
    files = [{"path": "m.onnx", "digest": digest, "size": len(data)}]
    assert api.post("/models", json={"name": "m", "files": files}).status_code == 201


def _client(server: HubServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", timeout=20, headers={"Authorization": f"Bearer {token}"})


def test_read_cannot_deploy_deploy_cannot_make_tokens_and_revocation_bites_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = HubSettings(data_dir=tmp_path / "hub", port=0, broker_url=f"mqtt://127.0.0.1:{free_port()}")
    with HubServer(settings) as server:
        assert server.hub is not None
        root = server.hub.auth.issue(TokenCreate(name="root", role=Role.ADMIN)).token
        seen = [root]
        with _client(server, root) as admin:
            made = {}
            for role in ("read", "deploy"):
                r = admin.post("/tokens", json={"name": f"ci-{role}", "role": role, "expiresInDays": 1})
                assert r.status_code == 201, r.text
                made[role] = r.json()["token"]
            seen += made.values()
            with _client(server, made["deploy"]) as deployer, _client(server, made["read"]) as reader:
                # a read token looks, but changes nothing
                assert reader.get("/models").json() == [] and reader.get("/whoami").json()["role"] == "read"
                data = b"evil score.py"
                r = reader.put(f"/blobs/{sha256_bytes(data)}", content=data)
                assert r.status_code == 403 and deployer.head(f"/blobs/{sha256_bytes(data)}").status_code == 404
                _upload_and_register(deployer)
                r = reader.post("/services", json={"name": "svc", "models": ["m:1"]})
                assert "needs the deploy role; token 'ci-read'" in _refused(r, 403)
                assert reader.get("/services").json() == []
                assert reader.delete("/models/m/versions/1").status_code == 403
                assert deployer.post("/services", json={"name": "svc", "models": ["m:1"]}).status_code == 201

                # a deploy token cannot make or see tokens, so it cannot make itself an admin
                r = deployer.post("/tokens", json={"name": "mine", "role": "admin"})
                assert "needs the admin role; token 'ci-deploy'" in _refused(r, 403)
                assert deployer.get("/tokens").status_code == 403
                assert deployer.delete(f"/tokens/{made['read'].split('_')[1]}").status_code == 403
                assert [t["name"] for t in admin.get("/tokens").json()] == ["root", "ci-read", "ci-deploy"]

                # revoked: refused from the very next request
                assert deployer.get("/services").status_code == 200
                assert admin.delete("/tokens/ci-deploy").json()["state"] == "revoked"
                assert "'ci-deploy'" in _refused(deployer.get("/services"), 401)
                assert "was revoked at" in deployer.get("/services").json()["error"]
                assert reader.get("/services").status_code == 200  # the others still work

            # the listing shows ids and names only: no token, no secret, no hash
            listing = admin.get("/tokens").text
            for token in seen:
                assert token not in listing and token.split("_")[2] not in listing and hash_token(token) not in listing
            assert set(admin.get("/tokens").json()[0]) == {
                "id", "name", "role", "state", "createdAt", "expiresAt", "lastUsed", "revokedAt",
            }  # fmt: skip
            assert admin.get("/whoami").json()["name"] == "root"

    # nothing the hub logged holds a token or its secret (a refusal names the token by id and name)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "refused" in logged and "issued read token 'ci-read'" in logged
    # every change names the token that made it: the audit trail of a stolen token
    assert re.search(r"POST /api/v1/services by token 'ci-deploy' \(id \w+, deploy\)", logged)
    assert re.search(r"DELETE /api/v1/tokens/ci-deploy by token 'root' \(id \w+, admin\)", logged)
    for token in seen:
        assert token not in logged and token.split("_")[2] not in logged


def test_hostile_authorization_headers_never_take_the_hub_down(http: httpx.Client, tokens: Tokens) -> None:
    route = ("GET", "/api/v1/models")
    for raw in [
        "Bearer " + "a" * 8000,
        "Bearer   eft_" + "0" * 12 + "_" + "0" * 48,
        "Bearer\teft_x",
        "bearer " + tokens.by_role[Role.READ].upper(),
        "Bearer eft_'; DROP TABLE tokens; --_" + "0" * 48,
        "Bearer eft_" + "0" * 12 + "_" + "0" * 48 + "_" + "0" * 48,
    ]:
        assert _call(http, route, raw=raw).status_code == 401, raw
    weird = http.get("/api/v1/models", headers={"Authorization": b"Bearer \xff\xfe"})
    assert weird.status_code in (400, 401)
    assert http.get("/api/v1/health").json()["status"] == "ok"
    assert _call(http, route, tokens.by_role[Role.READ]).status_code == 200
