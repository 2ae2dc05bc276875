"""A module for the memory soak: serves its health endpoints, then exits after ``SOAK_EXIT_AFTER_S``.

Same command-line and status-file contract as the scoring module (``--port``, ``--status-file``,
the ``--edgefleet-*`` marks), so the agent starts, probes and restarts it like any module. Under
restart policy ``always`` it makes the agent restart a module every ``SOAK_EXIT_AFTER_S`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--status-file", required=True)
    args, _ = p.parse_known_args()
    exit_after = float(os.environ.get("SOAK_EXIT_AFTER_S", "10"))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"ready": true}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: object) -> None:
            pass

    server = HTTPServer((args.host, args.port), Handler)
    status = Path(args.status_file)
    status.write_text(json.dumps({"pid": os.getpid(), "state": "Ready", "port": args.port, "backend": "cpu"}))
    timer = threading.Timer(exit_after, server.shutdown)
    timer.start()
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    return 3  # a failure exit: restart policy always (and on-failure) restarts it


if __name__ == "__main__":
    raise SystemExit(main())
