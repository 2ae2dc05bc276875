"""Who may call what, pure: the role each route of the API needs, and the open routes that need none.

Every route the app serves is in exactly one of the two tables (OPEN_ROUTES, ROUTE_ROLES); a few
protected ones also take a device's download grant instead of a token (DEVICE_ROUTES). The app is not built otherwise
(``undeclared``), the guard refuses a route in neither at request time too, and a test walks the
app's routes. So a route added without a decision fails closed. Routes are ``(HTTP method, path
template)`` as FastAPI declares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgefleet.hub.errors import Forbidden
from edgefleet.hub.schemas import Role
from edgefleet.hub.server.store.records import TokenRecord

Route = tuple[str, str]

_BLOB = "/api/v1/blobs/{digest}"
_API_DOCS = "the API's own description (OpenAPI, Swagger UI, ReDoc): no fleet data"

# Routes anyone who reaches the hub may call, and why.
OPEN_ROUTES: Mapping[Route, str] = {
    ("GET", "/api/v1/health"): "liveness probes",
    ("GET", "/api/v1/hub"): "public: the manifest-signing key, its fingerprint (agents may pin it on first use "
    "against one given to them), the broker URL and the hub CA's certificate",
    ("GET", "/openapi.json"): _API_DOCS,
    ("HEAD", "/openapi.json"): _API_DOCS,
    ("GET", "/docs"): _API_DOCS,
    ("HEAD", "/docs"): _API_DOCS,
    ("GET", "/docs/oauth2-redirect"): _API_DOCS,
    ("HEAD", "/docs/oauth2-redirect"): _API_DOCS,
    ("GET", "/redoc"): _API_DOCS,
    ("HEAD", "/redoc"): _API_DOCS,
}

# The least role each protected route needs (a role includes the ones below it: admin ⊇ deploy ⊇ read).
ROUTE_ROLES: Mapping[Route, Role] = {
    # read: look at the fleet
    ("GET", "/api/v1/whoami"): Role.READ,
    ("GET", "/api/v1/models"): Role.READ,
    ("GET", "/api/v1/models/{name}/versions/{version}"): Role.READ,
    ("GET", "/api/v1/services"): Role.READ,
    ("GET", "/api/v1/services/{name}"): Role.READ,
    ("GET", "/api/v1/devices"): Role.READ,
    ("GET", "/api/v1/devices/{device_id}"): Role.READ,
    # deploy: change what runs on devices (an uploaded score.py runs there)
    ("PUT", _BLOB): Role.DEPLOY,
    ("GET", _BLOB): Role.DEPLOY,  # what was uploaded to run on devices (score.py, models): not for read tokens
    ("HEAD", _BLOB): Role.DEPLOY,
    ("POST", "/api/v1/models"): Role.DEPLOY,
    ("DELETE", "/api/v1/models/{name}/versions/{version}"): Role.DEPLOY,
    ("POST", "/api/v1/services"): Role.DEPLOY,
    ("PATCH", "/api/v1/services/{name}"): Role.DEPLOY,
    ("DELETE", "/api/v1/services/{name}"): Role.DEPLOY,
    ("POST", "/api/v1/devices/{device_id}/methods/{method}"): Role.DEPLOY,
    # scoring endpoint keys: whoever may deploy a service may call it (deploy, not read)
    ("GET", "/api/v1/services/{name}/keys"): Role.DEPLOY,
    ("POST", "/api/v1/services/{name}/keys/regenerate"): Role.DEPLOY,
    # admin: who may do any of it, who is in the fleet (device identities) and what devices trust (the hub key)
    ("POST", "/api/v1/devices"): Role.ADMIN,
    ("PATCH", "/api/v1/devices/{device_id}/labels"): Role.ADMIN,
    ("POST", "/api/v1/devices/{device_id}/revoke"): Role.ADMIN,
    ("DELETE", "/api/v1/devices/{device_id}"): Role.ADMIN,
    ("GET", "/api/v1/hub/key/rotation"): Role.ADMIN,
    ("POST", "/api/v1/hub/key/rotation"): Role.ADMIN,
    ("POST", "/api/v1/hub/key/rotation/finish"): Role.ADMIN,
    ("GET", "/api/v1/tokens"): Role.ADMIN,
    ("POST", "/api/v1/tokens"): Role.ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): Role.ADMIN,
}

_OWN_ARTIFACTS = (
    "a device downloads the artifacts its current manifest names, with the grant in their URLs "
    "(grants.py), instead of an operator token"
)
# Protected routes a device may also call, with the download grant its manifest gave it, and why.
DEVICE_ROUTES: Mapping[Route, str] = {
    ("GET", _BLOB): _OWN_ARTIFACTS,
    ("HEAD", _BLOB): _OWN_ARTIFACTS,
}


class UndeclaredRoute(LookupError):
    """A route in neither table: a programming error, answered 500 rather than served."""


def required_role(method: str, path: str) -> Role | None:
    """The role ``method path`` needs, None for an open route; UndeclaredRoute for a route in no table."""
    route = (method.upper(), path)
    if route in OPEN_ROUTES:
        return None
    try:
        return ROUTE_ROLES[route]
    except KeyError:
        raise UndeclaredRoute(
            f"{method} {path} declares no role; add it to ROUTE_ROLES or OPEN_ROUTES in edgefleet/hub/server/access.py"
        ) from None


def undeclared(served: Iterable[Route], guarded: Iterable[Route]) -> list[str]:
    """What is wrong with the routes an app serves (``guarded``: the ones the guard runs for), in words.

    A route must be in one of the tables, and a protected one must be guarded: a plain route (the
    API docs) never passes through the guard, so it may only be an open one.
    """
    guarded = set(guarded)
    problems = []
    for method, path in sorted(set(served)):
        route = (method, path)
        if route not in OPEN_ROUTES and route not in ROUTE_ROLES:
            problems.append(f"{method} {path} declares no role (add it to ROUTE_ROLES or OPEN_ROUTES)")
        elif route in ROUTE_ROLES and route not in guarded:
            problems.append(
                f"{method} {path} needs {ROUTE_ROLES[route].value} but is not an API route the guard runs for"
            )
    return problems


def authorize(token: TokenRecord, need: Role, method: str, path: str) -> None:
    """Forbidden unless the token's role includes ``need``."""
    if not token.role.includes(need):
        raise Forbidden(
            f"{method} {path} needs the {need.value} role; token {token.name!r} (id {token.id}) has "
            f"{token.role.value}; use a token with the {need.value} role (an admin creates one with "
            f"`edgefleet token create --role {need.value} --name NAME`)"
        )
