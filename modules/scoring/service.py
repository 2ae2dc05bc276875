"""The scoring service: initialisation (model / entry script), state, and request handling.

Independent of the HTTP transport: ``handle(method, path, headers, body) -> Response``, so the
routing and error mapping are tested without sockets and ``http.py`` only moves bytes. With scoring
keys configured, ``authorize`` answers 401 for a request without a valid key (``auth``); the
transport asks it before it reads a body, and ``handle`` asks again.

Entry-script mode and v2: /score calls the script's run(); /v2/models/{name}/infer runs the first
model the script loaded through ``edgefleet.modules.scoring.load_model`` directly (no pre/post
processing), so v2 clients such as tritonclient get raw tensors from the same backend. A script
that loads no model that way has no v2 model (404 naming the reason).

JSON leaves through orjson: numpy arrays (C-contiguous, numeric) are written natively, anything
else a script returns goes through ``_json_default``; non-string keys become strings as with
``json``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from edgefleet.accelerators.base import LoadedModel
from edgefleet.accelerators.errors import NoVerifiedAccelerator
from edgefleet.modules.scoring import auth, nocode, v2
from edgefleet.modules.scoring.config import ServerConfig
from edgefleet.modules.scoring.context import BadInput, ScoringContext, activate, find_model_file
from edgefleet.modules.scoring.entry import EntryScript, load_entry_script
from edgefleet.modules.scoring.errors import (
    BadRequest,
    EntryScriptError,
    NotFound,
    NotReady,
    RequestError,
    ScoringFailed,
)
from edgefleet.modules.scoring.tensors import check_feeds
from edgefleet.protocol.module import AZUREML_MODEL_DIR, ModuleRunState, ModuleStatusFile

log = logging.getLogger(__name__)

SERVER_NAME = "edgefleet-scoring"
SERVER_VERSION = "0.1.0"
PLATFORM = "onnxruntime_onnx"


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def json_bytes(doc: Any) -> bytes:
    return orjson.dumps(doc, default=_json_default, option=_JSON_OPTIONS)


def json_response(doc: Any, status: int = 200) -> Response:
    return Response(status, json_bytes(doc))


def error_response(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def unauthorized(message: str) -> Response:
    response = error_response(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="edgefleet-scoring"'
    return response


def _json_default(value: Any) -> Any:
    """numpy values an entry script may return."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _accelerator_error(exc: BaseException) -> NoVerifiedAccelerator | None:
    """NoVerifiedAccelerator anywhere in the cause chain (an entry script may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, NoVerifiedAccelerator):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


_MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?$")
_INFER_PATH = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/infer$")


def uses_model(method: str, path: str) -> bool:
    """Does the request run the model (or the entry script)? Only those are queued, limited and run
    off the event loop; every other route answers at once and reads no body."""
    if method != "POST":
        return False
    route = auth.route_path(path)
    return route == "/score" or _INFER_PATH.match(route) is not None


class ScoringService:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.state = ModuleRunState.STARTING
        self.message = "initialising"
        self.context = ScoringContext(config.model_dir, config.accelerator_prefer, config.accelerator_required)
        self.entry: EntryScript | None = None
        self.model: LoadedModel | None = None  # the model served on v2 (and /score in no-code mode)
        self.model_name = config.model_name or "model"
        self._v2_absent_reason = "the model is not loaded yet"
        self._lock = threading.Lock()
        self.pid = os.getpid()  # the module's: a worker process reports its supervisor's
        # a worker's copy of the status its supervisor wrote (every worker measured its own backend
        # timings; /edgefleet/status says what the status file says)
        self.published: ModuleStatusFile | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------

    def initialise(self, announce: Callable[[ModuleStatusFile], None] | None = None) -> ModuleRunState:
        """Load the model or run the entry script's init(); never raises: the outcome is the state.

        ``announce`` receives the outcome *before* the server starts answering ready: whoever reads
        the status file after a successful readiness probe then finds the backend choice in it.
        """
        try:
            self._initialise()
        except Exception as exc:
            accel = _accelerator_error(exc)
            if accel is not None:
                self._set(ModuleRunState.UNSCHEDULABLE, str(accel))
            else:
                self._set(ModuleRunState.FAILED, str(exc) or type(exc).__name__)
            log.error("initialisation failed: %s", self.message, exc_info=accel is None)
            return self.state
        message = self._ready_message()
        if announce is not None:
            announce(self.status(0).model_copy(update={"state": ModuleRunState.READY, "message": message}))
        self._set(ModuleRunState.READY, message)
        return self.state

    def _initialise(self) -> None:
        cfg = self.config
        # entry scripts find their model where Azure ML puts it
        os.environ[AZUREML_MODEL_DIR] = str(cfg.model_dir)
        activate(self.context)
        script_path = cfg.entry_script_path
        if script_path is None:
            self.context.load(find_model_file(cfg.model_dir))
        else:
            source_dir = cfg.source_dir or script_path.parent
            _check_inside(script_path, source_dir)
            self.entry = load_entry_script(script_path, source_dir)
            try:
                self.entry.init()
            except Exception as exc:
                if _accelerator_error(exc) is not None:
                    raise
                raise RuntimeError(f"init() in {script_path} raised {type(exc).__name__}: {exc}") from exc
        primary = self.context.primary
        if primary is not None:
            self.model = primary.selection.loaded
            self.model_name = cfg.model_name or primary.path.stem
        else:
            self._v2_absent_reason = (
                f"entry script {script_path} loaded no model through edgefleet.modules.scoring.load_model"
            )

    def _ready_message(self) -> str:
        primary = self.context.primary
        mode = f"entry script {self.config.entry_script}" if self.entry else "no-code"
        if primary is None:
            return f"serving {mode}"
        return f"serving {mode}, model {primary.path.name} on {primary.selection.backend}"

    def _set(self, state: ModuleRunState, message: str) -> None:
        with self._lock:
            self.state, self.message = state, message

    def status(self, port: int) -> ModuleStatusFile:
        """The current status; ``port`` 0 means "the caller fills it in"."""
        if self.published is not None and self.state is ModuleRunState.READY:
            return self.published
        primary = self.context.primary
        sel = primary.selection if primary else None
        return ModuleStatusFile(
            state=self.state,
            message=self.message,
            pid=self.pid,
            port=port,
            backend=sel.backend if sel else None,
            backend_reason=sel.reason if sel else None,
            backend_timings_ms=dict(sel.timings_ms) if sel else {},
        )

    def close(self) -> None:
        self.context.close()

    # ---- requests --------------------------------------------------------------------------------------

    def authorize(self, method: str, path: str, headers: Mapping[str, str]) -> Response | None:
        """401 for a request that needs a key and carries no valid one; None: it may go on."""
        why = auth.refusal(method, path, headers, self.config.auth_keys)
        return None if why is None else unauthorized(why)

    def handle(self, method: str, path: str, headers: Mapping[str, str], body: bytes, port: int = 0) -> Response:
        """Route one request; every failure becomes a JSON error response, never an exception."""
        refused = self.authorize(method, path, headers)
        if refused is not None:
            return refused
        try:
            return self._route(method, auth.route_path(path), headers, body, port)
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("unhandled error on %s %s", method, path)
            return error_response(500, f"internal error on {method} {path}: {type(exc).__name__}: {exc}")

    def _route(self, method: str, path: str, headers: Mapping[str, str], body: bytes, port: int) -> Response:
        routes: dict[str, dict[str, Callable[[], Response]]] = {
            "/": {"GET": self._azure_health},
            "/score": {"POST": lambda: self._score(body)},
            "/edgefleet/status": {"GET": lambda: json_response(self.status(port).to_wire())},
            "/v2": {"GET": self._server_metadata},
            "/v2/health/live": {"GET": lambda: json_response({"live": True})},
            "/v2/health/ready": {"GET": self._server_ready},
        }
        if path in routes:
            return self._call(routes[path], method, path)
        match = _MODEL_PATH.match(path)
        if match is None:
            raise NotFound(f"no route {path}; see /v2 and /score")
        name, version, action = match["name"], match["version"], match["action"]
        by_action: dict[str | None, dict[str, Callable[[], Response]]] = {
            None: {"GET": lambda: self._model_metadata(name, version)},
            "/ready": {"GET": lambda: self._model_ready(name, version)},
            "/infer": {"POST": lambda: self._infer(name, version, headers, body)},
        }
        return self._call(by_action[action], method, path)

    @staticmethod
    def _call(handlers: Mapping[str, Callable[[], Response]], method: str, path: str) -> Response:
        handler = handlers.get(method)
        if handler is None:
            return error_response(405, f"{method} is not allowed on {path}; use {', '.join(handlers)}")
        return handler()

    # ---- Azure ML face ---------------------------------------------------------------------------------

    def _azure_health(self) -> Response:
        if self.state is ModuleRunState.READY:
            return Response(200, b"Healthy", "text/plain; charset=utf-8")
        return Response(503, f"{self.state.value}: {self.message}".encode(), "text/plain; charset=utf-8")

    def _require_ready(self) -> None:
        if self.state is not ModuleRunState.READY:
            raise NotReady(f"the server is {self.state.value}: {self.message}")

    def _score(self, body: bytes) -> Response:
        self._require_ready()
        if self.entry is not None:
            return self._score_entry(self.entry, body)
        model = self._served_model()
        feeds = nocode.parse_score_body(body, model.inputs)
        return json_response(nocode.format_score_result(self._run_model(model, feeds)))

    def _score_entry(self, entry: EntryScript, body: bytes) -> Response:
        try:
            raw = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(f"request body is not UTF-8 text: {exc}") from None
        try:
            result = entry.run(raw)
        except BadInput as exc:
            raise BadRequest(str(exc)) from None
        except Exception as exc:
            log.exception("run() in %s raised", entry.path)
            raise ScoringFailed(f"run() in {entry.path.name} raised {type(exc).__name__}: {exc}") from None
        try:
            return json_response(result)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            raise ScoringFailed(f"run() in {entry.path.name} returned a value that is not JSON: {exc}") from None

    # ---- Open Inference Protocol v2 face ---------------------------------------------------------------

    def _server_metadata(self) -> Response:
        return json_response({"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]})

    def _server_ready(self) -> Response:
        ready = self.state is ModuleRunState.READY
        return json_response(
            {"ready": ready, "state": self.state.value, "message": self.message}, 200 if ready else 503
        )

    def _served_model(self) -> LoadedModel:
        if self.model is None:
            if self.state is ModuleRunState.STARTING:
                raise NotReady(self._v2_absent_reason)
            raise NotFound(self._v2_absent_reason)
        return self.model

    def _lookup(self, name: str, version: str | None) -> LoadedModel:
        if name != self.model_name:
            raise NotFound(f"unknown model {name!r}; this server serves {self.model_name!r}")
        if version is not None and version != self.config.model_version:
            raise NotFound(
                f"model {name!r} has no version {version!r}; served version is {self.config.model_version!r}"
            )
        self._require_ready()
        return self._served_model()

    def _model_metadata(self, name: str, version: str | None) -> Response:
        model = self._lookup(name, version)
        return json_response(v2.model_metadata(name, self.config.model_version, PLATFORM, model.inputs, model.outputs))

    def _model_ready(self, name: str, version: str | None) -> Response:
        self._lookup(name, version)
        return json_response({"name": name, "ready": True})

    def _infer(self, name: str, version: str | None, headers: Mapping[str, str], body: bytes) -> Response:
        model = self._lookup(name, version)
        header_length = v2.parse_header_length(_header(headers, v2.HEADER_LENGTH), len(body))
        request = v2.parse_infer_request(body, header_length)
        feeds = check_feeds(request.inputs, model.inputs)
        selected = v2.select_outputs(request, [o.name for o in model.outputs])
        outputs = self._run_model(model, feeds)
        payload, json_length = v2.encode_infer_response(
            name, self.config.model_version, request.request_id, outputs, selected
        )
        if json_length is None:
            return Response(200, payload)
        return Response(200, payload, v2.BINARY_CONTENT_TYPE, {v2.HEADER_LENGTH: str(json_length)})

    @staticmethod
    def _run_model(model: LoadedModel, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            return model.run(feeds)
        except Exception as exc:
            log.exception("model run failed on %s", model.backend)
            raise ScoringFailed(f"the model failed on backend {model.backend}: {type(exc).__name__}: {exc}") from None


def _check_inside(script: Path, source_dir: Path) -> None:
    """The entry script, symlinks resolved, must lie inside the source directory."""
    resolved, root = script.resolve(), source_dir.resolve()
    if not resolved.is_relative_to(root):
        raise EntryScriptError(
            f"entry script {script} resolves to {resolved}, outside the source directory {root}; refused"
        )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lower = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lower), None)
