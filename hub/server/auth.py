"""Who is calling, over the store: operator tokens (issue, list, revoke, authenticate a request), and
devices downloading their artifacts with the grants in their manifests' URLs.

The decisions are pure (tokens.py: is this token good; access.py: may its role call this route);
this module adds the store and the clock. It is used by the API and, on the hub machine, by
``edgefleet hub token ...`` directly against the hub's database: local file access is the admin's
trust anchor, so the first admin token needs no token. Tokens never reach a log line here, only
their ids and names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from edgefleet.hub.errors import Forbidden, NotFound, SettingsError, Unauthenticated
from edgefleet.hub.schemas import Role, TokenCreate, TokenCreated, TokenView
from edgefleet.hub.server import tokens
from edgefleet.hub.server.grants import BlobGrants, desired_digests
from edgefleet.hub.server.settings import HubSettings
from edgefleet.hub.server.store import Store, TokenRecord, open_store
from edgefleet.hub.server.tokens import token_state
from edgefleet.protocol.models import utcnow

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def token_view(record: TokenRecord, now: datetime) -> TokenView:
    """What may be shown of a token: everything but its hash."""
    return TokenView(
        id=record.id,
        name=record.name,
        role=record.role,
        state=token_state(record, now),
        created_at=record.created_at,
        expires_at=record.expires_at,
        last_used=record.last_used,
        revoked_at=record.revoked_at,
    )


class Authority:
    def __init__(self, store: Store, clock: Clock = utcnow) -> None:
        self.store = store
        self.clock = clock

    def issue(self, req: TokenCreate, expires_at: datetime | None = None) -> TokenCreated:
        """A new token; the answer holds the only copy of it. ``expires_at`` overrides ``req``'s days."""
        now = self.clock()
        if expires_at is None and req.expires_in_days is not None:
            expires_at = now + timedelta(days=req.expires_in_days)
        issued = tokens.issue(req.name, req.role, now, expires_at)
        self.store.create_token(issued.record)
        log.info("issued %s token %r (id %s)", req.role.value, req.name, issued.record.id)
        return TokenCreated(**token_view(issued.record, now).model_dump(), token=issued.token)

    def list_tokens(self) -> list[TokenView]:
        now = self.clock()
        return [token_view(r, now) for r in self.store.list_tokens()]

    def find(self, ref: str) -> TokenRecord:
        """A token by its id, or by the name of a live (unrevoked) token."""
        record = self.store.get_token(ref)
        if record is None:
            record = next((t for t in self.store.list_tokens() if t.name == ref and t.revoked_at is None), None)
        if record is None:
            raise NotFound(f"no token has id or live name {ref!r} (see `edgefleet token list`)")
        return record

    def revoke(self, ref: str) -> TokenView:
        """Revoke by id or name; it stops working with the next request. Revoking twice changes nothing."""
        record = self.find(ref)
        revoked = self.store.revoke_token(record.id, self.clock()) or record
        if record.revoked_at is None:
            log.info("revoked token %r (id %s)", record.name, record.id)
        return token_view(revoked, self.clock())

    def has_admin(self) -> bool:
        now = self.clock()
        return any(t.role == Role.ADMIN and token_state(t, now) == "active" for t in self.store.list_tokens())

    def authenticate(self, authorization: str | None, need: Role) -> TokenRecord:
        """The record of the request's token (header value as sent); Unauthenticated saying why not.

        Looked up on every request, so a revocation takes effect at once.
        """
        token = tokens.bearer_token(authorization, need)
        now = self.clock()
        record = tokens.verify(self.store.get_token(tokens.token_id(token)), token, now)
        if tokens.touch_due(record, now):
            self.store.touch_token(record.id, now)
        return record


class DeviceDownloads:
    """A device's artifact download: its grant, its registration and its desired state, checked per request.

    Looked up every time, so revoking or deleting a device, or deploying something else to it,
    takes its URLs away at once.
    """

    def __init__(self, store: Store, grants: BlobGrants) -> None:
        self.store = store
        self.grants = grants

    def authorize(self, device_id: str | None, digest: str, grant: str) -> str:
        """The device id; Unauthenticated when the grant is not this hub's, Forbidden when it no longer holds."""
        if not device_id or not self.grants.valid(device_id, digest, grant):
            raise Unauthenticated(
                f"blob {digest}: the download grant for device {device_id!r} is not one this hub issued "
                "(use the URL from the device's current manifest, unchanged)"
            )
        device = self.store.get_device(device_id)
        if device is None or device.status != "registered":
            raise Forbidden(f"blob {digest}: device {device_id} is {'revoked' if device else 'not registered'}")
        desired = self.store.get_desired(device_id)
        if desired is None or digest not in desired_digests(desired.modules):
            raise Forbidden(
                f"blob {digest} is not in the desired state of device {device_id} (any more); "
                "a device may download only what its current manifest names"
            )
        return device_id


def local_authority(
    data_dir: Path | None = None, database_url: str | None = None, must_exist: bool = True
) -> tuple[Authority, str]:
    """The Authority over the hub's own database on this machine (as ``hub serve`` opens it), and its URL.

    Settings come from the environment (EDGEFLEET_HUB_*) like the hub's, overridden by the arguments.
    ``must_exist``: refuse to start an empty database (a mistyped --data-dir) instead of reading one.
    """
    overrides = {k: v for k, v in {"data_dir": data_dir, "database_url": database_url}.items() if v is not None}
    settings = HubSettings(**overrides)  # type: ignore[arg-type]
    url = settings.db_url
    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if must_exist and path not in (None, ":memory:") and not Path(str(path)).exists():
        raise SettingsError(
            f"there is no hub database at {path}; give the --data-dir or --database-url the hub runs with"
        )
    return Authority(open_store(url)), url
