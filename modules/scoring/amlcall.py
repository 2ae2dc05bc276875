"""How /score calls an Azure ML entry script's run(), as azureml-inference-server-http 1.5.1 does.

Three kinds of run(), told apart once when the script is loaded (``analyse``):

- ``@rawhttp`` (``azureml.contrib.services.aml_request``): run(request) gets the ``AMLRequest``
  for GET, POST and OPTIONS on /score;
- decorated by inference_schema (``@input_schema`` / ``@output_schema``): a POST body must be JSON
  (Content-Type application/json, else 415) holding an object whose keys are run()'s parameters:
  run(**body), defaults apply, a missing one is a 400; a GET passes the query arguments the same
  way (each value parsed as JSON when it is JSON);
- otherwise run(raw_data) gets the body as a str (POST) or the query arguments as a JSON string (GET).

A parameter named ``request_headers`` receives the request's headers. OPTIONS on a script that is
not ``@rawhttp`` is answered 200 with an empty body; other methods 405. What run() returns is sent
as JSON, except an ``AMLResponse``, sent as it is (``x-ms-run-function-failed: True`` when its
status is 5xx).
"""

from __future__ import annotations

import enum
import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from edgefleet.modules.scoring.errors import EntryScriptError, RequestError
from edgefleet.modules.scoring.rawhttp import AMLRequest, is_json_mimetype, rawhttp_requested

REQUEST_HEADERS = "request_headers"


class RunKind(enum.Enum):
    RAW = "rawhttp"
    SCHEMA = "inference_schema"
    STRING = "raw string"


class UnsupportedMediaType(RequestError):
    status = 415


class BadScoreInput(RequestError):
    status = 400


class MethodNotAllowed(RequestError):
    status = 405


class AnswerOptions(Exception):
    """OPTIONS on a script that is not @rawhttp: 200, empty."""


@dataclass(frozen=True)
class RunSignature:
    kind: RunKind
    params: tuple[inspect.Parameter, ...]  # without request_headers
    wants_headers: bool

    @property
    def first(self) -> str:
        return self.params[0].name


def _schema_util() -> Any:
    """inference_schema's schema_util when the script imported it (no dependency of ours otherwise)."""
    return sys.modules.get("inference_schema.schema_util")


def is_schema_decorated(run: Callable[..., Any]) -> bool:
    util = _schema_util()
    if util is None:
        return False
    try:
        return bool(util.is_schema_decorated(run))
    except Exception:
        return False


