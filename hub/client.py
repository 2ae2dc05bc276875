"""A small HTTP client for the hub's REST API (used by the CLI; usable by the demo and scripts)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from edgefleet.hub.errors import ClientError

ProgressFn = Callable[[int, int], None]
_CHUNK = 1 << 16


class HubClient:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url + "/api/v1", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise ClientError(
                f"cannot reach the hub at {self.base_url}; is `edgefleet hub serve` running? "
                "(set --hub or EDGEFLEET_HUB)"
            ) from None
        except httpx.TimeoutException:
            raise ClientError(f"the hub at {self.base_url} did not answer {method} {path} in time") from None
        except httpx.HTTPError as exc:
            raise ClientError(f"{method} {self.base_url}/api/v1{path} failed: {exc}") from None
        if response.status_code >= 400:
            raise ClientError(_error_text(response))
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        return response.json() if response.content else None

    # hub / blobs -------------------------------------------------------------------------------
    def hub_info(self) -> dict[str, Any]:
        return dict(self.json("GET", "/hub"))

    def blob_exists(self, digest: str) -> bool:
        try:
            response = self._http.head(f"/blobs/{digest}")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def upload_blob(self, path: Path, digest: str, progress: ProgressFn | None = None) -> None:
        total = path.stat().st_size

        def chunks() -> Iterator[bytes]:
            sent = 0
            with open(path, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sent += len(chunk)
                    if progress:
                        progress(sent, total)
                    yield chunk

        self.request(
            "PUT",
            f"/blobs/{digest}",
            content=chunks(),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(total)},
        )

    # models ------------------------------------------------------------------------------------
    def create_model(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("POST", "/models", json=body))

    def list_models(self, name: str | None = None) -> list[dict[str, Any]]:
        return list(self.json("GET", "/models", params={"name": name} if name else None))

    def get_model(self, name: str, version: int) -> dict[str, Any]:
        return dict(self.json("GET", f"/models/{name}/versions/{version}"))

    def delete_model(self, name: str, version: int) -> None:
        self.request("DELETE", f"/models/{name}/versions/{version}")

    # services ----------------------------------------------------------------------------------
    def deploy(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.json("POST", "/services", json=body))

    def list_services(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/services"))

    def get_service(self, name: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/services/{name}"))

    def delete_service(self, name: str) -> None:
        self.request("DELETE", f"/services/{name}")

    # devices -----------------------------------------------------------------------------------
    def list_devices(self) -> list[dict[str, Any]]:
        return list(self.json("GET", "/devices"))

    def get_device(self, device_id: str) -> dict[str, Any]:
        return dict(self.json("GET", f"/devices/{device_id}"))

    def call_method(self, device_id: str, method: str, params: dict[str, Any], timeout: float) -> dict[str, Any]:
        return dict(
            self.json(
                "POST",
                f"/devices/{device_id}/methods/{method}",
                json={"params": params, "timeoutS": timeout},
                timeout=timeout + 10,
            )
        )


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body.get("error") if isinstance(body, dict) else None
    except ValueError:
        message = None
    return message or f"hub answered {response.status_code}: {response.text[:200]}"
