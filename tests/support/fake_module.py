"""A small stand-in for the scoring module with the same command-line and status-file contract.

    python tests/support/fake_module.py --model-dir D --source-dir S --name N --port P --host H
        --accelerator cpu [--accelerator-required] --status-file F [--entry-script X] --edgefleet-* ...

Serves GET / ("Healthy"), /v2/health/live, /v2/health/ready and GET /info (JSON: pid, args, the
model files it sees and AZUREML_MODEL_DIR). Behaviour for failure tests is chosen by environment
variables the manifest can set through ``spec.env``:

    FAKE_MODULE_EXIT=<code>       write a Failed/Unschedulable status and exit with <code> at start
    FAKE_MODULE_READY_AFTER=<s>   answer /v2/health/ready with 503 for the first <s> seconds
    FAKE_MODULE_UNHEALTHY_FILE=<path>  answer /v2/health/ready with 503 while <path> exists
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def write_status(path: Path, **fields: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), **fields}))
    os.replace(tmp, path)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--entry-script")
    p.add_argument("--name", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--accelerator-required", action="store_true")
    p.add_argument("--status-file", required=True)
    p.add_argument("--edgefleet-device")
    p.add_argument("--edgefleet-module")
    p.add_argument("--edgefleet-spec")
    args = p.parse_args()
    status = Path(args.status_file)
    write_status(status, state="Starting", port=args.port)

    exit_code = int(os.environ.get("FAKE_MODULE_EXIT", "0"))
    if exit_code:
        state = "Unschedulable" if exit_code == 78 else "Failed"
        write_status(status, state=state, message=f"fake module told to exit with {exit_code}", port=args.port)
        return exit_code

    ready_at = time.monotonic() + float(os.environ.get("FAKE_MODULE_READY_AFTER", "0"))
    unhealthy_file = os.environ.get("FAKE_MODULE_UNHEALTHY_FILE")
    model_dir = Path(args.model_dir)
    info = {
        "pid": os.getpid(),
        "args": vars(args),
        "modelFiles": sorted(str(f.relative_to(model_dir)) for f in model_dir.rglob("*") if f.is_file()),
        "azuremlModelDir": os.environ.get("AZUREML_MODEL_DIR"),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            sick = unhealthy_file is not None and os.path.exists(unhealthy_file)
            if self.path == "/v2/health/ready" and (time.monotonic() < ready_at or sick):
                self._send(503, {"ready": False})
            elif self.path in ("/v2/health/ready", "/v2/health/live"):
                self._send(200, {"ready": True})
            elif self.path == "/":
                self._send(200, "Healthy")
            elif self.path == "/info":
                self._send(200, info)
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def _send(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *a: object) -> None:
            sys.stdout.write("fake-module: " + (format % a) + "\n")

    server = ThreadingHTTPServer((args.host, args.port), Handler)

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    write_status(
        status, state="Ready", backend="cpu", backendReason="fake module", backendTimingsMs={"cpu": 0.1}, port=args.port
    )
    print(f"fake module {args.name} serving on {args.host}:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
