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
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from edgefleet.accelerators.base import LoadedModel
from edgefleet.accelerators.errors import NoVerifiedAccelerator
from edgefleet.modules.scoring import amlcall, auth, nocode, v2
from edgefleet.modules.scoring.config import ServerConfig
from edgefleet.modules.scoring.context import BadInput, ScoringContext, activate, find_model_file
from edgefleet.modules.scoring.entry import EntryScript, load_entry_script
from edgefleet.modules.scoring.errors import (
    EntryScriptError,
    NotFound,
    NotReady,
    RequestError,
    ScoringFailed,
)
from edgefleet.modules.scoring.rawhttp import AMLResponse
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


SCORE_METHODS_NOCODE = frozenset({"POST"})
# an entry script's run() is called for GET (the query's arguments) and, @rawhttp, OPTIONS too
# (HEAD too: Flask routes it with GET); other methods are a 405 without calling run()
SCORE_METHODS_ENTRY = frozenset({"GET", "HEAD", "POST", "OPTIONS"})


def uses_model(method: str, path: str, score_methods: frozenset[str] = SCORE_METHODS_NOCODE) -> bool:
    """Does the request run the model (or the entry script)? Only those are queued, limited and run
    off the event loop; every other route answers at once and reads no body."""
    route = auth.route_path(path)
    if route == "/score":
        return method in score_methods
    return method == "POST" and _INFER_PATH.match(route) is not None


# ---- Azure ML request ids and error bodies -------------------------------------------------------------

REQUEST_ID_LIMIT = 100  # characters, as azureml-inference-server-http
RUN_FAILED = "x-ms-run-function-failed"
RUN_EXEC_MS = "x-ms-run-fn-exec-ms"  # run()'s time, milliseconds with 3 decimals
RUN_FAILED_MESSAGE = "An unexpected error occurred in scoring script. Check the logs for more info."


_ID_HEADERS = ("x-request-id", "x-ms-request-id", "x-ms-client-request-id")
_UUID4_CLEAR = 0xFFFFFFFFFFFF0FFF3FFFFFFFFFFFFFFF
_UUID4_SET = 0x00000000000040008000000000000000


