"""A small stand-in for the scoring module with the same contract (``edgefleet.protocol.module``):
it parses the same flags and writes its status through the same model, atomically.

    python tests/support/fake_module.py --model-dir D --source-dir S --name N --port P --host H
        --accelerator cpu [--accelerator-required] --status-file F [--entry-script X] --edgefleet-* ...

Serves GET / ("Healthy"), /v2/health/live, /v2/health/ready and GET /info (JSON: pid, args, the
model files it sees, AZUREML_MODEL_DIR, and which scoring-key variables are set, never their
values). Every other option of the contract is accepted. Behaviour for failure tests is chosen by
environment variables the manifest can set through ``spec.env``:

    FAKE_MODULE_EXIT=<code>       write a Failed/Unschedulable status and exit with <code> at start
    FAKE_MODULE_READY_AFTER=<s>   answer /v2/health/ready with 503 for the first <s> seconds
    FAKE_MODULE_UNHEALTHY_FILE=<path>  answer /v2/health/ready with 503 while <path> exists
    FAKE_MODULE_OVERWRITE=<a,b>   at start, overwrite these files of its own directory (relative to
                                  the instance directory, e.g. src/score.py) with b"tampered"
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
from typing import Any

from edgefleet.protocol.module import (
    AZUREML_MODEL_DIR,
    EXIT_UNSCHEDULABLE,
    MARK_DEVICE,
    MARK_MODULE,
    MARK_SPEC,
    ModuleOption,
    ModuleRunState,
    ModuleSecret,
    ModuleStatusFile,
    write_status_file,
)


def main() -> int:
    opt = ModuleOption
    p = argparse.ArgumentParser()
    p.add_argument(opt.MODEL_DIR.flag, required=True)
    p.add_argument(opt.SOURCE_DIR.flag, required=True)
    p.add_argument(opt.ENTRY_SCRIPT.flag)
    p.add_argument(opt.MODEL_NAME.flag, required=True)
    p.add_argument(opt.PORT.flag, type=int, required=True)
    p.add_argument(opt.HOST.flag, default="127.0.0.1")
    p.add_argument(opt.ACCELERATOR.flag, default="cpu")
    p.add_argument(opt.ACCELERATOR_REQUIRED.flag, action="store_true")
    p.add_argument(opt.STATUS_FILE.flag, required=True)
    explicit = {p_.option_strings[0] for p_ in p._actions if p_.option_strings}
    for option in ModuleOption:  # the rest of the contract (request limit, TLS, ...): accepted
        if option.flag not in explicit:
            p.add_argument(option.flag)
    for mark in (MARK_DEVICE, MARK_MODULE, MARK_SPEC):
        p.add_argument(mark)
    args = p.parse_args()
    for name in filter(None, os.environ.get("FAKE_MODULE_OVERWRITE", "").split(",")):
        target = Path(args.model_dir).parent / name
        os.chmod(target, 0o644)  # its own copy: the module may (root may anyway)
        target.write_bytes(b"tampered")
    path = Path(args.status_file)

    def status(state: ModuleRunState, **fields: Any) -> None:
        write_status_file(path, ModuleStatusFile(state=state, pid=os.getpid(), port=args.port, **fields))

    status(ModuleRunState.STARTING)

    exit_code = int(os.environ.get("FAKE_MODULE_EXIT", "0"))
    if exit_code:
        state = ModuleRunState.UNSCHEDULABLE if exit_code == EXIT_UNSCHEDULABLE else ModuleRunState.FAILED
        status(state, message=f"fake module told to exit with {exit_code}")
        return exit_code

    ready_at = time.monotonic() + float(os.environ.get("FAKE_MODULE_READY_AFTER", "0"))
    unhealthy_file = os.environ.get("FAKE_MODULE_UNHEALTHY_FILE")
    model_dir = Path(args.model_dir)
    info = {
        "pid": os.getpid(),
        "args": vars(args),
        "modelFiles": sorted(str(f.relative_to(model_dir)) for f in model_dir.rglob("*") if f.is_file()),
        "azuremlModelDir": os.environ.get(AZUREML_MODEL_DIR),
        "keysSet": sorted(s.env for s in ModuleSecret if os.environ.get(s.env)),
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
    status(ModuleRunState.READY, backend="cpu", backend_reason="fake module", backend_timings_ms={"cpu": 0.1})
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
