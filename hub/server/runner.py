"""Running the hub: ``serve`` (foreground, for ``edgefleet hub serve``) and ``HubServer`` (in a thread).

``HubServer`` is what tests embed:

    with HubServer(HubSettings(data_dir=..., port=0, broker_url=...)) as server:
        httpx.get(server.url + "/api/v1/hub")

With ``tls=True`` the URL is https:// and the certificate is from the hub CA (``<data-dir>/ca/ca.pem``).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import uvicorn

from edgefleet.hub.errors import HubError
from edgefleet.hub.server.api import create_app
from edgefleet.hub.server.core import Hub
from edgefleet.hub.server.settings import HubSettings

log = logging.getLogger(__name__)


def _resolve_port(settings: HubSettings) -> HubSettings:
    """Port 0 means "any free port"; chosen here so artifact URLs name the real port."""
    if settings.port != 0:
        return settings
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((settings.host, 0))
        port = int(s.getsockname()[1])
    return settings.model_copy(update={"port": port})


def _uvicorn_config(hub: Hub) -> uvicorn.Config:
    served = hub.api_certificate
    return uvicorn.Config(
        create_app(hub),
        host=hub.settings.host,
        port=hub.settings.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        ssl_certfile=served.cert_file if served else None,
        ssl_keyfile=served.key_file if served else None,
    )


def serve(settings: HubSettings) -> None:
    """Run the hub in the foreground until SIGINT/SIGTERM."""
    hub = Hub(_resolve_port(settings))
    hub.start()
    try:
        server = uvicorn.Server(_uvicorn_config(hub))
        scheme = "https" if hub.settings.api_tls else "http"
        log.info(
            "hub API listening on %s://%s:%d/api/v1 (OpenAPI at /docs)", scheme, hub.settings.host, hub.settings.port
        )
        server.run()
        if not server.started:
            raise HubError(
                f"the hub could not listen on {hub.settings.host}:{hub.settings.port} (port in use?); "
                "choose another with --port or EDGEFLEET_HUB_PORT"
            )
    finally:
        hub.stop()


def serve_with(overrides: Mapping[str, Any]) -> None:
    """``serve`` with settings from the environment, overridden by the command line's ``overrides``."""
    serve(HubSettings(**overrides))


class HubServer:
    """The whole hub (API + controller) on a background thread of this process."""

    def __init__(self, settings: HubSettings) -> None:
        self.settings = _resolve_port(settings)
        self.hub: Hub | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.settings.local_url

    def start(self, timeout: float = 30.0) -> HubServer:
        self.hub = Hub(self.settings)
        self.hub.start()
        self._server = uvicorn.Server(_uvicorn_config(self.hub))
        self._thread = threading.Thread(target=self._server.run, name="hub-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise HubError(f"the hub API did not start on {self.url} within {timeout:g} s (port in use?)")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.hub is not None:
            self.hub.stop()
        self._server = self._thread = self.hub = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *_exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()
