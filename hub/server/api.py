"""The hub's REST API (FastAPI, OpenAPI at /docs), under /api/v1.

Every failure is JSON ``{"error": "..."}`` with a 4xx for bad input; HubError subclasses map to
status codes in one table (errors.HTTP_STATUS), so handlers just raise. Bodies are the schemas of
edgefleet.hub.schemas, which the client decodes into the same types.

Every route needs an operator token with the role access.ROUTE_ROLES names, but the few in
access.OPEN_ROUTES; guard.py applies that table to every route of the app, and the app refuses to
be built with a route in neither table. Devices download the blobs their manifests name with the
grant in those URLs (grants.py), not with a token.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgefleet import hub
from edgefleet.hub.certs import fingerprint
from edgefleet.hub.errors import Forbidden, HubError, RangeNotSatisfiable, Unauthenticated, http_status
from edgefleet.hub.schemas import (
    BlobStored,
    DeviceCreate,
    DeviceDeleted,
    DeviceRegistration,
    DeviceRevoked,
    DeviceView,
    ErrorBody,
    Health,
    HubInfo,
    KeyRegenerate,
    KeyRotationView,
    LabelsUpdate,
    MethodCall,
    ModelCreate,
    ModelView,
    ServiceCreate,
    ServiceDeployed,
    ServiceKeys,
    ServiceUpdate,
    ServiceView,
    TokenCreate,
    TokenCreated,
    TokenView,
)
from edgefleet.hub.server.artifacts import check_digest, parse_range
from edgefleet.hub.server.auth import token_view
from edgefleet.hub.server.core import Hub
from edgefleet.hub.server.guard import challenge, check_routes, document_access, request_token, token_guard
from edgefleet.hub.server.registry import model_view
from edgefleet.protocol.models import DirectMethodResponse

log = logging.getLogger(__name__)

_ERRORS = {400: {"model": ErrorBody}, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        parts.append(f"{'.'.join(loc) or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(hub_: Hub) -> FastAPI:
    registry, blobs, keys, controller = hub_.registry, hub_.blobs, hub_.keys, hub_.controller
    ca_pem = hub_.ca.cert_pem
    ca_fingerprint = fingerprint(ca_pem)
    app = FastAPI(
        dependencies=[Depends(token_guard(hub_.auth, hub_.downloads))],  # every API route: see guard.py
        title="edgefleet hub",
        version=hub.__version__,
        description="Model registry, artifact store and fleet deployments for edge devices.",
        openapi_tags=[
            {"name": "hub", "description": "hub identity: signing key and broker"},
            {"name": "blobs", "description": "content-addressed artifact store (sha256)"},
            {"name": "models", "description": "registered models and their versions"},
            {"name": "services", "description": "deployments of models to devices and their state"},
            {"name": "devices", "description": "the fleet: registered devices, their identities and reports"},
            {"name": "devices", "description": "the fleet as the devices report it"},
            {"name": "tokens", "description": "operator tokens and their roles (read, deploy, admin)"},
        ],
    )
    document_access(app)

    @app.exception_handler(HubError)
    async def _hub_error(r: Request, exc: HubError) -> JSONResponse:
        headers = None
        if isinstance(exc, RangeNotSatisfiable):
            headers = {"Content-Range": f"bytes */{exc.size}"}
        elif isinstance(exc, (Unauthenticated, Forbidden)):
            headers = {"WWW-Authenticate": challenge(exc, r)}
        return _error(http_status(exc), str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_r: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _describe_validation(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(r: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error serving %s %s", r.method, r.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {exc} (see the hub log)")

    api = APIRouter(prefix="/api/v1", responses=_ERRORS)  # type: ignore[arg-type]

    # hub ---------------------------------------------------------------------------------------
    @api.get("/health", tags=["hub"], response_model=Health, summary="Liveness; needs no token")
    def get_health() -> Health:
        return Health(version=hub.__version__)

    @api.get("/hub", tags=["hub"], response_model=HubInfo, summary="Hub identity; agents pin the key from here")
    def get_hub() -> HubInfo:
        key, nxt = keys.current, keys.next
        return HubInfo(
            version=hub.__version__,
            public_key=key.public_key_b64,
            key_id=key.key_id,
            key_fingerprint=key.fingerprint,
            broker_url=hub_.settings.broker_url,
            broker_connected=controller.connected.is_set(),
            next_key_id=nxt.key_id if nxt else None,
            next_key_fingerprint=nxt.fingerprint if nxt else None,
            ca_certificate=ca_pem,
            ca_fingerprint=ca_fingerprint,
        )

    @api.get(
        "/hub/key/rotation",
        tags=["hub"],
        response_model=KeyRotationView,
        summary="Key rotation (admin): the key announced and which devices acknowledged it",
    )
    def key_rotation() -> KeyRotationView:
        return registry.key_rotation()

    @api.post(
        "/hub/key/rotation",
        tags=["hub"],
        response_model=KeyRotationView,
        summary="Start a key rotation (admin): announce a next key in manifests signed with the current one",
    )
    def start_key_rotation() -> KeyRotationView:
        return registry.start_key_rotation()

    @api.post(
        "/hub/key/rotation/finish",
        tags=["hub"],
        response_model=KeyRotationView,
        summary="Finish a key rotation (admin): sign with the next key once every device acknowledged it",
    )
    def finish_key_rotation(force: bool = False) -> KeyRotationView:
        return registry.finish_key_rotation(force)

    # blobs -------------------------------------------------------------------------------------
    @api.put(
        "/blobs/{digest}",
        tags=["blobs"],
        status_code=201,
        response_model=BlobStored,
        summary="Upload a blob under its sha256 digest",
    )
    async def put_blob(digest: str, request: Request) -> BlobStored:
        check_digest(digest)
        if blobs.exists(digest):
            async for _ in request.stream():  # drain: the client sent it anyway
                pass
            return BlobStored(digest=digest, size=blobs.size(digest), created=False)
        size = await blobs.put_stream(digest, request.stream())
        return BlobStored(digest=digest, size=size, created=True)

    @api.head("/blobs/{digest}", tags=["blobs"], summary="Blob size and ETag", operation_id="head_blob")
    @api.get(
        "/blobs/{digest}",
        tags=["blobs"],
        summary="Download a blob (Range, ETag, If-None-Match)",
        response_class=StreamingResponse,
        responses={206: {"description": "partial content"}, 304: {"description": "not modified"}},
    )
    def get_blob(
        digest: str,
        request: Request,
        range_header: Annotated[str | None, Header(alias="Range")] = None,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Response:
        check_digest(digest)
        size = blobs.size(digest)
        etag = f'"{digest}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "public, max-age=31536000, immutable"}
        if if_none_match and (if_none_match.strip() == "*" or etag in [t.strip() for t in if_none_match.split(",")]):
            return Response(status_code=304, headers=headers)
        byte_range = parse_range(range_header, size) if range_header else None
        status = 200
        length = size
        if byte_range is not None:
            status, length = 206, byte_range.length
            headers["Content-Range"] = f"bytes {byte_range.start}-{byte_range.end}/{size}"
        headers["Content-Length"] = str(length)
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type="application/octet-stream")
        return StreamingResponse(
            blobs.read(digest, byte_range), status_code=status, headers=headers, media_type="application/octet-stream"
        )

    # models ------------------------------------------------------------------------------------
    @api.post("/models", tags=["models"], status_code=201, response_model=ModelView, summary="Register a model version")
    def create_model(req: ModelCreate) -> ModelView:
        return registry.register_model(req)

    @api.get("/models", tags=["models"], response_model=list[ModelView], summary="List models (all versions)")
    def list_models(name: str | None = None) -> list[ModelView]:
        return registry.list_models(name)

    @api.get("/models/{name}/versions/{version}", tags=["models"], response_model=ModelView)
    def get_model(name: str, version: int) -> ModelView:
        return model_view(registry.get_model(name, version))

    @api.delete("/models/{name}/versions/{version}", tags=["models"], status_code=204, response_class=Response)
    def delete_model(name: str, version: int) -> Response:
        registry.delete_model(name, version)
        return Response(status_code=204)

    # services ----------------------------------------------------------------------------------
    @api.post(
        "/services",
        tags=["services"],
        status_code=201,
        response_model=ServiceDeployed,
        summary="Deploy a service; warnings name the config fields not applied as written",
    )
    def deploy(req: ServiceCreate) -> ServiceDeployed:
        return registry.deploy(req)

    @api.patch(
        "/services/{name}",
        tags=["services"],
        response_model=ServiceDeployed,
        summary="Update a service: the parts given replace the service's, the others stay",
    )
    def update_service(name: str, req: ServiceUpdate) -> ServiceDeployed:
        return registry.update(name, req)

    @api.get("/services", tags=["services"], response_model=list[ServiceView])
    def list_services() -> list[ServiceView]:
        return registry.list_service_views()

    @api.get("/services/{name}", tags=["services"], response_model=ServiceView, summary="Service with per-device state")
    def get_service(name: str) -> ServiceView:
        return registry.service_view(registry.get_service(name))

    # scoring keys (authEnabled): secrets, so never cached on the way; both routes need the deploy role
    @api.get(
        "/services/{name}/keys",
        tags=["services"],
        response_model=ServiceKeys,
        summary="The service's scoring keys (authEnabled)",
    )
    def get_service_keys(name: str, response: Response) -> ServiceKeys:
        response.headers["Cache-Control"] = "no-store"
        return registry.service_keys(name)

    @api.post(
        "/services/{name}/keys/regenerate",
        tags=["services"],
        response_model=ServiceKeys,
        summary="Replace one scoring key and roll it out; the other keeps working meanwhile",
    )
    def regenerate_service_key(name: str, req: KeyRegenerate, response: Response) -> ServiceKeys:
        response.headers["Cache-Control"] = "no-store"
        return registry.regenerate_key(name, req.key)

    @api.delete("/services/{name}", tags=["services"], status_code=204, response_class=Response)
    def delete_service(name: str) -> Response:
        registry.delete_service(name)
        return Response(status_code=204)

    # devices -----------------------------------------------------------------------------------
    @api.get("/devices", tags=["devices"], response_model=list[DeviceView])
    def list_devices() -> list[DeviceView]:
        return registry.list_devices()

    @api.get("/devices/{device_id}", tags=["devices"], response_model=DeviceView)
    def get_device(device_id: str) -> DeviceView:
        return registry.get_device(device_id)

    @api.post(
        "/devices",
        tags=["devices"],
        status_code=201,
        response_model=DeviceRegistration,
        summary="Register a device (admin): it joins the fleet and gets an identity and a bootstrap bundle",
    )
    def register_device(req: DeviceCreate) -> DeviceRegistration:
        return registry.register_device(req)

    @api.patch(
        "/devices/{device_id}/labels",
        tags=["devices"],
        response_model=DeviceView,
        summary="Set or remove a device's labels (admin); devices never set their own",
    )
    def update_labels(device_id: str, update: LabelsUpdate) -> DeviceView:
        return registry.update_labels(device_id, update)

    @api.post(
        "/devices/{device_id}/revoke",
        tags=["devices"],
        response_model=DeviceRevoked,
        summary="Revoke a device's identity (admin): the broker refuses it, the hub ignores it",
    )
    def revoke_device(device_id: str) -> DeviceRevoked:
        return registry.revoke_device(device_id)

    @api.delete(
        "/devices/{device_id}",
        tags=["devices"],
        response_model=DeviceDeleted,
        summary="Delete a device (admin): its record, desired state and retained topics; its identity stays revoked",
    )
    def delete_device(device_id: str) -> DeviceDeleted:
        return registry.delete_device(device_id)

    @api.post(
        "/devices/{device_id}/methods/{method}",
        tags=["devices"],
        response_model=DirectMethodResponse,
        responses={504: {"model": ErrorBody}},
        summary="Call a direct method (ping, restart-module, logs) and wait for the device's answer",
    )
    def call_method(
        device_id: str, method: str, call: Annotated[MethodCall | None, Body()] = None
    ) -> DirectMethodResponse:
        registry.live_device(device_id)
        call = call or MethodCall()
        return controller.call_method(device_id, method, call.params, call.timeout_s or hub_.settings.method_timeout_s)

    # tokens ------------------------------------------------------------------------------------
    @api.get("/whoami", tags=["tokens"], response_model=TokenView, summary="The token this request was made with")
    def whoami(request: Request) -> TokenView:
        return token_view(request_token(request), hub_.auth.clock())

    @api.get("/tokens", tags=["tokens"], response_model=list[TokenView], summary="List tokens (never their secrets)")
    def list_tokens() -> list[TokenView]:
        return hub_.auth.list_tokens()

    @api.post(
        "/tokens",
        tags=["tokens"],
        status_code=201,
        response_model=TokenCreated,
        summary="Create a token; the answer holds its only copy",
    )
    def create_token(req: TokenCreate) -> TokenCreated:
        return hub_.auth.issue(req)

    @api.delete(
        "/tokens/{token_id}",
        tags=["tokens"],
        response_model=TokenView,
        summary="Revoke a token (by id, or the name of a live one); it stops working at once",
    )
    def revoke_token(token_id: str) -> TokenView:
        return hub_.auth.revoke(token_id)

    app.include_router(api)
    check_routes(app)
    return app
