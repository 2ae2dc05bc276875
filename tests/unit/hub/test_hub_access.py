"""Access control as pure decisions: roles, the route table, the form of a token and whether it is good."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from edgefleet.hub.errors import Forbidden, Unauthenticated
from edgefleet.hub.schemas import Role
from edgefleet.hub.server.access import (
    DEVICE_ROUTES,
    OPEN_ROUTES,
    ROUTE_ROLES,
    UndeclaredRoute,
    authorize,
    required_role,
    undeclared,
)
from edgefleet.hub.server.store import TokenRecord
from edgefleet.hub.server.tokens import (
    TOUCH_EVERY,
    bearer_token,
    hash_token,
    issue,
    token_id,
    token_state,
    touch_due,
    verify,
)

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("have", "need", "allowed"),
    [(Role.READ, Role.READ, True), (Role.READ, Role.DEPLOY, False), (Role.READ, Role.ADMIN, False),
     (Role.DEPLOY, Role.READ, True), (Role.DEPLOY, Role.DEPLOY, True), (Role.DEPLOY, Role.ADMIN, False),
     (Role.ADMIN, Role.READ, True), (Role.ADMIN, Role.DEPLOY, True), (Role.ADMIN, Role.ADMIN, True)],
)  # fmt: skip
def test_each_role_includes_the_weaker_ones(have: Role, need: Role, allowed: bool) -> None:
    assert have.includes(need) is allowed


def test_the_route_table() -> None:
    assert not set(OPEN_ROUTES) & set(ROUTE_ROLES)
    assert all(reason for reason in OPEN_ROUTES.values())
    # reading the fleet needs read; changing what runs on devices needs deploy; tokens need admin
    assert {path for (m, path), r in ROUTE_ROLES.items() if r == Role.READ and m != "GET"} == set()
    assert ROUTE_ROLES[("PUT", "/api/v1/blobs/{digest}")] == Role.DEPLOY
    # downloading artifacts: an operator who may deploy, or a device with its manifest's grant
    assert ROUTE_ROLES[("GET", "/api/v1/blobs/{digest}")] == Role.DEPLOY
    assert set(DEVICE_ROUTES) == {("GET", "/api/v1/blobs/{digest}"), ("HEAD", "/api/v1/blobs/{digest}")}
    assert set(DEVICE_ROUTES) <= set(ROUTE_ROLES) and all(DEVICE_ROUTES.values())
    assert ROUTE_ROLES[("POST", "/api/v1/services")] == Role.DEPLOY
    assert ROUTE_ROLES[("POST", "/api/v1/devices/{device_id}/methods/{method}")] == Role.DEPLOY
    assert {r for (_m, path), r in ROUTE_ROLES.items() if path.startswith("/api/v1/tokens")} == {Role.ADMIN}
    # what stays open: health and the hub's public key
    assert {route for route in OPEN_ROUTES if route[1].startswith("/api/")} == {
        ("GET", "/api/v1/health"),
        ("GET", "/api/v1/hub"),
    }


def test_required_role_fails_closed_for_a_route_in_no_table() -> None:
    assert required_role("GET", "/api/v1/hub") is None
    assert required_role("get", "/api/v1/models") == Role.READ
    assert required_role("DELETE", "/api/v1/tokens/{token_id}") == Role.ADMIN
    with pytest.raises(UndeclaredRoute, match=r"POST /api/v1/new declares no role; add it to ROUTE_ROLES"):
        required_role("POST", "/api/v1/new")


def test_undeclared_routes_and_unguarded_protected_routes_are_named() -> None:
    served = [("GET", "/api/v1/models"), ("POST", "/api/v1/new"), ("GET", "/docs"), ("GET", "/api/v1/devices")]
    guarded = [("GET", "/api/v1/models"), ("POST", "/api/v1/new")]
    assert undeclared(served, guarded) == [
        "GET /api/v1/devices needs read but is not an API route the guard runs for",
        "POST /api/v1/new declares no role (add it to ROUTE_ROLES or OPEN_ROUTES)",
    ]
    assert undeclared([("GET", "/api/v1/models")], [("GET", "/api/v1/models")]) == []


def _record(role: Role = Role.READ, name: str = "ci-reader", **kw: object) -> tuple[TokenRecord, str]:
    issued = issue(name, role, T0)
    return issued.record.model_copy(update=kw), issued.token


def test_too_small_a_role_is_forbidden_saying_what_is_needed_and_what_the_token_has() -> None:
    token, _ = _record(Role.READ)
    authorize(token, Role.READ, "GET", "/api/v1/models")
    with pytest.raises(Forbidden) as info:
        authorize(token, Role.DEPLOY, "POST", "/api/v1/services")
    assert str(info.value).startswith(
        f"POST /api/v1/services needs the deploy role; token 'ci-reader' (id {token.id}) has read; "
    )
    assert "edgefleet token create --role deploy" in str(info.value)
    deployer, _ = _record(Role.DEPLOY, "ci")
    with pytest.raises(Forbidden, match=r"needs the admin role; token 'ci' .* has deploy"):
        authorize(deployer, Role.ADMIN, "POST", "/api/v1/tokens")


def test_a_token_is_prefixed_random_and_kept_only_as_a_hash() -> None:
    a, b = issue("x", Role.ADMIN, T0), issue("x", Role.ADMIN, T0)
    assert a.token.startswith(f"eft_{a.record.id}_") and len(a.token) == 4 + 12 + 1 + 48
    assert a.token != b.token and a.record.id != b.record.id
    assert a.record.secret_hash == hash_token(a.token) != hash_token(b.token)
    assert a.token not in a.record.model_dump_json() and a.token.split("_")[2] not in a.record.model_dump_json()
    assert token_id(a.token) == a.record.id


@pytest.mark.parametrize(
    ("header", "says"),
    [(None, "needs a token with the deploy role and none was sent; send `Authorization: Bearer <token>`"),
     ("", "none was sent"),
     ("   ", "none was sent"),
     ("Basic dXNlcjpwYXNz", "is not `Bearer <token>`"),
     ("Bearer", "is not `Bearer <token>`"),
     ("Bearer ", "is not `Bearer <token>`"),
     ("Bearer not-a-token", r"not an edgefleet token \(eft_<id>_<secret>\)"),
     ("Bearer eft_ABC_def", "not an edgefleet token"),
     ("Bearer eft_" + "a" * 12 + "_" + "b" * 47, "not an edgefleet token"),
     ("Bearer " + "x" * 5000, "is 5007 characters long"),
     ("Bearer \x00\xff", "not an edgefleet token")],
)  # fmt: skip
def test_a_header_without_a_well_formed_bearer_token_is_unauthenticated(header: str | None, says: str) -> None:
    with pytest.raises(Unauthenticated, match=says) as info:
        bearer_token(header, Role.DEPLOY)
    assert "\n" not in str(info.value)
    if header and len(header) > 20:
        assert header[7:27] not in str(info.value)  # never echoes what was sent


def test_the_bearer_scheme_is_case_insensitive_and_spaces_around_are_ignored() -> None:
    _, token = _record()
    assert bearer_token(f"bearer {token}", Role.READ) == token
    assert bearer_token(f"  Bearer   {token}  ", Role.READ) == token


def test_verify_accepts_only_the_whole_good_token() -> None:
    record, token = _record()
    assert verify(record, token, T0) == record
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    unknown = "eft_" + "0" * 12 + "_" + "1" * 48
    with pytest.raises(Unauthenticated) as wrong_secret:
        verify(record, forged, T0)
    with pytest.raises(Unauthenticated) as no_such_id:
        verify(None, unknown, T0)
    # a guesser learns nothing: an unknown id and a wrong secret read alike, and never name the token
    assert str(wrong_secret.value) == (
        f"token eft_{record.id}_... is not valid on this hub (unknown, or mistyped); check it, or ask an admin for a new one"
    )
    assert "ci-reader" not in str(wrong_secret.value) and str(no_such_id.value).endswith("ask an admin for a new one")
    revoked = record.model_copy(update={"revoked_at": T0 + timedelta(hours=1)})
    with pytest.raises(Unauthenticated, match=r"token 'ci-reader' \(id \w+\) was revoked at 2024-01-01 01:00:00 UTC"):
        verify(revoked, token, T0 + timedelta(hours=2))
    with pytest.raises(Unauthenticated, match="is not valid"):  # the state is told only to the holder
        verify(revoked, forged, T0 + timedelta(hours=2))


def test_a_token_expires_at_its_expiry() -> None:
    record, token = _record(expires_at=T0 + timedelta(days=1))
    assert token_state(record, T0) == "active"
    assert verify(record, token, T0 + timedelta(hours=23)) == record
    assert token_state(record, T0 + timedelta(days=1)) == "expired"
    with pytest.raises(Unauthenticated, match=r"expired at 2024-01-02 00:00:00 UTC; ask an admin for a new one"):
        verify(record, token, T0 + timedelta(days=1))
    assert token_state(record.model_copy(update={"revoked_at": T0}), T0 + timedelta(days=2)) == "revoked"


def test_last_used_is_written_on_first_use_then_at_most_once_a_minute() -> None:
    record, _ = _record()
    assert touch_due(record, T0)
    used = record.model_copy(update={"last_used": T0})
    assert not touch_due(used, T0 + TOUCH_EVERY - timedelta(seconds=1))
    assert touch_due(used, T0 + TOUCH_EVERY)