def new_request_id() -> str:
    """A random uuid4 string, at a quarter of ``str(uuid.uuid4())``'s cost (it runs for every answer
    without a client id). Ids need uniqueness, not secrecy: random (which reseeds in each forked
    worker) rather than os.urandom."""
    h = "%032x" % ((random.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def request_ids(headers: Mapping[str, str]) -> dict[str, str]:
    """The id headers of an answer: x-request-id (the client's, else a new uuid), x-ms-request-id
    (the client's legacy id, else its x-ms-client-request-id, else the request id) and
    x-ms-client-request-id when the client sent one. Ids over 100 characters are not echoed.

    ``headers``' names are lower-case, as both transports give them (this runs for every answer)."""
    request_id = headers.get("x-request-id") or ""
    legacy = headers.get("x-ms-request-id") or ""
    client = headers.get("x-ms-client-request-id") or ""
    if len(request_id) > REQUEST_ID_LIMIT or not request_id:
        request_id = new_request_id()
    if len(legacy) > REQUEST_ID_LIMIT:
        legacy = ""
    if len(client) > REQUEST_ID_LIMIT:
        client = ""
    ids = {"x-request-id": request_id, "x-ms-request-id": legacy or client or request_id}
    if client or legacy:
        ids["x-ms-client-request-id"] = client or legacy
    return ids


def stamp_request_ids(response: Response, headers: Mapping[str, str]) -> Response:
    """Add the id headers (``request_ids``) to an answer, keeping any a script set itself."""
    ids = request_ids(headers)
    if response.headers:
        present = {k.lower() for k in response.headers}
        ids = {k: v for k, v in ids.items() if k not in present}
    response.headers.update(ids)
    return response


def aml_error(status: int, message: str, run_failed: bool = False) -> Response:
    """An error of /score in entry-script mode, shaped as Azure ML's: ``{"message": ...}``."""
    response = json_response({"message": message}, status)
    response.headers[RUN_FAILED] = "True" if run_failed else "False"
    return response


class ScoringService:
    def __init__(self, config: ServerConfig, workers: int = 1) -> None:
        self.config = config
        self.workers = workers
        # which methods on /score call run(): decided from the configuration, before init() ends
        self.score_methods = SCORE_METHODS_ENTRY if config.entry_script is not None else SCORE_METHODS_NOCODE
        self.state = ModuleRunState.STARTING
        self.message = "initialising"
        self.context = ScoringContext(
            config.model_dir.absolute(), config.accelerator_prefer, config.accelerator_required
        )
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

        ``announce`` receives the outcome once the service is Ready: it tells the status file or the
        supervisor and then starts the listening (the transport does not listen before, so no
        request ever meets a Starting service, and a successful probe finds the backend in the file).
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
        self._set(ModuleRunState.READY, message)
        if announce is not None:
            announce(self.status(0))
        return self.state

    def _initialise(self) -> None:
        cfg = self.config
        # entry scripts find their model where Azure ML puts it
        os.environ[AZUREML_MODEL_DIR] = str(cfg.model_dir.absolute())
        activate(self.context)
        script_path = cfg.entry_script_path
        if script_path is None:
            self.context.load(find_model_file(cfg.model_dir))
        else:
            source_dir = (cfg.source_dir or script_path.parent).resolve()
            _check_inside(script_path, source_dir)
            _azureml_environment(script_path, source_dir, self.workers)
            self.entry = load_entry_script(script_path.resolve(), source_dir)
            log.info("run() in %s is called as %s", script_path.name, self.entry.signature.kind.value)
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
        for name in _ID_HEADERS:  # the transports give lower-case names
            if len(headers.get(name) or "") > REQUEST_ID_LIMIT:
                return error_response(431, f"{name} must not exceed {REQUEST_ID_LIMIT} characters")
        try:
            return self._route(method, path, headers, body, port)
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:  # a bug must cost one request, not the server
            log.exception("unhandled error on %s %s", method, path)
            return error_response(500, f"internal error on {method} {path}: {type(exc).__name__}: {exc}")

    def _route(self, method: str, target: str, headers: Mapping[str, str], body: bytes, port: int) -> Response:
        path = auth.route_path(target)
        if path == "/score" and self.config.entry_script is not None:
            return self._score_entry(method, target, headers, body, port)
        routes: dict[str, dict[str, Callable[[], Response]]] = {
            "/": {"GET": self._azure_health},
            "/score": {"POST": lambda: self._score(body)},
            "/swagger.json": {"GET": lambda: self._swagger(target)},
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
        model = self._served_model()
        feeds = nocode.parse_score_body(body, model.inputs)
        return json_response(nocode.format_score_result(self._run_model(model, feeds)))

    def _score_entry(self, method: str, target: str, headers: Mapping[str, str], body: bytes, port: int) -> Response:
        """/score of an entry script, answered as azureml-inference-server-http does (``amlcall``)."""
        entry = self.entry
        if method not in self.score_methods:  # never run() on the event loop: only these reach a thread
            return aml_error(405, "The method is not allowed for the requested URL.")
        if self.state is not ModuleRunState.READY or entry is None:
            return aml_error(503, f"the server is {self.state.value}: {self.message}")
        try:
            kwargs = amlcall.run_arguments(entry.signature, method, target, headers, body, ("127.0.0.1", port))
        except amlcall.AnswerOptions:
            return Response(200, b"", "text/html; charset=utf-8", {RUN_FAILED: "False"})
        except RequestError as exc:
            return aml_error(exc.status, exc.message)
        started = time.perf_counter()
        try:
            result = entry.call(kwargs)
        except BadInput as exc:  # edgefleet's own: the script says the request is wrong
            return aml_error(400, str(exc))
        except Exception:
            # the text may hold data or paths: it goes to the module's log, the client gets a generic answer
            log.exception("run() in %s raised", entry.path.name)
            return aml_error(500, RUN_FAILED_MESSAGE, run_failed=True)
        elapsed = f"{(time.perf_counter() - started) * 1000:.3f}"
        if isinstance(result, AMLResponse):
            extra = dict(result.headers)
            extra[RUN_FAILED] = "True" if result.status_code >= 500 or result.run_function_failed else "False"
            extra[RUN_EXEC_MS] = elapsed
            return Response(result.status_code, result.body, result.content_type, extra)
        try:
            response = json_response(result)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            log.error("run() in %s returned a value that is not JSON: %s", entry.path.name, exc)
            return aml_error(500, "An unexpected internal error occurred. Check the logs for more info.")
        response.headers[RUN_FAILED] = "False"
        response.headers[RUN_EXEC_MS] = elapsed
        return response

    def _swagger(self, target: str) -> Response:
        """The API document of /score (Azure ML's /swagger.json; ?version=3 for OpenAPI 3).

        A swagger.json (version 2) or swagger<version>.json in the source directory is served as it
        is; otherwise it is built from run()'s inference_schema decorators."""
        version = amlcall.query_arguments(target.partition("?")[2]).get("version", "2")
        version = str(version)
        if self.entry is None:
            raise NotFound("/swagger.json describes an entry script's run(); this module serves no entry script")
        if version not in amlcall.SWAGGER_VERSIONS:
            return json_response(
                {"message": f"Swagger version [{version}] is not valid. Supported versions: [2, 3, 3.1]."}, 404
            )
        source_dir = (self.config.source_dir or self.entry.path.parent).resolve()
        names = (
            ["swagger.json", "swagger2.json"] if version.startswith("2") else [f"swagger{version.split('.')[0]}.json"]
        )
        for name in names:
            user_file = source_dir / name
            if user_file.is_file():
                try:
                    return Response(200, orjson.dumps(orjson.loads(user_file.read_bytes())))
                except orjson.JSONDecodeError as exc:
                    raise ScoringFailed(f"{name} in the source directory is not JSON: {exc}") from None
        doc = amlcall.swagger(self.entry.run_fn, version, self.model_name, self.config.model_version or "1")
        if doc is None:
            return json_response(
                {"message": f"Swagger version [{version}] is not supported for the scoring script."}, 404
            )
        return json_response(doc)

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


def _azureml_environment(script: Path, source_dir: Path, workers: int) -> None:
    """What azureml-inference-server-http sets before it loads the script: AML_APP_ROOT (here always
    the source directory: it is where the script is), AZUREML_ENTRY_SCRIPT, WORKER_COUNT; the working
    directory is the app root, so a script's relative paths resolve against its source directory."""
    os.environ["AML_APP_ROOT"] = str(source_dir)
    os.environ["AZUREML_ENTRY_SCRIPT"] = str(script.resolve())
    os.environ["WORKER_COUNT"] = str(workers)
    os.chdir(source_dir)


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