def analyse(run: Callable[..., Any], where: str) -> RunSignature:
    try:
        params = list(inspect.signature(run).parameters.values())
    except (TypeError, ValueError) as exc:
        raise EntryScriptError(f"run() in {where} has no inspectable signature: {exc}") from None
    allowed = {inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
    if any(p.kind not in allowed for p in params):
        raise EntryScriptError(f"run() in {where} cannot take positional-only arguments, *args or **kwargs")
    wants_headers = any(p.name == REQUEST_HEADERS for p in params)
    params = [p for p in params if p.name != REQUEST_HEADERS]
    if not params:
        raise EntryScriptError(f"run() in {where} needs a parameter for the input data")
    raw, schema = rawhttp_requested(run), is_schema_decorated(run)
    if raw and schema:
        raise EntryScriptError(f"run() in {where} cannot be decorated with both @rawhttp and @input_schema")
    kind = RunKind.RAW if raw else RunKind.SCHEMA if schema else RunKind.STRING
    return RunSignature(kind, tuple(params), wants_headers)


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def query_arguments(query: str) -> dict[str, Any]:
    """?a=1&b=[1,2]&c=x&c=y -> {"a": 1, "b": [1, 2], "c": ["x", "y"]}."""
    parsed: dict[str, list[Any]] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        parsed.setdefault(key, []).append(_parse_value(value))
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


def wsgi_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The names as a WSGI server gives them (``X-Tenant``, ``Content-Type``): the transport
    lower-cases them, the reference server's request_headers is ``dict(flask.request.headers)``."""
    return {k.title(): v for k, v in headers.items()}


def _extract(sig: RunSignature, doc: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for param in sig.params:
        value = doc.get(param.name, param.default)
        if value is inspect.Parameter.empty:
            raise BadScoreInput(f"A value is not provided for the {param.name!r} parameter.")
        kwargs[param.name] = value
    return kwargs


def run_arguments(
    sig: RunSignature,
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes,
    server: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of run() for this request; RequestError/AnswerOptions when it is not run."""
    if sig.kind is RunKind.RAW:
        kwargs: dict[str, Any] = {sig.first: AMLRequest(method, target, headers, body, server=server)}
    elif method == "OPTIONS":
        raise AnswerOptions()
    elif method == "GET":
        args = query_arguments(target.partition("?")[2])
        kwargs = _extract(sig, args) if sig.kind is RunKind.SCHEMA else {sig.first: json.dumps(args)}
    elif method != "POST":
        raise MethodNotAllowed("Method not allowed")
    elif sig.kind is RunKind.SCHEMA:
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if not is_json_mimetype(content_type.split(";", 1)[0].strip().lower()):
            raise UnsupportedMediaType("Expects Content-Type to be application/json")
        try:
            doc = json.loads(body)
        except ValueError as exc:
            if body:
                raise BadScoreInput(f"POST body could not be decoded as JSON: {exc}") from None
            raise BadScoreInput("POST body is empty. Expecting a JSON dictionary.") from None
        if not isinstance(doc, dict):
            raise BadScoreInput("POST body should be a JSON dictionary.")
        kwargs = _extract(sig, doc)
    else:
        try:
            kwargs = {sig.first: body.decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise BadScoreInput(f"Input cannot be decoded as UTF-8: {exc}") from None
    if sig.wants_headers:
        kwargs[REQUEST_HEADERS] = wsgi_headers(headers)
    return kwargs


# ---- swagger -----------------------------------------------------------------------------------------

_ERROR_SCHEMA = {"type": "object", "properties": {"message": {"type": "string"}}}


def _schemas(run: Callable[..., Any]) -> tuple[Any, Any, list[str] | None]:
    """(input schema, output schema, swagger versions the decorators support or None for all)."""
    util = _schema_util()
    if util is None or not is_schema_decorated(run):
        empty = {"type": "object", "example": {}}
        return empty, empty, None
    return util.get_input_schema(run), util.get_output_schema(run), [str(v) for v in util.get_supported_versions(run)]


def swagger(run: Callable[..., Any], version: str, title: str, service_version: str) -> dict[str, Any] | None:
    """The API document of /score from run()'s decorators: Swagger 2.0 (version "2") or OpenAPI 3.0/3.1."""
    input_schema, output_schema, supported = _schemas(run)
    major = version.split(".", 1)[0]
    if supported is not None and not any(v.split(".", 1)[0] == major for v in supported):
        return None
    info = {
        "title": title,
        "description": f"API specification of the scoring service {title}",
        "version": service_version,
    }
    ok = "The service processed the input correctly and provided a result prediction, if applicable."
    failed = "The service failed to execute due to an error."
    if major == "2":
        return {
            "swagger": "2.0",
            "info": info,
            "schemes": ["http", "https"],
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "securityDefinitions": {"Bearer": {"type": "apiKey", "name": "Authorization", "in": "header"}},
            "paths": {
                "/": {"get": {"operationId": "ServiceHealthCheck", "responses": {"200": {"description": "Healthy"}}}},
                "/score": {
                    "post": {
                        "operationId": "RunMLService",
                        "security": [{"Bearer": []}],
                        "parameters": [
                            {
                                "name": "serviceInputPayload",
                                "in": "body",
                                "schema": {"$ref": "#/definitions/ServiceInput"},
                            }
                        ],
                        "responses": {
                            "200": {"description": ok, "schema": {"$ref": "#/definitions/ServiceOutput"}},
                            "default": {"description": failed, "schema": {"$ref": "#/definitions/ErrorResponse"}},
                        },
                    }
                },
            },
            "definitions": {
                "ServiceInput": input_schema,
                "ServiceOutput": output_schema,
                "ErrorResponse": _ERROR_SCHEMA,
            },
        }
    if major == "3":
        return {
            "openapi": "3.1.0" if version == "3.1" else "3.0.1",
            "info": info,
            "paths": {
                "/": {"get": {"operationId": "ServiceHealthCheck", "responses": {"200": {"description": "Healthy"}}}},
                "/score": {
                    "post": {
                        "operationId": "RunMLService",
                        "security": [{"Bearer": []}],
                        "requestBody": {
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ServiceInput"}}}
                        },
                        "responses": {
                            "200": {
                                "description": ok,
                                "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/ServiceOutput"}}
                                },
                            },
                            "default": {
                                "description": failed,
                                "content": {
                                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}
                                },
                            },
                        },
                    }
                },
            },
            "components": {
                "securitySchemes": {"Bearer": {"type": "http", "scheme": "bearer"}},
                "schemas": {
                    "ServiceInput": input_schema,
                    "ServiceOutput": output_schema,
                    "ErrorResponse": _ERROR_SCHEMA,
                },
            },
        }
    return None


SWAGGER_VERSIONS = ("2", "2.0", "3", "3.0", "3.1")
