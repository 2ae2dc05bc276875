"""A typed HTTP client for the hub's REST API: the CLI's only way to the hub, usable by scripts too.

Every method answers with the schema the API declares for its route (edgefleet.hub.schemas), so
callers never see raw JSON, and a failure is raised as the hub's own error class (NotFound,
Conflict, Unauthenticated, Forbidden, ...) with the server's message. The operator token goes in
every request's ``Authorization: Bearer`` header; the client never shows it (not in its repr, nor
in an error). Imports no server code.

TLS: an https:// hub's certificate is verified against ``ca_file`` (or ``ca_pem``) when given, the
hub's own CA for a hub serving ``hub serve --tls``, else against the public CAs httpx trusts; a
certificate that does not verify is a ClientError saying which CA file to give. Only
``verify=False`` skips that, for the one tokenless request of ``edgefleet hub ca --fetch``.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Literal, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from edgefleet.hub.errors import (
    ClientError,
    Conflict,
    Forbidden,
    HubError,
    InvalidRequest,
    MethodTimeout,
    NotFound,
    Unauthenticated,
)
from edgefleet.hub.schemas import (
    BlobStored,
    DeviceCreate,
    DeviceDeleted,
    DeviceRegistration,
    DeviceRevoked,
    DeviceView,
    FileEntry,
    Health,
    HubInfo,
    KeyRegenerate,
    KeyRotationView,
    LabelsUpdate,
    MethodCall,
    ModelCreate,
    ModelView,
    Role,
    ServiceCreate,
    ServiceDeployed,
    ServiceKeys,
    ServiceUpdate,
    ServiceView,
    TokenCreate,
    TokenCreated,
    TokenView,
)
from edgefleet.protocol.models import DirectMethodResponse

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")
_CHUNK = 1 << 16

# Statuses the API answers for its errors (errors.HTTP_STATUS; 422: a body the API could not
# validate). Any other failing status is a ClientError carrying the hub's message.
RAISED_FOR_STATUS: dict[int, type[HubError]] = {
    400: InvalidRequest,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidRequest,
    504: MethodTimeout,
}

_HEALTH = TypeAdapter(Health)
_HUB_INFO = TypeAdapter(HubInfo)
_BLOB = TypeAdapter(BlobStored)
_MODEL = TypeAdapter(ModelView)
_MODELS = TypeAdapter(list[ModelView])
_SERVICE = TypeAdapter(ServiceView)
_DEPLOYED = TypeAdapter(ServiceDeployed)
_SERVICES = TypeAdapter(list[ServiceView])
_KEYS = TypeAdapter(ServiceKeys)
_DEVICE = TypeAdapter(DeviceView)
_DEVICES = TypeAdapter(list[DeviceView])
_METHOD = TypeAdapter(DirectMethodResponse)
_REGISTRATION = TypeAdapter(DeviceRegistration)
_REVOKED = TypeAdapter(DeviceRevoked)
_DELETED = TypeAdapter(DeviceDeleted)
_ROTATION = TypeAdapter(KeyRotationView)
_TOKEN = TypeAdapter(TokenView)
_TOKENS = TypeAdapter(list[TokenView])
_TOKEN_CREATED = TypeAdapter(TokenCreated)


def trust(ca_file: str | Path | None = None, ca_pem: str | None = None) -> ssl.SSLContext:
    """A TLS context that trusts only the CA in ``ca_file`` (or the PEM ``ca_pem``); ClientError if unusable."""
    try:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None, cadata=ca_pem)
    except FileNotFoundError:
        raise ClientError(
            f"CA file {ca_file} does not exist; `edgefleet hub ca --out {ca_file}` on the hub machine writes it"
        ) from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ClientError(f"CA file {ca_file or '(PEM)'}: not a PEM CA certificate ({exc})") from None


class HubClient:
    """``token``: an operator token; without one only the open routes (health, hub info, blob downloads) answer.

    ``ca_file`` / ``ca_pem``: the CA an https:// hub's certificate must chain to (default: the public CAs)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        ca_file: str | Path | None = None,
        ca_pem: str | None = None,
        verify: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ca_file = Path(ca_file) if ca_file else None
        if not verify and token:
            raise ValueError("a client that does not verify the hub's certificate must not send a token")
        tls: ssl.SSLContext | bool = trust(ca_file, ca_pem) if (ca_file or ca_pem) else verify
        headers = {"Authorization": f"Bearer {token}"} if token else None
        # redirects are not followed (httpx's default), so the token only ever goes to base_url
        self._http = httpx.Client(
            base_url=self.base_url + "/api/v1", timeout=timeout, transport=transport, headers=headers, verify=tls
        )

    def __repr__(self) -> str:
        return f"HubClient({self.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # hub / blobs -------------------------------------------------------------------------------
    def health(self) -> Health:
        return self._call(_HEALTH, "GET", "/health")

    def hub_info(self) -> HubInfo:
        return self._call(_HUB_INFO, "GET", "/hub")

    def key_rotation(self) -> KeyRotationView:
        return self._call(_ROTATION, "GET", "/hub/key/rotation")

    def start_key_rotation(self) -> KeyRotationView:
        return self._call(_ROTATION, "POST", "/hub/key/rotation")

    def finish_key_rotation(self, force: bool = False) -> KeyRotationView:
        return self._call(_ROTATION, "POST", "/hub/key/rotation/finish", params={"force": "true"} if force else None)

    def blob_exists(self, digest: str) -> bool:
        try:
            response = self._http.head(f"/blobs/{digest}")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def upload_blob(self, path: Path, digest: str, progress: ProgressFn | None = None) -> BlobStored:
        total = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sent += len(chunk)
                    if progress:
                        progress(sent, total)
                    yield chunk

        return self._call(
            _BLOB,
            "PUT",
            f"/blobs/{digest}",
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
        )

    def download_blob(self, digest: str, out: BinaryIO, progress: ProgressFn | None = None) -> int:
        """Write the blob's bytes to ``out``, hashing them on the way; the byte count. A ClientError
        when they do not hash to ``digest`` (the caller then discards what was written)."""
        path = f"/blobs/{digest}"
        h, written = hashlib.sha256(), 0
        with self._reaching("GET", path), self._http.stream("GET", path) as response:
            if response.status_code >= 400:
                response.read()
                raise RAISED_FOR_STATUS.get(response.status_code, ClientError)(_error_text(response))
            total = int(response.headers.get("Content-Length") or 0)
            for chunk in response.iter_bytes(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                written += len(chunk)
                if progress:
                    progress(written, total)
        actual = "sha256:" + h.hexdigest()
        if actual != digest:
            raise ClientError(
                f"blob {digest}: the hub at {self.base_url} sent {written} bytes whose digest is {actual}; discarded"
            )
        return written

    # models ------------------------------------------------------------------------------------
    def create_model(
        self, name: str, files: Sequence[FileEntry], tags: dict[str, str] | None = None, description: str = ""
    ) -> ModelView:
        body = _unchecked(ModelCreate, name=name, files=list(files), tags=tags or {}, description=description)
        return self._call(_MODEL, "POST", "/models", json=body)

    def list_models(self, name: str | None = None) -> list[ModelView]:
        return self._call(_MODELS, "GET", "/models", params={"name": name} if name else None)

    def get_model(self, name: str, version: int) -> ModelView:
        return self._call(_MODEL, "GET", f"/models/{name}/versions/{version}")

    def delete_model(self, name: str, version: int) -> None:
        self._request("DELETE", f"/models/{name}/versions/{version}")

    # services ----------------------------------------------------------------------------------
    def deploy(
        self,
        name: str,
        models: Sequence[str],
        inference_config: dict[str, Any] | None = None,
        deployment_config: dict[str, Any] | None = None,
        source_files: Sequence[FileEntry] = (),
        overwrite: bool = False,
    ) -> ServiceDeployed:
        """The service, with a warning per config field the hub did not apply as written."""
        body = _unchecked(
            ServiceCreate,
            name=name,
            models=list(models),
            inference_config=inference_config,
            deployment_config=deployment_config,
            source_files=list(source_files),
            overwrite=overwrite,
        )
        return self._call(_DEPLOYED, "POST", "/services", json=body)

    def update_service(
        self,
        name: str,
        models: Sequence[str] | None = None,
        inference_config: dict[str, Any] | None = None,
        deployment_config: dict[str, Any] | None = None,
        source_files: Sequence[FileEntry] | None = None,
    ) -> ServiceDeployed:
        """Replace the parts given (None: keep the service's); answers like ``deploy``."""
        body = _unchecked(
            ServiceUpdate,
            models=list(models) if models is not None else None,
            inference_config=inference_config,
            deployment_config=deployment_config,
            source_files=list(source_files) if source_files is not None else None,
        )
        return self._call(_DEPLOYED, "PATCH", f"/services/{name}", json=body)

    def list_services(self) -> list[ServiceView]:
        return self._call(_SERVICES, "GET", "/services")

    def get_service(self, name: str) -> ServiceView:
        return self._call(_SERVICE, "GET", f"/services/{name}")

    def delete_service(self, name: str) -> None:
        self._request("DELETE", f"/services/{name}")

    def service_keys(self, name: str) -> ServiceKeys:
        return self._call(_KEYS, "GET", f"/services/{name}/keys")

    def regenerate_key(self, name: str, key: Literal["primary", "secondary"]) -> ServiceKeys:
        body = _unchecked(KeyRegenerate, key=key)
        return self._call(_KEYS, "POST", f"/services/{name}/keys/regenerate", json=body)

    # devices -----------------------------------------------------------------------------------
    def list_devices(self) -> list[DeviceView]:
        return self._call(_DEVICES, "GET", "/devices")

    def get_device(self, device_id: str) -> DeviceView:
        return self._call(_DEVICE, "GET", f"/devices/{device_id}")

    def register_device(
        self, device_id: str, labels: dict[str, str], auth: str = "certificate", csr: str | None = None
    ) -> DeviceRegistration:
        """The answer holds the bundle (a password, for auth "password"): write it to a 0600 file, never log it."""
        body = _unchecked(DeviceCreate, device_id=device_id, labels=labels, auth=auth, csr=csr)
        return self._call(_REGISTRATION, "POST", "/devices", json=body)

    def update_labels(self, device_id: str, set_: dict[str, str], remove: Sequence[str] = ()) -> DeviceView:
        body = _unchecked(LabelsUpdate, set=set_, remove=list(remove))
        return self._call(_DEVICE, "PATCH", f"/devices/{device_id}/labels", json=body)

    def revoke_device(self, device_id: str) -> DeviceRevoked:
        return self._call(_REVOKED, "POST", f"/devices/{device_id}/revoke")

    def delete_device(self, device_id: str) -> DeviceDeleted:
        return self._call(_DELETED, "DELETE", f"/devices/{device_id}")

    def call_method(self, device_id: str, method: str, params: dict[str, Any], timeout: float) -> DirectMethodResponse:
        """The device's answer, whatever its status: a device's failure is not the hub's."""
        body = _unchecked(MethodCall, params=params, timeout_s=timeout)
        return self._call(_METHOD, "POST", f"/devices/{device_id}/methods/{method}", json=body, timeout=timeout + 10)

    # tokens ------------------------------------------------------------------------------------
    def whoami(self) -> TokenView:
        """The token this client sends, as the hub sees it (any role)."""
        return self._call(_TOKEN, "GET", "/whoami")

    def list_tokens(self) -> list[TokenView]:
        return self._call(_TOKENS, "GET", "/tokens")

    def create_token(self, name: str, role: Role | str, expires_in_days: float | None = None) -> TokenCreated:
        """A new token; the answer holds its only copy."""
        body = _unchecked(TokenCreate, name=name, role=role, expires_in_days=expires_in_days)
        return self._call(_TOKEN_CREATED, "POST", "/tokens", json=body)

    def revoke_token(self, ref: str) -> TokenView:
        """Revoke by id, or by the name of a live token."""
        return self._call(_TOKEN, "DELETE", f"/tokens/{ref}")

    # transport ---------------------------------------------------------------------------------
    @contextmanager
    def _reaching(self, method: str, path: str) -> Iterator[None]:
        """Transport failures as one-line ClientErrors saying what to do."""
        try:
            yield
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise ClientError(connect_failure(self.base_url, exc, self.ca_file)) from None
        except httpx.TimeoutException:
            raise ClientError(f"the hub at {self.base_url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {self.base_url}/api/v1{path} failed: {exc}") from None

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self._reaching(method, path):
            response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise RAISED_FOR_STATUS.get(response.status_code, ClientError)(_error_text(response))
        return response

    def _call(self, answer: TypeAdapter[T], method: str, path: str, **kwargs: Any) -> T:
        response = self._request(method, path, **kwargs)
        try:
            return answer.validate_json(response.content)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise ClientError(
                f"the hub at {self.base_url} answered {method} {path} with a body this client does not read "
                f"({where}: {first['msg']}); are the hub and the CLI the same edgefleet version?"
            ) from None


def _unchecked(
    schema: type[
        ModelCreate
        | ServiceCreate
        | ServiceUpdate
        | MethodCall
        | TokenCreate
        | KeyRegenerate
        | DeviceCreate
        | LabelsUpdate
    ],
    **fields: Any,
) -> dict[str, Any]:
    """The request body in the API's JSON names. Not validated here: the hub judges requests and
    words the errors, so a bad name gets the same message from the CLI as from any other client."""
    # warnings=False: an unvalidated value (a role given as text) is sent as it is, for the hub to judge
    return schema.model_construct(**fields).model_dump(mode="json", by_alias=True, warnings=False)


_HOST_MISMATCH = (62, 64)  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error beneath an httpx error, if there is one (httpx and httpcore chain them)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def connect_failure(base_url: str, exc: BaseException, ca_file: Path | None = None) -> str:
    """One line for a connection that failed: unreachable, a certificate that does not verify (and
    which CA to give), TLS spoken to a plain port or plain HTTP to a TLS one."""
    parts = urlsplit(base_url)
    tls_error = _ssl_error(exc)
    if isinstance(tls_error, ssl.SSLCertVerificationError):
        reason = tls_error.verify_message or tls_error.reason or str(tls_error)
        if tls_error.verify_code in _HOST_MISMATCH:
            return (
                f"the hub at {base_url} presented a certificate that is not valid for {parts.hostname} ({reason}); "
                f"use a name it was issued for, or have the hub add this one (`edgefleet hub serve --tls --server-name "
                f"{parts.hostname}`)"
            )
        trusted = f"the CA in {ca_file}" if ca_file else "the public CAs this CLI trusts"
        return (
            f"the hub at {base_url} presented a certificate that {trusted} did not issue ({reason}); for a hub with "
            "its own CA (`hub serve --tls`), write that CA with `edgefleet hub ca --out hub-ca.pem` on the hub "
            "machine and give --ca-file hub-ca.pem (or EDGEFLEET_CA_FILE, or `edgefleet login --ca-file hub-ca.pem`)"
        )
    if tls_error is not None:
        return (
            f"TLS with the hub at {base_url} failed ({tls_error.reason or tls_error}); if the hub serves plain HTTP, "
            f"use http://{parts.netloc}"
        )
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach the hub at {base_url}; is `edgefleet hub serve` running? (set --hub or EDGEFLEET_HUB)"
    if parts.scheme == "http":
        return (
            f"the hub at {base_url} closed the connection without an answer; if it serves HTTPS (`hub serve --tls`), "
            f"use https://{parts.netloc}"
        )
    return f"the hub at {base_url} closed the connection without an answer ({exc})"


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return message or f"hub answered {response.status_code}: {response.text[:200]}"
