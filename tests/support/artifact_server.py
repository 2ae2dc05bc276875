"""The artifact HTTP server of the agent tests: serves files with single-range ``Range``; it can be
slowed down, and stopped and started again on the same port.

Crash and offline tests need downloads that take a moment (so an agent can be killed in the middle
of one) and a hub that goes away and comes back at the same address. Single-range ``Range`` is
supported, as the hub's artifact store does, so interrupted downloads resume.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from edgefleet.protocol import ArtifactRef, sha256_bytes
from tests.support.processes import free_port

_CHUNK = 1 << 15


class ArtifactServer:
    """Serves files from ``root``; ``rate_bps`` (bytes/s, None: unthrottled) paces every response body."""

    def __init__(self, root: Path, rate_bps: float | None = None, port: int | None = None) -> None:
        self.root = root
        self.rate_bps = rate_bps
        self.port = port or free_port()
        self.requests: list[tuple[str, str | None]] = []
        root.mkdir(parents=True, exist_ok=True)
        self._server: ThreadingHTTPServer | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> ArtifactServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                outer.requests.append((self.path, rng))
                path = outer.root / urlsplit(self.path).path.lstrip("/")  # a query (a grant) is not the file
                if not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and int(m.group(1)) >= len(data):
                    self.send_error(416)
                    return
                if m:
                    start = int(m.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                    data = data[start:]
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    for i in range(0, len(data), _CHUNK):
                        self.wfile.write(data[i : i + _CHUNK])
                        if outer.rate_bps:
                            time.sleep(_CHUNK / outer.rate_bps)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client went away (an agent killed mid-download)

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        """The hub goes away: the port refuses connections until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> ArtifactServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, name: str, data: bytes, path: str | None = None, *, serve: bytes | None = None) -> ArtifactRef:
        """Publish ``serve`` (default ``data``) under ``name``; the ref names ``data``'s digest and size."""
        (self.root / name).write_bytes(data if serve is None else serve)
        return ArtifactRef(
            path=path or f"model/{name}",
            digest=sha256_bytes(data),
            size=len(data),
            url=f"http://127.0.0.1:{self.port}/{name}",
        )
