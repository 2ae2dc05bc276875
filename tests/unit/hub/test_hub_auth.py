"""The token authority over a real SQLite store, with a clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edgefleet.hub.errors import Conflict, NotFound, SettingsError, Unauthenticated
from edgefleet.hub.schemas import Role, TokenCreate
from edgefleet.hub.server.auth import Authority, local_authority
from edgefleet.hub.server.store import SqliteStore

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def auth(tmp_path: Path, clock: Clock) -> Iterator[Authority]:
    store = SqliteStore(tmp_path / "hub.db")
    yield Authority(store, clock)
    store.close()


def bearer(token: str) -> str:
    return f"Bearer {token}"


def test_issue_list_and_authenticate(auth: Authority, clock: Clock) -> None:
    created = auth.issue(TokenCreate(name="ci-reader", role=Role.READ, expires_in_days=1.5))
    assert created.expires_at == T0 + timedelta(days=1.5) and created.state == "active"
    assert created.token.startswith(f"eft_{created.id}_")
    [listed] = auth.list_tokens()
    assert listed.id == created.id and listed.name == "ci-reader" and listed.last_used is None
    assert created.token not in listed.model_dump_json() and "secret" not in listed.model_dump_json().lower()

    clock.now = T0 + timedelta(minutes=5)
    assert auth.authenticate(bearer(created.token), Role.READ).id == created.id
    assert auth.list_tokens()[0].last_used == clock.now
    clock.now += timedelta(seconds=10)  # used again within the minute: not written again
    auth.authenticate(bearer(created.token), Role.READ)
    assert auth.list_tokens()[0].last_used == T0 + timedelta(minutes=5)

    clock.now = T0 + timedelta(days=2)
    with pytest.raises(Unauthenticated, match="expired at 2024-01-02 12:00:00 UTC"):
        auth.authenticate(bearer(created.token), Role.READ)
    assert auth.list_tokens()[0].state == "expired"


def test_a_revoked_token_stops_working_at_once_and_frees_its_name(auth: Authority, clock: Clock) -> None:
    first = auth.issue(TokenCreate(name="ci", role=Role.DEPLOY))
    assert auth.authenticate(bearer(first.token), Role.DEPLOY).name == "ci"
    with pytest.raises(Conflict, match=f"a token named 'ci' already exists \\(id {first.id}\\)"):
        auth.issue(TokenCreate(name="ci", role=Role.READ))
    clock.now = T0 + timedelta(seconds=1)
    revoked = auth.revoke("ci")  # by the name of a live token
    assert revoked.state == "revoked" and revoked.revoked_at == clock.now
    with pytest.raises(Unauthenticated, match=r"'ci' .* was revoked"):
        auth.authenticate(bearer(first.token), Role.READ)
    clock.now = T0 + timedelta(seconds=2)
    assert auth.revoke(first.id).revoked_at == T0 + timedelta(seconds=1)  # by id; twice changes nothing
    second = auth.issue(TokenCreate(name="ci", role=Role.READ))
    assert second.id != first.id
    assert auth.revoke("ci").id == second.id
    with pytest.raises(NotFound, match="no token has id or live name 'ci'"):
        auth.revoke("ci")
    assert [t.state for t in auth.list_tokens()] == ["revoked", "revoked"]


def test_has_admin_counts_only_live_admin_tokens(auth: Authority, clock: Clock) -> None:
    assert not auth.has_admin()
    auth.issue(TokenCreate(name="r", role=Role.READ))
    assert not auth.has_admin()
    auth.issue(TokenCreate(name="a", role=Role.ADMIN, expires_in_days=1))
    assert auth.has_admin()
    clock.now = T0 + timedelta(days=1)
    assert not auth.has_admin()


def test_local_authority_opens_the_hubs_database_and_refuses_a_missing_one(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"there is no hub database at .*nowhere/hub\.db"):
        local_authority(tmp_path / "nowhere")
    authority, url = local_authority(tmp_path / "hub", must_exist=False)
    try:
        assert url == f"sqlite:///{tmp_path / 'hub' / 'hub.db'}"
        authority.issue(TokenCreate(name="root", role=Role.ADMIN))
    finally:
        authority.store.close()
    authority, _ = local_authority(database_url=url)
    try:
        assert [t.name for t in authority.list_tokens()] == ["root"]
    finally:
        authority.store.close()
