"""Operator tokens, pure: their form, how the hub keeps them, and whether a presented one is good.

A token is ``eft_<id>_<secret>``. The prefix makes a leaked token recognizable (secret scanners,
a grep of a log); the id (12 hex digits) is public and names the token in lists, logs and
revocations; the secret (48 hex digits, 192 random bits) is what proves it. The hub stores only
sha256 of the whole token: with that much entropy a fast hash can neither be reversed nor guessed,
so no password hash is needed, and the comparison is constant-time. Only ``issue`` draws random
numbers; the store is reached by auth.py, never from here.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from edgefleet.hub.errors import Unauthenticated
from edgefleet.hub.schemas import Role, TokenState
from edgefleet.hub.server.store.records import TokenRecord

TOKEN_PREFIX = "eft_"
TOKEN_FORM = "eft_<id>_<secret>"
_TOKEN = re.compile(r"eft_([0-9a-f]{12})_([0-9a-f]{48})")
_MAX_HEADER = 1024  # far above a real token; longer headers are refused before any parsing
TOUCH_EVERY = timedelta(minutes=1)  # last_used is kept to the minute: one write a minute per busy token

# What to do when a request has no usable token: the ways the CLI takes one.
GET_A_TOKEN = (
    "send `Authorization: Bearer <token>` (edgefleet CLI: --token, EDGEFLEET_TOKEN or `edgefleet login`); "
    "an admin creates tokens with `edgefleet hub token create` on the hub machine or `edgefleet token create`"
)


@dataclass(frozen=True)
class IssuedToken:
    record: TokenRecord
    token: str  # the only copy there is: shown once to whoever created it, never stored


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue(name: str, role: Role, now: datetime, expires_at: datetime | None = None) -> IssuedToken:
    token_id, secret = secrets.token_hex(6), secrets.token_hex(24)
    token = f"{TOKEN_PREFIX}{token_id}_{secret}"
    record = TokenRecord(
        id=token_id, name=name, role=role, secret_hash=hash_token(token), created_at=now, expires_at=expires_at
    )
    return IssuedToken(record, token)


def bearer_token(authorization: str | None, need: Role) -> str:
    """The token in an ``Authorization`` header value; Unauthenticated saying what is wrong with it."""
    if authorization is None or not authorization.strip():
        raise Unauthenticated(f"this route needs a token with the {need.value} role and none was sent; {GET_A_TOKEN}")
    if len(authorization) > _MAX_HEADER:
        raise Unauthenticated(f"the Authorization header is {len(authorization)} characters long; {GET_A_TOKEN}")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthenticated(f"the Authorization header is not `Bearer <token>`; {GET_A_TOKEN}")
    token = value.strip()
    if not _TOKEN.fullmatch(token):
        raise Unauthenticated(
            f"the token sent is not an edgefleet token ({TOKEN_FORM}); check that it was copied whole"
        )
    return token


def token_id(token: str) -> str:
    """The public id inside a well-formed token (see ``bearer_token``)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise Unauthenticated(f"the token sent is not an edgefleet token ({TOKEN_FORM})")
    return match.group(1)


def token_state(record: TokenRecord, now: datetime) -> TokenState:
    if record.revoked_at is not None:
        return "revoked"
    if record.expires_at is not None and record.expires_at <= now:
        return "expired"
    return "active"


def verify(record: TokenRecord | None, token: str, now: datetime) -> TokenRecord:
    """The record of a token that proves itself and is still good; Unauthenticated otherwise.

    An unknown id and a wrong secret read the same, and a token's state (revoked, expired) is told
    only to someone holding the whole token, so the answers reveal nothing to a guesser.
    """
    if record is None or not hmac.compare_digest(record.secret_hash, hash_token(token)):
        raise Unauthenticated(
            f"token {TOKEN_PREFIX}{token_id(token)}_... is not valid on this hub (unknown, or mistyped); "
            "check it, or ask an admin for a new one"
        )
    state = token_state(record, now)
    if state == "revoked":
        raise Unauthenticated(
            f"token {record.name!r} (id {record.id}) was revoked at {_when(record.revoked_at)}; "
            "ask an admin for a new one"
        )
    if state == "expired":
        raise Unauthenticated(
            f"token {record.name!r} (id {record.id}) expired at {_when(record.expires_at)}; ask an admin for a new one"
        )
    return record


def touch_due(record: TokenRecord, now: datetime) -> bool:
    """Whether to write ``last_used`` now: the first use, then at most once per TOUCH_EVERY."""
    return record.last_used is None or now - record.last_used >= TOUCH_EVERY


def _when(at: datetime | None) -> str:
    return at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "?"
