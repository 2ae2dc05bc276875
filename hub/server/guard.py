"""The HTTP side of access control: access.py's table applied to every route of the FastAPI app.

``token_guard`` is an app-wide dependency, so it runs for every API route, including ones added
later, after FastAPI has chosen the route (its path template is what the table is keyed by) and
before the handler. On the routes access.DEVICE_ROUTES names, a request with a ``grant`` query
parameter is a device downloading its own artifacts (auth.DeviceDownloads), not an operator. A streamed upload (PUT of a blob) is refused before a byte of it is read; a
JSON body is parsed by FastAPI before any dependency runs, so a body that is not JSON at all is a
422 whatever the token. ``check_routes`` refuses to build an app with an undeclared route.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from edgefleet.hub.errors import Forbidden, HubError, Unauthenticated
from edgefleet.hub.server.access import (
    DEVICE_ROUTES,
    ROUTE_ROLES,
    Route,
    UndeclaredRoute,
    authorize,
    required_role,
    undeclared,
)
from edgefleet.hub.server.auth import Authority, DeviceDownloads
from edgefleet.hub.server.grants import DEVICE_PARAM, GRANT_PARAM
from edgefleet.hub.server.store import TokenRecord

log = logging.getLogger(__name__)

SCHEME = "operatorToken"  # the security scheme's name in OpenAPI


def token_guard(authority: Authority, downloads: DeviceDownloads) -> Callable[[Request], None]:
    def guard(request: Request) -> None:  # sync: FastAPI runs it in its thread pool, the store is blocking I/O
        method = request.method
        path = getattr(request.scope.get("route"), "path", None)
        if not isinstance(path, str):
            raise UndeclaredRoute(f"{method} {request.url.path}: the guard cannot tell which route this is")
        need = required_role(method, path)
        if need is None:
            return
        grant = request.query_params.get(GRANT_PARAM)
        try:
            if grant is not None and (method, path) in DEVICE_ROUTES:
                device = request.query_params.get(DEVICE_PARAM)
                request.state.device = downloads.authorize(device, str(request.path_params.get("digest")), grant)
                return
            token = authority.authenticate(request.headers.get("authorization"), need)
            authorize(token, need, method, path)
        except (Unauthenticated, Forbidden) as exc:
            log.info("refused %s %s: %s", method, path, exc)  # messages name a token by id and name only
            raise
        request.state.token = token
        if method not in ("GET", "HEAD"):  # the audit trail: which token changed what (never the token itself)
            log.info("%s %s by token %r (id %s, %s)", method, request.url.path, token.name, token.id, token.role.value)

    return guard


def request_token(request: Request) -> TokenRecord:
    """The token the guard accepted for this request (protected routes only)."""
    token = getattr(request.state, "token", None)
    if not isinstance(token, TokenRecord):
        raise RuntimeError(f"{request.method} {request.url.path} ran without an authenticated token")
    return token


def challenge(exc: HubError, request: Request) -> str:
    """The ``WWW-Authenticate`` value of a refusal (RFC 6750)."""
    if isinstance(exc, Forbidden):
        return 'Bearer realm="edgefleet", error="insufficient_scope"'
    return 'Bearer realm="edgefleet"' + (', error="invalid_token"' if request.headers.get("authorization") else "")


def _served(routes: list[BaseRoute]) -> Iterator[tuple[Route, bool]]:
    for route in routes:
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        router = getattr(route, "original_router", None)
        if isinstance(path, str) and methods:
            for method in methods:
                yield (method, path), isinstance(route, APIRoute)
        elif isinstance(router, APIRouter) and not getattr(getattr(route, "include_context", None), "prefix", ""):
            yield from _served(router.routes)  # FastAPI >= 0.16x keeps an included router whole
        else:
            raise HubError(f"cannot tell which routes {route!r} serves; the access check needs each path and method")


def served_routes(app: FastAPI) -> dict[Route, bool]:
    """Every (method, path) the app serves, and whether the guard runs for it (it does for API routes)."""
    return dict(_served(app.router.routes))


def check_routes(app: FastAPI) -> None:
    """HubError unless every route the app serves is declared, and every protected one is guarded."""
    served = served_routes(app)
    problems = undeclared(served, [route for route, guarded in served.items() if guarded])
    if problems:
        raise HubError("the hub's API is not fully access-controlled: " + "; ".join(problems))


def document_access(app: FastAPI) -> None:
    """OpenAPI names the bearer scheme, and each protected operation its role and its 401/403."""
    generate = app.openapi
    done: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if done:
            return done
        spec = generate()
        spec.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "an operator token (eft_<id>_<secret>) whose role includes the one the operation names",
        }
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
        for (method, path), role in ROUTE_ROLES.items():
            operation = spec.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:
                continue
            operation["security"] = [{SCHEME: []}]
            note = f"Needs a token with the **{role.value}** role (or above)."
            if (method, path) in DEVICE_ROUTES:
                note += (
                    f" A device calls it instead with the `{DEVICE_PARAM}` and `{GRANT_PARAM}` query parameters"
                    " of the URL its manifest gives (its own current artifacts only)."
                )
            operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
            operation["responses"].setdefault("401", {"description": "no token, or a bad one", **error})
            operation["responses"].setdefault(
                "403", {"description": f"the token's role is below {role.value}", **error}
            )
        done.update(spec)
        return done

    app.openapi = openapi  # type: ignore[method-assign]
